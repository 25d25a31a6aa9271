#!/usr/bin/env python3
"""A scripted HTTP client for the e2e tests (requests/urllib3).

Plan: {"session": true, "requests": [request, ...]} where a request is
  {"method": "GET", "url": "http://...", "headers": {...}, "data": "text", "json": {...},
   "timeout": 30}
With "session": true (default) one requests.Session keeps the connection alive across
requests; false opens a connection per request.

One JSON line per request (see e2e_common.py): method, url, status, bytes (body length read),
local_port (the client's source port: the server span's network.peer.port), ok, error,
start/end/duration (start before sending, end after the whole body was read).
"""

import argparse
import os
import sys

import requests

from e2e_common import Timed, add_common_args, emit, hold, load_plan, sock_local_port


def local_port(resp):
    try:
        return sock_local_port(resp.raw._connection.sock)
    except AttributeError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)
    use_session = plan.get("session", True)
    session = requests.Session() if use_session else None
    emit({"kind": "connected", "pid": os.getpid()})
    if not hold(args):
        return 3
    for i, req in enumerate(plan["requests"]):
        method = req.get("method", "GET")
        out = {"kind": "request", "step": i, "method": method, "url": req["url"]}
        doer = session if session is not None else requests
        with Timed() as t:
            try:
                resp = doer.request(method, req["url"], headers=req.get("headers"),
                                    data=req.get("data"), json=req.get("json"),
                                    timeout=req.get("timeout", 30), stream=True,
                                    allow_redirects=False)
                port = local_port(resp)
                body = resp.content
                out.update(ok=True, status=resp.status_code, bytes=len(body), local_port=port,
                           reason=resp.reason)
                resp.close()
            except requests.RequestException as e:
                out.update(ok=False, error=f"{type(e).__name__}: {e}")
        out.update(t.fields())
        emit(out)
    if session is not None:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
