"""Flow control tests (README "Flow control"): kernel memory per tunnel stays
bounded while a reader lags, and no byte is lost or reordered; a client that
goes away with bytes queued toward it; idle_timeout_ms; fd and map hygiene
after churn. run_flow() runs them for one relay mode, each group against its
own tunnelgated instance so the setting under test is explicit.

Data: every stream is a deterministic pattern, byte o = base[o % period] with
a period of 1 MiB + 7 bytes, each tunnel starting at its own offset. A lost,
repeated or reordered skb or page shifts the stream and shows as the first
differing offset (and the shift), and each side's sha256 is compared too.

Memory, for the direction origin -> client (the one that stalls):
  origin send buffer + gateway upstream receive buffer (held bytes)
  + the relay's own queue + gateway client send buffer + client receive buffer.
The relay's queue is what max_backlog_bytes bounds (sockmap: bytes redirected
but not yet taken by the peer's send path, or the held bytes the daemon read
and the peer has not taken yet, min(4 MiB, max_backlog_bytes); the two do not
coexist, but a sample may straddle the switch, so both count; splice: its
256 KiB pipe). Allowing 2 x that (skb truesize, one skb
past the limit), the worst case is
  2 x relay buffer + 2 x tcp_rmem[2] + 2 x tcp_wmem[2] + per-CPU slop
(the socket buffers autotune up to the sysctl maxima; /proc/net/sockstat's
TCP "mem" is kept in per-CPU batches of net.core.mem_pcpu_rsv pages).
Three measures are checked against it:
  - sockstat TCP mem growth (pages x page size): socket buffers only; the
    skbs queued between a verdict redirect and the peer are uncharged there;
  - MemAvailable drop: sees everything, but host-wide. Other processes (a
    fuzzer forking, a build) move it by hundreds of MiB, so the growth of
    process memory (AnonPages + Shmem + PageTables, never a socket queue)
    is taken off, and what is left gets a 64 MiB noise allowance;
  - both are read each second and the lowest of the last three readings is
    checked (a stalled tunnel's memory does not shrink; noise does);
  - exact bytes: origin bytes sent - client bytes read, minus what
    `ss -tm` shows in the four sockets' queues (r + w, truesize, so an
    underestimate) = bytes held outside any socket buffer, i.e. in the
    relay's queue. This one is tight: <= 2 x relay buffer + slop.
"""

import fcntl
import hashlib
import os
import random
import re
import resource
import select
import socket
import struct
import subprocess
import threading
import time

import peers
from cases import A_DIRECT, MIB, Skip, describe_leftovers, short, wait_list
from httpclient import Client
from peers import recv_exact, recv_to_eof, rst_close

KIB = 1 << 10
PAGE = os.sysconf("SC_PAGE_SIZE")
PIPE_BYTES = 256 * KIB  # splice relay pipe per direction (user/tunnel.c)
HOLD_BYTES = 4 * MIB  # sockmap: held bytes the daemon reads per round, at most (user/tunnel.c)
MEMAVAIL_NOISE = 64 * MIB  # MemAvailable is host-wide, even without process memory
STALL_S = 8.0  # a reader that gets no byte for this long while more are due: stalled
CHUNK = 256 * KIB

BACKLOG_FLOW = 1 << 20  # max_backlog_bytes of the single-tunnel flow daemon
BACKLOG_MANY = 65536  # ... of the 200-tunnel daemon (the minimum)
IDLE_MS = 1500


def sysctl_max(name):
    with open("/proc/sys/net/ipv4/%s" % name) as f:
        return int(f.read().split()[2])


def pcpu_slop():
    """Bytes /proc/net/sockstat may lag behind: per-CPU reserve x CPUs."""
    try:
        with open("/proc/sys/net/core/mem_pcpu_rsv") as f:
            pages = int(f.read())
    except OSError:
        pages = MIB // PAGE
    return pages * PAGE * (os.cpu_count() or 1)


def mem_now():
    """(TCP memory from /proc/net/sockstat, MemAvailable, AnonPages + Shmem +
    PageTables), in bytes. The last is process memory: the other processes on
    a shared host (and this one) move MemAvailable by hundreds of MiB, but no
    socket or relay queue is ever anon, shmem or a page table."""
    with open("/proc/net/sockstat") as f:
        m = re.search(r"^TCP:.*\bmem (\d+)", f.read(), re.M)
    with open("/proc/meminfo") as f:
        t = f.read()

    def kib(k):
        return int(re.search(r"^%s:\s+(\d+) kB" % k, t, re.M).group(1)) * 1024
    return (int(m.group(1)) * PAGE, kib("MemAvailable"),
            kib("AnonPages") + kib("Shmem") + kib("PageTables"))


def mib(n):
    return "%.1f" % (n / MIB)


def skmem(ports):
    """skmem of connected TCP sockets with a local or peer port in ports:
    {(local_port, peer_port): {"r": .., "rb": .., "w": .., "tb": ..}}."""
    if not peers.which("ss"):
        return None
    expr = " or ".join("sport = :%d or dport = :%d" % (p, p) for p in sorted(set(ports)))
    states = []
    for st in ("established", "fin-wait-1", "fin-wait-2", "close-wait", "last-ack", "closing"):
        states += ["state", st]
    r = subprocess.run(["ss", "-tmnH"] + states + ["( %s )" % expr],
                       capture_output=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError("ss -tm failed: %s" % r.stderr.decode(errors="replace").strip())
    out = {}
    for m in re.finditer(r"\S+:(\d+)\s+\S+:(\d+)[^\n]*\n\s*skmem:\(([^)]*)\)", r.stdout.decode()):
        vals = dict(re.findall(r"([a-z]+)(\d+)", m.group(3)))
        out[(int(m.group(1)), int(m.group(2)))] = {k: int(v) for k, v in vals.items()}
    return out


def path_mem(sk, dport, cport, oport, uport):
    """For one tunnel (client port cport, daemon port dport, origin port oport,
    daemon's upstream port uport): (bytes queued in its four sockets (r + w),
    their caps for the origin -> client direction, how many were found)."""
    socks = {"client": (cport, dport), "gw_client": (dport, cport),
             "gw_upstream": (uport, oport), "origin": (oport, uport)}
    queued = caps = found = 0
    for name, key in socks.items():
        m = sk.get(key)
        if not m:
            continue
        found += 1
        queued += m.get("r", 0) + m.get("w", 0)
        caps += m.get("rb", 0) if name in ("client", "gw_upstream") else m.get("tb", 0)
    return queued, caps, found


def holds(d):
    """Times the kernel relay held a direction back: holds plus pauses (tunnelctl stats)."""
    r = d.ctl("stats")
    m = re.search(rb"^holds\s+(\d+)", r.stdout, re.M)
    p = re.search(rb"^pauses\s+(\d+)", r.stdout, re.M)
    return int(m.group(1)) + (int(p.group(1)) if p else 0) if m else None


def stat(d, *keys):
    """tunnelctl stats values of keys (None for a missing one)."""
    out = d.ctl("stats").stdout
    return [int(m.group(1)) if m else None for m in
            (re.search(rb"^" + k.encode() + rb"\s+(\d+)", out, re.M) for k in keys)]


def relay_buffer(d):
    """Bytes the relay itself may queue per direction (see the module doc)."""
    if d.relay == "sockmap":
        return d.max_backlog + min(HOLD_BYTES, d.max_backlog)
    return PIPE_BYTES


def worst_slack():
    return 2 * sysctl_max("tcp_rmem") + 2 * sysctl_max("tcp_wmem") + pcpu_slop()


# ---------------------------------------------------------------- data


class Pattern:
    """A deterministic stream: byte o is base[o % period]."""

    def __init__(self):
        self.period = MIB + 7
        base = os.urandom(self.period)
        self.buf = base + base

    def view(self, off, n):
        """n <= period bytes from stream offset off."""
        s = off % self.period
        return memoryview(self.buf)[s:s + n]

    def sha256(self, start, n):
        h = hashlib.sha256()
        off = 0
        while off < n:
            k = min(CHUNK, n - off)
            h.update(self.view(start + off, k))
            off += k
        return h.hexdigest()


DOWN = Pattern()  # origin -> client
UP = Pattern()  # client -> origin


class Check:
    """Compares a received stream with a pattern as it arrives."""

    def __init__(self, pat, start):
        self.pat, self.start = pat, start
        self.n = 0
        self.h = hashlib.sha256()
        self.bad = None

    def feed(self, data):
        if self.bad is None:
            i = 0
            while i < len(data):
                k = min(len(data) - i, MIB)
                got = bytes(data[i:i + k])
                want = bytes(self.pat.view(self.start + self.n + i, k))
                if got != want:
                    j = next(j for j in range(k) if got[j] != want[j])
                    self.bad = self._where(self.n + i + j, got[j:j + 64])
                    break
                i += k
        self.h.update(data)
        self.n += len(data)

    def _where(self, off, probe):
        desc = "first wrong byte at stream offset %d (%.2f MiB)" % (off, off / MIB)
        if len(probe) == 64:
            p = self.pat.buf.find(probe)
            if p >= 0:
                shift = (p - (self.start + off)) % self.pat.period
                if shift > self.pat.period // 2:
                    shift -= self.pat.period
                desc += "; the bytes there belong %+d bytes away (mod %d): %s" % (
                    shift, self.pat.period, "skipped ahead: bytes lost" if shift > 0 else
                    "went back: bytes repeated or reordered")
            else:
                desc += "; the bytes there are not from this stream"
        return desc

    def sha(self):
        return self.h.hexdigest()


def start_of(cid):
    return cid * 7919


# ---------------------------------------------------------------- origin

HELLO = struct.Struct("!4sQQ")  # mode, tunnel id (of the test), bytes to send
_ids = iter(range(1, 1 << 62))
_ids_lock = threading.Lock()


def next_id():
    with _ids_lock:
        return next(_ids)


class OriginState:
    def __init__(self, cid, peer_port):
        self.cid, self.peer_port = cid, peer_port
        self.sent = 0
        self.sha = None  # of what was sent, when the sender ended
        self.events = []  # (what, monotonic time): eof, reset, epipe, ...
        self.up = None  # bidi: Check of the bytes from the client
        self.up_end = None
        self.stop = False  # set by a test that is done with this origin
        self.done = threading.Event()

    def event(self, what):
        self.events.append((what, time.monotonic()))


def push(c, st, total, deadline):
    """Send total DOWN bytes as fast as the path takes them, noting EOF/RST from
    the other side while blocked; after the last byte, FIN, then wait for EOF."""
    c.setblocking(False)
    h = hashlib.sha256()
    start = start_of(st.cid)
    reading = True
    try:
        while st.sent < total and time.monotonic() < deadline and not st.stop:
            r, w, _ = select.select([c] if reading else [], [c], [], 0.2)
            if r:
                try:
                    d = c.recv(65536)
                except BlockingIOError:
                    d = None
                except OSError as e:
                    st.event("reset" if isinstance(e, ConnectionResetError) else repr(e))
                    return
                if d == b"":
                    st.event("eof")
                    reading = False  # keep sending: the daemon must notice the client is gone
            if w:
                view = DOWN.view(start + st.sent, min(CHUNK, total - st.sent))
                try:
                    k = c.send(view)
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    st.event("epipe")
                    return
                except ConnectionResetError:
                    st.event("reset")
                    return
                h.update(view[:k])
                st.sent += k
        if st.sent < total:
            if not st.stop:
                st.event("origin gave up (deadline)")
            return
        st.sha = h.hexdigest()
        c.setblocking(True)
        c.shutdown(socket.SHUT_WR)
        _, how = recv_to_eof(c, deadline=deadline)
        st.event(how)
    finally:
        if st.sha is None:
            st.sha = h.hexdigest()
        st.done.set()


def bidi(c, st, total, deadline, slow_s, slow_rate):
    """Send total DOWN bytes and FIN from a thread; read total UP bytes, slowly
    for slow_s then fast, then expect EOF."""
    c.settimeout(30)
    box = {}

    def sender():
        h = hashlib.sha256()
        try:
            start = start_of(st.cid)
            while st.sent < total and time.monotonic() < deadline:
                view = DOWN.view(start + st.sent, min(CHUNK, total - st.sent))
                c.sendall(view)
                h.update(view)
                st.sent += len(view)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            box["err"] = repr(e)
        st.sha = h.hexdigest()

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    st.up = Check(UP, start_of(st.cid))
    try:
        st.up_end = read_stream(c, st.up, total, deadline, slow_s, slow_rate)
    except OSError as e:
        st.up_end = repr(e)
    t.join(max(deadline - time.monotonic(), 0.1))
    if "err" in box:
        st.event("send: " + box["err"])
    st.done.set()


def read_jitter(sock, chk, total, deadline, rng):
    """Read total bytes into chk in random amounts, pausing at random (up to 60 ms
    at a time), then wait for EOF. Returns 'eof' or what went wrong."""
    while chk.n < total:
        if time.monotonic() > deadline:
            return "timed out after %d of %d bytes" % (chk.n, total)
        if rng.random() < 0.15:
            time.sleep(rng.random() * 0.06)
        sock.settimeout(max(min(STALL_S, deadline - time.monotonic()), 0.01))
        try:
            d = sock.recv(rng.choice((512, 4096, 65536, 262144)))
        except socket.timeout:
            return "stalled after %d of %d bytes" % (chk.n, total)
        except ConnectionResetError:
            return "reset after %d of %d bytes" % (chk.n, total)
        if not d:
            return "EOF after %d of %d bytes" % (chk.n, total)
        chk.feed(d)
    sock.settimeout(5.0)
    try:
        d = sock.recv(65536)
    except (socket.timeout, OSError) as e:
        return "no EOF after the last byte: %r" % e
    return "eof" if not d else "%d bytes past the end" % len(d)


def send_all(sock, pat, start, total, rng):
    """Send total bytes of pat from start in random sizes, then FIN; returns the sha256."""
    h = hashlib.sha256()
    off = 0
    while off < total:
        view = pat.view(start + off, min(rng.choice((100, 1500, 16384, CHUNK)), total - off))
        sock.sendall(view)
        h.update(view)
        off += len(view)
    sock.shutdown(socket.SHUT_WR)
    return h.hexdigest()


def jitter(c, st, total, deadline):
    """Origin side of the stress test: send total DOWN bytes from a thread and read
    total UP bytes, both in random sizes with random reader pauses."""
    rng = random.Random(st.cid)
    c.settimeout(30)
    box = {}

    def sender():
        try:
            box["sha"] = send_all(c, DOWN, start_of(st.cid), total, random.Random(-st.cid))
        except OSError as e:
            box["err"] = repr(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    st.up = Check(UP, start_of(st.cid))
    try:
        st.up_end = read_jitter(c, st.up, total, deadline, rng)
    except OSError as e:
        st.up_end = repr(e)
    t.join(max(deadline - time.monotonic(), 0.1))
    st.sha = box.get("sha")
    if "err" in box:
        st.event("send: " + box["err"])
    st.done.set()


RESET_QUIET_S = 1.0  # the reset tests' receiver reads nothing for this long first
SIOCOUTQ = 0x5411


def write_then_reset(sock, st, pat, total):
    """Write up to total bytes of pat (as many as the peer takes within 2 s), note how
    many the peer acknowledged, then close with an RST."""
    sock.setblocking(False)
    start, t_last = start_of(st.cid), time.monotonic()
    while st.sent < total and time.monotonic() - t_last < 2.0:
        select.select([], [sock], [], 0.1)
        try:
            n = sock.send(pat.view(start + st.sent, min(CHUNK, total - st.sent)))
        except BlockingIOError:
            continue
        st.sent += n
        t_last = time.monotonic()
    time.sleep(0.3)  # let the acknowledgements come in
    outq = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]
    st.acked = st.sent - outq
    rst_close(sock)
    st.event("rst")
    st.done.set()


def read_to_error(sock, chk, deadline):
    """Read into chk until the stream ends; returns 'reset', 'eof' or 'timeout'."""
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            d = sock.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionResetError:
            return "reset"
        if not d:
            return "eof"
        chk.feed(d)
    return "timeout"


def t_reset(env, d, side, total=4 * MIB):
    """side ('origin' or 'client') writes total bytes while the other end reads nothing
    for RESET_QUIET_S, then resets. The other end must get every byte the gateway had
    acknowledged, in order, and then a reset, never an ordinary end of stream."""
    srv = origin(env)
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        cport = c.local_port()
        cid = next_id()
        c.send(HELLO.pack(b"rstw" if side == "origin" else b"rstr", cid, total))
        st = origin_state(srv, cid)
        if side == "origin":
            chk = Check(DOWN, start_of(cid))
            chk.feed(bytes(c.buf))
            time.sleep(RESET_QUIET_S)
            end = read_to_error(c.sock, chk, time.monotonic() + 10)
            st.done.wait(10)
        else:
            mine = OriginState(cid, cport)  # the writer's figures, kept apart from the origin's
            write_then_reset(c.sock, mine, UP, total)
            st.done.wait(15)
            chk, end = st.up, st.up_end
            st.sent, st.acked = mine.sent, mine.acked
    p = []
    acked = getattr(st, "acked", None)
    if chk is None or acked is None:
        p.append("the test did not finish (origin events: %s)" % st.events)
    else:
        if chk.bad:
            p.append("data: " + chk.bad)
        if chk.n < acked:
            p.append("%d of %d bytes acknowledged by the gateway arrived (%d lost)" % (
                chk.n, acked, acked - chk.n))
        if end != "reset":
            p.append("the stream ended with %s after %d bytes, want a reset" % (end, chk.n))
    fig = "%s wrote %d, the gateway acknowledged %s, the other end got %s then %s" % (
        side, st.sent, acked, chk.n if chk else "?", end if chk else "?")
    if p:
        raise AssertionError("; ".join(p) + " [%s]%s" % (fig, tunnel_log(d, cport)))
    return fig


def flood(c, st, deadline):
    """Send as fast as the path takes it and never read, until the tunnel ends."""
    c.setblocking(False)
    buf = bytes(CHUNK)
    try:
        while time.monotonic() < deadline and not st.stop:
            select.select([], [c], [], 0.2)
            try:
                st.sent += c.send(buf)
            except BlockingIOError:
                pass
    except OSError as e:
        st.event("reset" if isinstance(e, ConnectionResetError) else repr(e))
    st.done.set()


def read_stream(sock, chk, total, deadline, slow_s=0.0, slow_rate=0, first=b"", stall=STALL_S):
    """Read total bytes into chk (after first), at slow_rate bytes/s for slow_s
    seconds, then as fast as possible; then wait for EOF. Returns 'eof', or
    what went wrong (a stall: no byte for `stall` seconds while more were due)."""
    if first:
        chk.feed(first)
    t0 = last = time.monotonic()
    while chk.n < total:
        now = time.monotonic()
        want = min(1 << 20, total - chk.n)
        if now - t0 < slow_s:
            due = int((now - t0) * slow_rate) - chk.n
            if due <= 0:
                time.sleep(0.02)
                last = time.monotonic()
                continue
            want = min(want, due)
        limit = min(deadline, last + stall)
        if now >= limit:
            return "%s after %d of %d bytes (%.1f MiB)" % (
                "timed out" if now >= deadline else "stalled: no byte for %.0f s" % stall,
                chk.n, total, chk.n / MIB)
        sock.settimeout(limit - now)
        try:
            d = sock.recv(want)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset after %d of %d bytes" % (chk.n, total)
        if not d:
            return "EOF after %d of %d bytes" % (chk.n, total)
        chk.feed(d)
        last = time.monotonic()
    sock.settimeout(max(min(5.0, deadline - time.monotonic()), 0.01))
    try:
        d = sock.recv(65536)
    except socket.timeout:
        return "no EOF within 5 s after the last byte"
    except ConnectionResetError:
        return "reset after the last byte, want EOF"
    if not d:
        return "eof"
    more = Check(chk.pat, chk.start + chk.n)
    more.feed(d)
    return "%d bytes past the end (%s)" % (len(d), more.bad or "the pattern's continuation")


def h_flow(c, srv):
    hello = recv_exact(c, HELLO.size, deadline=time.monotonic() + 10)
    mode, cid, total = HELLO.unpack(hello)
    st = OriginState(cid, c.getpeername()[1])
    with srv.lock:
        srv.state[cid] = st
    deadline = time.monotonic() + 85
    if mode == b"push":
        push(c, st, total, deadline)
    elif mode == b"bidi":
        bidi(c, st, total, deadline, srv.slow_s, srv.slow_rate)
    elif mode == b"jitr":
        jitter(c, st, total, deadline)
    elif mode == b"rstw":
        write_then_reset(c, st, DOWN, total)
    elif mode == b"rstr":
        st.up = Check(UP, start_of(cid))
        time.sleep(RESET_QUIET_S)
        st.up_end = read_to_error(c, st.up, time.monotonic() + 10)
        st.done.set()
    elif mode == b"pour":
        flood(c, st, min(deadline, time.monotonic() + 12))
    else:
        st.event("bad mode %r" % mode)
        st.done.set()


def origin(env):
    """The flow origin, started once per Env."""
    srv = getattr(env, "flow_origin", None)
    if srv is None:
        srv = peers.TcpServer("flow-origin", h_flow, (A_DIRECT,), backlog=1024)
        srv.state = {}
        srv.lock = threading.Lock()
        srv.slow_s, srv.slow_rate = 2.0, 2 * MIB
        env.flow_origin = srv
    return srv


def origin_state(srv, cid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with srv.lock:
            st = srv.state.get(cid)
        if st:
            return st
        time.sleep(0.01)
    raise AssertionError("the origin never got the tunnel's first bytes (hello) within %.0f s" % timeout)


def open_push(d, srv, total):
    """A tunnel to the flow origin, which starts pushing total bytes."""
    c = Client(d.port)
    try:
        c.tunnel(A_DIRECT, srv.port)
        cid = next_id()
        c.send(HELLO.pack(b"push", cid, total))
        return c, cid, origin_state(srv, cid)
    except BaseException:
        c.close()
        raise


def tunnel_log(d, cport):
    """The daemon's last word on the tunnel of client port cport: its last
    per-direction counter line (-v) and its access line."""
    try:
        with open(d.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    m = re.search(r"tunnel (\d+) 127\.0\.0\.1:%d -> " % cport, text)
    if not m:
        return ""
    out = []
    for dr in (0, 1):
        lines = re.findall(r"tunnel %s dir %d: arrived [^\n]*" % (m.group(1), dr), text)
        if lines:
            out.append(lines[-1])
    out += re.findall(r"access client=127\.0\.0\.1:%d [^\n]*" % cport, text)[-1:]
    return " {daemon: %s}" % " | ".join(out) if out else ""


def mine(d, c):
    me = "127.0.0.1:%d" % c.local_port()
    return [t for t in d.list_tunnels() if t.get("client") == me]


def gone_within(d, me, timeout):
    """Seconds until no tunnel of client me is listed, or None."""
    t0 = time.monotonic()
    lst = wait_list(d, lambda l: not any(t.get("client") == me for t in l), timeout)
    if any(t.get("client") == me for t in lst):
        return None
    return time.monotonic() - t0


# ---------------------------------------------------------------- memory checks


class Bound:
    """Memory of the lagging direction of n tunnels, checked as the module doc says."""

    def __init__(self, d, n=1):
        self.d, self.n = d, n
        self.relay = relay_buffer(d)
        self.allow = 2 * self.relay * n  # the relay's own queue, 2 x
        self.worst = self.allow + n * worst_slack()
        self.before = mem_now()
        self.samples = []
        self.peak = (0, 0, 0)
        self.end = None

    def sample(self):
        """One reading since the start: (sockstat growth, MemAvailable drop,
        MemAvailable drop less the growth of process memory)."""
        m = mem_now()
        drop = self.before[1] - m[1]
        g = (m[0] - self.before[0], drop, drop - (m[2] - self.before[2]))
        self.samples.append(g)
        self.peak = tuple(max(a, b) for a, b in zip(self.peak, g))
        # Checked: the lowest of the last 3 readings (1 s apart). A stalled tunnel's
        # memory does not shrink, other processes' memory comes and goes.
        last = self.samples[-3:]
        self.end = tuple(min(x[i] for x in last) for i in range(3))
        return g

    def settle(self, tunnels, dport, oport):
        """tunnels: [(client port, daemon upstream port, origin sent, client read)].
        Bytes in flight, in the path's socket queues, and outside them."""
        sent = sum(t[2] for t in tunnels)
        read = sum(t[3] for t in tunnels)
        sk = skmem([dport, oport])
        queued = caps = found = 0
        for cport, uport, _, _ in tunnels if sk is not None else ():
            q, cp, f = path_mem(sk, dport, cport, oport, uport)
            queued += q
            caps += cp
            found += f
        self.inflight = sent - read
        self.queued, self.caps, self.found = queued, caps, found if sk is not None else None
        self.outside = self.inflight - queued
        self.sent, self.read = sent, read

    def slop(self):
        return MIB + 64 * KIB * self.n  # an skb past a limit, per tunnel

    def figures(self):
        if self.found is None:
            return ("sockstat %+.1f MiB (peak %+.1f), MemAvailable %+.1f MiB (%+.1f without process "
                    "memory); in flight %s MiB (ss not installed: socket queues not read)" % (
                        self.end[0] / MIB, self.peak[0] / MIB, -self.end[1] / MIB,
                        -self.end[2] / MIB, mib(self.inflight)))
        return ("sockstat %+.1f MiB (peak %+.1f), MemAvailable %+.1f MiB (%+.1f without process "
                "memory); in flight %s MiB: %s MiB in socket queues (caps %s MiB), %s MiB outside "
                "them (relay queue, allowed %s)" % (
                    self.end[0] / MIB, self.peak[0] / MIB, -self.end[1] / MIB, -self.end[2] / MIB,
                    mib(self.inflight), mib(self.queued), mib(self.caps), mib(self.outside),
                    mib(self.allow + self.slop())))

    def problems(self, sock_bound=None, sock_what=None):
        """sock_bound: bound for sockstat/MemAvailable (default: the worst case)."""
        p = []
        if sock_bound is None:
            sock_bound = self.worst
            sock_what = ("2 x %s MiB relay buffer + 2 x tcp_rmem max + 2 x tcp_wmem max + per-CPU "
                         "slop" % mib(self.relay))
        if self.end[0] > sock_bound:
            p.append("TCP memory (sockstat) grew %s MiB, bound %s MiB (%s)" % (
                mib(self.end[0]), mib(sock_bound), sock_what))
        if self.end[2] > sock_bound + MEMAVAIL_NOISE:
            p.append("MemAvailable dropped %s MiB (%s MiB without process memory), bound %s MiB "
                     "(%s, + %s MiB host noise)" % (
                         mib(self.end[1]), mib(self.end[2]), mib(sock_bound + MEMAVAIL_NOISE),
                         sock_what, mib(MEMAVAIL_NOISE)))
        if self.found is None:
            pass  # no ss (iproute2): the exact check cannot be made; the figures say 0 queued
        elif self.found < 4 * self.n:
            p.append("ss -tm showed %d of the %d sockets of the path" % (self.found, 4 * self.n))
        elif self.outside > self.allow + self.slop():
            p.append("%s MiB in flight but only %s MiB in the sockets' queues: %s MiB sit outside "
                     "any socket buffer (the relay's queue), allowed 2 x %s MiB%s + slop %s MiB" % (
                         mib(self.inflight), mib(self.queued), mib(self.outside), mib(self.relay),
                         " x %d tunnels" % self.n if self.n > 1 else "", mib(self.slop())))
        return p


# ---------------------------------------------------------------- tests


def t_slow_reader(env, d, stall=10.0, total=512 * MIB):
    """A client that reads nothing for `stall` seconds, then everything."""
    srv = origin(env)
    b = Bound(d)
    h0 = holds(d)
    c, cid, st = open_push(d, srv, total)
    cport = c.local_port()
    with c:
        t0 = time.monotonic()
        while time.monotonic() - t0 < stall:
            time.sleep(min(1.0, max(stall - (time.monotonic() - t0), 0)))
            b.sample()
        b.settle([(c.local_port(), st.peer_port, st.sent, len(c.buf))], d.port, srv.port)
        stalled = st.sent
        h1 = holds(d)
        chk = Check(DOWN, start_of(cid))
        t1 = time.monotonic()
        end = read_stream(c.sock, chk, total, t1 + 45, first=bytes(c.buf))
        dt = time.monotonic() - t1
    st.done.wait(5)
    fig = "%s; origin stalled at %s MiB of %d" % (b.figures(), mib(stalled), total // MIB)
    if d.relay == "sockmap":
        fig += "; holds +%s" % ((h1 - h0) if None not in (h0, h1) else "?")
    p = b.problems()
    if stalled > total // 4:
        p.append("the origin was not stalled: it sent %s MiB of %d MiB while the client read "
                 "nothing for %.0f s" % (mib(stalled), total // MIB, stall))
    if d.relay == "sockmap" and h0 is not None and h1 is not None and h1 == h0:
        p.append("tunnelctl stats holds + pauses did not increase (%d): the kernel relay never "
                 "held back" % h0)
    if chk.bad:
        p.append("data: " + chk.bad)
    if end != "eof":
        p.append("after resuming: %s" % end)
    elif chk.n == total and st.sha != chk.sha():
        p.append("sha256 differs: origin sent %s, client got %s" % (st.sha, chk.sha()))
    if p:
        raise AssertionError("; ".join(p) + "%s [%s]" % (tunnel_log(d, cport), fig))
    return "%s; then %d MiB in %.1f s, sha256 equal" % (fig, total // MIB, dt)


def t_slow_rate(env, d, seconds=5.0, rate=MIB, total=512 * MIB):
    """A client reading at `rate` bytes/s for `seconds`."""
    srv = origin(env)
    b = Bound(d)
    want = int(seconds * rate)
    c, cid, st = open_push(d, srv, total)
    cport = c.local_port()
    with c:
        chk = Check(DOWN, start_of(cid))
        if c.buf:
            chk.feed(bytes(c.buf))
        t0 = time.monotonic()
        next_sample = t0 + 1.0
        while chk.n < want and time.monotonic() < t0 + seconds + 2.0:
            now = time.monotonic()
            if now >= next_sample:
                b.sample()
                next_sample += 1.0
            due = min(int((now - t0) * rate), want) - chk.n
            if due <= 0:
                time.sleep(0.01)
                continue
            c.sock.settimeout(0.2)
            try:
                data = c.sock.recv(min(due, 64 * KIB))
            except socket.timeout:
                continue
            if not data:
                break
            chk.feed(data)
        dt = time.monotonic() - t0
        b.sample()
        b.settle([(c.local_port(), st.peer_port, st.sent, chk.n)], d.port, srv.port)
    fig = "%s; read %s MiB in %.1f s; origin sent %s MiB" % (b.figures(), mib(chk.n), dt, mib(b.sent))
    p = b.problems()
    if chk.bad:
        p.append("data: " + chk.bad)
    if chk.n < want:
        p.append("the reader got only %s of %s MiB in %.1f s at %s MiB/s: the relay stalled" % (
            mib(chk.n), mib(want), dt, mib(rate)))
    elif chk.sha() != DOWN.sha256(start_of(cid), chk.n):
        p.append("sha256 of the %d bytes read differs from the origin's pattern" % chk.n)
    if p:
        raise AssertionError("; ".join(p) + "%s [%s]" % (tunnel_log(d, cport), fig))
    return fig + ", sha256 equal"


def t_bidir(env, d, total=64 * MIB, slow_s=2.0, slow_rate=2 * MIB):
    """Both sides send `total` while each reads slowly at first, then fast."""
    srv = origin(env)
    srv.slow_s, srv.slow_rate = slow_s, slow_rate
    h0 = holds(d)
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        cport = c.local_port()
        me = "127.0.0.1:%d" % cport
        cid = next_id()
        c.send(HELLO.pack(b"bidi", cid, total))
        st = origin_state(srv, cid)
        box = {}

        def sender():
            h = hashlib.sha256()
            try:
                off, start = 0, start_of(cid)
                c.sock.settimeout(30)
                while off < total:
                    view = UP.view(start + off, min(CHUNK, total - off))
                    c.sock.sendall(view)
                    h.update(view)
                    off += len(view)
                c.sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                box["err"] = repr(e)
            box["sha"] = h.hexdigest()

        t0 = time.monotonic()
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        chk = Check(DOWN, start_of(cid))
        end = read_stream(c.sock, chk, total, t0 + 30, slow_s, slow_rate, first=bytes(c.buf))
        t.join(max(t0 + 30 - time.monotonic(), 0.1))
        st.done.wait(max(t0 + 35 - time.monotonic(), 0.1))
        dt = time.monotonic() - t0
    h1 = holds(d)
    p = []
    if "err" in box:
        p.append("client send: %s" % box["err"])
    if chk.bad:
        p.append("origin -> client: " + chk.bad)
    if end != "eof":
        p.append("origin -> client: %s" % end)
    elif st.sha != chk.sha():
        p.append("origin -> client: sha256 differs")
    up = st.up
    if up is None or not st.done.is_set():
        p.append("client -> origin: origin did not finish (got %s bytes)" % (up.n if up else "?"))
    else:
        if up.bad:
            p.append("client -> origin: " + up.bad)
        if st.up_end != "eof":
            p.append("client -> origin: %s" % st.up_end)
        elif box.get("sha") != up.sha():
            p.append("client -> origin: sha256 differs")
    for what, _ in st.events:
        p.append("origin: %s" % what)
    gone = gone_within(d, me, 2.0) if not p else 0
    if gone is None:
        p.append("tunnel still listed 2 s after both sides closed: %s" % describe_leftovers(
            d.list_tunnels(), me))
    hs = "; holds +%s" % ((h1 - h0) if None not in (h0, h1) else "?") if d.relay == "sockmap" else ""
    if p:
        raise AssertionError("; ".join(p) + hs + tunnel_log(d, cport))
    return "2 x %d MiB in %.1f s (each side read %s MiB/s for %.0f s first)%s" % (
        total // MIB, dt, mib(slow_rate), slow_s, hs)


def t_many(env, d, n=200, size=8 * MIB, pause=2.0):
    """n tunnels whose clients pause, then read everything."""
    if not peers.which("ss"):
        raise Skip("ss (iproute2) not installed: the bound here needs the socket buffer caps")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    dsoft = daemon_nofile(d)
    if soft < 2 * n + 256 or (dsoft is not None and dsoft < 6 * n + 64):
        raise Skip("fd limit too low for %d tunnels: ours %d, the daemon's %s" % (n, soft, dsoft))
    srv = origin(env)
    b = Bound(d, n)
    ready = threading.Barrier(n + 1)
    go = threading.Event()
    res = [None] * n
    info = [None] * n
    cports = [None] * n

    def one(i):
        c = None
        try:
            c = Client(d.port, timeout=20)
            c.tunnel(A_DIRECT, srv.port, timeout=10)
            cid = next_id()
            c.send(HELLO.pack(b"push", cid, size))
            st = origin_state(srv, cid, 10)
            info[i] = (c, st)
        except Exception as e:
            res[i] = "open: %s" % e
        try:
            ready.wait(30)
        except threading.BrokenBarrierError:
            pass
        if res[i] is not None:
            if c:
                c.close()
            return
        try:
            go.wait(40)
            chk = Check(DOWN, start_of(cid))
            end = read_stream(c.sock, chk, size, time.monotonic() + 45, first=bytes(c.buf))
            st.done.wait(5)
            if chk.bad:
                res[i] = chk.bad
            elif end != "eof":
                res[i] = end
            elif st.sha != chk.sha():
                res[i] = "sha256 differs"
            else:
                res[i] = "ok"
            if res[i] != "ok":
                res[i] += " (client port %d)" % c.local_port()
                cports[i] = c.local_port()
        except Exception as e:
            res[i] = "read: %r" % e
        finally:
            c.close()

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    try:
        ready.wait(35)
    except threading.BrokenBarrierError:
        pass
    t_open = time.monotonic() - t0
    t1 = time.monotonic()
    while time.monotonic() - t1 < pause:
        time.sleep(0.5)
        b.sample()
    live = [x for x in info if x]
    b.settle([(c.local_port(), st.peer_port, st.sent, len(c.buf)) for c, st in live], d.port, srv.port)
    b.n = len(live)
    go.set()
    t2 = time.monotonic()
    for t in ts:
        t.join(max(t2 + 55 - time.monotonic(), 0.1))
    dt = time.monotonic() - t2
    per = worst_slack() + 2 * b.relay
    fig = ("%d tunnels opened in %.1f s; after %.0f s: origins sent %s of %d MiB; %s; then read "
           "in %.1f s. Worst case n x (2 x %s MiB + socket buffer maxima) = %.1f GiB exceeds the "
           "payload, so memory is checked against the socket buffer caps in effect (ss -tm) + "
           "n x 2 x relay buffer" % (len(live), t_open, pause, mib(b.sent), n * size // MIB,
                                     b.figures(), dt, mib(b.relay), n * per / (1 << 30)))
    bound = b.caps + b.allow + b.slop() + pcpu_slop()
    p = b.problems(bound, "socket buffer caps in effect %s MiB + n x 2 x %s MiB relay buffer + slop" % (
        mib(b.caps), mib(b.relay)))
    bad = [(i, r) for i, r in enumerate(res) if r != "ok"]
    if bad:
        p.append("%d of %d tunnels failed: %s" % (len(bad), n, "; ".join(
            "#%d %s%s" % (i, r, tunnel_log(d, cports[i]) if cports[i] else "") for i, r in bad[:2])))
    if p:
        raise AssertionError("; ".join(p) + " [%s]" % fig)
    return fig


def t_stress(env, d, n=200, size=4 * MIB):
    """n tunnels that send `size` bytes each way in random sizes while both ends read
    in random amounts with random pauses; with max_backlog_bytes at its minimum the
    relay pauses (or holds) all the time. Every byte is checked, both ways."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    dsoft = daemon_nofile(d)
    if soft < 2 * n + 256 or (dsoft is not None and dsoft < 6 * n + 64):
        raise Skip("fd limit too low for %d tunnels: ours %d, the daemon's %s" % (n, soft, dsoft))
    srv = origin(env)
    s0 = stat(d, "holds", "pauses", "bytes_kernel", "bytes_copied")
    res = [None] * n

    def one(i):
        rng = random.Random(1000 + i)
        try:
            with Client(d.port, timeout=20) as c:
                c.tunnel(A_DIRECT, srv.port, timeout=10)
                cid = next_id()
                c.send(HELLO.pack(b"jitr", cid, size))
                st = origin_state(srv, cid, 10)
                box = {}

                def sender():
                    try:
                        box["sha"] = send_all(c.sock, UP, start_of(cid), size, random.Random(i))
                    except OSError as e:
                        box["err"] = repr(e)

                t = threading.Thread(target=sender, daemon=True)
                t.start()
                chk = Check(DOWN, start_of(cid))
                chk.feed(bytes(c.buf))
                end = read_jitter(c.sock, chk, size, time.monotonic() + 60, rng)
                t.join(30)
                st.done.wait(30)
                p = []
                if chk.bad or end != "eof" or st.sha != chk.sha():
                    p.append("down: %s" % (chk.bad or (end if end != "eof" else "sha256 differs")))
                up = st.up
                if up is None or up.bad or st.up_end != "eof" or box.get("sha") != up.sha():
                    p.append("up: %s" % (up and up.bad or st.up_end or "sha256 differs"))
                if "err" in box:
                    p.append("client send: " + box["err"])
                p += ["origin: " + w for w, _ in st.events]
                res[i] = "; ".join(p) + tunnel_log(d, c.local_port()) if p else "ok"
        except Exception as e:
            res[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(t0 + 80 - time.monotonic(), 0.1))
    dt = time.monotonic() - t0
    s1 = stat(d, "holds", "pauses", "bytes_kernel", "bytes_copied")
    bad = [(i, r) for i, r in enumerate(res) if r != "ok"]
    fig = "%d tunnels x %d MiB each way in %.1f s" % (n, size // MIB, dt)
    held_back = None
    if d.relay == "sockmap" and None not in s0 + s1:
        dh, dp, dk, dc = (b - a for a, b in zip(s0, s1))
        held_back = dh + dp
        fig += "; holds +%d, pauses +%d, %.1f%% of the bytes copied by the daemon" % (
            dh, dp, 100.0 * dc / max(dk + dc, 1))
    if bad:
        raise AssertionError("%d of %d tunnels failed: %s [%s]" % (
            len(bad), n, "; ".join("#%d %s" % (i, r if r else "did not finish") for i, r in bad[:2]),
            fig))
    if held_back == 0:
        raise AssertionError("the relay never held back (holds + pauses unchanged) [%s]" % fig)
    return fig


def daemon_nofile(d):
    try:
        with open("/proc/%d/limits" % d.pid) as f:
            m = re.search(r"^Max open files\s+(\d+)", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def raise_nofile(n):
    """Raise our soft fd limit toward n (the daemon started after inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def t_client_gone(env, d, how, total=512 * MIB, queued_s=1.5):
    """The client goes away while bytes toward it are queued: 'close' (FIN with
    shutdown, then close() with unread bytes, which the kernel turns into RST)
    or 'rst' (SO_LINGER 0)."""
    srv = origin(env)
    c, cid, st = open_push(d, srv, total)
    me = "127.0.0.1:%d" % c.local_port()
    try:
        time.sleep(queued_s)
        lst = mine(d, c)
        queued = st.sent
        if not lst:
            raise AssertionError("tunnel not listed before the client left")
        if queued >= total:
            raise AssertionError("origin not stalled: nothing queued toward the client")
        t0 = time.monotonic()
        if how == "close":
            c.sock.shutdown(socket.SHUT_WR)
            time.sleep(0.2)
            c.sock.close()
        else:
            rst_close(c.sock)
        t_close = time.monotonic()
    finally:
        c.close()
    gone = gone_within(d, me, 3.0)
    while time.monotonic() < t_close + 3.0 and not any(
            w in ("eof", "reset", "epipe") for w, _ in st.events):
        time.sleep(0.05)
    st.stop = True
    ev = ["%s after %.2f s" % (w, t - t0) for w, t in st.events]
    p = []
    if gone is None:
        p.append("tunnel still listed 3 s after the client's %s: %s" % (
            how, short([t for t in d.list_tunnels() if t.get("client") == me], 200)))
    elif gone > 2.0:
        p.append("tunnel listed for %.2f s after the client's %s, want <= 2 s" % (gone, how))
    ends = [t for w, t in st.events if w in ("eof", "reset", "epipe")]
    if not ends:
        p.append("origin saw neither EOF nor RST within 3 s (events: %s)" % (ev or "none"))
    elif ends[0] - t_close > 2.0:
        p.append("origin saw the end %.2f s after the client's close, want <= 2 s" % (ends[0] - t_close))
    info = "%s MiB were queued toward the client; tunnel gone %s after; origin saw %s" % (
        mib(queued), "%.2f s" % gone if gone is not None else "never", ", ".join(ev) or "nothing")
    if p:
        raise AssertionError("; ".join(p) + " [%s]" % info)
    return info


def t_neither_reads(env, d, seconds=8.0):
    """Both ends send as fast as they can and neither reads. Bytes the kernel relay
    holds behind the other direction's are charged to no socket; redirecting only
    into free send-buffer space keeps that queue empty (the daemon resets the tunnel
    past 64 x max_backlog_bytes and 256 MiB as a backstop); splice just stalls.
    Either way kernel memory must stay bounded."""
    srv = origin(env)
    c = Client(d.port, timeout=10)
    reset = None
    try:
        c.tunnel(A_DIRECT, srv.port, timeout=10)
        cid = next_id()
        c.send(HELLO.pack(b"pour", cid, 0))
        st = origin_state(srv, cid, 10)
        m0 = mem_now()
        peak = 0
        sent = 0
        buf = bytes(CHUNK)
        c.sock.setblocking(False)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds and reset is None:
            select.select([], [c.sock], [], 0.1)
            try:
                sent += c.sock.send(buf)
            except BlockingIOError:
                pass
            except OSError as e:
                reset = (time.monotonic() - t0, repr(e))
            m = mem_now()
            peak = max(peak, (m0[1] - m[1]) - (m[2] - m0[2]))  # MemAvailable lost, less process memory
        st.stop = True
    finally:
        c.close()
    bound = 2 * 2 * d.max_backlog + 64 * MIB  # the two backlogs + what may wait behind them
    caps = 4 * (sysctl_max("tcp_rmem") + sysctl_max("tcp_wmem"))  # four sockets' queues
    allowed = bound + caps + 64 * MIB  # + slack for the page cache and allocator noise
    info = "client sent %s MiB, origin %s MiB; kernel memory grew at most %s MiB (allowed %s); %s" % (
        mib(sent), mib(st.sent), mib(peak), mib(allowed),
        "reset after %.1f s (%s)" % reset if reset else "no reset within %.0f s" % seconds)
    if peak > allowed:
        raise AssertionError("memory not bounded: " + info)
    return info


def t_idle_closes(env, d):
    srv = env.servers["echo"]
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        me = "127.0.0.1:%d" % c.local_port()
        c.send(b"x" * 100)
        c.recv_exact(100, 3.0)
        t0 = time.monotonic()
        how, extra = c.wait_eof(5.0)
        dt = time.monotonic() - t0
    p = []
    if how != "eof":
        p.append("idle tunnel: client saw %s after %.2f s, want EOF within %.1f-3 s" % (
            how, dt, IDLE_MS / 1000))
    elif not IDLE_MS / 1000 - 0.05 <= dt <= 3.0:
        p.append("idle tunnel closed after %.2f s, want %.1f-3 s (idle_timeout_ms = %d, checked "
                 "each second)" % (dt, IDLE_MS / 1000, IDLE_MS))
    if extra:
        p.append("%d unexpected bytes before EOF" % len(extra))
    if gone_within(d, me, 1.0) is None:
        p.append("closed tunnel still listed: " + describe_leftovers(d.list_tunnels(), me))
    if p:
        raise AssertionError("; ".join(p))
    return "EOF %.2f s after the last byte" % dt


def t_idle_keeps_active(env, d, period=0.3, seconds=5.0):
    srv = env.servers["echo"]
    with Client(d.port) as c:
        c.tunnel(A_DIRECT, srv.port)
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            msg = os.urandom(100)
            try:
                c.send(msg)
                got = c.recv_exact(len(msg), 1.0)
            except (AssertionError, OSError) as e:
                raise AssertionError("tunnel with a round trip every %.1f s broke after %.2f s "
                                     "(round trip %d): %s" % (period, time.monotonic() - t0, i, e))
            if got != msg:
                raise AssertionError("echo %d differs" % i)
            i += 1
            time.sleep(period)
        if not mine(d, c):
            raise AssertionError("active tunnel not listed after %.0f s" % seconds)
    return "%d round trips in %.1f s, still open" % (i, time.monotonic() - t0)


def dump_len(d, name):
    import json
    path = os.path.join(d.pin_dir, name)
    r = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", path], capture_output=True,
                       timeout=20)
    if r.returncode != 0:
        raise AssertionError("bpftool map dump pinned %s: %s" % (
            path, (r.stderr or r.stdout).decode(errors="replace").strip()))
    return len(json.loads(r.stdout))


def t_churn(env, d, n=2000, width=50):
    """n tunnels (CONNECT, one round trip, close), width at a time."""
    srv = env.servers["echo"]
    errs = []
    done = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def worker(k):
        for j in range(k, n, width):
            if time.monotonic() > deadline:
                with lock:
                    errs.append("out of time")
                return
            try:
                with Client(d.port, timeout=5) as c:
                    c.tunnel(A_DIRECT, srv.port)
                    msg = b"%06d" % j + os.urandom(58)
                    c.send(msg)
                    if c.recv_exact(len(msg), 5.0) != msg:
                        raise AssertionError("echo differs")
                with lock:
                    done[0] += 1
            except Exception as e:
                with lock:
                    errs.append("tunnel %d: %s" % (j, e))

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(width)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(deadline + 5 - time.monotonic(), 0.1))
    dt = time.monotonic() - t0
    settle = time.monotonic() + 3.0
    while True:
        fds = d.fd_count()
        lst = d.list_tunnels()
        maps = {m: dump_len(d, m) for m in ("tunnels", "ends")} if d.relay == "sockmap" else {}
        if (fds == d.fd0 and not lst and not any(maps.values())) or time.monotonic() > settle:
            break
        time.sleep(0.2)
    p = []
    if errs:
        p.append("%d of %d tunnels failed: %s" % (len(errs), n, "; ".join(errs[:3])))
    if fds != d.fd0:
        now = d.fd_list()
        new = sorted(v for k, v in now.items() if d.fds0.get(k) != v)
        p.append("daemon has %d fds, %d at startup (new: %s)" % (fds, d.fd0, ", ".join(new[:8])))
    if lst:
        p.append("tunnelctl list not empty: %d tunnels, e.g. %s" % (len(lst), short(lst[:2], 200)))
    for m, k in maps.items():
        if k:
            p.append("%s/%s has %d entries" % (d.pin_dir, m, k))
    if p:
        raise AssertionError("; ".join(p))
    return "%d tunnels in %.1f s; fds back to %d, list empty%s" % (
        done[0], dt, d.fd0, ", tunnels and ends maps empty" if maps else "")


# ---------------------------------------------------------------- registration


def groups(env, relay):
    """(daemon name suffix, [gateway] settings, setup, [(test name, fn(daemon))])."""
    return [
        ("flow", {"max_backlog_bytes": str(BACKLOG_FLOW)}, None, [
            ("slow_reader_10s", lambda d: t_slow_reader(env, d)),
            ("reader_1MiB_per_s", lambda d: t_slow_rate(env, d)),
            ("bidir_64MiB_slow_then_fast", lambda d: t_bidir(env, d)),
            ("close_with_queued_bytes", lambda d: t_client_gone(env, d, "close")),
            ("rst_with_queued_bytes", lambda d: t_client_gone(env, d, "rst")),
            ("origin_reset_delivers_then_resets", lambda d: t_reset(env, d, "origin")),
            ("client_reset_delivers_then_resets", lambda d: t_reset(env, d, "client")),
            ("neither_end_reads", lambda d: t_neither_reads(env, d)),
        ]),
        ("many", {"max_backlog_bytes": str(BACKLOG_MANY)}, lambda: raise_nofile(8192), [
            ("slow_readers_200_tunnels", lambda d: t_many(env, d)),
            ("jittery_readers_200_tunnels_both_ways", lambda d: t_stress(env, d)),
        ]),
    ] + ([
        # The fallback when the sockops program cannot load: held bytes copied.
        ("hold", {"max_backlog_bytes": str(BACKLOG_FLOW), "pause": "hold"}, None, [
            ("hold_slow_reader_10s", lambda d: t_slow_reader(env, d)),
            ("hold_bidir_64MiB_slow_then_fast", lambda d: t_bidir(env, d)),
        ]),
        ("hold-many", {"max_backlog_bytes": str(BACKLOG_MANY), "pause": "hold"},
         lambda: raise_nofile(8192), [
            ("hold_jittery_readers_200_tunnels_both_ways", lambda d: t_stress(env, d)),
        ]),
    ] if relay == "sockmap" else []) + [
        ("idle", {"idle_timeout_ms": str(IDLE_MS)}, None, [
            ("idle_timeout_closes_idle", lambda d: t_idle_closes(env, d)),
            ("idle_timeout_keeps_active", lambda d: t_idle_keeps_active(env, d)),
        ]),
        ("churn", {}, None, [
            ("churn_2000_tunnels", lambda d: t_churn(env, d)),
        ]),
        ("lossy", {}, None, [
            ("lossy_link_retransmits_overlap", lambda d: lossy_test(d)),
        ]),
    ]


def lossy_test(d):
    import lossy  # it builds on this module
    return lossy.t_lossy(d)


def names(relay):
    return ["%s/%s" % (relay, n) for _, _, _, tests in groups(None, relay) for n, _ in tests]


# Open bugs: a test listed here is reported as SKIP with the reason unless
# TG_RUN_KNOWN_BUGS=1 is set, so the suite stays a reliable signal while the bug is
# worked on. Remove an entry together with its fix.
KNOWN_BUGS = {}


def run_flow(runner, env, relay, start):
    """Run the flow tests of one relay mode; start(name, extra=...) starts a daemon."""
    for suffix, extra, setup, tests in groups(env, relay):
        todo = []
        for n, fn in tests:
            name = "%s/%s" % (relay, n)
            if name in KNOWN_BUGS and not os.environ.get("TG_RUN_KNOWN_BUGS"):
                runner.skip(name, KNOWN_BUGS[name])
            elif runner.selected(name):
                todo.append((n, fn))
        if not todo:
            continue
        d = None
        try:
            if setup:
                setup()
            d = start("tg-%s-%s" % (relay, suffix), extra=extra)
            d.max_backlog = int(extra.get("max_backlog_bytes", 4194304))
        except Exception as e:
            lines = str(e).splitlines()
            for n, _ in todo:
                runner.fail("%s/%s" % (relay, n), "daemon did not start: %s" % lines[0], lines[1:])
            continue
        for n, fn in todo:
            if not d.alive():
                print("# %s daemon died (rc=%s); restarting" % (d.name, d.proc.p.poll()), flush=True)
                d.stop()
                try:
                    d = start("tg-%s-%s-r%d" % (relay, suffix, int(time.monotonic())), extra=extra)
                    d.max_backlog = int(extra.get("max_backlog_bytes", 4194304))
                except Exception as e:
                    runner.fail("%s/%s" % (relay, n), "daemon restart failed: %s" % str(e).splitlines()[0])
                    continue
            runner.run("%s/%s" % (relay, n), (lambda f, dd: lambda: f(dd))(fn, d), d)
        d.stop()
