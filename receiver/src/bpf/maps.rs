//! User-space writes to the kernel's connection maps.

use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapError};
use ebpf_common::{ConnKey, ConnState, DisabledKey, SEEDED_GENERATION_BIT, proto, role, sock};

use super::LoadError;
use crate::model::ConnId;

/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Handle to `CONNS` and `DISABLED`.
pub struct ConnControl {
    conns: HashMap<MapData, ConnKey, ConnState>,
    disabled: HashMap<MapData, DisabledKey, u8>,
    /// Last seeded generation counter (without the seeded bit).
    seeded: u32,
}

impl ConnControl {
    pub(super) fn new(conns: Map, disabled: Map) -> Result<ConnControl, LoadError> {
        Ok(ConnControl {
            conns: HashMap::try_from(conns).map_err(|source| LoadError::Map {
                map: "CONNS",
                source,
            })?,
            disabled: HashMap::try_from(disabled).map_err(|source| LoadError::Map {
                map: "DISABLED",
                source,
            })?,
            seeded: 0,
        })
    }

    /// Stops data capture for one connection (DISABLED map).
    pub fn disable(&mut self, conn: ConnId) -> Result<(), LoadError> {
        self.disabled
            .insert(disabled_key(conn), 1, 0)
            .map_err(|source| LoadError::Map {
                map: "DISABLED",
                source,
            })
    }

    /// Removes a connection from DISABLED (call when it closes). Absent keys are fine.
    pub fn enable(&mut self, conn: ConnId) -> Result<(), LoadError> {
        match self.disabled.remove(&disabled_key(conn)) {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(()),
            Err(source) => Err(LoadError::Map {
                map: "DISABLED",
                source,
            }),
        }
    }

    /// Registers a socket that existed before the receiver started, so the kernel starts
    /// inspecting its traffic (role unknown until inference). `datagram`: a UDP socket, whose
    /// every syscall is a whole message (the kernel then infers only datagram protocols on it,
    /// without stream framing such as DNS's TCP length prefix). Returns the generation assigned
    /// (seeded bit set, so it never collides with kernel-assigned ones), or `None` if the kernel
    /// already tracks this (pid, fd). Never overwrites an entry.
    pub fn seed(&mut self, pid: u32, fd: u32, datagram: bool) -> Result<Option<u32>, LoadError> {
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
            role: role::UNKNOWN,
            infer_attempts: 0,
            has_peer: 0,
            family: 0,
            peer_port: 0,
            listen_fd: ebpf_common::NO_FD,
            peer_addr: [0; 16],
            pending_header: 0,
            sock_type: if datagram { sock::DGRAM } else { sock::UNKNOWN },
            pending_len: 0,
            _pad1: [0; 2],
            listen_pid: 0,
            _pad2: 0,
        };
        match self.conns.insert(key, state, BPF_NOEXIST) {
            Ok(()) => Ok(Some(generation)),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(None),
            Err(source) => Err(LoadError::Map {
                map: "CONNS",
                source,
            }),
        }
    }

    /// Removes `CONNS` entries of processes that no longer exist (process exit closes fds
    /// without a close syscall, so the kernel never removes them). Returns how many were
    /// removed; call it from a periodic sweep.
    pub fn purge_exited(&mut self) -> Result<usize, LoadError> {
        let mut dead = Vec::new();
        // One stat per process, not per socket.
        let mut alive: std::collections::HashMap<u32, bool> = std::collections::HashMap::new();
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
        let mut removed = 0;
        for key in dead {
            match self.conns.remove(&key) {
                Ok(()) => removed += 1,
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
