//! The crash classes of peer agents (`reference/reliability-security.md` §3, F3 and F4), written
//! as byte streams for our parsers: the seed corpus of every fuzz target
//! (`receiver/fuzz/seeds/<target>/`, written from here with `UPDATE_SEEDS=1`) and regression
//! tests (`hostile_bytes.rs` runs each through its driver and the hostile runner).

use ebpf_receiver::model::Protocol;
use ebpf_receiver::protocol::chaos;

/// A hostile exchange for one framer.
pub struct Seed {
    /// File name in the seed folder (`.client` / `.server` appended for each role).
    pub name: &'static str,
    pub protocol: Protocol,
    /// DNS over UDP: every message is one datagram.
    pub datagram: bool,
    /// (sent by the client, bytes), one syscall each.
    pub messages: Vec<(bool, Vec<u8>)>,
}

fn c(bytes: impl Into<Vec<u8>>) -> (bool, Vec<u8>) {
    (true, bytes.into())
}

fn s(bytes: impl Into<Vec<u8>>) -> (bool, Vec<u8>) {
    (false, bytes.into())
}

fn seed(name: &'static str, protocol: Protocol, messages: Vec<(bool, Vec<u8>)>) -> Seed {
    Seed {
        name,
        protocol,
        datagram: false,
        messages,
    }
}

// ---- MySQL --------------------------------------------------------------------------------------

/// A packet: 3-byte little-endian length, sequence id, payload (the length as given).
fn my_raw(len: u32, seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = len.to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

fn my(seq: u8, payload: &[u8]) -> Vec<u8> {
    my_raw(payload.len() as u32, seq, payload)
}

fn my_query(sql: &[u8]) -> Vec<u8> {
    my(0, &[&[0x03][..], sql].concat())
}

fn my_ok(seq: u8) -> Vec<u8> {
    my(seq, &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00])
}

fn mysql() -> Vec<Seed> {
    let p = Protocol::Mysql;
    vec![
        // MySQL 0xFFFFFF multi-packet: a payload of exactly 2^24-1 bytes announces a
        // continuation packet (packetbeat's unbounded rows, elastic/beats#101).
        seed(
            "mysql_0xffffff_multi_packet",
            p,
            vec![
                c(my_raw(
                    0xff_ffff,
                    0,
                    &[&[0x03][..], b"SELECT '", &[b'x'; 2000]].concat(),
                )),
                c(my_raw(5, 1, b"xx';")),
                s(my_ok(1)),
                c(my_query(b"SELECT 1")),
                s(my_ok(1)),
            ],
        ),
        // COM_STMT_EXECUTE with a statement id cut short (OBI PR #593).
        seed(
            "mysql_stmt_execute_truncated_id",
            p,
            vec![
                c(my(0, &[0x17, 0x01, 0x00])),
                s(my_ok(1)),
                c(my(0, &[0x17])),
                s(my_ok(1)),
            ],
        ),
        // COM_STMT_PREPARE_OK announcing 65535 columns and parameters, cut after the id.
        seed(
            "mysql_prepare_ok_truncated",
            p,
            vec![
                c(my(0, b"\x16SELECT ?")),
                s(my_raw(12, 1, &[0x00, 0x01, 0x00, 0x00, 0x00])),
                s(my(
                    1,
                    &[
                        0x00, 0x01, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00,
                    ],
                )),
            ],
        ),
        // An ERR packet shorter than its fixed fields, followed by the next packet: the next
        // packet's bytes must not become the error (OBI PR #3395).
        seed(
            "mysql_err_short_then_next",
            p,
            vec![
                c(my_query(b"SELECT * FROM t")),
                s([
                    my(1, &[0xff, 0x15]),
                    my(2, b"#42S02Table 'x' doesn't exist"),
                ]
                .concat()),
                c(my_query(b"SELECT 2")),
                s(my(1, &[0xff])),
            ],
        ),
        // A handshake cut everywhere, with lengths running past it (DeepFlow PR #2682).
        seed(
            "mysql_handshake_truncated",
            p,
            vec![
                s(my_raw(90, 0, b"\x0a5.5.5-10.11")),
                s(my(0, b"\x0a")),
                c(my(
                    1,
                    &[
                        0x08, 0x82, 0x3e, 0x01, 0, 0, 0, 1, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'u', 0, 0xff,
                    ],
                )),
                c(my(1, &[0xff; 40])),
                s(my_ok(2)),
            ],
        ),
        // Length-encoded integers at their edges: a column count of 2^64-1, NULL and EOF
        // markers where a count is expected.
        seed(
            "mysql_lenenc_huge_counts",
            p,
            vec![
                c(my_query(b"SELECT * FROM big")),
                s(my(
                    1,
                    &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                )),
                s(my(2, &[0xfb])),
                s(my(3, &[0xfc])),
                s(my(4, &[0xfe, 0x00, 0x00, 0x02, 0x00])),
            ],
        ),
        // Headers alone, zero-length packets, sequence ids out of order.
        seed(
            "mysql_headers_only",
            p,
            vec![
                c(vec![0x00, 0x00, 0x00, 0x00]),
                c(vec![0x01]),
                c(vec![0x00, 0x00]),
                c(my_raw(0, 7, b"")),
                s(vec![0xff, 0xff, 0xff]),
                s(my_raw(3, 255, b"\x00\x00\x00")),
            ],
        ),
        // A schema name longer than any cap, by `USE` and by COM_INIT_DB.
        seed(
            "mysql_long_schema",
            p,
            vec![
                c(my_query(&[&b"USE "[..], &[b'a'; 3000]].concat())),
                s(my_ok(1)),
                c(my_query(b"SELECT 1")),
                s(my_ok(1)),
                c(my(0, &[&[0x02][..], &[b'b'; 1000]].concat())),
                s(my_ok(1)),
                c(my_query(b"SELECT 2")),
                s(my_ok(1)),
            ],
        ),
    ]
}

// ---- PostgreSQL ---------------------------------------------------------------------------------

/// A typed message: type byte, 4-byte big-endian length (itself included), body.
fn pg(t: u8, body: &[u8]) -> Vec<u8> {
    pg_raw(t, body.len() as u32 + 4, body)
}

fn pg_raw(t: u8, len: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn pg_startup() -> Vec<u8> {
    let body = b"\x00\x03\x00\x00user\x00u\x00database\x00d\x00\x00";
    let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

fn pg_ready() -> Vec<u8> {
    pg(b'Z', b"I")
}

fn postgres() -> Vec<Seed> {
    let p = Protocol::Postgres;
    vec![
        // Bind announcing more parameters (and longer ones) than it carries
        // (grafana/beyla#2271, `parsePostgresBindCommand` slice out of range).
        seed(
            "pg_bind_truncated",
            p,
            vec![
                c(pg_startup()),
                s([pg(b'R', &[0, 0, 0, 0]), pg_ready()].concat()),
                c([
                    pg(b'P', b"s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17"),
                    pg(b'B', b"\x00s1\x00\x00\x01\x00\x00\x00\x05\x7f\xff\xff\xff"),
                    pg(b'B', b"p\x00s1\x00\xff\xff"),
                    pg(b'E', b"\x00\x00\x00\x00\x00"),
                    pg(b'S', b""),
                ]
                .concat()),
                s([
                    pg(b'1', b""),
                    pg(b'2', b""),
                    pg(b'C', b"SELECT 1\x00"),
                    pg_ready(),
                ]
                .concat()),
            ],
        ),
        // Lengths a peer trusted for allocation (coroot/coroot-node-agent#313): 2^31-1, 2^32-1
        // (negative), 0 and 3 (below the 4 the length counts itself).
        seed(
            "pg_length_huge",
            p,
            vec![
                c(pg_raw(b'Q', 0x7fff_ffff, b"SELECT 1\x00")),
                s(pg_raw(b'D', 0xffff_ffff, b"\x00\x01")),
                c(pg_raw(b'Q', 0, b"")),
                c(pg_raw(b'Q', 3, b"")),
                c(pg(b'Q', b"SELECT 2\x00")),
                s([pg(b'C', b"SELECT 1\x00"), pg_ready()].concat()),
            ],
        ),
        // A startup message of 2^31-1 bytes, an SSLRequest refused, then a startup.
        seed(
            "pg_startup_huge",
            p,
            vec![
                c([
                    &0x7fff_ffffu32.to_be_bytes()[..],
                    b"\x00\x03\x00\x00user\x00",
                ]
                .concat()),
                c(vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
                s(b"N".to_vec()),
                c(pg_startup()),
                s([pg(b'R', &[0, 0, 0, 0]), pg_ready()].concat()),
            ],
        ),
        // Parse and ErrorResponse whose strings never end.
        seed(
            "pg_unterminated_strings",
            p,
            vec![
                c(pg(b'P', b"stmt-without-nul SELECT 1")),
                c(pg(b'Q', b"SELECT 'no nul")),
                s(pg(b'E', b"SERROR\x00C42P0")),
                s(pg(b'E', b"C")),
                s(pg_ready()),
            ],
        ),
        // DataRow with 65535 columns and negative lengths, RowDescription with 65535 fields.
        seed(
            "pg_datarow_negative_lengths",
            p,
            vec![
                c(pg(b'Q', b"SELECT * FROM t\x00")),
                s(pg(b'T', b"\xff\xff")),
                s(pg(b'D', b"\xff\xff\xff\xff\xff\xfe\x00\x00\x00\x01x")),
                s([pg(b'C', b"SELECT 1\x00"), pg_ready()].concat()),
            ],
        ),
        // Headers cut after 1 to 4 length bytes, each followed by a valid query.
        seed(
            "pg_truncated_headers",
            p,
            vec![
                c(vec![b'Q']),
                c(vec![b'Q', 0]),
                c(vec![b'Q', 0, 0, 0]),
                c(pg(b'Q', b"SELECT 3\x00")),
                s(vec![b'Z', 0, 0]),
                s([pg(b'C', b"SELECT 1\x00"), pg_ready()].concat()),
            ],
        ),
        // COPY data announcing 1 GiB.
        seed(
            "pg_copy_data_huge",
            p,
            vec![
                c(pg(b'Q', b"COPY t FROM STDIN\x00")),
                s(pg(b'G', b"\x00\x00\x01\x00\x00")),
                c(pg_raw(b'd', 0x4000_0000, b"1\t2\n")),
                c(pg(b'c', b"")),
                s([pg(b'C', b"COPY 1\x00"), pg_ready()].concat()),
            ],
        ),
    ]
}

// ---- Redis --------------------------------------------------------------------------------------

fn redis() -> Vec<Seed> {
    let p = Protocol::Redis;
    vec![
        // RESP `*2147483647`: an array length a peer trusted for allocation.
        seed(
            "resp_array_2147483647",
            p,
            vec![
                c(b"*2147483647\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()),
                s(b"*2147483647\r\n:1\r\n".to_vec()),
                c(b"*1\r\n$4\r\nPING\r\n".to_vec()),
                s(b"+PONG\r\n".to_vec()),
            ],
        ),
        // Bulk and aggregate lengths past every integer type, negative, or without digits
        // (deepflowio/deepflow#6211, a Redis parser panic).
        seed(
            "resp_lengths_overflow",
            p,
            vec![
                c(b"*2\r\n$9223372036854775807\r\nGET\r\n".to_vec()),
                c(b"*1\r\n$18446744073709551616\r\n".to_vec()),
                c(b"*-5\r\n$-2\r\n*\r\n$\r\n*-\r\n:\r\n".to_vec()),
                s(b"$-2\r\n$99999999999999999999999\r\n".to_vec()),
                c(b"*1\r\n$4\r\nPING\r\n".to_vec()),
                s(b"+PONG\r\n".to_vec()),
            ],
        ),
        // Arrays nested 2000 deep.
        seed(
            "resp_nested_deep",
            p,
            vec![
                c(b"*1\r\n$4\r\nPING\r\n".to_vec()),
                s(b"*1\r\n".repeat(2000)),
                s(b":1\r\n".to_vec()),
            ],
        ),
        // RESP3 maps, sets and pushes of 2^31-1 elements; attribute and verbatim strings
        // announcing more than they hold.
        seed(
            "resp3_aggregates_huge",
            p,
            vec![
                c(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n".to_vec()),
                s(b"%2147483647\r\n+a\r\n".to_vec()),
                c(b"*1\r\n$4\r\nPING\r\n".to_vec()),
                s(
                    b"~2147483647\r\n>2147483647\r\n|1\r\n=4294967296\r\ntxt:\r\n+PONG\r\n"
                        .to_vec(),
                ),
            ],
        ),
        // An inline command longer than the inline cap, with no line end.
        seed(
            "resp_inline_unterminated",
            p,
            vec![
                c([&b"SET k "[..], &[b'v'; 70_000]].concat()),
                c(b"\r\nPING\r\n".to_vec()),
                s(b"+OK\r\n+PONG\r\n".to_vec()),
            ],
        ),
        // Error replies without a code, empty simple strings, a transaction whose EXEC
        // answers with a null array.
        seed(
            "resp_errors_and_transactions",
            p,
            vec![
                c(b"*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nEXEC\r\n".to_vec()),
                s(b"+OK\r\n*-1\r\n".to_vec()),
                c(b"*1\r\n$4\r\nEXEC\r\n*1\r\n$3\r\nGET\r\n".to_vec()),
                s(b"-\r\n-ERR\r\n+\r\n".to_vec()),
            ],
        ),
    ]
}

// ---- HTTP/1.1 -----------------------------------------------------------------------------------

fn http1() -> Vec<Seed> {
    let p = Protocol::Http1;
    vec![
        // A head that never ends (the adversarial half-message), then a valid exchange
        // (grafana/beyla#854: `[268:256]` slice out of range on a head past the buffer).
        seed(
            "http_head_without_end",
            p,
            vec![
                c([&b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "[..], &[b'p'; 40_000]].concat()),
                c(b"\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
                s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
            ],
        ),
        // Content-Length past u64, negative, duplicated with different values.
        seed(
            "http_content_length_overflow",
            p,
            vec![
                c(b"POST /a HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\nxx".to_vec()),
                c(b"POST /b HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec()),
                c(b"POST /c HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 99999999999999999999\r\n\r\nabc".to_vec()),
                s(b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n".to_vec()),
            ],
        ),
        // A chunk size that overflows, chunk extensions, a last chunk without trailers.
        seed(
            "http_chunk_size_overflow",
            p,
            vec![
                c(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
                s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nab\r\n".to_vec()),
                s(b"1;ext=\"x\"\r\na\r\n0\r\n".to_vec()),
                c(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
                s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n".to_vec()),
            ],
        ),
        // Request and status lines cut at every place a framer looks.
        seed(
            "http_truncated_lines",
            p,
            vec![
                c(b"G".to_vec()),
                c(b"ET /".to_vec()),
                c(b" HTTP/1.".to_vec()),
                c(b"1\r".to_vec()),
                c(b"\n\r\n".to_vec()),
                s(b"HTTP/1.1 2".to_vec()),
                s(b"00".to_vec()),
                s(b"\r\n\r\n".to_vec()),
            ],
        ),
        // Strings that grow when made text: a path, a query, a user agent and a host of
        // invalid UTF-8 (each byte becomes a 3-byte U+FFFD), and a query whose short secret
        // values each become `REDACTED`.
        seed(
            "http_strings_grow_past_caps",
            p,
            vec![
                c([
                    &b"GET /"[..],
                    &[0xff; 600],
                    b"?",
                    &[0xfe; 600],
                    b" HTTP/1.1\r\nHost: a\r\nUser-Agent: ",
                    &[0xc3; 300],
                    b"\r\n\r\n",
                ]
                .concat()),
                s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
                c([&b"GET /q?"[..], &b"token=a&".repeat(100), b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat()),
                s(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec()),
            ],
        ),
        // Interim responses without end, a method of 40 letters, an unterminated IPv6 host.
        seed(
            "http_odd_heads",
            p,
            vec![
                c(b"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN / HTTP/1.1\r\nHost: [::1\r\n\r\n".to_vec()),
                s(b"HTTP/1.1 100 Continue\r\n\r\n".repeat(200)),
                s(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
            ],
        ),
    ]
}

// ---- DNS ----------------------------------------------------------------------------------------

/// A DNS message: id 0x1234, `flags`, the four counts, then `rest`.
fn dns_msg(flags: u16, counts: [u16; 4], rest: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34];
    m.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        m.extend_from_slice(&c.to_be_bytes());
    }
    m.extend_from_slice(rest);
    m
}

/// `www.example.com` A IN.
const QUESTION: &[u8] = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01";

fn dns_pair(q_rest: &[u8], r_rest: &[u8]) -> Vec<(bool, Vec<u8>)> {
    vec![
        c(dns_msg(0x0100, [1, 0, 0, 0], q_rest)),
        s(dns_msg(0x8180, [1, 1, 0, 0], r_rest)),
    ]
}

fn dns_datagram_and_stream(
    name: &'static str,
    name_tcp: &'static str,
    messages: Vec<(bool, Vec<u8>)>,
) -> [Seed; 2] {
    let framed: Vec<(bool, Vec<u8>)> = messages
        .iter()
        .map(|(from_client, m)| {
            let mut b = (m.len() as u16).to_be_bytes().to_vec();
            b.extend_from_slice(m);
            (*from_client, b)
        })
        .collect();
    [
        Seed {
            name,
            protocol: Protocol::Dns,
            datagram: true,
            messages,
        },
        seed(name_tcp, Protocol::Dns, framed),
    ]
}

fn dns() -> Vec<Seed> {
    let answer_a = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01";
    let mut out = Vec::new();
    // Compression pointers that loop: a name pointing at itself, two pointing at each other.
    out.extend(dns_datagram_and_stream(
        "dns_pointer_loop_self.udp",
        "dns_pointer_loop_self.tcp",
        dns_pair(
            b"\xc0\x0c\x00\x01\x00\x01",
            &[b"\xc0\x0c\x00\x01\x00\x01", &answer_a[..]].concat(),
        ),
    ));
    out.extend(dns_datagram_and_stream(
        "dns_pointer_loop_pair.udp",
        "dns_pointer_loop_pair.tcp",
        dns_pair(
            b"\x01a\xc0\x0e\x00\x01\x00\x01",
            &[
                QUESTION,
                b"\x01b\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01",
            ]
            .concat(),
        ),
    ));
    // Pointers past the message and forward; labels running past the end (DeepFlow PR #243).
    out.extend(dns_datagram_and_stream(
        "dns_pointer_out_of_bounds.udp",
        "dns_pointer_out_of_bounds.tcp",
        dns_pair(b"\xff\xff\x00\x01\x00\x01", b"\x3fabc"),
    ));
    // Counts of 65535 in a 12-byte message; a truncated header of every length.
    let mut counts = vec![
        c(dns_msg(0x0100, [0xffff; 4], b"")),
        s(dns_msg(0x8180, [0xffff; 4], b"")),
    ];
    for n in 1..12 {
        counts.push(c(dns_msg(0x0100, [1, 0, 0, 0], QUESTION)[..n].to_vec()));
    }
    out.extend(dns_datagram_and_stream(
        "dns_counts_and_short_headers.udp",
        "dns_counts_and_short_headers.tcp",
        counts,
    ));
    // A name of more than 255 bytes through pointer chains, labels of 63 bytes of 0xff that
    // triple when escaped (`\255`), an answer whose RDLENGTH is 65535.
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[0xff; 63]);
    }
    long_name.push(0);
    let q = [&long_name[..], b"\x00\x01\x00\x01"].concat();
    out.extend(dns_datagram_and_stream(
        "dns_long_names.udp",
        "dns_long_names.tcp",
        vec![
            c(dns_msg(0x0100, [1, 0, 0, 0], &q)),
            s(dns_msg(
                0x8180,
                [1, 1, 0, 0],
                &[
                    &q[..],
                    b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\xff\xff\x7f",
                ]
                .concat(),
            )),
        ],
    ));
    // Over TCP: length prefixes of 0 and 65535, and a prefix split from its message.
    out.push(seed(
        "dns_tcp_prefixes",
        Protocol::Dns,
        vec![
            c(vec![0, 0]),
            c(vec![0xff, 0xff, 0x12]),
            c(vec![0]),
            c([&[33u8][..], &dns_msg(0x0100, [1, 0, 0, 0], QUESTION)].concat()),
            s(vec![0, 49]),
            s(dns_msg(
                0x8180,
                [1, 1, 0, 0],
                &[QUESTION, &answer_a[..]].concat(),
            )),
        ],
    ));
    out
}

/// Every framer seed.
pub fn framer_seeds() -> Vec<Seed> {
    [mysql(), postgres(), redis(), http1(), dns()]
        .into_iter()
        .flatten()
        .collect()
}

// ---- SQL and inference --------------------------------------------------------------------------

/// `drive_sql` input: dialect and a 128-byte cap, canary pick and cut 0, the text.
fn sql_input(postgres: bool, text: &[u8]) -> Vec<u8> {
    [&[64 | u8::from(postgres), 0, 0][..], text].concat()
}

/// Texts that end inside every kind of literal and comment, nest deep, run long, or are not
/// UTF-8, in both dialects; each under 4.5 KB (libFuzzer sizes its inputs after the largest
/// seed, and the sanitiser's cost grows with the text).
pub fn sql_seeds() -> Vec<(String, Vec<u8>)> {
    let texts: Vec<(&str, Vec<u8>)> = vec![
        (
            "unterminated_quote",
            b"SELECT * FROM t WHERE a = 'abc".to_vec(),
        ),
        ("trailing_backslash", b"SELECT 'abc\\".to_vec()),
        ("unterminated_dollar", b"SELECT $tag$ secret".to_vec()),
        ("nested_comments", b"/*".repeat(1000)),
        ("escape_string_end", b"SELECT E'\\'".to_vec()),
        ("hex_without_digits", b"SELECT 0x, X', b'".to_vec()),
        (
            "conditional_comment_with_quote",
            b"SELECT /*! '*/' */ 1".to_vec(),
        ),
        ("doubled_quote_end", b"SELECT 'it''".to_vec()),
        ("nul_inside", b"SELECT 'a\x00b' FROM t".to_vec()),
        (
            "invalid_utf8",
            [&b"SELECT '"[..], &[0xff, 0xfe, 0xc3], b"' FROM \xe2\x82"].concat(),
        ),
        // More tokens than the summary looks at (4096).
        ("many_tokens", b",".repeat(4200)),
        (
            "long_identifier",
            [&b"SELECT "[..], &[b'x'; 3000], b" FROM t"].concat(),
        ),
        ("use_long_schema", [&b"USE "[..], &[b's'; 3000]].concat()),
        ("unicode_escape_end", b"SELECT U&'\\".to_vec()),
        ("line_comment_end", b"SELECT 1 -- secret".to_vec()),
        (
            "huge_exponent",
            b"SELECT 1e999999999, - - - 1, .e5".to_vec(),
        ),
        ("in_list_deep", b"SELECT * FROM t WHERE a IN (".repeat(150)),
        ("parameters_and_dollars", b"SELECT $1$2$ $$ $ $a".to_vec()),
        ("unterminated_identifiers", b"SELECT \"abc, `def".to_vec()),
    ];
    let mut out = Vec::new();
    for (name, text) in texts {
        out.push((format!("{name}.mysql"), sql_input(false, &text)));
        out.push((format!("{name}.postgres"), sql_input(true, &text)));
    }
    out
}

/// `drive_infer` input: control byte, `seen`, `total` (LE), head bytes.
fn infer_input(ctl: u8, seen: u8, total: u64, head: &[u8]) -> Vec<u8> {
    [&[ctl, seen][..], &total.to_le_bytes(), head].concat()
}

/// First bytes of every protocol, the crash-class headers, and the edge cases of `seen` and
/// `total`.
pub fn infer_seeds() -> Vec<(String, Vec<u8>)> {
    // ctl: direction bit 0; socket type bits 1..=2 (1 stream, 2 datagram); role bits 3..=4.
    let stream = 1 << 1;
    let dgram = 2 << 1;
    let heads: Vec<(&str, u8, u64, Vec<u8>)> = vec![
        (
            "mysql_greeting",
            stream | 1,
            90,
            b"\x56\x00\x00\x00\x0a5.5.5-10.11".to_vec(),
        ),
        (
            "mysql_query",
            stream,
            13,
            b"\x09\x00\x00\x00\x03SELECT 1".to_vec(),
        ),
        (
            "mysql_0xffffff",
            stream,
            0x100_0003,
            b"\xff\xff\xff\x00\x03SELECT".to_vec(),
        ),
        ("http_get", stream, 40, b"GET / HTTP/1.1\r\nHo".to_vec()),
        (
            "http_response",
            stream | 1,
            40,
            b"HTTP/1.1 200 OK\r\n".to_vec(),
        ),
        (
            "pg_startup",
            stream,
            40,
            b"\x00\x00\x00\x28\x00\x03\x00\x00user\x00u".to_vec(),
        ),
        (
            "pg_huge_length",
            stream,
            9,
            b"Q\x7f\xff\xff\xffSELECT".to_vec(),
        ),
        (
            "resp_array_2147483647",
            stream,
            30,
            b"*2147483647\r\n$3\r\n".to_vec(),
        ),
        ("resp_ping", stream, 14, b"*1\r\n$4\r\nPING\r\n".to_vec()),
        (
            "dns_udp_query",
            dgram,
            33,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www".to_vec(),
        ),
        (
            "dns_tcp_query",
            stream,
            35,
            b"\x00\x21\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00".to_vec(),
        ),
        (
            "dns_pointer_loop",
            dgram,
            18,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c".to_vec(),
        ),
        ("empty", stream, 0, Vec::new()),
        ("seen_zero_total_huge", stream, u64::MAX, b"GET ".to_vec()),
        ("total_below_seen", 0, 3, b"*1\r\n$4\r\nPING\r\n".to_vec()),
    ];
    let mut out = Vec::new();
    for (name, ctl, total, head) in heads {
        let seen = if name == "seen_zero_total_huge" {
            0
        } else {
            head.len().min(16) as u8
        };
        out.push((name.to_string(), infer_input(ctl, seen, total, &head)));
        // The same with a role hint of client and of server.
        out.push((
            format!("{name}.client_hint"),
            infer_input(ctl | 1 << 3, seen, total, &head),
        ));
        out.push((
            format!("{name}.server_hint"),
            infer_input(ctl | 2 << 3, seen, total, &head),
        ));
    }
    out
}

/// Most bytes of one message in the seed corpus: the fuzz driver's buffers hold 1 KiB, so
/// longer messages add nothing but time per execution (the regression tests run them whole).
const CORPUS_MESSAGE_BYTES: usize = 2048;

/// The whole seed corpus: (target, file name, bytes). Framer seeds are written in the
/// [`chaos::drive`] layout once per role, each message cut to [`CORPUS_MESSAGE_BYTES`].
pub fn corpus() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for seed in framer_seeds() {
        let target = chaos::framer_target(seed.protocol);
        for (role_bit, suffix) in [(0u8, "client"), (1u8, "server")] {
            let chunks: Vec<(u8, &[u8])> = seed
                .messages
                .iter()
                .map(|(from_client, b)| {
                    // ctl bit 0: 0 egress, 1 ingress; a client sends egress.
                    let egress = *from_client == (role_bit == 0);
                    (u8::from(!egress), &b[..b.len().min(CORPUS_MESSAGE_BYTES)])
                })
                .collect();
            let mode = role_bit | u8::from(seed.datagram) << 1;
            out.push((
                target,
                format!("{}.{suffix}", seed.name),
                chaos::encode(mode, &chunks),
            ));
        }
    }
    for (name, bytes) in sql_seeds() {
        out.push(("sql_sanitizer", name, bytes));
    }
    for (name, bytes) in infer_seeds() {
        out.push(("infer", name, bytes));
    }
    out
}
