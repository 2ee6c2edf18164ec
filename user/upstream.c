// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Reaching the upstream: server choice, name look-up, connect, one retry. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/tcp.h>

#include "conn.h"
#include "log.h"
#include "pool.h"
#include "resolver.h"
#include "upstream.h"

static void dial(struct conn *c);

void upstream_failed(struct conn *c, int err)
{
	const char *name = c->uname;

	if (c->server)
		c->server->state->failures++;
	/* A refused or unreachable proxy: try another server of the pool, once. */
	if (c->server && c->attempts < 2 && c->pool->nservers > 1) {
		struct server *bad = c->server;

		pr_warn("upstream %s for %s: %s; trying another server of pool %s", name,
			c->target, strerror(-err), c->pool->name);
		conn_drop_upstream(c);
		c->server = pool_pick(c->pool, &c->caddr, c->target, bad);
		if (c->server) {
			dial(c);
			return;
		}
	}
	conn_reply(c, 502, true, "tunnelgate: cannot connect to upstream %s for %s: %s", name,
		   c->target, strerror(-err));
	c->gw->stats.upstream_errors++;
}

/* The target of a direct pool as an address, if it is an IP literal. */
static bool literal_target(struct conn *c, struct sockaddr_any *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, c->thost, &out->in.sin_addr) == 1) {
		out->in.sin_family = AF_INET;
		out->in.sin_port = htons(c->tport);
		out->len = sizeof(out->in);
		return true;
	}
	if (inet_pton(AF_INET6, c->thost, &out->in6.sin6_addr) == 1) {
		out->in6.sin6_family = AF_INET6;
		out->in6.sin6_port = htons(c->tport);
		out->len = sizeof(out->in6);
		return true;
	}
	return false;
}

/* Look the target's host name up off the loop; dial() goes on when it is answered. */
static void resolve_async(struct conn *c)
{
	struct resolve_req *req = calloc(1, sizeof(*req));

	if (!req) {
		conn_reply(c, 503, false, "tunnelgate: out of memory");
		return;
	}
	snprintf(req->host, sizeof(req->host), "%s", c->thost);
	req->port = c->tport;
	req->owner = c;
	c->rreq = req;
	c->state = CS_DIAL;
	c->deadline_ms = now_ms() + c->cfg->connect_timeout_ms;
	resolver_submit(c->gw->resolver, req);
}

void upstream_resolved(struct conn *c, const struct resolve_req *req)
{
	c->rreq = NULL;
	if (req->err) {
		conn_reply(c, 502, true, "tunnelgate: cannot resolve %s (check the name and the host's DNS settings)",
			   c->thost);
		return;
	}
	c->uaddr = req->addr;
	c->uaddr_set = true;
	dial(c);
}

/* Start a non-blocking connect to the chosen server or the target. */
static void dial(struct conn *c)
{
	const struct sockaddr_any *to;
	int fd, one = 1;

	c->attempts++;
	if (c->server) {
		to = &c->server->addr;
		snprintf(c->uname, sizeof(c->uname), "%s", c->server->name);
	} else {
		if (!c->uaddr_set && !literal_target(c, &c->uaddr)) {
			resolve_async(c);
			return;
		}
		c->uaddr_set = false;
		to = &c->uaddr;
		sockaddr_fmt(to, c->uname, sizeof(c->uname));
	}
	fd = socket(to->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_reply(c, 503, false, "tunnelgate: cannot create a socket: %s", strerror(errno));
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->uh.fd = fd;
	c->state = CS_DIAL;
	c->deadline_ms = now_ms() + c->cfg->connect_timeout_ms;
	if (connect(fd, &to->sa, to->len) && errno != EINPROGRESS)
		upstream_failed(c, -errno);
}

void upstream_route(struct conn *c)
{
	if (!c->pool->direct) {
		c->server = pool_pick(c->pool, &c->caddr, c->target, NULL);
		if (!c->server) {
			conn_reply(c, 503, true, "tunnelgate: pool %s has no server", c->pool->name);
			return;
		}
	}
	dial(c);
}

/* Connected. A direct CONNECT is established at once; the rest send a request. */
static void connected(struct conn *c)
{
	static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	if (!c->pool->direct || c->http_fwd) {
		c->state = CS_CONNECTED;
		return;
	}
	if (obuf_put(&c->to_client, established, sizeof(established) - 1)) {
		conn_close(c, "out of memory");
		return;
	}
	c->status = 200;
	c->state = CS_ESTABLISHED;
}

void upstream_event(struct conn *c, uint32_t events)
{
	int err = 0;
	socklen_t len = sizeof(err);

	(void)events;
	if (c->uh.fd < 0)
		return; /* still resolving */
	getsockopt(c->uh.fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		upstream_failed(c, -err);
		return;
	}
	connected(c);
}

void upstream_timeout(struct conn *c)
{
	c->gw->stats.timeouts++;
	if (c->server)
		c->server->state->failures++;
	conn_reply(c, 504, true, "tunnelgate: %s %s timed out after %u ms (connect_timeout_ms)",
		   c->rreq ? "resolving" : "connecting to", c->rreq ? c->thost : c->uname,
		   c->cfg->connect_timeout_ms);
}
