// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target for user/http.c: message heads and bodies as a hostile client or
 * upstream sends them.
 *
 * The input is the raw message, so seeds are plain HTTP: one starting with "HTTP/" is
 * parsed as a response, anything else as a request. Everything else (split points,
 * max_bytes, head_only_response) comes from a hash of the input, so a crash replays
 * from its file alone.
 *
 * Every buffer handed to http.c is a malloc'd copy of exactly the bytes it may look at
 * (the head alone once it parsed, each piece of a split), so ASan reports any read past
 * a span or past "the bytes after the head". Invariants that do not hold abort() with
 * a line on stderr saying which one.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "http_msg.h"

#define check(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz_http: invariant failed at line %d: %s\n",  \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* Gateway's own framing lines (gateway.c VIA_FIELD and friends), as extras. */
#define VIA "Via: 1.1 tunnelgate\r\n"

static uint64_t fnv1a(const uint8_t *p, size_t n, uint64_t h)
{
	while (n--)
		h = (h ^ *p++) * 0x100000001b3ULL;
	return h;
}

/* xorshift64: split points and options, seeded from the input's hash. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A piece length for feeding @left more bytes: byte by byte, small, medium or large. */
static size_t piece(uint64_t *s, unsigned mode, size_t left)
{
	static const size_t max[] = { 1, 8, 128, 4096 };
	size_t n = 1 + rnd(s) % max[mode];

	return n < left ? n : left;
}

static char *dup_exact(const void *p, size_t n)
{
	char *b = malloc(n ? n : 1);

	if (!b)
		abort();
	memcpy(b, p, n);
	return b;
}

static bool span_in(struct http_span s, size_t len)
{
	return (uint64_t)s.off + s.len <= len;
}

static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char *span_str(const char *buf, struct http_span s)
{
	char *p = malloc(s.len + 1);

	if (!p)
		abort();
	memcpy(p, buf + s.off, s.len);
	p[s.len] = '\0';
	return p;
}

/* ---- the head ---- */

/* Two parses of one message must agree whatever the split points were. */
static void same_head(const struct http_head *a, const struct http_head *b)
{
	check(a->request == b->request && a->method == b->method && a->status == b->status);
	check(a->major == b->major && a->minor == b->minor);
	check(!memcmp(&a->method_s, &b->method_s, sizeof(a->method_s)));
	check(!memcmp(&a->target, &b->target, sizeof(a->target)));
	check(!memcmp(&a->reason, &b->reason, sizeof(a->reason)));
	check(a->nfields == b->nfields);
	check(!memcmp(a->fields, b->fields, a->nfields * sizeof(a->fields[0])));
	check(a->keep_alive == b->keep_alive && a->chunked == b->chunked);
	check(a->has_content_length == b->has_content_length);
	check(a->content_length == b->content_length && a->head_len == b->head_len);
}

/*
 * What llhttp makes of Transfer-Encoding must be what a downstream parser makes of it:
 * the message is chunked only if the last coding of all TE fields, in order, is chunked.
 */
static bool last_coding_is_chunked(const struct http_head *h, const char *buf)
{
	const char *last = NULL;
	size_t lastlen = 0;

	for (int i = http_find_field(h, buf, "Transfer-Encoding", 0); i >= 0;
	     i = http_find_field(h, buf, "Transfer-Encoding", i + 1)) {
		const char *p = buf + h->fields[i].value.off, *end = p + h->fields[i].value.len;

		while (p < end) {
			const char *tok, *tend;

			while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
				p++;
			tok = p;
			while (p < end && *p != ',')
				p++;
			tend = p;
			while (tend > tok && (tend[-1] == ' ' || tend[-1] == '\t'))
				tend--;
			if (tend > tok) {
				last = tok;
				lastlen = tend - tok;
			}
		}
	}
	return last && lastlen == 7 && !strncasecmp(last, "chunked", 7);
}

static void check_head(const struct http_head *h, const char *buf, size_t fed, size_t max_bytes)
{
	size_t hl = h->head_len;
	unsigned ncl = 0, nte = 0;

	check(hl > 0 && hl <= fed && hl <= max_bytes);
	check(hl >= 4 && !memcmp(buf + hl - 4, "\r\n\r\n", 4));
	check(h->nfields <= HTTP_MAX_FIELDS);
	check(h->major == 1 && h->minor <= 1);
	check(!h->error && !h->error_status);
	if (h->request) {
		check(h->method_s.len && span_in(h->method_s, hl));
		check(h->target.len && span_in(h->target, hl));
		for (uint32_t i = 0; i < h->target.len; i++) {
			unsigned char c = buf[h->target.off + i];

			check(c > ' ' && c != 0x7f);
		}
	} else {
		check(h->status >= 100 && h->status <= 999);
		check(span_in(h->reason, hl));
	}
	for (unsigned i = 0; i < h->nfields; i++) {
		struct http_span n = h->fields[i].name, v = h->fields[i].value;

		check(n.len && span_in(n, hl) && span_in(v, hl));
		for (uint32_t k = 0; k < n.len; k++)
			check(is_tchar(buf[n.off + k]));
		check(buf[n.off + n.len] == ':');
		check(!v.len || v.off > n.off + n.len);
		for (uint32_t k = 0; k < v.len; k++) {
			unsigned char c = buf[v.off + k];

			check(c != '\r' && c != '\n' && c != 0 && c != 0x7f);
		}
		check(!v.len || (buf[v.off] != ' ' && buf[v.off] != '\t'));
		check(!v.len || (buf[v.off + v.len - 1] != ' ' && buf[v.off + v.len - 1] != '\t'));
		if (http_span_ieq(buf, n, "Content-Length"))
			ncl++;
		if (http_span_ieq(buf, n, "Transfer-Encoding"))
			nte++;
	}

	/* Framing, where request smuggling lives. */
	check(!(ncl && nte));
	check(ncl <= 1);
	check(h->has_content_length == (ncl == 1));
	if (ncl) {
		struct http_span v = h->fields[http_find_field(h, buf, "Content-Length", 0)].value;
		uint64_t cl = 0;

		check(v.len);
		for (uint32_t k = 0; k < v.len; k++) {
			check(buf[v.off + k] >= '0' && buf[v.off + k] <= '9');
			cl = cl * 10 + (buf[v.off + k] - '0');
		}
		check(cl == h->content_length);
	}
	if (h->chunked)
		check(last_coding_is_chunked(h, buf));
	if (h->request && nte)
		check(h->chunked);
}

static void check_fields(const struct http_head *h, const char *buf)
{
	static const char *const hop[] = { "Connection", "Proxy-Connection", "Keep-Alive",
					   "TE", "Transfer-Encoding", "Upgrade" };

	check(http_find_field(h, buf, "", 0) == -1);
	check(http_find_field(h, buf, "Host", (int)h->nfields) == -1);
	check(http_find_field(h, buf, "Host", -5) == http_find_field(h, buf, "Host", 0));
	for (unsigned i = 0; i < h->nfields; i++) {
		char *name = span_str(buf, h->fields[i].name);
		int j = http_find_field(h, buf, name, 0), k;

		check(j >= 0 && (unsigned)j <= i);
		check(http_span_ieq(buf, h->fields[j].name, name));
		k = http_find_field(h, buf, name, (int)i + 1);
		check(k == -1 || (unsigned)k > i);
		for (char *c = name; *c; c++)
			*c ^= (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ? 0x20 : 0;
		check(http_find_field(h, buf, name, 0) == j);
		free(name);

		bool hbh = http_field_is_hop_by_hop(h, buf, i);

		for (unsigned f = 0; f < sizeof(hop) / sizeof(hop[0]); f++)
			if (http_span_ieq(buf, h->fields[i].name, hop[f]))
				check(hbh);
	}
}

/* ---- the builders ---- */

enum build { B_CONNECT, B_REQUEST, B_RESPONSE };

static ssize_t build(enum build b, const struct http_head *h, const char *buf, const char *extra,
		     char *out, size_t outlen)
{
	switch (b) {
	case B_CONNECT:
		return http_build_connect(h, buf, NULL, out, outlen);
	case B_REQUEST:
		return http_build_request(h, buf, buf + h->target.off, h->target.len, NULL, extra, out,
					  outlen);
	default:
		return http_build_response(h, buf, extra, out, outlen);
	}
}

/* Count the lines of @extra, each a field. */
static unsigned extra_fields(const char *extra)
{
	unsigned n = 0;

	for (const char *p = extra; p && (p = strstr(p, "\r\n")); p += 2)
		n++;
	return n;
}

/*
 * The built head parses again, as what the gateway meant to send: the fields that are
 * not hop-by-hop, in order and unchanged, then @extra, and the same framing.
 */
static void check_rebuilt(enum build b, const struct http_head *h, const char *buf,
			  const char *extra, const char *out, size_t n)
{
	struct http_head *r = malloc(sizeof(*r));
	char *copy = dup_exact(out, n);
	unsigned k = 0, want = extra_fields(extra);
	ssize_t got;

	if (!r)
		abort();
	for (unsigned i = 0; i < h->nfields; i++)
		if (!http_field_is_hop_by_hop(h, buf, i) &&
		    !(b == B_RESPONSE && http_span_ieq(buf, h->fields[i].name, "Content-Length")))
			want++;
	http_head_init(r, b != B_RESPONSE, 0);
	r->head_only_response = h->head_only_response;
	got = http_head_parse(r, copy, n);
	/* Our own extras can push a head over our own field limit: not what is tested. */
	if (want > HTTP_MAX_FIELDS) {
		check(got == -EMSGSIZE);
		goto out;
	}
	check(got == (ssize_t)n);
	check(r->major == 1 && r->minor == 1);
	if (b == B_RESPONSE) {
		check(r->status == h->status);
	} else {
		check(r->target.len == h->target.len &&
		      !memcmp(copy + r->target.off, buf + h->target.off, h->target.len));
	}
	for (unsigned i = 0; i < h->nfields; i++) {
		struct http_field f = h->fields[i];

		if (http_field_is_hop_by_hop(h, buf, i))
			continue;
		if (b == B_RESPONSE && http_span_ieq(buf, f.name, "Content-Length"))
			continue;
		check(k < r->nfields);
		check(r->fields[k].name.len == f.name.len &&
		      !memcmp(copy + r->fields[k].name.off, buf + f.name.off, f.name.len));
		check(r->fields[k].value.len == f.value.len &&
		      !memcmp(copy + r->fields[k].value.off, buf + f.value.off, f.value.len));
		k++;
	}
	check(r->nfields == want);
	if (b == B_REQUEST) {
		/* A body forwarded as it came needs its length upstream too (smuggling). */
		check(r->has_content_length == h->has_content_length);
		check(r->content_length == h->content_length);
		if (extra) /* the gateway's extra carries Transfer-Encoding: chunked */
			check(r->chunked == h->chunked);
	}
out:
	free(copy);
	free(r);
}

static void check_build(enum build b, const struct http_head *h, const char *buf,
			const char *extra)
{
	size_t big = 2 * h->head_len + 512 + (extra ? strlen(extra) : 0);
	const size_t sizes[] = { 0, 1, 7, 32, h->head_len / 2, h->head_len, h->head_len + 64 };
	char *full = malloc(big);
	ssize_t n;

	if (!full)
		abort();
	n = build(b, h, buf, extra, full, big);
	check(n > 0 && (size_t)n <= big);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		char *out = malloc(sizes[s] ? sizes[s] : 1);
		ssize_t m;

		if (!out)
			abort();
		m = build(b, h, buf, extra, out, sizes[s]);
		if (sizes[s] < (size_t)n) {
			check(m == -ENOSPC);
		} else {
			check(m == n && !memcmp(out, full, n));
		}
		free(out);
	}
	/* Exactly enough room, and one byte short. */
	{
		char *out = dup_exact(full, n);

		check(build(b, h, buf, extra, out, n) == n && !memcmp(out, full, n));
		check(build(b, h, buf, extra, out, n - 1) == -ENOSPC);
		free(out);
	}
	/* "CONNECT <target>" only parses again if the target was an authority. */
	if (b != B_CONNECT || h->method == HTTP_CONNECT)
		check_rebuilt(b, h, buf, extra, full, n);
	free(full);
}

static bool is_regname(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("-._~", c));
}

/* Authority-form: what came back must be exactly what was sent, split in two. */
static void check_authority(const char *s, size_t len)
{
	static const size_t hostlens[] = { 256, 1, 2, 8, 40 };
	char *copy = dup_exact(s, len), big[256];
	unsigned port = 0, p2;
	int r = http_parse_authority(copy, len, big, sizeof(big), &port);

	check(r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
	if (!r) {
		size_t hl = strlen(big), at = 0;
		unsigned long v = 0;

		check(port >= 1 && port <= 65535 && hl);
		if (s[0] == '[') {
			check(len > hl + 2 && !memcmp(s + 1, big, hl) && s[hl + 1] == ']');
			at = hl + 2;
		} else {
			check(len > hl && !memcmp(s, big, hl));
			for (size_t i = 0; i < hl; i++)
				check(is_regname(big[i]));
			at = hl;
		}
		check(s[at] == ':' && at + 1 < len);
		for (size_t i = at + 1; i < len; i++) {
			check(s[i] >= '0' && s[i] <= '9');
			v = v * 10 + (s[i] - '0');
			check(v <= 65535);
		}
		check(v == port);
	}
	for (size_t k = 1; k < sizeof(hostlens) / sizeof(hostlens[0]); k++) {
		char *host = malloc(hostlens[k]);
		int r2;

		if (!host)
			abort();
		r2 = http_parse_authority(copy, len, host, hostlens[k], &p2);
		if (r)
			check(r2 == r || (r == -ENAMETOOLONG && r2 == -ENAMETOOLONG));
		else if (strlen(big) < hostlens[k])
			check(!r2 && !strcmp(host, big) && p2 == port);
		else
			check(r2 == -ENAMETOOLONG);
		free(host);
	}
	free(copy);
}

/* ---- the body ---- */

struct body {
	const char *buf;        /* the piece being fed */
	size_t len;
	const char *max_end;    /* end of the last decoded byte */
	uint64_t decoded, hash;
};

static void on_piece(void *arg, const char *p, size_t n)
{
	struct body *b = arg;

	check(n && p >= b->buf && p + n <= b->buf + b->len);
	if (p + n > b->max_end)
		b->max_end = p + n;
	b->decoded += n;
	b->hash = fnv1a((const uint8_t *)p, n, b->hash);
}

struct body_result {
	uint64_t consumed, decoded, hash;
	bool done, failed;
};

/* Feed data[0..len) in pieces (one piece when @mode < 0) until done or an error. */
static struct body_result feed_body(struct http_head *h, const uint8_t *data, size_t len,
				    uint64_t *seed, int mode)
{
	enum http_framing f = http_body_framing(h);
	struct body b = { .hash = 0xcbf29ce484222325ULL };
	struct body_result res = { 0 };
	size_t at = 0;

	do {
		size_t n = mode < 0 ? len - at : piece(seed, mode, len - at);
		char *p = dup_exact(data + at, n);
		uint64_t before = b.decoded;
		bool done = true;
		ssize_t r;

		b.buf = p;
		b.len = n;
		b.max_end = p;
		r = http_body_feed(h, p, n, on_piece, &b, &done);
		if (r < 0) {
			check(r == -EBADMSG && !done && f == HTTP_BODY_CHUNKED);
			res.failed = true;
			free(p);
			break;
		}
		check((size_t)r <= n);
		check(b.max_end <= p + r);               /* decoded only from consumed bytes */
		check(b.decoded - before <= (uint64_t)r);
		check((size_t)r == n || done);           /* stops early only at the end */
		if (f == HTTP_BODY_NONE)
			check(done && r == 0);
		if (f == HTTP_BODY_CLOSE)
			check(!done && (size_t)r == n);
		if (f == HTTP_BODY_LENGTH) {
			check(b.decoded - before == (uint64_t)r); /* identity */
			check(b.decoded <= h->content_length);
			check(done == (b.decoded == h->content_length));
		}
		res.consumed += r;
		at += r;
		free(p);
		if (done) {
			bool again = false;

			res.done = true;
			check(http_body_feed(h, "x", 1, on_piece, &b, &again) == 0 && again);
			break;
		}
	} while (at < len);
	if (!res.done && !res.failed && f != HTTP_BODY_NONE) {
		bool done = true;
		int r = http_body_eof(h, &done);

		if (f == HTTP_BODY_CLOSE)
			check(!r && done);
		else
			check(r == -EBADMSG && !done);
	}
	res.decoded = b.decoded;
	res.hash = b.hash;
	return res;
}

/* ---- the entry point ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t max_choice[] = { 16384, 1024, 128, 0 };
	uint64_t hash = fnv1a(data, size, 0xcbf29ce484222325ULL), seed = hash | 1;
	bool request = !(size >= 5 && !memcmp(data, "HTTP/", 5));
	bool head_only = !request && (hash >> 8 & 7) == 0;
	size_t max_bytes = max_choice[hash >> 12 & 3];
	size_t limit = max_bytes ? max_bytes : SIZE_MAX;
	unsigned mode = hash >> 16 & 3;
	struct http_head *inc = malloc(sizeof(*inc)), *one = malloc(sizeof(*one));
	char *prev = NULL, *all, *head;
	size_t fed = 0;
	ssize_t r = 0, r1;

	if (!inc || !one)
		abort();
	http_head_init(inc, request, max_bytes);
	http_head_init(one, request, max_bytes);
	inc->head_only_response = one->head_only_response = head_only;

	/* In pieces, each call on a new copy: the buffer may move between calls. */
	while (fed < size) {
		char *b;

		fed += piece(&seed, mode, size - fed);
		b = dup_exact(data, fed);
		r = http_head_parse(inc, b, fed);
		free(prev);
		prev = b;
		if (r)
			break;
	}
	free(prev);
	/* Once a result is in, it sticks. */
	if (r) {
		char *b = dup_exact(data, size);

		check(http_head_parse(inc, b, size) == r);
		free(b);
	}

	/* All at once: same answer. */
	all = dup_exact(data, size);
	r1 = http_head_parse(one, all, size);
	free(all);
	check(r1 == r);
	if (r < 0) {
		check(r == -EBADMSG || r == -EMSGSIZE || r == -ENOTSUP);
		check(inc->error && one->error && !strcmp(inc->error, one->error));
		check(inc->error_status == one->error_status);
		if (request)
			check(inc->error_status == 400 || inc->error_status == 414 ||
			      inc->error_status == 431 || inc->error_status == 505);
		else
			check(inc->error_status == 502);
		check(r != -EMSGSIZE || size >= limit || inc->nfields == HTTP_MAX_FIELDS);
		goto out;
	}
	if (!r) {
		check(size < limit);
		goto out;
	}
	same_head(inc, one);

	/* From here on http.c only gets the head: it must not look past it. */
	head = dup_exact(data, inc->head_len);
	check_head(inc, head, size, limit);
	check_fields(inc, head);
	if (request) {
		char extra[128];

		snprintf(extra, sizeof(extra), "%s" VIA "Connection: close\r\n",
			 inc->chunked ? "Transfer-Encoding: chunked\r\n" : "");
		check_build(B_CONNECT, inc, head, NULL);
		check_build(B_REQUEST, inc, head, extra);
		check_build(B_REQUEST, inc, head, NULL);
		check_authority(head + inc->target.off, inc->target.len);
		for (int i = http_find_field(inc, head, "Host", 0); i >= 0;
		     i = http_find_field(inc, head, "Host", i + 1))
			check_authority(head + inc->fields[i].value.off, inc->fields[i].value.len);
	} else {
		char extra[128] = VIA;

		switch (http_body_framing(inc)) {
		case HTTP_BODY_LENGTH:
			snprintf(extra, sizeof(extra), "Content-Length: %llu\r\n" VIA,
				 (unsigned long long)inc->content_length);
			break;
		case HTTP_BODY_CHUNKED:
		case HTTP_BODY_CLOSE:
			strcpy(extra, "Transfer-Encoding: chunked\r\n" VIA);
			break;
		default:
			break;
		}
		check_build(B_RESPONSE, inc, head, extra);
		check_build(B_RESPONSE, inc, head, NULL);
	}
	free(head);

	/* The bytes after the head: the same body, whatever the pieces. */
	{
		const uint8_t *rest = data + inc->head_len;
		size_t rlen = size - inc->head_len;
		struct body_result a, b;

		check(http_body_framing(inc) == http_body_framing(one));
		a = feed_body(inc, rest, rlen, &seed, (int)(hash >> 20 & 3));
		b = feed_body(one, rest, rlen, &seed, -1);
		check(a.done == b.done && a.failed == b.failed);
		if (!a.failed) {
			check(a.consumed == b.consumed && a.decoded == b.decoded);
			check(a.hash == b.hash);
			check(a.decoded <= a.consumed);
		}
	}
out:
	free(inc);
	free(one);
	return 0;
}
