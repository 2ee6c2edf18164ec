"""GET /metrics (metrics_listen): a daemon per relay mode gets known traffic, then its
exposition must pass `promtool check metrics` and count exactly that traffic:
connections, requests by method and status, tunnels, tunnel bytes by direction and
path, upstream errors and the histograms' counts. tunnelctl stats must agree."""

import os
import re
import shutil
import socket
import subprocess
import threading
import time

import peers
from cases import A_DIRECT, Skip
from httpclient import Client, connect_head

SIZES = (1000, 65536, 300000)  # what each of the three tunnels sends; the echo returns it
PATHS = ("kernel", "copied", "splice")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class GetOrigin:
    """An HTTP origin answering every request with 200 and "ok", then closing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((A_DIRECT, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with c:
                c.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


def http_get(port, raw, timeout=5.0):
    """Send @raw to the metrics port, read to EOF: (status, fields, body)."""
    data = b""
    with socket.create_connection((A_DIRECT, port), timeout=timeout) as s:
        s.sendall(raw)
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError("metrics_listen answered %r" % data[:200])
    fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    if int(fields.get("content-length", -1)) != len(body):
        raise AssertionError("Content-Length %s, body of %d bytes" % (
            fields.get("content-length"), len(body)))
    return int(lines[0].split()[1]), fields, body.decode()


def scrape(port):
    st, fields, body = http_get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    if st != 200 or not fields.get("content-type", "").startswith("text/plain; version=0.0.4"):
        raise AssertionError("GET /metrics: %d, Content-Type %r" % (st, fields.get("content-type")))
    return body


def parse(text):
    """{(name, ((label, value), ...)): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        out[(m.group(1), tuple(sorted(LABEL.findall(m.group(2) or ""))))] = float(m.group(3))
    return out


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


def settled(port, timeout=5.0):
    """Scrape until no connection is open (every tunnel torn down and counted)."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(port)
        s = parse(text)
        if val(s, "tunnelgate_connections_open") == 0 or time.monotonic() > deadline:
            return text, s
        time.sleep(0.05)


def traffic(env, d, origin):
    """3 tunnels through the direct pool, a 403 by port, a 502 refused, a plain GET."""
    echo = env.servers["echo"]
    for n in SIZES:
        payload = os.urandom(n)
        with Client(d.port) as c:
            c.send(connect_head(A_DIRECT, echo.port))
            r = c.read_head(5.0)
            if r.status != 200:
                raise AssertionError("CONNECT to the echo server answered %r" % r)
            c.send(payload)
            if c.recv_exact(n, 10.0) != payload:
                raise AssertionError("echoed bytes differ")
    for port, want in ((1, 403), (env.closed_port, 502)):
        with Client(d.port) as c:
            c.send(connect_head(A_DIRECT, port))
            r = c.read_head(5.0)
            if r.status != want:
                raise AssertionError("CONNECT to port %d answered %r, want %d" % (port, r, want))
    with Client(d.port) as c:
        c.send(("GET http://%s:%d/x HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (
            A_DIRECT, origin.port, A_DIRECT, origin.port)).encode())
        r = c.read_head(5.0)
        if r.status != 200 or c.recv_exact(2, 5.0) != b"ok":
            raise AssertionError("plain GET answered %r" % r)


def not_found(port):
    """Anything but GET /metrics is 404; a head over 4096 bytes is 431."""
    for raw, want in ((b"GET / HTTP/1.1\r\n\r\n", 404), (b"GET /metricsx HTTP/1.1\r\n\r\n", 404),
                      (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 404),
                      (b"junk\n\n", 404), (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000, 431)):
        st, _, _ = http_get(port, raw)
        if st != want:
            raise AssertionError("%r answered %d, want %d" % (raw[:40], st, want))


def promtool(text):
    exe = shutil.which("promtool")
    if not exe:
        return False
    r = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError("promtool check metrics failed: %s" % (
            (r.stdout + r.stderr).decode(errors="replace").strip()))
    return True


def check_counts(d, base, now):
    def delta(name, **labels):
        return val(now, name, **labels) - val(base, name, **labels)

    sent = sum(SIZES)
    bytes_ = {(di, p): delta("tunnelgate_tunnel_bytes_total", direction=di, path=p)
              for di in ("up", "down") for p in PATHS}
    got = {
        "accepted": delta("tunnelgate_connections_accepted_total"),
        "CONNECT 200": delta("tunnelgate_requests_total", method="CONNECT", code="200"),
        "CONNECT 403": delta("tunnelgate_requests_total", method="CONNECT", code="403"),
        "CONNECT 502": delta("tunnelgate_requests_total", method="CONNECT", code="502"),
        "GET 200": delta("tunnelgate_requests_total", method="GET", code="200"),
        "requests": total(now, "tunnelgate_requests_total") - total(base, "tunnelgate_requests_total"),
        "tunnels " + d.relay: delta("tunnelgate_tunnels_total", relay=d.relay),
        "tunnels": total(now, "tunnelgate_tunnels_total") - total(base, "tunnelgate_tunnels_total"),
        "tunnels open": total(now, "tunnelgate_tunnels_open"),
        "bytes up": sum(bytes_["up", p] for p in PATHS),
        "bytes down": sum(bytes_["down", p] for p in PATHS),
        "duration count": delta("tunnelgate_tunnel_duration_seconds_count"),
        "duration +Inf": delta("tunnelgate_tunnel_duration_seconds_bucket", le="+Inf"),
        "connect count": delta("tunnelgate_upstream_connect_seconds_count"),
        "refused": delta("tunnelgate_upstream_errors_total", pool="direct", server="-",
                         kind="refused"),
        "upstream errors": total(now, "tunnelgate_upstream_errors_total") -
                           total(base, "tunnelgate_upstream_errors_total"),
    }
    want = {"accepted": 6, "CONNECT 200": 3, "CONNECT 403": 1, "CONNECT 502": 1, "GET 200": 1,
            "requests": 6, "tunnels " + d.relay: 3, "tunnels": 3, "tunnels open": 0,
            "bytes up": sent, "bytes down": sent, "duration count": 3, "duration +Inf": 3,
            "connect count": 4, "refused": 1, "upstream errors": 1}
    # Each relay's bytes take its own paths only.
    other = ("kernel", "copied") if d.relay == "splice" else ("splice",)
    got["bytes by " + "+".join(other)] = sum(bytes_[di, p] for di in ("up", "down") for p in other)
    want["bytes by " + "+".join(other)] = 0
    bad = {k: got[k] for k in want if got[k] != want[k]}
    if bad:
        raise AssertionError("/metrics counted %r, want %r" % (bad, {k: want[k] for k in bad}))
    return bytes_


def check_tunnelctl(d, now):
    """tunnelctl stats shows the numbers /metrics has."""
    out = d.ctl("stats").stdout.decode()
    lines = {}
    for line in out.splitlines():
        k, _, v = line.rpartition("\t")
        lines[k] = v
    pairs = {"tunnel_bytes_%s_%s" % (di, p): val(now, "tunnelgate_tunnel_bytes_total",
                                                  direction=di, path=p)
             for di in ("up", "down") for p in PATHS}
    # The kernel relay's totals as tunnelctl always showed them.
    for p in ("kernel", "copied"):
        pairs["bytes_" + p] = sum(val(now, "tunnelgate_tunnel_bytes_total", direction=di, path=p)
                                  for di in ("up", "down"))
    pairs["answers\tCONNECT\t200"] = val(now, "tunnelgate_requests_total", method="CONNECT",
                                         code="200")
    pairs["upstream_error\tdirect\t-\trefused"] = val(now, "tunnelgate_upstream_errors_total",
                                                      pool="direct", server="-", kind="refused")
    pairs["tunnel_duration_seconds_count"] = val(now, "tunnelgate_tunnel_duration_seconds_count")
    pairs["accepted"] = val(now, "tunnelgate_connections_accepted_total")
    bad = {k: (lines.get(k), v) for k, v in pairs.items()
           if lines.get(k) is None or float(lines[k]) != v}
    if bad:
        raise AssertionError("tunnelctl stats vs /metrics: %r" % bad)


def t_metrics(env, relay):
    mport = peers.free_port()
    origin = GetOrigin()
    d = None
    try:
        d = peers.Daemon(env.tmp, "tg-metrics-%s" % relay, relay, [("direct", ["direct = yes"])],
                         extra={"metrics_listen": "%s:%d" % (A_DIRECT, mport),
                                "connect_ports": "%d, %d" % (env.servers["echo"].port,
                                                             env.closed_port)})
        _, base = settled(mport)  # the start-up probe's connection closed
        traffic(env, d, origin)
        not_found(mport)
        text, now = settled(mport)
        bytes_ = check_counts(d, base, now)
        check_tunnelctl(d, now)
        checked = promtool(text)
    finally:
        if d:
            d.stop()
        origin.close()
    info = ", ".join("%s %s %d" % (di, p, bytes_[di, p]) for di in ("up", "down") for p in PATHS)
    if not checked:
        raise Skip("counters right (%s), but promtool is missing: install the prometheus "
                   "package (make test-deps)" % info)
    return info


def run_metrics(runner, env, skip_reason, sockmap_unsupported):
    for relay in ("sockmap", "splice"):
        name = "metrics/%s_counts_traffic" % relay
        if not runner.selected(name):
            continue
        why = skip_reason or (sockmap_unsupported() if relay == "sockmap" else None)
        if why:
            runner.skip(name, why)
            continue
        runner.run(name, (lambda r: lambda: t_metrics(env, r))(relay))
