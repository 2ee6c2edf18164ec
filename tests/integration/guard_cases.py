"""The XDP listener guard end to end (the guard/ tests): a network namespace and a veth
pair of their own, one tunnelgated with xdp_interfaces on the root end, clients in the
namespace on two source addresses.

  root namespace  10.211.0.1/24  tgg<tag>a   tunnelgated listens here; guard_xdp on it
  client netns    10.211.0.2/24  tgg<tag>b   source A (denied, then flooding)
                  10.211.0.3/24              source B (must get in at once throughout)

Clients run inside the namespace (`ip netns exec`) as a helper script written to the
test's temp dir; they print one JSON object per event. The origin is the shared echo
server on 127.0.0.1 (direct pool). A SYN the guard drops gets no SYN-ACK, so a connect()
from a denied source times out, and one from an allowed source completes well under the
1 s initial SYN retransmission timeout.
"""

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import peers
from cases import Skip

ROOT_IP, SRC_A, SRC_B = "10.211.0.1", "10.211.0.2", "10.211.0.3"
SYN_RATE, SYN_BURST = 20, 5
FLOOD_RATE = 400         # connect()s per second from SRC_A, 20 times syn_rate
FLOOD_WINDOW = 1.5       # seconds of flood
DENIED_WAIT = 1.5        # connect timeout that shows no SYN-ACK came (first retransmit included)
BLOCKED_WAIT = 0.8       # the same, where the retransmission need not be seen
FAST = 0.5               # an allowed source's handshake: no SYN may have been dropped

HELPER = r'''
import json, os, select, socket, struct, sys, time

def out(**kw):
    print(json.dumps(kw), flush=True)

def tunnel(src, dst, port, eport, ct, hold):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(ct)
    t0 = time.monotonic()
    try:
        s.connect((dst, port))
    except socket.timeout:
        return out(stage="connect", error="timeout", t=time.monotonic() - t0)
    except OSError as e:
        return out(stage="connect", error=str(e), t=time.monotonic() - t0)
    tc = time.monotonic() - t0
    s.settimeout(5)
    try:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (eport, eport))
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(4096)
            if not c:
                return out(stage="head", error="eof", got=head.decode(errors="replace"), t_connect=tc)
            head += c
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        payload = os.urandom(4096)
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            c = s.recv(65536)
            if not c:
                break
            got += c
    except OSError as e:
        return out(stage="tunnel", error=str(e), t_connect=tc)
    out(stage="ok", status=status, echo=got == payload, t_connect=tc)
    if hold <= 0:
        return
    s.settimeout(hold)
    t1 = time.monotonic()
    try:
        c = s.recv(1)
        how = "eof" if not c else "data"
    except socket.timeout:
        how = "open"
    except ConnectionResetError:
        how = "reset"
    except OSError as e:
        how = str(e)
    echo_after = None
    if how == "open":  # still open: does it still carry bytes?
        try:
            s.settimeout(3)
            s.sendall(b"ping")
            echo_after = s.recv(4) == b"ping"
        except OSError:
            echo_after = False
    out(stage="closed", how=how, after=time.monotonic() - t1, echo_after=echo_after)

def flood(src, dst, port, rate, window):
    """connect()s at @rate per second for @window seconds, each one SYN (plus the
    kernel's retransmissions of those that get no answer); when each completed."""
    pending, socks, times, errors = {}, [], [], []
    p = select.poll()
    t0 = time.monotonic()
    out(stage="started")
    while True:
        now = time.monotonic()
        if now >= t0 + window:
            break
        while len(socks) < (now - t0) * rate + 1:
            s = socket.socket()
            s.setblocking(False)
            s.bind((src, 0))
            try:
                s.connect((dst, port))
            except BlockingIOError:
                pass
            socks.append(s)
            pending[s.fileno()] = s
            p.register(s.fileno(), select.POLLOUT)
        wait = min(t0 + len(socks) / rate, t0 + window) - time.monotonic()
        for fd, ev in p.poll(max(0, wait) * 1000):
            s = pending.pop(fd)
            p.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                errors.append(os.strerror(err))
            else:
                times.append(time.monotonic() - t0)
    for s in socks:  # RST: the daemon need not wait for these heads
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    out(stage="flooded", n=len(socks), times=times, errors=errors)

a = sys.argv
if a[1] == "tunnel":
    tunnel(a[2], a[3], int(a[4]), int(a[5]), float(a[6]), float(a[7]))
else:
    flood(a[2], a[3], int(a[4]), float(a[5]), float(a[6]))
'''


def sh(*argv, check=True, timeout=10):
    r = subprocess.run(list(argv), capture_output=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                 (r.stderr or r.stdout).decode(errors="replace").strip()))
    return r


class Net:
    """The client namespace and the veth pair; close() removes both (deleting one end of
    a veth pair deletes the other)."""

    def __init__(self, tmp):
        tag = os.urandom(3).hex()
        self.ns = "tgg-%s" % tag
        self.root_if, self.ns_if = "tgg%sa" % tag, "tgg%sb" % tag
        self.helper = os.path.join(tmp, "guard_client.py")
        with open(self.helper, "w") as f:
            f.write(HELPER)
        self.made_ns = self.made_if = False
        try:
            sh("ip", "netns", "add", self.ns)
            self.made_ns = True
            sh("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.ns_if,
               "netns", self.ns)
            self.made_if = True
            sh("ip", "addr", "add", ROOT_IP + "/24", "dev", self.root_if)
            sh("ip", "link", "set", self.root_if, "up")
            for a in (SRC_A, SRC_B):
                sh("ip", "-n", self.ns, "addr", "add", a + "/24", "dev", self.ns_if)
            # no IPv6 router solicitations or DAD: the packet count of bpftool_stats_add_up
            # then has only what the tests send (and ARP)
            sh("ip", "netns", "exec", self.ns, "sysctl", "-qw",
               "net.ipv6.conf.%s.disable_ipv6=1" % self.ns_if, check=False)
            sh("ip", "-n", self.ns, "link", "set", self.ns_if, "up")
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def close(self):
        if self.made_if:
            sh("ip", "link", "del", self.root_if, check=False)
            self.made_if = False
        if self.made_ns:
            sh("ip", "netns", "del", self.ns, check=False)
            self.made_ns = False

    def argv(self, *args):
        return ["ip", "netns", "exec", self.ns, sys.executable, self.helper] + [str(a) for a in args]

    def tunnel(self, src, port, eport, ct=3.0, hold=0):
        """One tunnel from @src, run to completion: the helper's events."""
        r = subprocess.run(self.argv("tunnel", src, ROOT_IP, port, eport, ct, hold),
                           capture_output=True, timeout=ct + hold + 20)
        return events(r.stdout, r.stderr)

    def start(self, *args):
        # unbuffered: select() below must see every line the helper wrote
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=0)


def events(stdout, stderr=b""):
    out = []
    for line in stdout.decode(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    if not out:
        raise AssertionError("client helper printed nothing; stderr: %s" %
                             stderr.decode(errors="replace").strip()[-400:])
    return out


def next_event(p, timeout):
    """The next JSON line of a running helper, or an AssertionError after @timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        line = p.stdout.readline()
        if not line:
            raise AssertionError("client helper exited: %s" % p.stderr.read().decode(errors="replace")[-400:])
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise AssertionError("client helper said nothing for %.1f s" % timeout)


def expect_ok(ev, who):
    e = ev[0]
    if e.get("stage") != "ok" or " 200" not in e.get("status", "") or not e.get("echo"):
        raise AssertionError("tunnel from %s failed: %r" % (who, ev))
    if e["t_connect"] > FAST:
        raise AssertionError("tunnel from %s: handshake took %.2f s (a SYN was dropped)" % (
            who, e["t_connect"]))
    return e


def expect_no_synack(ev, who):
    e = ev[0]
    if e.get("stage") != "connect" or e.get("error") != "timeout":
        raise AssertionError("connect from %s should time out (no SYN-ACK), got %r" % (who, ev))


def stats(d):
    r = d.ctl("stats")
    out = {}
    for line in r.stdout.decode(errors="replace").splitlines():
        k, _, v = line.partition("\t")
        if v.strip().isdigit():
            out[k] = int(v)
    for k in ("guard_passed", "guard_denied", "guard_rate_limited"):
        if k not in out:
            raise AssertionError("tunnelctl stats has no %s: %r" % (k, r.stdout[:400]))
    return out


def deny(d, *args):
    r = d.ctl("deny", *args)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace").strip()


def deny_list(d):
    rc, text = deny(d, "list")
    if rc != 0:
        raise AssertionError("tunnelctl deny list exited %d: %s" % (rc, text))
    return dict(l.split("\t", 1) for l in text.splitlines() if "\t" in l)


def reload(d, deny_value):
    """Rewrite the config's deny line and SIGHUP; waits for the reload line."""
    with open(d.conf) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("deny =")]
    i = lines.index("[gateway]") + 1
    if deny_value is not None:
        lines.insert(i, "deny = %s" % deny_value)
    with open(d.conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    off = d.log_size()
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = "\n".join(d.tail(50, off))
        if "reloaded" in text:
            return
        if "reload failed" in text:
            raise AssertionError("reload failed: %s" % text)
        time.sleep(0.05)
    raise AssertionError("no 'reloaded' log line within 5 s of SIGHUP")


def t_deny_config(env, net, d):
    """(a) deny = SRC_A in the config: SRC_A gets no SYN-ACK, SRC_B tunnels at once."""
    eport = env.servers["echo"].port
    lst = deny_list(d)
    if lst.get(SRC_A + "/32") != "config":
        raise AssertionError("deny list should show %s/32<TAB>config: %r" % (SRC_A, lst))
    s0 = stats(d)
    expect_no_synack(net.tunnel(SRC_A, d.port, eport, DENIED_WAIT), SRC_A)
    e = expect_ok(net.tunnel(SRC_B, d.port, eport), SRC_B)
    s1 = stats(d)
    # the SYN and its retransmission after 1 s
    if s1["guard_denied"] - s0["guard_denied"] < 2:
        raise AssertionError("guard_denied grew by %d, want >= 2 (SYN + retransmission)" % (
            s1["guard_denied"] - s0["guard_denied"]))
    if s1["guard_passed"] <= s0["guard_passed"]:
        raise AssertionError("guard_passed did not grow with %s's tunnel" % SRC_B)
    return "%s: no SYN-ACK in %.1f s; %s: handshake %.1f ms; denied +%d, passed +%d" % (
        SRC_A, DENIED_WAIT, SRC_B, e["t_connect"] * 1000, s1["guard_denied"] - s0["guard_denied"],
        s1["guard_passed"] - s0["guard_passed"])


def t_deny_ctl(env, net, d):
    """(b) SIGHUP replaces the config's entries and keeps tunnelctl's; deny add closes the
    source's open tunnels (only that source's); deny del lets it back in."""
    eport = env.servers["echo"].port
    # tunnelctl may delete a config entry too (the next reload would add it again).
    rc, text = deny(d, "del", SRC_A + "/32")
    if rc != 0 or deny_list(d):
        raise AssertionError("deny del of a config entry: exit %d (%s), list %r; want it gone"
                             % (rc, text, deny_list(d)))
    expect_ok(net.tunnel(SRC_A, d.port, eport), SRC_A + " (after deny del of its config entry)")
    reload(d, None)  # the config no longer denies SRC_A
    if deny_list(d):
        raise AssertionError("deny list after a reload without deny: %r" % deny_list(d))
    expect_ok(net.tunnel(SRC_A, d.port, eport), SRC_A + " (after the reload)")

    held_a = net.start("tunnel", SRC_A, ROOT_IP, d.port, eport, 3, 10)
    held_b = net.start("tunnel", SRC_B, ROOT_IP, d.port, eport, 3, 1)
    try:
        for who, p in ((SRC_A, held_a), (SRC_B, held_b)):
            e = next_event(p, 8)
            if e.get("stage") != "ok" or not e.get("echo"):
                raise AssertionError("held tunnel from %s did not open: %r" % (who, e))
        t0 = time.monotonic()
        rc, text = deny(d, "add", SRC_A + "/32")
        if rc != 0 or not re.search(r"\b1 connections? closed", text):
            raise AssertionError("deny add %s/32: exit %d: %r (want 1 connection closed)" % (
                SRC_A, rc, text))
        e = next_event(held_a, 5)
        if e.get("stage") != "closed" or e.get("how") not in ("eof", "reset"):
            raise AssertionError("%s's open tunnel after deny add: %r" % (SRC_A, e))
        closed_after = time.monotonic() - t0
        e = next_event(held_b, 8)
        if e.get("how") != "open" or not e.get("echo_after"):
            raise AssertionError("%s's tunnel should stay open and carry bytes: %r" % (SRC_B, e))
    finally:
        for p in (held_a, held_b):
            if p.poll() is None:
                p.kill()
            p.wait()
    expect_no_synack(net.tunnel(SRC_A, d.port, eport, BLOCKED_WAIT), SRC_A + " (after deny add)")
    if deny_list(d).get(SRC_A + "/32") != "ctl":
        raise AssertionError("deny list after deny add: %r" % deny_list(d))

    other = "10.211.0.200/32"
    reload(d, other)  # a new config entry; tunnelctl's stays
    lst = deny_list(d)
    if lst.get(SRC_A + "/32") != "ctl" or lst.get(other) != "config" or len(lst) != 2:
        raise AssertionError("deny list after SIGHUP with deny = %s: %r" % (other, lst))
    expect_no_synack(net.tunnel(SRC_A, d.port, eport, BLOCKED_WAIT), SRC_A + " (after SIGHUP)")

    rc, text = deny(d, "del", SRC_A + "/32")
    if rc != 0:
        raise AssertionError("deny del %s/32: exit %d: %s" % (SRC_A, rc, text))
    if SRC_A + "/32" in deny_list(d):
        raise AssertionError("deny list after deny del: %r" % deny_list(d))
    expect_ok(net.tunnel(SRC_A, d.port, eport), SRC_A + " (after deny del)")

    # A reload whose deny takes in a source closes that source's open tunnels too.
    held = net.start("tunnel", SRC_B, ROOT_IP, d.port, eport, 3, 10)
    try:
        e = next_event(held, 8)
        if e.get("stage") != "ok" or not e.get("echo"):
            raise AssertionError("held tunnel from %s did not open: %r" % (SRC_B, e))
        reload(d, SRC_B + "/32")
        e = next_event(held, 5)
        if e.get("stage") != "closed" or e.get("how") not in ("eof", "reset"):
            raise AssertionError("%s's open tunnel after a reload denying it: %r" % (SRC_B, e))
    finally:
        if held.poll() is None:
            held.kill()
        held.wait()
    reload(d, other)  # SRC_B back in for the next test
    return "tunnel from %s closed %.0f ms after deny add; %s's kept, then closed by a reload" % (
        SRC_A, closed_after * 1000, SRC_B)


def t_syn_flood(env, net, d):
    """(c) syn_rate = 20, syn_burst = 5: FLOOD_RATE connect()s/s from SRC_A complete about
    syn_burst + syn_rate x time handshakes, and SRC_B still connects at once."""
    eport = env.servers["echo"].port
    if deny_list(d).get(SRC_A + "/32"):
        raise AssertionError("%s is still denied (guard/deny_ctl_sighup_del did not finish)" % SRC_A)
    time.sleep(SYN_BURST / SYN_RATE + 0.1)  # SRC_A's bucket full again
    s0 = stats(d)
    p = net.start("flood", SRC_A, ROOT_IP, d.port, FLOOD_RATE, FLOOD_WINDOW)
    try:
        e = next_event(p, 10)
        if e.get("stage") != "started":
            raise AssertionError("flood client: %r" % e)
        time.sleep(0.4)  # well into the flood: SRC_A's bucket is empty
        b = expect_ok(net.tunnel(SRC_B, d.port, eport), SRC_B + " (during the flood)")
        f = next_event(p, FLOOD_WINDOW + 10)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    s1 = stats(d)
    total = len(f["times"])
    # Every SYN that passes completes a handshake (the daemon accepts at once); SYNs come
    # faster than tokens, so each token is spent as soon as it is there.
    want = SYN_BURST + SYN_RATE * FLOOD_WINDOW
    lo, hi = int(SYN_BURST + SYN_RATE * (FLOOD_WINDOW - 0.2) * 0.8), int(want) + 2
    limited = s1["guard_rate_limited"] - s0["guard_rate_limited"]
    fig = ("%d connect()s in %.1f s: %d handshakes (syn_burst + syn_rate x %.1f s = %.0f; bounds "
           "%d..%d), guard_rate_limited +%d; %s connected in %.1f ms during it" % (
               f["n"], FLOOD_WINDOW, total, FLOOD_WINDOW, want, lo, hi, limited, SRC_B,
               b["t_connect"] * 1000))
    if not lo <= total <= hi:
        raise AssertionError("handshakes out of bounds: " + fig)
    if limited < f["n"] - total:
        raise AssertionError("guard_rate_limited grew less than the SYNs refused: " + fig)
    return fig


def bpftool_stats(pin_dir):
    path = os.path.join(pin_dir, "guard_stats")
    r = sh("bpftool", "-j", "map", "dump", "pinned", path, check=False)
    if r.returncode != 0:
        raise AssertionError("bpftool map dump pinned %s: %s" % (
            path, (r.stderr or r.stdout).decode(errors="replace").strip()))
    entries = json.loads(r.stdout)
    if len(entries) != 1:
        raise AssertionError("guard_stats should have one entry: %r" % entries)
    e = entries[0].get("formatted", entries[0])
    sums, ncpu = {}, 0
    for v in e.get("values", []):
        val = v.get("value")
        if not isinstance(val, dict):
            raise AssertionError("guard_stats values are not BTF-typed (no field names): %r" % v)
        ncpu += 1
        for k, n in val.items():
            sums[k] = sums.get(k, 0) + n
    want = {"passed", "denied", "rate_limited", "not_judged", "malformed"}
    if set(sums) != want or ncpu == 0:
        raise AssertionError("guard_stats fields %r over %d CPUs, want %r" % (
            sorted(sums), ncpu, sorted(want)))
    return sums, ncpu


def t_bpftool(env, net, d, mport, rx0, after_all):
    """(d) bpftool dumps guard_stats with its field names; its per-CPU sums are what
    tunnelctl stats and /metrics say, and every packet the veth received was counted once."""
    import metrics_cases
    if not peers.which("bpftool"):
        raise Skip("bpftool not installed")
    a, ncpu = bpftool_stats(d.pin_dir)
    s = stats(d)
    m = metrics_cases.parse(metrics_cases.scrape(mport))
    rx1 = int(open("/sys/class/net/%s/statistics/rx_packets" % net.root_if).read())
    b, _ = bpftool_stats(d.pin_dir)
    if any(a[k] != b[k] for k in ("passed", "denied", "rate_limited")):
        raise AssertionError("guard counters moved while idle: %r then %r" % (a, b))
    for k in ("passed", "denied", "rate_limited"):
        if s["guard_" + k] != a[k]:
            raise AssertionError("tunnelctl stats guard_%s = %d, bpftool sums %d" % (
                k, s["guard_" + k], a[k]))
        got = m.get(("tunnelgate_guard_packets_total", (("verdict", k),)))
        if got != a[k]:
            raise AssertionError("/metrics tunnelgate_guard_packets_total{verdict=\"%s\"} = %r, bpftool "
                                 "sums %d" % (k, got, a[k]))
    if after_all and min(a["passed"], a["denied"], a["rate_limited"]) == 0:  # not under -k
        raise AssertionError("a verdict was never counted: %r" % a)
    # The program sees every frame the veth receives (native XDP), each counted once.
    seen = sum(a.values())
    if abs(seen - (rx1 - rx0)) > 3:  # a stray frame between the rx0 read and the attach
        raise AssertionError("guard_stats count %d packets, the veth received %d since the attach: %r" % (
            seen, rx1 - rx0, a))
    return "%d CPUs: passed %d, denied %d, rate_limited %d, not_judged %d, malformed %d; veth rx %d" % (
        ncpu, a["passed"], a["denied"], a["rate_limited"], a["not_judged"], a["malformed"], rx1 - rx0)


NAMES = ["deny_config_blocks_one_source", "deny_ctl_sighup_del", "syn_flood_held_to_rate",
         "bpftool_stats_add_up"]


def run_guard(runner, env, skip_reason=None):
    names = ["guard/%s" % n for n in NAMES]
    if not any(runner.selected(n) for n in names):
        return
    if not skip_reason and not peers.which("ip"):
        skip_reason = "ip (iproute2) not installed"
    if skip_reason:
        for n in names:
            runner.skip(n, skip_reason)
        return
    try:
        net = Net(env.tmp)
    except Exception as e:
        for n in names:
            runner.skip(n, "cannot make a network namespace and veth pair: %s" % e)
        return
    d = None
    os.chmod(env.tmp, 0o755)  # the daemon reads its config again on SIGHUP as its user (nobody)
    try:
        rx0 = int(open("/sys/class/net/%s/statistics/rx_packets" % net.root_if).read())
        mport = peers.free_port()
        try:
            d = peers.Daemon(env.tmp, "tg-guard", "splice", [("direct", ["direct = yes"])], host=ROOT_IP,
                             extra={"xdp_interfaces": net.root_if, "deny": SRC_A + "/32",
                                    "syn_rate": str(SYN_RATE), "syn_burst": str(SYN_BURST),
                                    "metrics_listen": "127.0.0.1:%d" % mport})
        except Exception as e:
            lines = str(e).splitlines()
            for n in names:
                runner.fail(n, "daemon did not start: %s" % lines[0], lines[1:] if n == names[0] else ())
            return
        runner.run(names[0], lambda: t_deny_config(env, net, d), d)
        runner.run(names[1], lambda: t_deny_ctl(env, net, d), d)
        runner.run(names[2], lambda: t_syn_flood(env, net, d), d)
        after_all = all(runner.selected(n) for n in names)
        runner.run(names[3], lambda: t_bpftool(env, net, d, mport, rx0, after_all), d)
    finally:
        if d is not None:
            d.stop()
        net.close()
