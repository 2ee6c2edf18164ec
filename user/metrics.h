/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * metrics_listen: GET /metrics in the Prometheus text exposition format (version 0.0.4).
 * The numbers are those the stages already count (struct req_stats, struct
 * relay_stats) and what the open tunnels hold now. Top layer: loop.c opens the
 * listener before the privilege drop and hands it its epoll events, control.c shows
 * the same numbers in `tunnelctl stats`; nothing below calls it.
 */
#ifndef TUNNELGATE_METRICS_H
#define TUNNELGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "gateway-t.h"
#include "hist.h"

/* The label values of enum req_method and enum upstream_err. */
extern const char *const metrics_method_names[RM_COUNT];
extern const char *const metrics_uerr_names[UE_COUNT];

/* What is summed over open and closed tunnels, for /metrics and tunnelctl stats alike. */
struct metrics_snap {
	unsigned open_sockmap, open_splice;
	struct tunnel_paths paths;
};

/*
 * Every worker's numbers added up, each read on its own worker's thread: requests,
 * closed tunnels, open tunnels now, and the kernel-relayed open tunnels' bytes
 * (relayed in the kernel, copied by the daemon).
 */
struct gw_totals {
	struct req_stats stats;
	struct relay_stats relay;
	struct metrics_snap snap; /* closed tunnels' bytes by path plus the open ones' */
	uint64_t kernel_open, copied_open;
	unsigned conns, tunnels_open;
	unsigned paused;         /* workers not accepting now */
};

/* Fill @t (zeroed here) from every worker. Only the owner calls it. */
void metrics_totals(struct gateway *gw, struct gw_totals *t);

/* The text writer: lines appended to @out; @err is the first failure (-ENOMEM), sticky. */
struct mtext {
	struct obuf out;
	int err;
};

/* A label; its value is escaped as the format asks (backslash, double quote, newline). */
struct mlabel {
	const char *name, *value;
};

/* The # HELP and # TYPE lines of metric family @name (@type: counter, gauge, histogram). */
void mtext_family(struct mtext *m, const char *name, const char *type, const char *help);
/* One sample: `name{l0="v0",...} v`, or `name v` when @nl is 0. */
void mtext_sample(struct mtext *m, const char *name, const struct mlabel *l, unsigned nl,
		  uint64_t v);
/* The _bucket (cumulative, then le="+Inf"), _sum (seconds) and _count samples of @h. */
void mtext_hist(struct mtext *m, const char *name, const struct hist *h,
		const struct hist_spec *s);
/* @us as decimal seconds without trailing zeros ("0.0005", "2.5", "10") into @out. */
void mtext_seconds(char *out, size_t len, uint64_t us);
/* The code label of answers[][@slot]: "100".."599", or "other". */
void metrics_code_name(unsigned slot, char *out, size_t len);

/* Every metric of @gw (README.md, Metrics) into @m. */
void metrics_write(struct gateway *gw, struct mtext *m);

/* Open metrics_listen's listener if it is set; returns 0 or -errno (logged). */
int metrics_open(struct gateway *gw);
/* An epoll event on the listener (H_METRICS) or a connection to it (H_METRICS_CLIENT). */
void metrics_event(struct gateway *gw, struct handle *h, uint32_t events);
/*
 * Close the connections past their deadline, poll the listener again after running
 * out of fds; returns ms until the next of these is due, or -1 for none.
 */
int metrics_expire(struct gateway *gw);
/* Close the listener (draining); the connections being answered stay. */
void metrics_close_listener(struct gateway *gw);
/* Close the listener and every connection. */
void metrics_close(struct gateway *gw);

#endif
