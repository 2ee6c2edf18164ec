// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Request and relay counters: found, and added up over the workers. */
#include <stdio.h>
#include <string.h>

#include "stats.h"

struct upstream_errs *stats_uerr(struct req_stats *s, const char *pool, const char *server)
{
	struct upstream_errs *e;

	for (unsigned i = 0; i < s->nuerr; i++) {
		e = &s->uerr[i];
		if (!strcmp(e->pool, pool) && !strcmp(e->server, server))
			return e;
	}
	if (s->nuerr == UPSTREAM_ERR_PAIRS)
		return &s->uerr[UPSTREAM_ERR_PAIRS - 1];
	e = &s->uerr[s->nuerr++];
	if (s->nuerr == UPSTREAM_ERR_PAIRS)
		pool = server = "other";
	snprintf(e->pool, sizeof(e->pool), "%s", pool);
	snprintf(e->server, sizeof(e->server), "%s", server);
	return e;
}

static void hist_add(struct hist *to, const struct hist *from)
{
	for (unsigned i = 0; i < HIST_MAX_BUCKETS; i++)
		to->bucket[i] += from->bucket[i];
	to->count += from->count;
	to->sum_us += from->sum_us;
}

void stats_add(struct req_stats *to, const struct req_stats *from)
{
	to->accepted += from->accepted;
	to->requests += from->requests;
	to->rejected += from->rejected;
	to->upstream_errors += from->upstream_errors;
	to->timeouts += from->timeouts;
	to->bad_requests += from->bad_requests;
	to->refused_per_client += from->refused_per_client;
	to->accept_pauses += from->accept_pauses;
	to->upstream_reused += from->upstream_reused;
	for (unsigned i = 0; i < RM_COUNT; i++)
		for (unsigned j = 0; j < ANSWER_CODES; j++)
			to->answers[i][j] += from->answers[i][j];
	for (unsigned i = 0; i < from->nuerr; i++) {
		const struct upstream_errs *e = &from->uerr[i];
		struct upstream_errs *t = stats_uerr(to, e->pool, e->server);

		for (unsigned k = 0; k < UE_COUNT; k++)
			t->n[k] += e->n[k];
	}
	hist_add(&to->connect, &from->connect);
}

void stats_add_paths(struct tunnel_paths *to, const struct tunnel_paths *from)
{
	for (int d = 0; d < 2; d++) {
		to->kernel[d] += from->kernel[d];
		to->copied[d] += from->copied[d];
		to->spliced[d] += from->spliced[d];
	}
}

void stats_add_relay(struct relay_stats *to, const struct relay_stats *from)
{
	to->tunnels_total += from->tunnels_total;
	to->tunnels_sockmap += from->tunnels_sockmap;
	to->tunnels_splice += from->tunnels_splice;
	to->holds += from->holds;
	to->pauses += from->pauses;
	to->bytes_up += from->bytes_up;
	to->bytes_down += from->bytes_down;
	to->bytes_kernel += from->bytes_kernel;
	to->bytes_copied += from->bytes_copied;
	stats_add_paths(&to->paths, &from->paths);
	hist_add(&to->duration, &from->duration);
}
