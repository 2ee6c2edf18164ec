// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The access log's line formats, text and JSON. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "access_log.h"

/* Escaped bytes kept of one JSON string; 8 of them fit in ACCESS_LINE_MAX with the keys. */
#define JSON_STR_MAX 448

/* A line being written: appends stop at the end of the buffer, which stays terminated. */
struct line {
	char *p;
	size_t len, cap;
};

static void put(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->len + 1 >= l->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->p + l->len, l->cap - l->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len += (size_t)n < l->cap - l->len ? (size_t)n : l->cap - l->len - 1;
}

size_t json_escape(char *out, size_t outlen, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (!outlen)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = s[i];
		char e[7];
		size_t n = 2;

		e[0] = '\\';
		switch (ch) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\b': e[1] = 'b'; break;
		case '\f': e[1] = 'f'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case '\t': e[1] = 't'; break;
		default:
			if (ch >= 0x20 && ch < 0x7f) {
				e[0] = ch;
				n = 1;
			} else {
				memcpy(e + 1, "u00", 3);
				e[4] = hex[ch >> 4];
				e[5] = hex[ch & 15];
				n = 6;
			}
		}
		if (o + n >= outlen)
			break;
		memcpy(out + o, e, n);
		o += n;
	}
	out[o] = '\0';
	return o;
}

/* "key":"escaped value", or "key":null for NULL; @first: no comma before it. */
static void put_str(struct line *l, const char *key, const char *v, bool first)
{
	char esc[JSON_STR_MAX + 1];

	if (!v) {
		put(l, "%s\"%s\":null", first ? "" : ",", key);
		return;
	}
	json_escape(esc, sizeof(esc), v, strlen(v));
	put(l, "%s\"%s\":\"%s\"", first ? "" : ",", key, esc);
}

/* RFC 3339, UTC, milliseconds: 2026-12-01T04:05:06.789Z */
static void put_time(struct line *l, const struct timespec *ts)
{
	struct tm tm;
	time_t sec = ts->tv_sec;

	gmtime_r(&sec, &tm);
	put(l, "\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000);
}

static void format_json(struct line *l, const struct access_rec *r)
{
	put(l, "{");
	put_time(l, &r->when);
	put_str(l, "client", r->client, false);
	put_str(l, "method", r->method, false);
	put_str(l, r->connect ? "target" : "host", r->target, false);
	put_str(l, "rule", r->rule, false);
	put_str(l, "pool", r->pool, false);
	put_str(l, "upstream", r->upstream, false);
	if (r->status)
		put(l, ",\"status\":%d", r->status);
	else
		put(l, ",\"status\":null");
	put_str(l, "relay", r->relay, false);
	put(l, ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64 ",\"copied_up\":%" PRIu64
	       ",\"copied_down\":%" PRIu64 ",\"duration_ms\":%" PRIu64,
	    r->up, r->down, r->copied_up, r->copied_down, r->duration_ms);
	put_str(l, "end", r->end, false);
	put(l, "}\n");
}

/* The original line, byte for byte: parsers of it exist. */
static void format_text(struct line *l, const struct access_rec *r)
{
	put(l, "access client=%s target=%s upstream=%s status=%d relay=%s up=%llu down=%llu ms=%llu %s\n",
	    r->client, r->target && r->target[0] ? r->target : "-",
	    r->upstream ? r->upstream : "-", r->status, r->relay ? r->relay : "-",
	    (unsigned long long)r->up, (unsigned long long)r->down,
	    (unsigned long long)r->duration_ms, r->what);
}

size_t access_log_format(char *out, size_t outlen, bool json, const struct access_rec *r)
{
	struct line l = { .p = out, .cap = outlen };

	if (!outlen)
		return 0;
	out[0] = '\0';
	if (json)
		format_json(&l, r);
	else
		format_text(&l, r);
	/* Cut short (a buffer below ACCESS_LINE_MAX): still one line. */
	if (l.len && out[l.len - 1] != '\n')
		out[l.len - 1] = '\n';
	return l.len;
}
