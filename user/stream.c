// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A client connection's way through the stages: the state dispatch. */
#include <errno.h>
#include <stddef.h>
#include <sys/epoll.h>

#include "conn.h"
#include "http_fwd.h"
#include "request.h"
#include "stream.h"
#include "tunnel.h"
#include "upstream.h"

/* The epoll interest of both sockets in the states before the tunnel. */
static void stream_events(struct conn *c)
{
	uint32_t ce = 0, ue = 0;
	size_t to_client = obuf_pending(&c->to_client), to_up = obuf_pending(&c->to_up);

	switch (c->state) {
	case CS_REQ_HEAD:
		ce = EPOLLIN;
		break;
	case CS_DIAL:
		ue = EPOLLOUT;
		break;
	case CS_QUEUED:
		break; /* nothing is read until a server is picked */
	case CS_RESP_HEAD:
	case CS_RESP_BODY:
		/* Interim heads and bodies queue for the client: read no more past the mark. */
		ce = to_client ? EPOLLOUT : 0;
		ue = (to_client < CONN_OBUF_HIGH ? EPOLLIN : 0) | (to_up ? EPOLLOUT : 0);
		break;
	case CS_REPLY:
		ce = EPOLLOUT;
		break;
	case CS_HANDOFF:
		ce = to_client ? EPOLLOUT : 0;
		ue = to_up ? EPOLLOUT : 0;
		break;
	default:
		return; /* passing states; the tunnel's relay sets its own */
	}
	/* A forwarded request's body streams up while the response may come down. */
	if (c->http_fwd && !c->req_body_done && c->state != CS_DIAL && c->state != CS_QUEUED &&
	    c->state != CS_REPLY && to_up < CONN_OBUF_HIGH)
		ce |= EPOLLIN;
	ev_set(&c->ch, ce);
	if (c->uh.fd >= 0)
		ev_set(&c->uh, ue);
}

/* CS_REPLY: once the answer is out, close or read the next request. */
static void reply_progress(struct conn *c)
{
	int err = obuf_flush(&c->to_client, c->ch.fd);

	if (err == -EAGAIN)
		return;
	if (err) {
		conn_close(c, "client went away");
		return;
	}
	conn_next_request(c);
	if (c->state == CS_REQ_HEAD && c->clen)
		request_parse(c);
}

/* Run the passing states until the connection waits for something. */
static void stream_advance(struct conn *c)
{
	for (;;) {
		enum conn_state s = c->state;

		switch (s) {
		case CS_LOOKUP:
			upstream_lookup(c);
			break;
		case CS_RULES:
			request_route(c);
			break;
		case CS_ROUTE:
			upstream_route(c);
			break;
		case CS_CONNECTED:
			http_fwd_start(c);
			break;
		case CS_DIAL_FAILED:
			upstream_failed(c, c->dial_err);
			break;
		case CS_REPLY:
			reply_progress(c);
			break;
		case CS_ESTABLISHED:
			tunnel_handoff(c);
			break;
		default:
			break;
		}
		/* CS_REPLY may lead to CS_REPLY again (pipelined requests): loop on progress. */
		if (c->state == s && (s != CS_REPLY || obuf_pending(&c->to_client)))
			break;
		if (c->state == CS_CLOSED)
			return;
	}
	stream_events(c);
}

static void client_event(struct conn *c, uint32_t events)
{
	if (events & EPOLLERR) {
		conn_close(c, "client socket error");
		return;
	}
	if ((events & EPOLLOUT) && obuf_pending(&c->to_client)) {
		int err = obuf_flush(&c->to_client, c->ch.fd);

		if (err && err != -EAGAIN)
			conn_close(c, "client went away");
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP)))
		return;
	if (c->state == CS_REQ_HEAD)
		request_read(c);
	else if (c->http_fwd && !c->req_body_done)
		http_fwd_body_read(c);
}

static void upstream_side_event(struct conn *c, uint32_t events)
{
	switch (c->state) {
	case CS_DIAL:
		upstream_event(c, events);
		break;
	case CS_RESP_HEAD:
	case CS_RESP_BODY:
		http_fwd_upstream_event(c, events);
		break;
	default:
		if (events & EPOLLERR)
			conn_drop_upstream(c);
		break;
	}
}

void stream_event(struct conn *c, struct handle *h, uint32_t events)
{
	switch (c->state) {
	case CS_CLOSED:
		return;
	case CS_TUNNEL:
		tunnel_event(c, h, events);
		return;
	case CS_HANDOFF:
		tunnel_handoff_event(c);
		break;
	default:
		if (h->kind == H_CLIENT)
			client_event(c, events);
		else
			upstream_side_event(c, events);
		break;
	}
	stream_advance(c);
}

void stream_start(struct conn *c)
{
	stream_events(c);
}

void stream_run_queues(void)
{
	struct pool_waiter *w;

	while ((w = pool_queue_next())) {
		struct conn *c = (struct conn *)((char *)w - offsetof(struct conn, qnode));

		c->dequeued = true;
		c->state = CS_ROUTE;
		stream_advance(c);
	}
}

void stream_resolved(struct conn *c, const struct resolve_req *req)
{
	upstream_resolved(c, req);
	stream_advance(c);
}

void stream_timeout(struct conn *c)
{
	switch (c->state) {
	case CS_REQ_HEAD:
		if (c->want_proxy) {
			conn_close(c, "no PROXY header within header_timeout_ms on an accept_proxy listener");
			return;
		}
		if (!c->clen) {
			conn_close(c, "idle client connection timed out");
			return;
		}
		c->gw->stats.timeouts++;
		conn_reply(c, 408, false, "tunnelgate: request head not complete within header_timeout_ms (%u)",
			   c->cfg->header_timeout_ms);
		break;
	case CS_DIAL:
		upstream_timeout(c);
		break;
	case CS_QUEUED:
		upstream_queue_timeout(c);
		break;
	case CS_RESP_HEAD:
		c->gw->stats.timeouts++;
		if (c->http_fwd && !c->req_body_done) {
			conn_reply(c, 408, false, "tunnelgate: request body too slow: nothing for body_timeout_ms (%u) or under body_min_rate (%u bytes/s)",
				   c->cfg->body_timeout_ms, c->cfg->body_min_rate);
			break;
		}
		conn_upstream_error(c, UE_TIMEOUT); /* before the reply lets go of the server */
		conn_reply(c, 504, false, "tunnelgate: upstream %s did not answer within header_timeout_ms (%u)",
			   c->uname, c->cfg->header_timeout_ms);
		break;
	default:
		conn_close(c, "response could not be delivered in time");
		return;
	}
	stream_advance(c);
}
