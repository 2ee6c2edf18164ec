#!/usr/bin/env python3
"""A userspace stand-in for tunnelgated, used only to test the test suite
itself (TG_DAEMON=tests/integration/mock_tunnelgated.py
TG_CTL=tests/integration/mock_tunnelgated.py run.py -k splice/).
Thread-per-connection relay, no BPF. As the CLI: mock_tunnelgated.py -s SOCK list --json.
"""

import json
import os
import signal
import socket
import struct
import sys
import threading
import time

BREAK = os.environ.get("MOCK_BREAK", "")  # break on purpose, to see the tests fail
tunnels = {}
lock = threading.Lock()
next_id = [1]


def die(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


KEYS = {"gateway": {"listen", "relay", "control", "bpf_pin_dir", "connect_ports", "header_timeout_ms",
                    "connect_timeout_ms", "idle_timeout_ms", "drain_timeout_ms", "max_header_bytes",
                    "access_log"},
        "pool": {"balance", "server", "direct"}, "rule": {"host", "action", "path_prefix",
                                                          "client_in", "client_not_in", "method"},
        "route": {"default"}}


def parse(path):
    gw, pools, rules, route, sect = {}, {}, [], {}, None
    for no, line in enumerate(open(path), 1):
        line = line.split(";")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            parts = line.strip("[]").split()
            sect = parts
            if parts[0] == "pool":
                pools[parts[1]] = {"servers": [], "direct": False, "rr": 0}
            elif parts[0] == "rule":
                rules.append({})
            continue
        k, _, v = line.partition("=")
        k, v = k.strip(), v.strip()
        if k not in KEYS.get(sect[0], ()):
            die("%s:%d: unknown key '%s' in [%s]" % (path, no, k, " ".join(sect)))
        if sect[0] == "gateway":
            gw[k] = v
        elif sect[0] == "pool":
            p = pools[sect[1]]
            if k == "server":
                h, _, po = v.split()[0].rpartition(":")
                p["servers"].append((h, int(po)))
            elif k == "direct":
                p["direct"] = v == "yes"
        elif sect[0] == "rule":
            rules[-1][k] = v
        else:
            route[k] = v
    return gw, pools, rules, route


def reply(c, status, reason):
    body = ("%d %s\n" % (status, reason)).encode()
    c.sendall(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n" % (status, reason.encode(), len(body)) + body)


def read_head(s, buf, limit, deadline):
    while b"\r\n\r\n" not in buf:
        if len(buf) > limit:
            return None, buf, "big"
        left = deadline - time.monotonic()
        if left <= 0:
            return None, buf, "timeout"
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return None, buf, "timeout"
        except OSError:
            return None, buf, "eof"
        if not d:
            return None, buf, "eof"
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    if len(head) > limit:
        return None, buf, "big"
    return head, rest, None


def pump(src, dst, t, key, done):
    try:
        src.settimeout(None)
        while True:
            d = src.recv(1 << 18)
            if not d:
                if BREAK != "nofin":
                    dst.shutdown(socket.SHUT_WR)
                break
            dst.sendall(d)
            with lock:
                t[key] += len(d) + (BREAK == "count")
    except OSError:
        for s in (src, dst):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    done.release()


def handle(c, addr, cfg):
    gw, pools, rules, route = cfg
    limit = int(gw.get("max_header_bytes", 16384))
    buf = b""
    try:
        while True:
            head, buf, err = read_head(c, buf, limit, time.monotonic() + int(gw["header_timeout_ms"]) / 1000)
            if err == "big":
                return reply(c, 431, "Request Header Fields Too Large")
            if err == "timeout":
                return reply(c, 408, "Request Timeout")
            if err:
                return
            line = head.split(b"\r\n")[0].decode()
            m, target, _ = line.split(" ", 2)
            host, _, port = target.rpartition(":")
            if not host or not port.isdigit():
                reply(c, 400, "Bad Request")
                continue
            cp = gw.get("connect_ports", "443")
            if cp != "*" and int(port) not in [int(x) for x in cp.split(",")]:
                reply(c, 403, "Forbidden")
                continue
            pname = route.get("default")
            for r in rules:
                if r.get("host") == host:
                    pname = r["action"].split()[1]
                    break
            pool = pools[pname]
            cto = int(gw["connect_timeout_ms"]) / 1000
            up, upstream = None, "direct"
            try:
                if pool["direct"]:
                    up = socket.create_connection((host, int(port)), timeout=cto)
                else:
                    srv = pool["servers"]
                    for i in range(min(2, len(srv))):
                        h, p = srv[pool["rr"] % len(srv)]
                        pool["rr"] += 1
                        try:
                            up = socket.create_connection((h, p), timeout=cto)
                            upstream = "%s:%d" % (h, p)
                            break
                        except ConnectionRefusedError:
                            continue
                    if up is None:
                        reply(c, 502, "Bad Gateway")
                        continue
            except socket.timeout:
                reply(c, 504, "Gateway Timeout")
                continue
            except OSError:
                reply(c, 502, "Bad Gateway")
                continue
            pre = b""
            if upstream != "direct":
                up.sendall(head + b"\r\n\r\n")
                rhead, rest, err = read_head(up, b"", limit, time.monotonic() + 5)
                if err:
                    return reply(c, 502, "Bad Gateway")
                st = int(rhead.split(b" ")[1])
                if not 200 <= st < 300:
                    while True:
                        d = up.recv(65536)
                        if not d:
                            break
                        rest += d
                    up.close()
                    lines = [l for l in rhead.split(b"\r\n") if not l.lower().startswith(b"connection")]
                    c.sendall(b"\r\n".join(lines) + b"\r\nContent-Length: %d\r\n\r\n" % len(rest) + rest)
                    continue
                c.sendall(rhead + b"\r\n\r\n")
                pre = rest
            else:
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with lock:
                tid = next_id[0]
                next_id[0] += 1
                t = {"id": tid, "client": "%s:%d" % addr, "upstream": upstream, "target": target,
                     "relay": gw.get("relay", "splice"), "bytes_up": 0, "bytes_down": 0,
                     "start": time.monotonic()}
                tunnels[tid] = t
            if buf and BREAK != "nopipe":
                up.sendall(buf)
                t["bytes_up"] += len(buf)
            if pre:
                c.sendall(pre)
                t["bytes_down"] += len(pre)
            done = threading.Semaphore(0)
            threading.Thread(target=pump, args=(c, up, t, "bytes_up", done), daemon=True).start()
            threading.Thread(target=pump, args=(up, c, t, "bytes_down", done), daemon=True).start()
            done.acquire()
            done.acquire()
            up.close()
            with lock:
                del tunnels[tid]
            return
    except OSError:
        pass
    finally:
        c.close()


def control(path):
    if os.path.exists(path):
        os.unlink(path)
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(8)
    while True:
        c, _ = ls.accept()
        c.recv(100)
        now = time.monotonic()
        with lock:
            out = [dict({k: v for k, v in t.items() if k != "start"}, age_ms=int((now - t["start"]) * 1000),
                        idle_ms=0) for t in tunnels.values()]
        c.sendall(json.dumps(out).encode())
        c.close()


def main():
    if "-s" in sys.argv:  # CLI mode
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[sys.argv.index("-s") + 1])
        s.sendall(b"list\n")
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
        print(out.decode())
        return 0
    path = sys.argv[sys.argv.index("-c") + 1]
    cfg = parse(path)
    gw = cfg[0]
    pin = gw["bpf_pin_dir"]
    os.makedirs(pin, exist_ok=True)

    def term(*a):
        os.rmdir(pin)
        os._exit(0)

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    h, _, p = gw["listen"].rpartition(":")
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((h, int(p)))
    ls.listen(128)
    threading.Thread(target=control, args=(gw["control"],), daemon=True).start()
    sys.stderr.write("mock tunnelgated listening on %s\n" % gw["listen"])
    while True:
        c, addr = ls.accept()
        threading.Thread(target=handle, args=(c, addr, cfg), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
