/*
 * Unit tests for the store's broker-facing API: read-only opening (the
 * plugin's), the event tail, and the connections table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cf_store.h"
#include "cf_util.h"

static char dir[64], db[128];

static int
setup(void **state)
{
	cf_store *st = NULL;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/cf-conn-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(db, sizeof(db), "%s/certfleet.db", dir);
	if (cf_store_open(&st, db, CF_STORE_CREATE) != 0)
		return -1;
	cf_store_close(st);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return cf_rmtree(dir);
}

static cf_conn_rec
conn(const char *ref, const char *client, const char *principal, int64_t at)
{
	cf_conn_rec c;

	memset(&c, 0, sizeof(c));
	snprintf(c.ref, sizeof(c.ref), "%s", ref);
	snprintf(c.client_id, sizeof(c.client_id), "%s", client);
	snprintf(c.principal, sizeof(c.principal), "%s", principal);
	snprintf(c.kind, sizeof(c.kind), "device");
	snprintf(c.peer, sizeof(c.peer), "127.0.0.1:5000");
	c.connected_at = at;
	return c;
}

static void
test_store__readonly_sees_writes_and_refuses_to_write(void **state)
{
	cf_store *rw = NULL, *ro = NULL;
	cf_event_rec *ev = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(cf_store_open(&rw, db, 0), 0);
	assert_int_equal(cf_store_open(&ro, db, CF_STORE_READONLY), 0);
	assert_int_equal(cf_store_thing_create(rw, "sensor-1", NULL), 0);
	assert_int_equal(cf_store_event_list_after(ro, &ev, &n, 0, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].type, "thing.created");
	cf_event_recs_free(ev, n);
	assert_int_not_equal(cf_store_thing_create(ro, "sensor-2", NULL), 0);
	cf_store_close(ro);
	cf_store_close(rw);
}

static void
test_store__readonly_never_creates_or_migrates(void **state)
{
	cf_store *ro = NULL;
	char path[192];
	sqlite3 *h = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%s/missing.db", dir);
	assert_int_equal(cf_store_open(&ro, path, CF_STORE_READONLY | CF_STORE_CREATE), CF_ENOTFOUND);
	assert_int_equal(access(path, F_OK), -1);
	/* An older schema: the reader refuses instead of migrating. */
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 1", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	assert_int_equal(cf_store_open(&ro, db, CF_STORE_READONLY), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "schema version 1"));
}

static void
test_store__event_tail_after_cursor(void **state)
{
	cf_store *st = NULL;
	cf_event_rec *ev = NULL;
	size_t n = 0;
	int64_t head = -1;

	(void)state;
	assert_int_equal(cf_store_open(&st, db, 0), 0);
	assert_int_equal(cf_store_event_head(st, &head), 0);
	assert_int_equal(head, 0);
	assert_int_equal(cf_store_thing_create(st, "a", NULL), 0);
	assert_int_equal(cf_store_thing_create(st, "b", NULL), 0);
	assert_int_equal(cf_store_thing_create(st, "c", NULL), 0);
	assert_int_equal(cf_store_event_head(st, &head), 0);
	assert_int_equal(head, 3);
	assert_int_equal(cf_store_event_list_after(st, &ev, &n, 1, 0), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ev[0].seq, 2);
	assert_string_equal(ev[1].subject, "c");
	cf_event_recs_free(ev, n);
	assert_int_equal(cf_store_event_list_after(st, &ev, &n, 1, 1), 0);
	assert_int_equal(n, 1);
	cf_event_recs_free(ev, n);
	assert_int_equal(cf_store_event_list_after(st, &ev, &n, 3, 0), 0);
	assert_int_equal(n, 0);
	cf_event_recs_free(ev, n);
	cf_store_close(st);
}

static void
test_store__connections_open_close_list(void **state)
{
	cf_store *st = NULL;
	cf_conn_rec a = conn("100-1", "sensor-1", "aa", 100), b = conn("100-2", "sensor-1", "aa", 200);
	cf_conn_rec *v = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(cf_store_open(&st, db, 0), 0);
	assert_int_equal(cf_store_connection_open(st, &a), 0);
	assert_int_equal(cf_store_connection_open(st, &b), 0);
	assert_int_equal(cf_store_connection_list(st, &v, &n, "sensor-1", 1, 0), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[0].ref, "100-2"); /* newest first */
	cf_conn_recs_free(v, n);
	/*
	 * A session takeover: the same client id and certificate on a new
	 * connection, then the old one ends. Closing by ref ends the old one only.
	 */
	assert_int_equal(cf_store_connection_close(st, "100-1", 150, "client"), 0);
	assert_int_equal(cf_store_connection_close(st, "100-1", 160, "client"), CF_ENOTFOUND);
	assert_int_equal(cf_store_connection_list(st, &v, &n, NULL, 1, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].ref, "100-2");
	cf_conn_recs_free(v, n);
	assert_int_equal(cf_store_connection_list(st, &v, &n, "sensor-1", 0, 0), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[1].disconnected_at, 150);
	assert_string_equal(v[1].reason, "client");
	cf_conn_recs_free(v, n);
	assert_int_equal(cf_store_connection_list(st, &v, &n, "nobody", 0, 0), 0);
	assert_int_equal(n, 0);
	cf_conn_recs_free(v, n);
	assert_int_equal(cf_store_connection_close(st, "never-seen", 1, "client"), CF_ENOTFOUND);
	assert_int_equal(cf_store_connection_close(st, "bad ref", 1, "client"), CF_EINVAL);
	cf_store_close(st);
}

static void
test_store__connections_close_all(void **state)
{
	cf_store *st = NULL;
	cf_conn_rec a = conn("1-1", "x", "p1", 1), b = conn("1-2", "y", "p2", 2);
	cf_conn_rec *v = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(cf_store_open(&st, db, 0), 0);
	assert_int_equal(cf_store_connection_open(st, &a), 0);
	assert_int_equal(cf_store_connection_open(st, &b), 0);
	assert_int_equal(cf_store_connection_close(st, "1-2", 5, "kicked"), 0);
	assert_int_equal(cf_store_connection_close_all(st, 9, "broker-restart", &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cf_store_connection_list(st, &v, &n, NULL, 1, 0), 0);
	assert_int_equal(n, 0);
	cf_conn_recs_free(v, n);
	assert_int_equal(cf_store_connection_list(st, &v, &n, "x", 0, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].reason, "broker-restart");
	cf_conn_recs_free(v, n);
	cf_store_close(st);
}

static void
test_store__connection_validation(void **state)
{
	cf_store *st = NULL;
	cf_conn_rec a = conn("1-1", "", "p", 1), b = conn("1-2", "x", "p", 1), c = conn("", "x", "p", 1);

	(void)state;
	assert_int_equal(cf_store_open(&st, db, 0), 0);
	assert_int_equal(cf_store_connection_open(st, &a), CF_EINVAL);
	assert_int_equal(cf_store_connection_open(st, &c), CF_EINVAL);
	snprintf(b.kind, sizeof(b.kind), "root");
	assert_int_equal(cf_store_connection_open(st, &b), CF_EINVAL);
	cf_store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store__readonly_sees_writes_and_refuses_to_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store__readonly_never_creates_or_migrates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store__event_tail_after_cursor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store__connections_open_close_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store__connections_close_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store__connection_validation, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
