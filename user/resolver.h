/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Host name look-ups on the event loop with c-ares: A and AAAA at once, each look-up
 * with its own deadline (resolver_timeout_ms), at most resolver_max_queries in flight
 * and the rest waiting in order. The loop polls one fd and honours one timer.
 */
#ifndef TUNNELGATE_RESOLVER_H
#define TUNNELGATE_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct resolver;
struct resolver_list;
struct resolver_query;

/* One look-up. The caller owns it until resolver_submit(), then again once
 * resolver_done() hands it back; resolver_cancel() frees it. */
struct resolve_req {
	char host[256];
	unsigned port;
	void *owner;
	/*
	 * 0 with addr set (the first address, port included), or -ENOENT: no such name
	 * or no address; -ETIMEDOUT: no answer within resolver_timeout_ms; -EIO: the
	 * DNS server failed or cannot be reached; -ENOMEM.
	 */
	int err;
	struct sockaddr_any addr;
	/* The resolver's own. */
	uint64_t deadline_ms;         /* resolver_timeout_ms after submission, queue included */
	struct resolve_req *next, *prev;
	struct resolver_list *list;   /* waiting or answered; NULL while in flight */
	struct resolver_query *query; /* in flight; NULL otherwise */
};

/*
 * Set c-ares up with @cfg's resolver (or /etc/resolv.conf's servers),
 * resolver_timeout_ms and resolver_max_queries. NULL with errno set and the reason in
 * @why on failure.
 */
struct resolver *resolver_start(const struct config *cfg, char *why, size_t len);

/* Stop c-ares and free every request still held. Safe on NULL. */
void resolver_stop(struct resolver *r);

/* The fd to poll for EPOLLIN (an epoll instance holding c-ares' sockets). */
int resolver_fd(const struct resolver *r);

/* Milliseconds until resolver_done() has work without the fd being readable: 0 when
 * it has now, -1 when there is no timer. */
int resolver_timeout_ms(const struct resolver *r);

/* Look @req up (host, port and owner set). The answer may be ready at once. */
void resolver_submit(struct resolver *r, struct resolve_req *req);

/* The owner went away: the look-up's answer is dropped and @req is freed. */
void resolver_cancel(struct resolver *r, struct resolve_req *req);

/*
 * Process what c-ares' sockets and timers have ready and take one answered request,
 * or NULL when none is left. Call it until NULL when resolver_fd() is readable or
 * resolver_timeout_ms() is 0.
 */
struct resolve_req *resolver_done(struct resolver *r);

#endif
