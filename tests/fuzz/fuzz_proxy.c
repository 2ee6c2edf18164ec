// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target for user/proxy_proto.c: whatever an accept_proxy listener's client
 * sends first, parsed as a PROXY v1/v2 header.
 *
 * Every prefix of the input is parsed from a buffer that ends exactly where the prefix
 * does, so ASan reports any read past @len. The answers must be those of a parser fed
 * byte by byte: "need more" (0) until it decides, then the same decision for every
 * longer input (one header length with the same addresses, or -EINVAL). A header that
 * parsed is built again from what was read, and must parse back to the same.
 * Invariants that do not hold abort() with a line on stderr saying which one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

#define check(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz_proxy: invariant failed at line %d: %s\n", \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* proxy_parse() on @data[0..k) placed at the very end of @buf (@size bytes). */
static ssize_t parse_prefix(char *buf, size_t size, const uint8_t *data, size_t k,
			    struct proxy_info *info)
{
	ssize_t r;

	memcpy(buf + size - k, data, k);
	memset(info, 0xa5, sizeof(*info));
	r = proxy_parse(buf + size - k, k, info);
	check(r == 0 || r == -EINVAL || (r > 0 && (size_t)r <= k && r <= PROXY_MAX_HEADER));
	if (r <= 0) /* nothing written unless it parsed */
		for (size_t i = 0; i < sizeof(*info); i++)
			check(((uint8_t *)info)[i] == 0xa5);
	return r;
}

/* Compared field by field: padding holds whatever it held. */
static bool addr_eq(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	return a->len == b->len && !memcmp(&a->ss, &b->ss, sizeof(a->ss));
}

static bool info_eq(const struct proxy_info *a, const struct proxy_info *b)
{
	return a->local == b->local && addr_eq(&a->src, &b->src) && addr_eq(&a->dst, &b->dst);
}

static void check_info(const struct proxy_info *info)
{
	int fam = info->src.sa.sa_family;

	if (info->local) {
		check(fam == AF_UNSPEC && info->dst.sa.sa_family == AF_UNSPEC);
		check(!info->src.len && !info->dst.len);
		return;
	}
	check(fam == AF_INET || fam == AF_INET6);
	check(info->dst.sa.sa_family == fam);
	check(info->src.len == (fam == AF_INET ? sizeof(info->src.in) : sizeof(info->src.in6)));
	check(info->dst.len == info->src.len);
}

/* Build the header again from @info and parse that: the same addresses come back. */
static void check_rebuild(const uint8_t *data, const struct proxy_info *info)
{
	int version = data[0] == 'P' ? 1 : 2;
	char out[PROXY_BUILD_MAX], small[8];
	struct proxy_info again;
	ssize_t n, m;

	n = proxy_build(version, &info->src, &info->dst, out, sizeof(out));
	check(n > 0 && n <= PROXY_BUILD_MAX);
	check(proxy_build(version, &info->src, &info->dst, small, sizeof(small)) == -ENOSPC);
	m = proxy_parse(out, n, &again);
	check(m == n && !again.local);
	check(info_eq(&again, info));
	/* v2 is binary: all but the length (TLVs are not rebuilt) comes back byte for byte. */
	if (version == 2) {
		check(!memcmp(out, data, 14));
		check(!memcmp(out + 16, data + 16, n - 16));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Past the longest header nothing can change the answer. */
	size_t last = size < PROXY_MAX_HEADER + 1 ? size : PROXY_MAX_HEADER + 1;
	struct proxy_info info, first;
	ssize_t decided = 0;
	char *buf = malloc(size ? size : 1);

	if (!buf)
		abort();
	for (size_t k = 0; k <= last; k++) {
		ssize_t r = parse_prefix(buf, size ? size : 1, data, k, &info);

		if (!decided) {
			decided = r;
			if (r > 0) {
				check((size_t)r == k); /* decided by its last byte */
				check(r <= (data[0] == 'P' ? PROXY_V1_MAX : PROXY_MAX_HEADER));
				check_info(&info);
				first = info;
			}
			continue;
		}
		check(r == decided);
		if (r > 0)
			check(info_eq(&info, &first));
	}
	if (size > last) {
		ssize_t r = parse_prefix(buf, size, data, size, &info);

		check(decided != 0 && r == decided);
	}
	if (decided > 0 && !first.local)
		check_rebuild(data, &first);
	free(buf);
	return 0;
}
