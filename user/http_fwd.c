// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The HTTP exchange with the upstream: request out, answer back. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "conn.h"
#include "http_fwd.h"
#include "http_msg.h"
#include "pool.h"
#include "reuse.h"

#define MAX_INTERIM 16 /* 1xx heads relayed per request, then the upstream is broken */

/* "Via: 1.1 <via_name>\r\n" into @out. */
static const char *via_field(const struct conn *c, char *out, size_t len)
{
	snprintf(out, len, "Via: 1.1 %s\r\n", c->cfg->via_name);
	return out;
}

/* The fields a forwarded request loses: ours replace some, some are for a proxy only. */
static void dropped_fields(const struct conn *c, bool host, const char **drop)
{
	int n = 0;

	if (host)
		drop[n++] = "Host";
	/* Credentials for a proxy; an origin must never see them. */
	if (c->pool->direct)
		drop[n++] = "Proxy-Authorization";
	if (c->cfg->x_forwarded_for == XFF_REPLACE)
		drop[n++] = "X-Forwarded-For";
	drop[n] = NULL;
}

/*
 * The head of a forwarded request: to a proxy pool as the client sent it, to a direct
 * target in origin-form; hop-by-hop fields out, Via in. With reuse on the upstream
 * connection stays open (HTTP/1.1's default), else one request per connection.
 */
static ssize_t forward_head(struct conn *c, char *out, size_t outlen)
{
	const char *target = http_ptr(c->cbuf, c->req->target), *drop[4];
	size_t tlen = c->req->target.len;
	char extra[800], host[300] = "", xff[96] = "", via[160];

	if (c->pool->direct) {
		target = c->cbuf + c->fwd_path_off;
		tlen = c->fwd_path_len;
		if (!tlen) {
			target = "/";
			tlen = 1;
		}
		/* Origin-form loses the URL's host: Host must say it (RFC 9112 3.2.2). */
		if (c->fwd_auth_len)
			snprintf(host, sizeof(host), "Host: %.*s\r\n", (int)c->fwd_auth_len,
				 c->cbuf + c->fwd_auth_off);
	}
	if (c->cfg->x_forwarded_for) {
		char ip[INET6_ADDRSTRLEN] = "";

		/* A field of its own: a list field, so it adds to any the client sent. */
		if (c->caddr.sa.sa_family == AF_INET6)
			inet_ntop(AF_INET6, &c->caddr.in6.sin6_addr, ip, sizeof(ip));
		else
			inet_ntop(AF_INET, &c->caddr.in.sin_addr, ip, sizeof(ip));
		snprintf(xff, sizeof(xff), "X-Forwarded-For: %s\r\n", ip);
	}
	snprintf(extra, sizeof(extra), "%s%s%s%s%s", host,
		 c->req->chunked ? "Transfer-Encoding: chunked\r\n" : "",
		 via_field(c, via, sizeof(via)), xff,
		 c->cfg->upstream_idle_max ? "" : "Connection: close\r\n");
	dropped_fields(c, host[0], drop);
	return http_build_request(c->req, c->cbuf, target, tlen, drop, extra, out, outlen);
}

/*
 * A decoded body piece on its way out: to @out, as one chunk when @chunked. Bodies
 * are re-framed rather than copied raw so the next message can never hide in them.
 */
struct body_ctx {
	struct obuf *out;
	uint64_t *count;
	bool chunked;
	int err;
};

static void body_piece(void *arg, const char *p, size_t n)
{
	struct body_ctx *b = arg;
	char line[24];
	int len;

	if (!n || b->err)
		return;
	if (b->chunked) {
		len = snprintf(line, sizeof(line), "%zx\r\n", n);
		b->err = obuf_put(b->out, line, len);
	}
	if (!b->err)
		b->err = obuf_put(b->out, p, n);
	if (!b->err && b->chunked)
		b->err = obuf_put(b->out, "\r\n", 2);
	*b->count += n;
}

/*
 * Move the forwarded request's body from cbuf to the upstream buffer; what follows the
 * body stays in cbuf as the next request. Returns 0 or -errno.
 */
static int req_body_feed(struct conn *c)
{
	struct body_ctx b = { .out = &c->to_up, .count = &c->body_up, .chunked = c->req->chunked };
	bool done = false;
	ssize_t n;

	if (c->req_body_done || !c->clen)
		return 0;
	n = http_body_feed(c->req, c->cbuf, c->clen, body_piece, &b, &done);
	if (n < 0)
		return n;
	if (b.err)
		return b.err;
	memmove(c->cbuf, c->cbuf + n, c->clen - n);
	c->clen -= n;
	if (done) {
		c->req_body_done = true;
		if (c->req->chunked && obuf_put(&c->to_up, "0\r\n\r\n", 5))
			return -ENOMEM;
	}
	return 0;
}

/* A plain request's head leaves cbuf for the upstream; what follows is its body. */
static int queue_forward(struct conn *c)
{
	char head[16384];
	ssize_t n = forward_head(c, head, sizeof(head));

	if (n < 0 || obuf_put(&c->to_up, head, n)) {
		conn_reply(c, 500, false, "tunnelgate: cannot build the upstream request: %s",
			   strerror(n < 0 ? (int)-n : ENOMEM));
		return -1;
	}
	memmove(c->cbuf, c->cbuf + c->req_len, c->clen - c->req_len);
	c->clen -= c->req_len;
	c->req_len = 0;
	c->req_body_done = http_body_framing(c->req) == HTTP_BODY_NONE;
	if (req_body_feed(c)) {
		conn_close(c, "bad request body framing");
		return -1;
	}
	return 0;
}

static int queue_connect(struct conn *c)
{
	char head[16384], via[160];
	ssize_t n = http_build_connect(c->req, c->cbuf, via_field(c, via, sizeof(via)), head,
				       sizeof(head));

	if (n < 0 || obuf_put(&c->to_up, head, n)) {
		conn_reply(c, 500, false, "tunnelgate: cannot build the upstream request: %s",
			   strerror(n < 0 ? (int)-n : ENOMEM));
		return -1;
	}
	return 0;
}

/*
 * The deadline while waiting for the answer: the upstream's (header_timeout_ms) once
 * the request body is in; before that the client's: body_timeout_ms of silence, or
 * an average under body_min_rate bytes/s once body_timeout_ms has passed.
 */
static void answer_deadline(struct conn *c)
{
	const struct config *cfg = c->cfg;
	uint64_t now = now_ms(), rate;

	if (!c->http_fwd || c->req_body_done) {
		c->deadline_ms = now + cfg->header_timeout_ms;
		return;
	}
	c->deadline_ms = c->body_last_ms + cfg->body_timeout_ms;
	if (!cfg->body_min_rate)
		return;
	rate = c->body_start_ms + cfg->body_timeout_ms + c->body_up * 1000 / cfg->body_min_rate;
	if (rate < c->deadline_ms)
		c->deadline_ms = rate;
}

/*
 * Queue the request: built from cbuf, or after a reused connection failed, the bytes
 * sent on it. On a reused connection they are kept until the answer's first byte.
 */
static int queue_request(struct conn *c)
{
	int err = 0;

	if (c->resend) {
		err = obuf_put(&c->to_up, c->resend, c->resend_len);
		free(c->resend);
		c->resend = NULL;
	} else if (c->http_fwd ? queue_forward(c) : queue_connect(c)) {
		return -1;
	} else if (c->reused) {
		c->resend_len = obuf_pending(&c->to_up);
		c->resend = malloc(c->resend_len);
		if (c->resend)
			memcpy(c->resend, c->to_up.data + c->to_up.off, c->resend_len);
		else
			err = -ENOMEM;
	}
	if (err)
		conn_close(c, "out of memory");
	return err;
}

void http_fwd_start(struct conn *c)
{
	int err;

	if (queue_request(c))
		return;
	if (!c->ubuf) {
		c->ucap = c->cfg->max_header_bytes;
		c->ubuf = malloc(c->ucap);
	}
	if (!c->resp)
		c->resp = malloc(sizeof(*c->resp));
	if (!c->ubuf || !c->resp) {
		conn_close(c, "out of memory");
		return;
	}
	c->ulen = 0;
	http_head_init(c->resp, false, c->cfg->max_header_bytes);
	c->resp->head_only_response = c->http_fwd && c->req->method == HTTP_HEAD;
	c->state = CS_RESP_HEAD;
	c->body_start_ms = c->body_last_ms = now_ms();
	answer_deadline(c);
	err = obuf_flush(&c->to_up, c->uh.fd);
	if (err < 0 && err != -EAGAIN) {
		c->dial_err = err;
		c->state = CS_DIAL_FAILED;
	}
}

static bool resp_chunked_out(struct conn *c)
{
	enum http_framing f = http_body_framing(c->resp);

	return (f == HTTP_BODY_CHUNKED || f == HTTP_BODY_CLOSE) && c->req->minor >= 1;
}

/*
 * The upstream connection can carry another request: the response ended by its own
 * framing with nothing after it, the upstream keeps it open, and the request went whole.
 */
static bool upstream_reusable(const struct conn *c)
{
	return c->http_fwd && !c->upstream_eof && !c->ulen && c->resp->keep_alive &&
	       http_body_framing(c->resp) != HTTP_BODY_CLOSE && c->req_body_done &&
	       !obuf_pending(&c->to_up);
}

static void resp_body_done(struct conn *c)
{
	if (resp_chunked_out(c) && obuf_put(&c->to_client, "0\r\n\r\n", 5)) {
		conn_close(c, "out of memory");
		return;
	}
	if (upstream_reusable(c))
		reuse_park(c);
	conn_drop_upstream(c); /* releases the server: its count is of requests, not sockets */
	/* The rest of an unsent request body would be read as the next request. */
	if (c->http_fwd && !c->req_body_done)
		c->close_after_reply = true;
	conn_set_end(c, END_UPSTREAM_FIN, NULL); /* the upstream's response ended */
	conn_log(c, c->http_fwd ? "http" : "refused", NULL,
		 &(struct conn_bytes){ .up = c->body_up, .down = c->body_down });
	c->state = CS_REPLY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
}

/* Feed body bytes in ubuf[0..ulen) to the client. */
static void resp_body_feed(struct conn *c)
{
	struct body_ctx b = { .out = &c->to_client, .count = &c->body_down,
			      .chunked = resp_chunked_out(c) };
	bool done = false;
	ssize_t n;

	if (!c->ulen && !c->upstream_eof)
		return;
	n = http_body_feed(c->resp, c->ubuf, c->ulen, body_piece, &b, &done);
	if (n < 0 || b.err) {
		if (n < 0)
			conn_upstream_error(c, UE_BAD_RESPONSE);
		c->close_after_reply = true;
		conn_close(c, "bad upstream response body");
		return;
	}
	/* All of it but, once done, bytes past the response: they keep it from being reused. */
	c->ulen -= n;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	if (!done && c->upstream_eof) {
		if (http_body_framing(c->resp) == HTTP_BODY_CLOSE)
			http_body_eof(c->resp, &done);
		if (!done) {
			/* Truncated body: the client cannot be told in-band. */
			conn_upstream_error(c, UE_RESET);
			conn_close(c, "upstream closed in the middle of a response body");
			return;
		}
	}
	if (done)
		resp_body_done(c);
}

static void head_unrelayable(struct conn *c)
{
	conn_upstream_error(c, UE_BAD_RESPONSE);
	conn_reply(c, 502, false, "tunnelgate: upstream %s response head cannot be relayed",
		   c->uname);
}

/*
 * A 1xx answer to a forwarded request: pass it on and wait for the final one. Returns
 * true if bytes after it wait in ubuf to be parsed as the next head.
 */
static bool forward_interim(struct conn *c)
{
	char head[16384], via[160];
	size_t rest;
	ssize_t n;

	if (c->resp->status == 101) {
		/* Upgrade is hop-by-hop and never forwarded: a switch is a broken upstream. */
		conn_upstream_error(c, UE_BAD_RESPONSE);
		conn_reply(c, 502, false, "tunnelgate: upstream %s switched protocols without an Upgrade request",
			   c->uname);
		return false;
	}
	if (++c->interims > MAX_INTERIM) {
		conn_upstream_error(c, UE_BAD_RESPONSE);
		conn_reply(c, 502, false, "tunnelgate: upstream %s sent more than %d interim (1xx) responses to one request",
			   c->uname, MAX_INTERIM);
		return false;
	}
	n = http_build_response(c->resp, c->ubuf, via_field(c, via, sizeof(via)), head,
				sizeof(head));
	if (n < 0 || obuf_put(&c->to_client, head, n)) {
		head_unrelayable(c);
		return false;
	}
	rest = c->ulen - c->resp->head_len;
	memmove(c->ubuf, c->ubuf + c->resp->head_len, rest);
	c->ulen = rest;
	http_head_init(c->resp, false, c->cfg->max_header_bytes);
	c->resp->head_only_response = c->req->method == HTTP_HEAD;
	obuf_flush(&c->to_client, c->ch.fd);
	return rest > 0;
}

/* A 2xx to CONNECT: its head and the tunnel bytes that came with it go to the client. */
static void established(struct conn *c)
{
	char head[16384];
	ssize_t n = http_build_response(c->resp, c->ubuf, NULL, head, sizeof(head));

	if (n < 0 || obuf_put(&c->to_client, head, n) ||
	    obuf_put(&c->to_client, c->ubuf + c->resp->head_len, c->ulen - c->resp->head_len)) {
		head_unrelayable(c);
		return;
	}
	conn_answered(c, c->resp->status);
	c->body_down = c->ulen - c->resp->head_len;
	free(c->ubuf);
	c->ubuf = NULL;
	c->ulen = c->ucap = 0;
	c->state = CS_ESTABLISHED;
}

/* The framing fields of the head relayed to the client; returns whether it keeps alive. */
static bool final_framing(struct conn *c, char *extra, size_t len)
{
	enum http_framing f = http_body_framing(c->resp);
	bool keep = c->req->keep_alive && (c->http_fwd || !conn_sent_past_head(c));
	char via[160];

	extra[0] = '\0';
	if ((c->resp->head_only_response && c->resp->has_content_length) || f == HTTP_BODY_LENGTH)
		snprintf(extra, len, "Content-Length: %llu\r\n",
			 (unsigned long long)c->resp->content_length);
	else if (f == HTTP_BODY_NONE && c->resp->status != 204 && c->resp->status != 304)
		snprintf(extra, len, "Content-Length: 0\r\n");
	else if (resp_chunked_out(c))
		snprintf(extra, len, "Transfer-Encoding: chunked\r\n");
	else if (f != HTTP_BODY_NONE)
		keep = false; /* HTTP/1.0 client: the close ends the body */
	if (!keep)
		strcat(extra, "Connection: close\r\n");
	if (c->http_fwd)
		strcat(extra, via_field(c, via, sizeof(via)));
	return keep;
}

/* The final answer to a plain request, or a non-2xx to CONNECT: relay head and body. */
static void relay_final(struct conn *c)
{
	char head[16384], extra[320];
	ssize_t n;

	c->close_after_reply = !final_framing(c, extra, sizeof(extra));
	n = http_build_response(c->resp, c->ubuf, extra, head, sizeof(head));
	if (n < 0 || obuf_put(&c->to_client, head, n)) {
		head_unrelayable(c);
		return;
	}
	conn_answered(c, c->resp->status);
	memmove(c->ubuf, c->ubuf + c->resp->head_len, c->ulen - c->resp->head_len);
	c->ulen -= c->resp->head_len;
	c->state = CS_RESP_BODY;
	c->deadline_ms = now_ms() + c->cfg->header_timeout_ms;
	if (http_body_framing(c->resp) == HTTP_BODY_NONE)
		resp_body_done(c);
	else
		resp_body_feed(c);
}

static void response_head(struct conn *c)
{
	c->status = c->resp->status;
	if (c->server) /* it answered: whatever the status, the proxy itself works */
		pool_server_ok(c->pool, c->server, NULL);
	if (!c->http_fwd && c->resp->status >= 200 && c->resp->status < 300) {
		established(c);
	} else if (c->resp->status < 200) {
		/* Interim responses to a CONNECT have no use here; a proxy that sends them breaks. */
		conn_upstream_error(c, UE_BAD_RESPONSE);
		conn_reply(c, 502, false, "tunnelgate: upstream %s sent interim response %d to CONNECT",
			   c->uname, c->resp->status);
	} else {
		relay_final(c);
	}
}

static void head_too_large(struct conn *c)
{
	conn_upstream_error(c, UE_BAD_RESPONSE);
	conn_reply(c, 502, false, "tunnelgate: upstream %s response head is larger than max_header_bytes (%u)",
		   c->uname, c->cfg->max_header_bytes);
}

/* Parse the heads in ubuf: interim ones are relayed, the final one is acted on. */
static void parse_response(struct conn *c)
{
	for (;;) {
		ssize_t h = http_head_parse(c->resp, c->ubuf, c->ulen);

		if (h == 0) {
			if (c->ulen == c->ucap)
				head_too_large(c);
			return;
		}
		if (h < 0) {
			conn_upstream_error(c, UE_BAD_RESPONSE);
			conn_reply(c, 502, false, "tunnelgate: upstream %s sent a malformed response: %s",
				   c->uname, c->resp->error ? c->resp->error : "parse error");
			return;
		}
		if (!c->http_fwd || c->resp->status >= 200) {
			response_head(c);
			return;
		}
		if (!forward_interim(c))
			return;
	}
}

/*
 * A reused connection failed (-errno @err) before the answer's first byte: its peer
 * closed it while the request was on its way. Not the server's failure: upstream.c
 * sends the request again, on a fresh connection (CS_DIAL_FAILED with c->reused).
 */
static bool reused_failed(struct conn *c, int err)
{
	if (!c->reused || !c->resend || c->state != CS_RESP_HEAD)
		return false;
	c->dial_err = err;
	c->state = CS_DIAL_FAILED;
	return true;
}

static void upstream_readable(struct conn *c)
{
	ssize_t n;
	int err;

	/* The client reads slower than the upstream sends: wait (stream.c stops polling). */
	if (obuf_pending(&c->to_client) >= CONN_OBUF_HIGH)
		return;
	if (c->ulen == c->ucap) {
		head_too_large(c);
		return;
	}
	n = recv(c->uh.fd, c->ubuf + c->ulen, c->ucap - c->ulen, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		err = errno;
		if (reused_failed(c, -err))
			return;
		conn_upstream_error(c, upstream_err_of(-err));
		if (c->state == CS_RESP_HEAD && c->server)
			pool_server_failed(c->pool, c->server, "reset");
		if (c->state == CS_RESP_HEAD)
			conn_reply(c, 502, true, "tunnelgate: upstream %s failed before answering: %s",
				   c->uname, strerror(err));
		else
			conn_close(c, "upstream error during response body");
		return;
	}
	c->urecvd += n;
	if (n == 0 && reused_failed(c, -ECONNRESET))
		return;
	if (n == 0)
		c->upstream_eof = true;
	if (n > 0 && c->resend) { /* it answers: the request is never sent again */
		free(c->resend);
		c->resend = NULL;
	}
	c->ulen += n;
	if (c->state == CS_RESP_BODY) {
		resp_body_feed(c);
	} else if (n == 0) {
		conn_upstream_error(c, UE_RESET);
		if (c->server)
			pool_server_failed(c->pool, c->server, "closed before answering");
		conn_reply(c, 502, true, "tunnelgate: upstream %s closed the connection without answering",
			   c->uname);
	} else {
		parse_response(c);
	}
}

void http_fwd_body_read(struct conn *c)
{
	ssize_t n;
	int err;

	if (c->clen < c->ccap) {
		n = recv(c->ch.fd, c->cbuf + c->clen, c->ccap - c->clen, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			conn_close(c, "client went away in the middle of a request body");
			return;
		}
		if (n > 0) {
			c->crecvd += n;
			c->clen += n;
			c->body_last_ms = now_ms();
		}
	}
	err = req_body_feed(c);
	if (err) {
		c->gw->stats.bad_requests++;
		conn_close(c, "bad request body framing");
		return;
	}
	err = obuf_flush(&c->to_up, c->uh.fd);
	if (err && err != -EAGAIN) {
		conn_upstream_error(c, upstream_err_of(err));
		conn_close(c, "upstream went away in the middle of a request body");
		return;
	}
	/* An upload in progress is timed as the client's; the answer's wait starts after it. */
	if (c->state == CS_RESP_HEAD)
		answer_deadline(c);
}

void http_fwd_upstream_event(struct conn *c, uint32_t events)
{
	if ((events & EPOLLOUT) && obuf_pending(&c->to_up)) {
		int err = obuf_flush(&c->to_up, c->uh.fd);

		if (err && err != -EAGAIN && reused_failed(c, err))
			return;
		if (err && err != -EAGAIN) {
			conn_upstream_error(c, upstream_err_of(err));
			if (c->state == CS_RESP_HEAD)
				conn_reply(c, 502, false, "tunnelgate: cannot send the request to upstream %s: %s",
					   c->uname, strerror(-err));
			else
				conn_close(c, "upstream went away in the middle of a request body");
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		upstream_readable(c);
}
