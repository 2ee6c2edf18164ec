/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A client connection's way through the stages: the one place that dispatches on
 * its state. Events, deadlines and name look-up answers come in here; each goes to
 * the stage that owns the state, and the connection then moves on through every
 * passing state (see enum conn_state) until it waits again.
 */
#ifndef TUNNELGATE_STREAM_H
#define TUNNELGATE_STREAM_H

#include <stdint.h>

#include "conn-t.h"

struct resolve_req;

/* A connection was accepted: start reading its request. */
void stream_start(struct conn *c);
/* An epoll event on the client or upstream socket of @c. */
void stream_event(struct conn *c, struct handle *h, uint32_t events);
/* @c's deadline has passed. */
void stream_timeout(struct conn *c);
/* Route the queued clients of pools whose servers got room (pool_queue_next()). */
void stream_run_queues(void);
/* The name look-up @req of @c was answered. */
void stream_resolved(struct conn *c, const struct resolve_req *req);

#endif
