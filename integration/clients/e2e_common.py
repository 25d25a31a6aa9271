"""Shared by the plan-driven e2e clients (imported from the script's own directory).

Every client prints one JSON object per line on stdout:
  {"kind": "connected", "pid": ..., ...}      once connected (when the protocol has connections)
  {"kind": <request kind>, "step": i, "ok": bool, "start_unix_ns": ..., "end_unix_ns": ...,
   "duration_ns": ..., ...}                    one per request
start/end are wall-clock ns (the clock spans use); duration_ns is measured with
time.perf_counter_ns around the same interval (monotonic, for duration comparisons).

--ready-file/--go-file: after connecting, create the ready file and wait for the go file before
the first step (the test opens connections before the receiver starts).
"""

import json
import os
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def add_common_args(ap):
    ap.add_argument("--plan", required=True, help="JSON plan file, or - for stdin")
    ap.add_argument("--ready-file")
    ap.add_argument("--go-file")
    ap.add_argument("--go-timeout", type=float, default=120.0)


def load_plan(args):
    if args.plan == "-":
        return json.load(sys.stdin)
    with open(args.plan) as f:
        return json.load(f)


def hold(args):
    """Signals readiness and waits for the go file (no-op without --ready-file)."""
    if not args.ready_file:
        return True
    with open(args.ready_file, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + args.go_timeout
    while not (args.go_file and os.path.exists(args.go_file)):
        if time.monotonic() > deadline:
            emit({"kind": "error", "message": "go file never appeared"})
            return False
        time.sleep(0.01)
    return True


class Timed:
    """with Timed() as t: ...  then t.fields() -> start/end/duration."""

    def __enter__(self):
        self.start_unix_ns = time.time_ns()
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        self.duration_ns = time.perf_counter_ns() - self._t0
        self.end_unix_ns = time.time_ns()
        return False

    def fields(self):
        return {"start_unix_ns": self.start_unix_ns, "end_unix_ns": self.end_unix_ns,
                "duration_ns": self.duration_ns}


def sock_local_port(sock_or_fd):
    """The local port of a connected socket object or fd (None for Unix sockets/unknown)."""
    import socket
    try:
        if isinstance(sock_or_fd, int):
            s = socket.socket(fileno=os.dup(sock_or_fd))
            try:
                name = s.getsockname()
            finally:
                s.close()
        else:
            name = sock_or_fd.getsockname()
        return name[1] if isinstance(name, tuple) else None
    except OSError:
        return None
