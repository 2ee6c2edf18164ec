// SPDX-License-Identifier: GPL-2.0
/*
 * A receiver whose bytes a stream verdict relays can be left advertising a
 * zero (or sub-MSS) window with an empty receive queue: no window update
 * follows, and the sender waits for its zero-window probe.
 *
 *   S --lo--> R [keep] (+ [verdict: redirect to C] at the drain) ==> C --lo--> D
 *
 * Per cycle: S writes as fast as it can while R, in a sockhash without a
 * program and not read, fills its receive buffer (SO_RCVBUF) until S stalls.
 * Then R's queue is drained in one go:
 *   verdict run: R is added to the sockhash carrying the stream verdict and
 *                SO_RCVLOWAT 1 makes the verdict run over the queued skbs;
 *   control (-0): recv() until EAGAIN.
 * Measured: time from the start of the drain until R's TCP_INFO bytes_received
 * grows again (S resumed). Between cycles S stops, the bytes in flight are
 * relayed (or read), then R leaves the verdict map with no traffic (-f: a
 * fresh S -> R pair per cycle instead).
 * Exit 1 if a cycle waited 100 ms or more, 0 otherwise.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../common/repro.h"
#include "repro.skel.h"

static int fd_s, fd_d, wsize = 65536, stall_ms = 50, reuse = 1;
static atomic_int stop_send, stop_read;
static atomic_ullong d_bytes;

static void *sender(void *arg)
{
	static uint8_t buf[1 << 20];
	struct timeval tv = { .tv_usec = 20000 };

	(void)arg;
	memset(buf, 'x', sizeof(buf));
	setsockopt(fd_s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (double end = now_s() + 30; !atomic_load(&stop_send) && now_s() < end;) {
		ssize_t n = send(fd_s, buf, wsize, MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
	}
	return NULL;
}

static void *reader(void *arg)
{
	static uint8_t buf[1 << 20];

	(void)arg;
	set_nonblock(fd_d, 1);
	for (double end = now_s() + 600; !atomic_load(&stop_read) && now_s() < end;) {
		struct pollfd p = { .fd = fd_d, .events = POLLIN };

		poll(&p, 1, 20);
		ssize_t n = recv(fd_d, buf, sizeof(buf), 0);

		if (n > 0)
			atomic_fetch_add(&d_bytes, n);
		else if (n == 0)
			break;
	}
	return NULL;
}

/* S -> R pair whose R has SO_RCVBUF rcvbuf (set on the listener, so the
 * window scale fits it). */
static void pair_rcvbuf(int rcvbuf, int *s, int *r)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &al))
		die("listener");
	*s = socket(AF_INET, SOCK_STREAM, 0);
	if (*s < 0 || connect(*s, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	*r = accept(l, NULL, NULL);
	if (*r < 0)
		die("accept");
	close(l);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct repro_bpf *skel;
	struct tcp_info_k ri, si;
	pthread_t ts, tr;
	static double delay[1000];
	static uint8_t buf[1 << 20];
	int cycles = 12, rcvbuf = 1 << 20, control = 0, verbose = 0, opt, map_verdict, map_keep;
	int fd_c, fd_r = -1, n_ok = 0, n_timeout = 0;
	__u32 k0 = 0, k1 = 1, v;

	while ((opt = getopt(argc, argv, "n:b:w:s:f0v")) != -1) {
		switch (opt) {
		case 'n': cycles = atoi(optarg); break;
		case 'b': rcvbuf = atoi(optarg); break;
		case 'w': wsize = atoi(optarg); break;
		case 's': stall_ms = atoi(optarg); break; /* how long S must be stalled before the drain */
		case 'f': reuse = 0; break; /* a fresh S -> R pair per cycle */
		case '0': control = 1; break; /* drain with recv() instead of the verdict */
		case 'v': verbose = 1; break;
		default:
			fprintf(stderr, "usage: %s [-n cycles] [-b rcvbuf] [-w write_size] [-s stall_ms] [-f] [-0] [-v]\n", argv[0]);
			return 2;
		}
	}
	if (cycles < 1 || cycles > 1000 || rcvbuf < 4096 || rcvbuf > (64 << 20) ||
	    wsize < 1 || wsize > (int)sizeof(buf) || stall_ms < 1 || stall_ms > 2000)
		die("option out of range");
	print_kernel();
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	skel = repro_bpf__open_and_load();
	if (!skel)
		die("loading the BPF program");
	map_verdict = bpf_map__fd(skel->maps.verdict);
	map_keep = bpf_map__fd(skel->maps.keep);
	if (bpf_prog_attach(bpf_program__fd(skel->progs.relay), map_verdict,
			    BPF_SK_SKB_STREAM_VERDICT, 0))
		die("attaching the stream verdict program");
	tcp_pair("127.0.0.1", "127.0.0.1", &fd_c, &fd_d);
	v = fd_c;
	if (bpf_map_update_elem(map_keep, &k0, &v, BPF_ANY))
		die("insert C");
	pthread_create(&tr, NULL, reader, NULL);

	printf("R: SO_RCVBUF %d, S writes %d bytes per send(), %d cycles, drain by %s\n",
	       rcvbuf, wsize, cycles, control ? "recv() (control)" : "the stream verdict");
	for (int c = 0; c < cycles; c++) {
		uint64_t before, drained = 0, vb0 = skel->bss->bytes;
		double t0, t1, t_arr = -1, stall_t;
		int one = 1;

		if (!reuse || c == 0) {
			pair_rcvbuf(rcvbuf, &fd_s, &fd_r);
			v = fd_r;
			if (bpf_map_update_elem(map_keep, &k1, &v, BPF_ANY))
				die("insert R in keep");
		}
		atomic_store(&stop_send, 0);
		pthread_create(&ts, NULL, sender, NULL);

		/* wait until R's bytes_received has not moved for 50 ms (S stalled) */
		tcp_info_k(fd_r, &ri);
		before = ri.bytes_received;
		stall_t = now_s();
		for (double end = now_s() + 5 + stall_ms / 1e3; now_s() < end;) {
			usleep(1000);
			tcp_info_k(fd_r, &ri);
			if (ri.bytes_received != before) {
				before = ri.bytes_received;
				stall_t = now_s();
			} else if (now_s() - stall_t > stall_ms / 1e3) {
				break;
			}
		}
		tcp_info_k(fd_s, &si);
		if (verbose || c == 0)
			printf("  cycle %d: stalled at R bytes_received %llu; R rcv_wnd %u, S snd_wnd %u, S unacked %u, rcv_mss %u\n",
			       c, (unsigned long long)ri.bytes_received, ri.rcv_wnd, si.snd_wnd,
			       si.base.tcpi_unacked, ri.base.tcpi_rcv_mss);

		t0 = now_s();
		if (control) {
			set_nonblock(fd_r, 1);
			for (int i = 0; i < 100000; i++) {
				ssize_t n = recv(fd_r, buf, sizeof(buf), 0);

				if (n <= 0)
					break;
				drained += n;
			}
		} else {
			if (bpf_map_update_elem(map_verdict, &k0, &v, BPF_ANY))
				die("insert R in verdict");
			if (setsockopt(fd_r, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)))
				die("SO_RCVLOWAT");
		}
		t1 = now_s();
		if (!control)
			drained = skel->bss->bytes - vb0;
		/* wait (up to 3 s) until R receives anything new */
		for (double end = t0 + 3; now_s() < end;) {
			tcp_info_k(fd_r, &ri);
			if (ri.bytes_received > before) {
				t_arr = now_s();
				break;
			}
		}
		if (t_arr < 0) {
			n_timeout++;
			printf("  cycle %d: took %llu bytes in %.2f ms, nothing new arrived within 3 s\n",
			       c, (unsigned long long)drained, (t1 - t0) * 1e3);
		} else {
			delay[n_ok++] = (t_arr - t0) * 1e3;
			if (verbose || c == 0)
				printf("  cycle %d: verdict/recv took %llu bytes in %.2f ms; next bytes on R after %.2f ms\n",
				       c, (unsigned long long)drained, (t1 - t0) * 1e3, (t_arr - t0) * 1e3);
		}
		atomic_store(&stop_send, 1);
		pthread_join(ts, NULL);
		if (reuse && c + 1 < cycles) {
			/* S stopped; let the bytes in flight arrive (and be relayed or
			 * read), then take R out of the verdict map with no traffic */
			for (int i = 0; i < 200; i++) {
				uint64_t b0;

				tcp_info_k(fd_r, &ri);
				b0 = ri.bytes_received;
				usleep(10000);
				if (control)
					while (recv(fd_r, buf, sizeof(buf), MSG_DONTWAIT) > 0)
						;
				tcp_info_k(fd_r, &ri);
				if (ri.bytes_received == b0)
					break;
			}
			bpf_map_delete_elem(map_verdict, &k0);
			set_nonblock(fd_r, 0);
			continue;
		}
		bpf_map_delete_elem(map_verdict, &k0);
		bpf_map_delete_elem(map_keep, &k1);
		close(fd_s);
		close(fd_r);
		usleep(20000);
	}
	atomic_store(&stop_read, 1);
	pthread_join(tr, NULL);

	if (!n_ok) {
		printf("no cycle completed\n");
		return 2;
	}
	qsort(delay, n_ok, sizeof(delay[0]), cmp_dbl);
	int slow = 0;

	for (int i = 0; i < n_ok; i++)
		slow += delay[i] >= 50;
	double med = delay[n_ok / 2];

	printf("delay from drain to next bytes on R over %d cycles: min %.2f ms, median %.2f ms, max %.2f ms; %d of %d >= 50 ms%s\n",
	       n_ok, delay[0], med, delay[n_ok - 1], slow, n_ok,
	       n_timeout ? " (plus cycles without any new bytes in 3 s)" : "");
	if (delay[n_ok - 1] >= 100 || n_timeout) {
		printf("DEFECT: in %d of %d cycles S sent nothing for 50 ms or more after R was %s (up to %.1f ms): R's receive queue was empty but S still had a zero or sub-MSS window\n",
		       slow + n_timeout, cycles, control ? "read" : "drained by the verdict", delay[n_ok - 1]);
		return 1;
	}
	printf("OK: S resumed at most %.2f ms (median %.2f ms) after the %s drained R\n", delay[n_ok - 1], med,
	       control ? "recv()" : "verdict");
	return 0;
}
