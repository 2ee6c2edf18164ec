// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Request rules. Paths are normalised before a prefix compare so that "/%61dmin",
 * "//admin" or "/x/../admin" cannot slip past a rule on "/admin": the origin server
 * would resolve them to the same resource.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
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

/* RFC 3986 2.3 */
static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * Pass 1 (decode) writes at most as many bytes as it reads, and pass 2 (segments)
 * shrinks the string in place, so @out needs @len + 1 bytes (2 for an empty path).
 * A '%' not followed by two hex digits is kept as a literal character: rejecting it
 * would let "/admin%zz" skip a rule on "/admin".
 */
/* Decode %XX of unreserved characters, upper-case the rest; returns the length. */
static size_t decode_escapes(const char *path, size_t end, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < end; i++) {
		int hi = -1, lo = -1;
		unsigned char c;

		if (path[i] == '%' && i + 2 < end) {
			hi = hexval(path[i + 1]);
			lo = hexval(path[i + 2]);
		}
		if (hi < 0 || lo < 0) {
			out[o++] = path[i];
			continue;
		}
		c = hi << 4 | lo;
		/*
		 * A decoded hex digit right after a literal "%" or "%x" would make a new
		 * escape that a second pass decodes: keep it encoded, so the result is
		 * stable (what the rules saw is what an origin decoding twice sees).
		 */
		if (unreserved(c) && hexval(c) >= 0 &&
		    ((o >= 1 && out[o - 1] == '%') ||
		     (o >= 2 && out[o - 2] == '%' && hexval(out[o - 1]) >= 0)))
			c = '%'; /* any non-unreserved value: falls to the encoded branch */
		if (unreserved(c)) {
			out[o++] = c;
		} else {
			out[o++] = '%';
			out[o++] = "0123456789ABCDEF"[hi];
			out[o++] = "0123456789ABCDEF"[lo];
		}
		i += 2;
	}
	out[o] = '\0';
	return o;
}

/* Remove dot segments and empty segments from the decoded path in out[0..o). */
static size_t remove_dots(char *out, size_t o)
{
	size_t r, w;

	/*
	 * Remove dot segments (RFC 3986 5.2.4) and empty segments, segment by segment.
	 * The write position w never passes the read position r.
	 */
	for (r = 1, w = 0; r <= o;) {
		size_t seg = r, slen;
		bool last;

		while (r < o && out[r] != '/')
			r++;
		slen = r - seg;
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
		/* ".", ".." or an empty segment: a last one leaves a directory, "/a/." is "/a/" */
		if (last)
			out[w++] = '/';
	}
	if (!w)
		out[w++] = '/';
	out[w] = '\0';
	return w;
}

int path_normalise(const char *path, size_t len, char *out, size_t outlen)
{
	size_t end;

	for (end = 0; end < len && path[end] != '?' && path[end] != '#'; end++)
		if (path[end] == '\0')
			return -EINVAL;
	if (end && path[0] != '/')
		return -EINVAL; /* "*" or a relative reference: not a path to match */
	if (outlen < end + 1 || outlen < 2)
		return -ENOSPC;
	if (!end) {
		strcpy(out, "/"); /* "http://h" and "http://h?q" ask for "/" */
		return 1;
	}
	return remove_dots(out, decode_escapes(path, end, out));
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

/*
 * @norm is the normalised request path, or NULL when there is none (CONNECT) or it
 * cannot be normalised: then no path_prefix rule matches.
 */
static bool rule_holds(const struct rule *r, const struct rule_input *in, const char *norm)
{
	if (r->method && (!in->method || strlen(r->method) != in->method_len ||
			  memcmp(r->method, in->method, in->method_len)))
		return false;
	if (r->host && (!in->host || strlen(r->host) != in->host_len ||
			strncasecmp(r->host, in->host, in->host_len)))
		return false;
	if (r->path_prefix && (!norm || strncmp(norm, r->path_prefix, strlen(r->path_prefix))))
		return false;
	if (r->nclient_in && (!in->client || !in_any(r->client_in, r->nclient_in, in->client)))
		return false;
	if (r->nclient_not_in &&
	    (!in->client || in_any(r->client_not_in, r->nclient_not_in, in->client)))
		return false;
	return true;
}

const struct rule *rules_match(const struct config *cfg, const struct rule_input *in)
{
	const struct rule *found = NULL;
	char stack[2048], *norm = NULL, *heap = NULL;

	if (in->path) {
		size_t need = in->path_len + 2;

		norm = need <= sizeof(stack) ? stack : (heap = malloc(need));
		if (!norm)
			pr_warn("out of memory normalising a %zu byte path: path rules skipped",
				in->path_len);
		else if (path_normalise(in->path, in->path_len, norm, need) < 0)
			norm = NULL;
	}
	for (unsigned i = 0; i < cfg->nrules && !found; i++)
		if (rule_holds(&cfg->rules[i], in, norm))
			found = &cfg->rules[i];
	free(heap);
	return found;
}
