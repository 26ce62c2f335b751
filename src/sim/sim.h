/*
 * certfleet-sim — shared declarations of the fleet simulator (docs/sim.md).
 *
 * The simulator is an adapter like certfleet-agent: N instances of the
 * agent library (cf_agent over the file key store) in one process, each
 * with its own mutual-TLS connection to the real Mosquitto, all driven by
 * one libevent loop. sim_fleet.c creates the fleet (bundles issued through
 * the library in one store transaction); sim_run.c runs it (connect, rotate,
 * failure injection, latency statistics).
 */
#ifndef CF_SIM_H
#define CF_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"

#define SIM_PATH_MAX 4096
#define SIM_NAME_MAX 64
/* The fleet description create-fleet writes into the fleet directory. */
#define SIM_FLEET_CONF "fleet.conf"

typedef struct {
	const char *data_dir;  /* the certfleet data directory (create-fleet) */
	const char *dir;       /* the fleet directory */
	const char *prefix;    /* thing names: <prefix><index> */
	const char *group;     /* static group every device joins */
	const char *key_alg;   /* the devices' first key algorithm */
	long count;
	/* connect / rotate */
	long concurrency;      /* TLS handshakes in flight at most */
	double hold_s;         /* connect: how long to hold the connections */
	double timeout_s;      /* rotate: give up after this long */
	long max_per_minute;   /* rotate: rollout.maxPerMinute, 0: none (all at once) */
	const char *rotate_alg;/* rotate: the job's keyAlgorithm */
	double drop_rate;      /* probability an outgoing message is dropped */
	double kill_rate;      /* fraction of rotating instances killed (once, at a random state) */
	long reconnect_delay_ms;
	long response_timeout_s; /* the agents' per-state timeout for answers, 0: default */
	unsigned seed;
	int quiet;
	/*
	 * Sharding, for fleets larger than one process's open-files limit:
	 * this process runs the devices whose index % shard_count is
	 * shard_index. With no_job it creates no job: it connects, prints
	 * "ready=1" and takes part in the job another shard creates.
	 */
	long shard_index, shard_count;
	int no_job;
	int no_key_cache;      /* the agents use the plain file key store */
	const char *samples;   /* rotate: write every phase sample here ("phase ms") */
} sim_opts;

/* create-fleet: count things <prefix>0.. in group, a bundle each, one transaction. */
int sim_fleet_create(const sim_opts *o) CF_MUST_CHECK;

/* connect (rotate = 0) or rotate (rotate = 1) the fleet in o->dir. */
int sim_run(const sim_opts *o, int rotate) CF_MUST_CHECK;

#endif
