// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Least privilege after start-up (see priv.h). The order matters:
 *   1. fork the clean-up helper while still root; it keeps uid 0, which owns the
 *      directories it removes from, and drops every capability but one
 *      (helper_confine());
 *   2. give the user the root-owned access log, so that SIGHUP can reopen it;
 *   3. shrink the bounding set (needs CAP_SETPCAP), then setgroups/setresgid/setresuid
 *      under PR_SET_KEEPCAPS, then capset the kept set into permitted and effective;
 *   4. no_new_privs, then seccomp.
 * The process is single-threaded here (c-ares runs on the loop), so per-thread
 * credentials and filters cover the whole daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/sockios.h>

#include <seccomp.h>

#include "cgroup.h"
#include "guard.h"
#include "log.h"
#include "priv.h"
#include "relay.h"

/* Process-wide, as credentials are: what was given up, for reloads and the exit. */
static struct {
	bool dropped;          /* runs as `user`, no longer as root */
	char user[64];
	pid_t helper;          /* 0: no helper */
	int helper_fd;         /* closing it starts the helper's clean-up */
} priv;

/* What the helper removes at exit, fixed before the fork. */
struct cleanup {
	pid_t daemon;
	struct relay *relay;   /* the helper's copy: relay_unpin() reads only names */
	struct guard *guard;   /* the same for guard_unpin(); NULL without the XDP guard */
	char cg_dir[PATH_MAX]; /* the daemon's cgroup child, "" without one */
	char cg_procs[PATH_MAX + 16]; /* its parent's cgroup.procs */
	char ctl[108];         /* the control socket, "" if none */
	dev_t ctl_dev;         /* ... removed only while it is still this file */
	ino_t ctl_ino;
	enum seccomp_mode seccomp;
};

/*
 * Syscalls the daemon makes after start-up (README.md, Security): those strace saw
 * through the whole integration suite once each daemon's `listening on` line was out
 * (the suite run with seccomp = log agreed), those of paths the suite does not take,
 * and those glibc may make at any time (marked). socket(), ioctl() and prlimit64()
 * are allowed further down, for some arguments only.
 */
static const char *const daemon_syscalls[] = {
	/* the loop; poll(): a relay socket's room (kernel_relay.c), glibc's DNS */
	"epoll_wait", "epoll_ctl", "poll", "read", "write", "close",
	/* connections, relays, the kernel relay's maps and programs, c-ares */
	"accept4", "connect", "shutdown", "getsockopt", "setsockopt", "getsockname",
	"getpeername", "recvfrom", "sendto", "splice", "pipe2", "fcntl", "bpf",
	/* config and access log on SIGHUP, pins, cgroup and control socket at exit */
	"openat", "newfstatat", "lseek", "access", "unlink", "uname",
	/* memory, the helper, exit; a worker thread's exit */
	"brk", "munmap", "futex", "wait4", "exit_group", "exit",
	/* worker threads: glibc grows a thread's malloc arena, a thread's exit masks signals */
	"mprotect", "rt_sigprocmask",
	/* not in the suite: listeners, control directory and glibc's DNS on SIGHUP,
	 * getifaddrs() (a non-loopback local address), c-ares over TCP, exit as root */
	"bind", "listen", "mkdir", "umask", "recvmsg", "sendmmsg", "writev", "rmdir",
	/* glibc at any time: malloc, signal return, clock_gettime() without the vDSO */
	"mmap", "mremap", "madvise", "rt_sigreturn", "clock_gettime",
};

/* The helper: wait on a pipe, then move a pid, remove files and directories. */
static const char *const helper_syscalls[] = {
	"read", "write", "close", "openat", "newfstatat", "lseek", "unlink", "rmdir", "clock_gettime",
	"brk", "mmap", "munmap", "rt_sigreturn", "exit_group",
};

static unsigned long sysctl_ul(const char *path, unsigned long dflt)
{
	FILE *f = fopen(path, "re");
	unsigned long v = dflt;

	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

/*
 * The capabilities the daemon keeps as `user`, with the reason in @why. Only one: the
 * relay forces socket buffers past net.core.wmem_max/rmem_max with SO_SNDBUFFORCE and
 * SO_RCVBUFFORCE in pause = sockops (relay.c set_bufs()). Map updates, sockhash
 * inserts and BPF_PROG_RUN work on the fds without any (measured, README.md).
 */
static int kept_caps(const struct gateway *gw, cap_value_t *keep, char *why, size_t len)
{
	const struct config *cfg = gw->cfg;
	unsigned long wmax, rmax;

	snprintf(why, len, "none");
	if (!gw->tunnels.relay || !relay_pausing(gw->tunnels.relay))
		return 0;
	wmax = sysctl_ul("/proc/sys/net/core/wmem_max", 0);
	rmax = sysctl_ul("/proc/sys/net/core/rmem_max", 0);
	if (cfg->relay_sndbuf_bytes <= wmax && cfg->relay_rcvbuf_bytes <= rmax)
		return 0;
	snprintf(why, len, "CAP_NET_ADMIN (relay_sndbuf_bytes %u, relay_rcvbuf_bytes %u over "
		 "net.core.wmem_max %lu, rmem_max %lu: SO_SNDBUFFORCE/SO_RCVBUFFORCE)",
		 cfg->relay_sndbuf_bytes, cfg->relay_rcvbuf_bytes, wmax, rmax);
	keep[0] = CAP_NET_ADMIN;
	return 1;
}

/* Permitted and effective become exactly @keep; inheritable and ambient empty. */
static int set_caps(const cap_value_t *keep, int n)
{
	cap_t caps = cap_init();
	int err = 0;

	if (!caps)
		return -errno;
	if (n && (cap_set_flag(caps, CAP_PERMITTED, n, keep, CAP_SET) ||
		  cap_set_flag(caps, CAP_EFFECTIVE, n, keep, CAP_SET)))
		err = -errno;
	if (!err && cap_set_proc(caps))
		err = -errno;
	cap_free(caps);
	if (!err && cap_reset_ambient())
		err = -errno;
	return err;
}

/* Take every capability but @keep out of the bounding set: no way back, even as root. */
static int drop_bounding(const cap_value_t *keep, int n)
{
	for (cap_value_t c = 0; c < (cap_value_t)cap_max_bits(); c++) {
		bool kept = false;

		for (int i = 0; i < n; i++)
			kept |= keep[i] == c;
		if (!kept && cap_drop_bound(c))
			return -errno;
	}
	return 0;
}

/* Write @pid (0: this process) into the cgroup.procs file @procs. */
static int cgroup_move(const char *procs, pid_t pid)
{
	char s[16];
	int fd, n, err = 0;

	fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(s, sizeof(s), "%d", (int)pid);
	if (write(fd, s, n) != n)
		err = -errno;
	close(fd);
	return err;
}

static int add_rules(scmp_filter_ctx ctx, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]), err;

		if (nr == __NR_SCMP_ERROR)
			continue; /* not a syscall on this architecture */
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (err)
			return err;
	}
	return 0;
}

/*
 * socket() for the families the daemon speaks (netlink: getifaddrs() in the self-loop
 * check); ioctl() only for the queue sizes the relays read; prlimit64() only to read.
 */
static int add_arg_rules(scmp_filter_ctx ctx)
{
	static const int families[] = { AF_UNIX, AF_INET, AF_INET6 };
	/* TCGETS: glibc's isatty() on a stream's first write (access_log = /dev/null). */
	static const unsigned long ioctls[] = { SIOCINQ, SIOCOUTQ, TCGETS };
	int err = 0;

	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]) && !err; i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				       SCMP_A0(SCMP_CMP_EQ, families[i]));
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
				       SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
				       SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE));
	for (size_t i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]) && !err; i++)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				       SCMP_A1(SCMP_CMP_EQ, ioctls[i]));
	/* getrlimit() (max_connections on SIGHUP), never a new limit */
	if (!err)
		err = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1,
				       SCMP_A2(SCMP_CMP_EQ, 0));
	return err;
}

/*
 * A sanitizer's runtime makes calls of its own (gettid, sigaltstack, LeakSanitizer's
 * ptrace at exit), which would kill a debug build before it reports: there,
 * seccomp = yes logs them as seccomp = log does.
 */
#ifdef __SANITIZE_ADDRESS__
#define SANITIZER_BUILD true
#else
#define SANITIZER_BUILD false
#endif

/*
 * Load an allow-list: anything else kills the process (seccomp = log: is allowed and
 * logged). Either way the kernel log names the syscall. Returns 0 or -errno.
 */
static int load_filter(enum seccomp_mode mode, const char *const *names, size_t n, bool daemon)
{
	scmp_filter_ctx ctx;
	int err;

	if (SANITIZER_BUILD)
		mode = SECCOMP_LOG;
	ctx = seccomp_init(mode == SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
	/* Every thread: the workers are running when the daemon's filter goes in. */
	if (!err && daemon)
		err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!err)
		err = add_rules(ctx, names, n);
	if (!err && daemon)
		err = add_arg_rules(ctx);
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	return err;
}

/*
 * The helper: uid 0, which owns the pin dir's and the control socket's directories,
 * no_new_privs, its own short allow-list, and one capability only with a cgroup to
 * remove: CAP_DAC_OVERRIDE, as cgroup2's root directory is 0555 (measured: rmdir of a
 * child as uid 0 without capabilities fails with EACCES).
 */
static int helper_confine(const struct cleanup *c)
{
	const cap_value_t dac = CAP_DAC_OVERRIDE;
	int n = c->cg_dir[0] ? 1 : 0, err;

	err = drop_bounding(&dac, n);
	if (!err)
		err = set_caps(&dac, n);
	if (!err && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		err = -errno;
	if (!err && c->seccomp != SECCOMP_NO)
		err = load_filter(c->seccomp, helper_syscalls,
				  sizeof(helper_syscalls) / sizeof(helper_syscalls[0]), false);
	return err;
}

static void helper_cleanup(const struct cleanup *c)
{
	struct stat st;
	int err;

	if (c->cg_dir[0]) {
		/* The daemon waits for us inside the child: out with it, or rmdir is EBUSY. */
		err = cgroup_move(c->cg_procs, c->daemon);
		if (err && err != -ESRCH)
			pr_warn("cannot move the daemon out of cgroup %s: %s", c->cg_dir,
				strerror(-err));
		if (rmdir(c->cg_dir) && errno != ENOENT)
			pr_warn("cannot remove cgroup %s: %s (remove it with rmdir)", c->cg_dir,
				strerror(errno));
	}
	guard_unpin(c->guard); /* first: the relay's unpin removes the pin dir */
	relay_unpin(c->relay);
	if (c->ctl[0] && !lstat(c->ctl, &st) && st.st_dev == c->ctl_dev &&
	    st.st_ino == c->ctl_ino && unlink(c->ctl))
		pr_warn("cannot remove control socket %s: %s", c->ctl, strerror(errno));
}

/* The helper's life: out of the daemon's cgroup, confined, asleep until the daemon exits. */
static void __attribute__((noreturn)) helper_main(const struct cleanup *c, int fd)
{
	char b;
	int err;

	prctl(PR_SET_NAME, "tunnelgated-rm", 0, 0, 0);
	/* Listeners, maps, the epoll set: none of them may outlive the daemon here. */
	if (fd > 3)
		close_range(3, fd - 1, 0);
	close_range(fd + 1, ~0U, 0);
	err = c->cg_dir[0] ? cgroup_move(c->cg_procs, 0) : 0;
	if (err)
		pr_warn("clean-up helper: cannot leave cgroup %s: %s", c->cg_dir, strerror(-err));
	err = helper_confine(c);
	if (err) {
		pr_warn("clean-up helper: cannot drop its capabilities: %s (the daemon's pins "
			"and cgroup stay at exit: remove them by hand)", strerror(-err));
		_exit(1);
	}
	/* EOF: the daemon exits (priv_exit()) or died. Signals stay blocked, as inherited. */
	while (read(fd, &b, 1) < 0 && errno == EINTR)
		;
	helper_cleanup(c);
	_exit(0);
}

/* What the helper removes: the cgroup child as this process sees it, the pins, the socket. */
static void cleanup_plan(struct gateway *gw, struct cleanup *c)
{
	char link[64], *slash;
	struct stat st;
	ssize_t n = -1;

	c->daemon = getpid();
	c->relay = gw->tunnels.relay;
	c->guard = gw->guard;
	c->seccomp = gw->cfg->seccomp;
	if (gw->cgroup) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", cgroup_fd(gw->cgroup));
		n = readlink(link, c->cg_dir, sizeof(c->cg_dir) - 1);
	}
	c->cg_dir[n > 0 ? n : 0] = '\0';
	slash = strrchr(c->cg_dir, '/');
	if (slash)
		snprintf(c->cg_procs, sizeof(c->cg_procs), "%.*s/cgroup.procs",
			 (int)(slash - c->cg_dir), c->cg_dir);
	else
		c->cg_dir[0] = '\0';
	if (gw->ctl.fd >= 0 && !lstat(gw->ctl_path, &st) && S_ISSOCK(st.st_mode)) {
		snprintf(c->ctl, sizeof(c->ctl), "%s", gw->ctl_path);
		c->ctl_dev = st.st_dev;
		c->ctl_ino = st.st_ino;
	}
}

static int start_helper(struct gateway *gw)
{
	static struct cleanup c; /* PATH_MAX twice: not on the stack */
	int p[2];
	pid_t pid;

	cleanup_plan(gw, &c);
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0)
		helper_main(&c, p[0]);
	close(p[0]);
	priv.helper = pid;
	priv.helper_fd = p[1];
	relay_leave_pins(gw->tunnels.relay); /* the helper's job now */
	guard_leave_pins(gw->guard);
	return 0;
}

/* SIGHUP and SIGUSR1 reopen the access log as `user`: a log root owns (it made it) becomes its. */
static void give_access_log(struct gateway *gw, uid_t uid)
{
	struct stat st;
	int fd;

	if (!gw->access_log || gw->access_log == stderr)
		return;
	fd = fileno(gw->access_log);
	if (!fstat(fd, &st) && S_ISREG(st.st_mode) && st.st_uid == 0 && fchown(fd, uid, -1))
		pr_warn("cannot give access_log %s to user %s: %s (SIGHUP and SIGUSR1 cannot "
			"reopen it)", gw->cfg->access_log, priv.user, strerror(errno));
}

static int switch_user(const struct passwd *pw, const cap_value_t *keep, int n)
{
	int err;

	err = drop_bounding(keep, n);
	if (err)
		return err;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) || initgroups(pw->pw_name, pw->pw_gid) ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid))
		return -errno;
	err = set_caps(keep, n);
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	return err;
}

/* After the switch: what SIGHUP needs must be reachable as `user`. */
static void check_access(const struct gateway *gw)
{
	if (access(gw->cfg_path, R_OK))
		pr_warn("config %s is not readable by user %s (%s): SIGHUP reloads will fail; "
			"make it and its directories readable by %s, or set user = root",
			gw->cfg_path, priv.user, strerror(errno), priv.user);
	if (gw->access_log && gw->access_log != stderr && access(gw->cfg->access_log, W_OK))
		pr_warn("access_log %s is not writable by user %s (%s): SIGHUP and SIGUSR1 keep "
			"the open file instead of reopening it; give %s its directory, or set "
			"user = root",
			gw->cfg->access_log, priv.user, strerror(errno), priv.user);
}

/* Become `user` (root, or already not root: stay). Returns 0 or -errno, logged. */
static int priv_switch(struct gateway *gw)
{
	const struct passwd *found = getpwnam(gw->cfg->user);
	cap_value_t keep[1];
	struct passwd pw;
	char why[256];
	int n, err;

	snprintf(priv.user, sizeof(priv.user), "%s", gw->cfg->user);
	if (getuid() != 0 || geteuid() != 0) {
		if (!found || found->pw_uid != getuid())
			pr_warn("not started as root: staying uid %u (user = %s needs root to switch)",
				getuid(), gw->cfg->user);
		return 0;
	}
	if (!found) {
		pr_warn("user '%s' does not exist: create it (adduser --system %s) or set "
			"another user (user = root keeps all privileges)", gw->cfg->user,
			gw->cfg->user);
		return -ENOENT;
	}
	if (found->pw_uid == 0)
		return 0;
	pw = *found;
	n = kept_caps(gw, keep, why, sizeof(why));
	err = start_helper(gw);
	if (err) {
		pr_warn("cannot fork the clean-up helper: %s", strerror(-err));
		return err;
	}
	give_access_log(gw, pw.pw_uid);
	err = switch_user(&pw, keep, n);
	if (err) {
		pr_warn("cannot switch to user %s (uid %u): %s", gw->cfg->user, pw.pw_uid,
			strerror(-err));
		return err;
	}
	priv.dropped = true;
	pr_info("running as user %s (uid %u, gid %u), capabilities: %s", gw->cfg->user,
		pw.pw_uid, pw.pw_gid, why);
	check_access(gw);
	return 0;
}

int priv_drop(struct gateway *gw)
{
	int err;

	err = priv_switch(gw);
	if (err)
		return err;
	/* Threads started from here on inherit it (and the filter's TSYNC needs it). */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		err = -errno;
		pr_warn("cannot set no_new_privs: %s", strerror(errno));
		return err;
	}
	return 0;
}

int priv_confine(struct gateway *gw)
{
	enum seccomp_mode mode = gw->cfg->seccomp;
	int err;

	if (mode == SECCOMP_NO)
		return 0;
	err = load_filter(mode, daemon_syscalls,
			  sizeof(daemon_syscalls) / sizeof(daemon_syscalls[0]), true);
	if (err) {
		pr_warn("cannot install the seccomp filter: %s (seccomp = no runs without it)",
			strerror(-err));
		return err;
	}
	pr_info("seccomp: %zu syscalls allowed, others %s", sizeof(daemon_syscalls) /
		sizeof(daemon_syscalls[0]) + 3, mode == SECCOMP_LOG ? "logged (seccomp = log)" :
		SANITIZER_BUILD ? "logged (a sanitizer build never kills)" :
		"kill the daemon (the kernel log names them)");
	return 0;
}

void priv_exit(void)
{
	int status = 0;

	if (!priv.helper)
		return;
	close(priv.helper_fd);
	while (waitpid(priv.helper, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		pr_warn("the clean-up helper failed (status %#x): remove the pins and cgroup by "
			"hand if they are left", status);
	priv.helper = 0;
}

/* Can `user` create a file where @path goes (its nearest existing directory)? */
static bool dir_writable(const char *path)
{
	char dir[PATH_MAX], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	while ((slash = strrchr(dir, '/'))) {
		*slash = '\0';
		if (!access(slash == dir ? "/" : dir, F_OK))
			return !access(slash == dir ? "/" : dir, W_OK | X_OK);
		if (slash == dir)
			break;
	}
	return !access(".", W_OK | X_OK);
}

static bool listening_on(const struct gateway *gw, const struct sockaddr_any *a)
{
	for (const struct listener *l = gw->listeners; l; l = l->next)
		if (l->addr.len == a->len && !memcmp(&l->addr.ss, &a->ss, a->len))
			return true;
	return false;
}

int priv_reload_check(const struct gateway *gw, const struct config *cfg)
{
	unsigned long low = sysctl_ul("/proc/sys/net/ipv4/ip_unprivileged_port_start", 1024);
	char name[64];

	if (strcmp(cfg->user, gw->cfg->user) || cfg->seccomp != gw->cfg->seccomp)
		pr_warn("reload: user and seccomp changes take effect on restart only");
	if (!priv.dropped)
		return 0;
	for (unsigned i = 0; i < cfg->nlisten; i++) {
		const struct sockaddr_any *a = &cfg->listen[i];
		unsigned port = ntohs(a->sa.sa_family == AF_INET6 ? a->in6.sin6_port :
				      a->in.sin_port);

		if (port >= low || listening_on(gw, a))
			continue;
		pr_warn("reload refused, keeping the running config: listen %s is below port %lu, "
			"which user %s may not bind: restart the daemon (it binds as root), or "
			"use a port >= %lu", sockaddr_fmt(a, name, sizeof(name)), low, priv.user, low);
		return -EPERM;
	}
	if (strcmp(cfg->bpf_pin_dir, gw->cfg->bpf_pin_dir)) {
		pr_warn("reload refused, keeping the running config: bpf_pin_dir %s needs root "
			"to pin in (the daemon runs as user %s): restart the daemon to change it",
			cfg->bpf_pin_dir, priv.user);
		return -EPERM;
	}
	if (strcmp(cfg->control, gw->ctl_path) && !dir_writable(cfg->control)) {
		pr_warn("reload refused, keeping the running config: user %s cannot create "
			"control socket %s in its directory: restart the daemon, or choose a "
			"directory %s may write", priv.user, cfg->control, priv.user);
		return -EPERM;
	}
	return 0;
}
