/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The event loops of the daemon: the owner's (worker 0, the main thread) and the
 * other workers' threads, each with a gateway of its own. The owner reaches another
 * worker's gateway only by running a function on that worker's thread (wbox.c), so
 * that no lock guards a connection, a listener or an epoll instance.
 */
#ifndef TUNNELGATE_WORKERS_H
#define TUNNELGATE_WORKERS_H

#include <pthread.h>
#include <stdbool.h>

#include "config.h"
#include "gateway-t.h"

struct wbox;

struct worker {
	struct gateway *gw;
	struct wbox *box;        /* NULL for the owner: it runs its calls inline */
	int (*main)(struct gateway *gw); /* the thread's body: the worker's loop */
	pthread_t thread;
	bool running;            /* the thread was started and not joined yet */
	int rc;                  /* what main returned */
};

struct workers {
	unsigned n;
	unsigned conns;          /* client connections of all workers (atomic) */
	struct worker w[CFG_MAX_WORKERS];
};

/*
 * Run @fn(worker's gateway, @arg) on every worker's own thread in turn, the owner's
 * inline, waiting for each. Only the owner calls it. Returns 0, or the first non-zero
 * result (-ESHUTDOWN for a worker that has left its loop); every worker is tried.
 */
int workers_each(struct gateway *gw, int (*fn)(struct gateway *gw, void *arg), void *arg);

/*
 * Start worker @k's thread (ws->w[k].gw set): it runs @main(gw), which serves the
 * worker's mailbox (ws->w[k].box, made here) in its loop. Returns 0 or -errno.
 */
int workers_start(struct workers *ws, unsigned k, int (*main)(struct gateway *gw));

/*
 * Wait for every started worker thread to end and free its mailbox (the caller frees
 * its gateway and clears w[k].gw). Returns 1 if one of them failed.
 */
int workers_join(struct workers *ws);

#endif
