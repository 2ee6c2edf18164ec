/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Reaching the upstream (CS_ROUTE, CS_DIAL): pick a server of the pool, or resolve
 * a direct pool's target, and connect; one retry on another server when a proxy
 * fails. Leaves in CS_CONNECTED, CS_ESTABLISHED (a direct CONNECT: the 200 is queued
 * for the client) or CS_REPLY.
 */
#ifndef TUNNELGATE_UPSTREAM_H
#define TUNNELGATE_UPSTREAM_H

#include "conn-t.h"

struct resolve_req;

/* CS_ROUTE: pick the server and dial. */
void upstream_route(struct conn *c);
/* CS_DIAL: the upstream socket reported @events. */
void upstream_event(struct conn *c, uint32_t events);
/*
 * CS_LOOKUP: resolve the target before the rules run (a rule has dest_in or
 * dest_not_in); the answer leaves in CS_RULES with c->uaddr set.
 */
void upstream_lookup(struct conn *c);
/* The name look-up @req of @c was answered. */
void upstream_resolved(struct conn *c, const struct resolve_req *req);
/* The upstream failed with -errno @err before it answered: retry once, or 502. */
void upstream_failed(struct conn *c, int err);
/* CS_DIAL's deadline passed. */
void upstream_timeout(struct conn *c);
/* CS_QUEUED: queue_timeout_ms passed without a free server: 503. */
void upstream_queue_timeout(struct conn *c);

#endif
