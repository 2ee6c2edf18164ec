/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Upstream selection within a pool. */
#ifndef TUNNELGATE_POOL_H
#define TUNNELGATE_POOL_H

#include "config.h"

/*
 * The balancer's state of one server: a runtime object, not config. Every loaded
 * config that has a server of this address in a pool of this name points at the same
 * one, so connections of an old config and of the new one count together.
 */
struct server_state {
	char pool[CFG_NAME_MAX];
	struct sockaddr_any addr;
	unsigned refs;           /* servers of loaded configs that point here */
	unsigned active;         /* open connections through this server */
	int cur_weight;          /* smooth weighted round robin */
	uint64_t picks, failures;
	struct server_state *next;
};

/* The state of server @addr of pool @pool, made on first use; one more reference. */
struct server_state *server_state_get(const char *pool, const struct sockaddr_any *addr);
/* Drop a reference; the last one frees it. Safe on NULL. */
void server_state_put(struct server_state *st);

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
