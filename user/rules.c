// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Request rules. Hosts and paths are compared in a canonical form, so that no
 * spelling an origin server (or a resolver) maps to the same resource slips past a
 * rule: "/%2Fadmin", "/x/..;/admin", "/%5cadmin" and "/ADMIN" all compare as
 * "/admin" (a rule says path_case = exact to keep case), "0x7f.1" and
 * "[::ffff:127.0.0.1]" as "127.0.0.1". Only matching uses that form: the request is
 * forwarded as the client sent it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* ASCII only: tolower() would follow the locale for bytes >= 0x80. */
static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/*
 * Decode the percent-escapes of path[0..end) into @out until none is left: an origin
 * that decodes twice reads "%252F" as '/', so the rules must too. Escapes cannot
 * overlap (a hex digit is not '%'), so the result does not depend on the order of
 * decoding: decoding whenever the output ends in an escape gives what repeated
 * passes over the whole string give, in linear time. What is left cannot be read
 * one way only: a '%' (an origin may reject it, or read "%u0061" as 'a') is -EILSEQ,
 * a NUL byte (a C origin ends the path there) -ERANGE. Returns the length.
 */
static int decode_all(const char *path, size_t end, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < end; i++) {
		out[o++] = path[i];
		while (o >= 3 && out[o - 3] == '%' && hexval(out[o - 2]) >= 0 &&
		       hexval(out[o - 1]) >= 0) {
			out[o - 3] = hexval(out[o - 2]) << 4 | hexval(out[o - 1]);
			o -= 2;
		}
	}
	for (i = 0; i < o; i++) {
		if (out[i] == '%')
			return -EILSEQ;
		if (out[i] == '\0')
			return -ERANGE;
		if (out[i] == '\\')
			out[i] = '/'; /* IIS, and Tomcat with ALLOW_BACKSLASH */
	}
	return o;
}

/*
 * Remove ";params", then dot segments and empty segments, segment by segment, from
 * the decoded path in out[0..o): Tomcat serves "/x/..;/admin" as "/admin", nginx
 * serves "//admin" as "/admin". The write position w never passes the read position r.
 */
static size_t remove_dots(char *out, size_t o)
{
	size_t r, w;

	for (r = 1, w = 0; r <= o;) {
		size_t seg = r, slen;
		const char *semi;
		bool last;

		while (r < o && out[r] != '/')
			r++;
		slen = r - seg;
		semi = memchr(out + seg, ';', slen);
		if (semi)
			slen = semi - (out + seg);
		last = r >= o;
		r++; /* past the '/' */
		if (slen == 2 && out[seg] == '.' && out[seg + 1] == '.') {
			while (w > 0 && out[w - 1] != '/')
				w--;
			if (w > 0)
				w--; /* drop the segment and its '/' */
		} else if (slen && !(slen == 1 && out[seg] == '.')) {
			out[w++] = '/';
			memmove(out + w, out + seg, slen);
			w += slen;
			continue;
		}
		/* ".", "..", an empty segment: a last one leaves a directory, "/a/." is "/a/" */
		if (last)
			out[w++] = '/';
	}
	if (!w)
		out[w++] = '/';
	out[w] = '\0';
	return w;
}

/*
 * Write each '?' and '#' of out[0..o) back as %3F / %23: the result must be its own
 * canonical form, and canonicalised again a bare '?' would end it. Each one came from
 * an escape of at least 3 bytes, so the result is no longer than the raw path.
 */
static int encode_delims(char *out, size_t o, size_t outlen)
{
	size_t n = 0, r, w;

	for (r = 0; r < o; r++)
		n += out[r] == '?' || out[r] == '#';
	if (o + 2 * n + 1 > outlen)
		return -ENOSPC;
	out[o + 2 * n] = '\0';
	for (r = o, w = o + 2 * n; r > 0 && w > r;) {
		char c = out[--r];

		if (c == '?' || c == '#') {
			out[--w] = "0123456789ABCDEF"[c & 15];
			out[--w] = "0123456789ABCDEF"[c >> 4];
			out[--w] = '%';
		} else {
			out[--w] = c;
		}
	}
	return o + 2 * n;
}

int path_canonical(const char *path, size_t len, char *out, size_t outlen)
{
	size_t end;
	int o;

	for (end = 0; end < len && path[end] != '?' && path[end] != '#'; end++)
		;
	if (end && path[0] != '/')
		return -EINVAL; /* "*" or a relative reference: not a path to match */
	if (outlen < end + 1 || outlen < 2)
		return -ENOSPC;
	if (!end) {
		strcpy(out, "/"); /* "http://h" and "http://h?q" ask for "/" */
		return 1;
	}
	o = decode_all(path, end, out);
	if (o < 0)
		return o;
	return encode_delims(out, remove_dots(out, o), outlen);
}

const char *path_strerror(int err)
{
	switch (err) {
	case -EILSEQ:
		return "percent-decoded (repeatedly: %25 is '%') it still has a '%' that is not "
		       "followed by two hex digits, e.g. %zz, %u0061 or a lone '%'; send only "
		       "valid %XX escapes";
	case -ERANGE:
		return "it holds a NUL byte (%00, or %2500 decoded twice); remove it";
	case -EINVAL:
		return "it does not start with '/'";
	case -ENOSPC:
	case -ENOMEM:
		return "out of memory; retry later";
	}
	return "it cannot be put in canonical form";
}

/* @s[0..len) (lower case, NUL-terminated, no NUL inside) as an IP address, into @out. */
static bool ip_canonical(const char *s, size_t len, char *out, size_t outlen)
{
	char v6[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	struct in_addr a4;
	bool brackets = len >= 2 && s[0] == '[' && s[len - 1] == ']';

	if (brackets) {
		s++;
		len -= 2;
	}
	if (brackets || memchr(s, ':', len)) {
		if (!len || len >= sizeof(v6))
			return false;
		memcpy(v6, s, len);
		v6[len] = '\0';
		if (inet_pton(AF_INET6, v6, &a6) != 1)
			return false;
		if (IN6_IS_ADDR_V4MAPPED(&a6))
			return inet_ntop(AF_INET, &a6.s6_addr[12], out, outlen);
		return inet_ntop(AF_INET6, &a6, out, outlen);
	}
	/*
	 * What getaddrinfo() takes for an IPv4 literal is inet_aton()'s syntax: 1 to 4
	 * parts, each decimal, 0x hex or 0 octal. inet_aton() alone would also take
	 * "1.2.3.4 anything", hence the character set.
	 */
	if (len && strspn(s, "0123456789abcdefx.") == len && inet_aton(s, &a4))
		return inet_ntop(AF_INET, &a4, out, outlen);
	return false;
}

int host_canonical(const char *host, size_t len, char *out, size_t outlen)
{
	size_t i;

	while (len && host[len - 1] == '.')
		len--;
	if (outlen < len + 1 || outlen < HOST_CANONICAL_MIN)
		return -ENOSPC;
	for (i = 0; i < len; i++)
		out[i] = lower(host[i]);
	out[len] = '\0';
	if (!memchr(out, '\0', len)) {
		char ip[INET6_ADDRSTRLEN];

		if (ip_canonical(out, len, ip, sizeof(ip))) {
			strcpy(out, ip);
			return strlen(out);
		}
	}
	return len;
}

int cidr_parse(const char *s, struct cidr *out)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	bool v6 = memchr(s, ':', alen) != NULL;
	unsigned max = v6 ? 128 : 32, len = max;
	struct cidr c = { 0 };

	if (!alen || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (slash) {
		const char *p = slash + 1;

		if (!*p || strlen(p) > 3)
			return -EINVAL;
		for (len = 0; *p; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			len = len * 10 + (*p - '0');
		}
		if (len > max)
			return -EINVAL;
	}
	if (v6) {
		if (inet_pton(AF_INET6, addr, c.addr) != 1)
			return -EINVAL;
		c.len = len;
	} else {
		if (inet_pton(AF_INET, addr, c.addr + 12) != 1)
			return -EINVAL;
		c.addr[10] = c.addr[11] = 0xff;
		c.len = len + 96;
	}
	*out = c;
	return 0;
}

bool cidr_contains(const struct cidr *c, const struct sockaddr_any *addr)
{
	uint8_t a[16];
	unsigned bytes = c->len / 8, bits = c->len % 8;

	if (!sockaddr_ip16(addr, a))
		return false;
	if (memcmp(a, c->addr, bytes))
		return false;
	return !bits || !((a[bytes] ^ c->addr[bytes]) & (0xff00 >> bits));
}

static bool in_any(const struct cidr *list, unsigned n, const struct sockaddr_any *addr)
{
	for (unsigned i = 0; i < n; i++)
		if (cidr_contains(&list[i], addr))
			return true;
	return false;
}

/* A request as the rules compare it; the canonical path is made when a rule needs it. */
struct canon {
	const struct rule_input *in;
	const char *host;        /* canonical, NUL-terminated; NULL: no host */
	size_t host_len;
	char *path;              /* room for the canonical path */
	int path_len;            /* 0: not made yet; else path_canonical()'s answer */
	char *heap;
	char stack[2048];
};

static int canon_init(struct canon *cn, const struct rule_input *in)
{
	size_t plen = in->path ? in->path_len + 2 : 0, hlen = 0;
	char *buf = cn->stack, *host;

	cn->in = in;
	cn->host = NULL;
	cn->path_len = 0;
	cn->heap = NULL;
	if (in->host)
		hlen = in->host_len < HOST_CANONICAL_MIN ? HOST_CANONICAL_MIN : in->host_len + 1;
	if (plen + hlen > sizeof(cn->stack)) {
		buf = cn->heap = malloc(plen + hlen);
		if (!buf)
			return -ENOMEM;
	}
	cn->path = buf;
	if (in->host) {
		host = buf + plen;
		cn->host_len = host_canonical(in->host, in->host_len, host, hlen); /* room: >= 0 */
		cn->host = host;
	}
	return 0;
}

/* The canonical path's length, or -errno (-EINVAL: there is none: CONNECT, "*"). */
static int canon_path(struct canon *cn)
{
	const struct rule_input *in = cn->in;

	if (!cn->path_len)
		cn->path_len = in->path ? path_canonical(in->path, in->path_len, cn->path,
							  in->path_len + 2) :
					  -EINVAL;
	return cn->path_len;
}

static bool has_prefix(const struct rule *r, const char *path, size_t len)
{
	size_t n = strlen(r->path_prefix);

	if (n > len)
		return false;
	if (r->path_case_exact)
		return !memcmp(path, r->path_prefix, n);
	for (size_t i = 0; i < n; i++)
		if (lower(path[i]) != lower(r->path_prefix[i]))
			return false;
	return true;
}

/*
 * 1 if @r holds, 0 if not, -errno if that depends on a path without canonical form.
 * The path comes last: a rule that does not apply for other reasons (a client inside
 * client_not_in) does not refuse a request for its path.
 */
static int rule_holds(const struct rule *r, struct canon *cn)
{
	const struct rule_input *in = cn->in;
	int n;

	if (r->method && (!in->method || strlen(r->method) != in->method_len ||
			  memcmp(r->method, in->method, in->method_len)))
		return 0;
	if (r->host && (!cn->host || strlen(r->host) != cn->host_len ||
			memcmp(r->host, cn->host, cn->host_len)))
		return 0;
	if (r->nclient_in && (!in->client || !in_any(r->client_in, r->nclient_in, in->client)))
		return 0;
	if (r->nclient_not_in &&
	    (!in->client || in_any(r->client_not_in, r->nclient_not_in, in->client)))
		return 0;
	if (r->ndest_in && (!in->dest || !in_any(r->dest_in, r->ndest_in, in->dest)))
		return 0;
	if (r->ndest_not_in && (!in->dest || in_any(r->dest_not_in, r->ndest_not_in, in->dest)))
		return 0;
	if (!r->path_prefix)
		return 1;
	n = canon_path(cn);
	if (n == -EINVAL)
		return 0; /* no path to match */
	return n < 0 ? n : has_prefix(r, cn->path, n);
}

int rules_match(const struct config *cfg, const struct rule_input *in, const struct rule **rule)
{
	struct canon cn;
	int holds = 0;
	unsigned i;

	*rule = NULL;
	if (canon_init(&cn, in))
		return -ENOMEM;
	for (i = 0; i < cfg->nrules && !holds; i++)
		holds = rule_holds(&cfg->rules[i], &cn);
	if (holds > 0)
		*rule = &cfg->rules[i - 1];
	free(cn.heap);
	return holds < 0 ? holds : 0;
}
