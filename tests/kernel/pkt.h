/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Test frames from a list of layers, for packet tables: Ethernet first, then each
 * layer in turn, each one's type written into the field of the one before (the
 * EtherType, the IPv4 protocol, the IPv6 next header). IP lengths cover every byte
 * after the IP header unless a row says otherwise. Checksums are left zero: XDP does
 * not check them.
 */
#ifndef TUNNELGATE_TEST_PKT_H
#define TUNNELGATE_TEST_PKT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <linux/types.h>

#define PKT_MAX_LAYERS	12
#define PKT_MAX_BYTES	3584	/* under a page less XDP's headroom and tailroom */

enum pkt_kind {
	K_END,		/* end of the list */
	K_RAW,		/* EtherType a, b bytes of zeros (ARP and the like) */
	K_Q,		/* 802.1Q tag */
	K_AD,		/* 802.1ad tag (QinQ outer) */
	K_IP4,		/* IPv4: IHL a (0 = 5, 16 = IHL 0), frag_off field b (flags, offset) */
	K_IP6,		/* IPv6 */
	K_HOP,		/* IPv6 hop-by-hop options, hdrlen a: (a + 1) * 8 bytes */
	K_RT,		/* IPv6 routing header, likewise */
	K_DST,		/* IPv6 destination options, likewise */
	K_AH,		/* IPv6 authentication header, hdrlen a: (a + 2) * 4 bytes */
	K_FRAG,		/* IPv6 fragment header, offset a bytes, M flag b */
	K_ESP,		/* ESP, 16 bytes */
	K_NONE,		/* IPv6 "no next header" */
	K_TCP,		/* TCP to port a, flags b; the first c bytes only when c is set */
	K_UDP,		/* UDP to port a */
	K_ICMP,		/* ICMP echo request (ICMPv6 after IPv6) */
};

struct pkt_layer {
	enum pkt_kind kind;
	int a, b, c;
};

struct pkt {
	unsigned char b[PKT_MAX_BYTES];
	size_t len;
	size_t start[PKT_MAX_LAYERS + 1]; /* [0] Ethernet, [i] the i-th listed layer */
};

/* What a frame is built from, beyond its layers. */
struct pkt_opts {
	const char *src;	/* source address (IPv4 or IPv6 text) */
	int ip_len;		/* IPv4 tot_len or IPv6 payload_len to write: > 0 this, < 0 zero */
	int pad_to;		/* pad with 0xff bytes to this frame size (past the IP length) */
	int cut;		/* > 0: the frame ends keep bytes into layer cut - 1 */
	int keep;
};

#define TCP_FIN	0x01
#define TCP_SYN	0x02
#define TCP_RST	0x04
#define TCP_PSH	0x08
#define TCP_ACK	0x10

static inline unsigned char *pkt_put(struct pkt *p, size_t n)
{
	unsigned char *at = p->b + p->len;

	memset(at, 0, n);
	p->len += n;
	return at;
}

static inline void pkt_be16(unsigned char *at, unsigned v)
{
	at[0] = v >> 8;
	at[1] = v;
}

/* Bytes of layer @l; 0 for an unknown kind too. */
static inline size_t pkt_layer_len(const struct pkt_layer *l)
{
	switch (l->kind) {
	case K_RAW:
		return l->b;
	case K_Q:
	case K_AD:
		return 4;
	case K_IP4:
		return (l->a > 5 && l->a < 16 ? l->a : 5) * 4;
	case K_IP6:
		return 40;
	case K_HOP:
	case K_RT:
	case K_DST:
		return (l->a + 1) * 8;
	case K_AH:
		return (l->a + 2) * 4;
	case K_FRAG:
		return 8;
	case K_ESP:
		return 16;
	case K_TCP:
		return l->c ? l->c : 20;
	case K_UDP:
		return 12;
	case K_ICMP:
		return 8;
	default:
		return 0;
	}
}

/* IPv6 next header / IPv4 protocol of an IP payload layer; -1 for the others. */
static inline int pkt_proto(const struct pkt_layer *l, bool v6)
{
	switch (l->kind) {
	case K_HOP:
		return 0;
	case K_RT:
		return 43;
	case K_FRAG:
		return 44;
	case K_ESP:
		return 50;
	case K_AH:
		return 51;
	case K_NONE:
		return 59;
	case K_DST:
		return 60;
	case K_TCP:
		return 6;
	case K_UDP:
		return 17;
	case K_ICMP:
		return v6 ? 58 : 1;
	default:
		return -1;
	}
}

/* EtherType of a layer that follows Ethernet or a VLAN tag; -1 for the others. */
static inline int pkt_ethertype(const struct pkt_layer *l)
{
	switch (l->kind) {
	case K_RAW:
		return l->a;
	case K_Q:
		return 0x8100;
	case K_AD:
		return 0x88a8;
	case K_IP4:
		return 0x0800;
	case K_IP6:
		return 0x86dd;
	default:
		return -1;
	}
}

/* Write the header of layer @l at @h (@n bytes, zeroed). False on a bad address. */
static inline bool pkt_fill(unsigned char *h, size_t n, const struct pkt_layer *l,
			    const char *src, bool v6)
{
	static const unsigned char dst4[4] = { 192, 0, 2, 100 };
	static const unsigned char dst6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x64 };
	unsigned char th[20] = { 0x9c, 0x40 }; /* TCP source port 40000 */

	switch (l->kind) {
	case K_Q:
	case K_AD:
		pkt_be16(h, 100); /* VLAN id */
		break;
	case K_IP4:
		if (!src || inet_pton(AF_INET, src, h + 12) != 1)
			return false;
		h[0] = 0x40 | ((l->a ? l->a : 5) & 0xf);
		pkt_be16(h + 6, l->b);
		h[8] = 64;
		memcpy(h + 16, dst4, 4);
		memset(h + 20, 1, n - 20); /* NOP options */
		break;
	case K_IP6:
		if (!src || inet_pton(AF_INET6, src, h + 8) != 1)
			return false;
		h[0] = 0x60;
		h[7] = 64;
		memcpy(h + 24, dst6, 16);
		break;
	case K_HOP:
	case K_DST:
	case K_AH:
		h[1] = l->a;
		break;
	case K_RT:
		h[1] = l->a;
		h[2] = 4; /* segment routing */
		break;
	case K_FRAG:
		pkt_be16(h + 2, (l->a & 0xfff8) | (l->b ? 1 : 0));
		memcpy(h + 4, "\x12\x34\x56\x78", 4);
		break;
	case K_TCP:
		pkt_be16(th + 2, l->a);
		th[12] = 5 << 4;
		th[13] = l->b;
		pkt_be16(th + 14, 64240);
		memcpy(h, th, n < sizeof(th) ? n : sizeof(th));
		break;
	case K_UDP:
		pkt_be16(h, 40000);
		pkt_be16(h + 2, l->a);
		pkt_be16(h + 4, n);
		break;
	case K_ICMP:
		h[0] = v6 ? 128 : 8; /* echo request */
		break;
	default:
		break;
	}
	return true;
}

/*
 * Build @layers into @p. The source address goes into the IP layer; its family must
 * match. Returns false when a layer does not fit, does not follow the one before, or
 * the address does not parse.
 */
static inline bool pkt_build(struct pkt *p, const struct pkt_layer *layers,
			     const struct pkt_opts *o)
{
	unsigned char *h, *type, *proto = NULL; /* where the next layer's type goes */
	size_t ip4 = 0, ip6 = 0, n;
	bool v6 = false;

	p->len = 0;
	h = pkt_put(p, 14);
	memcpy(h, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02", 12);
	type = h + 12;
	p->start[0] = 0;
	for (int i = 0; i < PKT_MAX_LAYERS && layers[i].kind != K_END; i++) {
		const struct pkt_layer *l = &layers[i];
		int et = pkt_ethertype(l), nh = pkt_proto(l, v6);

		n = pkt_layer_len(l);
		if (p->len + n > sizeof(p->b))
			return false;
		p->start[i + 1] = p->len;
		h = pkt_put(p, n);
		if (!pkt_fill(h, n, l, o->src, v6 || l->kind == K_IP6))
			return false;
		if (et >= 0) {
			if (!type)
				return false;
			pkt_be16(type, et);
		} else {
			if (!proto || nh < 0)
				return false;
			*proto = nh;
		}
		type = l->kind == K_Q || l->kind == K_AD ? h + 2 : NULL;
		switch (l->kind) {
		case K_IP4:
			proto = h + 9;
			ip4 = h - p->b;
			break;
		case K_IP6:
			proto = h + 6;
			ip6 = h - p->b;
			v6 = true;
			break;
		case K_HOP:
		case K_RT:
		case K_DST:
		case K_AH:
		case K_FRAG:
			proto = h; /* next header, first byte */
			break;
		default:
			proto = NULL;
			break;
		}
	}
	if (ip4)
		pkt_be16(p->b + ip4 + 2, o->ip_len > 0 ? (size_t)o->ip_len :
			 o->ip_len < 0 ? 0 : p->len - ip4);
	if (ip6)
		pkt_be16(p->b + ip6 + 4, o->ip_len > 0 ? (size_t)o->ip_len :
			 o->ip_len < 0 ? 0 : p->len - ip6 - 40);
	while (p->len < (size_t)o->pad_to)
		p->b[p->len++] = 0xff;
	if (o->cut > 0) {
		size_t end = p->start[o->cut - 1] + o->keep;

		if (end > p->len)
			return false;
		p->len = end;
	}
	return true;
}

#endif
