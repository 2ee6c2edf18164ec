"""Active health checks (user/health.c) with a real tinyproxy: check = connect takes a
refused server down and brings it back when a proxy listens there; check = none probes
only the servers passive failures took down; a SIGHUP keeps the health of the servers
it keeps. The daemon runs as it ships (seccomp on, as `user`), so a syscall a check
makes that the allow-list lacks kills it. pool_cases.py covers check = http_connect.
Each test runs its own daemon; every socket is on 127.0.0.1."""

import re
import time

from pool_cases import (Stack, Tap, column, closed_port, echo_once, ints, log_has, reload,
                        srv, states, tinyproxy, wait_for)

A = "127.0.0.1"
INTERVAL_MS, FALL, RISE = 200, 3, 2
SLACK_S = 1.0  # scheduling, the CLI round trip, a loaded CI machine


def checks(kind):
    return ["check = %s" % kind, "check_interval_ms = %d" % INTERVAL_MS, "check_timeout_ms = 300",
            "fall = %d" % FALL, "rise = %d" % RISE]


def connects(d, target, n):
    """@n CONNECTs through @d; the reasons of those that failed."""
    return [w for w in (echo_once(d.port, target) for _ in range(n)) if w]


def t_connect_check(env, tap):
    """check = connect: the refused server is down within fall checks, the tinyproxy up
    with an "ok" result; 50 CONNECTs all succeed; a tinyproxy on the refused port comes
    up after rise checks. The probes leave no descriptors behind."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        t1 = st.add(tinyproxy(env, "tp-hc-1", echo.port))
        bad = srv(closed_port())
        good = srv(t1.port)
        d = tap.start(env, "tg-health-connect", [("hc", ["server = %s" % good, "server = %s" % bad] +
                                                   checks("connect"))], default="hc")
        took = wait_for(lambda: states(d, "hc").get(bad) == "down", FALL * INTERVAL_MS / 1000 + 3)
        if took is None:
            raise AssertionError("refused server not down: %r" % states(d, "hc"))
        last = column(d, "hc", "check_last")
        if not last[bad].startswith("refused") or not last[good].startswith("ok"):
            raise AssertionError("check_last %r: want refused for %s, ok... for %s" % (last, bad, good))
        if states(d, "hc")[good] != "up":
            raise AssertionError("the tinyproxy is not up: %r" % states(d, "hc"))
        fd0 = d.fd_count()
        p0 = ints(d, "hc", "picks")
        fails = connects(d, (A, echo.port), 50)
        p1 = ints(d, "hc", "picks")
        if fails or p1[bad] != p0[bad]:
            raise AssertionError("with the refused server down: %d of 50 CONNECTs failed (%s), it "
                                 "got %d picks" % (len(fails), fails[:2], p1[bad] - p0[bad]))
        time.sleep(5 * INTERVAL_MS / 1000)
        fd1 = d.fd_count()
        if fd1 > fd0 + 2:  # a check or two may be in flight
            raise AssertionError("descriptors %d -> %d over 5 check rounds" % (fd0, fd1))
        st.add(tinyproxy(env, "tp-hc-2", echo.port, port=int(bad.rsplit(":", 1)[1])))
        rec = wait_for(lambda: states(d, "hc").get(bad) == "up", RISE * INTERVAL_MS / 1000 + 3)
        if rec is None:
            raise AssertionError("a tinyproxy on %s: still %r" % (bad, states(d, "hc")))
        if not log_has(d, r"server %s is up again" % re.escape(bad)):
            raise AssertionError("no 'server %s is up again' line in the log" % bad)
        fails = connects(d, (A, echo.port), 10)
        if fails:
            raise AssertionError("after the recovery: %d of 10 CONNECTs failed (%s)" % (
                len(fails), fails[:2]))
        return ("down %.2f s after start (interval %d ms, fall %d); 50 CONNECTs 0 failures; fds %d "
                "-> %d; up %.2f s after a proxy listened (rise %d)" % (
                    took, INTERVAL_MS, FALL, fd0, fd1, rec, RISE))
    finally:
        tap.stop()
        st.stop()


def t_none_probes_down(env, tap):
    """check = none: the up tinyproxy is never probed (no check_last); the refused server,
    taken down by client failures, is probed (check_last refused) and comes back after
    rise checks once a tinyproxy listens on its port."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        t1 = st.add(tinyproxy(env, "tp-hn-1", echo.port))
        bad = srv(closed_port())
        good = srv(t1.port)
        d = tap.start(env, "tg-health-none", [("hn", ["server = %s" % good, "server = %s" % bad] +
                                                checks("none"))], default="hn")
        for i in range(20):
            echo_once(d.port, (A, echo.port))
            if states(d, "hn").get(bad) == "down":
                break
        else:
            raise AssertionError("20 CONNECTs did not take the refused server down: %r" %
                                 states(d, "hn"))
        time.sleep(3 * INTERVAL_MS / 1000)
        last = column(d, "hn", "check_last")
        if last[good].startswith("ok"):
            raise AssertionError("check = none probed the up server: check_last %r" % last)
        if not last[bad].startswith("refused") or states(d, "hn")[bad] != "down":
            raise AssertionError("the down server: %r, check_last %r (want down, refused)" % (
                states(d, "hn"), last))
        st.add(tinyproxy(env, "tp-hn-2", echo.port, port=int(bad.rsplit(":", 1)[1])))
        rec = wait_for(lambda: states(d, "hn").get(bad) == "up", RISE * INTERVAL_MS / 1000 + 3)
        if rec is None:
            raise AssertionError("a tinyproxy on %s: still %r" % (bad, states(d, "hn")))
        return "down after %d CONNECTs; up %.2f s after a proxy listened (rise %d, %d ms)" % (
            i + 1, rec, RISE, INTERVAL_MS)
    finally:
        tap.stop()
        st.stop()


def t_sighup_keeps_health(env, tap):
    """A SIGHUP that adds a refused server: the one already down stays down without a second
    'is down' line, the new one goes down; one that removes it: its line goes."""
    echo = env.servers["echo"]
    st = Stack()
    try:
        t1 = st.add(tinyproxy(env, "tp-hr-1", echo.port))
        bad1, bad2, good = srv(closed_port()), srv(closed_port()), srv(t1.port)
        d = tap.start(env, "tg-health-reload", [("hr", ["server = %s" % good, "server = %s" % bad1] +
                                                  checks("connect"))], default="hr")
        if wait_for(lambda: states(d, "hr").get(bad1) == "down", FALL * INTERVAL_MS / 1000 + 3) is None:
            raise AssertionError("refused server not down: %r" % states(d, "hr"))
        reload(d, lambda t: t.replace("server = %s\n" % bad1,
                                      "server = %s\nserver = %s\n" % (bad1, bad2)))
        s = states(d, "hr")
        if s.get(bad1) != "down":
            raise AssertionError("after SIGHUP the down server is %r: its health was lost" % s)
        took = wait_for(lambda: states(d, "hr").get(bad2) == "down", FALL * INTERVAL_MS / 1000 + 3)
        if took is None:
            raise AssertionError("the server the SIGHUP added is not checked: %r" % states(d, "hr"))
        n_down = sum(1 for l in d.tail(100000) if re.search(r"server %s is down" % re.escape(bad1), l))
        if n_down != 1:
            raise AssertionError("'server %s is down' logged %d times, want once" % (bad1, n_down))
        reload(d, lambda t: t.replace("server = %s\n" % bad1, ""))
        s = states(d, "hr")
        if bad1 in s or s.get(bad2) != "down" or s.get(good) != "up":
            raise AssertionError("after removing %s: %r" % (bad1, s))
        fails = connects(d, (A, echo.port), 10)
        if fails:
            raise AssertionError("%d of 10 CONNECTs failed (%s)" % (len(fails), fails[:2]))
        return "added server down %.2f s after SIGHUP; the kept one stayed down, logged once" % took
    finally:
        tap.stop()
        st.stop()


def tests():
    return [
        ("connect_check_ejects_and_recovers", t_connect_check),
        ("none_probes_only_down_servers", t_none_probes_down),
        ("sighup_keeps_health", t_sighup_keeps_health),
    ]


def run_health(runner, env, skip_reason=None):
    for n, fn in tests():
        name = "health/%s" % n
        if skip_reason:
            runner.skip(name, skip_reason)
            continue
        tap = Tap()
        runner.run(name, (lambda f, t: lambda: f(env, t))(fn, tap), tap)
