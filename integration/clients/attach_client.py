#!/usr/bin/env python3
"""Raw-wire keep-alive clients for the attach test (issue 8, R3): exact bytes on the wire, held
in the middle of a message while the receiver starts.

One process speaks one protocol (`--proto http|redis|postgres|mysql|dns`) on several
connections. For each connection of the plan, in order: connect (and log in), run its `before`
requests, then, if it has a `big` request, start it and stop in its middle:
  {"hold": {"sent": N}}       N bytes of the request sent, the rest after go
  {"hold": {"received": N}}   the whole request sent, N bytes of the response body read (after
                              its head: the HTTP head, the RESP bulk header line, nothing for
                              the SQL protocols), the rest after go
Once every connection stands at its hold point the client signals ready and waits for go (see
e2e_common.hold); then, connection by connection, it finishes the big request and runs the
`after` requests.

Plan: {"conns": [{"label": "...", "transport": "tcp"|"udp" (dns only), "before": [req...],
                  "big": req + {"hold": ...} | null, "after": [req...]}]}
Payloads: a string (latin-1), or {"repeat": "<unit>", "bytes": N}: the unit repeated to N bytes.

Requests by protocol:
  http      {"method": "GET", "path": "/x", "body": payload?}
            -> status, body_len
  redis     {"cmd": ["SET", "k", payload]}
            -> reply ("+", "-", ":", "$", "*", "_" ...), error (prefix), size (bulk length or
               number of elements)
  postgres  {"query": "SELECT 1"} (simple Query) or {"extended": "SELECT $1::bytea",
            "params": [payload], "binary": true} (Parse/Bind/Execute/Sync, unnamed; binary
            parameters and results when "binary")
            -> sqlstate (first error), tags (CommandComplete tags), rows (DataRows)
  mysql     {"query": "SELECT 1"} (COM_QUERY), {"ping": true} (COM_PING),
            {"init_db": "e2e"} (COM_INIT_DB)
            -> error (the error number, 0 when none), rows
  dns       {"name": "web.e2e.test", "qtype": "A"} or {"batch": [{"name", "qtype"}, ...]}
            (every query of the batch in one write, then every answer); one record per query
            -> id, rcode, answers

Records (JSON lines): {"kind": "connected", "pid", "conns": [{"label", "local_port"}]}, then one
{"kind": "request", "conn", "local_port", "phase": "before"|"big"|"after", "index",
 "ok", start_unix_ns, end_unix_ns, duration_ns, ...response fields} per request (for a batch,
one per query with "batch_index"). A failed request has ok=false and "error_text".
"""

import argparse
import hashlib
import os
import random
import socket
import struct
import sys

from e2e_common import Timed, add_common_args, emit, hold, load_plan


def payload(spec):
    if spec is None:
        return None
    if isinstance(spec, str):
        return spec.encode("latin-1")
    unit = spec["repeat"].encode("latin-1")
    n = int(spec["bytes"])
    return (unit * (n // len(unit) + 1))[:n]


class Conn:
    """A socket with a read buffer (an offset into it, so parsing many small messages stays
    linear)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.off = 0

    def avail(self):
        return len(self.buf) - self.off

    def fill(self, n=65536):
        data = self.sock.recv(n)
        if not data:
            raise EOFError("connection closed by the server")
        if self.off > (1 << 20):
            del self.buf[: self.off]
            self.off = 0
        self.buf += data

    def need(self, n):
        while self.avail() < n:
            self.fill()

    def take(self, n):
        self.need(n)
        data = bytes(self.buf[self.off: self.off + n])
        self.off += n
        return data

    def skip(self, n):
        while n > 0:
            if self.avail() == 0:
                self.fill(min(n, 1 << 16))
            k = min(n, self.avail())
            self.off += k
            n -= k

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.off)
            if i >= 0:
                data = bytes(self.buf[self.off: i])
                self.off = i + 2
                return data
            self.fill()

    def prefetch(self, n):
        """Reads until n bytes are buffered (not consumed): the hold point in a response."""
        while self.avail() < n:
            self.fill(min(1 << 16, n - self.avail()))

    def send(self, data):
        self.sock.sendall(data)


# ------------------------------------------------------------------------------------------
# HTTP/1.1


class Http:
    def __init__(self, args):
        self.addr = (args.host, args.port)

    def connect(self, spec):
        s = socket.create_connection(self.addr, timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def encode(self, req):
        body = payload(req.get("body"))
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: e2e-attach\r\n" % (
            req["method"], req["path"])
        if body is not None:
            head += "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % len(body)
        return head.encode("latin-1") + b"\r\n" + (body or b"")

    def head(self, c):
        while True:
            status = int(c.line().split(b" ", 2)[1])
            headers = {}
            while True:
                line = c.line()
                if not line:
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            if 100 <= status < 200 and status != 101:
                continue
            return status, headers

    def response_head(self, c, req, state):
        """Reads the head (before a hold on the response body)."""
        state["head"] = self.head(c)

    def response(self, c, req, state):
        status, headers = state.pop("head", None) or self.head(c)
        n = 0
        if req["method"] == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(c.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while c.line():
                        pass
                    break
                c.skip(size)
                c.take(2)
                n += size
        else:
            n = int(headers.get("content-length", "0"))
            c.skip(n)
        return {"status": status, "body_len": n}


# ------------------------------------------------------------------------------------------
# Redis (RESP2)


class Redis:
    def __init__(self, args):
        self.addr = (args.host, args.port)

    def connect(self, spec):
        s = socket.create_connection(self.addr, timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def encode(self, req):
        args = [payload(a) for a in req["cmd"]]
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def response_head(self, c, req, state):
        # A bulk reply's header line (`$<n>`), so a hold lands inside its bytes.
        state["line"] = c.line()

    def value(self, c, line=None):
        """Reads one reply: (type, error prefix, size)."""
        if line is None:
            line = c.line()
        t = line[:1].decode("latin-1")
        rest = line[1:]
        if t == "-":
            return t, rest.split(b" ", 1)[0].decode("latin-1"), 0
        if t in "+:_#,(":
            return t, None, 0
        if t == "$":
            n = int(rest)
            if n >= 0:
                c.skip(n + 2)
            return t, None, n
        if t == "*":
            n = int(rest)
            error = None
            for _ in range(max(n, 0)):
                _, e, _ = self.value(c)
                error = error or e
            return t, error, n
        raise ValueError("unexpected RESP type %r" % line[:16])

    def response(self, c, req, state):
        t, error, size = self.value(c, state.pop("line", None))
        return {"reply": t, "error": error, "size": size}


# ------------------------------------------------------------------------------------------
# PostgreSQL (protocol 3.0, `password` authentication)


class Postgres:
    def __init__(self, args):
        self.addr = (args.host, args.port)
        self.user, self.password, self.database = args.user, args.password, args.database

    def msg(self, c):
        t = c.take(1)
        (n,) = struct.unpack("!i", c.take(4))
        return t, c.take(n - 4)

    def connect(self, spec):
        s = socket.create_connection(self.addr, timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = Conn(s)
        params = b"user\0%s\0database\0%s\0\0" % (self.user.encode(), self.database.encode())
        c.send(struct.pack("!ii", 8 + len(params), 196608) + params)
        while True:
            t, body = self.msg(c)
            if t == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code == 3:
                    pw = self.password.encode() + b"\0"
                    c.send(b"p" + struct.pack("!i", 4 + len(pw)) + pw)
                elif code != 0:
                    raise ValueError("unsupported authentication %d" % code)
            elif t == b"E":
                raise ValueError("login failed: %r" % body)
            elif t == b"Z":
                return c

    def encode(self, req):
        if "query" in req:
            q = req["query"].encode() + b"\0"
            return b"Q" + struct.pack("!i", 4 + len(q)) + q
        fmt = 1 if req.get("binary") else 0
        sql = req["extended"].encode() + b"\0"
        parse = b"\0" + sql + struct.pack("!h", 0)
        params = [payload(p) for p in req.get("params", [])]
        bind = b"\0\0" + struct.pack("!hh", 1, fmt) + struct.pack("!h", len(params))
        for p in params:
            bind += struct.pack("!i", len(p)) + p
        bind += struct.pack("!hh", 1, fmt)
        execute = b"\0" + struct.pack("!i", 0)

        def m(t, body):
            return t + struct.pack("!i", 4 + len(body)) + body

        return m(b"P", parse) + m(b"B", bind) + m(b"E", execute) + m(b"S", b"")

    def response_head(self, c, req, state):
        pass

    def response(self, c, req, state):
        sqlstate, tags, rows = None, [], 0
        while True:
            t, body = self.msg(c)
            if t == b"D":
                rows += 1
            elif t == b"C":
                tags.append(body.rstrip(b"\0").decode("latin-1"))
            elif t == b"E":
                for field in body.split(b"\0"):
                    if field[:1] == b"C" and sqlstate is None:
                        sqlstate = field[1:].decode("latin-1")
            elif t == b"Z":
                return {"sqlstate": sqlstate, "tags": tags, "rows": rows}


# ------------------------------------------------------------------------------------------
# MySQL / MariaDB (protocol 4.1, mysql_native_password, no DEPRECATE_EOF)

CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PLUGIN_AUTH = 0x80000
SERVER_MORE_RESULTS_EXISTS = 0x8


def native_password(password, scramble):
    h1 = hashlib.sha1(password).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(scramble + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


class Mysql:
    def __init__(self, args):
        self.addr = (args.host, args.port)
        self.user, self.password, self.database = args.user, args.password, args.database

    def packet(self, c):
        h = c.take(4)
        n = h[0] | (h[1] << 8) | (h[2] << 16)
        return h[3], c.take(n)

    def write(self, c, seq, body):
        c.send(struct.pack("<I", len(body))[:3] + bytes([seq & 0xFF]) + body)

    def connect(self, spec):
        s = socket.create_connection(self.addr, timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = Conn(s)
        seq, g = self.packet(c)
        if g[0] != 10:
            raise ValueError("not a HandshakeV10: %r" % g[:16])
        i = g.index(b"\0", 1) + 1 + 4
        scramble = g[i: i + 8]
        i += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
        scramble += g[i: i + 12]
        caps = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_CONNECT_WITH_DB
                | CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION
                | CLIENT_MULTI_RESULTS | CLIENT_PLUGIN_AUTH)
        auth = native_password(self.password.encode(), scramble)
        body = (struct.pack("<IIB23x", caps, 1 << 24, 33) + self.user.encode() + b"\0"
                + bytes([len(auth)]) + auth + self.database.encode() + b"\0"
                + b"mysql_native_password\0")
        self.write(c, seq + 1, body)
        while True:
            seq, p = self.packet(c)
            if p[0] == 0x00:
                return c
            if p[0] == 0xFE:
                # AuthSwitchRequest: plugin name, then its data.
                name, _, data = p[1:].partition(b"\0")
                if name != b"mysql_native_password":
                    raise ValueError("unsupported auth plugin %r" % name)
                self.write(c, seq + 1, native_password(self.password.encode(), data[:20]))
                continue
            raise ValueError("login failed: %r" % p[:64])

    def encode(self, req):
        if "query" in req:
            body = b"\x03" + req["query"].encode("latin-1")
        elif "ping" in req:
            body = b"\x0e"
        elif "init_db" in req:
            body = b"\x02" + req["init_db"].encode()
        else:
            raise ValueError("unknown mysql request %r" % req)
        return struct.pack("<I", len(body))[:3] + b"\0" + body

    def response_head(self, c, req, state):
        pass

    def lenenc(self, p, i):
        b = p[i]
        if b < 0xFB:
            return b, i + 1
        if b == 0xFC:
            return struct.unpack("<H", p[i + 1: i + 3])[0], i + 3
        if b == 0xFD:
            return int.from_bytes(p[i + 1: i + 4], "little"), i + 4
        return struct.unpack("<Q", p[i + 1: i + 9])[0], i + 9

    def response(self, c, req, state):
        rows = 0
        while True:
            _, p = self.packet(c)
            if p[0] == 0xFF:
                return {"error": struct.unpack("<H", p[1:3])[0], "rows": rows}
            if p[0] == 0x00:
                _, i = self.lenenc(p, 1)
                _, i = self.lenenc(p, i)
                status = struct.unpack("<H", p[i: i + 2])[0]
                if status & SERVER_MORE_RESULTS_EXISTS:
                    continue
                return {"error": 0, "rows": rows}
            ncols, _ = self.lenenc(p, 0)
            for _ in range(ncols):
                self.packet(c)
            self.packet(c)  # EOF after the column definitions
            while True:
                _, p = self.packet(c)
                if p[0] == 0xFF:
                    return {"error": struct.unpack("<H", p[1:3])[0], "rows": rows}
                if p[0] == 0xFE and len(p) < 9:
                    status = struct.unpack("<H", p[3:5])[0]
                    break
                rows += 1
            if not status & SERVER_MORE_RESULTS_EXISTS:
                return {"error": 0, "rows": rows}


# ------------------------------------------------------------------------------------------
# DNS (TCP with the 2-byte length prefix, or UDP)

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28}


class Dns:
    def __init__(self, args):
        self.addr = (args.host, args.port)
        self.rng = random.Random(os.getpid())

    def connect(self, spec):
        if spec.get("transport") == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(10)
            return Conn(s)
        s = socket.create_connection(self.addr, timeout=120)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def query(self, q):
        qid = self.rng.randrange(1, 65536)
        name = b"".join(bytes([len(l)]) + l.encode() for l in q["name"].split(".")) + b"\0"
        msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name
        return qid, msg + struct.pack("!HH", QTYPES[q["qtype"]], 1)

    def answer(self, c, udp):
        if udp:
            msg = c.sock.recvfrom(65535)[0]
        else:
            (n,) = struct.unpack("!H", c.take(2))
            msg = c.take(n)
        qid, flags, _, an = struct.unpack("!HHHH", msg[:8])
        return {"id": qid, "rcode": flags & 0xF, "answers": an}


# ------------------------------------------------------------------------------------------

PROTOCOLS = {"http": Http, "redis": Redis, "postgres": Postgres, "mysql": Mysql, "dns": Dns}


class Session:
    def __init__(self, proto, spec):
        self.proto = proto
        self.spec = spec
        self.label = spec["label"]
        self.udp = spec.get("transport") == "udp"
        self.conn = proto.connect(spec)
        self.local_port = None
        self.big = None

    def port(self):
        if not self.local_port:
            try:
                self.local_port = self.conn.sock.getsockname()[1]
            except OSError:
                pass
        return self.local_port

    def record(self, phase, index, t, fields, req):
        rec = {"kind": "request", "conn": self.label, "local_port": self.port(), "phase": phase,
               "index": index, "ok": True}
        rec.update(fields)
        rec.update(t.fields())
        emit(rec)

    def fail(self, phase, index, t, e):
        emit(dict({"kind": "request", "conn": self.label, "local_port": self.port(),
                   "phase": phase, "index": index, "ok": False,
                   "error_text": "%s: %s" % (type(e).__name__, e)}, **t.fields()))

    def run(self, phase, index, req):
        t = Timed().__enter__()
        try:
            if isinstance(self.proto, Dns):
                self.run_dns(phase, index, req, t)
                return
            self.conn.send(self.proto.encode(req))
            state = {}
            fields = self.proto.response(self.conn, req, state)
            t.__exit__(None, None, None)
            self.record(phase, index, t, fields, req)
        except (OSError, EOFError, ValueError, IndexError, struct.error) as e:
            t.__exit__(None, None, None)
            self.fail(phase, index, t, e)
            raise

    def run_dns(self, phase, index, req, t, started=None):
        queries = req["batch"] if "batch" in req else [req]
        if started is None:
            msgs = [self.proto.query(q) for q in queries]
            if self.udp:
                for _, m in msgs:
                    self.conn.sock.sendto(m, self.proto.addr)
            else:
                self.conn.send(b"".join(struct.pack("!H", len(m)) + m for _, m in msgs))
        else:
            msgs = started
        by_id = {qid: i for i, (qid, _) in enumerate(msgs)}
        for _ in msgs:
            a = self.proto.answer(self.conn, self.udp)
            t.__exit__(None, None, None)
            i = by_id.get(a["id"], -1)
            fields = dict(a, batch_index=i, name=queries[i]["name"] if i >= 0 else None,
                          qtype=queries[i]["qtype"] if i >= 0 else None)
            self.record(phase, index, t, fields, req)

    def start_big(self, req):
        """Starts the big request and stops at its hold point."""
        t = Timed().__enter__()
        h = req["hold"]
        state = {}
        if isinstance(self.proto, Dns):
            queries = req["batch"]
            msgs = [self.proto.query(q) for q in queries]
            self.conn.send(b"".join(struct.pack("!H", len(m)) + m for _, m in msgs))
            self.conn.prefetch(int(h["received"]))
            self.big = (req, t, state, b"", msgs)
            return
        data = self.proto.encode(req)
        marker = h["align"].encode("latin-1") if h.get("align") else None
        if "sent" in h:
            n = int(h["sent"])
            if marker:
                q = data.find(marker, n)
                n = q if q >= 0 else n
            self.conn.send(data[:n])
            rest = data[n:]
        else:
            self.conn.send(data)
            rest = b""
            self.proto.response_head(self.conn, req, state)
            n = int(h["received"])
            self.conn.prefetch(n)
            if marker:
                # The payload repeats a unit: stop right before one of its markers, so the
                # next read starts with it.
                c = self.conn
                p1 = c.buf.find(marker, c.off)
                p2 = c.buf.find(marker, p1 + 1) if p1 >= 0 else -1
                if p1 < 0 or p2 < 0:
                    raise ValueError("marker %r not found twice in the first %d bytes" % (marker, n))
                period = p2 - p1
                end = c.off + n
                target = p1 + -(-(end - p1) // period) * period
                c.prefetch(target - c.off)
        self.big = (req, t, state, rest, None)

    def finish_big(self):
        req, t, state, rest, msgs = self.big
        try:
            if msgs is not None:
                self.run_dns("big", 0, req, t, started=msgs)
                return
            if rest:
                self.conn.send(rest)
            fields = self.proto.response(self.conn, req, state)
            t.__exit__(None, None, None)
            self.record("big", 0, t, fields, req)
        except (OSError, EOFError, ValueError, IndexError, struct.error) as e:
            t.__exit__(None, None, None)
            self.fail("big", 0, t, e)
            raise


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proto", required=True, choices=sorted(PROTOCOLS))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--database", default="")
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)
    proto = PROTOCOLS[args.proto](args)

    sessions = []
    for spec in plan["conns"]:
        s = Session(proto, spec)
        for i, req in enumerate(spec.get("before", [])):
            s.run("before", i, req)
        if spec.get("big"):
            s.start_big(spec["big"])
        sessions.append(s)
    emit({"kind": "connected", "pid": os.getpid(),
          "conns": [{"label": s.label, "local_port": s.port()} for s in sessions]})
    if not hold(args):
        return 3
    for s in sessions:
        if s.big:
            s.finish_big()
        for i, req in enumerate(s.spec.get("after", [])):
            s.run("after", i, req)
    for s in sessions:
        s.conn.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
