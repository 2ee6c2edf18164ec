// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Listener guard at XDP: sheds abusive sources before each one costs a socket, an
 * accept and a parse.
 *
 * Only TCP to a port in `guard_ports` is judged. A source in `guard_deny` is dropped
 * on every such packet; a SYN without ACK spends a token of its source's bucket in
 * `guard_syn` and is dropped when there is none. Everything else passes untouched:
 * other ports, other protocols, non-first fragments, and frames whose headers are cut
 * short (the stack drops those itself; the program only must not read past them).
 *
 * Lengths come from the IP header, not from the frame: a short IP packet is padded to
 * the Ethernet minimum, and padding must not be read as a TCP header.
 *
 * Fragments. A non-first fragment has no TCP header and passes; without its first
 * fragment it is never reassembled. A first fragment is judged like any packet. A
 * first fragment too short for the whole TCP header (RFC 1858's tiny fragment: the
 * flags arrive in the next fragment) is charged as a SYN, or a SYN split that way would
 * slip past the rate limit.
 *
 * A plain `xdp` program, not `xdp.frags`: drivers refuse it where a frame may not fit
 * one buffer and generic XDP linearizes the skb first, so data_end ends the frame.
 */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "guard_shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP	0x0800
#define ETH_P_IPV6	0x86DD
#define ETH_P_8021Q	0x8100
#define ETH_P_8021AD	0x88A8

#define IP_MF		0x2000	/* iphdr.frag_off: more fragments */
#define IP_OFFSET	0x1fff	/* iphdr.frag_off: fragment offset */
#define IP6_MF		0x0001	/* frag_hdr.frag_off: more fragments */
#define IP6_OFFSET	0xfff8	/* frag_hdr.frag_off: fragment offset */

#define NEXTHDR_HOP	 0
#define NEXTHDR_ROUTING	 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH	 51
#define NEXTHDR_DEST	 60

/* VLAN tags looked through: 802.1Q, or QinQ (802.1ad outer, 802.1Q inner). */
#ifndef GUARD_VLAN_MAX
#define GUARD_VLAN_MAX 2
#endif

/* IPv6 extension headers looked through before giving up (not judged). */
#ifndef GUARD_EXT_MAX
#define GUARD_EXT_MAX 6
#endif

/* Compare-and-swap attempts on a contended bucket word before giving up. */
#ifndef GUARD_CAS_TRIES
#define GUARD_CAS_TRIES 4
#endif

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

/* Listen ports to judge: TCP destination port (host order) -> 1. The daemon fills it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GUARD_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} guard_ports SEC(".maps");

/* Denied source prefixes: {prefixlen, address} -> origin. The daemon fills it. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GUARD_MAX_DENY);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct guard_lpm_key);
	__type(value, struct guard_deny);
} guard_deny SEC(".maps");

/* The SYN rate limit: key 0 -> rate and burst. The daemon writes it, at run time too. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} guard_config SEC(".maps");

/* SYN token buckets: source (/32 or /64) -> bucket. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GUARD_MAX_SOURCES);
	__type(key, struct guard_src);
	__type(value, struct guard_bucket);
} guard_syn SEC(".maps");

/* What became of the packets, per CPU: key 0 -> counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_stats);
} guard_stats SEC(".maps");

/* A parse step's result: go on, or the packet's fate (one guard_stats field each). */
enum outcome {
	GO,
	PASSED,
	DENIED,
	RATE_LIMITED,
	NOT_JUDGED,
	MALFORMED,
};

/* Where parsing is: the next header, and the IP packet's bytes from there on. */
struct cursor {
	void *pos;
	void *data_end;
	__u32 left;	/* bytes of the IP packet from pos, by its length field */
	bool more;	/* a first fragment: more fragments follow */
	bool v6;
	__u8 src[16];	/* source address, IPv4-mapped for IPv4 */
};

/* Ethernet and up to GUARD_VLAN_MAX VLAN tags. Sets *proto (network order). */
static __always_inline enum outcome parse_eth(struct cursor *c, __be16 *proto)
{
	struct ethhdr *eth = c->pos;
	struct vlan_hdr *vh;
	__be16 type;

	if ((void *)(eth + 1) > c->data_end)
		return MALFORMED;
	type = eth->h_proto;
	c->pos = eth + 1;
#pragma unroll
	for (int i = 0; i < GUARD_VLAN_MAX; i++) {
		if (type != bpf_htons(ETH_P_8021Q) && type != bpf_htons(ETH_P_8021AD))
			break;
		vh = c->pos;
		if ((void *)(vh + 1) > c->data_end)
			return MALFORMED;
		type = vh->h_vlan_encapsulated_proto;
		c->pos = vh + 1;
	}
	*proto = type;
	return GO;
}

/* IPv4 header and options; GO when a TCP header (or first fragment of one) follows. */
static __always_inline enum outcome parse_ipv4(struct cursor *c)
{
	struct iphdr *ip = c->pos;
	__u32 hlen, len;

	if ((void *)(ip + 1) > c->data_end)
		return MALFORMED;
	hlen = ip->ihl * 4;
	len = bpf_ntohs(ip->tot_len);
	if (hlen < sizeof(*ip) || len < hlen || c->pos + len > c->data_end)
		return MALFORMED;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return NOT_JUDGED;
	if (ip->protocol != IPPROTO_TCP)
		return NOT_JUDGED;
	c->more = ip->frag_off & bpf_htons(IP_MF);
	c->src[10] = 0xff;
	c->src[11] = 0xff;
	__builtin_memcpy(&c->src[12], &ip->saddr, 4);
	c->pos += hlen;
	c->left = len - hlen;
	return GO;
}

/*
 * One IPv6 extension header at c->pos, of type *nexthdr: skip it and set *nexthdr to
 * the next. NOT_JUDGED for a non-first fragment or a header it cannot skip.
 */
static __always_inline enum outcome skip_ext(struct cursor *c, __u8 *nexthdr)
{
	struct ipv6_opt_hdr *h = c->pos;
	struct frag_hdr *fh = c->pos;
	__u32 hlen;

	switch (*nexthdr) {
	case NEXTHDR_HOP:
	case NEXTHDR_ROUTING:
	case NEXTHDR_DEST:
		if ((void *)(h + 1) > c->data_end)
			return MALFORMED;
		hlen = (h->hdrlen + 1) * 8;
		break;
	case NEXTHDR_AUTH:
		if ((void *)(h + 1) > c->data_end)
			return MALFORMED;
		hlen = (h->hdrlen + 2) * 4;
		break;
	case NEXTHDR_FRAGMENT:
		if ((void *)(fh + 1) > c->data_end)
			return MALFORMED;
		if (fh->frag_off & bpf_htons(IP6_OFFSET))
			return NOT_JUDGED;
		c->more = fh->frag_off & bpf_htons(IP6_MF);
		hlen = sizeof(*fh);
		break;
	default:
		return NOT_JUDGED; /* not TCP: UDP, ICMPv6, ESP, no next header, ... */
	}
	if (hlen > c->left)
		return MALFORMED;
	*nexthdr = h->nexthdr;
	c->pos += hlen;
	c->left -= hlen;
	return GO;
}

/* IPv6 header and extension headers; GO when a TCP header follows. */
static __always_inline enum outcome parse_ipv6(struct cursor *c)
{
	struct ipv6hdr *ip6 = c->pos;
	enum outcome o;
	__u8 nexthdr;

	if ((void *)(ip6 + 1) > c->data_end)
		return MALFORMED;
	c->left = bpf_ntohs(ip6->payload_len);
	/* 0 is a jumbogram's: over 64 KiB, never a frame of a NIC the guard runs on. */
	if (!c->left)
		return NOT_JUDGED;
	if ((void *)(ip6 + 1) + c->left > c->data_end)
		return MALFORMED;
	c->v6 = true;
	__builtin_memcpy(c->src, &ip6->saddr, sizeof(c->src));
	c->pos = ip6 + 1;
	nexthdr = ip6->nexthdr;
#pragma unroll
	for (int i = 0; i < GUARD_EXT_MAX; i++) {
		if (nexthdr == IPPROTO_TCP)
			return GO;
		o = skip_ext(c, &nexthdr);
		if (o != GO)
			return o;
	}
	return nexthdr == IPPROTO_TCP ? GO : NOT_JUDGED;
}

/*
 * Bucket refill: tokens after elapsed_ns at rate per second, at most cap (which a
 * reload may have lowered below the tokens).
 */
static __always_inline __u64 refill(__u64 tokens, __u64 elapsed_ns, __u64 rate, __u64 cap)
{
	if (tokens >= cap)
		return cap;
	/* Past the time to fill up, stop: elapsed_ns * rate could overflow. */
	if (elapsed_ns > (cap - tokens) / rate)
		return cap;
	return tokens + elapsed_ns * rate;
}

/*
 * Spend a token of bucket @b, refilled first. Several CPUs may update one bucket at
 * once (a flood from one source spreads over the receive queues), and an LRU map
 * cannot hold a bpf_spin_lock: each word changes by compare-and-swap. Only the CPU
 * that moves last_ns credits the time since the previous value, so no interval counts
 * twice. True when the bucket is empty (or the swap kept losing: a flood).
 */
static __always_inline bool spend_token(struct guard_bucket *b, __u64 now, __u64 rate, __u64 cap)
{
	__u64 last = READ_ONCE(b->last_ns), t;

	if (now > last && __sync_val_compare_and_swap(&b->last_ns, last, now) == last) {
#pragma unroll
		for (int i = 0; i < GUARD_CAS_TRIES; i++) {
			t = READ_ONCE(b->tokens);
			if (__sync_val_compare_and_swap(&b->tokens, t,
							refill(t, now - last, rate, cap)) == t)
				break;
		}
	}
#pragma unroll
	for (int i = 0; i < GUARD_CAS_TRIES; i++) {
		t = READ_ONCE(b->tokens);
		if (t < GUARD_TOKEN)
			return true;
		if (__sync_val_compare_and_swap(&b->tokens, t, t - GUARD_TOKEN) == t)
			return false;
	}
	return true;
}

/* A SYN from c->src: true when its bucket has no token left (the SYN is dropped). */
static __always_inline bool syn_over_rate(const struct cursor *c)
{
	struct guard_bucket fresh = {}, *b;
	struct guard_src src = {};
	struct guard_config *cfg;
	__u64 now, rate, cap;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&guard_config, &zero);
	if (!cfg || !cfg->syn_rate)
		return false;
	rate = cfg->syn_rate;
	cap = (cfg->syn_burst ?: 1) * GUARD_TOKEN;
	__builtin_memcpy(src.addr, c->src, sizeof(src.addr));
	if (c->v6)
		__builtin_memset(&src.addr[GUARD_SRC6_PREFIX / 8], 0, 16 - GUARD_SRC6_PREFIX / 8);
	now = bpf_ktime_get_ns();

	b = bpf_map_lookup_elem(&guard_syn, &src);
	if (!b) {
		/* A new source starts with a full bucket and spends one token. */
		fresh.tokens = cap - GUARD_TOKEN;
		fresh.last_ns = now;
		if (!bpf_map_update_elem(&guard_syn, &src, &fresh, BPF_NOEXIST))
			return false;
		/* Another CPU added it first. */
		b = bpf_map_lookup_elem(&guard_syn, &src);
		if (!b)
			return false;
	}
	return spend_token(b, now, rate, cap);
}

/* The TCP header at c->pos: the verdict on a segment to a listen port. */
static __always_inline enum outcome judge_tcp(struct cursor *c)
{
	struct guard_lpm_key key;
	struct tcphdr *th = c->pos;
	__u16 port;
	bool syn;

	/* The ports are the first 4 bytes; a first fragment carries at least 8. */
	if (c->left < 4 || c->pos + 4 > c->data_end)
		return MALFORMED;
	port = bpf_ntohs(th->dest);
	if (!bpf_map_lookup_elem(&guard_ports, &port))
		return NOT_JUDGED;
	if (c->left >= sizeof(*th)) {
		if ((void *)(th + 1) > c->data_end)
			return MALFORMED;
		syn = th->syn && !th->ack;
	} else if (c->more) {
		syn = true; /* tiny first fragment: its flags may be in the next one */
	} else {
		return MALFORMED;
	}
	/* Field by field: an initializer would make clang emit a .rodata map. */
	key.prefixlen = 128;
	__builtin_memcpy(key.addr, c->src, sizeof(key.addr));
	if (bpf_map_lookup_elem(&guard_deny, &key))
		return DENIED;
	if (syn && syn_over_rate(c))
		return RATE_LIMITED;
	return PASSED;
}

static __always_inline enum outcome judge(struct xdp_md *ctx)
{
	struct cursor c = {
		.pos = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	enum outcome o;
	__be16 proto;

	o = parse_eth(&c, &proto);
	if (o != GO)
		return o;
	if (proto == bpf_htons(ETH_P_IP))
		o = parse_ipv4(&c);
	else if (proto == bpf_htons(ETH_P_IPV6))
		o = parse_ipv6(&c);
	else
		return NOT_JUDGED;
	if (o != GO)
		return o;
	return judge_tcp(&c);
}

static __always_inline void count(enum outcome o)
{
	__u32 zero = 0;
	struct guard_stats *s = bpf_map_lookup_elem(&guard_stats, &zero);

	if (!s)
		return;
	switch (o) {
	case PASSED:
		s->passed++;
		break;
	case DENIED:
		s->denied++;
		break;
	case RATE_LIMITED:
		s->rate_limited++;
		break;
	case MALFORMED:
		s->malformed++;
		break;
	default:
		s->not_judged++;
		break;
	}
}

SEC("xdp")
int guard_xdp(struct xdp_md *ctx)
{
	enum outcome o = judge(ctx);

	count(o);
	return o == DENIED || o == RATE_LIMITED ? XDP_DROP : XDP_PASS;
}
