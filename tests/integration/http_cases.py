"""Plain HTTP forwarding tests (README "Plain HTTP" and "The article's iRule as
configuration"): one tunnelgated instance (plus one with x_forwarded_for = yes),
run once (the relay mode does not matter for plain HTTP), named http/...

Peers, all on 127.0.0.0/8 with IP literals only:
  o1, o2, o3   Python origins (ThreadingHTTPServer, HTTP/1.1) on 127.0.0.1/.2/.3
  rec, fb      the same server on 127.0.0.1 acting as an upstream proxy (it answers
               absolute-form requests itself and echoes what it got), so a made-up
               host name (some.host.com) is never looked up by anybody
  tinyproxy    the suite's shared tinyproxy (env.tiny) and tinyproxy-auth (env.tiny_auth)
Every origin answers GET/HEAD/POST; /echo (and any other path) returns JSON with
its tag, the client address, the request line, the header fields as received and
the sha256 and length of the request body.

Daemon config (rules in this order, first match wins):
  admin-guard   path_prefix = /admin, client_not_in = 127.0.0.8/29 -> reject
  case-guard    path_prefix = /CaseGuard/, path_case = exact -> reject
  host-guard    host = 127.0.0.7 -> reject (nothing listens there)
  by-name       host = some.host.com   -> pool rec   (proxy pool)
  to-tiny       host = 127.0.0.2       -> pool tiny  (tinyproxy)
  to-tinyauth   host = 127.0.0.4       -> pool tinyauth (tinyproxy with BasicAuth)
  to-o1/to-o3   host = 127.0.0.1/.3    -> pool direct
  default       -> pool fb (proxy pool): anything unrouted ends at a local recorder,
                   never at a DNS look-up
Clients bound to 127.0.0.9 are "inside" 127.0.0.8/29, those bound to 127.0.0.20 and
127.0.0.1 are outside.
"""

import hashlib
import json
import os
import re
import select
import socket
import socketserver
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http.client

import peers
from cases import log_contains
from httpclient import Client
from peers import IO_TIMEOUT

# Python's header parser refuses more than 100 fields (431); the 100-field request
# of bad_101_fields_431 reaches the origin with the gateway's Via and Connection added.
http.client._MAXHEADERS = max(getattr(http.client, "_MAXHEADERS", 100), 200)

MIB = 1 << 20
BIG = 16 * MIB
POST_SIZE = 3 * MIB
INSIDE, OUTSIDE = "127.0.0.9", "127.0.0.20"
HEADER_TIMEOUT_MS = 1000
MAX_HEADER = 16384
_blob = []


def blob():
    if not _blob:
        _blob.append(os.urandom(BIG))
    return _blob[0]


def sha(b):
    return hashlib.sha256(b).hexdigest()


def curl_env():
    """curl without any proxy settings from the environment (NO_PROXY would bypass -x)."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


# ---------------------------------------------------------------- origin server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        # HTTPServer.server_bind() calls getfqdn(): a reverse DNS look-up. Not here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "origin"
    timeout = IO_TIMEOUT  # every socket op of the handler

    def log_message(self, fmt, *args):
        pass

    def _read_body(self, keep=False):
        """(sha256, length, body or None) of the request body; chunked decoded."""
        h = hashlib.sha256()
        n = 0
        keep_buf = bytearray() if keep else None
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise ValueError("origin got Transfer-Encoding %r" % te)
            for _ in range(1 << 20):  # bounded: at most 1 Mi chunks
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise ValueError("bad chunk size line %r" % line)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    for _ in range(100):  # trailers, then the empty line
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                data = self.rfile.read(size)
                if len(data) != size or self.rfile.read(2) != b"\r\n":
                    raise ValueError("short chunk")
                h.update(data)
                n += size
                if keep:
                    keep_buf += data
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    raise ValueError("EOF in body")
                h.update(data)
                n += len(data)
                left -= len(data)
                if keep:
                    keep_buf += data
        return h.hexdigest(), n, (bytes(keep_buf) if keep else None)

    def _info(self, body_sha, body_len):
        return {
            "server": self.server.tag,
            "client": self.client_address[0],
            "requestline": self.requestline,
            "headers": list(self.headers.items()),
            "body_sha": body_sha,
            "body_len": body_len,
        }

    def _send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        self.server.seen.append(self.requestline)
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        n = int(q.get("n", ["0"])[0])
        path = u.path
        if path == "/mirror":
            s, ln, body = self._read_body(keep=True)
            self._send(200, body, "application/octet-stream", [("X-Body-Sha", s)])
            return
        s, ln, _ = self._read_body()
        if path == "/big":
            data = memoryview(blob())[:n]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command != "HEAD":
                for off in range(0, n, 256 << 10):
                    self.wfile.write(data[off:off + (256 << 10)])
            return
        if path == "/chunked":
            data = memoryview(blob())[:n]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Body-Sha", sha(data))
            self.end_headers()
            off, k = 0, 0
            while off < n:  # chunk sizes 1 B .. 96 KiB, varying
                size = min(n - off, (k * 7919) % (96 << 10) + 1)
                self.wfile.write(b"%x\r\n" % size + data[off:off + size].tobytes() + b"\r\n")
                off += size
                k += 1
            self.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
            return
        if path == "/close":  # HTTP/1.0, close-delimited
            data = memoryview(blob())[:n]
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"X-Body-Sha: " + sha(data).encode() + b"\r\n\r\n")
            for off in range(0, n, 64 << 10):
                self.wfile.write(data[off:off + (64 << 10)])
            self.close_connection = True
            return
        body = json.dumps(self._info(s, ln)).encode()
        if path == "/hop":  # hop-by-hop fields in the response too
            self._send(200, body, extra=[("Connection", "X-Resp-Secret"), ("X-Resp-Secret", "1"),
                                         ("Keep-Alive", "timeout=5"), ("X-Resp-End", "yes")])
            return
        self._send(200, body)

    do_GET = do_POST = do_HEAD = do_PUT = _handle


class Origin:
    def __init__(self, tag, addr="127.0.0.1"):
        self.tag, self.addr = tag, addr
        self.srv = _Server((addr, 0), _Handler)
        self.srv.tag = tag
        self.srv.seen = []
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="origin-" + tag, daemon=True)
        self.t.start()

    @property
    def seen(self):
        return self.srv.seen

    def hostport(self):
        return "%s:%d" % (self.addr, self.port)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---------------------------------------------------------------- client


class HC(Client):
    """httpclient.Client from an optional source address, with a body reader that
    stays linear for big chunked bodies."""

    def __init__(self, port, src=None, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(src, 0) if src else None)
        self.sock.settimeout(timeout)
        self.buf = bytearray()

    def request(self, raw, timeout=10.0, head=False):
        self.send(raw)
        r = self.read_head(timeout)
        body, framing = self.read_body(r, timeout, head)
        return r, body, framing


def req(method, target, host=None, fields=(), body=b"", close=False):
    lines = ["%s %s HTTP/1.1" % (method, target)]
    if host is not None:
        lines.append("Host: %s" % host)
    lines += list(fields)
    if body:
        lines.append("Content-Length: %d" % len(body))
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def one(d, raw, src=None, timeout=10.0, head=False):
    """One request on a fresh connection: (Response, body, framing)."""
    with HC(d.port, src) as c:
        return c.request(raw, timeout, head)


def info_of(r, body, what):
    if r.status != 200:
        raise AssertionError("%s: answered %r: %r" % (what, r, body[:200]))
    try:
        return json.loads(body)
    except ValueError:
        raise AssertionError("%s: body is not the origin's JSON: %r" % (what, body[:200]))


def fields_of(info, name):
    return [v for k, v in info["headers"] if k.lower() == name.lower()]


def has_via(value):
    """The gateway's Via element: its default pseudonym is hostname:port."""
    return bool(value) and ("1.1 %s:" % socket.gethostname()[:63]) in value


def curl(args, timeout=40):
    r = subprocess.run(["curl", "-sS", "--max-time", "30"] + args, capture_output=True,
                       timeout=timeout, env=curl_env())
    if r.returncode != 0:
        raise AssertionError("curl %s exited %d: %s" % (" ".join(args[-2:]), r.returncode,
                                                         r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


def read_headers_file(path):
    """Last response head of a curl -D file: (status, {lower name: [values]})."""
    with open(path, "rb") as f:
        text = f.read().decode("latin-1")
    heads = [h for h in text.split("\r\n\r\n") if h.strip()]
    last = [h for h in heads if not re.match(r"HTTP/\S+ 1\d\d", h.strip())][-1].strip().split("\r\n")
    hdrs = {}
    for line in last[1:]:
        k, _, v = line.partition(":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return int(last[0].split()[1]), hdrs, [h.strip().split("\r\n")[0] for h in heads]


# ---------------------------------------------------------------- environment


class HttpEnv:
    def __init__(self, env):
        self.env = env
        self.tmp = env.tmp
        self.o1 = Origin("o1", "127.0.0.1")
        self.o2 = Origin("o2", "127.0.0.2")
        self.o3 = Origin("o3", "127.0.0.3")
        self.rec = Origin("rec")
        self.fb = Origin("fb")
        blob()

    def config(self):
        env = self.env
        tp = env.tiny.port if env.tiny else env.closed_port
        ta = env.tiny_auth.port if env.tiny_auth else env.closed_port
        pools = [
            ("direct", ["direct = yes"]),
            ("tiny", ["server = 127.0.0.1:%d" % tp]),
            ("tinyauth", ["server = 127.0.0.1:%d" % ta]),
            ("rec", ["server = 127.0.0.1:%d" % self.rec.port]),
            ("fb", ["server = 127.0.0.1:%d" % self.fb.port]),
        ]
        rules = [
            ("admin-guard", ["path_prefix = /admin", "client_not_in = 127.0.0.8/29", "action = reject"]),
            ("case-guard", ["path_prefix = /CaseGuard/", "path_case = exact", "action = reject"]),
            ("host-guard", ["host = 127.0.0.7", "action = reject"]),
            ("by-name", "some.host.com", "rec"),
            ("to-tiny", "127.0.0.2", "tiny"),
            ("to-tinyauth", "127.0.0.4", "tinyauth"),
            ("to-o1", "127.0.0.1", "direct"),
            ("to-o3", "127.0.0.3", "direct"),
        ]
        return pools, rules

    def stop(self):
        for o in (self.o1, self.o2, self.o3, self.rec, self.fb):
            try:
                o.stop()
            except Exception:
                pass


def serving(h, d, what="after it"):
    """The daemon still answers a new client."""
    tok = os.urandom(4).hex()
    try:
        r, body, _ = one(d, req("GET", "/echo?alive=%s" % tok, h.o1.hostport()), timeout=5)
        info = info_of(r, body, "next client")
    except (AssertionError, OSError) as e:
        raise AssertionError("daemon not serving a new client %s: %s" % (what, e))
    if tok not in info["requestline"]:
        raise AssertionError("next client got someone else's answer: %r" % info["requestline"])


# ---------------------------------------------------------------- 1. GET, HEAD, Via, XFF


def t_get_big_curl(h, d):
    out = os.path.join(h.tmp, "http-big")
    hdr = os.path.join(h.tmp, "http-big.h")
    url = "http://%s/big?n=%d" % (h.o1.hostport(), BIG)
    t0 = time.monotonic()
    try:
        curl(["-x", "http://127.0.0.1:%d" % d.port, "-D", hdr, "-o", out, url])
        dt = time.monotonic() - t0
        size = os.path.getsize(out)
        if size != BIG or peers.file_sha256(out) != sha(blob()):
            raise AssertionError("body differs: %d bytes, want %d (sha256 mismatch)" % (size, BIG))
        status, hdrs, _ = read_headers_file(hdr)
    finally:
        for p in (out, hdr):
            if os.path.exists(p):
                os.unlink(p)
    if status != 200 or hdrs.get("content-length") != [str(BIG)]:
        raise AssertionError("status %d, Content-Length %r, want 200 and %d" % (
            status, hdrs.get("content-length"), BIG))
    if not any(has_via(v) for v in hdrs.get("via", [])):
        raise AssertionError("response has no Via: 1.1 <hostname:port> (Via %r)" % hdrs.get("via"))
    if not h.o1.seen or h.o1.seen[-1] != "GET /big?n=%d HTTP/1.1" % BIG:
        raise AssertionError("origin's last request line %r, want origin-form" % h.o1.seen[-1:])
    return "16 MiB in %.2f s (%.0f MiB/s), absolute-form in, origin-form out" % (dt, 16 / dt)


def t_get_big_origin_form(h, d):
    t0 = time.monotonic()
    r, body, framing = one(d, req("GET", "/big?n=%d" % BIG, h.o1.hostport(), close=True), timeout=20)
    dt = time.monotonic() - t0
    if r.status != 200 or framing != "length" or r.headers.get("content-length") != str(BIG):
        raise AssertionError("answered %r, %s-framed, Content-Length %r" % (
            r, framing, r.headers.get("content-length")))
    if sha(body) != sha(blob()):
        raise AssertionError("body differs: %d bytes, want %d" % (len(body), BIG))
    if not has_via(r.headers.get("via")):
        raise AssertionError("response has no Via: 1.1 <hostname:port>: %r" % r.raw[:300])
    return "16 MiB in %.2f s" % dt


def t_head(h, d):
    with HC(d.port) as c:
        r, body, _ = c.request(req("HEAD", "/big?n=%d" % BIG, h.o1.hostport()), head=True)
        if r.status != 200 or r.headers.get("content-length") != str(BIG):
            raise AssertionError("HEAD answered %r with Content-Length %r, want 200 and %d" % (
                r, r.headers.get("content-length"), BIG))
        # no body: the next bytes on the connection are the next response's status line
        c.send(req("GET", "/echo?afterhead", h.o1.hostport()))
        r2 = c.read_head(5.0)
        info = info_of(r2, c.read_body(r2)[0], "GET after HEAD")
        if "afterhead" not in info["requestline"]:
            raise AssertionError("wrong answer after HEAD: %r" % info["requestline"])
    if h.o1.seen[-2:-1] != ["HEAD /big?n=%d HTTP/1.1" % BIG]:
        raise AssertionError("origin did not get the HEAD: %r" % h.o1.seen[-2:])


def t_via(h, d):
    """Via: 1.1 <via_name> added both ways, direct pool and proxy pool."""
    out = []
    for what, raw, org in (
            ("direct", req("GET", "/echo?via", h.o1.hostport()), h.o1),
            ("proxy pool", req("GET", "http://some.host.com/echo?via", "some.host.com"), h.rec)):
        r, body, _ = one(d, raw)
        info = info_of(r, body, what)
        if info["server"] != org.tag:
            raise AssertionError("%s: answered by %s, want %s" % (what, info["server"], org.tag))
        via = fields_of(info, "Via")
        if not any(has_via(v) for v in via):
            raise AssertionError("%s: the request the origin got has no Via: 1.1 <hostname:port> (%r)" % (
                what, via))
        if not has_via(r.headers.get("via")):
            raise AssertionError("%s: the response has no Via: 1.1 <hostname:port>: %r" % (what, r.raw[:300]))
        out.append("%s up %r" % (what, via))
    return "; ".join(out)


def t_xff(h, d, dx):
    r, body, _ = one(d, req("GET", "/echo?xff=off", h.o1.hostport()), src=INSIDE)
    info = info_of(r, body, "x_forwarded_for = no")
    if fields_of(info, "X-Forwarded-For"):
        raise AssertionError("x_forwarded_for = no, yet the origin got X-Forwarded-For %r" % (
            fields_of(info, "X-Forwarded-For")))
    r, body, _ = one(dx, req("GET", "/echo?xff=on", h.o1.hostport()), src=INSIDE)
    info = info_of(r, body, "x_forwarded_for = yes")
    got = fields_of(info, "X-Forwarded-For")
    if got != [INSIDE]:
        raise AssertionError("x_forwarded_for = yes, client %s: origin got X-Forwarded-For %r" % (
            INSIDE, got))
    r, body, _ = one(dx, req("GET", "/echo?xff=add", h.o1.hostport(), ["X-Forwarded-For: 192.0.2.7"]),
                     src=OUTSIDE)
    info = info_of(r, body, "x_forwarded_for = yes, client's own field")
    got = ", ".join(fields_of(info, "X-Forwarded-For"))
    if got != "192.0.2.7, %s" % OUTSIDE:
        raise AssertionError("client sent X-Forwarded-For: 192.0.2.7 from %s; origin got %r" % (OUTSIDE, got))
    return "absent when off; %r when on" % got


# ---------------------------------------------------------------- 2. bodies


def _post_file(h):
    path = os.path.join(h.tmp, "http-post")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(blob()[:POST_SIZE])
    return path, sha(blob()[:POST_SIZE])


def _t_post(h, d, chunked):
    path, want = _post_file(h)
    proxy = ["-x", "http://127.0.0.1:%d" % d.port]
    te = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    t0 = time.monotonic()
    out = curl(proxy + te + ["--data-binary", "@" + path, "http://%s/echo?post" % h.o1.hostport()])
    dt1 = time.monotonic() - t0
    try:
        info = json.loads(out)
    except ValueError:
        raise AssertionError("not the origin's JSON: %r" % out[:200])
    if info["body_sha"] != want or info["body_len"] != POST_SIZE:
        raise AssertionError("origin got %d body bytes, sha %s..., want %d, %s..." % (
            info["body_len"], info["body_sha"][:12], POST_SIZE, want[:12]))
    te_got, cl_got = fields_of(info, "Transfer-Encoding"), fields_of(info, "Content-Length")
    if chunked and (te_got != ["chunked"] or cl_got):
        raise AssertionError("origin got Transfer-Encoding %r, Content-Length %r, want chunked only" % (
            te_got, cl_got))
    if not chunked and (cl_got != [str(POST_SIZE)] or te_got):
        raise AssertionError("origin got Content-Length %r, Transfer-Encoding %r, want %d only" % (
            cl_got, te_got, POST_SIZE))
    # and back: the origin mirrors the body
    mout = os.path.join(h.tmp, "http-mirror")
    mh = mout + ".h"
    t0 = time.monotonic()
    try:
        curl(proxy + te + ["--data-binary", "@" + path, "-D", mh, "-o", mout,
                           "http://%s/mirror" % h.o1.hostport()])
        dt2 = time.monotonic() - t0
        if os.path.getsize(mout) != POST_SIZE or peers.file_sha256(mout) != want:
            raise AssertionError("mirrored body differs (%d bytes)" % os.path.getsize(mout))
        status, hdrs, heads = read_headers_file(mh)
    finally:
        for p in (mout, mh):
            if os.path.exists(p):
                os.unlink(p)
    expect = [v for k, v in info["headers"] if k.lower() == "expect"]
    return "3 MiB up %.2f s, up+down %.2f s; Expect %r, response heads %r" % (dt1, dt2, expect, heads)


def t_post_cl(h, d):
    return _t_post(h, d, False)


def t_post_chunked(h, d):
    return _t_post(h, d, True)


def t_resp_chunked(h, d):
    n = POST_SIZE
    want = sha(blob()[:n])
    with HC(d.port) as c:
        r, body, framing = c.request(req("GET", "/chunked?n=%d" % n, h.o1.hostport()), timeout=15)
        if r.status != 200 or framing != "chunked":
            raise AssertionError("answered %r, %s-framed, want 200 chunked" % (r, framing))
        if sha(body) != want:
            raise AssertionError("chunked body differs: %d bytes, want %d" % (len(body), n))
        serving_on(c, h, "after a chunked response")
    out = os.path.join(h.tmp, "http-chunked")
    try:
        curl(["-x", "http://127.0.0.1:%d" % d.port, "-o", out, "http://%s/chunked?n=%d" % (h.o1.hostport(), n)])
        if peers.file_sha256(out) != want:
            raise AssertionError("curl: chunked body differs (%d bytes)" % os.path.getsize(out))
    finally:
        if os.path.exists(out):
            os.unlink(out)
    return "3 MiB in varying chunks, raw client and curl"


def serving_on(c, h, what):
    """The same client connection takes another request."""
    tok = os.urandom(4).hex()
    r, body, _ = c.request(req("GET", "/echo?again=%s" % tok, h.o1.hostport()), timeout=5)
    info = info_of(r, body, "next request on the connection %s" % what)
    if tok not in info["requestline"]:
        raise AssertionError("next request on the connection %s got %r" % (what, info["requestline"]))


def t_resp_close_delimited(h, d):
    n = MIB + 12345
    want = sha(blob()[:n])
    with HC(d.port) as c:
        r, body, framing = c.request(req("GET", "/close?n=%d" % n, h.o1.hostport()), timeout=15)
        if r.status != 200 or framing != "chunked":
            raise AssertionError("HTTP/1.1 client: answered %r, %s-framed; want 200 re-framed as chunked (%r)" % (
                r, framing, r.raw[:300]))
        if sha(body) != want:
            raise AssertionError("HTTP/1.1 client: body differs: %d bytes, want %d" % (len(body), n))
        serving_on(c, h, "after a re-framed close-delimited response")
    with HC(d.port) as c:
        c.send(("GET /close?n=%d HTTP/1.0\r\nHost: %s\r\n\r\n" % (n, h.o1.hostport())).encode())
        r = c.read_head(5.0)
        body, framing = c.read_body(r, 15.0)
        if r.status != 200 or framing not in ("close", "length") or sha(body) != want:
            raise AssertionError("HTTP/1.0 client: answered %r, %s-framed, %d bytes (want %d intact)" % (
                r, framing, len(body), n))
        if framing == "length":
            how, extra = c.wait_eof(3.0)
            if how == "timeout" or extra:
                raise AssertionError("HTTP/1.0 client: no close after the response (%s, %r)" % (how, extra[:80]))
    return "1.1 client: chunked; 1.0 client: %s" % framing


# ---------------------------------------------------------------- 3. keep-alive, pipelining


def t_keepalive_curl(h, d):
    u1 = "http://%s/echo?ka=1" % h.o1.hostport()
    u2 = "http://%s/echo?ka=2" % h.o1.hostport()
    out = curl(["-x", "http://127.0.0.1:%d" % d.port, "-o", "/dev/null", "-o", "/dev/null",
                "-w", "%{http_code} %{num_connects} %{local_port}\\n", u1, u2])
    rows = [l.split() for l in out.strip().splitlines()]
    if len(rows) != 2 or any(r[0] != "200" for r in rows):
        raise AssertionError("curl -w: %r" % out)
    conns = sum(int(r[1]) for r in rows)
    if conns != 1 or rows[0][2] != rows[1][2]:
        raise AssertionError("two URLs took %d client connections (local ports %s, %s), want 1" % (
            conns, rows[0][2], rows[1][2]))
    return "num_connects %s + %s, one local port %s" % (rows[0][1], rows[1][1], rows[0][2])


def t_pipelining(h, d):
    post = os.urandom(100 << 10)
    n3 = 200000
    raw = (req("GET", "/echo?pipe=1", h.o1.hostport()) +
           req("POST", "/echo?pipe=2", h.o1.hostport(), body=post) +
           req("GET", "http://%s/big?n=%d" % (h.o3.hostport(), n3), h.o3.hostport(), close=True))
    with HC(d.port) as c:
        c.send(raw)  # one write
        r1 = c.read_head(5.0)
        i1 = info_of(r1, c.read_body(r1)[0], "first pipelined")
        r2 = c.read_head(5.0)
        i2 = info_of(r2, c.read_body(r2)[0], "second pipelined")
        r3 = c.read_head(5.0)
        b3, _ = c.read_body(r3)
        if "pipe=1" not in i1["requestline"] or "pipe=2" not in i2["requestline"]:
            raise AssertionError("out of order: first %r, second %r" % (i1["requestline"], i2["requestline"]))
        if i2["body_sha"] != sha(post):
            raise AssertionError("second request's body differs at the origin")
        if r3.status != 200 or b3 != blob()[:n3]:
            raise AssertionError("third answered %r with %d bytes, want 200 and %d blob bytes" % (r3, len(b3), n3))
        how, extra = c.wait_eof(3.0)
        if how == "timeout" or extra:
            raise AssertionError("no close after 'Connection: close' on the third (%s, %r)" % (how, extra[:80]))
    return "3 requests in one write, answered in order, closed after the third"


# ---------------------------------------------------------------- 4. hop-by-hop


HOP_FIELDS = ["Connection: X-Secret, keep-alive", "X-Secret: 1", "Keep-Alive: 5",
              "Proxy-Connection: keep-alive", "X-End-To-End: yes"]


def t_hop_by_hop(h, d):
    out = []
    for what, raw, org in (
            ("direct", req("GET", "/hop", h.o1.hostport(), HOP_FIELDS), h.o1),
            ("proxy pool", req("GET", "http://some.host.com/hop", "some.host.com", HOP_FIELDS), h.rec)):
        r, body, _ = one(d, raw)
        info = info_of(r, body, what)
        if info["server"] != org.tag:
            raise AssertionError("%s: answered by %s" % (what, info["server"]))
        names = [k.lower() for k, _ in info["headers"]]
        leaked = [n for n in ("x-secret", "keep-alive", "proxy-connection") if n in names]
        conn = fields_of(info, "Connection")
        if leaked or any(v.strip().lower() != "close" for v in conn):
            raise AssertionError("%s: the origin got %s; Connection %r (want only close)" % (
                what, ", ".join(leaked) or "no hop-by-hop field", conn))
        if fields_of(info, "X-End-To-End") != ["yes"]:
            raise AssertionError("%s: the end-to-end X-End-To-End did not arrive" % what)
        rh = r.raw.decode("latin-1").lower()
        if "x-resp-secret" in rh or "keep-alive: timeout" in rh or "x-resp-end: yes" not in rh:
            raise AssertionError("%s: response hop-by-hop fields not removed (or X-Resp-End lost): %r" % (
                what, r.raw[:400]))
        out.append("%s: Connection %r" % (what, conn))
    return "; ".join(out)


# ---------------------------------------------------------------- 5. rules


ADMIN_PATHS = ["/admin", "/admin/x", "/%61dmin", "//admin", "/./admin", "/x/../admin",
               "/%61dmin/%2e%2e/admin"]


def t_admin_guard(h, d):
    hp = h.o1.hostport()
    bad = []
    for p in ADMIN_PATHS:
        r, body, _ = one(d, req("GET", p, hp), src=OUTSIDE)
        if r.status != 403:
            bad.append("%s -> %d" % (p, r.status))
    r, body, _ = one(d, req("GET", "http://%s/%%61dmin" % hp, hp), src=OUTSIDE)
    if r.status != 403:
        bad.append("absolute-form /%%61dmin -> %d" % r.status)
    if bad:
        raise AssertionError("outside client %s not rejected: %s" % (OUTSIDE, "; ".join(bad)))
    # the 403 leaves the connection usable; the origin never saw an outside /admin
    with HC(d.port, OUTSIDE) as c:
        r, body, _ = c.request(req("GET", "/admin", hp))
        if r.status != 403:
            raise AssertionError("outside /admin -> %r" % r)
        r, body, _ = c.request(req("GET", "/public?outside", hp))
        info = info_of(r, body, "outside client, /public after a 403")
    for p in ("/admin", "/x/../admin"):
        r, body, _ = one(d, req("GET", p + "?inside", hp), src=INSIDE)
        info_of(r, body, "inside client %s %s" % (INSIDE, p))
    leaked = [s for s in h.o1.seen if "admin" in s and "inside" not in s]
    if leaked:
        raise AssertionError("the origin got outside /admin requests: %r" % leaked[:3])
    return "%d outside paths 403, inside forwarded" % (len(ADMIN_PATHS) + 2)


# Spellings an origin serves as /admin: nginx decodes %2F and resolves the "..",
# Tomcat drops ";params", IIS reads '\' as '/' and ignores case; some stack decodes
# twice. Each of them got past the guard before paths were compared in canonical form.
ADMIN_SPELLINGS = ["/%2Fadmin", "/x/%2e%2e%2fadmin", "/ADMIN", "/Admin/x", "/;x/admin",
                   "/x/..;/admin", "/\\admin", "/%5cadmin", "/x%5C..%5Cadmin",
                   "/%252Fadmin", "/x/%252e%252e/admin", "/%2541dmin"]
# path_prefix stays a string prefix of the canonical path: these are inside it too.
PREFIX_TOO = ["/adminx", "/admin;jsessionid=1", "/CaseGuard/x", "/%43aseGuard/x", "/x/..;/CaseGuard/"]
# No canonical form (a '%' left after decoding, a NUL): 400, whoever asks.
BAD_PATHS = ["/%zz", "/admin%", "/admin%4", "/%u0061dmin", "/%00admin", "/%2500admin", "/100%25"]
# Not /admin however read; forwarded byte for byte.
PUBLIC_PATHS = ["/public", "/x/admin", "/ad%2Fmin", "/public/%2e%2e%2fpub;x/%5C?q=%zz", "/caseguard/x",
                "/CASEGUARD/x"]


def t_path_spellings(h, d):
    """Every spelling of /admin meets the admin guard (403 outside, forwarded unchanged
    inside); an ambiguous path is 400; other paths reach the origin as sent."""
    hp, tok = h.o1.hostport(), os.urandom(4).hex()
    bad = []
    for p in ADMIN_SPELLINGS + PREFIX_TOO:
        r, body, _ = one(d, req("GET", p, hp), src=OUTSIDE)
        if r.status != 403:
            bad.append("outside %s -> %d %r" % (p, r.status, body[:80]))
    for p in ADMIN_SPELLINGS:  # the guard's client_not_in: forwarded, not rewritten
        target = "%s?in-%s" % (p, tok)
        r, body, _ = one(d, req("GET", target, hp), src=INSIDE)
        if r.status != 200 or json.loads(body)["requestline"] != "GET %s HTTP/1.1" % target:
            bad.append("inside %s -> %d %r" % (p, r.status, body[:120]))
    for p in PUBLIC_PATHS:
        target = p + ("&" if "?" in p else "?") + "out-" + tok
        r, body, _ = one(d, req("GET", target, hp), src=OUTSIDE)
        if r.status != 200 or json.loads(body)["requestline"] != "GET %s HTTP/1.1" % target:
            bad.append("outside %s -> %d %r (want it forwarded as sent)" % (p, r.status, body[:120]))
    for p in BAD_PATHS:
        try:
            info = expect_refused(h, d, req("GET", "%s?bad-%s" % (p, tok), hp), 400, "bad-" + tok)
        except AssertionError as e:
            bad.append("%s: %s" % (p, e))
            continue
        if "request path cannot be checked" not in info:
            bad.append("%s: the 400 does not say what is wrong with the path: %s" % (p, info))
    if bad:
        raise AssertionError("; ".join(bad))
    return "%d spellings 403, %d forwarded unchanged, %d ambiguous 400" % (
        len(ADMIN_SPELLINGS) + len(PREFIX_TOO), len(PUBLIC_PATHS) + len(ADMIN_SPELLINGS), len(BAD_PATHS))


# inet_aton spellings of 127.0.0.7, its IPv4-mapped IPv6 form, a trailing dot.
HOST_SPELLINGS = ["127.0.0.7", "127.7", "127.0.7", "2130706439", "0x7f.0.0.7", "0X7F000007",
                  "0177.0.0.07", "[::ffff:127.0.0.7]", "[::FFFF:7f00:7]", "127.0.0.7."]


def t_host_spellings(h, d):
    """Every spelling of 127.0.0.7 meets host-guard, in the URL or the Host field;
    a trailing dot or upper case still finds by-name, which gets the request as sent."""
    bad = []
    for host in HOST_SPELLINGS:
        for what, raw in (("absolute-form", req("GET", "http://%s:8080/h" % host, "x")),
                          ("Host", req("GET", "/h", "%s:8080" % host))):
            r, body, _ = one(d, raw)
            if r.status != 403:
                bad.append("%s %s -> %d %r" % (what, host, r.status, body[:80]))
    for host, server in (("127.0.0.70", "fb"), ("0x7f.0.0.8", "fb"), ("SOME.HOST.COM.", "rec")):
        target = "http://%s/hs-%s" % (host, os.urandom(4).hex())
        r, body, _ = one(d, req("GET", target, host))
        info = info_of(r, body, "GET %s" % target)
        if info["server"] != server or info["requestline"] != "GET %s HTTP/1.1" % target:
            bad.append("%s: went to %s as %r, want %s as sent" % (host, info["server"],
                                                                info["requestline"], server))
    if bad:
        raise AssertionError("; ".join(bad))
    return "%d spellings x 2 forms 403" % len(HOST_SPELLINGS)


def t_host_to_tinyproxy(h, d):
    h.env.need("tinyproxy")
    log = h.env.tiny.proc.log_path
    tok = os.urandom(4).hex()
    cases = [  # (label, absolute target host, Host field, origin, through tinyproxy)
        ("a", h.o2, h.o2.hostport(), h.o2, True),
        ("b", h.o3, h.o3.hostport(), h.o3, False),
        ("c", h.o3, h.o2.hostport(), h.o3, False),  # absolute-form wins over Host
        ("d", h.o2, h.o3.hostport(), h.o2, True),
    ]
    off = os.path.getsize(log)
    for label, tgt, host, org, via_tiny in cases:
        path = "/t-%s-%s" % (tok, label)
        r, body, _ = one(d, req("GET", "http://%s%s" % (tgt.hostport(), path), host))
        info = info_of(r, body, "case %s" % label)
        if info["server"] != org.tag:
            raise AssertionError("case %s (target %s, Host %s): answered by %s, want %s" % (
                label, tgt.hostport(), host, info["server"], org.tag))
        via = " ".join(fields_of(info, "Via")).lower()
        if via_tiny != ("tinyproxy" in via):
            raise AssertionError("case %s (target %s, Host %s): Via at the origin %r, want %s tinyproxy" % (
                label, tgt.hostport(), host, via, "through" if via_tiny else "not through"))
        if not has_via(" ".join(fields_of(info, "Via"))):
            raise AssertionError("case %s: no Via: 1.1 <hostname:port> at the origin (%r)" % (label, via))
    for label, _, _, _, via_tiny in cases:
        needle = "/t-%s-%s" % (tok, label)
        if via_tiny and not log_contains(log, needle, off):
            raise AssertionError("tinyproxy's log does not name %s: pool tiny not used" % needle)
    for label, _, _, _, via_tiny in cases:
        needle = "/t-%s-%s" % (tok, label)
        if not via_tiny and log_contains(log, needle, off, timeout=0.1):
            raise AssertionError("tinyproxy's log names %s, which must not go there" % needle)
    return "127.0.0.2 -> tinyproxy (its log names it), 127.0.0.3 -> direct, absolute-form wins"


def t_host_case(h, d):
    tok = os.urandom(4).hex()
    o1 = h.o1.hostport()
    cases = [  # (label, request target, Host, expected server, expected request line target)
        ("a", "http://SOME.HOST.COM/ci-%s-a", "SOME.HOST.COM", "rec", "http://SOME.HOST.COM/ci-%s-a"),
        ("b", "/ci-%s-b", "Some.Host.Com:8080", "rec", "/ci-%s-b"),
        ("c", "http://some.Host.com:8080/ci-%s-c", None, "rec", "http://some.Host.com:8080/ci-%s-c"),
        ("d", "http://other.host.com/ci-%s-d", "other.host.com", "fb", "http://other.host.com/ci-%s-d"),
        ("e", "http://some.host.com.evil/ci-%s-e", "some.host.com", "fb", None),
        ("f", "http://%s/ci-%%s-f" % o1, "SOME.HOST.COM", "o1", "/ci-%s-f"),
        ("g", "http://SOME.host.COM/ci-%s-g", o1, "rec", "http://SOME.host.COM/ci-%s-g"),
    ]
    for label, target, host, server, line_target in cases:
        target = target % tok
        r, body, _ = one(d, req("GET", target, host))
        info = info_of(r, body, "case %s (%s, Host %s)" % (label, target, host))
        if info["server"] != server:
            raise AssertionError("case %s: GET %s with Host %s went to %s, want %s" % (
                label, target, host, info["server"], server))
        if line_target and info["requestline"] != "GET %s HTTP/1.1" % (line_target % tok):
            raise AssertionError("case %s: %s got request line %r, want target %s" % (
                label, server, info["requestline"], line_target % tok))
    return "host rule case-insensitive, port ignored, absolute-form kept for proxy pools"


def t_absolute_host_rewrite(h, d):
    """RFC 9112 3.2.2: a proxy that gets absolute-form MUST replace the Host field
    with the target's authority (a direct pool sends origin-form, so Host is all the
    origin has)."""
    o1 = h.o1.hostport()
    bad = []
    for label, host in (("conflicting Host 127.0.0.2:9", "127.0.0.2:9"), ("no Host", None)):
        r, body, _ = one(d, req("GET", "http://%s/rfc" % o1, host))
        info = info_of(r, body, label)
        got = fields_of(info, "Host")
        if got != [o1]:
            bad.append("%s: origin got Host %r, want [%r]" % (label, got, o1))
    if bad:
        raise AssertionError("absolute-form to a direct pool: " + "; ".join(bad))


# ---------------------------------------------------------------- 6. hostile input


def expect_refused(h, d, raw, status, token, send_slowly=False):
    """raw is answered with status, then the connection closes, the origin never
    sees token, and the daemon serves the next client."""
    with HC(d.port) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may refuse before reading everything; the answer must still be there
        try:
            r = c.read_head(5.0)
        except ConnectionResetError:
            raise AssertionError("connection reset before the %d answer" % status)
        if r.status != status:
            body, _ = c.read_body(r, 3.0)
            raise AssertionError("answered %r (%r), want %d" % (r, body[:120], status))
        body, framing = c.read_body(r, 3.0)
        how, extra = c.wait_eof(3.0)
        if how == "timeout" or extra:
            raise AssertionError("after the %d: connection not closed (%s, extra %r)" % (status, how, extra[:120]))
    time.sleep(0.05)
    if any(token in s for s in h.o1.seen):
        raise AssertionError("the origin got the refused request: %r" % [s for s in h.o1.seen if token in s])
    serving(h, d)
    return "%r (%s), then %s: %s" % (r, r.headers.get("connection"), how, body.strip()[:90].decode(errors="replace"))


def hostile(h, d, fields, status=400, method="POST", body=b"", target=None):
    tok = "bad-" + os.urandom(4).hex()
    lines = ["%s %s HTTP/1.1" % (method, target or "/echo?" + tok), "Host: %s" % h.o1.hostport()] + fields
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return expect_refused(h, d, raw.replace(b"@TOK@", tok.encode()), status, tok)


def t_cl_te(h, d):
    return hostile(h, d, ["Content-Length: 5", "Transfer-Encoding: chunked"],
                   body=b"0\r\n\r\nGET /echo?smuggled HTTP/1.1\r\nHost: x\r\n\r\n")


def t_te_gzip(h, d):
    return hostile(h, d, ["Transfer-Encoding: gzip"], body=b"hello")


def t_cl_list(h, d):
    return hostile(h, d, ["Content-Length: 5, 6"], body=b"hello!")


def t_cl_twice(h, d):
    return hostile(h, d, ["Content-Length: 5", "Content-Length: 6"], body=b"hello!")


def t_space_colon(h, d):
    tok = "bad-" + os.urandom(4).hex()
    raw = ("GET /echo?%s HTTP/1.1\r\nHost : %s\r\n\r\n" % (tok, h.o1.hostport())).encode()
    return expect_refused(h, d, raw, 400, tok)


def t_obs_fold(h, d):
    return hostile(h, d, ["X-Folded: a", " b"], method="GET")


def t_bare_cr(h, d):
    return hostile(h, d, ["X-Cr: a\rb"], method="GET")


def t_nul(h, d):
    return hostile(h, d, ["X-Nul: a\0b"], method="GET")


def t_414(h, d):
    tok = "bad-" + os.urandom(4).hex()
    raw = ("GET /echo?%s&pad=%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (
        tok, "a" * (MAX_HEADER + 1000), h.o1.hostport())).encode()
    return expect_refused(h, d, raw, 414, tok)


def t_431_fields(h, d):
    hp = h.o1.hostport()
    ok = ["X-F%d: v" % i for i in range(99)]  # + Host = 100 fields: allowed
    r, body, _ = one(d, req("GET", "/echo?fields100", hp, ok))
    info = info_of(r, body, "100 fields")
    n100 = len(info["headers"])
    res = hostile(h, d, ["X-F%d: v" % i for i in range(100)], status=431, method="GET")
    return "100 fields forwarded (%d at the origin); 101: %s" % (n100, res)


def t_slowloris(h, d, step=0.2):
    tok = "bad-" + os.urandom(4).hex()
    head = ("GET /echo?%s HTTP/1.1\r\nHost: %s\r\nX-Slow: %s" % (tok, h.o1.hostport(), "s" * 100)).encode()
    with HC(d.port) as c:
        t0 = time.monotonic()
        got_at, sent = None, 0
        for i in range(40):  # at most 8 s
            try:
                c.sock.send(head[i:i + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                got_at = got_at or time.monotonic()
                break
            r, _, _ = select.select([c.sock], [], [], step)
            if r:
                got_at = time.monotonic()
                break
        if got_at is None:
            raise AssertionError("no answer to a head sent 1 byte per %.0f ms for %.1f s (header_timeout_ms %d)" % (
                step * 1000, time.monotonic() - t0, HEADER_TIMEOUT_MS))
        dt = got_at - t0
        try:
            r = c.read_head(3.0)
        except ConnectionResetError:
            raise AssertionError("connection reset after %.2f s without a 408" % dt)
        if r.status != 408:
            raise AssertionError("answered %r after %.2f s, want 408" % (r, dt))
        c.read_body(r, 3.0)
        how, extra = c.wait_eof(3.0)
        if how == "timeout" or extra:
            raise AssertionError("after the 408: connection not closed (%s, %r)" % (how, extra[:80]))
    lim = HEADER_TIMEOUT_MS / 1000.0
    if not lim * 0.9 <= dt <= lim + 1.2:
        raise AssertionError("408 after %.2f s, want about header_timeout_ms = %.1f s" % (dt, lim))
    serving(h, d)
    return "408 after %.2f s and %d bytes, then %s" % (dt, sent, how)


def t_authority_get(h, d):
    tok = "bad-" + os.urandom(4).hex()
    raw = ("GET 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Tok: %s\r\n\r\n" % (
        h.o1.port, h.o1.port, tok)).encode()
    res = expect_refused(h, d, raw, 400, tok)
    if h.o1.seen and h.o1.seen[-1].startswith("GET 127.0.0.1"):
        raise AssertionError("the origin got the authority-form GET")
    return res


def t_connect_body(h, d):
    tok = "bad-" + os.urandom(4).hex()
    raw = ("CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nX-Tok: %s\r\n"
           "Content-Length: 4\r\n\r\nabcd" % tok).encode()
    return expect_refused(h, d, raw, 400, tok)


def fake_client_hello():
    body = b"\x01\x00\x00\x4c\x03\x03" + os.urandom(32) + b"\x00\x00\x02\x13\x01\x01\x00" + b"\x00" * 36
    return b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body


def t_407_tunnel_bytes(h, d):
    h.env.need("tinyproxy")
    port = h.env.servers["echo"].port
    hello = fake_client_hello()
    off = d.log_size()
    with HC(d.port) as c:
        c.send(("CONNECT 127.0.0.4:%d HTTP/1.1\r\nHost: 127.0.0.4:%d\r\n\r\n" % (port, port)).encode() + hello)
        r = c.read_head(5.0)
        if r.status != 407:
            raise AssertionError("CONNECT through tinyproxy-auth answered %r, want 407" % r)
        body, framing = c.read_body(r, 5.0)
        how, extra = c.wait_eof(3.0)
    if b"HTTP/1." in extra:
        raise AssertionError("after the 407 the tunnel bytes were parsed as a request: got %r" % extra[:200])
    if how == "timeout":
        raise AssertionError("connection still open 3 s after the 407 (tunnel bytes pending)")
    if extra:
        raise AssertionError("unexpected bytes after the 407 body: %r" % extra[:120])
    answered400 = [l for l in d.tail(200, off) if re.search(r"(status=|: )400\b", l)]
    if answered400:
        raise AssertionError("daemon answered 400 after the 407: %r" % answered400[:3])
    serving(h, d)
    return "407 (%s-framed, %d-byte body), then %s" % (framing, len(body), how)


# ---------------------------------------------------------------- 7. hygiene


def t_fds(h, d, dx):
    problems = []
    for dd in (d, dx):
        deadline = time.monotonic() + 3.0
        while True:
            n = dd.fd_count()
            if n == dd.fd0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if n != dd.fd0:
            now = dd.fd_list()
            new = sorted(v for k, v in now.items() if dd.fds0.get(k) != v)
            problems.append("%s: fd count %d, was %d after startup (new: %s)" % (
                dd.name, n, dd.fd0, ", ".join(new[:10])))
    if problems:
        raise AssertionError("; ".join(problems))
    return "fds back to %d and %d" % (d.fd0, dx.fd0)


# ---------------------------------------------------------------- registration


def tests(h):
    return [
        ("get_16MiB_direct_absolute_curl", lambda d, dx: t_get_big_curl(h, d)),
        ("get_16MiB_direct_origin_form", lambda d, dx: t_get_big_origin_form(h, d)),
        ("head_keeps_content_length", lambda d, dx: t_head(h, d)),
        ("via_both_ways", lambda d, dx: t_via(h, d)),
        ("x_forwarded_for", lambda d, dx: t_xff(h, d, dx)),
        ("post_content_length_3MiB", lambda d, dx: t_post_cl(h, d)),
        ("post_chunked_3MiB", lambda d, dx: t_post_chunked(h, d)),
        ("response_chunked_3MiB", lambda d, dx: t_resp_chunked(h, d)),
        ("response_close_delimited_http10", lambda d, dx: t_resp_close_delimited(h, d)),
        ("keepalive_two_urls_curl", lambda d, dx: t_keepalive_curl(h, d)),
        ("pipelining_three_in_one_write", lambda d, dx: t_pipelining(h, d)),
        ("hop_by_hop_removed", lambda d, dx: t_hop_by_hop(h, d)),
        ("irule_admin_guard", lambda d, dx: t_admin_guard(h, d)),
        ("rules_path_spellings", lambda d, dx: t_path_spellings(h, d)),
        ("rules_host_spellings", lambda d, dx: t_host_spellings(h, d)),
        ("irule_host_to_tinyproxy", lambda d, dx: t_host_to_tinyproxy(h, d)),
        ("irule_host_case_insensitive", lambda d, dx: t_host_case(h, d)),
        ("absolute_form_host_replaced", lambda d, dx: t_absolute_host_rewrite(h, d)),
        ("bad_cl_and_te_400", lambda d, dx: t_cl_te(h, d)),
        ("bad_te_gzip_400", lambda d, dx: t_te_gzip(h, d)),
        ("bad_cl_list_400", lambda d, dx: t_cl_list(h, d)),
        ("bad_cl_twice_400", lambda d, dx: t_cl_twice(h, d)),
        ("bad_space_before_colon_400", lambda d, dx: t_space_colon(h, d)),
        ("bad_obs_fold_400", lambda d, dx: t_obs_fold(h, d)),
        ("bad_bare_cr_400", lambda d, dx: t_bare_cr(h, d)),
        ("bad_nul_400", lambda d, dx: t_nul(h, d)),
        ("bad_request_line_414", lambda d, dx: t_414(h, d)),
        ("bad_101_fields_431", lambda d, dx: t_431_fields(h, d)),
        ("bad_slowloris_408", lambda d, dx: t_slowloris(h, d)),
        ("bad_authority_form_get_400", lambda d, dx: t_authority_get(h, d)),
        ("bad_connect_with_body_400", lambda d, dx: t_connect_body(h, d)),
        ("connect_407_tunnel_bytes_not_parsed", lambda d, dx: t_407_tunnel_bytes(h, d)),
        ("hygiene_fds", lambda d, dx: t_fds(h, d, dx)),
    ]


def names():
    return ["http/%s" % n for n, _ in tests(None)]


def run_http(runner, env, skip_reason=None):
    """Run the http/ tests against their own daemons (relay mode irrelevant: auto)."""
    todo = [n for n in names() if runner.selected(n)]
    if not todo:
        return
    if skip_reason:
        for n in todo:
            runner.skip(n, skip_reason)
        return
    h = d = dx = None
    try:
        try:
            h = HttpEnv(env)
            pools, rules = h.config()
            # Idle upstream connections (reuse) close within hygiene_fds' 3 s wait.
            extra = {"header_timeout_ms": str(HEADER_TIMEOUT_MS), "max_header_bytes": str(MAX_HEADER),
                     "upstream_idle_timeout_ms": "1000"}
            d = peers.Daemon(env.tmp, "tg-http", "auto", pools, rules, default="fb", extra=extra)
            dx = peers.Daemon(env.tmp, "tg-http-xff", "auto", pools, rules, default="fb",
                              extra=dict(extra, x_forwarded_for="yes"))
        except Exception as e:
            lines = str(e).splitlines()
            for n in todo:
                runner.fail(n, "setup failed: %s: %s" % (type(e).__name__, lines[0] if lines else ""),
                            lines[1:] if n == todo[0] else ())
            return
        for n, fn in tests(h):
            name = "http/%s" % n
            if not runner.selected(name):
                continue
            if not d.alive() or not dx.alive():
                dead = d if not d.alive() else dx
                runner.fail(name, "daemon %s died (rc=%s)" % (dead.name, dead.proc.p.poll()), dead.tail(15))
                continue
            runner.run(name, (lambda f: lambda: f(d, dx))(fn), d)
    finally:
        for x in (dx, d):
            if x is not None:
                x.stop()
        if h is not None:
            h.stop()
