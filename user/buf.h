/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* A growable output buffer, written to a non-blocking socket. */
#ifndef TUNNELGATE_BUF_H
#define TUNNELGATE_BUF_H

#include <stddef.h>

struct obuf {
	char *data;
	size_t len, off, cap;
};

/* Append @n bytes. Returns 0 or -ENOMEM. */
int obuf_put(struct obuf *b, const void *p, size_t n);
/* Bytes not written yet. */
size_t obuf_pending(const struct obuf *b);
/* Write what @b holds to @fd; 0 when empty, -EAGAIN when blocked, or -errno. */
int obuf_flush(struct obuf *b, int fd);
void obuf_free(struct obuf *b);

#endif
