//! Tracker tests: kernel events in, connection records out, with real MySQL bytes.

use super::*;
use crate::bpf::CloseEvent;
use crate::model::Direction;
use crate::record::{DbOutcome, Exchange};

fn settings(max_connections: usize) -> TrackerSettings {
    TrackerSettings {
        max_connections,
        idle_timeout_ns: 60_000_000_000,
        request_timeout_ns: 10_000_000_000,
        limits: ParserLimits::default(),
        proc_root: PathBuf::from("/proc"),
        resolve: false,
        enabled_protocols: Protocol::ALL.to_vec(),
        max_total_buffer_bytes: 128 << 20,
    }
}

fn tracker(max_connections: usize) -> Tracker {
    Tracker::new(settings(max_connections), WallClock::with_offset(1_000))
}

fn id(fd: u32) -> ConnId {
    ConnId {
        pid: 4242,
        fd,
        generation: 1,
    }
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
    p.extend_from_slice(payload);
    p
}

fn query(text: &str) -> Vec<u8> {
    let mut payload = vec![0x03];
    payload.extend_from_slice(text.as_bytes());
    packet(0, &payload)
}

fn ok_packet() -> Vec<u8> {
    packet(1, &[0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00])
}

fn err_packet(code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut payload = vec![0xff, code as u8, (code >> 8) as u8, b'#'];
    payload.extend_from_slice(state.as_bytes());
    payload.extend_from_slice(msg.as_bytes());
    packet(1, &payload)
}

fn data<'a>(
    conn: ConnId,
    role: Role,
    direction: Direction,
    pos: u64,
    ts: u64,
    bytes: &'a [u8],
) -> KernelEvent<'a> {
    KernelEvent::Data(DataEvent {
        conn,
        ts_ns: ts,
        protocol: Some(Protocol::Mysql),
        role: Some(role),
        direction,
        pos,
        len: bytes.len() as u32,
        bytes,
        datagram: false,
        peer: None,
    })
}

#[test]
fn one_exchange_becomes_one_record_with_wall_clock_times() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("UPDATE accounts SET balance = 10 WHERE id = 7");
    let ok = ok_packet();
    t.on_event(
        &data(id(5), Role::Client, Direction::Egress, 0, 100, &q),
        &mut out,
    );
    t.on_event(
        &data(id(5), Role::Client, Direction::Ingress, 0, 900, &ok),
        &mut out,
    );
    t.end_batch(&mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!((r.start_unix_ns, r.end_unix_ns), (1_100, 1_900));
    assert_eq!(r.conn.role, Some(Role::Client));
    assert_eq!(r.conn.process.pid, 4242);
    let Exchange::Db(db) = &r.exchange else {
        panic!("not a database record");
    };
    assert_eq!(db.outcome, DbOutcome::Success);
    let text = db.query_text.as_deref().unwrap_or("");
    assert!(
        !text.contains("10") && !text.contains('7'),
        "literals leaked: {text}"
    );
}

#[test]
fn server_side_sees_requests_on_ingress() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("SELEC 1");
    let err = err_packet(1064, "42000", "You have an error");
    t.on_event(
        &data(id(9), Role::Server, Direction::Ingress, 0, 10, &q),
        &mut out,
    );
    t.on_event(
        &data(id(9), Role::Server, Direction::Egress, 0, 20, &err),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn.role, Some(Role::Server));
    let Exchange::Db(db) = &out[0].exchange else {
        panic!("not a database record");
    };
    assert_eq!(
        db.outcome,
        DbOutcome::Error {
            code: "1064".into(),
            detail: Some("42000".into())
        }
    );
}

#[test]
fn close_is_applied_after_the_batch_so_late_data_is_not_lost() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("SELECT 1");
    let ok = ok_packet();
    // Control ring drained first: the close arrives before the data of the same batch.
    t.on_event(
        &data(id(3), Role::Client, Direction::Egress, 0, 1, &q),
        &mut out,
    );
    t.on_event(
        &KernelEvent::Close(CloseEvent {
            conn: id(3),
            ts_ns: 5,
        }),
        &mut out,
    );
    t.on_event(
        &data(id(3), Role::Client, Direction::Ingress, 0, 4, &ok),
        &mut out,
    );
    assert_eq!(t.len(), 1);
    t.end_batch(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        t.len(),
        0,
        "closed connection forgotten at the end of the batch"
    );
}

#[test]
fn fd_reuse_with_a_new_generation_is_a_new_connection() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("SELECT 1");
    let ok = ok_packet();
    let old = id(7);
    let new = ConnId {
        generation: 2,
        ..old
    };
    t.on_event(
        &data(old, Role::Client, Direction::Egress, 0, 1, &q),
        &mut out,
    );
    // The new socket on the same fd answers: it must not complete the old request.
    t.on_event(
        &data(new, Role::Client, Direction::Ingress, 0, 2, &ok),
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(t.len(), 2);
}

#[test]
fn data_without_a_role_is_not_guessed() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("SELECT 1");
    let KernelEvent::Data(mut d) = data(id(1), Role::Client, Direction::Egress, 0, 1, &q) else {
        unreachable!()
    };
    d.role = None;
    t.on_event(&KernelEvent::Data(d), &mut out);
    assert_eq!(t.len(), 0);
}

#[test]
fn table_is_bounded_and_evicts_the_least_recently_active() {
    let mut t = tracker(4);
    let mut out = Vec::new();
    let q = query("SELECT 1");
    for fd in 0..10u32 {
        t.on_event(
            &data(
                id(fd),
                Role::Client,
                Direction::Egress,
                0,
                u64::from(fd) + 1,
                &q,
            ),
            &mut out,
        );
        assert!(t.len() <= 4);
    }
    assert_eq!(t.len(), 4);
    assert!(t.conns.contains_key(&id(9)) && !t.conns.contains_key(&id(0)));
}

#[test]
fn garbage_disables_the_connection_once() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 13) as u8 | 0x80).collect();
    let mut pos = 0;
    for i in 0..64 {
        t.on_event(
            &data(id(2), Role::Client, Direction::Egress, pos, i, &junk),
            &mut out,
        );
        pos += junk.len() as u64;
    }
    let disabled = t.take_disable_requests();
    assert_eq!(disabled, vec![id(2)], "disabled exactly once");
    assert!(out.is_empty());
    t.on_event(
        &KernelEvent::Close(CloseEvent {
            conn: id(2),
            ts_ns: 100,
        }),
        &mut out,
    );
    t.end_batch(&mut out);
    assert_eq!(
        t.take_enable_requests(),
        vec![id(2)],
        "kernel entry cleared after close"
    );
}

#[test]
fn idle_connections_are_swept() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("SELECT 1");
    t.on_event(
        &data(id(1), Role::Client, Direction::Egress, 0, 1_000, &q),
        &mut out,
    );
    t.sweep(30_000_000_000, &mut out);
    assert_eq!(t.len(), 1, "not idle yet");
    t.sweep(61_000_000_001, &mut out);
    assert_eq!(t.len(), 0);
    assert!(
        out.is_empty(),
        "an unanswered SELECT is not a span: {out:?}"
    );
}

#[test]
fn connections_of_an_exited_process_are_forgotten_at_once() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let q = query("SELECT 1");
    // Two connections of a process that exits without closing them, one of another process.
    for fd in [1, 2] {
        t.on_event(
            &data(id(fd), Role::Client, Direction::Egress, 0, 1_000, &q),
            &mut out,
        );
    }
    let other = ConnId { pid: 7, ..id(1) };
    t.on_event(
        &data(other, Role::Client, Direction::Egress, 0, 1_000, &q),
        &mut out,
    );
    assert_eq!(t.len(), 3);
    t.forget_processes(&[4242], &mut out);
    assert_eq!(t.len(), 1, "only the other process's connection stays");
    assert!(t.conn_meta(other).is_some());
    assert!(
        out.is_empty(),
        "an unanswered SELECT is not a span: {out:?}"
    );
    t.forget_processes(&[], &mut out);
    assert_eq!(t.len(), 1);
}

#[test]
fn a_process_gone_before_proc_is_read_is_named_from_the_kernel() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"mysql\0");
    let open = OpenEvent {
        conn: id(8),
        ts_ns: 1,
        protocol: Some(Protocol::Mysql),
        role: Some(Role::Client),
        family: Some(SocketFamily::Unix),
        peer: None,
        listen_fd: None,
        datagram: false,
        comm,
    };
    t.on_event(&KernelEvent::Open(open), &mut out);
    let q = query("SELECT 1");
    let ok = ok_packet();
    t.on_event(
        &data(id(8), Role::Client, Direction::Egress, 0, 2, &q),
        &mut out,
    );
    t.on_event(
        &data(id(8), Role::Client, Direction::Ingress, 0, 3, &ok),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn.process.executable_name, "mysql");
    assert_eq!(out[0].conn.transport, Some(Transport::Unix));
}

/// A DNS query or response for `web.e2e.test` A, id 7, with its TCP length prefix when `tcp`.
fn dns_message(response: bool, tcp: bool) -> Vec<u8> {
    let mut m = vec![
        0,
        7,
        if response { 0x81 } else { 0x01 },
        0x80,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    m.extend_from_slice(b"\x03web\x03e2e\x04test\x00\x00\x01\x00\x01");
    if tcp {
        let mut framed = (m.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&m);
        return framed;
    }
    m
}

fn dns_open(conn: ConnId, datagram: bool, peer: Option<&str>) -> KernelEvent<'static> {
    KernelEvent::Open(OpenEvent {
        conn,
        ts_ns: 1,
        protocol: Some(Protocol::Dns),
        role: Some(Role::Client),
        family: Some(SocketFamily::Inet),
        peer: peer.map(|p| p.parse().unwrap()),
        listen_fd: None,
        datagram,
        comm: [0; 16],
    })
}

fn dns_data(
    conn: ConnId,
    direction: Direction,
    ts: u64,
    bytes: &[u8],
    datagram: bool,
) -> KernelEvent<'_> {
    KernelEvent::Data(DataEvent {
        conn,
        ts_ns: ts,
        protocol: Some(Protocol::Dns),
        role: Some(Role::Client),
        direction,
        pos: 0,
        len: bytes.len() as u32,
        bytes,
        datagram,
        peer: None,
    })
}

fn udp_tuple(local: &str, peer: Option<&str>) -> socket::SocketTuple {
    socket::SocketTuple {
        transport: Some(Transport::Udp),
        local: Some(local.parse().unwrap()),
        peer: peer.map(|p| p.parse().unwrap()),
        unix_path: None,
    }
}

#[test]
fn a_tuple_of_the_socket_that_reused_the_fd_is_forgotten() {
    // glibc: the TCP socket at fd 3 is closed and a UDP socket to the same server takes fd 3
    // before user space resolves it; the kernel saw stream messages.
    let mut t = tracker(16);
    let mut out = Vec::new();
    let conn = id(3);
    t.preload(
        conn.pid,
        conn.fd,
        udp_tuple("127.0.0.1:40000", Some("127.77.0.1:53")),
    );
    t.on_event(&dns_open(conn, false, Some("127.77.0.1:53")), &mut out);
    let q = dns_message(false, true);
    let r = dns_message(true, true);
    t.on_event(&dns_data(conn, Direction::Egress, 10, &q, false), &mut out);
    t.on_event(&dns_data(conn, Direction::Ingress, 20, &r, false), &mut out);
    assert_eq!(out.len(), 1, "the TCP exchange is framed as a stream");
    let meta = &out[0].conn;
    assert_eq!(meta.transport, Some(Transport::Tcp));
    assert_eq!(meta.local, None, "absent, never the other socket's");
    assert_eq!(meta.peer, Some("127.77.0.1:53".parse().unwrap()));
}

#[test]
fn a_tuple_that_names_another_peer_is_forgotten() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let conn = id(4);
    t.preload(
        conn.pid,
        conn.fd,
        udp_tuple("127.0.0.1:40000", Some("10.0.0.9:53")),
    );
    t.on_event(&dns_open(conn, true, Some("127.77.0.1:53")), &mut out);
    t.on_event(
        &dns_data(
            conn,
            Direction::Egress,
            10,
            &dns_message(false, false),
            true,
        ),
        &mut out,
    );
    t.on_event(
        &dns_data(
            conn,
            Direction::Ingress,
            20,
            &dns_message(true, false),
            true,
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].conn.local, None);
    assert_eq!(out[0].conn.peer, Some("127.77.0.1:53".parse().unwrap()));
    assert_eq!(out[0].conn.transport, Some(Transport::Udp));
}

#[test]
fn a_consistent_tuple_is_kept_and_datagrams_stay_datagrams() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let conn = id(5);
    t.preload(conn.pid, conn.fd, udp_tuple("127.77.0.1:53", None));
    // A server socket registered at start: no OPEN before its first data event.
    let mut q = dns_data(conn, Direction::Ingress, 10, &[], true);
    let query = dns_message(false, false);
    let resp = dns_message(true, false);
    if let KernelEvent::Data(d) = &mut q {
        d.role = Some(Role::Server);
        d.bytes = &query;
        d.len = query.len() as u32;
        d.peer = Some("127.0.0.1:41000".parse().unwrap());
    }
    t.on_event(&q, &mut out);
    let mut r = dns_data(conn, Direction::Egress, 20, &resp, true);
    if let KernelEvent::Data(d) = &mut r {
        d.role = Some(Role::Server);
        d.peer = Some("127.0.0.1:41000".parse().unwrap());
    }
    t.on_event(&r, &mut out);
    assert_eq!(out.len(), 1);
    let meta = &out[0].conn;
    assert_eq!(meta.local, Some("127.77.0.1:53".parse().unwrap()));
    assert_eq!(
        meta.peer,
        Some("127.0.0.1:41000".parse().unwrap()),
        "the datagram's own peer"
    );
    assert_eq!(meta.transport, Some(Transport::Udp));
}

/// A Redis `GET` and its reply on connection `conn`, first bytes at stream position `pos`;
/// returns the record's `db.namespace`.
fn redis_namespace(t: &mut Tracker, conn: ConnId, pos: u64) -> Option<String> {
    let mut out = Vec::new();
    let ev = |direction, ts, bytes: &'static [u8]| {
        KernelEvent::Data(DataEvent {
            conn,
            ts_ns: ts,
            protocol: Some(Protocol::Redis),
            role: Some(Role::Client),
            direction,
            pos,
            len: bytes.len() as u32,
            bytes,
            datagram: false,
            peer: None,
        })
    };
    t.on_event(
        &ev(Direction::Egress, 10, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        &mut out,
    );
    t.on_event(&ev(Direction::Ingress, 20, b"$1\r\nv\r\n"), &mut out);
    t.end_batch(&mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    let Exchange::Db(db) = &out[0].exchange else {
        panic!("not a database record");
    };
    db.namespace.as_deref().map(str::to_owned)
}

#[test]
fn a_connection_seen_from_its_first_byte_knows_its_initial_state() {
    let mut t = tracker(16);
    // Connected while the receiver ran, first byte seen: Redis starts on database 0.
    assert_eq!(redis_namespace(&mut t, id(20), 0).as_deref(), Some("0"));
    // Registered from /proc (seeded generation): it may have SELECTed anything before.
    let seeded = ConnId {
        generation: 0x8000_0001,
        ..id(21)
    };
    assert!(crate::bpf::predates_receiver(seeded));
    assert_eq!(redis_namespace(&mut t, seeded, 0), None);
    // Forgotten (idle, evicted) and seen again mid-stream: not from its start either.
    assert_eq!(redis_namespace(&mut t, id(22), 4096), None);
}

// ---- ebpf.kernel_inference: false: the kernel forwards connections uninferred ----

/// A data event of a connection the kernel did not infer (`proto::RAW`): kernel positions count
/// from the connection's first message, the role is what connect/accept said.
fn raw_data<'a>(
    conn: ConnId,
    role: Option<Role>,
    direction: Direction,
    pos: u64,
    ts: u64,
    bytes: &'a [u8],
) -> KernelEvent<'a> {
    KernelEvent::Data(DataEvent {
        conn,
        ts_ns: ts,
        protocol: None,
        role,
        direction,
        pos,
        len: bytes.len() as u32,
        bytes,
        datagram: false,
        peer: None,
    })
}

fn discarded() -> (u64, u64) {
    let m = telemetry::metrics();
    (
        m.user_infer_discarded_events.load(Ordering::Relaxed),
        m.user_infer_gave_up.load(Ordering::Relaxed),
    )
}

#[test]
fn a_raw_connection_is_inferred_in_user_space_and_parsed_as_in_the_kernel() {
    // A MariaDB server (role from accept) reads a query's 4-byte header, then its payload, after
    // a login exchange that infers nothing on the server side.
    let mut t = tracker(16);
    let mut out = Vec::new();
    let conn = id(21);
    let (events_before, _) = discarded();
    let login = vec![0x41; 40];
    t.on_event(
        &raw_data(conn, Some(Role::Server), Direction::Ingress, 0, 5, &login),
        &mut out,
    );
    let q = query("SELECT name FROM users WHERE id = 3");
    let (header, payload) = q.split_at(4);
    t.on_event(
        &raw_data(conn, Some(Role::Server), Direction::Ingress, 40, 10, header),
        &mut out,
    );
    t.on_event(
        &raw_data(
            conn,
            Some(Role::Server),
            Direction::Ingress,
            44,
            11,
            payload,
        ),
        &mut out,
    );
    // The server's earlier writes (a greeting, an OK) were 100 bytes: positions are rebased.
    let ok = ok_packet();
    t.on_event(
        &raw_data(conn, Some(Role::Server), Direction::Egress, 100, 20, &ok),
        &mut out,
    );
    t.end_batch(&mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!((r.start_unix_ns, r.end_unix_ns), (1_011, 1_020));
    assert_eq!(r.conn.role, Some(Role::Server));
    let Exchange::Db(db) = &r.exchange else {
        panic!("not a database record");
    };
    assert_eq!(db.outcome, DbOutcome::Success);
    assert!(db.query_text.as_deref().unwrap_or("").starts_with("SELECT"));
    // The login and the lone header were discarded (counted; other tests may add more).
    assert!(discarded().0 >= events_before + 2);
    assert!(t.raw.is_empty());
}

#[test]
fn a_raw_connection_of_no_protocol_is_given_up_and_discarded() {
    let mut t = tracker(16);
    let mut out = Vec::new();
    let conn = id(22);
    let (events_before, gave_up_before) = discarded();
    let tls = [
        0x16u8, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3, 0xa1, 0xb2, 0, 0, 0, 0,
    ];
    let n = u64::from(ebpf_common::INFER_MAX_ATTEMPTS) + 10;
    for i in 0..n {
        t.on_event(
            &raw_data(conn, Some(Role::Client), Direction::Egress, i * 17, i, &tls),
            &mut out,
        );
    }
    // A message that would infer, after giving up, is discarded too.
    let q = query("SELECT 1");
    t.on_event(
        &raw_data(conn, Some(Role::Client), Direction::Egress, n * 17, n, &q),
        &mut out,
    );
    t.end_batch(&mut out);
    assert!(out.is_empty());
    assert!(t.is_empty());
    let (events, gave_up) = discarded();
    assert!(events > events_before + n);
    assert!(gave_up > gave_up_before);
    // The close forgets it.
    t.on_event(
        &KernelEvent::Close(CloseEvent { conn, ts_ns: n + 1 }),
        &mut out,
    );
    t.end_batch(&mut out);
    assert!(t.raw.is_empty());
}

#[test]
fn buffered_bytes_of_all_connections_stay_under_the_global_cap() {
    let cap = 10_000;
    let mut t = tracker(64);
    t.settings.max_total_buffer_bytes = cap;
    let mut out = Vec::new();
    // Each client starts a 2,000-byte COM_QUERY and sends only 1,500 bytes of it: the parser
    // keeps them, waiting for the rest.
    let mut q = query(&format!("SELECT '{}'", "x".repeat(1_989)));
    q.truncate(1_500);
    let mut most = 0;
    for fd in 0..20 {
        t.on_event(
            &data(id(fd), Role::Client, Direction::Egress, 0, 100, &q),
            &mut out,
        );
        assert!(
            t.buffered <= cap,
            "{} buffered over a cap of {cap}",
            t.buffered
        );
        most = most.max(t.buffered);
    }
    assert!(
        most > cap - 1_500,
        "the connections buffered only {most} bytes"
    );
    // 20 × 1,500 bytes against a cap of 10,000: at least 20,000 bytes were given up, counted.
    let overflow = t.batch_stats[Protocol::Mysql.index()].buffer_overflow_bytes;
    assert!(overflow >= 20_000, "overflow counted: {overflow}");
    t.end_batch(&mut out);
    // Closing every connection gives the whole budget back.
    for fd in 0..20 {
        t.on_event(
            &KernelEvent::Close(CloseEvent {
                conn: id(fd),
                ts_ns: 200,
            }),
            &mut out,
        );
    }
    t.end_batch(&mut out);
    assert_eq!(t.buffered, 0);
}

/// A tracker on scripted clocks: the wall clock is stepped between a request and its response,
/// and the sweep in between re-anchors. The record is in the new wall-clock time with its
/// boot-time duration; one emitted before the step stays in the old time.
#[test]
fn a_wall_clock_step_is_followed_and_never_makes_a_negative_duration() {
    use super::clock::ScriptedClocks;
    const HOUR_NS: i128 = 3_600_000_000_000;
    const REAL0: i128 = 1_700_000_000_000_000_000;
    let clocks = ScriptedClocks::new(10_000_000_000, REAL0, 50);
    let mut t = Tracker::new(
        settings(16),
        WallClock::with_source(Box::new(clocks.clone())),
    );
    let mut out = Vec::new();
    let ok = ok_packet();
    let q = query("SELECT 1");
    let unix = |boot: u64, offset: i128| u64::try_from(i128::from(boot) + offset).unwrap_or(0);

    // Before any step.
    let b = clocks.boot_ns();
    t.on_event(
        &data(id(1), Role::Client, Direction::Egress, 0, b, &q),
        &mut out,
    );
    t.on_event(
        &data(id(1), Role::Client, Direction::Ingress, 0, b + 300_000, &ok),
        &mut out,
    );
    t.end_batch(&mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0]
            .start_unix_ns
            .abs_diff(unix(b, REAL0 - 10_000_000_000))
            < 10_000
    );
    assert_eq!(out[0].end_unix_ns - out[0].start_unix_ns, 300_000);

    for (fd, step, label) in [(2, HOUR_NS, "forward"), (3, -3 * HOUR_NS, "back")] {
        out.clear();
        // The request goes out, the wall clock is stepped, a sweep re-anchors, the response
        // comes back.
        clocks.advance(1_000_000);
        let start = clocks.boot_ns();
        t.on_event(
            &data(id(fd), Role::Client, Direction::Egress, 0, start, &q),
            &mut out,
        );
        clocks.advance(2_000_000);
        clocks.step_real(step);
        t.sweep(clocks.boot_ns(), &mut out);
        let end = clocks.boot_ns();
        t.on_event(
            &data(id(fd), Role::Client, Direction::Ingress, 0, end, &ok),
            &mut out,
        );
        t.end_batch(&mut out);
        assert_eq!(out.len(), 1, "{label}: {out:?}");
        let r = &out[0];
        let now_offset = clocks.real_ns() - i128::from(clocks.boot_ns());
        assert!(
            r.start_unix_ns.abs_diff(unix(start, now_offset)) < 10_000,
            "{label}: the record is not in the new wall-clock time: {} vs {}",
            r.start_unix_ns,
            unix(start, now_offset)
        );
        assert!(
            r.end_unix_ns >= r.start_unix_ns,
            "{label}: negative duration"
        );
        assert_eq!(
            r.end_unix_ns - r.start_unix_ns,
            end - start,
            "{label}: the duration is the kernel's"
        );
    }
}
