/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The HTTP exchange with the upstream (CS_CONNECTED, CS_RESP_HEAD, CS_RESP_BODY):
 * send the request head (a CONNECT, or a plain request rewritten for the next hop)
 * and a plain request's body, read the answer, and relay every answer but a 2xx to
 * CONNECT: interim heads, the final head and its body. A 2xx to CONNECT leaves in
 * CS_ESTABLISHED with its head queued for the client; the rest end in CS_REPLY.
 */
#ifndef TUNNELGATE_HTTP_FWD_H
#define TUNNELGATE_HTTP_FWD_H

#include "conn-t.h"

/* CS_CONNECTED: queue the request head (and what there is of the body) and send it. */
void http_fwd_start(struct conn *c);
/* The client socket is readable while a plain request's body is still coming. */
void http_fwd_body_read(struct conn *c);
/* The upstream socket reported @events. */
void http_fwd_upstream_event(struct conn *c, uint32_t events);

#endif
