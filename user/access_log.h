/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The access log's line formats: `text` (key=value, the original line) and `json` (one
 * object per line). Pure functions: conn.c fills a record, these only format it.
 */
#ifndef TUNNELGATE_ACCESS_LOG_H
#define TUNNELGATE_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Longest line either format writes (longer strings are cut, never the JSON syntax). */
#define ACCESS_LINE_MAX 4096

/* One request or tunnel as it ended. NULL strings are "-" in text and null in JSON. */
struct access_rec {
	struct timespec when;    /* CLOCK_REALTIME when the line is written */
	const char *what;        /* text only: reply, http, refused, tunnel closed */
	const char *client;      /* "ip:port" */
	const char *method;
	bool connect;            /* JSON key "target" (CONNECT) or "host" (the others) */
	const char *target;      /* "host:port" */
	const char *rule;        /* the rule that decided */
	const char *pool, *upstream, *relay;
	int status;              /* 0: none yet (null in JSON) */
	uint64_t up, down, copied_up, copied_down, duration_ms;
	const char *end;         /* client_fin, upstream_fin, reset, ..., error:<reason> */
};

/*
 * Write @s (@len bytes) JSON-escaped, without quotes, into @out (@outlen bytes,
 * NUL-terminated): `"` and `\` get a backslash, \b \f \n \r \t their short forms, and
 * every other byte outside printable ASCII (control bytes, DEL, bytes >= 0x80, which
 * need not be UTF-8) is \u00XX of its value, so a line is valid JSON whatever a client
 * sent. An escape that does not fit whole is left out with the rest of @s.
 * Returns the length written.
 */
size_t json_escape(char *out, size_t outlen, const char *s, size_t len);

/*
 * Format @r as one line, '\n' included, into @out (@outlen bytes, at least 256,
 * NUL-terminated): JSON when @json, else the text line. Returns the length.
 */
size_t access_log_format(char *out, size_t outlen, bool json, const struct access_rec *r);

#endif
