//! `ebpf-receiver check`: what the kernel and privileges allow, one line per item.

use std::{fs, path::Path};

use super::caps;
use super::load::{TRACEFS, ensure_tracefs, tracepoints};

/// One checked capability of the host.
#[derive(Clone, Debug)]
pub struct CheckItem {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, or what is missing and how to fix it.
    pub detail: String,
}

/// Checks BTF, tracefs, every needed tracepoint, uprobes, ring buffer maps and capabilities.
pub fn check() -> Vec<CheckItem> {
    let mut items = Vec::new();
    items.push(check_kernel());
    items.extend(check_capabilities());
    items.push(item(
        "btf",
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "/sys/kernel/btf/vmlinux",
    ));
    let tracefs = match ensure_tracefs() {
        Ok(false) => CheckItem {
            name: "tracefs",
            ok: true,
            detail: format!("mounted at {TRACEFS}"),
        },
        Ok(true) => CheckItem {
            name: "tracefs",
            ok: true,
            detail: format!("was not mounted; mounted it at {TRACEFS}"),
        },
        Err(e) => CheckItem {
            name: "tracefs",
            ok: false,
            detail: format!(
                "not mounted at {TRACEFS} and cannot mount it: {}",
                source_text(&e)
            ),
        },
    };
    let tracefs_ok = tracefs.ok;
    items.push(tracefs);
    let events = Path::new(TRACEFS).join("events");
    let needed = tracepoints();
    let missing: Vec<&str> = needed
        .iter()
        .map(String::as_str)
        .filter(|tp| !events.join(tp).join("id").exists())
        .collect();
    items.push(CheckItem {
        name: "syscall tracepoints",
        ok: tracefs_ok && missing.is_empty(),
        detail: if !tracefs_ok {
            "unknown: tracefs unavailable".into()
        } else if missing.is_empty() {
            format!("all {} present", needed.len())
        } else {
            format!("missing: {}", missing.join(", "))
        },
    });
    items.push(item(
        "uprobes",
        Path::new("/sys/bus/event_source/devices/uprobe").exists(),
        "/sys/bus/event_source/devices/uprobe (needed for TLS libraries)",
    ));
    items.push(check_ringbuf());
    items
}

fn item(name: &'static str, ok: bool, what: &str) -> CheckItem {
    CheckItem {
        name,
        ok,
        detail: if ok {
            format!("{what} present")
        } else {
            format!("{what} missing")
        },
    }
}

fn source_text(e: &super::LoadError) -> String {
    use std::error::Error as _;
    match e.source() {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

fn check_kernel() -> CheckItem {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    CheckItem {
        name: "kernel",
        ok: true,
        detail: format!("linux {}", release.trim()),
    }
}

/// One item per capability in [`caps::REQUIRED_CAPABILITIES`]: the same rule `run` applies at
/// start.
fn check_capabilities() -> Vec<CheckItem> {
    let eff = match caps::effective() {
        Ok(eff) => eff,
        Err(why) => {
            return vec![CheckItem {
                name: "capabilities",
                ok: false,
                detail: why,
            }];
        }
    };
    let missing = caps::missing(eff);
    caps::REQUIRED_CAPABILITIES
        .iter()
        .map(|c| {
            let ok = !missing.contains(&c);
            CheckItem {
                name: c.name,
                ok,
                detail: if ok {
                    format!("effective ({})", c.needed_for)
                } else {
                    format!("missing: {}", c.needed_for)
                },
            }
        })
        .collect()
}

/// Creates (and closes) a one-page BPF ring buffer map.
fn check_ringbuf() -> CheckItem {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    // union bpf_attr, map-create part: map_type, key_size, value_size, max_entries, map_flags;
    // the rest zero.
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_RINGBUF;
    attr[3] = 4096;
    // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of a zero-initialised, live buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return CheckItem {
            name: "ring buffer maps",
            ok: false,
            detail: format!("cannot create a BPF ring buffer: {err}"),
        };
    }
    // SAFETY: `fd` is a file descriptor we just created and own.
    unsafe { libc::close(fd as libc::c_int) };
    CheckItem {
        name: "ring buffer maps",
        ok: true,
        detail: "BPF_MAP_TYPE_RINGBUF can be created".into(),
    }
}
