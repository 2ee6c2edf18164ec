// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target for user/rules.c: path_normalise, cidr_parse/cidr_contains and
 * rules_match over a fixed config (loaded once, from a temp file, at start).
 *
 * The input is text, five lines: method, host, client address, CIDR, path (the path is
 * the rest, newlines included). An empty method means none; "CONNECT" means no path,
 * as the gateway asks; a client that is not an IP literal means no client address.
 * Invariants that do not hold abort() with a line on stderr saying which one.
 */
#include <arpa/inet.h>
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

/* ---- path_normalise ---- */

/* Normalise into a buffer of exactly @outlen bytes, so ASan sees any overrun. */
static int normalise(const char *path, size_t len, size_t outlen, char **out)
{
	char *in = malloc(len ? len : 1);
	int r;

	*out = malloc(outlen ? outlen : 1);
	if (!in || !*out)
		abort();
	memcpy(in, path, len);
	r = path_normalise(in, len, *out, outlen);
	free(in);
	return r;
}

/* Returns the normalised path (malloc'd) or NULL. */
static char *check_normalise(const char *path, size_t len)
{
	size_t end = 0, need = len + 1 < 2 ? 2 : len + 1;
	char *out, *again, *small;
	int r, r2;

	while (end < len && path[end] != '?' && path[end] != '#')
		end++;
	r = normalise(path, len, need, &out);
	if (r < 0) {
		check(r == -EINVAL);
		check((end && path[0] != '/') || memchr(path, '\0', end));
		free(out);
		return NULL;
	}
	check(out[r] == '\0' && strlen(out) == (size_t)r);
	check(r >= 1 && (size_t)r <= (end ? end : 1));
	check(out[0] == '/');
	check(!strstr(out, "//") && !strstr(out, "/./") && !strstr(out, "/../"));
	check(!(r >= 2 && !strcmp(out + r - 2, "/.")) && !(r >= 3 && !strcmp(out + r - 3, "/..")));
	check(!strchr(out, '?') && !strchr(out, '#'));

	/* Idempotent: a normalised path is its own normal form. */
	r2 = normalise(out, r, r + 1, &again);
	if (r2 != r || strcmp(again, out)) {
		fprintf(stderr, "fuzz_rules: not idempotent: \"%s\" -> \"%s\"\n", out,
			r2 >= 0 ? again : "(error)");
		check(!"path_normalise(path_normalise(p)) == path_normalise(p)");
	}
	free(again);

	/* Less room: -ENOSPC, or the same answer. */
	r2 = normalise(path, len, r + 1, &small);
	check(r2 == -ENOSPC || (r2 == r && !strcmp(small, out)));
	free(small);
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

/* The first rule that holds, by the config's own words, with @norm the normalised path. */
static const struct rule *ref_match(const struct rule_input *in, const char *norm)
{
	uint8_t a[16];
	bool have = in->client && addr16(in->client, a);

	for (unsigned i = 0; i < cfg.nrules; i++) {
		const struct rule *r = &cfg.rules[i];
		bool inside = false;

		if (r->method && (!in->method || strlen(r->method) != in->method_len ||
				  memcmp(r->method, in->method, in->method_len)))
			continue;
		if (r->host) {
			size_t n = strlen(r->host);
			bool same = in->host && n == in->host_len;

			for (size_t k = 0; same && k < n; k++) {
				char h = in->host[k];

				if (h >= 'A' && h <= 'Z')
					h += 'a' - 'A';
				same = h == r->host[k];
			}
			if (!same)
				continue;
		}
		if (r->path_prefix &&
		    (!norm || strncmp(norm, r->path_prefix, strlen(r->path_prefix))))
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_input in = { 0 };
	struct sockaddr_any client = { 0 };
	const struct rule *got, *want;
	const char *m, *h, *a, *c;
	size_t mlen, hlen, alen, clen;
	char addr[64], *cidr, *host, *norm = NULL;

	m = line(&data, &size, &mlen);
	h = line(&data, &size, &hlen);
	a = line(&data, &size, &alen);
	c = line(&data, &size, &clen);

	/* Client: an IPv4 or IPv6 literal, else none. */
	if (alen < sizeof(addr)) {
		memcpy(addr, a, alen);
		addr[alen] = '\0';
		if (inet_pton(AF_INET, addr, &client.in.sin_addr) == 1) {
			client.in.sin_family = AF_INET;
			client.len = sizeof(client.in);
			in.client = &client;
		} else if (inet_pton(AF_INET6, addr, &client.in6.sin6_addr) == 1) {
			client.in6.sin6_family = AF_INET6;
			client.len = sizeof(client.in6);
			in.client = &client;
		}
	}

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
	if (!(mlen == 7 && !memcmp(m, "CONNECT", 7))) {
		in.path = (const char *)data;
		in.path_len = size;
		norm = check_normalise(in.path, in.path_len);
	}

	got = rules_match(&cfg, &in);
	check(!got || (got >= cfg.rules && got < cfg.rules + cfg.nrules));
	want = ref_match(&in, norm);
	if (got != want) {
		fprintf(stderr, "fuzz_rules: rules_match says %s, the rules say %s\n",
			got ? got->name : "(none)", want ? want->name : "(none)");
		check(got == want);
	}
	/* The origin resolves the path we normalised: asking with that path changes nothing. */
	if (norm) {
		struct rule_input n = in;

		n.path = norm;
		n.path_len = strlen(norm);
		check(rules_match(&cfg, &n) == got);
	}
	/* Host case does not matter. */
	for (size_t k = 0; k < hlen; k++)
		if ((host[k] | 0x20) >= 'a' && (host[k] | 0x20) <= 'z')
			host[k] ^= 0x20;
	check(rules_match(&cfg, &in) == got);

	free(norm);
	free(host);
	return 0;
}
