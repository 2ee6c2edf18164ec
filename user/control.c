// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The control socket tunnelctl talks to. One request line per connection:
 *   list | stats | pools | kill ID
 * The answer is tab-separated lines, then the daemon closes; tunnelctl formats them.
 * `list` rows: id client upstream target relay bytes_up bytes_down age_ms idle_ms
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "control.h"
#include "fsutil.h"
#include "guard.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "relay.h"
#include "rules.h"
#include "tunnel.h"
#include "workers.h"

#define CTL_MAX_REQUEST 256

struct ctl_client {
	struct handle h;
	char req[CTL_MAX_REQUEST];
	size_t rlen;
	struct obuf out;
};

int control_open(struct gateway *gw, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	bool bound;
	mode_t mask;
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		pr_warn("control socket path %s is too long (at most %zu bytes)", path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	err = mkdir_parent(path, 0755);
	if (err) {
		pr_warn("cannot create the directory of control socket %s: %s", path,
			strerror(-err));
		return err;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file left by a daemon that died would make bind fail. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		pr_warn("control socket %s is in use by another tunnelgated: stop it or set another control path",
			path);
		close(fd);
		return -EADDRINUSE;
	}
	/* Only a stale socket goes: a control path naming any other file is a mistake. */
	if (!lstat(path, &st) && !S_ISSOCK(st.st_mode)) {
		pr_warn("control socket path %s exists and is not a socket: set another control path",
			path);
		close(fd);
		return -EEXIST;
	}
	unlink(path);
	mask = umask(0177); /* bind() creates the file 0600: not one moment open to others */
	bound = !bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(mask);
	if (!bound || listen(fd, 64)) {
		err = -errno;
		pr_warn("cannot listen on control socket %s: %s", path, strerror(errno));
		close(fd);
		return err;
	}
	gw->ctl = (struct handle){ .kind = H_CONTROL, .fd = fd, .owner = gw };
	snprintf(gw->ctl_path, sizeof(gw->ctl_path), "%s", path);
	return ev_set(&gw->ctl, EPOLLIN);
}

int control_reopen(struct gateway *gw, const char *path)
{
	struct handle old = gw->ctl;
	char old_path[sizeof(gw->ctl_path)];
	int err;

	snprintf(old_path, sizeof(old_path), "%s", gw->ctl_path);
	gw->ctl = (struct handle){ .fd = -1 };
	err = control_open(gw, path);
	if (err) {
		pr_warn("reload: keeping control socket %s: the new one (%s) cannot be opened",
			old_path, path);
		gw->ctl = old;
		snprintf(gw->ctl_path, sizeof(gw->ctl_path), "%s", old_path);
		return err;
	}
	if (old.fd >= 0) {
		ev_forget(&old);
		unlink(old_path);
	}
	return 0;
}

void control_close(struct gateway *gw)
{
	if (gw->ctl.fd < 0)
		return;
	ev_forget(&gw->ctl);
	unlink(gw->ctl_path);
}

/* deny add: the prefix, and the connections closed from inside it. */
struct deny_close {
	struct cidr cidr;
	unsigned closed;
};

static void out(struct ctl_client *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(struct ctl_client *cc, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 1)
		n = sizeof(line) - 1;
	if (n > 0)
		obuf_put(&cc->out, line, n);
}

/* On each worker's thread: its tunnels' rows. */
static int list_worker(struct gateway *gw, void *arg)
{
	struct ctl_client *cc = arg;
	uint64_t now = now_ms();

	for (struct conn *c = gw->conns; c; c = c->next) {
		struct tunnel_counts n;

		if (c->state != CS_TUNNEL)
			continue;
		tunnel_counters(c->tun, &n);
		out(cc, "%" PRIu64 "\t%s\t%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
			"\t%" PRIu64 "\t%" PRIu64 "\n",
		    c->tun->id, c->cname, c->server ? c->uname : "direct", c->target,
		    relay_kind_name(c->tun->kind), n.up, n.down,
		    now - c->tun->start_ms, n.idle_ms, n.copied_up, n.copied_down);
	}
	return 0;
}

static void cmd_list(struct gateway *gw, struct ctl_client *cc)
{
	workers_each(gw, list_worker, cc);
}

/* A histogram as /metrics has it: cumulative buckets by upper bound in seconds, sum, count. */
static void stats_hist(struct ctl_client *cc, const char *name, const struct hist *h,
		       const struct hist_spec *s)
{
	uint64_t below = 0;
	char le[24];

	for (unsigned i = 0; i < s->n; i++) {
		below += h->bucket[i];
		mtext_seconds(le, sizeof(le), s->le_us[i]);
		out(cc, "%s_bucket\t%s\t%" PRIu64 "\n", name, le, below);
	}
	out(cc, "%s_bucket\t+Inf\t%" PRIu64 "\n", name, h->count);
	mtext_seconds(le, sizeof(le), h->sum_us);
	out(cc, "%s_sum\t%s\n", name, le);
	out(cc, "%s_count\t%" PRIu64 "\n", name, h->count);
}

/* The numbers of /metrics the lines before them lack (README.md, Metrics). */
static void stats_metrics(const struct gw_totals *t, struct ctl_client *cc)
{
	const struct req_stats *s = &t->stats;
	const struct metrics_snap m = t->snap;
	char code[8];

	out(cc, "tunnels_open_sockmap\t%u\n", m.open_sockmap);
	out(cc, "tunnels_open_splice\t%u\n", m.open_splice);
	for (int d = 0; d < 2; d++) {
		const char *dir = d == TG_DIR_UP ? "up" : "down";

		out(cc, "tunnel_bytes_%s_kernel\t%" PRIu64 "\n", dir, m.paths.kernel[d]);
		out(cc, "tunnel_bytes_%s_copied\t%" PRIu64 "\n", dir, m.paths.copied[d]);
		out(cc, "tunnel_bytes_%s_splice\t%" PRIu64 "\n", dir, m.paths.spliced[d]);
	}
	for (unsigned i = 0; i < RM_COUNT; i++) {
		for (unsigned j = 0; j < ANSWER_CODES; j++) {
			if (!s->answers[i][j])
				continue;
			metrics_code_name(j, code, sizeof(code));
			out(cc, "answers\t%s\t%s\t%" PRIu64 "\n", metrics_method_names[i], code,
			    s->answers[i][j]);
		}
	}
	for (unsigned i = 0; i < s->nuerr; i++) {
		const struct upstream_errs *e = &s->uerr[i];

		for (unsigned k = 0; k < UE_COUNT; k++)
			if (e->n[k])
				out(cc, "upstream_error\t%s\t%s\t%s\t%" PRIu64 "\n", e->pool,
				    e->server, metrics_uerr_names[k], e->n[k]);
	}
	stats_hist(cc, "upstream_connect_seconds", &s->connect, &hist_connect);
	stats_hist(cc, "tunnel_duration_seconds", &t->relay.duration, &hist_tunnel);
}

/* The request counters of every worker together. */
static void stats_requests(const struct gw_totals *t, struct ctl_client *cc)
{
	const struct req_stats *s = &t->stats;
	const struct relay_stats *r = &t->relay;

	out(cc, "connections\t%u\n", t->conns);
	out(cc, "tunnels_open\t%u\n", t->tunnels_open);
	out(cc, "accepted\t%" PRIu64 "\n", s->accepted);
	out(cc, "requests\t%" PRIu64 "\n", s->requests);
	out(cc, "tunnels_total\t%" PRIu64 "\n", r->tunnels_total);
	out(cc, "tunnels_sockmap\t%" PRIu64 "\n", r->tunnels_sockmap);
	out(cc, "tunnels_splice\t%" PRIu64 "\n", r->tunnels_splice);
	out(cc, "rejected\t%" PRIu64 "\n", s->rejected);
	out(cc, "bad_requests\t%" PRIu64 "\n", s->bad_requests);
	out(cc, "upstream_errors\t%" PRIu64 "\n", s->upstream_errors);
	out(cc, "reused\t%" PRIu64 "\n", s->upstream_reused);
	out(cc, "timeouts\t%" PRIu64 "\n", s->timeouts);
	out(cc, "refused_per_client\t%" PRIu64 "\n", s->refused_per_client);
	out(cc, "accept_pauses\t%" PRIu64 "\n", s->accept_pauses);
}

/* On each worker's thread: "worker<TAB>ID<TAB>accepted<TAB>open connections". */
static int stats_worker(struct gateway *gw, void *arg)
{
	out(arg, "worker\t%u\t%" PRIu64 "\t%u\n", gw->worker_id, gw->stats.accepted, gw->nconns);
	return 0;
}

/* The XDP guard's counters, every CPU's, when it is on. */
static void stats_guard(struct gateway *gw, struct ctl_client *cc)
{
	struct guard_stats g;

	if (!gw->guard)
		return;
	guard_counters(gw->guard, &g);
	out(cc, "guard_passed\t%" PRIu64 "\n", (uint64_t)g.passed);
	out(cc, "guard_denied\t%" PRIu64 "\n", (uint64_t)g.denied);
	out(cc, "guard_rate_limited\t%" PRIu64 "\n", (uint64_t)g.rate_limited);
	out(cc, "guard_not_judged\t%" PRIu64 "\n", (uint64_t)g.not_judged);
	out(cc, "guard_malformed\t%" PRIu64 "\n", (uint64_t)g.malformed);
}

static void cmd_stats(struct gateway *gw, struct ctl_client *cc)
{
	const struct tunnels *ts = &gw->tunnels;
	struct gw_totals *t = malloc(sizeof(*t)); /* some 60 KiB: not on the stack */

	if (!t) {
		out(cc, "error\tout of memory; retry later\n");
		return;
	}
	metrics_totals(gw, t);
	out(cc, "relay\t%s\n", relay_kind_name(ts->default_kind));
	out(cc, "workers\t%u\n", gw->workers ? gw->workers->n : 1);
	stats_requests(t, cc);
	out(cc, "max_connections\t%u\n", gw->max_conns);
	out(cc, "max_connections_per_client\t%u\n", gw->cfg->max_connections_per_client);
	out(cc, "accepting\t%s\n", t->paused ? "paused" : "yes");
	out(cc, "pause\t%s\n", !ts->relay ? "-" : relay_pausing(ts->relay) ? "sockops" : "hold");
	out(cc, "holds\t%" PRIu64 "\n", t->relay.holds);
	out(cc, "pauses\t%" PRIu64 "\n", t->relay.pauses);
	out(cc, "bytes_kernel\t%" PRIu64 "\n", t->relay.bytes_kernel + t->kernel_open);
	out(cc, "bytes_copied\t%" PRIu64 "\n", t->relay.bytes_copied + t->copied_open);
	out(cc, "bytes_up_closed\t%" PRIu64 "\n", t->relay.bytes_up);
	out(cc, "bytes_down_closed\t%" PRIu64 "\n", t->relay.bytes_down);
	stats_metrics(t, cc);
	workers_each(gw, stats_worker, cc);
	stats_guard(gw, cc);
	free(t);
}

/* One server of `pools`: the columns of tunnelctl's header, tab separated. */
static void pool_line(struct ctl_client *cc, const struct pool *p, const struct server *s)
{
	const struct server_state *st = s->state;
	char maxconn[16] = "-", last[80] = "-";

	if (s->maxconn)
		snprintf(maxconn, sizeof(maxconn), "%u", s->maxconn);
	if (st->last_ms)
		snprintf(last, sizeof(last), "%s (%" PRIu64 " ms ago)", st->last,
			 now_ms() - st->last_ms);
	out(cc, "%s\t%s\t%s\t%u\t%u\t%" PRIu64 "\t%" PRIu64 "\t%s\t%s\t%u\t%s\n", p->name,
	    config_balance_name(p->balance), s->name, s->weight, st->active, st->picks,
	    st->failures, pool_server_state_name(st), maxconn, p->state->queued, last);
}

static void cmd_pools(struct gateway *gw, struct ctl_client *cc)
{
	const struct config *cfg = gw->cfg;

	for (unsigned i = 0; i < cfg->npools; i++) {
		const struct pool *p = &cfg->pools[i];

		if (p->direct) {
			out(cc, "%s\tdirect\t-\t-\t-\t-\t-\tup\t-\t0\t-\n", p->name);
			continue;
		}
		for (unsigned j = 0; j < p->nservers; j++)
			pool_line(cc, p, &p->servers[j]);
	}
}

/* On each worker's thread: close tunnel *@arg if it is this worker's (1: it was). */
static int kill_worker(struct gateway *gw, void *arg)
{
	uint64_t id = *(uint64_t *)arg;

	for (struct conn *c = gw->conns; c; c = c->next) {
		if (c->state == CS_TUNNEL && c->tun->id == id) {
			conn_set_end(c, END_KILLED, NULL);
			conn_close(c, "killed by tunnelctl");
			return 1;
		}
	}
	return 0;
}

static void cmd_kill(struct gateway *gw, struct ctl_client *cc, const char *arg)
{
	char *end;
	uint64_t id = strtoull(arg, &end, 10);

	if (!*arg || *end) {
		out(cc, "error\tkill needs a tunnel id (see tunnelctl list)\n");
		return;
	}
	if (workers_each(gw, kill_worker, &id) == 1)
		out(cc, "ok\n");
	else
		out(cc, "error\tno open tunnel with id %" PRIu64 "\n", id);
}

/* On each worker's thread: close the connections from inside *@arg; counts them. */
static int close_denied(struct gateway *gw, void *arg)
{
	struct deny_close *d = arg;

	d->closed += conn_close_denied(gw, &d->cidr, 1); /* one worker at a time */
	return 0;
}

static void deny_line(void *arg, const struct cidr *c, unsigned origin)
{
	char name[64];

	out(arg, "%s\t%s\n", guard_cidr_fmt(c, name, sizeof(name)),
	    origin == (GO_CONFIG | GO_CTL) ? "config,ctl" : origin & GO_CTL ? "ctl" : "config");
}

/* deny add CIDR | deny del CIDR | deny list */
static void cmd_deny(struct gateway *gw, struct ctl_client *cc, const char *arg)
{
	struct deny_close d = { 0 };
	bool add = !strncmp(arg, "add ", 4), del = !strncmp(arg, "del ", 4);
	char name[64];
	int err;

	if (!gw->guard) {
		out(cc, "error\tthe XDP guard is off: set xdp_interfaces in [gateway]\n");
		return;
	}
	if (!strcmp(arg, "list")) {
		guard_deny_each(gw->guard, deny_line, cc);
		return;
	}
	if ((!add && !del) || cidr_parse(arg + 4, &d.cidr)) {
		out(cc, "error\tdeny needs add CIDR, del CIDR or list (CIDR: 192.0.2.0/24, 2001:db8::/32 or an address)\n");
		return;
	}
	guard_cidr_fmt(&d.cidr, name, sizeof(name));
	/* del takes any entry off, the config's too: the next reload adds those again. */
	err = add ? guard_deny_add(gw->guard, &d.cidr, GO_CTL) :
		    guard_deny_del(gw->guard, &d.cidr, GO_CTL | GO_CONFIG);
	if (err == -ENOENT)
		out(cc, "error\tno deny entry %s (tunnelctl deny list shows them)\n", name);
	else if (err)
		out(cc, "error\tcannot change deny entry %s: %s\n", name, strerror(-err));
	if (err)
		return;
	if (add)
		workers_each(gw, close_denied, &d);
	pr_info("deny %s %s by tunnelctl%s", add ? "added" : "removed", name,
		add ? d.closed ? ", its connections closed" : "" : "");
	out(cc, "ok\t%u connections closed\n", d.closed);
}

/* drain SERVER / undrain SERVER */
static void cmd_drain(struct ctl_client *cc, const char *spec, bool drain)
{
	if (!*spec || !pool_drain(spec, drain)) {
		out(cc, "error\tno server '%s' in any pool (give ip:port or POOL/ip:port as tunnelctl pools shows them)\n",
		    spec);
		return;
	}
	if (!drain)
		pool_queue_kick();
	out(cc, "ok\n");
}

static void ctl_client_close(struct ctl_client *cc)
{
	ev_forget(&cc->h);
	free(cc->out.data);
	free(cc);
}

static void ctl_request(struct gateway *gw, struct ctl_client *cc)
{
	char *nl = memchr(cc->req, '\n', cc->rlen);

	*nl = '\0';
	if (nl > cc->req && nl[-1] == '\r')
		nl[-1] = '\0';
	if (!strcmp(cc->req, "list"))
		cmd_list(gw, cc);
	else if (!strcmp(cc->req, "stats"))
		cmd_stats(gw, cc);
	else if (!strcmp(cc->req, "pools"))
		cmd_pools(gw, cc);
	else if (!strncmp(cc->req, "kill ", 5))
		cmd_kill(gw, cc, cc->req + 5);
	else if (!strncmp(cc->req, "drain ", 6))
		cmd_drain(cc, cc->req + 6, true);
	else if (!strncmp(cc->req, "undrain ", 8))
		cmd_drain(cc, cc->req + 8, false);
	else if (!strncmp(cc->req, "deny ", 5))
		cmd_deny(gw, cc, cc->req + 5);
	else
		out(cc, "error\tunknown command '%s' (list, stats, pools, drain SERVER, undrain SERVER, deny add|del CIDR, deny list, kill ID)\n",
		    cc->req);
	cc->rlen = 0;
}

void control_event(struct gateway *gw, struct handle *h, uint32_t events)
{
	struct ctl_client *cc;
	ssize_t n;
	int fd;

	if (h->kind == H_CONTROL) {
		while ((fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
			cc = calloc(1, sizeof(*cc));
			if (!cc) {
				close(fd);
				return;
			}
			cc->h = (struct handle){ .kind = H_CTL_CLIENT, .fd = fd, .owner = cc };
			ev_set(&cc->h, EPOLLIN);
		}
		/* Out of fds: the listener stays readable; rest until loop.c re-arms it. */
		if (errno == EMFILE || errno == ENFILE) {
			ev_set(h, 0);
			gw->ctl_paused = true;
			gw->ctl_paused_ms = now_ms();
		}
		return;
	}
	cc = h->owner;
	if (events & EPOLLIN && cc->out.len == 0) {
		n = recv(h->fd, cc->req + cc->rlen, sizeof(cc->req) - cc->rlen, 0);
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				ctl_client_close(cc);
			return;
		}
		cc->rlen += n;
		if (!memchr(cc->req, '\n', cc->rlen)) {
			if (cc->rlen == sizeof(cc->req))
				ctl_client_close(cc);
			return;
		}
		ctl_request(gw, cc);
	}
	n = obuf_flush(&cc->out, h->fd);
	if (n == -EAGAIN) {
		ev_set(h, EPOLLOUT);
		return;
	}
	ctl_client_close(cc);
}
