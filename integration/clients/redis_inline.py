#!/usr/bin/env python3
"""A telnet-style Redis client: inline commands (`SET k v\\r\\n`) over a raw socket, one
connection. With --password the first line is an inline `AUTH <password>` (its record has
kind `auth`).

Plan steps (see e2e_common.py for the common arguments and the `connected` line):
  {"inline": "SET greeting hello"}            one line, one reply
  {"raw": "PING\\r\\nPING\\r\\n", "replies": 2}  bytes written at once, then that many replies
One `command` line per step: the reply's first byte as `type` (`+ - : $ * …`), the error
prefix as `error` for `-` replies, and the step's times.
"""

import argparse
import os
import socket
import sys

from e2e_common import Timed, add_common_args, emit, hold, load_plan, sock_local_port


class Reader:
    """Reads whole RESP2/RESP3 values off a socket (enough to know where a reply ends)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def value(self):
        line = self.line()
        t, rest = line[:1], line[1:]
        if t in (b"$", b"=", b"!"):
            n = int(rest)
            if n >= 0:
                self.exact(n)
        elif t in (b"*", b"~", b">"):
            for _ in range(max(int(rest), 0)):
                self.value()
        elif t in (b"%", b"|"):
            for _ in range(2 * int(rest)):
                self.value()
        return line


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--password")
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)

    s = socket.create_connection((args.host, args.port))
    reader = Reader(s)
    emit({"kind": "connected", "pid": os.getpid(), "local_port": sock_local_port(s)})
    if not hold(args):
        return 3
    if args.password:
        with Timed() as t:
            s.sendall(b"AUTH " + args.password.encode() + b"\r\n")
            first = reader.value()
        out = {"kind": "auth", "ok": first.startswith(b"+")}
        out.update(t.fields())
        emit(out)
    for i, step in enumerate(plan["steps"]):
        if "inline" in step:
            data, replies = step["inline"].encode() + b"\r\n", 1
        else:
            data, replies = step["raw"].encode(), int(step.get("replies", 1))
        with Timed() as t:
            s.sendall(data)
            lines = [reader.value() for _ in range(replies)]
        first = lines[0] if lines else b""
        out = {"kind": "command", "step": i, "type": first[:1].decode(errors="replace"),
               "ok": not first.startswith(b"-")}
        if first.startswith(b"-"):
            out["error"] = first[1:].split(b" ", 1)[0].decode(errors="replace")
        out.update(t.fields())
        emit(out)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
