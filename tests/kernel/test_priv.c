// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Which capabilities the daemon needs once it runs as `user` (user/priv.c). Root sets
 * up what start() sets up: the relay's maps and programs, and TCP sockets on loopback
 * in a network namespace of its own. Then a child of uid 65534 holding a given
 * capability set makes every call the relay makes after start-up (relay.c: relay_add,
 * relay_remove, relay_read*, relay_release*, relay_count_copy, relay_resume, set_bufs,
 * kick; kernel_relay.c and tunnel.c: SIOCINQ/SIOCOUTQ), once per set.
 *
 * Prints one line per call and set: "ok" or the errno. Fails when a call that needs no
 * capability today needs one (then priv.c kept_caps() and README.md "Security" must
 * change), or when SO_SNDBUFFORCE/SO_RCVBUFFORCE work without CAP_NET_ADMIN (then the
 * daemon can drop it). Also prints how many 256 KiB splice pipes uid 65534 gets before
 * F_SETPIPE_SZ fails (fs.pipe-user-pages-soft), for the README. Needs root.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "check.h"
#include "relay_shared.h"
#include "relay_load.h"

#define NOBODY		65534
#define FORCE_BYTES	(8 << 20)	/* relay_sndbuf_bytes' default */
#define PIPE_BYTES	(256 * 1024)	/* splice_relay.c SPLICE_PIPE_BYTES */
#define MAX_PIPES	4096

static struct {
	struct relay_maps m;
	int gw[2];	/* the gateway's two relay sockets */
	int peer[2];	/* their far ends */
	__u64 cookie[2];
} rl;

#define RET(call) ((call) ? -errno : 0)

static void netns_enter(void)
{
	struct ifreq ifr = { 0 };
	int fd;

	CHECK(!unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET): %s (run as root)",
	      strerror(errno));
	SYSCHECK(fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	SYSCHECK(ioctl(fd, SIOCGIFFLAGS, &ifr));
	ifr.ifr_flags |= IFF_UP;
	SYSCHECK(ioctl(fd, SIOCSIFFLAGS, &ifr));
	close(fd);
}

static void tcp_pair(int *conn, int *acc)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int lfd;

	SYSCHECK(lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	SYSCHECK(bind(lfd, (struct sockaddr *)&sin, len));
	SYSCHECK(listen(lfd, 1));
	SYSCHECK(getsockname(lfd, (struct sockaddr *)&sin, &len));
	SYSCHECK(*conn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	SYSCHECK(connect(*conn, (struct sockaddr *)&sin, len));
	SYSCHECK(*acc = accept4(lfd, NULL, NULL, SOCK_CLOEXEC));
	close(lfd);
}

/* What relay_open() sets up as root, with the sockops program loaded but not attached. */
static void setup(void)
{
	const char *failed = relay_maps_load(&rl.m);

	CHECK(!failed, "%s: %s", failed, strerror(errno));
	tcp_pair(&rl.peer[0], &rl.gw[0]);
	tcp_pair(&rl.gw[1], &rl.peer[1]);
}

/* ---- the calls, in the order the relay makes them ---- */

static int op_cookie(void)
{
	socklen_t len = sizeof(__u64);

	for (int i = 0; i < 2; i++)
		if (getsockopt(rl.gw[i], SOL_SOCKET, SO_COOKIE, &rl.cookie[i], &len))
			return -errno;
	return 0;
}

static int op_tunnel_add(void)
{
	struct tg_tunnel t = { .id = 1 };

	return RET(bpf_map_update_elem(rl.m.tunnels, &t.id, &t, BPF_ANY));
}

static int op_ends_batch(void)
{
	LIBBPF_OPTS(bpf_map_batch_opts, batch);
	struct tg_end e[2] = { { .tunnel_id = 1, .peer_cookie = rl.cookie[1] },
			       { .tunnel_id = 1, .peer_cookie = rl.cookie[0], .dir = 1 } };
	__u32 n = 2;

	return RET(bpf_map_update_batch(rl.m.ends, rl.cookie, e, &n, &batch));
}

static int sockhash_add(int map)
{
	for (int i = 0; i < 2; i++) {
		__u32 fd = rl.gw[i];

		if (bpf_map_update_elem(map, &rl.cookie[i], &fd, BPF_ANY))
			return -errno;
	}
	return 0;
}

static int op_socks_add(void) { return sockhash_add(rl.m.socks); }
static int op_ingress_add(void) { return sockhash_add(rl.m.ingress); }

static int op_rcvlowat(void)
{
	int one = 1;

	return RET(setsockopt(rl.gw[0], SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)));
}

static int op_lookups(void)
{
	struct tg_tunnel t;
	struct tg_end e;
	__u64 id = 1;

	return RET(bpf_map_lookup_elem(rl.m.tunnels, &id, &t) ||
		   bpf_map_lookup_elem(rl.m.ends, &rl.cookie[0], &e));
}

static int op_count_copy(void)
{
	struct tg_copy a = { .tunnel_id = 1, .bytes = 10 };
	LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = &a, .ctx_size_in = sizeof(a));

	return RET(bpf_prog_test_run_opts(bpf_program__fd(rl.m.skel->progs.relay_count_copy),
					  &run));
}

static int op_released(void)
{
	__u64 v = 10;

	return RET(bpf_map_update_elem(rl.m.released, &rl.cookie[0], &v, BPF_ANY));
}

static int op_queues(void)
{
	int n;

	return RET(ioctl(rl.gw[0], SIOCINQ, &n) || ioctl(rl.gw[0], SIOCOUTQ, &n));
}

static int op_remove(void)
{
	__u64 id = 1;
	__u32 n = 2;
	int err = 0;

	for (int i = 0; i < 2 && !err; i++)
		err = RET(bpf_map_delete_elem(rl.m.ingress, &rl.cookie[i]) ||
			  bpf_map_delete_elem(rl.m.socks, &rl.cookie[i]));
	if (!err)
		err = RET(bpf_map_delete_batch(rl.m.ends, rl.cookie, &n, NULL) ||
			  bpf_map_delete_elem(rl.m.tunnels, &id) ||
			  bpf_map_delete_elem(rl.m.released, &rl.cookie[0]));
	return err;
}

/* Forced past wmem_max/rmem_max, as set_bufs() does: the size must stick. */
static int force_buf(int opt, int get)
{
	int v = FORCE_BYTES, got = 0;
	socklen_t len = sizeof(got);

	if (setsockopt(rl.gw[1], SOL_SOCKET, opt, &v, sizeof(v)))
		return -errno;
	if (getsockopt(rl.gw[1], SOL_SOCKET, get, &got, &len))
		return -errno;
	return got >= 2 * FORCE_BYTES ? 0 : -ERANGE;
}

static int op_sndbufforce(void) { return force_buf(SO_SNDBUFFORCE, SO_SNDBUF); }
static int op_rcvbufforce(void) { return force_buf(SO_RCVBUFFORCE, SO_RCVBUF); }

static const struct op {
	const char *name;
	int (*run)(void);
	bool net_admin;		/* needs CAP_NET_ADMIN, as measured on Linux 6.18 */
} ops[] = {
	{ "getsockopt SO_COOKIE", op_cookie, false },
	{ "tunnels update (BPF_MAP_UPDATE_ELEM)", op_tunnel_add, false },
	{ "ends update (BPF_MAP_UPDATE_BATCH)", op_ends_batch, false },
	{ "socks sockhash insert of a socket fd", op_socks_add, false },
	{ "ingress sockhash insert of a socket fd", op_ingress_add, false },
	{ "setsockopt SO_RCVLOWAT", op_rcvlowat, false },
	{ "tunnels, ends lookup", op_lookups, false },
	{ "BPF_PROG_RUN relay_count_copy (syscall prog)", op_count_copy, false },
	{ "released update", op_released, false },
	{ "ioctl SIOCINQ, SIOCOUTQ", op_queues, false },
	{ "sockhash, ends, tunnels, released delete", op_remove, false },
	{ "SO_SNDBUFFORCE 8 MiB past wmem_max", op_sndbufforce, true },
	{ "SO_RCVBUFFORCE 8 MiB past rmem_max", op_rcvbufforce, true },
};

#define NOPS (int)(sizeof(ops) / sizeof(ops[0]))

/* The daemon's switch (priv.c switch_user()): uid/gid 65534, exactly @caps. */
static void become_nobody(const cap_value_t *caps, int n)
{
	cap_t c = cap_init();

	SYSCHECK(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
	SYSCHECK(setgroups(0, NULL));
	SYSCHECK(setresgid(NOBODY, NOBODY, NOBODY));
	SYSCHECK(setresuid(NOBODY, NOBODY, NOBODY));
	CHECK(c, "cap_init: %s", strerror(errno));
	if (n) {
		SYSCHECK(cap_set_flag(c, CAP_PERMITTED, n, caps, CAP_SET));
		SYSCHECK(cap_set_flag(c, CAP_EFFECTIVE, n, caps, CAP_SET));
	}
	SYSCHECK(cap_set_proc(c));
	cap_free(c);
}

/* 256 KiB pipes uid 65534 gets before F_SETPIPE_SZ says EPERM (all pipes stay open). */
static int pipes_until_eperm(void)
{
	int p[2], i;

	for (i = 0; i < MAX_PIPES; i++) {
		if (pipe2(p, O_CLOEXEC))
			break;
		if (fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES) < 0)
			break;
	}
	return i;
}

/* Run every call as uid 65534 with @caps; results[i] is 0 or -errno. */
static void run_as_nobody(const cap_value_t *caps, int n, int results[NOPS], int *pipes)
{
	int p[2], out[NOPS + 1], status;
	pid_t pid;

	SYSCHECK(pipe(p));
	SYSCHECK(pid = fork());
	if (pid == 0) {
		become_nobody(caps, n);
		for (int i = 0; i < NOPS; i++)
			out[i] = ops[i].run();
		out[NOPS] = n ? -1 : pipes_until_eperm();
		_exit(write(p[1], out, sizeof(out)) == sizeof(out) ? 0 : 1);
	}
	close(p[1]);
	CHECK(read(p[0], out, sizeof(out)) == sizeof(out), "the uid 65534 child reported nothing");
	close(p[0]);
	SYSCHECK(waitpid(pid, &status, 0));
	memcpy(results, out, sizeof(int) * NOPS);
	*pipes = out[NOPS];
}

static void report(const char *set, bool net_admin, const int *res)
{
	for (int i = 0; i < NOPS; i++) {
		bool want_ok = !ops[i].net_admin || net_admin;

		printf("%-4s %-14s %s%s%s\n", res[i] ? "fail" : "ok", set, ops[i].name,
		       res[i] ? ": " : "", res[i] ? strerror(-res[i]) : "");
		if (want_ok)
			CHECK(!res[i], "as uid 65534 with %s, %s failed: %s: the daemon needs another "
			      "capability now (user/priv.c kept_caps(), README.md Security)", set,
			      ops[i].name, strerror(-res[i]));
		else
			CHECK(res[i], "as uid 65534 with %s, %s worked: CAP_NET_ADMIN may no longer "
			      "be needed (user/priv.c kept_caps())", set, ops[i].name);
	}
}

int main(void)
{
	const cap_value_t net_admin = CAP_NET_ADMIN;
	int res[NOPS], pipes, unused;

	setvbuf(stdout, NULL, _IOLBF, 0);
	netns_enter();
	setup();
	run_as_nobody(NULL, 0, res, &pipes);
	report("no caps", false, res);
	run_as_nobody(&net_admin, 1, res, &unused);
	report("CAP_NET_ADMIN", true, res);
	printf("info uid 65534 got %d splice pipes of %d KiB before F_SETPIPE_SZ failed "
	       "(fs.pipe-user-pages-soft, shared by every process of the uid)\n", pipes,
	       PIPE_BYTES / 1024);
	printf("test_priv: ok\n");
	return 0;
}
