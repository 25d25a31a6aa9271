//! The capabilities the receiver runs with, checked once at start so that a missing one stops
//! it with its name instead of a bare `EPERM` from deep inside loading, or, worse, a receiver
//! that starts and silently sees less.
//!
//! Measured on Linux 6.18 (`setpriv` with one capability removed, uid 0 and uid 65534):
//! without `CAP_BPF` creating the first map fails; without `CAP_PERFMON` loading the first
//! program fails; without `CAP_SYS_PTRACE` the receiver starts but `pidfd_getfd(2)` and
//! `/proc/<pid>/fd` fail, so no socket opened before the start is found and no peer address
//! is resolved; without `CAP_DAC_READ_SEARCH` a non-root receiver cannot read tracefs (mode
//! 0700) and a root one cannot list the fds of other users' processes (`/proc/<pid>/fd` is
//! mode 0500). `CAP_SYS_RESOURCE` is not needed: since 5.11 BPF memory is charged to the
//! memory cgroup, not to `RLIMIT_MEMLOCK`.

use std::fmt;

/// Capability numbers (`linux/capability.h`).
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// One capability the receiver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// `CAP_BPF`.
    pub name: &'static str,
    pub bit: u32,
    /// A broader capability the kernel accepts instead (`CAP_SYS_ADMIN` for `CAP_BPF`).
    pub or: Option<(&'static str, u32)>,
    /// What fails without it.
    pub needed_for: &'static str,
}

/// Exactly what the receiver needs, no more: the Dockerfile and the Kubernetes manifests ask
/// for these four (a test compares them).
pub const REQUIRED_CAPABILITIES: &[Capability] = &[
    Capability {
        name: "CAP_BPF",
        bit: CAP_BPF,
        or: Some(("CAP_SYS_ADMIN", CAP_SYS_ADMIN)),
        needed_for: "needed to create BPF maps and ring buffers and to load programs",
    },
    Capability {
        name: "CAP_PERFMON",
        bit: CAP_PERFMON,
        or: Some(("CAP_SYS_ADMIN", CAP_SYS_ADMIN)),
        needed_for: "needed to load tracing programs and attach them to syscall tracepoints",
    },
    Capability {
        name: "CAP_SYS_PTRACE",
        bit: CAP_SYS_PTRACE,
        or: None,
        needed_for: "needed to read the traced processes' sockets (pidfd_getfd(2), \
                     /proc/<pid>/fd) and their /proc/<pid>/exe and environ",
    },
    Capability {
        name: "CAP_DAC_READ_SEARCH",
        bit: CAP_DAC_READ_SEARCH,
        or: Some(("CAP_DAC_OVERRIDE", CAP_DAC_OVERRIDE)),
        needed_for: "needed to read tracefs (/sys/kernel/tracing is mode 0700) and other \
                     users' /proc/<pid>/fd",
    },
];

/// The capabilities of `REQUIRED_CAPABILITIES` that `effective` (a `CapEff` mask) lacks.
pub fn missing(effective: u64) -> Vec<&'static Capability> {
    let has = |bit: u32| bit < 64 && effective & (1u64 << bit) != 0;
    REQUIRED_CAPABILITIES
        .iter()
        .filter(|c| !has(c.bit) && !c.or.is_some_and(|(_, bit)| has(bit)))
        .collect()
}

/// This process's effective capabilities, from `CapEff` in `/proc/self/status`.
pub fn effective() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    parse_cap_eff(&status).ok_or_else(|| "no CapEff line in /proc/self/status".to_string())
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Why the receiver cannot run with the capabilities it has.
#[derive(Debug, PartialEq, Eq)]
pub enum CapabilityError {
    /// The capabilities could not be read.
    Unknown(String),
    Missing(Vec<&'static Capability>),
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityError::Unknown(why) => write!(f, "cannot check capabilities: {why}"),
            CapabilityError::Missing(caps) => {
                for (i, c) in caps.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "missing {}: {}", c.name, c.needed_for)?;
                    if let Some((alt, _)) = c.or {
                        write!(f, " (or {alt})")?;
                    }
                }
                f.write_str(". Run as root, or grant exactly ")?;
                let names: Vec<&str> = REQUIRED_CAPABILITIES.iter().map(|c| c.name).collect();
                if let Some((last, rest)) = names.split_last() {
                    write!(f, "{} and {last}", rest.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CapabilityError {}

/// Ok when this process holds every capability in [`REQUIRED_CAPABILITIES`] (or the broader
/// alternative); otherwise names each missing one and what it is for.
pub fn require() -> Result<(), CapabilityError> {
    let eff = effective().map_err(CapabilityError::Unknown)?;
    let missing = missing(eff);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CapabilityError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(bits: &[u32]) -> u64 {
        bits.iter().fold(0, |m, b| m | 1u64 << b)
    }

    #[test]
    fn the_four_are_enough_and_each_one_is_named_when_missing() {
        let four = [CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH];
        assert!(missing(mask(&four)).is_empty());
        for (i, cap) in REQUIRED_CAPABILITIES.iter().enumerate() {
            let mut three = four.to_vec();
            three.remove(i);
            let m = missing(mask(&three));
            assert_eq!(m, vec![cap], "without {}", cap.name);
            let text = CapabilityError::Missing(m).to_string();
            assert!(
                text.starts_with(&format!("missing {}: needed to ", cap.name)),
                "{text}"
            );
        }
        assert_eq!(missing(0).len(), 4);
    }

    #[test]
    fn broader_capabilities_stand_in_where_the_kernel_accepts_them() {
        // Full root (every bit, as `CapEff: 000001ffffffffff`).
        assert!(missing(0x1ff_ffff_ffff).is_empty());
        // CAP_SYS_ADMIN covers BPF and PERFMON, CAP_DAC_OVERRIDE covers DAC_READ_SEARCH,
        // nothing covers SYS_PTRACE.
        assert!(missing(mask(&[CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_OVERRIDE])).is_empty());
        let m = missing(mask(&[CAP_SYS_ADMIN, CAP_DAC_OVERRIDE]));
        assert_eq!(
            m.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["CAP_SYS_PTRACE"]
        );
    }

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c000080004\n";
        assert_eq!(
            parse_cap_eff(status),
            Some(mask(&[
                CAP_BPF,
                CAP_PERFMON,
                CAP_SYS_PTRACE,
                CAP_DAC_READ_SEARCH
            ]))
        );
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert!(effective().is_ok());
    }

    /// `CAP_BPF` → `BPF`, as Docker and Kubernetes spell them.
    fn required_short_names() -> Vec<String> {
        let mut v: Vec<String> = REQUIRED_CAPABILITIES
            .iter()
            .map(|c| c.name.trim_start_matches("CAP_").to_string())
            .collect();
        v.sort();
        v
    }

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The items of every `add:` list under `capabilities:` (block style, `- NAME  # why`).
    fn manifest_adds(yaml: &str) -> Vec<Vec<String>> {
        let mut lists = Vec::new();
        let mut lines = yaml.lines().peekable();
        while let Some(line) = lines.next() {
            if line.trim() != "add:" {
                continue;
            }
            let mut items = Vec::new();
            while let Some(item) = lines.peek().and_then(|l| l.trim().strip_prefix("- ")) {
                let name = item.split('#').next().unwrap_or("").trim();
                items.push(name.to_string());
                lines.next();
            }
            items.sort();
            lists.push(items);
        }
        lists
    }

    #[test]
    fn kubernetes_manifests_ask_for_exactly_the_four_and_no_privilege() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/kubernetes");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config/kubernetes") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let yaml = std::fs::read_to_string(&path).expect("manifest");
            let code: String = yaml
                .lines()
                .map(|l| l.split('#').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !code.contains("privileged: true"),
                "{}: privileged: true",
                path.display()
            );
            for adds in manifest_adds(&yaml) {
                assert_eq!(adds, required_short_names(), "{}", path.display());
                seen += 1;
            }
            if yaml.contains("capabilities:") {
                assert!(
                    code.contains("drop: [\"ALL\"]"),
                    "{}: drop ALL",
                    path.display()
                );
            }
        }
        assert!(seen >= 1, "no capabilities list under config/kubernetes");
    }

    #[test]
    fn the_dockerfile_asks_for_exactly_the_four_and_no_privilege() {
        let docker = repo_file("Dockerfile");
        let label = docker
            .lines()
            .find_map(|l| l.strip_prefix("LABEL io.ebpf-receiver.capabilities="))
            .expect("the capabilities label");
        let mut names: Vec<String> = label
            .trim_matches('"')
            .split(',')
            .map(String::from)
            .collect();
        names.sort();
        assert_eq!(names, required_short_names());
        // The example `docker run`.
        let mut adds: Vec<String> = docker
            .split("--cap-add ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(String::from)
            .collect();
        adds.sort();
        assert_eq!(adds, required_short_names());
        assert!(docker.contains("--cap-drop ALL"));
        assert!(!docker.contains("--privileged"));
    }

    #[test]
    fn the_message_lists_every_missing_capability_and_the_full_set() {
        let text = CapabilityError::Missing(missing(mask(&[CAP_BPF, CAP_PERFMON]))).to_string();
        assert!(
            text.contains("missing CAP_SYS_PTRACE: needed to read"),
            "{text}"
        );
        assert!(
            text.contains("; missing CAP_DAC_READ_SEARCH: needed to read tracefs"),
            "{text}"
        );
        assert!(
            text.ends_with(
                ". Run as root, or grant exactly CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and \
                 CAP_DAC_READ_SEARCH"
            ),
            "{text}"
        );
    }
}
