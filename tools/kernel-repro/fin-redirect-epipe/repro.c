// SPDX-License-Identifier: GPL-2.0
/*
 * A FIN reaches the stream verdict as an empty skb; redirected to a peer's
 * egress, the peer's psock reports EPIPE on the peer socket and stops sending.
 *
 *   A --lo--> B [verdict: redirect to C] ==> C --lo--> D
 *   A <--lo-- B <== [verdict: redirect to B] C <--lo-- D
 */
#include <getopt.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../common/repro.h"
#include "repro.skel.h"

#define MiB (1 << 20)

static uint64_t drain(int fd, struct checker *chk, double timeout, uint64_t want, int *eof)
{
	static uint8_t buf[1 << 16];
	double end = now_s() + timeout;
	uint64_t got = 0;

	*eof = 0;
	while (now_s() < end && got < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0) {
			*eof = 1;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			printf("  recv error: %s\n", strerror(errno));
			break;
		}
		got += n;
		if (chk)
			checker_feed(chk, buf, n, 0);
	}
	if (chk)
		checker_feed(chk, NULL, 0, 1);
	return got;
}

static void send_all(int fd, uint64_t off, uint64_t len)
{
	static uint8_t buf[1 << 16];

	while (len) {
		size_t n = len < sizeof(buf) ? len : sizeof(buf);

		pat_fill(buf, off, n);
		for (size_t d = 0; d < n;) {
			ssize_t m = send(fd, buf + d, n - d, 0);

			if (m <= 0)
				die("send");
			d += m;
		}
		off += n, len -= n;
	}
}

static int show_sock(const char *name, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };
	int err = 0;
	socklen_t l = sizeof(err);

	poll(&p, 1, 0);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
	printf("  %s: poll revents=%s%s%s%s%s, SO_ERROR=%d (%s)\n", name,
	       p.revents & POLLIN ? "IN " : "", p.revents & POLLOUT ? "OUT " : "",
	       p.revents & POLLRDHUP ? "RDHUP " : "", p.revents & POLLERR ? "ERR " : "",
	       p.revents & POLLHUP ? "HUP" : "", err, err ? strerror(err) : "none");
	return err;
}

int main(int argc, char **argv)
{
	int fd_a, fd_b, fd_c, fd_d, opt, drop_empty = 0, eof;
	struct repro_bpf *skel;
	struct checker chk;
	__u32 k0 = 0, k1 = 1, v;
	__u64 cookie;
	socklen_t cl = sizeof(cookie);
	uint64_t got;
	int defect = 0;

	while ((opt = getopt(argc, argv, "0")) != -1) {
		switch (opt) {
		case '0': drop_empty = 1; break; /* control: the program drops empty skbs */
		default:
			fprintf(stderr, "usage: %s [-0]\n", argv[0]);
			return 2;
		}
	}
	print_kernel();
	skel = repro_bpf__open_and_load();
	if (!skel)
		die("loading the BPF program");
	skel->bss->drop_empty = drop_empty;
	tcp_pair("127.0.0.1", "127.0.0.1", &fd_a, &fd_b);
	tcp_pair("127.0.0.1", "127.0.0.1", &fd_c, &fd_d);
	if (getsockopt(fd_b, SOL_SOCKET, SO_COOKIE, &cookie, &cl))
		die("SO_COOKIE");
	skel->bss->cookie0 = cookie;
	if (bpf_prog_attach(bpf_program__fd(skel->progs.relay), bpf_map__fd(skel->maps.socks),
			    BPF_SK_SKB_STREAM_VERDICT, 0))
		die("attaching the stream verdict program");
	v = fd_b;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.socks), &k0, &v, BPF_ANY))
		die("insert B");
	v = fd_c;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.socks), &k1, &v, BPF_ANY))
		die("insert C");

	printf("1. A sends 1 MiB; D reads it\n");
	send_all(fd_a, 0, MiB);
	checker_init(&chk);
	got = drain(fd_d, &chk, 5, MiB, &eof);
	printf("  D got %llu bytes, pattern %s\n", (unsigned long long)got,
	       chk.gaps || chk.replays ? "BROKEN" : "intact");
	show_sock("C", fd_c);

	printf("2. A shuts down its write side (FIN, no data with it)\n");
	shutdown(fd_a, SHUT_WR);
	usleep(300 * 1000);
	printf("  verdict on B: %llu runs, %llu bytes, %llu empty skbs, verdict for the empty skb %llu (%s)\n",
	       (unsigned long long)skel->bss->runs[0], (unsigned long long)skel->bss->bytes[0],
	       (unsigned long long)skel->bss->empty[0], (unsigned long long)skel->bss->empty_verdict[0],
	       drop_empty ? "dropped by the program" : skel->bss->empty_verdict[0] == SK_PASS ? "SK_PASS = redirect" : "SK_DROP");
	int c_err = show_sock("C (relay socket toward D)", fd_c);
	show_sock("B (relay socket that got the FIN)", fd_b);

	printf("3. D sends 1 MiB back; A reads it (C -> B direction)\n");
	send_all(fd_d, 0, MiB);
	checker_init(&chk);
	got = drain(fd_a, &chk, 3, MiB, &eof);
	printf("  A got %llu of %d bytes%s\n", (unsigned long long)got, MiB, eof ? ", then EOF" : "");
	if (got != MiB)
		defect |= 4;

	printf("4. The program now keeps bytes arriving on C on C (SK_PASS); D sends 64 KiB, the relay reads C\n");
	skel->bss->pass_c = 1;
	send_all(fd_d, MiB, 65536);
	checker_init(&chk);
	got = drain(fd_c, &chk, 2, 65536, &eof);
	int outq = -1;

	ioctl(fd_d, SIOCOUTQ, &outq);
	printf("  C read %llu of 65536 bytes%s; D's unacknowledged send queue: %d bytes\n",
	       (unsigned long long)got, eof ? ", then EOF" : "", outq);
	printf("  verdict on C: %llu runs, %llu bytes\n", (unsigned long long)skel->bss->runs[1],
	       (unsigned long long)skel->bss->bytes[1]);
	uint64_t lost = 65536 - got;

	printf("5. The relay passes the FIN on itself: shutdown(C, SHUT_WR); D should see EOF\n");
	errno = 0;
	int r = shutdown(fd_c, SHUT_WR);
	printf("  shutdown(C) = %d%s%s\n", r, r ? ", errno " : "", r ? strerror(errno) : "");
	got = drain(fd_d, NULL, 2, 1, &eof);
	printf("  D: %s (%llu extra bytes)\n", eof ? "EOF" : "no EOF within 2 s", (unsigned long long)got);

	if (c_err == EPIPE || lost) {
		printf("DEFECT: after the empty FIN skb was redirected to C, C reported %s (SO_ERROR %d) with its connection healthy, "
		       "and %llu of 65536 bytes the verdict then passed on C were lost (acknowledged to D, never readable)\n",
		       c_err ? strerror(c_err) : "no error", c_err, (unsigned long long)lost);
		return 1;
	}
	printf("OK: the FIN did not disturb C (SO_ERROR %d) and all 65536 bytes passed on C were readable%s\n",
	       c_err, defect ? " (but the reverse direction lost bytes)" : "");
	return defect ? 1 : 0;
}
