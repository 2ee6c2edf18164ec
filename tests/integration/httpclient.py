"""A small HTTP/1.x client over a raw socket, for talking CONNECT to the
gateway and checking what comes back byte for byte."""

import base64
import socket
import time

from peers import IO_TIMEOUT


def connect_head(host, port, extra=(), version="HTTP/1.1"):
    """A CONNECT request head for host:port (an IP literal)."""
    auth = "%s:%d" % (host, port)
    lines = ["CONNECT %s %s" % (auth, version), "Host: %s" % auth] + list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def basic_auth(user, password):
    return "Proxy-Authorization: Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()


class Response:
    def __init__(self, version, status, reason, headers, raw):
        self.version, self.status, self.reason = version, status, reason
        self.headers = headers  # lower-case name -> last value
        self.raw = raw

    def __repr__(self):
        return "%s %d %s" % (self.version, self.status, self.reason)


class Client:
    """One client connection to the gateway. Bytes read past a response head
    stay in self.buf and are returned first by the recv helpers."""

    def __init__(self, port, host="127.0.0.1", timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def local_port(self):
        return self.sock.getsockname()[1]

    def _fill(self, deadline):
        """Read more into self.buf; returns False on EOF. Raises AssertionError
        on timeout, ConnectionResetError on RST."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError("timed out")
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_head(self, timeout=5.0):
        """Read one response head. Raises AssertionError with what arrived."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            try:
                if not self._fill(deadline):
                    raise AssertionError("EOF before a complete response head (got %r)" % bytes(self.buf[:200]))
            except AssertionError as e:
                if "timed out" in str(e):
                    raise AssertionError("no complete response head within %.1f s (got %r)" % (
                        timeout, bytes(self.buf[:200])))
                raise
            except ConnectionResetError:
                raise AssertionError("connection reset before a complete response head (got %r)" %
                                     bytes(self.buf[:200]))
        i = self.buf.find(b"\r\n\r\n")
        raw = bytes(self.buf[:i])
        del self.buf[:i + 4]
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise AssertionError("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers, raw)

    def _need(self, n, deadline, what):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise AssertionError("EOF %s" % what)

    def _line(self, deadline, what):
        for _ in range(100000):
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > 65536:
                raise AssertionError("no CRLF in 64 KiB %s" % what)
            if not self._fill(deadline):
                raise AssertionError("EOF %s" % what)
        raise AssertionError("line loop bound %s" % what)

    def read_body(self, resp, timeout=10.0, head=False):
        """(body, framing): framing 'length', 'chunked', 'close' or 'none'."""
        deadline = time.monotonic() + timeout
        if head or resp.status in (204, 304) or 100 <= resp.status < 200:
            return b"", "none"
        te = resp.headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            body = bytearray()
            for _ in range(1 << 22):
                line = self._line(deadline, "in a chunk size line")
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise AssertionError("bad chunk size line %r" % line[:80])
                if size == 0:
                    for _ in range(1000):
                        if not self._line(deadline, "in the trailer"):
                            return bytes(body), "chunked"
                    raise AssertionError("trailer too long")
                self._need(size + 2, deadline, "inside a chunk")
                if self.buf[size:size + 2] != b"\r\n":
                    raise AssertionError("chunk of %d not followed by CRLF" % size)
                body += self.buf[:size]
                del self.buf[:size + 2]
            raise AssertionError("chunk loop bound")
        if "content-length" in resp.headers:
            n = int(resp.headers["content-length"])
            self._need(n, deadline, "after %d of %d body bytes" % (len(self.buf), n))
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return body, "length"
        for _ in range(1 << 20):
            try:
                if not self._fill(deadline):
                    break
            except ConnectionResetError:
                break
        body = bytes(self.buf)
        self.buf = bytearray()
        return body, "close"

    def recv_exact(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            try:
                if not self._fill(deadline):
                    raise AssertionError("EOF after %d of %d bytes" % (len(self.buf), n))
            except AssertionError as e:
                if "timed out" in str(e):
                    raise AssertionError("timed out after %d of %d bytes (%.1f s)" % (
                        len(self.buf), n, timeout))
                raise
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def wait_eof(self, timeout=3.0):
        """Wait for the peer to close. Returns ('eof'|'reset'|'timeout', extra bytes)."""
        deadline = time.monotonic() + timeout
        extra = bytes(self.buf)
        self.buf = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout", extra
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                return "timeout", extra
            except ConnectionResetError:
                return "reset", extra
            if not chunk:
                return "eof", extra
            extra += chunk

    def tunnel(self, host, port, extra=(), timeout=5.0):
        """Send CONNECT and expect a 2xx; returns the Response."""
        self.send(connect_head(host, port, extra))
        r = self.read_head(timeout)
        if not 200 <= r.status < 300:
            raise AssertionError("CONNECT %s:%d answered %r" % (host, port, r))
        return r
