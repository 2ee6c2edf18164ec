/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Histograms of durations with fixed buckets: the stages observe, metrics.c writes
 * them out (Prometheus `le` buckets). A library: it calls nothing of ours.
 */
#ifndef TUNNELGATE_HIST_H
#define TUNNELGATE_HIST_H

#include <stdint.h>

#define HIST_MAX_BUCKETS 16

/* The upper bounds of a histogram's buckets in µs, ascending (README.md, Metrics). */
struct hist_spec {
	const uint64_t *le_us;
	unsigned n;
};

struct hist {
	/* Observations in (le_us[i - 1], le_us[i]]: not cumulative, the writer sums them. */
	uint64_t bucket[HIST_MAX_BUCKETS];
	uint64_t count;          /* all of them, those above the last bound included */
	uint64_t sum_us;
};

/* tunnelgate_upstream_connect_seconds: 0.5 ms .. 10 s. */
extern const struct hist_spec hist_connect;
/* tunnelgate_tunnel_duration_seconds: 0.1 s .. 1 day. */
extern const struct hist_spec hist_tunnel;

/* Count one observation of @us µs in @h, whose bounds are @s's. */
void hist_observe(struct hist *h, const struct hist_spec *s, uint64_t us);

#endif
