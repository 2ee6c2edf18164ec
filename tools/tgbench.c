// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tgbench: load generator for tunnelgate benchmarks.
 *
 * It starts its own origin server on 127.0.0.1 (one epoll thread) and opens tunnels
 * to it, either through an HTTP proxy with CONNECT (--proxy) or straight (--direct,
 * the physical reference). Right after the tunnel is up the client sends a 16-byte
 * command header that tells the origin what to do with the connection: sink N bytes
 * and answer one ack byte, source N bytes, or echo. The header is part of the tunnel
 * payload, so every gateway sees the same bytes.
 *
 * Tests (run in the order given):
 *   b1  bulk: one tunnel, --bytes one way, up then down (Gbit/s); also b5
 *   b2  aggregate: --tunnels tunnels each moving --bytes/--tunnels down (Gbit/s)
 *   b3  latency: 64-byte ping-pong over 1 and over --lat-tunnels tunnels (us)
 *   b4  setup rate: --clients clients doing CONNECT + 64-byte round trip + close
 *   b5  CPU: whole-machine CPU seconds per GiB during a bulk down transfer
 *   b6  idle memory: --idle idle tunnels, daemon RSS (--pid) and kernel memory
 *
 * Every result is one line on stdout, "B<n> <case> <unit> <value>"; human-readable
 * lines go to stderr. Exit status is 0 only when every test passed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_BYTES (1024 * 1024)	/* endpoint write/read size: endpoints are not measured */
#define PATTERN_MOD 251		/* byte at stream offset o is o % 251 */
#define HDR_MAGIC 0x31424754u	/* "TGB1" little endian */
#define HDR_LEN 16
#define MSG_LEN 64		/* latency and setup-rate message size */
#define ECHO_BUF 256
#define HEAD_MAX 4096		/* largest CONNECT response head accepted */
#define ORIGIN_ROUNDS 16	/* syscalls per connection per event: keeps the loop fair */
#define OP_DEADLINE_S 300	/* no single test phase runs longer than this */
#define B4_MAX_ITER 10000000

enum op { OP_SINK = 1, OP_SOURCE = 2, OP_ECHO = 3 };

struct hdr {
	uint32_t magic;
	uint8_t op;
	uint8_t verify;
	uint8_t pad[2];
	uint64_t bytes;
};
_Static_assert(sizeof(struct hdr) == HDR_LEN, "command header is 16 bytes on the wire");

static struct {
	struct sockaddr_in proxy;
	bool direct;
	uint64_t bytes;
	int tunnels;
	int samples;
	int lat_tunnels;
	int clients;
	double duration;
	int idle;
	int pid;
	int timeout_ms;
	int origin_port;
	bool verify;
} opt = {
	.bytes = 1ull << 30,
	.tunnels = 64,
	.samples = 20000,
	.lat_tunnels = 100,
	.clients = 32,
	.duration = 5.0,
	.idle = 10000,
	.timeout_ms = 10000,
};

static struct sockaddr_in origin_addr;
static uint8_t *pattern;	/* IO_BYTES + PATTERN_MOD bytes of the stream pattern */

static void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("tgbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void result(const char *test, const char *cs, const char *unit, double v)
{
	printf("%s %s %s %.3f\n", test, cs, unit, v);
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- origin: one epoll thread serving every connection ---- */

enum ostate { OS_HDR, OS_SINK, OS_SOURCE, OS_ECHO, OS_DONE };

struct oconn {
	int fd;
	enum ostate state;
	bool verify;
	uint8_t hdr[HDR_LEN];
	size_t hdr_got;
	uint64_t left, off;
	uint8_t ebuf[ECHO_BUF];
	size_t elen, eoff;
	bool want_out;	/* an echo answer is waiting for room in the send buffer */
};

static struct {
	int lfd, ep;
	volatile int stop;
	pthread_t tid;
	uint8_t *scratch;
	unsigned long errors;
} origin;

static void oconn_close(struct oconn *c)
{
	close(c->fd);	/* also leaves the epoll set */
	free(c);
}

static void oconn_events(struct oconn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	epoll_ctl(origin.ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* One bounded step of work on @c. Returns 1 to go on, 0 when it would block, -1 closed. */
static int oconn_step(struct oconn *c)
{
	ssize_t n = -1;

	switch (c->state) {
	case OS_HDR: {
		struct hdr h;

		n = recv(c->fd, c->hdr + c->hdr_got, HDR_LEN - c->hdr_got, 0);
		if (n <= 0)
			break;
		c->hdr_got += n;
		if (c->hdr_got < HDR_LEN)
			return 1;
		memcpy(&h, c->hdr, sizeof(h));
		if (h.magic != HDR_MAGIC || h.op < OP_SINK || h.op > OP_ECHO) {
			warnx("origin: bad command header (not a tgbench client, or bytes were corrupted in the tunnel)");
			origin.errors++;
			return -1;
		}
		c->verify = h.verify;
		c->left = h.bytes;
		c->state = h.op == OP_SINK ? OS_SINK : h.op == OP_SOURCE ? OS_SOURCE : OS_ECHO;
		if (c->state == OS_SOURCE)
			oconn_events(c, EPOLLOUT);
		return 1;
	}
	case OS_SINK:
		n = recv(c->fd, origin.scratch, c->left < IO_BYTES ? c->left : IO_BYTES, 0);
		if (n <= 0)
			break;
		if (c->verify && memcmp(origin.scratch, pattern + c->off % PATTERN_MOD, n)) {
			warnx("origin: sink received wrong bytes near offset %" PRIu64, c->off);
			origin.errors++;
			return -1;
		}
		c->off += n;
		c->left -= n;
		if (!c->left) {
			c->state = OS_DONE;
			if (send(c->fd, "K", 1, MSG_NOSIGNAL) != 1)
				return -1;
		}
		return 1;
	case OS_SOURCE:
		n = send(c->fd, pattern + c->off % PATTERN_MOD, c->left < IO_BYTES ? c->left : IO_BYTES,
			 MSG_NOSIGNAL);
		if (n < 0)
			break;
		c->off += n;
		c->left -= n;
		if (!c->left) {
			c->state = OS_DONE;
			oconn_events(c, EPOLLIN);
		}
		return 1;
	case OS_ECHO:
		if (c->eoff == c->elen) {
			n = recv(c->fd, c->ebuf, sizeof(c->ebuf), 0);
			if (n <= 0)
				break;
			c->elen = n;
			c->eoff = 0;
		}
		n = send(c->fd, c->ebuf + c->eoff, c->elen - c->eoff, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN && !c->want_out) {
				c->want_out = true;
				oconn_events(c, EPOLLOUT);
			}
			break;
		}
		c->eoff += n;
		if (c->eoff == c->elen && c->want_out) {
			c->want_out = false;
			oconn_events(c, EPOLLIN);
		}
		return 1;
	case OS_DONE:
		n = recv(c->fd, origin.scratch, IO_BYTES, 0);
		if (n > 0) {
			warnx("origin: %zd unexpected bytes after the transfer", n);
			origin.errors++;
			return -1;
		}
		break;
	}
	if (n < 0 && errno == EAGAIN)
		return 0;
	return -1;	/* EOF or error: the client is gone */
}

static void origin_accept(void)
{
	for (int i = 0; i < 256; i++) {
		struct epoll_event e = { .events = EPOLLIN };
		struct oconn *c;
		int fd = accept4(origin.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN)
				warnx("origin: accept: %s", strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		c->fd = fd;
		e.data.ptr = c;
		if (epoll_ctl(origin.ep, EPOLL_CTL_ADD, fd, &e)) {
			warnx("origin: epoll_ctl: %s", strerror(errno));
			oconn_close(c);
		}
	}
}

static void *origin_main(void *arg)
{
	struct epoll_event ev[256];

	(void)arg;
	while (!origin.stop) {
		int n = epoll_wait(origin.ep, ev, 256, 100);

		for (int i = 0; i < n; i++) {
			struct oconn *c = ev[i].data.ptr;
			int r = 1;

			if (!c) {
				origin_accept();
				continue;
			}
			for (int k = 0; k < ORIGIN_ROUNDS && r == 1; k++)
				r = oconn_step(c);
			if (r < 0)
				oconn_close(c);
		}
	}
	return NULL;
}

/*
 * The origin listens on 127.0.0.1, on --origin-port if given (a proxy that allows
 * CONNECT to named ports only is configured before tgbench starts; SO_REUSEADDR lets
 * the next tgbench of the same run bind it again while connections of the last one
 * are in TIME_WAIT), else on a port the kernel picks.
 */
static int origin_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(opt.origin_port) };
	struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
	socklen_t len = sizeof(a);
	int err;

	origin.scratch = malloc(IO_BYTES);
	if (!origin.scratch)
		return -ENOMEM;
	origin.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (origin.lfd >= 0)
		setsockopt(origin.lfd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
	if (origin.lfd < 0 || bind(origin.lfd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(origin.lfd, 4096) || getsockname(origin.lfd, (struct sockaddr *)&origin_addr, &len)) {
		err = -errno;
		warnx("cannot start the origin on 127.0.0.1:%d: %s", opt.origin_port, strerror(-err));
		return err;
	}
	origin.ep = epoll_create1(EPOLL_CLOEXEC);
	if (origin.ep < 0 || epoll_ctl(origin.ep, EPOLL_CTL_ADD, origin.lfd, &e)) {
		err = -errno;
		warnx("cannot set up the origin's epoll: %s", strerror(-err));
		return err;
	}
	err = -pthread_create(&origin.tid, NULL, origin_main, NULL);
	if (err)
		warnx("cannot start the origin thread: %s", strerror(-err));
	return err;
}

static void origin_stop(void)
{
	origin.stop = 1;
	pthread_join(origin.tid, NULL);
}

/* ---- client side: blocking sockets, every operation under SO_RCVTIMEO/SO_SNDTIMEO ---- */

static int err_of(ssize_t n)
{
	if (n == 0)
		return -ECONNRESET;	/* EOF where bytes were due */
	return errno == EAGAIN ? -ETIMEDOUT : -errno;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0)
			return err_of(n);
		p += n;
		len -= n;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);

		if (n <= 0)
			return err_of(n);
		p += n;
		len -= n;
	}
	return 0;
}

/* Read a response head up to its blank line, no further. 0 on a 2xx, -errno otherwise. */
static int read_head(int fd)
{
	char head[HEAD_MAX + 1];
	size_t len = 0;
	int status;

	while (len < HEAD_MAX) {
		ssize_t n = recv(fd, head + len, 1, 0);

		if (n <= 0) {
			warnx("proxy closed or timed out before answering the CONNECT (%s)",
			      strerror(-err_of(n)));
			return err_of(n);
		}
		len++;
		if (len >= 4 && !memcmp(head + len - 4, "\r\n\r\n", 4))
			break;
	}
	head[len] = '\0';
	if (len >= HEAD_MAX) {
		warnx("proxy answer head longer than %d bytes", HEAD_MAX);
		return -EPROTO;
	}
	if (sscanf(head, "HTTP/1.%*d %d", &status) != 1 || status < 200 || status > 299) {
		warnx("proxy refused the CONNECT: %.*s", (int)strcspn(head, "\r\n"), head);
		return -EPROTO;
	}
	return 0;
}

/* Tell the origin what to do on this tunnel: its first 16 bytes. */
static int send_cmd(int fd, enum op op, uint64_t bytes)
{
	struct hdr h = { .magic = HDR_MAGIC, .op = op, .verify = opt.verify, .bytes = bytes };
	int err = send_all(fd, &h, sizeof(h));

	if (err)
		warnx("cannot send the command header: %s", strerror(-err));
	return err;
}

/*
 * Open a tunnel to the origin. With @op the command header goes too; with op 0 the
 * caller sends it with send_cmd() when its clock starts (a source would otherwise fill
 * every buffer of the path before the measurement).
 */
static int tunnel_open(enum op op, uint64_t bytes, int *out)
{
	struct timeval tv = { .tv_sec = opt.timeout_ms / 1000, .tv_usec = opt.timeout_ms % 1000 * 1000 };
	const struct sockaddr_in *to = opt.direct ? &origin_addr : &opt.proxy;
	int fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		warnx("socket: %s%s", strerror(-err),
		      err == -EMFILE ? " (raise ulimit -n or lower --idle)" : "");
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));	/* bounds connect() too */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to))) {
		err = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		warnx("cannot connect to %s:%d: %s", inet_ntoa(to->sin_addr), ntohs(to->sin_port),
		      strerror(-err));
		goto fail;
	}
	if (!opt.direct) {
		char req[128];
		char *ip = inet_ntoa(origin_addr.sin_addr);
		int port = ntohs(origin_addr.sin_port);
		int n = snprintf(req, sizeof(req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
				 ip, port, ip, port);

		err = send_all(fd, req, n);
		if (err) {
			warnx("cannot send the CONNECT: %s", strerror(-err));
			goto fail;
		}
		err = read_head(fd);
		if (err)
			goto fail;
	}
	if (op && (err = send_cmd(fd, op, bytes)))
		goto fail;
	*out = fd;
	return 0;
fail:
	close(fd);
	return err;
}

/* One MSG_LEN round trip on an echo tunnel; @ns gets its duration. */
static int ping(int fd, uint64_t seq, uint64_t *ns)
{
	uint8_t msg[MSG_LEN], back[MSG_LEN];
	uint64_t t0;
	int err;

	memset(msg, (int)(seq & 0xff), sizeof(msg));
	memcpy(msg, &seq, sizeof(seq));
	t0 = now_ns();
	err = send_all(fd, msg, sizeof(msg));
	if (!err)
		err = recv_all(fd, back, sizeof(back));
	if (ns)
		*ns = now_ns() - t0;
	if (!err && memcmp(msg, back, sizeof(msg))) {
		warnx("echo answer differs from the request (seq %" PRIu64 ")", seq);
		err = -EPROTO;
	}
	return err;
}

/* ---- whole-machine counters ---- */

/* user + system + irq + softirq from /proc/stat, in seconds. */
static int cpu_busy_s(double *out)
{
	unsigned long long user, nice, sys, idle, iowait, irq, softirq;
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -errno;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle, &iowait,
		   &irq, &softirq);
	fclose(f);
	if (n != 7)
		return -EPROTO;
	*out = (double)(user + sys + irq + softirq) / sysconf(_SC_CLK_TCK);
	return 0;
}

/* A "Key: N kB" field of a /proc file, in bytes. */
static int64_t proc_kb(const char *path, const char *key)
{
	size_t klen = strlen(key);
	char line[256];
	int64_t v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 10) * 1024;
			break;
		}
	fclose(f);
	return v;
}

/* Kernel memory the sockets cost: Slab + TCP buffer pages from /proc/net/sockstat. */
static int64_t kernel_mem(void)
{
	int64_t slab = proc_kb("/proc/meminfo", "Slab");
	char line[256];
	long pages = -1;
	FILE *f = fopen("/proc/net/sockstat", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *m = strstr(line, " mem ");

		if (!strncmp(line, "TCP:", 4) && m)
			pages = strtol(m + 5, NULL, 10);
	}
	fclose(f);
	if (slab < 0 || pages < 0)
		return -1;
	return slab + (int64_t)pages * sysconf(_SC_PAGESIZE);
}

static int64_t daemon_rss(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/status", opt.pid);
	return proc_kb(path, "VmRSS");
}

/* ---- B1 / B5: bulk transfer over one tunnel ---- */

static int bulk(bool down, double *secs)
{
	uint8_t *buf = malloc(IO_BYTES);
	uint64_t off = 0;
	double t0, deadline;
	int fd, err;

	if (!buf)
		return -ENOMEM;
	err = tunnel_open(0, 0, &fd);
	if (err)
		goto out;
	t0 = now_s();
	deadline = t0 + OP_DEADLINE_S;
	err = send_cmd(fd, down ? OP_SOURCE : OP_SINK, opt.bytes);
	if (err)
		goto close;
	while (off < opt.bytes && now_s() < deadline) {
		size_t want = opt.bytes - off < IO_BYTES ? opt.bytes - off : IO_BYTES;
		ssize_t n;

		if (down) {
			n = recv(fd, buf, want, 0);
			if (n > 0 && opt.verify && memcmp(buf, pattern + off % PATTERN_MOD, n)) {
				warnx("bulk down: wrong bytes near offset %" PRIu64, off);
				err = -EPROTO;
				goto close;
			}
		} else {
			n = send(fd, pattern + off % PATTERN_MOD, want, MSG_NOSIGNAL);
		}
		if (n <= 0) {
			err = err_of(n);
			warnx("bulk %s: %s after %" PRIu64 " of %" PRIu64 " bytes", down ? "down" : "up",
			      strerror(-err), off, opt.bytes);
			goto close;
		}
		off += n;
	}
	if (off < opt.bytes) {
		warnx("bulk %s: not done within %d s", down ? "down" : "up", OP_DEADLINE_S);
		err = -ETIMEDOUT;
		goto close;
	}
	if (!down) {
		char ack;

		err = recv_all(fd, &ack, 1);
		if (err || ack != 'K') {
			warnx("bulk up: no ack from the origin after the last byte (%s)",
			      err ? strerror(-err) : "wrong byte");
			err = err ?: -EPROTO;
			goto close;
		}
	}
	*secs = now_s() - t0;
close:
	close(fd);
out:
	free(buf);
	return err;
}

static int test_bulk(bool with_b1, bool with_b5)
{
	double secs, c0, c1;
	int err;

	if (with_b1) {
		err = bulk(false, &secs);
		if (err)
			return err;
		result("B1", "up", "gbps", opt.bytes * 8 / secs / 1e9);
		fprintf(stderr, "B1 bulk up:   %.2f MiB in %.3f s = %.2f Gbit/s\n",
			opt.bytes / 1048576.0, secs, opt.bytes * 8 / secs / 1e9);
	}
	if ((err = cpu_busy_s(&c0)))
		warnx("cannot read /proc/stat: %s", strerror(-err));
	err = bulk(true, &secs);
	if (err)
		return err;
	if (with_b1) {
		result("B1", "down", "gbps", opt.bytes * 8 / secs / 1e9);
		fprintf(stderr, "B1 bulk down: %.2f MiB in %.3f s = %.2f Gbit/s\n",
			opt.bytes / 1048576.0, secs, opt.bytes * 8 / secs / 1e9);
	}
	if (with_b5 && !cpu_busy_s(&c1)) {
		double per_gib = (c1 - c0) / (opt.bytes / 1073741824.0);

		result("B5", "down", "cpu_s_per_gib", per_gib);
		fprintf(stderr, "B5 cpu:       %.2f CPU s for the bulk down = %.3f s/GiB (whole machine)\n",
			c1 - c0, per_gib);
	}
	return 0;
}

/* ---- B2: aggregate over many tunnels ---- */

struct agg_thread {
	pthread_t tid;
	pthread_barrier_t *bar;
	int fd;
	uint64_t bytes;
	double end;
	int err;
};

static void *agg_main(void *arg)
{
	struct agg_thread *t = arg;
	uint8_t *buf = malloc(IO_BYTES);
	uint64_t off = 0;
	double deadline;

	pthread_barrier_wait(t->bar);
	deadline = now_s() + OP_DEADLINE_S;
	if (!buf) {
		t->err = -ENOMEM;
		return NULL;
	}
	t->err = send_cmd(t->fd, OP_SOURCE, t->bytes);
	while (!t->err && off < t->bytes && now_s() < deadline) {
		size_t want = t->bytes - off < IO_BYTES ? t->bytes - off : IO_BYTES;
		ssize_t n = recv(t->fd, buf, want, 0);

		if (n <= 0) {
			t->err = err_of(n);
			break;
		}
		if (opt.verify && memcmp(buf, pattern + off % PATTERN_MOD, n)) {
			t->err = -EPROTO;
			break;
		}
		off += n;
	}
	if (!t->err && off < t->bytes)
		t->err = -ETIMEDOUT;
	t->end = now_s();
	free(buf);
	return NULL;
}

static int test_agg(void)
{
	int n = opt.tunnels, started = 0, err = 0;
	struct agg_thread *t = calloc(n, sizeof(*t));
	uint64_t each = opt.bytes / n, total = 0;
	pthread_barrier_t bar;
	double t0, end = 0;

	if (!t)
		return -ENOMEM;
	for (int i = 0; i < n; i++)
		t[i].fd = -1;
	/* Tunnel setup is not part of the figure: open all first, then start together. */
	for (int i = 0; i < n && !err; i++) {
		t[i].bytes = each;
		err = tunnel_open(0, 0, &t[i].fd);
	}
	if (err)
		goto out;
	pthread_barrier_init(&bar, NULL, n + 1);
	for (int i = 0; i < n; i++) {
		t[i].bar = &bar;
		if (pthread_create(&t[i].tid, NULL, agg_main, &t[i]))
			break;
		started++;
	}
	if (started < n) {
		/* The barrier can never open: too few threads. Nothing to join safely. */
		warnx("aggregate: cannot start %d threads (started %d)", n, started);
		exit(1);
	}
	t0 = now_s();
	pthread_barrier_wait(&bar);
	for (int i = 0; i < n; i++) {
		pthread_join(t[i].tid, NULL);
		if (t[i].err && !err) {
			err = t[i].err;
			warnx("aggregate: tunnel %d: %s%s", i, strerror(-err),
			      err == -EPROTO ? " (wrong bytes)" : "");
		}
		total += t[i].bytes;
		if (t[i].end > end)
			end = t[i].end;
	}
	pthread_barrier_destroy(&bar);
	if (!err) {
		result("B2", "down", "gbps", total * 8 / (end - t0) / 1e9);
		fprintf(stderr, "B2 aggregate: %d tunnels, %.2f MiB in %.3f s = %.2f Gbit/s\n", n,
			total / 1048576.0, end - t0, total * 8 / (end - t0) / 1e9);
	}
out:
	for (int i = 0; i < n; i++)
		if (t[i].fd >= 0)
			close(t[i].fd);
	free(t);
	return err;
}

/* ---- B3: latency ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *sorted, int n, double p)
{
	int i = (int)(p / 100.0 * n);

	return sorted[i < n ? i : n - 1] / 1000.0;
}

/* Round robin over @ntun echo tunnels, one request outstanding at a time. */
static int latency(int ntun, const char *name)
{
	int *fds = calloc(ntun, sizeof(int));
	uint64_t *ns = calloc(opt.samples, sizeof(uint64_t));
	int warm = ntun * 2 > 200 ? ntun * 2 : 200, opened = 0, got = 0, err = 0;
	double deadline = now_s() + OP_DEADLINE_S;

	if (!fds || !ns) {
		err = -ENOMEM;
		goto out;
	}
	for (; opened < ntun && !err; opened++)
		err = tunnel_open(OP_ECHO, 0, &fds[opened]);
	if (err) {
		opened--;
		goto out;
	}
	for (int i = 0; i < warm && !err; i++)
		err = ping(fds[i % ntun], i, NULL);
	for (; got < opt.samples && !err && now_s() < deadline; got++)
		err = ping(fds[got % ntun], got, &ns[got]);
	if (err) {
		warnx("latency %s: round trip failed: %s", name, strerror(-err));
		goto out;
	}
	qsort(ns, got, sizeof(*ns), cmp_u64);
	result("B3", name, "p50_us", pct_us(ns, got, 50));
	result("B3", name, "p99_us", pct_us(ns, got, 99));
	result("B3", name, "p999_us", pct_us(ns, got, 99.9));
	fprintf(stderr, "B3 latency %-7s %d samples over %d tunnel(s): p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n",
		name, got, ntun, pct_us(ns, got, 50), pct_us(ns, got, 99), pct_us(ns, got, 99.9));
out:
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	free(fds);
	free(ns);
	return err;
}

static int test_latency(void)
{
	char name[32];
	int err = latency(1, "lat1");

	snprintf(name, sizeof(name), "lat%d", opt.lat_tunnels);
	return err ?: latency(opt.lat_tunnels, name);
}

/* ---- B4: tunnel setup rate ---- */

struct setup_thread {
	pthread_t tid;
	double deadline;
	unsigned long done;
	int err;
};

static void *setup_main(void *arg)
{
	struct setup_thread *t = arg;

	while (now_s() < t->deadline && t->done < B4_MAX_ITER) {
		int fd;

		t->err = tunnel_open(OP_ECHO, 0, &fd);
		if (t->err)
			break;
		t->err = ping(fd, t->done, NULL);
		close(fd);
		if (t->err) {
			warnx("setup: round trip failed: %s", strerror(-t->err));
			break;
		}
		t->done++;
	}
	return NULL;
}

static int test_setup(void)
{
	int n = opt.clients, started = 0, err = 0;
	struct setup_thread *t = calloc(n, sizeof(*t));
	unsigned long total = 0;
	double t0 = now_s(), secs;

	if (!t)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		t[i].deadline = t0 + opt.duration;
		if (pthread_create(&t[i].tid, NULL, setup_main, &t[i])) {
			warnx("setup: cannot start client thread %d", i);
			err = -EAGAIN;
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(t[i].tid, NULL);
		total += t[i].done;
		if (t[i].err && !err)
			err = t[i].err;
	}
	secs = now_s() - t0;
	free(t);
	if (err) {
		warnx("setup: failed after %lu tunnels: %s", total, strerror(-err));
		return err;
	}
	result("B4", "setup", "tunnels_per_s", total / secs);
	fprintf(stderr, "B4 setup:     %d clients, %lu tunnels in %.2f s = %.0f tunnels/s\n", n,
		total, secs, total / secs);
	return 0;
}

/* ---- B6: idle tunnels ---- */

static int test_idle(void)
{
	int k = opt.idle, opened = 0, err = 0;
	int *fds = calloc(k, sizeof(int));
	int64_t rss0 = -1, rss1 = -1, km0, km1;
	double deadline = now_s() + OP_DEADLINE_S;

	if (!fds)
		return -ENOMEM;
	/* A daemon that just started may still be freeing its load-time memory: wait for a
	 * steady RSS (bounded) so the baseline is not inflated. */
	for (int i = 0, steady = 0; opt.pid && i < 50 && steady < 5; i++) {
		int64_t r = daemon_rss();

		steady = r == rss0 ? steady + 1 : 0;
		rss0 = r;
		usleep(100 * 1000);
	}
	if (opt.pid && (rss0 = daemon_rss()) < 0) {
		warnx("idle: cannot read VmRSS of pid %d (is the daemon running?)", opt.pid);
		err = -ESRCH;
		goto out;
	}
	km0 = kernel_mem();
	/* One round trip each, so every tunnel is known to be relaying before we measure. */
	for (; opened < k && now_s() < deadline; opened++) {
		err = tunnel_open(OP_ECHO, 0, &fds[opened]);
		if (err)
			break;
		err = ping(fds[opened], opened, NULL);
		if (err) {
			opened++;
			warnx("idle: round trip on tunnel %d failed: %s", opened, strerror(-err));
			break;
		}
	}
	if (err || opened < k) {
		warnx("idle: only %d of %d tunnels opened", opened, k);
		err = err ?: -ETIMEDOUT;
		goto out;
	}
	sleep(1);	/* let deferred frees and the daemon's bookkeeping settle */
	km1 = kernel_mem();
	if (opt.pid)
		rss1 = daemon_rss();
	if (opt.pid && rss1 >= 0) {
		result("B6", "idle", "daemon_bytes_per_tunnel", (double)(rss1 - rss0) / k);
		fprintf(stderr, "B6 idle:      %d tunnels, daemon RSS %.1f -> %.1f MiB = %.0f bytes/tunnel\n",
			k, rss0 / 1048576.0, rss1 / 1048576.0, (double)(rss1 - rss0) / k);
	}
	if (km0 >= 0 && km1 >= 0) {
		result("B6", "idle", "kernel_bytes_per_tunnel", (double)(km1 - km0) / k);
		fprintf(stderr, "B6 idle:      kernel Slab+TCP mem %.1f -> %.1f MiB = %.0f bytes/tunnel (all sockets of the path)\n",
			km0 / 1048576.0, km1 / 1048576.0, (double)(km1 - km0) / k);
	}
out:
	for (int i = 0; i < opened; i++)
		close(fds[i]);
	free(fds);
	return err;
}

/* ---- main ---- */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (end == s || *end || !v)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	long port;

	if (!colon || colon - s >= (long)sizeof(host))
		return -EINVAL;
	memcpy(host, s, colon - s);
	host[colon - s] = '\0';
	port = strtol(colon + 1, NULL, 10);
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &a->sin_addr) != 1 ||
	    a->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		return -EINVAL;
	return 0;
}

/* Room for the idle tunnels: each costs a client and an origin descriptor. */
static void raise_nofile(void)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)opt.idle * 2 + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_max < want) {
		rl.rlim_max = want;
		if (setrlimit(RLIMIT_NOFILE, &(struct rlimit){ want, want }) == 0)
			return;
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < want) {
		int fit = (int)((rl.rlim_cur - 256) / 2);

		warnx("RLIMIT_NOFILE hard limit %llu (no CAP_SYS_RESOURCE to raise it) fits %d idle tunnels, not %d: using %d",
		      (unsigned long long)rl.rlim_cur, fit, opt.idle, fit);
		opt.idle = fit;
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tgbench (--proxy 127.0.0.1:PORT | --direct) [options] TEST...\n"
		"       tgbench --free-port\n"
		"tests: b1 (bulk up+down, with b5) b2 (aggregate) b3 (latency) b4 (setup rate)\n"
		"       b5 (CPU s/GiB of a bulk down) b6 (idle memory) all (b6 b1 b2 b3 b4)\n"
		"options:\n"
		"  --bytes N        b1/b5 bytes per direction, b2 total (K/M/G suffix; default 1G)\n"
		"  --tunnels N      b2 concurrent tunnels (64)\n"
		"  --samples N      b3 round trips per case (20000)\n"
		"  --lat-tunnels N  b3 tunnels of the round-robin case (100)\n"
		"  --clients N      b4 concurrent clients (32)\n"
		"  --duration S     b4 seconds (5)\n"
		"  --idle N         b6 idle tunnels (10000)\n"
		"  --pid PID        b6: daemon whose VmRSS is measured\n"
		"  --timeout-ms N   every socket operation (10000)\n"
		"  --origin-port N  the origin listens on 127.0.0.1:N (default: a free port)\n"
		"  --verify         check every byte of the pattern (costs CPU: not for figures)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "proxy", required_argument, NULL, 'p' },
		{ "direct", no_argument, NULL, 'd' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "tunnels", required_argument, NULL, 't' },
		{ "samples", required_argument, NULL, 's' },
		{ "lat-tunnels", required_argument, NULL, 'l' },
		{ "clients", required_argument, NULL, 'c' },
		{ "duration", required_argument, NULL, 'D' },
		{ "idle", required_argument, NULL, 'i' },
		{ "pid", required_argument, NULL, 'P' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "origin-port", required_argument, NULL, 'o' },
		{ "verify", no_argument, NULL, 'v' },
		{ "free-port", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	bool have_proxy = false;
	int c, err = 0;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_addr(optarg, &opt.proxy)) {
				warnx("--proxy %s: want 127.0.0.1:PORT (all traffic stays on loopback)", optarg);
				return 2;
			}
			have_proxy = true;
			break;
		case 'd': opt.direct = true; break;
		case 'b':
			if (parse_size(optarg, &opt.bytes)) {
				warnx("--bytes %s: want a positive size such as 1G or 512M", optarg);
				return 2;
			}
			break;
		case 't': opt.tunnels = atoi(optarg); break;
		case 's': opt.samples = atoi(optarg); break;
		case 'l': opt.lat_tunnels = atoi(optarg); break;
		case 'c': opt.clients = atoi(optarg); break;
		case 'D': opt.duration = atof(optarg); break;
		case 'i': opt.idle = atoi(optarg); break;
		case 'P': opt.pid = atoi(optarg); break;
		case 'T': opt.timeout_ms = atoi(optarg); break;
		case 'o':
			opt.origin_port = atoi(optarg);
			if (opt.origin_port < 1 || opt.origin_port > 65535) {
				warnx("--origin-port %s: want a port 1..65535", optarg);
				return 2;
			}
			break;
		case 'v': opt.verify = true; break;
		case 'f': {
			/* A port the kernel just handed out: the bench script's daemons bind it next. */
			struct sockaddr_in a = { .sin_family = AF_INET,
						 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
			socklen_t len = sizeof(a);
			int fd = socket(AF_INET, SOCK_STREAM, 0);

			if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
			    getsockname(fd, (struct sockaddr *)&a, &len)) {
				warnx("cannot find a free port: %s", strerror(errno));
				return 1;
			}
			printf("%d\n", ntohs(a.sin_port));
			return 0;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (have_proxy == opt.direct || optind == argc) {
		usage(stderr);
		return 2;
	}
	if (opt.tunnels < 1 || opt.samples < 1 || opt.lat_tunnels < 1 || opt.clients < 1 ||
	    opt.duration <= 0 || opt.duration > OP_DEADLINE_S || opt.idle < 1 || opt.timeout_ms < 1 ||
	    opt.bytes < (uint64_t)opt.tunnels) {
		warnx("every count and duration must be positive (duration at most %d s, bytes >= tunnels)",
		      OP_DEADLINE_S);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	pattern = malloc(IO_BYTES + PATTERN_MOD);
	if (!pattern)
		return 1;
	for (int i = 0; i < IO_BYTES + PATTERN_MOD; i++)
		pattern[i] = i % PATTERN_MOD;
	if (origin_start())
		return 1;

	for (int i = optind; i < argc && !err; i++) {
		const char *t = argv[i];

		if (!strcmp(t, "all")) {
			err = test_idle();
			err = err ?: test_bulk(true, true);
			err = err ?: test_agg();
			err = err ?: test_latency();
			err = err ?: test_setup();
		} else if (!strcmp(t, "b1")) {
			err = test_bulk(true, true);
		} else if (!strcmp(t, "b2")) {
			err = test_agg();
		} else if (!strcmp(t, "b3")) {
			err = test_latency();
		} else if (!strcmp(t, "b4")) {
			err = test_setup();
		} else if (!strcmp(t, "b5")) {
			err = test_bulk(false, true);
		} else if (!strcmp(t, "b6")) {
			err = test_idle();
		} else {
			warnx("unknown test '%s' (b1..b6 or all)", t);
			err = -EINVAL;
		}
		if (err && err != -EINVAL)
			warnx("test %s failed: %s", t, strerror(-err));
	}
	origin_stop();
	if (origin.errors) {
		warnx("origin saw %lu protocol errors", origin.errors);
		err = err ?: -EPROTO;
	}
	return err ? 1 : 0;
}
