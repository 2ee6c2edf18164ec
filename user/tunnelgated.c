// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tunnelgated: HTTP CONNECT gateway with a kernel tunnel relay. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "config.h"
#include "log.h"
#include "version.h"
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
	fprintf(f, "usage: tunnelgated -c FILE [-v] [-t]\n"
		   "  -c, --config FILE  configuration file (INI, see tunnelgate.conf(5))\n"
		   "  -v, --verbose      debug logging\n"
		   "  -t, --test         check the configuration and exit (0: valid, 1: not)\n"
		   "  -h, --help         this text\n"
		   "  -V, --version      the version\n"
		   "Signals: SIGHUP reloads FILE, SIGTERM/SIGINT drain and exit.\n");
}

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "test", no_argument, NULL, 't' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* -t: load @path as the daemon would, say whether it can run, and exit. */
static int check_config(const char *path, struct config *cfg)
{
	char err[512];

	if (config_load(path, cfg, err, sizeof(err))) {
		fprintf(stderr, "tunnelgated: bad config: %s\n", err);
		config_free(cfg);
		return 1;
	}
	printf("configuration %s is valid\n", path);
	config_free(cfg);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	struct config *cfg;
	char err[512];
	bool test = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "c:vthV", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'v':
			log_max_level = LOG_DEBUG;
			break;
		case 't':
			test = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tunnelgated %s\n", TG_VERSION);
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
	if (test) {
		int rc = check_config(path, cfg);

		free(cfg);
		return rc;
	}
	if (config_load(path, cfg, err, sizeof(err))) {
		fprintf(stderr, "tunnelgated: bad config: %s\n", err);
		config_free(cfg);
		free(cfg);
		return 1;
	}
	return gateway_run(cfg, path);
}
