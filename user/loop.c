// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The daemon's event loop: start-up and shut-down, signals, reload, drain, timers,
 * accepting, and the dispatch of every epoll event to its owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admit.h"
#include "cgroup.h"
#include "conn.h"
#include "control.h"
#include "gateway-t.h"
#include "health.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "priv.h"
#include "relay.h"
#include "resolver.h"
#include "reuse.h"
#include "stream.h"
#include "tunnel.h"

#define MAX_EVENTS 256
#define TIMER_TICK_MS 50
#define IDLE_SCAN_MS 1000
#define ACCEPT_BATCH 64
#define ACCEPT_LOG_MS 10000 /* at most one "not accepting" line per this */
#define ACCEPT_RETRY_MS 1000 /* out of fds with no connection closed: try again after this */

/* Stop accepting until a connection slot frees; new clients wait in the backlog. */
static void accept_pause(struct gateway *gw, const char *why)
{
	uint64_t now = now_ms();

	for (struct listener *l = gw->listeners; l; l = l->next)
		ev_set(&l->h, 0);
	gw->accept_paused = true;
	gw->paused_conns = gw->nconns;
	gw->paused_ms = now;
	gw->stats.accept_pauses++;
	if (now - gw->paused_log_ms >= ACCEPT_LOG_MS || !gw->paused_log_ms) {
		gw->paused_log_ms = now;
		pr_warn("not accepting connections for now: %s (%u open); raise it, or the fd limit (ulimit -n)",
			why, gw->nconns);
	}
}

/* Accept again once below max_connections and, after running out of fds, once one freed. */
static void accept_resume(struct gateway *gw)
{
	if (gw->ctl_paused && now_ms() - gw->ctl_paused_ms >= ACCEPT_RETRY_MS && gw->ctl.fd >= 0) {
		gw->ctl_paused = false;
		ev_set(&gw->ctl, EPOLLIN);
	}
	if (!gw->accept_paused || gw->stopping || gw->nconns >= gw->max_conns)
		return;
	if (gw->nconns >= gw->paused_conns && now_ms() - gw->paused_ms < ACCEPT_RETRY_MS)
		return;
	gw->accept_paused = false;
	for (struct listener *l = gw->listeners; l; l = l->next)
		ev_set(&l->h, EPOLLIN);
}

/* Over max_connections_per_client: a short 503, then close (best effort, never blocks). */
static void refuse_client(struct gateway *gw, int fd)
{
	static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
				  "Content-Length: 64\r\n\r\n"
				  "tunnelgate: too many connections from your address; retry later\n";

	gw->stats.refused_per_client++;
	if (send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		pr_debug("refusing a client: %s", strerror(errno));
	close(fd);
}

static void accept_ready(struct gateway *gw, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_any a = { .len = sizeof(a.ss) };
		unsigned per_client = gw->cfg->max_connections_per_client;
		struct conn *c;
		int fd;

		if (gw->nconns >= gw->max_conns) {
			accept_pause(gw, "max_connections reached");
			return;
		}
		fd = accept4(l->h.fd, &a.sa, &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				accept_pause(gw, strerror(errno));
			return;
		}
		if (per_client && admit_count(gw->admit, &a) >= per_client) {
			refuse_client(gw, fd);
			continue;
		}
		c = conn_new(gw, fd, &a);
		if (!c) {
			pr_warn("cannot accept: out of memory");
			close(fd);
			return;
		}
		gw->stats.accepted++;
		c->want_proxy = l->accept_proxy;
		stream_start(c);
	}
}

static void resolved(struct gateway *gw)
{
	struct resolve_req *req;

	/* One at a time: an answer's stage may close a connection whose look-up is next. */
	while ((req = resolver_done(gw->resolver))) {
		stream_resolved(req->owner, req);
		free(req);
	}
}

static void check_deadlines(struct gateway *gw)
{
	uint64_t now = now_ms();
	struct conn *c, *next;

	for (c = gw->conns; c; c = next) {
		next = c->next;
		if (c->deadline_ms && c->deadline_ms <= now)
			stream_timeout(c);
	}
}

/* Close tunnels idle for longer than idle_timeout_ms (the BPF last-activity time). */
static void idle_scan(struct gateway *gw)
{
	struct conn *c, *next;

	for (c = gw->conns; c; c = next) {
		struct tunnel_counts n;

		next = c->next;
		if (c->state != CS_TUNNEL || !c->cfg->idle_timeout_ms)
			continue;
		tunnel_counters(c->tun, &n);
		if (n.idle_ms >= c->cfg->idle_timeout_ms) {
			conn_set_end(c, END_IDLE_TIMEOUT, NULL);
			conn_close(c, "tunnel idle for idle_timeout_ms");
		}
	}
}

/*
 * Created 0640 (it names clients and their targets), never through a symlink. On
 * failure @keep stays: stderr at start, the open log on SIGHUP, when the daemon runs
 * as `user` (priv.c), which must be able to write the file.
 */
static FILE *open_access_log(const char *path, FILE *keep)
{
	FILE *f = NULL;
	int fd, err;

	if (!strcmp(path, "-"))
		return stderr;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd >= 0 && !(f = fdopen(fd, "a"))) {
		err = errno;
		close(fd);
		errno = err;
	}
	if (!f)
		pr_warn("cannot open access_log %s: %s (%s)", path, strerror(errno),
			keep == stderr ? "logging to stderr instead" :
			"keeping the open one: the daemon's user must be able to write it");
	return f ? f : keep;
}

static void close_access_log(struct gateway *gw)
{
	if (gw->access_log && gw->access_log != stderr)
		fclose(gw->access_log);
	gw->access_log = NULL;
}

/*
 * SIGUSR1 (logrotate): open the access log's path again, as the user the daemon runs
 * as now; a path that cannot be opened keeps the open file (open_access_log() says why).
 */
static void reopen_access_log(struct gateway *gw)
{
	FILE *log;

	if (!strcmp(gw->cfg->access_log, "-"))
		return;
	log = open_access_log(gw->cfg->access_log, gw->access_log);
	if (log == gw->access_log)
		return;
	close_access_log(gw);
	gw->access_log = log;
	pr_info("SIGUSR1: reopened access_log %s", gw->cfg->access_log);
}

/* The resolver's settings are read once, at start. */
static bool resolver_changed(const struct config *a, const struct config *b)
{
	return a->resolver.len != b->resolver.len ||
	       memcmp(&a->resolver.ss, &b->resolver.ss, a->resolver.len) ||
	       a->resolver_timeout_ms != b->resolver_timeout_ms ||
	       a->resolver_max_queries != b->resolver_max_queries;
}

/* A new config that can run replaces the current one; the old one stays with its connections. */
static void reload(struct gateway *gw)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	char err[512];
	FILE *log;

	if (!cfg)
		return;
	if (config_load(gw->cfg_path, cfg, err, sizeof(err))) {
		pr_warn("reload failed, keeping the running config: %s", err);
		config_free(cfg);
		free(cfg);
		return;
	}
	cfg->refs = 1;
	if (priv_reload_check(gw, cfg)) {
		config_put(cfg);
		return;
	}
	if (listeners_sync(gw, cfg)) {
		pr_warn("reload failed, keeping the running config: a listen address is not available");
		config_put(cfg);
		return;
	}
	if (strcmp(cfg->bpf_pin_dir, gw->cfg->bpf_pin_dir) || cfg->relay != gw->cfg->relay ||
	    cfg->pause != gw->cfg->pause || resolver_changed(cfg, gw->cfg))
		pr_warn("reload: relay, pause, bpf_pin_dir and resolver* changes take effect on restart only");
	if (cfg->metrics_listen.len != gw->cfg->metrics_listen.len ||
	    memcmp(&cfg->metrics_listen.ss, &gw->cfg->metrics_listen.ss, cfg->metrics_listen.len))
		pr_warn("reload: metrics_listen changes take effect on restart only");
	if (strcmp(cfg->control, gw->ctl_path))
		control_reopen(gw, cfg->control);
	log = open_access_log(cfg->access_log, gw->access_log);
	if (log != gw->access_log) {
		close_access_log(gw);
		gw->access_log = log;
	}
	config_put(gw->cfg);
	gw->cfg = cfg;
	gw->max_conns = config_max_connections(cfg);
	tunnels_set_bounds(&gw->tunnels, cfg);
	pr_info("reloaded %s: %u listeners, %u pools, %u rules", gw->cfg_path, cfg->nlisten,
		cfg->npools, cfg->nrules);
}

/* Draining: keep-alive connections waiting for a next request close now. */
static void close_idle(struct gateway *gw)
{
	struct conn *c, *next;

	for (c = gw->conns; c; c = next) {
		next = c->next;
		if (c->state == CS_REQ_HEAD && !c->clen)
			conn_close(c, "draining: idle connection");
	}
	reuse_expire(gw->reuse, 0, 0); /* and every idle upstream connection */
}

/* Returns 1 when the daemon must exit now. */
static int signal_event(struct gateway *gw)
{
	struct signalfd_siginfo si;

	while (read(gw->sigh.fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1) { /* draining too: the log keeps being written */
			reopen_access_log(gw);
			continue;
		}
		if (si.ssi_signo == SIGHUP) {
			if (gw->stopping)
				pr_info("SIGHUP while draining: nothing reloaded or reopened");
			else
				reload(gw);
			continue;
		}
		if (gw->stopping) {
			pr_info("second signal: exiting now");
			return 1;
		}
		pr_info("signal %d: closing listeners, draining %u tunnels for up to %u ms",
			si.ssi_signo, gw->tunnels.open, gw->cfg->drain_timeout_ms);
		gw->stopping = true;
		gw->stop_deadline_ms = now_ms() + gw->cfg->drain_timeout_ms;
		listeners_close(gw);
		control_close(gw);
		metrics_close_listener(gw);
		close_idle(gw);
	}
	return 0;
}

static int setup_signals(struct gateway *gw)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	gw->sigh = (struct handle){ .kind = H_SIGNAL, .owner = gw };
	gw->sigh.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (gw->sigh.fd < 0)
		return -errno;
	return ev_set(&gw->sigh, EPOLLIN);
}

/*
 * pause = sockops: the sockops program runs for the sockets of its cgroup's processes,
 * and a socket's cgroup is fixed when it is created (an accepted one takes its
 * listener's), so the daemon joins its own child cgroup before it opens any socket.
 */
static void enter_cgroup(struct gateway *gw, char *why, size_t len)
{
	if (gw->cfg->relay == RELAY_SPLICE || gw->cfg->pause != PAUSE_SOCKOPS)
		return;
	gw->cgroup = cgroup_enter(gw->cfg->bpf_pin_dir, why, len);
}

static int open_relay(struct gateway *gw, const char *pause_why)
{
	struct tunnels *ts = &gw->tunnels;
	char why[512], pwhy[512];

	ts->default_kind = RK_SPLICE;
	ts->max_backlog = gw->cfg->max_backlog_bytes;
	if (gw->cfg->relay == RELAY_SPLICE)
		return 0;
	snprintf(pwhy, sizeof(pwhy), "%s", pause_why);
	ts->relay = relay_open(gw->cfg->bpf_pin_dir, gw->cgroup ? cgroup_fd(gw->cgroup) : -1,
			       pwhy, why, sizeof(why));
	if (ts->relay) {
		ts->default_kind = RK_SOCKMAP;
		tunnels_set_bounds(ts, gw->cfg);
		if (gw->cfg->pause == PAUSE_SOCKOPS && !relay_pausing(ts->relay))
			pr_warn("pause = sockops: holding bytes instead (pause = hold): %s", pwhy);
		return 0;
	}
	if (gw->cfg->relay == RELAY_SOCKMAP) {
		pr_warn("relay = sockmap: %s", why);
		return -errno;
	}
	pr_warn("relay = auto: using splice, the kernel relay is unavailable: %s", why);
	return 0;
}

static int start(struct gateway *gw)
{
	char pause_why[512] = "", why[256];

	if (setup_signals(gw)) {
		pr_warn("cannot set up signal handling: %s", strerror(errno));
		return -1;
	}
	enter_cgroup(gw, pause_why, sizeof(pause_why));
	/* Listeners and control first: they fail if another daemon has them, before
	 * the relay would replace that daemon's pinned maps. */
	if (listeners_sync(gw, gw->cfg) || control_open(gw, gw->cfg->control) ||
	    metrics_open(gw) || open_relay(gw, pause_why))
		return -1;
	gw->resolver = resolver_start(gw->cfg, why, sizeof(why));
	if (!gw->resolver) {
		pr_warn("cannot start the name resolver: %s", why);
		return -1;
	}
	gw->resolver_h = (struct handle){ .kind = H_RESOLVER, .fd = resolver_fd(gw->resolver),
					  .owner = gw };
	ev_set(&gw->resolver_h, EPOLLIN);
	gw->health = health_new(); /* its first health_tick() starts the checks */
	if (!gw->health) {
		pr_warn("cannot start the health checker: out of memory");
		return -1;
	}
	if (priv_drop(gw)) /* everything that needs root is done by now */
		return -1;
	pr_info("listening on %u address(es), relay %s%s, control %s", gw->cfg->nlisten,
		relay_kind_name(gw->tunnels.default_kind),
		gw->tunnels.relay ? relay_pausing(gw->tunnels.relay) ? " (pause sockops)" :
		" (pause hold)" : "", gw->cfg->control);
	return 0;
}

static void shutdown_all(struct gateway *gw)
{
	while (gw->conns) {
		conn_set_end(gw->conns, END_DRAIN, NULL); /* drain_timeout_ms, a second signal */
		conn_close(gw->conns, "daemon exiting");
	}
	listeners_close(gw);
	control_close(gw);
	metrics_close(gw);
	priv_exit(); /* as `user`, the helper removes the pins, the cgroup, the socket */
	relay_close(gw->tunnels.relay);
	cgroup_leave(gw->cgroup);
	if (gw->resolver) {
		ev_del(&gw->resolver_h);
		resolver_stop(gw->resolver); /* closes its fd */
	}
	ev_forget(&gw->sigh);
	close_access_log(gw);
	health_free(gw->health); /* closes the checks in flight */
	ev_close();
	config_put(gw->cfg);
	conn_bury(gw);
	reuse_free(gw->reuse);
	admit_free(gw->admit);
}

/* The wait for the next epoll round: timers, polled tunnels and the drain. */
static int next_timeout(struct gateway *gw)
{
	/* Idle upstream connections expire on the tick too. */
	int timeout = gw->conns || reuse_count(gw->reuse) ? TIMER_TICK_MS : -1;
	int poll = tunnel_watch_poll(&gw->tunnels);
	int dns = resolver_timeout_ms(gw->resolver);
	int metrics = metrics_expire(gw); /* closes the metrics connections past their time */
	int health = health_next_ms(gw);

	if (poll >= 0 && (timeout < 0 || poll < timeout))
		timeout = poll;
	if (metrics >= 0 && (timeout < 0 || metrics < timeout))
		timeout = metrics;
	if (dns >= 0 && (timeout < 0 || dns < timeout))
		timeout = dns;
	if (health >= 0 && (timeout < 0 || health < timeout))
		timeout = health;
	if (gw->stopping && (timeout < 0 || timeout > TIMER_TICK_MS))
		timeout = TIMER_TICK_MS;
	return timeout;
}

/* Hand one epoll event to its owner. Returns 1 when the daemon must exit now. */
static int dispatch(struct gateway *gw, struct handle *h, uint32_t events)
{
	switch (h->kind) {
	case H_LISTEN:
		accept_ready(gw, h->owner);
		break;
	case H_CLIENT:
	case H_UPSTREAM:
		/* The connection may have been closed by an earlier event. */
		if (h->fd >= 0)
			stream_event(h->owner, h, events);
		break;
	case H_SIGNAL:
		return signal_event(gw);
	case H_CONTROL:
	case H_CTL_CLIENT:
		control_event(gw, h, events);
		break;
	case H_RESOLVER:
		resolved(gw);
		break;
	case H_METRICS:
	case H_METRICS_CLIENT:
		metrics_event(gw, h, events);
		break;
	case H_HEALTH:
		health_event(gw, h, events);
		break;
	case H_IDLE:
		reuse_event(h, events);
		break;
	}
	return 0;
}

/* Returns 0 on a clean stop, 1 on a failure. */
static int run(struct gateway *gw)
{
	struct epoll_event ev[MAX_EVENTS];
	uint64_t last_tick = 0, last_idle_scan = 0;

	for (;;) {
		int timeout = next_timeout(gw), n;

		if (gw->stopping && !gw->conns)
			return 0;
		if (gw->stopping && now_ms() >= gw->stop_deadline_ms) {
			pr_info("drain_timeout_ms reached: closing %u connections", gw->nconns);
			return 0;
		}
		n = ev_wait(ev, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			pr_warn("epoll_wait failed: %s", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++)
			if (dispatch(gw, ev[i].data.ptr, ev[i].events))
				return 0;
		if (!resolver_timeout_ms(gw->resolver)) /* a look-up's deadline, c-ares' timers */
			resolved(gw);
		if (now_ms() - last_tick >= TIMER_TICK_MS) {
			last_tick = now_ms();
			check_deadlines(gw);
			reuse_expire(gw->reuse, last_tick, gw->cfg->upstream_idle_max);
			pool_queue_kick(); /* a reload or undrain may have made room */
		}
		stream_run_queues();
		if (now_ms() - last_idle_scan >= IDLE_SCAN_MS) {
			last_idle_scan = now_ms();
			idle_scan(gw);
		}
		health_tick(gw); /* due checks and their timeouts; returns at once when none */
		conn_bury(gw);
		reuse_bury(gw->reuse);
		accept_resume(gw);
	}
}

int gateway_run(struct config *cfg, const char *path)
{
	struct gateway gw = { .cfg = cfg, .cfg_path = path, .ctl = { .fd = -1 },
			      .sigh = { .fd = -1 }, .metrics = { .fd = -1 } };
	int rc = 1;

	cfg->refs = 1;
	if (ev_open()) {
		pr_warn("cannot create epoll instance: %s", strerror(errno));
		return 1;
	}
	gw.access_log = open_access_log(cfg->access_log, stderr);
	gw.max_conns = config_max_connections(cfg);
	gw.admit = admit_new();
	gw.reuse = reuse_new();
	if (gw.admit && gw.reuse && !start(&gw))
		rc = run(&gw);
	shutdown_all(&gw);
	return rc;
}
