//! The real-loader row: Debian's Python loading a watched safetensors
//! model the way model servers do — one `mmap` of the file, then every
//! tensor read — with the `safetensors` package when it is importable and
//! numpy's memmap otherwise. The script times its own loads (after a
//! warm-up load), so interpreter start-up is not in the figures.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{bench::debian, process};

/// Debian's interpreter, not whatever `python3` is first on PATH (pyenv
/// and virtualenvs would bring their own numpy, or none).
const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import json, sys, time
import numpy as np

def load_numpy(path):
    # safetensors' own layout: 8-byte header length, JSON header, data.
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    # One private mapping of the whole file, as safetensors makes.
    mapped = np.memmap(path, dtype=np.uint8, mode="c")
    start = 8 + header_len
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        tensor = mapped[start + begin:start + end].view(np.uint32)
        total += int(tensor.sum(dtype=np.uint64))
    del mapped
    return total

def load_safetensors(path):
    from safetensors import safe_open
    total = 0
    with safe_open(path, framework="numpy") as f:
        for name in f.keys():
            total += int(f.get_tensor(name).view(np.uint32).sum(dtype=np.uint64))
    return total

try:
    import safetensors  # noqa: F401
    load = load_safetensors
except ImportError:
    load = load_numpy

path, timed = sys.argv[1], int(sys.argv[2])
total = load(path)
times = []
for _ in range(timed):
    start = time.perf_counter_ns()
    again = load(path)
    times.append(time.perf_counter_ns() - start)
    assert again == total, "a timed load read different data"
print(load.__name__, total, *times)
"#;

/// The Python loader, ready to run.
pub struct Loader {
    script: PathBuf,
    /// `load_numpy` or `load_safetensors`, known after the first run.
    pub method: Option<String>,
}

impl Loader {
    /// Writes the script to `run_dir`, installing Debian's numpy when
    /// Debian's Python cannot import it.
    pub fn prepare(run_dir: &Path) -> Result<Self> {
        if !Path::new(PYTHON).is_file() {
            debian::ensure_package("python3")?;
        }
        let numpy = process::output(Command::new(PYTHON).args(["-c", "import numpy"]))?;
        if !numpy.status.success() {
            debian::ensure_package("python3-numpy")?;
        }
        let script = run_dir.join("loader.py");
        std::fs::write(&script, SCRIPT)
            .with_context(|| format!("cannot write {}", script.display()))?;
        Ok(Self {
            script,
            method: None,
        })
    }

    /// One interpreter: a warm-up load of `model`, then `timed` timed
    /// loads; returns their nanoseconds.
    pub fn measure(&mut self, model: &Path, timed: u32) -> Result<Vec<f64>> {
        let out = process::stdout(
            Command::new(PYTHON)
                .arg(&self.script)
                .arg(model)
                .arg(timed.to_string()),
        )?;
        let (method, times) = parse_output(&out)
            .with_context(|| format!("the Python loader printed {:?}", out.trim()))?;
        if times.len() != timed as usize {
            bail!(
                "the Python loader printed {} times for {timed} loads",
                times.len()
            );
        }
        self.method = Some(method);
        Ok(times)
    }
}

/// `<method> <checksum> <ns> <ns> ...`
fn parse_output(out: &str) -> Result<(String, Vec<f64>)> {
    let mut words = out.split_whitespace();
    let method = words.next().context("no method name")?.to_owned();
    words.next().context("no checksum")?;
    let times = words
        .map(|w| w.parse::<u64>().map(|ns| ns as f64))
        .collect::<Result<Vec<_>, _>>()
        .context("a load time is not a number")?;
    if times.is_empty() {
        bail!("no load time");
    }
    Ok((method, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_output() {
        let (method, times) = parse_output("load_numpy 42 123456789 5\n").unwrap();
        assert_eq!(method, "load_numpy");
        assert_eq!(times, [123_456_789.0, 5.0]);
        assert!(parse_output("").is_err());
        assert!(parse_output("load_numpy 42").is_err());
        assert!(parse_output("load_numpy 42 x").is_err());
    }
}
