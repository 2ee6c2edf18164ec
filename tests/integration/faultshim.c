// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Fault injection for the retry test, loaded into tunnelgated with LD_PRELOAD: the
 * first send() on a socket connected to port TG_FAULT_PORT fails with ECONNRESET, as
 * when a proxy resets the connection right after accepting it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

static int failed;

static unsigned peer_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	static ssize_t (*real)(int, const void *, size_t, int);
	const char *port = getenv("TG_FAULT_PORT");

	if (!real)
		real = (ssize_t (*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
	if (!failed && port && peer_port(fd) == (unsigned)atoi(port)) {
		failed = 1;
		errno = ECONNRESET;
		return -1;
	}
	return real(fd, buf, len, flags);
}
