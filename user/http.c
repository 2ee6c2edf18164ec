// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * HTTP/1.x heads with llhttp 8.1. Even built with LLHTTP_STRICT_MODE it accepts what a
 * gateway must not pass on: bare LF line ends, obs-fold continuation lines, an empty
 * field name, control bytes in values, the target and the reason phrase, a double SP
 * before the target, HTTP/0.9 and HTTP/2.0. The Makefile builds it in strict mode; a
 * loose build would also let through whitespace before the colon and "\r" + any byte
 * as the last line end. The checks here close those gaps for heads in either build.
 * Bodies are llhttp's alone: a loose build does not check the CRLF after chunk data.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"

/* Error reasons; the first four map to an errno other than -EBADMSG (head_errno()). */
static const char ERR_LINE_TOO_LONG[] = "request line is larger than max_header_bytes";
static const char ERR_TOO_BIG[] = "head is larger than max_header_bytes";
static const char ERR_TOO_MANY[] = "too many header fields";
static const char ERR_VERSION[] = "unsupported HTTP version";
static const char ERR_FOLD[] = "obs-fold (field value continued on a new line)";

static inline struct http_head *head_of(llhttp_t *p)
{
	return p->data;
}

/* Record an error: @req_status for requests, 502 for responses. Returns @err. */
static int fail(struct http_head *h, int err, int req_status, const char *why)
{
	if (!h->error) {
		h->error_status = h->request ? req_status : 502;
		h->error = why;
	}
	return err;
}

static int head_errno(const struct http_head *h)
{
	if (h->error == ERR_LINE_TOO_LONG || h->error == ERR_TOO_BIG || h->error == ERR_TOO_MANY)
		return -EMSGSIZE;
	if (h->error == ERR_VERSION)
		return -ENOTSUP;
	return -EBADMSG;
}

static uint32_t offset_of(const struct http_head *h, const char *at)
{
	return (uint32_t)(at - h->base);
}

/* Grow span @s by a piece that continues it (pieces of one token are contiguous). */
static void span_extend(struct http_head *h, struct http_span *s, const char *at, size_t n)
{
	uint32_t off = offset_of(h, at);

	if (!s->len)
		s->off = off;
	s->len = off + (uint32_t)n - s->off;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
	struct http_head *h = head_of(p);

	span_extend(h, &h->method_s, at, n);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	struct http_head *h = head_of(p);

	span_extend(h, &h->target, at, n);
	return 0;
}

/* Exactly one SP around the target, and no control bytes or tabs in it. */
static int on_url_complete(llhttp_t *p)
{
	struct http_head *h = head_of(p);
	const char *t = http_ptr(h->base, h->target);
	uint32_t i;

	if (!h->target.len || h->method_s.off + h->method_s.len + 1 != h->target.off)
		return fail(h, -1, 400, "malformed request line");
	for (i = 0; i < h->target.len; i++) {
		if ((unsigned char)t[i] <= ' ' || t[i] == 0x7f)
			return fail(h, -1, 400, "invalid character in request-target");
	}
	return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
	struct http_head *h = head_of(p);

	span_extend(h, &h->reason, at, n);
	return 0;
}

static int on_version_complete(llhttp_t *p)
{
	struct http_head *h = head_of(p);

	h->major = p->http_major;
	h->minor = p->http_minor;
	if (h->major != 1 || h->minor > 1)
		return fail(h, -1, 505, ERR_VERSION);
	return 0;
}

/*
 * Field callbacks. After the head they also fire for chunked trailers, which are in
 * the body buffer, not the head's: those are ignored (h->complete).
 */
static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
	struct http_head *h = head_of(p);

	if (h->complete)
		return 0;
	if (h->cur < 0) {
		if (h->nfields == HTTP_MAX_FIELDS)
			return fail(h, -1, 431, ERR_TOO_MANY);
		h->cur = (int)h->nfields++;
		h->in_value = false;
		h->fields[h->cur].name = (struct http_span){ offset_of(h, at), 0 };
		h->fields[h->cur].value = (struct http_span){ 0, 0 };
	}
	span_extend(h, &h->fields[h->cur].name, at, n);
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	struct http_head *h = head_of(p);
	struct http_span s;
	uint32_t i;

	if (h->complete)
		return 0;
	if (h->cur < 0 || !h->fields[h->cur].name.len)
		return fail(h, -1, 400, "empty field name");
	s = h->fields[h->cur].name;
	for (i = 0; i < s.len; i++) {
		if (!is_tchar(h->base[s.off + i]))
			return fail(h, -1, 400, "invalid field name (whitespace before colon?)");
	}
	return 0;
}

/*
 * A value comes in contiguous pieces; a piece that does not continue the previous one
 * is an obs-fold continuation line, which loose llhttp delivers without its CRLF.
 */
static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
	struct http_head *h = head_of(p);
	struct http_span *v;

	/* Empty pieces are noise: for an empty value llhttp reports one after the CRLF. */
	if (h->complete || !n)
		return 0;
	if (h->cur < 0)
		return fail(h, -1, 400, "field value without a name");
	v = &h->fields[h->cur].value;
	if (!h->in_value) {
		struct http_span name = h->fields[h->cur].name;
		const char *q = http_ptr(h->base, name) + name.len + 1; /* past the colon */

		/* Only OWS before the value: "X:\r\n b" arrives as the value "b". */
		for (; q < at; q++) {
			if (!is_ows(*q))
				return fail(h, -1, 400, ERR_FOLD);
		}
		*v = (struct http_span){ offset_of(h, at), (uint32_t)n };
		h->in_value = true;
	} else if (offset_of(h, at) != v->off + v->len) {
		return fail(h, -1, 400, ERR_FOLD);
	} else {
		v->len += n;
	}
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct http_head *h = head_of(p);
	struct http_span *v;

	if (h->complete)
		return 0;
	if (h->cur < 0)
		return fail(h, -1, 400, "field value without a name");
	v = &h->fields[h->cur].value;
	if (!h->in_value)
		v->off = h->fields[h->cur].name.off + h->fields[h->cur].name.len + 1;
	if (v->len && is_ows(h->base[v->off]))
		return fail(h, -1, 400, ERR_FOLD);
	while (v->len && is_ows(h->base[v->off + v->len - 1]))
		v->len--;
	h->cur = -1;
	h->in_value = false;
	return 0;
}

/* End of the head: record the framing, then pause so llhttp stops right after it. */
static bool list_has(const char *buf, struct http_span list, struct http_span name);

/* True if a Connection field names a field that frames or routes the message. */
static bool connection_names_framing(const struct http_head *h)
{
	static const char *const framing[] = { "Content-Length", "Transfer-Encoding", "Host" };

	for (unsigned i = 0; i < h->nfields; i++) {
		for (unsigned k = 0; k < sizeof(framing) / sizeof(framing[0]); k++) {
			if (!http_span_ieq(h->base, h->fields[i].name, framing[k]))
				continue;
			for (int j = http_find_field(h, h->base, "Connection", 0); j >= 0;
			     j = http_find_field(h, h->base, "Connection", j + 1))
				if (list_has(h->base, h->fields[j].value, h->fields[i].name))
					return true;
		}
	}
	return false;
}

static int on_headers_complete(llhttp_t *p)
{
	struct http_head *h = head_of(p);
	/* llhttp sets no flag for an empty Transfer-Encoding: look at the fields. */
	bool te = http_find_field(h, h->base, "Transfer-Encoding", 0) >= 0;

	/* Dropping it as hop-by-hop would reframe the message for the next hop. */
	if (connection_names_framing(h))
		return fail(h, -1, h->request ? 400 : 502,
			    "Connection names Content-Length, Transfer-Encoding or Host");
	if (h->request) {
		h->method = p->method;
		/* A request line without a version is HTTP/0.9 to llhttp. */
		if (p->http_major != 1 || p->http_minor > 1)
			return fail(h, -1, 505, ERR_VERSION);
		/* Loose llhttp checks this after the callback, which we never reach. */
		if (te && !(p->flags & F_CHUNKED))
			return fail(h, -1, 400, "Transfer-Encoding does not end in chunked");
	} else {
		h->status = p->status_code;
		if (h->status < 100)
			return fail(h, -1, 502, "invalid status code");
		if (te && (p->flags & F_CONTENT_LENGTH))
			return fail(h, -1, 502, "both Transfer-Encoding and Content-Length");
		/* What returning 1 from this callback does, which a pause cannot return. */
		if (h->head_only_response || h->status / 100 == 1 || h->status == 204 ||
		    h->status == 304)
			p->flags |= F_SKIPBODY;
	}
	h->chunked = p->flags & F_CHUNKED;
	h->has_content_length = p->flags & F_CONTENT_LENGTH;
	h->content_length = p->content_length;
	h->keep_alive = llhttp_should_keep_alive(p);
	h->complete = true;
	return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	struct http_head *h = head_of(p);

	if (h->body_cb && n)
		h->body_cb(h->body_arg, at, n);
	return 0;
}

/* Stop at the end of the message: what follows belongs to the next one. */
static int on_message_complete(llhttp_t *p)
{
	head_of(p)->body_done = true;
	return HPE_PAUSED;
}

void http_head_init(struct http_head *h, bool request, size_t max_bytes)
{
	memset(h, 0, sizeof(*h));
	h->request = request;
	h->max_bytes = max_bytes ? max_bytes : SIZE_MAX;
	h->cur = -1;
	llhttp_settings_init(&h->settings);
	h->settings.on_method = on_method;
	h->settings.on_url = on_url;
	h->settings.on_url_complete = on_url_complete;
	h->settings.on_status = on_status;
	h->settings.on_version_complete = on_version_complete;
	h->settings.on_header_field = on_header_field;
	h->settings.on_header_field_complete = on_header_field_complete;
	h->settings.on_header_value = on_header_value;
	h->settings.on_header_value_complete = on_header_value_complete;
	h->settings.on_headers_complete = on_headers_complete;
	h->settings.on_body = on_body;
	h->settings.on_message_complete = on_message_complete;
	llhttp_init(&h->parser, request ? HTTP_REQUEST : HTTP_RESPONSE, &h->settings);
	h->parser.data = h;
}

/*
 * What loose llhttp lets through in a complete head: CR not followed by LF, LF not
 * preceded by CR, and control bytes other than HTAB (NUL in the reason phrase, DEL).
 */
static int check_head_bytes(struct http_head *h, const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = buf[i];

		if (c == '\r') {
			if (i + 1 == len || buf[i + 1] != '\n')
				return fail(h, -EBADMSG, 400, "bare CR in head");
		} else if (c == '\n') {
			if (!i || buf[i - 1] != '\r')
				return fail(h, -EBADMSG, 400, "bare LF in head");
		} else if ((c < ' ' && c != '\t') || c == 0x7f) {
			return fail(h, -EBADMSG, 400, "control character in head");
		}
	}
	return 0;
}

/* An error llhttp found (not one of our callbacks). */
static int llhttp_failed(struct http_head *h, llhttp_errno_t e)
{
	/* Before the version is through (h->major), it is the version itself that is bad. */
	if (e == HPE_INVALID_VERSION && !h->major)
		return fail(h, -ENOTSUP, 505, ERR_VERSION);
	return fail(h, -EBADMSG, 400, llhttp_get_error_reason(&h->parser));
}

ssize_t http_head_parse(struct http_head *h, const char *buf, size_t len)
{
	size_t end = len < h->max_bytes ? len : h->max_bytes;
	llhttp_errno_t e;
	int err;

	if (h->error)
		return head_errno(h);
	if (h->complete)
		return h->head_len;
	h->base = buf;
	if (end > h->parsed) {
		e = llhttp_execute(&h->parser, buf + h->parsed, end - h->parsed);
		if (h->error)
			return head_errno(h);
		if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
			/* Paused in on_headers_complete: error_pos is right after the CRLFCRLF. */
			h->head_len = llhttp_get_error_pos(&h->parser) - buf;
			h->parsed = h->head_len;
			err = check_head_bytes(h, buf, h->head_len);
			return err ? err : (ssize_t)h->head_len;
		}
		if (e != HPE_OK)
			return llhttp_failed(h, e);
		h->parsed = end;
	}
	/* Not complete within max_bytes: it can only be longer. */
	if (len >= h->max_bytes) {
		if (h->request && !h->major)
			return fail(h, -EMSGSIZE, 414, ERR_LINE_TOO_LONG);
		return fail(h, -EMSGSIZE, 431, ERR_TOO_BIG);
	}
	return 0;
}

bool http_span_ieq(const char *buf, struct http_span s, const char *str)
{
	return strlen(str) == s.len && !strncasecmp(http_ptr(buf, s), str, s.len);
}

int http_find_field(const struct http_head *h, const char *buf, const char *name, int from)
{
	unsigned i;

	for (i = from > 0 ? (unsigned)from : 0; i < h->nfields; i++) {
		if (http_span_ieq(buf, h->fields[i].name, name))
			return (int)i;
	}
	return -1;
}

/* The received-by of one Via element "[proto/]version received-by [comment]". */
static bool via_element_is(const char *p, const char *end, const char *name)
{
	const char *by;

	while (p < end && !is_ows(*p)) /* protocol and version */
		p++;
	while (p < end && is_ows(*p))
		p++;
	for (by = p; p < end && !is_ows(*p); p++)
		;
	return (size_t)(p - by) == strlen(name) && !strncasecmp(by, name, p - by);
}

bool http_via_has(const struct http_head *h, const char *buf, const char *name)
{
	for (int i = http_find_field(h, buf, "Via", 0); i >= 0;
	     i = http_find_field(h, buf, "Via", i + 1)) {
		const char *p = http_ptr(buf, h->fields[i].value);
		const char *end = p + h->fields[i].value.len;

		while (p < end) {
			const char *elem;

			while (p < end && (is_ows(*p) || *p == ','))
				p++;
			for (elem = p; p < end && *p != ','; p++)
				;
			if (p > elem && via_element_is(elem, p, name))
				return true;
		}
	}
	return false;
}

/* True if the comma list @list (a Connection value) has the token @name. */
static bool list_has(const char *buf, struct http_span list, struct http_span name)
{
	const char *p = http_ptr(buf, list), *end = p + list.len;

	while (p < end) {
		const char *tok, *tend;

		while (p < end && (is_ows(*p) || *p == ','))
			p++;
		tok = p;
		while (p < end && *p != ',')
			p++;
		tend = p;
		while (tend > tok && is_ows(tend[-1]))
			tend--;
		if (tend - tok == name.len && !strncasecmp(tok, http_ptr(buf, name), name.len))
			return true;
	}
	return false;
}

bool http_field_is_hop_by_hop(const struct http_head *h, const char *buf, unsigned i)
{
	static const char *const fixed[] = { "Connection", "Proxy-Connection", "Keep-Alive",
					     "TE", "Transfer-Encoding", "Upgrade" };
	struct http_span name = h->fields[i].name;
	unsigned k;
	int j;

	for (k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
		if (http_span_ieq(buf, name, fixed[k]))
			return true;
	}
	for (j = http_find_field(h, buf, "Connection", 0); j >= 0;
	     j = http_find_field(h, buf, "Connection", j + 1)) {
		if (list_has(buf, h->fields[j].value, name))
			return true;
	}
	return false;
}

static bool is_regname_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int http_parse_authority(const char *s, size_t len, char *host, size_t hostlen, unsigned *port)
{
	const char *end = s + len, *h, *hend, *p;
	unsigned long v = 0;

	if (len && s[0] == '[') {
		char v6[INET6_ADDRSTRLEN];
		struct in6_addr a;

		h = s + 1;
		hend = memchr(h, ']', len - 1);
		if (!hend || hend == h || (size_t)(hend - h) >= sizeof(v6))
			return -EINVAL;
		memcpy(v6, h, hend - h);
		v6[hend - h] = '\0';
		if (inet_pton(AF_INET6, v6, &a) != 1)
			return -EINVAL;
		p = hend + 1;
	} else {
		h = s;
		for (hend = s; hend < end && is_regname_char(*hend); hend++)
			;
		if (hend == h)
			return -EINVAL;
		p = hend;
	}
	if (p == end || *p != ':' || ++p == end)
		return -EINVAL;
	/* "0443" is 443 to some parsers and octal to others: one spelling per port. */
	if (*p == '0')
		return -EINVAL;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (*p - '0');
		if (v > 65535)
			return -EINVAL;
	}
	if (!v)
		return -EINVAL;
	if ((size_t)(hend - h) >= hostlen)
		return -ENAMETOOLONG;
	memcpy(host, h, hend - h);
	host[hend - h] = '\0';
	*port = v;
	return 0;
}

enum http_framing http_body_framing(const struct http_head *h)
{
	if (h->request) {
		if (h->method == HTTP_CONNECT)
			return HTTP_BODY_NONE;
		if (h->chunked)
			return HTTP_BODY_CHUNKED;
		return h->has_content_length && h->content_length ? HTTP_BODY_LENGTH :
								    HTTP_BODY_NONE;
	}
	if (h->head_only_response || h->status / 100 == 1 || h->status == 204 || h->status == 304)
		return HTTP_BODY_NONE;
	if (h->chunked)
		return HTTP_BODY_CHUNKED;
	if (h->has_content_length)
		return h->content_length ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	/* No length, or a Transfer-Encoding that does not end in chunked (llhttp refuses it
	 * together with Content-Length). */
	return HTTP_BODY_CLOSE;
}

/* Run llhttp on body bytes, resuming it from the pause at the end of the head. */
static llhttp_errno_t body_run(struct http_head *h, const char *buf, size_t len)
{
	llhttp_resume(&h->parser);
	return llhttp_execute(&h->parser, buf, len);
}

ssize_t http_body_feed(struct http_head *h, const char *buf, size_t len,
		       void (*cb)(void *arg, const char *p, size_t n), void *arg, bool *done)
{
	const char *data = len ? buf : "";
	llhttp_errno_t e;

	*done = false;
	if (!h->complete)
		return -EINVAL;
	if (!h->body_done && http_body_framing(h) == HTTP_BODY_NONE)
		h->body_done = true;
	if (h->body_done) {
		*done = true;
		return 0;
	}
	h->body_cb = cb;
	h->body_arg = arg;
	e = body_run(h, data, len);
	h->body_cb = NULL;
	h->body_arg = NULL;
	if (e == HPE_OK)
		return len;
	if (e == HPE_PAUSED && h->body_done) {
		*done = true;
		return llhttp_get_error_pos(&h->parser) - data;
	}
	return -EBADMSG;
}

int http_body_eof(struct http_head *h, bool *done)
{
	bool unused;

	*done = false;
	/* Also brings llhttp past the head's pause when no body byte ever came. */
	if (http_body_feed(h, "", 0, NULL, NULL, &unused) < 0)
		return -EBADMSG;
	if (!h->body_done)
		llhttp_finish(&h->parser); /* calls on_message_complete when EOF ends the body */
	*done = h->body_done;
	return h->body_done ? 0 : -EBADMSG;
}
