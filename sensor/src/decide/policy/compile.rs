//! Turns a parsed policy file into the tables decisions are made from:
//! weight sets resolved to file identities `(device, inode)`, executables
//! resolved to theirs, user and group names to ids, globs compiled. Every
//! problem becomes a [`Finding`] with its place in the file; errors make
//! the policy unusable, warnings do not.
//!
//! Identity is the inode, never the path: a copy or a rename of an allowed
//! binary is another file and is not allowed; a hard link of it is the same
//! file and is. Resolution reads the file system once, here; deciding an
//! access afterwards is table lookups only.

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use sensor_common::FileKey;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::file::{Location, Mode, Operation, PolicyAction, PolicyFile, RuleFile, Source};
use crate::enrich::watch::{identity, key_at};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

/// One problem found in a policy, where it is, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub location: Option<Location>,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.level {
            Level::Warning => "warning",
            Level::Error => "error",
        };
        match &self.location {
            Some(at) => write!(f, "{at}: {level}: {} ({})", self.message, self.fix),
            None => write!(f, "{level}: {} ({})", self.message, self.fix),
        }
    }
}

/// A named set of weight files.
#[derive(Debug, Clone)]
pub struct WeightSet {
    pub name: String,
    pub default: PolicyAction,
    pub paths: Vec<String>,
    /// Files resolved from `paths`.
    pub files: usize,
    /// The glob `paths`, compiled.
    pub globs: Vec<globset::GlobMatcher>,
}

impl WeightSet {
    /// Whether `path` is one of the set's paths or below one (a file that
    /// appeared after the policy was compiled).
    pub fn covers(&self, path: &Path) -> bool {
        let literal = self
            .paths
            .iter()
            .filter(|raw| !is_glob(raw))
            .any(|raw| path.starts_with(raw));
        literal
            || path
                .ancestors()
                .any(|p| self.globs.iter().any(|g| g.is_match(p)))
    }
}

/// Which processes a rule is about. `None` in a field: any.
#[derive(Debug, Clone, Default)]
pub struct SubjectMatch {
    pub exe: Option<Vec<FileKey>>,
    /// The executables as written (`exe`, then `parent_exe`), for
    /// explanations.
    pub exe_names: Vec<String>,
    pub parent_exe_names: Vec<String>,
    pub parent_exe: Option<Vec<FileKey>>,
    /// `uid` and `user` together.
    pub uids: Option<BTreeSet<u32>>,
    /// `gid` and `group` together.
    pub gids: Option<BTreeSet<u32>>,
    /// Container id prefixes.
    pub containers: Option<Vec<String>>,
    pub cgroups: Option<(Vec<String>, GlobSet)>,
    pub gpu: Option<bool>,
}

/// One rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based, as written in records and by `policy check`.
    pub number: usize,
    pub name: Option<String>,
    pub location: Location,
    /// Indexes into [`Policy::sets`].
    pub sets: BTreeSet<usize>,
    pub operations: BTreeSet<Operation>,
    pub subject: SubjectMatch,
    pub action: PolicyAction,
}

/// A policy ready to decide accesses.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub sets: Vec<WeightSet>,
    pub rules: Vec<Rule>,
    /// Every file of every set, with the sets it is in.
    pub(super) files: HashMap<FileKey, Vec<usize>>,
    /// Each file with a path of it, as resolved (for fanotify marks, and
    /// for the watch set, which watches every policy file).
    pub paths: Vec<(FileKey, PathBuf)>,
    /// SHA-256 of the file's text, hex: which policy decided a record.
    pub hash: String,
    /// Which load this is (from 1), set by the agent: the kernel's tables
    /// and the verdicts written for them carry it.
    pub generation: u32,
    /// Every executable path the rules name (`exe`, `parent_exe`), with the
    /// identity it had when compiled (`None`: missing).
    pub executables: Vec<(PathBuf, Option<FileKey>)>,
    /// The directories the weight sets' paths cover (for fanotify's marks
    /// on their children: a file that appears in one is judged at its
    /// first open).
    pub directories: Vec<PathBuf>,
}

impl Policy {
    /// The weight sets a file belongs to.
    pub fn sets_of(&self, file: &FileKey) -> &[usize] {
        self.files.get(file).map_or(&[], Vec::as_slice)
    }

    /// Whether an executable a rule names is now another file (a package
    /// upgrade replaced it), appeared or went away: the policy must be
    /// compiled again to match it.
    pub fn executables_changed(&self) -> bool {
        self.executables_differ(&self.executable_identities())
    }

    /// The identities of [`Policy::executables`]' paths now.
    pub fn executable_identities(&self) -> Vec<Option<FileKey>> {
        self.executables
            .iter()
            .map(|(path, _)| identity(path))
            .collect()
    }

    /// Whether `now` (from [`Policy::executable_identities`]) differs from
    /// what the policy was compiled with.
    pub fn executables_differ(&self, now: &[Option<FileKey>]) -> bool {
        self.executables
            .iter()
            .map(|(_, key)| *key)
            .ne(now.iter().copied())
    }

    /// The weight sets whose paths cover `path`, for a file the policy was
    /// compiled without.
    pub fn sets_covering(&self, path: &Path) -> Vec<usize> {
        self.sets
            .iter()
            .enumerate()
            .filter(|(_, set)| set.covers(path))
            .map(|(index, _)| index)
            .collect()
    }

    /// Every file the policy covers.
    pub fn files(&self) -> impl Iterator<Item = &FileKey> {
        self.files.keys()
    }

    /// Whether both cover the same files, in the same sets.
    pub fn same_files(&self, other: &Policy) -> bool {
        self.files == other.files
    }
}

/// What set names a rule may use besides those defined.
const ALL_SETS: &str = "*";

/// Compiles `file`; returns the policy (when no finding is an error) and
/// every finding.
pub fn compile(file: &PolicyFile, source: &Source<'_>) -> (Option<Policy>, Vec<Finding>) {
    let mut c = Compiler {
        source,
        findings: Vec::new(),
        executables: Vec::new(),
    };
    let mut sets = Vec::new();
    let mut files: HashMap<FileKey, Vec<usize>> = HashMap::new();
    let mut paths = Vec::new();
    let mut dirs = BTreeSet::new();
    for (index, (name, set)) in file.weights.iter().enumerate() {
        let at = set.span();
        if index == sensor_common::enforce::MAX_SETS {
            c.error(
                &at,
                format!(
                    "weight set {name:?} is one more than the {} the kernel's tables can tell apart",
                    sensor_common::enforce::MAX_SETS
                ),
                "merge weight sets that share their rules",
            );
        }
        if name == ALL_SETS || name.is_empty() {
            c.error(
                &at,
                format!("weight set name {name:?} is reserved"),
                "choose another name: \"*\" means every set in a rule's weights",
            );
        }
        let set = set.get_ref();
        let mut count = 0;
        for path in &set.paths {
            for (key, file_path) in c.resolve_weight_path(path, &mut dirs) {
                let entry = files.entry(key).or_default();
                if entry.is_empty() {
                    paths.push((key, file_path));
                }
                if !entry.contains(&index) {
                    entry.push(index);
                    count += 1;
                }
            }
        }
        if set.paths.is_empty() {
            c.warning(
                &at,
                format!("weight set {name:?} lists no paths"),
                "add the directories or files of the model to `paths`",
            );
        }
        sets.push(WeightSet {
            name: name.clone(),
            default: set.default.unwrap_or(PolicyAction::Alert),
            paths: set.paths.iter().map(|p| p.get_ref().clone()).collect(),
            files: count,
            globs: set
                .paths
                .iter()
                .map(|p| p.get_ref())
                .filter(|raw| is_glob(raw))
                .filter_map(|raw| {
                    let glob = GlobBuilder::new(raw).literal_separator(true).build().ok()?;
                    Some(glob.compile_matcher())
                })
                .collect(),
        });
    }
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    let rules = file
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| c.rule(i + 1, rule, &names))
        .collect();
    let findings = c.findings;
    let executables = c.executables;
    let failed = findings.iter().any(|f| f.level == Level::Error);
    let policy = (!failed).then(|| Policy {
        mode: file.mode,
        sets,
        rules,
        files,
        paths,
        hash: hex::encode(Sha256::digest(source.text.as_bytes())),
        generation: 0,
        executables,
        directories: dirs.into_iter().collect(),
    });
    (policy, findings)
}

struct Compiler<'s, 'a> {
    source: &'s Source<'a>,
    findings: Vec<Finding>,
    /// Every executable path the rules name, with its identity.
    executables: Vec<(PathBuf, Option<FileKey>)>,
}

impl Compiler<'_, '_> {
    fn push(&mut self, level: Level, span: &std::ops::Range<usize>, message: String, fix: &str) {
        self.findings.push(Finding {
            level,
            location: Some(self.source.locate(span)),
            message,
            fix: fix.to_owned(),
        });
    }

    fn error(&mut self, span: &std::ops::Range<usize>, message: String, fix: &str) {
        self.push(Level::Error, span, message, fix);
    }

    fn warning(&mut self, span: &std::ops::Range<usize>, message: String, fix: &str) {
        self.push(Level::Warning, span, message, fix);
    }

    /// The files a weight-set path names: a directory's regular files,
    /// recursively; a file; or whatever a glob matches. The directories it
    /// covers go into `dirs` (for a glob, every one below its literal
    /// prefix: a file may appear in any).
    fn resolve_weight_path(
        &mut self,
        path: &Spanned<String>,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Vec<(FileKey, PathBuf)> {
        let raw = path.get_ref();
        let at = path.span();
        if !raw.starts_with('/') {
            self.error(
                &at,
                format!("weight path {raw:?} is not absolute"),
                "write the full path, e.g. \"/models/llama\"",
            );
            return Vec::new();
        }
        let mut found = Vec::new();
        if is_glob(raw) {
            let glob = match GlobBuilder::new(raw).literal_separator(true).build() {
                Ok(glob) => glob.compile_matcher(),
                Err(err) => {
                    self.error(
                        &at,
                        format!("weight path {raw:?} is not a valid glob: {err}"),
                        "use `*`, `?`, `[0-9]` or `{a,b}` within path components",
                    );
                    return Vec::new();
                }
            };
            let base = literal_prefix(raw);
            if base.is_dir() {
                dirs.insert(base.clone());
            }
            walk(&base, &mut |p, is_dir| {
                if glob.is_match(p) {
                    collect_files(p, &mut found, dirs);
                    false
                } else {
                    if is_dir {
                        dirs.insert(p.to_path_buf());
                    }
                    true
                }
            });
        } else {
            collect_files(Path::new(raw), &mut found, dirs);
        }
        if found.is_empty() {
            let what = if Path::new(raw).exists() || is_glob(raw) {
                "names no regular file"
            } else {
                "does not exist"
            };
            self.warning(
                &at,
                format!("weight path {raw:?} {what}"),
                "check the path; files that appear later are covered once the policy is loaded again",
            );
        }
        found
    }

    fn rule(&mut self, number: usize, rule: &Spanned<RuleFile>, names: &[&str]) -> Option<Rule> {
        let at = rule.span();
        let location = self.source.locate(&at);
        let r = rule.get_ref();
        let mut ok = true;
        let mut sets = BTreeSet::new();
        if r.weights.is_empty() {
            self.error(
                &at,
                format!("rule {number} names no weight set"),
                "list weight set names in `weights`, or \"*\" for all",
            );
            ok = false;
        }
        for name in &r.weights {
            if name.get_ref() == ALL_SETS {
                sets.extend(0..names.len());
            } else if let Some(i) = names.iter().position(|n| n == name.get_ref()) {
                sets.insert(i);
            } else {
                self.error(
                    &name.span(),
                    format!(
                        "rule {number} names weight set {:?}, which is not defined (defined: {})",
                        name.get_ref(),
                        if names.is_empty() {
                            String::from("none")
                        } else {
                            names.join(", ")
                        }
                    ),
                    "fix the name, or add a [weights.NAME] table",
                );
                ok = false;
            }
        }
        let operations: BTreeSet<Operation> = match &r.operations {
            Some(list) => list.iter().copied().collect(),
            None => Operation::READS.into_iter().collect(),
        };
        if operations.is_empty() {
            self.error(
                &at,
                format!("rule {number} lists no operation"),
                "list some of open, read, mmap, write, or leave `operations` out for every read operation",
            );
            ok = false;
        }
        let subject = self.subject(number, r);
        (ok && subject.is_some()).then(|| Rule {
            number,
            name: r.name.clone(),
            location,
            sets,
            operations,
            subject: subject.unwrap_or_default(),
            action: r.action,
        })
    }

    fn subject(&mut self, number: usize, r: &RuleFile) -> Option<SubjectMatch> {
        let errors_before = self.error_count();
        let pins = self.sha256_pins(number, r);
        let exe = (!r.exe.is_empty()).then(|| self.executables(number, "exe", &r.exe, &pins));
        let parent_exe = (!r.parent_exe.is_empty())
            .then(|| self.executables(number, "parent_exe", &r.parent_exe, &[]));
        let mut uids: BTreeSet<u32> = r.uid.iter().copied().collect();
        for user in &r.user {
            match nix::unistd::User::from_name(user.get_ref()) {
                Ok(Some(u)) => {
                    uids.insert(u.uid.as_raw());
                }
                _ => self.error(
                    &user.span(),
                    format!(
                        "rule {number}: no user named {:?} on this host",
                        user.get_ref()
                    ),
                    "fix the name, or give the numeric id with `uid`",
                ),
            }
        }
        let mut gids: BTreeSet<u32> = r.gid.iter().copied().collect();
        for group in &r.group {
            match nix::unistd::Group::from_name(group.get_ref()) {
                Ok(Some(g)) => {
                    gids.insert(g.gid.as_raw());
                }
                _ => self.error(
                    &group.span(),
                    format!(
                        "rule {number}: no group named {:?} on this host",
                        group.get_ref()
                    ),
                    "fix the name, or give the numeric id with `gid`",
                ),
            }
        }
        for container in &r.container {
            if container.get_ref().trim().is_empty() {
                self.error(
                    &container.span(),
                    format!("rule {number}: an empty container id"),
                    "give a container id or a prefix of one",
                );
            }
        }
        let cgroups = (!r.cgroup.is_empty()).then(|| {
            let mut set = GlobSetBuilder::new();
            for pattern in &r.cgroup {
                match Glob::new(pattern.get_ref()) {
                    Ok(glob) => {
                        set.add(glob);
                    }
                    Err(err) => self.error(
                        &pattern.span(),
                        format!(
                            "rule {number}: cgroup pattern {:?} is not a valid glob: {err}",
                            pattern.get_ref()
                        ),
                        "use `*` (which here also crosses `/`), `?`, `[...]` or `{a,b}`",
                    ),
                }
            }
            let patterns = r.cgroup.iter().map(|p| p.get_ref().clone()).collect();
            (patterns, set.build().unwrap_or_else(|_| GlobSet::empty()))
        });
        if self.error_count() > errors_before {
            return None;
        }
        let names = |list: &[Spanned<String>]| list.iter().map(|p| p.get_ref().clone()).collect();
        Some(SubjectMatch {
            exe,
            exe_names: names(&r.exe),
            parent_exe_names: names(&r.parent_exe),
            parent_exe,
            uids: (!r.uid.is_empty() || !r.user.is_empty()).then_some(uids),
            gids: (!r.gid.is_empty() || !r.group.is_empty()).then_some(gids),
            containers: (!r.container.is_empty())
                .then(|| r.container.iter().map(|c| c.get_ref().clone()).collect()),
            cgroups,
            gpu: r.gpu,
        })
    }

    fn error_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .count()
    }

    /// The `exe_sha256` values, checked for form.
    fn sha256_pins(&mut self, number: usize, r: &RuleFile) -> Vec<String> {
        let mut pins = Vec::new();
        for pin in &r.exe_sha256 {
            let value = pin.get_ref().to_ascii_lowercase();
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                self.error(
                    &pin.span(),
                    format!(
                        "rule {number}: exe_sha256 {:?} is not a SHA-256 digest",
                        pin.get_ref()
                    ),
                    "give 64 hex digits, as `sha256sum` prints them",
                );
            } else {
                pins.push(value);
            }
        }
        if r.exe.is_empty()
            && let Some(first) = r.exe_sha256.first()
        {
            self.error(
                &first.span(),
                format!("rule {number}: exe_sha256 without exe"),
                "exe_sha256 pins the content of the executables named in `exe`: add them",
            );
        }
        pins
    }

    /// Executables by identity; a missing one, or one whose content no pin
    /// matches, is a warning and matches nothing.
    fn executables(
        &mut self,
        number: usize,
        key: &str,
        paths: &[Spanned<String>],
        pins: &[String],
    ) -> Vec<FileKey> {
        let mut keys = Vec::new();
        for path in paths {
            let raw = path.get_ref();
            if !raw.starts_with('/') {
                self.error(
                    &path.span(),
                    format!("rule {number}: {key} {raw:?} is not absolute"),
                    "write the executable's full path, e.g. \"/usr/bin/vllm\"",
                );
                continue;
            }
            self.executables
                .push((PathBuf::from(raw), identity(Path::new(raw))));
            let meta = match fs::metadata(raw) {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => {
                    self.error(
                        &path.span(),
                        format!("rule {number}: {key} {raw:?} is not a regular file"),
                        "name the executable itself",
                    );
                    continue;
                }
                Err(err) => {
                    self.warning(
                        &path.span(),
                        format!("rule {number}: {key} {raw:?} cannot be resolved ({err}); it matches no process"),
                        "install it or fix the path; it is resolved again when the policy is loaded again",
                    );
                    continue;
                }
            };
            if !pins.is_empty() {
                match sha256_of(Path::new(raw)) {
                    Ok(digest) if pins.contains(&digest) => {}
                    Ok(digest) => {
                        self.warning(
                            &path.span(),
                            format!("rule {number}: {key} {raw:?} has SHA-256 {digest}, which no exe_sha256 lists; it matches no process"),
                            "update exe_sha256 after an upgrade, or fix the path",
                        );
                        continue;
                    }
                    Err(err) => {
                        self.warning(
                            &path.span(),
                            format!("rule {number}: cannot hash {key} {raw:?} ({err}); it matches no process"),
                            "check that the agent can read it",
                        );
                        continue;
                    }
                }
            }
            keys.push(key_at(Path::new(raw), &meta));
        }
        keys
    }
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '[', '{'])
}

/// The directories of a glob before its first wildcard component.
fn literal_prefix(pattern: &str) -> PathBuf {
    let mut base = PathBuf::from("/");
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        if is_glob(component) {
            break;
        }
        base.push(component);
    }
    base
}

/// Calls `visit` on every path below `dir` (not following directory
/// links); descends into a directory only while `visit` says so.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, bool) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let descend = visit(&path, is_dir);
        if descend && is_dir {
            walk(&path, visit);
        }
    }
}

/// A file's identity, or every regular file below a directory (links to
/// files followed, as an open follows them; links to directories not).
fn collect_files(path: &Path, out: &mut Vec<(FileKey, PathBuf)>, dirs: &mut BTreeSet<PathBuf>) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    if meta.is_file() {
        out.push((key_at(path, &meta), path.to_path_buf()));
    } else if meta.is_dir() {
        dirs.insert(path.to_path_buf());
        walk(path, &mut |p, is_dir| {
            if is_dir {
                dirs.insert(p.to_path_buf());
            } else if let Ok(m) = fs::metadata(p)
                && m.is_file()
            {
                out.push((key_at(p, &m), p.to_path_buf()));
            }
            true
        });
    }
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests;
