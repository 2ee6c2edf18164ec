// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tunnelgated: HTTP CONNECT gateway with a kernel tunnel relay. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "config.h"
#include "log.h"
#include "loop.h"

/*
 * libbpf's own lines only with -v: a failed load is reported once, by us, with the
 * reason (relay = auto then falls back in one warning line).
 */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level;
	if (log_max_level < LOG_DEBUG)
		return 0;
	/* libbpf's lines end in a newline of their own. */
	return vfprintf(stderr, fmt, ap);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: tunnelgated -c FILE [-v]\n"
		   "  -c FILE  configuration file (INI, see tunnelgate.conf.example)\n"
		   "  -v       debug logging\n"
		   "Signals: SIGHUP reloads FILE, SIGTERM/SIGINT drain and exit.\n");
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	struct config *cfg;
	char err[512];
	int opt;

	while ((opt = getopt(argc, argv, "c:vh")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'v':
			log_max_level = LOG_DEBUG;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	libbpf_set_print(libbpf_print);
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		fprintf(stderr, "tunnelgated: out of memory\n");
		return 1;
	}
	if (config_load(path, cfg, err, sizeof(err))) {
		fprintf(stderr, "tunnelgated: bad config: %s\n", err);
		config_free(cfg);
		free(cfg);
		return 1;
	}
	return gateway_run(cfg, path);
}
