// SPDX-License-Identifier: GPL-2.0
/*
 * Data loss when a socket is deleted from the sockhash carrying its
 * sk_skb/stream_verdict program (bpf_map_delete_elem from userspace) while
 * bytes stream into it.
 *
 *   sender A --lo--> B [verdict map, redirect] ==> C --lo--> D receiver
 *
 * A writes a self-describing byte pattern. A toggler thread repeatedly deletes
 * B from the verdict map and inserts it again, then sets SO_RCVLOWAT 1 on B so
 * bytes queued meanwhile are verdicted. D checks the pattern.
 * Exit 1 if D saw a gap (lost bytes), 0 if the stream arrived intact.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../common/repro.h"
#include "repro.skel.h"

static int fd_a, fd_b, fd_c, fd_d, map_verdict;
static double seconds = 5;
static long toggles_max = 100000;
static int pause_us;
static atomic_int sender_done;
static atomic_ullong sent;
static atomic_long toggles;
static double toggle_secs;

static void *sender(void *arg)
{
	static uint8_t buf[65536];
	double end = now_s() + seconds;
	uint64_t off = 0;

	(void)arg;
	while (now_s() < end) {
		pat_fill(buf, off, sizeof(buf));
		ssize_t n = send(fd_a, buf, sizeof(buf), 0);

		if (n <= 0)
			die("send");
		off += n;
		if ((size_t)n < sizeof(buf)) {
			/* keep the pattern aligned to our buffer: resend the rest */
			size_t rest = sizeof(buf) - n;

			while (rest) {
				ssize_t m = send(fd_a, buf + (sizeof(buf) - rest), rest, 0);

				if (m <= 0)
					die("send");
				rest -= m, off += m;
			}
		}
		atomic_store(&sent, off);
	}
	atomic_store(&sender_done, 1);
	return NULL;
}

static void *toggler(void *arg)
{
	__u32 key = 0, val = fd_b;
	int one = 1;

	double t0 = now_s();

	(void)arg;
	while (!atomic_load(&sender_done) && atomic_load(&toggles) < toggles_max) {
		if (bpf_map_delete_elem(map_verdict, &key))
			die("bpf_map_delete_elem");
		if (pause_us)
			usleep(pause_us);
		if (bpf_map_update_elem(map_verdict, &key, &val, BPF_ANY))
			die("bpf_map_update_elem");
		if (setsockopt(fd_b, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)))
			die("SO_RCVLOWAT");
		atomic_fetch_add(&toggles, 1);
	}
	toggle_secs = now_s() - t0;
	return NULL;
}

int main(int argc, char **argv)
{
	struct repro_bpf *skel;
	struct checker chk;
	pthread_t ts, tt;
	static uint8_t buf[1 << 18];
	__u32 k0 = 0, k1 = 1, v;
	int opt, no_toggle = 0, verbose = 0;
	double idle_since;

	while ((opt = getopt(argc, argv, "t:n:p:0v")) != -1) {
		switch (opt) {
		case 't': seconds = atof(optarg); break;
		case 'n': toggles_max = atol(optarg); break;
		case 'p': pause_us = atoi(optarg); break;
		case '0': no_toggle = 1; break; /* control run: no delete/insert */
		case 'v': verbose = 1; break;
		default:
			fprintf(stderr, "usage: %s [-t seconds] [-n max_toggles] [-p pause_us] [-0]\n", argv[0]);
			return 2;
		}
	}
	if (seconds > 60)
		seconds = 60;
	print_kernel();
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	skel = repro_bpf__open_and_load();
	if (!skel)
		die("loading the BPF program");
	map_verdict = bpf_map__fd(skel->maps.verdict);
	if (bpf_prog_attach(bpf_program__fd(skel->progs.relay), map_verdict,
			    BPF_SK_SKB_STREAM_VERDICT, 0))
		die("attaching the stream verdict program");

	tcp_pair("127.0.0.1", "127.0.0.1", &fd_a, &fd_b);
	tcp_pair("127.0.0.1", "127.0.0.1", &fd_c, &fd_d);
	/* C: redirect target. B: also in `out` (no program there), like a relay that
	 * keeps every socket in its target map, so B's psock outlives the delete. */
	v = fd_c;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.out), &k0, &v, BPF_ANY))
		die("insert C");
	v = fd_b;
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.out), &k1, &v, BPF_ANY))
		die("insert B in out");
	if (bpf_map_update_elem(map_verdict, &k0, &v, BPF_ANY))
		die("insert B in verdict");

	checker_init(&chk);
	chk.verbose = verbose;
	pthread_create(&ts, NULL, sender, NULL);
	if (!no_toggle)
		pthread_create(&tt, NULL, toggler, NULL);

	set_nonblock(fd_d, 1);
	idle_since = now_s();
	for (;;) {
		struct pollfd p = { .fd = fd_d, .events = POLLIN };
		int done = atomic_load(&sender_done);

		if (done && chk.received + chk.ntail >= atomic_load(&sent))
			break;
		if (done && now_s() - idle_since > 2.0)
			break; /* everything that will arrive has arrived */
		if (now_s() - idle_since > 10.0)
			break;
		poll(&p, 1, 100);
		ssize_t n = recv(fd_d, buf, sizeof(buf), 0);

		if (n > 0) {
			checker_feed(&chk, buf, n, 0);
			idle_since = now_s();
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			break;
		}
	}
	checker_feed(&chk, NULL, 0, 1);
	pthread_join(ts, NULL);
	if (!no_toggle)
		pthread_join(tt, NULL);

	unsigned long long s = atomic_load(&sent);
	printf("sent %llu bytes, received %llu, %ld delete/insert cycles in %.1f s, verdict runs %llu (%llu bytes)\n",
	       s, (unsigned long long)chk.received, atomic_load(&toggles), toggle_secs,
	       (unsigned long long)skel->bss->runs, (unsigned long long)skel->bss->bytes);
	if (chk.gaps) {
		printf("DEFECT: %llu bytes lost in %llu gaps (sizes %llu..%llu); first gap at stream offset %lld, %lld bytes\n",
		       (unsigned long long)chk.gap_bytes, (unsigned long long)chk.gaps,
		       (unsigned long long)chk.gap_min, (unsigned long long)chk.gap_max,
		       (long long)chk.first_off, (long long)chk.first_delta);
		return 1;
	}
	if (chk.received != s) {
		printf("NO GAP, but the stream is incomplete: %llu of %llu bytes arrived (replays %llu, stall?)\n",
		       (unsigned long long)chk.received, s, (unsigned long long)chk.replays);
		return 1;
	}
	printf("OK: all %llu bytes arrived intact and in order\n", s);
	return 0;
}
