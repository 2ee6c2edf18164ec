// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Path normalisation, CIDRs and first-match rule evaluation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rules.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
	const char *in;
	const char *out;
} paths[] = {
	{ "/admin", "/admin" },
	{ "/%61dmin", "/admin" },
	{ "/%41DMIN", "/ADMIN" },   /* case is kept; rules fold it */
	/* decoded until no escape is left, whatever the nesting */
	{ "/%%32e", "/" },          /* "%%32e" -> "%2e" -> "." */
	{ "/%4%31", "/A" },         /* "%4%31" -> "%41" -> "A" */
	{ "/%%32e%2E/x", "/x" },    /* "/../x" */
	{ "/%252e%252E/admin", "/admin" },
	{ "/%25252Fadmin", "/admin" },
	{ "/%2%35%32Fadmin", "/admin" }, /* "%2" "5" "2F": "%252F" -> "%2F" -> "/" */
	{ "//admin", "/admin" },
	{ "///admin//x", "/admin/x" },
	{ "/./admin", "/admin" },
	{ "/a/../admin", "/admin" },
	{ "/../admin", "/admin" },
	{ "/../../admin/.", "/admin/" },
	{ "/%2e%2e/admin", "/admin" },
	{ "/%2E/admin", "/admin" },
	{ "/x/%2e%2e/admin", "/admin" },
	{ "/admin?x", "/admin" },
	{ "/admin?x=/../y", "/admin" },
	{ "/admin#frag", "/admin" },
	/* %2F and %5C are separators; '\' is '/' */
	{ "/a%2Fb", "/a/b" },
	{ "/a%2fb", "/a/b" },
	{ "/%2F%2fadmin", "/admin" },
	{ "/a\\b", "/a/b" },
	{ "/a%5Cb%5c..%5Cc", "/a/c" },
	/* ";params" leave every segment */
	{ "/admin;jsessionid=1", "/admin" },
	{ "/a;x/b;y=z/c", "/a/b/c" },
	{ "/;x/admin", "/admin" },
	{ "/x/..;/admin", "/admin" },
	{ "/x/.;y/admin", "/x/admin" },
	{ "/admin%3Bx", "/admin" },
	{ "/admin/;", "/admin/" },
	/* a decoded '?' or '#' is path data: written back encoded, so it stays */
	{ "/admin%3Fx", "/admin%3Fx" },
	{ "/admin%3fx", "/admin%3Fx" },
	{ "/a%23b", "/a%23b" },
	{ "/a%253Fb", "/a%3Fb" },
	{ "/%3F%23?x", "/%3F%23" },
	{ "/%7e%7E%2d%5f%2E", "/~~-_." },
	{ "/%20x", "/ x" },
	{ "/%C3%A9", "/\xC3\xA9" },
	{ "/", "/" },
	{ "", "/" },
	{ "?x", "/" },
	{ "/.", "/" },
	{ "/..", "/" },
	{ "/a/.", "/a/" },
	{ "/a/..", "/" },
	{ "/a/b/..", "/a/" },
	{ "/a/b/../", "/a/" },
	{ "/a/./b/../../c/", "/c/" },
	{ "/a//", "/a/" },
	{ "/a/...", "/a/..." },
	{ "/a/..b/.c", "/a/..b/.c" },
	{ "/mid/content=5/../6", "/mid/6" },
};

static void test_path_canonical(void **state)
{
	char out[64], again[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		int n = path_canonical(paths[i].in, strlen(paths[i].in), out, sizeof(out));

		if (n < 0 || strcmp(out, paths[i].out) || (size_t)n != strlen(out))
			fail_msg("'%s': got %d '%s', want '%s'", paths[i].in, n, n < 0 ? "" : out,
				 paths[i].out);
		/* canonical(canonical(p)) == canonical(p) */
		n = path_canonical(out, strlen(out), again, sizeof(again));
		if (n < 0 || strcmp(again, out))
			fail_msg("'%s' -> '%s' -> %d '%s': not idempotent", paths[i].in, out, n,
				 n < 0 ? "" : again);
	}
}

/*
 * Spellings of "/admin" that some origin serves as /admin; the old path_normalise()
 * let each of them past a rule on "/admin". Canonical, they all start with "/admin"
 * (case aside).
 */
static const char *const admin_spellings[] = {
	"/%2Fadmin",           /* nginx merges the decoded slashes */
	"/x/%2e%2e%2fadmin",   /* nginx: "/x/../admin" */
	"/ADMIN",              /* IIS, case-insensitive file systems */
	"/Admin/x",
	"/;x/admin",           /* Tomcat drops path parameters */
	"/x/..;/admin",
	"/\\admin",            /* IIS and Tomcat read '\' as '/' */
	"/%5cadmin",
	"/x%5C..%5Cadmin",
	"/%252Fadmin",         /* decoded twice */
	"/x/%252e%252e/admin",
	"/%2541dmin",
	"/x/.%2E;y/%5C%2Fadmin",
};

static void test_admin_spellings(void **state)
{
	char out[64], again[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(admin_spellings); i++) {
		const char *in = admin_spellings[i];
		int n = path_canonical(in, strlen(in), out, sizeof(out));

		if (n < 6 || strncasecmp(out, "/admin", 6))
			fail_msg("'%s': got %d '%s', want /admin...", in, n, n < 0 ? "" : out);
		n = path_canonical(out, strlen(out), again, sizeof(again));
		assert_true(n > 0);
		assert_string_equal(again, out);
	}
}

/* Every prefix length of an input: no read past @len, whatever the cut. */
static void test_path_truncations(void **state)
{
	static const char in[] = "/a/%2e%2E/b%2f%41;p//.\\c%5c%253F?q%zz#f";
	char buf[sizeof(in) - 1], out[64];

	(void)state;
	for (size_t len = 0; len <= sizeof(buf); len++) {
		/* at the end of buf, so that ASan sees a read past len */
		char *copy = buf + sizeof(buf) - len;
		const char *q = memchr(in, '?', len);
		size_t end = q ? (size_t)(q - in) : len;
		/* a cut inside an escape leaves a '%' without two hex digits */
		bool cut = (end >= 1 && in[end - 1] == '%') || (end >= 2 && in[end - 2] == '%') ||
			   (end >= 3 && !strncmp(in + end - 3, "%25", 3)) ||
			   (end >= 4 && !strncmp(in + end - 4, "%25", 3));
		int r;

		memcpy(copy, in, len);
		r = path_canonical(copy, len, out, sizeof(out));
		if (cut ? r != -EILSEQ : r <= 0)
			fail_msg("cut at %zu ('%.*s'): got %d", len, (int)len, in, r);
		if (r > 0)
			assert_int_equal(out[0], '/');
	}
}

static void test_path_errors(void **state)
{
	static const struct {
		const char *in;
		int err;
	} cases[] = {
		/* an escape that cannot be read one way only: 400 */
		{ "/%zz", -EILSEQ },
		{ "/admin%", -EILSEQ },
		{ "/admin%4", -EILSEQ },
		{ "/admin%4?x", -EILSEQ },
		{ "/%admin", 5 },          /* %ad is an escape: "/\xADmin" */
		{ "/%g/admin", -EILSEQ },
		{ "/%u0061dmin", -EILSEQ },  /* IIS reads it as "/admin" */
		{ "/100%25", -EILSEQ },      /* "%25" decodes to a lone '%' */
		{ "/%2525", -EILSEQ },
		{ "/%25%32", -EILSEQ },      /* "%2" */
		{ "/%00", -ERANGE },
		{ "/admin%00.html", -ERANGE },
		{ "/%2500", -ERANGE },
		{ "/%%30%30", -ERANGE },
		/* not a path: no path rule can match */
		{ "*", -EINVAL },
		{ "admin", -EINVAL },
		{ "http://h/", -EINVAL },
		{ "%2Fadmin", -EINVAL },
		{ "\\admin", -EINVAL },
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = path_canonical(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (r != cases[i].err)
			fail_msg("'%s': got %d, want %d", cases[i].in, r, cases[i].err);
	}
	assert_int_equal(path_canonical("/a\0b", 4, out, sizeof(out)), -ERANGE);
	/* @out needs the input's length + 1, even when the result is shorter */
	assert_int_equal(path_canonical("/1234567", 8, out, 8), -ENOSPC);
	assert_int_equal(path_canonical("/1234567", 8, out, 9), 8);
	assert_int_equal(path_canonical("/123456", 7, out, 8), 7);
	assert_int_equal(path_canonical("/%3F", 4, out, 5), 4);
	assert_string_equal(out, "/%3F");
	assert_int_equal(path_canonical("", 0, out, 1), -ENOSPC);
	assert_int_equal(path_canonical("", 0, out, 2), 1);
	assert_non_null(strstr(path_strerror(-EILSEQ), "'%'"));
	assert_non_null(strstr(path_strerror(-ERANGE), "NUL"));
}

/* Linear time: a long chain of nested escapes, each decoding into the next. */
static void test_path_nested_long(void **state)
{
	size_t depth = 100000, len = 1 + 2 * depth + 3, i;
	char *in = malloc(len), *out = malloc(len + 1);

	(void)state;
	assert_non_null(in);
	assert_non_null(out);
	/* "/" "%" "25" x depth "41": every pass decodes one "%25" */
	in[0] = '/';
	in[1] = '%';
	for (i = 0; i < depth; i++)
		memcpy(in + 2 + 2 * i, "25", 2);
	memcpy(in + 2 + 2 * depth, "41", 2);
	assert_int_equal(path_canonical(in, len, out, len + 1), 2);
	assert_string_equal(out, "/A");
	free(in);
	free(out);
}

static const struct {
	const char *in;
	const char *out;
} hosts[] = {
	{ "Some.Host.COM", "some.host.com" },
	{ "some.host.com.", "some.host.com" },
	{ "some.host.com..", "some.host.com" },
	{ "127.0.0.1", "127.0.0.1" },
	{ "127.1", "127.0.0.1" },
	{ "127.0.1", "127.0.0.1" },
	{ "2130706433", "127.0.0.1" },
	{ "0x7f.1", "127.0.0.1" },
	{ "0X7F.0.0.1", "127.0.0.1" },
	{ "0x7f000001", "127.0.0.1" },
	{ "0177.0.0.1", "127.0.0.1" },
	{ "0177.0.0.01", "127.0.0.1" },
	{ "127.0.0.1.", "127.0.0.1" },
	{ "0xdeadbeef", "222.173.190.239" },
	{ "::ffff:127.0.0.1", "127.0.0.1" },
	{ "[::ffff:127.0.0.1]", "127.0.0.1" },
	{ "::FFFF:7F00:1", "127.0.0.1" },
	{ "[2001:DB8:0::1]", "2001:db8::1" },
	{ "2001:db8:0:0:0:0:0:1", "2001:db8::1" },
	{ "::1", "::1" },
	{ "[::1]", "::1" },
	/* not addresses: names, kept (lower case) */
	{ "127.0.0.256", "127.0.0.256" },
	{ "1.2.3.4.5", "1.2.3.4.5" },
	{ "0x100000000", "0x100000000" },
	{ "08.0.0.1", "08.0.0.1" },       /* 8 is not an octal digit */
	{ "1.2.3.4 x", "1.2.3.4 x" },     /* inet_aton() alone takes it */
	{ "cafe", "cafe" },
	{ "deadbeef", "deadbeef" },
	{ "1e100.net", "1e100.net" },
	{ "[a.b]", "[a.b]" },
	{ "fe80::1%Eth0", "fe80::1%eth0" },
	{ "", "" },
	{ "...", "" },
};

static void test_host_canonical(void **state)
{
	char out[HOST_CANONICAL_MIN], again[HOST_CANONICAL_MIN], dots[3 * HOST_CANONICAL_MIN];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(hosts); i++) {
		int n = host_canonical(hosts[i].in, strlen(hosts[i].in), out, sizeof(out));

		if (n < 0 || strcmp(out, hosts[i].out) || (size_t)n != strlen(out))
			fail_msg("'%s': got %d '%s', want '%s'", hosts[i].in, n, n < 0 ? "" : out,
				 hosts[i].out);
		n = host_canonical(out, strlen(out), again, sizeof(again));
		if (n < 0 || strcmp(again, out))
			fail_msg("'%s' -> '%s' -> '%s': not idempotent", hosts[i].in, out, again);
	}
	/* room for the longest address text, whatever the input's length */
	assert_int_equal(host_canonical("0", 1, out, HOST_CANONICAL_MIN - 1), -ENOSPC);
	assert_int_equal(host_canonical("abc", 3, out, HOST_CANONICAL_MIN), 3);
	/* trailing dots do not count: the input may be longer than @out */
	memset(dots, '.', sizeof(dots));
	memcpy(dots, "a.b", 3);
	assert_int_equal(host_canonical(dots, sizeof(dots), out, sizeof(out)), 3);
	assert_string_equal(out, "a.b");
	/* a slice: what follows @len is not read */
	assert_int_equal(host_canonical("127.1:80", 5, out, sizeof(out)), 9);
	assert_string_equal(out, "127.0.0.1");
	/* a NUL inside is not an address */
	assert_int_equal(host_canonical("::1\0x", 5, out, sizeof(out)), 5);
}

static struct sockaddr_any addr(const char *ip)
{
	struct sockaddr_any a;

	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, ip, &a.in.sin_addr) == 1) {
		a.in.sin_family = AF_INET;
		a.len = sizeof(a.in);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
		a.in6.sin6_family = AF_INET6;
		a.len = sizeof(a.in6);
	}
	return a;
}

static void test_cidr_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		unsigned len;
	} cases[] = {
		{ "10.0.0.0/8", 0, 104 },
		{ "0.0.0.0/0", 0, 96 },
		{ "10.1.2.3/32", 0, 128 },
		{ "10.1.2.3", 0, 128 },
		{ "::/0", 0, 0 },
		{ "::1/128", 0, 128 },
		{ "::1", 0, 128 },
		{ "fd00::/8", 0, 8 },
		{ "::ffff:10.0.0.0/104", 0, 104 },
		{ "10.0.0.0/33", -EINVAL, 0 },
		{ "::/129", -EINVAL, 0 },
		{ "10.0.0.0/", -EINVAL, 0 },
		{ "10.0.0.0/-1", -EINVAL, 0 },
		{ "10.0.0.0/8x", -EINVAL, 0 },
		{ "10.0.0.0/0008", -EINVAL, 0 },
		{ "10.0.0/8", -EINVAL, 0 },
		{ "10.0.0.256", -EINVAL, 0 },
		{ "/8", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "fd00::g/8", -EINVAL, 0 },
		{ "host.example/8", -EINVAL, 0 },
	};
	struct cidr c;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = cidr_parse(cases[i].in, &c);

		if (r != cases[i].ret || (!r && c.len != cases[i].len))
			fail_msg("'%s': got %d len %u, want %d len %u", cases[i].in, r, r ? 0 : c.len,
				 cases[i].ret, cases[i].len);
	}
}

static void test_cidr_contains(void **state)
{
	static const struct {
		const char *cidr;
		const char *ip;
		bool in;
	} cases[] = {
		{ "10.0.0.0/8", "10.1.2.3", true },
		{ "10.0.0.0/8", "::ffff:10.1.2.3", true },
		{ "10.0.0.0/8", "11.0.0.0", false },
		{ "10.0.0.0/8", "9.255.255.255", false },
		{ "10.0.0.0/8", "10.255.255.255", true },
		{ "10.0.0.0/8", "::a01:203", false }, /* IPv4-compatible, not mapped */
		{ "10.1.2.3/8", "10.9.9.9", true },   /* host bits are ignored */
		{ "0.0.0.0/0", "1.2.3.4", true },
		{ "0.0.0.0/0", "255.255.255.255", true },
		{ "0.0.0.0/0", "::1", false },
		{ "0.0.0.0/0", "::ffff:1.2.3.4", true },
		{ "10.1.2.3/32", "10.1.2.3", true },
		{ "10.1.2.3/32", "10.1.2.2", false },
		{ "10.1.2.3/32", "10.1.2.4", false },
		{ "10.1.2.3", "10.1.2.3", true },
		{ "192.168.1.128/25", "192.168.1.128", true },
		{ "192.168.1.128/25", "192.168.1.255", true },
		{ "192.168.1.128/25", "192.168.1.127", false },
		{ "192.168.0.0/23", "192.168.1.1", true },
		{ "192.168.0.0/23", "192.168.2.1", false },
		{ "::/0", "::1", true },
		{ "::/0", "1.2.3.4", true },
		{ "::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true },
		{ "::1/128", "::1", true },
		{ "::1/128", "::2", false },
		{ "::1/128", "::", false },
		{ "2001:db8::/32", "2001:db8:ffff::1", true },
		{ "2001:db8::/32", "2001:db9::1", false },
		{ "fd00::/7", "fc00::1", true },
		{ "fd00::/7", "fe00::1", false },
		{ "fe80::/10", "febf::1", true },
		{ "fe80::/10", "fec0::1", false },
		{ "2001:db8::1/127", "2001:db8::0", true },
		{ "2001:db8::1/127", "2001:db8::2", false },
	};
	struct sockaddr_any unix_addr = { .sa = { .sa_family = AF_UNIX } };
	struct cidr c;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct sockaddr_any a = addr(cases[i].ip);

		assert_int_equal(cidr_parse(cases[i].cidr, &c), 0);
		if (cidr_contains(&c, &a) != cases[i].in)
			fail_msg("%s in %s: got %d", cases[i].ip, cases[i].cidr, !cases[i].in);
	}
	assert_int_equal(cidr_parse("::/0", &c), 0);
	assert_false(cidr_contains(&c, &unix_addr));
}

/* The rules of a small config, built by hand. */
struct rules_fx {
	struct config cfg;
	struct rule rules[8];
	struct cidr ten, internal[2], local;
	char *big;
};

static int rules_setup(void **state)
{
	struct rules_fx *fx = calloc(1, sizeof(*fx));
	struct rule *r;

	if (!fx)
		return -1;
	cidr_parse("10.0.0.0/8", &fx->ten);
	cidr_parse("10.0.0.0/8", &fx->internal[0]);
	cidr_parse("fd00::/8", &fx->internal[1]);
	cidr_parse("127.0.0.1", &fx->local);
	r = fx->rules;
	/* 0: the article's admin guard */
	strcpy(r[0].name, "admin-guard");
	r[0].path_prefix = "/admin";
	r[0].client_not_in = &fx->ten;
	r[0].nclient_not_in = 1;
	r[0].action = ACT_REJECT;
	/* 1: host routing */
	strcpy(r[1].name, "by-host");
	r[1].host = "some.host.com";
	r[1].action = ACT_POOL;
	r[1].pool = 1;
	/* 2: host + method + client_in, any of two prefixes */
	strcpy(r[2].name, "post-internal");
	r[2].host = "api.example";
	r[2].method = "POST";
	r[2].client_in = fx->internal;
	r[2].nclient_in = 2;
	r[2].action = ACT_TUNNEL;
	/* 3: same host as 2, no further condition: only reached when 2 does not hold */
	strcpy(r[3].name, "api");
	r[3].host = "api.example";
	r[3].action = ACT_REJECT;
	/* 4: loopback clients to /local, but never CONNECT */
	strcpy(r[4].name, "local");
	r[4].path_prefix = "/local/";
	r[4].client_in = &fx->local;
	r[4].nclient_in = 1;
	r[4].action = ACT_POOL;
	/* 5: path_case = exact */
	strcpy(r[5].name, "exact");
	r[5].path_prefix = "/Exact/";
	r[5].path_case_exact = true;
	r[5].action = ACT_REJECT;
	/* 6, 7: hosts that are addresses, as config_load() stores them (canonical) */
	strcpy(r[6].name, "loopback");
	r[6].host = "127.0.0.1";
	r[6].action = ACT_POOL;
	strcpy(r[7].name, "v6");
	r[7].host = "2001:db8::1";
	r[7].action = ACT_REJECT;
	fx->cfg.rules = fx->rules;
	fx->cfg.nrules = 8;
	*state = fx;
	return 0;
}

static int rules_teardown(void **state)
{
	struct rules_fx *fx = *state;

	free(fx->big);
	free(fx);
	return 0;
}

/* dest_in / dest_not_in: the target's address; unknown (NULL) matches neither. */
static void test_rules_dest(void **state)
{
	struct cidr loop, ten;
	struct rule r[2] = { { .name = "no-internal", .dest_in = &ten, .ndest_in = 1,
			       .action = ACT_REJECT },
			     { .name = "only-loop", .dest_not_in = &loop, .ndest_not_in = 1,
			       .action = ACT_POOL, .pool = 1 } };
	struct config cfg = { .rules = r, .nrules = 2, .rules_need_dest = true };
	struct sockaddr_any a10 = addr("10.1.2.3"), a127 = addr("127.0.0.1"),
			    a8 = addr("8.8.8.8"), m10 = addr("::ffff:10.9.9.9");
	struct rule_input in = { .method = "CONNECT", .method_len = 7, .host = "h", .host_len = 1 };
	const struct rule *got;

	(void)state;
	cidr_parse("127.0.0.0/8", &loop);
	cidr_parse("10.0.0.0/8", &ten);
	in.dest = &a10;
	assert_int_equal(rules_match(&cfg, &in, &got), 0);
	assert_ptr_equal(got, &r[0]);
	in.dest = &m10; /* the IPv4-mapped spelling is the same address */
	assert_int_equal(rules_match(&cfg, &in, &got), 0);
	assert_ptr_equal(got, &r[0]);
	in.dest = &a8;
	assert_int_equal(rules_match(&cfg, &in, &got), 0);
	assert_ptr_equal(got, &r[1]);
	in.dest = &a127;
	assert_int_equal(rules_match(&cfg, &in, &got), 0);
	assert_null(got);
	in.dest = NULL;
	assert_int_equal(rules_match(&cfg, &in, &got), 0);
	assert_null(got);
}

static void test_rules_match(void **state)
{
	static const struct {
		const char *method, *host, *path, *client;
		const char *want; /* rule name, or NULL */
	} cases[] = {
		/* admin guard: path normalised, client_not_in */
		{ "GET", "x", "/admin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/admin/users?x=1", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/administrator", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/%61dmin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "//admin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/./admin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/a/../admin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/admin", "10.9.8.7", NULL },
		{ "GET", "x", "/admin", "::ffff:10.9.8.7", NULL },
		{ "GET", "x", "/admin", "::1", "admin-guard" },
		{ "GET", "x", "/Admin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/adm", "1.2.3.4", NULL },
		{ "GET", "x", "/%2Fadmin", "1.2.3.4", "admin-guard" },
		{ "GET", "x", "/public", "1.2.3.4", NULL },
		{ "GET", "x", "/adminx", "1.2.3.4", "admin-guard" }, /* a prefix of the string */
		{ "GET", "x", "/ad%2Fmin", "1.2.3.4", NULL },
		{ "CONNECT", "x", NULL, "1.2.3.4", NULL },
		/* host: case-insensitive, exact */
		{ "CONNECT", "some.host.com", NULL, "1.2.3.4", "by-host" },
		{ "CONNECT", "SOME.Host.COM", NULL, "10.0.0.1", "by-host" },
		{ "GET", "some.host.com", "/admin", "1.2.3.4", "admin-guard" }, /* order */
		{ "GET", "some.host.com", "/admin", "10.0.0.1", "by-host" },
		{ "CONNECT", "some.host.co", NULL, "1.2.3.4", NULL },
		{ "CONNECT", "some.host.com.evil", NULL, "1.2.3.4", NULL },
		{ "CONNECT", "xsome.host.com", NULL, "1.2.3.4", NULL },
		{ "CONNECT", "", NULL, "1.2.3.4", NULL },
		/* method case-sensitive, client_in over a list */
		{ "POST", "api.example", "/", "10.0.0.1", "post-internal" },
		{ "POST", "API.EXAMPLE", "/", "fd12::1", "post-internal" },
		{ "POST", "api.example", "/", "1.2.3.4", "api" },
		{ "post", "api.example", "/", "10.0.0.1", "api" },
		{ "POS", "api.example", "/", "10.0.0.1", "api" },
		{ "POSTX", "api.example", "/", "10.0.0.1", "api" },
		{ "GET", "api.example", "/", "10.0.0.1", "api" },
		/* path rule for CONNECT never holds */
		{ "GET", "x", "/local/a", "127.0.0.1", "local" },
		{ "GET", "x", "/local", "127.0.0.1", NULL },
		{ "GET", "x", "/local/a", "127.0.0.2", NULL },
		{ "CONNECT", "x", NULL, "127.0.0.1", NULL },
		{ "OPTIONS", "x", "*", "127.0.0.1", NULL },
		{ "GET", "x", "/LOCAL/a", "127.0.0.1", "local" },
		{ "GET", "x", "/x/..;/Local%2fa", "127.0.0.1", "local" },
		/* path_case = exact */
		{ "GET", "x", "/Exact/a", "10.0.0.1", "exact" },
		{ "GET", "x", "/%45xact/a", "10.0.0.1", "exact" },
		{ "GET", "x", "/Exact;p/", "10.0.0.1", "exact" },
		{ "GET", "x", "/exact/a", "10.0.0.1", NULL },
		{ "GET", "x", "/EXACT/a", "10.0.0.1", NULL },
		/* hosts that are addresses */
		{ "CONNECT", "127.0.0.1", NULL, "1.2.3.4", "loopback" },
		{ "GET", "127.0.0.1", "/", "1.2.3.4", "loopback" },
		{ "CONNECT", "127.0.0.2", NULL, "1.2.3.4", NULL },
		{ "CONNECT", "2001:DB8:0:0::1", NULL, "1.2.3.4", "v6" },
		{ "CONNECT", "2001:db8::2", NULL, "1.2.3.4", NULL },
	};
	struct rules_fx *fx = *state;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct sockaddr_any client = addr(cases[i].client);
		struct rule_input in = {
			.method = cases[i].method,
			.method_len = strlen(cases[i].method),
			.host = cases[i].host,
			.host_len = strlen(cases[i].host),
			.path = cases[i].path,
			.path_len = cases[i].path ? strlen(cases[i].path) : 0,
			.client = &client,
		};
		const struct rule *r = (void *)1;
		const char *got;

		if (rules_match(&fx->cfg, &in, &r))
			fail_msg("case %zu %s: an error", i, cases[i].path);
		got = r ? r->name : NULL;
		if (got != cases[i].want && (!got || !cases[i].want || strcmp(got, cases[i].want)))
			fail_msg("case %zu %s %s%s from %s: got %s, want %s", i, cases[i].method,
				 cases[i].host, cases[i].path ? cases[i].path : "", cases[i].client,
				 got ? got : "none", cases[i].want ? cases[i].want : "none");
	}
}

/* The rule that decides (its name, or NULL), with rules_match()'s return in *@err. */
static const char *decide(struct rules_fx *fx, const char *method, const char *host,
			  const char *path, const char *client, int *err)
{
	struct sockaddr_any a = addr(client);
	struct rule_input in = {
		.method = method,
		.method_len = strlen(method),
		.host = host,
		.host_len = strlen(host),
		.path = path,
		.path_len = path ? strlen(path) : 0,
		.client = &a,
	};
	const struct rule *r = (void *)1;

	*err = rules_match(&fx->cfg, &in, &r);
	if (*err)
		assert_null(r);
	return r ? r->name : NULL;
}

/* Each spelling of /admin and of 127.0.0.1 meets the rule on the plain one. */
static void test_rules_spellings(void **state)
{
	static const char *const loopback[] = {
		"127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f.1", "0X7F.0.0.1",
		"0x7f000001", "0177.0.0.1", "0177.0.0.01", "127.0.0.1.", "::ffff:127.0.0.1",
		"[::ffff:127.0.0.1]", "::FFFF:7f00:1",
	};
	static const char *const by_host[] = {
		"some.host.com.", "SOME.HOST.COM..", "Some.Host.Com",
	};
	struct rules_fx *fx = *state;
	const char *got;
	int err;

	for (size_t i = 0; i < ARRAY_SIZE(admin_spellings); i++) {
		got = decide(fx, "GET", "x", admin_spellings[i], "1.2.3.4", &err);
		if (err || !got || strcmp(got, "admin-guard"))
			fail_msg("GET %s from outside: got %d %s, want admin-guard",
				 admin_spellings[i], err, got ? got : "none");
		/* inside the guard's client_not_in, nothing else holds */
		got = decide(fx, "GET", "x", admin_spellings[i], "10.1.1.1", &err);
		if (err || got)
			fail_msg("GET %s from inside: got %d %s, want none", admin_spellings[i],
				 err, got ? got : "none");
	}
	for (size_t i = 0; i < ARRAY_SIZE(loopback); i++) {
		got = decide(fx, "CONNECT", loopback[i], NULL, "1.2.3.4", &err);
		if (err || !got || strcmp(got, "loopback"))
			fail_msg("CONNECT %s: got %d %s, want loopback", loopback[i], err,
				 got ? got : "none");
	}
	for (size_t i = 0; i < ARRAY_SIZE(by_host); i++) {
		got = decide(fx, "CONNECT", by_host[i], NULL, "1.2.3.4", &err);
		if (err || !got || strcmp(got, "by-host"))
			fail_msg("CONNECT %s: got %d %s, want by-host", by_host[i], err,
				 got ? got : "none");
	}
}

/* A path without canonical form is an error only when a rule's decision needs it. */
static void test_rules_bad_path(void **state)
{
	struct rules_fx *fx = *state;
	int err;

	assert_null(decide(fx, "GET", "x", "/%zz", "1.2.3.4", &err));
	assert_int_equal(err, -EILSEQ);
	assert_null(decide(fx, "GET", "x", "/admin%", "1.2.3.4", &err));
	assert_int_equal(err, -EILSEQ);
	assert_null(decide(fx, "GET", "x", "/%2500", "1.2.3.4", &err));
	assert_int_equal(err, -ERANGE);
	assert_null(decide(fx, "GET", "x", "/%u0061dmin", "1.2.3.4", &err));
	assert_int_equal(err, -EILSEQ);
	/* the query is not the path */
	assert_null(decide(fx, "GET", "x", "/public?q=%zz", "1.2.3.4", &err));
	assert_int_equal(err, 0);
	/* a rule without a path condition decides first */
	assert_string_equal(decide(fx, "GET", "some.host.com", "/%zz", "10.1.1.1", &err),
			    "by-host");
	assert_int_equal(err, 0);
	/* CONNECT has no path */
	assert_null(decide(fx, "CONNECT", "x", NULL, "1.2.3.4", &err));
	assert_int_equal(err, 0);
	/* inside: the guard does not apply, "local" neither (client_in); "exact" needs the path */
	assert_null(decide(fx, "GET", "x", "/%zz", "10.1.1.1", &err));
	assert_int_equal(err, -EILSEQ);
	fx->cfg.nrules = 5;
	assert_null(decide(fx, "GET", "x", "/%zz", "10.1.1.1", &err));
	assert_int_equal(err, 0);
}

/* Inputs are slices, not C strings; and a path longer than any stack buffer works. */
static void test_rules_slices(void **state)
{
	struct rules_fx *fx = *state;
	struct sockaddr_any client = addr("1.2.3.4");
	struct rule_input in = {
		.method = "GETX", .method_len = 3,
		.host = "some.host.comXX", .host_len = 13,
		.path = "/adminXX", .path_len = 4,
		.client = &client,
	};
	const struct rule *r;
	size_t big = 100000;

	assert_int_equal(rules_match(&fx->cfg, &in, &r), 0);
	assert_string_equal(r->name, "by-host");
	in.path_len = 6;
	assert_int_equal(rules_match(&fx->cfg, &in, &r), 0);
	assert_string_equal(r->name, "admin-guard");

	fx->big = malloc(big);
	assert_non_null(fx->big);
	memset(fx->big, '/', big);
	memcpy(fx->big + big - 6, "/admin", 6);
	in.path = fx->big;
	in.path_len = big;
	assert_int_equal(rules_match(&fx->cfg, &in, &r), 0);
	assert_string_equal(r->name, "admin-guard");
	/* a long host: its canonical form does not fit the stack buffer either */
	memset(fx->big, '.', big);
	memcpy(fx->big, "0x7f.1", 6);
	in.method = "CONNECT";
	in.method_len = 7;
	in.host = fx->big;
	in.host_len = big;
	in.path = NULL;
	in.path_len = 0;
	assert_int_equal(rules_match(&fx->cfg, &in, &r), 0);
	assert_string_equal(r->name, "loopback");
	fx->cfg.nrules = 0;
	assert_int_equal(rules_match(&fx->cfg, &in, &r), 0);
	assert_null(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_canonical),
		cmocka_unit_test(test_admin_spellings),
		cmocka_unit_test(test_path_truncations),
		cmocka_unit_test(test_path_errors),
		cmocka_unit_test(test_path_nested_long),
		cmocka_unit_test(test_host_canonical),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_contains),
		cmocka_unit_test(test_rules_dest),
		cmocka_unit_test_setup_teardown(test_rules_match, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_rules_spellings, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_rules_bad_path, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_rules_slices, rules_setup, rules_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
