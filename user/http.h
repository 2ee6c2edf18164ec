/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * HTTP/1.x message heads, parsed in place with llhttp.
 *
 * A head is parsed from the start of a caller-owned buffer that only grows at its
 * end (it may move between calls). Results are spans (offset, length) into that
 * buffer, so nothing is copied. Bodies (for relayed error responses) are decoded
 * with the same llhttp parser after the head.
 */
#ifndef TUNNELGATE_HTTP_H
#define TUNNELGATE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>

#ifndef HTTP_MAX_FIELDS
#define HTTP_MAX_FIELDS 100
#endif

struct http_span {
	uint32_t off, len;
};

struct http_field {
	struct http_span name, value;
};

struct http_head {
	/* Results, valid once http_head_parse() returned > 0. */
	bool request;
	uint8_t method;              /* llhttp_method_t (requests) */
	int status;                  /* status code (responses) */
	uint8_t major, minor;        /* HTTP version */
	struct http_span method_s;   /* method token (requests) */
	struct http_span target;     /* request-target as sent (requests) */
	struct http_span reason;     /* reason phrase (responses) */
	struct http_field fields[HTTP_MAX_FIELDS];
	unsigned nfields;
	bool keep_alive;             /* version and Connection allow another message */
	bool chunked;                /* Transfer-Encoding ends in chunked */
	bool has_content_length;
	uint64_t content_length;
	size_t head_len;             /* bytes of the head, final empty line included */

	/* On error (http_head_parse() < 0): status to answer with, and why. */
	int error_status;            /* 400, 414, 431, 505 (requests); 502 (responses) */
	const char *error;           /* short static reason, for logs and error bodies */

	/* Parser state, private to http.c. */
	llhttp_t parser;
	llhttp_settings_t settings;
	size_t max_bytes;
	size_t parsed;
	const char *base;
	int cur;                     /* -1, or index of the field being parsed */
	bool in_value;
	bool complete;
	bool body_done;
	bool head_only_response;     /* response to HEAD, or a CONNECT 2xx: no body */
	void (*body_cb)(void *arg, const char *p, size_t n);
	void *body_arg;
};

/*
 * Start parsing a new message head: a request when @request, else a response.
 * @max_bytes bounds the whole head (max_header_bytes).
 */
void http_head_init(struct http_head *h, bool request, size_t max_bytes);

/*
 * Parse the head at the start of buf[0..len). Call again with the same message (same
 * buffer start, possibly moved, with more bytes at the end) as bytes arrive; only new
 * bytes are parsed. Returns the head length (> 0) once the final empty line is in,
 * 0 if more bytes are needed, or a negative errno (-EBADMSG malformed, -EMSGSIZE over
 * @max_bytes, -ENOTSUP bad version) with error_status and error set. Bytes past the
 * head are not looked at.
 */
ssize_t http_head_parse(struct http_head *h, const char *buf, size_t len);

/* A span as a pointer into @buf. */
static inline const char *http_ptr(const char *buf, struct http_span s)
{
	return buf + s.off;
}

/* True if span @s of @buf equals @str, ignoring ASCII case. */
bool http_span_ieq(const char *buf, struct http_span s, const char *str);

/* Index of the first field named @name (case-insensitive) at or after @from, or -1. */
int http_find_field(const struct http_head *h, const char *buf, const char *name, int from);

/*
 * True if field @i is hop-by-hop (RFC 9110 7.6.1): Connection, Proxy-Connection,
 * Keep-Alive, TE, Transfer-Encoding, Upgrade, or a name listed in any Connection
 * field. Proxy-Authorization and Proxy-Authenticate are NOT hop-by-hop here: the
 * gateway sits in front of proxies and passes them on.
 */
bool http_field_is_hop_by_hop(const struct http_head *h, const char *buf, unsigned i);

/*
 * True if a Via field of @h names @name as an intermediary it passed (the received-by
 * of any element, compared case-insensitively): the request has been here before.
 */
bool http_via_has(const struct http_head *h, const char *buf, const char *name);

/*
 * Authority-form of a CONNECT target: "host:port", "[v6]:port". host is a reg-name
 * (letters, digits, "-._~", percent-escapes not allowed), an IPv4 literal, or a
 * bracketed IPv6 literal; port is 1..65535 without sign or leading "+". On success
 * writes the host without brackets into @host (NUL-terminated) and returns 0;
 * -EINVAL if malformed (a port with a leading zero too), -ENAMETOOLONG if @hostlen is
 * too short.
 */
int http_parse_authority(const char *s, size_t len, char *host, size_t hostlen, unsigned *port);

/*
 * Body of the message whose head was parsed by @h (status/method decide framing:
 * 1xx, 204, 304 and responses marked head_only_response have none).
 * http_body_framing() tells how it ends.
 */
enum http_framing { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED, HTTP_BODY_CLOSE };
enum http_framing http_body_framing(const struct http_head *h);

/*
 * Decode body bytes buf[0..len) (the bytes right after the head, then whatever comes
 * next). Each decoded piece of payload is passed to @cb. Returns the number of bytes
 * consumed (less than @len only when the message ended: the rest belongs to the next
 * message), or -EBADMSG on bad chunked framing. Sets *@done when the message is complete.
 * For HTTP_BODY_CLOSE, call http_body_eof() when the peer closes: it sets *@done.
 */
ssize_t http_body_feed(struct http_head *h, const char *buf, size_t len,
		       void (*cb)(void *arg, const char *p, size_t n), void *arg, bool *done);
int http_body_eof(struct http_head *h, bool *done);

#endif
