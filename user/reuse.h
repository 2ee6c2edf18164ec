/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Idle upstream connections kept for plain HTTP keep-alive (HAProxy's `http-reuse safe`).
 *
 * A connection whose response ended cleanly is parked here under its key: the pool's
 * name, the address it is connected to (a proxy, or a direct pool's origin) and an
 * owner (NULL: any client connection may take it; else only that one, because a
 * request on it carried credentials). While parked it is polled for input: any byte or
 * close from the peer closes it, since an idle HTTP/1.1 connection has nothing to say.
 * Taking is LIFO per key (the most recently used one is the least likely to have
 * been closed by its peer) and peeks once more for a close that epoll has not told.
 *
 * The store calls only the poller; the bounds come from the caller, so a reload that
 * lowers them applies at the next park or expiry scan.
 */
#ifndef TUNNELGATE_REUSE_H
#define TUNNELGATE_REUSE_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "conn-t.h"
#include "ev.h"

struct reuse;

/* An empty store; NULL with errno ENOMEM. */
struct reuse *reuse_new(void);
/* Close every parked connection and free @r. Safe on NULL. */
void reuse_free(struct reuse *r);

/*
 * Park @fd (connected to @addr for pool @pool, private to @owner unless NULL): it is
 * closed after @timeout_ms of idleness. To stay within @max the oldest ones close
 * first; @max 0 closes all of them and @fd. The store owns @fd from here on, in
 * every case.
 * Returns 0, or -ENOMEM (fd closed).
 */
int reuse_put(struct reuse *r, int fd, const char *pool, const struct sockaddr_any *addr,
	      const void *owner, unsigned max, unsigned timeout_ms);

/*
 * Take the most recently parked connection for (@pool, @addr) that is private to
 * @owner or, failing that, shareable. Connections found closed or with unread bytes
 * are closed and skipped. Returns the fd (out of epoll, the caller's now) or -1;
 * *@private is set when the one taken was private to @owner.
 */
int reuse_take(struct reuse *r, const char *pool, const struct sockaddr_any *addr,
	       const void *owner, bool *private);

/*
 * A parked connection's handle (kind H_IDLE) reported @events: it is closed. A handle
 * closed earlier in the same event batch (fd -1) is left alone.
 */
void reuse_event(struct handle *h, uint32_t events);

/* Free the entries closed or taken since the last call: after each event batch. */
void reuse_bury(struct reuse *r);

/* Close the connections idle past their time at @now_ms, and any beyond @max. */
void reuse_expire(struct reuse *r, uint64_t now_ms, unsigned max);

/* Close the connections private to @owner (its client connection is closing). */
void reuse_drop_owner(struct reuse *r, const void *owner);

/* Connections parked now. */
unsigned reuse_count(const struct reuse *r);

/*
 * The stages' side. reuse.c knows struct conn but calls no stage and not conn.c:
 * upstream.c and http_fwd.c call these, conn.c calls reuse_drop_owner().
 */

/*
 * dial() of a plain request, before a socket is made: a parked connection to @to
 * (the picked proxy, or a direct pool's origin) for c's request, if that request can
 * be sent again should the connection turn out closed. On true c->uh.fd is it and
 * c->reused is set; the caller goes to CS_CONNECTED. Also decides whether the
 * upstream connection becomes private to @c (c->reuse_private).
 */
bool reuse_take_for(struct conn *c, const struct sockaddr_any *to);

/*
 * c's response ended cleanly and the upstream connection can carry another request:
 * park it (c->uh.fd becomes -1; conn_drop_upstream() then only releases the server).
 * Nothing is done with reuse off (upstream_idle_max 0) or while draining.
 */
void reuse_park(struct conn *c);

/*
 * The reused connection of @c failed before the answer's first byte: close it and
 * make @c ready to dial a fresh connection, to which http_fwd_start() sends
 * c->resend. Not a failure of the server: nothing is counted.
 */
void reuse_retry(struct conn *c);

#endif
