//! Loading: object, globals, maps sized from config, filter maps, tracepoint attachment.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray},
    programs::TracePoint,
};
use ebpf_common::{MAX_CAPTURE, stat};

use super::event::kernel_id;
use super::{ConnControl, LoadError, RingReader};
use crate::model::{PROTOCOL_COUNT, Protocol};

/// The object `build.rs` built from `ebpf/probes`.
static PROBES_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ebpf-probes"));

/// The embedded probes object (read once, by [`Probes::load`]).
pub fn probes_object() -> &'static [u8] {
    PROBES_OBJECT
}

/// Every program, named after the tracepoint it attaches to (`syscalls/<name>` unless listed in
/// [`SCHED_PROGRAMS`]). Exits first, so an enter never stashes arguments that no exit would
/// take (they would just age out of the LRU stash, but this keeps the start clean).
const PROGRAMS: &[&str] = &[
    "sys_exit_socket",
    "sys_exit_connect",
    "sys_exit_accept",
    "sys_exit_accept4",
    "sys_exit_read",
    "sys_exit_write",
    "sys_exit_readv",
    "sys_exit_writev",
    "sys_exit_sendto",
    "sys_exit_recvfrom",
    "sys_exit_sendmsg",
    "sys_exit_recvmsg",
    "sys_exit_sendmmsg",
    "sys_exit_recvmmsg",
    "sys_exit_sendfile64",
    "sys_exit_splice",
    "sched_process_fork",
    "sys_enter_socket",
    "sys_enter_connect",
    "sys_enter_accept",
    "sys_enter_accept4",
    "sys_enter_read",
    "sys_enter_write",
    "sys_enter_readv",
    "sys_enter_writev",
    "sys_enter_sendto",
    "sys_enter_recvfrom",
    "sys_enter_sendmsg",
    "sys_enter_recvmsg",
    "sys_enter_sendmmsg",
    "sys_enter_recvmmsg",
    "sys_enter_sendfile64",
    "sys_enter_splice",
    "sys_enter_clone",
    "sys_enter_clone3",
    "sys_enter_fork",
    "sys_enter_vfork",
    "sys_enter_close",
];

/// Programs that make a forked child inherit its parent's sockets (and, under a pid filter,
/// its inclusion); left out when the `sched_process_fork` record layout is unknown.
const FORK_PROGRAMS: &[&str] = &[
    "sched_process_fork",
    "sys_enter_clone",
    "sys_enter_clone3",
    "sys_enter_fork",
    "sys_enter_vfork",
];

/// Programs on `sched/` tracepoints (a forked child inherits its parent's sockets).
const SCHED_PROGRAMS: &[&str] = &["sched_process_fork"];

/// The tracepoint category of a program.
fn category(program: &str) -> &'static str {
    if SCHED_PROGRAMS.contains(&program) {
        "sched"
    } else {
        "syscalls"
    }
}

/// The tracepoints the programs attach to, as `category/name` (for `check` and the benchmark's
/// empty-program floor).
pub fn tracepoints() -> Vec<String> {
    PROGRAMS
        .iter()
        .map(|p| format!("{}/{p}", category(p)))
        .collect()
}

/// The tracepoints [`Probes::load`] attaches to on this host, as `category:name` (the form
/// `bpftrace` and `perf` take after `tracepoint:`), in attach order: the fork-inheritance
/// programs only when the `sched_process_fork` record layout is known (as in `attach_all`).
/// `ebpf-receiver check --list-tracepoints` prints them, so the benchmark can attach empty
/// programs to exactly the same tracepoints.
pub fn attach_points() -> Vec<String> {
    let fork = fork_child_pid_offset(Path::new(TRACEFS)).is_some()
        || !Path::new(TRACEFS).join("events").exists();
    PROGRAMS
        .iter()
        .filter(|p| fork || !FORK_PROGRAMS.contains(p))
        .map(|p| format!("{}:{p}", category(p)))
        .collect()
}

/// Offset of `child_pid` in a `sched_process_fork` record, from the tracepoint's format file
/// (`field:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;`): the record layout changed when
/// the comm fields became `__data_loc` strings.
fn fork_child_pid_offset(tracefs: &Path) -> Option<u32> {
    let format =
        std::fs::read_to_string(tracefs.join("events/sched/sched_process_fork/format")).ok()?;
    parse_field_offset(&format, "child_pid")
}

/// The offset of `field` in a tracepoint format file; only a 4-byte field is accepted.
fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    let line = format.lines().find(|l| {
        l.trim_start()
            .strip_prefix("field:")
            .and_then(|d| d.split(';').next())
            .is_some_and(|decl| decl.split_whitespace().last() == Some(field))
    })?;
    let value = |key: &str| {
        line.split(';')
            .find_map(|part| part.trim().strip_prefix(key))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    (value("size:")? == 4).then_some(())?;
    value("offset:").filter(|o| *o < 256)
}

pub(super) const TRACEFS: &str = "/sys/kernel/tracing";

/// Where the raw syscall tracepoints find things in `struct pt_regs` on this architecture: the
/// six arguments at sys_enter, the first argument at sys_exit, the syscall number.
#[cfg(target_arch = "x86_64")]
const REGS: ([u32; 6], u32, u32) = ([112, 104, 96, 56, 72, 64], 112, 120);
// user_pt_regs.regs[0..6]; x0 holds the return value at exit, the argument stays in orig_x0 (272);
// syscallno (an int) at 280.
#[cfg(target_arch = "aarch64")]
const REGS: ([u32; 6], u32, u32) = ([0, 8, 16, 24, 32, 40], 272, 280);

/// The host's syscall numbers of every syscall the probes handle, with their kind.
fn syscall_table() -> Vec<(i64, u8)> {
    use ebpf_common::syscall as k;
    #[allow(unused_mut)]
    let mut table = vec![
        (libc::SYS_read, k::READ),
        (libc::SYS_write, k::WRITE),
        (libc::SYS_readv, k::READV),
        (libc::SYS_writev, k::WRITEV),
        (libc::SYS_sendto, k::SENDTO),
        (libc::SYS_recvfrom, k::RECVFROM),
        (libc::SYS_sendmsg, k::SENDMSG),
        (libc::SYS_recvmsg, k::RECVMSG),
        (libc::SYS_sendmmsg, k::SENDMMSG),
        (libc::SYS_recvmmsg, k::RECVMMSG),
        (libc::SYS_sendfile, k::SENDFILE),
        (libc::SYS_splice, k::SPLICE),
        (libc::SYS_socket, k::SOCKET),
        (libc::SYS_connect, k::CONNECT),
        (libc::SYS_accept, k::ACCEPT),
        (libc::SYS_accept4, k::ACCEPT),
        (libc::SYS_close, k::CLOSE),
        (libc::SYS_clone, k::CLONE),
        (libc::SYS_clone3, k::CLONE3),
    ];
    #[cfg(target_arch = "x86_64")]
    table.push((libc::SYS_fork, k::FORK));
    table
}

/// Fills `SYSCALL_KIND` from [`syscall_table`].
fn fill_syscall_kinds(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let map = ebpf.map_mut("SYSCALL_KIND").ok_or(LoadError::MissingMap {
        map: "SYSCALL_KIND",
    })?;
    let mut array: aya::maps::Array<&mut MapData, u8> =
        aya::maps::Array::try_from(map).map_err(|source| LoadError::Map {
            map: "SYSCALL_KIND",
            source,
        })?;
    for (nr, kind) in syscall_table() {
        let Ok(nr) = u32::try_from(nr) else { continue };
        if nr >= ebpf_common::syscall::TABLE_SLOTS {
            continue;
        }
        array.set(nr, kind, 0).map_err(|source| LoadError::Map {
            map: "SYSCALL_KIND",
            source,
        })?;
    }
    Ok(())
}

/// `PIDS` map values (mirror `ebpf/probes/src/maps.rs`).
const PID_INCLUDE: u8 = 1;
const PID_EXCLUDE: u8 = 2;

/// What the kernel side needs from the receiver's config.
#[derive(Clone, Debug)]
pub struct BpfSettings {
    /// Payload bytes captured per syscall; clamped to `ebpf_common::MAX_CAPTURE`.
    pub max_capture_bytes: u32,
    /// Data ring size in bytes; rounded up to a power of two, at least one page.
    pub data_ring_bytes: u32,
    /// Control ring size in bytes; rounded up like the data ring.
    pub control_ring_bytes: u32,
    /// Entries of the connection map.
    pub max_connections: u32,
    /// The receiver's own pid: never traced.
    pub self_pid: u32,
    /// Only these pids are traced; empty = all.
    pub pids: Vec<u32>,
    /// Never traced.
    pub exclude_pids: Vec<u32>,
    /// Peer ports never tracked (the Collector's OTLP port).
    pub exclude_ports: Vec<u16>,
    /// Protocols the kernel may infer (config `protocols.*`); others are given up on.
    pub enabled_protocols: Vec<Protocol>,
    /// false: the kernel infers nothing and forwards every message of every tracked socket as
    /// `proto::RAW` for user space to infer (`ebpf.kernel_inference`, a diagnostic).
    pub kernel_inference: bool,
}

/// The kernel's cumulative counters, summed over CPUs and decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub control_events: u64,
    pub data_events: u64,
    pub data_bytes: u64,
    /// Bytes moved by sendfile/splice, reported by length only.
    pub uncaptured_bytes: u64,
    pub control_ring_full: u64,
    pub data_ring_full: u64,
    pub capture_truncated: u64,
    pub conn_map_full: u64,
    pub disabled: u64,
    pub args_map_full: u64,
    pub read_failed: u64,
    /// Messages of sendmmsg/recvmmsg beyond the ones the kernel reports.
    pub mmsg_overflow: u64,
    /// Processes started by traced ones that the full pid map could not take (untraced).
    pub pids_map_full: u64,
    pub infer_gave_up: u64,
    /// Connections inferred, indexed by [`Protocol::index`].
    pub inferences: [u64; PROTOCOL_COUNT],
}

/// Verifier facts about one loaded program.
#[derive(Clone, Debug)]
pub struct ProgramStats {
    pub name: &'static str,
    /// Instructions the verifier processed (`None` if the kernel does not report it).
    pub verified_instructions: Option<u32>,
    /// Size of the program after translation, bytes.
    pub translated_bytes: Option<u32>,
    /// Total run time and run count (0 unless `kernel.bpf_stats_enabled` = 1).
    pub run_time: std::time::Duration,
    pub run_count: u64,
}

/// The loaded and attached kernel programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
}

impl Probes {
    /// Mounts tracefs if needed, loads the object, sets globals and maps, attaches all programs.
    pub fn load(settings: &BpfSettings) -> Result<Probes, LoadError> {
        if PROBES_OBJECT.is_empty() {
            return Err(LoadError::NotBuilt);
        }
        if settings.max_connections == 0 {
            return Err(LoadError::Settings {
                setting: "max_connections",
                reason: "must be at least 1".into(),
            });
        }
        ensure_tracefs()?;

        let max_capture = settings.max_capture_bytes.min(MAX_CAPTURE as u32);
        let filter_active =
            u8::from(!settings.pids.is_empty() || !settings.exclude_pids.is_empty());
        let include_only = u8::from(!settings.pids.is_empty());
        let enabled = settings
            .enabled_protocols
            .iter()
            .fold(0u32, |m, p| m | 1u32 << kernel_id(*p));
        let fork_offset = fork_child_pid_offset(Path::new(TRACEFS));
        if fork_offset.is_none() {
            tracing::info!("no sched_process_fork format: forked children inherit no sockets");
        }
        let fd_filter_slots = super::maps::fd_filter_slots(settings.max_connections);
        let ebpf = EbpfLoader::new()
            .override_global("FORK_CHILD_PID_OFFSET", &fork_offset.unwrap_or(20), true)
            .override_global("SELF_PID", &settings.self_pid, true)
            .override_global("PID_FILTER_ACTIVE", &filter_active, true)
            .override_global("FILTER_INCLUDE_ONLY", &include_only, true)
            .override_global("MAX_CAPTURE_BYTES", &max_capture, true)
            .override_global("ENABLED_PROTOCOLS", &enabled, true)
            .override_global(
                "KERNEL_INFERENCE",
                &u8::from(settings.kernel_inference),
                true,
            )
            .override_global("FD_FILTER_MASK", &(fd_filter_slots - 1), true)
            .map_max_entries("CONNS", settings.max_connections)
            .map_max_entries("FD_FILTER", fd_filter_slots)
            .map_max_entries("SCRATCH", possible_cpus()?)
            .map_max_entries("DATA", ring_size(settings.data_ring_bytes))
            .map_max_entries("CONTROL", ring_size(settings.control_ring_bytes))
            .load(PROBES_OBJECT)
            .map_err(|source| LoadError::Load { source })?;
        let mut probes = Probes { ebpf };
        probes.fill_filters(settings)?;
        probes.attach_all(fork_offset.is_some())?;
        Ok(probes)
    }

    fn fill_filters(&mut self, settings: &BpfSettings) -> Result<(), LoadError> {
        let mut pids: HashMap<&mut MapData, u32, u8> = self.hash_map("PIDS")?;
        for &pid in &settings.pids {
            pids.insert(pid, PID_INCLUDE, 0)
                .map_err(|source| LoadError::Map {
                    map: "PIDS",
                    source,
                })?;
        }
        // Exclusion wins over inclusion.
        for &pid in &settings.exclude_pids {
            pids.insert(pid, PID_EXCLUDE, 0)
                .map_err(|source| LoadError::Map {
                    map: "PIDS",
                    source,
                })?;
        }
        let mut ports: HashMap<&mut MapData, u16, u8> = self.hash_map("EXCLUDE_PORTS")?;
        for &port in &settings.exclude_ports {
            ports.insert(port, 1, 0).map_err(|source| LoadError::Map {
                map: "EXCLUDE_PORTS",
                source,
            })?;
        }
        Ok(())
    }

    fn hash_map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, LoadError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(LoadError::MissingMap { map: name })?;
        HashMap::try_from(map).map_err(|source| LoadError::Map { map: name, source })
    }

    /// Attaches every program; without `fork` (the record layout of `sched_process_fork` is
    /// unknown) the fork-inheritance programs are left out.
    fn attach_all(&mut self, fork: bool) -> Result<(), LoadError> {
        for &name in PROGRAMS {
            if !fork && FORK_PROGRAMS.contains(&name) {
                continue;
            }
            let program = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| LoadError::MissingProgram {
                    program: name.into(),
                })?;
            let err = |source| LoadError::Program {
                program: name.into(),
                source,
            };
            let tp: &mut TracePoint = program.try_into().map_err(err)?;
            tp.load().map_err(err)?;
            tp.attach(category(name), name).map_err(err)?;
        }
        Ok(())
    }

    /// Both rings, for the capture task. Can be taken once.
    pub fn take_reader(&mut self) -> Result<RingReader, LoadError> {
        let control = self
            .ebpf
            .take_map("CONTROL")
            .ok_or(LoadError::MissingMap { map: "CONTROL" })?;
        let data = self
            .ebpf
            .take_map("DATA")
            .ok_or(LoadError::MissingMap { map: "DATA" })?;
        RingReader::new(control, data)
    }

    /// Handle to `CONNS`, `DISABLED` and the tracked-fd filter. Can be taken once.
    pub fn conn_control(&mut self) -> Result<ConnControl, LoadError> {
        let conns = self
            .ebpf
            .take_map("CONNS")
            .ok_or(LoadError::MissingMap { map: "CONNS" })?;
        let disabled = self
            .ebpf
            .take_map("DISABLED")
            .ok_or(LoadError::MissingMap { map: "DISABLED" })?;
        let filter = self
            .ebpf
            .take_map("FD_FILTER")
            .ok_or(LoadError::MissingMap { map: "FD_FILTER" })?;
        let disabled_any = self
            .ebpf
            .take_map("DISABLED_ANY")
            .ok_or(LoadError::MissingMap {
                map: "DISABLED_ANY",
            })?;
        let pids = self
            .ebpf
            .take_map("PIDS")
            .ok_or(LoadError::MissingMap { map: "PIDS" })?;
        ConnControl::new(conns, disabled, filter, disabled_any, pids)
    }

    /// Kernel counters, summed over CPUs and decoded.
    pub fn stats(&self) -> Result<KernelStats, LoadError> {
        let raw = self.raw_stats()?;
        let get = |i: u32| raw.get(i as usize).copied().unwrap_or(0);
        let mut inferences = [0u64; PROTOCOL_COUNT];
        for p in Protocol::ALL {
            inferences[p.index()] = get(stat::INFER_BASE + u32::from(kernel_id(*p)));
        }
        Ok(KernelStats {
            control_events: get(stat::CONTROL_EVENTS),
            data_events: get(stat::DATA_EVENTS),
            data_bytes: get(stat::DATA_BYTES),
            uncaptured_bytes: get(stat::UNCAPTURED_BYTES),
            control_ring_full: get(stat::DROP_CONTROL_RING_FULL),
            data_ring_full: get(stat::DROP_DATA_RING_FULL),
            capture_truncated: get(stat::DROP_CAPTURE_TRUNCATED),
            conn_map_full: get(stat::DROP_CONN_MAP_FULL),
            disabled: get(stat::DROP_DISABLED),
            args_map_full: get(stat::DROP_ARGS_MAP_FULL),
            read_failed: get(stat::DROP_READ_FAILED),
            mmsg_overflow: get(stat::DROP_MMSG_OVERFLOW),
            pids_map_full: get(stat::DROP_PIDS_MAP_FULL),
            infer_gave_up: get(stat::INFER_GAVE_UP),
            inferences,
        })
    }

    /// Kernel counters (`ebpf_common::stat::*`), summed over CPUs.
    fn raw_stats(&self) -> Result<[u64; stat::COUNT as usize], LoadError> {
        let map = self
            .ebpf
            .map("STATS")
            .ok_or(LoadError::MissingMap { map: "STATS" })?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
                map: "STATS",
                source,
            })?;
        let mut out = [0u64; stat::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = array.get(&(i as u32), 0).map_err(|source| LoadError::Map {
                map: "STATS",
                source,
            })?;
            *slot = values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v));
        }
        Ok(out)
    }

    /// Verifier facts per program (for tests and `check`-style reports).
    pub fn program_stats(&self) -> Result<Vec<ProgramStats>, LoadError> {
        program_stats(&self.ebpf, PROGRAMS)
    }

    /// The name of every program in the eBPF object, loaded or not: the receiver's and the
    /// benchmark's empty `floor_*` programs (see [`FloorProbes`]).
    pub fn object_programs(&self) -> Vec<String> {
        self.ebpf
            .programs()
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

/// Verifier facts and run-time counters of the loaded programs `names`.
fn program_stats(ebpf: &Ebpf, names: &[&'static str]) -> Result<Vec<ProgramStats>, LoadError> {
    {
        let mut out = Vec::with_capacity(names.len());
        for &name in names {
            let program = ebpf
                .program(name)
                .ok_or_else(|| LoadError::MissingProgram {
                    program: name.into(),
                })?;
            let info = program.info().map_err(|source| LoadError::Program {
                program: name.into(),
                source,
            })?;
            out.push(ProgramStats {
                name,
                verified_instructions: info.verified_instruction_count(),
                translated_bytes: info.size_translated(),
                run_time: info.run_time(),
                run_count: info.run_count(),
            });
        }
        Ok(out)
    }
}

/// Which empty programs [`FloorProbes`] attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    /// One empty classic tracepoint program on every tracepoint the receiver uses.
    Tracepoints,
    /// Empty raw tracepoint programs on `sys_enter` and `sys_exit` (every syscall).
    Raw,
    /// The same as BTF-typed raw tracepoints (`tp_btf`).
    Btf,
    /// `tp_btf` programs that only run the raw design's filter (syscall kind, tracked fd).
    BtfFilter,
}

/// Empty programs from the same object, attached where the receiver's would be: the floor of
/// a syscall-tracepoint design, for the `bpf_cost` benchmark. Dropping it detaches them.
pub struct FloorProbes {
    ebpf: Ebpf,
    programs: Vec<&'static str>,
}

impl FloorProbes {
    pub fn load(floor: Floor) -> Result<FloorProbes, LoadError> {
        if PROBES_OBJECT.is_empty() {
            return Err(LoadError::NotBuilt);
        }
        ensure_tracefs()?;
        let mut ebpf = EbpfLoader::new()
            .override_global("REGS_ARG_OFFSETS", &REGS.0, true)
            .override_global("REGS_EXIT_ARG0_OFFSET", &REGS.1, true)
            .override_global("REGS_NR_OFFSET", &REGS.2, true)
            .load(PROBES_OBJECT)
            .map_err(|source| LoadError::Load { source })?;
        fill_syscall_kinds(&mut ebpf)?;
        let err = |name: &str| {
            let program = name.to_string();
            move |source| LoadError::Program { program, source }
        };
        let missing = |name: &str| LoadError::MissingProgram {
            program: name.into(),
        };
        match floor {
            Floor::Tracepoints => {
                let name = "floor_tp";
                let tp: &mut TracePoint = ebpf
                    .program_mut(name)
                    .ok_or_else(|| missing(name))?
                    .try_into()
                    .map_err(err(name))?;
                tp.load().map_err(err(name))?;
                for &p in PROGRAMS {
                    tp.attach(category(p), p).map_err(err(p))?;
                }
            }
            Floor::Raw => {
                for (name, tp) in [
                    ("floor_raw_enter", "sys_enter"),
                    ("floor_raw_exit", "sys_exit"),
                ] {
                    let prog: &mut aya::programs::RawTracePoint = ebpf
                        .program_mut(name)
                        .ok_or_else(|| missing(name))?
                        .try_into()
                        .map_err(err(name))?;
                    prog.load().map_err(err(name))?;
                    prog.attach(tp).map_err(err(name))?;
                }
            }
            Floor::Btf | Floor::BtfFilter => {
                let btf = aya::Btf::from_sys_fs().map_err(|e| LoadError::Settings {
                    setting: "kernel BTF",
                    reason: e.to_string(),
                })?;
                let programs = if floor == Floor::Btf {
                    [
                        ("floor_btf_enter", "sys_enter"),
                        ("floor_btf_exit", "sys_exit"),
                    ]
                } else {
                    [
                        ("floor_btf_filter_enter", "sys_enter"),
                        ("floor_btf_filter_exit", "sys_exit"),
                    ]
                };
                for (name, tp) in programs {
                    let prog: &mut aya::programs::BtfTracePoint = ebpf
                        .program_mut(name)
                        .ok_or_else(|| missing(name))?
                        .try_into()
                        .map_err(err(name))?;
                    prog.load(tp, &btf).map_err(err(name))?;
                    prog.attach().map_err(err(name))?;
                }
            }
        }
        let programs = match floor {
            Floor::Tracepoints => vec!["floor_tp"],
            Floor::Raw => vec!["floor_raw_enter", "floor_raw_exit"],
            Floor::Btf => vec!["floor_btf_enter", "floor_btf_exit"],
            Floor::BtfFilter => vec!["floor_btf_filter_enter", "floor_btf_filter_exit"],
        };
        Ok(FloorProbes { ebpf, programs })
    }

    /// Run-time counters of the attached programs (see [`Probes::program_stats`]).
    pub fn program_stats(&self) -> Result<Vec<ProgramStats>, LoadError> {
        program_stats(&self.ebpf, &self.programs)
    }
}

/// Slots of the per-CPU scratch array: one per possible CPU id.
fn possible_cpus() -> Result<u32, LoadError> {
    let cpus = aya::util::nr_cpus().map_err(|(path, source)| LoadError::Settings {
        setting: "possible CPUs",
        reason: format!("cannot read `{path}`: {source}"),
    })?;
    Ok(cpus as u32)
}

/// Ring sizes must be a power of two multiple of the page size.
fn ring_size(bytes: u32) -> u32 {
    bytes.clamp(4096, 1 << 30).next_power_of_two()
}

/// Mounts tracefs at `/sys/kernel/tracing` if its `events` directory is missing.
pub(super) fn ensure_tracefs() -> Result<bool, LoadError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(false);
    }
    let err = |source| LoadError::Tracefs {
        path: TRACEFS,
        source,
    };
    // SAFETY: mount(2) with NUL-terminated static strings and no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_pid_offset_from_both_record_layouts() {
        // 6.x with `__data_loc` comms, and the older fixed `char[16]` layout.
        let new = "name: sched_process_fork\nID: 366\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        let old = "format:\n\
            \tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(new, "child_pid"), Some(20));
        assert_eq!(parse_field_offset(old, "child_pid"), Some(44));
        assert_eq!(parse_field_offset(old, "parent_pid"), Some(24));
        assert_eq!(
            parse_field_offset(old, "child_comm"),
            None,
            "not a 4-byte field"
        );
        assert_eq!(parse_field_offset(new, "missing"), None);
    }

    #[test]
    fn this_kernel_has_a_fork_record_layout() {
        // Where tracefs is readable (root), the live format parses.
        let path = Path::new(TRACEFS).join("events/sched/sched_process_fork/format");
        if std::fs::read_to_string(&path).is_ok() {
            assert!(fork_child_pid_offset(Path::new(TRACEFS)).is_some());
        }
    }

    #[test]
    fn attach_points_are_category_colon_name() {
        let points = attach_points();
        assert!(points.contains(&"syscalls:sys_enter_read".to_string()));
        assert!(points.iter().all(|p| p.split(':').count() == 2));
        assert!(points.len() <= PROGRAMS.len());
    }

    #[test]
    fn every_program_has_a_category() {
        let tps = tracepoints();
        assert!(tps.contains(&"sched/sched_process_fork".to_string()));
        assert!(tps.contains(&"syscalls/sys_enter_clone3".to_string()));
        assert_eq!(tps.len(), PROGRAMS.len());
    }
}
