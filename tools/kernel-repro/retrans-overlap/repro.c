// SPDX-License-Identifier: GPL-2.0
/*
 * Bytes relayed twice: tcp_read_skb() hands a queued skb whose sequence starts
 * before copied_seq (an overlapping retransmission) to the stream verdict whole.
 *
 *   netns A: sender --veth (netem loss, no SACK)--> netns B: B [verdict, redirect]
 *   ==> C --lo--> D receiver (netns B)
 *
 * The sender writes a self-describing byte pattern; D checks it. The BPF program
 * also counts skbs whose sequence range starts before the end of bytes it was
 * already given. Exit 1 if D received bytes a second time, 0 otherwise.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "../common/repro.h"
#include "repro.skel.h"

static char ns_a[64], ns_b[64];
static int fd_a, fd_b, fd_c, fd_d;
static double seconds = 10;
static uint64_t max_bytes = 64ULL << 20;
static size_t chunk = 700;
static int gap_us = 50;
static atomic_int sender_done;
static atomic_ullong sent;

static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void cleanup(void)
{
	if (ns_a[0])
		sh("ip netns del %s 2>/dev/null", ns_a);
	if (ns_b[0])
		sh("ip netns del %s 2>/dev/null", ns_b);
}

static void on_signal(int sig)
{
	(void)sig;
	cleanup();
	_exit(2);
}

static void enter_ns(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		die("setns %s", name);
	close(fd);
}

static void setup_netns(const char *loss)
{
	snprintf(ns_a, sizeof(ns_a), "krepro-a-%d", getpid());
	snprintf(ns_b, sizeof(ns_b), "krepro-b-%d", getpid());
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (sh("ip netns add %s && ip netns add %s", ns_a, ns_b) ||
	    sh("ip link add kr0 netns %s type veth peer name kr1 netns %s", ns_a, ns_b) ||
	    sh("ip -n %s addr add 10.199.0.1/24 dev kr0 && ip -n %s link set kr0 up && ip -n %s link set lo up",
	       ns_a, ns_a, ns_a) ||
	    sh("ip -n %s addr add 10.199.0.2/24 dev kr1 && ip -n %s link set kr1 up && ip -n %s link set lo up",
	       ns_b, ns_b, ns_b) ||
	    sh("ip netns exec %s sysctl -qw net.ipv4.tcp_sack=0 && ip netns exec %s sysctl -qw net.ipv4.tcp_sack=0",
	       ns_a, ns_b) ||
	    sh("ip netns exec %s iptables -A INPUT -i kr0 -p tcp --tcp-flags SYN NONE "
	       "-m statistic --mode random --probability %s -j DROP", ns_a, loss) ||
	    sh("ip netns exec %s iptables -A INPUT -i kr1 -p tcp --tcp-flags SYN NONE "
	       "-m statistic --mode random --probability %s -j DROP", ns_b, loss))
		die("setting up the network namespaces");
}

static void *sender(void *arg)
{
	static uint8_t buf[65536];
	int one = 1;
	double end = now_s() + seconds;
	uint64_t off = 0;

	(void)arg;
	/* Small segments: a retransmission may merge several of them, some of
	 * which the receiver already has. */
	setsockopt(fd_a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (now_s() < end && off < max_bytes) {
		size_t len = chunk;

		pat_fill(buf, off, len);
		for (size_t done = 0; done < len;) {
			ssize_t n = send(fd_a, buf + done, len - done, 0);

			if (n <= 0)
				die("send");
			done += n;
		}
		off += len;
		atomic_store(&sent, off);
		if (gap_us)
			usleep(gap_us);
	}
	atomic_store(&sender_done, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *loss = "0.05";
	struct repro_bpf *skel;
	struct checker chk;
	pthread_t ts;
	static uint8_t buf[1 << 18];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	__u32 k0 = 0, v;
	int opt, l, one = 1, verbose = 0, control = 0;
	double idle_since;

	while ((opt = getopt(argc, argv, "t:b:l:c:u:0v")) != -1) {
		switch (opt) {
		case 't': seconds = atof(optarg); break;
		case 'b': max_bytes = strtoull(optarg, NULL, 0) << 20; break;
		case 'l': loss = optarg; break;
		case 'u': gap_us = atoi(optarg); break;
		case 'c': chunk = atoi(optarg); if (chunk < 1 || chunk > 65536) chunk = 700; break;
		case '0': control = 1; break; /* control run: no BPF, D reads B directly */
		case 'v': verbose = 1; break;
		default:
			fprintf(stderr, "usage: %s [-t seconds] [-b MiB] [-l drop_probability] [-c write_size] [-u usec_between_writes] [-0] [-v]\n", argv[0]);
			return 2;
		}
	}
	if (seconds > 60)
		seconds = 60;
	print_kernel();
	setup_netns(loss);

	enter_ns(ns_b);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	inet_pton(AF_INET, "10.199.0.2", &sa.sin_addr);
	sa.sin_port = htons(5001);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1))
		die("listen in %s", ns_b);
	enter_ns(ns_a);
	fd_a = socket(AF_INET, SOCK_STREAM, 0);
	enter_ns(ns_b);
	if (fd_a < 0 || connect(fd_a, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect from %s", ns_a);
	fd_b = accept(l, NULL, NULL);
	if (fd_b < 0)
		die("accept");
	close(l);

	if (control) {
		fd_d = fd_b;
		skel = NULL;
	} else {
		tcp_pair("127.0.0.1", "127.0.0.1", &fd_c, &fd_d);
		libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
		skel = repro_bpf__open_and_load();
		if (!skel)
			die("loading the BPF program");
		if (bpf_prog_attach(bpf_program__fd(skel->progs.relay), bpf_map__fd(skel->maps.verdict),
				    BPF_SK_SKB_STREAM_VERDICT, 0))
			die("attaching the stream verdict program");
		v = fd_c;
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.out), &k0, &v, BPF_ANY))
			die("insert C");
		v = fd_b;
		if (bpf_map_update_elem(bpf_map__fd(skel->maps.verdict), &k0, &v, BPF_ANY))
			die("insert B");
	}

	checker_init(&chk);
	chk.verbose = verbose;
	pthread_create(&ts, NULL, sender, NULL);
	set_nonblock(fd_d, 1);
	idle_since = now_s();
	for (;;) {
		struct pollfd p = { .fd = fd_d, .events = POLLIN };
		int done = atomic_load(&sender_done);

		if (done && chk.received + chk.ntail >= atomic_load(&sent))
			break;
		if (now_s() - idle_since > (done ? 5.0 : 15.0))
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

	struct tcp_info ti;
	socklen_t til = sizeof(ti);
	getsockopt(fd_a, IPPROTO_TCP, TCP_INFO, &ti, &til);
	unsigned long long s = atomic_load(&sent);

	printf("sent %llu bytes (sender retransmitted %u segments), received %llu, %s of non-SYN segments dropped each way, SACK off\n",
	       s, ti.tcpi_total_retrans, (unsigned long long)chk.received, loss);
	if (skel)
		printf("verdict: %llu runs, %llu bytes handed to it, %llu skbs started before bytes it had already been given (%llu old bytes)\n",
		       (unsigned long long)skel->bss->runs, (unsigned long long)skel->bss->bytes,
		       (unsigned long long)skel->bss->overlaps, (unsigned long long)skel->bss->overlap_bytes);
	if (skel)
		printf("verdict: copied_seq found ahead of rcv_nxt in %llu runs, by up to %d bytes\n",
		       (unsigned long long)skel->bss->copied_ahead_runs, skel->bss->copied_ahead_max);
	if (skel && skel->bss->overlaps)
		printf("first overlapping skb: seq %u, len %u, first %u bytes already handed over\n",
		       skel->bss->first_overlap_seq, skel->bss->first_overlap_len, skel->bss->first_overlap_old);
	if (chk.replays) {
		printf("DEFECT: receiver got %llu bytes twice in %llu replays (sizes %llu..%llu); first at stream offset %lld, %lld bytes replayed%s\n",
		       (unsigned long long)chk.replay_bytes, (unsigned long long)chk.replays,
		       (unsigned long long)chk.replay_min, (unsigned long long)chk.replay_max,
		       (long long)chk.first_off, (long long)-chk.first_delta,
		       chk.gaps ? " (gaps seen too)" : "");
		return 1;
	}
	if (chk.gaps || chk.received != s) {
		printf("OTHER: no replay, but gaps %llu / received %llu of %llu\n",
		       (unsigned long long)chk.gaps, (unsigned long long)chk.received, s);
		return 3;
	}
	printf("OK: all %llu bytes arrived once, in order (no overlapping retransmission %s)\n", s,
	       skel ? "reached the verdict" : "was mis-read");
	return 0;
}
