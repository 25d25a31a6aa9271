#!/usr/bin/env python3
"""Records real PostgreSQL client sessions as golden captures (`*.bin`).

A tiny TCP proxy sits between a client and the server and writes every recv() it forwards as
one record: direction (b'C' client->server, b'S' server->client), a monotonic timestamp in ns
(u64 LE), the length (u32 LE) and the bytes. Each recv() is one record, so the chunking is the
one a socket reader really sees. A client that opens several connections gets one file per
connection (`name.bin`, `name-2.bin`, ...).

Usage (a throwaway server; `initdb`/`postgres` refuse to run as root):
    mkdir -p /tmp/pgcap/data /tmp/pgcap/sock && chown -R postgres /tmp/pgcap
    su postgres -s /bin/sh -c "initdb -D /tmp/pgcap/data -U postgres --auth-local=trust \
        --auth-host=scram-sha-256"
    printf 'local all all trust\nhost all app_clear 127.0.0.1/32 password\n\
host all all 127.0.0.1/32 scram-sha-256\n' > /tmp/pgcap/hba.conf
    su postgres -s /bin/sh -c "postgres -D /tmp/pgcap/data -p 15432 -k /tmp/pgcap/sock \
        -c listen_addresses=127.0.0.1 -c hba_file=/tmp/pgcap/hba.conf -c ssl=off &"
    pip install 'psycopg[binary]'
    python3 capture.py 15432 /usr/lib/postgresql/15/bin
Then regenerate the goldens: UPDATE_GOLDEN=1 cargo test -p ebpf-receiver --lib postgres::tests::golden

Canaries (the golden test asserts none reaches a record): the passwords `hunter2-scram` and
`hunter2-clear`, Bind values `bind-secret-canary`, literals `literal-secret-canary`.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRAM_PW = "hunter2-scram"
CLEAR_PW = "hunter2-clear"


class Proxy:
    def __init__(self, upstream_port, name, connections=1):
        self.upstream_port = upstream_port
        self.name = name
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.connections = connections
        self.threads = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def path(self, i):
        suffix = "" if i == 0 else f"-{i + 1}"
        return os.path.join(HERE, f"{self.name}{suffix}.bin")

    def pump(self, src, dst, tag, out):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    out.write(tag + struct.pack("<QI", time.monotonic_ns(), len(data)) + data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def one(self, i, client):
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        with open(self.path(i), "wb") as out:
            a = threading.Thread(target=self.pump, args=(client, server, b"C", out))
            b = threading.Thread(target=self.pump, args=(server, client, b"S", out))
            a.start()
            b.start()
            a.join()
            b.join()
        client.close()
        server.close()

    def serve(self):
        for i in range(self.connections):
            client, _ = self.listener.accept()
            t = threading.Thread(target=self.one, args=(i, client))
            t.start()
            self.threads.append(t)

    def close(self):
        self.thread.join(timeout=30)
        for t in self.threads:
            t.join(timeout=30)


def admin(bindir, sql, db="postgres"):
    subprocess.run([os.path.join(bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                    "/tmp/pgcap/sock", "-p", PORT, "-U", "postgres", "-d", db, "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


def setup(bindir):
    for sql in ["DROP DATABASE IF EXISTS shop", "DROP ROLE IF EXISTS app",
                "DROP ROLE IF EXISTS app_clear",
                f"CREATE ROLE app LOGIN PASSWORD '{SCRAM_PW}'",
                f"CREATE ROLE app_clear LOGIN PASSWORD '{CLEAR_PW}'",
                "CREATE DATABASE shop OWNER app"]:
        admin(bindir, sql)
    admin(bindir, """
CREATE TABLE users (id int PRIMARY KEY, name text, age int);
INSERT INTO users VALUES (1, 'ann', 31), (2, 'bob', 45), (3, 'cyd', 27);
CREATE TABLE kv (k text PRIMARY KEY, v text);
ALTER TABLE users OWNER TO app; ALTER TABLE kv OWNER TO app;
GRANT ALL ON ALL TABLES IN SCHEMA public TO app_clear;
""", db="shop")


def env(password):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    e.update(PGPASSWORD=password, PGGSSENCMODE="disable", PGSSLMODE="prefer")
    return e


def psql_session(bindir):
    """psql over TCP: SSLRequest refused with N, SCRAM, one simple Query per statement."""
    p = Proxy(int(PORT), "psql_simple")
    script = """
SELECT id, name FROM users WHERE name = 'literal-secret-canary' OR age > 30;
UPDATE users SET age = age + 1 WHERE id IN (1, 2, 3);
SELECT * FROM missing_table;
SELECT 1 / 0;
SELECT 1; SELECT 'two', 2.5;
INSERT INTO kv VALUES ('k1', 'v1') ON CONFLICT (k) DO UPDATE SET v = excluded.v;
BEGIN;
DELETE FROM kv WHERE k = 'nope';
COMMIT;
;
"""
    subprocess.run([os.path.join(bindir, "psql"), "-X", "-h", "127.0.0.1", "-p", str(p.port),
                    "-U", "app", "-d", "shop"], input=script.encode(), env=env(SCRAM_PW),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    p.close()


def cleartext_session(bindir):
    """The `password` method: the password crosses the wire in clear in a PasswordMessage."""
    p = Proxy(int(PORT), "psql_cleartext")
    subprocess.run([os.path.join(bindir, "psql"), "-X", "-h", "127.0.0.1", "-p", str(p.port),
                    "-U", "app_clear", "-d", "shop", "-c", "SELECT count(*) FROM users"],
                   env=env(CLEAR_PW), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    p.close()


def psycopg_session():
    """psycopg 3: extended protocol (unnamed), server-side prepared statements, errors, a
    pipeline, executemany, a simple query."""
    import psycopg

    p = Proxy(int(PORT), "psycopg_extended")
    conn = psycopg.connect(f"host=127.0.0.1 port={p.port} dbname=shop user=app "
                           f"password={SCRAM_PW} sslmode=prefer gssencmode=disable",
                           autocommit=True)
    cur = conn.cursor()
    cur.execute("SELECT id, name FROM users WHERE age > %s", (30,))
    cur.fetchall()
    for n in (1, 2, 3):
        cur.execute("SELECT name FROM users WHERE id = %s", (n,), prepare=True)
        cur.fetchall()
    cur.execute("UPDATE kv SET v = %s WHERE k = %s", ("bind-secret-canary", "k1"), prepare=True)
    for sql, args in [("SELECT v FROM missing_table WHERE k = %s", ("x",)),
                      ("SELECT %s::int / 0", (1,))]:
        try:
            cur.execute(sql, args, prepare=True)
        except psycopg.Error:
            pass
    try:
        cur.execute("SELECT 10 / %s::int", (0,))
    except psycopg.Error:
        pass
    with conn.pipeline():
        for n in (1, 2, 3):
            conn.execute("SELECT age FROM users WHERE id = %s", (n,))
    cur.executemany("INSERT INTO kv VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [("a", "bind-secret-canary"), ("b", "bind-secret-canary")])
    cur.execute("SELECT count(*) FROM kv")
    cur.fetchall()
    conn.close()
    p.close()


def pgbench_session(bindir):
    """pgbench -M prepared -S: the checking connection (simple), then the benchmark one."""
    subprocess.run([os.path.join(bindir, "pgbench"), "-i", "-q", "-s", "1", "-h", "127.0.0.1",
                    "-p", PORT, "-U", "app", "shop"], env=env(SCRAM_PW), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = Proxy(int(PORT), "pgbench_prepared", connections=2)
    subprocess.run([os.path.join(bindir, "pgbench"), "-n", "-S", "-M", "prepared", "-t", "4",
                    "-h", "127.0.0.1", "-p", str(p.port), "-U", "app", "shop"],
                   env=env(SCRAM_PW), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    p.close()
    # The benchmark connection is the second; the first only checks the scale.
    os.replace(p.path(1), p.path(0))


if __name__ == "__main__":
    PORT = sys.argv[1] if len(sys.argv) > 1 else "15432"
    BINDIR = sys.argv[2] if len(sys.argv) > 2 else "/usr/lib/postgresql/15/bin"
    setup(BINDIR)
    psql_session(BINDIR)
    cleartext_session(BINDIR)
    psycopg_session()
    pgbench_session(BINDIR)
