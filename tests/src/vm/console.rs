//! Reading the guest's serial console: cleaning what the firmware and the
//! tty add, and finding the marker lines `/init` and `ww-emit` print.
//!
//! Everything the guest reports travels on that one console, so each
//! report is a line of its own that a test's output is unlikely to hold:
//!
//! - `WW-VM-INIT: <uptime>`: `/init` started, `<uptime>` seconds after boot;
//! - `WW-VM-WARN: <text>`: `/init` could not set something up (a mount);
//! - `WW-VM-BEGIN <name>` ... `WW-VM-END <name>`: a section `ww-emit`
//!   printed (a file or a command's output);
//! - `WW-VM-EXIT: <status>`: the test script's exit status, just before
//!   `/init` powers off.

use std::time::Duration;

pub const INIT: &str = "WW-VM-INIT: ";
pub const WARN: &str = "WW-VM-WARN: ";
pub const BEGIN: &str = "WW-VM-BEGIN ";
pub const END: &str = "WW-VM-END ";
pub const EXIT: &str = "WW-VM-EXIT: ";

/// The console's bytes as text: invalid UTF-8 replaced, terminal escape
/// sequences (SeaBIOS clears the screen, so the guest's first line
/// starts with `ESC c ESC [ ? 7 l ESC [ 2 J`) and the carriage returns the
/// tty adds before each newline removed.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => match chars.next() {
                // CSI: parameter and intermediate bytes, then a final byte.
                Some('[') => {
                    while chars
                        .next_if(|c| ('\u{20}'..='\u{3f}').contains(c))
                        .is_some()
                    {}
                    chars.next_if(|c| ('\u{40}'..='\u{7e}').contains(c));
                }
                // OSC: up to BEL or ST (`ESC \`).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // Other escapes: intermediate bytes, then one final byte.
                Some(c) if ('\u{20}'..='\u{2f}').contains(&c) => {
                    while chars
                        .next_if(|c| ('\u{20}'..='\u{2f}').contains(c))
                        .is_some()
                    {}
                    chars.next();
                }
                Some(_) | None => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// The value after the last line starting with `marker`.
fn last_value<'a>(console: &'a str, marker: &str) -> Option<&'a str> {
    console
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(marker))
        .map(str::trim)
}

/// The test script's exit status, from the last `WW-VM-EXIT:` line.
pub fn exit_status(console: &str) -> Option<i32> {
    last_value(console, EXIT)?.parse().ok()
}

/// How long after boot `/init` started (the guest's uptime then).
pub fn boot_time(console: &str) -> Option<Duration> {
    let seconds: f64 = last_value(console, INIT)?.parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// Every `WW-VM-WARN:` line's text, in order.
pub fn warnings(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|line| line.strip_prefix(WARN))
        .map(|text| text.trim().to_owned())
        .collect()
}

/// Every complete section, in order: `(name, text)`. `ww-emit` prints a
/// newline of its own before the end marker (so that the marker starts a
/// line even after text without a final newline); that one is not part of
/// the text. A section without its end marker (the guest died while
/// printing it) is left out.
pub fn sections(console: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut open: Option<(&str, Vec<&str>)> = None;
    for line in console.lines() {
        if let Some(name) = line.strip_prefix(BEGIN) {
            open = Some((name.trim(), Vec::new()));
            continue;
        }
        if let Some(name) = line.strip_prefix(END)
            && let Some((open_name, lines)) = &open
            && *open_name == name.trim()
        {
            found.push(((*open_name).to_owned(), lines.join("\n")));
            open = None;
            continue;
        }
        if let Some((_, lines)) = &mut open {
            lines.push(line);
        }
    }
    found
}

/// The last `lines` lines of the console, for error messages.
pub fn tail(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU's serial port really carries at the start of a run.
    const RAW: &[u8] = b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n\
        Booting from ROM...\r\n\
        \x1bc\x1b[?7l\x1b[2JWW-VM-INIT: 1.53\r\n\
        WW-VM-BEGIN lsm\r\nlockdown,capability,bpf\r\n\r\nWW-VM-END lsm\r\n\
        WW-VM-BEGIN partial\r\nno newline\r\nWW-VM-END partial\r\n\
        WW-VM-WARN: cannot mount debugfs on /sys/kernel/debug\r\n\
        WW-VM-EXIT: 3\r\n[    6.464136] reboot: Power down\r\n";

    #[test]
    fn cleaning_drops_escapes_and_carriage_returns() {
        let text = clean(RAW);
        assert!(text.starts_with("SeaBIOS (version"), "{text:?}");
        assert!(text.contains("\nWW-VM-INIT: 1.53\n"), "{text:?}");
        assert!(!text.contains(['\r', '\u{1b}']), "{text:?}");
        assert_eq!(clean(b"a\x1b]0;title\x07b\x1b]2;t\x1b\\c\x1b(Bd"), "abcd");
        assert_eq!(clean(b"tail\x1b"), "tail");
        assert_eq!(clean(b"\xffok"), "\u{fffd}ok");
    }

    #[test]
    fn reads_the_markers() {
        let text = clean(RAW);
        assert_eq!(exit_status(&text), Some(3));
        assert_eq!(boot_time(&text), Some(Duration::from_millis(1530)));
        assert_eq!(
            warnings(&text),
            ["cannot mount debugfs on /sys/kernel/debug"]
        );
        assert_eq!(
            sections(&text),
            [
                ("lsm".to_owned(), "lockdown,capability,bpf\n".to_owned()),
                ("partial".to_owned(), "no newline".to_owned()),
            ]
        );
    }

    #[test]
    fn the_last_exit_marker_counts_and_a_missing_one_is_none() {
        assert_eq!(exit_status("WW-VM-EXIT: 0\nWW-VM-EXIT: 1\n"), Some(1));
        assert_eq!(exit_status("WW-VM-EXIT: 137"), Some(137));
        assert_eq!(exit_status("Kernel panic - not syncing\n"), None);
        assert_eq!(exit_status("WW-VM-EXIT: x\n"), None);
        assert_eq!(boot_time("no init\n"), None);
    }

    #[test]
    fn sections_keep_empty_text_and_drop_unterminated_ones() {
        let text = "WW-VM-BEGIN empty\n\nWW-VM-END empty\n\
                    WW-VM-BEGIN a\nline\nWW-VM-END b\nmore\nWW-VM-END a\n\
                    WW-VM-BEGIN cut\nhalf a";
        assert_eq!(
            sections(text),
            [
                ("empty".to_owned(), String::new()),
                ("a".to_owned(), "line\nWW-VM-END b\nmore".to_owned()),
            ]
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\n", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
