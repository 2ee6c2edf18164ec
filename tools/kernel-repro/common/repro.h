/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the sockmap reproducers: TCP pairs, a self-describing byte
 * pattern and a checker that reports gaps and replays in a received stream.
 *
 * Pattern: the byte at stream offset o is byte (o % 8) of the little-endian
 * 64-bit value (o & ~7). Any 16 consecutive received bytes therefore tell
 * which stream offset they came from.
 */
#ifndef REPRO_H
#define REPRO_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "error: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (errno %d: %s)\n", errno, strerror(errno));
	va_end(ap);
	exit(2);
}

static inline uint8_t pat_byte(uint64_t off)
{
	return (uint8_t)((off & ~7ULL) >> (8 * (off & 7)));
}

static inline void pat_fill(uint8_t *buf, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pat_byte(off + i);
}

/* Stream offset the bytes in buf[0..len) come from, or -1 if none fits. */
static inline int64_t pat_locate(const uint8_t *buf, size_t len)
{
	for (size_t s = 0; s < 8 && s + 8 <= len; s++) {
		uint64_t w;

		memcpy(&w, buf + s, 8);
		w = le64toh(w);
		if (w & 7)
			continue;
		if (w < s)
			continue;
		uint64_t q = w - s;
		size_t n = len < 64 ? len : 64, i;

		for (i = 0; i < n && buf[i] == pat_byte(q + i); i++)
			;
		if (i == n)
			return (int64_t)q;
	}
	return -1;
}

/*
 * Receive-side checker. Feed it every received chunk; it compares against the
 * pattern, and on a mismatch finds where the stream resumed and continues from
 * there, counting gaps (bytes skipped) and replays (bytes seen again).
 */
struct checker {
	uint64_t expect;        /* next stream offset expected */
	uint64_t received;      /* bytes received */
	uint64_t gaps, gap_bytes, replays, replay_bytes, garbage;
	uint64_t gap_min, gap_max, replay_min, replay_max;
	int64_t first_off;      /* stream offset of the first discontinuity, -1 none */
	int64_t first_delta;    /* resumed offset minus expected offset there */
	uint64_t first_at_rx;   /* received byte count at the first discontinuity */
	uint8_t tail[64];       /* undecided bytes carried to the next chunk */
	size_t ntail;
	int verbose;
};

static inline void checker_init(struct checker *c)
{
	memset(c, 0, sizeof(*c));
	c->first_off = -1;
}

static inline void checker_event(struct checker *c, int64_t resumed)
{
	int64_t delta = resumed - (int64_t)c->expect;

	if (c->first_off < 0) {
		c->first_off = (int64_t)c->expect;
		c->first_delta = delta;
		c->first_at_rx = c->received;
	}
	if (delta > 0) {
		c->gaps++;
		c->gap_bytes += delta;
		if (!c->gap_min || (uint64_t)delta < c->gap_min)
			c->gap_min = delta;
		if ((uint64_t)delta > c->gap_max)
			c->gap_max = delta;
	} else {
		c->replays++;
		c->replay_bytes += -delta;
		if (!c->replay_min || (uint64_t)-delta < c->replay_min)
			c->replay_min = -delta;
		if ((uint64_t)-delta > c->replay_max)
			c->replay_max = -delta;
	}
	if (c->verbose)
		printf("  discontinuity at stream offset %llu: resumed at %lld (%s %lld bytes)\n",
		       (unsigned long long)c->expect, (long long)resumed,
		       delta > 0 ? "gap of" : "replay of", (long long)(delta > 0 ? delta : -delta));
	c->expect = resumed;
}

/* Process data; at_end forces a decision on any carried bytes. */
static inline void checker_feed(struct checker *c, const uint8_t *data, size_t len, int at_end)
{
	static uint8_t work[1 << 20];
	size_t n = 0, i = 0;

	if (c->ntail)
		memcpy(work, c->tail, c->ntail), n = c->ntail;
	while (len || n) {
		size_t take = sizeof(work) - n;

		if (take > len)
			take = len;
		memcpy(work + n, data, take);
		data += take, len -= take, n += take;
		i = 0;
		while (i < n) {
			if (work[i] == pat_byte(c->expect)) {
				i++, c->expect++, c->received++;
				continue;
			}
			if (n - i < 64 && (len || !at_end))
				break; /* need more bytes to decide */
			int64_t q = pat_locate(work + i, n - i);

			if (q < 0) {
				c->garbage++;
				i++, c->received++, c->expect++;
				continue;
			}
			checker_event(c, q);
		}
		memmove(work, work + i, n - i);
		n -= i;
		if (!len) {
			if (n > sizeof(c->tail))
				n = sizeof(c->tail); /* cannot happen: we break only below 64 */
			memcpy(c->tail, work, n);
			c->ntail = n;
			return;
		}
	}
	c->ntail = 0;
}

static inline void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* A connected TCP pair over 127.0.0.1 (or addr, if given) in the current netns. */
static inline void tcp_pair(const char *listen_ip, const char *connect_ip, int *cli, int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int l, one = 1;

	inet_pton(AF_INET, listen_ip, &a.sin_addr);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		die("socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1))
		die("bind/listen %s", listen_ip);
	getsockname(l, (struct sockaddr *)&a, &al);
	inet_pton(AF_INET, connect_ip, &a.sin_addr);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	if (*cli < 0 || connect(*cli, (struct sockaddr *)&a, sizeof(a)))
		die("connect %s", connect_ip);
	*srv = accept(l, NULL, NULL);
	if (*srv < 0)
		die("accept");
	close(l);
}

/*
 * struct tcp_info as the kernel fills it (glibc's copy stops at
 * tcpi_total_retrans): the fields up to tcpi_rcv_wnd (Linux 6.2+).
 */
struct tcp_info_k {
	struct tcp_info base;   /* glibc part, up to tcpi_total_retrans */
	uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
	uint32_t segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out;
	uint64_t delivery_rate, busy_time, rwnd_limited, sndbuf_limited;
	uint32_t delivered, delivered_ce;
	uint64_t bytes_sent, bytes_retrans;
	uint32_t dsack_dups, reord_seen, rcv_ooopack, snd_wnd, rcv_wnd, rehash;
};

static inline void tcp_info_k(int fd, struct tcp_info_k *ti)
{
	socklen_t l = sizeof(*ti);

	memset(ti, 0, sizeof(*ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &l))
		die("TCP_INFO");
}

static inline void print_kernel(void)
{
	struct utsname u;

	uname(&u);
	printf("kernel: %s %s, %ld CPUs\n", u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN));
}

#endif
