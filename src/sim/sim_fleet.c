/*
 * sim_fleet — `certfleet-sim create-fleet`: registers N things in a static
 * group and writes a device bundle for each (fresh key, certificate issued
 * by the CA path), through the library in ONE store transaction.
 *
 * `certfleet thing create --bundle` commits (and fsyncs) once per thing and
 * is a process per thing; here every cf_ca_thing_create runs inside an outer
 * cf_store_begin, so its own begin/commit become savepoints and the database
 * is synced once. Each bundle is renamed into place when its savepoint is
 * released: should the final commit fail, the bundles written so far name
 * things the registry does not have — the fleet directory is then removed.
 *
 * Layout: DIR/fleet.conf (what connect and rotate need: count, names,
 * broker and API addresses), DIR/ca-chain.crt, DIR/devices/<thing>/ (the
 * bundle, exactly as `thing create --bundle` writes it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf_ca.h"
#include "cf_config.h"
#include "cf_store.h"
#include "cf_util.h"
#include "sim.h"

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
write_fleet_conf(const sim_opts *o, cf_ca *ca)
{
	const cf_config *cfg = cf_ca_config(ca);
	char path[SIM_PATH_MAX], text[4096];
	int r;

	if ((r = cf_strfmt(text, sizeof(text),
	    "# Written by certfleet-sim create-fleet (docs/sim.md).\n"
	    "data_dir = %s\n"
	    "count = %ld\n"
	    "prefix = %s\n"
	    "group = %s\n"
	    "key_algorithm = %s\n"
	    "mqtt_host = %s\n"
	    "mqtt_port = %s\n"
	    "api_host = %s\n"
	    "api_port = %s\n"
	    "topic_prefix = %s\n",
	    cf_ca_dir(ca), o->count, o->prefix, o->group, o->key_alg,
	    cf_config_get_str(cfg, "mqtt_host", "127.0.0.1"),
	    cf_config_get_str(cfg, "mqtt_port", "8883"),
	    cf_config_get_str(cfg, "api_host", "127.0.0.1"),
	    cf_config_get_str(cfg, "api_port", "8884"),
	    cf_config_get_str(cfg, "topic_prefix", "cf/"))) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s", o->dir, SIM_FLEET_CONF)) != 0)
		return r;
	return cf_file_write_atomic(path, text, strlen(text), 0644);
}

int
sim_fleet_create(const sim_opts *o)
{
	int r = CF_ERROR, in_tx = 0, made_dir = 0;
	cf_ca *ca = NULL;
	cf_ca_thing_opts to;
	char name[SIM_NAME_MAX], bundle[SIM_PATH_MAX], path[SIM_PATH_MAX];
	const char *groups[1];
	char *chain = NULL;
	double t0, t1;
	long i;

	memset(&to, 0, sizeof(to));
	if (o->count < 1 || o->count > 1000000) {
		cf_error_set("--count must be 1..1000000");
		return CF_EINVAL;
	}
	if (!cf_name_valid("group", o->group))
		return CF_EINVAL;
	if (!cf_dir_missing_or_empty(o->dir)) {
		cf_error_set("%s exists and is not empty", o->dir);
		return CF_EEXISTS;
	}
	if ((r = cf_alg_validate(&to.key_alg, &to.sig_alg, o->key_alg, NULL)) != 0 ||
	    (r = cf_ca_open(&ca, o->data_dir)) != 0 || (r = cf_ca_load_issuer(ca)) != 0)
		goto out;
	if ((r = cf_strfmt(path, sizeof(path), "%s/devices", o->dir)) != 0 ||
	    (r = cf_mkdir_p(path, 0700)) != 0)
		goto out;
	made_dir = 1;
	if ((r = cf_ca_chain_pem(ca, &chain)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/ca-chain.crt", o->dir)) != 0 ||
	    (r = cf_file_write_atomic(path, chain, strlen(chain), 0644)) != 0)
		goto out;

	t0 = mono();
	if ((r = cf_store_begin(cf_ca_store(ca))) != 0)
		goto out;
	in_tx = 1;
	r = cf_store_group_create(cf_ca_store(ca), o->group, NULL);
	if (r != 0 && r != CF_EEXISTS)
		goto out;
	groups[0] = o->group;
	to.groups = groups;
	to.n_groups = 1;
	for (i = 0; i < o->count; i++) {
		if ((r = cf_strfmt(name, sizeof(name), "%s%ld", o->prefix, i)) != 0 ||
		    (r = cf_strfmt(bundle, sizeof(bundle), "%s/devices/%s", o->dir, name)) != 0)
			goto out;
		to.name = name;
		to.bundle_dir = bundle;
		if ((r = cf_ca_thing_create(ca, NULL, &to)) != 0) {
			cf_error_prefix("thing %s", name);
			goto out;
		}
		if (!o->quiet && (i + 1) % 1000 == 0)
			fprintf(stderr, "create-fleet: %ld/%ld\n", i + 1, o->count);
	}
	in_tx = 0;
	if ((r = cf_store_commit(cf_ca_store(ca))) != 0)
		goto out;
	t1 = mono();
	if ((r = write_fleet_conf(o, ca)) != 0)
		goto out;
	printf("created=%ld\ngroup=%s\nseconds=%.3f\nthings_per_s=%.1f\n", o->count, o->group,
	    t1 - t0, (double)o->count / (t1 - t0));
	r = 0;
out:
	if (in_tx)
		cf_store_rollback(cf_ca_store(ca));
	if (r != 0 && made_dir)
		(void)cf_rmtree(o->dir);
	free(chain);
	cf_ca_close(ca);
	return r;
}
