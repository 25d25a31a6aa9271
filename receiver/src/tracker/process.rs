//! Process metadata from `/proc/<pid>`: executable name, command line, the process's own
//! `OTEL_SERVICE_NAME`, and the container id from its cgroup. Read once per pid and cached by
//! the tracker; every read is capped so a hostile process cannot make us allocate much.

use std::io::Read;
use std::path::Path;

use crate::model::ProcessMeta;

const MAX_CMDLINE_BYTES: u64 = 4096;
const MAX_ENVIRON_BYTES: u64 = 128 * 1024;
const MAX_CGROUP_BYTES: u64 = 16 * 1024;

/// Reads what we export about a process; missing files (the process exited, or we lack
/// privileges) leave fields empty rather than failing.
pub fn read_process(proc_root: &Path, pid: u32) -> ProcessMeta {
    let dir = proc_root.join(pid.to_string());
    let executable_name = std::fs::read_link(dir.join("exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| n.trim_end_matches(" (deleted)").to_string())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string(dir.join("comm"))
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let command_line = read_capped(&dir.join("cmdline"), MAX_CMDLINE_BYTES)
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let service_name = read_capped(&dir.join("environ"), MAX_ENVIRON_BYTES)
        .and_then(|b| env_value(&b, b"OTEL_SERVICE_NAME"))
        .filter(|s| !s.trim().is_empty());
    let container_id = read_capped(&dir.join("cgroup"), MAX_CGROUP_BYTES)
        .and_then(|b| container_id(&String::from_utf8_lossy(&b)));
    ProcessMeta {
        pid,
        executable_name,
        command_line,
        service_name,
        container_id,
    }
}

fn read_capped(path: &Path, cap: u64) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(cap).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Value of `name` in a NUL-separated environment block.
fn env_value(environ: &[u8], name: &[u8]) -> Option<String> {
    environ.split(|c| *c == 0).find_map(|kv| {
        let rest = kv.strip_prefix(name)?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(rest).into_owned())
    })
}

/// The container id in a `/proc/<pid>/cgroup` file: the last 64-hex-digit token of a path
/// such as `/docker/<id>`, `/kubepods/.../cri-containerd-<id>.scope` or `docker-<id>.scope`.
pub fn container_id(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for seg in path.rsplit('/') {
            let seg = seg.strip_suffix(".scope").unwrap_or(seg);
            let id = seg.rsplit(['-', ':']).next().unwrap_or(seg);
            if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_common_runtimes() {
        let id = "3f4e9b1c2d8a7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
        for cg in [
            format!("0::/system.slice/docker-{id}.scope\n"),
            format!("12:pids:/docker/{id}\n"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{id}.scope\n"
            ),
            format!("0::/kubepods/besteffort/pod1234/{id}\n"),
            format!("0::/machine.slice/libpod-{id}.scope/container\n"),
        ] {
            assert_eq!(container_id(&cg).as_deref(), Some(id), "{cg}");
        }
        assert_eq!(
            container_id("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
        assert_eq!(container_id(""), None);
    }

    #[test]
    fn env_value_is_exact() {
        let env = b"A=1\0OTEL_SERVICE_NAME_X=no\0OTEL_SERVICE_NAME=shop\0";
        assert_eq!(
            env_value(env, b"OTEL_SERVICE_NAME").as_deref(),
            Some("shop")
        );
        assert_eq!(env_value(b"X=1", b"OTEL_SERVICE_NAME"), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = read_process(Path::new("/proc"), std::process::id());
        assert_eq!(me.pid, std::process::id());
        assert!(!me.executable_name.is_empty());
        assert!(!me.command_line.is_empty());
        let gone = read_process(Path::new("/proc"), u32::MAX - 1);
        assert!(gone.executable_name.is_empty());
    }
}
