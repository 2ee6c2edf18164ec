// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Writing HTTP heads as they go on to the next hop. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "http_msg.h"

/* Output with an overflow flag, so writers need no checks of their own. */
struct out {
	char *p;
	size_t len, cap;
	bool short_;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->short_ || n > o->cap - o->len) {
		o->short_ = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_span(struct out *o, const char *buf, struct http_span s)
{
	put(o, http_ptr(buf, s), s.len);
}

static void put_field(struct out *o, const char *buf, const struct http_field *f)
{
	put_span(o, buf, f->name);
	put(o, ": ", 2);
	put_span(o, buf, f->value);
	put(o, "\r\n", 2);
}

static ssize_t out_done(struct out *o)
{
	return o->short_ ? -ENOSPC : (ssize_t)o->len;
}

/* True if the field name @name is one of the NULL-terminated @names. */
static bool name_in(const char *buf, struct http_span name, const char *const *names)
{
	for (; *names; names++)
		if (http_span_ieq(buf, name, *names))
			return true;
	return false;
}

/* A request's end-to-end fields but those in @drop, then @extra and the empty line. */
static ssize_t put_rest(struct out *o, const struct http_head *h, const char *buf,
			const char *const *drop, const char *extra)
{
	for (unsigned i = 0; i < h->nfields; i++) {
		if (drop && name_in(buf, h->fields[i].name, drop))
			continue;
		if (!http_field_is_hop_by_hop(h, buf, i))
			put_field(o, buf, &h->fields[i]);
	}
	if (extra)
		put_str(o, extra);
	put(o, "\r\n", 2);
	return out_done(o);
}

ssize_t http_build_connect(const struct http_head *h, const char *buf, const char *extra,
			   char *out, size_t outlen)
{
	struct out o = { .p = out, .cap = outlen };

	put_str(&o, "CONNECT ");
	put_span(&o, buf, h->target);
	put_str(&o, " HTTP/1.1\r\n");
	return put_rest(&o, h, buf, NULL, extra);
}

ssize_t http_build_request(const struct http_head *h, const char *buf, const char *target,
			   size_t target_len, const char *const *drop, const char *extra, char *out,
			   size_t outlen)
{
	struct out o = { .p = out, .cap = outlen };

	put_span(&o, buf, h->method_s);
	put(&o, " ", 1);
	put(&o, target, target_len);
	put_str(&o, " HTTP/1.1\r\n");
	return put_rest(&o, h, buf, drop, extra);
}

const char *http_reason_phrase(int status)
{
	static const struct {
		int status;
		const char *reason;
	} table[] = {
		{ 100, "Continue" },
		{ 101, "Switching Protocols" },
		{ 200, "OK" },
		{ 201, "Created" },
		{ 202, "Accepted" },
		{ 203, "Non-Authoritative Information" },
		{ 204, "No Content" },
		{ 205, "Reset Content" },
		{ 206, "Partial Content" },
		{ 300, "Multiple Choices" },
		{ 301, "Moved Permanently" },
		{ 302, "Found" },
		{ 303, "See Other" },
		{ 304, "Not Modified" },
		{ 307, "Temporary Redirect" },
		{ 308, "Permanent Redirect" },
		{ 400, "Bad Request" },
		{ 401, "Unauthorized" },
		{ 403, "Forbidden" },
		{ 404, "Not Found" },
		{ 405, "Method Not Allowed" },
		{ 406, "Not Acceptable" },
		{ 407, "Proxy Authentication Required" },
		{ 408, "Request Timeout" },
		{ 409, "Conflict" },
		{ 410, "Gone" },
		{ 411, "Length Required" },
		{ 412, "Precondition Failed" },
		{ 413, "Content Too Large" },
		{ 414, "URI Too Long" },
		{ 415, "Unsupported Media Type" },
		{ 416, "Range Not Satisfiable" },
		{ 417, "Expectation Failed" },
		{ 421, "Misdirected Request" },
		{ 422, "Unprocessable Content" },
		{ 426, "Upgrade Required" },
		{ 428, "Precondition Required" },
		{ 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" },
		{ 451, "Unavailable For Legal Reasons" },
		{ 500, "Internal Server Error" },
		{ 501, "Not Implemented" },
		{ 502, "Bad Gateway" },
		{ 503, "Service Unavailable" },
		{ 504, "Gateway Timeout" },
		{ 505, "HTTP Version Not Supported" },
		{ 508, "Loop Detected" },
		{ 511, "Network Authentication Required" },
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (table[i].status == status)
			return table[i].reason;
	}
	return "Unknown";
}

ssize_t http_build_response(const struct http_head *h, const char *buf, const char *extra,
			    char *out, size_t outlen)
{
	struct out o = { .p = out, .cap = outlen };
	char line[32];
	unsigned i;

	snprintf(line, sizeof(line), "HTTP/1.1 %03d ", h->status);
	put_str(&o, line);
	if (h->reason.len)
		put_span(&o, buf, h->reason);
	else
		put_str(&o, http_reason_phrase(h->status));
	put(&o, "\r\n", 2);
	for (i = 0; i < h->nfields; i++) {
		if (!http_field_is_hop_by_hop(h, buf, i) &&
		    !http_span_ieq(buf, h->fields[i].name, "Content-Length"))
			put_field(&o, buf, &h->fields[i]);
	}
	if (extra)
		put_str(&o, extra);
	put(&o, "\r\n", 2);
	return out_done(&o);
}

