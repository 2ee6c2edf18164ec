/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The counters of struct req_stats and struct relay_stats: each worker keeps its own,
 * and tunnelctl stats and /metrics add them up. A library: it calls nothing above it.
 */
#ifndef TUNNELGATE_STATS_H
#define TUNNELGATE_STATS_H

#include "gateway-t.h"

/*
 * The upstream error counters of (@pool, @server) in @s, made on first use; past
 * UPSTREAM_ERR_PAIRS pairs, the shared "other"/"other".
 */
struct upstream_errs *stats_uerr(struct req_stats *s, const char *pool, const char *server);

/* Add @from to @to, counter by counter (upstream errors matched by pool and server). */
void stats_add(struct req_stats *to, const struct req_stats *from);

/* Add @from to @to. */
void stats_add_relay(struct relay_stats *to, const struct relay_stats *from);

/* Add @from to @to. */
void stats_add_paths(struct tunnel_paths *to, const struct tunnel_paths *from);

#endif
