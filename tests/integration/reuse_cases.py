"""Upstream keep-alive for plain HTTP (issue 13 item 6; README "Upstream keep-alive"),
named reuse/...: idle upstream connections are parked and reused per (pool, address),
private to a client connection when a request carried credentials, closed when idle
past upstream_idle_timeout_ms, and a request goes on a reused connection only if it
can be sent again, which it is, once, on a fresh connection when the reused one was
dead.

The origin here is a raw-socket HTTP/1.1 server that numbers the connections it
accepts and answers every request with Content-Length and a JSON body naming the
connection, so each test sees which upstream connection carried which request.
"""

import json
import socket
import threading
import time

import peers
from cases import Skip
from httpclient import Client

A = "127.0.0.1"
IDLE_TIMEOUT_MS = 1500  # the daemons' upstream_idle_timeout_ms unless a test sets its own


class Origin:
    """HTTP/1.1 keep-alive origin. keepalive_s: it closes a connection idle that long
    (short_s for the connection numbers in short). drop: (connection number, request
    number on it) pairs it closes without answering."""

    def __init__(self, keepalive_s=30.0, drop=(), short=(), short_s=0.2):
        self.keepalive_s = keepalive_s
        self.short, self.short_s = set(short), short_s
        self.drop = set(drop)
        self.lock = threading.Lock()
        self.accepted = 0
        self.requests = []       # (conn id, method, path, authorization or None)
        self.peer_closed = {}    # conn id -> monotonic time the gateway closed it
        self.srv = peers.TcpServer("reuse-origin", self._serve)
        self.port = self.srv.port

    def hostport(self):
        return "%s:%d" % (A, self.port)

    def conns(self):
        with self.lock:
            return self.accepted

    def _serve(self, c, srv):
        with self.lock:
            self.accepted += 1
            cid = self.accepted
        buf, n = b"", 0
        c.settimeout(self.short_s if cid in self.short else self.keepalive_s)
        while True:
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        with self.lock:
                            self.peer_closed[cid] = time.monotonic()
                        return
                    buf += d
            except OSError:  # our keep-alive timeout: close, as origins do
                return
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            fields = {}
            for l in lines[1:]:
                k, _, v = l.partition(":")
                fields[k.strip().lower()] = v.strip()
            clen = int(fields.get("content-length", "0"))
            while len(buf) < clen:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            body, buf = buf[:clen], buf[clen:]
            n += 1
            with self.lock:
                self.requests.append((cid, method, path, fields.get("authorization")))
            if (cid, n) in self.drop:
                return  # closed as the request arrived: the race a reused connection has
            out = json.dumps({"conn": cid, "n": n, "method": method, "path": path,
                              "body": len(body)}).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(out), out))

    def stop(self):
        self.srv.stop()


def daemon(env, name, extra=None, pools=None, default="direct"):
    gw = {"upstream_idle_timeout_ms": str(IDLE_TIMEOUT_MS), "header_timeout_ms": "3000"}
    gw.update(extra or {})
    return peers.Daemon(env.tmp, name, "splice", pools or [("direct", ["direct = yes"])],
                        default=default, extra=gw)


def get(c, o, path, method="GET", fields=(), body=b""):
    """One request on client @c to origin @o (absolute-form); returns (status, JSON or raw)."""
    lines = ["%s http://%s%s HTTP/1.1" % (method, o.hostport(), path), "Host: %s" % o.hostport()]
    lines += list(fields)
    if body or method in ("POST", "PUT"):
        lines.append("Content-Length: %d" % len(body))
    c.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    r = c.read_head(5.0)
    data, _ = c.read_body(r, 5.0, head=method == "HEAD")
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def stat(d, key):
    for line in d.ctl("stats").stdout.decode().splitlines():
        k, _, v = line.partition("\t")
        if k == key:
            return int(v)
    raise AssertionError("tunnelctl stats has no %r" % key)


def metric(port, name):
    """The value of the unlabelled sample @name in GET /metrics on @port."""
    with socket.create_connection((A, port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = peers.recv_to_eof(s, deadline=time.monotonic() + 5)
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("GET /metrics has no %s" % name)


def upstream_errors(d):
    return [l for l in d.ctl("stats").stdout.decode().splitlines() if l.startswith("upstream_error\t")]


def hundred(d, o, clients=10, each=10):
    """clients x each keep-alive requests, one client after the other; all answers checked."""
    bad = []
    for i in range(clients):
        with Client(d.port) as c:
            for j in range(each):
                path = "/r%d-%d" % (i, j)
                st, info = get(c, o, path)
                if st != 200 or not isinstance(info, dict) or info.get("path") != path:
                    bad.append("%s: %s %r" % (path, st, info if isinstance(info, dict) else info[:80]))
    if bad:
        raise AssertionError("%d of %d answers wrong: %s" % (len(bad), clients * each, "; ".join(bad[:3])))


def wait_until(fn, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return fn()


# ---------------------------------------------------------------- tests


def t_hundred_direct(env):
    """(a) 100 keep-alive requests through a direct pool: <= 4 upstream connections;
    with upstream_idle_max = 0, one each."""
    out = []
    for idle_max, want in (("64", None), ("0", 100)):
        o = Origin()
        mport = peers.free_port()
        d = daemon(env, "tg-reuse-100-%s" % idle_max, {"upstream_idle_max": idle_max,
                                                       "metrics_listen": "%s:%d" % (A, mport)})
        try:
            hundred(d, o)
            n, reused = o.conns(), stat(d, "reused")
            m = metric(mport, "tunnelgate_upstream_reused_total")
            if m != reused:
                raise AssertionError("tunnelgate_upstream_reused_total %d, tunnelctl stats reused %d"
                                     % (m, reused))
            if want is None and (n > 4 or reused < 96):
                raise AssertionError("reuse on: %d upstream connections for 100 requests, %d reused; "
                                     "want <= 4 and >= 96" % (n, reused))
            if want is not None and (n != want or reused):
                raise AssertionError("upstream_idle_max = 0: %d upstream connections, %d reused; "
                                     "want 100 and 0" % (n, reused))
            out.append("idle_max %s: %d connections, %d reused" % (idle_max, n, reused))
        finally:
            d.stop()
            o.stop()
    return "; ".join(out)


def proxy_pool(env, which):
    peer = env.tiny if which == "tinyproxy" else env.squid
    if peer is None:
        raise Skip(env.missing.get(which, "%s not running" % which))
    return [("p", ["server = 127.0.0.1:%d" % peer.port])]


def t_proxy(env, which):
    """(b) Through a real proxy pool: every answer right; reused as the proxy allows.
    squid keeps its client side alive: one upstream connection carries them all.
    tinyproxy 1.11 closes it after every answer without saying Connection: close: a
    kept one is mostly seen closed before the next request, else resent."""
    o = Origin()
    d = daemon(env, "tg-reuse-%s" % which, pools=proxy_pool(env, which), default="p")
    try:
        off = d.log_size()
        hundred(d, o, 5, 8)
        reused = stat(d, "reused")
        resent = sum("sending it again" in l for l in d.tail(10000, off))
        if which == "squid" and reused < 36:
            raise AssertionError("squid keeps its client side alive, yet only %d of 40 requests "
                                 "were reused" % reused)
        if upstream_errors(d):
            raise AssertionError("upstream errors: %s" % upstream_errors(d))
        # A resend after a kept connection was found closed is not the proxy's failure.
        pools = [l.split("\t") for l in d.ctl("pools").stdout.decode().splitlines()]
        fails = [l[6] for l in pools if len(l) > 7 and l[0] == "p"]
        if fails != ["0"]:
            raise AssertionError("tunnelctl pools failures %r, want ['0']: %r" % (fails, pools))
        return "40 answers right, %d reused (%d of them resent on a new connection: the proxy " \
            "had closed it), origin saw %d connections" % (reused, resent, o.conns())
    finally:
        d.stop()
        o.stop()


def t_origin_closes(env):
    """(c) The origin closes an idle connection (200 ms) and drops requests that race
    its close: GETs still get 200 (parked one noticed closed, or resent once), a POST
    goes on a fresh connection."""
    o = Origin(short={1}, drop={(2, 2), (4, 2)})
    d = daemon(env, "tg-reuse-close")
    try:
        with Client(d.port) as c:
            st, a = get(c, o, "/a")           # conn 1, parked
            time.sleep(0.5)                  # the origin closes conn 1; the gateway sees it
            st2, b = get(c, o, "/b")          # fresh: conn 2
            if (st, st2) != (200, 200) or a["conn"] != 1 or b["conn"] != 2:
                raise AssertionError("after the origin's idle close: %s %r, %s %r" % (st, a, st2, b))
            st, e = get(c, o, "/c")           # reused conn 2, which drops it: resent on conn 3
            if st != 200 or e.get("conn") != 3:
                raise AssertionError("GET on a connection closed under it: %s %r, want 200 on conn 3"
                                     % (st, e))
            seen = [r[0] for r in o.requests if r[2] == "/c"]
            if seen != [2, 3]:
                raise AssertionError("/c reached the origin on connections %r, want [2, 3] "
                                     "(once on the dead one, once fresh)" % seen)
            before = o.conns()
            st, p = get(c, o, "/post", "POST", body=b"x" * 100)
            if st != 200 or p.get("conn") != before + 1 or p.get("body") != 100:
                raise AssertionError("POST: %s %r, want 200 on a fresh connection (%d)" % (
                    st, p, before + 1))
            # A PUT whose body came with its head may go on the POST's connection, which
            # drops it: head and body are sent again, whole, on a fresh one.
            st, u = get(c, o, "/put", "PUT", body=b"y" * 300)
            seen = [r[0] for r in o.requests if r[2] == "/put"]
            if st != 200 or u.get("body") != 300 or seen != [p["conn"], p["conn"] + 1]:
                raise AssertionError("PUT: %s %r on connections %r, want 200 with 300 body bytes "
                                     "on [%d, %d]" % (st, u, seen, p["conn"], p["conn"] + 1))
        errs = upstream_errors(d)
        if errs:
            raise AssertionError("the resend counted as an upstream error: %s" % errs)
        return "GET after idle close on conn %d, resent GET on conn %d, POST fresh on conn %d, " \
            "resent PUT on conn %d; reused %d" % (b["conn"], e["conn"], p["conn"], u["conn"],
                                                  stat(d, "reused"))
    finally:
        d.stop()
        o.stop()


def t_proxy_resend(env):
    """(c) through a proxy pool with fall = 1: the proxy closes a kept connection as a
    request arrives; the resend is answered and the proxy is not failed for it."""
    o = Origin(drop={(1, 2)})  # the origin plays the proxy: it answers absolute-form too
    d = daemon(env, "tg-reuse-proxy-resend", pools=[("p", ["server = %s" % o.hostport(), "fall = 1"])],
               default="p")
    try:
        with Client(d.port) as c:
            got = [get(c, o, "/%d" % i) for i in range(3)]
        conns = [info.get("conn") if isinstance(info, dict) else st for st, info in got]
        if [st for st, _ in got] != [200] * 3 or conns != [1, 2, 2]:
            raise AssertionError("answers %r on connections %r, want 200s on [1, 2, 2]" % (
                [st for st, _ in got], conns))
        line = [l.split("\t") for l in d.ctl("pools").stdout.decode().splitlines() if l.startswith("p\t")]
        if not line or line[0][6] != "0" or line[0][7] != "up":
            raise AssertionError("tunnelctl pools: %r, want 0 failures and up" % line)
        return "resent on connection 2; server up, 0 failures"
    finally:
        d.stop()
        o.stop()


def t_private(env):
    """(d) A connection that carried Authorization is only reused by the same client
    connection, and closed when that client leaves."""
    o = Origin()
    d = daemon(env, "tg-reuse-private")
    try:
        ca = Client(d.port)
        st, a1 = get(ca, o, "/a1", fields=["Authorization: Basic dXNlcjpwYXNz"])
        with Client(d.port) as cb:
            st2, b1 = get(cb, o, "/b1")
        st3, a2 = get(ca, o, "/a2")
        if (st, st2, st3) != (200, 200, 200):
            raise AssertionError("statuses %s %s %s" % (st, st2, st3))
        if b1["conn"] == a1["conn"]:
            raise AssertionError("client B's request went on client A's private connection %d" %
                                 a1["conn"])
        if a2["conn"] != a1["conn"]:
            raise AssertionError("client A's second request went on connection %d, not its own %d" % (
                a2["conn"], a1["conn"]))
        ca.close()
        if not wait_until(lambda: a1["conn"] in o.peer_closed, 1.0):
            raise AssertionError("A's private connection %d still open 1 s after A left" % a1["conn"])
        if b1["conn"] in o.peer_closed:
            raise AssertionError("the shareable connection %d closed with client A" % b1["conn"])
        return "A on %d (private), B on %d, A again on %d; closed when A left" % (
            a1["conn"], b1["conn"], a2["conn"])
    finally:
        d.stop()
        o.stop()


def t_expire(env):
    """(e) An idle connection closes after upstream_idle_timeout_ms (500)."""
    o = Origin()
    d = daemon(env, "tg-reuse-expire", {"upstream_idle_timeout_ms": "500"})
    try:
        with Client(d.port) as c:
            t0 = time.monotonic()
            st, a = get(c, o, "/x")
        if not wait_until(lambda: a["conn"] in o.peer_closed, 3.0):
            raise AssertionError("idle connection still open 3 s later (timeout 500 ms)")
        dt = o.peer_closed[a["conn"]] - t0
        if not 0.45 <= dt <= 1.5:
            raise AssertionError("closed %.2f s after its request, want about 0.5 s" % dt)
        return "closed after %.2f s" % dt
    finally:
        d.stop()
        o.stop()


def t_no_fd_leak(env):
    """(f) After all clients left and the idle timeout passed, the daemon has the fds it
    started with."""
    o = Origin(drop={(1, 5)})
    d = daemon(env, "tg-reuse-fds", {"upstream_idle_timeout_ms": "400"})
    try:
        cs = [Client(d.port) for _ in range(8)]
        auth = ["Authorization: Basic eDp5"]
        for k in range(6):
            for i, c in enumerate(cs):
                st, _ = get(c, o, "/f%d-%d" % (i, k), fields=auth if i % 2 else ())
                if st != 200:
                    raise AssertionError("request %d of client %d: %s" % (k, i, st))
        peak = d.fd_count()
        for c in cs:
            c.close()
        if not wait_until(lambda: d.fd_count() == d.fd0, 3.0):
            new = sorted(v for k, v in d.fd_list().items() if d.fds0.get(k) != v)
            raise AssertionError("fd count %d, %d at start (new: %s)" % (
                d.fd_count(), d.fd0, ", ".join(new[:10])))
        return "%d fds at the peak, back to %d; %d upstream connections for 48 requests" % (
            peak, d.fd0, o.conns())
    finally:
        d.stop()
        o.stop()


def tests(env):
    return [
        ("hundred_requests_direct", lambda: t_hundred_direct(env)),
        ("proxy_pool_tinyproxy", lambda: t_proxy(env, "tinyproxy")),
        ("proxy_pool_squid", lambda: t_proxy(env, "squid")),
        ("origin_closes_idle_and_races", lambda: t_origin_closes(env)),
        ("proxy_resend_not_a_failure", lambda: t_proxy_resend(env)),
        ("private_after_authorization", lambda: t_private(env)),
        ("idle_timeout_expires", lambda: t_expire(env)),
        ("no_fd_leak", lambda: t_no_fd_leak(env)),
    ]


def run_reuse(runner, env, skip_reason=None):
    for n, fn in tests(env):
        name = "reuse/%s" % n
        if skip_reason:
            runner.skip(name, skip_reason)
        else:
            runner.run(name, fn)
