// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A growable output buffer, written to a non-blocking socket. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"

int obuf_put(struct obuf *b, const void *p, size_t n)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *d;

		if (b->off) {
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		while (cap < b->len + n)
			cap *= 2;
		if (cap != b->cap) {
			d = realloc(b->data, cap);
			if (!d)
				return -ENOMEM;
			b->data = d;
			b->cap = cap;
		}
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

size_t obuf_pending(const struct obuf *b)
{
	return b->len - b->off;
}

void obuf_free(struct obuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

int obuf_flush(struct obuf *b, int fd)
{
	while (b->off < b->len) {
		ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -EAGAIN : -errno;
		}
		b->off += n;
	}
	b->off = b->len = 0;
	return 0;
}
