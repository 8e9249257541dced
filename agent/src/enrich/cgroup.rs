//! cgroup path → container id or systemd unit.

/// What a cgroup path says about where a process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub container_id: Option<String>,
    pub systemd_unit: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Reads a cgroup v2 path such as `/system.slice/docker-<id>.scope`,
/// `/kubepods.slice/…/cri-containerd-<id>.scope`, `/docker/<id>` or
/// `/system.slice/nginx.service`.
pub fn placement(path: &str) -> Placement {
    let mut out = Placement::default();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        let stem = comp
            .strip_suffix(".scope")
            .or_else(|| comp.strip_suffix(".service"))
            .unwrap_or(comp);
        let id = stem.rsplit(['-', ':']).next().unwrap_or(stem);
        if is_container_id(id) {
            out.container_id = Some(id.to_string());
        } else if comp.ends_with(".service") || comp.ends_with(".scope") {
            out.systemd_unit = Some(comp.to_string());
        }
    }
    if out.container_id.is_some() {
        // A container's scope unit name is the container, not a service.
        out.systemd_unit = out
            .systemd_unit
            .filter(|u| !u.contains(out.container_id.as_deref().unwrap_or("")));
    }
    out
}

/// The v2 line of /proc/PID/cgroup (`0::/path`).
pub fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904a1b2c3d4e5f60718293a4b5c";

    #[test]
    fn docker_podman_containerd_crio() {
        for p in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope"
            ),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods/besteffort/pod1/crio-{ID}.scope"),
        ] {
            let pl = placement(&p);
            assert_eq!(pl.container_id.as_deref(), Some(ID), "{p}");
        }
    }

    #[test]
    fn systemd_units() {
        assert_eq!(
            placement("/system.slice/nginx.service")
                .systemd_unit
                .as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            placement("/user.slice/user-1000.slice/session-3.scope")
                .systemd_unit
                .as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(placement("/").systemd_unit, None);
        assert_eq!(placement("").container_id, None);
    }

    #[test]
    fn proc_cgroup_v2_line() {
        assert_eq!(
            v2_path("1:name=systemd:/x\n0::/system.slice/a.service\n"),
            Some("/system.slice/a.service")
        );
        assert_eq!(v2_path("garbage"), None);
    }
}
