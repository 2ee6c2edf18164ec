// SPDX-License-Identifier: GPL-2.0
/*
 * recvmsg() on a socket that left the sockhash carrying its stream verdict
 * while bytes the verdict passed (SK_PASS, psock ingress_msg) are still unread
 * and more bytes sit in its TCP receive queue.
 *
 *   A --lo--> B [keep: no program] [verdict: SK_PASS]
 *
 * 1. A sends N1 bytes; the verdict passes them to B's ingress_msg.
 * 2. B is deleted from `verdict` (it stays in `keep`, so its psock stays).
 * 3. A sends N2 more bytes; they stay in B's TCP receive queue.
 * 4. B is read with recv() until N1 + N2 bytes, EOF, an error or a timeout.
 * Exit 1 if B does not return the N1 + N2 bytes in order, 0 if it does.
 */
#include <getopt.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../common/repro.h"
#include "repro.skel.h"

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

static int inq(int fd)
{
	int v = -1;

	ioctl(fd, SIOCINQ, &v);
	return v;
}

static int outq(int fd)
{
	int v = -1;

	ioctl(fd, SIOCOUTQ, &v);
	return v;
}

/* Wait (bounded) until the peer acknowledged everything fd sent. */
static void wait_acked(int fd, double timeout)
{
	double end = now_s() + timeout;

	while (outq(fd) > 0 && now_s() < end)
		usleep(1000);
}

static int poll_revents(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

	poll(&p, 1, 0);
	return p.revents;
}

/* Print the kernel log records that appeared since kmsg_fd was opened. */
static int kmsg_report(int kmsg_fd, const char *match)
{
	char rec[8192];
	int hits = 0;

	for (int i = 0; i < 10000; i++) {
		ssize_t n = read(kmsg_fd, rec, sizeof(rec) - 1);

		if (n < 0) {
			if (errno == EPIPE)
				continue; /* overwritten records */
			break;            /* EAGAIN: no more */
		}
		rec[n] = 0;
		char *msg = strchr(rec, ';');

		if (!msg || !strstr(msg, match))
			continue;
		msg++;
		char *nl = strchr(msg, '\n');

		if (nl)
			*nl = 0;
		if (hits++ < 3)
			printf("  dmesg: %s\n", msg);
	}
	return hits;
}

int main(int argc, char **argv)
{
	struct repro_bpf *skel;
	struct tcp_info_k ti;
	struct checker chk;
	static uint8_t buf[1 << 16];
	uint64_t n1 = 65536, n2 = 32768, got = 0, got_msg = 0;
	int fd_a, fd_b, map_verdict, map_keep, kmsg_fd, opt, control = 0, dontwait = 0;
	int calls = 0, eof = 0, err = 0, warns, fin = 1, spins = 0;
	size_t chunk = 16384;
	__u32 k0 = 0, v;

	while ((opt = getopt(argc, argv, "a:b:c:dn0")) != -1) {
		switch (opt) {
		case 'a': n1 = strtoull(optarg, NULL, 0); break;
		case 'b': n2 = strtoull(optarg, NULL, 0); break;
		case 'c': chunk = strtoul(optarg, NULL, 0); break;
		case 'd': dontwait = 1; break; /* MSG_DONTWAIT + poll instead of blocking reads */
		case 'n': fin = 0; break;      /* A does not half-close after N2 */
		case '0': control = 1; break;  /* read the passed bytes before the delete */
		default:
			fprintf(stderr, "usage: %s [-a N1] [-b N2] [-c recv_size] [-d] [-n] [-0]\n", argv[0]);
			return 2;
		}
	}
	if (n1 > (1 << 20) || n2 > (1 << 20) || !chunk || chunk > sizeof(buf))
		die("sizes out of range");
	print_kernel();
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	skel = repro_bpf__open_and_load();
	if (!skel)
		die("loading the BPF program");
	map_verdict = bpf_map__fd(skel->maps.verdict);
	map_keep = bpf_map__fd(skel->maps.keep);
	if (bpf_prog_attach(bpf_program__fd(skel->progs.pass), map_verdict,
			    BPF_SK_SKB_STREAM_VERDICT, 0))
		die("attaching the stream verdict program");

	tcp_pair("127.0.0.1", "127.0.0.1", &fd_a, &fd_b);
	v = fd_b;
	if (bpf_map_update_elem(map_keep, &k0, &v, BPF_ANY))
		die("insert B in keep");
	if (bpf_map_update_elem(map_verdict, &k0, &v, BPF_ANY))
		die("insert B in verdict");
	checker_init(&chk);

	printf("1. A sends %llu bytes; the verdict passes them to B (SK_PASS)\n", (unsigned long long)n1);
	send_all(fd_a, 0, n1);
	for (double end = now_s() + 2; skel->bss->bytes < n1 && now_s() < end;)
		usleep(1000);
	wait_acked(fd_a, 2);
	printf("  verdict runs %llu, %llu bytes; B: SIOCINQ %d\n",
	       (unsigned long long)skel->bss->runs, (unsigned long long)skel->bss->bytes, inq(fd_b));
	if (skel->bss->bytes < n1)
		die("the verdict saw only %llu of %llu bytes", (unsigned long long)skel->bss->bytes,
		    (unsigned long long)n1);

	if (control) {
		printf("   (control) B reads the passed bytes while still in the verdict map\n");
		set_nonblock(fd_b, 1);
		for (double end = now_s() + 2; got < n1 && now_s() < end;) {
			ssize_t n = recv(fd_b, buf, n1 - got < chunk ? n1 - got : chunk, 0);

			if (n > 0)
				checker_feed(&chk, buf, n, 0), got += n;
			else if (n == 0)
				break;
			else
				usleep(1000);
		}
		set_nonblock(fd_b, 0);
		printf("   read %llu bytes; B: SIOCINQ %d\n", (unsigned long long)got, inq(fd_b));
		got_msg = got;
	}

	printf("2. B is deleted from the verdict map (it stays in the map without a program)\n");
	if (bpf_map_delete_elem(map_verdict, &k0))
		die("bpf_map_delete_elem");

	printf("3. A sends %llu more bytes%s; they stay in B's TCP receive queue\n",
	       (unsigned long long)n2, fin ? " and half-closes (FIN)" : "");
	send_all(fd_a, n1, n2);
	if (fin && shutdown(fd_a, SHUT_WR))
		die("shutdown");
	wait_acked(fd_a, 2);
	tcp_info_k(fd_b, &ti);
	printf("  A: SIOCOUTQ %d; B: TCP_INFO bytes_received %llu%s (%llu unread), SIOCINQ %d; verdict runs %llu, %llu bytes\n",
	       outq(fd_a), (unsigned long long)ti.bytes_received, fin ? " incl. FIN" : "",
	       (unsigned long long)(ti.bytes_received - fin - got), inq(fd_b),
	       (unsigned long long)skel->bss->runs, (unsigned long long)skel->bss->bytes);

	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);

	printf("4. B reads with recv(%zu bytes%s) until all %llu bytes, EOF, error or 1 s without data\n",
	       chunk, dontwait ? ", MSG_DONTWAIT after poll" : ", blocking, SO_RCVTIMEO 1 s",
	       (unsigned long long)(n1 + n2));
	struct timeval tv = { .tv_sec = 1 };

	setsockopt(fd_b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (double end = now_s() + 10; got < n1 + n2 && calls < 1000 && now_s() < end; calls++) {
		ssize_t n;

		if (dontwait) {
			struct pollfd p = { .fd = fd_b, .events = POLLIN };
			int pr = poll(&p, 1, 1000);

			if (pr == 0) {
				printf("  poll: no POLLIN for 1 s\n");
				err = EAGAIN;
				break;
			}
			n = recv(fd_b, buf, chunk, MSG_DONTWAIT);
		} else {
			n = recv(fd_b, buf, chunk, 0);
		}
		if (n > 0) {
			checker_feed(&chk, buf, n, 0);
			got += n;
			continue;
		}
		int inq_now = inq(fd_b);

		if (n == 0) {
			eof = 1;
			printf("  recv #%d returned 0 (end of stream) after %llu bytes; B: SIOCINQ %d\n",
			       calls + 1, (unsigned long long)got, inq_now);
			break;
		}
		if (errno == EINTR)
			continue;
		err = errno;
		if (errno == EAGAIN && dontwait) {
			/* poll() said POLLIN; count the empty reads, stop after 100 */
			if (++spins < 100)
				continue;
			printf("  poll() reported POLLIN %d times in a row and each recv(MSG_DONTWAIT) failed with EAGAIN, after %llu bytes; B: SIOCINQ %d\n",
			       spins, (unsigned long long)got, inq_now);
			break;
		}
		printf("  recv #%d failed: %s after %llu bytes; B: SIOCINQ %d\n", calls + 1,
		       strerror(errno), (unsigned long long)got, inq_now);
		break;
	}
	checker_feed(&chk, NULL, 0, 1);

	tcp_info_k(fd_b, &ti);
	printf("  B after %d recv calls: read %llu of %llu bytes (%llu read before the delete, %llu after), pattern: %llu gaps, %llu replays, %llu garbage bytes\n",
	       calls, (unsigned long long)got, (unsigned long long)(n1 + n2),
	       (unsigned long long)got_msg, (unsigned long long)(got - got_msg),
	       (unsigned long long)chk.gaps, (unsigned long long)chk.replays,
	       (unsigned long long)chk.garbage);
	printf("  B: TCP_INFO bytes_received %llu%s (%llu unread), SIOCINQ %d, poll revents 0x%x\n",
	       (unsigned long long)ti.bytes_received, fin ? " incl. FIN" : "",
	       (unsigned long long)(ti.bytes_received - fin - got),
	       inq(fd_b), poll_revents(fd_b));
	uint64_t unread = ti.bytes_received - fin - got; /* bytes_received counts the FIN */

	printf("5. B is deleted from the other map too (no psock, plain TCP); one more recv(MSG_DONTWAIT)\n");
	if (bpf_map_delete_elem(map_keep, &k0))
		die("bpf_map_delete_elem keep");
	ssize_t last = recv(fd_b, buf, chunk, MSG_DONTWAIT);

	printf("  recv returned %zd%s%s; B: SIOCINQ %d\n", last, last < 0 ? ": " : "",
	       last < 0 ? strerror(errno) : "", inq(fd_b));
	warns = kmsg_fd >= 0 ? kmsg_report(kmsg_fd, "TCP recvmsg seq # bug") : -1;
	printf("  kernel log: %d \"TCP recvmsg seq # bug\" warning(s) during steps 4-5\n", warns);

	if (got != n1 + n2 || chk.gaps || chk.replays || chk.garbage || warns > 0) {
		printf("DEFECT: B returned %llu of %llu bytes, then %s with %llu received bytes unread; %d \"TCP recvmsg seq # bug\" warning(s)\n",
		       (unsigned long long)got, (unsigned long long)(n1 + n2),
		       eof ? "0 (end of stream)" : err ? strerror(err) : "nothing",
		       (unsigned long long)unread, warns);
		return 1;
	}
	printf("OK: B returned all %llu bytes in order\n", (unsigned long long)(n1 + n2));
	return 0;
}
