//! What the guest boots into: an initramfs holding busybox (the shell and
//! every everyday command), the generated `/init`, the test script, and
//! whatever host files, folders and dynamically linked executables a test
//! adds. The builder only records; files are read, and `ldd` run, when the
//! archive is written at [`Vm::run`](super::Vm::run), so adding is cheap
//! and never fails.

use std::{
    collections::BTreeMap,
    fs,
    io::BufWriter,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::{Component, Path, PathBuf},
    process::Command,
};

use super::{VmError, console, cpio};

/// The test script's path in the guest.
const SCRIPT: &str = "/ww/test.sh";
/// Present when the image asks for the kernel log on success too.
const DMESG_FLAG: &str = "/ww/dmesg";

/// Where busybox goes; every applet links to it.
const BUSYBOX: &str = "/bin/busybox";

/// Pseudo-filesystems `/init` mounts, in order: `(type, mount point)`.
/// Besides the basics, what the sensor uses: securityfs (the LSM list),
/// tracefs (tracepoint ids), debugfs, bpffs (pinning) and cgroup v2
/// (container ids).
pub const MOUNTS: &[(&str, &str)] = &[
    ("proc", "/proc"),
    ("sysfs", "/sys"),
    ("devtmpfs", "/dev"),
    ("devpts", "/dev/pts"),
    ("tmpfs", "/dev/shm"),
    ("securityfs", "/sys/kernel/security"),
    ("tracefs", "/sys/kernel/tracing"),
    ("debugfs", "/sys/kernel/debug"),
    ("bpf", "/sys/fs/bpf"),
    ("cgroup2", "/sys/fs/cgroup"),
];

/// `ww-emit NAME [FILE...]`: prints the files (or its stdin) between the
/// section markers the host reads back ([`super::VmRun::section`]); exits
/// with `cat`'s status.
const EMIT: &str = r#"#!/bin/sh
# ww-emit NAME [FILE...]: prints the FILEs (or stdin) between marker lines
# that the test harness on the host reads back as section NAME.
if [ $# -lt 1 ]; then
    echo "usage: ww-emit NAME [FILE...]" >&2
    exit 2
fi
name=$1
shift
echo "WW-VM-BEGIN $name"
cat "$@"
status=$?
# Ends the last line even when the text does not; the host drops it.
echo
echo "WW-VM-END $name"
exit $status
"#;

/// What a test added at one guest path.
#[derive(Debug, Clone)]
enum Entry {
    Node(Node),
    /// A host executable, with the libraries `ldd` lists for it.
    Executable(PathBuf),
    /// A host folder, copied whole.
    Tree(PathBuf),
}

/// The guest's root filesystem, built up by a test; see the module doc.
///
/// Guest paths are absolute (`/usr/local/bin/tool`); adding a path twice
/// keeps the last. What a test adds wins over busybox's applet links.
#[derive(Debug, Clone)]
pub struct Image {
    busybox: PathBuf,
    entries: BTreeMap<Vec<u8>, Entry>,
    script: String,
    dmesg: bool,
}

impl Image {
    /// An image whose userland is the busybox at `busybox` (static, or
    /// dynamic: its libraries are added) and whose test script does
    /// nothing.
    pub fn new(busybox: impl Into<PathBuf>) -> Self {
        Self {
            busybox: busybox.into(),
            entries: BTreeMap::new(),
            script: String::from("true\n"),
            dmesg: false,
        }
    }

    /// The test body: a busybox `sh` script run as root from `/` once the
    /// filesystems are mounted, stdin `/dev/null`, stdout and stderr on the
    /// console. Its exit status is the run's
    /// ([`VmRun::exit_status`](super::VmRun::exit_status)). It can print
    /// files or command output for the host with `ww-emit NAME [FILE...]`
    /// (`cmd | ww-emit NAME`) and read them back with
    /// [`VmRun::section`](super::VmRun::section). Start it with `set -e` to
    /// stop at the first failing command.
    pub fn script(&mut self, script: impl Into<String>) -> &mut Self {
        self.script = script.into();
        self
    }

    /// Prints the kernel log (`dmesg`) as section `dmesg` after the script,
    /// even when it succeeds (it always does when it fails).
    pub fn capture_dmesg(&mut self) -> &mut Self {
        self.dmesg = true;
        self
    }

    /// The host executable at `host`, at the same path in the guest, with
    /// the shared libraries and dynamic loader `ldd` lists for it (at the
    /// paths `ldd` prints). Libraries a program opens at run time
    /// (`dlopen`, NSS modules, Python's standard library) are not found
    /// this way: add them with [`Image::add_file`] or [`Image::add_tree`].
    pub fn add_executable(&mut self, host: impl AsRef<Path>) -> &mut Self {
        let host = host.as_ref();
        self.add_executable_at(host, host)
    }

    /// [`Image::add_executable`], at `guest`.
    pub fn add_executable_at(
        &mut self,
        guest: impl AsRef<Path>,
        host: impl AsRef<Path>,
    ) -> &mut Self {
        self.insert(guest.as_ref(), Entry::Executable(host.as_ref().to_owned()))
    }

    /// The host file at `host` (symlinks followed), at `guest`, with its
    /// permissions.
    pub fn add_file(&mut self, guest: impl AsRef<Path>, host: impl AsRef<Path>) -> &mut Self {
        self.insert(
            guest.as_ref(),
            Entry::Node(Node::Host {
                host: host.as_ref().to_owned(),
                permissions: None,
            }),
        )
    }

    /// A file at `guest` holding `contents`, with `permissions` (`0o644`,
    /// `0o755`).
    pub fn add_bytes(
        &mut self,
        guest: impl AsRef<Path>,
        contents: impl Into<Vec<u8>>,
        permissions: u32,
    ) -> &mut Self {
        self.insert(
            guest.as_ref(),
            Entry::Node(Node::Bytes {
                contents: contents.into(),
                permissions: permissions & 0o7777,
            }),
        )
    }

    /// An empty folder at `guest` (`0o755`). Parents of added paths are
    /// created anyway.
    pub fn add_dir(&mut self, guest: impl AsRef<Path>) -> &mut Self {
        self.insert(
            guest.as_ref(),
            Entry::Node(Node::Dir { permissions: 0o755 }),
        )
    }

    /// The host folder `host` and everything in it, at `guest`; symlinks
    /// are copied as symlinks.
    pub fn add_tree(&mut self, guest: impl AsRef<Path>, host: impl AsRef<Path>) -> &mut Self {
        self.insert(guest.as_ref(), Entry::Tree(host.as_ref().to_owned()))
    }

    /// A symlink at `guest` pointing to `target`.
    pub fn add_symlink(&mut self, guest: impl AsRef<Path>, target: impl AsRef<Path>) -> &mut Self {
        self.insert(
            guest.as_ref(),
            Entry::Node(Node::Symlink {
                target: target.as_ref().as_os_str().as_bytes().to_vec(),
            }),
        )
    }

    fn insert(&mut self, guest: &Path, entry: Entry) -> &mut Self {
        self.entries.insert(archive_name(guest), entry);
        self
    }

    /// Writes the initramfs to `path`; returns its size in bytes.
    pub(super) fn write(&self, path: &Path) -> Result<u64, VmError> {
        let nodes = self.resolve()?;
        let file = fs::File::create(path).map_err(|e| VmError::io("cannot create", path, e))?;
        let mut writer = cpio::Writer::new(BufWriter::new(file));
        for (name, node) in &nodes {
            let shown = || PathBuf::from(format!("/{}", String::from_utf8_lossy(name)));
            let result = match node {
                Node::Dir { permissions } => writer.dir(name, *permissions),
                Node::Symlink { target } => writer.symlink(name, target),
                Node::CharDevice { major, minor } => {
                    writer.char_device(name, 0o600, *major, *minor)
                }
                Node::Bytes {
                    contents,
                    permissions,
                } => writer.file(
                    name,
                    *permissions,
                    0,
                    contents.len() as u64,
                    &mut contents.as_slice(),
                ),
                Node::Host { host, permissions } => {
                    let mut source =
                        fs::File::open(host).map_err(|e| VmError::io("cannot open", host, e))?;
                    let meta = source
                        .metadata()
                        .map_err(|e| VmError::io("cannot stat", host, e))?;
                    let mtime = u32::try_from(meta.mtime()).unwrap_or(0);
                    let permissions = permissions.unwrap_or(meta.mode() & 0o7777);
                    writer
                        .file(name, permissions, mtime, meta.len(), &mut source)
                        .map_err(|e| VmError::io("cannot archive", host, e))?;
                    Ok(())
                }
            };
            result.map_err(|e| VmError::io("cannot archive", &shown(), e))?;
        }
        let out = writer
            .finish()
            .map_err(|e| VmError::io("cannot write", path, e))?;
        let file = out
            .into_inner()
            .map_err(|e| VmError::io("cannot write", path, e.into_error()))?;
        let size = file
            .metadata()
            .map_err(|e| VmError::io("cannot stat", path, e))?
            .len();
        Ok(size)
    }

    /// Every node of the archive, by name: the base system, what the test
    /// added (trees walked, executables' libraries found), and every
    /// parent folder. Sorted by name, so each folder precedes its content.
    fn resolve(&self) -> Result<BTreeMap<Vec<u8>, Node>, VmError> {
        let mut nodes = BTreeMap::new();
        let mut executables = vec![self.busybox.clone()];
        nodes.insert(
            archive_name(Path::new(BUSYBOX)),
            Node::Host {
                host: self.busybox.clone(),
                permissions: Some(0o755),
            },
        );
        for (name, entry) in &self.entries {
            match entry {
                Entry::Node(node) => {
                    nodes.insert(name.clone(), node.clone());
                }
                Entry::Executable(host) => {
                    executables.push(host.clone());
                    nodes.insert(
                        name.clone(),
                        Node::Host {
                            host: host.clone(),
                            permissions: None,
                        },
                    );
                }
                Entry::Tree(host) => walk_tree(host, name, &mut nodes)?,
            }
        }
        for (name, node) in self.base()? {
            nodes.entry(name).or_insert(node);
        }
        for host in executables {
            // Said here, not as ldd's complaint about its argument.
            if !host.is_file() {
                return Err(VmError::io(
                    "cannot add the executable",
                    &host,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            for library in shared_libraries(&host)? {
                nodes.entry(archive_name(&library)).or_insert(Node::Host {
                    host: library,
                    permissions: None,
                });
            }
        }
        let parents: Vec<Vec<u8>> = nodes.keys().flat_map(|name| parents(name)).collect();
        for parent in parents {
            nodes
                .entry(parent)
                .or_insert(Node::Dir { permissions: 0o755 });
        }
        Ok(nodes)
    }

    /// What every image has: `/init`, the script, `ww-emit`, busybox's
    /// applet links, `/dev/console` (the kernel opens it for `/init`
    /// before anything is mounted) and the usual folders.
    fn base(&self) -> Result<Vec<(Vec<u8>, Node)>, VmError> {
        let bytes = |contents: &str, permissions| Node::Bytes {
            contents: contents.as_bytes().to_vec(),
            permissions,
        };
        let mut base = vec![
            (archive_name(Path::new("/init")), bytes(&self.init(), 0o755)),
            (archive_name(Path::new(SCRIPT)), bytes(&self.script, 0o755)),
            (archive_name(Path::new("/bin/ww-emit")), bytes(EMIT, 0o755)),
            (
                archive_name(Path::new("/dev/console")),
                Node::CharDevice { major: 5, minor: 1 },
            ),
            (
                archive_name(Path::new("/tmp")),
                Node::Dir {
                    permissions: 0o1777,
                },
            ),
            (
                archive_name(Path::new("/root")),
                Node::Dir { permissions: 0o700 },
            ),
            (
                archive_name(Path::new("/etc/passwd")),
                bytes("root:x:0:0:root:/root:/bin/sh\n", 0o644),
            ),
            (
                archive_name(Path::new("/etc/group")),
                bytes("root:x:0:\n", 0o644),
            ),
        ];
        if self.dmesg {
            base.push((archive_name(Path::new(DMESG_FLAG)), bytes("", 0o644)));
        }
        for (_, mount_point) in MOUNTS {
            base.push((
                archive_name(Path::new(mount_point)),
                Node::Dir { permissions: 0o755 },
            ));
        }
        for applet in applets(&self.busybox)? {
            base.push((
                archive_name(Path::new("/").join(&applet).as_path()),
                Node::Symlink {
                    target: BUSYBOX.as_bytes().to_vec(),
                },
            ));
        }
        Ok(base)
    }

    /// The generated `/init`.
    fn init(&self) -> String {
        let mut mounts = String::new();
        for (fstype, target) in MOUNTS {
            mounts.push_str(&format!("ww_mount {fstype} {target}\n"));
        }
        format!(
            r#"#!/bin/sh
# Generated by the weightwarden VM test harness (tests/src/vm/image.rs):
# mounts what the sensor needs, runs the test script, reports its exit
# status on the console and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
ww_mount() {{
    mkdir -p "$2" 2>/dev/null
    mount -t "$1" "$1" "$2" || echo "{warn}cannot mount $1 on $2"
}}
{mounts}echo "{init}$(cut -d ' ' -f 1 /proc/uptime)"
cd /
sh {script} </dev/null
status=$?
if [ "$status" -ne 0 ] || [ -e {dmesg_flag} ]; then
    dmesg | ww-emit dmesg
fi
echo "{exit}$status"
poweroff -f
# Not reached unless poweroff failed: PID 1 exiting panics the kernel,
# which with panic=-1 and QEMU's -no-reboot ends the VM too.
"#,
            warn = console::WARN,
            init = console::INIT,
            exit = console::EXIT,
            script = SCRIPT,
            dmesg_flag = DMESG_FLAG,
        )
    }
}

/// An archive entry, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir {
        permissions: u32,
    },
    Symlink {
        target: Vec<u8>,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    Bytes {
        contents: Vec<u8>,
        permissions: u32,
    },
    Host {
        host: PathBuf,
        permissions: Option<u32>,
    },
}

/// The archive name of an absolute guest path: relative to the root, with
/// `.` and repeated slashes gone.
///
/// # Panics
///
/// If `guest` is relative, is `/` itself or has a `..` component: a test
/// names guest paths in its code, so these are mistakes in it.
fn archive_name(guest: &Path) -> Vec<u8> {
    assert!(
        guest.is_absolute(),
        "guest paths are absolute: {}",
        guest.display()
    );
    let mut parts: Vec<&[u8]> = Vec::new();
    for component in guest.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => parts.push(part.as_bytes()),
            Component::ParentDir | Component::Prefix(_) => {
                panic!("guest paths have no `..`: {}", guest.display())
            }
        }
    }
    assert!(!parts.is_empty(), "`/` is not a guest file");
    parts.join(&b'/')
}

/// The names of every folder above `name` (`a/b/c` -> `a`, `a/b`).
fn parents(name: &[u8]) -> Vec<Vec<u8>> {
    name.iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'/')
        .map(|(i, _)| name[..i].to_vec())
        .collect()
}

/// Adds the host folder `host` under archive name `name`.
fn walk_tree(host: &Path, name: &[u8], nodes: &mut BTreeMap<Vec<u8>, Node>) -> Result<(), VmError> {
    let meta = fs::symlink_metadata(host).map_err(|e| VmError::io("cannot stat", host, e))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(host).map_err(|e| VmError::io("cannot read", host, e))?;
        nodes.insert(
            name.to_vec(),
            Node::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            },
        );
    } else if meta.is_dir() {
        nodes.insert(
            name.to_vec(),
            Node::Dir {
                permissions: meta.mode() & 0o7777,
            },
        );
        for entry in fs::read_dir(host).map_err(|e| VmError::io("cannot list", host, e))? {
            let entry = entry.map_err(|e| VmError::io("cannot list", host, e))?;
            let mut child = name.to_vec();
            child.push(b'/');
            child.extend_from_slice(entry.file_name().as_bytes());
            walk_tree(&entry.path(), &child, nodes)?;
        }
    } else if meta.is_file() {
        nodes.insert(
            name.to_vec(),
            Node::Host {
                host: host.to_owned(),
                permissions: None,
            },
        );
    }
    // Sockets, fifos and devices in a host tree are left out.
    Ok(())
}

/// The applets busybox provides, as it lists them (`bin/sh`,
/// `sbin/poweroff`, ...).
fn applets(busybox: &Path) -> Result<Vec<PathBuf>, VmError> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| VmError::io("cannot run", busybox, e))?;
    if !out.status.success() {
        return Err(VmError::Tool {
            command: format!("{} --list-full", busybox.display()),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"/"))
        .map(|line| PathBuf::from(std::ffi::OsStr::from_bytes(line)))
        .collect())
}

/// The shared libraries and loader `ldd` lists for `exe`; none for a
/// static executable.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>, VmError> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| VmError::io("cannot run ldd on", exe, e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(VmError::Tool {
            command: format!("ldd {}", exe.display()),
            message: format!("{}: {}", out.status, stderr.trim()),
        });
    }
    parse_ldd(&stdout).map_err(|line| VmError::Tool {
        command: format!("ldd {}", exe.display()),
        message: format!("unresolved library: {line}"),
    })
}

/// The absolute paths in `ldd` output; Err with the line of a library it
/// could not find.
fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim) {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, or the
        // loader `/lib64/ld-linux-x86-64.so.2 (0x...)`, or the vDSO
        // `linux-vdso.so.1 (0x...)`, which is no file.
        let path = match line.split_once("=>") {
            Some((_, resolved)) => {
                let resolved = resolved.trim();
                if resolved.starts_with("not found") {
                    return Err(line.to_owned());
                }
                resolved
            }
            None => line,
        };
        let path = path.split(" (0x").next().unwrap_or(path).trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_become_relative_archive_names() {
        assert_eq!(archive_name(Path::new("/bin/busybox")), b"bin/busybox");
        assert_eq!(archive_name(Path::new("//usr/./lib//x")), b"usr/lib/x");
        for bad in ["relative", "/a/../b", "/"] {
            let result = std::panic::catch_unwind(|| archive_name(Path::new(bad)));
            assert!(result.is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn every_parent_folder_is_listed() {
        assert_eq!(parents(b"a/b/c"), [b"a".to_vec(), b"a/b".to_vec()]);
        assert!(parents(b"init").is_empty());
    }

    #[test]
    fn parses_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f11)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f11)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f11)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert_eq!(
            parse_ldd("\tstatically linked\n").unwrap(),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err(),
            "libfoo.so.1 => not found"
        );
    }

    #[test]
    fn the_real_ldd_lists_the_loader_and_libc_of_a_dynamic_executable() {
        // `sh` is dash here: dynamic, linked against libc only.
        let libraries = shared_libraries(Path::new("/bin/sh")).unwrap();
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("libc.so")),
            "{libraries:?}"
        );
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libraries:?}"
        );
    }

    #[test]
    fn added_entries_win_over_the_base_and_parents_are_created() {
        let Ok(busybox) = which::which("busybox") else {
            panic!("busybox is not installed: run `cargo xtask setup`");
        };
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/data"), b"x").unwrap();
        std::os::unix::fs::symlink("sub/data", tree.join("link")).unwrap();

        let mut image = Image::new(&busybox);
        image
            .script("exit 3\n")
            .add_bytes("/bin/ls", "#!/bin/sh\n", 0o755)
            .add_tree("/opt/tree", &tree)
            .add_bytes("/deep/er/file", "y", 0o600);
        let nodes = image.resolve().unwrap();
        let node = |name: &str| nodes.get(name.as_bytes()).cloned();

        assert_eq!(
            node("bin/ls"),
            Some(Node::Bytes {
                contents: b"#!/bin/sh\n".to_vec(),
                permissions: 0o755
            })
        );
        assert_eq!(
            node("bin/cat"),
            Some(Node::Symlink {
                target: b"/bin/busybox".to_vec()
            })
        );
        assert!(matches!(node("opt"), Some(Node::Dir { .. })));
        assert!(matches!(node("opt/tree/sub/data"), Some(Node::Host { .. })));
        assert_eq!(
            node("opt/tree/link"),
            Some(Node::Symlink {
                target: b"sub/data".to_vec()
            })
        );
        assert_eq!(node("deep/er"), Some(Node::Dir { permissions: 0o755 }));
        assert!(matches!(
            node("dev/console"),
            Some(Node::CharDevice { major: 5, minor: 1 })
        ));
        assert_eq!(
            node("ww/test.sh"),
            Some(Node::Bytes {
                contents: b"exit 3\n".to_vec(),
                permissions: 0o755
            })
        );
        assert!(matches!(node("init"), Some(Node::Bytes { .. })));
        // A folder precedes what it holds.
        let names: Vec<&Vec<u8>> = nodes.keys().collect();
        for (i, name) in names.iter().enumerate() {
            for parent in parents(name) {
                let at = names.iter().position(|n| **n == parent).unwrap();
                assert!(
                    at < i,
                    "{:?} after its content",
                    String::from_utf8_lossy(&parent)
                );
            }
        }
    }

    #[test]
    fn a_missing_host_file_fails_the_build_with_its_path() {
        let Ok(busybox) = which::which("busybox") else {
            panic!("busybox is not installed: run `cargo xtask setup`");
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut image = Image::new(&busybox);
        image.add_executable("/no/such/weightwarden-tool");
        let err = image
            .write(&tmp.path().join("initrd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/weightwarden-tool"), "{err}");
    }

    #[test]
    fn init_mounts_everything_and_reports_the_status() {
        let image = Image::new("/bin/busybox");
        let init = image.init();
        for (fstype, target) in MOUNTS {
            assert!(
                init.contains(&format!("ww_mount {fstype} {target}\n")),
                "{init}"
            );
        }
        assert!(init.contains("echo \"WW-VM-EXIT: $status\""), "{init}");
        assert!(init.contains("sh /ww/test.sh </dev/null"), "{init}");
    }
}
