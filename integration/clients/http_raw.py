#!/usr/bin/env python3
"""A raw-socket HTTP/1.1 client for the e2e tests: exact bytes on the wire, one TCP connection.

Plan: {"steps": [step, ...]}, steps run in order on the same connection:
  {"send": "<request text>", "responses": N}
        every byte of "send" in ONE sendall (N > 1: pipelined requests), then read N responses
  {"send_parts": ["part", ...], "delay_ms": D, "responses": N}
        the request split over several writes D ms apart (a request spread over segments)
  {"expect_continue": {"head": "<request head ending in \\r\\n\\r\\n>", "body": "..."},
   "wait_ms": 1000}
        sends the head (with `Expect: 100-continue`), waits up to wait_ms for an interim
        `100 Continue`, sends the body, reads the final response
  {"sleep_ms": N}
  {"shutdown_write": true}       half-close (FIN) after the previous step
Strings may use \\r\\n escapes as JSON does; "send_b64" instead of "send" takes base64 bytes.

The request methods are read from the request lines sent, so responses to HEAD are read
without a body. Each final response prints a JSON line: step, index (within the step), status,
reason, headers (lower-case names), body_len, chunked, interim (statuses of 1xx responses
before it), start_unix_ns (the step's first byte sent), end_unix_ns (this response complete),
duration_ns. The `connected` line carries `pid` and `local_port`.
"""

import argparse
import base64
import os
import re
import socket
import sys
import time

from e2e_common import Timed, add_common_args, emit, hold, load_plan

REQ_LINE = re.compile(rb"(?:^|\r\n\r\n)([A-Z]+) \S+ HTTP/1\.[01]\r\n")


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def read_line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_close(self):
        try:
            while True:
                self.fill()
        except EOFError:
            pass
        data, self.buf = self.buf, b""
        return data

    def read_head(self):
        status_line = self.read_line().decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = {}
        while True:
            line = self.read_line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, reason, headers

    def read_response(self, method):
        """Reads interim 1xx responses and one final response."""
        interim = []
        while True:
            status, reason, headers = self.read_head()
            if 100 <= status < 200 and status != 101:
                interim.append(status)
                continue
            break
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        body_len = 0
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif chunked:
            while True:
                size = int(self.read_line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_line():
                        pass
                    break
                body_len += len(self.read_exact(size))
                self.read_line()
        elif "content-length" in headers:
            body_len = len(self.read_exact(int(headers["content-length"])))
        else:
            body_len = len(self.read_to_close())
        return {"status": status, "reason": reason, "headers": headers, "body_len": body_len,
                "chunked": chunked, "interim": interim}


def methods_in(data):
    return [m.decode() for m in REQ_LINE.findall(data)]


def to_bytes(step, key_text, key_b64):
    if key_b64 in step:
        return base64.b64decode(step[key_b64])
    return step[key_text].encode("latin-1")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)

    sock = socket.create_connection((args.host, args.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(sock)
    emit({"kind": "connected", "pid": os.getpid(), "local_port": sock.getsockname()[1]})
    if not hold(args):
        return 3

    for i, step in enumerate(plan["steps"]):
        if "sleep_ms" in step:
            time.sleep(step["sleep_ms"] / 1000.0)
            continue
        if step.get("shutdown_write"):
            sock.shutdown(socket.SHUT_WR)
            continue
        t = Timed().__enter__()
        try:
            if "expect_continue" in step:
                ec = step["expect_continue"]
                head = ec["head"].encode("latin-1")
                body = ec.get("body", "").encode("latin-1")
                sock.sendall(head)
                interim = []
                sock.settimeout(step.get("wait_ms", 1000) / 1000.0)
                try:
                    status, _, _ = conn.read_head()
                    interim.append(status)
                except socket.timeout:
                    pass
                sock.settimeout(60)
                if interim and interim[0] >= 200:
                    # The server answered finally without waiting for the body.
                    t.__exit__(None, None, None)
                    emit(dict({"kind": "response", "step": i, "index": 0, "status": interim[0],
                               "early_final": True}, **t.fields()))
                    continue
                sock.sendall(body)
                r = conn.read_response(methods_in(head)[0] if methods_in(head) else "POST")
                r["interim"] = interim + r["interim"]
                t.__exit__(None, None, None)
                emit(dict({"kind": "response", "step": i, "index": 0}, **r, **t.fields()))
                continue
            if "send_parts" in step:
                parts = [p.encode("latin-1") for p in step["send_parts"]]
                for j, p in enumerate(parts):
                    sock.sendall(p)
                    if j + 1 < len(parts):
                        time.sleep(step.get("delay_ms", 50) / 1000.0)
                sent = b"".join(parts)
            else:
                sent = to_bytes(step, "send", "send_b64")
                sock.sendall(sent)
            methods = methods_in(sent)
            n = step.get("responses", len(methods) or 1)
            for j in range(n):
                r = conn.read_response(methods[j] if j < len(methods) else "GET")
                t.__exit__(None, None, None)
                emit(dict({"kind": "response", "step": i, "index": j, "method": methods[j] if j < len(methods) else None},
                          **r, **t.fields()))
        except (OSError, EOFError, ValueError, IndexError) as e:
            t.__exit__(None, None, None)
            emit(dict({"kind": "response", "step": i, "ok": False, "error": f"{type(e).__name__}: {e}"},
                      **t.fields()))
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
