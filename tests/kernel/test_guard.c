// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The XDP listener guard (bpf/guard.bpf.c) on packet tables, katran style: each row a
 * description, a frame built from its layers (tests/kernel/pkt.h) and the expected
 * verdict and counter. Every frame runs through BPF_PROG_TEST_RUN; a row passes when
 * the verdict matches, exactly its counter in guard_stats went up by one, and the
 * frame came back unchanged.
 *
 *   1. parsing: untagged, 802.1Q, 802.1ad and QinQ frames, IPv4 with options, IPv6
 *      with extension headers, fragments, non-TCP, ports not listened on, and frames
 *      cut short at every layer;
 *   2. the deny trie: prefix boundaries for IPv4 and IPv6, both families in one trie,
 *      entries deleted at run time;
 *   3. the SYN rate limit: a burst passes and the next SYN drops, other sources and
 *      non-SYN segments pass, IPv6 sources share a /64, tiny fragments are charged,
 *      the bucket refills with time and follows guard_config changes, and one
 *      source's SYNs on every CPU at once get no more than the bucket allows.
 *
 * Frames under 14 bytes cannot be fed (BPF_PROG_TEST_RUN wants an Ethernet header):
 * those rows print "skip" with the reason. Needs root (BPF). Prints "ok" or "not ok"
 * per check and exits 1 if any failed.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "check.h"
#include "guard_shared.h"
#include "guard.skel.h"
#include "pkt.h"

#ifndef XDP_DROP
#define XDP_DROP 1
#define XDP_PASS 2
#endif

#define PORT		3128	/* listened on */
#define PORT2		8443	/* listened on */
#define OTHER		80	/* not listened on */

/* Sources: allowed, and inside a denied prefix. */
#define A4		"192.0.2.1"
#define A6		"2001:db8:1::1"
#define D4		"198.51.100.1"
#define D6		"2001:db8:bad::1"

/* The guard_stats field a row must move; the order of struct guard_stats. */
enum ctr { PASSED, DENIED, RATE_LIMITED, NOT_JUDGED, MALFORMED, NCTR };

static const char *const ctr_name[NCTR] = {
	"passed", "denied", "rate_limited", "not_judged", "malformed",
};

_Static_assert(sizeof(struct guard_stats) == NCTR * sizeof(__u64),
	       "enum ctr must list every guard_stats field");

struct row {
	const char *desc;
	const char *src;
	struct pkt_layer l[PKT_MAX_LAYERS];
	int ip_len, pad_to, cut, keep;
	int verdict;
	enum ctr ctr;
};

/* Layers. */
#define Q		{ .kind = K_Q }
#define AD		{ .kind = K_AD }
#define RAW(t, n)	{ .kind = K_RAW, .a = (t), .b = (n) }
#define IP4		{ .kind = K_IP4 }
#define IP4O(ihl, frag)	{ .kind = K_IP4, .a = (ihl), .b = (frag) }
#define IP6		{ .kind = K_IP6 }
#define HOP(n)		{ .kind = K_HOP, .a = (n) }
#define RT(n)		{ .kind = K_RT, .a = (n) }
#define DST(n)		{ .kind = K_DST, .a = (n) }
#define AH(n)		{ .kind = K_AH, .a = (n) }
#define FRAG(off, m)	{ .kind = K_FRAG, .a = (off), .b = (m) }
#define ESP		{ .kind = K_ESP }
#define NONE		{ .kind = K_NONE }
#define TCP(port, fl)	{ .kind = K_TCP, .a = (port), .b = (fl) }
/* Only the first n bytes of a SYN, the IP length ending there (a tiny fragment). */
#define TCPN(port, n)	{ .kind = K_TCP, .a = (port), .b = TCP_SYN, .c = (n) }
#define UDP(port)	{ .kind = K_UDP, .a = (port) }
#define ICMP		{ .kind = K_ICMP }
#define SYN		TCP(PORT, TCP_SYN)
#define ACK		TCP(PORT, TCP_ACK)

/* The frame ends @keep bytes into layer @layer (0 = Ethernet, 1 = the first listed). */
#define CUT(layer, k)	.cut = (layer) + 1, .keep = (k)

/* Expected outcomes. */
#define PASS(c)		.verdict = XDP_PASS, .ctr = (c)
#define DROP(c)		.verdict = XDP_DROP, .ctr = (c)

#define IP_DF		0x4000
#define IP_MF		0x2000

static struct guard_bpf *skel;
static int prog, stats_fd, deny_fd, config_fd, syn_fd, ports_fd;
static int ncpus, rows_run, rows_failed;
static __u64 packets_run; /* frames through the program: rows and check_concurrent() */


static __u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* guard_stats summed over the CPUs. */
static void stats_read(__u64 out[NCTR])
{
	struct guard_stats per[ncpus];
	__u32 zero = 0;

	SYSCHECK(bpf_map_lookup_elem(stats_fd, &zero, per));
	memset(out, 0, NCTR * sizeof(__u64));
	for (int c = 0; c < ncpus; c++)
		for (int i = 0; i < NCTR; i++)
			out[i] += ((__u64 *)&per[c])[i];
}

/* 16-byte guard address of @text: IPv6 as is, IPv4 mapped. */
static void addr16(const char *text, __u8 out[16])
{
	struct in_addr a4;

	memset(out, 0, 16);
	if (inet_pton(AF_INET, text, &a4) == 1) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return;
	}
	CHECK(inet_pton(AF_INET6, text, out) == 1, "bad address %s", text);
}

/* The guard_deny key of @text/@len (IPv4 lengths count from the mapped prefix). */
static struct guard_lpm_key deny_key(const char *text, int len)
{
	struct guard_lpm_key k;
	struct in_addr a4;

	addr16(text, k.addr);
	k.prefixlen = inet_pton(AF_INET, text, &a4) == 1 ? 96 + len : len;
	return k;
}

static void deny_add(const char *text, int len)
{
	struct guard_lpm_key k = deny_key(text, len);
	struct guard_deny v = { .origin = GUARD_DENY_CTL };

	SYSCHECK(bpf_map_update_elem(deny_fd, &k, &v, BPF_ANY));
}

static void deny_del(const char *text, int len)
{
	struct guard_lpm_key k = deny_key(text, len);

	SYSCHECK(bpf_map_delete_elem(deny_fd, &k));
}

static void config_set(__u32 rate, __u32 burst)
{
	struct guard_config c = { .syn_rate = rate, .syn_burst = burst };
	__u32 zero = 0;

	SYSCHECK(bpf_map_update_elem(config_fd, &zero, &c, BPF_ANY));
}

/*
 * Run @len bytes of @frame; the frame as the program left it goes to @out. Returns the
 * verdict, or -1 when the kernel refuses a frame under 14 bytes (EINVAL: Linux 6.18
 * wants a whole Ethernet header, even behind XDP metadata).
 */
static int xdp_run(const unsigned char *frame, size_t len, unsigned char *out, __u32 *out_len)
{
	LIBBPF_OPTS(bpf_test_run_opts, run, .repeat = 1, .data_in = frame,
		    .data_size_in = len, .data_out = out, .data_size_out = PKT_MAX_BYTES);

	if (bpf_prog_test_run_opts(prog, &run)) {
		if (errno == EINVAL && len < 14)
			return -1;
		FAIL("bpf_prog_test_run_opts: %s", strerror(errno));
	}
	*out_len = run.data_size_out;
	return run.retval;
}

static const char *verdict_name(int v)
{
	return v == XDP_PASS ? "XDP_PASS" : v == XDP_DROP ? "XDP_DROP" : "other";
}

/* One row: build, run, check verdict, counters and the frame. */
static void run_row(const struct row *r)
{
	struct pkt_opts o = { .src = r->src, .ip_len = r->ip_len, .pad_to = r->pad_to,
			      .cut = r->cut, .keep = r->keep };
	static struct pkt p;
	unsigned char out[PKT_MAX_BYTES];
	__u64 before[NCTR], after[NCTR];
	char why[160] = "";
	__u32 out_len;
	int v;

	for (int i = 0; !o.src && i < PKT_MAX_LAYERS && r->l[i].kind != K_END; i++)
		if (r->l[i].kind == K_IP6)
			o.src = A6;
	if (!o.src)
		o.src = A4;
	CHECK(pkt_build(&p, r->l, &o), "%s: the frame does not build", r->desc);
	stats_read(before);
	v = xdp_run(p.b, p.len, out, &out_len);
	if (v < 0) {
		printf("skip - %s (%zu bytes): BPF_PROG_TEST_RUN refuses frames under 14 bytes "
		       "(drivers drop such runts before XDP)\n", r->desc, p.len);
		return;
	}
	stats_read(after);
	rows_run++;
	packets_run++;
	if (v != r->verdict)
		snprintf(why, sizeof(why), "verdict %s (%d), want %s", verdict_name(v), v,
			 verdict_name(r->verdict));
	for (int i = 0; i < NCTR && !*why; i++) {
		__u64 want = before[i] + (i == (int)r->ctr);

		if (after[i] != want)
			snprintf(why, sizeof(why), "%s went %llu -> %llu, want %s to count it",
				 ctr_name[i], (unsigned long long)before[i],
				 (unsigned long long)after[i], ctr_name[r->ctr]);
	}
	if (!*why && (out_len != p.len || memcmp(out, p.b, p.len)))
		snprintf(why, sizeof(why), "the frame came back changed (%u bytes of %zu)",
			 out_len, p.len);
	if (*why) {
		rows_failed++;
		printf("not ok %d - %s (%zu bytes): %s\n", rows_run, r->desc, p.len, why);
	} else {
		printf("ok %d - %s (%zu bytes): %s, %s\n", rows_run, r->desc, p.len,
		       verdict_name(v), ctr_name[r->ctr]);
	}
}

static void run_table(const struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		run_row(&rows[i]);
}

#define RUN_TABLE(t) run_table(t, sizeof(t) / sizeof((t)[0]))

/*
 * 1. Parsing. Rate limit off. Most rows come from a denied source, so a judged frame
 * drops (denied) and one that is not judged passes: the verdict shows how far the
 * program read. Frames cut short pass as malformed whoever sends them.
 */
static const struct row parse_rows[] = {
	/* Untagged. */
	{ "IPv4 SYN, allowed source", A4, { IP4, SYN }, PASS(PASSED) },
	{ "IPv4 SYN, denied source", D4, { IP4, SYN }, DROP(DENIED) },
	{ "IPv4 ACK, denied source", D4, { IP4, ACK }, DROP(DENIED) },
	{ "IPv4 RST, denied source", D4, { IP4, TCP(PORT, TCP_RST) }, DROP(DENIED) },
	{ "IPv4 FIN+ACK, denied source", D4, { IP4, TCP(PORT, TCP_FIN | TCP_ACK) },
	  DROP(DENIED) },
	{ "IPv4 SYN to the second listen port, denied", D4, { IP4, TCP(PORT2, TCP_SYN) },
	  DROP(DENIED) },
	{ "IPv4 SYN to port 80 (not listened on), denied", D4, { IP4, TCP(OTHER, TCP_SYN) },
	  PASS(NOT_JUDGED) },
	{ "IPv4 SYN to port 3129 (not listened on), denied", D4,
	  { IP4, TCP(PORT + 1, TCP_SYN) }, PASS(NOT_JUDGED) },
	{ "IPv4 SYN to byte-swapped 3128 (14348), denied", D4, { IP4, TCP(0x380c, TCP_SYN) },
	  PASS(NOT_JUDGED) },
	{ "IPv4 UDP to 3128, denied", D4, { IP4, UDP(PORT) }, PASS(NOT_JUDGED) },
	{ "IPv4 ICMP echo, denied", D4, { IP4, ICMP }, PASS(NOT_JUDGED) },
	{ "IPv4 SYN padded to 60 bytes, denied", D4, { IP4, SYN }, .pad_to = 60,
	  DROP(DENIED) },
	{ "IPv4 SYN with DF, denied", D4, { IP4O(5, IP_DF), SYN }, DROP(DENIED) },
	{ "IPv6 SYN, allowed source", A6, { IP6, SYN }, PASS(PASSED) },
	{ "IPv6 SYN, denied source", D6, { IP6, SYN }, DROP(DENIED) },
	{ "IPv6 ACK, denied source", D6, { IP6, ACK }, DROP(DENIED) },
	{ "IPv6 SYN to port 80, denied", D6, { IP6, TCP(OTHER, TCP_SYN) }, PASS(NOT_JUDGED) },
	{ "IPv6 UDP to 3128, denied", D6, { IP6, UDP(PORT) }, PASS(NOT_JUDGED) },
	{ "IPv6 ICMPv6 echo, denied", D6, { IP6, ICMP }, PASS(NOT_JUDGED) },
	{ "ARP", NULL, { RAW(0x0806, 28) }, PASS(NOT_JUDGED) },
	{ "IPX (EtherType 0x8137)", NULL, { RAW(0x8137, 30) }, PASS(NOT_JUDGED) },

	/* VLAN. */
	{ "802.1Q IPv4 SYN, allowed", A4, { Q, IP4, SYN }, PASS(PASSED) },
	{ "802.1Q IPv4 SYN, denied", D4, { Q, IP4, SYN }, DROP(DENIED) },
	{ "802.1Q IPv6 SYN, denied", D6, { Q, IP6, SYN }, DROP(DENIED) },
	{ "802.1ad (single S-tag) IPv4 SYN, denied", D4, { AD, IP4, SYN }, DROP(DENIED) },
	{ "QinQ (802.1ad + 802.1Q) IPv4 SYN, allowed", A4, { AD, Q, IP4, SYN }, PASS(PASSED) },
	{ "QinQ IPv4 SYN, denied", D4, { AD, Q, IP4, SYN }, DROP(DENIED) },
	{ "QinQ IPv6 ACK, denied", D6, { AD, Q, IP6, ACK }, DROP(DENIED) },
	{ "802.1Q + 802.1Q IPv4 SYN, denied", D4, { Q, Q, IP4, SYN }, DROP(DENIED) },
	{ "three VLAN tags IPv4 SYN, denied (past the 2 looked through)", D4,
	  { AD, Q, Q, IP4, SYN }, PASS(NOT_JUDGED) },
	{ "802.1Q IPv4 UDP to 3128, denied", D4, { Q, IP4, UDP(PORT) }, PASS(NOT_JUDGED) },
	{ "802.1Q ARP", NULL, { Q, RAW(0x0806, 28) }, PASS(NOT_JUDGED) },
	{ "802.1Q IPv4 SYN to port 80, denied", D4, { Q, IP4, TCP(OTHER, TCP_SYN) },
	  PASS(NOT_JUDGED) },

	/* IPv4 options. */
	{ "IPv4 IHL 6 (4 option bytes) SYN, denied", D4, { IP4O(6, 0), SYN }, DROP(DENIED) },
	{ "IPv4 IHL 15 (40 option bytes) SYN, denied", D4, { IP4O(15, 0), SYN }, DROP(DENIED) },
	{ "IPv4 IHL 15 SYN, allowed", A4, { IP4O(15, 0), SYN }, PASS(PASSED) },
	{ "IPv4 IHL 8 SYN to port 80, denied", D4, { IP4O(8, 0), TCP(OTHER, TCP_SYN) },
	  PASS(NOT_JUDGED) },
	{ "QinQ IPv4 IHL 15 ACK, denied", D4, { AD, Q, IP4O(15, 0), ACK }, DROP(DENIED) },
	{ "IPv4 IHL 4 (under the minimum), denied", D4, { IP4O(4, 0), SYN }, PASS(MALFORMED) },
	{ "IPv4 IHL 0, denied", D4, { IP4O(16, 0), SYN }, PASS(MALFORMED) },

	/* IPv4 fragments. */
	{ "IPv4 first fragment (MF) SYN, denied", D4, { IP4O(5, IP_MF), SYN }, DROP(DENIED) },
	{ "IPv4 first fragment (MF) SYN, allowed", A4, { IP4O(5, IP_MF), SYN }, PASS(PASSED) },
	{ "IPv4 first fragment, IHL 15, denied", D4, { IP4O(15, IP_MF), SYN }, DROP(DENIED) },
	{ "IPv4 tiny first fragment (8 bytes of TCP), denied", D4,
	  { IP4O(5, IP_MF), TCPN(PORT, 8) }, DROP(DENIED) },
	{ "IPv4 tiny first fragment (8 bytes of TCP) to port 80, denied", D4,
	  { IP4O(5, IP_MF), TCPN(OTHER, 8) }, PASS(NOT_JUDGED) },
	{ "IPv4 first fragment with 2 bytes of TCP, denied", D4,
	  { IP4O(5, IP_MF), TCPN(PORT, 2) }, PASS(MALFORMED) },
	{ "IPv4 non-first fragment (offset 8, MF) shaped like a SYN, denied", D4,
	  { IP4O(5, IP_MF | 1), SYN }, PASS(NOT_JUDGED) },
	{ "IPv4 last fragment (offset 1480) shaped like a SYN, denied", D4,
	  { IP4O(5, 185), SYN }, PASS(NOT_JUDGED) },
	{ "IPv4 last fragment (offset 65528) shaped like a SYN, denied", D4,
	  { IP4O(5, 0x1fff), SYN }, PASS(NOT_JUDGED) },
	{ "802.1Q IPv4 non-first fragment, DF and MF, denied", D4,
	  { Q, IP4O(5, IP_DF | IP_MF | 3), SYN }, PASS(NOT_JUDGED) },
	{ "IPv4 non-first fragment of UDP, denied", D4, { IP4O(5, 100), UDP(PORT) },
	  PASS(NOT_JUDGED) },

	/* IPv6 extension headers. */
	{ "IPv6 hop-by-hop (8 bytes) SYN, denied", D6, { IP6, HOP(0), SYN }, DROP(DENIED) },
	{ "IPv6 hop-by-hop SYN, allowed", A6, { IP6, HOP(0), SYN }, PASS(PASSED) },
	{ "IPv6 destination options (16 bytes) SYN, denied", D6, { IP6, DST(1), SYN },
	  DROP(DENIED) },
	{ "IPv6 routing header (24 bytes) SYN, denied", D6, { IP6, RT(2), SYN }, DROP(DENIED) },
	{ "IPv6 authentication header (24 bytes) SYN, denied", D6, { IP6, AH(4), SYN },
	  DROP(DENIED) },
	{ "IPv6 hop-by-hop of 2048 bytes SYN, denied", D6, { IP6, HOP(255), SYN },
	  DROP(DENIED) },
	{ "IPv6 hop-by-hop + dest + routing + dest SYN, denied", D6,
	  { IP6, HOP(0), DST(0), RT(2), DST(1), SYN }, DROP(DENIED) },
	{ "IPv6 6 extension headers (the most looked through) SYN, denied", D6,
	  { IP6, HOP(0), DST(0), RT(0), AH(1), FRAG(0, 1), DST(0), SYN }, DROP(DENIED) },
	{ "IPv6 7 extension headers SYN, denied", D6,
	  { IP6, HOP(0), DST(0), RT(0), RT(0), AH(1), FRAG(0, 1), DST(0), SYN },
	  PASS(NOT_JUDGED) },
	{ "IPv6 hop-by-hop UDP to 3128, denied", D6, { IP6, HOP(0), UDP(PORT) },
	  PASS(NOT_JUDGED) },
	{ "IPv6 dest options SYN to port 80, denied", D6, { IP6, DST(0), TCP(OTHER, TCP_SYN) },
	  PASS(NOT_JUDGED) },
	{ "IPv6 ESP, denied", D6, { IP6, ESP }, PASS(NOT_JUDGED) },
	{ "IPv6 hop-by-hop + no next header, denied", D6, { IP6, HOP(0), NONE },
	  PASS(NOT_JUDGED) },
	{ "IPv6 payload length 0 (jumbogram) SYN, denied", D6, { IP6, HOP(0), SYN },
	  .ip_len = -1, PASS(NOT_JUDGED) },
	{ "QinQ IPv6 hop-by-hop + dest SYN, denied", D6, { AD, Q, IP6, HOP(0), DST(0), SYN },
	  DROP(DENIED) },

	/* IPv6 fragments. */
	{ "IPv6 first fragment (offset 0, M) SYN, denied", D6, { IP6, FRAG(0, 1), SYN },
	  DROP(DENIED) },
	{ "IPv6 first fragment SYN, allowed", A6, { IP6, FRAG(0, 1), SYN }, PASS(PASSED) },
	{ "IPv6 atomic fragment (offset 0, no M) SYN, denied", D6, { IP6, FRAG(0, 0), SYN },
	  DROP(DENIED) },
	{ "IPv6 hop-by-hop + first fragment + dest SYN, denied", D6,
	  { IP6, HOP(0), FRAG(0, 1), DST(0), SYN }, DROP(DENIED) },
	{ "IPv6 tiny first fragment (8 bytes of TCP), denied", D6,
	  { IP6, FRAG(0, 1), TCPN(PORT, 8) }, DROP(DENIED) },
	{ "IPv6 non-first fragment (offset 8, M) shaped like a SYN, denied", D6,
	  { IP6, FRAG(8, 1), SYN }, PASS(NOT_JUDGED) },
	{ "IPv6 last fragment (offset 1448) shaped like a SYN, denied", D6,
	  { IP6, FRAG(1448, 0), SYN }, PASS(NOT_JUDGED) },
	{ "IPv6 hop-by-hop + non-first fragment, denied", D6, { IP6, HOP(0), FRAG(64, 1), SYN },
	  PASS(NOT_JUDGED) },
	{ "802.1Q IPv6 non-first fragment of UDP, denied", D6, { Q, IP6, FRAG(16, 0), UDP(PORT) },
	  PASS(NOT_JUDGED) },

	/* Cut short, at every layer. */
	{ "empty frame", NULL, { IP4, SYN }, CUT(0, 0), PASS(MALFORMED) },
	{ "Ethernet cut at 13 bytes", NULL, { IP4, SYN }, CUT(0, 13), PASS(MALFORMED) },
	{ "Ethernet header only, IPv4 EtherType", NULL, { IP4, SYN }, CUT(1, 0),
	  PASS(MALFORMED) },
	{ "802.1Q tag cut at 2 bytes", D4, { Q, IP4, SYN }, CUT(1, 2), PASS(MALFORMED) },
	{ "802.1Q tag, nothing after", D4, { Q, IP4, SYN }, CUT(2, 0), PASS(MALFORMED) },
	{ "QinQ inner tag cut at 3 bytes", D4, { AD, Q, IP4, SYN }, CUT(2, 3), PASS(MALFORMED) },
	{ "IPv4 header cut at 19 bytes, denied", D4, { IP4, SYN }, CUT(1, 19), PASS(MALFORMED) },
	{ "IPv4 options cut (IHL 15, 30 of 60 bytes), denied", D4, { IP4O(15, 0), SYN },
	  CUT(1, 30), PASS(MALFORMED) },
	{ "IPv4 IHL 15, frame ends with the options, denied", D4, { IP4O(15, 0), SYN },
	  CUT(2, 0), PASS(MALFORMED) },
	{ "IPv4 TCP cut at 19 bytes, denied", D4, { IP4, SYN }, CUT(2, 19), PASS(MALFORMED) },
	{ "IPv4 TCP cut at 13 bytes (no flags), denied", D4, { IP4, SYN }, CUT(2, 13),
	  PASS(MALFORMED) },
	{ "IPv4 TCP cut at 3 bytes (half the port), denied", D4, { IP4, SYN }, CUT(2, 3),
	  PASS(MALFORMED) },
	{ "802.1Q IPv4 TCP cut at 10 bytes, denied", D4, { Q, IP4, SYN }, CUT(3, 10),
	  PASS(MALFORMED) },
	{ "IPv4 total length 10 (under the header), denied", D4, { IP4, SYN }, .ip_len = 10,
	  PASS(MALFORMED) },
	{ "IPv4 total length 28 (8 bytes of TCP, not a fragment), padding 0xff, denied", D4,
	  { IP4, SYN }, .ip_len = 28, .pad_to = 60, PASS(MALFORMED) },
	{ "IPv4 total length past the frame, denied", D4, { IP4, SYN }, .ip_len = 1500,
	  PASS(MALFORMED) },
	{ "IPv6 header cut at 39 bytes, denied", D6, { IP6, SYN }, CUT(1, 39), PASS(MALFORMED) },
	{ "QinQ IPv6 header cut at 8 bytes, denied", D6, { AD, Q, IP6, SYN }, CUT(3, 8),
	  PASS(MALFORMED) },
	{ "IPv6 hop-by-hop cut at 1 byte, denied", D6, { IP6, HOP(1), SYN }, CUT(2, 1),
	  PASS(MALFORMED) },
	{ "IPv6 dest options cut at 9 of 16 bytes, denied", D6, { IP6, DST(1), SYN }, CUT(2, 9),
	  PASS(MALFORMED) },
	{ "IPv6 second extension header cut at 1 byte, denied", D6, { IP6, HOP(0), RT(1), SYN },
	  CUT(3, 1), PASS(MALFORMED) },
	{ "IPv6 fragment header cut at 7 bytes, denied", D6, { IP6, FRAG(0, 1), SYN },
	  CUT(2, 7), PASS(MALFORMED) },
	{ "IPv6 TCP cut at 19 bytes, denied", D6, { IP6, SYN }, CUT(2, 19), PASS(MALFORMED) },
	{ "IPv6 TCP cut at 0 bytes after hop-by-hop, denied", D6, { IP6, HOP(0), SYN },
	  CUT(3, 0), PASS(MALFORMED) },
	{ "IPv6 payload length 4 (hop-by-hop longer), denied", D6, { IP6, HOP(0), SYN },
	  .ip_len = 4, PASS(MALFORMED) },
	{ "IPv6 payload length 8 (8 bytes of TCP, not a fragment), padding 0xff, denied", D6,
	  { IP6, SYN }, .ip_len = 8, .pad_to = 80, PASS(MALFORMED) },
	{ "IPv6 payload length past the frame, denied", D6, { IP6, SYN }, .ip_len = 100,
	  PASS(MALFORMED) },
};

/* 2. The deny trie (entries added in main()): prefix boundaries and families. */
static const struct row deny_rows[] = {
	{ "198.51.100.0 (first of denied /24)", "198.51.100.0", { IP4, ACK }, DROP(DENIED) },
	{ "198.51.100.255 (last of denied /24)", "198.51.100.255", { IP4, ACK }, DROP(DENIED) },
	{ "198.51.99.255 (just below the /24)", "198.51.99.255", { IP4, ACK }, PASS(PASSED) },
	{ "198.51.101.0 (just above the /24)", "198.51.101.0", { IP4, ACK }, PASS(PASSED) },
	{ "203.0.113.7 (denied /32)", "203.0.113.7", { IP4, SYN }, DROP(DENIED) },
	{ "203.0.113.6 (next to the /32)", "203.0.113.6", { IP4, SYN }, PASS(PASSED) },
	{ "203.0.113.8 (next to the /32)", "203.0.113.8", { IP4, SYN }, PASS(PASSED) },
	{ "10.255.255.255 (in denied /8)", "10.255.255.255", { IP4, SYN }, DROP(DENIED) },
	{ "10.1.2.3 (denied /32 inside the /8)", "10.1.2.3", { IP4, SYN }, DROP(DENIED) },
	{ "11.0.0.0 (just above the /8)", "11.0.0.0", { IP4, SYN }, PASS(PASSED) },
	{ "9.255.255.255 (just below the /8)", "9.255.255.255", { IP4, SYN }, PASS(PASSED) },
	{ "2001:db8:bad:ffff:ffff:ffff:ffff:ffff (last of denied /48)",
	  "2001:db8:bad:ffff:ffff:ffff:ffff:ffff", { IP6, SYN }, DROP(DENIED) },
	{ "2001:db8:bae:: (just above the /48)", "2001:db8:bae::", { IP6, SYN }, PASS(PASSED) },
	{ "2001:db8:bac:ffff:ffff:ffff:ffff:ffff (just below the /48)",
	  "2001:db8:bac:ffff:ffff:ffff:ffff:ffff", { IP6, SYN }, PASS(PASSED) },
	{ "2001:db8:dead:beef::1 (denied /128)", "2001:db8:dead:beef::1", { IP6, SYN },
	  DROP(DENIED) },
	{ "2001:db8:dead:beef::2 (next to the /128)", "2001:db8:dead:beef::2", { IP6, SYN },
	  PASS(PASSED) },
	{ "IPv6 ::ffff:198.51.100.1 (one trie: the IPv4 /24 covers it)", "::ffff:198.51.100.1",
	  { IP6, SYN }, DROP(DENIED) },
	{ "IPv6 ::c633:6401 (IPv4-compatible, not mapped)", "::198.51.100.1", { IP6, SYN },
	  PASS(PASSED) },
	{ "IPv6 198.51.100.1 bits at the front (2001:db8:bad::/48 aside)", "c633:6401::1",
	  { IP6, SYN }, PASS(PASSED) },
};

/* After 10.0.0.0/8 is deleted: its /32 stays. */
static const struct row deny_del_rows[] = {
	{ "10.1.2.3 (its /32 kept, the /8 deleted)", "10.1.2.3", { IP4, SYN }, DROP(DENIED) },
	{ "10.1.2.4 (the /8 deleted)", "10.1.2.4", { IP4, SYN }, PASS(PASSED) },
	{ "10.255.255.255 (the /8 deleted)", "10.255.255.255", { IP4, SYN }, PASS(PASSED) },
};

/* With 0.0.0.0/0 denied: every IPv4 source, no IPv6 one. */
static const struct row deny_all4_rows[] = {
	{ "192.0.2.1 (0.0.0.0/0 denied)", A4, { IP4, SYN }, DROP(DENIED) },
	{ "0.0.0.0 (0.0.0.0/0 denied)", "0.0.0.0", { IP4, ACK }, DROP(DENIED) },
	{ "2001:db8:1::1 (0.0.0.0/0 does not cover IPv6)", A6, { IP6, SYN }, PASS(PASSED) },
	{ "192.0.2.1 to port 80 (0.0.0.0/0 denied)", A4, { IP4, TCP(OTHER, TCP_SYN) },
	  PASS(NOT_JUDGED) },
};

/* 3. SYN rate limit, syn_rate 1/s and syn_burst 3: a bucket empties and stays empty. */
#define R4 "192.0.2.50"
#define R6 "2001:db8:c:0:1::5"
static const struct row burst_rows[] = {
	{ "SYN 1 of the burst from " R4, R4, { IP4, SYN }, PASS(PASSED) },
	{ "SYN 2 of the burst", R4, { IP4, SYN }, PASS(PASSED) },
	{ "802.1Q SYN 3 of the burst (port 8443: one bucket per source)", R4,
	  { Q, IP4, TCP(PORT2, TCP_SYN) }, PASS(PASSED) },
	{ "SYN 4: over the burst", R4, { IP4, SYN }, DROP(RATE_LIMITED) },
	{ "SYN 5: still over", R4, { IP4O(8, 0), SYN }, DROP(RATE_LIMITED) },
	{ "ACK from the limited source", R4, { IP4, ACK }, PASS(PASSED) },
	{ "SYN+ACK from the limited source (not a new connection)", R4,
	  { IP4, TCP(PORT, TCP_SYN | TCP_ACK) }, PASS(PASSED) },
	{ "RST from the limited source", R4, { IP4, TCP(PORT, TCP_RST) }, PASS(PASSED) },
	{ "SYN to port 80 from the limited source", R4, { IP4, TCP(OTHER, TCP_SYN) },
	  PASS(NOT_JUDGED) },
	{ "SYN from 192.0.2.51 (another source)", "192.0.2.51", { IP4, SYN }, PASS(PASSED) },
	{ "first fragment SYN from the limited source", R4, { IP4O(5, IP_MF), SYN },
	  DROP(RATE_LIMITED) },
	{ "tiny first fragment (8 bytes of TCP) from the limited source", R4,
	  { IP4O(5, IP_MF), TCPN(PORT, 8) }, DROP(RATE_LIMITED) },
	{ "non-first fragment from the limited source", R4, { IP4O(5, 10), SYN },
	  PASS(NOT_JUDGED) },
	{ "SYN from a denied source (deny comes first)", D4, { IP4, SYN }, DROP(DENIED) },
	{ "tiny first fragment from 192.0.2.60: charged", "192.0.2.60",
	  { IP4O(5, IP_MF), TCPN(PORT, 8) }, PASS(PASSED) },
	{ "tiny first fragment from 192.0.2.60: charged", "192.0.2.60",
	  { IP4O(5, IP_MF), TCPN(PORT, 12) }, PASS(PASSED) },
	{ "SYN from 192.0.2.60 after 2 tiny fragments", "192.0.2.60", { IP4, SYN },
	  PASS(PASSED) },
	{ "SYN from 192.0.2.60: over the burst", "192.0.2.60", { IP4, SYN },
	  DROP(RATE_LIMITED) },
	{ "SYN 1 from " R6, R6, { IP6, SYN }, PASS(PASSED) },
	{ "SYN 2 from 2001:db8:c::9 (same /64)", "2001:db8:c::9", { IP6, HOP(0), SYN },
	  PASS(PASSED) },
	{ "SYN 3 from 2001:db8:c:0:ffff:ffff:ffff:ffff (same /64)",
	  "2001:db8:c:0:ffff:ffff:ffff:ffff", { IP6, FRAG(0, 1), SYN }, PASS(PASSED) },
	{ "SYN 4 from 2001:db8:c::1 (same /64): over", "2001:db8:c::1", { IP6, SYN },
	  DROP(RATE_LIMITED) },
	{ "QinQ SYN from " R6 ": over", R6, { AD, Q, IP6, DST(0), SYN }, DROP(RATE_LIMITED) },
	{ "ACK from " R6, R6, { IP6, ACK }, PASS(PASSED) },
	{ "SYN from 2001:db8:c:1::5 (next /64)", "2001:db8:c:1::5", { IP6, SYN }, PASS(PASSED) },
	{ "IPv6 SYN from ::ffff:192.0.2.50 (its /64 is ::/64, not the IPv4 bucket)",
	  "::ffff:192.0.2.50", { IP6, SYN }, PASS(PASSED) },
};

/* syn_rate 100/s, burst 3, after 50 ms: the empty buckets are full again. */
static const struct row refill_rows[] = {
	{ "after 50 ms at 100/s: SYN 1 from " R4, R4, { IP4, SYN }, PASS(PASSED) },
	{ "SYN 2 from " R4, R4, { IP4, SYN }, PASS(PASSED) },
	{ "SYN 3 from " R4, R4, { IP4, SYN }, PASS(PASSED) },
	{ "SYN 4 from " R4 ": over (burst 3)", R4, { IP4, SYN }, DROP(RATE_LIMITED) },
	{ "after 50 ms at 100/s: SYN from 2001:db8:c::1", "2001:db8:c::1", { IP6, SYN },
	  PASS(PASSED) },
};

/* syn_rate 0: no limit. */
static const struct row unlimited_row = {
	"syn_rate 0: SYN from " R4, R4, { IP4, SYN }, PASS(PASSED)
};

/* syn_rate 1/s after 100 ms: a tenth of a token, not enough. */
static const struct row partial_row = {
	"SYN from " R4 " 100 ms later at 1/s: still over", R4, { IP4, SYN }, DROP(RATE_LIMITED)
};

/* syn_rate 100/s, syn_burst 0 (counts as 1); run twice, 30 ms apart. */
static const struct row burst0_rows[] = {
	{ "syn_burst 0: SYN from 192.0.2.70", "192.0.2.70", { IP4, SYN }, PASS(PASSED) },
	{ "syn_burst 0: next SYN from 192.0.2.70: over", "192.0.2.70", { IP4, SYN },
	  DROP(RATE_LIMITED) },
};

/* syn_rate 100/s: syn_burst lowered from 3 to 1 between two SYNs of one source. */
static const struct row lower_rows[] = {
	{ "syn_burst 3: SYN from 192.0.2.80", "192.0.2.80", { IP4, SYN }, PASS(PASSED) },
	{ "syn_burst lowered to 1: SYN from 192.0.2.80 (2 tokens cut to 1)", "192.0.2.80",
	  { IP4, SYN }, PASS(PASSED) },
	{ "syn_burst 1: next SYN from 192.0.2.80: over", "192.0.2.80", { IP4, SYN },
	  DROP(RATE_LIMITED) },
};

/* A check outside the tables: counts as a row. */
static void __attribute__((format(printf, 2, 3))) report(bool ok, const char *fmt, ...)
{
	va_list ap;

	rows_run++;
	rows_failed += !ok;
	printf(ok ? "ok %d - " : "not ok %d - ", rows_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Tokens in the bucket keyed @key_text (a source address, IPv6 cut to its /64). */
static __u64 bucket_tokens(const char *key_text)
{
	struct guard_src key;
	struct guard_bucket b;

	addr16(key_text, key.addr);
	CHECK(!bpf_map_lookup_elem(syn_fd, &key, &b), "no bucket under key %s: %s", key_text,
	      strerror(errno));
	return b.tokens;
}

/* syn_rate 1/s, syn_burst 3: buckets empty and stay empty; a tenth of a token in 100 ms. */
static void check_burst(void)
{
	__u64 t0, t1;

	config_set(1, 3);
	RUN_TABLE(burst_rows);
	t0 = bucket_tokens("::ffff:" R4);
	report(t0 < GUARD_TOKEN, "the bucket of %s is keyed ::ffff:%s and holds %llu.%03llu "
	       "tokens after the burst", R4, R4, (unsigned long long)(t0 / GUARD_TOKEN),
	       (unsigned long long)(t0 % GUARD_TOKEN / 1000000));
	t1 = bucket_tokens("2001:db8:c::");
	report(t1 < GUARD_TOKEN, "the bucket of %s is keyed 2001:db8:c:: (its /64) and holds "
	       "%llu.%03llu tokens", R6, (unsigned long long)(t1 / GUARD_TOKEN),
	       (unsigned long long)(t1 % GUARD_TOKEN / 1000000));
	usleep(100 * 1000);
	run_row(&partial_row);
	t1 = bucket_tokens("::ffff:" R4);
	report(t1 >= t0 + GUARD_TOKEN / 10 && t1 <= t0 + GUARD_TOKEN / 2,
	       "after 100 ms at 1/s the bucket of %s went from %llu to %llu (a tenth of a "
	       "token more)", R4, (unsigned long long)t0, (unsigned long long)t1);
}

/* Refill with time, and guard_config changed under existing buckets. */
static void check_refill(void)
{
	config_set(100, 3);
	usleep(50 * 1000);
	RUN_TABLE(refill_rows);
	run_row(&lower_rows[0]);
	config_set(100, 1);
	run_row(&lower_rows[1]);
	run_row(&lower_rows[2]);
	config_set(0, 3);
	for (int i = 0; i < 20; i++)
		run_row(&unlimited_row);
	config_set(100, 0);
	RUN_TABLE(burst0_rows);
	usleep(30 * 1000);
	RUN_TABLE(burst0_rows);
}

/*
 * One source's SYNs on every CPU at once (BPF_PROG_TEST_RUN runs on the caller's CPU),
 * CONC_REPEAT each, at @rate per second with a burst of @burst. At most the burst
 * plus what the run's length refills may pass, and about the burst at least: a
 * bucket updated without compare-and-swap lets more through.
 */
#define CONC_REPEAT	100000	/* SYNs per CPU */
static void check_concurrent(const char *src, __u32 rate, __u32 burst)
{
	struct pkt_layer l[] = { IP4, SYN, { K_END } };
	struct pkt_opts o = { .src = src };
	int n = ncpus < 16 ? ncpus : 16, status, go[2], times[2];
	__u64 before[NCTR], after[NCTR], passed, judged, most, least, span[2] = { -1ULL, 0 };
	static struct pkt p;
	pid_t pid[16];

	CHECK(pkt_build(&p, l, &o), "concurrent SYN: the frame does not build");
	config_set(rate, burst);
	stats_read(before);
	SYSCHECK(pipe(go));
	SYSCHECK(pipe(times));
	for (int c = 0; c < n; c++) {
		SYSCHECK(pid[c] = fork());
		if (!pid[c]) {
			LIBBPF_OPTS(bpf_test_run_opts, run, .repeat = CONC_REPEAT,
				    .data_in = p.b, .data_size_in = p.len);
			__u64 t[2];
			cpu_set_t set;
			char b;

			CPU_ZERO(&set);
			CPU_SET(c, &set);
			close(go[1]);
			if (sched_setaffinity(0, sizeof(set), &set))
				_exit(2); /* CPU offline: that process just does not run */
			if (read(go[0], &b, 1) < 0) /* the start: the parent closes go[1] */
				_exit(1);
			t[0] = now_ns();
			if (bpf_prog_test_run_opts(prog, &run))
				_exit(1);
			t[1] = now_ns();
			_exit(write(times[1], t, sizeof(t)) == sizeof(t) ? 0 : 1);
		}
	}
	usleep(20 * 1000); /* every child pinned and waiting */
	close(go[1]);
	close(go[0]);
	close(times[1]);
	for (int c = 0; c < n; c++) {
		SYSCHECK(waitpid(pid[c], &status, 0));
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 1,
		      "concurrent SYN: BPF_PROG_TEST_RUN failed on CPU %d", c);
	}
	for (__u64 t[2]; read(times[0], t, sizeof(t)) == sizeof(t);) {
		span[0] = t[0] < span[0] ? t[0] : span[0];
		span[1] = t[1] > span[1] ? t[1] : span[1];
	}
	close(times[0]);
	stats_read(after);
	passed = after[PASSED] - before[PASSED];
	judged = passed + after[RATE_LIMITED] - before[RATE_LIMITED];
	packets_run += judged;
	/* From the first start to the last end: tokens refilled while it ran, rounded up. */
	most = burst + (span[1] - span[0]) * rate / 1000000000ULL + 1;
	/* A CPU that keeps losing the compare-and-swap drops: allow 1% under the burst. */
	least = (burst < judged ? burst : judged) * 99 / 100;
	report(passed >= least && passed <= most, "%llu SYNs of %s on %d CPUs at once, %u/s "
	       "burst %u: %llu passed (%llu to %llu)", (unsigned long long)judged, src, n, rate,
	       burst, (unsigned long long)passed, (unsigned long long)least,
	       (unsigned long long)most);
}

static void load(void)
{
	__u16 ports[] = { PORT, PORT2 };
	__u8 one = 1;

	skel = guard_bpf__open_and_load();
	CHECK(skel, "guard_bpf__open_and_load: %s (run as root)", strerror(errno));
	prog = bpf_program__fd(skel->progs.guard_xdp);
	stats_fd = bpf_map__fd(skel->maps.guard_stats);
	deny_fd = bpf_map__fd(skel->maps.guard_deny);
	config_fd = bpf_map__fd(skel->maps.guard_config);
	syn_fd = bpf_map__fd(skel->maps.guard_syn);
	ports_fd = bpf_map__fd(skel->maps.guard_ports);
	SYSCHECK(ncpus = libbpf_num_possible_cpus());
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		SYSCHECK(bpf_map_update_elem(ports_fd, &ports[i], &one, BPF_ANY));
}

int main(void)
{
	__u64 total[NCTR], sum = 0;
	struct bpf_prog_info info = { 0 };
	__u32 info_len = sizeof(info);

	setvbuf(stdout, NULL, _IOLBF, 0);
	load();
	SYSCHECK(bpf_obj_get_info_by_fd(prog, &info, &info_len));
	printf("# guard_xdp loaded: %u instructions (xlated %u bytes, jited %u bytes)\n",
	       info.xlated_prog_len / 8, info.xlated_prog_len, info.jited_prog_len);

	/* 1. */
	deny_add("198.51.100.0", 24);
	deny_add("2001:db8:bad::", 48);
	RUN_TABLE(parse_rows);

	/* 2. */
	deny_add("203.0.113.7", 32);
	deny_add("10.0.0.0", 8);
	deny_add("10.1.2.3", 32);
	deny_add("2001:db8:dead:beef::1", 128);
	RUN_TABLE(deny_rows);
	deny_del("10.0.0.0", 8);
	RUN_TABLE(deny_del_rows);
	deny_add("0.0.0.0", 0);
	RUN_TABLE(deny_all4_rows);
	deny_del("0.0.0.0", 0);

	/* 3. */
	check_burst();
	check_refill();
	check_concurrent("192.0.2.90", 1, 50000);
	check_concurrent("192.0.2.91", 100000, 1);

	stats_read(total);
	for (int i = 0; i < NCTR; i++)
		sum += total[i];
	report(sum == packets_run, "guard_stats count %llu packets of %llu run: passed %llu, "
	       "denied %llu, rate_limited %llu, not_judged %llu, malformed %llu",
	       (unsigned long long)sum, (unsigned long long)packets_run,
	       (unsigned long long)total[PASSED], (unsigned long long)total[DENIED],
	       (unsigned long long)total[RATE_LIMITED], (unsigned long long)total[NOT_JUDGED],
	       (unsigned long long)total[MALFORMED]);
	guard_bpf__destroy(skel);
	if (rows_failed) {
		fprintf(stderr, "test_guard: FAIL: %d of %d checks\n", rows_failed, rows_run);
		return 1;
	}
	printf("# all %d checks passed\n", rows_run);
	return 0;
}
