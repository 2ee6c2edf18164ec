// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The Prometheus text writer and the histograms: seconds as the `le` and _sum values
 * are written, bucket edges, label escaping, and a whole exposition of a made-up
 * gateway with one open tunnel (its counters come from __wrap_tunnel_counters).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "metrics.h"

/* What tunnel.c would read from the relay for an open tunnel. */
static struct tunnel_counts open_counts;

void __wrap_tunnel_counters(const struct tunnel *t, struct tunnel_counts *n);
void __wrap_tunnel_counters(const struct tunnel *t, struct tunnel_counts *n)
{
	(void)t;
	*n = open_counts;
}

/* What the guard's per-CPU counters would add up to. */
static struct guard_stats guard_counts;

void __wrap_guard_counters(struct guard *g, struct guard_stats *out);
void __wrap_guard_counters(struct guard *g, struct guard_stats *out)
{
	(void)g;
	*out = guard_counts;
}

/* @m's text as a NUL-terminated string (owned by @m). */
static const char *text(struct mtext *m)
{
	assert_int_equal(m->err, 0);
	assert_int_equal(obuf_put(&m->out, "", 1), 0);
	m->out.len--;
	return m->out.data;
}

static void test_seconds(void **state)
{
	static const struct {
		uint64_t us;
		const char *want;
	} cases[] = {
		{ 0, "0" },           { 1, "0.000001" },         { 500, "0.0005" },
		{ 1000, "0.001" },    { 1000001, "1.000001" },   { 1234560, "1.23456" },
		{ 2500000, "2.5" },   { 10000000, "10" },        { 86400000000ULL, "86400" },
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mtext_seconds(out, sizeof(out), cases[i].us);
		assert_string_equal(out, cases[i].want);
	}
}

/* An observation on a bound is in that bound's bucket; above the last, only in count. */
static void test_observe_edges(void **state)
{
	const struct hist_spec *s = &hist_connect;
	struct hist h = { 0 };

	(void)state;
	hist_observe(&h, s, 0);
	hist_observe(&h, s, s->le_us[0]);
	hist_observe(&h, s, s->le_us[0] + 1);
	hist_observe(&h, s, s->le_us[s->n - 1]);
	hist_observe(&h, s, s->le_us[s->n - 1] + 1);
	assert_int_equal(h.bucket[0], 2);
	assert_int_equal(h.bucket[1], 1);
	assert_int_equal(h.bucket[s->n - 1], 1);
	assert_int_equal(h.count, 5);
	assert_int_equal(h.sum_us, 2 * s->le_us[0] + 1 + 2 * s->le_us[s->n - 1] + 1);
	/* The bounds go up, and the tunnel histogram's too. */
	for (unsigned i = 1; i < s->n; i++)
		assert_true(s->le_us[i] > s->le_us[i - 1]);
	for (unsigned i = 1; i < hist_tunnel.n; i++)
		assert_true(hist_tunnel.le_us[i] > hist_tunnel.le_us[i - 1]);
}

static void test_hist_text(void **state)
{
	static const uint64_t le[] = { 1000, 2000000 };
	const struct hist_spec s = { le, 2 };
	struct hist h = { 0 };
	struct mtext m = { 0 };

	(void)state;
	hist_observe(&h, &s, 500);
	hist_observe(&h, &s, 1500);
	hist_observe(&h, &s, 3000000);
	mtext_hist(&m, "x_seconds", &h, &s);
	assert_string_equal(text(&m), "x_seconds_bucket{le=\"0.001\"} 1\n"
				      "x_seconds_bucket{le=\"2\"} 2\n"
				      "x_seconds_bucket{le=\"+Inf\"} 3\n"
				      "x_seconds_sum 3.002\n"
				      "x_seconds_count 3\n");
	obuf_free(&m.out);
}

static void test_samples(void **state)
{
	struct mtext m = { 0 };

	(void)state;
	mtext_family(&m, "a_total", "counter", "Things.");
	mtext_sample(&m, "a_total", NULL, 0, 18446744073709551615ULL);
	mtext_sample(&m, "a_total", (const struct mlabel[]){ { "x", "a\"b\\c\nd" }, { "y", "" } },
		     2, 7);
	assert_string_equal(text(&m), "# HELP a_total Things.\n"
				      "# TYPE a_total counter\n"
				      "a_total 18446744073709551615\n"
				      "a_total{x=\"a\\\"b\\\\c\\nd\",y=\"\"} 7\n");
	obuf_free(&m.out);
}

static void test_code_names(void **state)
{
	char out[8];

	(void)state;
	metrics_code_name(0, out, sizeof(out));
	assert_string_equal(out, "100");
	metrics_code_name(403 - ANSWER_CODE_MIN, out, sizeof(out));
	assert_string_equal(out, "403");
	metrics_code_name(ANSWER_CODES - 2, out, sizeof(out));
	assert_string_equal(out, "599");
	metrics_code_name(ANSWER_CODES - 1, out, sizeof(out));
	assert_string_equal(out, "other");
}

/* A gateway with some of everything counted, and one open kernel relay tunnel. */
static struct gateway *made_up_gateway(struct conn *c, struct tunnel *t)
{
	static struct gateway g; /* static: a failed assert leaks nothing */
	struct gateway *gw = &g;
	struct relay_stats *r = &gw->tunnels.stats;

	memset(gw, 0, sizeof(*gw)); /* each test starts from the same counts */

	gw->stats.accepted = 9;
	gw->nconns = 1;
	gw->stats.answers[RM_CONNECT][200 - ANSWER_CODE_MIN] = 3;
	gw->stats.answers[RM_OTHER][400 - ANSWER_CODE_MIN] = 1;
	gw->stats.answers[RM_GET][ANSWER_CODES - 1] = 2;
	gw->stats.nuerr = 1;
	strcpy(gw->stats.uerr[0].pool, "p1");
	strcpy(gw->stats.uerr[0].server, "127.0.0.1:1");
	gw->stats.uerr[0].n[UE_REFUSED] = 4;
	hist_observe(&gw->stats.connect, &hist_connect, 700);
	gw->stats.upstream_reused = 5;
	r->tunnels_sockmap = 2;
	r->tunnels_splice = 1;
	r->paths = (struct tunnel_paths){ .kernel = { 100, 200 }, .copied = { 10, 20 },
					  .spliced = { 1000, 2000 } };
	hist_observe(&r->duration, &hist_tunnel, 2000000);
	t->kind = RK_SOCKMAP;
	c->state = CS_TUNNEL;
	c->tun = t;
	gw->conns = c;
	open_counts = (struct tunnel_counts){ .up = 50, .down = 70, .copied_up = 5,
					      .copied_down = 7 };
	return gw;
}

static void test_exposition(void **state)
{
	static const char *const want[] = {
		"# TYPE tunnelgate_connections_accepted_total counter\n",
		"\ntunnelgate_connections_accepted_total 9\n",
		"\ntunnelgate_connections_open 1\n",
		"\ntunnelgate_requests_total{method=\"CONNECT\",code=\"200\"} 3\n",
		"\ntunnelgate_requests_total{method=\"GET\",code=\"other\"} 2\n",
		"\ntunnelgate_requests_total{method=\"other\",code=\"400\"} 1\n",
		"\ntunnelgate_upstream_errors_total{pool=\"p1\",server=\"127.0.0.1:1\",kind=\"refused\"} 4\n",
		"\ntunnelgate_upstream_connect_seconds_bucket{le=\"0.001\"} 1\n",
		"\ntunnelgate_upstream_connect_seconds_sum 0.0007\n",
		"\ntunnelgate_upstream_reused_total 5\n",
		"\ntunnelgate_tunnels_total{relay=\"sockmap\"} 2\n",
		"\ntunnelgate_tunnels_total{relay=\"splice\"} 1\n",
		"\ntunnelgate_tunnels_open{relay=\"sockmap\"} 1\n",
		"\ntunnelgate_tunnels_open{relay=\"splice\"} 0\n",
		/* closed plus open: 100 + (50 - 5), 10 + 5, 200 + (70 - 7), 20 + 7 */
		"\ntunnelgate_tunnel_bytes_total{direction=\"up\",path=\"kernel\"} 145\n",
		"\ntunnelgate_tunnel_bytes_total{direction=\"up\",path=\"copied\"} 15\n",
		"\ntunnelgate_tunnel_bytes_total{direction=\"down\",path=\"kernel\"} 263\n",
		"\ntunnelgate_tunnel_bytes_total{direction=\"down\",path=\"copied\"} 27\n",
		"\ntunnelgate_tunnel_bytes_total{direction=\"up\",path=\"splice\"} 1000\n",
		"\ntunnelgate_tunnel_bytes_total{direction=\"down\",path=\"splice\"} 2000\n",
		"\ntunnelgate_tunnel_duration_seconds_bucket{le=\"1\"} 0\n",
		"\ntunnelgate_tunnel_duration_seconds_bucket{le=\"5\"} 1\n",
		"\ntunnelgate_tunnel_duration_seconds_count 1\n",
	};
	struct conn c = { 0 };
	struct tunnel t = { 0 };
	struct gateway *gw = made_up_gateway(&c, &t);
	struct mtext m = { 0 };
	const char *s;

	(void)state;
	metrics_write(gw, &m);
	s = text(&m);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(s, want[i]))
			fail_msg("no line %s in:\n%s", want[i], s);
	/* Nothing counted, nothing written: only the pairs seen get a sample. */
	assert_null(strstr(s, "method=\"POST\""));
	assert_null(strstr(s, "kind=\"timeout\""));
	assert_null(strstr(s, "tunnelgate_guard_packets_total")); /* no guard: no family */
	obuf_free(&m.out);
}

/* With the XDP guard on, its verdicts as one counter family. */
static void test_guard_family(void **state)
{
	struct conn c = { 0 };
	struct tunnel t = { 0 };
	struct gateway *gw = made_up_gateway(&c, &t);
	struct mtext m = { 0 };
	const char *s;

	(void)state;
	gw->guard = (struct guard *)&guard_counts; /* never read: the counters are wrapped */
	guard_counts = (struct guard_stats){ .passed = 11, .denied = 22, .rate_limited = 33,
					     .not_judged = 44 };
	metrics_write(gw, &m);
	s = text(&m);
	assert_non_null(strstr(s, "# TYPE tunnelgate_guard_packets_total counter\n"));
	assert_non_null(strstr(s, "\ntunnelgate_guard_packets_total{verdict=\"passed\"} 11\n"));
	assert_non_null(strstr(s, "\ntunnelgate_guard_packets_total{verdict=\"denied\"} 22\n"));
	assert_non_null(strstr(s, "\ntunnelgate_guard_packets_total{verdict=\"rate_limited\"} 33\n"));
	assert_null(strstr(s, "verdict=\"not_judged\""));
	gw->guard = NULL;
	obuf_free(&m.out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seconds),
		cmocka_unit_test(test_guard_family),
		cmocka_unit_test(test_observe_edges),
		cmocka_unit_test(test_hist_text),
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_code_names),
		cmocka_unit_test(test_exposition),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
