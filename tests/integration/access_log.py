"""The access log (access_log_format = json, SIGUSR1): one JSON object per request or
tunnel with the right `end` and exact byte counts, and a reopen after logrotate's
rename, as the user the daemon runs as."""

import json
import os
import pwd
import re
import signal
import socket
import struct
import time

import peers
from hardening import Origin
from httpclient import Client

A = "127.0.0.1"
IDLE_MS = 2500  # longer than any other test's tunnel
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEYS = ["time", "client", "method", "rule", "pool", "upstream", "status", "relay", "bytes_up",
        "bytes_down", "copied_up", "copied_down", "duration_ms", "end"]


class State:
    def __init__(self, env, d, log):
        self.env, self.d, self.log = env, d, log


def lines_of(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [l for l in f.read().split(b"\n") if l]


def wait_line(path, port, timeout=5.0):
    """(parsed, raw) JSON line of client port @port; every line must parse."""
    deadline = time.monotonic() + timeout
    while True:
        for raw in lines_of(path):
            try:
                v = json.loads(raw)
            except ValueError as e:
                raise AssertionError("access log line is not JSON (%s): %r" % (e, raw[:300]))
            if v.get("client") == "%s:%d" % (A, port):
                return v, raw.decode()
        if time.monotonic() > deadline:
            raise AssertionError("%s: no line for client port %d within %.0f s" % (path, port, timeout))
        time.sleep(0.05)


def check(v, **want):
    """Every key present; the fields in @want equal; the others well formed."""
    target_key = "target" if v.get("method") == "CONNECT" else "host"
    missing = [k for k in KEYS + [target_key] if k not in v]
    bad = {k: (v.get(k), w) for k, w in want.items() if v.get(k) != w}
    if not TIME_RE.match(v.get("time", "")):
        bad["time"] = (v.get("time"), "RFC 3339 UTC with ms")
    if not isinstance(v.get("duration_ms"), int) or v["duration_ms"] < 0:
        bad["duration_ms"] = (v.get("duration_ms"), "an integer >= 0")
    for d in ("up", "down"):
        c, b = v.get("copied_" + d), v.get("bytes_" + d)
        if not isinstance(c, int) or not isinstance(b, int) or c > b:
            bad["copied_" + d] = (c, "an integer <= bytes_%s (%r)" % (d, b))
    if missing or bad:
        raise AssertionError("line %r: missing %r, (got, want) %r" % (v, missing, bad))


def tunnel_origin(first_bytes, reply_bytes, close_first):
    """Reads @first_bytes, sends @reply_bytes; closes first, or after the client's FIN."""

    def handler(c, _):
        got = 0
        while got < first_bytes:
            d = c.recv(65536)
            if not d:
                return
            got += len(d)
        c.sendall(b"d" * reply_bytes)
        if close_first:
            c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()

    return Origin(handler, wait_head=False)


def tunnel_check(s, up, down, close_first, want_end, finish):
    o = tunnel_origin(up, down, close_first)
    try:
        with Client(s.d.port) as c:
            c.tunnel(A, o.port)
            port = c.local_port()
            c.send(b"u" * up)
            if c.recv_exact(down, 5.0) != b"d" * down:
                raise AssertionError("tunnel bytes differ")
            finish(c)
        v, raw = wait_line(s.log, port)
    finally:
        o.close()
    check(v, method="CONNECT", target="%s:%d" % (A, o.port), rule=None, pool="direct",
          upstream="%s:%d" % (A, o.port), status=200, bytes_up=up, bytes_down=down, end=want_end)
    if v["relay"] not in ("sockmap", "splice"):
        raise AssertionError("relay %r" % v["relay"])
    return raw


def client_fin(c):
    c.sock.shutdown(socket.SHUT_WR)
    st, _ = c.wait_eof(5.0)
    if st != "eof":
        raise AssertionError("after the client's FIN: %s, want the origin's FIN" % st)


def origin_fin(c):
    st, _ = c.wait_eof(5.0)
    if st != "eof":
        raise AssertionError("want the origin's FIN first, got %s" % st)
    c.sock.shutdown(socket.SHUT_WR)
    time.sleep(0.1)


def client_rst(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()


def t_client_fin(s):
    return tunnel_check(s, 1000, 1500, False, "client_fin", client_fin)


def t_upstream_fin(s):
    return tunnel_check(s, 700, 2000, True, "upstream_fin", origin_fin)


def t_reset(s):
    return tunnel_check(s, 100, 100, False, "reset", client_rst)


def t_killed(s):
    def kill(c):
        port = c.local_port()
        ids = [t["id"] for t in s.d.list_tunnels() if t["client"] == "%s:%d" % (A, port)]
        if len(ids) != 1:
            raise AssertionError("tunnelctl list --json: %d tunnels of port %d" % (len(ids), port))
        r = s.d.ctl("kill", str(ids[0]))
        if r.returncode != 0:
            raise AssertionError("tunnelctl kill: %r" % r.stderr)
        st, _ = c.wait_eof(5.0)
        if st == "timeout":
            raise AssertionError("the killed tunnel stayed open")

    return tunnel_check(s, 10, 20, False, "killed", kill)


def t_idle(s):
    """idle_timeout_ms (IDLE_MS here) closes a tunnel nothing crossed."""
    def idle(c):
        st, _ = c.wait_eof(IDLE_MS / 1000 + 4)
        if st == "timeout":
            raise AssertionError("the idle tunnel stayed open")

    return tunnel_check(s, 30, 40, False, "idle_timeout", idle)


def t_drain(s):
    """SIGTERM with a tunnel open: it is closed at drain_timeout_ms as `drain`. Last."""
    def term(c):
        s.d.proc.send_signal(signal.SIGTERM)
        st, _ = c.wait_eof(8.0)
        if st == "timeout":
            raise AssertionError("the tunnel stayed open after SIGTERM and drain_timeout_ms")

    return tunnel_check(s, 50, 60, False, "drain", term)


def http_origin():
    def handler(c, _):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        c.close()

    return Origin(handler)


def t_get(s):
    o = http_origin()
    try:
        with Client(s.d.port) as c:
            c.send(("GET http://%s:%d/x HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (A, o.port, A, o.port))
                   .encode())
            r = c.read_head()
            body, _ = c.read_body(r)
            if r.status != 200 or body != b"hello":
                raise AssertionError("GET: %r %r" % (r, body))
            v, raw = wait_line(s.log, c.local_port())
    finally:
        o.close()
    check(v, method="GET", host="%s:%d" % (A, o.port), rule=None, pool="direct",
          upstream="%s:%d" % (A, o.port), status=200, relay=None, bytes_up=0, bytes_down=5,
          copied_up=0, copied_down=0, end="upstream_fin")
    return raw


def t_403(s):
    """A rule's reject; the client's host, escaped, is what the line names."""
    with Client(s.d.port) as c:
        c.send(b"GET http://blocked.example/ HTTP/1.1\r\nHost: blocked.example\r\n\r\n")
        r = c.read_head()
        if r.status != 403:
            raise AssertionError("want 403, got %r" % r)
        v, raw = wait_line(s.log, c.local_port())
    check(v, method="GET", host="blocked.example:80", rule="deny-blocked", pool=None,
          upstream=None, status=403, relay=None, bytes_up=0, bytes_down=0,
          end="error:forbidden")
    return raw


def t_sigusr1(s):
    """logrotate: rename, SIGUSR1, the next line goes to a new file of the daemon's user."""
    nobody = pwd.getpwnam("nobody")
    rotated = s.log + ".1"
    os.rename(s.log, rotated)
    before = len(lines_of(rotated))
    off = s.d.log_size()
    s.d.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 3
    while not any("reopened access_log" in l for l in s.d.tail(20, off)):
        if time.monotonic() > deadline:
            raise AssertionError("no 'reopened access_log' line after SIGUSR1: %r" % s.d.tail(5, off))
        time.sleep(0.05)
    o = http_origin()
    try:
        with Client(s.d.port) as c:
            c.send(("GET http://%s:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % (A, o.port)).encode())
            c.read_body(c.read_head())
            port = c.local_port()
    finally:
        o.close()
    wait_line(s.log, port)
    st = os.stat(s.log)
    after = lines_of(rotated)
    if len(after) != before or any(b'"client":"%s:%d"' % (A.encode(), port) in l for l in after):
        raise AssertionError("the renamed log got %d new lines" % (len(after) - before))
    if st.st_mode & 0o777 != 0o640 or st.st_uid != nobody.pw_uid:
        raise AssertionError("new log mode %o uid %d, want 640 and nobody" % (
            st.st_mode & 0o777, st.st_uid))
    return "new file 0640 nobody has the line, the renamed one not"


TESTS = [("json_client_fin", t_client_fin), ("json_upstream_fin", t_upstream_fin),
         ("json_reset", t_reset), ("json_killed", t_killed), ("json_plain_get", t_get),
         ("json_403_rule", t_403), ("sigusr1_reopens_after_rename", t_sigusr1),
         ("json_idle_timeout", t_idle), ("json_drain", t_drain)]


def start(env, relay, logdir):
    return peers.Daemon(env.tmp, "tg-alog-%s" % relay, relay, [("direct", ["direct = yes"])],
                        rules=[("deny-blocked", ["host = blocked.example", "action = reject"])],
                        extra={"access_log": os.path.join(logdir, "access.log"),
                               "access_log_format": "json", "idle_timeout_ms": str(IDLE_MS)})


def run_access_log(runner, env, skip_reason=None):
    for relay in ("auto", "splice"):  # auto: the kernel relay where it loads
        names = ["access_log/%s/%s" % (relay, n) for n, _ in TESTS]
        if not any(runner.selected(n) for n in names):
            continue
        why = skip_reason
        if not why:
            try:
                nobody = pwd.getpwnam("nobody")
            except KeyError:
                why = "no user nobody"
        if why:
            for n in names:
                runner.skip(n, why)
            continue
        logdir = os.path.join(env.tmp, "alog-%s" % relay)
        os.makedirs(logdir, exist_ok=True)
        os.chmod(env.tmp, 0o755)  # nobody reaches the log dir to reopen the log
        os.chown(logdir, nobody.pw_uid, nobody.pw_gid)  # and creates the new file there
        try:
            d = start(env, relay, logdir)
        except Exception as e:
            for n in names:
                runner.fail(n, "daemon did not start: %s" % str(e).splitlines()[0])
            continue
        s = State(env, d, os.path.join(logdir, "access.log"))
        try:
            for n, fn in TESTS:
                runner.run("access_log/%s/%s" % (relay, n), (lambda f: lambda: f(s))(fn), d)
        finally:
            d.stop()

