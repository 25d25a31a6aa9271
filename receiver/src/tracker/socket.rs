//! Socket tuples of another process's sockets, without walking kernel structs.
//!
//! Primary: `pidfd_open` + `pidfd_getfd(2)` duplicates the socket into this process (needs
//! CAP_SYS_PTRACE), then `getsockname`/`getpeername` on the duplicate, which is closed at once;
//! about 3 µs, once per connection, never per event. Fallback: `/proc/<pid>/fd/<fd>` gives the
//! socket inode, looked up in `/proc/<pid>/net/{tcp,tcp6,udp,udp6,unix}`. The same `/proc`
//! tables list the sockets that existed before the receiver started: established TCP, connected
//! Unix stream, and bound UDP sockets (a DNS server's, connected or not).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::model::{Role, Transport};

/// What we learned about one socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketTuple {
    pub transport: Option<Transport>,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    /// Path of a Unix-domain socket (the bound side's path, seen from either end).
    pub unix_path: Option<String>,
}

/// Resolves the tuple of `fd` in process `pid`; `None` when the socket is already gone.
pub fn resolve(proc_root: &Path, pid: u32, fd: u32) -> Option<SocketTuple> {
    resolve_pidfd(pid, fd).or_else(|| resolve_procfs(proc_root, pid, fd))
}

fn resolve_pidfd(pid: u32, fd: u32) -> Option<SocketTuple> {
    // SAFETY: plain syscalls with integer arguments; a returned fd is owned by us right away.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: `pidfd` is a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as libc::c_int) };
    // SAFETY: as above.
    let dup = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            pidfd.as_raw_fd(),
            fd as libc::c_int,
            0,
        )
    };
    if dup < 0 {
        return None;
    }
    // SAFETY: `dup` is a fresh descriptor that nothing else owns; dropping it closes it.
    let dup = unsafe { OwnedFd::from_raw_fd(dup as libc::c_int) };
    let local = sockaddr_of(dup.as_raw_fd(), libc::getsockname)?;
    let peer = sockaddr_of(dup.as_raw_fd(), libc::getpeername);
    let mut t = SocketTuple::default();
    match (local, peer) {
        (Addr::Inet(l), p) => {
            t.transport = Some(if is_datagram(dup.as_raw_fd()) {
                Transport::Udp
            } else {
                Transport::Tcp
            });
            t.local = Some(l);
            t.peer = match p {
                Some(Addr::Inet(p)) => Some(p),
                _ => None,
            };
        }
        (Addr::Unix(l), p) => {
            t.transport = Some(Transport::Unix);
            let peer_path = match p {
                Some(Addr::Unix(p)) => p,
                _ => None,
            };
            // The connecting side has no name of its own; the path is the peer's.
            t.unix_path = l.or(peer_path);
        }
    }
    Some(t)
}

/// Whether the socket is SOCK_DGRAM (`getsockopt(SO_TYPE)`).
fn is_datagram(fd: libc::c_int) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut ty).cast(),
            &mut len,
        )
    };
    rc == 0 && ty == libc::SOCK_DGRAM
}

enum Addr {
    Inet(SocketAddr),
    Unix(Option<String>),
}

type SockNameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn sockaddr_of(fd: libc::c_int, f: SockNameFn) -> Option<Addr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss` is large enough for any address and `len` says so.
    let rc = unsafe { f(fd, (&raw mut ss).cast(), &mut len) };
    if rc != 0 {
        return None;
    }
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const ss).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(Addr::Inet(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const ss).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let addr = SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), 0, sin6.sin6_scope_id);
            Some(Addr::Inet(unmap_v4(SocketAddr::V6(addr))))
        }
        libc::AF_UNIX => {
            // SAFETY: the kernel wrote a sockaddr_un for AF_UNIX.
            let sun: libc::sockaddr_un = unsafe { std::ptr::read((&raw const ss).cast()) };
            let path_len = (len as usize).saturating_sub(std::mem::size_of::<libc::sa_family_t>());
            let bytes: Vec<u8> = sun
                .sun_path
                .iter()
                .take(path_len)
                .map(|c| *c as u8)
                .collect();
            Some(Addr::Unix(unix_path(&bytes)))
        }
        _ => None,
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so dual-stack sockets report what users expect.
pub fn unmap_v4(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

/// A `sun_path`: NUL-terminated filesystem path, or `@name` for the abstract namespace.
fn unix_path(raw: &[u8]) -> Option<String> {
    match raw.split_first() {
        None => None,
        Some((0, rest)) if !rest.is_empty() => {
            let end = rest.iter().position(|c| *c == 0).unwrap_or(rest.len());
            Some(format!(
                "@{}",
                String::from_utf8_lossy(rest.get(..end).unwrap_or(rest))
            ))
        }
        Some((0, _)) => None,
        Some(_) => {
            let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
            let s = String::from_utf8_lossy(raw.get(..end).unwrap_or(raw)).into_owned();
            (!s.is_empty()).then_some(s)
        }
    }
}

/// Inode of `/proc/<pid>/fd/<fd>` when it is a socket.
pub fn socket_inode(proc_root: &Path, pid: u32, fd: u32) -> Option<u64> {
    let link = std::fs::read_link(proc_root.join(format!("{pid}/fd/{fd}"))).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

fn resolve_procfs(proc_root: &Path, pid: u32, fd: u32) -> Option<SocketTuple> {
    let inode = socket_inode(proc_root, pid, fd)?;
    let tables = NetTables::read(proc_root, pid);
    tables.by_inode.get(&inode).cloned()
}

/// One process's view of `/proc/<pid>/net/{tcp,tcp6,udp,udp6,unix}`: established TCP, bound
/// UDP and connected Unix stream sockets by inode.
#[derive(Default)]
pub struct NetTables {
    pub by_inode: HashMap<u64, SocketTuple>,
    /// Local addresses of listening TCP sockets: an established socket on one of them was
    /// accepted (the traced process is the server).
    pub listening: Vec<SocketAddr>,
}

impl NetTables {
    pub fn read(proc_root: &Path, pid: u32) -> NetTables {
        let mut t = NetTables::default();
        let net = proc_root.join(format!("{pid}/net"));
        for (file, v6) in [("tcp", false), ("tcp6", true)] {
            if let Ok(text) = std::fs::read_to_string(net.join(file)) {
                t.parse_tcp(&text, v6);
            }
        }
        for (file, v6) in [("udp", false), ("udp6", true)] {
            if let Ok(text) = std::fs::read_to_string(net.join(file)) {
                t.parse_udp(&text, v6);
            }
        }
        if let Ok(text) = std::fs::read_to_string(net.join("unix")) {
            t.parse_unix(&text);
        }
        t
    }

    /// `/proc/net/tcp{,6}`: `sl local rem st ... inode`; only ESTABLISHED (01).
    fn parse_tcp(&mut self, text: &str, v6: bool) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(rem), Some(st), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            if *st == "0A" {
                if let Some(l) = parse_hex_addr(local, v6) {
                    self.listening.push(l);
                }
                continue;
            }
            if *st != "01" {
                continue;
            }
            let (Some(l), Some(r), Ok(inode)) = (
                parse_hex_addr(local, v6),
                parse_hex_addr(rem, v6),
                inode.parse::<u64>(),
            ) else {
                continue;
            };
            self.by_inode.insert(
                inode,
                SocketTuple {
                    transport: Some(Transport::Tcp),
                    local: Some(l),
                    peer: Some(r),
                    unix_path: None,
                },
            );
        }
    }

    /// `/proc/net/udp{,6}`: same columns as TCP; state 07 (unconnected) or 01 (connected),
    /// the remote address all zeros when unconnected (the peer is then per datagram).
    fn parse_udp(&mut self, text: &str, v6: bool) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(rem), Some(st), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            if *st != "07" && *st != "01" {
                continue;
            }
            let (Some(l), Some(r), Ok(inode)) = (
                parse_hex_addr(local, v6),
                parse_hex_addr(rem, v6),
                inode.parse::<u64>(),
            ) else {
                continue;
            };
            let connected = !r.ip().is_unspecified() || r.port() != 0;
            self.by_inode.insert(
                inode,
                SocketTuple {
                    transport: Some(Transport::Udp),
                    local: Some(l),
                    peer: connected.then_some(r),
                    unix_path: None,
                },
            );
        }
    }

    /// `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode [Path]`; stream (0001)
    /// sockets in state connected (03).
    fn parse_unix(&mut self, text: &str) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(ty), Some(st), Some(inode)) = (f.get(4), f.get(5), f.get(6)) else {
                continue;
            };
            if *ty != "0001" || *st != "03" {
                continue;
            }
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            let path = f.get(7).map(|p| p.to_string());
            self.by_inode.insert(
                inode,
                SocketTuple {
                    transport: Some(Transport::Unix),
                    local: None,
                    peer: None,
                    unix_path: path,
                },
            );
        }
    }
}

impl NetTables {
    /// The role of an established TCP socket: server when its local address is one a socket
    /// listens on (directly or on the wildcard address), else client. `None` for other
    /// sockets (UDP, Unix).
    pub fn role_of(&self, t: &SocketTuple) -> Option<Role> {
        if t.transport != Some(Transport::Tcp) {
            return None;
        }
        let local = t.local?;
        let listens = self.listening.iter().any(|l| {
            l.port() == local.port()
                && (l.ip().is_unspecified() || l.ip().to_canonical() == local.ip().to_canonical())
        });
        Some(if listens { Role::Server } else { Role::Client })
    }
}

/// `0100007F:0CEA` (v4, little-endian words) or 32 hex digits (v6) → address.
fn parse_hex_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !v6 {
        let raw = u32::from_str_radix(ip, 16).ok()?;
        // The kernel prints the address as a native-endian u32 of network-order bytes.
        return Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(raw)),
            port,
        )));
    }
    if ip.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, word) in (0..4).map(|w| ip.get(w * 8..w * 8 + 8)).enumerate() {
        let w = u32::from_str_radix(word?, 16).ok()?;
        bytes
            .get_mut(i * 4..i * 4 + 4)?
            .copy_from_slice(&w.to_ne_bytes());
    }
    Some(unmap_v4(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(bytes),
        port,
        0,
        0,
    ))))
}

/// A socket that predates the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingSocket {
    pub pid: u32,
    pub fd: u32,
    pub tuple: SocketTuple,
    /// For TCP: whether the socket was accepted ([`NetTables::role_of`]).
    pub role: Option<Role>,
}

/// Established TCP, bound UDP and connected Unix stream sockets of every process under
/// `proc_root`, for sockets that predate the receiver. `keep(pid)` filters processes.
pub fn existing_sockets(
    proc_root: &Path,
    keep: impl Fn(u32) -> bool,
    limit: usize,
) -> Vec<ExistingSocket> {
    let mut out = Vec::new();
    let mut tables_by_netns: HashMap<u64, NetTables> = HashMap::new();
    let Ok(rd) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for entry in rd.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if !keep(pid) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let netns = std::fs::metadata(entry.path().join("ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0);
        for fd in fds.flatten() {
            let Some(fdn) = fd.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Some(inode) = socket_inode(proc_root, pid, fdn) else {
                continue;
            };
            let tables = tables_by_netns
                .entry(netns)
                .or_insert_with(|| NetTables::read(proc_root, pid));
            if let Some(tuple) = tables.by_inode.get(&inode) {
                out.push(ExistingSocket {
                    pid,
                    fd: fdn,
                    tuple: tuple.clone(),
                    role: tables.role_of(tuple),
                });
                if out.len() >= limit {
                    return out;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn hex_addresses_from_proc_net() {
        assert_eq!(
            parse_hex_addr("0100007F:0CEA", false),
            Some("127.0.0.1:3306".parse().unwrap())
        );
        assert_eq!(
            parse_hex_addr("00000000000000000000000001000000:1F90", true),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            parse_hex_addr("0000000000000000FFFF00000100007F:0CEA", true),
            Some("127.0.0.1:3306".parse().unwrap()),
            "v4-mapped v6 is reported as v4"
        );
        assert_eq!(parse_hex_addr("zz:1", false), None);
        assert_eq!(parse_hex_addr("0100007F", false), None);
    }

    #[test]
    fn unix_paths() {
        assert_eq!(
            unix_path(b"/run/mysqld/mysqld.sock\0\0").as_deref(),
            Some("/run/mysqld/mysqld.sock")
        );
        assert_eq!(unix_path(b"\0abstract\0").as_deref(), Some("@abstract"));
        assert_eq!(unix_path(b""), None);
    }

    #[test]
    fn resolves_a_real_tcp_connection_both_ways() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).unwrap();
        let me = std::process::id();
        let fd = client.as_raw_fd() as u32;
        let via_proc = resolve_procfs(Path::new("/proc"), me, fd).expect("procfs tuple");
        assert_eq!(via_proc.peer, Some(addr));
        assert_eq!(via_proc.local, Some(client.local_addr().unwrap()));
        // pidfd_getfd on our own pid works without extra privileges.
        let via_pidfd = resolve(Path::new("/proc"), me, fd).expect("tuple");
        assert_eq!(via_pidfd, via_proc);
        let seen = existing_sockets(Path::new("/proc"), |p| p == me, 100);
        let entry = |fd: u32| seen.iter().find(|s| s.pid == me && s.fd == fd);
        let found = |fd: u32| entry(fd).map(|s| &s.tuple);
        assert_eq!(found(fd), Some(&via_proc), "{seen:?}");
        assert!(found(server.as_raw_fd() as u32).is_some());
        // Who connected to whom, from the listening socket's port.
        assert_eq!(entry(fd).and_then(|s| s.role), Some(Role::Client));
        assert_eq!(
            entry(server.as_raw_fd() as u32).and_then(|s| s.role),
            Some(Role::Server)
        );
        assert!(
            found(listener.as_raw_fd() as u32).is_none(),
            "listeners are not connections"
        );
    }

    #[test]
    fn udp_sockets_connected_or_not_from_proc_and_pidfd() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        let v6 = std::net::UdpSocket::bind("[::1]:0").ok();
        let me = std::process::id();
        let root = Path::new("/proc");
        let fd = |s: &std::net::UdpSocket| s.as_raw_fd() as u32;
        let unconnected = SocketTuple {
            transport: Some(Transport::Udp),
            local: Some(server.local_addr().unwrap()),
            peer: None,
            unix_path: None,
        };
        let connected = SocketTuple {
            transport: Some(Transport::Udp),
            local: Some(client.local_addr().unwrap()),
            peer: Some(server.local_addr().unwrap()),
            unix_path: None,
        };
        // The /proc fallback and pidfd agree.
        assert_eq!(
            resolve_procfs(root, me, fd(&server)),
            Some(unconnected.clone())
        );
        assert_eq!(
            resolve_procfs(root, me, fd(&client)),
            Some(connected.clone())
        );
        assert_eq!(resolve(root, me, fd(&server)), Some(unconnected.clone()));
        assert_eq!(resolve(root, me, fd(&client)), Some(connected.clone()));
        // Both are listed as sockets that predate a start.
        let seen = existing_sockets(root, |p| p == me, 1000);
        let found = |fd: u32| {
            seen.iter()
                .find(|s| s.pid == me && s.fd == fd)
                .map(|s| s.tuple.clone())
        };
        assert_eq!(found(fd(&server)), Some(unconnected));
        assert_eq!(found(fd(&client)), Some(connected));
        if let Some(v6) = v6 {
            let t = found(fd(&v6)).expect("udp6 socket");
            assert_eq!(t.local, Some(v6.local_addr().unwrap()));
            assert_eq!(t.transport, Some(Transport::Udp));
        }
    }

    #[test]
    fn udp_table_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 01004D7F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
            \x20 2: 0100007F:A0C9 01004D7F:0035 01 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n\
            \x20 3: 0100007F:A0CA 01004D7F:0035 0A 00000000:00000000 00:00000000 00000000     0        0 4244 2 0000000000000000 0\n";
        let mut t = NetTables::default();
        t.parse_udp(text, false);
        let server = t.by_inode.get(&4242).expect("unconnected");
        assert_eq!(server.local, Some("127.77.0.1:53".parse().unwrap()));
        assert_eq!(server.peer, None);
        assert_eq!(server.transport, Some(Transport::Udp));
        let client = t.by_inode.get(&4243).expect("connected");
        assert_eq!(client.peer, Some("127.77.0.1:53".parse().unwrap()));
        assert!(!t.by_inode.contains_key(&4244), "unknown state");
    }

    #[test]
    fn resolves_a_unix_socket_path_from_the_connecting_side() {
        let dir = std::env::temp_dir().join(format!("ebpf-receiver-sock-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        let client = std::os::unix::net::UnixStream::connect(&dir).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let t = resolve(
            Path::new("/proc"),
            std::process::id(),
            client.as_raw_fd() as u32,
        )
        .expect("tuple");
        assert_eq!(t.transport, Some(Transport::Unix));
        assert_eq!(t.unix_path.as_deref(), dir.to_str());
        let _ = std::fs::remove_file(&dir);
    }
}
