//! Root-only end-to-end test of the kernel path: load the probes, run real MariaDB queries over
//! TCP and over the unix socket with the `mariadb` client, and check what comes out of the
//! rings. Fails loudly when not root, unless `EBPF_RECEIVER_SKIP_ROOT_TESTS=1`.
//!
//! Run: `sudo -E cargo test -p ebpf-receiver --test bpf_smoke -- --nocapture`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ebpf_receiver::{
    bpf::{BpfSettings, ConnId, KernelEvent, Probes, SocketFamily},
    protocol::{Direction, Protocol},
    record::Role,
};

fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("EBPF_RECEIVER_SKIP_ROOT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipping: not root and EBPF_RECEIVER_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!("this test loads eBPF programs and must run as root (or set EBPF_RECEIVER_SKIP_ROOT_TESTS=1)");
}

/// A throwaway MariaDB server, killed on drop.
struct Mariadb {
    child: Child,
    dir: PathBuf,
    port: u16,
    socket: PathBuf,
}

impl Mariadb {
    fn start() -> Mariadb {
        let port = 20000 + (std::process::id() % 10000) as u16;
        let dir = std::env::temp_dir().join(format!("ebpf-receiver-smoke-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let data = dir.join("data");
        let socket = dir.join("mysql.sock");
        let status = Command::new("mariadb-install-db")
            .args(["--user=root", "--auth-root-authentication-method=normal"])
            .arg(format!("--datadir={}", data.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db (is MariaDB installed?)");
        assert!(status.success(), "mariadb-install-db failed");
        let child = Command::new("mariadbd")
            .args(["--user=root", "--skip-grant-tables", "--skip-networking=0"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        let db = Mariadb {
            child,
            dir,
            port,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if db.client_unix("SELECT 1").0 {
                return db;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("mariadbd did not become ready; see {}", db.dir.join("err.log").display());
    }

    fn run(&self, args: &[&str], query: &str) -> (bool, u32) {
        let child = Command::new("mariadb")
            .args(["-u", "root", "--skip-ssl", "-N", "-e", query])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadb client");
        let pid = child.id();
        let ok = child.wait_with_output().map(|o| o.status.success()).unwrap_or(false);
        (ok, pid)
    }

    fn client_tcp(&self, query: &str) -> (bool, u32) {
        let port = self.port.to_string();
        self.run(&["--protocol=TCP", "-h", "127.0.0.1", "-P", &port], query)
    }

    fn client_unix(&self, query: &str) -> (bool, u32) {
        let socket = self.socket.display().to_string();
        self.run(&["--protocol=SOCKET", "-S", &socket], query)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Owned copy of what the rings delivered, per connection.
#[derive(Default, Debug)]
struct Conn {
    open: Option<(Role, Option<SocketFamily>, Option<SocketAddr>, Protocol)>,
    open_seen_before_data: bool,
    closed: bool,
    data_after_close: bool,
    /// (pos, len, captured bytes) per direction, in arrival order.
    egress: Vec<(u64, u32, Vec<u8>)>,
    ingress: Vec<(u64, u32, Vec<u8>)>,
}

fn collect(conns: &mut BTreeMap<ConnId, Conn>, event: KernelEvent<'_>) {
    match event {
        KernelEvent::Open(o) => {
            let c = conns.entry(o.conn).or_default();
            c.open_seen_before_data = c.egress.is_empty() && c.ingress.is_empty();
            c.open = Some((o.role.expect("role"), o.family, o.peer, o.protocol));
        }
        KernelEvent::Close(cl) => conns.entry(cl.conn).or_default().closed = true,
        KernelEvent::Data(d) => {
            let c = conns.entry(d.conn).or_default();
            if c.closed {
                c.data_after_close = true;
            }
            let v = (d.pos, d.len, d.bytes.to_vec());
            match d.direction {
                Direction::Egress => c.egress.push(v),
                Direction::Ingress => c.ingress.push(v),
            }
        }
    }
}

fn assert_stream(name: &str, chunks: &[(u64, u32, Vec<u8>)]) {
    assert!(!chunks.is_empty(), "{name}: no data events");
    let mut next = 0u64;
    for (pos, len, bytes) in chunks {
        assert_eq!(*pos, next, "{name}: positions not contiguous");
        assert!(bytes.len() <= *len as usize);
        next = pos + u64::from(*len);
    }
}

fn contains(chunks: &[(u64, u32, Vec<u8>)], needle: &[u8]) -> bool {
    chunks.iter().any(|(_, _, b)| b.windows(needle.len()).any(|w| w == needle))
}

#[test]
fn mysql_over_tcp_and_unix_socket() {
    if !require_root() {
        return;
    }
    let db = Mariadb::start();
    let server_pid = db.child.id();

    let settings = BpfSettings {
        max_capture_bytes: 16384,
        data_ring_bytes: 4 << 20,
        control_ring_bytes: 256 << 10,
        max_connections: 4096,
        self_pid: std::process::id(),
        pids: Vec::new(),
        exclude_pids: Vec::new(),
        exclude_ports: vec![4317],
    };
    let mut probes = Probes::load(&settings).expect("load probes");
    for p in probes.program_stats().expect("program stats") {
        println!(
            "program {:<20} verified insns {:>6}  translated bytes {:>6}",
            p.name,
            p.verified_instructions.map_or("?".into(), |v| v.to_string()),
            p.translated_bytes.map_or("?".into(), |v| v.to_string()),
        );
        assert!(p.verified_instructions.is_some_and(|n| n > 0), "{} not loaded", p.name);
    }
    let mut reader = probes.take_reader().expect("reader");
    let _control = probes.conn_control().expect("conn control");

    let (ok, tcp_pid) = db.client_tcp("SELECT 1+1 AS tcp_probe");
    assert!(ok, "tcp query failed");
    let (ok, unix_pid) = db.client_unix("SELECT 2+2 AS unix_probe");
    assert!(ok, "unix query failed");

    // Drain through the async wait, as the capture task does.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut conns = BTreeMap::new();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            reader.wait(Duration::from_millis(50)).await.expect("wait");
            reader.drain(10_000, |e| collect(&mut conns, e));
        }
    });
    assert_eq!(reader.malformed(), 0, "malformed ring items");

    let of_pid = |pid: u32| -> Vec<(&ConnId, &Conn)> {
        conns.iter().filter(|(id, _)| id.pid == pid).collect()
    };
    for (label, pid, family, needle) in [
        ("tcp client", tcp_pid, SocketFamily::Inet, &b"tcp_probe"[..]),
        ("unix client", unix_pid, SocketFamily::Unix, &b"unix_probe"[..]),
    ] {
        let list = of_pid(pid);
        assert_eq!(list.len(), 1, "{label}: expected one connection, got {list:?}");
        let (id, c) = list[0];
        println!(
            "{label}: {id:?} open={:?} egress={} ingress={} closed={}",
            c.open,
            c.egress.len(),
            c.ingress.len(),
            c.closed
        );
        for (dir, list) in [("egress", &c.egress), ("ingress", &c.ingress)] {
            for (pos, len, bytes) in list.iter() {
                println!("  {dir} pos={pos} len={len} cap={} head={:02x?}", bytes.len(), &bytes[..bytes.len().min(12)]);
            }
        }
        let (role, fam, peer, protocol) = c.open.expect("OPEN event");
        assert_eq!(protocol, Protocol::Mysql);
        assert_eq!(role, Role::Client);
        assert_eq!(fam, Some(family));
        if family == SocketFamily::Inet {
            assert_eq!(peer, Some(SocketAddr::from(([127, 0, 0, 1], db.port))));
        }
        assert!(c.open_seen_before_data, "{label}: data before OPEN");
        assert_stream(&format!("{label} egress"), &c.egress);
        assert_stream(&format!("{label} ingress"), &c.ingress);
        assert!(contains(&c.egress, needle), "{label}: query text not captured");
        // The greeting is the first thing the client reads: protocol 10.
        assert_eq!(c.ingress[0].2.get(4), Some(&0x0a), "{label}: first ingress is not the greeting");
        assert!(c.closed, "{label}: no CLOSE event");
        assert!(!c.data_after_close, "{label}: data delivered after CLOSE");
    }
    let server = of_pid(server_pid);
    let server_conns: Vec<_> = server
        .iter()
        .filter(|(_, c)| c.open.is_some_and(|o| o.0 == Role::Server))
        .collect();
    assert!(server_conns.len() >= 2, "server side: expected ≥2 server connections, got {server:?}");
    for (id, c) in &server_conns {
        assert_stream(&format!("server {id:?} egress"), &c.egress);
        assert_stream(&format!("server {id:?} ingress"), &c.ingress);
    }

    let stats = probes.stats().expect("stats");
    println!("kernel stats: {stats:?}");
    use ebpf_common::stat;
    for (idx, name) in [
        (stat::DROP_CONTROL_RING_FULL, "control ring full"),
        (stat::DROP_DATA_RING_FULL, "data ring full"),
        (stat::DROP_CAPTURE_TRUNCATED, "capture truncated"),
        (stat::DROP_CONN_MAP_FULL, "conn map full"),
        (stat::DROP_DISABLED, "disabled"),
        (stat::DROP_ARGS_MAP_FULL, "args map full"),
        (stat::DROP_READ_FAILED, "read failed"),
    ] {
        assert_eq!(stats[idx as usize], 0, "kernel drop counter `{name}` is not 0");
    }
    assert!(stats[stat::INFER_MYSQL as usize] >= 4);
    assert!(stats[stat::CONTROL_EVENTS as usize] >= 8);
    assert!(stats[stat::DATA_EVENTS as usize] > 0);
    drop(probes);
}
