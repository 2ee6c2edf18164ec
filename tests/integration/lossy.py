"""A lossy path: the origin sits in a network namespace behind a router
namespace that drops a share of the segments each way. The origin writes in
small pieces with SACK off, so when an ACK is lost it retransmits several
small segments merged into one, and that retransmission overlaps bytes the
gateway already has (seq < rcv_nxt). The kernel relay must pass each byte
once (the skb reader hands an overlapping retransmit over whole), and splice
must too.

The namespace, its veth and its firewall rule exist only while the test runs."""

import os
import random
import re
import subprocess
import sys
import time

import flow
from cases import MIB, Skip
from httpclient import Client

_ID = os.getpid() % 250
NS, ROUTER = "tg-lossy-%d" % os.getpid(), "tg-lossy-r%d" % os.getpid()
HOST_IF, R_IF0, R_IF1, NS_IF = ("tgl%s%d" % (x, _ID) for x in "hrsn")
HOST_IP, R_IP0 = "10.213.%d.1" % _ID, "10.213.%d.2" % _ID
R_IP1, NS_IP = "10.214.%d.1" % _ID, "10.214.%d.2" % _ID
PORT = 8443
SEED = 20261127
DROP = "0.05"  # share of the segments dropped each way
SIZE = 2 * MIB
CHUNK = 700  # small writes: small skbs that a retransmission may merge

# The origin, run inside the namespace: for each connection, read the 8-byte size,
# send that many pattern bytes, then close. One connection at a time is enough.
ORIGIN = r"""
import random, socket, struct, sys
seed, period, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
base = random.Random(seed).randbytes(period)
buf = memoryview(base + base)
CHUNK = int(sys.argv[5])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[4], port))
ls.listen(8)
print("ready", flush=True)
while True:
    c, _ = ls.accept()
    c.settimeout(60)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        hdr = b""
        while len(hdr) < 8:
            d = c.recv(8 - len(hdr))
            if not d:
                break
            hdr += d
        if len(hdr) < 8:
            continue
        total, sent = struct.unpack("!Q", hdr)[0], 0
        while sent < total:
            s = sent % period
            sent += c.send(buf[s:s + min(CHUNK, total - sent)])
    except OSError:
        pass
    finally:
        c.close()
"""


class SeededPattern(flow.Pattern):
    """The origin's stream: byte o is base[o % period], base from a fixed seed."""

    def __init__(self):
        self.period = MIB + 7
        base = random.Random(SEED).randbytes(self.period)
        self.buf = base + base


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(cmd), (r.stderr or r.stdout).strip()))
    return r.stdout


class Lossy:
    """The namespace with its origin; stop() removes every trace."""

    def __init__(self):
        for tool in ("ip", "iptables"):
            if not flow.peers.which(tool):
                raise Skip("%s not installed (make test-deps installs it)" % tool)
        self.proc = None
        try:
            # host (HOST_IF) <-> (R_IF0) router (R_IF1) <-> (NS_IF) origin
            sh("ip", "netns", "add", NS)
            sh("ip", "netns", "add", ROUTER)
            sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", R_IF0)
            sh("ip", "link", "set", R_IF0, "netns", ROUTER)
            sh("ip", "link", "add", R_IF1, "netns", ROUTER, "type", "veth", "peer", "name", NS_IF,
               "netns", NS)
            sh("ip", "addr", "add", HOST_IP + "/30", "dev", HOST_IF)
            sh("ip", "link", "set", HOST_IF, "up")
            sh("ip", "route", "add", NS_IP + "/32", "via", R_IP0)
            for ifc, ip in ((R_IF0, R_IP0), (R_IF1, R_IP1)):
                sh("ip", "addr", "add", ip + "/30", "dev", ifc, ns=ROUTER)
                sh("ip", "link", "set", ifc, "up", ns=ROUTER)
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ROUTER)
            sh("ip", "addr", "add", NS_IP + "/30", "dev", NS_IF, ns=NS)
            sh("ip", "link", "set", NS_IF, "up", ns=NS)
            sh("ip", "link", "set", "lo", "up", ns=NS)
            sh("ip", "route", "add", "default", "via", R_IP1, ns=NS)
            sh("sysctl", "-qw", "net.ipv4.tcp_sack=0", ns=NS)
            # Dropped in transit, so the origin's TCP counts them as sent and retransmits.
            for port in ("--sport", "--dport"):
                sh("iptables", "-A", "FORWARD", "-p", "tcp", port, str(PORT), "--tcp-flags",
                   "SYN", "NONE", "-m", "statistic", "--mode", "random", "--probability", DROP,
                   "-j", "DROP", ns=ROUTER)
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", NS, sys.executable, "-c", ORIGIN, str(SEED),
                 str(MIB + 7), str(PORT), NS_IP, str(CHUNK)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = self.proc.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError("the origin in %s did not start: %s" % (
                    NS, self.proc.stderr.read(2000).decode("utf-8", "replace")))
        except Exception:
            self.stop()
            raise

    def retransmits(self):
        out = sh("cat", "/proc/net/snmp", ns=NS)
        rows = [ln.split() for ln in out.splitlines() if ln.startswith("Tcp:")]
        return int(rows[1][rows[0].index("RetransSegs")])

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        subprocess.run(["ip", "route", "del", NS_IP + "/32"], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True, timeout=30)
        for ns in (NS, ROUTER):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def trimmed(d, cport):
    """Old bytes the kernel relay removed from the tunnel of client port cport."""
    m = re.findall(r"retransmitted-twice (\d+)", flow.tunnel_log(d, cport))
    return int(m[-1]) if m else 0


def t_lossy(d, runs=2):
    """Downloads over the lossy path arrive whole, in order, once."""
    lossy = Lossy()
    try:
        r0 = lossy.retransmits()
        t0 = time.monotonic()
        info = []
        for i in range(runs):
            with Client(d.port, timeout=20) as c:
                c.tunnel(NS_IP, PORT, timeout=10)
                c.send(SIZE.to_bytes(8, "big"))
                chk = flow.Check(SeededPattern(), 0)
                end = flow.read_stream(c.sock, chk, SIZE, time.monotonic() + 60, first=bytes(c.buf))
                cport = c.local_port()
            if chk.bad:
                raise AssertionError("run %d: %s%s" % (i, chk.bad, flow.tunnel_log(d, cport)))
            if end != "eof":
                raise AssertionError("run %d: %s%s" % (i, end, flow.tunnel_log(d, cport)))
            time.sleep(0.3)  # the daemon logs its last counters when the tunnel closes
            info.append(trimmed(d, cport))
        rx = lossy.retransmits() - r0
    finally:
        lossy.stop()
    if rx == 0:
        raise AssertionError("the origin retransmitted nothing: the path was not lossy")
    return ("%d x %d MiB intact in %.1f s; origin retransmitted %d segments; overlapping bytes "
            "removed by the verdict program per run: %s" % (
                runs, SIZE // MIB, time.monotonic() - t0, rx, info if d.relay == "sockmap" else "n/a"))
