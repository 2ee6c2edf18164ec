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
#include "tunnel-t.h"

struct listener {
	struct handle h;
	struct sockaddr_any addr;
	struct listener *next;
};

/* Request counters (the stages count them; tunnelctl stats shows them). */
struct req_stats {
	uint64_t accepted, requests, rejected, upstream_errors, timeouts, bad_requests;
	uint64_t refused_per_client; /* connections closed at once: max_connections_per_client */
	uint64_t accept_pauses;  /* times the listeners stopped: max_connections or no fds */
};

struct gateway {
	/* loop.c */
	struct config *cfg;      /* current config */
	const char *cfg_path;
	struct handle sigh;
	struct listener *listeners;
	struct resolver *resolver;
	struct handle resolver_h;
	struct tg_cgroup *cgroup; /* the daemon's own cgroup (pause = sockops), or NULL */
	bool stopping;
	uint64_t stop_deadline_ms;
	unsigned max_conns;      /* max_connections in effect */
	bool accept_paused;      /* listeners out of epoll until a connection slot frees */
	unsigned paused_conns;   /* connections open when the fds ran out */
	uint64_t paused_ms, paused_log_ms;

	/* control.c */
	struct handle ctl;       /* control socket listener */
	bool ctl_paused;         /* out of fds: not polled for a while (loop.c re-arms it) */
	uint64_t ctl_paused_ms;
	char ctl_path[108];

	/* conn.c */
	struct conn *conns;      /* every client connection */
	unsigned nconns;
	struct conn *graveyard;  /* closed this round; freed after the event batch */
	FILE *access_log;
	struct admit *admit;     /* connections per client address */

	/* the stages */
	struct req_stats stats;

	/* tunnel.c */
	struct tunnels tunnels;
};

#endif
