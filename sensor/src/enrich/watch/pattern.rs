//! Name matching for the watch set: which file names are weight files (by
//! extension, or by Ollama's content-addressed blob naming) and which paths
//! are GPU device nodes (by glob, one component at a time, with `globset`),
//! plus the expansion of those globs against the file system.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

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

    /// The extensions, lowercased, without their dot.
    pub(super) fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
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

/// One component of a GPU device pattern: a literal name, or a glob
/// (globset syntax: `*`, `?`, `[...]`, `{a,b}`) matched within the
/// component, never across a `/`.
#[derive(Debug, Clone)]
enum Part {
    Literal(OsString),
    Glob(GlobMatcher),
}

impl Part {
    fn parse(component: &OsStr) -> Result<Self, PatternError> {
        let text = component.to_string_lossy();
        if !is_glob(&text) {
            return Ok(Part::Literal(component.to_os_string()));
        }
        let glob = GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
            .map_err(PatternError::Glob)?;
        Ok(Part::Glob(glob.compile_matcher()))
    }

    fn matches(&self, name: &OsStr) -> bool {
        match self {
            Part::Literal(literal) => literal == name,
            Part::Glob(glob) => glob.is_match(name),
        }
    }
}

/// Whether a pattern component has glob syntax in it.
fn is_glob(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

/// Why a GPU device pattern was refused.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("it is not an absolute path (write it as /dev/...)")]
    Relative,
    #[error("it is not a valid glob")]
    Glob(#[source] globset::Error),
}

/// A GPU device pattern such as `/dev/nvidia*` or `/dev/dri/renderD*`.
#[derive(Debug, Clone)]
pub(super) struct GpuPattern {
    raw: String,
    /// The components after the root directory.
    parts: Vec<Part>,
}

impl GpuPattern {
    /// Parses an absolute pattern; a relative one would silently depend on
    /// the agent's working directory.
    pub(super) fn parse(raw: &str) -> Result<Self, PatternError> {
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(PatternError::Relative);
        }
        let parts = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(Part::parse(part)),
                Component::ParentDir => Some(Ok(Part::Literal(OsString::from("..")))),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            raw: raw.to_owned(),
            parts,
        })
    }

    pub(super) fn as_str(&self) -> &str {
        &self.raw
    }

    /// The directory to watch for devices appearing or vanishing: the
    /// pattern's parent, when the last component holds the only wildcard.
    /// Patterns with a wildcard higher up are only re-resolved by a rescan.
    pub(super) fn watch_dir(&self) -> Option<PathBuf> {
        let (_, parents) = self.parts.split_last()?;
        let mut dir = PathBuf::from("/");
        for part in parents {
            match part {
                Part::Literal(name) => dir.push(name),
                Part::Glob(_) => return None,
            }
        }
        Some(dir)
    }

    /// Whether a directory entry called `name` could match the pattern's
    /// last component (used to filter events in the watched parent).
    pub(super) fn matches_last(&self, name: &OsStr) -> bool {
        self.parts.last().is_some_and(|last| last.matches(name))
    }

    /// The paths currently matching the pattern, sorted. Literal components
    /// are joined without checking them, so a result may not exist: the
    /// caller stats each one anyway.
    pub(super) fn expand(&self) -> Vec<PathBuf> {
        let mut current = vec![PathBuf::from("/")];
        for part in &self.parts {
            if let Part::Literal(name) = part {
                for path in &mut current {
                    path.push(name);
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
                    if part.matches(&name) {
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
    fn glob_semantics_within_a_component() {
        let m = |pattern: &str, name: &str| {
            Part::parse(OsStr::new(pattern))
                .expect("glob")
                .matches(OsStr::new(name))
        };
        assert!(m("nvidia*", "nvidia0"));
        assert!(m("nvidia*", "nvidia"));
        assert!(m("nvidia*", "nvidia-uvm-tools"));
        assert!(!m("nvidia*", "nvidi"));
        assert!(!m("nvidia*", "xnvidia0"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("*d*", "renderD128d"));
        assert!(m("renderD*", "renderD128"));
        assert!(!m("renderD*", "card0"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("nvidia[0-9]", "nvidia7"));
        assert!(!m("nvidia[0-9]", "nvidiactl"));
        assert!(m("{card,renderD}*", "card1"));
    }

    #[test]
    fn bad_globs_are_refused() {
        assert!(matches!(
            GpuPattern::parse("/dev/nvidia[0-9"),
            Err(PatternError::Glob(_))
        ));
    }

    #[test]
    fn relative_patterns_are_rejected() {
        assert!(matches!(
            GpuPattern::parse("dev/nvidia*"),
            Err(PatternError::Relative)
        ));
        assert!(GpuPattern::parse("").is_err());
        assert!(GpuPattern::parse("/dev/nvidia*").is_ok());
    }

    #[test]
    fn watch_dir_only_when_the_wildcard_is_last() {
        let p = |s| GpuPattern::parse(s).ok().map(|p| p.watch_dir());
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
        let p = GpuPattern::parse("/dev/dri/renderD*").ok();
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
