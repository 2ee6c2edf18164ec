"""Host name look-ups of direct targets (c-ares on the daemon's loop), named dns/...

Every look-up goes to a DNS stub on loopback (dnsstub.py) that the daemons are
pointed at with `resolver = 127.0.0.1:PORT`, so no query leaves the machine:
  fast.test, fast2.test   A 127.0.0.1 (the suite's echo server listens there)
  slow.test               never answered
  anything else           NXDOMAIN
Two daemons: tg-dns (resolver_max_queries default) and tg-dns-q1
(resolver_max_queries = 1), both with resolver_timeout_ms = TIMEOUT_MS and a
connect_timeout_ms well above it, so a 504 here comes from the resolver.
"""

import os
import select
import time

import peers
from dnsstub import T_A, DnsStub
from httpclient import Client, connect_head

TIMEOUT_MS = 1500
SLOW = 20


def stub_seen(stub, name, n, timeout=2.0):
    """Wait for n A queries for name (each look-up asks A and AAAA)."""
    got = stub.wait_count(name, n, timeout, qtype=T_A)
    if got < n:
        raise AssertionError("the DNS stub saw %d A queries for %s, want %d: the daemon did not ask "
                             "it (check resolver = 127.0.0.1:%d took effect)" % (got, name, n, stub.port))


def readable(clients):
    r, _, _ = select.select([c.sock for c in clients], [], [], 0)
    return len(r)


def echo_tunnel(d, host, port, timeout=5.0):
    """CONNECT host:port, echo 1000 bytes through it; returns the seconds to the 200."""
    with Client(d.port) as c:
        t0 = time.monotonic()
        c.tunnel(host, port, timeout=timeout)
        dt = time.monotonic() - t0
        msg = os.urandom(1000)
        c.send(msg)
        if c.recv_exact(len(msg), 5.0) != msg:
            raise AssertionError("echo through the tunnel to %s differs" % host)
    return dt


def wait_fds(d, want, timeout):
    deadline = time.monotonic() + timeout
    while d.fd_count() != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return d.fd_count()


def t_fast_while_slow(env, d, stub):
    port = env.servers["echo"].port
    before = stub.count("slow.test", T_A)
    slow = []
    try:
        for _ in range(SLOW):
            c = Client(d.port)
            slow.append(c)
            c.send(connect_head("slow.test", port))
        stub_seen(stub, "slow.test", before + SLOW)
        dt = echo_tunnel(d, "fast.test", port)
        if dt >= 1.0:
            raise AssertionError("CONNECT fast.test answered after %.2f s with %d slow.test look-ups "
                                 "pending, want < 1 s" % (dt, SLOW))
        if readable(slow):
            raise AssertionError("%d of the %d slow.test clients were answered before "
                                 "resolver_timeout_ms: the test proves nothing" % (readable(slow), SLOW))
    finally:
        for c in slow:
            c.close()
    return "fast.test tunnel in %.0f ms with %d slow.test look-ups pending" % (dt * 1000, SLOW)


def t_slow_504(env, d, stub):
    with Client(d.port) as c:
        t0 = time.monotonic()
        c.send(connect_head("slow.test", env.servers["echo"].port))
        r = c.read_head(TIMEOUT_MS / 1000 + 3)
        dt = time.monotonic() - t0
        body, _ = c.read_body(r, 3.0)
    if r.status != 504:
        raise AssertionError("CONNECT slow.test answered %r (%r), want 504" % (r, body[:200]))
    if not TIMEOUT_MS / 1000 - 0.1 <= dt <= TIMEOUT_MS / 1000 + 1.0:
        raise AssertionError("504 after %.2f s, want resolver_timeout_ms = %.1f s (+1 s)" % (
            dt, TIMEOUT_MS / 1000))
    if b"resolver_timeout_ms" not in body:
        raise AssertionError("the 504's body does not name resolver_timeout_ms: %r" % body[:200])
    return "504 after %.2f s" % dt


def t_nxdomain_502(env, d, stub):
    with Client(d.port) as c:
        c.send(connect_head("nx.test", env.servers["echo"].port))
        r = c.read_head(5.0)
        body, _ = c.read_body(r, 3.0)
    if r.status != 502 or b"cannot resolve nx.test" not in body:
        raise AssertionError("CONNECT nx.test answered %r %r, want 502 'cannot resolve nx.test'" % (
            r, body[:200]))
    stub_seen(stub, "nx.test", 1)


def t_client_gone(env, d, stub):
    """Clients that leave while their look-up is pending leave no fd behind."""
    port = env.servers["echo"].port
    # Earlier tests' look-ups end when c-ares gives up on them: wait for the baseline.
    n = wait_fds(d, d.fd0, TIMEOUT_MS / 1000 + 3)
    if n != d.fd0:
        raise AssertionError("fd count %d before the test, %d after startup" % (n, d.fd0))
    before = stub.count("slow.test", T_A)
    clients = [Client(d.port) for _ in range(5)]
    for c in clients:
        c.send(connect_head("slow.test", port))
    stub_seen(stub, "slow.test", before + len(clients))
    pending = d.fd_count()
    for c in clients:
        peers.rst_close(c.sock)
    t0 = time.monotonic()
    n = wait_fds(d, d.fd0, TIMEOUT_MS / 1000 + 3)
    dt = time.monotonic() - t0
    if n != d.fd0:
        new = sorted(v for k, v in d.fd_list().items() if d.fds0.get(k) != v)
        raise AssertionError("fd count %d %.1f s after the clients left, %d after startup (new: %s)" % (
            n, dt, d.fd0, ", ".join(new[:10])))
    dt2 = echo_tunnel(d, "fast2.test", port)  # the resolver still works
    return "%d fds with 5 look-ups pending, back to %d %.1f s after the clients left; " \
        "fast2.test then in %.0f ms" % (pending, n, dt, dt2 * 1000)


def t_queue(env, dq, stub):
    """resolver_max_queries = 1: look-ups beyond it wait in order, within their deadline."""
    port = env.servers["echo"].port
    # A burst drains through the one slot.
    burst = [Client(dq.port) for _ in range(5)]
    try:
        for i, c in enumerate(burst):
            c.send(connect_head("fast.test" if i % 2 else "fast2.test", port))
        for i, c in enumerate(burst):
            r = c.read_head(3.0)
            if r.status != 200:
                raise AssertionError("CONNECT %d of a burst of 5 answered %r, want 200" % (i + 1, r))
    finally:
        for c in burst:
            c.close()
    # fast.test waits for the slot slow.test holds until c-ares gives up on it (about
    # resolver_timeout_ms), and gets it before its own deadline.
    before = stub.count("slow.test", T_A)
    with Client(dq.port) as slow:
        t0 = time.monotonic()
        slow.send(connect_head("slow.test", port))
        stub_seen(stub, "slow.test", before + 1)
        time.sleep(max(0.0, t0 + TIMEOUT_MS / 1000 * 2 / 3 - time.monotonic()))
        fast_before = stub.count("fast.test", T_A)
        dt = echo_tunnel(dq, "fast.test", port, timeout=TIMEOUT_MS / 1000 + 3)
        if stub.count("fast.test", T_A) <= fast_before:
            raise AssertionError("fast.test was not looked up at the stub")
        r = slow.read_head(1.0)
    if r.status != 504:
        raise AssertionError("CONNECT slow.test answered %r, want 504" % r)
    if dt < 0.2:
        raise AssertionError("fast.test answered after %.2f s while slow.test held the only "
                             "look-up resolver_max_queries = 1 allows: it did not wait" % dt)
    # A look-up that waits the whole time in the queue still ends at its own deadline.
    before = stub.count("slow.test", T_A)
    with Client(dq.port) as a, Client(dq.port) as b:
        a.send(connect_head("slow.test", port))
        stub_seen(stub, "slow.test", before + 1)
        t1 = time.monotonic()
        b.send(connect_head("slow.test", port))
        rb = b.read_head(TIMEOUT_MS / 1000 + 3)
        dt_b = time.monotonic() - t1
        a.read_head(1.0)
    if rb.status != 504 or dt_b > TIMEOUT_MS / 1000 + 0.5:
        raise AssertionError("a queued slow.test look-up answered %r after %.2f s, want 504 within "
                             "resolver_timeout_ms of its request (%.1f s + 0.5 s)" % (
                                 rb, dt_b, TIMEOUT_MS / 1000))
    return "queued fast.test answered after %.2f s; queued slow.test 504 after %.2f s" % (dt, dt_b)


TESTS = [
    ("fast_not_delayed_by_20_slow", t_fast_while_slow, "d"),
    ("slow_name_504_after_resolver_timeout", t_slow_504, "d"),
    ("nxdomain_502", t_nxdomain_502, "d"),
    ("client_gone_no_fd_leak", t_client_gone, "d"),
    ("queue_beyond_max_queries", t_queue, "dq"),
]


def names():
    return ["dns/%s" % n for n, _, _ in TESTS]


def run_dns(runner, env, skip_reason=None):
    todo = [n for n in names() if runner.selected(n)]
    if not todo:
        return
    if skip_reason:
        for n in todo:
            runner.skip(n, skip_reason)
        return
    stub = None
    daemons = {}
    try:
        try:
            stub = DnsStub({"fast.test": "127.0.0.1", "fast2.test": "127.0.0.1"}, silent=("slow.test",))
            pools = [("direct", ["direct = yes"])]
            extra = {"resolver": "127.0.0.1:%d" % stub.port, "resolver_timeout_ms": str(TIMEOUT_MS),
                     "connect_timeout_ms": "5000"}
            daemons["d"] = peers.Daemon(env.tmp, "tg-dns", "splice", pools, extra=extra)
            daemons["dq"] = peers.Daemon(env.tmp, "tg-dns-q1", "splice", pools,
                                         extra=dict(extra, resolver_max_queries="1",
                                                    workers="1"))  # the limit is per worker
        except Exception as e:
            lines = str(e).splitlines()
            for n in todo:
                runner.fail(n, "setup failed: %s: %s" % (type(e).__name__, lines[0] if lines else ""),
                            lines[1:] if n == todo[0] else ())
            return
        for n, fn, which in TESTS:
            name, d = "dns/%s" % n, daemons[which]
            if not runner.selected(name):
                continue
            if not d.alive():
                runner.fail(name, "daemon %s died (rc=%s)" % (d.name, d.proc.p.poll()), d.tail(15))
                continue
            runner.run(name, (lambda f, dd: lambda: f(env, dd, stub))(fn, d), d)
    finally:
        for d in daemons.values():
            d.stop()
        if stub is not None:
            stub.stop()
