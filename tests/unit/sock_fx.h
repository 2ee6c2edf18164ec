/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Socket helpers the relay unit tests share: fill a socket until it takes nothing
 * more, read back what was written, check for end of stream. Include after cmocka.h.
 */
#ifndef TUNNELGATE_TEST_SOCK_FX_H
#define TUNNELGATE_TEST_SOCK_FX_H

#include <errno.h>
#include <sys/socket.h>

/* Write to @fd until it takes nothing more; returns the bytes written. */
static inline size_t sock_fill(int fd)
{
	static const char junk[16384];
	size_t n = 0;

	for (int i = 0; i < 1024; i++) {
		ssize_t r = send(fd, junk, sizeof(junk), MSG_DONTWAIT);

		if (r < 0) {
			assert_int_equal(errno, EAGAIN);
			return n;
		}
		n += r;
	}
	fail_msg("the socket took 16 MiB");
	return 0;
}

/* Read the @n bytes sock_fill() wrote from the far end @fd. */
static inline void sock_drain(int fd, size_t n)
{
	char buf[16384];

	while (n) {
		size_t want = n < sizeof(buf) ? n : sizeof(buf);
		ssize_t r = recv(fd, buf, want, MSG_DONTWAIT);

		assert_true(r > 0);
		n -= r;
	}
}

/* @fd has reached end of stream. */
static inline void sock_expect_eof(int fd)
{
	char c;

	assert_int_equal(recv(fd, &c, 1, MSG_DONTWAIT), 0);
}

#endif
