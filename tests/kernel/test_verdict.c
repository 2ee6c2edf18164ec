// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The relay's verdict program on real sockets. In a network namespace of its own, the
 * test opens two TCP connections on loopback, client <-> gw[UP] and gw[DOWN] <->
 * origin, and puts the two gateway-side sockets into the relay's maps as relay_add()
 * does. Then it checks, with bytes that carry their own offset (see pattern()):
 *
 *   1. what the client sends arrives at the origin unchanged and in order, and back;
 *   2. the tunnel's counters count exactly those bytes, none of them as copied;
 *   3. with a small max_backlog and an origin that does not read, the verdict holds
 *      bytes on their socket and stops redirecting (a); once the origin reads and the
 *      test releases the held bytes as the daemon's kdir_release() does, the whole
 *      stream arrives in order and the counters add up (b); then new bytes are
 *      redirected again (c), and bytes past max_backlog are held even when the peer
 *      has room (d);
 *   4. out of the sockhashes, a socket relays nothing: its bytes stay readable on it.
 *
 * Needs root (a network namespace, BPF). Prints one "ok" line per check, exits 1 with
 * the reason on the first failure.
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "check.h"
#include "relay_shared.h"
#include "relay_load.h"

#define CHUNK		(64 * 1024)	/* bytes per send() or recv() */
#define IO_ROUNDS	64		/* send() or recv() calls per turn, at most */
#define POLL_MS		5		/* wait per turn of a pump loop */
#define MAX_TURNS	1000000		/* turns of a pump loop, at most */
#define RELAY_BYTES	(1u << 20)	/* check 1: bytes each way */
#define HOLD_BACKLOG	(64u * 1024)	/* check 3: max_backlog */
#define HOLD_BUF	(128 * 1024)	/* check 3: SO_SNDBUF/SO_RCVBUF of every socket */
#define HOLD_BYTES	(8u << 20)	/* check 3: bytes up; several times what stalls */
#define STALL_MS	200		/* the client counts as stalled after this long */
#define RESUME_BYTES	(16 * 1024)	/* check 3c: bytes up, one send under max_backlog */
#define BOUND_BACKLOG	1024		/* check 3d: max_backlog */
#define BOUND_BYTES	8192		/* check 3d: bytes up, one send over max_backlog */
#define UNLINK_BYTES	4096		/* check 4: bytes each way */

/* The relay's maps and programs, as relay_open() sets them up. */
static struct relay_maps rl;

/* A tunnel: client <-> gw[TG_DIR_UP] (relay) gw[TG_DIR_DOWN] <-> origin. */
struct tunnel {
	__u64 id;
	int client, origin;
	int gw[2];	 /* gw[d]: the gateway-side socket bytes of direction d arrive on */
	__u64 cookie[2]; /* of gw[] */
};

/* One direction of a tunnel: what was sent and received, and the daemon's release state. */
struct stream {
	int dir;
	__u64 total;	 /* bytes to send */
	__u64 written;	 /* sent by the client (up) or the origin (down) */
	__u64 received;	 /* arrived at the other end, checked */
	bool reading;	 /* the receiving end reads */
	bool release;	 /* the test releases held bytes */
	__u64 peer_base; /* the peer's sent bytes when the tunnel was added */
	__u64 released;	 /* held bytes the test wrote to the peer */
	size_t hold_len, hold_off;
	unsigned char hold[HOLD_BACKLOG];
};


static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/*
 * Byte @off of the stream of direction @dir. Every aligned word differs from the
 * others (a multiplicative hash of its index), so a lost, repeated or reordered run
 * of bytes shows at the first byte it lands on.
 */
static unsigned char pattern(int dir, __u64 off)
{
	__u32 w = (__u32)(off >> 2) * 2654435761u ^ (dir ? 0x5bd1e995u : 0);

	return w >> ((off & 3) * 8);
}

static void fill(unsigned char *buf, int dir, __u64 off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(dir, off + i);
}

static void verify(const unsigned char *buf, int dir, __u64 off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		CHECK(buf[i] == pattern(dir, off + i),
		      "direction %d: byte %llu is 0x%02x, sent 0x%02x (lost, repeated or reordered)",
		      dir, (unsigned long long)(off + i), buf[i], pattern(dir, off + i));
}

/* A network namespace of our own with `lo` up: no other traffic, nothing left behind. */
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

/* Load the programs and attach the verdict to `ingress`, as relay_open() does. */
static void relay_load(void)
{
	const char *failed = relay_maps_load(&rl);

	CHECK(!failed, "%s: %s", failed, strerror(errno));
	/* No sockops program attached: a lagging direction is held, never paused. */
	CHECK(rl.skel->bss->pause_enabled == 0, "pause_enabled is set at load");
}

static struct tg_end end_read(__u64 cookie)
{
	struct tg_end e;

	SYSCHECK(bpf_map_lookup_elem(rl.ends, &cookie, &e));
	return e;
}

static struct tg_tunnel tunnel_read(__u64 id)
{
	struct tg_tunnel t;

	SYSCHECK(bpf_map_lookup_elem(rl.tunnels, &id, &t));
	return t;
}

/* Forced sizes (SO_*BUFFORCE passes wmem_max/rmem_max as root); 0 leaves the default. */
static void set_bufs(int fd, int snd, int rcv)
{
	if (snd)
		SYSCHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd)));
	if (rcv)
		SYSCHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)));
}

/*
 * A connected pair on the loopback address of @family: *@conn connected, *@acc
 * accepted. The sizes go on the listener too, so the accepted socket has them from
 * the handshake on (its window scale depends on them).
 */
static void tcp_pair(int family, int snd, int rcv, int *conn, int *acc)
{
	struct sockaddr_storage ss = { .ss_family = family };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len = family == AF_INET ? sizeof(*sin) : sizeof(*sin6);
	int lfd;

	if (family == AF_INET)
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		sin6->sin6_addr = in6addr_loopback;
	SYSCHECK(lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	set_bufs(lfd, snd, rcv);
	SYSCHECK(bind(lfd, (struct sockaddr *)&ss, len));
	SYSCHECK(listen(lfd, 1));
	SYSCHECK(getsockname(lfd, (struct sockaddr *)&ss, &len));
	SYSCHECK(*conn = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	set_bufs(*conn, snd, rcv);
	SYSCHECK(connect(*conn, (struct sockaddr *)&ss, len));
	SYSCHECK(*acc = accept4(lfd, NULL, NULL, SOCK_CLOEXEC));
	close(lfd);
}

static void tunnel_open(struct tunnel *t, int family, int snd, int rcv)
{
	socklen_t len = sizeof(__u64);

	tcp_pair(family, snd, rcv, &t->client, &t->gw[TG_DIR_UP]);
	tcp_pair(family, snd, rcv, &t->gw[TG_DIR_DOWN], &t->origin);
	for (int d = 0; d < 2; d++)
		SYSCHECK(getsockopt(t->gw[d], SOL_SOCKET, SO_COOKIE, &t->cookie[d], &len));
}

static void tunnel_close(struct tunnel *t)
{
	close(t->client);
	close(t->origin);
	close(t->gw[0]);
	close(t->gw[1]);
}

/* The writing and the reading end of direction @d. */
static int writer(const struct tunnel *t, int d)
{
	return d == TG_DIR_UP ? t->client : t->origin;
}

static int reader(const struct tunnel *t, int d)
{
	return d == TG_DIR_UP ? t->origin : t->client;
}

/* The peer's bytes sent so far: acked plus queued (the daemon's sent_total()). */
static __u64 sent_total(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq = 0;

	SYSCHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len));
	SYSCHECK(ioctl(fd, SIOCOUTQ, &outq));
	return ti.tcpi_bytes_acked + (__u64)outq;
}

/*
 * Hand the tunnel to the kernel as relay_add() does: the tunnel, both ends, both
 * sockets into `socks` (the redirect targets) before either into `ingress`, then
 * SO_RCVLOWAT so the verdict looks at anything queued before.
 */
static void tunnel_add(struct tunnel *t)
{
	LIBBPF_OPTS(bpf_map_batch_opts, batch);
	struct tg_tunnel tv = { .id = t->id };
	struct tg_end ends[2] = {
		{ .tunnel_id = t->id, .dir = TG_DIR_UP, .peer_cookie = t->cookie[1] },
		{ .tunnel_id = t->id, .dir = TG_DIR_DOWN, .peer_cookie = t->cookie[0] },
	};
	__u64 keys[2] = { t->cookie[0], t->cookie[1] };
	__u32 n = 2;
	int one = 1;

	SYSCHECK(bpf_map_update_elem(rl.tunnels, &t->id, &tv, BPF_NOEXIST));
	SYSCHECK(bpf_map_update_batch(rl.ends, keys, ends, &n, &batch));
	CHECK(n == 2, "ends: %u of 2 entries written", n);
	for (int d = 0; d < 2; d++) {
		__u32 fd = t->gw[d];

		SYSCHECK(bpf_map_update_elem(rl.socks, &keys[d], &fd, BPF_NOEXIST));
	}
	for (int d = 0; d < 2; d++) {
		__u32 fd = t->gw[d];

		SYSCHECK(bpf_map_update_elem(rl.ingress, &keys[d], &fd, BPF_NOEXIST));
	}
	for (int d = 0; d < 2; d++)
		SYSCHECK(setsockopt(t->gw[d], SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)));
}

static void stream_init(struct stream *s, const struct tunnel *t, int dir, __u64 total)
{
	memset(s, 0, offsetof(struct stream, hold));
	s->dir = dir;
	s->total = total;
	s->reading = true;
	s->peer_base = sent_total(t->gw[!dir]);
}

/* Send what the socket takes now. Returns the bytes sent. */
static size_t stream_write(const struct tunnel *t, struct stream *s)
{
	unsigned char buf[CHUNK];
	size_t sent = 0;

	for (int i = 0; i < IO_ROUNDS && s->written < s->total; i++) {
		size_t len = s->total - s->written < CHUNK ? s->total - s->written : CHUNK;
		ssize_t n;

		fill(buf, s->dir, s->written, len);
		n = send(writer(t, s->dir), buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		SYSCHECK(n);
		s->written += n;
		sent += n;
	}
	return sent;
}

/* Read what has arrived and check it is the next part of the stream. */
static void stream_read(const struct tunnel *t, struct stream *s)
{
	unsigned char buf[CHUNK];

	for (int i = 0; i < IO_ROUNDS && s->reading; i++) {
		ssize_t n = recv(reader(t, s->dir), buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		SYSCHECK(n);
		CHECK(n > 0, "direction %d: end of stream after %llu bytes", s->dir,
		      (unsigned long long)s->received);
		CHECK(s->received + n <= s->written, "direction %d: %llu bytes arrived, %llu sent",
		      s->dir, (unsigned long long)(s->received + n),
		      (unsigned long long)s->written);
		verify(buf, s->dir, s->received, n);
		s->received += n;
	}
}

/* Account for @n held bytes written to the peer, as hold_flush() and relay_release() do. */
static void release_count(const struct tunnel *t, struct stream *s, __u64 n)
{
	struct tg_copy a = { .tunnel_id = t->id, .bytes = n, .dir = s->dir };
	LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = &a, .ctx_size_in = sizeof(a));
	__u64 key = t->cookie[s->dir];

	s->released += n;
	SYSCHECK(bpf_prog_test_run_opts(bpf_program__fd(rl.skel->progs.relay_count_copy),
					&run));
	SYSCHECK(bpf_map_update_elem(rl.released, &key, &s->released, BPF_ANY));
}

/* Held bytes read at once: max_backlog at most, as the daemon's hold_cap(). */
static size_t hold_cap(const struct stream *s)
{
	__u64 b = rl.skel->data->max_backlog;

	return b && b < sizeof(s->hold) ? (size_t)b : sizeof(s->hold);
}

/* Write held bytes read earlier to the peer, as far as it takes them. */
static void hold_flush(const struct tunnel *t, struct stream *s)
{
	__u64 sent = 0;

	while (s->hold_off < s->hold_len) {
		ssize_t n = send(t->gw[!s->dir], s->hold + s->hold_off, s->hold_len - s->hold_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		SYSCHECK(n);
		s->hold_off += n;
		sent += n;
	}
	if (sent)
		release_count(t, s, sent);
	if (s->hold_off == s->hold_len)
		s->hold_off = s->hold_len = 0;
}

/*
 * The daemon's part for held bytes (kdir_release()): once the peer's send path has
 * taken every byte redirected to it, read the held bytes off the source socket, write
 * them to the peer and record them in `released`. Reading only what SIOCINQ reports (the held
 * queue on a sockhash socket) leaves bytes the verdict has not seen yet alone.
 */
static void release_step(const struct tunnel *t, struct stream *s)
{
	int src = t->gw[s->dir], inq = 0;
	size_t cap = hold_cap(s);
	struct tg_end e;
	__u64 in, out;
	ssize_t n;

	if (!s->hold_len) {
		e = end_read(t->cookie[s->dir]);
		in = e.relayed + s->released;
		out = sent_total(t->gw[!s->dir]) - s->peer_base;
		if (e.held == s->released || in > out)
			return; /* nothing held, or redirected bytes still ahead of them */
		SYSCHECK(ioctl(src, SIOCINQ, &inq));
		if (inq <= 0)
			return; /* held, not readable yet */
		n = recv(src, s->hold, (size_t)inq < cap ? (size_t)inq : cap, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		SYSCHECK(n);
		CHECK(n > 0, "direction %d: end of stream on the held queue", s->dir);
		s->hold_len = n;
	}
	hold_flush(t, s);
}

/* Wait for any progress on the streams' sockets, POLL_MS at most. */
static void pump_wait(const struct tunnel *t, struct stream *s, int ns)
{
	struct pollfd pfd[8];
	int n = 0;

	for (int i = 0; i < ns; i++) {
		pfd[n++] = (struct pollfd){ .fd = writer(t, s[i].dir),
					    .events = s[i].written < s[i].total ? POLLOUT : 0 };
		pfd[n++] = (struct pollfd){ .fd = reader(t, s[i].dir),
					    .events = s[i].reading ? POLLIN : 0 };
		if (s[i].release)
			pfd[n++] = (struct pollfd){ .fd = t->gw[s[i].dir], .events = POLLIN };
		if (s[i].hold_len)
			pfd[n++] = (struct pollfd){ .fd = t->gw[!s[i].dir], .events = POLLOUT };
	}
	SYSCHECK(poll(pfd, n, POLL_MS));
}

/* Run @ns streams of @t until each has arrived whole; fail after @ms. */
static void pump(const struct tunnel *t, struct stream *s, int ns, int ms)
{
	long long deadline = now_ms() + ms;

	for (int turn = 0; turn < MAX_TURNS; turn++) {
		bool done = true;

		for (int i = 0; i < ns; i++) {
			stream_write(t, &s[i]);
			stream_read(t, &s[i]);
			if (s[i].release)
				release_step(t, &s[i]);
			done &= s[i].received == s[i].total;
		}
		if (done)
			return;
		if (now_ms() > deadline)
			break;
		pump_wait(t, s, ns);
	}
	for (int i = 0; i < ns; i++)
		fprintf(stderr, "direction %d: %llu of %llu bytes sent, %llu arrived\n", s[i].dir,
			(unsigned long long)s[i].written, (unsigned long long)s[i].total,
			(unsigned long long)s[i].received);
	FAIL("streams not through within %d ms", ms);
}

/* Checks 1 and 2: RELAY_BYTES each way at once, then the counters. */
static void check_relay(struct tunnel *t, struct stream *s)
{
	struct tg_tunnel tv;
	struct tg_end e;

	/*
	 * Send buffers (8 MiB) and the default max_backlog (4 MiB) far above the 1 MiB
	 * that can be in flight: the verdict never finds the peer lagging, so every byte
	 * is redirected and the counters are exact.
	 */
	tunnel_open(t, AF_INET, 4 << 20, 0);
	stream_init(&s[TG_DIR_UP], t, TG_DIR_UP, RELAY_BYTES);
	stream_init(&s[TG_DIR_DOWN], t, TG_DIR_DOWN, RELAY_BYTES);
	tunnel_add(t);
	pump(t, s, 2, 20000);
	printf("ok 1 - %u bytes each way arrive unchanged and in order (127.0.0.1)\n",
	       RELAY_BYTES);

	tv = tunnel_read(t->id);
	CHECK(tv.bytes_up == RELAY_BYTES && tv.bytes_down == RELAY_BYTES,
	      "tunnel counts %llu up, %llu down; %u sent each way",
	      (unsigned long long)tv.bytes_up, (unsigned long long)tv.bytes_down, RELAY_BYTES);
	CHECK(!tv.copied_up && !tv.copied_down, "tunnel counts %llu up, %llu down as copied",
	      (unsigned long long)tv.copied_up, (unsigned long long)tv.copied_down);
	for (int d = 0; d < 2; d++) {
		e = end_read(t->cookie[d]);
		CHECK(e.relayed == RELAY_BYTES && !e.held && !e.lost,
		      "direction %d: relayed %llu held %llu lost %llu; %u sent", d,
		      (unsigned long long)e.relayed, (unsigned long long)e.held,
		      (unsigned long long)e.lost, RELAY_BYTES);
	}
	printf("ok 2 - bytes_up = bytes_down = %u, copied_up = copied_down = 0\n", RELAY_BYTES);
}

/*
 * The client sends and the origin does not read, until the verdict holds bytes and
 * the client cannot send for STALL_MS. Returns the end entry at that point.
 */
static struct tg_end stall(const struct tunnel *t, struct stream *s)
{
	long long deadline = now_ms() + 10000, last = now_ms();
	struct pollfd pfd = { .fd = t->client, .events = POLLOUT };
	struct tg_end e;

	for (int turn = 0; turn < MAX_TURNS; turn++) {
		if (stream_write(t, s))
			last = now_ms();
		CHECK(s->written < s->total, "all %llu bytes sent, none held: the backlog bound "
		      "did not take hold", (unsigned long long)s->total);
		e = end_read(t->cookie[s->dir]);
		if (e.held && now_ms() - last >= STALL_MS)
			return e;
		CHECK(now_ms() < deadline, "no stall within 10 s: sent %llu, relayed %llu, "
		      "held %llu", (unsigned long long)s->written,
		      (unsigned long long)e.relayed, (unsigned long long)e.held);
		SYSCHECK(poll(&pfd, 1, POLL_MS));
	}
	FAIL("no stall within %d turns", MAX_TURNS);
}

/* Wait up to 2 s until the peer of @s has every byte it took acked: its buffer is free. */
static void drain_wait(const struct tunnel *t, const struct stream *s)
{
	long long deadline = now_ms() + 2000;
	int outq;

	for (;;) {
		SYSCHECK(ioctl(t->gw[!s->dir], SIOCOUTQ, &outq));
		if (!outq)
			return;
		CHECK(now_ms() < deadline, "direction %d: %d bytes unacked after 2 s", s->dir, outq);
		usleep(POLL_MS * 1000);
	}
}

/*
 * After a pump with releases: every byte sent was redirected or held, every held byte
 * released, and the tunnel counts them all, the released ones as copied.
 */
static struct tg_end check_counts(const struct tunnel *t, const struct stream *s)
{
	struct tg_end e = end_read(t->cookie[s->dir]);
	struct tg_tunnel tv = tunnel_read(t->id);

	CHECK(e.held == s->released && e.relayed + e.held == s->total && !e.lost,
	      "relayed %llu + held %llu != %llu sent, or released %llu != held, or lost %llu",
	      (unsigned long long)e.relayed, (unsigned long long)e.held,
	      (unsigned long long)s->total, (unsigned long long)s->released,
	      (unsigned long long)e.lost);
	CHECK(tv.bytes_up == s->total && tv.copied_up == s->released && !tv.bytes_down,
	      "tunnel counts %llu up (%llu copied), %llu down; %llu sent up, %llu released",
	      (unsigned long long)tv.bytes_up, (unsigned long long)tv.copied_up,
	      (unsigned long long)tv.bytes_down, (unsigned long long)s->total,
	      (unsigned long long)s->released);
	return e;
}

/* Check 3a: an origin that does not read; the verdict holds and stops redirecting. */
static void check_hold(struct tunnel *t, struct stream *s)
{
	struct tg_end e0, e1;

	rl.skel->data->max_backlog = HOLD_BACKLOG; /* as relay_set_max_backlog() */
	/* Small buffers everywhere: the stall comes after about 1 MiB. */
	tunnel_open(t, AF_INET6, HOLD_BUF, HOLD_BUF);
	stream_init(s, t, TG_DIR_UP, HOLD_BYTES);
	s->reading = false;
	tunnel_add(t);

	e0 = stall(t, s);
	usleep(100 * 1000);
	e1 = end_read(t->cookie[TG_DIR_UP]);
	CHECK(e1.relayed == e0.relayed, "still redirecting while held: relayed %llu, then %llu",
	      (unsigned long long)e0.relayed, (unsigned long long)e1.relayed);
	CHECK(e1.relayed > 0, "nothing redirected before the origin's buffer filled");
	/* Without the sockops program (pause_enabled 0) the verdict holds, never pauses. */
	CHECK(!e1.pauses && !e1.pause_req, "pause_enabled is 0, yet pauses %llu pause_req %u",
	      (unsigned long long)e1.pauses, e1.pause_req);
	CHECK(!e1.lost, "lost %llu bytes", (unsigned long long)e1.lost);
	printf("ok 3a - origin not reading, max_backlog %u: redirected %llu bytes, then held "
	       "%llu and stopped redirecting (::1)\n", HOLD_BACKLOG,
	       (unsigned long long)e1.relayed, (unsigned long long)e1.held);
}

/* Check 3b: the origin reads, the test releases the held bytes; all arrive in order. */
static void check_release(struct tunnel *t, struct stream *s)
{
	struct tg_end e;

	s->reading = true;
	s->release = true;
	pump(t, s, 1, 30000);
	e = check_counts(t, s);
	printf("ok 3b - released %llu held bytes, all %llu arrive in order; bytes_up %llu, "
	       "copied_up %llu\n", (unsigned long long)s->released,
	       (unsigned long long)s->total, (unsigned long long)s->total,
	       (unsigned long long)e.held);
}

/*
 * Check 3c: once every held byte is released and the peer has room, the verdict
 * redirects again. Under a steady stream it may hold on and on (each release fills
 * the peer's buffer), so this waits for the peer to drain first.
 */
static void check_resume(struct tunnel *t, struct stream *s)
{
	struct tg_end e0, e;

	drain_wait(t, s);
	e0 = end_read(t->cookie[s->dir]);
	s->total += RESUME_BYTES;
	pump(t, s, 1, 5000);
	e = check_counts(t, s);
	CHECK(e.relayed == e0.relayed + RESUME_BYTES && e.held == e0.held,
	      "after the release, %u bytes: relayed %llu -> %llu, held %llu -> %llu",
	      RESUME_BYTES, (unsigned long long)e0.relayed, (unsigned long long)e.relayed,
	      (unsigned long long)e0.held, (unsigned long long)e.held);
	printf("ok 3c - after the release, %u new bytes are redirected again\n", RESUME_BYTES);
}

/*
 * Check 3d: the bound itself. With the peer drained (plenty of room), bytes that
 * would take the backlog past max_backlog are held all the same.
 */
static void check_bound(struct tunnel *t, struct stream *s)
{
	struct tg_end e0, e;

	drain_wait(t, s);
	rl.skel->data->max_backlog = BOUND_BACKLOG;
	e0 = end_read(t->cookie[s->dir]);
	s->total += BOUND_BYTES;
	pump(t, s, 1, 5000);
	e = check_counts(t, s);
	CHECK(e.held == e0.held + BOUND_BYTES && e.relayed == e0.relayed,
	      "max_backlog %u, %u bytes in one send: held %llu -> %llu, relayed %llu -> %llu",
	      BOUND_BACKLOG, BOUND_BYTES, (unsigned long long)e0.held,
	      (unsigned long long)e.held, (unsigned long long)e0.relayed,
	      (unsigned long long)e.relayed);
	rl.skel->data->max_backlog = TG_DEFAULT_MAX_BACKLOG;
	printf("ok 3d - max_backlog %u: %u bytes in one send are held though the peer has "
	       "room, then released in order\n", BOUND_BACKLOG, BOUND_BYTES);
}

/* Wait up to @ms for @n bytes of direction @dir on @fd and check them. */
static void expect_bytes(int fd, int dir, size_t n, int ms)
{
	unsigned char buf[UNLINK_BYTES];
	long long deadline = now_ms() + ms;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	while (got < n) {
		ssize_t r;

		CHECK(now_ms() < deadline, "direction %d: %zu of %zu bytes readable on the "
		      "gateway-side socket after %d ms", dir, got, n, ms);
		SYSCHECK(poll(&pfd, 1, POLL_MS));
		r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		SYSCHECK(r);
		CHECK(r > 0, "direction %d: end of stream on the gateway-side socket", dir);
		got += r;
	}
	verify(buf, dir, 0, n);
}

/* Check 4: out of `ingress` and `socks` (relay_remove()), bytes stay where they arrive. */
static void check_unlink(struct tunnel *t)
{
	unsigned char buf[UNLINK_BYTES];
	struct tg_tunnel before, after;
	struct pollfd pfd;

	/* Tunnel 1 sat in the maps through check 3: nothing of tunnel 2 may show in it. */
	before = tunnel_read(t->id);
	CHECK(before.bytes_up == RELAY_BYTES && before.bytes_down == RELAY_BYTES,
	      "tunnel %llu counts %llu up, %llu down after another tunnel ran",
	      (unsigned long long)t->id, (unsigned long long)before.bytes_up,
	      (unsigned long long)before.bytes_down);
	for (int d = 0; d < 2; d++)
		SYSCHECK(bpf_map_delete_elem(rl.ingress, &t->cookie[d]));
	for (int d = 0; d < 2; d++)
		SYSCHECK(bpf_map_delete_elem(rl.socks, &t->cookie[d]));
	for (int d = 0; d < 2; d++) {
		fill(buf, d, 0, sizeof(buf));
		CHECK(send(writer(t, d), buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL) ==
		      sizeof(buf), "direction %d: send: %s", d, strerror(errno));
		expect_bytes(t->gw[d], d, sizeof(buf), 2000);
		pfd = (struct pollfd){ .fd = reader(t, d), .events = POLLIN };
		CHECK(poll(&pfd, 1, 100) == 0, "direction %d: bytes reached the far end", d);
	}
	after = tunnel_read(t->id);
	CHECK(after.bytes_up == before.bytes_up && after.bytes_down == before.bytes_down,
	      "counters moved after the removal: up %llu -> %llu, down %llu -> %llu",
	      (unsigned long long)before.bytes_up, (unsigned long long)after.bytes_up,
	      (unsigned long long)before.bytes_down, (unsigned long long)after.bytes_down);
	printf("ok 4 - out of the sockhashes, %u bytes each way stay on the gateway-side "
	       "socket\n", UNLINK_BYTES);
}

int main(void)
{
	static struct stream s[2];
	struct tunnel t1 = { .id = 1 }, t2 = { .id = 2 };

	setvbuf(stdout, NULL, _IOLBF, 0);
	netns_enter();
	relay_load();
	check_relay(&t1, s);
	check_hold(&t2, &s[0]);
	check_release(&t2, &s[0]);
	check_resume(&t2, &s[0]);
	check_bound(&t2, &s[0]);
	check_unlink(&t1);
	tunnel_close(&t1);
	tunnel_close(&t2);
	relay_bpf__destroy(rl.skel);
	return 0;
}
