/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Host name look-ups off the event loop: getaddrinfo() runs in a helper thread and
 * answers through an eventfd the loop polls.
 */
#ifndef TUNNELGATE_RESOLVER_H
#define TUNNELGATE_RESOLVER_H

#include "config.h"

struct resolver;

/* One look-up. The caller owns it until resolver_done() hands it back. */
struct resolve_req {
	char host[256];
	unsigned port;
	void *owner;             /* NULL once cancelled */
	int err;                 /* 0, or -ENOENT: no address */
	struct sockaddr_any addr;
	struct resolve_req *next;
};

/* Start the helper thread. NULL with errno set on failure. */
struct resolver *resolver_start(void);

/* Stop the thread and free everything still queued. Safe on NULL. */
void resolver_stop(struct resolver *r);

/* The fd to poll for EPOLLIN: answers are waiting. */
int resolver_fd(const struct resolver *r);

/* Queue @req (host, port and owner set). */
void resolver_submit(struct resolver *r, struct resolve_req *req);

/* The owner went away: the answer, when it comes, is dropped. */
void resolver_cancel(struct resolver *r, struct resolve_req *req);

/* Take the answered requests (a list through ->next); cancelled ones are freed. */
struct resolve_req *resolver_done(struct resolver *r);

#endif
