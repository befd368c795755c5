//! `weightwarden doctor`: what this host offers the sensor, found by really
//! trying (loading and attaching each hook type), which tier `run` would
//! use, and the fix for anything missing.

use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{FEntry, KProbe, Lsm, RawTracePoint, TracePoint},
};
use serde::Serialize;

use crate::kernel::{
    btf::{KernelOffsets, VMLINUX_BTF},
    loader::load_program,
    object as ebpf,
    preflight::{self, BPFFS, SECURITYFS, TRACEFS},
    programs::{Attach, TRACEPOINT_TIER},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Missing,
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// `run` cannot work without this.
    pub required: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    pub checks: Vec<Check>,
    /// The hook tier `run` would use, if any.
    pub tier: Option<&'static str>,
    pub can_run: bool,
}

fn check(name: &'static str, required: bool, result: Result<String, (String, String)>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            status: Status::Ok,
            detail,
            fix: None,
            required,
        },
        Err((detail, fix)) => Check {
            name,
            status: Status::Missing,
            detail,
            fix: Some(fix),
            required,
        },
    }
}

fn skipped(name: &'static str, required: bool, why: &str) -> Check {
    Check {
        name,
        status: Status::Skipped,
        detail: why.to_string(),
        fix: Some(String::from("run `weightwarden doctor` as root")),
        required,
    }
}

/// Runs every check.
pub fn diagnose() -> Report {
    let kernel = preflight::kernel_release();
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    checks.push(check(
        "privileges",
        true,
        if root {
            Ok(String::from("running as root"))
        } else {
            Err((
                String::from("not root"),
                String::from(
                    "run as root: loading eBPF needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN",
                ),
            ))
        },
    ));
    checks.push(check(
        "kernel version",
        true,
        match preflight::kernel_version(&kernel) {
            Some(v) if v >= (5, 11) => Ok(format!(
                "{kernel} (BTF tracepoints with bpf_get_current_task_btf need 5.11+)"
            )),
            Some(_) => Err((
                format!("{kernel} is older than 5.11"),
                String::from("upgrade to Linux 5.11 or newer"),
            )),
            None => Err((
                format!("cannot parse {kernel:?}"),
                String::from("report this kernel release string"),
            )),
        },
    ));
    let offsets = KernelOffsets::from_file(Path::new(VMLINUX_BTF));
    checks.push(check(
        "BTF",
        true,
        match &offsets {
            Ok(o) => Ok(format!(
                "{VMLINUX_BTF}: {} structure offsets resolved",
                o.globals.len()
            )),
            Err(err) => Err((
                err.to_string(),
                String::from("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
            )),
        },
    ));
    for (name, fstype, path, required) in [
        ("tracefs", "tracefs", TRACEFS, true),
        ("bpffs", "bpf", BPFFS, false),
        ("securityfs", "securityfs", SECURITYFS, false),
    ] {
        let mounted = preflight::is_mounted(path)
            || (name == "tracefs" && Path::new(TRACEFS).join("events").exists());
        checks.push(check(
            name,
            required,
            if mounted {
                Ok(format!("mounted on {path}"))
            } else {
                Err((
                    format!("not mounted on {path}"),
                    format!(
                        "mount -t {fstype} none {path} (run mounts tracefs itself when it can)"
                    ),
                ))
            },
        ));
    }
    let lsms = std::fs::read_to_string(Path::new(SECURITYFS).join("lsm")).unwrap_or_default();
    checks.push(check(
        "BPF LSM in boot list",
        false,
        if lsms.split(',').any(|l| l.trim() == "bpf") {
            Ok(format!("active LSMs: {}", lsms.trim()))
        } else {
            Err((
                format!(
                    "active LSMs: {}",
                    if lsms.is_empty() {
                        "unknown (securityfs not mounted?)"
                    } else {
                        lsms.trim()
                    }
                ),
                String::from("add `bpf` to the kernel's lsm= boot parameter to enable deny mode"),
            ))
        },
    ));

    let mut tracepoint_ok = false;
    let mut ringbuf_ok = false;
    match (&offsets, root) {
        (_, false) => {
            for name in [
                "ring buffer",
                "hook: tracepoint",
                "hook: raw tracepoint",
                "hook: fentry",
                "hook: BPF LSM",
                "hook: kprobe",
            ] {
                checks.push(skipped(
                    name,
                    name != "hook: fentry" && name != "hook: BPF LSM" && name != "hook: kprobe",
                    "needs root to load programs",
                ));
            }
        }
        (Err(_), true) => {
            checks.push(skipped(
                "hook types",
                true,
                "need BTF offsets to load the programs",
            ));
        }
        (Ok(offsets), true) => {
            let loaded = load_object(offsets);
            ringbuf_ok = loaded.is_ok();
            checks.push(check(
                "ring buffer",
                true,
                match &loaded {
                    Ok(_) => Ok(String::from("BPF_MAP_TYPE_RINGBUF created")),
                    Err(e) => Err((e.clone(), String::from("use Linux 5.8+ with BPF enabled"))),
                },
            ));
            if let Ok(mut ebpf) = loaded {
                let btf = Btf::from_sys_fs().ok();
                let tp = try_tracepoint(&mut ebpf);
                tracepoint_ok = tp.is_ok();
                checks.push(check(
                    "hook: tracepoint",
                    true,
                    tp.map_err(|e| {
                        (
                            e,
                            String::from("mount tracefs; check kernel.unprivileged_bpf/lockdown"),
                        )
                    }),
                ));
                checks.push(check(
                    "hook: raw tracepoint",
                    true,
                    try_raw_tracepoint(&mut ebpf)
                        .map_err(|e| (e, String::from("needs Linux 4.17+"))),
                ));
                // After the two above, which load ww_sched_exit and ww_sched_fork.
                let tier = match btf.as_ref() {
                    Some(btf) => try_tracepoint_tier(&mut ebpf, btf),
                    None => Err(String::from("cannot read the kernel's BTF")),
                };
                tracepoint_ok &= tier.is_ok();
                checks.push(check(
                    "tracepoint tier",
                    true,
                    tier.map_err(|e| {
                        (
                            e,
                            String::from(
                                "needs Linux 5.11+ with CONFIG_DEBUG_INFO_BTF=y (BTF tracepoints on \
                                 sys_enter/sys_exit); `weightwarden run` prints the verifier's message",
                            ),
                        )
                    }),
                ));
                checks.push(check("hook: fentry", false, try_fentry(&mut ebpf, btf.as_ref()).map_err(|e| (e, String::from("needs Linux 5.5+ with BPF trampolines; lockdown or a restrictive LSM can refuse it")))));
                checks.push(check(
                    "hook: BPF LSM",
                    false,
                    try_lsm(&mut ebpf, btf.as_ref()).map_err(|e| {
                        (
                            e,
                            String::from("needs CONFIG_BPF_LSM=y and `bpf` in the lsm= boot list"),
                        )
                    }),
                ));
                checks.push(check(
                    "hook: kprobe",
                    false,
                    try_kprobe(&mut ebpf).map_err(|e| (e, String::from("needs CONFIG_KPROBES=y"))),
                ));
            }
        }
    }
    let required_ok = checks
        .iter()
        .filter(|c| c.required)
        .all(|c| c.status == Status::Ok || (c.name == "tracefs" && root));
    let can_run = required_ok && tracepoint_ok && ringbuf_ok;
    Report {
        kernel,
        checks,
        tier: can_run.then_some("tracepoint"),
        can_run,
    }
}

fn load_object(offsets: &KernelOffsets) -> Result<Ebpf, String> {
    if ebpf::OBJECT.is_empty() {
        return Err(String::from(
            "this binary carries no eBPF object (built with AYA_BUILD_SKIP=1)",
        ));
    }
    let mut loader = EbpfLoader::new();
    for (name, value) in &offsets.globals {
        loader.override_global(name, value, true);
    }
    // Small maps: this is a probe, not the sensor.
    loader
        .map_max_entries(sensor_common::map_name::EVENTS, 4096)
        .load(ebpf::OBJECT)
        .map_err(|e| format!("cannot load the eBPF object: {e}"))
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("the object has no program {name}"))?;
    p.try_into().map_err(|e| format!("{name}: {e}"))
}

fn try_tracepoint(ebpf: &mut Ebpf) -> Result<String, String> {
    let p: &mut TracePoint = program(ebpf, "ww_sched_exit")?;
    p.load().map_err(|e| format!("load refused: {e}"))?;
    let link = p
        .attach("sched", "sched_process_exit")
        .map_err(|e| format!("attach refused: {e}"))?;
    p.detach(link).map_err(|e| format!("detach failed: {e}"))?;
    Ok(String::from("loaded and attached sched/sched_process_exit"))
}

/// Loads every program `run` uses (the verifier sees each one) and checks
/// that every classic tracepoint it attaches to exists.
fn try_tracepoint_tier(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, String> {
    let mut missing = Vec::new();
    for spec in TRACEPOINT_TIER {
        let probed = matches!(spec.name, "ww_sched_exit" | "ww_sched_fork");
        if !probed {
            load_program(ebpf, spec.name, &spec.attach[0], btf).map_err(|e| e.to_string())?;
        }
        for attach in spec.attach {
            if let Attach::TracePoint(category, name) = attach
                && !Path::new(TRACEFS)
                    .join("events")
                    .join(category)
                    .join(name)
                    .exists()
            {
                missing.push(format!("{category}/{name}"));
            }
        }
    }
    if missing.is_empty() {
        Ok(format!(
            "all {} programs pass the verifier; every attach point exists",
            TRACEPOINT_TIER.len()
        ))
    } else {
        Err(format!("tracepoints missing: {}", missing.join(", ")))
    }
}

fn try_raw_tracepoint(ebpf: &mut Ebpf) -> Result<String, String> {
    let p: &mut RawTracePoint = program(ebpf, "ww_sched_fork")?;
    p.load().map_err(|e| format!("load refused: {e}"))?;
    let link = p
        .attach("sched_process_fork")
        .map_err(|e| format!("attach refused: {e}"))?;
    p.detach(link).map_err(|e| format!("detach failed: {e}"))?;
    Ok(String::from("loaded and attached sched_process_fork"))
}

fn try_fentry(ebpf: &mut Ebpf, btf: Option<&Btf>) -> Result<String, String> {
    let btf = btf.ok_or_else(|| String::from("no kernel BTF"))?;
    let p: &mut FEntry = program(ebpf, "ww_probe_fentry")?;
    p.load("vfs_read", btf)
        .map_err(|e| format!("load refused: {e}"))?;
    let link = p.attach().map_err(|e| format!("attach refused: {e}"))?;
    p.detach(link).map_err(|e| format!("detach failed: {e}"))?;
    Ok(String::from("loaded and attached fentry/vfs_read"))
}

fn try_lsm(ebpf: &mut Ebpf, btf: Option<&Btf>) -> Result<String, String> {
    let btf = btf.ok_or_else(|| String::from("no kernel BTF"))?;
    let p: &mut Lsm = program(ebpf, "ww_probe_lsm")?;
    p.load("file_open", btf)
        .map_err(|e| format!("load refused: {e}"))?;
    let link = p.attach().map_err(|e| format!("attach refused: {e}"))?;
    p.detach(link).map_err(|e| format!("detach failed: {e}"))?;
    Ok(String::from("loaded and attached lsm/file_open"))
}

fn try_kprobe(ebpf: &mut Ebpf) -> Result<String, String> {
    let p: &mut KProbe = program(ebpf, "ww_probe_kprobe")?;
    p.load().map_err(|e| format!("load refused: {e}"))?;
    let link = p
        .attach("vfs_read", 0)
        .map_err(|e| format!("attach refused: {e}"))?;
    p.detach(link).map_err(|e| format!("detach failed: {e}"))?;
    Ok(String::from("loaded and attached kprobe/vfs_read"))
}

impl Report {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = format!("weightwarden doctor — kernel {}\n\n", self.kernel);
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Missing if c.required => "FAIL",
                Status::Missing => "no  ",
                Status::Skipped => "skip",
            };
            out.push_str(&format!("[{mark}] {:<22} {}\n", c.name, c.detail));
            if c.status != Status::Ok
                && let Some(fix) = &c.fix
            {
                out.push_str(&format!("       {:<22} fix: {fix}\n", ""));
            }
        }
        out.push('\n');
        match self.tier {
            Some(tier) => out.push_str(&format!(
                "run would use the {tier} tier (syscall and sched tracepoints).\n\
                 fentry and BPF LSM tiers are not implemented yet; deny mode will need BPF LSM.\n"
            )),
            None => out.push_str("run cannot work on this host: fix the FAIL lines above.\n"),
        }
        out
    }
}
