#!/usr/bin/env python3
"""Records real Redis client sessions as golden captures (`*.bin`).

A small TCP proxy sits between a client and a throwaway redis-server and writes every recv()
it forwards as one record: direction (b'C' client->server, b'S' server->client), a monotonic
timestamp in ns (u64 LE), the length (u32 LE), the bytes. One file per proxied connection;
each recv() is one record, so the chunking is what a socket reader really saw.

Usage (a throwaway server with the canary password; redis-py from the e2e venv):
    redis-server --port 16399 --bind 127.0.0.1 --save '' --appendonly no \
        --requirepass hunter2-redis-canary --daemonize yes
    target/venv/bin/python capture.py 16399
Then regenerate the goldens: UPDATE_GOLDEN=1 cargo test -p ebpf-receiver --lib redis::tests::golden
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PASSWORD = "hunter2-redis-canary"


class Proxy:
    """Proxies connections; connection i is written to `names[i]`.bin (beyond the list, or
    `None`: forwarded, not recorded)."""

    def __init__(self, upstream_port, names):
        self.upstream_port = upstream_port
        self.names = list(names)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.threads = []
        self.accepter = threading.Thread(target=self.accept_all, daemon=True)
        self.accepter.start()

    def accept_all(self):
        i = 0
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            name = self.names[i] if i < len(self.names) else None
            i += 1
            t = threading.Thread(target=self.serve, args=(client, name), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, client, name):
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        out = open(os.path.join(HERE, name + ".bin"), "wb") if name else None
        lock = threading.Lock()

        def pump(src, dst, tag):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if out:
                        with lock:
                            out.write(tag + struct.pack("<QI", time.monotonic_ns(), len(data)) + data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        a = threading.Thread(target=pump, args=(client, server, b"C"))
        b = threading.Thread(target=pump, args=(server, client, b"S"))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()
        if out:
            out.close()

    def close(self):
        time.sleep(0.2)
        for t in list(self.threads):
            t.join(timeout=10)
        self.listener.close()


def pipelined(r, *cmds):
    """Writes every command at once on the client's own connection, then reads the replies
    (what redis-py's pipelines do, without a second connection)."""
    conn = r.connection
    conn.send_packed_command(conn.pack_commands(cmds))
    for _ in cmds:
        try:
            conn.read_response()
        except Exception:
            pass


def admin(port):
    import redis

    return redis.Redis(port=port, password=PASSWORD, protocol=2)


def redis_py_resp2(port):
    """redis-py, RESP2: AUTH, strings, hashes, errors, SELECT, a transaction, a pipeline, a
    64 KiB value (longer than one capture) and a 40 KiB array reply."""
    import redis

    p = Proxy(port, ["redis_py_resp2"])
    r = redis.Redis(port=p.port, password=PASSWORD, protocol=2, single_connection_client=True,
                    driver_info=None)
    r.set("user:1", "ann-secret-value")
    r.get("user:1")
    r.hset("h:1", mapping={"name": "bob", "city": "oslo"})
    r.hgetall("h:1")
    for cmd in (["LPUSH", "user:1", "x"], ["FOO", "secret-arg"]):
        try:
            r.execute_command(*cmd)
        except redis.ResponseError:
            pass
    r.execute_command("SELECT", 2)
    r.set("k2", "v2")
    r.get("k2")
    pipelined(r, ["MULTI"], ["SET", "t", 1], ["INCR", "t"], ["EXEC"])
    pipelined(r, ["SET", "p1", "a"], ["GET", "p1"], ["DEL", "p1"])
    r.set("big", b"B" * 65536)
    r.get("big")
    r.delete("list")
    r.rpush("list", *[b"e" * 40] * 1000)
    r.lrange("list", 0, -1)
    r.execute_command("SELECT", 0)
    r.ping()
    r.close()
    p.close()


def redis_py_resp3(port):
    """redis-py, RESP3 (`HELLO 3 AUTH default <password>`): maps, a subscription on the same
    connection with a message published meanwhile, commands while subscribed."""
    import redis

    p = Proxy(port, ["redis_py_resp3"])
    r = redis.Redis(port=p.port, password=PASSWORD, protocol=3, single_connection_client=True,
                    driver_info=None)
    r.set("a", "1")
    r.hset("h3", mapping={"f": "v"})
    r.hgetall("h3")
    try:
        r.execute_command("INCR", "h3")
    except redis.ResponseError:
        pass
    conn = r.connection
    conn.send_command("SUBSCRIBE", "news", "alerts")
    conn.read_response(push_request=True)
    conn.read_response(push_request=True)
    admin(port).publish("news", "hello-subscriber")
    time.sleep(0.1)
    conn.send_command("GET", "a")
    # The pushed message arrives before the reply.
    for _ in range(2):
        conn.read_response(push_request=True)
    conn.send_command("UNSUBSCRIBE")
    conn.read_response(push_request=True)
    conn.read_response(push_request=True)
    r.ping()
    r.close()
    p.close()


def pubsub_resp2(port):
    """A RESP2 subscriber: SUBSCRIBE, PSUBSCRIBE, published messages, PING in subscribe mode,
    UNSUBSCRIBE/PUNSUBSCRIBE without arguments, then an ordinary command."""
    import redis

    p = Proxy(port, ["pubsub_resp2"])
    r = redis.Redis(port=p.port, password=PASSWORD, protocol=2, single_connection_client=True,
                    driver_info=None)
    r.ping()
    conn = r.connection
    conn.send_command("SUBSCRIBE", "c1", "c2")
    conn.read_response()
    conn.read_response()
    conn.send_command("PSUBSCRIBE", "p*")
    conn.read_response()
    pub = admin(port)
    pub.publish("c1", "m1")
    pub.publish("p1", "m2")
    pub.publish("c2", "m3")
    time.sleep(0.1)
    for _ in range(3):  # c1 message, p1 pmessage, c2 message
        conn.read_response()
    conn.send_command("PING")
    conn.read_response()
    conn.send_command("UNSUBSCRIBE")
    conn.read_response()
    conn.read_response()
    conn.send_command("PUNSUBSCRIBE")
    conn.read_response()
    r.set("after", "pubsub")
    r.close()
    p.close()


def cli_repl(port):
    """redis-cli reading commands from stdin: `AUTH`, then `COMMAND DOCS` (a reply of about
    170 KiB, far beyond one capture), then commands one at a time."""
    p = Proxy(port, ["cli_repl"])
    script = "PING\nSELECT 3\nSET k v\nGET k\nGET missing\nLPUSH k x\nDEBUG SLEEP 0\nCLIENT SETNAME cli\n"
    subprocess.run(["redis-cli", "-p", str(p.port), "-a", PASSWORD, "--no-auth-warning"],
                   input=script.encode(), check=False, stdout=subprocess.DEVNULL)
    p.close()


def benchmark(port):
    """redis-benchmark -P 16: its CONFIG GET connection, then one client for SET and one for
    GET, each writing 16 commands at a time (AUTH in the first write)."""
    p = Proxy(port, ["benchmark_config", "benchmark_set_p16", "benchmark_get_p16"])
    subprocess.run(["redis-benchmark", "-p", str(p.port), "-a", PASSWORD, "-t", "set,get",
                    "-n", "48", "-c", "1", "-P", "16", "--csv"], check=True,
                   stdout=subprocess.DEVNULL)
    p.close()


def inline(port):
    """A telnet-style client: inline commands, quoting, an empty line, inline AUTH, and a
    pipelined burst of inline PINGs (redis-benchmark's PING_INLINE)."""
    p = Proxy(port, ["inline"])
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(0.3)

    def drain():
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return data
            if not chunk:
                return data
            data += chunk

    for line in [
        b"AUTH " + PASSWORD.encode() + b"\r\n",
        b"PING\r\n",
        b"set greeting \"hello world\"\r\n",
        b"GET greeting\r\n",
        b"\r\n",
        b"select 1\r\n",
        b"INCR 'not a number'\n",
        b"PING\r\nPING\r\nPING\r\nPING\r\n",
        b"NOSUCHCMD a b\r\n",
    ]:
        s.sendall(line)
        drain()
    s.close()
    p.close()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 16399
    admin(port).flushall()
    redis_py_resp2(port)
    redis_py_resp3(port)
    pubsub_resp2(port)
    cli_repl(port)
    benchmark(port)
    inline(port)
