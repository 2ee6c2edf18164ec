/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types of a client connection: its state and everything the stages keep on it. */
#ifndef TUNNELGATE_CONN_T_H
#define TUNNELGATE_CONN_T_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "config.h"
#include "ev.h"
#include "http.h"
#include "pool.h"
#include "rules.h"

/* A body being relayed stops being read while this much waits for the peer. */
#define CONN_OBUF_HIGH (256 * 1024)

struct gateway;
struct resolve_req;
struct tunnel;

/*
 * Where a connection is. stream.c dispatches on it; each stage moves the connection
 * on by setting the next state. The states marked "passing" are never waited in:
 * a stage sets one to hand the connection to the next stage, which stream.c calls
 * at once.
 */
enum conn_state {
	CS_REQ_HEAD,             /* request.c: reading the client's request head */
	CS_LOOKUP,               /* passing: rules need the target's address, upstream.c
				  * resolves it (in CS_DIAL) and leaves in CS_RULES */
	CS_RULES,                /* passing: the address is known, request.c runs the rules */
	CS_ROUTE,                /* passing: routed to c->pool, upstream.c picks and dials */
	CS_QUEUED,               /* upstream.c: every usable server is at maxconn; waiting in
				  * the pool's queue (stream.c wakes it in CS_ROUTE) */
	CS_DIAL,                 /* upstream.c: resolving the target, or connecting */
	CS_CONNECTED,            /* passing: connected, http_fwd.c sends the request head */
	CS_DIAL_FAILED,          /* passing: the upstream failed before answering (c->dial_err) */
	CS_RESP_HEAD,            /* http_fwd.c: request sent (or being sent), reading the answer */
	CS_RESP_BODY,            /* http_fwd.c: relaying a response body to the client */
	CS_REPLY,                /* stream.c: writing a final response, then next request or close */
	CS_ESTABLISHED,          /* passing: CONNECT answered 2xx, tunnel.c takes over */
	CS_HANDOFF,              /* tunnel.c: writing bytes read past the heads, before the relay */
	CS_TUNNEL,               /* tunnel.c: relaying */
	CS_CLOSED,               /* closed; freed after the event batch */
};

/*
 * Why a logged request or tunnel ended: the access log's `end`. The stages (and
 * loop.c, control.c) set it with conn_set_end() before they close or log; the first
 * reason set stands. conn_next_request() clears it.
 */
enum conn_end {
	END_NONE,                /* not set: the line's kind decides (conn_log()) */
	END_CLIENT_FIN,          /* tunnel: the client sent its FIN first, both ended cleanly */
	END_UPSTREAM_FIN,        /* tunnel: the upstream sent its FIN first; plain HTTP and
				  * relayed non-2xx answers: the upstream's response ended */
	END_RESET,               /* a side reset or its socket failed: RST both ways */
	END_IDLE_TIMEOUT,        /* idle_timeout_ms */
	END_KILLED,              /* tunnelctl kill */
	END_DRAIN,               /* still open when the daemon exited (drain_timeout_ms) */
	END_ERROR,               /* the gateway gave up: c->end_why, a short reason */
};

struct conn {
	struct gateway *gw;
	struct config *cfg;      /* referenced (cfg->refs) for the connection's life */
	struct handle ch, uh;    /* client and upstream sockets (fd -1 when closed) */
	enum conn_state state;
	struct conn *prev, *next; /* gw->conns */
	uint64_t deadline_ms;    /* 0 = none */
	uint64_t start_ms;

	struct sockaddr_any caddr; /* the client: the peer, or a PROXY header's source */
	struct sockaddr_any peer;  /* the socket's peer, as admitted (max_connections_per_client) */
	struct sockaddr_any daddr; /* where the client connected to: a PROXY header's, or len 0 */
	bool want_proxy;         /* accept_proxy listener: no PROXY header read yet */
	char cname[64];          /* client "ip:port" */

	/* Client input: the request head, then whatever the client sent after it. */
	char *cbuf;
	size_t clen, ccap;
	struct http_head *req;   /* freed once the tunnel starts */
	ssize_t req_len;         /* head length of the current request, 0 while reading */
	uint64_t crecvd;         /* bytes read from the client socket, ever */

	/* The request's target. */
	char target[300];        /* "host:port" */
	char thost[256];
	unsigned tport;
	struct rule_input rin;   /* what the rules see; its strings point into cbuf */

	/* Upstream. */
	struct pool *pool;
	struct server *server;   /* NULL for a direct pool */
	struct pool_waiter qnode; /* CS_QUEUED: its place in the pool's queue */
	bool dequeued;           /* woken from the queue: if still full, back to its head */
	unsigned retry_after;    /* seconds for a Retry-After in the next conn_reply(), 0: none */
	int attempts;
	uint64_t dial_us;        /* when the current attempt's connect() started (now_us()) */
	int dial_err;            /* CS_DIAL_FAILED: -errno */
	char uname[64];          /* "ip:port" dialled */
	struct sockaddr_any uaddr;
	bool uaddr_set;          /* uaddr holds the resolved target */
	struct resolve_req *rreq; /* host name look-up in flight */
	char *ubuf;
	size_t ulen, ucap;
	struct http_head *resp;
	uint64_t urecvd;         /* bytes read from the upstream socket, ever */
	unsigned interims;       /* 1xx heads relayed for the current request */
	bool upstream_eof;
	/*
	 * Upstream keep-alive (reuse.c). A request goes on a parked connection only if it
	 * can be sent again: what was sent stays in resend until the answer's first byte,
	 * and a failure before it resends once on a fresh connection (reuse_retried).
	 */
	bool reused;             /* the upstream connection was taken from the idle store */
	bool reuse_private;      /* it carried credentials: parked for this client only */
	bool reuse_retried;      /* a reused one failed: no more reuse for this request */
	char *resend;            /* while reused: the request head (and body) as sent */
	size_t resend_len;

	struct obuf to_client, to_up;
	bool close_after_reply;
	bool http_fwd;           /* a plain HTTP request (not CONNECT) being forwarded */
	bool raw_tunnel;         /* action = tunnel: the request as sent, then raw bytes */
	bool req_body_done;      /* its body has been read whole */
	uint64_t body_start_ms, body_last_ms; /* its body: when it started, last bytes read */
	uint32_t fwd_path_off, fwd_path_len; /* origin-form path in cbuf, for a direct pool */
	uint32_t fwd_auth_off, fwd_auth_len; /* absolute-form authority in cbuf, or len 0 */
	int status;              /* for the access log */
	char method[24];         /* the request's method, for the access log ("" before one) */
	const struct rule *rule; /* the rule that decided (in cfg), or NULL */
	enum conn_end end;
	const char *end_why;     /* END_ERROR: a short static reason ("no_relay_pipes") */
	/*
	 * Bytes past the heads the daemon forwarded for the current request: a plain
	 * request's and response's bodies, or the tunnel bytes that came with a 2xx to
	 * CONNECT (body_down; the tunnel's hand-off count starts from it).
	 */
	uint64_t body_up, body_down;

	/* The tunnel, from the hand-off on; tunnel.c owns it and sets the hook below. */
	struct tunnel *tun;
	/* Called first by conn_close(): the owner of the sockets lets go of them. */
	void (*teardown)(struct conn *c);
};

#endif
