//! Text from the kernel or `/proc` (paths, executables, arguments) kept as
//! the bytes it was: Linux paths and arguments are bytes, and two names
//! that differ only in invalid UTF-8 (`x\xff.gguf`, `x\xfe.gguf`) are two
//! different files. Encoders write a readable form (invalid bytes become
//! U+FFFD) and, when the two differ, a faithful escaped form beside it.

use std::{borrow::Cow, os::unix::ffi::OsStrExt, path::Path};

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Text(Vec<u8>);

impl Text {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The readable form: invalid UTF-8 replaced by U+FFFD.
    pub fn to_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// The text, when it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The faithful form, only when the text is not valid UTF-8: valid
    /// characters as they are, `\` as `\\`, and each invalid byte as
    /// `\xNN`, so the original bytes can be recovered exactly.
    pub fn escaped(&self) -> Option<String> {
        self.as_str().is_none().then(|| self.escape())
    }

    /// The escaped form whether or not it is needed (a list whose every
    /// element must be unescaped alike).
    pub fn escape(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 8);
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    out.push_str("\\\\");
                } else {
                    out.push(c);
                }
            }
            for byte in chunk.invalid() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
        out
    }

    /// Reverses [`Text::escaped`]; `None` for a malformed escape.
    pub fn unescape(escaped: &str) -> Option<Self> {
        let mut out = Vec::with_capacity(escaped.len());
        let mut rest = escaped.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            if first != b'\\' {
                out.push(first);
                rest = tail;
                continue;
            }
            match tail {
                [b'\\', more @ ..] => {
                    out.push(b'\\');
                    rest = more;
                }
                [b'x', hi, lo, more @ ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                    let hex = std::str::from_utf8(&[*hi, *lo]).ok()?.to_owned();
                    out.push(u8::from_str_radix(&hex, 16).ok()?);
                    rest = more;
                }
                _ => return None,
            }
        }
        Some(Self(out))
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.escaped() {
            Some(escaped) => write!(f, "{escaped:?}"),
            None => write!(f, "{:?}", self.to_lossy()),
        }
    }
}

impl From<Vec<u8>> for Text {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Text {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl From<&Path> for Text {
    fn from(path: &Path) -> Self {
        Self(path.as_os_str().as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_utf8_has_no_escaped_form() {
        let t = Text::from("/models/ünïcode\\name.gguf");
        assert_eq!(t.escaped(), None);
        assert_eq!(t.to_lossy(), "/models/ünïcode\\name.gguf");
    }

    #[test]
    fn invalid_bytes_stay_distinct_and_round_trip() {
        let ff = Text::from(b"x\xff.gguf".as_slice());
        let fe = Text::from(b"x\xfe.gguf".as_slice());
        // The readable forms collide; the escaped forms do not.
        assert_eq!(ff.to_lossy(), fe.to_lossy());
        assert_eq!(ff.escaped().as_deref(), Some("x\\xff.gguf"));
        assert_eq!(fe.escaped().as_deref(), Some("x\\xfe.gguf"));
        let tricky = Text::from(b"a\\xff\xc3(\\".as_slice());
        let escaped = tricky.escaped().expect("invalid utf-8");
        assert_eq!(escaped, "a\\\\xff\\xc3(\\\\");
        assert_eq!(Text::unescape(&escaped), Some(tricky));
        assert_eq!(Text::unescape("bad\\q"), None);
        assert_eq!(Text::unescape("short\\x4"), None);
        assert_eq!(Text::unescape("sign\\x+f"), None);
        // A list escaped alike: valid elements double their backslashes.
        let valid = Text::from("a\\x41");
        assert_eq!(Text::unescape(&valid.escape()), Some(valid));
    }
}
