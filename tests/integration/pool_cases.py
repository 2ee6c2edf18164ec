"""Upstream pools (issue 13): health checks and passive ejection against real
tinyproxy servers and three kinds of bad ones, maxconn with a queue, the PROXY
protocol to squid and from an L4 tier in front, drain, a reload under traffic,
and action = tunnel. Each test runs its own daemon and its own proxies; every
socket is on 127.0.0.0/8.

Ground truth comes from outside the daemon where it can: the echo bytes, squid's
access log, a counting relay in front of tinyproxy (maxconn), the origin's bytes
(action = tunnel). `tunnelctl pools` (columns of the spec, COLS) gives states,
picks and queue lengths."""

import hashlib
import os
import re
import select
import selectors
import socket
import struct
import threading
import time

import peers
from cases import ADDRS
from httpclient import Client, connect_head

A = "127.0.0.1"
COLS = ["pool", "balance", "server", "weight", "active", "picks", "failures", "state", "maxconn",
        "queued", "check_last"]
MIB = 1 << 20


# ---------------------------------------------------------------- helpers


class Tap:
    """Stands in for the daemon whose log runner.run() shows: the one the test
    starts itself (tap.start()). A daemon the test stopped is not 'dead'."""

    def __init__(self):
        self.d = None
        self.died = False

    def start(self, env, name, pools, rules=(), default="direct", **kw):
        self.d = peers.Daemon(env.tmp, name, "auto", pools, rules, default=default, **kw)
        return self.d

    def stop(self):
        if self.d:
            self.died = self.died or not self.d.alive()
            self.d.stop()

    # what runner.run() calls
    def log_size(self):
        return 0

    def tail(self, n=30, offset=0):
        return self.d.tail(n, offset) if self.d else []

    def alive(self):
        return not self.died and (self.d is None or self.d.alive() or self.d.proc.rc is not None)

    @property
    def proc(self):
        return self.d.proc


def pools(d):
    """Lines of `tunnelctl pools` as dicts keyed by COLS (a header line is skipped)."""
    r = d.ctl("pools")
    if r.returncode != 0:
        raise AssertionError("tunnelctl pools exited %d: %s" % (
            r.returncode, r.stderr.decode(errors="replace").strip()))
    out = []
    for line in r.stdout.decode().splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[2].lower() != "server":
            out.append(dict(zip(COLS, f)))
    return out


def row(d, pool, server):
    for r in pools(d):
        if r["pool"] == pool and r["server"] == server:
            return r
    raise AssertionError("tunnelctl pools has no line for server %s of pool %s: %r" % (
        server, pool, pools(d)))


def column(d, pool, col, conv=str):
    """{server: value of @col} of @pool; AssertionError when the column is missing."""
    out = {}
    for r in pools(d):
        if r["pool"] != pool:
            continue
        if col not in r:
            raise AssertionError("tunnelctl pools has no %s column (%d columns: %r)" % (
                col, len(r), "\t".join(r.values())))
        out[r["server"]] = conv(r[col])
    return out


def states(d, pool):
    return column(d, pool, "state")


def ints(d, pool, col):
    return column(d, pool, col, int)


def queued(d, pool):
    """The queued column of @pool (the same on all of its lines)."""
    v = column(d, pool, "queued", int)
    return max(v.values()) if v else 0


def wait_for(pred, timeout, step=0.02):
    """Seconds until pred() was true, or None when timeout passed first."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(step)


def srv(port):
    return "%s:%d" % (A, port)


def client(port, src=None, timeout=peers.IO_TIMEOUT):
    """A Client to the gateway on @port, from source address @src if given."""
    if src is None:
        return Client(port, timeout=timeout)
    c = Client.__new__(Client)
    c.sock = socket.socket()
    c.sock.settimeout(timeout)
    c.buf = bytearray()
    c.sock.bind((src, 0))
    c.sock.connect((A, port))
    return c


def echo_once(port, target, n=4096, src=None, timeout=5.0):
    """One CONNECT to @target through the gateway, @n bytes echoed. None, or why it failed."""
    try:
        with client(port, src) as c:
            c.send(connect_head(*target))
            r = c.read_head(timeout)
            if r.status != 200:
                return "CONNECT answered %r" % r
            msg = os.urandom(n)
            c.send(msg)
            if c.recv_exact(n, timeout) != msg:
                return "echo differs"
    except (AssertionError, OSError) as e:
        return "%s: %s" % (type(e).__name__, e)
    return None


def tinyproxy(env, name, *ports, port=None):
    env.need("tinyproxy")
    return peers.Tinyproxy(env.tmp, name, ports, port=port)


def log_has(d, pattern, off=0):
    rx = re.compile(pattern)
    return any(rx.search(l) for l in d.tail(100000, off))


def log_time(d, pattern, off=0):
    """The timestamp (s since the epoch) of the first log line matching @pattern, or None."""
    import datetime
    rx = re.compile(pattern)
    for l in d.tail(100000, off):
        if rx.search(l):
            try:
                t = datetime.datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            except (ValueError, IndexError):
                return None
            return t.replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def closed_port():
    """A port nothing listens on (bound a moment ago, then closed): connect is refused."""
    return peers.free_port()


class Blackhole:
    """Accepts TCP (the kernel completes the handshake into the backlog) and never
    answers: the listener is never accept()ed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((A, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]

    def stop(self):
        self.sock.close()


BAD_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 14\r\nConnection: close\r\n\r\nbad-proxy-503\n")


def h_503(c, server):
    """A proxy that answers 503 to every request."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(65536)
        if not d:
            return
        data += d
    c.sendall(BAD_503)


class CountingRelay:
    """A TCP relay in front of a proxy: counts the connections the gateway opens
    through it and the most open at once. A connection counts from accept until the
    gateway's side reaches EOF; the gateway frees a maxconn slot only after it sent
    that FIN, so a relay that sees EOF first (below) never over-counts."""

    def __init__(self, to_port):
        self.to_port = to_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((A, 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.accepted = self.open = self.peak = 0
        self.errors = []
        self._stop = False
        self._gw = {}  # gateway-side socket -> [upstream socket, gateway EOF, upstream EOF]
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _gw_eof(self, g):
        st = self._gw[g]
        if not st[1]:
            st[1] = True
            self.open -= 1
            try:
                st[0].shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _close(self, sel, g):
        st = self._gw.pop(g)
        if not st[1]:
            self.open -= 1
        for s in (g, st[0]):
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _accept(self, sel):
        g, _ = self.ls.accept()
        # A slot freed by a close the loop has not read yet must not count.
        for og, st in list(self._gw.items()):
            if not st[1]:
                try:
                    # select first: a socket with a timeout waits in recv() even with MSG_DONTWAIT
                    if select.select([og], [], [], 0)[0] and og.recv(1, socket.MSG_PEEK) == b"":
                        self._gw_eof(og)
                except OSError:
                    pass
        try:
            u = socket.create_connection((A, self.to_port), timeout=2)
        except OSError as e:
            self.errors.append("relay cannot reach %d: %s" % (self.to_port, e))
            g.close()
            return
        g.settimeout(5)
        u.settimeout(5)
        self._gw[g] = [u, False, False]
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        sel.register(g, selectors.EVENT_READ, ("g", g))
        sel.register(u, selectors.EVENT_READ, ("u", g))

    def _move(self, sel, side, g):
        st = self._gw.get(g)
        if st is None:
            return
        src, dst = (g, st[0]) if side == "g" else (st[0], g)
        try:
            data = src.recv(1 << 16)
        except OSError:
            data = None
        if data:
            try:
                dst.sendall(data)
                return
            except OSError:
                data = None
        if data is None:  # reset or a send failure: both go
            self._close(sel, g)
            return
        sel.unregister(src)
        if side == "g":
            self._gw_eof(g)
        else:
            st[2] = True
            try:
                g.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if st[1] and st[2]:
            self._close(sel, g)

    def _loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.ls, selectors.EVENT_READ, None)
        while not self._stop:
            try:
                events = sel.select(0.1)
            except (OSError, ValueError):
                return
            # Reads (and so EOFs) before accepts: a FIN that came before a SYN counts first.
            events.sort(key=lambda e: e[0].data is None)
            for key, _ in events:
                if self._stop:
                    return
                if key.data is None:
                    self._accept(sel)
                else:
                    self._move(sel, *key.data)

    def stop(self):
        self._stop = True
        self._t.join(1)
        self.ls.close()
        for g, st in list(self._gw.items()):
            g.close()
            st[0].close()


class Stack:
    """Things to stop at the end of a test, in reverse order."""

    def __init__(self):
        self.items = []

    def add(self, x):
        self.items.append(x)
        return x

    def stop(self):
        for x in reversed(self.items):
            try:
                (getattr(x, "stop", None) or x.close)()
            except Exception:
                pass


# ---------------------------------------------------------------- health


def t_failover(env, tap):
    """Two good tinyproxies and three bad servers (refused, accepts and never answers,
    answers 503) with check = http_connect: all three bad ones go down within `fall`
    checks, then 100 CONNECTs have 0 failures; a bad one made good comes back after `rise`."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        t1 = st.add(tinyproxy(env, "tp-fo-1", echo.port))
        t2 = st.add(tinyproxy(env, "tp-fo-2", echo.port))
        refused = closed_port()
        hole = st.add(Blackhole())
        s503 = st.add(peers.TcpServer("fo-503", h_503))
        good = [srv(t1.port), srv(t2.port)]
        bad = {"refused": srv(refused), "no-answer": srv(hole.port), "503": srv(s503.port)}
        interval, fall, rise = 200, 2, 2
        servers = ["server = %s" % s for s in good + list(bad.values())]
        lines = ["balance = roundrobin"] + servers + [
            "check = http_connect", "check_target = %s:%d" % (A, echo.port),
            "check_interval_ms = %d" % interval, "check_timeout_ms = 300",
            "fall = %d" % fall, "rise = %d" % rise]
        t0 = time.monotonic()
        d = tap.start(env, "tg-pool-failover", [("px", lines)], default="px")
        down_at = {}
        deadline = t0 + 8
        while time.monotonic() < deadline and len(down_at) < 3:
            s = states(d, "px")
            for k, a in bad.items():
                if k not in down_at and s.get(a, "").startswith("down"):
                    down_at[k] = time.monotonic() - t0
            time.sleep(0.02)
        s = states(d, "px")
        if len(down_at) < 3:
            raise AssertionError("8 s after start, bad servers not down: %s (states %r)" % (
                ", ".join(k for k in bad if k not in down_at), s))
        if any(s.get(a) != "up" for a in good):
            raise AssertionError("a good tinyproxy is not up: %r" % s)
        last = column(d, "px", "check_last")
        want_last = {"refused": "refus", "no-answer": "timeout", "503": "503"}
        wrong = {k: last.get(bad[k]) for k, w in want_last.items() if w not in last.get(bad[k], "")}
        if wrong:
            raise AssertionError("check_last of the bad servers: %r, want refused / timeout / "
                                 "status 503" % wrong)
        ready = log_time(d, r"listening on")
        logged = {}
        for k, a in bad.items():
            t = log_time(d, r"server %s is down" % re.escape(a))
            if t is None:
                raise AssertionError("no 'server %s is down' line in the log (%s)" % (a, k))
            logged[k] = t - ready if ready else float("nan")
        picks0 = ints(d, "px", "picks")
        fails = []
        lock = threading.Lock()

        def worker(n):
            for _ in range(n):
                why = echo_once(d.port, (A, echo.port), 4096)
                if why:
                    with lock:
                        fails.append(why)

        ths = [threading.Thread(target=worker, args=(25,), daemon=True) for _ in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(60)
        picks1 = ints(d, "px", "picks")
        dp = {a: picks1[a] - picks0[a] for a in picks1}
        if fails:
            raise AssertionError("%d of 100 CONNECTs failed with the bad servers down: %s" % (
                len(fails), "; ".join(sorted(set(fails))[:3])))
        if any(dp[a] for a in bad.values()) or any(dp[a] < 20 for a in good):
            raise AssertionError("picks during 100 CONNECTs: %r (bad servers must get none, each "
                                 "good one some)" % dp)
        # Recovery: a tinyproxy on the refused port.
        t3 = st.add(tinyproxy(env, "tp-fo-3", echo.port, port=refused))
        rec = wait_for(lambda: states(d, "px").get(bad["refused"]) == "up", 5)
        if rec is None:
            raise AssertionError("a tinyproxy on the refused port %d: still %r after 5 s (rise %d, "
                                 "interval %d ms)" % (t3.port, row(d, "px", bad["refused"]), rise,
                                                      interval))
        p0 = ints(d, "px", "picks")[bad["refused"]]
        fails2 = [w for w in (echo_once(d.port, (A, echo.port)) for _ in range(9)) if w]
        p1 = ints(d, "px", "picks")[bad["refused"]]
        if fails2 or p1 - p0 < 1:
            raise AssertionError("after recovery: %d failures (%s), the recovered server got %d "
                                 "of 9 picks" % (len(fails2), fails2[:2], p1 - p0))
        if not log_has(d, r"server %s is up" % re.escape(bad["refused"])):
            raise AssertionError("no 'server %s is up' line in the log" % bad["refused"])
        return ("down after %s s from daemon start (logged %s s after 'listening on'; check %d ms, "
                "timeout 300 ms, fall %d); 100 CONNECTs: 0 failures (good servers %d/%d picks); "
                "recovered (rise %d) %.2f s after the tinyproxy listened"
                % (" / ".join("%s %.2f" % (k, down_at[k]) for k in bad),
                   " / ".join("%.2f" % logged[k] for k in bad), interval, fall,
                   dp[good[0]], dp[good[1]], rise, rec))
    finally:
        tap.stop()
        st.stop()


def t_passive(env, tap):
    """check = none: a refused server goes down after `fall` client failures and gets no
    more; a proxy that answers 503 is relayed to the client and is never ejected."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        t1 = st.add(tinyproxy(env, "tp-pa-1", echo.port))
        refused = closed_port()
        s503 = st.add(peers.TcpServer("pa-503", h_503))
        common = ["check = none", "fall = 2", "check_interval_ms = 500"]
        pools_ = [("pa", ["server = %s" % srv(refused), "server = %s" % srv(t1.port)] + common),
                  ("pb", ["server = %s" % srv(s503.port)] + common)]
        d = tap.start(env, "tg-pool-passive", pools_, [("to-503", "127.0.0.2", "pb")], default="pa")
        before = []
        for i in range(10):
            why = echo_once(d.port, (A, echo.port))
            if why:
                before.append(why)
            if states(d, "pa").get(srv(refused), "").startswith("down"):
                break
        s = states(d, "pa")
        if not s.get(srv(refused), "").startswith("down"):
            raise AssertionError("after %d CONNECTs the refused server is %r, want down "
                                 "(fall 2)" % (i + 1, s))
        ejected_after = i + 1
        p0 = ints(d, "pa", "picks")[srv(refused)]
        after = [w for w in (echo_once(d.port, (A, echo.port)) for _ in range(20)) if w]
        p1 = ints(d, "pa", "picks")[srv(refused)]
        if after or p1 != p0:
            raise AssertionError("after the ejection: %d of 20 CONNECTs failed (%s), the refused "
                                 "server got %d picks" % (len(after), after[:2], p1 - p0))
        if states(d, "pa").get(srv(refused), "") != "down":
            raise AssertionError("the refused server came back up: %r" % states(d, "pa"))
        for i in range(5):
            with client(d.port) as c:
                c.send(connect_head("127.0.0.2", echo.port))
                r = c.read_head(5.0)
                body, _ = c.read_body(r, 5.0)
            if r.status != 503 or body != b"bad-proxy-503\n":
                raise AssertionError("CONNECT %d via the 503 proxy: %r body %r, want its 503 "
                                     "relayed" % (i + 1, r, body[:80]))
        s = states(d, "pb")
        if s.get(srv(s503.port)) != "up":
            raise AssertionError("5 answers of 503 ejected the proxy: state %r (a 5xx answer is "
                                 "never a passive failure)" % s)
        return ("refused server down after %d CONNECTs (%d client failures before, 0 after, over "
                "20); 5 relayed 503s left the 503 proxy up" % (ejected_after, len(before)))
    finally:
        tap.stop()
        st.stop()


def t_no_server_up(env, tap):
    """Every server down: 503 at once with Retry-After = ceil(check_interval_ms / 1000)."""
    echo = env.servers["echo"]
    r1, r2 = closed_port(), peers.free_port("127.0.0.2")
    lines = ["server = %s" % srv(r1), "server = 127.0.0.2:%d" % r2, "check = none", "fall = 1",
             "check_interval_ms = 2500"]
    try:
        d = tap.start(env, "tg-pool-noneup", [("dead", lines)], default="dead")
        first = []
        for _ in range(4):
            with client(d.port) as c:
                c.send(connect_head(A, echo.port))
                first.append(c.read_head(5.0).status)
            if first[-1] == 503:
                break
        s = states(d, "dead")
        if any(v != "down" for v in s.values()):
            raise AssertionError("after CONNECTs answered %r, states %r, want both down" % (
                first, s))
        times = []
        for req in (connect_head(A, echo.port), connect_head(A, echo.port),
                    ("GET http://%s:%d/ HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (
                        A, echo.port, A, echo.port)).encode()):
            with client(d.port) as c:
                t0 = time.monotonic()
                c.send(req)
                r = c.read_head(5.0)
                dt = time.monotonic() - t0
            times.append(dt)
            what = req.split(b" ")[0].decode()
            if r.status != 503 or r.headers.get("retry-after") != "3":
                raise AssertionError("%s with no server up: %r Retry-After %r, want 503 and 3 "
                                     "(check_interval_ms 2500)" % (
                                         what, r, r.headers.get("retry-after")))
            if dt > 0.1:
                raise AssertionError("%s with no server up: 503 after %.0f ms, want < 100" % (
                    what, dt * 1000))
        return "first answers %r; then 503 + Retry-After: 3 in %s ms" % (
            first, "/".join("%.1f" % (t * 1000) for t in times))
    finally:
        tap.stop()


# ---------------------------------------------------------------- maxconn and queue


def hold_tunnel(port, target, hold, out, i, start=None, release=None):
    """A tunnel that echoes 4 KiB, then stays open @hold s (or until @release is set)."""
    try:
        if start:
            start.wait(5)
        with client(port) as c:
            t0 = time.monotonic()
            c.send(connect_head(*target))
            r = c.read_head(10.0)
            out[i] = ["status", r.status, time.monotonic() - t0]
            if r.status != 200:
                return
            msg = os.urandom(4096)
            c.send(msg)
            if c.recv_exact(len(msg), 5.0) != msg:
                out[i] = ["echo differs"]
                return
            if release:
                release.wait(15)
            else:
                time.sleep(hold)
            out[i].append("ok")
    except (AssertionError, OSError) as e:
        out[i] = ["%s: %s" % (type(e).__name__, e)]


def t_maxconn(env, tap):
    """maxconn=2 with a queue: a relay in front of tinyproxy never sees more than 2 at
    once and all 6 tunnels succeed; with queue_max 1 the overflow gets 503 at once and
    the waiter 503 after queue_timeout_ms."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        t1 = st.add(tinyproxy(env, "tp-mc", echo.port))
        r8, r1 = st.add(CountingRelay(t1.port)), st.add(CountingRelay(t1.port))
        pools_ = [("q8", ["server = %s maxconn=2" % srv(r8.port), "queue_max = 8",
                          "queue_timeout_ms = 2000"]),
                  ("q1", ["server = %s maxconn=2" % srv(r1.port), "queue_max = 1",
                          "queue_timeout_ms = 2000"])]
        d = tap.start(env, "tg-pool-maxconn", pools_, [("to-q1", "127.0.0.2", "q1")], default="q8")
        out = [None] * 6
        go = threading.Event()
        ths = [threading.Thread(target=hold_tunnel, args=(d.port, (A, echo.port), 0.3, out, i, go),
                                daemon=True) for i in range(6)]
        for th in ths:
            th.start()
        go.set()
        max_q = max_active = 0
        while any(th.is_alive() for th in ths):
            max_q = max(max_q, queued(d, "q8"))
            max_active = max(max_active, ints(d, "q8", "active")[srv(r8.port)])
            time.sleep(0.02)
        bad = [o for o in out if not o or o[-1] != "ok"]
        if bad or r8.peak > 2 or r8.accepted != 6:
            raise AssertionError("6 tunnels at maxconn=2: %d failed (%s); the proxy saw %d at "
                                 "once, %d in all (want <= 2, 6)%s" % (
                                     len(bad), bad[:2], r8.peak, r8.accepted,
                                     "; relay: %s" % r8.errors[:1] if r8.errors else ""))
        if max_q < 1 or max_active > 2:
            raise AssertionError("tunnelctl pools while 6 wanted 2 slots: queued at most %d, "
                                 "active at most %d (want > 0 and <= 2)" % (max_q, max_active))
        waits = sorted(o[2] for o in out)
        # queue_max 1: two holders, one waiter, one turned away.
        hold = threading.Event()
        out2 = [None] * 3
        hs = [threading.Thread(target=hold_tunnel, args=(d.port, ("127.0.0.2", echo.port), 0, out2,
                                                         i, None, hold), daemon=True)
              for i in range(2)]
        for th in hs:
            th.start()
        if wait_for(lambda: all(o and o[0] == "status" for o in out2[:2]), 5) is None:
            raise AssertionError("2 holders under maxconn=2: %r" % out2[:2])
        if any(o[1] != 200 for o in out2[:2]):
            raise AssertionError("2 holders under maxconn=2 answered %r" % out2[:2])
        w = client(d.port)
        st.add(w.sock)
        w.send(connect_head("127.0.0.2", echo.port))
        tw = time.monotonic()
        if wait_for(lambda: queued(d, "q1") == 1, 1.0) is None:
            raise AssertionError("a 3rd client: queued %d, want 1" % queued(d, "q1"))
        with client(d.port) as o:
            t0 = time.monotonic()
            o.send(connect_head("127.0.0.2", echo.port))
            r = o.read_head(3.0)
            dt_over = time.monotonic() - t0
        if r.status != 503 or dt_over > 0.3:
            raise AssertionError("a 4th client with the queue full: %r after %.0f ms, want 503 at "
                                 "once" % (r, dt_over * 1000))
        r = w.read_head(5.0)
        dt_wait = time.monotonic() - tw
        if r.status != 503 or not 1.8 <= dt_wait <= 3.0:
            raise AssertionError("the waiter: %r after %.2f s, want 503 after queue_timeout_ms "
                                 "2 s" % (r, dt_wait))
        hold.set()
        for th in hs:
            th.join(5)
        if r1.peak > 2:
            raise AssertionError("the q1 proxy saw %d connections at once (maxconn 2)" % r1.peak)
        why = echo_once(d.port, ("127.0.0.2", echo.port))
        if why:
            raise AssertionError("after the holders closed, a CONNECT failed: %s" % why)
        return ("6 tunnels, at most %d at once at the proxy, queued up to %d, waits %.2f..%.2f s; "
                "overflow 503 in %.0f ms, waiter 503 after %.2f s" % (
                    r8.peak, max_q, waits[0], waits[-1], dt_over * 1000, dt_wait))
    finally:
        tap.stop()
        st.stop()


# ---------------------------------------------------------------- PROXY protocol


def h_http_ok(c, server):
    """An HTTP origin: 200 with the request path as the body."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(65536)
        if not d:
            return
        data += d
    body = data.split(b" ")[1]
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (
        len(body), body))


def squid_client_of(path, needle, timeout=5.0):
    """The client field of squid's access.log line that contains @needle."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    if needle in line:
                        return line.split()[2]
        except OSError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def t_proxy_to_squid(env, tap):
    """send_proxy = v2 (and v1) to a squid that requires the header: squid logs the
    address the client connected from (127.0.0.5 / .6), for a GET and a CONNECT; a
    pool without send_proxy is refused by that squid."""
    env.need("squid")
    echo = env.servers["echo"]
    st = Stack()
    try:
        web = st.add(peers.TcpServer("pp-web", h_http_ok, ADDRS))
        sq = st.add(peers.Squid(env.tmp, "squid-pp", port_options="require-proxy-header",
                                extra=["proxy_protocol_access allow lo"]))
        log = sq.log_path.replace("cache.log", "access.log")
        pools_ = [("pv2", ["server = %s" % srv(sq.port), "send_proxy = v2"]),
                  ("pv1", ["server = %s" % srv(sq.port), "send_proxy = v1"]),
                  ("pnone", ["server = %s" % srv(sq.port)])]
        rules = [("v1", "127.0.0.2", "pv1"), ("none", "127.0.0.3", "pnone")]
        d = tap.start(env, "tg-pool-pp", pools_, rules, default="pv2")
        seen = {}
        for ver, src, dst in (("v2", "127.0.0.5", A), ("v1", "127.0.0.6", "127.0.0.2")):
            path = "/%s-%s" % (ver, os.urandom(4).hex())
            with client(d.port, src) as c:
                c.send(("GET http://%s:%d%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (
                    dst, web.port, path, dst, web.port)).encode())
                r = c.read_head(5.0)
                body, _ = c.read_body(r, 5.0)
            if r.status != 200 or body != path.encode():
                raise AssertionError("GET through squid with PROXY %s: %r %r" % (ver, r, body[:80]))
            why = echo_once(d.port, (dst, echo.port), src=src)
            if why:
                raise AssertionError("CONNECT through squid with PROXY %s: %s" % (ver, why))
            got = (squid_client_of(log, path),
                   squid_client_of(log, "CONNECT %s:%d" % (dst, echo.port)))
            seen[ver] = got
            if got != (src, src):
                raise AssertionError("squid logged clients %r for the GET and CONNECT with "
                                     "PROXY %s from %s" % (got, ver, src))
        with client(d.port, "127.0.0.4") as c:
            c.send(connect_head("127.0.0.3", echo.port))
            try:
                r = c.read_head(5.0)
                status = r.status
            except AssertionError as e:
                status = str(e)
        if status == 200:
            raise AssertionError("a pool without send_proxy got 200 from a squid with "
                                 "require-proxy-header: the test proves nothing")
        return "squid logged %r; without send_proxy: %s" % (seen, status)
    finally:
        tap.stop()
        st.stop()


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src, sport, dst, dport):
    return V2_SIG + struct.pack("!BBH4s4sHH", 0x21, 0x11, 12, socket.inet_aton(src),
                                socket.inet_aton(dst), sport, dport)


def t_accept_proxy(env, tap):
    """listen ... accept_proxy: the header's source address is the client the rules see
    (client_in 10.1.2.0/24 -> reject) and tunnelctl lists; no header -> closed unanswered."""
    echo = env.servers["echo"]
    rules = [("lab", ["client_in = 10.1.2.0/24", "action = reject"])]
    try:
        d = tap.start(env, "tg-pool-accept", [("direct", ["direct = yes"])], rules,
                      listen_opts="accept_proxy")
        cases = [("v1", b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 %d\r\n" % d.port, 403, None),
                 ("v1", b"PROXY TCP4 10.9.9.9 127.0.0.1 5555 %d\r\n" % d.port, 200,
                  "10.9.9.9:5555"),
                 ("v2", proxy_v2("10.1.2.4", 5556, A, d.port), 403, None),
                 ("v2", proxy_v2("10.9.9.8", 5557, A, d.port), 200, "10.9.9.8:5557")]
        for ver, hdr, want, listed in cases:
            with client(d.port) as c:
                c.send(hdr + connect_head(A, echo.port))
                r = c.read_head(5.0)
                if r.status != want:
                    raise AssertionError("PROXY %s %r then CONNECT: %r, want %d" % (
                        ver, hdr[:40], r, want))
                if want != 200:
                    continue
                c.send(b"ping")
                if c.recv_exact(4, 5.0) != b"ping":
                    raise AssertionError("no echo after PROXY %s" % ver)
                clients = [t.get("client") for t in d.list_tunnels()]
                if listed not in clients:
                    raise AssertionError("tunnelctl list clients %r, want %s from the PROXY %s "
                                         "header" % (clients, listed, ver))
        closed = {}
        # header_timeout_ms is 1000 (peers.Daemon): silence is closed after it, the rest at once
        for what, data, lo, hi in (
                ("no header", connect_head(A, echo.port), 0, 0.5),
                ("a bad v1 header", b"PROXY TCP4 10.1.2.300 127.0.0.1 1 2\r\n" +
                 connect_head(A, echo.port), 0, 0.5),
                ("nothing", b"", 0.8, 2.5)):
            with client(d.port) as c:
                t0 = time.monotonic()
                c.send(data)
                how, extra = c.wait_eof(3.0)
                dt = time.monotonic() - t0
            if how == "timeout" or extra or not lo <= dt <= hi:
                raise AssertionError("a connection with %s: %s after %.2f s, got %r; want closed "
                                     "with no answer in %.1f..%.1f s" % (
                                         what, how, dt, extra[:80], lo, hi))
            closed[what] = "%s in %.0f ms" % (how, dt * 1000)
        return "10.1.2.x 403 (v1, v2), 10.9.9.x 200 and listed; closed unanswered: %s" % (
            ", ".join("%s %s" % kv for kv in closed.items()))
    finally:
        tap.stop()


# ---------------------------------------------------------------- reload, drain


class Streamer(threading.Thread):
    """A tunnel that echoes 32 KiB chunks until stopped; sha256 of what went and came."""

    def __init__(self, port, target, stop):
        super().__init__(daemon=True)
        self.c = client(port)
        self.c.tunnel(*target)
        self.stop_ev = stop
        self.sent, self.got = hashlib.sha256(), hashlib.sha256()
        self.n = 0
        self.error = None

    def run(self):
        try:
            while not self.stop_ev.is_set():
                msg = os.urandom(32 << 10)
                self.sent.update(msg)
                self.c.send(msg)
                self.got.update(self.c.recv_exact(len(msg), 5.0))
                self.n += len(msg)
                time.sleep(0.005)
        except (AssertionError, OSError) as e:
            self.error = "%s: %s after %d bytes" % (type(e).__name__, e, self.n)
        finally:
            self.c.close()


def reload(d, edit):
    """Rewrite d's config with @edit(text), SIGHUP, wait for the 'reloaded' line."""
    with open(d.conf) as f:
        text = f.read()
    new = edit(text)
    if new == text:
        raise AssertionError("config edit changed nothing")
    with open(d.conf, "w") as f:
        f.write(new)
    off = d.log_size()
    d.proc.send_signal(1)
    if wait_for(lambda: log_has(d, r"reloaded /", off), 5) is None:
        raise AssertionError("SIGHUP: no 'reloaded' line within 5 s: %r" % d.tail(5, off))


def t_sighup_traffic(env, tap):
    """8 tunnels carry traffic through a leastconn pool while two SIGHUPs add a server and
    enable checks: every byte echoed intact, active counts preserved, the new server
    takes the next tunnel."""
    echo = env.servers["echo"]
    st = Stack()
    stop = threading.Event()
    streams = []
    os.chmod(env.tmp, 0o755)  # the daemon reads its config again as its user (nobody)
    try:
        ts = [st.add(tinyproxy(env, "tp-hup-%d" % i, echo.port)) for i in range(3)]
        s1, s2, s3 = (srv(t.port) for t in ts)
        d = tap.start(env, "tg-pool-hup", [("lc", ["balance = leastconn", "server = %s" % s1,
                                                   "server = %s" % s2])], default="lc")
        for _ in range(8):
            streams.append(Streamer(d.port, (A, echo.port), stop))
        for s in streams:
            s.start()
        time.sleep(0.3)
        before = ints(d, "lc", "active")
        if before != {s1: 4, s2: 4}:
            raise AssertionError("8 tunnels over 2 leastconn servers: active %r, want 4 and 4" %
                                 before)
        reload(d, lambda t: t.replace("server = %s\n" % s2,
                                      "server = %s\nserver = %s\n" % (s2, s3)))
        after1 = ints(d, "lc", "active")
        time.sleep(0.3)
        ninth = Streamer(d.port, (A, echo.port), stop)
        streams.append(ninth)
        ninth.start()
        with_9 = ints(d, "lc", "active")
        reload(d, lambda t: t.replace("server = %s\n" % s3, "server = %s\ncheck = connect\n"
                                      "check_interval_ms = 300\n" % s3))
        time.sleep(0.5)
        after2 = ints(d, "lc", "active")
        stop.set()
        for s in streams:
            s.join(10)
        errs = [s.error for s in streams if s.error or s.is_alive()]
        bad = [i for i, s in enumerate(streams) if s.sent.hexdigest() != s.got.hexdigest()]
        if errs or bad:
            raise AssertionError("tunnels across 2 SIGHUPs: %d failed (%s), %d with differing "
                                 "bytes" % (len(errs), errs[:2], len(bad)))
        if after1 != {s1: 4, s2: 4, s3: 0}:
            raise AssertionError("after SIGHUP 1 (3rd server) active %r, before %r" % (
                after1, before))
        if with_9 != {s1: 4, s2: 4, s3: 1}:
            raise AssertionError("a 9th tunnel after SIGHUP: active %r, want it on the new server" %
                                 with_9)
        if after2 != with_9:
            raise AssertionError("after SIGHUP 2 (checks on) active %r, before %r" % (
                after2, with_9))
        if wait_for(lambda: not any(ints(d, "lc", "active").values()), 3) is None:
            raise AssertionError("all tunnels closed, active still %r" % ints(d, "lc", "active"))
        total = sum(s.n for s in streams)
        return "9 tunnels, %.1f MiB echoed and verified; active %r -> %r -> %r" % (
            total / MIB, before, after1, after2)
    finally:
        stop.set()
        for s in streams:
            s.join(5)
        tap.stop()
        st.stop()


def ctl_out(d, *args):
    """(exit code, stdout, stderr) of tunnelctl @args."""
    r = d.ctl(*args)
    return (r.returncode, r.stdout.decode(errors="replace").strip(),
            r.stderr.decode(errors="replace").strip())


def t_drain(env, tap):
    """tunnelctl drain: the drained server keeps its tunnel and gets no new ones; undrain
    brings it back; POOL/ip:port works; an unknown server is an error; all drained -> 503."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        ta = st.add(tinyproxy(env, "tp-dr-a", echo.port))
        tb = st.add(tinyproxy(env, "tp-dr-b", echo.port))
        a, b = srv(ta.port), srv(tb.port)
        d = tap.start(env, "tg-pool-drain", [("dr", ["balance = roundrobin", "server = %s" % a,
                                                     "server = %s" % b])], default="dr")
        c1, c2 = st.add(client(d.port)), st.add(client(d.port))
        c1.tunnel(A, echo.port)
        c2.tunnel(A, echo.port)
        if ints(d, "dr", "active") != {a: 1, b: 1}:
            raise AssertionError("2 tunnels: active %r, want one each" % ints(d, "dr", "active"))
        rc, out, _ = ctl_out(d, "drain", a)
        if rc != 0 or out != "ok" or states(d, "dr").get(a) != "drained":
            raise AssertionError("tunnelctl drain %s: rc %d %r, state %r" % (
                a, rc, out, states(d, "dr")))
        for c in (c1, c2):
            c.send(b"still-open")
            if c.recv_exact(10, 5.0) != b"still-open":
                raise AssertionError("an open tunnel stopped after the drain")
        p0 = ints(d, "dr", "picks")
        fails = [w for w in (echo_once(d.port, (A, echo.port)) for _ in range(10)) if w]
        p1 = ints(d, "dr", "picks")
        if fails or p1[a] != p0[a] or p1[b] - p0[b] != 10:
            raise AssertionError("10 CONNECTs with %s drained: %d failed (%s), picks %r -> %r" % (
                a, len(fails), fails[:2], p0, p1))
        rc, out, _ = ctl_out(d, "undrain", a)
        if rc != 0 or out != "ok" or states(d, "dr").get(a) != "up":
            raise AssertionError("tunnelctl undrain %s: rc %d %r, state %r" % (
                a, rc, out, states(d, "dr")))
        fails = [w for w in (echo_once(d.port, (A, echo.port)) for _ in range(4)) if w]
        p2 = ints(d, "dr", "picks")
        if fails or p2[a] == p1[a]:
            raise AssertionError("4 CONNECTs after undrain: %d failed, picks %r -> %r (want some "
                                 "on %s)" % (len(fails), p1, p2, a))
        rc, out, _ = ctl_out(d, "drain", "dr/%s" % b)
        if rc != 0 or out != "ok" or states(d, "dr").get(b) != "drained":
            raise AssertionError("tunnelctl drain dr/%s: rc %d %r, state %r" % (
                b, rc, out, states(d, "dr")))
        rc, out, _ = ctl_out(d, "drain", a)
        with client(d.port) as c:
            c.send(connect_head(A, echo.port))
            r = c.read_head(3.0)
        if r.status != 503 or "retry-after" not in r.headers:
            raise AssertionError("all servers drained: %r %r, want 503 with Retry-After" % (
                r, r.headers))
        for spec in ("dr/%s" % b, a):
            rc, out, _ = ctl_out(d, "undrain", spec)
            if rc != 0 or out != "ok":
                raise AssertionError("tunnelctl undrain %s: %r" % (spec, out))
        if set(states(d, "dr").values()) != {"up"}:
            raise AssertionError("after undrain states %r" % states(d, "dr"))
        errs = {}
        for spec in ("127.0.0.1:1", "nosuch/%s" % a, "dr/127.0.0.1:1"):
            rc, out, err = ctl_out(d, "drain", spec)
            # the control socket answers "error\t..."; tunnelctl prints it on stderr, exit 1
            if out.startswith("error\t") or (rc != 0 and not out and err):
                continue
            errs[spec] = (rc, out, err)
        for c in (c1, c2):
            c.close()  # before the daemon stops: it would wait drain_timeout_ms for them
        if errs:
            raise AssertionError("drain of unknown servers: %r, want an error" % errs)
        if set(states(d, "dr").values()) != {"up"}:
            raise AssertionError("a failed drain changed states: %r" % states(d, "dr"))
        return "drained %s kept its tunnel, 10 new went to %s; undrain, POOL/ip:port, 503 when " \
               "all drained, errors for unknown servers" % (a, b)
    finally:
        tap.stop()
        st.stop()


# ---------------------------------------------------------------- action = tunnel


class RawOrigin:
    """Takes one connection: reads exactly @expect bytes while sending @reply; reports
    what it read; then waits for EOF."""

    def __init__(self, expect, reply):
        self.expect, self.reply = expect, reply
        self.got = None
        self.error = None
        self.done = threading.Event()
        self.server = peers.TcpServer("raw-origin", self._handle)
        self.port = self.server.port

    def _handle(self, c, server):
        c.settimeout(20)
        def send():
            try:
                c.sendall(self.reply)
            except OSError as e:
                self.error = "sending the reply: %s" % e

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            self.got = peers.recv_exact(c, self.expect, deadline=time.monotonic() + 20)
        except AssertionError as e:
            self.error = str(e)
        finally:
            sender.join(20)
            self.done.set()
        peers.recv_to_eof(c, deadline=time.monotonic() + 10)

    def stop(self):
        self.server.stop()


def raw_exchange(d, head, up, origin, watch=None):
    """Send head + up, read len(origin.reply) bytes back; returns them. @watch(c) runs
    while the connection is open, after the transfer."""
    with client(d.port) as c:
        c.sock.settimeout(20)
        def send():
            try:
                c.sock.sendall(head + up)
            except OSError:
                pass  # shows as missing bytes at the origin

        th = threading.Thread(target=send, daemon=True)
        th.start()
        down = c.recv_exact(len(origin.reply), 20.0)
        th.join(20)
        if not origin.done.wait(20):
            raise AssertionError("the origin got no complete request + bytes")
        if watch:
            watch(c)
    return down


def t_action_tunnel(env, tap):
    """action = tunnel: a plain request's head goes to the origin as sent, then both ways
    carry non-HTTP bytes unchanged (4 MiB each); `tunnel POOL` sends it to the pool."""
    st = Stack()
    try:
        up, down = os.urandom(4 * MIB), os.urandom(4 * MIB)
        o1 = st.add(RawOrigin(0, down))
        head = ("GET /raw HTTP/1.1\r\nHost: %s:%d\r\nX-Any: 1\r\n\r\n" % (A, o1.port)).encode()
        o1.expect = len(head) + len(up)
        small_up, small_down = os.urandom(64 << 10), os.urandom(64 << 10)
        o2 = st.add(RawOrigin(0, small_down))
        head2 = ("GET /rawpool/x HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (A, closed_port())).encode()
        o2.expect = len(head2) + len(small_up)
        rules = [("rawpool", ["path_prefix = /rawpool", "action = tunnel rawp"]),
                 ("raw", ["path_prefix = /raw", "action = tunnel"])]
        d = tap.start(env, "tg-pool-tunnel", [("direct", ["direct = yes"]),
                                              ("rawp", ["server = %s" % srv(o2.port)])], rules)
        listed = []

        def watch(c):
            me = "%s:%d" % (A, c.local_port())
            listed.extend(t for t in d.list_tunnels() if t.get("client") == me)

        got_down = raw_exchange(d, head, up, o1, watch)
        if o1.error or o1.got is None:
            raise AssertionError("origin: %s" % o1.error)
        if o1.got[:len(head)] != head:
            raise AssertionError("origin got head %r, want %r exactly" % (
                o1.got[:len(head) + 40], head))
        if hashlib.sha256(o1.got[len(head):]).digest() != hashlib.sha256(up).digest():
            raise AssertionError("origin: the 4 MiB after the head differ")
        if got_down != down:
            raise AssertionError("client: the 4 MiB from the origin differ")
        if len(listed) != 1:
            raise AssertionError("tunnelctl list while open: %d entries for the client, want 1 "
                                 "tunnel" % len(listed))
        got2 = raw_exchange(d, head2, small_up, o2)
        if o2.error or o2.got != head2 + small_up or got2 != small_down:
            same = "same" if o2.got == head2 + small_up else "differ"
            raise AssertionError("action = tunnel rawp: the pool server got %s, client %s" % (
                o2.error or ("%d bytes, %s" % (len(o2.got or b""), same)),
                "same" if got2 == small_down else "differ"))
        e = listed[0]
        return "4 MiB each way verified, head exact; listed as %s relay %s; tunnel POOL ok" % (
            e.get("target"), e.get("relay"))
    finally:
        tap.stop()
        st.stop()


# ---------------------------------------------------------------- registry


def tests(env):
    return [
        ("failover_bad_servers", t_failover),
        ("passive_ejection_503_not_counted", t_passive),
        ("no_server_up_503_retry_after", t_no_server_up),
        ("maxconn_queue", t_maxconn),
        ("proxy_v2_to_squid", t_proxy_to_squid),
        ("accept_proxy_rule", t_accept_proxy),
        ("sighup_under_traffic", t_sighup_traffic),
        ("drain_undrain", t_drain),
        ("action_tunnel_raw", t_action_tunnel),
    ]


def run_pools(runner, env, skip_reason=None):
    for n, fn in tests(env):
        name = "pools/%s" % n
        if skip_reason:
            runner.skip(name, skip_reason)
            continue
        tap = Tap()
        runner.run(name, (lambda f, t: lambda: f(env, t))(fn, tap), tap)
