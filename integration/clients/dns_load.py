#!/usr/bin/env python3
"""DNS load for the e2e tests: `count` distinct A questions (`q<i>.<domain>`, i = 0..count-1)
over one unconnected UDP socket (sendto/recvfrom, so every datagram names its peer), at most
`window` in flight, as fast as the server answers. No retransmission: a question without an
answer within `timeout_s` is an error.

Plan: {"server": "127.77.0.1", "port": 53, "domain": "load.e2e.test", "count": 20000,
       "window": 8, "timeout_s": 5}
Prints the `connected` line (pid, the socket's local port), then one `load` summary: count,
answered (NOERROR with at least one answer), errors (another RCODE, a malformed or unexpected
answer, or a timeout), start/end/duration.
"""

import argparse
import os
import select
import socket
import struct
import sys

from e2e_common import Timed, add_common_args, emit, hold, load_plan


def query(qid, name):
    # RFC 1035 §4.1: header (RD set, one question), QNAME, QTYPE A, QCLASS IN.
    m = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        m += bytes([len(label)]) + label.encode()
    return m + b"\0" + struct.pack(">HH", 1, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)
    server = (plan["server"], int(plan.get("port", 53)))
    count = int(plan["count"])
    window = max(1, min(int(plan.get("window", 8)), 4096))
    timeout = float(plan.get("timeout_s", 5))
    domain = plan["domain"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    emit({"kind": "connected", "pid": os.getpid(), "local_port": sock.getsockname()[1]})
    if not hold(args):
        return 3
    pending = {}  # id -> question index
    sent = answered = errors = 0
    with Timed() as t:
        while answered + errors < count:
            while sent < count and len(pending) < window:
                qid = sent & 0xFFFF
                sock.sendto(query(qid, f"q{sent}.{domain}"), server)
                pending[qid] = sent
                sent += 1
            ready, _, _ = select.select([sock], [], [], timeout)
            if not ready:
                errors += len(pending)
                pending.clear()
                continue
            while True:
                try:
                    data, _ = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                if len(data) < 12:
                    continue
                qid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
                if pending.pop(qid, None) is None:
                    continue
                if flags & 0x8000 and flags & 0x000F == 0 and ancount >= 1:
                    answered += 1
                else:
                    errors += 1
    out = {"kind": "load", "ok": errors == 0, "count": count, "answered": answered, "errors": errors}
    out.update(t.fields())
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
