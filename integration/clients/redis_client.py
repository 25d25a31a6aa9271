#!/usr/bin/env python3
"""A scripted Redis client for the e2e tests (redis-py, one connection).

On connect redis-py sends `AUTH <password>` (RESP2, with --password) or
`HELLO 3 [AUTH default <password>]` (--resp 3); `CLIENT SETINFO` is only sent with
--client-setinfo. Every step, pipelines included, runs on ONE connection (a pool of one), so
the server's spans of this client are those of one socket. Then one JSON line per step (see
e2e_common.py):
  {"cmd": ["SET", "k", "v"]}                 one command; `reply` is its repr (truncated)
  {"pipeline": [[...], [...]], "transaction": false}
                                             all commands written before reading any reply
                                             (MULTI/EXEC around them with "transaction": true);
                                             one line per command, sharing the pipeline's times
  {"sleep_ms": N}
  {"load": {"cmd": ["GET", "key:{n}"], "count": N, "modulo": M}}
                                             N commands, {n} = i % M + 1; one summary line
  {"subscribe": {"channels": [...], "publish": [[channel, message], ...], "ping": true}}
                                             SUBSCRIBE on this connection; then another client
                                             (`redis-cli PUBLISH`, its pid in a `published`
                                             line) publishes each message; the messages are
                                             read (one `messages` line); PING if asked (in
                                             RESP2 subscribe mode it answers ["pong", ""]);
                                             UNSUBSCRIBE without arguments. `command` lines
                                             for SUBSCRIBE, PING and UNSUBSCRIBE.
Errors (e.g. WRONGTYPE, NOAUTH, unknown command) are data: ok=false with the message.
The `connected` line carries `local_port`.
"""

import argparse
import os
import subprocess
import sys
import time

import redis

from e2e_common import Timed, add_common_args, emit, hold, load_plan, sock_local_port


def short(v, n=200):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--unix-socket")
    ap.add_argument("--password")
    ap.add_argument("--resp", type=int, default=2, choices=[2, 3])
    ap.add_argument("--client-setinfo", action="store_true")
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)

    kw = dict(password=args.password, protocol=args.resp, socket_timeout=60)
    if not args.client_setinfo:
        kw["driver_info"] = None
    if args.unix_socket:
        kw.update(connection_class=redis.UnixDomainSocketConnection, path=args.unix_socket)
    else:
        kw.update(host=args.host, port=args.port)
    # A pool of one: commands and pipelines share the connection opened here.
    pool = redis.ConnectionPool(max_connections=1, **kw)
    r = redis.Redis(connection_pool=pool)
    conn = pool.get_connection()
    conn.connect()
    emit({"kind": "connected", "pid": os.getpid(), "local_port": sock_local_port(conn._sock)})
    pool.release(conn)
    if not hold(args):
        return 3

    for i, step in enumerate(plan["steps"]):
        if "sleep_ms" in step:
            time.sleep(step["sleep_ms"] / 1000.0)
        elif "cmd" in step:
            out = {"kind": "command", "step": i, "cmd": step["cmd"]}
            with Timed() as t:
                try:
                    reply = r.execute_command(*step["cmd"])
                    out.update(ok=True, reply=short(reply))
                except redis.RedisError as e:
                    out.update(ok=False, error=str(e))
            out.update(t.fields())
            emit(out)
        elif "pipeline" in step:
            outs = []
            with Timed() as t:
                p = r.pipeline(transaction=bool(step.get("transaction")))
                for c in step["pipeline"]:
                    p.execute_command(*c)
                try:
                    replies = p.execute(raise_on_error=False)
                except redis.RedisError as e:
                    replies = [e] * len(step["pipeline"])
            for c, rep in zip(step["pipeline"], replies):
                o = {"kind": "command", "step": i, "cmd": c, "pipeline": True}
                if isinstance(rep, Exception):
                    o.update(ok=False, error=str(rep))
                else:
                    o.update(ok=True, reply=short(rep))
                o.update(t.fields())
                outs.append(o)
            for o in outs:
                emit(o)
        elif "subscribe" in step:
            subscribe(r, pool, args, i, step["subscribe"])
        elif "load" in step:
            load = step["load"]
            count, modulo = int(load["count"]), int(load.get("modulo", 100))
            errors = 0
            with Timed() as t:
                for n in range(count):
                    cmd = [a.replace("{n}", str(n % modulo + 1)) for a in load["cmd"]]
                    try:
                        r.execute_command(*cmd)
                    except redis.RedisError:
                        errors += 1
            out = {"kind": "load", "step": i, "cmd": load["cmd"], "count": count, "errors": errors}
            out.update(t.fields())
            emit(out)
    r.close()
    return 0


def subscribe(r, pool, args, i, sub):
    """SUBSCRIBE on the plan's connection, messages published by another client, UNSUBSCRIBE."""
    channels = sub["channels"]
    conn = pool.get_connection()
    push = args.resp == 3

    def read():
        return conn.read_response(push_request=True) if push else conn.read_response()

    def command(cmd, replies):
        with Timed() as t:
            conn.send_command(*cmd)
            got = [read() for _ in range(replies)]
        out = {"kind": "command", "step": i, "cmd": cmd, "ok": True, "reply": short(got)}
        out.update(t.fields())
        emit(out)

    try:
        command(["SUBSCRIBE", *channels], len(channels))
        env = dict(os.environ)
        cli = ["redis-cli"]
        if args.unix_socket:
            cli += ["-s", args.unix_socket]
        else:
            cli += ["-h", args.host, "-p", str(args.port)]
        if args.password:
            env["REDISCLI_AUTH"] = args.password
        for channel, message in sub.get("publish", []):
            p = subprocess.Popen(cli + ["PUBLISH", channel, message], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            emit({"kind": "published", "step": i, "pid": p.pid, "ok": p.wait() == 0})
        messages = [read() for _ in sub.get("publish", [])]
        emit({"kind": "messages", "step": i, "count": len(messages), "reply": short(messages)})
        if sub.get("ping"):
            command(["PING"], 1)
        command(["UNSUBSCRIBE"], len(channels))
    finally:
        pool.release(conn)


if __name__ == "__main__":
    sys.exit(main())
