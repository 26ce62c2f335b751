/*
 * certfleet-sim — the fleet simulator (docs/sim.md): N instances of the
 * agent library in one process, each with its own credentials and its own
 * mutual-TLS connection to the real Mosquitto. This file parses the command
 * line; sim_fleet.c and sim_run.c do the work.
 *
 *   certfleet-sim create-fleet --data DATA --dir FLEET --count N [--prefix sim-] [--group sim]
 *                              [--key-algorithm ECDSA-P256]
 *   certfleet-sim connect --dir FLEET [--count N] [--concurrency 32] [--hold S]
 *   certfleet-sim rotate  --dir FLEET [--count N] [--concurrency 32] [--key-algorithm ALG]
 *                         [--max-per-minute N] [--drop-rate P] [--kill-rate P]
 *                         [--reconnect-delay MS] [--response-timeout S] [--timeout S] [--seed N]
 *                         [--shard I/K [--no-job]] [--samples FILE] [--no-key-cache]
 *
 * Results are key=value lines on stdout. Exit 0 on success, 1 on failure, 2 on usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_log.h"
#include "sim.h"

enum {
	OPT_DATA = 256, OPT_DIR, OPT_COUNT, OPT_PREFIX, OPT_GROUP, OPT_KEYALG, OPT_CONC, OPT_HOLD,
	OPT_TIMEOUT, OPT_MPM, OPT_DROP, OPT_KILL, OPT_RDELAY, OPT_RTIMEOUT, OPT_SEED, OPT_QUIET,
	OPT_LOGLEVEL, OPT_SHARD, OPT_NOJOB, OPT_SAMPLES, OPT_NOCACHE,
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: certfleet-sim create-fleet --data DATA --dir FLEET --count N [--prefix sim-]\n"
	    "                                  [--group sim] [--key-algorithm ECDSA-P256]\n"
	    "       certfleet-sim connect --dir FLEET [--count N] [--concurrency 32] [--hold S]\n"
	    "       certfleet-sim rotate --dir FLEET [--count N] [--concurrency 32]\n"
	    "                     [--key-algorithm ALG] [--max-per-minute N] [--drop-rate P]\n"
	    "                     [--kill-rate P] [--reconnect-delay MS] [--response-timeout S]\n"
	    "                     [--timeout S] [--seed N] [--quiet]\n"
	    "                     [--shard I/K [--no-job]] [--samples FILE] [--no-key-cache]\n");
}

static int
num(double *out, const char *s, double min, double max)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, OPT_DATA },
		{ "dir", required_argument, NULL, OPT_DIR },
		{ "count", required_argument, NULL, OPT_COUNT },
		{ "prefix", required_argument, NULL, OPT_PREFIX },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "concurrency", required_argument, NULL, OPT_CONC },
		{ "hold", required_argument, NULL, OPT_HOLD },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "max-per-minute", required_argument, NULL, OPT_MPM },
		{ "drop-rate", required_argument, NULL, OPT_DROP },
		{ "kill-rate", required_argument, NULL, OPT_KILL },
		{ "reconnect-delay", required_argument, NULL, OPT_RDELAY },
		{ "response-timeout", required_argument, NULL, OPT_RTIMEOUT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "log-level", required_argument, NULL, OPT_LOGLEVEL },
		{ "shard", required_argument, NULL, OPT_SHARD },
		{ "no-job", no_argument, NULL, OPT_NOJOB },
		{ "samples", required_argument, NULL, OPT_SAMPLES },
		{ "no-key-cache", no_argument, NULL, OPT_NOCACHE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	sim_opts o;
	const char *cmd;
	cf_log_level lvl;
	double v;
	int c, r;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	memset(&o, 0, sizeof(o));
	o.prefix = "sim-";
	o.group = "sim";
	o.key_alg = "ECDSA-P256";
	o.rotate_alg = NULL;
	o.concurrency = 32;
	o.timeout_s = 600;
	o.seed = 1;
	o.shard_count = 1;
	cf_log_set_level(CF_LOG_WARN);
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_DATA: o.data_dir = optarg; break;
		case OPT_DIR: o.dir = optarg; break;
		case OPT_PREFIX: o.prefix = optarg; break;
		case OPT_GROUP: o.group = optarg; break;
		case OPT_KEYALG: o.key_alg = o.rotate_alg = optarg; break;
		case OPT_QUIET: o.quiet = 1; break;
		case OPT_NOJOB: o.no_job = 1; break;
		case OPT_NOCACHE: o.no_key_cache = 1; break;
		case OPT_SAMPLES: o.samples = optarg; break;
		case OPT_SHARD:
			if (sscanf(optarg, "%ld/%ld", &o.shard_index, &o.shard_count) != 2 ||
			    o.shard_count < 1 || o.shard_count > 64 || o.shard_index < 0 ||
			    o.shard_index >= o.shard_count) {
				fprintf(stderr, "certfleet-sim: --shard I/K with 0 <= I < K <= 64\n");
				return 2;
			}
			break;
		case OPT_COUNT:
		case OPT_CONC:
		case OPT_MPM:
		case OPT_RDELAY:
		case OPT_RTIMEOUT:
		case OPT_SEED:
			if (num(&v, optarg, 0, 1e9) != 0) {
				fprintf(stderr, "certfleet-sim: bad number '%s'\n", optarg);
				return 2;
			}
			if (c == OPT_COUNT)
				o.count = (long)v;
			else if (c == OPT_CONC)
				o.concurrency = v < 1 ? 1 : (long)v;
			else if (c == OPT_MPM)
				o.max_per_minute = (long)v;
			else if (c == OPT_RDELAY)
				o.reconnect_delay_ms = (long)v;
			else if (c == OPT_RTIMEOUT)
				o.response_timeout_s = (long)v;
			else
				o.seed = (unsigned)v;
			break;
		case OPT_HOLD:
		case OPT_TIMEOUT:
			if (num(&v, optarg, 0, 1e7) != 0) {
				fprintf(stderr, "certfleet-sim: bad duration '%s'\n", optarg);
				return 2;
			}
			if (c == OPT_HOLD)
				o.hold_s = v;
			else
				o.timeout_s = v;
			break;
		case OPT_DROP:
		case OPT_KILL:
			if (num(&v, optarg, 0, 1) != 0) {
				fprintf(stderr, "certfleet-sim: a rate is 0..1, not '%s'\n", optarg);
				return 2;
			}
			if (c == OPT_DROP)
				o.drop_rate = v;
			else
				o.kill_rate = v;
			break;
		case OPT_LOGLEVEL:
			if (cf_log_level_parse(&lvl, optarg) != 0) {
				fprintf(stderr, "certfleet-sim: %s\n", cf_error_last());
				return 2;
			}
			cf_log_set_level(lvl);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || o.dir == NULL) {
		usage(stderr);
		return 2;
	}
	if (o.rotate_alg == NULL)
		o.rotate_alg = "ECDSA-P256";
	if (strcmp(cmd, "create-fleet") == 0) {
		if (o.data_dir == NULL || o.count < 1) {
			usage(stderr);
			return 2;
		}
		r = sim_fleet_create(&o);
	} else if (strcmp(cmd, "connect") == 0) {
		r = sim_run(&o, 0);
	} else if (strcmp(cmd, "rotate") == 0) {
		r = sim_run(&o, 1);
	} else {
		fprintf(stderr, "certfleet-sim: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	if (r != 0) {
		fprintf(stderr, "certfleet-sim %s: %s\n", cmd, cf_error_last());
		return 1;
	}
	return 0;
}
