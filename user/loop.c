// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The daemon's event loops: start-up and shut-down, the worker threads, signals,
 * reload and drain (the owner's, fanned out to every worker), and each worker's loop:
 * timers and the dispatch of every epoll event to its owner.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept.h"
#include "admit.h"
#include "cgroup.h"
#include "conn.h"
#include "control.h"
#include "gateway-t.h"
#include "guard.h"
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
#include "wbox.h"
#include "workers.h"

#define MAX_EVENTS 256
#define TIMER_TICK_MS 50
#define IDLE_SCAN_MS 1000

static int worker_main(struct gateway *gw);
static int run(struct gateway *gw);

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

static int worker_log(struct gateway *gw, void *log)
{
	gw->access_log = log;
	return 0;
}

/* Every worker writes to @log from now on; then the one they wrote to closes. */
static void use_access_log(struct gateway *gw, FILE *log)
{
	FILE *old = gw->access_log;

	workers_each(gw, worker_log, log);
	if (old && old != stderr && old != log)
		fclose(old);
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
	use_access_log(gw, log);
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

/*
 * On each other worker's thread: the owner's new config. Its listeners follow it
 * (new addresses join the owner's SO_REUSEPORT group); if that fails this worker
 * keeps its config and says so, the others go on.
 */
static int worker_reload(struct gateway *gw, void *arg)
{
	struct gateway *owner = arg;

	if (gw == owner)
		return 0;
	if (listeners_sync(gw, owner->cfg, true)) {
		pr_warn("reload: worker %u keeps the running config: a listen address is not available to it",
			gw->worker_id);
		return 0;
	}
	config_get(owner->cfg);
	config_put(gw->cfg);
	gw->cfg = owner->cfg;
	gw->max_conns = owner->max_conns;
	gw->tunnels.max_backlog = owner->tunnels.max_backlog;
	return 0;
}

/* On every worker's thread: connections from sources the new config's deny drops. */
static int close_denied(struct gateway *gw, void *arg)
{
	const struct config *cfg = arg;
	unsigned n = conn_close_denied(gw, cfg->deny, cfg->ndeny);

	if (n)
		pr_info("reload: closed %u connections of sources in deny (worker %u)", n,
			gw->worker_id);
	return 0;
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
	if (listeners_sync(gw, cfg, true)) {
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
	config_put(gw->cfg);
	gw->cfg = cfg;
	gw->max_conns = config_max_connections(cfg);
	tunnels_set_bounds(&gw->tunnels, cfg);
	if (gw->guard)
		guard_reload(gw->guard, cfg);
	workers_each(gw, worker_reload, gw);
	if (gw->guard && cfg->ndeny)
		workers_each(gw, close_denied, cfg);
	if (log != gw->access_log)
		use_access_log(gw, log);
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

/* On every worker's thread: drain until @arg (a deadline in ms). */
static int worker_stop(struct gateway *gw, void *arg)
{
	gw->stopping = true;
	gw->stop_deadline_ms = *(uint64_t *)arg;
	listeners_close(gw);
	close_idle(gw);
	return 0;
}

/* On every worker's thread: leave the loop now (a second signal, or the owner failed). */
static int worker_exit(struct gateway *gw, void *arg)
{
	(void)arg;
	gw->exit_now = true;
	return 0;
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
			gw->exit_now = true;
			return 1;
		}
		pr_info("signal %d: closing listeners, draining %u connections for up to %u ms",
			si.ssi_signo, __atomic_load_n(gw->conns_total, __ATOMIC_RELAXED),
			gw->cfg->drain_timeout_ms);
		gw->stop_deadline_ms = now_ms() + gw->cfg->drain_timeout_ms;
		control_close(gw);
		metrics_close_listener(gw);
		workers_each(gw, worker_stop, &gw->stop_deadline_ms);
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

/* The worker's own name resolver (c-ares), polled on its loop. */
static int start_resolver(struct gateway *gw)
{
	char why[256];

	gw->resolver = resolver_start(gw->cfg, why, sizeof(why));
	if (!gw->resolver) {
		pr_warn("cannot start the name resolver: %s", why);
		return -1;
	}
	gw->resolver_h = (struct handle){ .kind = H_RESOLVER, .fd = resolver_fd(gw->resolver),
					  .owner = gw };
	ev_set(&gw->resolver_h, EPOLLIN);
	return 0;
}

/* Worker @k's gateway: its own listeners, the owner's shared parts. */
static struct gateway *worker_new(struct gateway *owner, unsigned k)
{
	struct gateway *gw = calloc(1, sizeof(*gw));

	if (!gw)
		return NULL;
	gw->worker_id = k;
	gw->workers = owner->workers;
	gw->conns_total = owner->conns_total;
	gw->cfg = owner->cfg;
	config_get(gw->cfg);
	gw->cfg_path = owner->cfg_path;
	gw->ctl.fd = gw->sigh.fd = gw->metrics.fd = -1;
	gw->access_log = owner->access_log;
	gw->admit = owner->admit;
	gw->max_conns = owner->max_conns;
	gw->tunnels.relay = owner->tunnels.relay;
	gw->tunnels.default_kind = owner->tunnels.default_kind;
	gw->tunnels.max_backlog = owner->tunnels.max_backlog;
	if (listeners_sync(gw, gw->cfg, false)) {
		config_put(gw->cfg);
		free(gw);
		return NULL;
	}
	return gw;
}

/* The other workers' gateways, made by the owner before the privileges go. */
static int workers_prepare(struct gateway *owner)
{
	struct workers *ws = owner->workers;

	for (unsigned k = 1; k < ws->n; k++) {
		ws->w[k].gw = worker_new(owner, k);
		if (!ws->w[k].gw) {
			pr_warn("cannot set up worker %u (see above; workers = 1 runs one loop)", k);
			return -1;
		}
	}
	return 0;
}

static int nothing(struct gateway *gw, void *arg)
{
	(void)gw;
	(void)arg;
	return 0;
}

/* Start the other workers' threads; returns once each one's loop runs. */
static int workers_launch(struct gateway *owner)
{
	struct workers *ws = owner->workers;
	int err;

	for (unsigned k = 1; k < ws->n; k++) {
		err = workers_start(ws, k, worker_main);
		if (err) {
			pr_warn("cannot start worker %u: %s", k, strerror(-err));
			return -1;
		}
	}
	/* A call answers once the worker's loop serves its mailbox; -ESHUTDOWN if it quit. */
	if (workers_each(owner, nothing, NULL)) {
		pr_warn("a worker failed to start (see above)");
		return -1;
	}
	return 0;
}

/* xdp_interfaces: the XDP guard, pinned beside the relay (after it: stale pins go first). */
static int open_guard(struct gateway *gw)
{
	char why[512];
	int err = guard_open(gw->cfg, &gw->guard, why, sizeof(why));

	if (err)
		pr_warn("%s", why);
	else if (gw->guard)
		pr_info("XDP guard on %u interface(s): %u deny entries, syn_rate %u",
			gw->cfg->nxdp_interfaces, gw->cfg->ndeny, gw->cfg->syn_rate);
	return err;
}

static int start(struct gateway *gw)
{
	char pause_why[512] = "";

	if (setup_signals(gw)) {
		pr_warn("cannot set up signal handling: %s", strerror(errno));
		return -1;
	}
	enter_cgroup(gw, pause_why, sizeof(pause_why));
	/* Listeners and control first: they fail if another daemon has them, before
	 * the relay would replace that daemon's pinned maps. */
	if (listeners_sync(gw, gw->cfg, true) || control_open(gw, gw->cfg->control) ||
	    metrics_open(gw) || open_relay(gw, pause_why) || open_guard(gw))
		return -1;
	if (start_resolver(gw))
		return -1;
	gw->health = health_new(); /* its first health_tick() starts the checks */
	if (!gw->health) {
		pr_warn("cannot start the health checker: out of memory");
		return -1;
	}
	/*
	 * The other workers' listeners are bound as root too (a port below 1024, and one
	 * owner for the SO_REUSEPORT group); their threads start once the privileges are
	 * dropped, since capabilities are per thread, and before the filter goes in.
	 */
	if (workers_prepare(gw) || priv_drop(gw) || workers_launch(gw) || priv_confine(gw))
		return -1;
	pr_info("listening on %u address(es) with %u workers, relay %s%s, control %s",
		gw->cfg->nlisten, gw->workers->n, relay_kind_name(gw->tunnels.default_kind),
		gw->tunnels.relay ? relay_pausing(gw->tunnels.relay) ? " (pause sockops)" :
		" (pause hold)" : "", gw->cfg->control);
	return 0;
}

/* What each worker closes on its own thread: connections, listeners, resolver. */
static void worker_close(struct gateway *gw)
{
	while (gw->conns) {
		conn_set_end(gw->conns, END_DRAIN, NULL); /* drain_timeout_ms, a second signal */
		conn_close(gw->conns, "daemon exiting");
	}
	listeners_close(gw);
	if (gw->resolver) {
		ev_del(&gw->resolver_h);
		resolver_stop(gw->resolver); /* closes its fd */
		gw->resolver = NULL;
	}
	ev_forget(&gw->wake);
	conn_bury(gw);
	reuse_free(gw->reuse);
	gw->reuse = NULL;
}

/* The owner, once its loop ended: the other workers end theirs, then are freed. */
static void workers_end(struct gateway *owner)
{
	struct workers *ws = owner->workers;

	if (owner->exit_now || !owner->stopping)
		workers_each(owner, worker_exit, NULL);
	workers_join(ws);
	for (unsigned k = 1; k < ws->n; k++) {
		if (!ws->w[k].gw)
			continue;
		config_put(ws->w[k].gw->cfg);
		free(ws->w[k].gw);
		ws->w[k].gw = NULL;
	}
}

static void shutdown_all(struct gateway *gw)
{
	workers_end(gw);
	worker_close(gw);
	control_close(gw);
	metrics_close(gw);
	guard_close(gw->guard); /* off the interfaces now; its pins go with the relay's */
	priv_exit(); /* as `user`, the helper removes the pins, the cgroup, the socket */
	relay_close(gw->tunnels.relay);
	cgroup_leave(gw->cgroup);
	ev_forget(&gw->sigh);
	close_access_log(gw);
	health_free(gw->health); /* closes the checks in flight */
	ev_close();
	config_put(gw->cfg);
	admit_free(gw->admit);
}

/* The wait for the next epoll round: timers, polled tunnels and the drain. */
static int next_timeout(struct gateway *gw)
{
	/* Idle upstream connections expire on the tick; a paused accept retries on it. */
	int timeout = gw->conns || reuse_count(gw->reuse) || gw->accept_paused ?
		      TIMER_TICK_MS : -1;
	int poll = tunnel_watch_poll(&gw->tunnels);
	int dns = resolver_timeout_ms(gw->resolver);
	/* The owner's: closes the metrics connections past their time; the checks. */
	int metrics = gw->worker_id ? -1 : metrics_expire(gw);
	int health = gw->worker_id ? -1 : health_next_ms(gw);

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
	case H_WAKE:
		wbox_serve(h->owner);
		break;
	}
	return 0;
}

/*
 * Connections a draining loop still waits for: a worker's own; the owner's, every
 * worker's, so that it keeps handling signals (a second SIGTERM, SIGUSR1) until the
 * last worker is done.
 */
static unsigned drain_left(const struct gateway *gw)
{
	return gw->worker_id ? gw->nconns : __atomic_load_n(gw->conns_total, __ATOMIC_RELAXED);
}

/* Returns 0 on a clean stop, 1 on a failure. */
static int run(struct gateway *gw)
{
	struct epoll_event ev[MAX_EVENTS];
	uint64_t last_tick = 0, last_idle_scan = 0;

	for (;;) {
		int timeout = next_timeout(gw), n;

		if (gw->exit_now || (gw->stopping && !drain_left(gw)))
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
		if (!gw->worker_id)
			health_tick(gw); /* due checks and their timeouts; at once when none */
		conn_bury(gw);
		reuse_bury(gw->reuse);
		accept_resume(gw);
	}
}

/* The body of worker k's thread (k > 0): its own epoll instance, resolver and loop. */
static int worker_main(struct gateway *gw)
{
	struct wbox *box = gw->workers->w[gw->worker_id].box;
	int rc = 1;

	pool_set_worker(gw->worker_id);
	if (ev_open()) {
		pr_warn("worker %u: cannot create its epoll instance: %s", gw->worker_id,
			strerror(errno));
		return 1;
	}
	gw->reuse = reuse_new();
	gw->wake = (struct handle){ .kind = H_WAKE, .fd = wbox_fd(box), .owner = box };
	if (gw->reuse && !start_resolver(gw) && !ev_set(&gw->wake, EPOLLIN)) {
		listeners_arm(gw);
		rc = run(gw);
	}
	gw->wake.fd = -1; /* the mailbox's: wbox_free() closes it */
	worker_close(gw);
	ev_close();
	return rc;
}

int gateway_run(struct config *cfg, const char *path)
{
	struct workers ws = { .n = config_workers(cfg) };
	struct gateway gw = { .cfg = cfg, .cfg_path = path, .ctl = { .fd = -1 },
			      .sigh = { .fd = -1 }, .metrics = { .fd = -1 },
			      .workers = &ws, .conns_total = &ws.conns, .wake = { .fd = -1 } };
	int rc = 1;

	ws.w[0].gw = &gw;
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
	if (rc)
		gw.exit_now = true;
	shutdown_all(&gw);
	return rc;
}
