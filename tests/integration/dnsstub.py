"""A tiny DNS server on UDP loopback, so that no look-up of the tests leaves the
machine: the daemon under test is given `resolver = 127.0.0.1:PORT`.

  names in `answers`   A: the given IPv4 address; AAAA: no data (NOERROR, empty)
  names in `silent`    never answered (a DNS server that drops the query)
  any other name       NXDOMAIN

Standalone: python3 dnsstub.py [PORT] answers fast.test and is silent on slow.test.
"""

import socket
import struct
import sys
import threading
import time

import peers

QR, AA, RD, RA = 0x8000, 0x0400, 0x0100, 0x0080
T_A, C_IN = 1, 1
NXDOMAIN = 3


def parse_question(q):
    """(id, flags, name, qtype, question bytes) of a query, or None if it is not one."""
    if len(q) < 12:
        return None
    qid, flags, qdcount = struct.unpack(">HHH", q[:6])
    if flags & QR or qdcount != 1:
        return None
    labels, i = [], 12
    while i < len(q):
        n = q[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(q):
            return None  # no compression in a question we sent ourselves
        labels.append(q[i:i + n])
        i += n
    if i + 4 > len(q):
        return None
    qtype, _ = struct.unpack(">HH", q[i:i + 4])
    name = b".".join(labels).decode("ascii", "replace").lower()
    return qid, flags, name, qtype, q[12:i + 4]


class DnsStub:
    def __init__(self, answers, silent=(), host="127.0.0.1", port=0):
        self.answers = {k.lower(): v for k, v in answers.items()}
        self.silent = {s.lower() for s in silent}
        self.seen = []  # (monotonic time, name, qtype) of every query
        self._lock = threading.Lock()
        self._stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._t = threading.Thread(target=self._loop, name="dnsstub", daemon=True)
        self._t.start()
        with peers._lock:
            peers._servers.append(self)

    def count(self, name, qtype=None):
        """How many queries for name (of qtype, if given) arrived so far."""
        with self._lock:
            return sum(1 for _, n, t in self.seen if n == name and qtype in (None, t))

    def wait_count(self, name, n, timeout, qtype=None):
        deadline = time.monotonic() + timeout
        while self.count(name, qtype) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count(name, qtype)

    def reply(self, q):
        p = parse_question(q)
        if p is None:
            return None
        qid, flags, name, qtype, question = p
        with self._lock:
            self.seen.append((time.monotonic(), name, qtype))
        if name in self.silent:
            return None
        answer, rcode = b"", NXDOMAIN
        if name in self.answers:
            rcode = 0
            if qtype == T_A:  # a pointer to the question's name, then the record
                answer = struct.pack(">HHHIH", 0xC00C, T_A, C_IN, 60, 4) + \
                    socket.inet_aton(self.answers[name])
        head = struct.pack(">HHHHHH", qid, QR | AA | (flags & RD) | RA | rcode, 1,
                           1 if answer else 0, 0, 0)
        return head + question + answer

    def _loop(self):
        while not self._stop:
            try:
                q, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            r = self.reply(q)
            if r is not None:
                try:
                    self.sock.sendto(r, addr)
                except OSError:
                    pass

    def stop(self):
        self._stop = True
        self.sock.close()
        with peers._lock:
            if self in peers._servers:
                peers._servers.remove(self)


if __name__ == "__main__":
    stub = DnsStub({"fast.test": "127.0.0.1"}, silent=("slow.test",),
                   port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("dnsstub on 127.0.0.1:%d" % stub.port, flush=True)
    try:
        stub._t.join()
    except KeyboardInterrupt:
        stub.stop()
