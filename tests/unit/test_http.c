// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Unit tests for user/http.c: heads, limits, hop-by-hop, builders, authority, bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_msg.h"

/* A string literal with its length (literals may hold NUL). */
#define S(x) x, sizeof(x) - 1
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Each test owns one parser and one heap buffer, freed by the teardown. */
struct fixture {
	struct http_head h, ref;
	char *buf;
	char out[4096];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->buf);
	free(f);
	return 0;
}

/* Replace f->buf by an exact-size copy of s[0..n), so ASan sees any read past n. */
static char *fx_copy(struct fixture *f, const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, s, n);
	free(f->buf);
	f->buf = p;
	return p;
}

/* Parse s[0..n) in one call with a fresh parser. */
static ssize_t fx_parse(struct fixture *f, bool request, size_t max, const char *s, size_t n)
{
	http_head_init(&f->h, request, max);
	return http_head_parse(&f->h, fx_copy(f, s, n), n);
}

static void assert_span(const char *buf, struct http_span s, const char *want)
{
	char got[512];

	assert_true(s.len < sizeof(got));
	memcpy(got, http_ptr(buf, s), s.len);
	got[s.len] = '\0';
	assert_string_equal(got, want);
}

/* Fields as "name=value|name=value". */
static void assert_fields(const struct http_head *h, const char *buf, const char *want)
{
	char got[2048];
	size_t len = 0;
	unsigned i;

	got[0] = '\0';
	for (i = 0; i < h->nfields; i++) {
		const struct http_field *fl = &h->fields[i];

		len += snprintf(got + len, sizeof(got) - len, "%s%.*s=%.*s", i ? "|" : "",
				(int)fl->name.len, http_ptr(buf, fl->name), (int)fl->value.len,
				http_ptr(buf, fl->value));
		assert_true(len < sizeof(got));
	}
	assert_string_equal(got, want);
}

/* ---- valid requests ---- */

static const struct req_case {
	const char *in;
	size_t len;
	uint8_t method;
	const char *method_s, *target, *fields;
	uint8_t minor;
	bool keep_alive, chunked, has_cl;
	uint64_t cl;
	size_t skip; /* bytes before the request line */
} req_cases[] = {
	{ S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
	  HTTP_CONNECT, "CONNECT", "example.com:443", "Host=example.com:443",
	  1, true, false, false, 0, 0 },
	{ S("CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n"),
	  HTTP_CONNECT, "CONNECT", "127.0.0.1:443", "",
	  1, true, false, false, 0, 0 },
	{ S("CONNECT [::1]:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n"),
	  HTTP_CONNECT, "CONNECT", "[::1]:443", "Proxy-Authorization=Basic dTpw",
	  1, true, false, false, 0, 0 },
	{ S("CONNECT [2001:db8::1]:8443 HTTP/1.0\r\n\r\n"),
	  HTTP_CONNECT, "CONNECT", "[2001:db8::1]:8443", "",
	  0, false, false, false, 0, 0 },
	{ S("GET /index.html?q=1 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"),
	  HTTP_GET, "GET", "/index.html?q=1", "Host=a.example|Connection=close",
	  1, false, false, false, 0, 0 },
	{ S("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n"),
	  HTTP_GET, "GET", "http://a.example/x", "Host=a.example",
	  1, true, false, false, 0, 0 },
	{ S("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
	  HTTP_GET, "GET", "/", "Connection=keep-alive",
	  0, true, false, false, 0, 0 },
	{ S("POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
	  HTTP_POST, "POST", "/p", "Content-Length=5",
	  1, true, false, true, 5, 0 },
	{ S("POST /p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
	  HTTP_POST, "POST", "/p", "Transfer-Encoding=gzip, chunked",
	  1, true, true, false, 0, 0 },
	/* OWS around values is not part of them; empty values are allowed. */
	{ S("GET / HTTP/1.1\r\nX-A:   v w \t\r\nX-B:\r\nX-C: \r\nx-d:e\r\n\r\n"),
	  HTTP_GET, "GET", "/", "X-A=v w|X-B=|X-C=|x-d=e",
	  1, true, false, false, 0, 0 },
	/* RFC 9112 2.2: an empty line before the request line is ignored. */
	{ S("\r\nGET / HTTP/1.1\r\n\r\n"),
	  HTTP_GET, "GET", "/", "",
	  1, true, false, false, 0, 2 },
};

static void test_valid_requests(void **state)
{
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(req_cases); i++) {
		const struct req_case *c = &req_cases[i];
		ssize_t n = fx_parse(f, true, 16384, c->in, c->len);

		if (n != (ssize_t)c->len)
			fail_msg("case %zu: got %zd (%s)", i, n, f->h.error ? f->h.error : "");
		assert_true(f->h.request);
		assert_int_equal(f->h.head_len, c->len);
		assert_int_equal(f->h.method, c->method);
		assert_span(f->buf, f->h.method_s, c->method_s);
		assert_int_equal(f->h.method_s.off, c->skip);
		assert_span(f->buf, f->h.target, c->target);
		assert_fields(&f->h, f->buf, c->fields);
		assert_int_equal(f->h.major, 1);
		assert_int_equal(f->h.minor, c->minor);
		assert_int_equal(f->h.keep_alive, c->keep_alive);
		assert_int_equal(f->h.chunked, c->chunked);
		assert_int_equal(f->h.has_content_length, c->has_cl);
		assert_int_equal(f->h.content_length, c->cl);
		assert_int_equal(f->h.error_status, 0);
	}
}

/* Build "GET / HTTP/1.1\r\n" + n fields + "\r\n" into buf. */
static size_t many_fields(char *buf, size_t cap, unsigned n)
{
	size_t len = snprintf(buf, cap, "GET / HTTP/1.1\r\n");
	unsigned i;

	for (i = 0; i < n; i++)
		len += snprintf(buf + len, cap - len, "X-Field-%u: value %u\r\n", i, i);
	len += snprintf(buf + len, cap - len, "\r\n");
	assert_true(len < cap);
	return len;
}

static void test_many_fields(void **state)
{
	struct fixture *f = *state;
	char buf[8192];
	size_t len;

	len = many_fields(buf, sizeof(buf), HTTP_MAX_FIELDS);
	assert_int_equal(fx_parse(f, true, sizeof(buf), buf, len), len);
	assert_int_equal(f->h.nfields, HTTP_MAX_FIELDS);
	assert_span(f->buf, f->h.fields[HTTP_MAX_FIELDS - 1].name, "X-Field-99");
	assert_span(f->buf, f->h.fields[HTTP_MAX_FIELDS - 1].value, "value 99");
	assert_int_equal(http_find_field(&f->h, f->buf, "x-field-42", 0), 42);
	assert_int_equal(http_find_field(&f->h, f->buf, "x-field-42", 43), -1);
	assert_int_equal(http_find_field(&f->h, f->buf, "x-field", 0), -1);

	len = many_fields(buf, sizeof(buf), HTTP_MAX_FIELDS + 1);
	assert_int_equal(fx_parse(f, true, sizeof(buf), buf, len), -EMSGSIZE);
	assert_int_equal(f->h.error_status, 431);
}

/* ---- valid responses ---- */

static const struct resp_case {
	const char *in;
	size_t len;
	int status;
	const char *reason, *fields;
	uint8_t minor;
	bool keep_alive;
	enum http_framing framing;
	bool head_only;
} resp_cases[] = {
	{ S("HTTP/1.1 200 Connection established\r\n\r\n"),
	  200, "Connection established", "", 1, false, HTTP_BODY_CLOSE, false },
	{ S("HTTP/1.1 200\r\n\r\n"),
	  200, "", "", 1, false, HTTP_BODY_CLOSE, false },
	{ S("HTTP/1.1 200 \r\n\r\n"),
	  200, "", "", 1, false, HTTP_BODY_CLOSE, false },
	{ S("HTTP/1.1 407 Proxy Authentication Required\r\n"
	    "Proxy-Authenticate: Basic realm=\"gw\"\r\nContent-Length: 5\r\n\r\n"),
	  407, "Proxy Authentication Required",
	  "Proxy-Authenticate=Basic realm=\"gw\"|Content-Length=5",
	  1, true, HTTP_BODY_LENGTH, false },
	{ S("HTTP/1.0 407 Proxy Authentication Required\r\nServer: tinyproxy/1.11.1\r\n\r\n"),
	  407, "Proxy Authentication Required", "Server=tinyproxy/1.11.1",
	  0, false, HTTP_BODY_CLOSE, false },
	{ S("HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  502, "Bad Gateway", "Transfer-Encoding=chunked", 1, true, HTTP_BODY_CHUNKED, false },
	{ S("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
	  403, "Forbidden", "Transfer-Encoding=chunked, gzip", 1, false, HTTP_BODY_CLOSE, false },
	{ S("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
	  404, "Not Found", "Content-Length=0", 1, true, HTTP_BODY_NONE, false },
	{ S("HTTP/1.1 204 No Content\r\n\r\n"),
	  204, "No Content", "", 1, true, HTTP_BODY_NONE, false },
	/* A 304's Content-Length describes the resource, not a body. */
	{ S("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
	  304, "Not Modified", "Content-Length=10", 1, true, HTTP_BODY_NONE, false },
	{ S("HTTP/1.1 100 Continue\r\n\r\n"),
	  100, "Continue", "", 1, true, HTTP_BODY_NONE, false },
	/* Responses to HEAD (head_only_response). */
	{ S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
	  200, "OK", "Content-Length=10", 1, true, HTTP_BODY_NONE, true },
	{ S("HTTP/1.1 200 OK\r\n\r\n"),
	  200, "OK", "", 1, true, HTTP_BODY_NONE, true },
	{ S("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
	  200, "OK", "Connection=close", 1, false, HTTP_BODY_NONE, true },
};

static void test_valid_responses(void **state)
{
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(resp_cases); i++) {
		const struct resp_case *c = &resp_cases[i];
		ssize_t n;

		http_head_init(&f->h, false, 16384);
		f->h.head_only_response = c->head_only;
		n = http_head_parse(&f->h, fx_copy(f, c->in, c->len), c->len);
		if (n != (ssize_t)c->len)
			fail_msg("case %zu: got %zd (%s)", i, n, f->h.error ? f->h.error : "");
		assert_false(f->h.request);
		assert_int_equal(f->h.status, c->status);
		assert_span(f->buf, f->h.reason, c->reason);
		assert_fields(&f->h, f->buf, c->fields);
		assert_int_equal(f->h.minor, c->minor);
		if (f->h.keep_alive != c->keep_alive)
			fail_msg("case %zu: keep_alive %d", i, f->h.keep_alive);
		assert_int_equal(http_body_framing(&f->h), c->framing);
	}
}

/* ---- truncation and incremental feeding ---- */

static const struct {
	bool request;
	const char *in;
	size_t len;
} trunc_cases[] = {
	{ true, S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
		  "Proxy-Authorization: Basic dXNlcjpwYXNz\r\nUser-Agent: curl/7.88.1\r\n\r\n") },
	{ true, S("GET http://a.example/path?x=1 HTTP/1.1\r\nHost: a.example\r\nX-Empty:\r\n"
		  "Accept:  */*  \r\nConnection: keep-alive, X-Empty\r\n\r\n") },
	{ false, S("HTTP/1.1 407 Proxy Authentication Required\r\n"
		   "Proxy-Authenticate: Basic realm=\"gw\"\r\nContent-Length: 5\r\n\r\n") },
	{ false, S("HTTP/1.0 200 Connection established\r\n\r\n") },
};

/* Results of one parse, comparable across parses of the same head. */
static void assert_same_head(const struct http_head *a, const char *abuf,
			     const struct http_head *b, const char *bbuf)
{
	unsigned i;

	assert_int_equal(a->head_len, b->head_len);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->method, b->method);
	assert_int_equal(a->keep_alive, b->keep_alive);
	assert_int_equal(a->content_length, b->content_length);
	assert_memory_equal(&a->method_s, &b->method_s, sizeof(a->method_s));
	assert_memory_equal(&a->target, &b->target, sizeof(a->target));
	assert_memory_equal(&a->reason, &b->reason, sizeof(a->reason));
	assert_int_equal(a->nfields, b->nfields);
	assert_memory_equal(a->fields, b->fields, a->nfields * sizeof(a->fields[0]));
	assert_memory_equal(abuf, bbuf, a->head_len);
	for (i = 0; i < a->nfields; i++)
		assert_true(a->fields[i].value.off + a->fields[i].value.len <= a->head_len);
}

static void test_every_truncation(void **state)
{
	struct fixture *f = *state;
	struct http_head *ref = &f->ref;
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(trunc_cases); i++) {
		const char *in = trunc_cases[i].in;
		size_t len = trunc_cases[i].len;

		http_head_init(ref, trunc_cases[i].request, 16384);
		assert_int_equal(http_head_parse(ref, in, len), len);
		for (k = 0; k < len; k++) {
			ssize_t n = fx_parse(f, trunc_cases[i].request, 16384, in, k);

			if (n != 0)
				fail_msg("case %zu, %zu bytes: got %zd, want 0", i, k, n);
			/* The same parser completes once the rest is in. */
			n = http_head_parse(&f->h, fx_copy(f, in, len), len);
			if (n != (ssize_t)len)
				fail_msg("case %zu, then all: got %zd", i, n);
		}
		assert_same_head(&f->h, f->buf, ref, in);
	}
}

/* One byte per call, the buffer moved to a new allocation before each call. */
static void test_byte_by_byte_moving_buffer(void **state)
{
	struct fixture *f = *state;
	struct http_head *ref = &f->ref;
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(trunc_cases); i++) {
		const char *in = trunc_cases[i].in;
		size_t len = trunc_cases[i].len;
		ssize_t n = 0;

		http_head_init(ref, trunc_cases[i].request, 16384);
		assert_int_equal(http_head_parse(ref, in, len), len);
		http_head_init(&f->h, trunc_cases[i].request, 16384);
		for (k = 1; k <= len; k++) {
			n = http_head_parse(&f->h, fx_copy(f, in, k), k);
			if (k < len && n != 0)
				fail_msg("case %zu, byte %zu: got %zd", i, k, n);
		}
		assert_int_equal(n, len);
		assert_same_head(&f->h, f->buf, ref, in);
		/* Asking again returns the same head. */
		assert_int_equal(http_head_parse(&f->h, f->buf, len), len);
	}
}

/* Bytes after the head (pipelined request, early tunnel data) are not part of it. */
static void test_head_len_with_trailing_bytes(void **state)
{
	struct fixture *f = *state;
	static const char req[] = "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
	static const char tail[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\0\r\n";
	static const char pipelined[] = "GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
	char buf[256];
	size_t i;

	memcpy(buf, req, sizeof(req) - 1);
	memcpy(buf + sizeof(req) - 1, tail, sizeof(tail) - 1);
	/* Any number of tail bytes: garbage after the head is never looked at. */
	for (i = 0; i < sizeof(tail); i++) {
		ssize_t n = fx_parse(f, true, 16384, buf, sizeof(req) - 1 + i);

		assert_int_equal(n, sizeof(req) - 1);
		assert_int_equal(f->h.head_len, sizeof(req) - 1);
	}
	/* A second request pipelined after a GET. */
	assert_int_equal(fx_parse(f, true, 16384, S(pipelined)), 18);
	/* The head ends within max_bytes, the buffer goes on past it: not an error. */
	assert_int_equal(fx_parse(f, true, 18, S(pipelined)), 18);
	/* A response and the first tunnel bytes in one read. */
	assert_int_equal(fx_parse(f, false, 16384, S("HTTP/1.1 200 OK\r\n\r\nSSH-2.0-OpenSSH\r\n")),
			 19);
}

/* ---- errors ---- */

static const struct err_case {
	bool request;
	size_t max;
	const char *in;
	size_t len;
	int err, status;
} err_cases[] = {
	/* Line ends and control bytes. */
	{ true, 0, S("GET / HTTP/1.1\nHost: a\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost: a\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost: a\r\n\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\nHost: a\n\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost: a\r\n\rX"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET /\x7f HTTP/1.1\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET /\t HTTP/1.1\r\n\r\n"), -EBADMSG, 400 },
	/* Field syntax. */
	{ true, 0, S("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\n: a\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nHost\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nX:\r\n b\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nX: a\r\n \r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\n X: a\r\n\r\n"), -EBADMSG, 400 },
	/* Framing. */
	{ true, 0, S("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
	  -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), -EBADMSG,
	  400 },
	{ true, 0, S("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), -EBADMSG,
	  400 },
	{ true, 0, S("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
	  -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
	  -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), -EBADMSG, 400 },
	/* Found by fuzzing: framing that llhttp lets through or a hop could drop. */
	{ true, 0, S("POST / HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\n"),
	  -EBADMSG, 400 },
	{ true, 0, S("POST / HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n"),
	  -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1\r\nConnection: close, host\r\nHost: a\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET /x\r\nHost: a\r\n\r\n"), -ENOTSUP, 505 },
	{ false, 0, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\n"),
	  -EBADMSG, 502 },
	/* Request line. */
	{ true, 0, S("get / HTTP/1.1\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET  / HTTP/1.1\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.1 \r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET /a b HTTP/1.1\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S(" GET / HTTP/1.1\r\n\r\n"), -EBADMSG, 400 },
	{ true, 0, S("GET / HTTP/1.2\r\n\r\n"), -ENOTSUP, 505 },
	{ true, 0, S("GET / HTTP/2.0\r\n\r\n"), -ENOTSUP, 505 },
	{ true, 0, S("GET / HTTP/0.9\r\n\r\n"), -ENOTSUP, 505 },
	{ true, 0, S("GET / HTTP/3.0\r\n\r\n"), -ENOTSUP, 505 },
	{ true, 0, S("GET / HTTP/11.1\r\n\r\n"), -ENOTSUP, 505 },
	{ true, 0, S("CONNECT a:443 HTTP/2.0\r\n\r\n"), -ENOTSUP, 505 },
	/* Limits: the request line alone is over max_bytes (414), or the head is (431). */
	{ true, 32, S("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n"),
	  -EMSGSIZE, 414 },
	{ true, 20, S("GET /aaaaaaaaaaaaa HTTP/1.1\r\n\r\n"), -EMSGSIZE, 414 },
	{ true, 32, S("GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"),
	  -EMSGSIZE, 431 },
	{ true, 17, S("GET / HTTP/1.1\r\n\r\n"), -EMSGSIZE, 431 },
	{ true, 18, S("GET / HTTP/1.1\r\n\r\n"), 18, 0 },
	/* Responses: everything is a 502. */
	{ false, 0, S("HTTP/1.1 20 OK\r\n\r\n"), -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 099 OK\r\n\r\n"), -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 2000 OK\r\n\r\n"), -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 200 O\0K\r\n\r\n"), -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 200 OK\nX: y\r\n\r\n"), -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
	  -EBADMSG, 502 },
	{ false, 0, S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"),
	  -EBADMSG, 502 },
	{ false, 0, S("HTTP/2.0 200 OK\r\n\r\n"), -ENOTSUP, 502 },
	{ false, 0, S("HTTP/1.2 200 OK\r\n\r\n"), -ENOTSUP, 502 },
	{ false, 0, S("SSH-2.0-OpenSSH_9.2\r\n"), -EBADMSG, 502 },
	{ false, 24, S("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"), -EMSGSIZE, 502 },
};

static void test_errors(void **state)
{
	struct fixture *f = *state;
	size_t i, k;

	for (i = 0; i < ARRAY_SIZE(err_cases); i++) {
		const struct err_case *c = &err_cases[i];
		size_t max = c->max ? c->max : 16384;
		ssize_t n = fx_parse(f, c->request, max, c->in, c->len);

		if (n != c->err || f->h.error_status != c->status)
			fail_msg("case %zu: got %zd status %d (%s), want %d status %d", i, n,
				 f->h.error_status, f->h.error ? f->h.error : "", c->err,
				 c->status);
		if (n > 0)
			continue;
		assert_non_null(f->h.error);
		/* Errors stick. */
		assert_int_equal(http_head_parse(&f->h, f->buf, c->len), c->err);

		/* Fed byte by byte: "need more" until the same error. */
		http_head_init(&f->h, c->request, max);
		for (k = 1; k <= c->len; k++) {
			n = http_head_parse(&f->h, fx_copy(f, c->in, k), k);
			if (n)
				break;
		}
		if (n != c->err || f->h.error_status != c->status)
			fail_msg("case %zu byte by byte: got %zd status %d", i, n,
				 f->h.error_status);
	}
}

/* ---- hop-by-hop ---- */

static void test_hop_by_hop(void **state)
{
	static const char in[] = "GET / HTTP/1.1\r\n"
				 "Host: a\r\n"
				 "Connection: keep-alive, X-Foo\r\n"
				 "Proxy-Connection: keep-alive\r\n"
				 "Keep-Alive: timeout=5\r\n"
				 "TE: trailers\r\n"
				 "Upgrade: h2c\r\n"
				 "X-Foo: 1\r\n"
				 "x-bar: 2\r\n"
				 "X-Foobar: 3\r\n"
				 "Proxy-Authorization: Basic dTpw\r\n"
				 "Proxy-Authenticate: Basic\r\n"
				 "connection: \t x-BAR\t,,\r\n"
				 "Transfer-Encoding: chunked\r\n"
				 "X-Fo: 4\r\n"
				 "\r\n";
	static const bool want[] = { false, true, true, true, true, true, true, true,
				     false, false, false, true, true, false };
	struct fixture *f = *state;
	unsigned i;

	assert_int_equal(fx_parse(f, true, 16384, S(in)), sizeof(in) - 1);
	assert_int_equal(f->h.nfields, ARRAY_SIZE(want));
	for (i = 0; i < f->h.nfields; i++) {
		if (http_field_is_hop_by_hop(&f->h, f->buf, i) != want[i])
			fail_msg("field %u (%.*s)", i, (int)f->h.fields[i].name.len,
				 http_ptr(f->buf, f->h.fields[i].name));
	}
}

/* ---- builders ---- */

static void test_build_connect(void **state)
{
	static const char in[] = "CONNECT example.com:443 HTTP/1.0\r\n"
				 "Host: example.com:443\r\n"
				 "Proxy-Connection: Keep-Alive\r\n"
				 "Keep-Alive: 300\r\n"
				 "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
				 "Connection: X-Trace\r\n"
				 "X-Trace: 1\r\n"
				 "User-Agent:  curl/7.88.1 \r\n"
				 "\r\n";
	static const char want[] = "CONNECT example.com:443 HTTP/1.1\r\n"
				   "Host: example.com:443\r\n"
				   "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
				   "User-Agent: curl/7.88.1\r\n"
				   "\r\n";
	struct fixture *f = *state;
	size_t k;

	assert_int_equal(fx_parse(f, true, 16384, S(in)), sizeof(in) - 1);
	assert_int_equal(http_build_connect(&f->h, f->buf, NULL, f->out, sizeof(f->out)),
			 sizeof(want) - 1);
	assert_memory_equal(f->out, want, sizeof(want) - 1);
	for (k = 0; k < sizeof(want) - 1; k++)
		assert_int_equal(http_build_connect(&f->h, f->buf, NULL, f->out, k), -ENOSPC);
	assert_int_equal(http_build_connect(&f->h, f->buf, NULL, f->out, sizeof(want) - 1),
			 sizeof(want) - 1);
}

/* CONNECT gets @extra (the gateway's Via) after the client's fields. */
static void test_build_connect_extra(void **state)
{
	static const char in[] = "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n";
	static const char want[] = "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nVia: 1.1 gw:3128\r\n\r\n";
	struct fixture *f = *state;

	assert_int_equal(fx_parse(f, true, 16384, S(in)), sizeof(in) - 1);
	assert_int_equal(http_build_connect(&f->h, f->buf, "Via: 1.1 gw:3128\r\n", f->out,
					    sizeof(f->out)), sizeof(want) - 1);
	assert_memory_equal(f->out, want, sizeof(want) - 1);
}

/* A Via element naming this gateway: any field, any position, any case, with comments. */
static void test_via_has(void **state)
{
	static const struct {
		const char *fields;
		bool want;
	} cases[] = {
		{ "", false },
		{ "Via: 1.1 gw:3128\r\n", true },
		{ "Via: 1.0 other, HTTP/1.1 GW:3128 (tunnelgate)\r\n", true },
		{ "Via: 1.1 a\r\nVIA:1.1 b,1.1 gw:3128\r\n", true },
		{ "Via: 1.1 gw:31280\r\n", false },
		{ "Via: 1.1 xgw:3128\r\n", false },
		{ "Via: gw:3128\r\n", false },   /* that is the protocol, no received-by */
		{ "X-Via: 1.1 gw:3128\r\n", false },
		{ "Via: 1.1 other (gw:3128)\r\n", false },
	};
	struct fixture *f = *state;
	char in[256];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int n = snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n",
				 cases[i].fields);

		assert_int_equal(fx_parse(f, true, 16384, in, n), n);
		if (http_via_has(&f->h, f->buf, "gw:3128") != cases[i].want)
			fail_msg("%s: want %d", cases[i].fields, cases[i].want);
	}
}

static void test_build_response(void **state)
{
	static const char in[] = "HTTP/1.0 407 Auth Needed\r\n"
				 "Server: tinyproxy/1.11.1\r\n"
				 "Content-Length: 5\r\n"
				 "Connection: close\r\n"
				 "Proxy-Authenticate: Basic realm=\"tp\"\r\n"
				 "Keep-Alive: timeout=5\r\n"
				 "\r\n";
	static const char want[] = "HTTP/1.1 407 Auth Needed\r\n"
				   "Server: tinyproxy/1.11.1\r\n"
				   "Proxy-Authenticate: Basic realm=\"tp\"\r\n"
				   "Content-Length: 5\r\n"
				   "Connection: close\r\n"
				   "\r\n";
	static const struct {
		const char *in, *want;
	} reasons[] = {
		{ "HTTP/1.1 407\r\n\r\n", "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n" },
		{ "HTTP/1.1 200 \r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n" },
		{ "HTTP/1.1 599\r\n\r\n", "HTTP/1.1 599 Unknown\r\n\r\n" },
		{ "HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n",
		  "HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\n" },
	};
	struct fixture *f = *state;
	const char *extra = "Content-Length: 5\r\nConnection: close\r\n";
	size_t i, k;
	ssize_t n;

	assert_int_equal(fx_parse(f, false, 16384, S(in)), sizeof(in) - 1);
	n = http_build_response(&f->h, f->buf, extra, f->out, sizeof(f->out));
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(f->out, want, n);
	for (k = 0; k < sizeof(want) - 1; k++)
		assert_int_equal(http_build_response(&f->h, f->buf, extra, f->out, k), -ENOSPC);

	for (i = 0; i < ARRAY_SIZE(reasons); i++) {
		size_t len = strlen(reasons[i].in);

		assert_int_equal(fx_parse(f, false, 16384, reasons[i].in, len), len);
		n = http_build_response(&f->h, f->buf, NULL, f->out, sizeof(f->out) - 1);
		assert_true(n > 0);
		f->out[n] = '\0';
		assert_string_equal(f->out, reasons[i].want);
	}
}

/* ---- authority ---- */

static const struct {
	const char *in;
	int err;
	const char *host;
	unsigned port;
} auth_cases[] = {
	{ "example.com:443", 0, "example.com", 443 },
	{ "127.0.0.1:443", 0, "127.0.0.1", 443 },
	{ "[::1]:443", 0, "::1", 443 },
	{ "[2001:db8::1]:8443", 0, "2001:db8::1", 8443 },
	{ "a-b_c~d.e:1", 0, "a-b_c~d.e", 1 },
	{ "x:65535", 0, "x", 65535 },
	{ "example.com", -EINVAL, NULL, 0 },
	{ "example.com:", -EINVAL, NULL, 0 },
	/* one spelling per port: "0443" is 443 to some parsers, 291 (octal) to others */
	{ "example.com:0443", -EINVAL, NULL, 0 },
	{ "example.com:00", -EINVAL, NULL, 0 },
	{ "[::1]:080", -EINVAL, NULL, 0 },
	{ "example.com:0", -EINVAL, NULL, 0 },
	{ "example.com:65536", -EINVAL, NULL, 0 },
	{ "example.com:99999999999", -EINVAL, NULL, 0 },
	{ "example.com:+443", -EINVAL, NULL, 0 },
	{ "example.com:-443", -EINVAL, NULL, 0 },
	{ "example.com:443a", -EINVAL, NULL, 0 },
	{ "example.com:44 3", -EINVAL, NULL, 0 },
	{ ":443", -EINVAL, NULL, 0 },
	{ "[::1", -EINVAL, NULL, 0 },
	{ "[::1]", -EINVAL, NULL, 0 },
	{ "[::1]443", -EINVAL, NULL, 0 },
	{ "[]:443", -EINVAL, NULL, 0 },
	{ "[example.com]:443", -EINVAL, NULL, 0 },
	{ "[fe80::1%25eth0]:443", -EINVAL, NULL, 0 },
	{ "::1:443", -EINVAL, NULL, 0 },
	{ "a@b:443", -EINVAL, NULL, 0 },
	{ "a b:443", -EINVAL, NULL, 0 },
	{ " a:443", -EINVAL, NULL, 0 },
	{ "a:443 ", -EINVAL, NULL, 0 },
	{ "/x", -EINVAL, NULL, 0 },
	{ "a:443/x", -EINVAL, NULL, 0 },
	{ "a%41:443", -EINVAL, NULL, 0 },
	{ "", -EINVAL, NULL, 0 },
};

static void test_authority(void **state)
{
	char host[64];
	unsigned port;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(auth_cases); i++) {
		int err;

		port = 0;
		err = http_parse_authority(auth_cases[i].in, strlen(auth_cases[i].in), host,
					   sizeof(host), &port);
		if (err != auth_cases[i].err)
			fail_msg("'%s': got %d", auth_cases[i].in, err);
		if (err)
			continue;
		assert_string_equal(host, auth_cases[i].host);
		assert_int_equal(port, auth_cases[i].port);
	}
	/* Not NUL-terminated input: only len bytes count. */
	assert_int_equal(http_parse_authority("a.b:4430", 7, host, sizeof(host), &port), 0);
	assert_int_equal(port, 443);
	/* The host must fit with its NUL. */
	assert_int_equal(http_parse_authority(S("abcd:1"), host, 5, &port), 0);
	assert_int_equal(http_parse_authority(S("abcde:1"), host, 5, &port), -ENAMETOOLONG);
	assert_int_equal(http_parse_authority(S("[::1]:1"), host, 3, &port), -ENAMETOOLONG);
}

/* ---- bodies ---- */

/* Length of the head at the start of @msg. */
static size_t head_len_of(const char *msg)
{
	return strstr(msg, "\r\n\r\n") - msg + 4;
}

struct sink {
	char data[1024];
	size_t len;
};

static void sink_cb(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;

	assert_true(s->len + n <= sizeof(s->data));
	memcpy(s->data + s->len, p, n);
	s->len += n;
}

/*
 * Parse the head at the start of @msg, then feed the rest as body in pieces of @step
 * bytes (each copied to an exact-size buffer). Returns the body bytes consumed.
 */
static size_t feed_message(struct fixture *f, bool request, const char *msg, size_t len,
			   size_t step, struct sink *s, bool *done)
{
	ssize_t head = fx_parse(f, request, 16384, msg, len);
	size_t off;

	assert_true(head > 0);
	memset(s, 0, sizeof(*s));
	*done = false;
	for (off = head; off < len && !*done;) {
		size_t n = len - off < step ? len - off : step;
		ssize_t used = http_body_feed(&f->h, fx_copy(f, msg + off, n), n, sink_cb, s, done);

		assert_true(used >= 0);
		assert_true((size_t)used == n || *done);
		off += used;
	}
	return off - head;
}

static void test_body_length(void **state)
{
	static const char msg[] = "HTTP/1.1 407 Proxy Authentication Required\r\n"
				  "Content-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n";
	struct fixture *f = *state;
	struct sink s;
	size_t step;
	bool done;

	for (step = 1; step <= sizeof(msg); step++) {
		assert_int_equal(feed_message(f, false, S(msg), step, &s, &done), 5);
		assert_true(done);
		assert_int_equal(s.len, 5);
		assert_memory_equal(s.data, "hello", 5);
		assert_int_equal(http_body_framing(&f->h), HTTP_BODY_LENGTH);
		assert_int_equal(f->h.content_length, 5);
	}
	/* Once done, nothing more is taken. */
	assert_int_equal(http_body_feed(&f->h, "xyz", 3, sink_cb, &s, &done), 0);
	assert_true(done);
	/* Cut short by EOF: not done. */
	assert_int_equal(fx_parse(f, false, 16384, msg, head_len_of(msg)), head_len_of(msg));
	assert_int_equal(http_body_feed(&f->h, "hel", 3, sink_cb, &s, &done), 3);
	assert_false(done);
	assert_int_equal(http_body_eof(&f->h, &done), -EBADMSG);
	assert_false(done);
}

static void test_body_chunked(void **state)
{
	static const char msg[] = "HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "5\r\nhello\r\n6;ext=\"a b\"\r\n world\r\n"
				  "10\r\n0123456789abcdef\r\n"
				  "0\r\nX-Trailer: yes\r\n\r\n"
				  "HTTP/1.1 200 OK\r\n\r\n";
	static const char body[] = "hello world0123456789abcdef";
	const size_t head = head_len_of(msg), next = 19;
	struct fixture *f = *state;
	struct sink s;
	size_t step, k;
	bool done;

	for (step = 1; step <= sizeof(msg); step++) {
		assert_int_equal(feed_message(f, false, S(msg), step, &s, &done),
				 sizeof(msg) - 1 - head - next);
		assert_true(done);
		assert_int_equal(s.len, sizeof(body) - 1);
		assert_memory_equal(s.data, body, s.len);
		/* Trailer fields are not head fields. */
		assert_int_equal(f->h.nfields, 1);
		assert_true(f->h.chunked);
	}
	/* Split into two reads at every byte. */
	for (k = head; k < sizeof(msg) - 1; k++) {
		ssize_t a, b;

		assert_int_equal(fx_parse(f, false, 16384, S(msg)), head);
		memset(&s, 0, sizeof(s));
		a = http_body_feed(&f->h, f->buf + head, k - head, sink_cb, &s, &done);
		assert_true(a >= 0);
		if (done) {
			assert_int_equal(a, sizeof(msg) - 1 - head - next);
		} else {
			assert_int_equal(a, k - head);
			b = http_body_feed(&f->h, f->buf + k, sizeof(msg) - 1 - k, sink_cb, &s,
					   &done);
			assert_true(done);
			assert_int_equal(a + b, sizeof(msg) - 1 - head - next);
		}
		assert_memory_equal(s.data, body, sizeof(body) - 1);
	}
	/* Bad chunk size. */
	assert_int_equal(fx_parse(f, false, 16384, msg, head), head);
	assert_int_equal(http_body_feed(&f->h, S("zz\r\nhello\r\n"), sink_cb, &s, &done), -EBADMSG);
	/* EOF inside a chunked body. */
	assert_int_equal(fx_parse(f, false, 16384, msg, head), head);
	assert_int_equal(http_body_feed(&f->h, S("5\r\nhel"), sink_cb, &s, &done), 6);
	assert_int_equal(http_body_eof(&f->h, &done), -EBADMSG);
	assert_false(done);
}

static void test_body_close(void **state)
{
	static const char head[] = "HTTP/1.0 407 Proxy Authentication Required\r\n"
				   "Server: tinyproxy/1.11.1\r\n\r\n";
	static const char gzip[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
	struct fixture *f = *state;
	struct sink s = { 0 };
	bool done = true;

	assert_int_equal(fx_parse(f, false, 16384, S(head)), sizeof(head) - 1);
	assert_int_equal(http_body_framing(&f->h), HTTP_BODY_CLOSE);
	assert_false(f->h.keep_alive);
	assert_int_equal(http_body_feed(&f->h, S("<html>"), sink_cb, &s, &done), 6);
	assert_false(done);
	assert_int_equal(http_body_feed(&f->h, S("HTTP/1.1 200 OK\r\n\r\n"), sink_cb, &s, &done),
			 19);
	assert_false(done);
	assert_int_equal(http_body_feed(&f->h, "", 0, sink_cb, &s, &done), 0);
	assert_false(done);
	assert_int_equal(http_body_eof(&f->h, &done), 0);
	assert_true(done);
	assert_int_equal(s.len, 25);
	assert_memory_equal(s.data, "<html>HTTP/1.1 200 OK\r\n\r\n", 25);
	assert_int_equal(http_body_eof(&f->h, &done), 0);
	assert_true(done);

	/* EOF right after the head, no body byte ever fed. */
	assert_int_equal(fx_parse(f, false, 16384, S(head)), sizeof(head) - 1);
	done = false;
	assert_int_equal(http_body_eof(&f->h, &done), 0);
	assert_true(done);

	/* Transfer-Encoding without chunked in a response: the close ends it too. */
	assert_int_equal(fx_parse(f, false, 16384, S(gzip)), sizeof(gzip) - 1);
	assert_int_equal(http_body_framing(&f->h), HTTP_BODY_CLOSE);
	assert_int_equal(http_body_feed(&f->h, S("\x1f\x8b"), sink_cb, &s, &done), 2);
	assert_int_equal(http_body_eof(&f->h, &done), 0);
	assert_true(done);
}

static void test_body_none(void **state)
{
	static const struct {
		bool request, head_only;
		const char *in;
		size_t len;
	} cases[] = {
		{ false, false, S("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc") },
		{ false, false, S("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\nabc") },
		{ false, false, S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n") },
		{ false, true, S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc") },
		{ false, true, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nabc") },
		{ false, false, S("HTTP/1.1 407 Denied\r\nContent-Length: 0\r\n\r\nabc") },
		{ true, false, S("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n") },
		{ true, false, S("CONNECT a:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc") },
	};
	struct fixture *f = *state;
	struct sink s = { 0 };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		ssize_t head;
		bool done = false;

		http_head_init(&f->h, cases[i].request, 16384);
		f->h.head_only_response = cases[i].head_only;
		head = http_head_parse(&f->h, fx_copy(f, cases[i].in, cases[i].len), cases[i].len);
		assert_true(head > 0);
		if (http_body_framing(&f->h) != HTTP_BODY_NONE)
			fail_msg("case %zu: framing %d", i, http_body_framing(&f->h));
		assert_int_equal(http_body_feed(&f->h, f->buf + head, cases[i].len - head, sink_cb,
						&s, &done),
				 0);
		assert_true(done);
		assert_int_equal(http_body_eof(&f->h, &done), 0);
		assert_true(done);
	}
	assert_int_equal(s.len, 0);
}

/* A request with a body, then the next request on the same connection. */
static void test_pipelined_after_body(void **state)
{
	static const char msg[] = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
				  "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
	struct fixture *f = *state;
	struct sink s = { 0 };
	bool done = false;
	ssize_t head, used;
	size_t rest;

	head = fx_parse(f, true, 16384, S(msg));
	assert_int_equal(head, 39);
	assert_true(f->h.keep_alive);
	used = http_body_feed(&f->h, f->buf + head, sizeof(msg) - 1 - head, sink_cb, &s, &done);
	assert_int_equal(used, 3);
	assert_true(done);
	rest = head + used;
	assert_int_equal(fx_parse(f, true, 16384, msg + rest, sizeof(msg) - 1 - rest),
			 sizeof(msg) - 1 - rest);
	assert_span(f->buf, f->h.target, "/b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_valid_responses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_byte_by_byte_moving_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_len_with_trailing_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hop_by_hop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_connect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_connect_extra, setup, teardown),
		cmocka_unit_test_setup_teardown(test_via_has, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_response, setup, teardown),
		cmocka_unit_test(test_authority),
		cmocka_unit_test_setup_teardown(test_body_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_chunked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_after_body, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
