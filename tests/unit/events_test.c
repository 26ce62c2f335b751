/*
 * events_test — the append-only, hash-chained event log: which events the
 * mutators record, the documented hash formula, verify, and tampering done
 * to the database file directly (docs/event-log.md).
 */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_store.h"

static const char zeros[] = "0000000000000000000000000000000000000000000000000000000000000000";

struct fx {
	char dir[256];
	char path[PATH_MAX];
	cf_store *st;
};

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
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/cf-events-test.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/certfleet.db", fx->dir);
	*state = fx;
	if (cf_store_open(&fx->st, fx->path, CF_STORE_CREATE) != 0) {
		print_error("setup: %s\n", cf_error_last());
		teardown(state); /* leave no temp directory behind */
		return -1;
	}
	return 0;
}

/* Tampering as someone with write access to the file would: triggers dropped first. */
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

static void
fill_ca(cf_ca_rec *ca, const char *name, cf_ca_role role, const char *parent_id)
{
	memset(ca, 0, sizeof(*ca));
	cf_sha256_hex(ca->id, name, strlen(name));
	snprintf(ca->name, sizeof(ca->name), "%s", name);
	ca->role = role;
	snprintf(ca->parent_id, sizeof(ca->parent_id), "%s", parent_id ? parent_id : "");
	ca->status = CF_CERT_ACTIVE;
	snprintf(ca->serial, sizeof(ca->serial), "%s", "01");
	ca->not_after = 2000000000;
	snprintf(ca->key_alg, sizeof(ca->key_alg), "%s", "ECDSA-P384");
	ca->key_bits = 384;
	ca->pem = "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n";
}

static void
fill_cert(cf_cert_rec *c, const char *seed, const char *ca_id, const char *thing)
{
	memset(c, 0, sizeof(*c));
	cf_sha256_hex(c->id, seed, strlen(seed));
	snprintf(c->serial, sizeof(c->serial), "%s", "7f");
	snprintf(c->ca_id, sizeof(c->ca_id), "%s", ca_id);
	snprintf(c->thing, sizeof(c->thing), "%s", thing);
	c->status = CF_CERT_ACTIVE;
	c->not_after = 1900000000;
	snprintf(c->key_alg, sizeof(c->key_alg), "%s", "ED25519");
	c->pem = "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n";
}

/* Six events: thing.created x2, group.created, group.member_added, event "test.note" x2. */
static void
six_events(cf_store *st)
{
	assert_int_equal(cf_store_thing_create(st, "t1", NULL), 0);
	assert_int_equal(cf_store_thing_create(st, "t2", "{\"site\":\"oslo\"}"), 0);
	assert_int_equal(cf_store_group_create(st, "g", NULL), 0);
	assert_int_equal(cf_store_group_add(st, "g", "t1"), 0);
	assert_int_equal(cf_store_event_append(st, "test.note", "n1", "{\"k\":\"v\"}"), 0);
	assert_int_equal(cf_store_event_append(st, "test.note", "n2", NULL), 0);
}

static void
test_store__events_every_mutator_appends_its_event(void **state)
{
	struct fx *fx = *state;
	static const struct {
		const char *type;
		const char *subject; /* NULL: a certificate id, checked separately */
	} want[] = {
		{ "ca.created", "root" },
		{ "ca.created", "int1" },
		{ "ca.issuer_set", "int1" },
		{ "thing.created", "dev" },
		{ "thing.updated", "dev" },
		{ "group.created", "static" },
		{ "group.created", "dynamic" },
		{ "group.member_added", "static" },
		{ "cert.issued", NULL },
		{ "cert.status", NULL },
		{ "cert.status", NULL },
		{ "ca.status", "int1" },
		{ "crl.published", "int1" },
		{ "thing.created", "gone" },
		{ "thing.deleted", "gone" },
	};
	cf_ca_rec root, inter;
	cf_cert_rec c;
	cf_event_rec *ev = NULL;
	size_t n = 0, i;
	int64_t crl;

	fill_ca(&root, "root", CF_CA_ROOT, NULL);
	fill_ca(&inter, "int1", CF_CA_INTERMEDIATE, root.id);
	assert_int_equal(cf_store_ca_insert(fx->st, &root), 0);
	assert_int_equal(cf_store_ca_insert(fx->st, &inter), 0);
	assert_int_equal(cf_store_ca_set_issuer(fx->st, "int1"), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "dev", NULL), 0);
	assert_int_equal(cf_store_thing_set_attributes(fx->st, "dev", "{\"a\":\"b\"}"), 0);
	assert_int_equal(cf_store_group_create(fx->st, "static", NULL), 0);
	assert_int_equal(cf_store_group_create(fx->st, "dynamic", "a=b"), 0);
	assert_int_equal(cf_store_group_add(fx->st, "static", "dev"), 0);
	fill_cert(&c, "leaf", inter.id, "dev");
	assert_int_equal(cf_store_cert_insert(fx->st, &c), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, c.id, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(cf_store_cert_set_status(fx->st, c.id, CF_CERT_REVOKED, 1), 0);
	assert_int_equal(cf_store_ca_set_status(fx->st, "int1", CF_CERT_REVOKED, 2), 0);
	/* CRL numbers are not events; the caller records the publication */
	assert_int_equal(cf_store_ca_next_crl_number(fx->st, &crl, "int1"), 0);
	assert_int_equal(cf_store_event_append(fx->st, "crl.published", "int1",
	    "{\"crl_number\":1}"), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "gone", NULL), 0);
	assert_int_equal(cf_store_thing_delete(fx->st, "gone"), 0);

	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < n; i++) {
		assert_int_equal(ev[i].seq, (int64_t)i + 1);
		if (strcmp(ev[i].type, want[i].type) != 0)
			fail_msg("event #%zu is %s, want %s", i + 1, ev[i].type, want[i].type);
		assert_string_equal(ev[i].subject, want[i].subject ? want[i].subject : c.id);
		assert_non_null(ev[i].detail);
		assert_int_equal(ev[i].detail[0], '{');
	}
	assert_string_equal(ev[0].prev_hash, zeros);
	assert_non_null(strstr(ev[9].detail, "\"from\":\"ACTIVE\""));
	assert_non_null(strstr(ev[9].detail, "\"to\":\"INACTIVE\""));
	assert_non_null(strstr(ev[11].detail, "\"issuer_cleared\":true"));
	assert_string_equal(ev[12].detail, "{\"crl_number\":1}");
	cf_event_recs_free(ev, n);
	cf_event_recs_free(NULL, 0);
}

static void
test_store__events_failed_mutators_append_nothing(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_thing_create(fx->st, "t", NULL), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "t", NULL), CF_EEXISTS);
	assert_int_equal(cf_store_thing_delete(fx->st, "ghost"), CF_ENOTFOUND);
	assert_int_equal(cf_store_group_add(fx->st, "nogroup", "t"), CF_ENOTFOUND);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_int_equal(n, 1);
	cf_event_recs_free(ev, n);
}

/* The formula in docs/event-log.md, computed here independently. */
static void
test_store__events_hash_is_the_documented_formula(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0, i;
	char buf[4096], want[CF_ID_LEN + 1];

	six_events(fx->st);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_int_equal(n, 6);
	for (i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s\n%lld\n%lld\n%s\n%s\n%s", ev[i].prev_hash,
		    (long long)ev[i].seq, (long long)ev[i].ts, ev[i].type, ev[i].subject,
		    ev[i].detail);
		cf_sha256_hex(want, buf, strlen(buf));
		assert_string_equal(ev[i].hash, want);
		assert_string_equal(ev[i].prev_hash, i == 0 ? zeros : ev[i - 1].hash);
	}
	/* detail is stored compact with sorted keys */
	assert_string_equal(ev[1].detail, "{\"attributes\":{\"site\":\"oslo\"}}");
	assert_string_equal(ev[5].detail, "{}");
	cf_event_recs_free(ev, n);
}

static void
test_store__events_verify_passes(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0;
	int64_t count = -1, bad = -1;
	char head[CF_ID_LEN + 1];

	assert_int_equal(cf_store_event_verify(fx->st, &count, &bad, head), 0);
	assert_int_equal(count, 0);
	assert_int_equal(bad, 0);
	assert_string_equal(head, zeros);
	six_events(fx->st);
	assert_int_equal(cf_store_event_verify(fx->st, &count, &bad, head), 0);
	assert_int_equal(count, 6);
	assert_int_equal(bad, 0);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_string_equal(head, ev[n - 1].hash);
	cf_event_recs_free(ev, n);
	assert_int_equal(cf_store_event_verify(fx->st, NULL, NULL, NULL), 0);
}

static void
test_store__events_triggers_refuse_edits(void **state)
{
	struct fx *fx = *state;
	sqlite3 *db = NULL;

	six_events(fx->st);
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "UPDATE events SET detail = '{}' WHERE seq = 2",
	    NULL, NULL, NULL), SQLITE_OK);
	assert_non_null(strstr(sqlite3_errmsg(db), "append-only"));
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM events WHERE seq = 6", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(cf_store_event_verify(fx->st, NULL, NULL, NULL), 0);
}

static void
test_store__events_tampered_detail_is_first_bad(void **state)
{
	struct fx *fx = *state;
	int64_t count = -1, bad = -1;

	six_events(fx->st);
	raw_sql(fx->path, "DROP TRIGGER events_no_update;"
	    "UPDATE events SET detail = '{\"k\":\"forged\"}' WHERE seq = 4");
	assert_int_equal(cf_store_event_verify(fx->st, &count, &bad, NULL), CF_ECORRUPT);
	assert_int_equal(bad, 4);
	assert_int_equal(count, 3); /* the events before it are good */
	assert_non_null(strstr(cf_error_last(), "event #4:"));
}

static void
test_store__events_rehashed_event_breaks_next_link(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0;
	int64_t bad = -1;
	char buf[4096], hash[CF_ID_LEN + 1], sql[512];

	six_events(fx->st);
	/* forge event 3 and recompute its own hash: the link from event 4 breaks */
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	snprintf(buf, sizeof(buf), "%s\n3\n%lld\n%s\n%s\n%s", ev[2].prev_hash,
	    (long long)ev[2].ts, ev[2].type, "forged", ev[2].detail);
	cf_sha256_hex(hash, buf, strlen(buf));
	cf_event_recs_free(ev, n);
	snprintf(sql, sizeof(sql), "DROP TRIGGER events_no_update; UPDATE events SET "
	    "subject = 'forged', hash = '%s' WHERE seq = 3", hash);
	raw_sql(fx->path, sql);
	assert_int_equal(cf_store_event_verify(fx->st, NULL, &bad, NULL), CF_ECORRUPT);
	assert_int_equal(bad, 4);
	assert_non_null(strstr(cf_error_last(), "prev_hash"));
}

static void
test_store__events_deleted_middle_is_reported(void **state)
{
	struct fx *fx = *state;
	int64_t bad = -1;

	six_events(fx->st);
	raw_sql(fx->path, "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 3");
	assert_int_equal(cf_store_event_verify(fx->st, NULL, &bad, NULL), CF_ECORRUPT);
	assert_int_equal(bad, 4); /* the first event whose predecessor is missing */
	assert_non_null(strstr(cf_error_last(), "event #4:"));
	assert_non_null(strstr(cf_error_last(), "expected #3"));
}

static void
test_store__events_unreadable_row_is_first_bad(void **state)
{
	struct fx *fx = *state;
	int64_t bad = -1;

	six_events(fx->st);
	raw_sql(fx->path, "DROP TRIGGER events_no_update;"
	    "UPDATE events SET hash = hash || 'ff' WHERE seq = 3");
	assert_int_equal(cf_store_event_verify(fx->st, NULL, &bad, NULL), CF_ECORRUPT);
	assert_int_equal(bad, 3);
	assert_non_null(strstr(cf_error_last(), "event #3"));
}

static void
test_store__events_deleted_first_is_reported(void **state)
{
	struct fx *fx = *state;
	int64_t bad = -1;

	six_events(fx->st);
	raw_sql(fx->path, "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 1");
	assert_int_equal(cf_store_event_verify(fx->st, NULL, &bad, NULL), CF_ECORRUPT);
	assert_int_equal(bad, 2);
}

/* Deleting the newest events leaves a valid chain: only a recorded head reveals it. */
static void
test_store__events_truncation_needs_a_recorded_head(void **state)
{
	struct fx *fx = *state;
	char head[CF_ID_LEN + 1], after[CF_ID_LEN + 1];
	int64_t count = 0;

	six_events(fx->st);
	assert_int_equal(cf_store_event_verify(fx->st, &count, NULL, head), 0);
	assert_int_equal(count, 6);
	raw_sql(fx->path, "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq >= 5");
	assert_int_equal(cf_store_event_verify(fx->st, &count, NULL, after), 0);
	assert_int_equal(count, 4);
	assert_string_not_equal(head, after);
}

static void
test_store__events_append_after_reopen_continues_chain(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0;
	int64_t count = 0;
	char head[CF_ID_LEN + 1];

	six_events(fx->st);
	assert_int_equal(cf_store_event_verify(fx->st, NULL, NULL, head), 0);
	cf_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(cf_store_open(&fx->st, fx->path, 0), 0);
	assert_int_equal(cf_store_event_append(fx->st, "test.note", "after-reopen", NULL), 0);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_int_equal(n, 7);
	assert_int_equal(ev[6].seq, 7);
	assert_string_equal(ev[6].prev_hash, head);
	cf_event_recs_free(ev, n);
	assert_int_equal(cf_store_event_verify(fx->st, &count, NULL, NULL), 0);
	assert_int_equal(count, 7);
}

/* Writers in several processes share one chain: the head is read under the write lock. */
static void
test_store__events_concurrent_writers_keep_one_chain(void **state)
{
	struct fx *fx = *state;
	enum { WRITERS = 3, EACH = 40 };
	pid_t pid[WRITERS];
	int64_t count = 0;
	int i, j, status;

	for (i = 0; i < WRITERS; i++) {
		if ((pid[i] = fork()) == 0) {
			cf_store *st = NULL;
			char subject[32];

			if (cf_store_open(&st, fx->path, 0) != 0)
				_exit(2);
			for (j = 0; j < EACH; j++) {
				snprintf(subject, sizeof(subject), "w%d-%d", i, j);
				if (cf_store_event_append(st, "test.concurrent", subject, NULL) != 0)
					_exit(3);
			}
			cf_store_close(st);
			_exit(0);
		}
		assert_true(pid[i] > 0);
	}
	for (i = 0; i < WRITERS; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(cf_store_event_verify(fx->st, &count, NULL, NULL), 0);
	assert_int_equal(count, WRITERS * EACH);
}

static void
test_store__events_append_rejects_bad_input(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0;
	char longtype[80];

	memset(longtype, 'a', sizeof(longtype) - 1);
	longtype[sizeof(longtype) - 1] = '\0';
	assert_int_equal(cf_store_event_append(fx->st, "", "s", NULL), CF_EINVAL);
	assert_int_equal(cf_store_event_append(fx->st, NULL, "s", NULL), CF_EINVAL);
	assert_int_equal(cf_store_event_append(fx->st, "Bad Type", "s", NULL), CF_EINVAL);
	assert_int_equal(cf_store_event_append(fx->st, longtype, "s", NULL), CF_EINVAL);
	assert_int_equal(cf_store_event_append(fx->st, "t.x", "two\nlines", NULL), CF_EINVAL);
	assert_int_equal(cf_store_event_append(fx->st, "t.x", "s", "[1,2]"), CF_EINVAL);
	assert_int_equal(cf_store_event_append(fx->st, "t.x", "s", "{broken"), CF_EINVAL);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_int_equal(n, 0);
	cf_event_recs_free(ev, n);
	/* newlines inside detail strings are escaped, so the hashed text stays unambiguous */
	assert_int_equal(cf_store_event_append(fx->st, "t.x", NULL, "{\"m\":\"a\\nb\"}"), 0);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].subject, "");
	assert_null(strchr(ev[0].detail, '\n'));
	cf_event_recs_free(ev, n);
}

static void
test_store__events_list_since_and_limit(void **state)
{
	struct fx *fx = *state;
	cf_event_rec *ev = NULL;
	size_t n = 0;

	six_events(fx->st);
	raw_sql(fx->path, "DROP TRIGGER events_no_update; UPDATE events SET ts = seq * 100");
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 350, 0), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ev[0].seq, 4);
	cf_event_recs_free(ev, n);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 0, 2), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ev[1].seq, 2);
	cf_event_recs_free(ev, n);
	assert_int_equal(cf_store_event_list(fx->st, &ev, &n, 10000, 0), 0);
	assert_int_equal(n, 0);
	cf_event_recs_free(ev, n);
	/* and the forged timestamps are caught */
	assert_int_equal(cf_store_event_verify(fx->st, NULL, NULL, NULL), CF_ECORRUPT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_store__events_every_mutator_appends_its_event),
		T(test_store__events_failed_mutators_append_nothing),
		T(test_store__events_hash_is_the_documented_formula),
		T(test_store__events_verify_passes),
		T(test_store__events_triggers_refuse_edits),
		T(test_store__events_tampered_detail_is_first_bad),
		T(test_store__events_rehashed_event_breaks_next_link),
		T(test_store__events_deleted_middle_is_reported),
		T(test_store__events_deleted_first_is_reported),
		T(test_store__events_unreadable_row_is_first_bad),
		T(test_store__events_truncation_needs_a_recorded_head),
		T(test_store__events_append_after_reopen_continues_chain),
		T(test_store__events_concurrent_writers_keep_one_chain),
		T(test_store__events_append_rejects_bad_input),
		T(test_store__events_list_since_and_limit),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
