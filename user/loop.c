// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The daemon's event loop: start-up and shut-down, signals, reload, drain, timers,
 * accepting, and the dispatch of every epoll event to its owner.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cgroup.h"
#include "conn.h"
#include "control.h"
#include "gateway-t.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "relay.h"
#include "resolver.h"
#include "stream.h"
#include "tunnel.h"

#define MAX_EVENTS 256
#define TIMER_TICK_MS 50
#define IDLE_SCAN_MS 1000
#define ACCEPT_BATCH 64

static void accept_ready(struct gateway *gw, struct listener *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_any a = { .len = sizeof(a.ss) };
		struct conn *c;
		int fd;

		fd = accept4(l->h.fd, &a.sa, &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				pr_warn("cannot accept: %s (raise the fd limit: ulimit -n)",
					strerror(errno));
			return;
		}
		c = conn_new(gw, fd, &a);
		if (!c) {
			pr_warn("cannot accept: out of memory");
			close(fd);
			return;
		}
		gw->stats.accepted++;
		stream_start(c);
	}
}

static void resolved(struct gateway *gw)
{
	struct resolve_req *req, *next;

	for (req = resolver_done(gw->resolver); req; req = next) {
		next = req->next;
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
		if (n.idle_ms >= c->cfg->idle_timeout_ms)
			conn_close(c, "tunnel idle for idle_timeout_ms");
	}
}

static FILE *open_access_log(const char *path)
{
	FILE *f;

	if (!strcmp(path, "-"))
		return stderr;
	f = fopen(path, "ae");
	if (!f)
		pr_warn("cannot open access_log %s: %s (logging to stderr instead)", path,
			strerror(errno));
	return f ? f : stderr;
}

static void close_access_log(struct gateway *gw)
{
	if (gw->access_log && gw->access_log != stderr)
		fclose(gw->access_log);
	gw->access_log = NULL;
}

/* A new config that can run replaces the current one; the old one stays with its connections. */
static void reload(struct gateway *gw)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	char err[512];

	if (!cfg)
		return;
	if (config_load(gw->cfg_path, cfg, err, sizeof(err))) {
		pr_warn("reload failed, keeping the running config: %s", err);
		config_free(cfg);
		free(cfg);
		return;
	}
	cfg->refs = 1;
	if (listeners_sync(gw, cfg)) {
		pr_warn("reload failed, keeping the running config: a listen address is not available");
		config_put(cfg);
		return;
	}
	if (strcmp(cfg->bpf_pin_dir, gw->cfg->bpf_pin_dir) || cfg->relay != gw->cfg->relay ||
	    cfg->pause != gw->cfg->pause)
		pr_warn("reload: relay, pause and bpf_pin_dir changes take effect on restart only");
	if (strcmp(cfg->control, gw->ctl_path)) {
		control_close(gw);
		control_open(gw, cfg->control);
	}
	close_access_log(gw);
	gw->access_log = open_access_log(cfg->access_log);
	config_put(gw->cfg);
	gw->cfg = cfg;
	tunnels_set_bounds(&gw->tunnels, cfg);
	pr_info("reloaded %s: %u listeners, %u pools, %u rules", gw->cfg_path, cfg->nlisten,
		cfg->npools, cfg->nrules);
}

/* Returns 1 when the daemon must exit now. */
static int signal_event(struct gateway *gw)
{
	struct signalfd_siginfo si;

	while (read(gw->sigh.fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
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
	char pause_why[512] = "";

	if (setup_signals(gw)) {
		pr_warn("cannot set up signal handling: %s", strerror(errno));
		return -1;
	}
	enter_cgroup(gw, pause_why, sizeof(pause_why));
	/* Listeners and control first: they fail if another daemon has them, before
	 * the relay would replace that daemon's pinned maps. */
	if (listeners_sync(gw, gw->cfg) || control_open(gw, gw->cfg->control) ||
	    open_relay(gw, pause_why))
		return -1;
	gw->resolver = resolver_start();
	if (!gw->resolver) {
		pr_warn("cannot start the name resolver thread: %s", strerror(errno));
		return -1;
	}
	gw->resolver_h = (struct handle){ .kind = H_RESOLVER, .fd = resolver_fd(gw->resolver),
					  .owner = gw };
	ev_set(&gw->resolver_h, EPOLLIN);
	pr_info("listening on %u address(es), relay %s%s, control %s", gw->cfg->nlisten,
		relay_kind_name(gw->tunnels.default_kind),
		gw->tunnels.relay ? relay_pausing(gw->tunnels.relay) ? " (pause sockops)" :
		" (pause hold)" : "", gw->cfg->control);
	return 0;
}

static void shutdown_all(struct gateway *gw)
{
	while (gw->conns)
		conn_close(gw->conns, "daemon exiting");
	listeners_close(gw);
	control_close(gw);
	relay_close(gw->tunnels.relay);
	cgroup_leave(gw->cgroup);
	if (gw->resolver) {
		ev_del(&gw->resolver_h);
		resolver_stop(gw->resolver); /* closes its fd */
	}
	ev_forget(&gw->sigh);
	close_access_log(gw);
	ev_close();
	config_put(gw->cfg);
	conn_bury(gw);
}

/* The wait for the next epoll round: timers, polled tunnels and the drain. */
static int next_timeout(struct gateway *gw)
{
	int timeout = gw->conns ? TIMER_TICK_MS : -1;
	int poll = tunnel_watch_poll(&gw->tunnels);

	if (poll >= 0 && (timeout < 0 || poll < timeout))
		timeout = poll;
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
		if (now_ms() - last_tick >= TIMER_TICK_MS) {
			last_tick = now_ms();
			check_deadlines(gw);
		}
		if (now_ms() - last_idle_scan >= IDLE_SCAN_MS) {
			last_idle_scan = now_ms();
			idle_scan(gw);
		}
		conn_bury(gw);
	}
}

int gateway_run(struct config *cfg, const char *path)
{
	struct gateway gw = { .cfg = cfg, .cfg_path = path, .ctl = { .fd = -1 },
			      .sigh = { .fd = -1 } };
	int rc = 1;

	cfg->refs = 1;
	if (ev_open()) {
		pr_warn("cannot create epoll instance: %s", strerror(errno));
		return 1;
	}
	gw.access_log = open_access_log(cfg->access_log);
	if (!start(&gw))
		rc = run(&gw);
	shutdown_all(&gw);
	return rc;
}
