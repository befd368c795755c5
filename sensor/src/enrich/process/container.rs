//! Tells which container, if any, a cgroup v2 path belongs to.
//!
//! Container runtimes name the cgroup of each container after its id, in a
//! handful of layouts that depend on the runtime and on the cgroup driver
//! (cgroupfs or systemd). This module recognises those layouts from the path
//! alone; it does no I/O. It errs on the side of `None`: a process wrongly
//! attributed to a container is worse than one reported as a host process,
//! because the container id is what an analyst pivots on.
//!
//! Recognised forms (`<id>` is a 64-digit lowercase hex id):
//!
//! | layout                                                   | runtime      |
//! |----------------------------------------------------------|--------------|
//! | `/docker/<id>`                                           | Docker       |
//! | `.../docker-<id>.scope`                                  | Docker       |
//! | `.../cri-containerd-<id>.scope`, `.../nerdctl-<id>.scope`| Containerd   |
//! | `/containerd/<name>` (containerd's own cgroupfs layout)  | Containerd   |
//! | `.../crio-<id>.scope`, `.../crio-<id>`                   | CriO         |
//! | `.../libpod-<id>.scope`, `/libpod_parent/libpod-<id>`    | Podman       |
//! | `/kubepods/<qos>/pod<uid>/<id>` (runtime not in the path)| Kubernetes   |
//!
//! The deepest matching path component wins, so a container nested in
//! another (Kubernetes in Docker, a systemd container's inner cgroups) is
//! reported as the innermost one, the one the process actually runs in.
//! `conmon` scopes (`libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope`)
//! hold Podman's and CRI-O's monitor process, which runs on the host on the
//! container's behalf: they are deliberately not containers.

use serde::{Serialize, Serializer};

/// Length of a full container id (a SHA-256 in hex).
const ID_LEN: usize = 64;
/// containerd's limit on identifiers (`identifiers.Validate`).
const CONTAINERD_NAME_MAX: usize = 76;

/// The container a process runs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The runtime's container id: 64 lowercase hex digits, except in the
    /// `/containerd/<name>` layout where `ctr` lets the user choose the name.
    pub id: String,
    pub runtime: Runtime,
    /// Kubernetes pod UID with its dashes (the systemd driver writes them as
    /// underscores), when the cgroup sits under `kubepods`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// The container runtime, as far as the cgroup path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A kubelet cgroupfs path (`/kubepods/.../pod<uid>/<id>`): every CRI
    /// runtime that uses bare ids there looks the same.
    Kubernetes,
}

impl Runtime {
    /// Every runtime.
    pub const ALL: [Runtime; 5] = [
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
        Runtime::Kubernetes,
    ];

    /// The runtime [`Runtime::as_str`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The name written to events.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "crio",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Runtime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The container that owns the cgroup v2 `path` (relative to the cgroup2
/// mount, as in the `0::` line of `/proc/PID/cgroup`), or `None` for a host
/// process.
pub fn parse_cgroup_path(path: &str) -> Option<Container> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (index, id, runtime) = components
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, component)| {
            let parent = i.checked_sub(1).and_then(|p| components.get(p)).copied();
            container_component(component, parent).map(|(id, runtime)| (i, id, runtime))
        })?;
    let outer = components.get(..index).unwrap_or_default();
    let pod_uid = pod_uid(outer);
    Some(Container {
        id: id.to_owned(),
        runtime,
        pod_uid,
    })
}

/// The id and runtime if `component` (whose parent is `parent`) names a
/// container's cgroup.
fn container_component<'a>(component: &'a str, parent: Option<&str>) -> Option<(&'a str, Runtime)> {
    // The systemd driver makes each container a transient scope unit; the
    // cgroupfs drivers use the bare name.
    let name = component.strip_suffix(".scope").unwrap_or(component);

    // `libpod-conmon-<id>` and `crio-conmon-<id>` start with container
    // prefixes too. The id check would reject them (`conmon-<id>` is no id),
    // but refuse them by name so that stays true if the id check loosens.
    if name.starts_with("libpod-conmon-") || name.starts_with("crio-conmon-") {
        return None;
    }
    const PREFIXED: [(&str, Runtime); 5] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("nerdctl-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ];
    for (prefix, runtime) in PREFIXED {
        if let Some(id) = name.strip_prefix(prefix) {
            return is_full_id(id).then_some((id, runtime));
        }
    }

    // Bare names: only trusted under a parent that says whose they are.
    match parent {
        Some("docker") if is_full_id(component) => Some((component, Runtime::Docker)),
        Some("containerd") if is_containerd_name(component) => {
            Some((component, Runtime::Containerd))
        }
        Some(parent) if is_full_id(component) && cgroupfs_pod_uid(parent).is_some() => {
            Some((component, Runtime::Kubernetes))
        }
        _ => None,
    }
}

/// The pod UID from the innermost pod cgroup among `outer`, if the path is
/// a kubelet one.
fn pod_uid(outer: &[&str]) -> Option<String> {
    if !outer.iter().any(|c| c.starts_with("kubepods")) {
        return None;
    }
    outer
        .iter()
        .rev()
        .find_map(|c| cgroupfs_pod_uid(c).or_else(|| systemd_pod_uid(c)))
}

/// `pod<uid>`: the kubelet's cgroupfs driver keeps the UID's dashes.
fn cgroupfs_pod_uid(component: &str) -> Option<String> {
    component.strip_prefix("pod").and_then(normalize_pod_uid)
}

/// `kubepods-pod<uid>.slice` or `kubepods-<qos>-pod<uid>.slice`: systemd uses
/// `-` to nest slices, so the kubelet writes the UID's dashes as `_`.
fn systemd_pod_uid(component: &str) -> Option<String> {
    let unit = component.strip_suffix(".slice")?;
    if !unit.starts_with("kubepods-") {
        return None;
    }
    let (_, last) = unit.rsplit_once('-')?;
    last.strip_prefix("pod").and_then(normalize_pod_uid)
}

/// A pod UID with dashes restored, if `raw` looks like one: an RFC 4122 UUID,
/// or the 32 bare hex digits the kubelet gives static (manifest) pods.
fn normalize_pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let groups: Vec<&str> = uid.split('-').collect();
    let uuid_shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    let bare_shape = groups.len() == 1 && uid.len() == 32;
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    ((uuid_shape || bare_shape) && hex).then_some(uid)
}

/// A full container id: 64 lowercase hex digits.
fn is_full_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// containerd's identifier grammar: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`.
fn is_containerd_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= CONTAINERD_NAME_MAX
        && s.split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "1f2e3d4c-5b6a-4789-8abc-def012345678";
    const UID_UNDERSCORE: &str = "1f2e3d4c_5b6a_4789_8abc_def012345678";

    fn parsed(path: &str) -> Container {
        match parse_cgroup_path(path) {
            Some(c) => c,
            None => panic!("{path} should be a container"),
        }
    }

    fn container(id: &str, runtime: Runtime, pod_uid: Option<&str>) -> Container {
        Container {
            id: id.to_owned(),
            runtime,
            pod_uid: pod_uid.map(str::to_owned),
        }
    }

    #[test]
    fn docker_cgroupfs() {
        assert_eq!(
            parsed(&format!("/docker/{ID}")),
            container(ID, Runtime::Docker, None)
        );
    }

    #[test]
    fn docker_systemd_scope() {
        assert_eq!(
            parsed(&format!("/system.slice/docker-{ID}.scope")),
            container(ID, Runtime::Docker, None)
        );
    }

    #[test]
    fn docker_scope_with_inner_cgroup() {
        // A container running systemd creates cgroups below its scope.
        assert_eq!(
            parsed(&format!("/system.slice/docker-{ID}.scope/init.scope")),
            container(ID, Runtime::Docker, None)
        );
    }

    #[test]
    fn kubepods_cgroupfs_burstable() {
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            container(ID, Runtime::Kubernetes, Some(UID))
        );
    }

    #[test]
    fn kubepods_cgroupfs_besteffort() {
        assert_eq!(
            parsed(&format!("/kubepods/besteffort/pod{UID}/{ID}")),
            container(ID, Runtime::Kubernetes, Some(UID))
        );
    }

    #[test]
    fn kubepods_cgroupfs_guaranteed_has_no_qos_level() {
        assert_eq!(
            parsed(&format!("/kubepods/pod{UID}/{ID}")),
            container(ID, Runtime::Kubernetes, Some(UID))
        );
    }

    #[test]
    fn kubepods_systemd_containerd() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod{UID_UNDERSCORE}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parsed(&path), container(ID, Runtime::Containerd, Some(UID)));
    }

    #[test]
    fn kubepods_systemd_guaranteed_crio() {
        let path = format!("/kubepods.slice/kubepods-pod{UID_UNDERSCORE}.slice/crio-{ID}.scope");
        assert_eq!(parsed(&path), container(ID, Runtime::CriO, Some(UID)));
    }

    #[test]
    fn kubepods_systemd_besteffort_crio() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod{UID_UNDERSCORE}.slice/crio-{ID}.scope"
        );
        assert_eq!(parsed(&path), container(ID, Runtime::CriO, Some(UID)));
    }

    #[test]
    fn crio_cgroupfs() {
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            container(ID, Runtime::CriO, Some(UID))
        );
    }

    #[test]
    fn static_pod_uid_is_bare_hex() {
        let uid = "6e2b8a9c0d1f2e3a4b5c6d7e8f9a0b1c";
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{uid}/{ID}")),
            container(ID, Runtime::Kubernetes, Some(uid))
        );
    }

    #[test]
    fn podman_root() {
        assert_eq!(
            parsed(&format!("/machine.slice/libpod-{ID}.scope")),
            container(ID, Runtime::Podman, None)
        );
    }

    #[test]
    fn podman_scope_with_container_subgroup() {
        assert_eq!(
            parsed(&format!("/machine.slice/libpod-{ID}.scope/container")),
            container(ID, Runtime::Podman, None)
        );
    }

    #[test]
    fn podman_rootless() {
        let path =
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        assert_eq!(parsed(&path), container(ID, Runtime::Podman, None));
    }

    #[test]
    fn podman_cgroupfs() {
        assert_eq!(
            parsed(&format!("/libpod_parent/libpod-{ID}")),
            container(ID, Runtime::Podman, None)
        );
    }

    #[test]
    fn conmon_is_not_the_container() {
        for path in [
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{ID}.scope"
            ),
            format!("/kubepods.slice/kubepods-pod{UID_UNDERSCORE}.slice/crio-conmon-{ID}.scope"),
        ] {
            assert_eq!(parse_cgroup_path(&path), None, "{path}");
        }
    }

    #[test]
    fn containerd_cgroupfs_with_name() {
        assert_eq!(
            parsed("/containerd/redis-1"),
            container("redis-1", Runtime::Containerd, None)
        );
        assert_eq!(
            parsed(&format!("/containerd/{ID}")),
            container(ID, Runtime::Containerd, None)
        );
    }

    #[test]
    fn nerdctl_systemd() {
        assert_eq!(
            parsed(&format!("/system.slice/nerdctl-{ID}.scope")),
            container(ID, Runtime::Containerd, None)
        );
    }

    #[test]
    fn innermost_container_wins() {
        // kind: a Kubernetes node that is itself a Docker container.
        let path = format!("/docker/{ID2}/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(parsed(&path), container(ID, Runtime::Kubernetes, Some(UID)));
        // Docker in Docker.
        assert_eq!(
            parsed(&format!("/docker/{ID2}/docker/{ID}")),
            container(ID, Runtime::Docker, None)
        );
    }

    #[test]
    fn host_paths_are_not_containers() {
        for path in [
            "",
            "/",
            "/init.scope",
            "/system.slice/sshd.service",
            "/system.slice/containerd.service",
            "/system.slice/docker.service",
            "/system.slice/docker.socket",
            "/user.slice/user-1000.slice/session-2.scope",
            "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.socket",
            "/machine.slice",
            "/kubepods.slice/kubepods-burstable.slice",
            "/kubepods/burstable",
            "/docker",
            "/containerd",
        ] {
            assert_eq!(parse_cgroup_path(path), None, "{path:?}");
        }
    }

    #[test]
    fn pod_cgroup_itself_is_not_a_container() {
        assert_eq!(
            parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}")),
            None
        );
        assert_eq!(
            parse_cgroup_path(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_UNDERSCORE}.slice"
            )),
            None
        );
    }

    #[test]
    fn malformed_ids_are_rejected() {
        let short = &ID[..63];
        let upper = ID.to_uppercase();
        let long = format!("{ID}0");
        for path in [
            format!("/docker/{short}"),
            format!("/docker/{upper}"),
            format!("/docker/{long}"),
            format!("/system.slice/docker-{short}.scope"),
            format!("/system.slice/docker-{ID}x.scope"),
            format!("/machine.slice/libpod-{upper}.scope"),
            "/containerd/-bad".to_owned(),
            "/containerd/bad..name".to_owned(),
            format!("/containerd/{}", "a".repeat(77)),
        ] {
            assert_eq!(parse_cgroup_path(&path), None, "{path}");
        }
    }

    #[test]
    fn bare_id_needs_a_known_parent() {
        assert_eq!(parse_cgroup_path(&format!("/somewhere/{ID}")), None);
        assert_eq!(parse_cgroup_path(&format!("/{ID}")), None);
        // A pod-like directory outside kubepods still gives the container
        // (the kubelet can be configured with another root), but no pod UID
        // is claimed for it.
        assert_eq!(
            parsed(&format!("/custom/pod{UID}/{ID}")),
            container(ID, Runtime::Kubernetes, None)
        );
    }

    #[test]
    fn malformed_pod_uid_is_dropped_not_guessed() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podnot_a_uid.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parsed(&path), container(ID, Runtime::Containerd, None));
    }

    #[test]
    fn runtime_names_are_lowercase() {
        let names: Vec<&str> = [
            Runtime::Docker,
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Podman,
            Runtime::Kubernetes,
        ]
        .into_iter()
        .map(Runtime::as_str)
        .collect();
        assert_eq!(
            names,
            ["docker", "containerd", "crio", "podman", "kubernetes"]
        );
    }

    #[test]
    fn serializes_runtime_as_its_name() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(container(ID, Runtime::CriO, Some(UID)))?;
        assert_eq!(
            json,
            serde_json::json!({"id": ID, "runtime": "crio", "pod_uid": UID})
        );
        let json = serde_json::to_value(container(ID, Runtime::Docker, None))?;
        assert_eq!(json, serde_json::json!({"id": ID, "runtime": "docker"}));
        Ok(())
    }
}
