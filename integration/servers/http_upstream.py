#!/usr/bin/env python3
"""The HTTP/1.1 upstream behind the harness's nginx (`/api/` is proxied here); standard library
only. Keep-alive (HTTP/1.1, every response has Content-Length or chunked framing), one thread
per connection.

Endpoints (any method; HEAD returns the head a GET would, without the body):
  /api/status/<code>                     that status; 204 and 304 carry no body
  /api/chunked?chunks=N&size=M&delay_ms=D  Transfer-Encoding: chunked, N chunks of M bytes
  /api/bytes?n=N                         N bytes with Content-Length
  /api/slow?ms=N                         waits N ms, then 200
  /api/echo                              echoes the request body (POST/PUT; Expect: 100-continue
                                         is answered by http.server before the body is read)
  /api/headers                           the request headers as JSON
Anything else: 404.

Prints one JSON line per request to stdout: method, path, status, bytes (body bytes sent),
client_port, start_unix_ns (request line read), last_write_unix_ns (just before the write
that sends the response's last bytes), end_unix_ns (after it returned).
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOG_LOCK = threading.Lock()


def log_json(obj):
    with LOG_LOCK:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def pattern(n):
    line = b"ebpf-receiver e2e upstream body 0123456789\n"
    return (line * (n // len(line) + 1))[:n]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-upstream/1"
    # Head and body leave in one write (flushed at the end of each response), with TCP_NODELAY:
    # no Nagle/delayed-ACK stall between them.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def handle_expect_100(self):
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def log_message(self, fmt, *args):  # quiet; stdout carries the JSON log
        pass

    def _query(self):
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return parts.path, q

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", ctype="application/json", extra=None):
        head_only = self.command == "HEAD"
        self.send_response(status)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if status not in (204, 304) and status >= 200:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only and status not in (204, 304):
            self.wfile.write(body)
        return 0 if head_only or status in (204, 304) else len(body)

    def _chunked(self, chunks, size, delay_ms):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return 0
        sent = 0
        for i in range(chunks):
            data = pattern(size)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            if delay_ms:
                self.wfile.flush()
            sent += len(data)
            if delay_ms and i + 1 < chunks:
                time.sleep(delay_ms / 1000.0)
        self.wfile.write(b"0\r\n\r\n")
        return sent

    def handle_one(self):
        start = time.time_ns()
        path, q = self._query()
        body_in = b""
        if self.command in ("POST", "PUT", "PATCH") or self.headers.get("Content-Length"):
            body_in = self._read_body()
        status = 200
        if path.startswith("/api/status/"):
            try:
                status = int(path.rsplit("/", 1)[1])
            except ValueError:
                status = 400
            sent = self._send(status, json.dumps({"status": status}).encode() + b"\n")
        elif path == "/api/chunked":
            sent = self._chunked(int(q.get("chunks", 4)), int(q.get("size", 1000)),
                                 int(q.get("delay_ms", 0)))
        elif path == "/api/bytes":
            sent = self._send(200, pattern(int(q.get("n", 1000))), "application/octet-stream")
        elif path == "/api/slow":
            time.sleep(int(q.get("ms", 200)) / 1000.0)
            sent = self._send(200, b'{"slow": true}\n')
        elif path == "/api/echo":
            sent = self._send(200, body_in, self.headers.get("Content-Type", "application/octet-stream"))
        elif path == "/api/headers":
            sent = self._send(200, json.dumps(dict(self.headers.items())).encode() + b"\n")
        else:
            status = 404
            sent = self._send(404, b'{"error": "not found"}\n')
        last_write = time.time_ns()
        self.wfile.flush()
        log_json({"method": self.command, "path": self.path, "status": status, "bytes": sent,
                  "body_in": len(body_in), "client_port": self.client_address[1],
                  "start_unix_ns": start, "last_write_unix_ns": last_write,
                  "end_unix_ns": time.time_ns()})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_one


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer((args.host, args.port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
