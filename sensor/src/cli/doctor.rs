//! `weightwarden doctor`: what this host offers the sensor, found by really
//! trying (loading and attaching each kind of hook, verifying every
//! program of every tier), which tier `run` would use, and the fix for
//! anything missing.
//!
//! The report is a list of checks, each a small function in [`CHECKS`];
//! hook kinds and tiers come from the program tables in
//! `kernel/programs.rs`, so a new tier or hook adds a table line there,
//! not code here.

use std::path::Path;

use aya::{Btf, Ebpf};
use serde::Serialize;

use crate::{
    Chain,
    cli::{args::DoctorArgs, exit},
    event::Tier,
    kernel::{
        btf::{KernelOffsets, VMLINUX_BTF},
        loader::{LoadOptions, attach_and_detach, load_program, open_object},
        pins::{PinDir, PinError},
        preflight::{self, BPFFS, SECURITYFS, TRACEFS},
        programs::{Attach, ENFORCEMENT_LSM, HOOK_PROBES, TIERS, TierSpec},
        uring,
    },
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
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// `run` cannot work without this.
    pub required: bool,
}

impl Check {
    fn ok(name: impl Into<String>, required: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            required,
        }
    }

    fn missing(
        name: impl Into<String>,
        required: bool,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Missing,
            detail: detail.into(),
            fix: Some(fix.into()),
            required,
        }
    }

    fn skipped(name: impl Into<String>, required: bool, why: &str, fix: &str) -> Self {
        Self {
            name: name.into(),
            status: Status::Skipped,
            detail: why.to_string(),
            fix: Some(fix.to_string()),
            required,
        }
    }

    fn from_result(
        name: impl Into<String>,
        required: bool,
        result: Result<String, String>,
        fix: &str,
    ) -> Self {
        match result {
            Ok(detail) => Self::ok(name, required, detail),
            Err(detail) => Self::missing(name, required, detail, fix),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    pub checks: Vec<Check>,
    /// The hook tier `run` would use, if any.
    pub tier: Option<&'static str>,
    pub can_run: bool,
}

/// What the checks share: found once, used by several.
struct Host {
    /// The pin directory to report on (`kernel.pin_dir`).
    pin_dir: std::path::PathBuf,
    root: bool,
    kernel: String,
    offsets: Result<KernelOffsets, String>,
    btf: Option<Btf>,
    /// The object loaded with small maps, for the hook and tier checks.
    object: Option<Result<Ebpf, String>>,
    /// Tiers whose every program passed the verifier.
    tiers_ok: Vec<Tier>,
}

impl Host {
    fn object(&mut self) -> Option<&mut Ebpf> {
        if !self.root {
            return None;
        }
        let Ok(offsets) = &self.offsets else {
            return None;
        };
        self.object
            .get_or_insert_with(|| {
                open_object(Some(offsets), &LoadOptions::probe()).map_err(|e| Chain(&e).to_string())
            })
            .as_mut()
            .ok()
    }
}

type CheckFn = fn(&mut Host) -> Vec<Check>;

/// Every check, in report order.
const CHECKS: &[CheckFn] = &[
    privileges,
    kernel_version,
    btf,
    filesystems,
    bpf_lsm_boot_list,
    ring_buffer,
    hook_kinds,
    tiers,
    usable_tier,
    io_uring,
    enforcement,
    pinned,
];

/// Runs every check.
pub fn diagnose(pin_dir: &Path) -> Report {
    let kernel = preflight::kernel_release();
    let mut host = Host {
        pin_dir: pin_dir.to_path_buf(),
        root: nix::unistd::geteuid().is_root(),
        offsets: KernelOffsets::from_file(Path::new(VMLINUX_BTF))
            .map_err(|e| Chain(&e).to_string()),
        btf: Btf::from_sys_fs().ok(),
        kernel: kernel.clone(),
        object: None,
        tiers_ok: Vec::new(),
    };
    let checks: Vec<Check> = CHECKS.iter().flat_map(|check| check(&mut host)).collect();
    let required_ok = checks
        .iter()
        .filter(|c| c.required)
        .all(|c| c.status == Status::Ok);
    let tier = TIERS
        .iter()
        .find(|t| host.tiers_ok.contains(&t.tier))
        .map(|t| tier_name(t.tier));
    // `usable tier`, a required check, already says whether one loads.
    let can_run = required_ok;
    Report {
        kernel,
        checks,
        tier: tier.filter(|_| can_run),
        can_run,
    }
}

/// Runs the checks, prints the report (text or `--json`); exits 0 when
/// `run` can work here.
pub fn execute(args: &DoctorArgs) -> u8 {
    let report = diagnose(&args.pin_dir);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("weightwarden: cannot encode the report: {err}");
                return exit::FAILURE;
            }
        }
    } else {
        print!("{}", report.render());
    }
    if report.can_run {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Tracepoint => "tracepoint",
    }
}

const AS_ROOT: &str = "run `weightwarden doctor` as root";

fn privileges(host: &mut Host) -> Vec<Check> {
    vec![if host.root {
        Check::ok("privileges", true, "running as root")
    } else {
        Check::missing(
            "privileges",
            true,
            "not root",
            "run as root: loading eBPF needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN",
        )
    }]
}

fn kernel_version(host: &mut Host) -> Vec<Check> {
    let kernel = &host.kernel;
    vec![match preflight::kernel_version(kernel) {
        Some(v) if v >= (5, 11) => Check::ok(
            "kernel version",
            true,
            format!(
                "{kernel} (BTF tracepoints with bpf_get_current_task_btf need 5.11+; io_uring \
                 capture, 6.0+)"
            ),
        ),
        Some(_) => Check::missing(
            "kernel version",
            true,
            format!("{kernel} is older than 5.11"),
            "upgrade to Linux 5.11 or newer",
        ),
        None => Check::missing(
            "kernel version",
            true,
            format!("cannot parse {kernel:?}"),
            "report this kernel release string",
        ),
    }]
}

fn btf(host: &mut Host) -> Vec<Check> {
    vec![match &host.offsets {
        Ok(o) => Check::ok(
            "BTF",
            true,
            format!(
                "{VMLINUX_BTF}: {} structure offsets resolved",
                o.globals.len()
            ),
        ),
        Err(err) => Check::missing(
            "BTF",
            true,
            err.clone(),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ),
    }]
}

fn filesystems(host: &mut Host) -> Vec<Check> {
    [
        ("tracefs", "tracefs", TRACEFS, true),
        ("bpffs", "bpf", BPFFS, false),
        ("securityfs", "securityfs", SECURITYFS, false),
    ]
    .into_iter()
    .map(|(name, fstype, path, required)| {
        let mounted = preflight::is_mounted(path)
            || (name == "tracefs" && Path::new(TRACEFS).join("events").exists());
        if mounted {
            Check::ok(name, required, format!("mounted on {path}"))
        } else if name == "tracefs" && host.root {
            // `run` mounts tracefs itself; so does doctor, so that the
            // hook and tier checks below see what `run` would.
            match preflight::ensure_mounted(fstype, path) {
                Ok(_) => Check::ok(
                    name,
                    required,
                    format!("was not mounted on {path}; mounted it, as `run` does"),
                ),
                Err(err) => Check::missing(
                    name,
                    required,
                    format!("not mounted on {path}, and mounting it failed: {err}"),
                    format!("mount -t {fstype} none {path}"),
                ),
            }
        } else {
            Check::missing(
                name,
                required,
                format!("not mounted on {path}"),
                format!("mount -t {fstype} none {path} (run mounts tracefs itself when it can)"),
            )
        }
    })
    .collect()
}

/// What is pinned in the default pin directory (`kernel.pin_dir`): a
/// running agent's programs, or a stopped one's left for the next.
fn pinned(host: &mut Host) -> Vec<Check> {
    let dir = host.pin_dir.as_path();
    let links = std::fs::read_dir(dir.join("links")).map_or(0, |d| d.count());
    let check = |detail: String| vec![Check::ok("pinned programs", false, detail)];
    if links == 0 {
        return check(format!("nothing attached in {}", dir.display()));
    }
    match PinDir::open(dir) {
        Err(PinError::Busy { pid, .. }) => check(format!(
            "{links} program links pinned in {} by the running agent{}",
            dir.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
        Err(err) => vec![Check::missing(
            "pinned programs",
            false,
            format!(
                "{links} program links in {}: {}",
                dir.display(),
                Chain(&err)
            ),
            "weightwarden unload",
        )],
        Ok(pins) => {
            let from = pins
                .previous()
                .ok()
                .flatten()
                .map(|p| format!(" (pid {})", p.tgid))
                .unwrap_or_default();
            check(format!(
                "{links} program links left attached in {} by a stopped agent{from}: they \
                 capture and enforce with no agent, the next `run` adopts them, `weightwarden \
                 unload` detaches them",
                dir.display()
            ))
        }
    }
}

fn bpf_lsm_boot_list(_host: &mut Host) -> Vec<Check> {
    let lsms = crate::kernel::preflight::active_lsms().join(",");
    let name = "BPF LSM in boot list";
    vec![if crate::kernel::preflight::bpf_lsm_active() {
        Check::ok(name, false, format!("active LSMs: {lsms}"))
    } else {
        let active = if lsms.is_empty() {
            "unknown (securityfs not mounted?)"
        } else {
            lsms.as_str()
        };
        Check::missing(
            name,
            false,
            format!("active LSMs: {active}"),
            "add `bpf` to the kernel's lsm= boot parameter to enable deny mode",
        )
    }]
}

fn ring_buffer(host: &mut Host) -> Vec<Check> {
    let name = "ring buffer";
    if !host.root {
        return vec![Check::skipped(
            name,
            true,
            "needs root to load programs",
            AS_ROOT,
        )];
    }
    if host.offsets.is_err() {
        return vec![Check::skipped(
            name,
            true,
            "needs BTF offsets to load the object",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        )];
    }
    host.object();
    vec![match &host.object {
        Some(Ok(_)) => Check::ok(name, true, "BPF_MAP_TYPE_RINGBUF created"),
        Some(Err(e)) => Check::missing(name, true, e.clone(), "use Linux 5.8+ with BPF enabled"),
        None => Check::skipped(name, true, "the object was not loaded", AS_ROOT),
    }]
}

/// One check per kind of hook, each loaded and attached for real.
fn hook_kinds(host: &mut Host) -> Vec<Check> {
    let btf = host.btf.take();
    let checks = HOOK_PROBES
        .iter()
        .map(|probe| {
            let name = format!("hook: {}", probe.hook);
            let Some(ebpf) = host.object() else {
                return Check::skipped(name, probe.required, "needs the object loaded", AS_ROOT);
            };
            let result = try_hook(ebpf, btf.as_ref(), probe.program, &probe.attach);
            Check::from_result(name, probe.required, result, probe.needs)
        })
        .collect();
    host.btf = btf;
    checks
}

fn try_hook(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    program: &'static str,
    attach: &Attach,
) -> Result<String, String> {
    let btf = btf.ok_or_else(|| String::from("cannot read the kernel's BTF"))?;
    // A probe program shared by several hooks is loaded once.
    let loaded = ebpf.program(program).is_some_and(|p| p.fd().is_ok());
    if !loaded {
        load_program(ebpf, program, attach, btf)
            .map_err(|e| format!("load refused: {}", Chain(&e)))?;
    }
    attach_and_detach(ebpf, program, attach)
        .map_err(|e| format!("attach refused: {}", Chain(&e)))?;
    Ok(format!("loaded and attached {}", attach.describe()))
}

/// One check per tier: every program passes the verifier and every
/// classic tracepoint it attaches to exists.
fn tiers(host: &mut Host) -> Vec<Check> {
    let btf = host.btf.take();
    let checks = TIERS
        .iter()
        .map(|tier| {
            let name = format!("{} tier", tier_name(tier.tier));
            let Some(ebpf) = host.object() else {
                return Check::skipped(name, true, "needs the object loaded", AS_ROOT);
            };
            let result = try_tier(ebpf, btf.as_ref(), tier);
            if result.is_ok() {
                host.tiers_ok.push(tier.tier);
            }
            // One tier that loads is enough: `usable_tier` decides.
            Check::from_result(
                name,
                false,
                result,
                &format!(
                    "needs {}; `weightwarden run` prints the verifier's message",
                    tier.needs
                ),
            )
        })
        .collect();
    host.btf = btf;
    checks
}

/// `run` needs one tier that loads; it takes the first, as this does.
fn usable_tier(host: &mut Host) -> Vec<Check> {
    let name = "usable tier";
    let chosen = TIERS.iter().find(|t| host.tiers_ok.contains(&t.tier));
    vec![match chosen {
        Some(tier) => Check::ok(
            name,
            true,
            format!("{} ({})", tier_name(tier.tier), tier.summary),
        ),
        None if host.root && host.offsets.is_ok() => Check::missing(
            name,
            true,
            "no hook tier loads on this kernel",
            "see the tier lines above",
        ),
        None => Check::skipped(name, true, "needs the object loaded", AS_ROOT),
    }]
}

/// The tier's io_uring programs, which `run` goes without where they do
/// not load: loaded and attached for real.
fn io_uring(host: &mut Host) -> Vec<Check> {
    let name = "io_uring capture";
    let tier = TIERS
        .iter()
        .find(|t| host.tiers_ok.contains(&t.tier))
        .unwrap_or(&TIERS[0]);
    let layout = match &host.offsets {
        Ok(offsets) => offsets.io_uring.clone(),
        Err(_) => {
            return vec![Check::skipped(
                name,
                false,
                "needs BTF offsets",
                "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
            )];
        }
    };
    if let Err(why) = layout {
        return vec![off(name, &why.to_string())];
    }
    let btf = host.btf.take();
    let Some(ebpf) = host.object() else {
        host.btf = btf;
        return vec![Check::skipped(
            name,
            false,
            "needs the object loaded",
            AS_ROOT,
        )];
    };
    let result = tier
        .io_uring
        .iter()
        .try_for_each(|spec| try_hook(ebpf, btf.as_ref(), spec.name, &spec.attach[0]).map(|_| ()));
    host.btf = btf;
    vec![match result {
        Ok(()) => Check::ok(
            name,
            false,
            format!(
                "all {} programs load and attach: io_uring reads, opens, splices and tampering \
                 (renames, unlinks, links, truncations) of weight files, and the writes and \
                 sends of processes that took weights, are recorded",
                tier.io_uring.len()
            ),
        ),
        Err(why) => off(name, &why),
    }]
}

/// io_uring capture off: `run` goes on without it.
fn off(name: &str, why: &str) -> Check {
    Check::missing(
        name,
        false,
        format!(
            "{why}: `run` captures everything else, and io_uring reads, opens, splices and \
             tampering (renames, unlinks, links, truncations) of weight files, and the writes \
             and sends of processes that took weights, go unrecorded \
             (and, without BPF LSM, reads are not stopped by a policy's kill fallback)"
        ),
        uring::FIX,
    )
}

/// The mechanisms `run` would use for `mode = "enforce"`: BPF LSM where it
/// loads (deny in the kernel, any descriptor), fanotify for opens, and the
/// kill from the syscall hooks where BPF LSM does not.
fn enforcement(host: &mut Host) -> Vec<Check> {
    vec![lsm_deny(host), fanotify_deny(host)]
}

/// The BPF LSM enforcement programs, loaded and attached for real.
fn lsm_deny(host: &mut Host) -> Check {
    let name = "deny: bpf_lsm";
    // Programs load and attach on CONFIG_BPF_LSM kernels whose active LSM
    // list lacks `bpf`, and then never run.
    if !crate::kernel::preflight::bpf_lsm_active() {
        return Check::missing(
            name,
            false,
            "`bpf` is not an active LSM (see the `BPF LSM in boot list` line): reads and maps \
             through descriptors no open judged are stopped by kill (bpf_send_signal)",
            "boot with `bpf` in the lsm= list (CONFIG_BPF_LSM=y) for deny without kill",
        );
    }
    let btf = host.btf.take();
    let Some(ebpf) = host.object() else {
        host.btf = btf;
        return Check::skipped(name, false, "needs the object loaded", AS_ROOT);
    };
    let result = ENFORCEMENT_LSM
        .iter()
        .try_for_each(|spec| try_hook(ebpf, btf.as_ref(), spec.name, &spec.attach[0]).map(|_| ()));
    host.btf = btf;
    match result {
        Ok(()) => Check::ok(
            name,
            false,
            format!(
                "all {} programs load and attach: an enforced policy denies opens, reads, writes \
                 and maps of its files with EPERM, whatever the descriptor",
                ENFORCEMENT_LSM.len()
            ),
        ),
        Err(why) => Check::missing(
            name,
            false,
            format!(
                "{why}: reads and maps through descriptors no open judged are stopped by kill (bpf_send_signal)"
            ),
            "boot with `bpf` in the lsm= list (CONFIG_BPF_LSM=y) for deny without kill",
        ),
    }
}

/// fanotify permission events, which answer opens.
fn fanotify_deny(host: &mut Host) -> Check {
    use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags};
    let name = "deny: fanotify";
    if !host.root {
        return Check::skipped(name, false, "needs root", AS_ROOT);
    }
    match Fanotify::init(
        InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY,
    ) {
        Ok(_) => Check::ok(
            name,
            false,
            "permission events available: mode = \"enforce\" denies opens with EPERM",
        ),
        Err(err) => Check::missing(
            name,
            false,
            format!("fanotify_init(FAN_CLASS_CONTENT) failed: {err}"),
            "needs CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y; without it only audit mode works",
        ),
    }
}

/// The tier's programs `run` cannot go without: each passes the verifier.
fn try_tier(ebpf: &mut Ebpf, btf: Option<&Btf>, tier: &TierSpec) -> Result<String, String> {
    let btf = btf.ok_or_else(|| String::from("cannot read the kernel's BTF"))?;
    let mut missing = Vec::new();
    for spec in tier.programs {
        load_program(ebpf, spec.name, &spec.attach[0], btf).map_err(|e| Chain(&e).to_string())?;
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
            "all {} programs pass the verifier; every attach point exists ({})",
            tier.programs.len(),
            tier.summary
        ))
    } else {
        Err(format!("tracepoints missing: {}", missing.join(", ")))
    }
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
                "run would use the {tier} tier ({}).\n\
                 A policy in enforce mode is carried out by the `deny:` lines that are ok \
                 (BPF LSM, fanotify), and by kill (bpf_send_signal) where BPF LSM is not; \
                 the fentry capture tier is not implemented yet.\n",
                TIERS
                    .iter()
                    .find(|t| tier_name(t.tier) == tier)
                    .map_or("", |t| t.summary)
            )),
            None => out.push_str("run cannot work on this host: fix the FAIL lines above.\n"),
        }
        out
    }
}
