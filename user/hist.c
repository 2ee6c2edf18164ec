// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Histograms of durations with fixed buckets. */
#include "hist.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Loopback and LAN dials take under a ms, WAN ones tens of ms; connect_timeout_ms ends it. */
static const uint64_t connect_le[] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

/* From a refused TLS handshake to a day-long stream. */
static const uint64_t tunnel_le[] = {
	100000, 500000, 1000000, 5000000, 10000000, 30000000, 60000000, 300000000,
	900000000, 3600000000ULL, 14400000000ULL, 86400000000ULL,
};

_Static_assert(ARRAY_LEN(connect_le) <= HIST_MAX_BUCKETS, "raise HIST_MAX_BUCKETS");
_Static_assert(ARRAY_LEN(tunnel_le) <= HIST_MAX_BUCKETS, "raise HIST_MAX_BUCKETS");

const struct hist_spec hist_connect = { connect_le, ARRAY_LEN(connect_le) };
const struct hist_spec hist_tunnel = { tunnel_le, ARRAY_LEN(tunnel_le) };

void hist_observe(struct hist *h, const struct hist_spec *s, uint64_t us)
{
	unsigned i = 0;

	while (i < s->n && us > s->le_us[i])
		i++;
	if (i < s->n)
		h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}
