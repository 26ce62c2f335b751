/*
 * store_test — the registry: things, groups, CAs, certificates, status
 * rules, transactions, migrations and damaged files (cf_store, SQLite).
 * The event chain has its own binary (events_test).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_store.h"

struct fx {
	char dir[256];
	char path[PATH_MAX];
	cf_store *st;
	char root_id[CF_ID_LEN + 1];
	char int_id[CF_ID_LEN + 1];
};

/* ---- fixture ----------------------------------------------------------------- */

static void
rm_dir(const char *dir)
{
	DIR *d;
	struct dirent *e;
	char p[PATH_MAX * 2];

	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void
fake_id(char out[CF_ID_LEN + 1], const char *seed)
{
	cf_sha256_hex(out, seed, strlen(seed));
}

static int
add_ca(cf_store *st, char id_out[CF_ID_LEN + 1], const char *name, cf_ca_role role,
    const char *parent_id, cf_cert_status status)
{
	cf_ca_rec ca;

	memset(&ca, 0, sizeof(ca));
	fake_id(ca.id, name);
	snprintf(ca.name, sizeof(ca.name), "%s", name);
	ca.role = role;
	snprintf(ca.parent_id, sizeof(ca.parent_id), "%s", parent_id ? parent_id : "");
	ca.status = status;
	snprintf(ca.serial, sizeof(ca.serial), "%s", "0a1b2c");
	ca.not_before = 1000;
	ca.not_after = 2000000000;
	snprintf(ca.key_alg, sizeof(ca.key_alg), "%s", "ECDSA-P384");
	ca.key_bits = 384;
	snprintf(ca.key_ref, sizeof(ca.key_ref), "ca/%s.key", name);
	ca.pem = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";
	if (id_out != NULL)
		memcpy(id_out, ca.id, CF_ID_LEN + 1);
	return cf_store_ca_insert(st, &ca);
}

static int
add_cert_id(cf_store *st, const char *id, const char *ca_id, const char *thing,
    cf_cert_status status, int64_t not_after)
{
	cf_cert_rec c;

	memset(&c, 0, sizeof(c));
	snprintf(c.id, sizeof(c.id), "%s", id);
	snprintf(c.serial, sizeof(c.serial), "%.32s", id);
	snprintf(c.ca_id, sizeof(c.ca_id), "%s", ca_id);
	snprintf(c.thing, sizeof(c.thing), "%s", thing ? thing : "");
	c.status = status;
	c.not_before = 1000;
	c.not_after = not_after;
	snprintf(c.key_alg, sizeof(c.key_alg), "%s", "ECDSA-P256");
	c.key_bits = 256;
	snprintf(c.sig_alg, sizeof(c.sig_alg), "%s", "ecdsa-with-SHA256");
	c.pem = "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n";
	return cf_store_cert_insert(st, &c);
}

/* Inserts a certificate whose id is the hash of seed; id_out may be NULL. */
static int
add_cert(cf_store *st, char id_out[CF_ID_LEN + 1], const char *seed, const char *ca_id,
    const char *thing, cf_cert_status status)
{
	char id[CF_ID_LEN + 1];

	fake_id(id, seed);
	if (id_out != NULL)
		memcpy(id_out, id, sizeof(id));
	return add_cert_id(st, id, ca_id, thing, status, 1900000000);
}

static int64_t
event_count(cf_store *st)
{
	cf_event_rec *ev = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_event_list(st, &ev, &n, 0, 0), 0);
	cf_event_recs_free(ev, n);
	return (int64_t)n;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	cf_store_close(fx->st);
	rm_dir(fx->dir);
	free(fx);
	return 0;
}

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/cf-store-test.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/certfleet.db", fx->dir);
	*state = fx;
	if (cf_store_open(&fx->st, fx->path, CF_STORE_CREATE) != 0 ||
	    add_ca(fx->st, fx->root_id, "root", CF_CA_ROOT, NULL, CF_CERT_ACTIVE) != 0 ||
	    add_ca(fx->st, fx->int_id, "int1", CF_CA_INTERMEDIATE, fx->root_id,
	    CF_CERT_ACTIVE) != 0) {
		print_error("setup: %s\n", cf_error_last());
		teardown(state); /* leave no temp directory behind */
		return -1;
	}
	return 0;
}

/* Runs SQL on the database file behind the store's back. */
static void
raw_sql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(db);
}

/* ---- things ------------------------------------------------------------------------ */

static void
test_store__thing_create_get_list(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t, *v = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_thing_create(fx->st, "sensor-2", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "sensor-1",
	    "{\"site\": \"berlin\", \"model\": \"x1\"}"), 0);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "sensor-1"), 0);
	assert_string_equal(t.name, "sensor-1");
	assert_string_equal(t.attributes, "{\"model\":\"x1\",\"site\":\"berlin\"}");
	assert_true(t.created_at > 0);
	cf_thing_rec_clear(&t);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "sensor-2"), 0);
	assert_string_equal(t.attributes, "{}");
	cf_thing_rec_clear(&t);
	assert_int_equal(cf_store_thing_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].name, "sensor-1");
	assert_string_equal(v[1].name, "sensor-2");
	cf_thing_recs_free(v, n);
	cf_thing_rec_clear(NULL);
	cf_thing_recs_free(NULL, 0);
}

static void
test_store__thing_duplicate_is_eexists(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(cf_store_thing_create(fx->st, "dup", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "dup", "{\"a\":\"b\"}"), CF_EEXISTS);
	assert_non_null(strstr(cf_error_last(), "dup"));
}

static void
test_store__thing_bad_name_is_einval(void **state)
{
	struct fx *fx = *state;
	char longname[CF_NAME_MAX + 2];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(cf_store_thing_create(fx->st, "", NULL), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "has space", NULL), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "slash/es", NULL), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, longname, NULL), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, NULL, NULL), CF_EINVAL);
	assert_int_equal(event_count(fx->st), 2); /* only the fixture's CAs */
}

static void
test_store__thing_bad_attributes_is_einval(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t;

	assert_int_equal(cf_store_thing_create(fx->st, "t", "{not json"), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "t", "[\"a\"]"), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "t", "\"str\""), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "t", "{\"n\": 1}"), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "t", "{\"n\": {\"x\": \"y\"}}"), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "t", "{\"bad key\": \"y\"}"), CF_EINVAL);
	assert_int_equal(cf_store_thing_create(fx->st, "t", "{\"a\": \"1\", \"a\": \"2\"}"),
	    CF_EINVAL);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "t"), CF_ENOTFOUND);
}

static void
test_store__thing_get_unknown_is_enotfound(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t;

	assert_int_equal(cf_store_thing_get(fx->st, &t, "nope"), CF_ENOTFOUND);
	assert_non_null(strstr(cf_error_last(), "nope"));
	assert_int_equal(cf_store_thing_get(fx->st, &t, "bad name"), CF_EINVAL);
}

static void
test_store__thing_set_attributes(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t;
	int64_t before;

	assert_int_equal(cf_store_thing_create(fx->st, "t", "{\"a\":\"1\"}"), 0);
	before = event_count(fx->st);
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "t", "{\"a\":\"2\"}"), 0);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "t"), 0);
	assert_string_equal(t.attributes, "{\"a\":\"2\"}");
	cf_thing_rec_clear(&t);
	assert_int_equal(event_count(fx->st), before + 1);
	/* the same attributes again: nothing changes, no event */
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "t", "{ \"a\" : \"2\" }"), 0);
	assert_int_equal(event_count(fx->st), before + 1);
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "t", "[]"), CF_EINVAL);
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "ghost", "{}"), CF_ENOTFOUND);
}

static void
test_store__thing_delete_with_active_cert_is_estate(void **state)
{
	struct fx *fx = *state;
	char id[CF_ID_LEN + 1];
	cf_thing_rec t;

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(add_cert(fx->st, id, "c1", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_thing_delete(fx->st, "dev"), CF_ESTATE);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "dev"), 0);
	cf_thing_rec_clear(&t);
	/* PENDING_ACTIVATION blocks the delete too */
	assert_int_equal(cf_store_cert_set_status(fx->st, id, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(add_cert(fx->st, NULL, "c2", fx->int_id, "dev",
	    CF_CERT_PENDING_ACTIVATION), 0);
	assert_int_equal(cf_store_thing_delete(fx->st, "dev"), CF_ESTATE);
}

static void
test_store__thing_delete_detaches_inactive_and_revoked(void **state)
{
	struct fx *fx = *state;
	char a[CF_ID_LEN + 1], b[CF_ID_LEN + 1];
	cf_cert_rec c;
	cf_thing_rec t;
	char **m = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "fleet", NULL), 0);
	assert_int_equal(cf_store_group_add(fx->st, "fleet", "dev"), 0);
	assert_int_equal(add_cert(fx->st, a, "a", fx->int_id, "dev", CF_CERT_INACTIVE), 0);
	assert_int_equal(add_cert(fx->st, b, "b", fx->int_id, "dev", CF_CERT_REVOKED), 0);
	assert_int_equal(cf_store_thing_delete(fx->st, "dev"), 0);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "dev"), CF_ENOTFOUND);
	assert_int_equal(cf_store_cert_get(fx->st, &c, a), 0);
	assert_string_equal(c.thing, "");
	assert_int_equal(c.status, CF_CERT_INACTIVE);
	cf_cert_rec_clear(&c);
	assert_int_equal(cf_store_cert_get(fx->st, &c, b), 0);
	assert_string_equal(c.thing, "");
	assert_int_equal(c.status, CF_CERT_REVOKED);
	cf_cert_rec_clear(&c);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "fleet"), 0);
	assert_int_equal(n, 0);
	cf_strv_free(m, n);
	/* the name is free again */
	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(cf_store_thing_delete(fx->st, "ghost"), CF_ENOTFOUND);
}

/* ---- groups ------------------------------------------------------------------------ */

static void
test_store__group_static_add_and_members(void **state)
{
	struct fx *fx = *state;
	char **m = NULL;
	size_t n = 0;
	int64_t before;

	assert_int_equal(cf_store_thing_create(fx->st, "b", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "a", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "g", NULL), 0);
	assert_int_equal(cf_store_group_add(fx->st, "g", "b"), 0);
	assert_int_equal(cf_store_group_add(fx->st, "g", "a"), 0);
	before = event_count(fx->st);
	assert_int_equal(cf_store_group_add(fx->st, "g", "a"), 0); /* no-op */
	assert_int_equal(event_count(fx->st), before);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "g"), 0);
	assert_int_equal(n, 2);
	assert_string_equal(m[0], "a");
	assert_string_equal(m[1], "b");
	cf_strv_free(m, n);
	cf_strv_free(NULL, 0);
}

static void
test_store__group_duplicate_is_eexists(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(cf_store_group_create(fx->st, "g", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "g", "a=b"), CF_EEXISTS);
	assert_int_equal(cf_store_group_create(fx->st, "bad name", NULL), CF_EINVAL);
}

static void
test_store__group_add_to_dynamic_is_einval(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(cf_store_thing_create(fx->st, "t", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "dyn", "site=berlin"), 0);
	assert_int_equal(cf_store_group_add(fx->st, "dyn", "t"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "dynamic"));
}

static void
test_store__group_unknown_thing_or_group_is_enotfound(void **state)
{
	struct fx *fx = *state;
	char **m = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_thing_create(fx->st, "t", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "g", NULL), 0);
	assert_int_equal(cf_store_group_add(fx->st, "g", "ghost"), CF_ENOTFOUND);
	assert_int_equal(cf_store_group_add(fx->st, "nogroup", "t"), CF_ENOTFOUND);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "nogroup"), CF_ENOTFOUND);
}

static void
test_store__group_bad_query_is_einval(void **state)
{
	struct fx *fx = *state;
	static const char *const bad[] = {
		"", "site", "=berlin", "site=", "site=a=b", "site=berlin,", ",site=berlin",
		"bad key=x", "a=b,,c=d",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (cf_store_group_create(fx->st, "g", bad[i]) != CF_EINVAL)
			fail_msg("query '%s' was accepted", bad[i]);
	}
	assert_int_equal(cf_store_group_create(fx->st, "g", "site=berlin,model=x 1"), 0);
}

static void
test_store__group_dynamic_members_follow_attributes(void **state)
{
	struct fx *fx = *state;
	char **m = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_group_create(fx->st, "berlin-x1", "site=berlin,model=x1"), 0);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "berlin-x1"), 0);
	assert_int_equal(n, 0);
	cf_strv_free(m, n);
	assert_int_equal(cf_store_thing_create(fx->st, "d3",
	    "{\"site\":\"berlin\",\"model\":\"x1\",\"fw\":\"2\"}"), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "d1", "{\"site\":\"berlin\",\"model\":\"x1\"}"),
	    0);
	assert_int_equal(cf_store_thing_create(fx->st, "d2", "{\"site\":\"berlin\",\"model\":\"x2\"}"),
	    0);
	assert_int_equal(cf_store_thing_create(fx->st, "d4", "{\"site\":\"paris\"}"), 0);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "berlin-x1"), 0);
	assert_int_equal(n, 2);
	assert_string_equal(m[0], "d1");
	assert_string_equal(m[1], "d3");
	cf_strv_free(m, n);
	/* d2 is upgraded to an x1, d1 moves to paris */
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "d2",
	    "{\"site\":\"berlin\",\"model\":\"x1\"}"), 0);
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "d1",
	    "{\"site\":\"paris\",\"model\":\"x1\"}"), 0);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "berlin-x1"), 0);
	assert_int_equal(n, 2);
	assert_string_equal(m[0], "d2");
	assert_string_equal(m[1], "d3");
	cf_strv_free(m, n);
	/* a deleted thing leaves */
	assert_int_equal(cf_store_thing_delete(fx->st, "d3"), 0);
	assert_int_equal(cf_store_group_members(fx->st, &m, &n, "berlin-x1"), 0);
	assert_int_equal(n, 1);
	assert_string_equal(m[0], "d2");
	cf_strv_free(m, n);
}

static void
test_store__group_list_counts(void **state)
{
	struct fx *fx = *state;
	cf_group_rec *g = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_thing_create(fx->st, "a", "{\"k\":\"v\"}"), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "b", "{\"k\":\"v\"}"), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "c", "{\"k\":\"w\"}"), 0);
	assert_int_equal(cf_store_group_create(fx->st, "static", NULL), 0);
	assert_int_equal(cf_store_group_add(fx->st, "static", "c"), 0);
	assert_int_equal(cf_store_group_create(fx->st, "dynamic", "k=v"), 0);
	assert_int_equal(cf_store_group_list(fx->st, &g, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(g[0].name, "dynamic");
	assert_string_equal(g[0].query, "k=v");
	assert_int_equal(g[0].members, 2);
	assert_string_equal(g[1].name, "static");
	assert_null(g[1].query);
	assert_int_equal(g[1].members, 1);
	cf_group_recs_free(g, n);
	cf_group_recs_free(NULL, 0);
	cf_group_rec_clear(NULL);
}

/* ---- CAs --------------------------------------------------------------------------- */

static void
test_store__ca_get_by_name_id_prefix(void **state)
{
	struct fx *fx = *state;
	cf_ca_rec ca, *v = NULL;
	char prefix[9], upper[CF_ID_LEN + 1];
	size_t n = 0, i;

	assert_int_equal(cf_store_ca_get(fx->st, &ca, "int1"), 0);
	assert_string_equal(ca.id, fx->int_id);
	assert_int_equal(ca.role, CF_CA_INTERMEDIATE);
	assert_string_equal(ca.parent_id, fx->root_id);
	assert_int_equal(ca.status, CF_CERT_ACTIVE);
	assert_string_equal(ca.key_ref, "ca/int1.key");
	assert_int_equal(ca.key_bits, 384);
	assert_int_equal(ca.not_after, 2000000000);
	assert_non_null(strstr(ca.pem, "fake"));
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_get(fx->st, &ca, fx->root_id), 0);
	assert_string_equal(ca.name, "root");
	assert_int_equal(ca.role, CF_CA_ROOT);
	assert_string_equal(ca.parent_id, "");
	cf_ca_rec_clear(&ca);
	memcpy(prefix, fx->root_id, 8);
	prefix[8] = '\0';
	assert_int_equal(cf_store_ca_get(fx->st, &ca, prefix), 0);
	assert_string_equal(ca.name, "root");
	cf_ca_rec_clear(&ca);
	for (i = 0; i <= CF_ID_LEN; i++)
		upper[i] = (fx->root_id[i] >= 'a' && fx->root_id[i] <= 'f') ?
		    (char)(fx->root_id[i] - 32) : fx->root_id[i];
	assert_int_equal(cf_store_ca_get(fx->st, &ca, upper), 0);
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_get(fx->st, &ca, "nosuchca"), CF_ENOTFOUND);
	assert_int_equal(cf_store_ca_get(fx->st, &ca, "ffffffffff"), CF_ENOTFOUND);
	assert_int_equal(cf_store_ca_list(fx->st, &v, &n), 0);
	assert_int_equal(n, 2);
	cf_ca_recs_free(v, n);
	cf_ca_recs_free(NULL, 0);
	cf_ca_rec_clear(NULL);
}

static void
test_store__ca_insert_negative(void **state)
{
	struct fx *fx = *state;
	char ghost[CF_ID_LEN + 1];

	fake_id(ghost, "ghost");
	assert_int_equal(add_ca(fx->st, NULL, "int2", CF_CA_INTERMEDIATE, ghost, CF_CERT_ACTIVE),
	    CF_ENOTFOUND);
	assert_int_equal(add_ca(fx->st, NULL, "root", CF_CA_ROOT, NULL, CF_CERT_ACTIVE), CF_EEXISTS);
	assert_int_equal(add_ca(fx->st, NULL, "bad name", CF_CA_ROOT, NULL, CF_CERT_ACTIVE),
	    CF_EINVAL);
	assert_int_equal(add_ca(fx->st, NULL, "r2", CF_CA_ROOT, fx->root_id, CF_CERT_ACTIVE),
	    CF_EINVAL);
	assert_int_equal(add_ca(fx->st, NULL, "r3", CF_CA_ROOT, NULL,
	    CF_CERT_PENDING_ACTIVATION), CF_EINVAL);
}

static void
test_store__ca_set_issuer_moves_flag(void **state)
{
	struct fx *fx = *state;
	char int2[CF_ID_LEN + 1];
	cf_ca_rec ca;

	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), CF_ENOTFOUND);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, "int1"), 0);
	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), 0);
	assert_string_equal(ca.name, "int1");
	assert_true(ca.is_issuer);
	cf_ca_rec_clear(&ca);
	assert_int_equal(add_ca(fx->st, int2, "int2", CF_CA_INTERMEDIATE, fx->root_id,
	    CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, int2), 0);
	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), 0);
	assert_string_equal(ca.name, "int2");
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_get(fx->st, &ca, "int1"), 0);
	assert_false(ca.is_issuer);
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, int2), 0); /* already: no-op */
}

static void
test_store__ca_set_issuer_only_active_intermediate(void **state)
{
	struct fx *fx = *state;
	char int2[CF_ID_LEN + 1];

	assert_int_equal(cf_store_ca_set_issuer(fx->st, "root"), CF_EINVAL);
	assert_int_equal(add_ca(fx->st, int2, "int2", CF_CA_INTERMEDIATE, fx->root_id,
	    CF_CERT_INACTIVE), 0);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, "int2"), CF_ESTATE);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, "ghost"), CF_ENOTFOUND);
}

static void
test_store__ca_revoke_clears_issuer(void **state)
{
	struct fx *fx = *state;
	cf_ca_rec ca;

	assert_int_equal(cf_store_ca_set_issuer(fx->st, "int1"), 0);
	assert_int_equal(cf_store_ca_set_status(fx->st, "int1", CF_CERT_REVOKED, 2), 0);
	assert_int_equal(cf_store_ca_get(fx->st, &ca, "int1"), 0);
	assert_int_equal(ca.status, CF_CERT_REVOKED);
	assert_false(ca.is_issuer);
	assert_int_equal(ca.revoke_reason, 2);
	assert_true(ca.revoked_at > 0);
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), CF_ENOTFOUND);
	assert_int_equal(cf_store_ca_set_status(fx->st, "int1", CF_CERT_ACTIVE, 0), CF_ESTATE);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, "int1"), CF_ESTATE);
	assert_int_equal(cf_store_ca_set_status(fx->st, "root", CF_CERT_PENDING_ACTIVATION, 0),
	    CF_ESTATE);
}

static void
test_store__ca_crl_numbers_increment(void **state)
{
	struct fx *fx = *state;
	int64_t n = 0;
	cf_ca_rec ca;

	assert_int_equal(cf_store_ca_next_crl_number(fx->st, &n, fx->int_id), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cf_store_ca_next_crl_number(fx->st, &n, fx->int_id), 0);
	assert_int_equal(n, 2);
	assert_int_equal(cf_store_ca_next_crl_number(fx->st, &n, "root"), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cf_store_ca_get(fx->st, &ca, "int1"), 0);
	assert_int_equal(ca.crl_number, 2);
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_next_crl_number(fx->st, &n, "ghost"), CF_ENOTFOUND);
}

/* ---- certificates ------------------------------------------------------------------ */

static void
test_store__cert_insert_and_get(void **state)
{
	struct fx *fx = *state;
	char id[CF_ID_LEN + 1];
	cf_cert_rec c;

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(add_cert(fx->st, id, "c", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_cert_get(fx->st, &c, id), 0);
	assert_string_equal(c.id, id);
	assert_string_equal(c.ca_id, fx->int_id);
	assert_string_equal(c.thing, "dev");
	assert_int_equal(c.status, CF_CERT_ACTIVE);
	assert_int_equal(c.not_after, 1900000000);
	assert_int_equal(c.key_bits, 256);
	assert_string_equal(c.sig_alg, "ecdsa-with-SHA256");
	assert_true(c.created_at > 0 && c.updated_at == c.created_at);
	assert_non_null(strstr(c.pem, "leaf"));
	cf_cert_rec_clear(&c);
	cf_cert_rec_clear(NULL);
	cf_cert_recs_free(NULL, 0);
}

static void
test_store__cert_insert_unknown_ca_or_thing_is_enotfound(void **state)
{
	struct fx *fx = *state;
	char ghost_ca[CF_ID_LEN + 1];

	fake_id(ghost_ca, "no-such-ca");
	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(add_cert(fx->st, NULL, "c", ghost_ca, "dev", CF_CERT_ACTIVE), CF_ENOTFOUND);
	assert_int_equal(add_cert(fx->st, NULL, "c", fx->int_id, "ghost", CF_CERT_ACTIVE),
	    CF_ENOTFOUND);
	assert_int_equal(add_cert(fx->st, NULL, "c", fx->int_id, "bad name", CF_CERT_ACTIVE),
	    CF_EINVAL);
	assert_int_equal(add_cert_id(fx->st, "ABC", fx->int_id, "dev", CF_CERT_ACTIVE, 1), CF_EINVAL);
	assert_int_equal(event_count(fx->st), 3);
}

static void
test_store__cert_insert_duplicate_is_eexists(void **state)
{
	struct fx *fx = *state;

	assert_int_equal(add_cert(fx->st, NULL, "c", fx->int_id, NULL, CF_CERT_INACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "c", fx->int_id, NULL, CF_CERT_INACTIVE), CF_EEXISTS);
}

static void
test_store__cert_get_by_prefix(void **state)
{
	struct fx *fx = *state;
	char a[CF_ID_LEN + 1], b[CF_ID_LEN + 1];
	cf_cert_rec c;

	memset(a, '1', CF_ID_LEN);
	memset(b, '2', CF_ID_LEN);
	memcpy(a, "abcdef01", 8);
	memcpy(b, "abcdef01", 8);
	a[CF_ID_LEN] = b[CF_ID_LEN] = '\0';
	assert_int_equal(add_cert_id(fx->st, a, fx->int_id, NULL, CF_CERT_INACTIVE, 5), 0);
	assert_int_equal(add_cert_id(fx->st, b, fx->int_id, NULL, CF_CERT_INACTIVE, 5), 0);
	assert_int_equal(cf_store_cert_get(fx->st, &c, "abcdef01"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "ambiguous"));
	assert_int_equal(cf_store_cert_get(fx->st, &c, "abcdef011"), 0);
	assert_string_equal(c.id, a);
	cf_cert_rec_clear(&c);
	assert_int_equal(cf_store_cert_get(fx->st, &c, "ABCDEF012"), 0);
	assert_string_equal(c.id, b);
	cf_cert_rec_clear(&c);
	assert_int_equal(cf_store_cert_get(fx->st, &c, "abcdef0"), CF_EINVAL); /* too short */
	assert_int_equal(cf_store_cert_get(fx->st, &c, "not-hex-at-all"), CF_EINVAL);
	assert_int_equal(cf_store_cert_get(fx->st, &c, "0123456789"), CF_ENOTFOUND);
	assert_int_equal(cf_store_cert_get(fx->st, &c, NULL), CF_EINVAL);
}

static void
test_store__cert_list_filters(void **state)
{
	struct fx *fx = *state;
	char int2[CF_ID_LEN + 1], id[CF_ID_LEN + 1];
	cf_cert_rec *v = NULL;
	size_t n = 0;
	cf_cert_filter f;

	assert_int_equal(add_ca(fx->st, int2, "int2", CF_CA_INTERMEDIATE, fx->root_id,
	    CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "a", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "b", NULL), 0);
	fake_id(id, "a1");
	assert_int_equal(add_cert_id(fx->st, id, fx->int_id, "a", CF_CERT_ACTIVE, 100), 0);
	fake_id(id, "a2");
	assert_int_equal(add_cert_id(fx->st, id, int2, "a", CF_CERT_INACTIVE, 200), 0);
	fake_id(id, "b1");
	assert_int_equal(add_cert_id(fx->st, id, int2, "b", CF_CERT_ACTIVE, 300), 0);
	fake_id(id, "loose");
	assert_int_equal(add_cert_id(fx->st, id, int2, NULL, CF_CERT_REVOKED, 400), 0);

	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, NULL), 0);
	assert_int_equal(n, 4);
	cf_cert_recs_free(v, n);

	memset(&f, 0, sizeof(f));
	f.status = CF_CERT_ACTIVE;
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 2);
	cf_cert_recs_free(v, n);

	f.status = -1;
	f.thing = "a";
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 2);
	cf_cert_recs_free(v, n);

	f.thing = ""; /* attached to no thing */
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].status, CF_CERT_REVOKED);
	cf_cert_recs_free(v, n);

	f.thing = NULL;
	f.ca_id = int2;
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 3);
	cf_cert_recs_free(v, n);

	f.ca_id = NULL;
	f.not_after_before = 300;
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 2);
	assert_true(v[0].not_after < 300 && v[1].not_after < 300);
	cf_cert_recs_free(v, n);

	/* all four at once */
	f.status = CF_CERT_INACTIVE;
	f.thing = "a";
	f.ca_id = int2;
	f.not_after_before = 250;
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].not_after, 200);
	cf_cert_recs_free(v, n);

	f.status = 17;
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), CF_EINVAL);
}

/* Every from/to pair, against the rules of DESIGN §4, through the check and the store. */
static void
test_store__status_transitions_table(void **state)
{
	struct fx *fx = *state;
	static const int allowed[CF_CERT__STATUS_COUNT][CF_CERT__STATUS_COUNT] = {
		/* to:                  PENDING ACTIVE INACTIVE REVOKED */
		[CF_CERT_PENDING_ACTIVATION] = { 1, 1, 1, 1 },
		[CF_CERT_ACTIVE] = { 0, 1, 1, 1 },
		[CF_CERT_INACTIVE] = { 0, 1, 1, 1 },
		[CF_CERT_REVOKED] = { 0, 0, 0, 1 },
	};
	char seed[32], id[CF_ID_LEN + 1];
	cf_cert_rec c;
	int from, to, want, got;

	for (from = 0; from < CF_CERT__STATUS_COUNT; from++) {
		for (to = 0; to < CF_CERT__STATUS_COUNT; to++) {
			want = allowed[from][to] ? 0 : CF_ESTATE;
			got = cf_cert_status_check((cf_cert_status)from, (cf_cert_status)to);
			if (got != want)
				fail_msg("check %s -> %s: %d, want %d",
				    cf_cert_status_name((cf_cert_status)from),
				    cf_cert_status_name((cf_cert_status)to), got, want);
			snprintf(seed, sizeof(seed), "pair-%d-%d", from, to);
			assert_int_equal(add_cert(fx->st, id, seed, fx->int_id, NULL,
			    (cf_cert_status)from), 0);
			got = cf_store_cert_set_status(fx->st, id, (cf_cert_status)to, 1);
			if (got != want)
				fail_msg("store %s -> %s: %d, want %d (%s)",
				    cf_cert_status_name((cf_cert_status)from),
				    cf_cert_status_name((cf_cert_status)to), got, want,
				    cf_error_last());
			assert_int_equal(cf_store_cert_get(fx->st, &c, id), 0);
			assert_int_equal(c.status, want == 0 ? to : from);
			cf_cert_rec_clear(&c);
		}
	}
	assert_int_equal(cf_cert_status_check((cf_cert_status)9, CF_CERT_ACTIVE), CF_EINVAL);
}

static void
test_store__status_names_parse(void **state)
{
	cf_cert_status s;
	int i;

	(void)state;
	for (i = 0; i < CF_CERT__STATUS_COUNT; i++) {
		assert_int_equal(cf_cert_status_parse(&s, cf_cert_status_name((cf_cert_status)i)), 0);
		assert_int_equal(s, i);
	}
	assert_int_equal(cf_cert_status_parse(&s, "revoked"), 0);
	assert_int_equal(s, CF_CERT_REVOKED);
	assert_int_equal(cf_cert_status_parse(&s, "EXPIRED"), CF_EINVAL);
	assert_int_equal(cf_cert_status_parse(&s, NULL), CF_EINVAL);
	assert_string_equal(cf_cert_status_name((cf_cert_status)42), "UNKNOWN");
}

static void
test_store__revoked_to_active_is_estate(void **state)
{
	struct fx *fx = *state;
	char id[CF_ID_LEN + 1];

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(add_cert(fx->st, id, "c", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, id, CF_CERT_REVOKED, 1), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, id, CF_CERT_ACTIVE, 0), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "REVOKED"));
	assert_int_equal(cf_store_cert_set_status(fx->st, id, CF_CERT_INACTIVE, 0), CF_ESTATE);
}

static void
test_store__revoke_twice_is_noop(void **state)
{
	struct fx *fx = *state;
	char id[CF_ID_LEN + 1];
	cf_cert_rec c;
	int64_t events, at;

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(add_cert(fx->st, id, "c", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, id, CF_CERT_REVOKED, 1), 0);
	assert_int_equal(cf_store_cert_get(fx->st, &c, id), 0);
	assert_int_equal(c.revoke_reason, 1);
	at = c.revoked_at;
	assert_true(at > 0);
	cf_cert_rec_clear(&c);
	events = event_count(fx->st);
	assert_int_equal(cf_store_cert_set_status(fx->st, id, CF_CERT_REVOKED, 4), 0);
	assert_int_equal(event_count(fx->st), events);
	assert_int_equal(cf_store_cert_get(fx->st, &c, id), 0);
	assert_int_equal(c.revoke_reason, 1); /* the first revocation stands */
	assert_int_equal(c.revoked_at, at);
	cf_cert_rec_clear(&c);
}

static void
test_store__third_active_cert_is_estate(void **state)
{
	struct fx *fx = *state;
	char c3[CF_ID_LEN + 1], c1[CF_ID_LEN + 1];

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(add_cert(fx->st, c1, "c1", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "c2", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	/* by insert */
	assert_int_equal(add_cert(fx->st, NULL, "c3a", fx->int_id, "dev", CF_CERT_ACTIVE), CF_ESTATE);
	/* by activation */
	assert_int_equal(add_cert(fx->st, c3, "c3", fx->int_id, "dev", CF_CERT_PENDING_ACTIVATION),
	    0);
	assert_int_equal(cf_store_cert_set_status(fx->st, c3, CF_CERT_ACTIVE, 0), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "dev"));
	/* once one is retired, the new one may activate */
	assert_int_equal(cf_store_cert_set_status(fx->st, c1, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, c3, CF_CERT_ACTIVE, 0), 0);
	/* another thing is not affected */
	assert_int_equal(cf_store_thing_create(fx->st, "other", NULL), 0);
	assert_int_equal(add_cert(fx->st, NULL, "o1", fx->int_id, "other", CF_CERT_ACTIVE), 0);
}

/*
 * The limit counts exactly this thing's ACTIVE certificates: the thing's
 * PENDING/INACTIVE/REVOKED ones, other things' ACTIVE ones and unattached
 * ones do not count; the refusal comes at exactly two, changes nothing and
 * appends no event; an id already in the registry is not counted against
 * itself (a duplicate is CF_EEXISTS, not CF_ESTATE).
 */
static void
test_store__active_limit_counts_only_this_things_active(void **state)
{
	struct fx *fx = *state;
	char c1[CF_ID_LEN + 1], c2[CF_ID_LEN + 1], p1[CF_ID_LEN + 1];
	cf_cert_filter f = { .status = CF_CERT_ACTIVE, .thing = "dev" };
	cf_cert_rec *v = NULL;
	size_t n = 0;
	int64_t events;

	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "dev2", NULL), 0);
	assert_int_equal(add_cert(fx->st, NULL, "o1", fx->int_id, "dev2", CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "o2", fx->int_id, "dev2", CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "u1", fx->int_id, NULL, CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "u2", fx->int_id, NULL, CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "u3", fx->int_id, NULL, CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, p1, "p1", fx->int_id, "dev", CF_CERT_PENDING_ACTIVATION),
	    0);
	assert_int_equal(add_cert(fx->st, NULL, "i1", fx->int_id, "dev", CF_CERT_INACTIVE), 0);
	assert_int_equal(add_cert(fx->st, NULL, "r1", fx->int_id, "dev", CF_CERT_REVOKED), 0);
	assert_int_equal(add_cert(fx->st, c1, "c1", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	assert_int_equal(add_cert(fx->st, c2, "c2", fx->int_id, "dev", CF_CERT_ACTIVE), 0);
	events = event_count(fx->st);
	assert_int_equal(add_cert(fx->st, NULL, "c3", fx->int_id, "dev", CF_CERT_ACTIVE), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "already has 2 ACTIVE"));
	assert_int_equal(cf_store_cert_set_status(fx->st, p1, CF_CERT_ACTIVE, 0), CF_ESTATE);
	assert_int_equal(event_count(fx->st), events);
	assert_int_equal(cf_store_cert_list(fx->st, &v, &n, &f), 0);
	assert_int_equal(n, 2);
	cf_cert_recs_free(v, n);
	/* c1 itself again: not counted against itself, so the duplicate is what is refused. */
	assert_int_equal(add_cert(fx->st, NULL, "c1", fx->int_id, "dev", CF_CERT_ACTIVE), CF_EEXISTS);
	/* Revoked: one below the limit, and the pending one may activate. */
	assert_int_equal(cf_store_cert_set_status(fx->st, c2, CF_CERT_REVOKED, 1), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, p1, CF_CERT_ACTIVE, 0), 0);
	assert_int_equal(add_cert(fx->st, NULL, "c4", fx->int_id, "dev", CF_CERT_ACTIVE), CF_ESTATE);
	/* Re-activating one that is ACTIVE is the no-op it was. */
	assert_int_equal(cf_store_cert_set_status(fx->st, c1, CF_CERT_ACTIVE, 0), 0);
}

/*
 * The limit's count (S_CERT_COUNT in cf_store_sqlite.c, copied here) is
 * answered from certificates(thing, status), not by a scan: it runs at
 * every issuance.
 */
static void
test_store__active_count_uses_thing_status_index(void **state)
{
	struct fx *fx = *state;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char plan[512] = "";
	size_t len = 0;

	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN SELECT count(*) FROM "
	    "certificates WHERE thing = ?1 AND status = ?2 AND id <> ?3", -1, &s, NULL), SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW && len < sizeof(plan))
		len += (size_t)snprintf(plan + len, sizeof(plan) - len, "%s\n",
		    (const char *)sqlite3_column_text(s, 3));
	sqlite3_finalize(s);
	sqlite3_close(db);
	if (strstr(plan, "USING INDEX certificates_thing_status (thing=? AND status=?)") == NULL)
		fail_msg("the count does not use certificates_thing_status: %s", plan);
}

static void
test_store__issuer_lookup_is_the_flagged_ca(void **state)
{
	struct fx *fx = *state;
	char int2[CF_ID_LEN + 1];
	cf_ca_rec ca;

	memset(&ca, 0, sizeof(ca));
	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), CF_ENOTFOUND);
	assert_non_null(strstr(cf_error_last(), "set-issuer"));
	/* Created later than int1 but flagged: the flag decides, not the order. */
	assert_int_equal(add_ca(fx->st, int2, "int2", CF_CA_INTERMEDIATE, fx->root_id,
	    CF_CERT_ACTIVE), 0);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, int2), 0);
	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), 0);
	assert_string_equal(ca.id, int2);
	assert_true(ca.is_issuer);
	assert_non_null(ca.pem);
	cf_ca_rec_clear(&ca);
	assert_int_equal(cf_store_ca_set_status(fx->st, int2, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(cf_store_ca_get_issuer(fx->st, &ca), CF_ENOTFOUND);
}

/* ---- transactions ------------------------------------------------------------------ */

static void
test_store__transaction_rollback_leaves_nothing(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t;
	int64_t events = event_count(fx->st);

	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "t1", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "g1", NULL), 0);
	assert_int_equal(cf_store_event_append(fx->st, "test.note", "x", NULL), 0);
	cf_store_rollback(fx->st);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "t1"), CF_ENOTFOUND);
	assert_int_equal(event_count(fx->st), events);
	/* and the store still works */
	assert_int_equal(cf_store_thing_create(fx->st, "t1", NULL), 0);
	assert_int_equal(event_count(fx->st), events + 1);
	cf_store_rollback(fx->st); /* nothing open: harmless */
}

static void
test_store__transaction_commit_keeps_all(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t;
	int64_t events = event_count(fx->st);

	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "t1", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "t2", NULL), 0);
	assert_int_equal(cf_store_commit(fx->st), 0);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "t2"), 0);
	cf_thing_rec_clear(&t);
	assert_int_equal(event_count(fx->st), events + 2);
	assert_int_equal(cf_store_commit(fx->st), CF_EINVAL); /* nothing open */
}

static void
test_store__transaction_nested_rollback_is_partial(void **state)
{
	struct fx *fx = *state;
	cf_thing_rec t;
	int64_t events = event_count(fx->st);
	int64_t count, bad;

	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "outer", NULL), 0);
	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "inner", NULL), 0);
	cf_store_rollback(fx->st);
	/* a failing mutator inside the transaction undoes only itself */
	assert_int_equal(cf_store_thing_create(fx->st, "outer", NULL), CF_EEXISTS);
	assert_int_equal(cf_store_thing_create(fx->st, "after", NULL), 0);
	assert_int_equal(cf_store_commit(fx->st), 0);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "inner"), CF_ENOTFOUND);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "outer"), 0);
	cf_thing_rec_clear(&t);
	assert_int_equal(cf_store_thing_get(fx->st, &t, "after"), 0);
	cf_thing_rec_clear(&t);
	assert_int_equal(event_count(fx->st), events + 2);
	assert_int_equal(cf_store_event_verify(fx->st, &count, &bad, NULL), 0);
	assert_int_equal(count, events + 2);
}

/* ---- opening, migrations, damaged files ---------------------------------------------- */

static void
test_store__open_twice_same_version(void **state)
{
	struct fx *fx = *state;
	cf_store *st2 = NULL;
	int v = cf_store_schema_version(fx->st);

	assert_true(v >= 1);
	cf_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(cf_store_open(&fx->st, fx->path, 0), 0);
	assert_int_equal(cf_store_schema_version(fx->st), v);
	/* a second connection at the same time */
	assert_int_equal(cf_store_open(&st2, fx->path, CF_STORE_CREATE), 0);
	assert_int_equal(cf_store_schema_version(st2), v);
	assert_int_equal(cf_store_thing_create(st2, "from-2", NULL), 0);
	cf_store_close(st2);
	cf_store_close(NULL);
}

static void
test_store__schema_newer_is_einval(void **state)
{
	struct fx *fx = *state;
	cf_store *st = NULL;
	char restore[64];

	snprintf(restore, sizeof(restore), "PRAGMA user_version = %d", cf_store_schema_version(fx->st));
	cf_store_close(fx->st);
	fx->st = NULL;
	raw_sql(fx->path, "PRAGMA user_version = 999");
	assert_int_equal(cf_store_open(&st, fx->path, 0), CF_EINVAL);
	assert_null(st);
	assert_non_null(strstr(cf_error_last(), "newer"));
	raw_sql(fx->path, restore);
	assert_int_equal(cf_store_open(&fx->st, fx->path, 0), 0);
}

static void
test_store__random_bytes_is_ecorrupt(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX * 2];
	unsigned char junk[8192];
	cf_store *st = NULL;
	size_t i;
	int fd;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 131 + 7);
	snprintf(path, sizeof(path), "%s/junk.db", fx->dir);
	assert_true((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(cf_store_open(&st, path, 0), CF_ECORRUPT);
	assert_non_null(strstr(cf_error_last(), path));
	assert_int_equal(cf_store_open(&st, path, CF_STORE_CREATE), CF_ECORRUPT);
	assert_null(st);
}

static void
test_store__damaged_database_is_ecorrupt(void **state)
{
	struct fx *fx = *state;
	cf_store *st = NULL;
	char junk[4096];
	int fd;

	cf_store_close(fx->st);
	fx->st = NULL;
	/* keep the SQLite header, smash the pages behind it */
	memset(junk, 0x5a, sizeof(junk));
	assert_true((fd = open(fx->path, O_WRONLY)) >= 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 100), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(cf_store_open(&st, fx->path, 0), CF_ECORRUPT);
	assert_non_null(strstr(cf_error_last(), fx->path));
}

static void
test_store__foreign_sqlite_db_is_ecorrupt(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX * 2];
	cf_store *st = NULL;
	struct stat sb;

	snprintf(path, sizeof(path), "%s/other.db", fx->dir);
	raw_sql(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);"
	    "INSERT INTO customers(name) VALUES ('acme')");
	assert_int_equal(cf_store_open(&st, path, CF_STORE_CREATE), CF_ECORRUPT);
	assert_non_null(strstr(cf_error_last(), "not a certfleet"));
	/* a stamped version does not make it ours either */
	raw_sql(path, "PRAGMA user_version = 1");
	assert_int_equal(cf_store_open(&st, path, 0), CF_ECORRUPT);
	/* and it was left alone: no WAL files */
	snprintf(path, sizeof(path), "%s/other.db-wal", fx->dir);
	assert_int_not_equal(stat(path, &sb), 0);
}

static void
test_store__missing_file_without_create_is_enotfound(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX * 2];
	cf_store *st = NULL;
	struct stat sb;
	int fd;

	snprintf(path, sizeof(path), "%s/missing.db", fx->dir);
	assert_int_equal(cf_store_open(&st, path, 0), CF_ENOTFOUND);
	assert_null(st);
	assert_int_not_equal(stat(path, &sb), 0);
	/* an empty file is not a database either, unless asked to create one */
	assert_true((fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)) >= 0);
	close(fd);
	assert_int_equal(cf_store_open(&st, path, 0), CF_ENOTFOUND);
	assert_int_equal(cf_store_open(&st, path, CF_STORE_CREATE), 0);
	assert_true(cf_store_schema_version(st) >= 1);
	cf_store_close(st);
	snprintf(path, sizeof(path), "%s/no/such/dir.db", fx->dir);
	assert_int_not_equal(cf_store_open(&st, path, CF_STORE_CREATE), 0);
	assert_int_equal(cf_store_open(&st, "postgres://localhost/cf", 0), CF_EINVAL);
	assert_int_equal(cf_store_open(&st, "", 0), CF_EINVAL);
}

static void
test_store__pragmas_and_schema(void **state)
{
	struct fx *fx = *state;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	static const char *const want[] = {
		"certificates_status_not_after", "certificates_ca_status",
		"certificates_thing_status", "certificates_serial", "events_ts",
		"events_no_update", "events_no_delete",
	};
	size_t i;

	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(sqlite3_prepare_v2(db,
		    "SELECT count(*) FROM sqlite_master WHERE name = ?1", -1, &s, NULL), SQLITE_OK);
		sqlite3_bind_text(s, 1, want[i], -1, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		if (sqlite3_column_int(s, 0) != 1)
			fail_msg("schema lacks %s", want[i]);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
}

/*
 * The writer checkpoints at 10000 WAL pages, not SQLite's default 1000: the
 * WAL file (reused from its start after each checkpoint, never shorter than
 * the most it held) grows past 1000 pages' worth.
 */
static void
test_store__wal_checkpoints_late(void **state)
{
	struct fx *fx = *state;
	char path[PATH_MAX * 2], name[32];
	struct stat sb;
	int i;

	for (i = 0; i < 800; i++) {
		snprintf(name, sizeof(name), "wal-thing-%04d", i);
		assert_int_equal(cf_store_thing_create(fx->st, name, NULL), 0);
	}
	snprintf(path, sizeof(path), "%s-wal", fx->path);
	assert_int_equal(stat(path, &sb), 0);
	/* 32-byte header, then 24 + 4096 bytes a frame */
	if (sb.st_size < 32 + 1200 * (24 + 4096))
		fail_msg("WAL of %lld bytes: checkpointed before 1200 pages", (long long)sb.st_size);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_store__thing_create_get_list),
		T(test_store__wal_checkpoints_late),
		T(test_store__thing_duplicate_is_eexists),
		T(test_store__thing_bad_name_is_einval),
		T(test_store__thing_bad_attributes_is_einval),
		T(test_store__thing_get_unknown_is_enotfound),
		T(test_store__thing_set_attributes),
		T(test_store__thing_delete_with_active_cert_is_estate),
		T(test_store__thing_delete_detaches_inactive_and_revoked),
		T(test_store__group_static_add_and_members),
		T(test_store__group_duplicate_is_eexists),
		T(test_store__group_add_to_dynamic_is_einval),
		T(test_store__group_unknown_thing_or_group_is_enotfound),
		T(test_store__group_bad_query_is_einval),
		T(test_store__group_dynamic_members_follow_attributes),
		T(test_store__group_list_counts),
		T(test_store__ca_get_by_name_id_prefix),
		T(test_store__ca_insert_negative),
		T(test_store__ca_set_issuer_moves_flag),
		T(test_store__ca_set_issuer_only_active_intermediate),
		T(test_store__ca_revoke_clears_issuer),
		T(test_store__ca_crl_numbers_increment),
		T(test_store__cert_insert_and_get),
		T(test_store__cert_insert_unknown_ca_or_thing_is_enotfound),
		T(test_store__cert_insert_duplicate_is_eexists),
		T(test_store__cert_get_by_prefix),
		T(test_store__cert_list_filters),
		T(test_store__status_transitions_table),
		T(test_store__status_names_parse),
		T(test_store__revoked_to_active_is_estate),
		T(test_store__revoke_twice_is_noop),
		T(test_store__third_active_cert_is_estate),
		T(test_store__active_limit_counts_only_this_things_active),
		T(test_store__active_count_uses_thing_status_index),
		T(test_store__issuer_lookup_is_the_flagged_ca),
		T(test_store__transaction_rollback_leaves_nothing),
		T(test_store__transaction_commit_keeps_all),
		T(test_store__transaction_nested_rollback_is_partial),
		T(test_store__open_twice_same_version),
		T(test_store__schema_newer_is_einval),
		T(test_store__random_bytes_is_ecorrupt),
		T(test_store__damaged_database_is_ecorrupt),
		T(test_store__foreign_sqlite_db_is_ecorrupt),
		T(test_store__missing_file_without_create_is_enotfound),
		T(test_store__pragmas_and_schema),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
