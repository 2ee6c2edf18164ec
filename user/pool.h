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
	unsigned refs;           /* servers of loaded configs that point here (pool lock) */
	/* Counted by every worker: atomic. */
	unsigned active;         /* open connections through this server */
	uint64_t picks, failures;
	int cur_weight;          /* smooth weighted round robin (pool.c's rr_lock) */
	/*
	 * Health: a server starts up; `fall` failures in a row take it down, `rise` checks
	 * up. down and drained are read without the lock (atomic loads); the rest is
	 * changed under it.
	 */
	bool down;
	bool drained;            /* tunnelctl drain: no new connections, open ones stay */
	unsigned fails, oks;     /* failures while up, successful checks while down, in a row */
	uint64_t downs;          /* times it went down */
	char last[48];           /* the last check's or failure's result, "" before one */
	uint64_t last_ms;        /* when (now_ms()), 0 before one */
	struct server_state *next;
};

/*
 * A client waiting in a pool's queue for a server under its maxconn. Embedded in the
 * waiting connection; each worker keeps its own waiters in arrival order.
 */
struct pool_waiter {
	struct pool_waiter *prev, *next;
	struct pool_state *ps;   /* the queue it is in, NULL when in none */
	uint64_t since_ms;
};

/* One worker's waiters of a pool: only that worker touches the list. */
struct pool_queue {
	struct pool_waiter *head, *tail;
	bool slot_freed;         /* a server got room while they wait (set by any worker) */
};

/* The runtime state of a pool, shared like server_state by every config with its name. */
struct pool_state {
	char name[CFG_NAME_MAX];
	unsigned refs;           /* pool lock */
	unsigned queued;         /* clients waiting, all workers (atomic) */
	uint64_t waits, timeouts; /* clients that waited; of them, those that gave up (atomic) */
	struct pool_queue q[CFG_MAX_WORKERS];
	struct pool_state *next;
};

/*
 * Which worker the calling thread is (0..CFG_MAX_WORKERS-1): its queues. Set once when
 * the worker starts; 0 by default.
 */
void pool_set_worker(unsigned id);

/* The state of server @addr of pool @pool, made on first use; one more reference. */
struct server_state *server_state_get(const char *pool, const struct sockaddr_any *addr);
/* Drop a reference; the last one frees it. Safe on NULL. */
void server_state_put(struct server_state *st);

/* The state of pool @name, made on first use; one more reference. */
struct pool_state *pool_state_get(const char *name);
/* Drop a reference; the last one frees it. Safe on NULL. */
void pool_state_put(struct pool_state *ps);

/* A waiter of @p gave up after queue_timeout_ms (counted for the metrics). */
void pool_queue_timed_out(struct pool *p);

/* True if @s may take a new connection: up and not drained. */
bool pool_server_usable(const struct server *s);

/*
 * @s of @p failed (@what: "refused", "timeout", ...): an active check, or a request
 * that the server itself failed. `fall` in a row take it down; logged.
 */
void pool_server_failed(const struct pool *p, struct server *s, const char *what);

/* The name a failed connect, send or receive (positive errno @err) gives the server. */
const char *pool_failure_name(int err);

/* A client's connection through @s failed (@what as above): counted, and as above. */
void pool_server_request_failed(const struct pool *p, struct server *s, const char *what);

/*
 * @s of @p answered. @what is a check's result ("ok 0.3ms"): `rise` in a row bring a
 * down server back (logged). NULL is a request's answer: it only ends a run of failures.
 */
void pool_server_ok(const struct pool *p, struct server *s, const char *what);

/*
 * Mark every server that @spec names drained (@drain) or not: "ip:port" in any pool,
 * or "POOL/ip:port". Returns how many server states it matched.
 */
unsigned pool_drain(const char *spec, bool drain);

/* The state name of @st for the CLI: "up", "down", "drained" or "down,drained". */
const char *pool_server_state_name(const struct server_state *st);

/* Queue @w at the tail of @p's queue (stamped now). */
void pool_queue_add(struct pool *p, struct pool_waiter *w);
/* Take @w out of its queue, if it is in one. */
void pool_queue_leave(struct pool_waiter *w);
/*
 * The first of this worker's waiters of a pool whose servers got room since the last
 * call, taken out of its queue, or NULL when none may go on. The caller routes it
 * again; if it still finds no room it queues again at the head (pool_queue_retry()).
 */
struct pool_waiter *pool_queue_next(void);
/* Let this worker's first waiter of every pool try again (a reload or undrain made room). */
void pool_queue_kick(void);
/* Put @w back at the head of @p's queue, keeping its place and wait. */
void pool_queue_retry(struct pool *p, struct pool_waiter *w);

/*
 * Pick a server of @p for a request from @client to @target ("host:port"), skipping
 * @exclude (a server that just failed; may be NULL), servers that are down or drained,
 * and servers at their maxconn. roundrobin is smooth weighted round robin; leastconn
 * picks the lowest active/weight; source and target hash the client address or target
 * string onto the weighted servers. Returns NULL with errno ENOENT when the pool has no
 * (other) usable server, EBUSY when the usable ones are all at maxconn. Increments the
 * picked server's active count and picks; the caller calls pool_release() when the
 * connection ends.
 */
struct server *pool_pick(struct pool *p, const struct sockaddr_any *client, const char *target,
			 const struct server *exclude);

/* The connection through @s of @p has ended; a waiting client may take its place. */
void pool_release(struct pool *p, struct server *s);

#endif
