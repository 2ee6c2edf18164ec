/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A worker's mailbox: another thread runs a function on the worker's own thread and
 * waits for it, so that a worker's connections, listeners and epoll instance are only
 * ever touched by that worker. The owner of the daemon (worker 0) uses it for the rare
 * operations that concern every worker (reload, drain, tunnelctl list and kill,
 * metrics): the event loops themselves never wait on each other.
 *
 * A library: it calls nothing of the daemon's.
 */
#ifndef TUNNELGATE_WBOX_H
#define TUNNELGATE_WBOX_H

struct wbox;

/* A mailbox with its eventfd. NULL with errno on failure. */
struct wbox *wbox_new(void);
/* Free @b; no call may be waiting. Safe on NULL. */
void wbox_free(struct wbox *b);

/* The fd the serving thread polls for EPOLLIN; then it calls wbox_serve(). */
int wbox_fd(const struct wbox *b);

/*
 * Run @fn(@arg) on the thread that serves @b and wait until it has returned; its
 * result is returned. -ESHUTDOWN without running it once the box is closed.
 */
int wbox_call(struct wbox *b, int (*fn)(void *arg), void *arg);

/* In the serving thread: run every call waiting, in order. */
void wbox_serve(struct wbox *b);

/* The serving thread is leaving: calls waiting now and later get -ESHUTDOWN. */
void wbox_close(struct wbox *b);

#endif
