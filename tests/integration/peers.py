"""Peers for the integration tests: processes (tunnelgated, tinyproxy, squid,
openssl s_server) and Python socket servers (echo, banner, half-close, ...).

Every process is started by us, tracked by PID and stopped by PID (SIGTERM,
then SIGKILL of its own process group). stop_all() runs from atexit, so a
failing or interrupted run leaves nothing behind. All traffic stays on
127.0.0.0/8.
"""

import atexit
import hashlib
import json
import os
import pwd
import queue
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build")
# TG_DAEMON / TG_CTL point the suite at other binaries (e.g. an installed build)
DAEMON = os.environ.get("TG_DAEMON") or os.path.join(BUILD, "tunnelgated")
CTL = os.environ.get("TG_CTL") or os.path.join(BUILD, "tunnelctl")

IO_TIMEOUT = 10.0  # default timeout of every socket operation

_procs = []
_servers = []
_lock = threading.Lock()


def stop_all():
    """Stop every process and server we started (reverse start order)."""
    with _lock:
        procs, servers = list(_procs), list(_servers)
    for p in reversed(procs):
        try:
            p.stop(timeout=3)
        except Exception:
            pass
    for s in reversed(servers):
        try:
            s.stop()
        except Exception:
            pass


atexit.register(stop_all)


# ---------------------------------------------------------------- utilities


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0, proc=None):
    """Poll connect() until host:port accepts. Returns True on success, False if
    the time ran out or proc exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def which(name):
    return shutil.which(name)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_tail(path, n=30, offset=0):
    """Last n lines of path from byte offset on."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as e:
        return ["(cannot read %s: %s)" % (path, e)]
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:]


# ---------------------------------------------------------------- processes


class Proc:
    """A child process in its own session, output captured to a log file."""

    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.rc = None
        self._log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                  env=dict(os.environ, **env) if env else None)
        self.pid = self.p.pid
        with _lock:
            _procs.append(self)

    def alive(self):
        return self.p.poll() is None

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def tail(self, n=30, offset=0):
        return read_tail(self.log_path, n, offset)

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout):
        try:
            self.rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.rc

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signal the process, wait, then SIGKILL it and its process group
        (helpers it forked, e.g. squid's). Returns the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(5)
        self.rc = self.p.poll()
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the group we created for it
        except (ProcessLookupError, PermissionError):
            pass
        with _lock:
            if self in _procs:
                _procs.remove(self)
        self._log.close()
        return self.rc


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=127.0.0.1", "-days", "1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return cert, key


def make_file(path, size):
    """A file of size random bytes; returns its sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


class TlsOrigin:
    """openssl s_server -WWW serving docroot on addr:port (one per address)."""

    def __init__(self, tmp, docroot, cert, key, addr="127.0.0.1"):
        self.addr = addr
        for _ in range(5):
            self.port = free_port(addr)
            self.proc = Proc("openssl-%s" % addr, [
                "openssl", "s_server", "-WWW", "-quiet", "-accept", "%s:%d" % (addr, self.port),
                "-cert", cert, "-key", key], os.path.join(tmp, "openssl-%s.log" % addr), cwd=docroot)
            if wait_port(addr, self.port, 10, self.proc):
                return
            self.proc.stop()
        raise RuntimeError("openssl s_server did not start: %s" % self.proc.tail(5))

    def stop(self):
        self.proc.stop()


class Tinyproxy:
    def __init__(self, tmp, name, connect_ports=(), auth=None, port=None):
        """port: listen there (one try) instead of on a free port."""
        self.name = name
        conf = os.path.join(tmp, "%s.conf" % name)
        for _ in range(1 if port else 5):
            self.port = port or free_port()
            lines = ["Port %d" % self.port, "Listen 127.0.0.1", "Timeout 30",
                     "Allow 127.0.0.1", "MaxClients 100", "LogLevel Info"]
            lines += ["ConnectPort %d" % p for p in connect_ports]
            if auth:
                lines.append("BasicAuth %s %s" % auth)
            with open(conf, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.proc = Proc(name, ["tinyproxy", "-d", "-c", conf], os.path.join(tmp, "%s.log" % name))
            if wait_port("127.0.0.1", self.port, 10, self.proc):
                return
            self.proc.stop()
        raise RuntimeError("tinyproxy did not start: %s" % self.proc.tail(5))

    def stop(self):
        self.proc.stop()


class Squid:
    """squid -N with everything it writes in its own dir, owned by its user."""

    def __init__(self, tmp, name="squid", port_options="", extra=()):
        """port_options: appended to http_port (e.g. require-proxy-header);
        extra: more squid.conf lines (e.g. proxy_protocol_access)."""
        self.name = name
        d = os.path.join(tmp, name)
        os.makedirs(d, exist_ok=True)
        root = os.geteuid() == 0
        os.chmod(tmp, 0o755)  # squid's user must reach its dir
        user = "proxy"
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
            pw = pwd.getpwnam(user)
        if not root:  # squid keeps our uid
            pw = pwd.getpwuid(os.geteuid())
        conf = os.path.join(d, "squid.conf")
        for _ in range(3):
            self.port = free_port()
            with open(conf, "w") as f:
                f.write("\n".join([
                    ("http_port 127.0.0.1:%d %s" % (self.port, port_options)).rstrip(),
                    "pid_filename %s/squid.pid" % d,
                    "cache_log %s/cache.log" % d,
                    "access_log stdio:%s/access.log" % d,
                    "cache_store_log none",
                    "cache deny all",
                    "coredump_dir %s" % d,
                    "cache_effective_user %s" % (user if root else pw.pw_name),
                    "pinger_enable off",
                    "shutdown_lifetime 0 seconds",
                    "dns_nameservers 127.0.0.1",
                    "acl lo src 127.0.0.0/8",
                    "http_access allow lo",
                    "http_access deny all",
                ] + list(extra)) + "\n")
            if root:
                for top, dirs, files in os.walk(d):
                    for n in dirs + files:
                        os.chown(os.path.join(top, n), pw.pw_uid, pw.pw_gid)
                os.chown(d, pw.pw_uid, pw.pw_gid)
            self.proc = Proc(name, ["squid", "-N", "-f", conf], os.path.join(tmp, "%s.out" % name))
            if wait_port("127.0.0.1", self.port, 20, self.proc):
                self.log_path = os.path.join(d, "cache.log")
                return
            self.proc.stop()
        raise RuntimeError("squid did not start: %s" % read_tail(os.path.join(d, "cache.log"), 5))

    def stop(self):
        self.proc.stop()


class Daemon:
    """One tunnelgated instance with its own listen port, control socket and
    pin dir. pools: list of (name, [lines]); rules: list of (name, host, pool)
    or (name, [lines])."""

    def __init__(self, tmp, name, relay, pools, rules=(), default="direct", extra=None,
                 verbose=True, host="127.0.0.1", env=None, listen_opts=""):
        self.name = name
        self.relay = relay
        self.tmp = tmp
        self.ctl_sock = os.path.join(tmp, "%s.ctl.sock" % name)
        self.pin_dir = "/sys/fs/bpf/tg-test-%s-%s" % (name, os.urandom(4).hex())
        self.conf = os.path.join(tmp, "%s.conf" % name)
        self.log_path = os.path.join(tmp, "%s.log" % name)
        self.host = host
        self.port = free_port(host)
        gw = {
            "listen": (("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port) +
                       (" " + listen_opts if listen_opts else "")),
            "relay": relay,
            "control": self.ctl_sock,
            "bpf_pin_dir": self.pin_dir,
            "connect_ports": "*",
            "http_ports": "*",  # test origins listen on random ports
            "header_timeout_ms": "1000",
            "connect_timeout_ms": "1000",
            "drain_timeout_ms": "2000",
            "max_header_bytes": "16384",
        }
        gw.update(extra or {})
        lines = ["[gateway]"] + ["%s = %s" % kv for kv in gw.items()]
        for pname, plines in pools:
            lines += ["", "[pool %s]" % pname] + list(plines)
        for rule in rules:
            if len(rule) == 2:  # (name, [lines]): any rule keys, e.g. path_prefix, client_not_in
                lines += ["", "[rule %s]" % rule[0]] + list(rule[1])
                continue
            rname, rhost, pool = rule
            lines += ["", "[rule %s]" % rname, "host = %s" % rhost, "action = pool %s" % pool]
        lines += ["", "[route]", "default = %s" % default]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        argv = [DAEMON, "-c", self.conf] + (["-v"] if verbose else [])
        self.proc = Proc(name, argv, self.log_path, env=env)
        self.pid = self.proc.pid
        with _lock:
            _servers.append(self)  # so stop_all() also removes leftover pins
        if not wait_port(self.host, self.port, 10, self.proc):
            self.stop(timeout=3)
            raise RuntimeError("tunnelgated %s did not listen (rc=%s); log:\n%s" % (
                name, self.proc.rc, "\n".join(self.proc.tail(20))))
        # Listeners come first; the relay (BPF programs, maps, the cgroup link) and the
        # resolver open after them. The ready line says all of it is open.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                "listening on" in l for l in self.proc.tail(50)):
            time.sleep(0.05)
        time.sleep(0.2)  # let it close the probe connection
        self.fd0 = self.fd_count()
        self.fds0 = self.fd_list()

    # --- introspection
    def fd_list(self):
        d = "/proc/%d/fd" % self.pid
        out = {}
        for n in os.listdir(d):
            try:
                out[n] = os.readlink(os.path.join(d, n))
            except OSError:
                pass
        return out

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def ctl(self, *args, timeout=5):
        return subprocess.run([CTL, "-s", self.ctl_sock] + list(args), capture_output=True,
                              timeout=timeout)

    def list_tunnels(self):
        r = self.ctl("list", "--json")
        if r.returncode != 0:
            raise AssertionError("tunnelctl list --json exited %d: %s" % (
                r.returncode, r.stderr.decode(errors="replace").strip()))
        try:
            v = json.loads(r.stdout)
        except ValueError as e:
            raise AssertionError("tunnelctl list --json printed no JSON (%s): %r" % (e, r.stdout[:300]))
        if not isinstance(v, list):
            raise AssertionError("tunnelctl list --json: not an array: %r" % r.stdout[:300])
        return v

    def bpf_tunnels(self):
        """Values of the pinned tunnels map, as dicts (bpftool -j with BTF)."""
        path = os.path.join(self.pin_dir, "tunnels")
        r = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", path], capture_output=True,
                           timeout=10)
        if r.returncode != 0:
            raise AssertionError("bpftool map dump pinned %s: %s" % (
                path, (r.stderr or r.stdout).decode(errors="replace").strip()))
        out = []
        for e in json.loads(r.stdout):
            if "formatted" in e:
                e = e["formatted"]
            v = e.get("value")
            if isinstance(v, list) and v and isinstance(v[0], dict) and "value" in v[0]:
                v = v[0]["value"]  # per-cpu layout
            out.append(v)
        return out

    def log_size(self):
        return self.proc.log_size()

    def tail(self, n=30, offset=0):
        return self.proc.tail(n, offset)

    def alive(self):
        return self.proc.alive()

    def stop(self, timeout=8.0):
        rc = self.proc.stop(timeout=timeout)
        if os.path.isdir(self.pin_dir):  # killed, or it failed to clean up: our pins, remove them
            shutil.rmtree(self.pin_dir, ignore_errors=True)
        with _lock:
            if self in _servers:
                _servers.remove(self)
        return rc


# ---------------------------------------------------------------- Python servers


class TcpServer:
    """A threaded TCP server listening on the same port of several loopback
    addresses; handler(conn, server) runs in its own thread per connection.
    Handlers report through server.results (a queue)."""

    def __init__(self, name, handler, addrs=("127.0.0.1",), backlog=128):
        self.name = name
        self.handler = handler
        self.results = queue.Queue()
        self.conns = []
        self._stop = False
        self.socks = []
        for _ in range(20):
            try:
                self._bind(addrs, backlog)
                break
            except OSError:
                for s in self.socks:
                    s.close()
                self.socks = []
        else:
            raise RuntimeError("cannot bind %s on %s" % (name, addrs))
        self.port = self.socks[0].getsockname()[1]
        self._t = threading.Thread(target=self._accept_loop, name=name, daemon=True)
        self._t.start()
        with _lock:
            _servers.append(self)

    def _bind(self, addrs, backlog):
        port = 0
        for a in addrs:
            s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socks.append(s)
            s.bind((a, port))
            port = s.getsockname()[1]
            s.listen(backlog)

    def _accept_loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select(self.socks, [], [], 0.2)
            except (OSError, ValueError):
                return
            for ls in r:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.settimeout(IO_TIMEOUT)
                self.conns.append(c)
                threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handler(c, self)
        except Exception as e:  # a handler's failure is reported, not raised
            self.results.put(("error", repr(e)))
        finally:
            try:
                c.close()
            except OSError:
                pass

    def result(self, timeout=5.0):
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self):
        while not self.results.empty():
            self.results.get_nowait()

    def stop(self):
        self._stop = True
        for s in self.socks + self.conns:
            try:
                s.close()
            except OSError:
                pass
        with _lock:
            if self in _servers:
                _servers.remove(self)


def recv_exact(sock, n, deadline=None):
    """Read exactly n bytes; raises AssertionError with what arrived on EOF or
    timeout."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %d of %d bytes" % (len(buf), n))
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise AssertionError("timed out after %d of %d bytes" % (len(buf), n))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def recv_to_eof(sock, limit=1 << 30, deadline=None):
    """Read until EOF. Returns (data, how) where how is 'eof', 'reset' or 'timeout'."""
    buf = bytearray()
    while len(buf) < limit:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(buf), "timeout"
            sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            return bytes(buf), "timeout"
        except ConnectionResetError:
            return bytes(buf), "reset"
        if not chunk:
            return bytes(buf), "eof"
        buf += chunk
    return bytes(buf), "limit"


def rst_close(sock):
    """Close with an RST (SO_LINGER 0)."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
