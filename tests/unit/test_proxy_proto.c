// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* PROXY protocol v1/v2: built headers parse back, hand-made vectors, every truncation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxy_proto.h"

#define V2SIG "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"

/* A byte string with its length: v2 headers hold NULs. */
struct bytes {
	const char *s;
	size_t len;
};
#define B(lit) { lit, sizeof(lit) - 1 }

static struct sockaddr_any v4(const char *ip, unsigned port)
{
	struct sockaddr_any a = { .len = sizeof(a.in) };

	a.in.sin_family = AF_INET;
	a.in.sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &a.in.sin_addr), 1);
	return a;
}

static struct sockaddr_any v6(const char *ip, unsigned port)
{
	struct sockaddr_any a = { .len = sizeof(a.in6) };

	a.in6.sin6_family = AF_INET6;
	a.in6.sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
	return a;
}

static void assert_addr(const struct sockaddr_any *got, const struct sockaddr_any *want)
{
	assert_int_equal(got->sa.sa_family, want->sa.sa_family);
	assert_int_equal(got->len, want->len);
	if (want->sa.sa_family == AF_INET) {
		assert_memory_equal(&got->in.sin_addr, &want->in.sin_addr, 4);
		assert_int_equal(got->in.sin_port, want->in.sin_port);
	} else {
		assert_memory_equal(&got->in6.sin6_addr, &want->in6.sin6_addr, 16);
		assert_int_equal(got->in6.sin6_port, want->in6.sin6_port);
	}
}

/* proxy_parse() on an exact heap copy, so that ASan sees any read past @len. */
static ssize_t parse(const char *s, size_t len, struct proxy_info *info)
{
	char *copy = malloc(len ? len : 1);
	ssize_t r;

	assert_non_null(copy);
	memcpy(copy, s, len);
	r = proxy_parse(copy, len, info);
	free(copy);
	return r;
}

/* Parses as a whole header of @h.len bytes, and every shorter prefix asks for more. */
static void assert_header(struct bytes h, struct proxy_info *info)
{
	struct proxy_info untouched;

	for (size_t k = 0; k < h.len; k++) {
		memset(&untouched, 0xa5, sizeof(untouched));
		if (parse(h.s, k, &untouched) != 0)
			fail_msg("prefix of %zu of %zu bytes (\"%.*s\") not 0", k, h.len, (int)k,
				 h.s);
		assert_int_equal(((unsigned char *)&untouched)[0], 0xa5);
	}
	assert_int_equal(parse(h.s, h.len, info), h.len);
}

/* ---- round trips ---- */

static void roundtrip(int version, struct sockaddr_any src, struct sockaddr_any dst)
{
	char buf[PROXY_BUILD_MAX];
	struct proxy_info info;
	ssize_t n = proxy_build(version, &src, &dst, buf, sizeof(buf));

	assert_true(n > 0 && n <= PROXY_BUILD_MAX);
	assert_header((struct bytes){ buf, n }, &info);
	assert_false(info.local);
	assert_addr(&info.src, &src);
	assert_addr(&info.dst, &dst);
}

static void test_roundtrip(void **state)
{
	(void)state;
	for (int v = 1; v <= 2; v++) {
		roundtrip(v, v4("192.0.2.1", 56324), v4("198.51.100.7", 443));
		roundtrip(v, v4("0.0.0.0", 0), v4("255.255.255.255", 65535));
		roundtrip(v, v6("2001:db8::1", 1), v6("2001:db8:0:1:2:3:4:5", 8443));
		roundtrip(v, v6("::", 0), v6("::ffff:10.0.0.1", 65535));
		roundtrip(v, v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
			  v6("fe80::1:2", 80));
	}
}

/* v2 carries an IPv4 and an IPv6 end as two IPv6 ones; v1 cannot carry them. */
static void test_mixed_families(void **state)
{
	struct sockaddr_any s = v4("192.0.2.1", 1000), d = v6("2001:db8::2", 443);
	struct sockaddr_any mapped = v6("::ffff:192.0.2.1", 1000);
	struct proxy_info info;
	char buf[PROXY_BUILD_MAX];
	ssize_t n;

	(void)state;
	assert_int_equal(proxy_build(1, &s, &d, buf, sizeof(buf)), -EAFNOSUPPORT);
	assert_int_equal(proxy_build(1, &d, &s, buf, sizeof(buf)), -EAFNOSUPPORT);
	n = proxy_build(2, &s, &d, buf, sizeof(buf));
	assert_int_equal(n, 16 + 36);
	assert_int_equal(parse(buf, n, &info), n);
	assert_addr(&info.src, &mapped);
	assert_addr(&info.dst, &d);
	n = proxy_build(2, &d, &s, buf, sizeof(buf));
	assert_int_equal(parse(buf, n, &info), n);
	assert_addr(&info.src, &d);
	mapped.in6.sin6_port = htons(1000);
	assert_addr(&info.dst, &mapped);
}

static void test_build_errors(void **state)
{
	struct sockaddr_any s = v4("192.0.2.1", 1000), d = v4("192.0.2.2", 80), u = { 0 };
	char buf[PROXY_BUILD_MAX];

	(void)state;
	u.sa.sa_family = AF_UNIX;
	u.len = sizeof(struct sockaddr_un);
	for (int v = 1; v <= 2; v++) {
		assert_int_equal(proxy_build(v, &u, &d, buf, sizeof(buf)), -EAFNOSUPPORT);
		assert_int_equal(proxy_build(v, &s, &u, buf, sizeof(buf)), -EAFNOSUPPORT);
	}
	assert_int_equal(proxy_build(0, &s, &d, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(proxy_build(3, &s, &d, buf, sizeof(buf)), -EINVAL);
}

/* A short buffer gets -ENOSPC and is left alone; exactly enough room is enough. */
static void test_enospc(void **state)
{
	struct sockaddr_any s6 = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	struct sockaddr_any d6 = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", 65534);
	struct sockaddr_any s4 = v4("192.0.2.1", 1000), d4 = v4("192.0.2.2", 80);
	const struct sockaddr_any *ends[][2] = { { &s4, &d4 }, { &s6, &d6 } };
	const ssize_t want[2][2] = { { 40, 28 }, { 104, 52 } }; /* [family][version - 1] */
	char full[PROXY_BUILD_MAX], out[PROXY_BUILD_MAX];

	(void)state;
	for (int f = 0; f < 2; f++)
		for (int v = 1; v <= 2; v++) {
			ssize_t n = proxy_build(v, ends[f][0], ends[f][1], full, sizeof(full));

			assert_int_equal(n, want[f][v - 1]);
			for (size_t len = 0; len < (size_t)n; len++) {
				memset(out, 'x', sizeof(out));
				assert_int_equal(proxy_build(v, ends[f][0], ends[f][1], out, len),
						 -ENOSPC);
				assert_int_equal(out[0], 'x');
			}
			assert_int_equal(proxy_build(v, ends[f][0], ends[f][1], out, n), n);
			assert_memory_equal(out, full, n);
		}
}

/* ---- known-good vectors, written out from the spec ---- */

static void test_v1_vector(void **state)
{
#define LINE "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
	const char line[] = LINE;
	struct sockaddr_any s = v4("192.0.2.1", 56324), d = v4("198.51.100.7", 443);
	struct proxy_info info;
	char buf[PROXY_BUILD_MAX];

	(void)state;
	assert_int_equal(proxy_build(1, &s, &d, buf, sizeof(buf)), sizeof(line) - 1);
	assert_memory_equal(buf, line, sizeof(line) - 1);
	/* The request that follows is not part of the header. */
	assert_int_equal(parse(LINE "GET / HTTP/1.1\r\n", sizeof(line) - 1 + 16, &info),
			 sizeof(line) - 1);
	assert_false(info.local);
	assert_addr(&info.src, &s);
	assert_addr(&info.dst, &d);
}

static void test_v1_vector_v6(void **state)
{
	const char line[] = "PROXY TCP6 2001:db8::1 ::ffff:198.51.100.7 0 65535\r\n";
	struct sockaddr_any s = v6("2001:db8::1", 0), d = v6("::ffff:198.51.100.7", 65535);
	struct proxy_info info;

	(void)state;
	assert_header((struct bytes)B(line), &info);
	assert_addr(&info.src, &s);
	assert_addr(&info.dst, &d);
}

/* 192.0.2.1:56324 -> 198.51.100.7:443, PROXY command, TCP over IPv4, 12 address bytes. */
#define V2_INET V2SIG "\x21\x11\x00\x0c" "\xc0\x00\x02\x01" "\xc6\x33\x64\x07" "\xdc\x04" "\x01\xbb"
static const char v2_inet[] = V2_INET;

static void test_v2_vector(void **state)
{
	struct sockaddr_any s = v4("192.0.2.1", 56324), d = v4("198.51.100.7", 443);
	struct proxy_info info;
	char buf[PROXY_BUILD_MAX];

	(void)state;
	assert_int_equal(sizeof(v2_inet) - 1, 28);
	assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), 28);
	assert_memory_equal(buf, v2_inet, 28);
	assert_int_equal(parse(V2_INET "\x16\x03\x01", 31, &info), 28);
	assert_false(info.local);
	assert_addr(&info.src, &s);
	assert_addr(&info.dst, &d);
}

static void test_v2_vector_v6(void **state)
{
	const char h[] = V2SIG "\x21\x21\x00\x24"
			 "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
			 "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x0a\x00\x00\x02"
			 "\x30\x39" "\x1f\x90";
	struct sockaddr_any s = v6("2001:db8::1", 12345), d = v6("::ffff:10.0.0.2", 8080);
	struct proxy_info info;
	char buf[PROXY_BUILD_MAX];

	(void)state;
	assert_int_equal(sizeof(h) - 1, 52);
	assert_header((struct bytes)B(h), &info);
	assert_addr(&info.src, &s);
	assert_addr(&info.dst, &d);
	assert_int_equal(proxy_build(2, &s, &d, buf, sizeof(buf)), 52);
	assert_memory_equal(buf, h, 52);
}

/* ---- every truncation of valid headers ---- */

static const struct bytes valid[] = {
	B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
	B("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
	B("PROXY TCP4 10.200.30.4 127.0.0.1 10000 9\r\n"),
	B("PROXY TCP6 :: ::1 80 443\r\n"),
	B("PROXY TCP6 1:2:3:4:5:6:7:8 1:2:3:4:5:6:7:: 6553 65530\r\n"),
	B("PROXY TCP6 ::2:3:4:5:6:7:8 1::8 1 1\r\n"),
	B("PROXY TCP6 0000:0000:0000:0000:0000:0000:255.255.255.255 ::1.2.3.4 1 2\r\n"),
	B("PROXY TCP6 1:2:3:4:5:6:1.2.3.4 ::ffff:0.0.0.0 1 2\r\n"),
	B("PROXY TCP6 fe80::abcd:EF01 2001:DB8:0:0:1:: 1 2\r\n"),
	B("PROXY UNKNOWN\r\n"),
	B("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"),
	B("PROXY UNKNOWN  whatever  \x01\xff\r\n"),
	B(V2SIG "\x21\x11\x00\x0c" "\x7f\x00\x00\x01" "\x7f\x00\x00\x02" "\x00\x00" "\xff\xff"),
	B(V2SIG "\x20\x00\x00\x00"),
};

static void test_truncations(void **state)
{
	struct proxy_info info;

	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		assert_header(valid[i], &info);
	/* The longest v1 line there can be: 105 bytes and CRLF. */
	{
		char line[PROXY_V1_MAX + 1];

		memset(line, 'x', sizeof(line));
		memcpy(line, "PROXY UNKNOWN ", 14);
		memcpy(line + PROXY_V1_MAX - 2, "\r\n", 2);
		assert_header((struct bytes){ line, PROXY_V1_MAX }, &info);
		assert_true(info.local);
	}
	/* A v1 TCP line of the widest addresses and ports, as proxy_build() writes it. */
	{
		const char l[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
				 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

		assert_header((struct bytes)B(l), &info);
		assert_int_equal(sizeof(l) - 1, 104);
	}
}

/* Beginnings that are fine so far. */
static void test_need_more(void **state)
{
	static const struct bytes more[] = {
		B("P"), B("PRO"), B("PROXY"), B("PROXY "), B("PROXY T"), B("PROXY TCP6"),
		B("PROXY UNK"), B("PROXY UNKNOWN"), B("PROXY UNKNOWN 1"), B("PROXY TCP4 "),
		B("PROXY TCP4 1."), B("PROXY TCP4 1.2.3.4"), B("PROXY TCP4 1.2.3.4 "),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 0"), B("PROXY TCP4 1.2.3.4 5.6.7.8 6553"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
		B("PROXY TCP6 :"), B("PROXY TCP6 ::ffff:1.2."), B("PROXY TCP6 1:2:3:4:5:6:7"),
		B("PROXY TCP6 1:2:3:4:5:6:7:"), B("PROXY TCP6 1::2:"),
		B("PROXY TCP6 1:2:3:4:5:6:1"),
		B(V2SIG), B(V2SIG "\x21"), B(V2SIG "\x21\x11"), B(V2SIG "\x21\x11\x00"),
		B(V2SIG "\x21\x11\x00\x0c"), B(V2SIG "\x21\x21\x00\x24\x20\x01"),
		B(V2SIG "\x20\x00\x04\x00"), /* LOCAL, 1024 bytes to skip */
	};
	struct proxy_info info;

	(void)state;
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
		if (parse(more[i].s, more[i].len, &info) != 0)
			fail_msg("case %zu (\"%.*s\") not 0", i, (int)more[i].len, more[i].s);
}

/* ---- commands without addresses ---- */

static void test_local(void **state)
{
	static const struct bytes local[] = {
		B(V2SIG "\x20\x00\x00\x00"),
		/* LOCAL ignores whatever it carries, addresses or not, whatever the protocol */
		B(V2SIG "\x20\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"),
		B(V2SIG "\x20\x12\x00\x03" "xyz"),
		B(V2SIG "\x20\x31\x00\x00"),
		B(V2SIG "\x20\x22\x00\x01" "\xff"),
	};
	struct proxy_info info;

	(void)state;
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
		memset(&info, 0xa5, sizeof(info));
		assert_header(local[i], &info);
		assert_true(info.local);
		assert_int_equal(info.src.sa.sa_family, AF_UNSPEC);
		assert_int_equal(info.dst.len, 0);
	}
}

static void test_unknown_v1(void **state)
{
	struct proxy_info info;

	(void)state;
	memset(&info, 0xa5, sizeof(info));
	assert_int_equal(parse("PROXY UNKNOWN\r\nGET /", 20, &info), 15);
	assert_true(info.local);
	assert_int_equal(info.src.sa.sa_family, AF_UNSPEC);
	assert_int_equal(parse("PROXY UNKNOWN ffff:: 1.2.3.4 1 2\r\n", 34, &info), 34);
	assert_true(info.local);
}

/* ---- TLVs ---- */

static void test_tlvs(void **state)
{
	/* ALPN "h2", then a NOOP with 3 bytes of padding: 12 + 5 + 6 = 23 after the fixed part */
	const char h[] = V2SIG "\x21\x11\x00\x17"
			 "\xc0\x00\x02\x01" "\xc6\x33\x64\x07" "\xdc\x04" "\x01\xbb"
			 "\x01\x00\x02" "h2" "\x04\x00\x03" "\x00\x00\x00";
	struct sockaddr_any s = v4("192.0.2.1", 56324), d = v4("198.51.100.7", 443);
	struct proxy_info info;
	char bad[sizeof(h)];

	(void)state;
	assert_header((struct bytes)B(h), &info);
	assert_int_equal(sizeof(h) - 1, 16 + 23);
	assert_false(info.local);
	assert_addr(&info.src, &s);
	assert_addr(&info.dst, &d);

	/* The second TLV claims 4 bytes where 3 are left: wrong as soon as its header is in. */
	memcpy(bad, h, sizeof(h));
	bad[35] = 4;
	assert_int_equal(parse(bad, 35, &info), 0);
	assert_int_equal(parse(bad, 36, &info), -EINVAL);
	assert_int_equal(parse(bad, sizeof(h) - 1, &info), -EINVAL);
	/* A length that ends 2 bytes after ALPN: wrong once ALPN's header shows where it ends. */
	memcpy(bad, h, sizeof(h));
	bad[15] = 12 + 5 + 2;
	assert_int_equal(parse(bad, 30, &info), 0);
	assert_int_equal(parse(bad, 31, &info), -EINVAL);
	/* Two bytes after the addresses: not even a TLV header. */
	memcpy(bad, h, sizeof(h));
	bad[15] = 14;
	assert_int_equal(parse(bad, 16, &info), -EINVAL);
}

/* ---- invalid ---- */

static void test_invalid(void **state)
{
	static const struct bytes invalid[] = {
		B("G"), B("GET "), B("GET / HTTP/1.1\r\n\r\n"), B("\x16\x03\x01"), B("PROXX"),
		B("proxy TCP4"), B("PROXY tcp4 "), B("PROXY  TCP4"), B("PROXY TCP5"),
		B("PROXY TCP44"), B("PROXY UNKNOWNX"), B("PROXY\r\n"), B("PROXY \r\n"),
		B("PROXY TCP4\r\n"), B("PROXY TCP4 \r\n"), B("PROXY UNKNOWN\n"),
		B("PROXY UNKNOWN\rX\n"), B("PROXY UNKNOWN x\ny\r\n"),
		/* leading zeros, out of range, signs, missing or extra fields */
		B("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 99999"), B("PROXY TCP4 1.2.3.4 5.6.7.8 123456"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2"), B("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1  2"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 x\r\n"),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "),
		B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
		B("PROXY TCP4 1.2.3.4\r"), B("PROXY TCP4 1.2.3.4 5.6.7.8\r\n"),
		/* addresses of the wrong family or that do not parse */
		B("PROXY TCP4 ::1 ::1 1 2\r\n"), B("PROXY TCP4 ::"),
		B("PROXY TCP4 ::ffff:1.2.3.4 "),
		B("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), B("PROXY TCP6 1.2"),
		B("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), B("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
		B("PROXY TCP4 1.2.3.4.5"), B("PROXY TCP4 1.2.3.256"), B("PROXY TCP4 1.2.3.4\0 "),
		B("PROXY TCP4 1.2.3.4\0"), B("PROXY TCP4 localhost"), B("PROXY TCP6 1::2::3"),
		B("PROXY TCP6 12345"), B("PROXY TCP6 1:2:3:4:5:6:7:8:9"), B("PROXY TCP6 :::"),
		B("PROXY TCP6 [::1] "), B("PROXY TCP6 fe80::1%lo "),
		B("PROXY TCP6 1:2:3:4:5:6:7:1.2"),
		/* v2: signature, version, command, family, protocol, length */
		B("\r\n\r\n\0\r\nQUIX"), B("\r\n\r\n\x01"), B("\r\nX"), B("\r\r"),
		B(V2SIG "\x11"), B(V2SIG "\x31\x11"), B(V2SIG "\x01"), B(V2SIG "\xf1"),
		B(V2SIG "\x22"), B(V2SIG "\x2f"),
		B(V2SIG "\x21\x12"),     /* PROXY over UDP */
		B(V2SIG "\x21\x10"),     /* PROXY, IPv4, unspecified protocol */
		B(V2SIG "\x21\x00"),     /* PROXY, UNSPEC */
		B(V2SIG "\x21\x31"),     /* PROXY from a unix socket: no TCP address */
		B(V2SIG "\x21\x41"), B(V2SIG "\x21\x13"), B(V2SIG "\x20\x41"), B(V2SIG "\x20\x03"),
		B(V2SIG "\x21\x11\x00\x0b"), B(V2SIG "\x21\x21\x00\x0c"),
		B(V2SIG "\x20\x00\x04\x01"), B(V2SIG "\x21\x11\xff\xff"),
	};
	struct proxy_info info;

	(void)state;
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		memset(&info, 0xa5, sizeof(info));
		if (parse(invalid[i].s, invalid[i].len, &info) != -EINVAL)
			fail_msg("case %zu (\"%.*s\") not -EINVAL", i, (int)invalid[i].len,
				 invalid[i].s);
		assert_int_equal(((unsigned char *)&info)[0], 0xa5);
	}
}

/* v1 waits for its CRLF up to the 107 bytes the spec allows, not a byte longer. */
static void test_v1_length_limit(void **state)
{
	char line[PROXY_V1_MAX + 2];
	struct proxy_info info;

	(void)state;
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	assert_int_equal(parse(line, PROXY_V1_MAX - 1, &info), 0);
	assert_int_equal(parse(line, PROXY_V1_MAX, &info), -EINVAL);
	assert_int_equal(parse(line, sizeof(line), &info), -EINVAL);
	/* CRLF as bytes 107 and 108 */
	memcpy(line + PROXY_V1_MAX - 1, "\r\n", 2);
	assert_int_equal(parse(line, PROXY_V1_MAX, &info), -EINVAL);
	assert_int_equal(parse(line, PROXY_V1_MAX + 1, &info), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_mixed_families),
		cmocka_unit_test(test_build_errors),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_v1_vector),
		cmocka_unit_test(test_v1_vector_v6),
		cmocka_unit_test(test_v2_vector),
		cmocka_unit_test(test_v2_vector_v6),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_need_more),
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_unknown_v1),
		cmocka_unit_test(test_tlvs),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_v1_length_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
