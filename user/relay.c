// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "fsutil.h"
#include "log.h"
#include "relay.h"
#include "relay.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"

struct relay {
	struct relay_bpf *skel;
	struct bpf_link *sockops; /* NULL: pause = hold */
	int socks_fd, ingress_fd, ends_fd, tunnels_fd, released_fd;
	int sndbuf, rcvbuf;       /* forced on relay sockets in pause mode; 0 = leave */
	char pin_dir[256];        /* as config.bpf_pin_dir */
	bool pins_elsewhere;      /* relay_close() leaves the pins (relay_leave_pins()) */
};

/* The maps pinned under pin_dir, by name. */
static struct bpf_map *relay_maps(struct relay *r, int i)
{
	struct bpf_map *m[] = { r->skel->maps.tunnels, r->skel->maps.socks, r->skel->maps.ingress,
				r->skel->maps.ends, r->skel->maps.released };

	return i < (int)(sizeof(m) / sizeof(m[0])) ? m[i] : NULL;
}

static int ensure_bpffs(char *why, size_t whylen)
{
	struct statfs st;

	if (statfs(BPFFS_ROOT, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir(BPFFS_ROOT, 0700) && errno != EEXIST) {
		snprintf(why, whylen, "cannot create %s: %s", BPFFS_ROOT, strerror(errno));
		return -errno;
	}
	if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700")) {
		snprintf(why, whylen, "cannot mount bpffs on %s: %s (run as root)", BPFFS_ROOT,
			 strerror(errno));
		return -errno;
	}
	pr_info("mounted bpffs on %s", BPFFS_ROOT);
	return 0;
}

static void unpin_all(struct relay *r)
{
	char path[PATH_MAX];
	struct bpf_map *m;

	for (int i = 0; (m = relay_maps(r, i)); i++) {
		snprintf(path, sizeof(path), "%s/%s", r->pin_dir, bpf_map__name(m));
		if (unlink(path) && errno != ENOENT)
			pr_warn("cannot remove pin %s: %s", path, strerror(errno));
	}
	if (rmdir(r->pin_dir) && errno != ENOENT)
		pr_warn("cannot remove pin dir %s: %s (remove it by hand)", r->pin_dir,
			strerror(errno));
}

static int pin_all(struct relay *r, char *why, size_t whylen)
{
	char path[PATH_MAX];
	struct bpf_map *m;
	int err, stale = 0;

	for (int i = 0; (m = relay_maps(r, i)); i++) {
		snprintf(path, sizeof(path), "%s/%s", r->pin_dir, bpf_map__name(m));
		/*
		 * A pin left by a daemon that died: ours replaces it. A live one would
		 * have kept its listeners and control socket, which start-up takes first.
		 */
		stale += unlink(path) == 0;
		err = bpf_map__pin(m, path);
		if (err) {
			snprintf(why, whylen, "cannot pin map %s: %s", path, strerror(-err));
			return err;
		}
	}
	if (stale)
		pr_warn("bpf_pin_dir %s held %d stale pins of a daemon that is gone: replaced them",
			r->pin_dir, stale);
	return 0;
}

/*
 * Load the programs; the sockops one only with a cgroup to attach it to. A kernel
 * that refuses the sockops program still gets the verdict relay (pause = hold): the
 * reason goes to @pause_why.
 */
static int relay_load(struct relay *r, int cgroup_fd, char *pause_why, size_t len)
{
	bool pause = cgroup_fd >= 0;
	int err;

	for (;;) {
		r->skel = relay_bpf__open();
		if (!r->skel)
			return -errno;
		bpf_program__set_autoload(r->skel->progs.relay_sockops, pause);
		err = relay_bpf__load(r->skel);
		if (!err || !pause)
			break;
		snprintf(pause_why, len, "the kernel refused the sockops program: %s (-v shows "
			 "libbpf's details)", strerror(-err));
		relay_bpf__destroy(r->skel);
		pause = false;
	}
	if (err) {
		relay_bpf__destroy(r->skel);
		r->skel = NULL;
		return err;
	}
	if (!pause)
		return 0;
	r->sockops = bpf_program__attach_cgroup(r->skel->progs.relay_sockops, cgroup_fd);
	if (!r->sockops) {
		snprintf(pause_why, len, "cannot attach the sockops program to the daemon's "
			 "cgroup: %s", strerror(errno));
		return 0;
	}
	r->skel->bss->pause_enabled = 1;
	return 0;
}

struct relay *relay_open(const char *pin_dir, int cgroup_fd, char *pause_why, char *why,
			 size_t whylen)
{
	struct relay *r;
	int err, prog_fd;

	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(why, whylen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	snprintf(r->pin_dir, sizeof(r->pin_dir), "%s", pin_dir);

	err = relay_load(r, cgroup_fd, pause_why, whylen);
	if (err) {
		snprintf(why, whylen, "cannot load the relay BPF program: %s (run as root on a kernel with BPF sockhash support; -v shows libbpf's details)",
			 strerror(-err));
		goto err_free;
	}
	r->socks_fd = bpf_map__fd(r->skel->maps.socks);
	r->ingress_fd = bpf_map__fd(r->skel->maps.ingress);
	r->ends_fd = bpf_map__fd(r->skel->maps.ends);
	r->tunnels_fd = bpf_map__fd(r->skel->maps.tunnels);
	r->released_fd = bpf_map__fd(r->skel->maps.released);

	prog_fd = bpf_program__fd(r->skel->progs.relay_verdict);
	err = bpf_prog_attach(prog_fd, r->ingress_fd, BPF_SK_SKB_STREAM_VERDICT, 0);
	if (err) {
		err = -errno;
		snprintf(why, whylen, "cannot attach relay verdict: %s", strerror(errno));
		goto err_destroy;
	}

	err = ensure_bpffs(why, whylen);
	if (err)
		goto err_destroy;
	err = mkdir_p(pin_dir, 0700); /* its parents may be plain bpffs dirs */
	if (err) {
		snprintf(why, whylen, "cannot create bpf_pin_dir %s: %s (it must be under %s)",
			 pin_dir, strerror(-err), BPFFS_ROOT);
		goto err_destroy;
	}
	err = pin_all(r, why, whylen);
	if (err)
		goto err_unpin;
	return r;

err_unpin:
	unpin_all(r);
err_destroy:
	bpf_link__destroy(r->sockops);
	relay_bpf__destroy(r->skel);
err_free:
	free(r);
	errno = -err;
	return NULL;
}

void relay_unpin(struct relay *r)
{
	if (r)
		unpin_all(r);
}

void relay_leave_pins(struct relay *r)
{
	if (r)
		r->pins_elsewhere = true;
}

void relay_close(struct relay *r)
{
	if (!r)
		return;
	if (!r->pins_elsewhere)
		unpin_all(r);
	bpf_link__destroy(r->sockops);
	/* Closing the map fds frees the maps and detaches the program with them. */
	relay_bpf__destroy(r->skel);
	free(r);
}

static int sock_cookie(int fd, __u64 *cookie)
{
	socklen_t len = sizeof(*cookie);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) ? -errno : 0;
}

/* Make the verdict program look at bytes that were queued before the socket joined. */
static void kick(int fd)
{
	int one = 1;

	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
}

/*
 * Pause mode: the send buffer is what a paused direction drains from while the daemon
 * resumes it, the receive buffer what arrives at once when it does (autotuned, it
 * grows to tcp_rmem's maximum). SO_SNDBUFFORCE passes wmem_max (CAP_NET_ADMIN).
 */
static void set_bufs(struct relay *r, int fd)
{
	if (r->sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &r->sndbuf, sizeof(int)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &r->sndbuf, sizeof(int));
	if (r->rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &r->rcvbuf, sizeof(int)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r->rcvbuf, sizeof(int));
}

int relay_add(struct relay *r, struct tg_tunnel *t, int cfd, int ufd, uint64_t cookies[2])
{
	LIBBPF_OPTS(bpf_map_batch_opts, batch); /* BPF_ANY: batches take no BPF_NOEXIST;
						  * cookies are never reused */
	struct tg_end ends[2] = {
		{ .tunnel_id = t->id, .dir = TG_DIR_UP },
		{ .tunnel_id = t->id, .dir = TG_DIR_DOWN },
	};
	int fds[2] = { cfd, ufd }, err;
	__u64 keys[2];
	__u32 n = 2;

	for (int i = 0; i < 2; i++) {
		err = sock_cookie(fds[i], &keys[i]);
		if (err)
			return err;
		cookies[i] = keys[i];
		set_bufs(r, fds[i]);
	}
	ends[0].peer_cookie = keys[1];
	ends[1].peer_cookie = keys[0];

	if (bpf_map_update_elem(r->tunnels_fd, &t->id, t, BPF_NOEXIST))
		return -errno;
	if (bpf_map_update_batch(r->ends_fd, keys, ends, &n, &batch) || n != 2)
		goto fail;
	/* Both into `socks` (the redirect targets) before either into `ingress`. */
	for (int i = 0; i < 2; i++) {
		__u32 v = fds[i];

		if (bpf_map_update_elem(r->socks_fd, &keys[i], &v, BPF_NOEXIST))
			goto fail;
	}
	for (int i = 0; i < 2; i++) {
		__u32 v = fds[i];

		if (bpf_map_update_elem(r->ingress_fd, &keys[i], &v, BPF_NOEXIST))
			goto fail;
	}
	kick(cfd);
	kick(ufd);
	return 0;

fail:
	err = -errno;
	/* Once a socket is in `ingress` the verdict may move its bytes before the other fails. */
	relay_read(r, t->id, t);
	relay_remove(r, t->id, cookies, false);
	return err;
}

void relay_remove(struct relay *r, uint64_t id, const uint64_t cookies[2], bool closing)
{
	__u64 keys[2] = { cookies[0], cookies[1] };
	__u32 n = 2;

	for (int i = 0; i < 2 && !closing; i++) {
		/* close() takes a socket out of every sockhash by itself. */
		bpf_map_delete_elem(r->ingress_fd, &keys[i]);
		bpf_map_delete_elem(r->socks_fd, &keys[i]);
	}
	/* One call for both ends; it stops at a missing key, so then one by one. */
	if (bpf_map_delete_batch(r->ends_fd, keys, &n, NULL) || n != 2)
		for (int i = 0; i < 2; i++)
			bpf_map_delete_elem(r->ends_fd, &keys[i]);
	bpf_map_delete_elem(r->tunnels_fd, &id);
}

int relay_read(struct relay *r, uint64_t id, struct tg_tunnel *t)
{
	return bpf_map_lookup_elem(r->tunnels_fd, &id, t) ? -errno : 0;
}

int relay_read_end(struct relay *r, uint64_t cookie, struct tg_end *e)
{
	__u64 key = cookie;

	return bpf_map_lookup_elem(r->ends_fd, &key, e) ? -errno : 0;
}

void relay_set_max_backlog(struct relay *r, uint64_t bytes)
{
	r->skel->data->max_backlog = bytes;
}

int relay_count_copy(struct relay *r, uint64_t id, int dir, uint64_t bytes)
{
	struct tg_copy a = { .tunnel_id = id, .bytes = bytes, .dir = dir };
	LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = &a, .ctx_size_in = sizeof(a));

	if (bpf_prog_test_run_opts(bpf_program__fd(r->skel->progs.relay_count_copy), &run))
		return -errno;
	return 0;
}

int relay_release(struct relay *r, uint64_t cookie, uint64_t total)
{
	__u64 key = cookie, v = total;

	return bpf_map_update_elem(r->released_fd, &key, &v, BPF_ANY) ? -errno : 0;
}

void relay_release_clear(struct relay *r, uint64_t cookie)
{
	__u64 key = cookie;

	bpf_map_delete_elem(r->released_fd, &key);
}

bool relay_pausing(const struct relay *r)
{
	return r->sockops != NULL;
}

/* tcp_rmem's maximum: what an autotuned receive buffer grows to. */
static uint64_t tcp_rmem_max(void)
{
	unsigned long long lo, def, max = 6u << 20;
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_rmem", "r");

	if (f) {
		if (fscanf(f, "%llu %llu %llu", &lo, &def, &max) != 3)
			max = 6u << 20;
		fclose(f);
	}
	return max;
}

void relay_set_bufs(struct relay *r, int sndbuf, int rcvbuf)
{
	r->sndbuf = r->sockops ? sndbuf : 0;
	r->rcvbuf = r->sockops ? rcvbuf : 0;
	/* The kernel doubles what SO_RCVBUF asks for. */
	r->skel->bss->pause_slack = r->rcvbuf ? 2 * (uint64_t)r->rcvbuf : tcp_rmem_max();
}

int relay_resume(struct relay *r, uint64_t cookie, int fd)
{
	__u64 key = cookie;
	__u32 v = fd;

	if (bpf_map_update_elem(r->ingress_fd, &key, &v, BPF_NOEXIST))
		return -errno;
	kick(fd);
	return 0;
}
