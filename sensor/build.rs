//! Builds the kernel programs (`sensor-ebpf`) for the BPF target with the
//! nightly toolchain and leaves the object in `OUT_DIR`, where `src/ebpf.rs`
//! embeds it. `AYA_BUILD_SKIP=1` skips the build (for `cargo clippy` and
//! unit tests); the binary then carries an empty object and refuses to run.

use std::{env, fs, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?);
    // The eBPF crate depends on the shared types; changes there must
    // rebuild the object too.
    println!("cargo:rerun-if-changed=../sensor-common/src");
    let object = out_dir.join("weightwarden");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip && !object.exists() {
        fs::write(&object, [])?;
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sensor-ebpf",
            root_dir: "../sensor-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
