/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Client connections: creation, the gateway's own replies, the access log, close.
 * conn.c knows no stage and no relay: whoever owns the sockets after the hand-off
 * registers c->teardown, which conn_close() calls first.
 */
#ifndef TUNNELGATE_CONN_H
#define TUNNELGATE_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "conn-t.h"
#include "gateway-t.h"

/*
 * A new connection on the accepted socket @fd from @a, in CS_REQ_HEAD. NULL if no memory.
 * The caller has counted it in *gw->conns_total already; conn_close() takes it off.
 */
struct conn *conn_new(struct gateway *gw, int fd, const struct sockaddr_any *a);

/* Close both sockets and unlink @c; freed by conn_bury(). Idempotent. */
void conn_close(struct conn *c, const char *why);
/* Close with an RST on both sides: the stream is incomplete and must not look ended. */
void conn_reset(struct conn *c, const char *why);
/*
 * Reset every connection of @gw whose socket peer is in one of @deny[0..@n): sources
 * the XDP guard now drops. Returns how many were closed.
 */
unsigned conn_close_denied(struct gateway *gw, const struct cidr *deny, unsigned n);

/* Free the connections closed since the last call. */
void conn_bury(struct gateway *gw);

/* Close the upstream side: socket, look-up in flight, the server's connection count. */
void conn_drop_upstream(struct conn *c);

/* Answer the client with a gateway-made response (state CS_REPLY), then go on or close. */
void conn_reply(struct conn *c, int status, bool keep, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * The reply or response is out: close if it said so, else make @c ready for the next
 * request (CS_REQ_HEAD; what the client sent after this request stays in cbuf).
 */
void conn_next_request(struct conn *c);

/*
 * A reload happened since @c's config was taken and no byte of its next request has
 * come: take the current config (rules, pools, limits), with a request buffer as
 * large as it asks. Returns 0 or -ENOMEM.
 */
int conn_take_config(struct conn *c);

/*
 * True if the client sent bytes after its CONNECT head (an optimistic tunnel, such as
 * a TLS ClientHello): they must never be read as the next request.
 */
bool conn_sent_past_head(struct conn *c);

/* Bytes of a logged request or tunnel: all each way, and of those the daemon copied. */
struct conn_bytes {
	uint64_t up, down, copied_up, copied_down;
};

/*
 * One access log line, in the format access_log_format asks: @what names it in the
 * text format (reply, http, refused, tunnel closed), @relay is a relay_kind name or
 * NULL. Its `end` is c->end; unset, a gateway reply's is error:<its status in words>.
 */
void conn_log(struct conn *c, const char *what, const char *relay, const struct conn_bytes *b);

/*
 * Record why @c's request or tunnel ends (@why: END_ERROR's short reason, a static
 * string), unless a reason is already set: the first cause stands.
 */
void conn_set_end(struct conn *c, enum conn_end end, const char *why);

/*
 * Count the answer @status to @c's request, made by the gateway or relayed, by its
 * method and status (tunnelgate_requests_total). Once per request: the final answer.
 */
void conn_answered(struct conn *c, int status);

/* The kind of upstream error a failed connect(), send() or recv() with -errno @err is. */
enum upstream_err upstream_err_of(int err);
/* Count an upstream error of @kind against @c's pool and server (or "-" for none). */
void conn_upstream_error(struct conn *c, enum upstream_err kind);

#endif
