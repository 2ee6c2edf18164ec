// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Connections per client address: counts by IP, both spellings of IPv4 alike. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr_fx.h"
#include "admit.h"

static void test_counts(void **state)
{
	struct admit *a = admit_new();
	struct sockaddr_any x1 = v4("10.0.0.1", 1000), x2 = v4("10.0.0.1", 2000);
	struct sockaddr_any y = v4("10.0.0.2", 1000), xm = v6("::ffff:10.0.0.1", 3000);
	struct sockaddr_any z = v6("2001:db8::1", 1);

	(void)state;
	assert_non_null(a);
	assert_int_equal(admit_count(a, &x1), 0);
	assert_int_equal(admit_add(a, &x1), 0);
	assert_int_equal(admit_add(a, &x2), 0); /* the port does not matter */
	assert_int_equal(admit_add(a, &xm), 0); /* nor the IPv4-mapped spelling */
	assert_int_equal(admit_add(a, &y), 0);
	assert_int_equal(admit_add(a, &z), 0);
	assert_int_equal(admit_count(a, &x1), 3);
	assert_int_equal(admit_count(a, &y), 1);
	assert_int_equal(admit_count(a, &z), 1);
	admit_del(a, &x2);
	admit_del(a, &x1);
	assert_int_equal(admit_count(a, &xm), 1);
	admit_del(a, &xm);
	assert_int_equal(admit_count(a, &x1), 0);
	admit_del(a, &x1); /* not there: nothing happens */
	assert_int_equal(admit_count(a, &y), 1);
	admit_free(a);
}

/* Many addresses share buckets: each keeps its own count. */
static void test_many(void **state)
{
	struct admit *a = admit_new();
	char ip[32];

	(void)state;
	for (unsigned i = 0; i < 20000; i++) {
		struct sockaddr_any s;

		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		s = v4(ip, 1);
		for (unsigned k = 0; k <= i % 3; k++)
			assert_int_equal(admit_add(a, &s), 0);
	}
	for (unsigned i = 0; i < 20000; i++) {
		struct sockaddr_any s;

		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		s = v4(ip, 1);
		assert_int_equal(admit_count(a, &s), i % 3 + 1);
	}
	admit_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
