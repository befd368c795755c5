//! Name matching for the watch set: which file names are weight files (by
//! extension, or by Ollama's content-addressed blob naming) and which paths
//! are GPU device nodes (by `*` glob), plus the expansion of those globs
//! against the file system.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The configured weight-file extensions, normalized once so matching a
/// name costs no allocation.
#[derive(Debug, Clone, Default)]
pub(super) struct Extensions(Vec<String>);

impl Extensions {
    /// Lowercases the extensions and drops a leading dot (`.gguf` and `gguf`
    /// both mean the same thing in a config file); empty ones are ignored.
    pub(super) fn new(raw: &[String]) -> Self {
        let mut exts: Vec<String> = raw
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        exts.sort();
        exts.dedup();
        Self(exts)
    }

    /// Whether `name`'s last extension is one of ours, ignoring ASCII case
    /// (`Model.SafeTensors` matches `safetensors`; `model.safetensors.part`
    /// does not).
    pub(super) fn matches(&self, name: &OsStr) -> bool {
        let Some(ext) = Path::new(name).extension() else {
            return false;
        };
        let ext = ext.as_encoded_bytes();
        self.0
            .iter()
            .any(|want| want.as_bytes().eq_ignore_ascii_case(ext))
    }
}

/// The name of the directory Ollama (and the Hugging Face hub) keep
/// content-addressed blobs in.
const BLOBS_DIR: &str = "blobs";

/// Length of a hex-encoded SHA-256 digest.
const SHA256_HEX_LEN: usize = 64;

impl Extensions {
    /// Whether a regular file called `name` in directory `dir` is a weight
    /// file: its name has one of our extensions, or it is an Ollama blob
    /// ([`is_blob_name`]) directly inside a directory named `blobs`.
    /// Ollama names its blobs by digest only, so the GGUF weights cannot be
    /// told from the small manifest, template and license blobs beside them
    /// by name; all of them are watched.
    pub(super) fn is_weight_file(&self, dir: &Path, name: &OsStr) -> bool {
        self.matches(name) || (is_blob_name(name) && dir.file_name() == Some(OsStr::new(BLOBS_DIR)))
    }
}

/// Whether `name` is an Ollama blob name: `sha256-` (current releases) or
/// `sha256:` (early ones) followed by exactly 64 hex digits. Partial
/// downloads (`sha256-<hex>-partial`, `...-partial-0`) do not match; the
/// finished blob is renamed into place and picked up then.
pub(super) fn is_blob_name(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    let Some(digest) = name
        .strip_prefix(b"sha256-")
        .or_else(|| name.strip_prefix(b"sha256:"))
    else {
        return false;
    };
    digest.len() == SHA256_HEX_LEN && digest.iter().all(u8::is_ascii_hexdigit)
}

/// Whether `name` matches `pattern`, where `*` matches any run of bytes
/// (including none) and every other byte matches itself.
pub(super) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // Greedy matching with a single backtrack point: the classic linear
    // algorithm for `*`-only globs, no recursion.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A GPU device pattern such as `/dev/nvidia*` or `/dev/dri/renderD*`.
#[derive(Debug, Clone)]
pub(super) struct GpuPattern {
    raw: String,
    /// The components after the root directory.
    components: Vec<OsString>,
}

impl GpuPattern {
    /// Parses an absolute pattern; `None` for a relative one, which would
    /// silently depend on the agent's working directory.
    pub(super) fn parse(raw: &str) -> Option<Self> {
        let path = Path::new(raw);
        if !path.is_absolute() {
            return None;
        }
        let components = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        Some(Self {
            raw: raw.to_owned(),
            components,
        })
    }

    pub(super) fn as_str(&self) -> &str {
        &self.raw
    }

    /// The directory to watch for devices appearing or vanishing: the
    /// pattern's parent, when the last component holds the only wildcard.
    /// Patterns with a wildcard higher up are only re-resolved by a rescan.
    pub(super) fn watch_dir(&self) -> Option<PathBuf> {
        let (_, parents) = self.components.split_last()?;
        if parents.iter().any(|c| has_wildcard(c)) {
            return None;
        }
        let mut dir = PathBuf::from("/");
        dir.extend(parents);
        Some(dir)
    }

    /// Whether a directory entry called `name` could match the pattern's
    /// last component (used to filter events in the watched parent).
    pub(super) fn matches_last(&self, name: &OsStr) -> bool {
        self.components
            .last()
            .is_some_and(|last| glob_match(last.as_encoded_bytes(), name.as_encoded_bytes()))
    }

    /// The paths currently matching the pattern, sorted. Literal components
    /// are joined without checking them, so a result may not exist: the
    /// caller stats each one anyway.
    pub(super) fn expand(&self) -> Vec<PathBuf> {
        let mut current = vec![PathBuf::from("/")];
        for component in &self.components {
            let glob = component.as_encoded_bytes();
            if !has_wildcard(component) {
                for path in &mut current {
                    path.push(component);
                }
                continue;
            }
            let mut next = Vec::new();
            for dir in &current {
                // An unreadable or missing directory simply matches nothing.
                let Ok(entries) = fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if glob_match(glob, name.as_encoded_bytes()) {
                        next.push(dir.join(name));
                    }
                }
            }
            next.sort();
            current = next;
        }
        current
    }
}

fn has_wildcard(component: &OsStr) -> bool {
    component.as_encoded_bytes().contains(&b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exts(list: &[&str]) -> Extensions {
        Extensions::new(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn extensions_match_last_extension_ignoring_case() {
        let e = exts(&["safetensors", ".GGUF", "", "  bin "]);
        assert!(e.matches(OsStr::new("model.safetensors")));
        assert!(e.matches(OsStr::new("Model.SafeTensors")));
        assert!(e.matches(OsStr::new("llama.Q4.gguf")));
        assert!(e.matches(OsStr::new("pytorch_model.BIN")));
        assert!(!e.matches(OsStr::new("model.safetensors.part")));
        assert!(!e.matches(OsStr::new("safetensors")));
        assert!(!e.matches(OsStr::new(".safetensors")));
        assert!(!e.matches(OsStr::new("model.")));
        assert!(!e.matches(OsStr::new("model.json")));
    }

    #[test]
    fn no_extensions_match_nothing() {
        assert!(!exts(&[]).matches(OsStr::new("a.safetensors")));
        assert!(!exts(&[".", ""]).matches(OsStr::new("a.")));
    }

    #[test]
    fn ollama_blob_names_need_the_digest_form() {
        let hex = "a".repeat(63) + "f";
        assert!(is_blob_name(OsStr::new(&format!("sha256-{hex}"))));
        assert!(is_blob_name(OsStr::new(&format!("sha256:{hex}"))));
        assert!(is_blob_name(OsStr::new(&format!(
            "sha256-{}",
            hex.to_ascii_uppercase()
        ))));
        assert!(!is_blob_name(OsStr::new(&format!("sha256-{hex}-partial"))));
        assert!(!is_blob_name(OsStr::new(&format!(
            "sha256-{hex}-partial-0"
        ))));
        assert!(!is_blob_name(OsStr::new(&format!("sha256-{}", &hex[1..]))));
        assert!(!is_blob_name(OsStr::new(&format!("sha256-{hex}0"))));
        assert!(!is_blob_name(OsStr::new(&format!("sha256-{}g", &hex[1..]))));
        assert!(!is_blob_name(OsStr::new(&format!("sha512-{hex}"))));
        // A Hugging Face blob is the bare digest: not this rule's business.
        assert!(!is_blob_name(OsStr::new(&hex)));
    }

    #[test]
    fn ollama_blobs_count_only_inside_a_blobs_directory() {
        let e = exts(&["gguf"]);
        let blob = format!("sha256-{}", "0123456789abcdef".repeat(4));
        let blob = OsStr::new(&blob);
        assert!(e.is_weight_file(Path::new("/usr/share/ollama/.ollama/models/blobs"), blob));
        assert!(e.is_weight_file(Path::new("blobs"), blob));
        assert!(!e.is_weight_file(Path::new("/var/lib/ollama/models"), blob));
        assert!(!e.is_weight_file(Path::new("/var/lib/ollama/blobs/sub"), blob));
        assert!(!e.is_weight_file(Path::new("/"), blob));
        // Extensions still apply in any directory, blobs included.
        assert!(e.is_weight_file(Path::new("/m/blobs"), OsStr::new("x.gguf")));
        assert!(e.is_weight_file(Path::new("/m"), OsStr::new("x.GGUF")));
        assert!(!e.is_weight_file(Path::new("/m/blobs"), OsStr::new("config.json")));
        // With no extensions configured, the Ollama rule still holds.
        assert!(exts(&[]).is_weight_file(Path::new("/m/blobs"), blob));
    }

    #[test]
    fn glob_star_semantics() {
        assert!(glob_match(b"nvidia*", b"nvidia0"));
        assert!(glob_match(b"nvidia*", b"nvidia"));
        assert!(glob_match(b"nvidia*", b"nvidia-uvm-tools"));
        assert!(!glob_match(b"nvidia*", b"nvidi"));
        assert!(!glob_match(b"nvidia*", b"xnvidia0"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(glob_match(b"a*b*c", b"abc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"*d*", b"renderD128d"));
        assert!(glob_match(b"renderD*", b"renderD128"));
        assert!(!glob_match(b"renderD*", b"card0"));
        assert!(glob_match(b"exact", b"exact"));
        assert!(!glob_match(b"exact", b"exactly"));
        assert!(glob_match(b"**x", b"abx"));
    }

    #[test]
    fn relative_patterns_are_rejected() {
        assert!(GpuPattern::parse("dev/nvidia*").is_none());
        assert!(GpuPattern::parse("").is_none());
        assert!(GpuPattern::parse("/dev/nvidia*").is_some());
    }

    #[test]
    fn watch_dir_only_when_the_wildcard_is_last() {
        let p = |s| GpuPattern::parse(s).map(|p| p.watch_dir());
        assert_eq!(p("/dev/nvidia*"), Some(Some(PathBuf::from("/dev"))));
        assert_eq!(
            p("/dev/dri/renderD*"),
            Some(Some(PathBuf::from("/dev/dri")))
        );
        assert_eq!(p("/dev/nvidiactl"), Some(Some(PathBuf::from("/dev"))));
        assert_eq!(p("/dev/*/renderD*"), Some(None));
        assert_eq!(p("/"), Some(None));
    }

    #[test]
    fn expand_matches_within_one_component() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let base = tmp.path();
        fs::create_dir_all(base.join("dri/sub"))?;
        for name in ["nvidia0", "nvidia1", "nvidiactl", "other", "dri/renderD128"] {
            fs::write(base.join(name), b"")?;
        }
        fs::write(base.join("dri/sub/renderD9"), b"")?;
        let glob = |rel: &str| {
            let raw = format!("{}/{rel}", base.display());
            GpuPattern::parse(&raw)
                .map(|p| p.expand())
                .unwrap_or_default()
        };
        assert_eq!(
            glob("nvidia*"),
            vec![
                base.join("nvidia0"),
                base.join("nvidia1"),
                base.join("nvidiactl")
            ]
        );
        // `*` does not cross a `/`.
        assert_eq!(glob("dri/renderD*"), vec![base.join("dri/renderD128")]);
        assert_eq!(glob("*/renderD*"), vec![base.join("dri/renderD128")]);
        assert_eq!(glob("dri/*/renderD*"), vec![base.join("dri/sub/renderD9")]);
        assert!(glob("missing/nvidia*").is_empty());
        assert!(glob("amdgpu*").is_empty());
        // A literal pattern expands to itself; the caller's stat decides.
        assert_eq!(glob("nvidiactl"), vec![base.join("nvidiactl")]);
        Ok(())
    }

    #[test]
    fn matches_last_checks_the_final_component() {
        let p = GpuPattern::parse("/dev/dri/renderD*");
        assert!(
            p.as_ref()
                .is_some_and(|p| p.matches_last(OsStr::new("renderD129")))
        );
        assert!(
            !p.as_ref()
                .is_some_and(|p| p.matches_last(OsStr::new("card0")))
        );
    }
}
