#!/usr/bin/env python3
"""Records real DNS traffic (dig and glibc's getaddrinfo against dnsmasq) as a golden capture.

A small UDP+TCP proxy on 127.77.0.8:53 sits between the clients and a private dnsmasq on
127.77.0.9:53 and writes every message it forwards as one record:

    direction  1 byte   b'C' client->server, b'S' server->client
    transport  1 byte   b'U' (one datagram) or b'T' (one recv() of a TCP stream)
    flow       u32 LE   the client's source port (one UDP socket or one TCP connection)
    timestamp  u64 LE   time.monotonic_ns()
    length     u32 LE
    bytes

A TCP record is one recv() as the proxy saw it, so length prefixes and messages may be split or
joined the way a socket reader really sees them.

Usage (root: port 53 and a private mount namespace for /etc/resolv.conf):
    python3 capture.py            # writes dig_glibc.bin next to this file
Then regenerate the goldens: UPDATE_GOLDEN=1 cargo test -p ebpf-receiver --lib dns::tests::golden
"""

import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = "127.77.0.8"
SERVER = "127.77.0.9"
DOMAIN = "e2e.test"


class Recorder:
    def __init__(self, path):
        self.out = open(path, "wb")
        self.lock = threading.Lock()

    def record(self, direction, transport, flow, data):
        with self.lock:
            self.out.write(
                direction + transport + struct.pack("<IQI", flow, time.monotonic_ns(), len(data)) + data
            )
            self.out.flush()


def udp_proxy(rec, stop):
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind((PROXY, 53))
    upstream = {}  # client addr -> socket towards dnsmasq
    back = {}  # upstream socket -> client addr
    while not stop.is_set():
        ready, _, _ = select.select([front, *back.keys()], [], [], 0.1)
        for s in ready:
            if s is front:
                data, client = front.recvfrom(65535)
                up = upstream.get(client)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.connect((SERVER, 53))
                    upstream[client] = up
                    back[up] = client
                rec.record(b"C", b"U", client[1], data)
                up.send(data)
            else:
                data = s.recv(65535)
                client = back[s]
                rec.record(b"S", b"U", client[1], data)
                front.sendto(data, client)
    front.close()


def tcp_pump(rec, src, dst, direction, flow):
    try:
        while True:
            data = src.recv(65535)
            if not data:
                break
            rec.record(direction, b"T", flow, data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def tcp_proxy(rec, stop):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((PROXY, 53))
    listener.listen(16)
    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            client, addr = listener.accept()
        except socket.timeout:
            continue
        server = socket.create_connection((SERVER, 53))
        for args in ((client, server, b"C", addr[1]), (server, client, b"S", addr[1])):
            threading.Thread(target=tcp_pump, args=(rec, *args), daemon=True).start()
    listener.close()


def dnsmasq():
    args = [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--no-poll", "--bind-interfaces", f"--listen-address={SERVER}", "--port=53",
        "--user=root", "--pid-file=", f"--local=/{DOMAIN}/",
        f"--host-record=web.{DOMAIN},10.1.2.3,fd00::1:2:3",
        f"--host-record=v4only.{DOMAIN},10.1.2.4",
        f"--cname=alias.{DOMAIN},web.{DOMAIN}",
        f"--txt-record=txt.{DOMAIN},e2e-txt-record",
    ] + [f"--address=/many.{DOMAIN}/10.2.0.{i}" for i in range(1, 61)]
    p = subprocess.Popen(args)
    time.sleep(0.5)
    return p


def main():
    out = os.path.join(HERE, "dig_glibc.bin")
    rec = Recorder(out)
    server = dnsmasq()
    stop = threading.Event()
    threads = [threading.Thread(target=f, args=(rec, stop), daemon=True) for f in (udp_proxy, tcp_proxy)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    try:
        dig = ["dig", f"@{PROXY}", "+tries=1", "+time=3"]
        for args in (
            [f"web.{DOMAIN}", "A"],
            [f"web.{DOMAIN}", "AAAA"],
            [f"alias.{DOMAIN}", "A"],
            [f"txt.{DOMAIN}", "TXT", "+tcp"],
            [f"missing.{DOMAIN}", "A"],
            [f"many.{DOMAIN}", "A", "+noedns", "+ignore"],
            [f"web.{DOMAIN}", "A", "+tcp", "+noedns"],
        ):
            subprocess.run(dig + args, check=True, stdout=subprocess.DEVNULL)
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
            conf.write(f"nameserver {PROXY}\noptions attempts:1 timeout:2\n")
        script = (
            "import socket\n"
            f"for n in ['web.{DOMAIN}', 'many.{DOMAIN}', 'missing.{DOMAIN}']:\n"
            "    try: socket.getaddrinfo(n, None)\n"
            "    except OSError: pass\n"
        )
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount --bind "$0" /etc/resolv.conf && exec "$@"', conf.name,
             sys.executable, "-c", script],
            check=True,
        )
        os.unlink(conf.name)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.terminate()
        server.wait()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
