// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target for user/rules.c: path_canonical, host_canonical,
 * cidr_parse/cidr_contains and rules_match over a fixed config (loaded once, from a
 * temp file, at start).
 *
 * The input is text, five lines: method, host, client address, CIDR, path (the path is
 * the rest, newlines included). An empty method means none; "CONNECT" means no path,
 * as the gateway asks; a client that is not an IP literal means no client address.
 * Invariants that do not hold abort() with a line on stderr saying which one.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rules.h"

#define check(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz_rules: invariant failed at line %d: %s\n", \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* A config like a real one: every condition kind, IPv4 and IPv6, prefixes with dots. */
static const char config_text[] =
	"[gateway]\n"
	"listen = 127.0.0.1:3128\n"
	"connect_ports = 443, 8443\n"
	"[pool direct]\n"
	"direct = yes\n"
	"[pool up]\n"
	"server = 127.0.0.1:8888\n"
	"server = [::1]:8889 weight=2\n"
	"[rule admin-guard]\n"
	"path_prefix = /admin\n"
	"client_not_in = 10.0.0.0/8, fd00::/8\n"
	"action = reject\n"
	"[rule api]\n"
	"host = api.example.com\n"
	"path_prefix = /v1/\n"
	"method = post\n"
	"action = pool up\n"
	"[rule dots]\n"
	"path_prefix = /a/./b/../c%2e/%7Euser\n"
	"action = reject\n"
	"[rule exact-case]\n"
	"path_prefix = /x/..;/Exact%252F\n"
	"path_case = exact\n"
	"client_in = 0.0.0.0/0\n"
	"action = reject\n"
	"[rule loop-host]\n"
	"host = 0X7F.1.\n"
	"action = pool up\n"
	"[rule mapped-host]\n"
	"host = [::ffff:10.1.2.3]\n"
	"action = tunnel\n"
	"[rule by-host]\n"
	"host = Example.COM\n"
	"action = tunnel\n"
	"[rule v6-host]\n"
	"host = [2001:DB8::1]\n"
	"method = CONNECT\n"
	"action = reject\n"
	"[rule lan]\n"
	"client_in = 192.168.0.0/16, 2001:db8::/32, 127.0.0.1, ::ffff:172.16.0.0/108\n"
	"action = pool up\n"
	"[rule odd-bits]\n"
	"client_in = 100.64.0.0/10, 2001:db8:8000::/33\n"
	"method = GET\n"
	"action = reject\n"
	"[route]\n"
	"default = direct\n";

static struct config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/fuzz_rules.XXXXXX.conf", err[512];
	int fd = mkstemps(path, 5);

	(void)argc;
	(void)argv;
	if (fd < 0 || write(fd, config_text, sizeof(config_text) - 1) !=
			      (ssize_t)(sizeof(config_text) - 1)) {
		perror("fuzz_rules: cannot write the config");
		abort();
	}
	close(fd);
	if (config_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "fuzz_rules: the fixed config does not load: %s\n", err);
		abort();
	}
	unlink(path);
	return 0;
}

/* ---- path_canonical ---- */

/* Canonicalise into a buffer of exactly @outlen bytes, so ASan sees any overrun. */
static int canonical(const char *path, size_t len, size_t outlen, char **out)
{
	char *in = malloc(len ? len : 1);
	int r;

	*out = malloc(outlen ? outlen : 1);
	if (!in || !*out)
		abort();
	memcpy(in, path, len);
	r = path_canonical(in, len, *out, outlen);
	free(in);
	return r;
}

/* One pass of RFC 3986 decoding over s[0..n), in place; returns the new length. */
static size_t decode_once(char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
		    isxdigit((unsigned char)s[i + 2])) {
			char hex[3] = { s[i + 1], s[i + 2], 0 };

			s[o++] = (char)strtoul(hex, NULL, 16);
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	return o;
}

/*
 * The canonical form the slow, obvious way: whole passes of decoding until nothing
 * changes, then a stack of segments. Returns the malloc'd result, or NULL with *err.
 */
static char *ref_canonical(const char *path, size_t end, int *err)
{
	char *s = malloc(end + 1), *res = malloc(3 * end + 2), *seg, *next;
	size_t n = end, m, nseg = 0, w = 0, i;
	const char **stack = malloc((end + 1) * sizeof(*stack));
	bool dir = false;

	if (!s || !res || !stack)
		abort();
	memcpy(s, path, end);
	while ((m = decode_once(s, n)) != n)
		n = m;
	*err = 0;
	for (i = 0; i < n && !*err; i++)
		*err = s[i] == '%' ? -EILSEQ : s[i] == '\0' ? -ERANGE : 0;
	if (*err) {
		free(s);
		free(res);
		free(stack);
		return NULL;
	}
	s[n] = '\0';
	for (i = 0; i < n; i++)
		if (s[i] == '\\')
			s[i] = '/';
	for (seg = s + 1; seg; seg = next) {
		next = strchr(seg, '/');
		if (next)
			*next++ = '\0';
		if (strchr(seg, ';'))
			*strchr(seg, ';') = '\0';
		dir = !strcmp(seg, "") || !strcmp(seg, ".") || !strcmp(seg, "..");
		if (!strcmp(seg, "..") && nseg)
			nseg--;
		else if (!dir)
			stack[nseg++] = seg;
	}
	for (i = 0; i < nseg; i++)
		for (res[w++] = '/', seg = (char *)stack[i]; *seg; seg++)
			w += sprintf(res + w, *seg == '?' ? "%%3F" :
					      *seg == '#' ? "%%23" : "%c", *seg);
	if (!w || dir)
		res[w++] = '/';
	res[w] = '\0';
	free(s);
	free(stack);
	return res;
}

/* Returns the canonical path (malloc'd) or NULL, with path_canonical()'s answer in *@err. */
static char *check_canonical(const char *path, size_t len, int *err)
{
	size_t end = 0, need = len + 1 < 2 ? 2 : len + 1;
	char *out, *again, *small, *ref = NULL;
	int r, r2, want = 0;
	bool slow;

	while (end < len && path[end] != '?' && path[end] != '#')
		end++;
	r = canonical(path, len, need, &out);
	*err = r < 0 ? r : 0;
	slow = end && path[0] == '/' && end <= 4096; /* the slow way is quadratic */
	if (slow)
		ref = ref_canonical(path, end, &want);
	if (r < 0) {
		check(r == -EINVAL || r == -EILSEQ || r == -ERANGE);
		check(r != -EINVAL || (end && path[0] != '/'));
		if (slow && r != want) {
			fprintf(stderr, "fuzz_rules: path_canonical says %d, the slow way %d\n", r,
				want);
			check(!"same error");
		}
		free(out);
		free(ref);
		return NULL;
	}
	check(!slow || !want);
	check(out[r] == '\0' && strlen(out) == (size_t)r);
	check(r >= 1 && (size_t)r <= (end ? end : 1));
	check(out[0] == '/');
	check(!strstr(out, "//") && !strstr(out, "/./") && !strstr(out, "/../"));
	check(!(r >= 2 && !strcmp(out + r - 2, "/.")) && !(r >= 3 && !strcmp(out + r - 3, "/..")));
	check(!strpbrk(out, "?#;\\"));
	for (const char *p = strchr(out, '%'); p; p = strchr(p + 1, '%'))
		check(!strncmp(p, "%3F", 3) || !strncmp(p, "%23", 3));
	if (ref && strcmp(ref, out)) {
		fprintf(stderr, "fuzz_rules: path_canonical says \"%s\", the slow way \"%s\"\n",
			out, ref);
		check(!"path_canonical(p) == ref_canonical(p)");
	}
	free(ref);

	/* Idempotent: a canonical path is its own canonical form. */
	r2 = canonical(out, r, r + 1, &again);
	if (r2 != r || strcmp(again, out)) {
		fprintf(stderr, "fuzz_rules: not idempotent: \"%s\" -> \"%s\"\n", out,
			r2 >= 0 ? again : "(error)");
		check(!"path_canonical(path_canonical(p)) == path_canonical(p)");
	}
	free(again);

	/* Less room: -ENOSPC, or the same answer. */
	r2 = canonical(path, len, r + 1, &small);
	check(r2 == -ENOSPC || (r2 == r && !strcmp(small, out)));
	free(small);
	return out;
}

/* ---- host_canonical ---- */

/* Returns the canonical host (malloc'd), after checking what must hold of it. */
static char *check_host(const char *host, size_t len, size_t *outlen)
{
	size_t room = len + 1 < HOST_CANONICAL_MIN ? HOST_CANONICAL_MIN : len + 1;
	char *out = malloc(room), *again = malloc(room), other[64];
	struct in_addr a4;
	int n, n2;

	if (!out || !again)
		abort();
	n = host_canonical(host, len, out, room);
	check(n >= 0 && (size_t)n < room && out[n] == '\0');
	check(!n || out[n - 1] != '.');
	for (int i = 0; i < n; i++)
		check(out[i] < 'A' || out[i] > 'Z');
	/* Idempotent. */
	n2 = host_canonical(out, n, again, room);
	if (n2 != n || memcmp(again, out, n)) {
		fprintf(stderr, "fuzz_rules: host not idempotent: \"%s\" -> \"%s\"\n", out, again);
		check(!"host_canonical(host_canonical(h)) == host_canonical(h)");
	}
	/* An IPv4 result: its other spellings give it too. */
	if (strlen(out) == (size_t)n && inet_pton(AF_INET, out, &a4) == 1) {
		snprintf(other, sizeof(other), "%u", ntohl(a4.s_addr));
		n2 = host_canonical(other, strlen(other), again, room);
		check(n2 == n && !strcmp(again, out));
		snprintf(other, sizeof(other), "[::FFFF:%s].", out);
		n2 = host_canonical(other, strlen(other), again, room);
		check(n2 == n && !strcmp(again, out));
	}
	free(again);
	*outlen = n;
	return out;
}

/* ---- CIDRs ---- */

static bool bit(const uint8_t *a, unsigned i)
{
	return a[i / 8] >> (7 - i % 8) & 1;
}

/* The obvious, slow containment: the first len bits are equal. */
static bool ref_contains(const struct cidr *c, const uint8_t a[16])
{
	for (unsigned i = 0; i < c->len; i++)
		if (bit(a, i) != bit(c->addr, i))
			return false;
	return true;
}

/* @a as 16 bytes (IPv4 mapped), or false for another family. */
static bool addr16(const struct sockaddr_any *sa, uint8_t a[16])
{
	memset(a, 0, 16);
	if (sa->sa.sa_family == AF_INET) {
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &sa->in.sin_addr, 4);
		return true;
	}
	if (sa->sa.sa_family == AF_INET6) {
		memcpy(a, &sa->in6.sin6_addr, 16);
		return true;
	}
	return false;
}

static void check_contains(const struct cidr *c, const struct sockaddr_any *sa)
{
	uint8_t a[16];

	if (addr16(sa, a))
		check(cidr_contains(c, sa) == ref_contains(c, a));
	else
		check(!cidr_contains(c, sa));
}

static void check_cidr(const char *text, const struct sockaddr_any *client)
{
	struct cidr c, again;
	struct sockaddr_any self = { 0 };
	char buf[INET6_ADDRSTRLEN + 8], ip[INET6_ADDRSTRLEN];
	bool v4;

	memset(&c, 0xa5, sizeof(c));
	if (cidr_parse(text, &c))
		return;
	check(c.len <= 128);
	v4 = !strchr(text, ':');
	if (v4) {
		static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

		check(!memcmp(c.addr, mapped, 12) && c.len >= 96);
	}
	/* The prefix's own address, in both families where it has both, is inside it. */
	self.in6.sin6_family = AF_INET6;
	memcpy(&self.in6.sin6_addr, c.addr, 16);
	check(cidr_contains(&c, &self));
	if (v4) {
		struct sockaddr_any s4 = { 0 };

		s4.in.sin_family = AF_INET;
		memcpy(&s4.in.sin_addr, c.addr + 12, 4);
		check(cidr_contains(&c, &s4));
	}
	/* Flip the last prefix bit: outside. Flip the first host bit: inside. */
	if (c.len) {
		self.in6.sin6_addr.s6_addr[(c.len - 1) / 8] ^= 0x80 >> ((c.len - 1) % 8);
		check(!cidr_contains(&c, &self));
		self.in6.sin6_addr.s6_addr[(c.len - 1) / 8] ^= 0x80 >> ((c.len - 1) % 8);
	}
	if (c.len < 128) {
		self.in6.sin6_addr.s6_addr[c.len / 8] ^= 0x80 >> (c.len % 8);
		check(cidr_contains(&c, &self));
	}
	if (client)
		check_contains(&c, client);

	/* Printed back, it parses to the same prefix. */
	if (v4) {
		check(inet_ntop(AF_INET, c.addr + 12, ip, sizeof(ip)));
		snprintf(buf, sizeof(buf), "%s/%u", ip, c.len - 96);
	} else {
		check(inet_ntop(AF_INET6, c.addr, ip, sizeof(ip)));
		snprintf(buf, sizeof(buf), "%s/%u", ip, c.len);
	}
	check(!cidr_parse(buf, &again) && !memcmp(&again, &c, sizeof(c)));
}

/* ---- rules_match ---- */

/*
 * The first rule that holds, by the config's own words, given the canonical host
 * (NULL: none) and path (NULL: none, or -errno @perr). *@err gets what rules_match
 * must answer: a rule whose other conditions hold needs a path that has no canonical
 * form.
 */
static const struct rule *ref_match(const struct rule_input *in, const char *host, size_t hlen,
				    const char *norm, int perr, int *err)
{
	uint8_t a[16];
	bool have = in->client && addr16(in->client, a);

	*err = 0;
	for (unsigned i = 0; i < cfg.nrules; i++) {
		const struct rule *r = &cfg.rules[i];
		bool inside = false;

		if (r->method && (!in->method || strlen(r->method) != in->method_len ||
				  memcmp(r->method, in->method, in->method_len)))
			continue;
		if (r->host && (!host || strlen(r->host) != hlen || memcmp(r->host, host, hlen)))
			continue;
		if (r->nclient_in) {
			for (unsigned k = 0; have && k < r->nclient_in; k++)
				inside |= ref_contains(&r->client_in[k], a);
			if (!inside)
				continue;
		}
		if (r->nclient_not_in) {
			if (!have)
				continue;
			inside = false;
			for (unsigned k = 0; k < r->nclient_not_in; k++)
				inside |= ref_contains(&r->client_not_in[k], a);
			if (inside)
				continue;
		}
		if (r->path_prefix && !norm && in->path && perr != -EINVAL) {
			*err = perr;
			return NULL;
		}
		if (r->path_prefix &&
		    (!norm || (r->path_case_exact ? strncmp : strncasecmp)(norm, r->path_prefix,
									  strlen(r->path_prefix))))
			continue;
		return r;
	}
	return NULL;
}

/* Split @data at the first newline: returns the line, moves @data past it. */
static const char *line(const uint8_t **data, size_t *size, size_t *len)
{
	const uint8_t *nl = memchr(*data, '\n', *size);
	const char *s = (const char *)*data;

	*len = nl ? (size_t)(nl - *data) : *size;
	*data += *len + !!nl;
	*size -= *len + !!nl;
	return s;
}

/* rules_match against ref_match, and spellings that must not change its answer. */
static void check_match(struct rule_input *in, char *host, const char *chost, size_t chlen,
			const char *norm, int perr)
{
	const struct rule *got = NULL, *want, *again;
	int err, want_err;
	char *dotted;

	err = rules_match(&cfg, in, &got);
	check(!got || (got >= cfg.rules && got < cfg.rules + cfg.nrules));
	check(!err || !got);
	want = ref_match(in, chost, chlen, norm, perr, &want_err);
	if (got != want || err != want_err) {
		fprintf(stderr, "fuzz_rules: rules_match says %s (%d), the rules say %s (%d)\n",
			got ? got->name : "(none)", err, want ? want->name : "(none)", want_err);
		check(got == want && err == want_err);
	}
	/* The origin resolves the path we canonicalised: asking with that path changes nothing. */
	if (norm) {
		struct rule_input n = *in;

		n.path = norm;
		n.path_len = strlen(norm);
		check(!rules_match(&cfg, &n, &again) && again == got);
	}
	/* Host case and a trailing dot do not matter. */
	for (size_t k = 0; k < in->host_len; k++)
		if ((host[k] | 0x20) >= 'a' && (host[k] | 0x20) <= 'z')
			host[k] ^= 0x20;
	check(rules_match(&cfg, in, &again) == err && again == got);
	if (in->host) {
		struct rule_input d = *in;

		dotted = malloc(in->host_len + 1);
		if (!dotted)
			abort();
		memcpy(dotted, host, in->host_len);
		dotted[in->host_len] = '.';
		d.host = dotted;
		d.host_len++;
		check(rules_match(&cfg, &d, &again) == err && again == got);
		free(dotted);
	}
}

/* An IPv4 or IPv6 literal in @a[0..alen) into @client; false if it is none. */
static bool parse_client(const char *a, size_t alen, struct sockaddr_any *client)
{
	char addr[64];

	if (alen >= sizeof(addr))
		return false;
	memcpy(addr, a, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, &client->in.sin_addr) == 1) {
		client->in.sin_family = AF_INET;
		client->len = sizeof(client->in);
		return true;
	}
	if (inet_pton(AF_INET6, addr, &client->in6.sin6_addr) == 1) {
		client->in6.sin6_family = AF_INET6;
		client->len = sizeof(client->in6);
		return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_input in = { 0 };
	struct sockaddr_any client = { 0 };
	const char *m, *h, *a, *c;
	size_t mlen, hlen, alen, clen, chlen = 0;
	char *cidr, *host, *chost = NULL, *norm = NULL;
	int perr = 0;

	m = line(&data, &size, &mlen);
	h = line(&data, &size, &hlen);
	a = line(&data, &size, &alen);
	c = line(&data, &size, &clen);
	if (parse_client(a, alen, &client))
		in.client = &client;

	cidr = strndup(c, clen); /* stops at a NUL, as a config value would */
	if (!cidr)
		abort();
	check_cidr(cidr, in.client);
	free(cidr);

	/* Strings need not be NUL-terminated: exact copies. */
	in.method = mlen ? m : NULL;
	in.method_len = mlen;
	host = malloc(hlen ? hlen : 1);
	if (!host)
		abort();
	memcpy(host, h, hlen);
	in.host = hlen ? host : NULL;
	in.host_len = hlen;
	if (in.host)
		chost = check_host(host, hlen, &chlen);
	if (!(mlen == 7 && !memcmp(m, "CONNECT", 7))) {
		in.path = (const char *)data;
		in.path_len = size;
		norm = check_canonical(in.path, in.path_len, &perr);
	}
	check_match(&in, host, chost, chlen, norm, perr);

	free(norm);
	free(chost);
	free(host);
	return 0;
}
