// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * PROXY protocol v1/v2 (haproxy.org/download/2.9/doc/proxy-protocol.txt).
 *
 * The parser answers "need more" only while the bytes so far can still become a valid
 * header, so that a client sending HTTP (or garbage) to an accept_proxy listener is
 * dropped at once instead of after header_timeout_ms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proxy_proto.h"

static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

enum { V2_LOCAL = 0x0, V2_PROXY = 0x1 };
enum { V2_UNSPEC = 0x0, V2_INET = 0x1, V2_INET6 = 0x2, V2_UNIX = 0x3 };
enum { V2_STREAM = 0x1, V2_DGRAM = 0x2 };
#define V2_INET_LEN 12
#define V2_INET6_LEN 36

/* The longest textual IPv6 address inet_pton() takes: 6 groups and a dotted quad. */
#define ADDR_TEXT_MAX 45

/* ---- building ---- */

static ssize_t build_v1(const struct sockaddr_any *src, const struct sockaddr_any *dst,
			char *out)
{
	char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	int fam = src->sa.sa_family;
	const void *sa, *da;
	unsigned sp, dp;

	if (fam != dst->sa.sa_family)
		return -EAFNOSUPPORT;
	if (fam == AF_INET) {
		sa = &src->in.sin_addr, da = &dst->in.sin_addr;
		sp = ntohs(src->in.sin_port), dp = ntohs(dst->in.sin_port);
	} else {
		sa = &src->in6.sin6_addr, da = &dst->in6.sin6_addr;
		sp = ntohs(src->in6.sin6_port), dp = ntohs(dst->in6.sin6_port);
	}
	if (!inet_ntop(fam, sa, s, sizeof(s)) || !inet_ntop(fam, da, d, sizeof(d)))
		return -EAFNOSUPPORT;
	return snprintf(out, PROXY_BUILD_MAX, "PROXY TCP%c %s %s %u %u\r\n",
			fam == AF_INET ? '4' : '6', s, d, sp, dp);
}

/* @a's address as 16 bytes (IPv4 mapped) and its port in network order. */
static void v6_parts(const struct sockaddr_any *a, uint8_t ip[16], uint8_t port[2])
{
	if (a->sa.sa_family == AF_INET) {
		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &a->in.sin_addr, 4);
		memcpy(port, &a->in.sin_port, 2);
	} else {
		memcpy(ip, &a->in6.sin6_addr, 16);
		memcpy(port, &a->in6.sin6_port, 2);
	}
}

static ssize_t build_v2(const struct sockaddr_any *src, const struct sockaddr_any *dst,
			uint8_t *out)
{
	bool v4 = src->sa.sa_family == AF_INET && dst->sa.sa_family == AF_INET;
	uint8_t *p = out + PROXY_V2_FIXED;

	memcpy(out, v2_sig, sizeof(v2_sig));
	out[12] = 0x20 | V2_PROXY;
	out[13] = (v4 ? V2_INET : V2_INET6) << 4 | V2_STREAM;
	out[14] = 0;
	out[15] = v4 ? V2_INET_LEN : V2_INET6_LEN;
	if (v4) {
		memcpy(p, &src->in.sin_addr, 4);
		memcpy(p + 4, &dst->in.sin_addr, 4);
		memcpy(p + 8, &src->in.sin_port, 2);
		memcpy(p + 10, &dst->in.sin_port, 2);
	} else {
		v6_parts(src, p, p + 32);
		v6_parts(dst, p + 16, p + 34);
	}
	return PROXY_V2_FIXED + out[15];
}

static bool is_ip(const struct sockaddr_any *a)
{
	return a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6;
}

ssize_t proxy_build(int version, const struct sockaddr_any *src, const struct sockaddr_any *dst,
		    char *out, size_t len)
{
	char tmp[PROXY_BUILD_MAX];
	ssize_t n;

	if (version != 1 && version != 2)
		return -EINVAL;
	if (!is_ip(src) || !is_ip(dst))
		return -EAFNOSUPPORT;
	/* Built aside so that a short @out is left as it was. */
	n = version == 1 ? build_v1(src, dst, tmp) : build_v2(src, dst, (uint8_t *)tmp);
	if (n < 0)
		return n;
	if ((size_t)n > len)
		return -ENOSPC;
	memcpy(out, tmp, n);
	return n;
}

/* ---- v1 ---- */

struct field {
	const char *s;
	size_t len;
};

static bool field_is(struct field f, const char *word)
{
	return f.len == strlen(word) && !memcmp(f.s, word, f.len);
}

/* @f could still grow into @word. */
static bool field_starts(struct field f, const char *word)
{
	return f.len <= strlen(word) && !memcmp(f.s, word, f.len);
}

/*
 * A port: "0" or 1..65535 without leading zeros. With @partial, anything that more
 * digits can still turn into one (the empty string too).
 */
static bool port_ok(struct field f, bool partial, uint16_t *port)
{
	unsigned v = 0;

	if (!f.len)
		return partial;
	if (f.len > 5 || (f.s[0] == '0' && f.len > 1))
		return false;
	for (size_t i = 0; i < f.len; i++) {
		if (f.s[i] < '0' || f.s[i] > '9')
			return false;
		v = v * 10 + (f.s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = v;
	return true;
}

static bool pton_with(int fam, const char *s, size_t len, const char *tail, unsigned reps,
		      const char *more, void *out)
{
	char buf[128];
	size_t n = len;

	memcpy(buf, s, len);
	for (const char *t = tail; *t; t++)
		buf[n++] = *t;
	for (unsigned i = 0; i < reps; i++) {
		memcpy(buf + n, more, 2);
		n += 2;
	}
	buf[n] = '\0';
	return inet_pton(fam, buf, out) == 1;
}

/*
 * @f as an address of @fam. With @partial, whether some continuation makes it one:
 * inet_pton() is the judge, asked about @f completed with zero groups (":0", ".0"),
 * after a "0" if it ends in a separator, or after a ":" if it is ":" (making "::").
 * That covers every place a prefix of a valid address can end in.
 */
static bool addr_ok(int fam, struct field f, bool partial, void *out)
{
	static const char *const bases[] = { "", "0", ":" };
	unsigned nbases = fam == AF_INET ? 2 : 3;
	uint8_t scratch[16];

	if (f.len > ADDR_TEXT_MAX || memchr(f.s, '\0', f.len))
		return false;
	if (!partial)
		return f.len && pton_with(fam, f.s, f.len, "", 0, "", out);
	for (unsigned b = 0; b < nbases; b++)
		for (unsigned k = 0; k <= 8; k++) {
			bool v6 = fam == AF_INET6;

			if (v6 && pton_with(fam, f.s, f.len, bases[b], k, ":0", scratch))
				return true;
			if (k <= 3 && pton_with(fam, f.s, f.len, bases[b], k, ".0", scratch))
				return true;
		}
	return false;
}

static void set_addr(struct sockaddr_any *a, int fam, const uint8_t *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (fam == AF_INET) {
		a->len = sizeof(a->in);
		a->in.sin_family = AF_INET;
		a->in.sin_port = htons(port);
		memcpy(&a->in.sin_addr, ip, 4);
	} else {
		a->len = sizeof(a->in6);
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(port);
		memcpy(&a->in6.sin6_addr, ip, 16);
	}
}

/*
 * "src dst sport dport" of a TCP4/TCP6 line in @s[0..n). @whole: the line ends there;
 * otherwise more may follow and the last field is judged as a beginning.
 */
static int v1_addrs(int fam, const char *s, size_t n, bool whole, struct proxy_info *info)
{
	const char *p = s, *end = s + n;
	struct field f[4];
	unsigned nf = 0;
	uint8_t ip[2][16] = { { 0 } };
	uint16_t port[2] = { 0, 0 };

	for (;;) {
		const char *sp = memchr(p, ' ', end - p);

		if (nf == 4)
			return -EINVAL; /* a fifth field, even an empty one */
		f[nf++] = (struct field){ p, (sp ? sp : end) - p };
		if (!sp)
			break;
		p = sp + 1;
	}
	if (whole && nf != 4)
		return -EINVAL;
	for (unsigned i = 0; i < nf; i++) {
		bool partial = !whole && i == nf - 1;
		bool ok = i < 2 ? addr_ok(fam, f[i], partial, ip[i])
				: port_ok(f[i], partial, &port[i - 2]);

		if (!ok)
			return -EINVAL;
	}
	if (whole) {
		info->local = false;
		set_addr(&info->src, fam, ip[0], port[0]);
		set_addr(&info->dst, fam, ip[1], port[1]);
	}
	return 0;
}

/* What follows "PROXY " in @s[0..n), without the CRLF; @whole as for v1_addrs(). */
static int v1_fields(const char *s, size_t n, bool whole, struct proxy_info *info)
{
	const char *sp = memchr(s, ' ', n);
	struct field proto = { s, sp ? (size_t)(sp - s) : n };
	bool done = sp || whole; /* the protocol word is complete */

	if (field_is(proto, "UNKNOWN") && done) {
		/* The spec has receivers ignore the rest of an UNKNOWN line. */
		if (whole) {
			memset(info, 0, sizeof(*info));
			info->local = true;
		}
		return 0;
	}
	if (!done) {
		bool ok = field_starts(proto, "TCP4") || field_starts(proto, "TCP6") ||
			  field_starts(proto, "UNKNOWN");

		return ok ? 0 : -EINVAL;
	}
	if (!sp) /* "PROXY TCP4\r\n" */
		return -EINVAL;
	if (field_is(proto, "TCP4"))
		return v1_addrs(AF_INET, sp + 1, n - proto.len - 1, whole, info);
	if (field_is(proto, "TCP6"))
		return v1_addrs(AF_INET6, sp + 1, n - proto.len - 1, whole, info);
	return -EINVAL;
}

static ssize_t parse_v1(const char *buf, size_t len, struct proxy_info *info)
{
	size_t n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	struct proxy_info out;
	int r;

	if (memcmp(buf, "PROXY ", n < 6 ? n : 6))
		return -EINVAL;
	for (size_t i = 6; i < n; i++) {
		if (buf[i] == '\n')
			return -EINVAL;
		if (buf[i] != '\r')
			continue;
		if (i + 2 > PROXY_V1_MAX || (i + 1 < len && buf[i + 1] != '\n'))
			return -EINVAL;
		r = v1_fields(buf + 6, i - 6, true, &out);
		if (r < 0 || i + 1 == len) /* the LF may still come: the line is judged whole */
			return r;
		*info = out;
		return i + 2;
	}
	if (len >= PROXY_V1_MAX)
		return -EINVAL;
	return n <= 6 ? 0 : v1_fields(buf + 6, n - 6, false, &out);
}

/* ---- v2 ---- */

/* Address block length a PROXY command needs for @fam, or -EINVAL if it carries no TCP. */
static int v2_addr_len(uint8_t fam)
{
	if ((fam & 0xf) != V2_STREAM)
		return -EINVAL;
	if (fam >> 4 == V2_INET)
		return V2_INET_LEN;
	if (fam >> 4 == V2_INET6)
		return V2_INET6_LEN;
	return -EINVAL;
}

/*
 * The TLVs in @blk[@off..@want) after the addresses, of which @blk[0..@have) is there:
 * each must fit exactly. Returns 0 if they do as far as can be told, -EINVAL if not.
 */
static int v2_tlvs(const uint8_t *blk, size_t off, size_t have, size_t want)
{
	while (off < want) {
		size_t vlen;

		if (want - off < 3)
			return -EINVAL;
		if (off + 3 > have)
			return 0;
		vlen = (size_t)blk[off + 1] << 8 | blk[off + 2];
		if (vlen > want - off - 3)
			return -EINVAL;
		off += 3 + vlen;
	}
	return 0;
}

static void v2_info(const uint8_t *a, bool v4, struct proxy_info *info)
{
	size_t n = v4 ? 4 : 16;

	info->local = false;
	set_addr(&info->src, v4 ? AF_INET : AF_INET6, a, a[2 * n] << 8 | a[2 * n + 1]);
	set_addr(&info->dst, v4 ? AF_INET : AF_INET6, a + n, a[2 * n + 2] << 8 | a[2 * n + 3]);
}

static ssize_t parse_v2(const uint8_t *b, size_t len, struct proxy_info *info)
{
	size_t hlen, have;
	int alen = 0;

	if (memcmp(b, v2_sig, len < 12 ? len : 12))
		return -EINVAL;
	if (len > 12 && (b[12] >> 4 != 2 || (b[12] & 0xf) > V2_PROXY))
		return -EINVAL;
	/* Family and protocol values the spec does not define must be rejected. */
	if (len > 13 && (b[13] >> 4 > V2_UNIX || (b[13] & 0xf) > V2_DGRAM))
		return -EINVAL;
	if (len > 13 && (b[12] & 0xf) == V2_PROXY && (alen = v2_addr_len(b[13])) < 0)
		return -EINVAL;
	if (len < PROXY_V2_FIXED)
		return 0;
	hlen = (size_t)b[14] << 8 | b[15];
	if (hlen > PROXY_V2_MAX_LEN || hlen < (size_t)alen)
		return -EINVAL;
	have = len - PROXY_V2_FIXED < hlen ? len - PROXY_V2_FIXED : hlen;
	/* A LOCAL header's contents are to be ignored; only a PROXY one's TLVs are read. */
	if (alen && v2_tlvs(b + PROXY_V2_FIXED, alen, have, hlen) < 0)
		return -EINVAL;
	if (have < hlen)
		return 0;
	if (alen) {
		v2_info(b + PROXY_V2_FIXED, alen == V2_INET_LEN, info);
	} else {
		memset(info, 0, sizeof(*info));
		info->local = true;
	}
	return PROXY_V2_FIXED + hlen;
}

ssize_t proxy_parse(const char *buf, size_t len, struct proxy_info *info)
{
	if (!len)
		return 0;
	if (buf[0] == 'P')
		return parse_v1(buf, len, info);
	if (buf[0] == '\r')
		return parse_v2((const uint8_t *)buf, len, info);
	return -EINVAL;
}
