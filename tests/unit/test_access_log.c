// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The access log's formats: JSON escaping, the JSON line, the text line byte for byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "access_log.h"

static void test_escape_table(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{ "plain.host:443", 14, "plain.host:443" },
		{ "a\"b", 3, "a\\\"b" },
		{ "a\\b", 3, "a\\\\b" },
		{ "\b\f\n\r\t", 5, "\\b\\f\\n\\r\\t" },
		{ "\x01\x1f\x7f", 3, "\\u0001\\u001f\\u007f" },
		{ "\xc3\xa9\xff", 3, "\\u00c3\\u00a9\\u00ff" },
		{ "a\0b", 3, "a\\u0000b" },
		{ "", 0, "" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = json_escape(out, sizeof(out), cases[i].in, cases[i].len);

		assert_string_equal(out, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
	}
}

/* Every output size: never past the buffer, never half an escape, always terminated. */
static void test_escape_truncation(void **state)
{
	static const char in[] = "x\"\x01y";
	static const char full[] = "x\\\"\\u0001y";
	/* Lengths of the whole escapes that fit, by output size (room for the NUL). */
	static const size_t want[] = { 0, 0, 1, 1, 3, 3, 3, 3, 3, 3, 9, 10, 10 };
	char out[16];

	(void)state;
	for (size_t size = 0; size < sizeof(want) / sizeof(want[0]); size++) {
		size_t n;

		memset(out, 'Z', sizeof(out));
		n = json_escape(out, size, in, strlen(in));
		assert_int_equal(n, want[size]);
		assert_int_equal(out[size], 'Z');
		if (size) {
			assert_int_equal(out[n], '\0');
			assert_memory_equal(out, full, n);
		}
	}
}

static struct access_rec rec(void)
{
	return (struct access_rec){
		/* 2025-12-01T04:05:06.789Z */
		.when = { .tv_sec = 1764561906, .tv_nsec = 789000000 },
		.what = "tunnel closed", .client = "127.0.0.1:5000", .method = "CONNECT",
		.connect = true, .target = "ex\"am\nple:443", .rule = NULL, .pool = "direct",
		.upstream = "127.0.0.1:443", .relay = "sockmap", .status = 200, .up = 1,
		.down = 2, .copied_up = 3, .copied_down = 4, .duration_ms = 5,
		.end = "client_fin",
	};
}

static void test_json_line(void **state)
{
	struct access_rec r = rec();
	char out[ACCESS_LINE_MAX];

	(void)state;
	access_log_format(out, sizeof(out), true, &r);
	assert_string_equal(out,
		"{\"time\":\"2025-12-01T04:05:06.789Z\",\"client\":\"127.0.0.1:5000\","
		"\"method\":\"CONNECT\",\"target\":\"ex\\\"am\\nple:443\",\"rule\":null,"
		"\"pool\":\"direct\",\"upstream\":\"127.0.0.1:443\",\"status\":200,"
		"\"relay\":\"sockmap\",\"bytes_up\":1,\"bytes_down\":2,\"copied_up\":3,"
		"\"copied_down\":4,\"duration_ms\":5,\"end\":\"client_fin\"}\n");
	r.connect = false;
	r.method = "GET";
	r.status = 0;
	r.relay = NULL;
	access_log_format(out, sizeof(out), true, &r);
	assert_non_null(strstr(out, "\"host\":\"ex\\\"am\\nple:443\""));
	assert_non_null(strstr(out, "\"status\":null,\"relay\":null,"));
}

/* Eight strings of the worst bytes still make one whole line. */
static void test_json_line_worst_case(void **state)
{
	char worst[1024], out[ACCESS_LINE_MAX];
	struct access_rec r = rec();
	size_t n;

	(void)state;
	memset(worst, '\x01', sizeof(worst) - 1);
	worst[sizeof(worst) - 1] = '\0';
	r.client = r.method = r.target = r.rule = worst;
	r.pool = r.upstream = r.relay = r.end = worst;
	n = access_log_format(out, sizeof(out), true, &r);
	assert_true(n < sizeof(out));
	assert_string_equal(out + n - 2, "}\n");
	assert_int_equal(out[n - 1], '\n');
}

static void test_text_line(void **state)
{
	struct access_rec r = rec();
	char out[ACCESS_LINE_MAX];

	(void)state;
	r.target = "example:443";
	access_log_format(out, sizeof(out), false, &r);
	assert_string_equal(out, "access client=127.0.0.1:5000 target=example:443 "
				 "upstream=127.0.0.1:443 status=200 relay=sockmap up=1 down=2 ms=5 "
				 "tunnel closed\n");
	r.target = NULL;
	r.upstream = NULL;
	r.relay = NULL;
	r.what = "reply";
	r.status = 400;
	access_log_format(out, sizeof(out), false, &r);
	assert_string_equal(out, "access client=127.0.0.1:5000 target=- upstream=- status=400 "
				 "relay=- up=1 down=2 ms=5 reply\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test(test_escape_truncation),
		cmocka_unit_test(test_json_line),
		cmocka_unit_test(test_json_line_worst_case),
		cmocka_unit_test(test_text_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
