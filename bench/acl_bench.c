/*
 * acl_bench — what the quarantine lookup adds to one ACL decision, without a
 * broker: the plugin's ACL callback before (cf_acl_check) and after (the
 * cached quarantine set, cf_acl_names_has, then cf_acl_check_flags, as in
 * certfleet_mosquitto.c) over the same topics, alternating rounds. Prints ns per
 * check for both and acl_ratio = after / before.
 *
 *   acl_bench [--members N] [--checks N] [--rounds R]
 *
 * The set holds N names that are not the client's (the common case: most
 * things are not quarantined).
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf_acl.h"

static const char *const topics[] = {
	"cf/things/sensor-0042/telemetry",
	"cf/things/sensor-0042/jobs/$next/get",
	"cf/things/sensor-0042/cmd",
	"cf/things/sensor-0042/certificate/create/json",
};
#define N_TOPICS (sizeof(topics) / sizeof(topics[0]))

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile int sink;

static double
run_before(long checks)
{
	double t0 = now();
	long i;
	int acc = 0;

	for (i = 0; i < checks; i++)
		acc += cf_acl_check(CF_KIND_DEVICE, "sensor-0042", "cf/", topics[i % N_TOPICS],
		    CF_ACL_PUBLISH);
	sink = acc;
	return (now() - t0) / (double)checks * 1e9;
}

static double
run_after(long checks, const cf_acl_names *set)
{
	const char *client = "sensor-0042";
	double t0 = now();
	unsigned flags;
	long i;
	int acc = 0;

	for (i = 0; i < checks; i++) {
		flags = cf_acl_names_has(set, client) ? CF_ACL_QUARANTINED : 0;
		acc += cf_acl_check_flags(CF_KIND_DEVICE, flags, client, "cf/",
		    topics[i % N_TOPICS], CF_ACL_PUBLISH);
	}
	sink = acc;
	return (now() - t0) / (double)checks * 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "members", required_argument, NULL, 'm' },
		{ "checks", required_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	long members = 1000, checks = 5000000;
	int rounds = 5, ch, r;
	double before[64], after[64], b, a;
	cf_acl_names *names = NULL;
	char **set;
	long i;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm': members = atol(optarg); break;
		case 'c': checks = atol(optarg); break;
		case 'r': rounds = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: acl_bench [--members N] [--checks N] [--rounds R]\n");
			return 2;
		}
	}
	if (members < 0 || checks < 1 || rounds < 1 || rounds > 64) {
		fprintf(stderr, "acl_bench: bad arguments\n");
		return 2;
	}
	if ((set = calloc((size_t)members + 1, sizeof(*set))) == NULL)
		return 1;
	for (i = 0; i < members; i++) {
		if ((set[i] = malloc(32)) == NULL)
			return 1;
		snprintf(set[i], 32, "quarantined-%06ld", i);
	}
	if (cf_acl_names_new(&names, set, (size_t)members) != 0)
		return 1;
	run_before(checks / 10); /* warm-up */
	run_after(checks / 10, names);
	for (r = 0; r < rounds; r++) {
		if (r % 2 == 0) {
			before[r] = run_before(checks);
			after[r] = run_after(checks, names);
		} else {
			after[r] = run_after(checks, names);
			before[r] = run_before(checks);
		}
	}
	qsort(before, (size_t)rounds, sizeof(double), cmp_double);
	qsort(after, (size_t)rounds, sizeof(double), cmp_double);
	b = before[rounds / 2];
	a = after[rounds / 2];
	printf("bench=acl\nmembers=%ld\nchecks_per_round=%ld\nrounds=%d\n", members, checks, rounds);
	printf("before_ns_per_check=%.1f\nafter_ns_per_check=%.1f\nacl_ratio=%.3f\n", b, a, a / b);
	for (i = 0; i < members; i++)
		free(set[i]);
	free(set);
	cf_acl_names_free(names);
	return 0;
}
