// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The client's request head: read it, check it, apply the rules. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "proxy_proto.h"
#include "request.h"
#include "rules.h"

/* Pick the pool for a request by the rules. */
static void route(struct conn *c, const struct rule_input *in);

void request_route(struct conn *c)
{
	if (c->cfg->rules_need_dest && !c->rin.dest) {
		if (!c->uaddr_set && !addr_from_literal(c->thost, c->tport, &c->uaddr)) {
			c->state = CS_LOOKUP; /* a name: its address first */
			return;
		}
		c->uaddr_set = true; /* the dial uses the address the rules saw */
		c->rin.dest = &c->uaddr;
	}
	route(c, &c->rin);
}

static void route(struct conn *c, const struct rule_input *in)
{
	struct config *cfg = c->cfg;
	const struct rule *r;
	int err = rules_match(cfg, in, &r);

	c->rule = err ? NULL : r;
	if (err) {
		c->gw->stats.bad_requests++;
		conn_reply(c, err == -ENOMEM ? 503 : 400, false,
			   "tunnelgate: the request path cannot be checked against the rules: %s",
			   path_strerror(err));
		return;
	}
	if (r && r->action == ACT_REJECT) {
		c->gw->stats.rejected++;
		conn_reply(c, 403, true, "tunnelgate: request rejected by rule '%s'", r->name);
		return;
	}
	c->pool = &cfg->pools[r && r->action != ACT_REJECT && r->pool >= 0 ? r->pool :
						     cfg->default_pool];
	/* HTTP::disable: a plain request goes as sent, then the connection is raw bytes. */
	c->raw_tunnel = r && r->action == ACT_TUNNEL && c->http_fwd;
	if (c->http_fwd && c->pool->direct && !config_http_port_allowed(cfg, c->tport)) {
		c->gw->stats.rejected++;
		conn_reply(c, 403, true, "tunnelgate: plain HTTP to port %u is not allowed (http_ports)",
			   c->tport);
		return;
	}
	c->state = CS_ROUTE;
}

/* A complete CONNECT head is in cbuf[0..req_len). */
static void handle_connect(struct conn *c)
{
	const char *t = http_ptr(c->cbuf, c->req->target);
	struct rule_input in = { .method = "CONNECT", .method_len = 7, .client = &c->caddr };
	int err;

	snprintf(c->target, sizeof(c->target), "%.*s", (int)c->req->target.len, t);
	/* What follows a CONNECT head is tunnel data: a body could smuggle a request. */
	if (c->req->chunked || (c->req->has_content_length && c->req->content_length)) {
		c->gw->stats.bad_requests++;
		conn_reply(c, 400, false, "tunnelgate: a CONNECT request cannot have a body");
		return;
	}
	err = http_parse_authority(t, c->req->target.len, c->thost, sizeof(c->thost), &c->tport);
	if (err) {
		c->gw->stats.bad_requests++;
		conn_reply(c, 400, false, "tunnelgate: CONNECT target '%s' is not host:port (port 1-65535 without leading zeros, IPv6 in brackets)",
			   c->target);
		return;
	}
	if (!config_port_allowed(c->cfg, c->tport)) {
		c->gw->stats.rejected++;
		conn_reply(c, 403, true, "tunnelgate: CONNECT to port %u is not allowed (connect_ports)",
			   c->tport);
		return;
	}
	in.host = c->thost;
	in.host_len = strlen(c->thost);
	c->rin = in;
	request_route(c);
}

/*
 * The authority a plain request goes to: the absolute-form URL's (it wins over any
 * Host field), or the one Host field of an origin-form request. Sets @auth/@alen and
 * the path; false after replying with an error.
 */
static bool http_authority(struct conn *c, const char **auth, size_t *alen, const char **path)
{
	const char *t = http_ptr(c->cbuf, c->req->target), *end;
	size_t tlen = c->req->target.len;
	int i;

	if (tlen >= 7 && !strncasecmp(t, "http://", 7)) {
		*auth = t + 7;
		for (end = *auth; end < t + tlen && *end != '/' && *end != '?' && *end != '#'; end++)
			;
		*alen = end - *auth;
		*path = end;
		return true;
	}
	if (tlen && t[0] == '/') {
		i = http_find_field(c->req, c->cbuf, "Host", 0);
		if (i < 0 || http_find_field(c->req, c->cbuf, "Host", i + 1) >= 0) {
			conn_reply(c, 400, false, "tunnelgate: an origin-form request needs exactly one Host field");
			return false;
		}
		*auth = http_ptr(c->cbuf, c->req->fields[i].value);
		*alen = c->req->fields[i].value.len;
		*path = t;
		return true;
	}
	conn_reply(c, 400, false, "tunnelgate: request target must be /path or http://host/path%s",
		   c->req->method == HTTP_OPTIONS ? "" : " (host:port is for CONNECT only)");
	return false;
}

/* A plain HTTP request: find its target host, apply the rules. */
static void handle_http(struct conn *c)
{
	const char *t = http_ptr(c->cbuf, c->req->target), *auth, *path, *end;
	size_t tlen = c->req->target.len, alen;
	struct rule_input in = { .client = &c->caddr };
	char authority[300];

	if (!http_authority(c, &auth, &alen, &path))
		return;
	/* Default port 80 unless the authority ends in one (mind IPv6 brackets). */
	end = memrchr(auth, ':', alen);
	snprintf(authority, sizeof(authority), "%.*s%s", (int)alen, auth,
		 !end || memrchr(auth, ']', alen) > (const void *)end ? ":80" : "");
	if (alen >= sizeof(authority) - 4 ||
	    http_parse_authority(authority, strlen(authority), c->thost, sizeof(c->thost),
				 &c->tport)) {
		conn_reply(c, 400, false, "tunnelgate: request host '%.*s' is not host[:port]",
			   (int)alen, auth);
		return;
	}
	snprintf(c->target, sizeof(c->target), "%s", authority);
	c->fwd_path_off = path - c->cbuf;
	c->fwd_path_len = t + tlen - path;
	/* The URL's authority as written, for a Host field; none for origin-form. */
	c->fwd_auth_off = auth - c->cbuf;
	c->fwd_auth_len = path == t ? 0 : alen;
	c->http_fwd = true;
	c->req_body_done = false;
	in.method = http_ptr(c->cbuf, c->req->method_s);
	in.method_len = c->req->method_s.len;
	in.host = c->thost;
	in.host_len = strlen(c->thost);
	in.path = c->fwd_path_len ? path : "/";
	in.path_len = c->fwd_path_len ? c->fwd_path_len : 1;
	c->rin = in;
	request_route(c);
}

void request_parse(struct conn *c)
{
	ssize_t n = http_head_parse(c->req, c->cbuf, c->clen);

	if (n == 0) {
		if (c->clen == c->ccap) {
			c->gw->stats.bad_requests++;
			conn_reply(c, 431, false, "tunnelgate: request head is larger than max_header_bytes (%u)",
				   c->cfg->max_header_bytes);
		}
		return;
	}
	if (n < 0) {
		c->gw->stats.bad_requests++;
		conn_reply(c, c->req->error_status ? c->req->error_status : 400, false,
			   "tunnelgate: bad request: %s", c->req->error ? c->req->error : "parse error");
		return;
	}
	c->req_len = n;
	c->gw->stats.requests++;
	snprintf(c->method, sizeof(c->method), "%.*s", (int)c->req->method_s.len,
		 http_ptr(c->cbuf, c->req->method_s));
	if (c->gw->stopping) {
		conn_reply(c, 503, false, "tunnelgate: this gateway is shutting down; send the request again to another one");
		return;
	}
	if (http_via_has(c->req, c->cbuf, c->cfg->via_name)) {
		c->gw->stats.rejected++;
		conn_reply(c, 508, false, "tunnelgate: loop detected: this request has passed this gateway before (Via names %s); check the next hops' configuration",
			   c->cfg->via_name);
		return;
	}
	if (c->req->method != HTTP_CONNECT)
		handle_http(c);
	else
		handle_connect(c);
}

/*
 * accept_proxy: a PROXY header comes first, and its source is the client from then on
 * (rules, logs, X-Forwarded-For, send_proxy). Returns false while it is incomplete or
 * after closing a connection without one: nothing is answered to such a peer.
 */
static bool proxy_header(struct conn *c)
{
	struct proxy_info pi;
	ssize_t n = proxy_parse(c->cbuf, c->clen, &pi);

	if (n == 0 && c->clen < c->ccap)
		return false;
	if (n <= 0) {
		c->gw->stats.bad_requests++;
		conn_close(c, "no valid PROXY header on an accept_proxy listener");
		return false;
	}
	if (!pi.local) {
		c->caddr = pi.src;
		c->daddr = pi.dst;
		sockaddr_fmt(&c->caddr, c->cname, sizeof(c->cname));
	}
	memmove(c->cbuf, c->cbuf + n, c->clen - n);
	c->clen -= n;
	c->want_proxy = false;
	return true;
}

void request_read(struct conn *c)
{
	ssize_t n;

	if (c->clen == c->ccap) {
		request_parse(c);
		return;
	}
	/* A request that starts after a reload follows the new config. */
	if (conn_take_config(c)) {
		conn_close(c, "out of memory");
		return;
	}
	n = recv(c->ch.fd, c->cbuf + c->clen, c->ccap - c->clen, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			conn_close(c, strerror(errno));
		return;
	}
	if (n == 0) {
		conn_close(c, c->clen ? "client closed in the middle of a request head" : NULL);
		return;
	}
	c->crecvd += n;
	c->clen += n;
	if (c->want_proxy && !proxy_header(c))
		return;
	if (c->clen)
		request_parse(c);
}
