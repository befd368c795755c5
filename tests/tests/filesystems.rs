//! The same read and copy checks on every file system weights live on:
//! ext4, xfs, btrfs (top-level and a subvolume, whose `stat()` device is
//! not the superblock's), tmpfs, overlayfs (a file in the lower layer, one
//! in the upper, one copied up by a write; layers on two file systems),
//! squashfs and FUSE (bindfs). A `cat` leaves an `open` record with the
//! identity the kernel gives the file (read here through procfs, not
//! `stat()`) and the watched path, and read summaries with the file's exact
//! bytes; a `cp` leaves a `copy` record. `sensor_start` says every device
//! was confirmed by the kernel (`sensor.unconfirmed` empty).
//!
//! Also: a watched file that leaves the roots (renamed out, renamed to
//! another extension, hard-linked elsewhere and unlinked) keeps being
//! counted, under its current path, until it is deleted; and a directory
//! the walk cannot read is counted and warned about.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    fs,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use sensor::event::{AccessDetail, Action, DestinationKind};
use tests::{SensorProcess, read_total, run};

/// `tests::write_file`, its directories made first.
fn write_file(path: &Path, size: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    tests::write_file(path, size);
}

const SIZE: usize = 1 << 20;

/// A mount made for the test, unmounted (lazily) on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn must(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

fn mount(args: &[&str], target: &Path) -> Mounted {
    fs::create_dir_all(target).unwrap();
    must(Command::new("mount").args(args).arg(target));
    Mounted(target.to_path_buf())
}

/// The identity the kernel gives the file at `path`, without `stat()`:
/// the descriptor's `ino` and mount from fdinfo, the mount's superblock
/// device from mountinfo.
fn kernel_identity(path: &Path) -> (u64, u64) {
    let file = fs::File::open(path).unwrap();
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap()
    };
    let (mnt_id, ino) = (field("mnt_id:"), field("ino:"));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let devs: HashMap<u64, (u64, u64)> = mountinfo
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (major, minor) = f[2].split_once(':').unwrap();
            (
                f[0].parse().unwrap(),
                (major.parse().unwrap(), minor.parse().unwrap()),
            )
        })
        .collect();
    let (major, minor) = devs[&mnt_id];
    ((major << 20) | minor, ino)
}

/// Starts the sensor on `root` and checks `sensor_start`: every device
/// with a watched file confirmed, none unconfirmed.
fn start(root: &Path, devices: u64) -> SensorProcess {
    let sensor = SensorProcess::start(&[root], &[]);
    let started = sensor
        .records()
        .into_iter()
        .find(|r| r["action"] == "sensor_start")
        .unwrap();
    assert_eq!(
        started["sensor"]["unconfirmed"],
        serde_json::json!([]),
        "{started}"
    );
    assert_eq!(
        started["sensor"]["watch"]["confirmed_devices"], devices,
        "{started}"
    );
    sensor
}

/// `cat path`: one open record with the kernel's identity and `named` as
/// the path, and read summaries of exactly `size` bytes.
fn check_read(sensor: &SensorProcess, path: &Path, named: &Path, size: usize) {
    let (dev, ino) = kernel_identity(path);
    let cat = run(Command::new("cat")
        .arg(path)
        .stdout(std::process::Stdio::null()));
    sensor.wait_exit(cat);
    let opens = sensor.events_by_pid(Action::Open, cat);
    assert_eq!(opens.len(), 1, "{}: {:#?}", path.display(), opens);
    let file = tests::file(&opens[0]);
    assert_eq!((file.dev, file.ino), (dev, ino), "{}", path.display());
    assert_eq!(tests::path(&opens[0]), named, "{}", path.display());
    let reads = sensor.events_by_pid(Action::Read, cat);
    assert_eq!(read_total(&reads), size as u64, "{}", path.display());
}

/// How a check copies: `cp` (copy_file_range: in the kernel only within
/// one file system, else read/write) or Python's `shutil.copyfile`
/// (sendfile: in the kernel across file systems, for a read-only squashfs,
/// an overlay whose layers are elsewhere, FUSE without copy_file_range).
#[derive(Clone, Copy)]
enum Copier {
    Cp,
    Sendfile,
}

/// A copy of `path` to `dest`: a copy record to `dest`, and read summaries
/// of exactly `size` bytes.
fn check_copy(sensor: &SensorProcess, copier: Copier, path: &Path, dest: &Path, size: usize) {
    let cp = match copier {
        Copier::Cp => run(Command::new("cp").arg(path).arg(dest)),
        Copier::Sendfile => run(tests::python_command()
            .arg("-c")
            .arg("import shutil, sys\nshutil.copyfile(sys.argv[1], sys.argv[2])")
            .arg(path)
            .arg(dest)),
    };
    sensor.wait_exit(cp);
    let reads = sensor.events_by_pid(Action::Read, cp);
    assert_eq!(read_total(&reads), size as u64, "cp {}", path.display());
    let copies = sensor.events_by_pid(Action::Copy, cp);
    assert_eq!(copies.len(), 1, "cp {}: {copies:#?}", path.display());
    let AccessDetail::Copy(copy) = &tests::access(&copies[0]).detail else {
        panic!("not a copy: {:?}", copies[0]);
    };
    assert_eq!(copy.destination.kind, DestinationKind::File);
    assert_eq!(
        (copy.destination.dev, copy.destination.ino),
        kernel_identity(dest),
        "cp {}",
        path.display()
    );
}

/// One weight file at `root/models/m.safetensors` on a loop-mounted file
/// system: read and copy checks.
fn loop_fs(mkfs: &[&str], mib: u64) {
    let fs = tests::LoopFs::mount(mkfs, mib);
    let root = fs.dir.path().join("models");
    let weights = root.join("m.safetensors");
    fs::create_dir(&root).unwrap();
    write_file(&weights, SIZE);
    let sensor = start(&root, 1);
    check_read(&sensor, &weights, &weights, SIZE);
    check_copy(
        &sensor,
        Copier::Cp,
        &weights,
        &fs.dir.path().join("copy.bin"),
        SIZE,
    );
    sensor.stop();
}

#[test]
fn ext4() {
    loop_fs(&["mkfs.ext4", "-q", "-F"], 64);
}

#[test]
fn xfs() {
    loop_fs(&["mkfs.xfs", "-q", "-f"], 320);
}

#[test]
fn btrfs_top_level() {
    loop_fs(&["mkfs.btrfs", "-q", "-f"], 256);
}

#[test]
fn btrfs_subvolume() {
    let fs = tests::LoopFs::mount(&["mkfs.btrfs", "-q", "-f"], 256);
    let sub = fs.dir.path().join("sub");
    must(
        Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&sub),
    );
    let weights = sub.join("m.gguf");
    write_file(&weights, SIZE);
    // The subvolume reports its own device, not the superblock's.
    let st_dev = std::os::unix::fs::MetadataExt::dev(&fs::metadata(&weights).unwrap());
    let st = ((libc::major(st_dev) as u64) << 20) | libc::minor(st_dev) as u64;
    assert_ne!(st, kernel_identity(&weights).0, "positive control");
    let sensor = start(&sub, 1);
    check_read(&sensor, &weights, &weights, SIZE);
    check_copy(
        &sensor,
        Copier::Cp,
        &weights,
        &fs.dir.path().join("copy.bin"),
        SIZE,
    );
    sensor.stop();
}

#[test]
fn tmpfs() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("t");
    let _tmpfs = mount(&["-t", "tmpfs", "none"], &mnt);
    let weights = mnt.join("m.gguf");
    write_file(&weights, SIZE);
    let sensor = start(&mnt, 1);
    check_read(&sensor, &weights, &weights, SIZE);
    check_copy(&sensor, Copier::Cp, &weights, &mnt.join("copy.bin"), SIZE);
    sensor.stop();
}

/// The lower layer on the temp dir's file system, the upper on a tmpfs of
/// its own: files in the overlay report a per-layer device to `stat()`.
#[test]
fn overlayfs_lower_upper_and_copied_up() {
    let base = tempfile::tempdir().unwrap();
    let lower = base.path().join("lower");
    let upper_fs = base.path().join("upperfs");
    let merged = base.path().join("merged");
    write_file(&lower.join("lower.gguf"), SIZE);
    write_file(&lower.join("copied.gguf"), SIZE);
    let _tmpfs = mount(&["-t", "tmpfs", "none"], &upper_fs);
    fs::create_dir_all(upper_fs.join("upper")).unwrap();
    fs::create_dir_all(upper_fs.join("work")).unwrap();
    write_file(&upper_fs.join("upper/upper.gguf"), SIZE);
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper_fs.join("upper").display(),
        upper_fs.join("work").display()
    );
    let _overlay = mount(&["-t", "overlay", "overlay", "-o", &options], &merged);
    // Copy up by a write (the same size: one byte rewritten).
    let copied = merged.join("copied.gguf");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&copied).unwrap();
        f.write_all_at(b"x", 0).unwrap();
    }
    assert!(upper_fs.join("upper/copied.gguf").exists(), "copied up");

    // Two devices as stat() sees them: the lower layer's and the upper's.
    let mut sensor = start(&merged, 2);
    // True of these layers (no xino): a lower and an upper file can share
    // an inode number, and the kernel programs key by the overlay's device.
    sensor.expect_warning("share one superblock");
    for name in ["lower.gguf", "upper.gguf", "copied.gguf"] {
        let path = merged.join(name);
        check_read(&sensor, &path, &path, SIZE);
        let dest = base.path().join(format!("{name}.copy"));
        check_copy(&sensor, Copier::Sendfile, &path, &dest, SIZE);
    }
    sensor.stop();
}

#[test]
fn squashfs() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    write_file(&src.join("m.safetensors"), SIZE);
    let image = base.path().join("m.squashfs");
    must(Command::new("mksquashfs").arg(&src).arg(&image).args([
        "-quiet",
        "-noappend",
        "-no-progress",
    ]));
    let mnt = base.path().join("mnt");
    let _squashfs = mount(&["-o", "loop,ro", image.to_str().unwrap()], &mnt);
    let weights = mnt.join("m.safetensors");
    let sensor = start(&mnt, 1);
    check_read(&sensor, &weights, &weights, SIZE);
    check_copy(
        &sensor,
        Copier::Sendfile,
        &weights,
        &base.path().join("copy.bin"),
        SIZE,
    );
    sensor.stop();
}

#[test]
fn fuse_bindfs() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    write_file(&src.join("m.gguf"), SIZE);
    let mnt = base.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    must(Command::new("bindfs").arg(&src).arg(&mnt));
    let _bindfs = Mounted(mnt.clone());
    let weights = mnt.join("m.gguf");
    let sensor = start(&mnt, 1);
    check_read(&sensor, &weights, &weights, SIZE);
    check_copy(
        &sensor,
        Copier::Sendfile,
        &weights,
        &base.path().join("copy.bin"),
        SIZE,
    );
    sensor.stop();
}

/// Waits for a heartbeat whose `watch` counters satisfy `pred`.
fn wait_watch(sensor: &SensorProcess, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    sensor.wait_for(what, Duration::from_secs(10), |r| {
        r["action"] == "heartbeat" && pred(&r["sensor"]["watch"])
    });
}

/// Renamed out of the root, renamed to another extension, hard-linked
/// elsewhere with the watched link unlinked: each is still counted, named
/// by where it is now; once deleted, each is released. A file deleted from
/// the root (the control) is released at once.
#[test]
fn a_file_leaving_the_roots_is_counted_until_deleted() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("models");
    let elsewhere = base.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    for name in ["out.gguf", "ext.gguf", "linked.gguf", "deleted.gguf"] {
        write_file(&root.join(name), SIZE);
    }
    let sensor = SensorProcess::start(&[&root], &["--heartbeat-interval", "1"]);

    let moved = elsewhere.join("out.gguf");
    fs::rename(root.join("out.gguf"), &moved).unwrap();
    let renamed = root.join("ext.txt");
    fs::rename(root.join("ext.gguf"), &renamed).unwrap();
    let linked = elsewhere.join("linked");
    fs::hard_link(root.join("linked.gguf"), &linked).unwrap();
    fs::remove_file(root.join("linked.gguf")).unwrap();
    fs::remove_file(root.join("deleted.gguf")).unwrap();
    wait_watch(&sensor, "three retained, one gone", |w| {
        w["retained"] == 3 && w["files"] == 0 && w["retained_gone"] == 1
    });

    for path in [&moved, &renamed, &linked] {
        check_read(&sensor, path, path, SIZE);
    }

    for path in [&moved, &renamed, &linked] {
        fs::remove_file(path).unwrap();
    }
    wait_watch(&sensor, "all released", |w| {
        w["retained"] == 0 && w["retained_gone"] == 4
    });
    let (_, records) = sensor.stop();
    let stop = records.last().unwrap();
    assert_eq!(stop["sensor"]["watched_files"], 0, "{stop}");
    assert_eq!(stop["sensor"]["watch"]["retained_dropped"], 0, "{stop}");
    assert_eq!(stop["sensor"]["watch"]["retained_unsupported"], 0, "{stop}");
}

/// A directory whose inode is corrupt (zeroed with debugfs) cannot be
/// stat'ed: counted in `unreadable_dirs` and warned about, while the file
/// in the readable directory beside it is watched (the control).
#[test]
fn an_unreadable_directory_is_counted_and_warned_about() {
    let image_dir = tempfile::tempdir().unwrap();
    let image = image_dir.path().join("fs.img");
    fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
    must(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let mnt = image_dir.path().join("mnt");
    {
        let _m = mount(&["-o", "loop", image.to_str().unwrap()], &mnt);
        write_file(&mnt.join("bad/a.gguf"), SIZE);
        write_file(&mnt.join("good/b.gguf"), SIZE);
    }
    must(
        Command::new("debugfs")
            .args(["-w", "-R", "clri /bad"])
            .arg(&image),
    );
    let _m = mount(&["-o", "loop", image.to_str().unwrap()], &mnt);
    assert!(fs::symlink_metadata(mnt.join("bad")).is_err(), "corrupt");

    let mut sensor = SensorProcess::start(&[&mnt], &[]);
    sensor.expect_warning("cannot read directory under a watch root");
    let started = sensor
        .records()
        .into_iter()
        .find(|r| r["action"] == "sensor_start")
        .unwrap();
    assert_eq!(
        started["sensor"]["watch"]["unreadable_dirs"], 1,
        "{started}"
    );
    assert_eq!(started["sensor"]["watch"]["files"], 1, "{started}");
    let good = mnt.join("good/b.gguf");
    check_read(&sensor, &good, &good, SIZE);
    let log = sensor.log();
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains(&mnt.join("bad").display().to_string())),
        "{log}"
    );
    sensor.stop();
}
