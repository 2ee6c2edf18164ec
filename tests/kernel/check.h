/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The kernel tests' checks: a failed one prints where and why, and the test exits 1. */
#ifndef TUNNELGATE_TESTS_KERNEL_CHECK_H
#define TUNNELGATE_TESTS_KERNEL_CHECK_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void __attribute__((noreturn, format(printf, 2, 3), unused))
fail(int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: FAIL (line %d): ", program_invocation_short_name, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

#define FAIL(...) fail(__LINE__, __VA_ARGS__)
#define CHECK(cond, ...) do { if (!(cond)) FAIL(__VA_ARGS__); } while (0)
#define SYSCHECK(call) CHECK((call) >= 0, "%s: %s", #call, strerror(errno))

#endif
