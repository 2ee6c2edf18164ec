"""The integration test cases. Env starts the shared peers once; each relay
mode gets its own tunnelgated instance (see run.py).

Routing: one daemon per relay mode routes by CONNECT target host, and every
origin listens on several loopback addresses, so the target address picks the
path:
  127.0.0.1 -> direct pool      127.0.0.4 -> tinyproxy with BasicAuth
  127.0.0.2 -> tinyproxy        127.0.0.5 -> pool [closed port]
  127.0.0.3 -> squid            127.0.0.6 -> pool [closed port, tinyproxy]
Tests through a proxy also check the proxy's log names the target, so a rule
that silently falls back to the direct pool cannot pass.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import peers
from httpclient import Client, basic_auth, connect_head
from peers import recv_exact, recv_to_eof, rst_close


class Skip(Exception):
    pass


A_DIRECT, A_TINY, A_SQUID, A_AUTH, A_REFUSE, A_RETRY = (
    "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")
ADDRS = (A_DIRECT, A_TINY, A_SQUID, A_AUTH, A_REFUSE, A_RETRY)

FILE_SIZE = 64 << 20
MIB = 1 << 20
BANNER = os.urandom(100 << 10)
SERVER_MIB = os.urandom(MIB)
COUNT_UP, COUNT_DOWN = 123457, 654321
DOWN_PAYLOAD = os.urandom(COUNT_DOWN)
AUTH = ("tguser", "tgpass")


def diff_desc(got, want):
    """Where got first differs from want, and a guess at what happened."""
    n = min(len(got), len(want))
    i = next((i for i in range(0, n, 1024) if got[i:i + 1024] != want[i:i + 1024]), None)
    if i is None:
        return "%d bytes, want %d (same prefix)" % (len(got), len(want))
    while got[i] == want[i]:
        i += 1
    probe = got[i:i + 64]
    j = want.find(probe) if len(probe) == 64 else -1
    where = ("; bytes there are want[%d:] (%+d)" % (j, j - i)) if j >= 0 else ""
    return "%d bytes, want %d; first difference at offset %d%s" % (len(got), len(want), i, where)


# ---------------------------------------------------------------- server handlers


def h_echo(c, srv):
    while True:
        d = c.recv(1 << 20)
        if not d:
            return
        c.sendall(d)


def h_banner(c, srv):
    c.sendall(BANNER)
    recv_to_eof(c, deadline=time.monotonic() + 10)


def h_halfclose_client_first(c, srv):
    """Read to EOF, then answer sha256(received) + 1 MiB and close."""
    data, how = recv_to_eof(c, deadline=time.monotonic() + 10)
    srv.results.put(("got", len(data), how))
    if how == "eof":
        c.sendall(hashlib.sha256(data).digest() + SERVER_MIB)
        c.shutdown(socket.SHUT_WR)
        recv_to_eof(c, deadline=time.monotonic() + 5)


def h_halfclose_server_first(c, srv):
    """Send 1 MiB and FIN, then read to EOF and report what arrived."""
    c.sendall(SERVER_MIB)
    c.shutdown(socket.SHUT_WR)
    data, how = recv_to_eof(c, deadline=time.monotonic() + 10)
    srv.results.put(("got", len(data), hashlib.sha256(data).hexdigest(), how))


def h_counters(c, srv):
    """Read exactly COUNT_UP bytes, answer exactly COUNT_DOWN bytes, wait for EOF."""
    data = recv_exact(c, COUNT_UP, deadline=time.monotonic() + 10)
    c.sendall(DOWN_PAYLOAD)
    rest, how = recv_to_eof(c, deadline=time.monotonic() + 15)
    srv.results.put(("got", len(data) + len(rest), how))


def h_rst_midstream(c, srv):
    """Send 256 KiB, then reset the connection."""
    c.sendall(BANNER + BANNER)
    time.sleep(0.3)
    t = time.monotonic()
    rst_close(c)
    srv.results.put(("rst", t))


PUSH_SIZE = 96 << 20
_push = []


def push_data():
    if not _push:
        _push.append(os.urandom(PUSH_SIZE))
    return _push[0]


def h_push(c, srv):
    """Send PUSH_SIZE bytes as fast as the path takes them; srv.sent tracks progress."""
    data = push_data()
    srv.sent = 0
    c.settimeout(30)
    view = memoryview(data)
    for off in range(0, len(data), 256 << 10):
        c.sendall(view[off:off + (256 << 10)])
        srv.sent = off + (256 << 10)
    recv_to_eof(c, deadline=time.monotonic() + 30)


def h_sink(c, srv):
    """Read until EOF or reset; report when."""
    data, how = recv_to_eof(c, deadline=time.monotonic() + 10)
    srv.results.put(("closed", time.monotonic(), how, len(data)))


# ---------------------------------------------------------------- environment


class Env:
    """Shared peers: TLS origins, Python servers, tinyproxy x2, squid."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.missing = {}
        self.tls = {}
        self.tiny = self.tiny_auth = self.squid = None
        self.servers = {}
        for name, h in (("echo", h_echo), ("banner", h_banner),
                        ("hc_client_first", h_halfclose_client_first),
                        ("hc_server_first", h_halfclose_server_first),
                        ("counters", h_counters), ("rst", h_rst_midstream), ("sink", h_sink),
                        ("push", h_push)):
            self.servers[name] = peers.TcpServer(name, h, ADDRS)
        try:
            self.echo6 = peers.TcpServer("echo6", h_echo, ("::1",))
        except Exception as e:
            self.echo6 = None
            self.missing["ipv6"] = "no IPv6 loopback: %s" % e
        self.closed_port = peers.free_port()
        # a second one: a pool may not list one server twice when tinyproxy is missing
        self.closed_port2 = peers.free_port("127.0.0.2")
        # a listener whose accept queue is full: a connect() to it hangs
        self.hang = socket.socket()
        self.hang.bind((A_DIRECT, 0))
        self.hang.listen(0)
        self.hang_port = self.hang.getsockname()[1]
        self.hang_fill = []
        for _ in range(2):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect((A_DIRECT, self.hang_port))
            except BlockingIOError:
                pass
            self.hang_fill.append(s)

        self.start_failed = {}
        if peers.which("openssl") and peers.which("curl"):
            self._start("tls", self._start_tls)
        else:
            self.missing["tls"] = "openssl or curl not installed"
        ports = [s.port for s in self.servers.values()] + [o.port for o in self.tls.values()]
        if peers.which("tinyproxy"):
            self._start("tinyproxy", lambda: self._start_tiny(ports))
        else:
            self.missing["tinyproxy"] = "tinyproxy not installed"
        if peers.which("squid"):
            self._start("squid", lambda: setattr(self, "squid", peers.Squid(tmp)))
        else:
            self.missing["squid"] = "squid not installed"

    def _start(self, what, fn):
        try:
            fn()
        except Exception as e:
            self.start_failed[what] = "%s: %s" % (type(e).__name__, e)
            self.missing[what] = "%s failed to start (see peers/start_%s)" % (what, what)

    def _start_tls(self):
        self.docroot = os.path.join(self.tmp, "www")
        os.makedirs(self.docroot)
        self.file_sha = peers.make_file(os.path.join(self.docroot, "file"), FILE_SIZE)
        cert, key = peers.make_cert(self.tmp)
        for a in (A_DIRECT, A_TINY, A_SQUID):
            self.tls[a] = peers.TlsOrigin(self.tmp, self.docroot, cert, key, a)

    def _start_tiny(self, ports):
        self.tiny = peers.Tinyproxy(self.tmp, "tinyproxy", ports)
        self.tiny_auth = peers.Tinyproxy(self.tmp, "tinyproxy-auth", ports, AUTH)

    def need(self, *what):
        for w in what:
            if w in self.missing:
                raise Skip(self.missing[w])

    def hang_works(self):
        """True if a connect() to the hang listener times out."""
        s = socket.socket()
        s.settimeout(0.3)
        try:
            s.connect((A_DIRECT, self.hang_port))
            return False
        except socket.timeout:
            return True
        except OSError:
            return False
        finally:
            s.close()

    def daemon_pools(self):
        tp = self.tiny.port if self.tiny else self.closed_port2
        ta = self.tiny_auth.port if self.tiny_auth else self.closed_port
        sq = self.squid.port if self.squid else self.closed_port
        pools = [
            ("direct", ["direct = yes"]),
            ("tiny", ["server = 127.0.0.1:%d" % tp]),
            ("squid", ["server = 127.0.0.1:%d" % sq]),
            ("tinyauth", ["server = 127.0.0.1:%d" % ta]),
            ("refuse", ["server = 127.0.0.1:%d" % self.closed_port]),
            ("retry", ["balance = roundrobin", "server = 127.0.0.1:%d" % self.closed_port,
                       "server = %s:%d" % ("127.0.0.1" if self.tiny else "127.0.0.2", tp)]),
        ]
        rules = [("to-tiny", A_TINY, "tiny"), ("to-squid", A_SQUID, "squid"),
                 ("to-tinyauth", A_AUTH, "tinyauth"), ("to-refuse", A_REFUSE, "refuse"),
                 ("to-retry", A_RETRY, "retry")]
        return pools, rules


def log_contains(path, needle, offset, timeout=2.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                if needle.encode() in f.read():
                    return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


class Via:
    """Checks that a request really went through a proxy: its log must name
    the target after the test. Use as a context manager around the request."""

    def __init__(self, env, via):
        self.path = None
        if via in ("tinyproxy", "tinyauth", "retry"):
            env.need("tinyproxy")
            self.path = (env.tiny_auth if via == "tinyauth" else env.tiny).proc.log_path
        elif via == "squid":
            env.need("squid")
            self.path = env.squid.log_path.replace("cache.log", "access.log")
        self.off = os.path.getsize(self.path) if self.path and os.path.exists(self.path) else 0

    def check(self, target):
        if self.path and not log_contains(self.path, target, self.off):
            raise AssertionError("the proxy's log does not name %s: the request did not go "
                                 "through it (rule not applied?)" % target)


# ---------------------------------------------------------------- data path tests

VIA_ADDR = {"direct": A_DIRECT, "tinyproxy": A_TINY, "squid": A_SQUID}


def t_tls(env, d, via):
    env.need("tls")
    v = Via(env, via)
    origin = env.tls[VIA_ADDR[via]]
    out = os.path.join(env.tmp, "out-%s-%s" % (d.relay, via))
    url = "https://%s:%d/file" % (origin.addr, origin.port)
    t0 = time.monotonic()
    r = subprocess.run(["curl", "-sS", "-k", "--max-time", "60", "-x",
                        "http://127.0.0.1:%d" % d.port, url, "-o", out],
                       capture_output=True, timeout=90)
    dt = time.monotonic() - t0
    try:
        if r.returncode != 0:
            raise AssertionError("curl exited %d: %s" % (r.returncode,
                                                          r.stderr.decode(errors="replace").strip()))
        size = os.path.getsize(out)
        if size != FILE_SIZE or peers.file_sha256(out) != env.file_sha:
            raise AssertionError("sha256 differs (got %d of %d bytes)" % (size, FILE_SIZE))
    finally:
        if os.path.exists(out):
            os.unlink(out)
    v.check("%s:%d" % (origin.addr, origin.port))
    return "%.0f MiB/s (%.2f s, curl incl. TLS handshake)" % (FILE_SIZE / MIB / dt, dt)


def t_banner(env, d, via):
    v = Via(env, via)
    srv = env.servers["banner"]
    addr = VIA_ADDR[via]
    with Client(d.port) as c:
        t0 = time.monotonic()
        c.send(connect_head(addr, srv.port))
        r = c.read_head(3.0)
        if r.status != 200:
            raise AssertionError("CONNECT answered %r, want 200" % r)
        if via == "direct" and r.version != "HTTP/1.1":
            raise AssertionError("status line %r, want HTTP/1.1 200" % r)
        left = 3.0 - (time.monotonic() - t0)
        try:
            got = c.recv_exact(len(BANNER), max(left, 0.01))
        except AssertionError as e:
            raise AssertionError("banner of %d bytes not relayed within 3 s: %s" % (len(BANNER), e))
        if got != BANNER:
            raise AssertionError("banner bytes differ")
    v.check("%s:%d" % (addr, srv.port))
    return "%r" % r


def t_pipelined(env, d, size):
    srv = env.servers["echo"]
    payload = os.urandom(size)
    out = {}

    with Client(d.port) as c:
        def reader():
            try:
                out["head"] = c.read_head(5.0)
                out["data"] = c.recv_exact(size, 10.0)
            except Exception as e:
                out["err"] = e

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        c.sock.sendall(connect_head(A_DIRECT, srv.port) + payload)  # one write
        t.join(15)
        if "err" in out:
            raise AssertionError("%s%s" % (
                "after %r: " % out["head"] if "head" in out else "", out["err"]))
        if t.is_alive():
            raise AssertionError("reader hung")
        if out["head"].status != 200:
            raise AssertionError("CONNECT answered %r" % out["head"])
        if out["data"] != payload:
            raise AssertionError("echoed payload differs: " + diff_desc(out["data"], payload))


def t_parallel(env, d, n=16, size=256 << 10):
    """n tunnels at once, each echoing its own payload."""
    srv = env.servers["echo"]
    errs = []

    def one(i):
        try:
            payload = os.urandom(size)
            with Client(d.port) as c:
                c.tunnel(A_DIRECT, srv.port)
                out = {}

                def rd():
                    try:
                        out["d"] = c.recv_exact(size, 15.0)
                    except Exception as e:
                        out["e"] = e
                t = threading.Thread(target=rd, daemon=True)
                t.start()
                c.send(payload)
                t.join(20)
                if out.get("d") != payload:
                    errs.append("tunnel %d: %s" % (i, out.get("e", "echo differs")))
        except Exception as e:
            errs.append("tunnel %d: %s" % (i, e))

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    if errs:
        raise AssertionError("%d of %d failed; %s" % (len(errs), n, "; ".join(errs[:3])))


def t_backpressure(env, d, pause=2.0, bound=48 << 20):
    """A client that stops reading must stall the origin (bounded buffering in
    the relay), and every byte must arrive intact once it reads again."""
    srv = env.servers["push"]
    data = push_data()
    with Client(d.port) as c:
        srv.sent = 0
        c.tunnel(A_DIRECT, srv.port)
        time.sleep(pause)
        stalled = srv.sent
        t0 = time.monotonic()
        try:
            got = c.recv_exact(PUSH_SIZE, 30.0)
        except AssertionError as e:
            raise AssertionError("after resuming: %s (origin had sent %d MiB while paused)" % (
                e, stalled >> 20))
        dt = time.monotonic() - t0
        if got != data:
            i = next(i for i in range(0, PUSH_SIZE, 4096) if got[i:i + 4096] != data[i:i + 4096])
            raise AssertionError("bytes differ from offset ~%d after a %.0f s pause" % (i, pause))
    if stalled >= bound:
        raise AssertionError("origin pushed %d MiB while the client read nothing for %.0f s: relay "
                             "buffering not bounded (limit used here %d MiB)" % (
                                 stalled >> 20, pause, bound >> 20))
    return "origin stalled at %d MiB; then %d MiB in %.2f s" % (stalled >> 20, PUSH_SIZE >> 20, dt)


def t_halfclose_client_first(env, d):
    srv = env.servers["hc_client_first"]
    srv.drain()
    up = os.urandom(MIB)
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        c.send(up)
        c.sock.shutdown(socket.SHUT_WR)
        try:
            got = c.recv_exact(32 + MIB, 5.0)
        except AssertionError as e:
            res = srv.result(0.1)
            raise AssertionError("reply: %s; server %s" % (
                e, "saw %s after %d bytes" % (res[2], res[1]) if res else
                "never saw EOF (client FIN not passed on?)"))
        if got[:32] != hashlib.sha256(up).digest():
            res = srv.result(0.1)
            raise AssertionError("server's sha256 of the upload differs (server got %s)" % (res,))
        if got[32:] != SERVER_MIB:
            raise AssertionError("reply bytes differ")
        how, extra = c.wait_eof(3.0)
        if how != "eof" or extra:
            raise AssertionError("after the reply: %s with %d extra bytes, want EOF" % (how, len(extra)))


def t_halfclose_server_first(env, d):
    srv = env.servers["hc_server_first"]
    srv.drain()
    up = os.urandom(MIB)
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        got = c.recv_exact(MIB, 5.0)
        if got != SERVER_MIB:
            raise AssertionError("server bytes differ")
        how, extra = c.wait_eof(3.0)
        if how != "eof" or extra:
            raise AssertionError("after 1 MiB: %s with %d extra bytes, want EOF (server FIN not "
                                 "passed on?)" % (how, len(extra)))
        try:
            c.send(up)
        except OSError as e:
            raise AssertionError("client got the 1 MiB and EOF, but sending after it failed: %s "
                                 "(the gateway closed the client's half too)" % e)
    res = srv.result(5.0)
    if res is None:
        raise AssertionError("server never saw the client's EOF")
    _, n, digest, how = res
    if n != MIB or digest != hashlib.sha256(up).hexdigest() or how != "eof":
        raise AssertionError("server got %d bytes (%s), want %d intact then EOF" % (n, how, MIB))


def t_auth_407_then_200(env, d):
    v = Via(env, "tinyauth")
    srv = env.servers["echo"]
    with Client(d.port) as c:
        c.send(connect_head(A_AUTH, srv.port))
        r = c.read_head(5.0)
        if r.status != 407:
            raise AssertionError("first CONNECT answered %r, want 407" % r)
        body, framing = c.read_body(r, 5.0)
        if b"Proxy Authentication Required" not in body:
            raise AssertionError("407 body not relayed (%s-framed, %d bytes: %r)" % (
                framing, len(body), body[:100]))
        if framing == "close":
            raise AssertionError("407 relayed close-delimited (%r, headers %r): the connection "
                                 "cannot carry the next CONNECT" % (r, r.headers))
        c.send(connect_head(A_AUTH, srv.port, [basic_auth(*AUTH)]))
        r2 = c.read_head(5.0)
        if r2.status != 200:
            raise AssertionError("CONNECT with Proxy-Authorization answered %r" % r2)
        msg = os.urandom(4096)
        c.send(msg)
        if c.recv_exact(len(msg), 5.0) != msg:
            raise AssertionError("echo through the tunnel differs")
    v.check("%s:%d" % (A_AUTH, srv.port))
    return "407 framing to client: %s" % framing


def t_upstream_refused(env, d):
    srv = env.servers["echo"]
    with Client(d.port) as c:
        c.send(connect_head(A_REFUSE, srv.port))
        r = c.read_head(5.0)
        if r.status != 502:
            raise AssertionError("CONNECT to a pool with only a closed port answered %r, want 502" % r)


def t_upstream_retry(env, d):
    v = Via(env, "retry")
    srv = env.servers["echo"]
    for i in range(4):  # roundrobin: at least two of these pick the closed port first
        with Client(d.port) as c:
            try:
                c.tunnel(A_RETRY, srv.port)
            except AssertionError as e:
                raise AssertionError("attempt %d: %s" % (i + 1, e))
            msg = os.urandom(1000)
            c.send(msg)
            if c.recv_exact(len(msg), 5.0) != msg:
                raise AssertionError("attempt %d: echo differs" % (i + 1))
    v.check("%s:%d" % (A_RETRY, srv.port))


def wait_list(d, pred, timeout):
    """Poll tunnelctl list until pred(list) is true; returns the last list."""
    deadline = time.monotonic() + timeout
    while True:
        lst = d.list_tunnels()
        if pred(lst) or time.monotonic() > deadline:
            return lst
        time.sleep(0.1)


def short(x, n=300):
    s = repr(x) if not isinstance(x, str) else x
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def describe_leftovers(lst, me=None):
    mine = [t for t in lst if t.get("client") == me]
    other = [t for t in lst if t.get("client") != me]
    parts = []
    if mine:
        parts.append("this test's tunnel still listed: %s" % short(mine[0], 200))
    if other:
        parts.append("%d tunnel(s) of earlier tests still listed, targets %s" % (
            len(other), short(sorted(t.get("target") for t in other), 200)))
    return "; ".join(parts)


def t_counters(env, d, source="tunnelctl"):
    """source: 'tunnelctl' checks tunnelctl list --json; 'bpftool' checks the
    pinned tunnels map (sockmap only)."""
    srv = env.servers["counters"]
    srv.drain()
    up = os.urandom(COUNT_UP)
    first = 1000  # pipelined with the CONNECT
    with Client(d.port) as c:
        lport = c.local_port()
        c.send(connect_head(A_DIRECT, srv.port) + up[:first])
        r = c.read_head(5.0)
        if r.status != 200:
            raise AssertionError("CONNECT answered %r" % r)
        c.send(up[first:])
        if c.recv_exact(COUNT_DOWN, 10.0) != DOWN_PAYLOAD:
            raise AssertionError("reply bytes differ")
        me = "127.0.0.1:%d" % lport

        def mine(lst):
            return [t for t in lst if t.get("client") == me]

        lst = wait_list(d, lambda l: any(t.get("bytes_up") == COUNT_UP and
                                         t.get("bytes_down") == COUNT_DOWN for t in mine(l)), 2.0)
        ent = mine(lst)
        if len(ent) != 1:
            raise AssertionError("tunnelctl list has %d entries for client %s: %s" % (
                len(ent), me, short(lst)))
        e = ent[0]
        want = {"bytes_up": COUNT_UP, "bytes_down": COUNT_DOWN, "upstream": "direct",
                "target": "%s:%d" % (A_DIRECT, srv.port), "relay": d.relay}
        bad = {k: e.get(k) for k in want if e.get(k) != want[k]}
        for k in ("id", "age_ms", "idle_ms", "copied_up", "copied_down"):
            if not isinstance(e.get(k), int):
                bad[k] = e.get(k)
        # The bytes pipelined with the CONNECT went through the daemon before the hand-off:
        # copied by it (a subset of the totals); splice copies nothing.
        if d.relay == "sockmap" and not (first <= e.get("copied_up", -1) <= COUNT_UP and
                                         0 <= e.get("copied_down", -1) <= COUNT_DOWN):
            bad["copied_up, copied_down"] = (e.get("copied_up"), e.get("copied_down"))
        if d.relay == "splice" and (e.get("copied_up"), e.get("copied_down")) != (0, 0):
            bad["copied_up, copied_down"] = (e.get("copied_up"), e.get("copied_down"))
        if bad and source == "tunnelctl":
            raise AssertionError("tunnelctl list entry: got %r, want %r" % (
                bad, {k: want.get(k, "an integer") for k in bad}))
        if source == "bpftool":
            vals = [x for x in d.bpf_tunnels() if isinstance(x, dict) and x.get("id") == e["id"]]
            if len(vals) != 1:
                raise AssertionError("bpftool dump of %s/tunnels has %d entries with id %d" % (
                    d.pin_dir, len(vals), e["id"]))
            v = vals[0]
            want_addr = [0] * 10 + [255, 255, 127, 0, 0, 1]
            if v.get("client_addr") != want_addr or v.get("client_port") != socket.htons(lport):
                raise AssertionError("bpftool tunnels id %d: client_addr %s client_port %s, want "
                                     "::ffff:127.0.0.1 and %d in network order (%d as bpftool "
                                     "prints it)" % (e["id"], v.get("client_addr"), v.get("client_port"),
                                                     lport, socket.htons(lport)))
            cp = (v.get("copied_up"), v.get("copied_down"))
            if cp != (e.get("copied_up"), e.get("copied_down")):
                raise AssertionError("bpftool %s/tunnels id %d: copied_up, copied_down = %r, "
                                     "tunnelctl list says %r" % (d.pin_dir, e["id"], cp, (
                                         e.get("copied_up"), e.get("copied_down"))))
            got = (v.get("bytes_up"), v.get("bytes_down"))
            if got != (COUNT_UP, COUNT_DOWN):
                hint = ""
                if got[0] == COUNT_UP - first:
                    hint = " (bytes_up lacks the %d bytes pipelined with the CONNECT)" % first
                raise AssertionError("bpftool %s/tunnels id %d: bytes_up, bytes_down = %r, want %r%s" % (
                    d.pin_dir, e["id"], got, (COUNT_UP, COUNT_DOWN), hint))
    lst = wait_list(d, lambda l: not l, 2.0)
    if lst:
        raise AssertionError("tunnel list not empty 2 s after close: " + describe_leftovers(lst, me))
    return "id %d" % e["id"]


# ---------------------------------------------------------------- error tests


def expect_status(c, status, timeout):
    r = c.read_head(timeout)
    if r.status != status:
        raise AssertionError("got %r, want %d" % (r, status))
    return r


def t_400(env, d):
    with Client(d.port) as c:
        c.send(b"CONNECT nohostport HTTP/1.1\r\nHost: nohostport\r\n\r\n")
        expect_status(c, 400, 3.0)


def t_403(env, d443):
    with Client(d443.port) as c:
        c.send(connect_head(A_DIRECT, 1))
        expect_status(c, 403, 3.0)


def t_431(env, d):
    head = ("CONNECT %s:%d HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (
        A_DIRECT, env.servers["echo"].port, "a" * 20000)).encode()
    with Client(d.port) as c:
        try:
            c.send(head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_status(c, 431, 3.0)


def t_408(env, d):
    with Client(d.port) as c:
        t0 = time.monotonic()
        c.send(("CONNECT %s:%d HTTP/1.1\r\nHost: x\r\n" % (A_DIRECT, env.servers["echo"].port)).encode())
        expect_status(c, 408, 2.0 + 0.5)
        dt = time.monotonic() - t0
        if dt > 2.0:
            raise AssertionError("408 after %.2f s, want <= header_timeout_ms + 1 s = 2 s" % dt)
    return "408 after %.2f s" % dt


def t_504(env, d):
    if not env.hang_works():
        raise Skip("cannot make a loopback connect() hang (accept queue trick failed)")
    with Client(d.port) as c:
        t0 = time.monotonic()
        c.send(connect_head(A_DIRECT, env.hang_port))
        expect_status(c, 504, 4.0)
        dt = time.monotonic() - t0
    if dt < 0.8:
        raise AssertionError("504 after %.2f s, before connect_timeout_ms = 1 s" % dt)
    return "504 after %.2f s" % dt


def t_ipv6(env, d6):
    """Client and target on ::1 (daemon listening on [::1]:port)."""
    srv = env.echo6
    with Client(d6.port, host="::1") as c:
        c.send(b"CONNECT [::1]:%d HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n" % (srv.port, srv.port))
        r = c.read_head(5.0)
        if r.status != 200:
            raise AssertionError("CONNECT [::1]:%d answered %r" % (srv.port, r))
        msg = os.urandom(64 << 10)
        c.send(msg)
        if c.recv_exact(len(msg), 5.0) != msg:
            raise AssertionError("echo differs")
        lst = wait_list(d6, lambda l: bool(l), 1.0)
        if len(lst) != 1 or lst[0].get("target") != "[::1]:%d" % srv.port:
            raise AssertionError("tunnelctl list: %s, want one tunnel with target [::1]:%d" % (
                short(lst), srv.port))
        return "client shown as %s" % lst[0].get("client")


def t_rst_from_origin(env, d):
    srv = env.servers["rst"]
    srv.drain()
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        c.recv_exact(2 * len(BANNER), 5.0)
        how, extra = c.wait_eof(4.0)
        t_end = time.monotonic()
    res = srv.result(1.0)
    if res is None or res[0] != "rst":
        raise AssertionError("origin did not report its RST: %r" % (res,))
    dt = t_end - res[1]
    if how == "timeout" or dt > 1.0:
        raise AssertionError("client side not closed within 1 s of the origin's RST (%s after %.2f s)" % (how, dt))
    return "client saw %s %.3f s after the RST" % (how, dt)


def t_rst_from_client(env, d):
    srv = env.servers["sink"]
    srv.drain()
    c = Client(d.port)
    try:
        c.tunnel(A_DIRECT, srv.port)
        c.send(os.urandom(64 << 10))
        time.sleep(0.3)
    finally:
        t = time.monotonic()
        rst_close(c.sock)
    res = srv.result(3.0)
    if res is None:
        raise AssertionError("origin side not closed within 3 s of the client's RST")
    dt = res[1] - t
    if dt > 1.0:
        raise AssertionError("origin side closed %.2f s after the client's RST, want <= 1 s" % dt)
    return "origin saw %s %.3f s after the RST" % (res[2], dt)


def t_sighup(env, d):
    """SIGHUP reloads the config without dropping an open tunnel."""
    srv = env.servers["echo"]
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        c.send(b"a" * 1000)
        c.recv_exact(1000, 5.0)
        d.proc.send_signal(1)
        time.sleep(0.5)
        if not d.alive():
            raise AssertionError("daemon exited on SIGHUP (rc=%s)" % d.proc.p.poll())
        msg = os.urandom(5000)
        c.send(msg)
        try:
            if c.recv_exact(len(msg), 5.0) != msg:
                raise AssertionError("echo differs")
        except AssertionError as e:
            raise AssertionError("open tunnel after SIGHUP: %s" % e)
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        c.send(b"b" * 100)
        c.recv_exact(100, 5.0)


def t_cli_manners(env):
    """--help and --version exit 0 on both programs; tunnelgated -t checks a config."""
    out = []
    for prog in (peers.DAEMON, peers.CTL):
        for flag in ("--help", "-h", "--version", "-V"):
            r = subprocess.run([prog, flag], capture_output=True, timeout=5)
            if r.returncode != 0 or not r.stdout:
                raise AssertionError("%s %s exited %d, printed %r %r" % (
                    os.path.basename(prog), flag, r.returncode, r.stdout[:100], r.stderr[:100]))
        out.append(r.stdout.decode().strip())
    d = tempfile.mkdtemp(prefix="tg-t-", dir=env.tmp)
    good, bad = os.path.join(d, "good.conf"), os.path.join(d, "bad.conf")
    with open(good, "w") as f:
        f.write("[gateway]\nlisten = 127.0.0.1:1\n[pool d]\ndirect = yes\n")
    with open(bad, "w") as f:
        f.write("[gateway]\nlisten = 127.0.0.1:1\nlisen = 2\n[pool d]\ndirect = yes\n")
    r = subprocess.run([peers.DAEMON, "-t", "-c", good], capture_output=True, timeout=5)
    if r.returncode != 0 or b"is valid" not in r.stdout:
        raise AssertionError("-t on a good config: rc %d, %r %r" % (r.returncode, r.stdout, r.stderr))
    r = subprocess.run([peers.DAEMON, "-t", "-c", bad], capture_output=True, timeout=5)
    if r.returncode != 1 or b"bad.conf:3: unknown key 'lisen'" not in r.stderr:
        raise AssertionError("-t on a bad config: rc %d, %r" % (r.returncode, r.stderr))
    return "; ".join(out) + "; -t: valid 0, bad 1 naming the line"


def t_crash_recovery(env):
    """A daemon killed with its clean-up helper leaves its pins: tunnelctl list
    --from-maps still reads the tunnels from them, and the next daemon on the same
    pin dir and control path replaces them and says so."""
    srv = env.servers["echo"]
    pools = [("direct", ["direct = yes"])]
    d = peers.Daemon(env.tmp, "tg-crash", "sockmap", pools)
    pin, ctl = d.pin_dir, d.ctl_sock
    d2 = None
    try:
        with Client(d.port) as c:
            c.tunnel(A_DIRECT, srv.port)
            c.send(b"x" * 1000)
            c.recv_exact(1000, 5.0)
            via_sock = d.list_tunnels()
            r = subprocess.run([peers.CTL, "list", "--json", "--from-maps", pin],
                               capture_output=True, timeout=5)
            from_maps = json.loads(r.stdout or b"null")
            if r.returncode or len(from_maps or []) != 1 or len(via_sock) != 1:
                raise AssertionError("list --from-maps: rc %d %r; via the socket %r" % (
                    r.returncode, r.stdout[:300], via_sock))
            m, s_ = from_maps[0], via_sock[0]
            for k in ("id", "client", "bytes_up", "bytes_down"):
                if m[k] != s_[k]:
                    raise AssertionError("--from-maps %s %r, the daemon says %r" % (k, m[k], s_[k]))
            os.killpg(d.pid, signal.SIGKILL)  # the daemon and its clean-up helper
            d.proc.p.wait(5)
        if not os.path.exists(os.path.join(pin, "tunnels")):
            raise AssertionError("pins gone after SIGKILL: nothing to recover from")
        d2 = peers.Daemon(env.tmp, "tg-crash2", "sockmap", pools,
                          extra={"bpf_pin_dir": pin, "control": ctl})
        d2.pin_dir = pin
        said = [l for l in d2.tail(40) if "stale" in l]
        if not said:
            raise AssertionError("the new daemon did not say it replaced stale pins: %r" % d2.tail(10))
        with Client(d2.port) as c:
            c.tunnel(A_DIRECT, srv.port)
            c.send(b"y" * 10)
            c.recv_exact(10, 5.0)
        return "--from-maps matched the daemon's list; after SIGKILL: %s" % said[0].split(": ", 1)[-1]
    finally:
        if d2:
            d2.stop()
        d.stop()


def pool_active(d, pool):
    """{server: active connections} of @pool, from tunnelctl pools."""
    r = d.ctl("pools")
    if r.returncode != 0:
        raise AssertionError("tunnelctl pools exited %d: %s" % (r.returncode, r.stderr))
    out = {}
    for line in r.stdout.decode().splitlines()[1:]:
        f = line.split("\t")
        if len(f) >= 5 and f[0] == pool:
            out[f[2]] = int(f[4])
    return out


def t_leastconn_reload(env):
    """leastconn counts survive SIGHUP: tunnels opened before the reload still count,
    the next tunnel goes to the server with fewer, and closing the old tunnels brings
    the counts back to 0 (they are released on the same server state)."""
    env.need("tinyproxy", "squid")
    servers = ["127.0.0.1:%d" % env.tiny.port, "127.0.0.1:%d" % env.squid.port]
    pools = [("lc", ["balance = leastconn"] + ["server = %s" % s for s in servers])]
    d = peers.Daemon(env.tmp, "tg-leastconn", "sockmap", pools, default="lc")
    srv = env.servers["echo"]
    clients = []
    try:
        for _ in range(3):
            c = Client(d.port)
            clients.append(c)
            c.tunnel(A_DIRECT, srv.port)
        before = pool_active(d, "lc")
        if sorted(before.values()) != [1, 2]:
            raise AssertionError("3 tunnels over 2 leastconn servers: active %r, want 2 and 1" % before)
        d.proc.send_signal(1)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any("reloaded" in l for l in d.proc.tail(20)):
            time.sleep(0.05)
        after = pool_active(d, "lc")
        if after != before:
            raise AssertionError("after SIGHUP active %r, before %r: counts lost" % (after, before))
        c = Client(d.port)
        clients.append(c)
        c.tunnel(A_DIRECT, srv.port)
        fourth = pool_active(d, "lc")
        if sorted(fourth.values()) != [2, 2]:
            raise AssertionError("4th tunnel after SIGHUP: active %r, want 2 and 2 "
                                 "(it must go to the server with 1)" % fourth)
        for c in clients:
            c.close()
        clients = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(pool_active(d, "lc").values()):
            time.sleep(0.05)
        end = pool_active(d, "lc")
        if any(end.values()):
            raise AssertionError("all tunnels closed, active still %r" % end)
        return "active %r before SIGHUP, the same after, %r with a 4th, 0 after close" % (
            before, fourth)
    finally:
        for c in clients:
            c.close()
        d.stop()


# ---------------------------------------------------------------- hygiene


def t_hygiene(env, d):
    deadline = time.monotonic() + 3.0
    while True:
        n = d.fd_count()
        lst = d.list_tunnels()
        if (n == d.fd0 and not lst) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = []
    if lst:
        problems.append("tunnelctl list not empty: " + describe_leftovers(lst))
    if n != d.fd0:
        now = d.fd_list()
        new = sorted(v for k, v in now.items() if d.fds0.get(k) != v)
        problems.append("fd count %d, was %d after startup (new: %s)" % (n, d.fd0, ", ".join(new[:10])))
    if os.path.exists(os.path.join(d.pin_dir, "tunnels")):
        vals = d.bpf_tunnels()
        if vals:
            problems.append("%s/tunnels has %d entries: %s" % (d.pin_dir, len(vals), short(vals[:2])))
    elif d.relay == "sockmap":
        problems.append("%s/tunnels not pinned" % d.pin_dir)
    if problems:
        raise AssertionError("; ".join(problems))


def t_sigterm(env, d):
    d.proc.send_signal(15)
    rc = d.proc.wait(8.0)
    if rc is None:
        raise AssertionError("still running 8 s after SIGTERM")
    problems = []
    if rc != 0:
        problems.append("exit code %d after SIGTERM, want 0" % rc)
    if os.path.exists(d.pin_dir):
        problems.append("%s still exists: %s" % (d.pin_dir, os.listdir(d.pin_dir)))
    if problems:
        raise AssertionError("; ".join(problems))


def t_bad_config(env):
    conf = os.path.join(env.tmp, "bad.conf")
    with open(conf, "w") as f:
        f.write("[gateway]\nlisten = 127.0.0.1:%d\ncontrol = %s/bad.sock\n"
                "bpf_pin_dir = /sys/fs/bpf/tg-test-bad-%s\nno_such_key = 1\n"
                "[pool direct]\ndirect = yes\n[route]\ndefault = direct\n" % (
                    peers.free_port(), env.tmp, os.urandom(4).hex()))
    p = peers.Proc("bad-config", [peers.DAEMON, "-c", conf], os.path.join(env.tmp, "bad.log"))
    rc = p.wait(10)
    if rc is None:
        p.stop()
        raise AssertionError("daemon still running 10 s after start with an unknown key")
    p.stop()
    out = "\n".join(p.tail(20))
    if rc == 0:
        raise AssertionError("exit code 0 with an unknown key; output: %r" % out)
    if conf not in out or not re.search(r"(\b|:)5\b", out.replace(conf, "")):
        raise AssertionError("output does not name %s and line 5: %r" % (conf, out))
    return "rc %d: %s" % (rc, out.strip().splitlines()[-1] if out.strip() else "")


def echo_through(env, p, port, msg):
    """Wait up to 5 s for daemon process p to listen on port, then push msg through a
    tunnel to the echo server and check it comes back."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and p.alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    if not p.alive():
        raise AssertionError("daemon exited: %r" % "\n".join(p.tail(10)))
    with Client(port) as c:
        c.tunnel("127.0.0.1", env.servers["echo"].port)
        c.send(msg)
        got = c.recv_exact(len(msg), 5.0)
        if got != msg:
            raise AssertionError("echo through the tunnel: %r, want %r" % (got, msg))


def t_auto_fallback(env):
    """relay = auto without BPF (run as nobody): one warning naming why, then splice works."""
    if not shutil.which("setpriv"):
        raise Skip("setpriv (util-linux) not found")
    d = tempfile.mkdtemp(prefix="tg-auto-", dir=env.tmp)
    os.chmod(d, 0o777)
    port = peers.free_port()
    conf = os.path.join(d, "auto.conf")
    with open(conf, "w") as f:
        f.write("[gateway]\nlisten = 127.0.0.1:%d\nrelay = auto\ncontrol = %s/ctl.sock\n"
                "bpf_pin_dir = /sys/fs/bpf/tg-test-auto-%s\nconnect_ports = *\n"
                "[pool direct]\ndirect = yes\n" % (port, d, os.urandom(4).hex()))
    os.chmod(conf, 0o644)
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            peers.DAEMON, "-c", conf]
    p = peers.Proc("auto-fallback", argv, os.path.join(d, "auto.log"))
    try:
        echo_through(env, p, port, b"ping-through-splice")
        out = p.tail(30)
        warn = [l for l in out if "relay = auto" in l]
        if len(warn) != 1 or "splice" not in warn[0] or "cannot load" not in warn[0]:
            raise AssertionError("want exactly one warning saying splice and why, got %r" % out)
        if any(l.startswith("libbpf:") for l in out):
            raise AssertionError("libbpf lines without -v: %r" % out)
        return warn[0].split("warning: ", 1)[-1]
    finally:
        p.stop()


def t_pause_fallback(env):
    """pause = sockops where the daemon finds no cgroup v2 (run in a mount namespace
    with the cgroup2 mount removed): one warning saying why, then the kernel relay holds
    instead (tunnelctl stats: pause hold) and works."""
    mnt = cgroup2_mount()
    if not mnt:
        raise Skip("no cgroup2 mount on this machine: nothing to take away")
    if not shutil.which("unshare"):
        raise Skip("unshare (util-linux) not found")
    d = tempfile.mkdtemp(prefix="tg-pausefb-", dir=env.tmp)
    port = peers.free_port()
    conf = os.path.join(d, "pause.conf")
    ctl = os.path.join(d, "ctl.sock")
    with open(conf, "w") as f:
        f.write("[gateway]\nlisten = 127.0.0.1:%d\nrelay = sockmap\npause = sockops\n"
                "control = %s\nbpf_pin_dir = /sys/fs/bpf/tg-test-pausefb-%s\n"
                "connect_ports = *\n[pool direct]\ndirect = yes\n"
                % (port, ctl, os.urandom(4).hex()))
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'umount "$1" && exec "$2" -c "$3"', "sh", mnt, peers.DAEMON, conf]
    p = peers.Proc("pause-fallback", argv, os.path.join(d, "pause.log"))
    try:
        echo_through(env, p, port, b"ping-while-holding")
        stats = subprocess.run([peers.CTL, "-s", ctl, "stats"], capture_output=True,
                               timeout=10).stdout.decode(errors="replace")
        if not re.search(r"^pause\thold$", stats, re.M):
            raise AssertionError("tunnelctl stats does not say pause hold: %r" % stats)
        out = p.tail(30)
        warn = [l for l in out if "pause = sockops" in l]
        if len(warn) != 1 or "pause = hold" not in warn[0] or "cgroup2" not in warn[0]:
            raise AssertionError("want exactly one warning saying hold and why, got %r" % out)
        return warn[0].split("warning: ", 1)[-1]
    finally:
        p.stop()


def cgroup2_mount():
    """Where cgroup2 is mounted, from /proc/self/mountinfo, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if " - cgroup2 " in line:
                return line.split()[4]
    return None


# ---------------------------------------------------------------- peer checks (no daemon)


def t_peer_tls(env, via):
    """curl straight through tinyproxy/squid: the harness and peers work."""
    env.need("tls", via)
    proxy = env.tiny if via == "tinyproxy" else env.squid
    origin = env.tls[VIA_ADDR[via]]
    out = os.path.join(env.tmp, "out-peer-%s" % via)
    t0 = time.monotonic()
    r = subprocess.run(["curl", "-sS", "-k", "--max-time", "60", "-x", "http://127.0.0.1:%d" % proxy.port,
                        "https://%s:%d/file" % (origin.addr, origin.port), "-o", out],
                       capture_output=True, timeout=90)
    dt = time.monotonic() - t0
    try:
        if r.returncode != 0:
            raise AssertionError("curl exited %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))
        if peers.file_sha256(out) != env.file_sha:
            raise AssertionError("sha256 differs")
    finally:
        if os.path.exists(out):
            os.unlink(out)
    return "%.0f MiB/s" % (FILE_SIZE / MIB / dt)


def t_peer_407(env):
    """tinyproxy's 407 is HTTP/1.0, close-delimited; with auth it tunnels."""
    env.need("tinyproxy")
    srv = env.servers["echo"]
    with Client(env.tiny_auth.port) as c:
        c.send(connect_head(A_AUTH, srv.port))
        r = c.read_head(5.0)
        body, framing = c.read_body(r, 5.0)
    if r.status != 407 or framing != "close" or b"Proxy Authentication Required" not in body:
        raise AssertionError("tinyproxy answered %r, %s-framed body %r" % (r, framing, body[:80]))
    with Client(env.tiny_auth.port) as c:
        c.tunnel(A_AUTH, srv.port, [basic_auth(*AUTH)])
        c.send(b"ping")
        if c.recv_exact(4, 5.0) != b"ping":
            raise AssertionError("echo through tinyproxy differs")
    return "%r, %d-byte close-delimited body" % (r, len(body))


def t_peer_hang(env):
    if not env.hang_works():
        raise AssertionError("connect() to the full-backlog listener did not hang")
