"""Several event loops (workers = N, the workers/ tests): connections spread over the
workers' SO_REUSEPORT listeners, tunnelctl answers for all of them, a second daemon
on the same listen address fails, and reload, drain and max_connections act on every
worker. The workers1/ subset runs tests of cases.py (and one of pool_cases.py) against
a daemon with workers = 1, the old single loop.

Which worker serves a connection is the kernel's choice (a hash of the addresses and
ports), so the tests only see it through `tunnelctl stats`: a `worker ID ACCEPTED OPEN`
line per worker. A test that needs both workers busy opens more connections, within a
bound, until the counters show it."""

import os
import select
import shutil
import socket
import threading
import time

import cases
import peers
import pool_cases
from httpclient import Client, connect_head

A, A2 = "127.0.0.1", "127.0.0.2"
WORKERS = 2
RESUME_MAX_S = 0.5  # a freed max_connections slot is used within this


def start(env, name, extra=None, rules=(), workers=WORKERS, relay="auto", pools=None):
    gw = {"workers": str(workers)}
    gw.update(extra or {})
    return peers.Daemon(env.tmp, name, relay, pools or [("direct", ["direct = yes"])], rules,
                        extra=gw)


def stats(d):
    """(key -> value of `tunnelctl stats`, {worker id: (accepted, open)})."""
    r = d.ctl("stats")
    if r.returncode != 0:
        raise AssertionError("tunnelctl stats exited %d: %s" % (
            r.returncode, r.stderr.decode(errors="replace").strip()))
    kv, ws = {}, {}
    for line in r.stdout.decode().splitlines():
        f = line.split("\t")
        if f[0] == "worker" and len(f) == 4:
            ws[int(f[1])] = (int(f[2]), int(f[3]))
        elif len(f) == 2:
            kv[f[0]] = f[1]
    if kv.get("workers") != str(len(ws)):
        raise AssertionError("tunnelctl stats: workers %s but %d worker lines: %r" % (
            kv.get("workers"), len(ws), r.stdout[-200:]))
    return kv, ws


def accepted_since(d, base):
    """Connections each worker accepted since @base (a stats() worker map)."""
    _, ws = stats(d)
    return {k: ws[k][0] - base.get(k, (0, 0))[0] for k in ws}


def opens(d):
    _, ws = stats(d)
    return {k: v[1] for k, v in ws.items()}


def wait_for(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def echo(c, tag=b""):
    msg = tag + os.urandom(1000)
    c.send(msg)
    got = c.recv_exact(len(msg), 5.0)
    if got != msg:
        raise AssertionError("echo through tunnel from port %d differs (%d bytes)" % (
            c.local_port(), len(got)))


def tunnel(d, host, port):
    """A new client connection with a tunnel to @host:@port, one echo verified."""
    c = Client(d.port)
    try:
        c.tunnel(host, port)
        echo(c)
    except BaseException:
        c.close()
        raise
    return c


def open_spread(d, n, targets, limit, clients):
    """Open @n tunnels (round robin over @targets), then more, up to @limit in all,
    until every worker has one open. Appended to @clients as (Client, target)."""
    for i in range(limit):
        if i >= n and all(opens(d).values()):
            break
        t = targets[i % len(targets)]
        clients.append((tunnel(d, *t), t))
    o = opens(d)
    if not all(o.values()):
        raise AssertionError("%d tunnels, all on one worker: open per worker %r" % (limit, o))
    return o


def close_all(clients):
    for c in clients:
        (c[0] if isinstance(c, tuple) else c).close()


# ---------------------------------------------------------------- workers = 2


def t_spread_and_list(env, tap):
    """40 tunnels at once from 40 source ports: both workers take some, tunnelctl
    stats and list --json count all 40 with unique ids, and tunnelctl kill closes each,
    whichever worker holds it (seen as that worker's OPEN going down by one)."""
    srv = env.servers["echo"]
    d = tap.start(env, "tg-w-spread")
    clients = []
    try:
        kv, base = stats(d)
        if sorted(base) != list(range(WORKERS)):
            raise AssertionError("workers = %d: tunnelctl stats lists workers %r" % (
                WORKERS, sorted(base)))
        for _ in range(40):
            clients.append(tunnel(d, A, srv.port))
        ports = {c.local_port() for c in clients}
        if len(ports) != 40:
            raise AssertionError("40 clients used %d source ports" % len(ports))
        kv, ws = stats(d)
        acc = {k: ws[k][0] - base[k][0] for k in ws}
        op = {k: ws[k][1] for k in ws}
        if sum(acc.values()) != 40 or not all(acc.values()):
            raise AssertionError("40 connections: accepted per worker %r (want all > 0, sum 40)" %
                                 acc)
        if (sum(op.values()) != 40 or kv.get("connections") != "40" or
                kv.get("tunnels_open") != "40"):
            raise AssertionError("40 tunnels open: OPEN per worker %r, connections %s, "
                                 "tunnels_open %s" % (op, kv.get("connections"),
                                                      kv.get("tunnels_open")))
        lst = d.list_tunnels()
        by_client = {t.get("client"): t for t in lst}
        ids = [t.get("id") for t in lst]
        mine = {p: by_client.get("%s:%d" % (A, p)) for p in ports}
        missing = [p for p, t in mine.items() if t is None]
        if len(lst) != 40 or missing or len(set(ids)) != 40:
            raise AssertionError("tunnelctl list --json: %d entries, %d unique ids, %d of our 40 "
                                 "clients missing (e.g. port %s)" % (
                                     len(lst), len(set(ids)), len(missing), missing[:3]))
        killed = {k: 0 for k in ws}
        for c in clients:
            tid = mine[c.local_port()]["id"]
            echo(c, b"before-kill")
            before = opens(d)
            r = d.ctl("kill", str(tid))
            if r.returncode != 0 or r.stdout.strip() != b"ok":
                raise AssertionError("tunnelctl kill %d: rc %d, %r %r" % (
                    tid, r.returncode, r.stdout, r.stderr))
            how, _ = c.wait_eof(3.0)
            if how == "timeout":
                raise AssertionError("tunnel %d (client port %d) still open 3 s after tunnelctl "
                                     "kill" % (tid, c.local_port()))

            def dropped():
                o = opens(d)
                return o if sum(o.values()) == sum(before.values()) - 1 else None

            after = wait_for(dropped, 1.0)
            if not after:
                raise AssertionError("tunnel %d killed: OPEN per worker %r, was %r" % (
                    tid, opens(d), before))
            owner = [k for k in after if after[k] == before[k] - 1]
            killed[owner[0]] += 1
            r = d.ctl("kill", str(tid))
            if r.returncode == 0:
                raise AssertionError("tunnelctl kill %d a second time: rc 0, %r" % (tid, r.stdout))
        if not all(killed.values()):
            raise AssertionError("the 40 kills closed tunnels of workers %r only" % killed)
        left = d.list_tunnels()
        if left or stats(d)[0].get("connections") != "0":
            raise AssertionError("after 40 kills: %d listed, connections %s" % (
                len(left), stats(d)[0].get("connections")))
        return "accepted per worker %r, 40 unique ids; kills closed %r per worker" % (acc, killed)
    finally:
        close_all(clients)
        d.stop()


def t_second_daemon_fails(env, tap):
    """A second daemon on the same listen address (its own control socket and pin
    dir) exits non-zero, saying the address is in use; the first one still serves."""
    srv = env.servers["echo"]
    d = tap.start(env, "tg-w-first")
    name = "tg-w-second"
    pin2 = "/sys/fs/bpf/tg-test-%s-%s" % (name, os.urandom(4).hex())
    ctl2 = os.path.join(env.tmp, "%s.ctl.sock" % name)
    conf2 = os.path.join(env.tmp, "%s.conf" % name)
    p = None
    clients = []
    try:
        with open(d.conf) as f:
            text = f.read()
        with open(conf2, "w") as f:
            f.write(text.replace(d.ctl_sock, ctl2).replace(d.pin_dir, pin2))
        _, base = stats(d)
        t0 = time.monotonic()
        p = peers.Proc(name, [peers.DAEMON, "-c", conf2, "-v"],
                       os.path.join(env.tmp, name + ".log"))
        rc = p.wait(5.0)
        dt = time.monotonic() - t0
        out = p.tail(30)
        if rc is None:
            raise AssertionError("a second daemon on %s:%d still runs 5 s after start: %r" % (
                A, d.port, out[-3:]))
        problems = []
        if rc == 0:
            problems.append("exit code 0")
        used = [l for l in out if "Address already in use" in l]
        if not used or not any("cannot listen on" in l for l in used):
            problems.append("no 'cannot listen on ...: Address already in use' line: %r" % out[-3:])
        if os.path.exists(pin2):
            problems.append("its pin dir %s exists: %s" % (pin2, os.listdir(pin2)))
        if os.path.exists(ctl2):
            problems.append("its control socket %s exists" % ctl2)
        if problems:
            raise AssertionError("second daemon (rc %s): %s" % (rc, "; ".join(problems)))
        if not d.alive():
            raise AssertionError("the first daemon exited (rc=%s)" % d.proc.p.poll())
        for _ in range(16):
            clients.append(tunnel(d, A, srv.port))
        acc = accepted_since(d, base)
        if sum(acc.values()) != 16:
            raise AssertionError("16 CONNECTs to the first daemon: accepted per worker %r" % acc)
        return "second daemon rc %d after %.2f s: %s; the first served 16 tunnels, per " \
               "worker %r" % (rc, dt, used[0].split("tunnelgated ", 1)[-1], acc)
    finally:
        close_all(clients)
        if p:
            p.stop()
        shutil.rmtree(pin2, ignore_errors=True)
        d.stop()


def t_reload_reaches_all_workers(env, tap):
    """SIGHUP with connect_ports no longer allowing the echo port and a reject rule for
    127.0.0.2: 30 new CONNECTs, spread over both workers, all get 403; the tunnels
    opened before (to those targets, on both workers) keep relaying."""
    srv, banner = env.servers["echo"], env.servers["banner"]
    os.chmod(env.tmp, 0o755)  # the daemon reads its config again as its user (nobody)
    d = tap.start(env, "tg-w-reload")
    old = []
    conns = []
    try:
        o = open_spread(d, 8, [(A, srv.port), (A2, srv.port)], 24, old)
        with open(d.conf) as f:
            text = f.read()
        if "connect_ports = *\n" not in text:
            raise AssertionError("no 'connect_ports = *' line in %s" % d.conf)
        ports = "1-%d, %d-65535" % (srv.port - 1, srv.port + 1)
        with open(d.conf, "w") as f:
            f.write(text.replace("connect_ports = *\n", "connect_ports = %s\n" % ports) +
                    "\n[rule w-reject]\nhost = %s\naction = reject\n" % A2)
        off = d.log_size()
        d.proc.send_signal(1)
        if not wait_for(lambda: any("reloaded" in l for l in d.tail(20, off)), 3):
            raise AssertionError("no 'reloaded' line after SIGHUP: %r" % d.tail(5, off))
        _, base = stats(d)
        bad = []
        for i in range(30):
            target = (A, srv.port) if i % 2 == 0 else (A2, banner.port)
            c = Client(d.port)
            conns.append(c)
            c.send(connect_head(*target))
            r = c.read_head(5.0)
            if r.status != 403:
                bad.append("%s:%d -> %d" % (target[0], target[1], r.status))
        acc = accepted_since(d, base)
        if bad:
            raise AssertionError("after SIGHUP, %d of 30 CONNECTs not 403: %s; accepted per worker "
                                 "%r" % (len(bad), bad[:4], acc))
        if sum(acc.values()) != 30 or not all(acc.values()):
            raise AssertionError("30 CONNECTs after SIGHUP: accepted per worker %r (want all "
                                 "> 0)" % acc)
        with Client(d.port) as c:  # a port and host the new config allows
            c.tunnel(A, banner.port)
            if c.recv_exact(len(cases.BANNER), 5.0) != cases.BANNER:
                raise AssertionError("banner through an allowed tunnel after SIGHUP differs")
        for c, t in old:
            try:
                echo(c, b"after-reload")
            except AssertionError as e:
                raise AssertionError("tunnel to %s:%d opened before SIGHUP: %s" % (t[0], t[1], e))
        return ("%d tunnels open before (per worker %r) still echo; 30 new CONNECTs, accepted per "
                "worker %r: all 403" % (len(old), o, acc))
    finally:
        close_all(old + conns)
        d.stop()


def t_drain_all_workers(env, tap):
    """SIGTERM: no worker accepts any more, the open tunnels of both keep relaying,
    and once they close the daemon exits 0 and removes its pins."""
    srv = env.servers["echo"]
    d = tap.start(env, "tg-w-drain", extra={"drain_timeout_ms": "15000"})
    clients = []
    try:
        o = open_spread(d, 10, [(A, srv.port)], 20, clients)
        n = len(clients)
        off = d.log_size()
        d.proc.send_signal(15)
        line = wait_for(lambda: [l for l in d.tail(20, off) if "closing listeners" in l], 3)
        if not line or ("draining %d connections" % n) not in line[0]:
            raise AssertionError("after SIGTERM with %d tunnels open: %r" % (
                n, line or d.tail(5, off)))

        def refused():
            try:
                socket.create_connection((A, d.port), timeout=1.0).close()
                return False
            except ConnectionRefusedError:
                return True

        if not wait_for(refused, 2.0, 0.05):
            raise AssertionError("a new connection was accepted 2 s after SIGTERM")
        took = [i for i in range(20) if not refused()]
        if took:
            raise AssertionError("%d of 20 new connections after SIGTERM not refused" % len(took))
        for c, _ in clients:
            echo(c, b"draining")
        if not d.alive():
            raise AssertionError("daemon exited with %d tunnels open (rc %s)" % (
                n, d.proc.p.poll()))
        close_all(clients)
        t0 = time.monotonic()
        rc = d.proc.wait(8.0)
        dt = time.monotonic() - t0
        if rc is None:
            raise AssertionError("still running 8 s after its last tunnel closed")
        problems = []
        if rc != 0:
            problems.append("exit code %d, want 0" % rc)
        if os.path.exists(d.pin_dir):
            problems.append("%s still exists: %s" % (d.pin_dir, os.listdir(d.pin_dir)))
        if any("drain_timeout_ms reached" in l for l in d.tail(30, off)):
            problems.append("it waited for drain_timeout_ms")
        if problems:
            raise AssertionError("; ".join(problems))
        return ("%d tunnels (open per worker %r) relayed after SIGTERM, 20 new connections "
                "refused; exit 0 %.2f s after the last closed, pins removed" % (n, o, dt))
    finally:
        close_all(clients)
        d.stop()


def t_max_connections_all_workers(env, tap):
    """max_connections = 6 over 2 workers: of 12 clients 6 are served, the others wait
    in a backlog unanswered until the first 6 close, then are served at once, whichever
    worker's backlog they wait in; connections never > 6."""
    srv = env.servers["echo"]
    limit, n = 6, 12
    d = tap.start(env, "tg-w-maxconn", extra={"max_connections": str(limit),
                                              "header_timeout_ms": "20000"})
    clients = []
    seen = {"max": 0, "samples": 0, "err": None}
    done = threading.Event()

    def monitor():
        while not done.is_set():
            try:
                kv, ws = stats(d)
                seen["max"] = max(seen["max"], int(kv["connections"]),
                                  sum(v[1] for v in ws.values()))
                seen["samples"] += 1
            except Exception as e:  # reported below
                seen["err"] = e
                return
            time.sleep(0.02)

    mon = threading.Thread(target=monitor, daemon=True)
    try:
        _, base = stats(d)
        mon.start()
        for _ in range(n):
            clients.append(Client(d.port))
        if not wait_for(lambda: sum(accepted_since(d, base).values()) >= limit, 3):
            raise AssertionError("%d clients: accepted %r, want %d in all" % (
                n, accepted_since(d, base), limit))
        time.sleep(0.5)
        acc1 = accepted_since(d, base)
        kv, _ = stats(d)
        if sum(acc1.values()) != limit or kv.get("accepting") != "paused":
            raise AssertionError("%d clients at max_connections %d: accepted per worker %r, "
                                 "accepting %s" % (n, limit, acc1, kv.get("accepting")))
        for c in clients:
            c.send(connect_head(A, srv.port))
        time.sleep(1.0)
        served, waiting = [], []
        for c in clients:
            (served if select.select([c.sock], [], [], 0)[0] else waiting).append(c)
        if len(served) != limit:
            raise AssertionError("%d of %d CONNECTs answered within 1 s, want %d" % (
                len(served), n, limit))
        for c in served:
            r = c.read_head(2.0)
            if r.status != 200:
                raise AssertionError("a served client's CONNECT answered %r" % r)
            echo(c)
        t0 = time.monotonic()
        for c in served:
            c.close()
        for c in waiting:
            r = c.read_head(5.0)
            if r.status != 200:
                raise AssertionError("a waiting client's CONNECT answered %r" % r)
            echo(c)
        dt = time.monotonic() - t0
        acc2 = accepted_since(d, base)
        if dt > RESUME_MAX_S:
            # one loop answers at once; a worker must not leave a freed slot unused either
            raise AssertionError("the %d waiting clients were answered %.2f s after the first "
                                 "%d closed (want < %.1f s); accepted per worker %r before, %r "
                                 "after" % (len(waiting), dt, limit, RESUME_MAX_S, acc1, acc2))
        done.set()
        mon.join(2)
        if seen["err"]:
            raise AssertionError("tunnelctl stats while polling: %s" % seen["err"])
        if seen["max"] > limit:
            raise AssertionError("tunnelctl stats showed %d connections (max_connections %d)" % (
                seen["max"], limit))
        if sum(acc2.values()) != n:
            raise AssertionError("accepted per worker %r at the end, want %d in all" % (acc2, n))
        return ("first %d accepted (per worker %r), %d waited; all answered %.2f s after the first "
                "closed; at most %d connections in %d stats samples; accepted per worker %r" % (
                    limit, acc1, len(waiting), dt, seen["max"], seen["samples"], acc2))
    finally:
        done.set()
        close_all(clients)
        d.stop()


def tests():
    """(name, fn(env, tap)): each test starts its daemon with tap.start()."""
    return [
        ("spread_and_list", t_spread_and_list),
        ("second_daemon_fails", t_second_daemon_fails),
        ("reload_reaches_all_workers", t_reload_reaches_all_workers),
        ("drain_all_workers", t_drain_all_workers),
        ("max_connections_all_workers", t_max_connections_all_workers),
    ]


# ---------------------------------------------------------------- workers = 1


def workers1_tests(env):
    """(name, fn(daemon)) of cases.py run against one workers = 1 daemon."""
    e = env
    return [
        ("one_worker_in_stats", t_one_worker),
        ("tls_64MiB_direct", lambda d: cases.t_tls(e, d, "direct")),
        ("parallel_16_tunnels", lambda d: cases.t_parallel(e, d)),
        ("halfclose_client_first_direct", lambda d: cases.t_halfclose_client_first(e, d)),
        ("counters_tunnelctl", lambda d: cases.t_counters(e, d)),
        ("sighup_reload_keeps_tunnel", lambda d: cases.t_sighup(e, d)),
    ]


def t_one_worker(d):
    kv, ws = stats(d)
    if kv.get("workers") != "1" or sorted(ws) != [0]:
        raise AssertionError("workers = 1: stats say workers %s, worker lines %r" % (
            kv.get("workers"), ws))
    if not any("with 1 workers" in l for l in d.tail(60)):
        raise AssertionError("no 'listening ... with 1 workers' line")
    return "relay %s, worker lines %r" % (kv.get("relay"), ws)


class Tap(pool_cases.Tap):
    """What runner.run() shows the log of: the daemon a workers/ test started."""

    def start(self, env, name, **kw):
        self.d = start(env, name, **kw)
        return self.d


class Tap1(pool_cases.Tap):
    """pool_cases' Tap whose daemons run with workers = 1."""

    def start(self, env, name, pools, rules=(), default="direct", **kw):
        extra = dict(kw.pop("extra", None) or {}, workers="1")
        return pool_cases.Tap.start(self, env, name, pools, rules, default, extra=extra, **kw)


def t_pool_maxconn_1(env, tap):
    """pool_cases' maxconn queue test with workers = 1."""
    info = pool_cases.t_maxconn(env, tap)
    if not any("with 1 workers" in l for l in tap.tail(200)):
        raise AssertionError("the pool daemon did not run with 1 worker: %r" % tap.tail(3))
    return info


def run_workers1(runner, env, skip_reason):
    names = ["workers1/%s" % n for n, _ in workers1_tests(env)] + ["workers1/pools_maxconn_queue"]
    if not any(runner.selected(n) for n in names):
        return
    if skip_reason:
        for n in names:
            runner.skip(n, skip_reason)
        return
    os.chmod(env.tmp, 0o755)  # t_sighup: the daemon reads its config again as nobody
    pools, rules = env.daemon_pools()

    def new():
        d = peers.Daemon(env.tmp, "tg-w1-%d" % int(time.monotonic() * 1000), "auto", pools, rules,
                         extra={"workers": "1"})
        d.relay = stats(d)[0].get("relay")  # what auto chose: cases.t_counters checks it
        return d

    d = None
    for n, fn in workers1_tests(env):
        name = "workers1/%s" % n
        if not runner.selected(name):
            continue
        if d is None or not d.alive():
            if d is not None:  # a crash fails the test that caused it; restart for the rest
                print("# workers1 daemon died (rc=%s); restarting" % d.proc.p.poll(), flush=True)
                d.stop()
            try:
                d = new()
            except Exception as e:
                d = None
                lines = str(e).splitlines()
                runner.fail(name, "daemon did not start: %s" % lines[0], lines[1:])
                continue
        runner.run(name, (lambda f, dd: lambda: f(dd))(fn, d), d)
    if d is not None:
        d.stop()
    tap = Tap1()
    runner.run("workers1/pools_maxconn_queue", lambda: t_pool_maxconn_1(env, tap), tap)


def run_workers(runner, env, skip_reason=None):
    for n, fn in tests():
        name = "workers/%s" % n
        if skip_reason:
            runner.skip(name, skip_reason)
            continue
        tap = Tap()
        runner.run(name, (lambda f, t: lambda: f(env, t))(fn, tap), tap)
    run_workers1(runner, env, skip_reason)
