/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Active health checks of the servers of the current config's pools: check = connect
 * (a TCP connect), check = http_connect (a CONNECT to check_target, whose status line
 * decides), and for check = none a TCP connect to the servers passive failures took
 * down, so that they can rise again. Results go to pool_server_ok()/pool_server_failed(),
 * which apply rise and fall. Probes are sockets of their own: never client connections,
 * never counted against max_connections. loop.c creates the checker, hands it the
 * H_HEALTH events, calls health_tick() every round and waits at most health_next_ms().
 */
#ifndef TUNNELGATE_HEALTH_H
#define TUNNELGATE_HEALTH_H

#include <stddef.h>
#include <stdint.h>

struct gateway;
struct handle;
struct health;

/* A checker with no probes yet: the first health_tick() finds the servers. NULL, errno set. */
struct health *health_new(void);
/* Close its probes and drop its config. Safe on NULL. */
void health_free(struct health *hc);

/*
 * Follow gw->cfg (a reload adds and drops servers; one that stays keeps its schedule and
 * a probe in flight), give up on probes past check_timeout_ms, start the due ones. Cheap
 * when nothing is due. Starts none while gw->stopping.
 */
void health_tick(struct gateway *gw);
/* Milliseconds until health_tick() has something to do: 0 now, -1 nothing planned. */
int health_next_ms(const struct gateway *gw);
/* The probe socket of @h (kind H_HEALTH) reported @events. */
void health_event(struct gateway *gw, struct handle *h, uint32_t events);

/*
 * The status of the answer to a check's CONNECT, from the @len bytes at @buf: the code
 * once "HTTP/1.x NNN" and the byte after it (SP, CR or LF) are in; 0 while @buf is a
 * prefix of one (more bytes needed); -EBADMSG when it cannot be a status line.
 */
int health_parse_status(const char *buf, size_t len);

#endif
