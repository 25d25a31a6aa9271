#!/usr/bin/env python3
"""`cargo xtask run --demo`: a small, varied query loop against the demo MariaDB, one round
about every second, forever (until the xtask stops it). Prints one line per round."""

import argparse
import itertools
import random
import sys
import time

import mysql.connector

QUERIES = [
    ("text", "SELECT id, name FROM t1 WHERE id = {id}"),
    ("text", "SELECT COUNT(*) FROM t1 JOIN t2 ON t2.t1_id = t1.id WHERE t1.score > {score}"),
    ("text", "UPDATE t1 SET score = score + 0.5 WHERE id = {id}"),
    ("text", "INSERT INTO t2 (id, t1_id, note) VALUES ({big}, {id}, 'demo note {big}')"),
    ("text", "DELETE FROM t2 WHERE id >= 1000 AND id < {big}"),
    ("prepared", "SELECT name, score FROM t1 WHERE id = ?"),
    ("text", "SELECT SLEEP(0.05)"),
    ("text", "SELEC 'this is a syntax error'"),
    ("text", "SELECT seq FROM seq_1_to_100 WHERE seq % {id} = 0"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="e2e")
    ap.add_argument("--password", default="e2e")
    ap.add_argument("--database", default="e2e")
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    cnx = None
    for rnd in itertools.count(1):
        try:
            if cnx is None:
                cnx = mysql.connector.connect(host="127.0.0.1", port=args.port, user=args.user,
                                              password=args.password, database=args.database,
                                              use_pure=True, autocommit=True)
            kind, sql = QUERIES[rnd % len(QUERIES)]
            vals = {"id": random.randint(1, 3), "score": random.random() * 3, "big": 1000 + rnd}
            cur = cnx.cursor(prepared=(kind == "prepared"))
            try:
                if kind == "prepared":
                    cur.execute(sql, (vals["id"],))
                else:
                    cur.execute(sql.format(**vals))
                if cur.with_rows:
                    cur.fetchall()
                outcome = "ok"
            except mysql.connector.Error as e:
                outcome = f"error {e.errno}"
            finally:
                cur.close()
            print(f"[demo] round {rnd}: {sql.format(**vals) if kind == 'text' else sql} -> {outcome}", flush=True)
        except mysql.connector.Error as e:
            print(f"[demo] connection problem: {e}; reconnecting", flush=True)
            cnx = None
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
