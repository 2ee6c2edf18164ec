"""Least privilege (user/priv.c, README.md "Security"): a daemon that drops to
`user` (default nobody) after start-up still relays in the kernel, reloads, reopens
its access log and cleans up at exit, with exactly the documented capabilities,
no_new_privs and its seccomp filter; a reload that needs root is refused with a
line that says why. One daemon goes through the steps in order."""

import os
import pwd
import re
import signal
import socket
import time

import cases
import peers
from cases import Skip
from httpclient import Client

CAP_DAC_OVERRIDE, CAP_NET_ADMIN = 1, 12
SNDBUF_DEFAULT = 8 << 20  # TG_DEFAULT_RELAY_SNDBUF


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def sysctl(name):
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return int(f.read().split()[0])


def want_caps(d):
    """README.md: CAP_NET_ADMIN only when the kernel relay pauses with sockops and
    relay_sndbuf_bytes (8 MiB by default) is over net.core.wmem_max."""
    pausing = any("(pause sockops)" in l for l in d.tail(200))
    if d.relay == "sockmap" and pausing and SNDBUF_DEFAULT > sysctl("net.core.wmem_max"):
        return 1 << CAP_NET_ADMIN
    return 0


def helper_of(pid):
    """PID of the daemon's clean-up helper (a child named tunnelgated-rm), or None."""
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        if comm == "tunnelgated-rm" and int(st[st.rindex(")") + 2:].split()[1]) == pid:
            return int(p)
    return None


def wait_log(d, pattern, off, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in d.tail(50, off):
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise AssertionError("no log line matching %r; last lines: %r" % (pattern, d.tail(8, off)))


def echo(env, d, n=4000):
    with Client(d.port) as c:
        c.tunnel(cases.A_DIRECT, env.servers["echo"].port)
        msg = os.urandom(n)
        c.send(msg)
        if c.recv_exact(n, 5.0) != msg:
            raise AssertionError("echo through the tunnel differs")
        return c.local_port()


def stats(d):
    r = d.ctl("stats")
    if r.returncode != 0:
        raise AssertionError("tunnelctl stats exited %d: %r" % (r.returncode, r.stderr))
    return dict(l.split("\t", 1) for l in r.stdout.decode().splitlines() if "\t" in l)


class State:
    def __init__(self, env, d, logdir):
        self.env, self.d, self.logdir = env, d, logdir
        self.log = os.path.join(logdir, "access.log")
        self.cgroup = None


def t_status(s):
    d, nobody = s.d, pwd.getpwnam("nobody")
    st = proc_status(d.pid)
    want = {"Uid": "\t".join([str(nobody.pw_uid)] * 4), "Gid": "\t".join([str(nobody.pw_gid)] * 4),
            "CapEff": "%016x" % want_caps(d), "CapPrm": "%016x" % want_caps(d),
            "CapInh": "%016x" % 0, "CapAmb": "%016x" % 0, "NoNewPrivs": "1", "Seccomp": "2"}
    bad = {k: st.get(k) for k in want if st.get(k) != want[k]}
    if bad:
        raise AssertionError("/proc/%d/status: got %r, want %r" % (d.pid, bad, {k: want[k] for k in bad}))
    with open("/proc/%d/cgroup" % d.pid) as f:
        rel = [l.strip()[3:] for l in f if l.startswith("0::")]
    if rel and "/tunnelgated-" in rel[0] and cases.cgroup2_mount():
        s.cgroup = cases.cgroup2_mount() + rel[0]
    h = helper_of(d.pid)
    if h is None:
        raise AssertionError("no clean-up helper (tunnelgated-rm) among the daemon's children")
    hs = proc_status(h)
    # CAP_DAC_OVERRIDE only with a cgroup child to remove (the cgroup2 root is 0555)
    hwant = {"Uid": "0\t0\t0\t0", "CapEff": "%016x" % ((1 << CAP_DAC_OVERRIDE) if s.cgroup else 0),
             "NoNewPrivs": "1", "Seccomp": "2"}
    bad = {k: hs.get(k) for k in hwant if hs.get(k) != hwant[k]}
    if bad:
        raise AssertionError("helper /proc/%d/status: got %r, want %r" % (h, bad, hwant))
    return "uid %s, CapEff %s, helper CapEff %s" % (nobody.pw_uid, st["CapEff"], hs["CapEff"])


def t_kernel_relay(s):
    cases.t_counters(s.env, s.d)
    echo(s.env, s.d)
    st = stats(s.d)
    if int(st.get("tunnels_sockmap", 0)) < 2:
        raise AssertionError("tunnels_sockmap %r after 2 tunnels as nobody" % st.get("tunnels_sockmap"))
    return "tunnels_sockmap %s" % st["tunnels_sockmap"]


def log_has(path, port, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                if "client=127.0.0.1:%d " % port in f.read():
                    return
        time.sleep(0.05)
    raise AssertionError("%s has no line for client port %d" % (path, port))


def check_log_file(path, nobody_uid):
    st = os.stat(path)
    if st.st_mode & 0o777 != 0o640 or st.st_uid != nobody_uid:
        raise AssertionError("%s: mode %o owner %d, want 640 and %d" % (
            path, st.st_mode & 0o777, st.st_uid, nobody_uid))


def t_access_log(s):
    """Written, 0640, the user's; SIGHUP (a config that also names a host, so the reload
    resolves it under seccomp) reopens it after a rotation by rename."""
    uid = pwd.getpwnam("nobody").pw_uid
    log_has(s.log, echo(s.env, s.d))
    check_log_file(s.log, uid)
    os.rename(s.log, s.log + ".1")
    with open(s.d.conf) as f:
        conf = f.read()
    with open(s.d.conf, "w") as f:
        f.write(conf.replace("[route]", "[pool byname]\nserver = localhost:%d\n\n[route]"
                             % s.env.closed_port))
    off = s.d.log_size()
    s.d.proc.send_signal(signal.SIGHUP)
    line = wait_log(s.d, r"reloaded|refused|failed", off)
    if "reloaded" not in line:
        raise AssertionError("SIGHUP as nobody: %s" % line)
    log_has(s.log, echo(s.env, s.d))
    check_log_file(s.log, uid)
    return "reopened after rename, 0640 nobody"


def low_free_port():
    for port in range(1023, 900, -1):
        with socket.socket() as so:
            try:
                so.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise Skip("no free port below 1024 on 127.0.0.1")


def t_low_port_refused(s):
    if sysctl("net.ipv4.ip_unprivileged_port_start") <= 1000:
        raise Skip("net.ipv4.ip_unprivileged_port_start is low: any user may bind low ports")
    port = low_free_port()
    with open(s.d.conf) as f:
        conf = f.read()
    with open(s.d.conf, "w") as f:
        f.write(conf.replace("[gateway]", "[gateway]\nlisten = 127.0.0.1:%d" % port, 1))
    off = s.d.log_size()
    s.d.proc.send_signal(signal.SIGHUP)
    line = wait_log(s.d, r"reload refused|reloaded|reload failed", off)
    if "reload refused" not in line or "127.0.0.1:%d" % port not in line or "restart" not in line:
        raise AssertionError("want a 'reload refused' line naming 127.0.0.1:%d and what to do, got %r"
                             % (port, line))
    if peers.wait_port("127.0.0.1", port, 0.3):
        raise AssertionError("port %d listens after a refused reload" % port)
    echo(s.env, s.d)  # the running config still serves
    with open(s.d.conf, "w") as f:
        f.write(conf)
    return line.split("warning: ", 1)[-1]


def t_sigterm(s):
    d = s.d
    helper = helper_of(d.pid)
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(8.0)
    left = [p for p in (d.pin_dir, s.cgroup, d.ctl_sock) if p and os.path.exists(p)]
    problems = []
    if rc != 0:
        problems.append("exit code %r after SIGTERM, want 0" % rc)
    if left:
        problems.append("still there: %s" % ", ".join(left))
    if helper and os.path.exists("/proc/%d" % helper):
        problems.append("helper %d still running" % helper)
    warn = [l for l in d.tail(30) if "warning" in l and "cannot" in l]
    if warn:
        problems.append("clean-up warnings: %r" % warn)
    if problems:
        raise AssertionError("; ".join(problems))


def t_user_root(env):
    """user = root keeps root (all capabilities), seccomp = no leaves the filter off."""
    d = peers.Daemon(env.tmp, "tg-priv-root", "splice", [("direct", ["direct = yes"])],
                     extra={"user": "root", "seccomp": "no"})
    try:
        st = proc_status(d.pid)
        with open("/proc/self/status") as f:
            bnd = [l.split()[1] for l in f if l.startswith("CapBnd:")][0]
        want = {"Uid": "0\t0\t0\t0", "CapEff": bnd, "NoNewPrivs": "1", "Seccomp": "0"}
        bad = {k: st.get(k) for k in want if st.get(k) != want[k]}
        if bad or helper_of(d.pid):
            raise AssertionError("user = root, seccomp = no: got %r, helper %r; want %r" % (
                bad, helper_of(d.pid), want))
        echo(env, d)
    finally:
        d.stop()


def run_privilege(runner, env, skip_reason=None):
    names = ["status_uid_caps_nnp_seccomp", "kernel_relay_as_nobody",
             "access_log_0640_reopened_on_sighup", "reload_low_port_refused",
             "sigterm_removes_pins_cgroup_socket"]
    if not skip_reason:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            skip_reason = "no user nobody"
    if skip_reason:
        for n in names + ["user_root_seccomp_no"]:
            runner.skip("priv/" + n, skip_reason)
        return
    if any(runner.selected("priv/" + n) for n in names):
        logdir = os.path.join(env.tmp, "priv-log")
        os.makedirs(logdir, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(logdir, nobody.pw_uid, nobody.pw_gid)  # rotation: the user creates the new file
        try:
            d = peers.Daemon(env.tmp, "tg-priv", "sockmap", [("direct", ["direct = yes"])],
                             extra={"access_log": os.path.join(logdir, "access.log")})
        except Exception as e:
            for n in names:
                runner.fail("priv/" + n, "daemon did not start: %s" % str(e).splitlines()[0])
            return
        s = State(env, d, logdir)
        for n, fn in zip(names, (t_status, t_kernel_relay, t_access_log, t_low_port_refused,
                                 t_sigterm)):
            runner.run("priv/" + n, (lambda f: lambda: f(s))(fn), d)
        d.stop()
    runner.run("priv/user_root_seccomp_no", lambda: t_user_root(env))
