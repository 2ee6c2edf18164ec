/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Connections per client address, for max_connections_per_client: a hash table of
 * counts by IP (IPv4 mapped), kept for every connection whatever the limit, so a
 * reload that sets one finds the counts right.
 */
#ifndef TUNNELGATE_ADMIT_H
#define TUNNELGATE_ADMIT_H

#include "addr.h"

struct admit;

struct admit *admit_new(void);
void admit_free(struct admit *a);
/* Open connections from @client's address. */
unsigned admit_count(struct admit *a, const struct sockaddr_any *client);
/* One more from @client. Returns 0 or -ENOMEM. */
int admit_add(struct admit *a, const struct sockaddr_any *client);
/* One fewer from @client. */
void admit_del(struct admit *a, const struct sockaddr_any *client);

#endif
