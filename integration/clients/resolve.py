#!/usr/bin/env python3
"""Name resolution through glibc (`socket.getaddrinfo`) for the e2e tests; run it inside the
mount namespace the harness prepares (`Dnsmasq::in_resolver_ns`) so /etc/resolv.conf names the
test dnsmasq.

Plan: {"names": ["web.e2e.test", ...], "family": "any" | "inet" | "inet6", "repeat": 1,
       "sleep_ms": 0}
glibc sends the A and AAAA questions of one lookup together (sendmmsg) over UDP, and retries
over TCP when an answer comes back truncated (or always, with `options use-vc`).

One JSON line per lookup: name, addresses (unique, in glibc's order), error (the EAI_* name,
e.g. EAI_NONAME for NXDOMAIN), ok, start/end/duration. The `connected` line carries `pid` (no
connection: the lookups start after it).
"""

import argparse
import os
import socket
import sys
import time

from e2e_common import Timed, add_common_args, emit, hold, load_plan

FAMILIES = {"any": socket.AF_UNSPEC, "inet": socket.AF_INET, "inet6": socket.AF_INET6}
EAI_NAMES = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)
    family = FAMILIES[plan.get("family", "any")]
    emit({"kind": "connected", "pid": os.getpid()})
    if not hold(args):
        return 3
    step = 0
    for _ in range(int(plan.get("repeat", 1))):
        for name in plan["names"]:
            out = {"kind": "resolve", "step": step, "name": name}
            with Timed() as t:
                try:
                    infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)
                    addrs = []
                    for info in infos:
                        a = info[4][0]
                        if a not in addrs:
                            addrs.append(a)
                    out.update(ok=True, addresses=addrs, error=None)
                except socket.gaierror as e:
                    out.update(ok=False, addresses=[], error=EAI_NAMES.get(e.errno, str(e.errno)),
                               message=str(e))
            out.update(t.fields())
            emit(out)
            step += 1
            if plan.get("sleep_ms"):
                time.sleep(plan["sleep_ms"] / 1000.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
