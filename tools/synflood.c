// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * synflood: raw TCP SYNs at a fixed rate, for the XDP guard benchmark and tests.
 *
 *   synflood [--rate N] [--duration S] [--batch N] SRC DST:PORT
 *
 * Sends IPv4 TCP SYNs (with an MSS option, like a real client's) from SRC to DST:PORT
 * for --duration seconds at --rate per second, each from a random source port with a
 * random sequence number, through an AF_INET raw socket (IPPROTO_RAW, so IP_HDRINCL:
 * SRC need not be a local address). Batches of --batch go out with one sendmmsg();
 * between batches it sleeps, so a rate it can reach costs it little CPU, and a rate it
 * cannot reach shows as a lower "achieved" figure. Send errors (ENOBUFS when the device
 * is full) are counted, not retried.
 *
 * Prints one line on stdout:
 *   synflood sent N errors E seconds T rate R (target RATE) cpu C from SRC to DST:PORT
 * where N counts the SYNs the kernel took, E the failed sends, R = N / T, and C is its
 * own user + system CPU in seconds (getrusage), which a benchmark subtracts.
 * Exit status 0 if it ran, 1 on a setup error, 2 on bad usage. Needs CAP_NET_RAW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PKT_LEN 44	/* IPv4 header 20 + TCP header 20 + MSS option 4 */
#define BATCH_MAX 256

struct pkt {
	uint8_t b[PKT_LEN];
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: fast, and random enough for ports and sequence numbers. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

/* One SYN from src:sport to dst:dport, both addresses in network order. */
static void build_syn(struct pkt *k, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
		      uint32_t seq)
{
	uint8_t *ip = k->b, *tcp = k->b + 20, pseudo[12];
	uint32_t sum;

	memset(k, 0, sizeof(*k));
	ip[0] = 0x45;
	put16(ip + 2, PKT_LEN);
	ip[8] = 64;	/* TTL */
	ip[9] = IPPROTO_TCP;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	/* id 0 and checksum 0: the kernel fills both for IP_HDRINCL */

	put16(tcp, sport);
	put16(tcp + 2, dport);
	put32(tcp + 4, seq);
	tcp[12] = (24 / 4) << 4;	/* data offset: 24 bytes */
	tcp[13] = 0x02;			/* SYN */
	put16(tcp + 14, 64240);		/* window */
	tcp[20] = 2;			/* MSS option, length 4, 1460 */
	tcp[21] = 4;
	put16(tcp + 22, 1460);

	memcpy(pseudo, &src, 4);
	memcpy(pseudo + 4, &dst, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	put16(pseudo + 10, PKT_LEN - 20);
	sum = csum_add(0, pseudo, sizeof(pseudo));
	sum = csum_add(sum, tcp, PKT_LEN - 20);
	put16(tcp + 16, csum_fold(sum));
}

static void usage(FILE *f)
{
	fprintf(f, "usage: synflood [--rate N] [--duration S] [--batch N] SRC DST:PORT\n"
		   "  --rate N      SYNs per second (default 200000)\n"
		   "  --duration S  seconds to send, may be fractional (default 5)\n"
		   "  --batch N     SYNs per sendmmsg(), 1..%d (default 64)\n"
		   "IPv4 only; SRC is written into the packets as is (raw socket, needs CAP_NET_RAW).\n",
		BATCH_MAX);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "rate", required_argument, NULL, 'r' },
		{ "duration", required_argument, NULL, 'd' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct pkt pkts[BATCH_MAX];
	static struct iovec iov[BATCH_MAX];
	static struct mmsghdr msgs[BATCH_MAX];
	double rate = 200000, duration = 5;
	uint64_t seed, sent = 0, errors = 0, t0, t_end, t;	/* sent: accepted by the kernel */
	struct sockaddr_in dst = { .sin_family = AF_INET };
	struct in_addr src;
	struct rusage ru;
	unsigned long port;
	char *colon, *end;
	int c, fd, batch = 64;

	while ((c = getopt_long(argc, argv, "r:d:b:h", lo, NULL)) != -1) {
		switch (c) {
		case 'r': rate = strtod(optarg, &end); if (*end || rate <= 0) goto bad; break;
		case 'd': duration = strtod(optarg, &end); if (*end || duration <= 0) goto bad; break;
		case 'b': batch = atoi(optarg); if (batch < 1 || batch > BATCH_MAX) goto bad; break;
		case 'h': usage(stdout); return 0;
		default: goto bad;
		}
	}
	if (argc - optind != 2)
		goto bad;
	colon = strrchr(argv[optind + 1], ':');
	if (!colon || inet_pton(AF_INET, argv[optind], &src) != 1)
		goto bad;
	*colon = '\0';
	port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535 || inet_pton(AF_INET, argv[optind + 1], &dst.sin_addr) != 1)
		goto bad;

	fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0) {
		fprintf(stderr, "synflood: cannot open a raw socket: %s (needs CAP_NET_RAW)\n",
			strerror(errno));
		return 1;
	}
	/* The kernel routes each packet by its IP destination; connect() spares msg_name. */
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
		fprintf(stderr, "synflood: cannot connect the raw socket to %s: %s\n",
			argv[optind + 1], strerror(errno));
		close(fd);
		return 1;
	}
	for (int i = 0; i < BATCH_MAX; i++) {
		iov[i] = (struct iovec){ .iov_base = pkts[i].b, .iov_len = PKT_LEN };
		msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1 };
	}

	seed = now_ns() ^ (uint64_t)getpid() << 32;
	t0 = now_ns();
	t_end = t0 + (uint64_t)(duration * 1e9);
	while ((t = now_ns()) < t_end) {
		uint64_t due = (uint64_t)((double)(t - t0) * rate / 1e9) + 1;
		int n, k;

		if (due <= sent + errors) {
			/* Ahead of schedule: sleep until the next batch is due. */
			uint64_t wake = t0 + (uint64_t)((double)(sent + errors + batch) * 1e9 / rate);
			struct timespec ts;

			if (wake > t_end)
				wake = t_end;
			ts.tv_sec = wake / 1000000000ull;
			ts.tv_nsec = wake % 1000000000ull;
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			continue;
		}
		n = due - sent - errors < (uint64_t)batch ? (int)(due - sent - errors) : batch;
		for (int i = 0; i < n; i++) {
			uint64_t r = rnd(&seed);

			build_syn(&pkts[i], src.s_addr, dst.sin_addr.s_addr,
				  1024 + (uint16_t)(r % (65536 - 1024)), (uint16_t)port, (uint32_t)(r >> 32));
		}
		k = sendmmsg(fd, msgs, n, 0);
		if (k < 0) {
			/* The first message failed; count it and move on (ENOBUFS: device full). */
			if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
				fprintf(stderr, "synflood: sendmmsg: %s\n", strerror(errno));
				close(fd);
				return 1;
			}
			errors++;
			continue;
		}
		sent += k;
		if (k < n)	/* message k failed; the rest of the batch was not tried */
			errors++;
	}
	t = now_ns();
	close(fd);
	getrusage(RUSAGE_SELF, &ru);
	printf("synflood sent %llu errors %llu seconds %.3f rate %.0f (target %.0f) cpu %.3f from %s to %s:%lu\n",
	       (unsigned long long)sent, (unsigned long long)errors, (double)(t - t0) / 1e9,
	       (double)sent * 1e9 / (double)(t - t0), rate,
	       ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
	       argv[optind],
	       argv[optind + 1], port);
	return 0;
bad:
	usage(stderr);
	return 2;
}
