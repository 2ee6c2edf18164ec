// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <stdio.h>
#include <time.h>

#include "log.h"

enum log_level log_max_level = LOG_INFO;

void log_vprint(enum log_level level, const char *fmt, va_list ap)
{
	static const char *const tag[] = { "warning", "info", "debug" };
	struct timespec ts;
	struct tm tm;
	char stamp[32];

	if (level > log_max_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ tunnelgated %s: ", stamp, ts.tv_nsec / 1000000, tag[level]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void log_print(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(level, fmt, ap);
	va_end(ap);
}
