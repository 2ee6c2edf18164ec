/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Logging to stderr: warnings and info always, debug only with -v. */
#ifndef TUNNELGATE_LOG_H
#define TUNNELGATE_LOG_H

#include <stdarg.h>

enum log_level { LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Messages above this level are dropped; -v raises it to LOG_DEBUG. */
extern enum log_level log_max_level;

void log_print(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vprint(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#define pr_warn(fmt, ...) log_print(LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) log_print(LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) log_print(LOG_DEBUG, fmt, ##__VA_ARGS__)

#endif
