//! User-space writes to the kernel's connection maps.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use ebpf_common::{
    ConnKey, ConnState, DisabledKey, SEEDED_GENERATION_BIT, fd_slot, proto, role, sock, turn,
};

use super::LoadError;
use crate::model::{ConnId, Role};

/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Slots of the kernel's tracked-fd filter for a connection map of `max_connections` entries: a
/// power of two, at least twice the entries (at most one false "maybe" in two when the map is
/// full, far fewer in practice), 4 Ki..4 Mi slots of 8 bytes.
pub(super) fn fd_filter_slots(max_connections: u32) -> u32 {
    (u64::from(max_connections) * 2)
        .next_power_of_two()
        .clamp(4096, 1 << 22) as u32
}

/// The kernel's `FD_FILTER` array, mapped into this process: user space keeps its counts exact
/// for the `CONNS` entries it inserts and deletes, with the same atomic instructions the kernel
/// uses (an array element is 8 bytes; the count is its first 4).
struct FdFilter {
    base: *mut u8,
    len: usize,
    mask: u32,
    _map: MapData,
}

// SAFETY: the mapping is shared memory that every access touches through atomics; the pointer
// is owned by this value and unmapped once, in Drop.
unsafe impl Send for FdFilter {}

impl FdFilter {
    fn new(map: Map) -> Result<FdFilter, LoadError> {
        let err = |source| LoadError::Map {
            map: "FD_FILTER",
            source,
        };
        let Map::Array(data) = map else {
            return Err(LoadError::MissingMap { map: "FD_FILTER" });
        };
        let slots = data.info().map_err(err)?.max_entries();
        if !slots.is_power_of_two() {
            return Err(LoadError::Settings {
                setting: "FD_FILTER",
                reason: format!("{slots} slots is not a power of two"),
            });
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = (slots as usize * 8).div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of an mmapable array map's fd, of the map's size
        // rounded up to a page (what the kernel allows); checked for MAP_FAILED below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(err(MapError::SyscallError(aya::sys::SyscallError {
                call: "mmap",
                io_error: std::io::Error::last_os_error(),
            })));
        }
        Ok(FdFilter {
            base: base.cast(),
            len,
            mask: slots - 1,
            _map: data,
        })
    }

    /// Adds `delta` (wrapping) to the count of (pid, fd)'s slot.
    fn add(&self, pid: u32, fd: u32, delta: u32) {
        let slot = (fd_slot(pid, fd) & self.mask) as usize;
        // SAFETY: slot ≤ mask < slots, and slot * 8 + 4 ≤ len; the element is 8-byte aligned
        // in a page-aligned mapping that lives as long as self; the kernel updates it only
        // with atomic instructions too.
        let count = unsafe { &*self.base.add(slot * 8).cast::<AtomicU32>() };
        count.fetch_add(delta, Ordering::SeqCst);
    }
}

impl Drop for FdFilter {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Handle to `CONNS`, `DISABLED` and the tracked-fd filter.
pub struct ConnControl {
    conns: HashMap<MapData, ConnKey, ConnState>,
    disabled: HashMap<MapData, DisabledKey, u8>,
    /// `DISABLED_ANY[0]`: 1 while `DISABLED` may hold an entry, so the kernel skips the lookup
    /// on every message otherwise. Only user space writes `DISABLED`, so it knows.
    disabled_any: Array<MapData, u32>,
    /// Entries inserted into `DISABLED` and not removed yet (an overwrite counts twice, which
    /// only keeps the flag set longer).
    disabled_entries: u64,
    filter: FdFilter,
    /// pid → include/exclude: the kernel adds the processes included pids start, which this
    /// side removes once they exit.
    pids: HashMap<MapData, u32, u8>,
    /// Last seeded generation counter (without the seeded bit).
    seeded: u32,
}

impl ConnControl {
    pub(super) fn new(
        conns: Map,
        disabled: Map,
        filter: Map,
        disabled_any: Map,
        pids: Map,
    ) -> Result<ConnControl, LoadError> {
        Ok(ConnControl {
            disabled_any: Array::try_from(disabled_any).map_err(|source| LoadError::Map {
                map: "DISABLED_ANY",
                source,
            })?,
            disabled_entries: 0,
            filter: FdFilter::new(filter)?,
            conns: HashMap::try_from(conns).map_err(|source| LoadError::Map {
                map: "CONNS",
                source,
            })?,
            disabled: HashMap::try_from(disabled).map_err(|source| LoadError::Map {
                map: "DISABLED",
                source,
            })?,
            pids: HashMap::try_from(pids).map_err(|source| LoadError::Map {
                map: "PIDS",
                source,
            })?,
            seeded: 0,
        })
    }

    /// Stops data capture for one connection (DISABLED map).
    pub fn disable(&mut self, conn: ConnId) -> Result<(), LoadError> {
        // The flag first, so the kernel never skips a lookup that would find the entry.
        if self.disabled_entries == 0 {
            self.set_disabled_any(1)?;
        }
        self.disabled
            .insert(disabled_key(conn), 1, 0)
            .map_err(|source| LoadError::Map {
                map: "DISABLED",
                source,
            })?;
        self.disabled_entries += 1;
        Ok(())
    }

    /// Removes a connection from DISABLED (call when it closes). Absent keys are fine.
    pub fn enable(&mut self, conn: ConnId) -> Result<(), LoadError> {
        if self.disabled_entries == 0 {
            // Nothing was inserted: no syscall per closed connection.
            return Ok(());
        }
        match self.disabled.remove(&disabled_key(conn)) {
            Ok(()) => {
                self.disabled_entries -= 1;
                if self.disabled_entries == 0 {
                    self.set_disabled_any(0)?;
                }
                Ok(())
            }
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(()),
            Err(source) => Err(LoadError::Map {
                map: "DISABLED",
                source,
            }),
        }
    }

    fn set_disabled_any(&mut self, v: u32) -> Result<(), LoadError> {
        self.disabled_any
            .set(0, v, 0)
            .map_err(|source| LoadError::Map {
                map: "DISABLED_ANY",
                source,
            })
    }

    /// Registers a socket that existed before the receiver started, so the kernel starts
    /// inspecting its traffic. `role`: a hint like connect/accept give (`None`: unknown until
    /// inference). `datagram`: a UDP socket, whose every syscall is a whole message (the kernel
    /// then infers only datagram protocols on it, without stream framing such as DNS's TCP
    /// length prefix); a stream socket is inferred only once its conversation turns
    /// (`ebpf_common::turn`), since it may be in the middle of a message. Returns the generation
    /// assigned (seeded bit set, so it never collides with kernel-assigned ones), or `None` if
    /// the kernel already tracks this (pid, fd). Never overwrites an entry.
    pub fn seed(
        &mut self,
        pid: u32,
        fd: u32,
        role: Option<Role>,
        datagram: bool,
    ) -> Result<Option<u32>, LoadError> {
        let key = ConnKey { pid, fd };
        self.seeded = (self.seeded.wrapping_add(1)) & !SEEDED_GENERATION_BIT;
        if self.seeded == 0 {
            self.seeded = 1;
        }
        let generation = SEEDED_GENERATION_BIT | self.seeded;
        let state = ConnState {
            send_pos: 0,
            recv_pos: 0,
            generation,
            protocol: proto::UNKNOWN,
            role: match role {
                Some(Role::Client) => role::CLIENT,
                Some(Role::Server) => role::SERVER,
                None => role::UNKNOWN,
            },
            infer_attempts: 0,
            has_peer: 0,
            family: 0,
            peer_port: 0,
            listen_fd: ebpf_common::NO_FD,
            peer_addr: [0; 16],
            pending_header: 0,
            sock_type: if datagram { sock::DGRAM } else { sock::UNKNOWN },
            pending_len: 0,
            turn: if datagram { turn::OPEN } else { turn::WAIT },
            _pad1: 0,
            listen_pid: 0,
            _pad2: 0,
        };
        // Counted before the entry is visible, as the kernel does.
        self.filter.add(pid, fd, 1);
        match self.conns.insert(key, state, BPF_NOEXIST) {
            Ok(()) => Ok(Some(generation)),
            Err(e) => {
                self.filter.add(pid, fd, u32::MAX);
                if is_errno(&e, libc::EEXIST) {
                    Ok(None)
                } else {
                    Err(LoadError::Map {
                        map: "CONNS",
                        source: e,
                    })
                }
            }
        }
    }

    /// Removes `CONNS` entries of processes that no longer exist (process exit closes fds
    /// without a close syscall, so the kernel never removes them), and their `PIDS` entries
    /// (a pid the kernel reuses must not inherit the filter's verdict). Returns the processes
    /// whose connections were removed (the tracker forgets them too); call it from a periodic
    /// sweep.
    pub fn purge_exited(&mut self) -> Result<Vec<u32>, LoadError> {
        let mut dead = Vec::new();
        // One stat per process, not per socket.
        let mut alive: std::collections::HashMap<u32, bool> = std::collections::HashMap::new();
        let mut dead_pids = Vec::new();
        for pid in self.pids.keys() {
            let pid = pid.map_err(|source| LoadError::Map {
                map: "PIDS",
                source,
            })?;
            let exists = *alive
                .entry(pid)
                .or_insert_with(|| Path::new("/proc").join(pid.to_string()).exists());
            if !exists {
                dead_pids.push(pid);
            }
        }
        for pid in dead_pids {
            match self.pids.remove(&pid) {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::ENOENT) => {}
                Err(source) => {
                    return Err(LoadError::Map {
                        map: "PIDS",
                        source,
                    });
                }
            }
        }
        for key in self.conns.keys() {
            let key = key.map_err(|source| LoadError::Map {
                map: "CONNS",
                source,
            })?;
            let exists = *alive
                .entry(key.pid)
                .or_insert_with(|| Path::new("/proc").join(key.pid.to_string()).exists());
            if !exists {
                dead.push(key);
            }
        }
        let mut removed = Vec::new();
        for key in dead {
            match self.conns.remove(&key) {
                Ok(()) => {
                    // Only the deleter that succeeds uncounts the entry (the kernel may have
                    // closed it meanwhile).
                    self.filter.add(key.pid, key.fd, u32::MAX);
                    if !removed.contains(&key.pid) {
                        removed.push(key.pid);
                    }
                }
                Err(e) if is_errno(&e, libc::ENOENT) => {}
                Err(source) => {
                    return Err(LoadError::Map {
                        map: "CONNS",
                        source,
                    });
                }
            }
        }
        Ok(removed)
    }
}

fn disabled_key(conn: ConnId) -> DisabledKey {
    DisabledKey {
        pid: conn.pid,
        fd: conn.fd,
        generation: conn.generation,
        _pad0: 0,
    }
}

fn is_errno(e: &MapError, errno: i32) -> bool {
    match e {
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(errno),
        MapError::KeyNotFound | MapError::ElementNotFound => errno == libc::ENOENT,
        _ => false,
    }
}
