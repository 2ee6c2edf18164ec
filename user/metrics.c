// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * metrics_listen: the Prometheus text exposition of the daemon's counters, and the
 * smallest HTTP server that serves it: one request per connection, a head of at
 * most METRICS_MAX_REQUEST bytes, METRICS_MAX_CLIENTS connections at once, each
 * closed after METRICS_CLIENT_MS whatever it does. Nothing blocks: every socket is
 * non-blocking and polled by the loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guard.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "relay_shared.h"
#include "stats.h"
#include "tunnel.h"
#include "workers.h"

#define METRICS_MAX_REQUEST 4096 /* request head, bytes; larger gets 431 */
#define METRICS_MAX_CLIENTS 16   /* more at once are closed unanswered */
#define METRICS_CLIENT_MS 5000   /* a connection's whole life */
#define METRICS_RETRY_MS 1000    /* out of fds: accept again after this */
#define METRICS_ACCEPT_BATCH 16

struct metrics_client {
	struct handle h;
	struct metrics_client *next; /* gw->mclients */
	uint64_t deadline_ms;
	char req[METRICS_MAX_REQUEST];
	size_t rlen;
	struct obuf out;
	bool done;               /* answered and shut: reading until the client closes */
};

const char *const metrics_method_names[RM_COUNT] = {
	[RM_CONNECT] = "CONNECT", [RM_GET] = "GET",         [RM_POST] = "POST",
	[RM_HEAD] = "HEAD",       [RM_PUT] = "PUT",         [RM_DELETE] = "DELETE",
	[RM_OPTIONS] = "OPTIONS", [RM_PATCH] = "PATCH",     [RM_OTHER] = "other",
};

const char *const metrics_uerr_names[UE_COUNT] = {
	[UE_REFUSED] = "refused", [UE_UNREACHABLE] = "unreachable", [UE_TIMEOUT] = "timeout",
	[UE_RESET] = "reset",     [UE_BAD_RESPONSE] = "bad_response", [UE_RESOLVE] = "resolve",
};

/* On a worker's thread: its counters and its open tunnels, added to @arg's totals. */
static int add_worker(struct gateway *gw, void *arg)
{
	struct gw_totals *t = arg;

	stats_add(&t->stats, &gw->stats);
	stats_add_relay(&t->relay, &gw->tunnels.stats);
	stats_add_paths(&t->snap.paths, &gw->tunnels.stats.paths);
	t->conns += gw->nconns;
	t->tunnels_open += gw->tunnels.open;
	t->paused += gw->accept_paused;
	for (const struct conn *c = gw->conns; c; c = c->next) {
		struct tunnel_counts n;

		if (c->state != CS_TUNNEL)
			continue;
		if (c->tun->kind == RK_SOCKMAP)
			t->snap.open_sockmap++;
		else
			t->snap.open_splice++;
		tunnel_counters(c->tun, &n);
		tunnel_split_bytes(c->tun->kind, &n, &t->snap.paths);
		if (c->tun->kind != RK_SOCKMAP)
			continue;
		t->kernel_open += n.up + n.down - n.copied_up - n.copied_down;
		t->copied_open += n.copied_up + n.copied_down;
	}
	return 0;
}

void metrics_totals(struct gateway *gw, struct gw_totals *t)
{
	memset(t, 0, sizeof(*t));
	workers_each(gw, add_worker, t);
}

/* ---- the text writer ---- */

static void put(struct mtext *m, const char *p, size_t n)
{
	if (!m->err && n)
		m->err = obuf_put(&m->out, p, n);
}

static void put_str(struct mtext *m, const char *s)
{
	put(m, s, strlen(s));
}

static void put_escaped(struct mtext *m, const char *s)
{
	while (*s) {
		size_t plain = strcspn(s, "\\\"\n");

		put(m, s, plain);
		s += plain;
		if (!*s)
			break;
		put(m, *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : "\\n", 2);
		s++;
	}
}

void mtext_family(struct mtext *m, const char *name, const char *type, const char *help)
{
	put_str(m, "# HELP ");
	put_str(m, name);
	put_str(m, " ");
	put_str(m, help);
	put_str(m, "\n# TYPE ");
	put_str(m, name);
	put_str(m, " ");
	put_str(m, type);
	put_str(m, "\n");
}

static void sample_text(struct mtext *m, const char *name, const struct mlabel *l,
			unsigned nl, const char *value)
{
	put_str(m, name);
	for (unsigned i = 0; i < nl; i++) {
		put_str(m, i ? "," : "{");
		put_str(m, l[i].name);
		put_str(m, "=\"");
		put_escaped(m, l[i].value);
		put_str(m, "\"");
	}
	put_str(m, nl ? "} " : " ");
	put_str(m, value);
	put_str(m, "\n");
}

void mtext_sample(struct mtext *m, const char *name, const struct mlabel *l, unsigned nl,
		  uint64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, v);
	sample_text(m, name, l, nl, num);
}

void mtext_seconds(char *out, size_t len, uint64_t us)
{
	unsigned frac = us % 1000000;
	int n;

	if (!frac) {
		snprintf(out, len, "%" PRIu64, us / 1000000);
		return;
	}
	n = snprintf(out, len, "%" PRIu64 ".%06u", us / 1000000, frac);
	if (n < 0 || (size_t)n >= len)
		return;
	while (out[n - 1] == '0')
		out[--n] = '\0';
}

void mtext_hist(struct mtext *m, const char *name, const struct hist *h,
		const struct hist_spec *s)
{
	char bucket[96], other[96], le[24];
	uint64_t below = 0;

	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	for (unsigned i = 0; i < s->n; i++) {
		below += h->bucket[i];
		mtext_seconds(le, sizeof(le), s->le_us[i]);
		mtext_sample(m, bucket, &(struct mlabel){ "le", le }, 1, below);
	}
	mtext_sample(m, bucket, &(struct mlabel){ "le", "+Inf" }, 1, h->count);
	snprintf(other, sizeof(other), "%s_sum", name);
	mtext_seconds(le, sizeof(le), h->sum_us);
	sample_text(m, other, NULL, 0, le);
	snprintf(other, sizeof(other), "%s_count", name);
	mtext_sample(m, other, NULL, 0, h->count);
}

void metrics_code_name(unsigned slot, char *out, size_t len)
{
	if (slot < ANSWER_CODES - 1)
		snprintf(out, len, "%u", ANSWER_CODE_MIN + slot);
	else
		snprintf(out, len, "other");
}

/* ---- the metrics ---- */

#define ACCEPTED "tunnelgate_connections_accepted_total"
#define CONNS_OPEN "tunnelgate_connections_open"
#define REQUESTS "tunnelgate_requests_total"
#define UPSTREAM_ERRORS "tunnelgate_upstream_errors_total"
#define CONNECT_SECONDS "tunnelgate_upstream_connect_seconds"
#define TUNNELS "tunnelgate_tunnels_total"
#define TUNNELS_OPEN "tunnelgate_tunnels_open"
#define TUNNEL_BYTES "tunnelgate_tunnel_bytes_total"
#define TUNNEL_SECONDS "tunnelgate_tunnel_duration_seconds"
#define GUARD_PACKETS "tunnelgate_guard_packets_total"
#define UPSTREAM_UP "tunnelgate_upstream_up"
#define QUEUE_LEN "tunnelgate_pool_queue_length"
#define QUEUE_WAITS "tunnelgate_pool_queue_waits_total"
#define QUEUE_TIMEOUTS "tunnelgate_pool_queue_timeouts_total"
#define UPSTREAM_REUSED "tunnelgate_upstream_reused_total"

static void write_requests(const struct gw_totals *t, struct mtext *m)
{
	const struct req_stats *s = &t->stats;
	char code[8];

	mtext_family(m, ACCEPTED, "counter", "Client connections accepted.");
	mtext_sample(m, ACCEPTED, NULL, 0, s->accepted);
	mtext_family(m, CONNS_OPEN, "gauge", "Client connections open, tunnels included.");
	mtext_sample(m, CONNS_OPEN, NULL, 0, t->conns);
	mtext_family(m, REQUESTS, "counter",
		     "Requests answered, by method and the status the gateway answered or relayed.");
	for (unsigned i = 0; i < RM_COUNT; i++) {
		for (unsigned j = 0; j < ANSWER_CODES; j++) {
			if (!s->answers[i][j])
				continue;
			metrics_code_name(j, code, sizeof(code));
			mtext_sample(m, REQUESTS, (const struct mlabel[]){
				{ "method", metrics_method_names[i] }, { "code", code } },
				2, s->answers[i][j]);
		}
	}
}

static void write_upstreams(const struct gw_totals *t, struct mtext *m)
{
	const struct req_stats *s = &t->stats;

	mtext_family(m, UPSTREAM_ERRORS, "counter",
		     "Upstream failures by pool, server (- for a direct pool) and kind.");
	for (unsigned i = 0; i < s->nuerr; i++) {
		const struct upstream_errs *e = &s->uerr[i];

		for (unsigned k = 0; k < UE_COUNT; k++) {
			if (!e->n[k])
				continue;
			mtext_sample(m, UPSTREAM_ERRORS, (const struct mlabel[]){
				{ "pool", e->pool }, { "server", e->server },
				{ "kind", metrics_uerr_names[k] } }, 3, e->n[k]);
		}
	}
	mtext_family(m, CONNECT_SECONDS, "histogram",
		     "Upstream connects that succeeded: from connect() to connected, seconds.");
	mtext_hist(m, CONNECT_SECONDS, &s->connect, &hist_connect);
	mtext_family(m, UPSTREAM_REUSED, "counter",
		     "Plain requests sent on an idle upstream connection kept from an earlier one.");
	mtext_sample(m, UPSTREAM_REUSED, NULL, 0, s->upstream_reused);
}

/* The current config's servers and pool queues. */
static void write_pools(const struct gateway *gw, struct mtext *m)
{
	const struct config *cfg = gw->cfg;

	if (!cfg)
		return; /* no config loaded: no pools */
	mtext_family(m, UPSTREAM_UP, "gauge",
		     "1 if the server takes new connections, 0 when it is down or drained.");
	for (unsigned i = 0; i < cfg->npools; i++)
		for (unsigned j = 0; j < cfg->pools[i].nservers; j++)
			mtext_sample(m, UPSTREAM_UP, (const struct mlabel[]){
				{ "pool", cfg->pools[i].name },
				{ "server", cfg->pools[i].servers[j].name } }, 2,
				pool_server_usable(&cfg->pools[i].servers[j]));
	mtext_family(m, QUEUE_LEN, "gauge", "Clients waiting for a server under its maxconn.");
	for (unsigned i = 0; i < cfg->npools; i++)
		mtext_sample(m, QUEUE_LEN, &(struct mlabel){ "pool", cfg->pools[i].name }, 1,
			     cfg->pools[i].state->queued);
	mtext_family(m, QUEUE_WAITS, "counter", "Clients that waited in the pool's queue.");
	for (unsigned i = 0; i < cfg->npools; i++)
		mtext_sample(m, QUEUE_WAITS, &(struct mlabel){ "pool", cfg->pools[i].name }, 1,
			     cfg->pools[i].state->waits);
	mtext_family(m, QUEUE_TIMEOUTS, "counter",
		     "Clients that got 503 after queue_timeout_ms in the pool's queue.");
	for (unsigned i = 0; i < cfg->npools; i++)
		mtext_sample(m, QUEUE_TIMEOUTS, &(struct mlabel){ "pool", cfg->pools[i].name }, 1,
			     cfg->pools[i].state->timeouts);
}

/* The XDP guard's verdicts, when it is on. */
static void write_guard(struct gateway *gw, struct mtext *m)
{
	struct guard_stats g;

	if (!gw->guard)
		return;
	guard_counters(gw->guard, &g);
	mtext_family(m, GUARD_PACKETS, "counter",
		     "Packets the XDP guard judged (TCP to a listen port), by verdict.");
	mtext_sample(m, GUARD_PACKETS, &(struct mlabel){ "verdict", "passed" }, 1, g.passed);
	mtext_sample(m, GUARD_PACKETS, &(struct mlabel){ "verdict", "denied" }, 1, g.denied);
	mtext_sample(m, GUARD_PACKETS, &(struct mlabel){ "verdict", "rate_limited" }, 1,
		     g.rate_limited);
}

static void write_tunnels(const struct gw_totals *t, struct mtext *m)
{
	static const char *const dir[2] = { [TG_DIR_UP] = "up", [TG_DIR_DOWN] = "down" };
	const struct relay_stats *r = &t->relay;
	const struct metrics_snap snap = t->snap;

	mtext_family(m, TUNNELS, "counter", "Tunnels started, by relay.");
	mtext_sample(m, TUNNELS, &(struct mlabel){ "relay", "sockmap" }, 1, r->tunnels_sockmap);
	mtext_sample(m, TUNNELS, &(struct mlabel){ "relay", "splice" }, 1, r->tunnels_splice);
	mtext_family(m, TUNNELS_OPEN, "gauge", "Tunnels open, by relay.");
	mtext_sample(m, TUNNELS_OPEN, &(struct mlabel){ "relay", "sockmap" }, 1, snap.open_sockmap);
	mtext_sample(m, TUNNELS_OPEN, &(struct mlabel){ "relay", "splice" }, 1, snap.open_splice);
	mtext_family(m, TUNNEL_BYTES, "counter",
		     "Tunnel bytes, open tunnels included, by direction (up: client to upstream) and path (kernel: relayed by the BPF program, copied: copied by the daemon, splice: spliced by the daemon).");
	for (int d = 0; d < 2; d++) {
		mtext_sample(m, TUNNEL_BYTES, (const struct mlabel[]){
			{ "direction", dir[d] }, { "path", "kernel" } }, 2, snap.paths.kernel[d]);
		mtext_sample(m, TUNNEL_BYTES, (const struct mlabel[]){
			{ "direction", dir[d] }, { "path", "copied" } }, 2, snap.paths.copied[d]);
		mtext_sample(m, TUNNEL_BYTES, (const struct mlabel[]){
			{ "direction", dir[d] }, { "path", "splice" } }, 2, snap.paths.spliced[d]);
	}
	mtext_family(m, TUNNEL_SECONDS, "histogram",
		     "Tunnel lifetimes, observed when they close, seconds.");
	mtext_hist(m, TUNNEL_SECONDS, &r->duration, &hist_tunnel);
}

void metrics_write(struct gateway *gw, struct mtext *m)
{
	struct gw_totals *t = malloc(sizeof(*t)); /* some 60 KiB: not on the stack */

	if (!t) {
		m->err = -ENOMEM;
		return;
	}
	metrics_totals(gw, t);
	write_requests(t, m);
	write_upstreams(t, m);
	write_pools(gw, m);
	write_tunnels(t, m);
	write_guard(gw, m);
	free(t);
}

/* ---- the server ---- */

int metrics_open(struct gateway *gw)
{
	const struct sockaddr_any *a = &gw->cfg->metrics_listen;
	char name[64];
	int fd, one = 1, err;

	gw->metrics = (struct handle){ .kind = H_METRICS, .fd = -1, .owner = gw };
	if (!a->len)
		return 0;
	fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		pr_warn("cannot create the metrics_listen socket: %s", strerror(errno));
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->sa.sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, &a->sa, a->len) || listen(fd, 64)) {
		err = -errno;
		pr_warn("cannot listen on metrics_listen %s: %s%s",
			sockaddr_fmt(a, name, sizeof(name)), strerror(errno),
			errno == EADDRINUSE ? " (another process has it: stop it or change metrics_listen)" : "");
		close(fd);
		return err;
	}
	gw->metrics.fd = fd;
	pr_info("serving GET /metrics on %s", sockaddr_fmt(a, name, sizeof(name)));
	return ev_set(&gw->metrics, EPOLLIN);
}

static void client_close(struct gateway *gw, struct metrics_client *mc)
{
	struct metrics_client **pp;

	for (pp = &gw->mclients; *pp; pp = &(*pp)->next) {
		if (*pp == mc) {
			*pp = mc->next;
			break;
		}
	}
	gw->nmclients--;
	ev_forget(&mc->h);
	obuf_free(&mc->out);
	free(mc);
}

static void accept_clients(struct gateway *gw)
{
	for (int i = 0; i < METRICS_ACCEPT_BATCH; i++) {
		int fd = accept4(gw->metrics.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct metrics_client *mc;

		if (fd < 0) {
			/* Out of fds the listener stays readable: rest until metrics_expire(). */
			if (errno == EMFILE || errno == ENFILE) {
				ev_set(&gw->metrics, 0);
				gw->metrics_paused = true;
				gw->metrics_paused_ms = now_ms();
			}
			return;
		}
		mc = gw->nmclients < METRICS_MAX_CLIENTS ? calloc(1, sizeof(*mc)) : NULL;
		if (!mc) {
			pr_debug("metrics: %s, closing a connection unanswered",
				 gw->nmclients < METRICS_MAX_CLIENTS ? "out of memory" :
				 "too many connections at once");
			close(fd);
			continue;
		}
		mc->h = (struct handle){ .kind = H_METRICS_CLIENT, .fd = fd, .owner = mc };
		mc->deadline_ms = now_ms() + METRICS_CLIENT_MS;
		mc->next = gw->mclients;
		gw->mclients = mc;
		gw->nmclients++;
		ev_set(&mc->h, EPOLLIN);
	}
}

/* Queue the answer: @status with @body (NULL: the metrics), then the close. */
static void respond(struct gateway *gw, struct metrics_client *mc, int status,
		    const char *body)
{
	struct mtext m = { 0 };
	char head[256];
	int n;

	if (body)
		put_str(&m, body);
	else
		metrics_write(gw, &m);
	if (m.err) {
		status = 500;
		obuf_free(&m.out);
		m = (struct mtext){ 0 };
		put_str(&m, "tunnelgate: out of memory writing the metrics; retry later\n");
	}
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		     status, status == 200 ? "OK" : status == 404 ? "Not Found" :
		     status == 431 ? "Request Header Fields Too Large" : "Internal Server Error",
		     status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
		     obuf_pending(&m.out));
	if (obuf_put(&mc->out, head, n) || obuf_put(&mc->out, m.out.data, m.out.len))
		obuf_free(&mc->out); /* nothing to send: the close tells the client */
	obuf_free(&m.out);
}

/* A whole head is in: GET /metrics (with a query or not) is answered, anything else 404. */
static void request(struct gateway *gw, struct metrics_client *mc)
{
	static const char get[] = "GET /metrics";
	size_t n = sizeof(get) - 1;

	if (mc->rlen > n && !memcmp(mc->req, get, n) && (mc->req[n] == ' ' || mc->req[n] == '?'))
		respond(gw, mc, 200, NULL);
	else
		respond(gw, mc, 404, "tunnelgate: only GET /metrics is served here\n");
}

/* Read the request head; true once the answer is queued. */
static bool read_request(struct gateway *gw, struct metrics_client *mc)
{
	ssize_t n = recv(mc->h.fd, mc->req + mc->rlen, sizeof(mc->req) - mc->rlen, 0);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		client_close(gw, mc);
		return false;
	}
	if (n < 0)
		return false;
	mc->rlen += n;
	if (memmem(mc->req, mc->rlen, "\r\n\r\n", 4) || memmem(mc->req, mc->rlen, "\n\n", 2))
		request(gw, mc);
	else if (mc->rlen == sizeof(mc->req))
		respond(gw, mc, 431, "tunnelgate: request head too large\n");
	else
		return false;
	return true;
}

static void client_event(struct gateway *gw, struct metrics_client *mc)
{
	char sink[512];
	ssize_t n;
	int err;

	if (mc->done) {
		/* Closing with unread bytes would reset the answer away: read to the end. */
		while ((n = recv(mc->h.fd, sink, sizeof(sink), 0)) > 0)
			;
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			client_close(gw, mc);
		return;
	}
	if (!mc->out.len && !read_request(gw, mc))
		return;
	err = obuf_flush(&mc->out, mc->h.fd);
	if (err == -EAGAIN) {
		ev_set(&mc->h, EPOLLOUT);
		return;
	}
	if (err || shutdown(mc->h.fd, SHUT_WR)) {
		client_close(gw, mc);
		return;
	}
	mc->done = true;
	ev_set(&mc->h, EPOLLIN);
}

void metrics_event(struct gateway *gw, struct handle *h, uint32_t events)
{
	(void)events;
	if (h->kind == H_METRICS)
		accept_clients(gw);
	else
		client_event(gw, h->owner);
}

int metrics_expire(struct gateway *gw)
{
	uint64_t now = now_ms();
	struct metrics_client *mc, *next;
	int wait = -1;

	if (gw->metrics_paused) {
		if (now - gw->metrics_paused_ms >= METRICS_RETRY_MS) {
			gw->metrics_paused = false;
			ev_set(&gw->metrics, EPOLLIN);
		} else {
			wait = METRICS_RETRY_MS - (now - gw->metrics_paused_ms);
		}
	}
	for (mc = gw->mclients; mc; mc = next) {
		next = mc->next;
		if (mc->deadline_ms <= now) {
			pr_debug("metrics: closing a connection after %d ms", METRICS_CLIENT_MS);
			client_close(gw, mc);
		} else if (wait < 0 || mc->deadline_ms - now < (uint64_t)wait) {
			wait = mc->deadline_ms - now;
		}
	}
	return wait;
}

void metrics_close_listener(struct gateway *gw)
{
	ev_forget(&gw->metrics);
	gw->metrics_paused = false;
}

void metrics_close(struct gateway *gw)
{
	metrics_close_listener(gw);
	while (gw->mclients)
		client_close(gw, gw->mclients);
}
