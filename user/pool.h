/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Upstream selection within a pool. */
#ifndef TUNNELGATE_POOL_H
#define TUNNELGATE_POOL_H

#include "config.h"

/*
 * Pick a server of @p for a request from @client to @target ("host:port"), skipping
 * @exclude (a server that just failed; may be NULL). roundrobin is smooth weighted
 * round robin; leastconn picks the lowest active/weight; source and target hash the
 * client address or target string onto the weighted servers. Returns NULL with errno
 * ENOENT when the pool has no (other) server. Increments the picked server's active
 * count and picks; the caller calls pool_release() when the connection ends.
 */
struct server *pool_pick(struct pool *p, const struct sockaddr_any *client, const char *target,
			 const struct server *exclude);

/* The connection through @s has ended. */
void pool_release(struct server *s);

#endif
