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
    bpf::{BpfSettings, Floor, FloorProbes, KernelEvent, Probes, ProgramStats, SocketFamily},
    model::{ConnId, Direction, Protocol, Role},
};

/// The kernel's limit on instructions the verifier processes for one program
/// (`BPF_COMPLEXITY_LIMIT_INSNS`).
const VERIFIER_LIMIT_INSNS: u32 = 1_000_000;

/// Most instructions the verifier may process for one program: 25 % of its limit, room for the
/// kernels and protocols to come.
const MAX_VERIFIED_INSNS: u32 = VERIFIER_LIMIT_INSNS / 4;

fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("EBPF_RECEIVER_SKIP_ROOT_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("skipping: not root and EBPF_RECEIVER_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!(
        "this test loads eBPF programs and must run as root (or set EBPF_RECEIVER_SKIP_ROOT_TESTS=1)"
    );
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
        panic!(
            "mariadbd did not become ready; see {}",
            db.dir.join("err.log").display()
        );
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
        let ok = child
            .wait_with_output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        (ok, pid)
    }

    fn client_tcp(&self, query: &str) -> (bool, u32) {
        let port = self.port.to_string();
        self.run(&["--protocol=TCP", "-h", "127.0.0.1", "-P", &port], query)
    }

    /// A raw client with the vectored syscalls: reads the greeting with readv (two iovecs,
    /// the boundary inside the greeting), writes a HandshakeResponse with writev in 3-byte
    /// iovecs (about 25: nginx writes a response in up to 64, all captured), reads the
    /// reply with recvmsg, sends COM_QUIT with sendmsg (two iovecs). Prints the bytes it sent
    /// and received as hex lines: greeting, handshake response, reply, quit.
    fn client_vectored(&self) -> (u32, Vec<Vec<u8>>) {
        const SCRIPT: &str = r#"
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
a, b = bytearray(7), bytearray(4096)
n = os.readv(s.fileno(), [a, b])
greeting = bytes(a + b)[:n]
payload = (b"\x85\xa6\x0f\x00" + b"\x00\x00\x00\x01" + b"\x21" + b"\x00" * 23
           + b"root\x00" + b"\x00" + b"mysql_native_password\x00")
pkt = len(payload).to_bytes(3, "little") + b"\x01" + payload
os.writev(s.fileno(), [pkt[i:i + 3] for i in range(0, len(pkt), 3)])
reply = s.recvmsg(4096)[0]
quit = b"\x01\x00\x00\x00\x01"
s.sendmsg([quit[:3], quit[3:]])
s.close()
for x in (greeting, pkt, reply, quit):
    print(x.hex())
"#;
        let child = Command::new("python3")
            .args(["-c", SCRIPT, &self.port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let pid = child.id();
        let out = child.wait_with_output().expect("python3");
        assert!(out.status.success(), "vectored client failed");
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                (0..l.len() / 2)
                    .map(|i| u8::from_str_radix(&l[2 * i..2 * i + 2], 16).expect("hex"))
                    .collect()
            })
            .collect();
        (pid, lines)
    }

    /// Two connections opened *before* the probes load (greeting read), so the kernel does
    /// not know them until user space seeds them. Prints both fds, then waits for a line on
    /// stdin, then on each: HandshakeResponse, COM_QUERY, COM_QUIT.
    fn preexisting_clients(&self) -> (Child, u32, [u32; 2]) {
        const SCRIPT: &str = r#"
import socket, sys
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(2)]
for s in socks:
    s.recv(4096)
print(socks[0].fileno(), socks[1].fileno(), flush=True)
sys.stdin.readline()
payload = (b"\x85\xa6\x0f\x00" + b"\x00\x00\x00\x01" + b"\x21" + b"\x00" * 23
           + b"root\x00" + b"\x00" + b"mysql_native_password\x00")
for i, s in enumerate(socks):
    s.sendall(len(payload).to_bytes(3, "little") + b"\x01" + payload)
    s.recv(4096)
    q = b"\x03SELECT %d AS seeded_probe" % i
    s.sendall(len(q).to_bytes(3, "little") + b"\x00" + q)
    s.recv(4096)
    s.sendall(b"\x01\x00\x00\x00\x01")
    s.close()
"#;
        let mut child = Command::new("python3")
            .args(["-c", SCRIPT, &self.port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("fds");
        let fds: Vec<u32> = line
            .split_whitespace()
            .map(|f| f.parse().expect("fd"))
            .collect();
        let pid = child.id();
        (child, pid, [fds[0], fds[1]])
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
            c.open = Some((
                o.role.expect("role"),
                o.family,
                o.peer,
                o.protocol.expect("inferred"),
            ));
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
    chunks
        .iter()
        .any(|(_, _, b)| b.windows(needle.len()).any(|w| w == needle))
}

/// A server that accepts in one process and serves in a forked child (as PostgreSQL's
/// postmaster and backends do), and a client speaking the PostgreSQL startup to it (SSLRequest
/// refused with `N`, then a StartupMessage). The child also starts a thread that does nothing
/// with the socket. Returns the parent's pid, the child's pid and the startup bytes.
fn forking_server() -> (u32, u32, Vec<u8>) {
    const SCRIPT: &str = r#"
import os, socket, struct, threading
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
client = socket.create_connection(ls.getsockname())
conn, _ = ls.accept()
pid = os.fork()
if pid == 0:
    ls.close()
    threading.Thread(target=lambda: None).start()
    conn.recv(64)
    conn.sendall(b"N")
    conn.recv(4096)
    os._exit(0)
conn.close()
params = b"user\x00u\x00database\x00forked_probe\x00\x00"
startup = struct.pack(">II", 8 + len(params), 196608) + params
client.sendall(struct.pack(">II", 8, 80877103))
assert client.recv(1) == b"N"
client.sendall(startup)
os.waitpid(pid, 0)
print(os.getpid(), pid, startup.hex())
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .output()
        .expect("python3");
    assert!(out.status.success(), "forking server failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let parent = words.next().and_then(|w| w.parse().ok()).expect("parent");
    let child = words.next().and_then(|w| w.parse().ok()).expect("child");
    let hex = words.next().expect("startup");
    let startup = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    (parent, child, startup)
}

#[test]
fn mysql_over_tcp_and_unix_socket() {
    if !require_root() {
        return;
    }
    for item in ebpf_receiver::bpf::check() {
        println!(
            "check {:<28} {:<4} {}",
            item.name,
            if item.ok { "ok" } else { "FAIL" },
            item.detail
        );
        assert!(item.ok, "check `{}` failed: {}", item.name, item.detail);
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
        enabled_protocols: Protocol::ALL.to_vec(),
        kernel_inference: true,
    };
    // Sockets that predate the probes: the kernel only learns of them by seeding.
    let (mut pre, pre_pid, pre_fds) = db.preexisting_clients();

    // (The verifier's instruction counts are `verifier_budget_of_every_program`'s.)
    let mut probes = Probes::load(&settings).expect("load probes");
    let mut reader = probes.take_reader().expect("reader");
    let mut control = probes.conn_control().expect("conn control");

    // Seed both pre-existing sockets; disable capture of the second one.
    let gen_a = control
        .seed(pre_pid, pre_fds[0], None, false)
        .expect("seed")
        .expect("new entry");
    let gen_b = control
        .seed(pre_pid, pre_fds[1], None, false)
        .expect("seed")
        .expect("new entry");
    assert!(
        gen_a & 0x8000_0000 != 0 && gen_b & 0x8000_0000 != 0,
        "seeded generations"
    );
    assert_eq!(
        control
            .seed(pre_pid, pre_fds[0], None, false)
            .expect("seed"),
        None,
        "seed overwrote"
    );
    let conn_b = ConnId {
        pid: pre_pid,
        fd: pre_fds[1],
        generation: gen_b,
    };
    control.disable(conn_b).expect("disable");
    std::io::Write::write_all(pre.stdin.as_mut().expect("stdin"), b"go\n").expect("go");
    assert!(pre.wait().expect("pre-existing clients").success());

    let (ok, tcp_pid) = db.client_tcp("SELECT 1+1 AS tcp_probe");
    assert!(ok, "tcp query failed");
    let (ok, unix_pid) = db.client_unix("SELECT 2+2 AS unix_probe");
    assert!(ok, "unix query failed");
    let (vec_pid, sent) = db.client_vectored();
    let (fork_parent, fork_child, startup) = forking_server();

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
        (
            "unix client",
            unix_pid,
            SocketFamily::Unix,
            &b"unix_probe"[..],
        ),
    ] {
        let list = of_pid(pid);
        assert_eq!(
            list.len(),
            1,
            "{label}: expected one connection, got {list:?}"
        );
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
                println!(
                    "  {dir} pos={pos} len={len} cap={} head={:02x?}",
                    bytes.len(),
                    &bytes[..bytes.len().min(12)]
                );
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
        assert!(
            contains(&c.egress, needle),
            "{label}: query text not captured"
        );
        // The greeting is the first thing the client reads: protocol 10.
        assert_eq!(
            c.ingress[0].2.get(4),
            Some(&0x0a),
            "{label}: first ingress is not the greeting"
        );
        assert!(c.closed, "{label}: no CLOSE event");
        assert!(!c.data_after_close, "{label}: data delivered after CLOSE");
    }
    // The vectored client: iovec captures are the exact concatenation of the iovecs.
    let list = of_pid(vec_pid);
    assert_eq!(
        list.len(),
        1,
        "vectored client: expected one connection, got {list:?}"
    );
    let (_, c) = list[0];
    let (greeting, response, reply, quit) = (&sent[0], &sent[1], &sent[2], &sent[3]);
    assert_eq!(
        c.open.map(|o| (o.0, o.3)),
        Some((Role::Client, Protocol::Mysql))
    );
    assert_stream("vectored egress", &c.egress);
    assert_stream("vectored ingress", &c.ingress);
    let egress: Vec<&[u8]> = c.egress.iter().map(|e| e.2.as_slice()).collect();
    assert_eq!(
        egress,
        [response.as_slice(), quit.as_slice()],
        "writev/sendmsg capture"
    );
    let ingress: Vec<&[u8]> = c.ingress.iter().map(|e| e.2.as_slice()).collect();
    assert_eq!(
        ingress,
        [greeting.as_slice(), reply.as_slice()],
        "readv/recvmsg capture"
    );
    assert!(c.closed, "vectored client: no CLOSE event");

    // Seeded connections: A inferred from its COM_QUERY (the HandshakeResponse has seq 1 and
    // the OK reply is not a request, so inference needs the third message), data flows;
    // B is disabled: OPEN only.
    let conn_a = ConnId {
        pid: pre_pid,
        fd: pre_fds[0],
        generation: gen_a,
    };
    let a = conns.get(&conn_a).expect("seeded connection A");
    assert_eq!(
        a.open.map(|o| (o.0, o.3)),
        Some((Role::Client, Protocol::Mysql))
    );
    assert!(
        contains(&a.egress, b"SELECT 0 AS seeded_probe"),
        "seeded A: query not captured"
    );
    assert_stream("seeded A egress", &a.egress);
    assert!(a.closed, "seeded A: no CLOSE");
    let b = conns.get(&conn_b).expect("seeded connection B");
    assert!(b.open.is_some(), "seeded B: no OPEN");
    assert!(
        b.egress.is_empty() && b.ingress.is_empty(),
        "seeded B: disabled but data came"
    );
    control.enable(conn_b).expect("enable");

    let server = of_pid(server_pid);
    let server_conns: Vec<_> = server
        .iter()
        .filter(|(_, c)| c.open.is_some_and(|o| o.0 == Role::Server))
        .collect();
    assert!(
        server_conns.len() >= 2,
        "server side: expected ≥3 server connections, got {server:?}"
    );
    for (id, c) in &server_conns {
        assert_stream(&format!("server {id:?} egress"), &c.egress);
        assert_stream(&format!("server {id:?} ingress"), &c.ingress);
    }

    // A socket accepted by one process and served by the child it forked: the child's
    // connection (the parent never used it, so it has none; the client has its own).
    let child = of_pid(fork_child);
    assert_eq!(child.len(), 1, "forked child: {child:?}");
    let (_, c) = child[0];
    assert_eq!(
        c.open.map(|o| (o.0, o.3)),
        Some((Role::Server, Protocol::Postgres)),
        "forked child"
    );
    assert_stream("forked child ingress", &c.ingress);
    assert_eq!(c.ingress.len(), 2, "SSLRequest and StartupMessage");
    assert_eq!(
        c.ingress[1].2, startup,
        "forked child: startup not captured"
    );
    assert_eq!(c.egress.len(), 1, "forked child: the `N` answer");
    let parent = of_pid(fork_parent);
    assert!(
        parent
            .iter()
            .all(|(_, c)| c.open.is_some_and(|o| o.0 == Role::Client)),
        "forking parent: only its client connection: {parent:?}"
    );

    let stats = probes.stats().expect("stats");
    println!("kernel stats: {stats:?}");
    for (v, name) in [
        (stats.control_ring_full, "control ring full"),
        (stats.data_ring_full, "data ring full"),
        (stats.capture_truncated, "capture truncated"),
        (stats.conn_map_full, "conn map full"),
        (stats.args_map_full, "args map full"),
        (stats.read_failed, "read failed"),
    ] {
        assert_eq!(v, 0, "kernel drop counter `{name}` is not 0");
    }
    assert!(stats.inferences[Protocol::Mysql.index()] >= 8);
    assert!(stats.disabled > 0, "disabled connection not counted");
    assert!(stats.control_events >= 8);
    assert!(stats.data_events > 0);
    drop(probes);
}

fn default_settings() -> BpfSettings {
    BpfSettings {
        max_capture_bytes: 16384,
        data_ring_bytes: 4 << 20,
        control_ring_bytes: 256 << 10,
        max_connections: 65536,
        self_pid: std::process::id(),
        pids: Vec::new(),
        exclude_pids: Vec::new(),
        exclude_ports: vec![4317],
        enabled_protocols: Protocol::ALL.to_vec(),
        kernel_inference: true,
    }
}

/// R12: every program in the eBPF object is loaded on this kernel and its verified instruction
/// count (`bpf_prog_info.verified_insns`) is at most 25 % of the verifier's 1M limit. Prints
/// the table that README.md's "Verifier budget" shows:
/// `cargo test -p ebpf-receiver --test bpf_smoke verifier -- --nocapture`.
#[test]
fn verifier_budget_of_every_program() {
    if !require_root() {
        return;
    }
    let started = Instant::now();
    let probes = Probes::load(&default_settings()).expect("load probes");
    let mut rows: Vec<(ProgramStats, &str)> = probes
        .program_stats()
        .expect("program stats")
        .into_iter()
        .map(|p| (p, "receiver"))
        .collect();
    let object = probes.object_programs();
    drop(probes);
    // The benchmark's empty programs are in the same object: load each set once.
    for floor in [Floor::Tracepoints, Floor::Raw, Floor::Btf, Floor::BtfFilter] {
        let f = FloorProbes::load(floor).unwrap_or_else(|e| panic!("floor {floor:?}: {e:#}"));
        rows.extend(
            f.program_stats()
                .expect("floor program stats")
                .into_iter()
                .map(|p| (p, "benchmark floor")),
        );
    }
    let took = started.elapsed();
    // Every program of the object is in the table.
    let measured: Vec<&str> = rows.iter().map(|(p, _)| p.name).collect();
    let unmeasured: Vec<&String> = object
        .iter()
        .filter(|n| !measured.contains(&n.as_str()))
        .collect();
    assert!(
        unmeasured.is_empty(),
        "programs in the eBPF object without a verified instruction count: {unmeasured:?}"
    );

    rows.sort_by_key(|(p, _)| std::cmp::Reverse(p.verified_instructions));
    println!("| program | verified instructions | % of the 1M limit | translated bytes | role |");
    println!("|---|---:|---:|---:|---|");
    for (p, role) in &rows {
        let n = p.verified_instructions.unwrap_or(0);
        println!(
            "| `{}` | {n} | {:.2} % | {} | {role} |",
            p.name,
            f64::from(n) * 100.0 / f64::from(VERIFIER_LIMIT_INSNS),
            p.translated_bytes.map_or("?".into(), |v| v.to_string())
        );
    }
    let total: u64 = rows
        .iter()
        .map(|(p, _)| u64::from(p.verified_instructions.unwrap_or(0)))
        .sum();
    let (largest, largest_n) = rows.first().map_or(("-", 0), |(p, _)| {
        (p.name, p.verified_instructions.unwrap_or(0))
    });
    println!(
        "{} programs ({} of the receiver), {total} verified instructions in all, largest \
         `{largest}` {largest_n} ({:.2} % of the limit, budget 25 %); loaded in {:.1} s on linux {}",
        rows.len(),
        rows.iter().filter(|(_, r)| *r == "receiver").count(),
        f64::from(largest_n) * 100.0 / f64::from(VERIFIER_LIMIT_INSNS),
        took.as_secs_f64(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );

    let mut over = Vec::new();
    for (p, _) in &rows {
        match p.verified_instructions {
            None | Some(0) => over.push(format!(
                "`{}`: the kernel reports no verified instruction count (not loaded?)",
                p.name
            )),
            Some(n) if n > MAX_VERIFIED_INSNS => over.push(format!(
                "`{}`: the verifier processed {n} instructions, above the budget of \
                 {MAX_VERIFIED_INSNS} (25 % of its {VERIFIER_LIMIT_INSNS} limit); \
                 bound its loops tighter or split it (tail call) before it stops loading \
                 on other kernels",
                p.name
            )),
            Some(_) => {}
        }
    }
    assert!(over.is_empty(), "verifier budget:\n{}", over.join("\n"));
}
