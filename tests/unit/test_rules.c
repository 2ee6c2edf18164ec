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

#include "rules.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
	const char *in;
	const char *out;
} paths[] = {
	{ "/admin", "/admin" },
	{ "/%61dmin", "/admin" },
	/* Found by fuzzing: a decoded hex digit must not complete a new escape. */
	{ "/%%32e", "/%%32e" },
	{ "/%4%31", "/%4%31" },
	{ "/%%32e%2E/x", "/%%32e./x" },
	{ "/%41DMIN", "/ADMIN" },
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
	{ "/admin%3Fx", "/admin%3Fx" },
	{ "/a%2Fb", "/a%2Fb" },
	{ "/a%2fb", "/a%2Fb" },
	{ "/%2F%2fadmin", "/%2F%2Fadmin" },
	{ "/%7e%7E%2d%5f%2E", "/~~-_." },
	{ "/%20x", "/%20x" },
	{ "/%00", "/%00" },
	{ "/%zz", "/%zz" },
	{ "/admin%", "/admin%" },
	{ "/admin%4", "/admin%4" },
	{ "/admin%4?x", "/admin%4" },
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

static void test_path_normalise(void **state)
{
	char out[64], again[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		int n = path_normalise(paths[i].in, strlen(paths[i].in), out, sizeof(out));

		if (n < 0 || strcmp(out, paths[i].out) || (size_t)n != strlen(out))
			fail_msg("'%s': got %d '%s', want '%s'", paths[i].in, n, n < 0 ? "" : out,
				 paths[i].out);
		/* normalising twice changes nothing */
		n = path_normalise(out, strlen(out), again, sizeof(again));
		assert_string_equal(again, paths[i].out);
	}
}

/* Every prefix length of an input: no read past @len, whatever the cut. */
static void test_path_truncations(void **state)
{
	static const char in[] = "/a/%2e%2E/b%2f%41//./c?q#f";
	char buf[sizeof(in) - 1], out[64];

	(void)state;
	for (size_t len = 0; len <= sizeof(buf); len++) {
		/* at the end of buf, so that ASan sees a read past len */
		char *copy = buf + sizeof(buf) - len;

		memcpy(copy, in, len);
		assert_true(path_normalise(copy, len, out, sizeof(out)) > 0);
		assert_int_equal(out[0], '/');
	}
}

static void test_path_errors(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(path_normalise("*", 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalise("admin", 5, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalise("http://h/", 9, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalise("/a\0b", 4, out, sizeof(out)), -EINVAL);
	/* @out needs the input's length + 1, even when the result is shorter */
	assert_int_equal(path_normalise("/1234567", 8, out, 8), -ENOSPC);
	assert_int_equal(path_normalise("/1234567", 8, out, 9), 8);
	assert_int_equal(path_normalise("/123456", 7, out, 8), 7);
	assert_int_equal(path_normalise("", 0, out, 1), -ENOSPC);
	assert_int_equal(path_normalise("", 0, out, 2), 1);
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
	struct rule rules[6];
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
	fx->cfg.rules = fx->rules;
	fx->cfg.nrules = 5;
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
		{ "GET", "x", "/Admin", "1.2.3.4", NULL },
		{ "GET", "x", "/adm", "1.2.3.4", NULL },
		{ "GET", "x", "/%2Fadmin", "1.2.3.4", NULL },
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
		const struct rule *r = rules_match(&fx->cfg, &in);
		const char *got = r ? r->name : NULL;

		if (got != cases[i].want && (!got || !cases[i].want || strcmp(got, cases[i].want)))
			fail_msg("case %zu %s %s%s from %s: got %s, want %s", i, cases[i].method,
				 cases[i].host, cases[i].path ? cases[i].path : "", cases[i].client,
				 got ? got : "none", cases[i].want ? cases[i].want : "none");
	}
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
	size_t big = 100000;

	assert_string_equal(rules_match(&fx->cfg, &in)->name, "by-host");
	in.path_len = 6;
	assert_string_equal(rules_match(&fx->cfg, &in)->name, "admin-guard");

	fx->big = malloc(big);
	assert_non_null(fx->big);
	memset(fx->big, '/', big);
	memcpy(fx->big + big - 6, "/admin", 6);
	in.path = fx->big;
	in.path_len = big;
	assert_string_equal(rules_match(&fx->cfg, &in)->name, "admin-guard");
	fx->cfg.nrules = 0;
	assert_null(rules_match(&fx->cfg, &in));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_normalise),
		cmocka_unit_test(test_path_truncations),
		cmocka_unit_test(test_path_errors),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_contains),
		cmocka_unit_test_setup_teardown(test_rules_match, rules_setup, rules_teardown),
		cmocka_unit_test_setup_teardown(test_rules_slices, rules_setup, rules_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
