#!/usr/bin/env python3
"""Records a real MySQL/MariaDB client session as a golden capture (`*.bin`).

A tiny TCP proxy sits between a client and the server and writes every recv() it forwards as
one record: direction (b'C' client->server, b'S' server->client), a monotonic timestamp in ns
(u64 LE), the length (u32 LE) and the bytes. Each recv() is one record, so the chunking is the
one a socket reader really sees.

Usage (a throwaway MariaDB, no grant tables):
    mariadb-install-db --user=root --datadir=/tmp/mdbB >/dev/null
    mariadbd --user=root --datadir=/tmp/mdbB --socket=/tmp/mdbB.sock --port=13307 \
        --skip-grant-tables --skip-networking=0 &
    pip install mysql-connector-python
    python3 capture.py 13307
Then regenerate the goldens: UPDATE_GOLDEN=1 cargo test -p ebpf-receiver --lib golden
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class Proxy:
    def __init__(self, upstream_port, out_path):
        self.upstream_port = upstream_port
        self.out = open(out_path, "wb")
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def record(self, tag, data):
        with self.lock:
            self.out.write(tag + struct.pack("<QI", time.monotonic_ns(), len(data)) + data)

    def pump(self, src, dst, tag):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.record(tag, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def serve(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        a = threading.Thread(target=self.pump, args=(client, server, b"C"))
        b = threading.Thread(target=self.pump, args=(server, client, b"S"))
        a.start()
        b.start()
        a.join()
        b.join()
        client.close()
        server.close()

    def close(self):
        self.thread.join(timeout=10)
        self.out.close()


def setup(port):
    script = """
DROP DATABASE IF EXISTS shop;
CREATE DATABASE shop;
CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(40), age INT);
INSERT INTO shop.users VALUES (1,'ann',31),(2,'bob',45),(3,'cyd',27);
DELIMITER //
CREATE PROCEDURE shop.report(IN n INT) BEGIN
  SELECT id, name FROM shop.users WHERE id <= n;
  SELECT COUNT(*) FROM shop.users;
END//
DELIMITER ;
"""
    subprocess.run(["mariadb", "-h127.0.0.1", f"-P{port}", "-uroot"], input=script.encode(),
                   check=True)


def cli_session(port):
    """Text protocol through the mariadb CLI: multi-statements, errors, USE, CALL."""
    p = Proxy(port, os.path.join(HERE, "cli_text.bin"))
    script = """
SELECT id, name FROM users WHERE name = 'ann' AND age > 30;
UPDATE users SET age = age + 1 WHERE id IN (1, 2, 3);
SELEC broken;
SELECT * FROM missing_table;
DELIMITER //
SELECT 1; SELECT 'two', 2.5//
DELIMITER ;
CALL report(2);
USE mysql;
SELECT COUNT(*) FROM db;
"""
    subprocess.run(
        ["mariadb", "-h127.0.0.1", f"-P{p.port}", "-uroot", "-phunter2", "--force", "shop"],
        input=script.encode(), check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    p.close()


def python_session(port):
    """Binary protocol through mysql-connector-python: prepared statements."""
    import mysql.connector

    p = Proxy(port, os.path.join(HERE, "connector_prepared.bin"))
    conn = mysql.connector.connect(
        host="127.0.0.1", port=p.port, user="root", password="hunter2", database="shop",
        use_pure=True, ssl_disabled=True,
    )
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT id, name FROM users WHERE age > ?", (30,))
    cur.fetchall()
    cur.execute("SELECT id, name FROM users WHERE age > ?", (40,))
    cur.fetchall()
    cur.execute("UPDATE users SET name = ? WHERE id = ?", ("ann-secret", 1))
    try:
        cur.execute("SELECT nope FROM users WHERE id = ?", (1,))
    except mysql.connector.Error:
        pass
    cur.close()
    text = conn.cursor()
    text.execute("SELECT name FROM users ORDER BY id")
    text.fetchall()
    conn.ping()
    conn.close()
    p.close()


def raw_session(port):
    """A minimal hand-written client that negotiates CLIENT_DEPRECATE_EOF (libmariadb and
    mysql-connector-python do not), so the server answers with OK packets instead of EOF."""
    p = Proxy(port, os.path.join(HERE, "raw_deprecate_eof.bin"))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.settimeout(0.3)

    def pkt(seq, payload):
        return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload

    def drain():
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return data
            if not chunk:
                return data
            data += chunk

    greeting = drain()
    caps = (0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x10000 | 0x20000 | 0x40000
            | 0x80000 | 0x200000 | 0x01000000)
    body = struct.pack("<IIB", caps, 1 << 24, 33) + bytes(23) + b"root\0"
    body += bytes([20]) + b"hunter2-scramble-xxx" + b"shop\0" + b"mysql_native_password\0"
    s.sendall(pkt(1, body))
    reply = drain()
    if reply[4:5] == b"\xfe":  # AuthSwitchRequest
        s.sendall(pkt(reply[3] + 1, b"hunter2-scramble-yyy"))
        drain()
    for sql in [
        b"SELECT id, name FROM users WHERE age > 20",
        b"SELECT id FROM users WHERE id = -1",
        b"SELECT 1; SELECT 'x', 2",
        b"CALL report(3)",
        b"INSERT INTO users VALUES (9, 'dee', 50)",
        b"DELETE FROM users WHERE id = 9",
        b"SELECT nope",
    ]:
        s.sendall(pkt(0, b"\x03" + sql))
        drain()
    s.sendall(pkt(0, b"\x16SELECT name FROM users WHERE id = ?"))
    prep = drain()
    stmt_id = prep[5:9]
    # COM_STMT_EXECUTE: id, no cursor, 1 iteration, NULL bitmap, new-params-bound, LONG 2.
    s.sendall(pkt(0, b"\x17" + stmt_id + b"\x00\x01\x00\x00\x00\x00\x01\x03\x00"
                  + struct.pack("<i", 2)))
    drain()
    s.sendall(pkt(0, b"\x19" + stmt_id))
    s.sendall(pkt(0, b"\x0e"))
    drain()
    s.sendall(pkt(0, b"\x01"))
    s.close()
    p.close()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 13307
    setup(port)
    cli_session(port)
    python_session(port)
    raw_session(port)
