#!/usr/bin/env python3
"""A scripted MySQL client for the end-to-end tests (mysql-connector-python, pure Python).

Runs the steps of a JSON plan on ONE connection and prints one JSON line per step with the
client-measured duration (time.perf_counter around execute + fetching every result set), so the
test can compare it with the span the receiver produced.

Plan: {"steps": [step, ...]} where a step is one of
  {"sql": "...", "prepared": false, "params": [...]}  COM_QUERY (text protocol); with
                                                    "prepared": true a server-side prepared
                                                    statement (COM_STMT_PREPARE once per text,
                                                    then COM_STMT_EXECUTE per step)
  {"init_db": "name"}                               COM_INIT_DB
  {"load": {"sql": "... {n} ...", "count": N, "modulo": M, "prepared": false}}
                                                    N queries as fast as possible, {n} = i % M + 1;
                                                    prints one summary line
Multi-statement text works as a plain "sql" step: the connector sets CLIENT_MULTI_STATEMENTS
and every result set is read.

--ready-file / --go-file: after connecting (and before the first step), create the ready file
and wait until the go file exists. Used to open a connection before the receiver starts.
"""

import argparse
import json
import os
import sys
import time

import mysql.connector


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def drain(cursor):
    """Reads every row of every result set; returns the row count."""
    rows = 0
    while True:
        if cursor.with_rows:
            rows += len(cursor.fetchall())
        if not cursor.nextset():
            return rows


def run_sql(cnx, text_cursor, prep_cursor, step):
    prepared = bool(step.get("prepared"))
    params = step.get("params")
    cursor = prep_cursor if prepared else text_cursor
    start_unix_ns = time.time_ns()
    t0 = time.perf_counter()
    errno = None
    rows = 0
    try:
        if prepared:
            cursor.execute(step["sql"], tuple(params or ()))
            rows = len(cursor.fetchall()) if cursor.with_rows else 0
        else:
            cursor.execute(step["sql"])
            rows = drain(cursor)
    except mysql.connector.Error as e:
        errno = e.errno
    duration_ns = int((time.perf_counter() - t0) * 1e9)
    return {
        "kind": "prepared" if prepared else "query",
        "sql": step["sql"],
        "ok": errno is None,
        "errno": errno,
        "rows": rows,
        "start_unix_ns": start_unix_ns,
        "duration_ns": duration_ns,
    }


def run_load(cnx, load):
    prepared = bool(load.get("prepared"))
    cursor = cnx.cursor(prepared=True) if prepared else cnx.cursor()
    sql, count, modulo = load["sql"], int(load["count"]), int(load.get("modulo", 100))
    errors = 0
    t0 = time.perf_counter()
    for i in range(count):
        n = i % modulo + 1
        try:
            if prepared:
                cursor.execute(sql, (n,))
            else:
                cursor.execute(sql.replace("{n}", str(n)))
            cursor.fetchall()
        except mysql.connector.Error:
            errors += 1
    elapsed = time.perf_counter() - t0
    return {"kind": "load", "sql": sql, "count": count, "errors": errors,
            "elapsed_ns": int(elapsed * 1e9), "qps": count / elapsed if elapsed > 0 else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--unix-socket")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="")
    ap.add_argument("--database")
    ap.add_argument("--plan", required=True, help="JSON plan file, or - for stdin")
    ap.add_argument("--ready-file")
    ap.add_argument("--go-file")
    ap.add_argument("--go-timeout", type=float, default=120.0)
    args = ap.parse_args()

    plan = json.load(sys.stdin if args.plan == "-" else open(args.plan))
    kw = dict(user=args.user, password=args.password, use_pure=True, autocommit=True)
    if args.unix_socket:
        kw["unix_socket"] = args.unix_socket
    else:
        kw.update(host=args.host, port=args.port)
    if args.database:
        kw["database"] = args.database
    cnx = mysql.connector.connect(**kw)
    emit({"kind": "connected", "pid": os.getpid(), "connection_id": cnx.connection_id})

    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + args.go_timeout
        while not (args.go_file and os.path.exists(args.go_file)):
            if time.monotonic() > deadline:
                emit({"kind": "error", "message": "go file never appeared"})
                return 3
            time.sleep(0.02)

    text_cursor = cnx.cursor()
    prep_cursor = cnx.cursor(prepared=True)
    for i, step in enumerate(plan["steps"]):
        if "init_db" in step:
            t0 = time.perf_counter()
            start_unix_ns = time.time_ns()
            cnx.cmd_init_db(step["init_db"])
            emit({"kind": "init_db", "step": i, "sql": None, "database": step["init_db"], "ok": True,
                  "errno": None, "rows": 0, "start_unix_ns": start_unix_ns,
                  "duration_ns": int((time.perf_counter() - t0) * 1e9)})
        elif "load" in step:
            out = run_load(cnx, step["load"])
            out["step"] = i
            emit(out)
        else:
            out = run_sql(cnx, text_cursor, prep_cursor, step)
            out["step"] = i
            emit(out)
    cnx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
