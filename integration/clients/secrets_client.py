#!/usr/bin/env python3
"""Real client libraries driven with canary secrets for secrets_e2e (issue 8, R8).

One connection per run; the plan names the protocol, how to connect, and the steps. Errors are
data (the test makes some statements fail on purpose so the server's error text echoes a canary).
Prints {"kind": "connected", "pid": ...} then one {"kind": "step", "step": i, "ok": bool} line
per step (the error text is NOT printed: it holds canaries, and the test searches only the
receiver's and the Collector's outputs, but there is no reason to copy them around).

Plans:
  {"proto": "mysql", "connect": {host, port | unix_socket, user, password, database},
   "steps": [{"sql": ...} | {"prepared": sql, "params": [...]} | {"change_user": {user, password}}]}
      mysql-connector-python (pure Python): mysql_native_password handshake over TCP or the
      Unix socket; COM_STMT_PREPARE/EXECUTE for "prepared" (binary-protocol parameters);
      COM_CHANGE_USER for "change_user".
  {"proto": "postgres", "dsn": "...", "steps": [{"sql": ..., "params": [...], "binary": bool}]}
      psycopg 3: SCRAM / md5 / cleartext as the server asks; params go in Bind messages (text,
      or binary with "binary": true; a {"hex": ...} param is sent as bytea).
  {"proto": "redis", "host", "port", "username", "password", "resp": 2|3,
   "steps": [{"cmd": [...]}]}
      redis-py: RESP2 sends `AUTH [user] password`, RESP3 sends `HELLO 3 AUTH user password`.
"""

import json
import os
import sys


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def mysql(plan):
    import mysql.connector

    c = dict(plan["connect"])
    c.setdefault("use_pure", True)
    cnx = mysql.connector.connect(**c)
    emit({"kind": "connected", "pid": os.getpid()})
    for i, step in enumerate(plan["steps"]):
        ok = True
        try:
            if "sql" in step:
                cur = cnx.cursor()
                cur.execute(step["sql"])
                if cur.with_rows:
                    cur.fetchall()
                cur.close()
            elif "prepared" in step:
                cur = cnx.cursor(prepared=True)
                params = [bytes.fromhex(p["hex"]) if isinstance(p, dict) else p for p in step["params"]]
                cur.execute(step["prepared"], tuple(params))
                if cur.with_rows:
                    cur.fetchall()
                cur.close()
            elif "change_user" in step:
                cu = step["change_user"]
                cnx.cmd_change_user(username=cu["user"], password=cu["password"],
                                    database=plan["connect"].get("database", ""))
        except mysql.connector.Error:
            ok = False
        emit({"kind": "step", "step": i, "ok": ok})
    cnx.close()


def postgres(plan):
    import psycopg

    with psycopg.connect(plan["dsn"], autocommit=True) as conn:
        emit({"kind": "connected", "pid": os.getpid(), "backend_pid": conn.info.backend_pid})
        for i, step in enumerate(plan["steps"]):
            ok = True
            params = step.get("params")
            if params is not None:
                params = [bytes.fromhex(p["hex"]) if isinstance(p, dict) else p for p in params]
            try:
                with conn.cursor(binary=bool(step.get("binary"))) as cur:
                    cur.execute(step["sql"], params, prepare=False)
                    if cur.description is not None:
                        cur.fetchall()
            except psycopg.Error:
                ok = False
            emit({"kind": "step", "step": i, "ok": ok})


def redis_(plan):
    import redis

    kw = dict(host=plan["host"], port=plan["port"], protocol=plan.get("resp", 2),
              password=plan.get("password"), username=plan.get("username"),
              socket_timeout=30, driver_info=None)
    pool = redis.ConnectionPool(max_connections=1, **kw)
    r = redis.Redis(connection_pool=pool)
    conn = pool.get_connection()
    conn.connect()
    pool.release(conn)
    emit({"kind": "connected", "pid": os.getpid()})
    for i, step in enumerate(plan["steps"]):
        ok = True
        try:
            r.execute_command(*step["cmd"])
        except redis.RedisError:
            ok = False
        emit({"kind": "step", "step": i, "ok": ok})
    r.close()


def main():
    with open(sys.argv[sys.argv.index("--plan") + 1]) as f:
        plan = json.load(f)
    {"mysql": mysql, "postgres": postgres, "redis": redis_}[plan["proto"]](plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
