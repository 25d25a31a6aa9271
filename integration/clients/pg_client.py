#!/usr/bin/env python3
"""A scripted PostgreSQL client for the e2e tests (psycopg 3, libpq from psycopg-binary).

Runs the steps of a JSON plan on ONE connection (autocommit) and prints one JSON line per step
(see e2e_common.py). Which protocol a step uses (psycopg's rules):
  {"sql": "..."}                              no params: simple query protocol (Query); several
                                              statements in one text are allowed
  {"sql": "... %s ...", "params": [...]}      extended protocol, unnamed statement
                                              (Parse/Bind/Describe/Execute/Sync); needs at least
                                              one parameter (none: simple Query again)
  {"sql": ..., "params": [...], "prepare": true}
                                              server-side prepared statement: Parse with a name
                                              (`_pg3_0`, ...) the first time, then Bind/Execute
                                              of that name; "prepare": false never prepares
                                              (default: psycopg prepares after 5 executions)
  {"sql": ..., "params": [...], "client_side": true}
                                              psycopg.ClientCursor: values interpolated by the
                                              client, sent as a simple Query (literals on the wire)
  {"pipeline": [step, ...]}                   pipeline mode: every inner step sent before one Sync
  {"executemany": "...", "params_seq": [[...], ...]}
  {"sleep_ms": N}
  {"load": {"sql": "... %s ...", "count": N, "modulo": M, "prepare": null}}
                                              N executions with params (i % M + 1,), one summary line
Errors are data: a failing step prints ok=false with the SQLSTATE and the connection goes on.

The `connected` line carries `backend_pid` (from BackendKeyData: the server process that will
produce this connection's SERVER spans, no query needed) and `local_port`.

A plan may also hold "before": [step, ...], run right after connecting and before the hold
(--ready-file/--go-file): what a connection did before the receiver started. Their records
carry "before": true.
"""

import argparse
import os
import sys
import time

import psycopg

from e2e_common import Timed, add_common_args, emit, hold, load_plan, sock_local_port


def fetch_rows(cur):
    rows = 0
    while True:
        if cur.description is not None:
            rows += len(cur.fetchall())
        if not cur.nextset():
            return rows


def run_step(conn, i, step):
    if "sleep_ms" in step:
        time.sleep(step["sleep_ms"] / 1000.0)
        return None
    if "executemany" in step:
        out = {"kind": "executemany", "step": i, "sql": step["executemany"]}
        with Timed() as t:
            try:
                with conn.cursor() as cur:
                    cur.executemany(step["executemany"], [tuple(p) for p in step["params_seq"]])
                out.update(ok=True, sqlstate=None, rows=len(step["params_seq"]))
            except psycopg.Error as e:
                out.update(ok=False, sqlstate=e.sqlstate, error=str(e).splitlines()[0])
        out.update(t.fields())
        return [out]
    if "pipeline" in step:
        outs = []
        with Timed() as t:
            try:
                with conn.pipeline():
                    curs = []
                    for s in step["pipeline"]:
                        cur = conn.cursor()
                        cur.execute(s["sql"], tuple(s["params"]) if s.get("params") is not None else None,
                                    prepare=s.get("prepare"))
                        curs.append((s, cur))
                for s, cur in curs:
                    outs.append({"kind": "query", "step": i, "sql": s["sql"], "ok": True,
                                 "sqlstate": None, "rows": cur.rowcount})
            except psycopg.Error as e:
                outs.append({"kind": "query", "step": i, "ok": False, "sqlstate": e.sqlstate,
                             "error": str(e).splitlines()[0]})
        for o in outs:
            o.update(t.fields())
            o["pipeline"] = True
        return outs
    if "load" in step:
        load = step["load"]
        count, modulo = int(load["count"]), int(load.get("modulo", 100))
        errors = 0
        with Timed() as t:
            with conn.cursor() as cur:
                for n in range(count):
                    try:
                        cur.execute(load["sql"], (n % modulo + 1,), prepare=load.get("prepare"))
                        if cur.description is not None:
                            cur.fetchall()
                    except psycopg.Error:
                        errors += 1
        out = {"kind": "load", "step": i, "sql": load["sql"], "count": count, "errors": errors}
        out.update(t.fields())
        return [out]

    sql = step["sql"]
    params = step.get("params")
    out = {"kind": "query", "step": i, "sql": sql, "prepare": step.get("prepare"),
           "client_side": bool(step.get("client_side"))}
    cursor_factory = psycopg.ClientCursor if step.get("client_side") else psycopg.Cursor
    with Timed() as t:
        try:
            cur = cursor_factory(conn)
            try:
                cur.execute(sql, tuple(params) if params is not None else None,
                            prepare=step.get("prepare"))
                rows = fetch_rows(cur)
                out.update(ok=True, sqlstate=None, rows=rows, status=cur.statusmessage)
            finally:
                cur.close()
        except psycopg.Error as e:
            out.update(ok=False, sqlstate=e.sqlstate, error=str(e).splitlines()[0])
    out.update(t.fields())
    return [out]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", required=True)
    add_common_args(ap)
    args = ap.parse_args()
    plan = load_plan(args)

    conn = psycopg.connect(args.dsn, autocommit=True)
    emit({"kind": "connected", "pid": os.getpid(), "backend_pid": conn.info.backend_pid,
          "local_port": sock_local_port(conn.pgconn.socket),
          "server_version": conn.info.server_version})
    for i, step in enumerate(plan.get("before", [])):
        for out in run_step(conn, i, step) or []:
            out["before"] = True
            emit(out)
    if not hold(args):
        return 3
    for i, step in enumerate(plan["steps"]):
        for out in run_step(conn, i, step) or []:
            emit(out)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
