// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "resolver.h"

struct resolver {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct resolve_req *todo, **todo_tail;
	struct resolve_req *done;
	bool stop;
	int efd;
};

static void lookup(struct resolve_req *req)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	char port[8];

	snprintf(port, sizeof(port), "%u", req->port);
	if (getaddrinfo(req->host, port, &hints, &res) || !res) {
		req->err = -ENOENT;
		return;
	}
	memcpy(&req->addr.ss, res->ai_addr, res->ai_addrlen);
	req->addr.len = res->ai_addrlen;
	req->err = 0;
	freeaddrinfo(res);
}

static void *run(void *arg)
{
	struct resolver *r = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct resolve_req *req;

		while (!r->todo && !r->stop)
			pthread_cond_wait(&r->wake, &r->lock);
		if (r->stop)
			break;
		req = r->todo;
		r->todo = req->next;
		if (!r->todo)
			r->todo_tail = &r->todo;
		pthread_mutex_unlock(&r->lock);
		lookup(req);
		pthread_mutex_lock(&r->lock);
		req->next = r->done;
		r->done = req;
		if (write(r->efd, &one, sizeof(one)) < 0) {
			/* The counter cannot overflow at these rates; nothing to do. */
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct resolver *resolver_start(void)
{
	struct resolver *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return NULL;
	r->todo_tail = &r->todo;
	r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->efd < 0)
		goto fail;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->wake, NULL);
	err = pthread_create(&r->thread, NULL, run, r);
	if (err) {
		close(r->efd);
		errno = err;
		goto fail;
	}
	return r;
fail:
	free(r);
	return NULL;
}

static void free_list(struct resolve_req *req)
{
	while (req) {
		struct resolve_req *next = req->next;

		free(req);
		req = next;
	}
}

void resolver_stop(struct resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	/* A look-up in progress finishes first (bounded by the resolver's own timeouts). */
	pthread_join(r->thread, NULL);
	free_list(r->todo);
	free_list(r->done);
	close(r->efd);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->wake);
	free(r);
}

int resolver_fd(const struct resolver *r)
{
	return r->efd;
}

void resolver_submit(struct resolver *r, struct resolve_req *req)
{
	pthread_mutex_lock(&r->lock);
	req->next = NULL;
	*r->todo_tail = req;
	r->todo_tail = &req->next;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
}

void resolver_cancel(struct resolver *r, struct resolve_req *req)
{
	pthread_mutex_lock(&r->lock);
	req->owner = NULL;
	pthread_mutex_unlock(&r->lock);
}

struct resolve_req *resolver_done(struct resolver *r)
{
	struct resolve_req *list, *keep = NULL, *next;
	uint64_t n;

	if (read(r->efd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing new; the list below is still checked. */
	}
	pthread_mutex_lock(&r->lock);
	list = r->done;
	r->done = NULL;
	for (; list; list = next) {
		next = list->next;
		if (!list->owner) {
			free(list);
			continue;
		}
		list->next = keep;
		keep = list;
	}
	pthread_mutex_unlock(&r->lock);
	return keep;
}
