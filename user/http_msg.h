/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Writing HTTP heads as they go on to the next hop: a CONNECT to a proxy, a plain
 * request to a proxy or an origin, a response to the client. http.c parses them.
 */
#ifndef TUNNELGATE_HTTP_MSG_H
#define TUNNELGATE_HTTP_MSG_H

#include <sys/types.h>

#include "http.h"

/*
 * Write the CONNECT request @h (parsed from @buf) as it goes to an upstream proxy:
 * "CONNECT <target as sent> HTTP/1.1", then every field that is not hop-by-hop, in
 * order, then @extra verbatim (may be NULL), then the empty line. Returns bytes
 * written, or -ENOSPC if @outlen is short.
 */
ssize_t http_build_connect(const struct http_head *h, const char *buf, const char *extra,
			   char *out, size_t outlen);

/*
 * Write the request @h (parsed from @buf) as it goes upstream: "<method> @target
 * HTTP/1.1", every field that is not hop-by-hop (Content-Length kept) and not named
 * in the NULL-terminated list @drop (may be NULL), then @extra verbatim (may be NULL),
 * then the empty line. Returns bytes written, or -ENOSPC.
 */
ssize_t http_build_request(const struct http_head *h, const char *buf, const char *target,
			   size_t target_len, const char *const *drop, const char *extra,
			   char *out, size_t outlen);

/*
 * Write the response head @h (parsed from @buf) as it goes to the client:
 * "HTTP/1.1 <status> <reason>", every field that is neither hop-by-hop nor
 * Content-Length, then @extra verbatim (framing lines such as "Content-Length: 5\r\n",
 * "Transfer-Encoding: chunked\r\n", "Connection: close\r\n"; may be NULL), then the
 * empty line. Returns bytes written, or -ENOSPC.
 */
ssize_t http_build_response(const struct http_head *h, const char *buf, const char *extra,
			    char *out, size_t outlen);

/* The RFC 9110 reason phrase of @status, or "Unknown". */
const char *http_reason_phrase(int status);

#endif
