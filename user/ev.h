/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The poller: one epoll instance per worker thread, and the handle every polled fd is
 * registered with. The lowest layer of the daemon: it calls nothing of ours.
 */
#ifndef TUNNELGATE_EV_H
#define TUNNELGATE_EV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

enum handle_kind {
	H_LISTEN, H_CLIENT, H_UPSTREAM, H_SIGNAL, H_CONTROL, H_CTL_CLIENT, H_RESOLVER,
	H_METRICS,               /* metrics_listen's listener (metrics.c) */
	H_METRICS_CLIENT,        /* a connection to it, one GET /metrics */
	H_HEALTH,                /* an active health check's socket (health.c) */
	H_IDLE,                  /* an idle upstream connection kept for reuse (reuse.c) */
	H_WAKE,                  /* a worker's mailbox (wbox.c): calls from the owner */
};

/* What epoll's data.ptr points at. */
struct handle {
	enum handle_kind kind;
	int fd;                  /* -1 when closed */
	uint32_t events;         /* the mask epoll has now */
	bool in_epoll;
	void *owner;             /* struct conn, struct listener, struct ctl_client, ... */
};

/* Create the epoll instance. Returns 0 or -errno. */
int ev_open(void);
/* Close it. */
void ev_close(void);
/* Wait for events, as epoll_wait(). */
int ev_wait(struct epoll_event *ev, int max, int timeout_ms);

/*
 * Poll @h for @events (added on first use; nothing is done for an unchanged mask).
 * No events takes @h out of epoll, so a hung-up socket cannot report for ever.
 */
int ev_set(struct handle *h, uint32_t events);
/* Stop polling @h but keep its fd (a socket in error reports EPOLLERR whatever the mask). */
void ev_del(struct handle *h);
/* Close @h's fd, which takes it out of epoll, and mark the handle closed. */
void ev_forget(struct handle *h);

/* CLOCK_MONOTONIC in ms. */
uint64_t now_ms(void);
/* CLOCK_MONOTONIC in µs, for durations shorter than a few ms (upstream connects). */
uint64_t now_us(void);

#endif
