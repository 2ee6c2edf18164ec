/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The client's request head (CS_REQ_HEAD): read it, check it, apply the rules. A
 * request the rules let through leaves in CS_ROUTE with c->pool set; a bad or
 * rejected one in CS_REPLY.
 */
#ifndef TUNNELGATE_REQUEST_H
#define TUNNELGATE_REQUEST_H

#include "conn-t.h"

/* The client socket is readable. */
void request_read(struct conn *c);
/* Parse what cbuf holds (after a read, or left over from the previous request). */
void request_parse(struct conn *c);
/*
 * Apply the rules to c->rin (CS_RULES comes back here once the target's address is
 * known): CS_ROUTE, CS_REPLY, or CS_LOOKUP when a rule needs that address first.
 */
void request_route(struct conn *c);

#endif
