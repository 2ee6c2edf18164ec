"""Hostile clients and origins (the hardening/ tests): request loops, interim-response
floods, and sockets that hang up while the daemon cannot move bytes. Each test runs
its own daemon and checks a figure: connections accepted, memory grown, CPU used."""

import os
import socket
import subprocess
import threading
import time

import peers
from cases import Skip
from httpclient import Client, connect_head

A = "127.0.0.1"
CPU_WINDOW_S = 3.0
CPU_MAX = 0.10          # share of one core the daemon may use while nothing can move
RSS_MAX_GROWTH = 32 << 20


def cpu_seconds(pid):
    """utime + stime of @pid in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, window=CPU_WINDOW_S):
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    return 0


def stat(d, key):
    r = d.ctl("stats")
    for line in r.stdout.decode().splitlines():
        k, _, v = line.partition("\t")
        if k == key:
            return int(v)
    raise AssertionError("tunnelctl stats has no %s: %r" % (key, r.stdout[:300]))


def read_status(c, timeout=5.0):
    r = c.read_head(timeout)
    return r.status


class Origin:
    """A TCP origin whose handler gets (socket, request bytes) once a head arrived."""

    def __init__(self, handler, wait_head=True):
        self.handler = handler
        self.wait_head = wait_head  # False: a tunnel's origin, which gets no head
        self.sock = socket.socket()
        self.sock.bind((A, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop_at = time.monotonic() + 60
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        self.sock.settimeout(0.2)
        while time.monotonic() < self.stop_at:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(10)
        data = b""
        try:
            while self.wait_head and b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            self.handler(c, data)
        except OSError:
            pass

    def close(self):
        self.stop_at = 0
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


def daemon(env, name, relay="auto", pools=None, extra=None, default="direct", host=A,
           proc_env=None):
    pools = pools or [("direct", ["direct = yes"])]
    return peers.Daemon(env.tmp, name, relay, pools, default=default, extra=extra, host=host,
                        env=proc_env)


# ---------------------------------------------------------------- loops


def t_loop_plain_self(env):
    """A plain request whose Host is the gateway itself: 508, and no connection to itself."""
    d = daemon(env, "tg-loop-plain")
    try:
        base = stat(d, "accepted")  # the start-up probe
        with Client(d.port) as c:
            c.send(("GET http://%s:%d/ HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (A, d.port, A, d.port)).encode())
            st = read_status(c)
        accepted = stat(d, "accepted") - base
        if st != 508 or accepted != 1:
            raise AssertionError("GET to the gateway's own address: status %s, %d connections "
                                 "accepted (want 508 and 1)" % (st, accepted))
        with Client(d.port) as c:
            c.send(connect_head(A, d.port))
            st = read_status(c)
        if st != 508 or stat(d, "accepted") - base != 2:
            raise AssertionError("CONNECT to the gateway's own address: status %s, %d accepted" % (
                st, stat(d, "accepted") - base))
        return "plain and CONNECT to itself: 508, 1 connection each"
    finally:
        d.stop()


def t_loop_wildcard(env):
    """Listening on 0.0.0.0: any local address on that port is the gateway too."""
    d = daemon(env, "tg-loop-any", host="0.0.0.0")
    try:
        base = stat(d, "accepted")
        for target in ("127.0.0.2", "127.0.0.1", "0.0.0.0"):
            with Client(d.port, host=A) as c:
                c.send(connect_head(target, d.port))
                st = read_status(c)
            if st != 508:
                raise AssertionError("CONNECT %s:%d to a gateway on 0.0.0.0:%d answered %s, want 508" % (
                    target, d.port, d.port, st))
        if stat(d, "accepted") - base != 3:
            raise AssertionError("%d connections accepted for 3 requests" % (stat(d, "accepted") - base))
        return "127.0.0.2, 127.0.0.1 and 0.0.0.0 on the listen port: 508"
    finally:
        d.stop()


def t_loop_via(env):
    """A request whose Via names this gateway has been here before: 508; CONNECT
    requests to a proxy carry Via; a chain of two gateways is not a loop."""
    heads = []

    def proxy(c, data):  # a CONNECT proxy that records the head and echoes
        heads.append(data.decode(errors="replace"))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        while True:
            b = c.recv(65536)
            if not b:
                return
            c.sendall(b)

    o = Origin(proxy)
    back = daemon(env, "tg-via-back", pools=[("up", ["server = %s:%d" % (A, o.port)])], default="up",
                  extra={"via_name": "back-gw"})
    front = daemon(env, "tg-via-front", pools=[("up", ["server = %s:%d" % (A, back.port)])],
                   default="up", extra={"via_name": "front-gw"})
    try:
        with Client(front.port) as c:
            c.send(connect_head("192.0.2.1", 443))
            st = read_status(c)
            if st != 200:
                raise AssertionError("CONNECT through two gateways answered %s, want 200" % st)
            c.send(b"ping")
            if c.recv_exact(4, 5.0) != b"ping":
                raise AssertionError("no echo through two gateways")
        if not heads or "Via: 1.1 front-gw\r\n" not in heads[0] or "Via: 1.1 back-gw\r\n" not in heads[0]:
            raise AssertionError("the proxy behind two gateways got %r, want both Via lines" % heads[:1])
        with Client(back.port) as c:
            c.send(connect_head("192.0.2.1", 443, ["Via: 1.0 other, 1.1 Back-GW (tunnelgate)"]))
            st = read_status(c)
        if st != 508:
            raise AssertionError("CONNECT with Via naming this gateway answered %s, want 508" % st)
        return "2-gateway chain works, proxy saw both Via lines; own Via: 508"
    finally:
        front.stop()
        back.stop()
        o.close()


# ---------------------------------------------------------------- interim floods


def t_interim_flood_unread(env):
    """An origin floods 100 Continue at a client that does not read: memory stays bounded."""
    stop = time.monotonic() + 4

    def flood(c, data):
        c.settimeout(0.5)
        head = b"HTTP/1.1 100 Continue\r\n\r\n" * 64
        while time.monotonic() < stop:
            try:
                c.sendall(head)
            except socket.timeout:
                continue

    o = Origin(flood)
    d = daemon(env, "tg-interim")
    try:
        rss0 = rss_bytes(d.pid)
        c = socket.create_connection((A, d.port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(("GET /x HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (A, o.port)).encode())
        peak = 0
        while time.monotonic() < stop:
            peak = max(peak, rss_bytes(d.pid) - rss0)
            time.sleep(0.2)
        c.close()
        if not d.alive():
            raise AssertionError("daemon died")
        if peak > RSS_MAX_GROWTH:
            raise AssertionError("daemon memory grew %.1f MiB in 4 s (allowed %d)" % (
                peak / 2**20, RSS_MAX_GROWTH >> 20))
        return "memory grew at most %.1f MiB in 4 s" % (peak / 2**20)
    finally:
        d.stop()
        o.close()


def t_interim_bare_heads(env):
    """16 KiB of bare 100 Continue heads at once: relayed up to the cap, then 502."""
    def burst(c, data):
        c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 600)
        time.sleep(2)

    o = Origin(burst)
    d = daemon(env, "tg-interim-burst")
    try:
        with Client(d.port) as c:
            c.send(("GET /x HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (A, o.port)).encode())
            n, st = 0, None
            while st is None or st == 100:
                st = read_status(c)
                n += st == 100
            if not d.alive():
                raise AssertionError("daemon died (rc=%s)" % d.proc.p.poll())
            if st != 502 or n != 16:
                raise AssertionError("got %d interim heads then %s, want 16 then 502" % (n, st))
        return "16 interim heads relayed, then 502; daemon alive"
    finally:
        d.stop()
        o.close()


# ---------------------------------------------------------------- no spinning


def pieces_then_close(c, data):
    """300 pieces of 1000 bytes, each its own segment, then FIN: more than the pipe's
    slots and the client's buffers take, little enough that the FIN arrives."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.settimeout(5)
    try:
        for _ in range(300):
            c.sendall(b"z" * 1000)
            time.sleep(0.0005)
    except OSError:
        pass
    c.close()


def small_writes(c, data):
    """1000-byte segments, each its own skb: a pipe takes a page per piece."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.settimeout(0.2)
    stop = time.monotonic() + 6
    while time.monotonic() < stop:
        try:
            c.sendall(b"x" * 1000)
            time.sleep(0.0005)
        except socket.timeout:
            time.sleep(0.01)
        except OSError:
            return


def spin_case(env, relay, handler, fin):
    o = Origin(handler, wait_head=False)
    d = daemon(env, "tg-spin-%s" % relay, relay=relay)
    try:
        c = socket.create_connection((A, d.port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(connect_head(A, o.port))
        if fin:
            c.shutdown(socket.SHUT_WR)
        time.sleep(1.0)  # let the buffers fill
        share = cpu_share(d.pid)
        c.close()
        return share
    finally:
        d.stop()
        o.close()


def t_no_spin(env, relay):
    """Nothing can move (the client does not read): the daemon must sleep, not spin."""
    out = []
    for what, handler, fin in (("CONNECT+FIN, origin sends 300 x 1000 bytes and closes",
                                pieces_then_close, True),
                               ("origin writes 1000-byte pieces", small_writes, False)):
        share = spin_case(env, relay, handler, fin)
        if share > CPU_MAX:
            raise AssertionError("%s relay, %s: daemon used %.0f%% of a core over %.0f s "
                                 "(allowed %.0f%%)" % (relay, what, share * 100, CPU_WINDOW_S,
                                                       CPU_MAX * 100))
        out.append("%s: %.1f%% CPU" % (what, share * 100))
    return "; ".join(out)


def t_hup_while_client_full(env):
    """A plain response's origin hangs up while the client's buffer is full: no spin."""
    def big_then_close(c, data):
        body = b"y" * (16 << 20)
        c.settimeout(5)
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
        c.close()

    o = Origin(big_then_close)
    d = daemon(env, "tg-hup-full")
    try:
        c = socket.create_connection((A, d.port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(("GET /x HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (A, o.port)).encode())
        time.sleep(1.0)
        share = cpu_share(d.pid)
        c.close()
        if share > CPU_MAX:
            raise AssertionError("origin hung up while the client buffer was full: daemon used "
                                 "%.0f%% of a core" % (share * 100))
        return "%.1f%% CPU" % (share * 100)
    finally:
        d.stop()
        o.close()


def build_shim(tmp):
    out = os.path.join(tmp, "faultshim.so")
    if not os.path.exists(out):
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faultshim.c")
        r = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", out, src, "-ldl"],
                           capture_output=True)
        if r.returncode:
            raise Skip("cannot build the fault shim: %s" % r.stderr.decode()[:200])
    return out


def t_retry_resends_exactly(env):
    """The first proxy resets the connection as the CONNECT goes out: the next one gets
    the same head once, then the client's early bytes once, in order."""
    got = []

    def recorder(c, data):
        got.append(bytearray(data))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        c.settimeout(3)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                got[-1] += b
        except OSError:
            pass

    bad = Origin(lambda c, data: time.sleep(3))
    good = Origin(recorder)
    pools = [("rr", ["balance = roundrobin", "server = %s:%d" % (A, bad.port),
                     "server = %s:%d" % (A, good.port)])]
    d = daemon(env, "tg-retry", pools=pools, default="rr", extra={"via_name": "gw-retry"},
               proc_env={"LD_PRELOAD": build_shim(env.tmp), "TG_FAULT_PORT": str(bad.port)})
    try:
        with Client(d.port) as c:
            c.send(connect_head("192.0.2.7", 443) + b"EARLY")
            st = read_status(c)
            if st != 200:
                raise AssertionError("CONNECT answered %s after the first proxy failed, want 200" % st)
            c.send(b"LATE")
            time.sleep(0.5)
        want = (b"CONNECT 192.0.2.7:443 HTTP/1.1\r\nHost: 192.0.2.7:443\r\n"
                b"Via: 1.1 gw-retry\r\n\r\nEARLYLATE")
        if len(got) != 1 or bytes(got[0]) != want:
            raise AssertionError("the second proxy got %r, want %r" % ([bytes(g) for g in got], want))
        if not any("trying another server" in l for l in d.tail(50)):
            raise AssertionError("the first send did not fail: the shim did not act")
        return "second proxy got the head and early bytes once, in order"
    finally:
        d.stop()
        bad.close()
        good.close()


def tests(env):
    return [
        ("loop_plain_and_connect_to_self_508", lambda: t_loop_plain_self(env)),
        ("loop_wildcard_listener_508", lambda: t_loop_wildcard(env)),
        ("loop_via_508_and_two_gateway_chain", lambda: t_loop_via(env)),
        ("interim_flood_unread_memory_bounded", lambda: t_interim_flood_unread(env)),
        ("interim_burst_capped_502", lambda: t_interim_bare_heads(env)),
        ("no_spin_splice", lambda: t_no_spin(env, "splice")),
        ("no_spin_sockmap", lambda: t_no_spin(env, "sockmap")),
        ("no_spin_hup_while_client_full", lambda: t_hup_while_client_full(env)),
        ("retry_resends_head_and_early_bytes_once", lambda: t_retry_resends_exactly(env)),
    ]


def run_hardening(runner, env, skip_reason=None):
    for n, fn in tests(env):
        name = "hardening/%s" % n
        if skip_reason:
            runner.skip(name, skip_reason)
        else:
            runner.run(name, fn)
