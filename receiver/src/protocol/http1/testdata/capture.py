#!/usr/bin/env python3
"""Records real HTTP/1.x sessions as golden captures (`*.bin`).

A tiny TCP proxy sits between a client and nginx and writes every recv() it forwards as one
record: direction (b'C' client->server, b'S' server->client), a monotonic timestamp in ns
(u64 LE), the length (u32 LE) and the bytes. Each recv() is one record, so the chunking is the
one a socket reader really sees. nginx (1.22, sendfile on) serves static files and proxies
/api/ to the harness's Python upstream (integration/servers/http_upstream.py), as in the e2e
tests. Secrets on the wire are canaries (CANARY-*) that the golden test checks never appear.

Usage (needs nginx and the `requests` package, e.g. target/venv/bin/python):
    python3 capture.py
Then regenerate the goldens: UPDATE_GOLDEN=1 cargo test -p ebpf-receiver --lib http1::tests::golden
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "../../../../.."))
UPSTREAM = os.path.join(REPO, "integration/servers/http_upstream.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Proxy:
    """Forwards ONE client connection to 127.0.0.1:upstream_port, recording both directions."""

    def __init__(self, upstream_port, out_path):
        self.upstream_port = upstream_port
        self.out = open(out_path, "wb")
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def record(self, tag, data):
        with self.lock:
            self.out.write(tag + struct.pack("<QI", time.monotonic_ns(), len(data)) + data)

    def pump(self, src, dst, tag):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.record(tag, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def serve(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        a = threading.Thread(target=self.pump, args=(client, server, b"C"))
        b = threading.Thread(target=self.pump, args=(server, client, b"S"))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()

    def close(self):
        self.thread.join(timeout=20)
        self.out.close()


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    types {{ text/plain txt; }}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    sendfile on;
    keepalive_requests 10000;
    upstream api {{ server 127.0.0.1:{up}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location /static/ {{ }}
        location /api/ {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def start_servers(d):
    up = free_port()
    upstream = subprocess.Popen([sys.executable, UPSTREAM, "--port", str(up)],
                                stdout=subprocess.DEVNULL)
    wait_port(up)
    os.makedirs(os.path.join(d, "www/static"))
    with open(os.path.join(d, "www/static/small.txt"), "w") as f:
        f.write("golden static text\n" * 50)
    # Dated in the past so If-Modified-Since below yields 304.
    os.utime(os.path.join(d, "www/static/small.txt"), (1_600_000_000, 1_600_000_000))
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=d, up=up, port=port))
    nginx = subprocess.Popen(["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")])
    wait_port(port)
    return port, [nginx, upstream]


def curl_session(port):
    """curl, one kept-alive connection, options per transfer with --next."""
    p = Proxy(port, os.path.join(HERE, "curl_keepalive.bin"))
    base = f"http://127.0.0.1:{p.port}"
    args = ["curl", "-sS", "--http1.1", "-o", "/dev/null",
            f"{base}/static/small.txt?page=2&token=CANARY-TOKEN",
            "--next", "-sS", "-o", "/dev/null", "-I", f"{base}/static/small.txt",
            "--next", "-sS", "-o", "/dev/null",
            "-H", "If-Modified-Since: Sun, 13 Sep 2020 12:26:40 GMT", f"{base}/static/small.txt",
            "--next", "-sS", "-o", "/dev/null", f"{base}/static/missing.txt",
            "--next", "-sS", "-o", "/dev/null", "-H", "Authorization: Bearer CANARY-BEARER",
            "-H", "Cookie: session=CANARY-COOKIE", f"{base}/api/status/500",
            "--next", "-sS", "-o", "/dev/null", f"{base}/api/status/204",
            "--next", "-sS", "-o", "/dev/null", f"{base}/api/chunked?chunks=3&size=50",
            "--next", "-sS", "-o", "/dev/null", "-H", "Expect: 100-continue",
            "--data-binary", "CANARY-BODY " * 20, f"{base}/api/echo?password=CANARY-PW"]
    subprocess.run(args, check=True)
    p.close()


def requests_session(port):
    """Python requests, one Session (keep-alive)."""
    import requests

    p = Proxy(port, os.path.join(HERE, "requests_session.bin"))
    base = f"http://127.0.0.1:{p.port}"
    with requests.Session() as s:
        s.headers["Authorization"] = "Basic CANARY-BEARER"
        s.cookies.set("sid", "CANARY-COOKIE")
        s.get(f"{base}/api/status/200?q=search&api_key=CANARY-TOKEN")
        s.post(f"{base}/api/echo", json={"password": "CANARY-PW"})
        s.put(f"{base}/api/echo", data=iter([b"CANARY-BODY", b"-2"]))  # chunked upload
        s.delete(f"{base}/api/status/404")
        s.get(f"{base}/api/bytes?n=30000")
        s.patch(f"{base}/api/status/201", data="x")
    p.close()


def raw_session(port):
    """Raw socket: pipelining, an unknown method, then HTTP/1.0 answered until the close."""
    p = Proxy(port, os.path.join(HERE, "raw_pipelined.bin"))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read_for(seconds):
        s.settimeout(seconds)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        return data

    host = b"Host: 127.0.0.1\r\n"
    s.sendall(b"GET /static/small.txt HTTP/1.1\r\n" + host + b"\r\n"
              + b"HEAD /api/bytes?n=10 HTTP/1.1\r\n" + host + b"\r\n"
              + b"GET /api/status/404 HTTP/1.1\r\n" + host + b"\r\n")
    read_for(0.5)
    s.sendall(b"PURGE /static/small.txt HTTP/1.1\r\n" + host + b"\r\n")
    read_for(0.3)
    s.sendall(b"GET /api/chunked?chunks=4&size=30 HTTP/1.0\r\n" + host + b"\r\n")
    read_for(2.0)
    s.close()
    p.close()


def main():
    with tempfile.TemporaryDirectory() as d:
        port, procs = start_servers(d)
        try:
            curl_session(port)
            requests_session(port)
            raw_session(port)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
