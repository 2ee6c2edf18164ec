/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The daemon's shared state. Each group of fields has one owner that changes it;
 * the others only read it.
 */
#ifndef TUNNELGATE_GATEWAY_T_H
#define TUNNELGATE_GATEWAY_T_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conn-t.h"
#include "ev.h"
#include "hist.h"
#include "tunnel-t.h"

struct health;
struct metrics_client;
struct reuse;
struct workers;
struct guard;

struct listener {
	struct handle h;
	struct sockaddr_any addr;
	bool accept_proxy;       /* connections start with a PROXY header (listen ... accept_proxy) */
	struct listener *next;
};

/*
 * The method label of tunnelgate_requests_total: the request's, RM_OTHER for any other
 * method and for a request whose head could not be parsed.
 */
enum req_method {
	RM_CONNECT, RM_GET, RM_POST, RM_HEAD, RM_PUT, RM_DELETE, RM_OPTIONS, RM_PATCH, RM_OTHER,
	RM_COUNT,
};

/* Answers are counted per status 100..599; any other status shares the last slot. */
#define ANSWER_CODE_MIN 100
#define ANSWER_CODES 501

/* The kind label of tunnelgate_upstream_errors_total (README.md, Metrics). */
enum upstream_err {
	UE_REFUSED,              /* connect(): ECONNREFUSED */
	UE_UNREACHABLE,          /* connect() failed otherwise: no route, host down, ... */
	UE_TIMEOUT,              /* connect_timeout_ms, or no answer within header_timeout_ms */
	UE_RESET,                /* reset, or closed before its answer was complete */
	UE_BAD_RESPONSE,         /* an answer the gateway cannot relay: malformed, too large */
	UE_RESOLVE,              /* a direct pool's target name did not resolve */
	UE_COUNT,
};

/* Upstream errors are counted for this many (pool, server) pairs; the last is "other". */
#define UPSTREAM_ERR_PAIRS 128

struct upstream_errs {
	char pool[CFG_NAME_MAX];   /* "-": failed before a pool was chosen (a rule's look-up) */
	char server[CFG_NAME_MAX]; /* a proxy's "ip:port", "-" for a direct pool */
	uint64_t n[UE_COUNT];
};

/* Request counters (the stages count them; tunnelctl stats and metrics.c show them). */
struct req_stats {
	uint64_t accepted, requests, rejected, upstream_errors, timeouts, bad_requests;
	uint64_t refused_per_client; /* connections closed at once: max_connections_per_client */
	uint64_t accept_pauses;  /* times the listeners stopped: max_connections or no fds */
	/* Every answer the gateway made or relayed, by method and status (conn_answered()). */
	uint64_t answers[RM_COUNT][ANSWER_CODES];
	struct upstream_errs uerr[UPSTREAM_ERR_PAIRS]; /* conn_upstream_error() */
	unsigned nuerr;
	struct hist connect;     /* dial start to connected, successful dials only */
	uint64_t upstream_reused; /* plain requests sent on a reused upstream connection */
};

/*
 * One per worker: each event loop (thread) has its own gateway with its own epoll
 * instance, listeners, connections, resolver and counters. What they share is
 * reached through pointers: the config (refcounted), the relay, the admission table,
 * the access log and the pool state (pool.c).
 */
struct gateway {
	/* loop.c */
	unsigned worker_id;      /* 0: the owner: signals, reload, control, metrics, checks */
	struct workers *workers; /* every worker (workers.c) */
	struct handle wake;      /* the mailbox (H_WAKE): calls from the owner */
	bool exit_now;           /* a second signal: leave the loop at once */
	unsigned *conns_total;   /* client connections of all workers (atomic): max_connections */
	struct config *cfg;      /* current config */
	const char *cfg_path;
	struct handle sigh;
	struct listener *listeners;
	struct resolver *resolver;
	struct handle resolver_h;
	struct tg_cgroup *cgroup; /* the daemon's own cgroup (pause = sockops), or NULL */
	struct guard *guard;     /* the XDP listener guard (guard.c), NULL when off; the owner's */
	bool stopping;
	uint64_t stop_deadline_ms;
	unsigned max_conns;      /* max_connections in effect */
	bool accept_paused;      /* listeners out of epoll until a connection slot frees */
	bool paused_fds;         /* ... because the descriptors ran out (else max_connections) */
	unsigned paused_conns;   /* connections open when the fds ran out */
	uint64_t paused_ms;

	/* control.c */
	struct handle ctl;       /* control socket listener */
	bool ctl_paused;         /* out of fds: not polled for a while (loop.c re-arms it) */
	uint64_t ctl_paused_ms;
	char ctl_path[108];

	/* metrics.c */
	struct handle metrics;   /* metrics_listen's listener; fd -1 when off or closed */
	struct metrics_client *mclients; /* connections to it, each for one request */
	unsigned nmclients;
	bool metrics_paused;     /* out of fds: not polled for a while (metrics_timeout()) */
	uint64_t metrics_paused_ms;

	/* conn.c */
	struct conn *conns;      /* every client connection */
	unsigned nconns;
	struct conn *graveyard;  /* closed this round; freed after the event batch */
	FILE *access_log;
	struct admit *admit;     /* connections per client address */
	struct reuse *reuse;     /* idle upstream connections (reuse.c); loop.c makes it */

	/* the stages */
	struct req_stats stats;

	/* health.c */
	struct health *health;   /* the active health checks of gw->cfg's pools */

	/* tunnel.c */
	struct tunnels tunnels;
};

#endif
