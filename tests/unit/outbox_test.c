/*
 * outbox_test — the store's notification outbox (schema 4): enqueue and its
 * validation (sink, kind, payload), the due query (order, next_at, limit,
 * and its index), recorded attempts and their state table, listing, the
 * caller's transaction, and that the outbox appends no events.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cf_store.h"
#include "cf_util.h"

struct fx {
	char dir[64];
	char db[128];
	cf_store *st;
	int64_t head; /* the event log's head after setup */
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/cf-outbox-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->db, sizeof(fx->db), "%s/certfleet.db", fx->dir);
	if (cf_store_open(&fx->st, fx->db, CF_STORE_CREATE) != 0 ||
	    cf_store_thing_create(fx->st, "sensor-1", NULL) != 0 ||
	    cf_store_event_head(fx->st, &fx->head) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;
	int r;

	cf_store_close(fx->st);
	r = cf_rmtree(fx->dir);
	free(fx);
	return r;
}

static void
expect_no_event(struct fx *fx)
{
	int64_t head = -1;

	assert_int_equal(cf_store_event_head(fx->st, &head), 0);
	assert_int_equal(head, fx->head);
}

static int64_t
enqueue(struct fx *fx, const char *sink, const char *kind, const char *payload)
{
	int64_t id = 0;

	assert_int_equal(cf_store_notify_enqueue(fx->st, &id, sink, kind, payload), 0);
	assert_true(id > 0);
	return id;
}

/* The ids of the due rows at now, joined by ',' (the order is what is tested). */
static void
expect_due(struct fx *fx, int64_t now, size_t limit, const char *want)
{
	cf_notify_rec *v = NULL;
	size_t n = 0, i;
	char got[256] = "";
	size_t len = 0;

	assert_int_equal(cf_store_notify_due(fx->st, &v, &n, now, limit), 0);
	for (i = 0; i < n; i++) {
		assert_int_equal(v[i].state, CF_NOTIFY_PENDING);
		assert_true(v[i].next_at <= now);
		len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%lld", i ? "," : "",
		    (long long)v[i].id);
	}
	cf_notify_recs_free(v, n);
	assert_string_equal(got, want);
}

/* Row id, through the list (there is no get); payload NULL, the rest as stored. */
static cf_notify_rec
notify_get(struct fx *fx, int64_t id)
{
	cf_notify_rec *v = NULL, x;
	size_t n = 0, i;

	memset(&x, 0, sizeof(x));
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, -1, 0), 0);
	for (i = 0; i < n; i++) {
		if (v[i].id == id) {
			x = v[i];
			x.payload = NULL; /* freed with the list */
		}
	}
	cf_notify_recs_free(v, n);
	if (x.id == 0)
		fail_msg("no notification %lld", (long long)id);
	return x;
}

static size_t
notify_count(struct fx *fx)
{
	cf_notify_rec *v = NULL;
	size_t n = 0;

	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, -1, 0), 0);
	cf_notify_recs_free(v, n);
	return n;
}

static void
test_outbox__enqueue_and_read_back(void **state)
{
	struct fx *fx = *state;
	cf_notify_rec x, *v = NULL;
	size_t n = 0;
	int64_t before = cf_time_now(), a, b;

	a = enqueue(fx, "webhook", "execution.failed",
	    "{ \"thing\": \"sensor-1\", \"job\": \"rot-1\", \"n\": [1, 2] }");
	b = enqueue(fx, "exec", "job.completed", "{}");
	assert_true(b > a);
	assert_int_equal(cf_store_notify_enqueue(fx->st, NULL, "exec", "job.completed", "{}"), 0);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, -1, 0), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[2].id, a);
	/* stored compact with sorted keys, like every JSON column */
	assert_string_equal(v[2].payload, "{\"job\":\"rot-1\",\"n\":[1,2],\"thing\":\"sensor-1\"}");
	assert_string_equal(v[1].payload, "{}");
	cf_notify_recs_free(v, n);
	x = notify_get(fx, a);
	assert_string_equal(x.sink, "webhook");
	assert_string_equal(x.kind, "execution.failed");
	assert_int_equal(x.state, CF_NOTIFY_PENDING);
	assert_int_equal(x.attempts, 0);
	assert_true(x.created_at >= before && x.created_at <= cf_time_now());
	assert_int_equal(x.next_at, x.created_at); /* due at once */
	assert_int_equal(x.updated_at, x.created_at);
	assert_string_equal(x.last_error, "");
	cf_notify_rec_clear(&x);
	assert_int_equal(x.id, 0);
	cf_notify_rec_clear(&x); /* twice, and NULL, are harmless */
	cf_notify_rec_clear(NULL);
	cf_notify_recs_free(NULL, 3);
	expect_no_event(fx);
}

static void
test_outbox__enqueue_refuses(void **state)
{
	struct fx *fx = *state;
	static char big[CF_NOTIFY_PAYLOAD_MAX + 64];
	int64_t id = 77;
	size_t fill;
	const char *bad_sinks[] = { "", "Webhook", "web hook", "web/hook", "sixteen-chars-xx",
		"w\xc3\xa9" };
	const char *bad_kinds[] = { "", "Job.Completed", "job completed", "job:completed",
		"a-kind-that-is-sixty-four-characters-long-which-is-one-too-many-", NULL };
	const char *bad_payloads[] = { NULL, "", "[]", "\"text\"", "42", "null", "{",
		"{\"a\": 1} trailing", "{\"a\": 1, \"a\": 2}" };
	size_t i;

	for (i = 0; i < sizeof(bad_sinks) / sizeof(bad_sinks[0]); i++) {
		assert_int_equal(cf_store_notify_enqueue(fx->st, &id, bad_sinks[i], "job.completed",
		    "{}"), CF_EINVAL);
		assert_non_null(strstr(cf_error_last(), "sink"));
	}
	assert_int_equal(cf_store_notify_enqueue(fx->st, &id, NULL, "job.completed", "{}"),
	    CF_EINVAL);
	for (i = 0; i < sizeof(bad_kinds) / sizeof(bad_kinds[0]); i++) {
		assert_int_equal(cf_store_notify_enqueue(fx->st, &id, "webhook", bad_kinds[i], "{}"),
		    CF_EINVAL);
		assert_non_null(strstr(cf_error_last(), "kind"));
	}
	for (i = 0; i < sizeof(bad_payloads) / sizeof(bad_payloads[0]); i++) {
		assert_int_equal(cf_store_notify_enqueue(fx->st, &id, "webhook", "job.completed",
		    bad_payloads[i]), CF_EINVAL);
		assert_non_null(strstr(cf_error_last(), "payload"));
	}
	/* the limits themselves are allowed */
	assert_int_equal(cf_store_notify_enqueue(fx->st, NULL, "sixteen-chars-x", "a-kind-that-is-"
	    "sixty-four-characters-long-which-is-one-too-many", "{}"), 0);
	/* CF_NOTIFY_PAYLOAD_MAX bytes exactly, then one more */
	fill = CF_NOTIFY_PAYLOAD_MAX - strlen("{\"a\":\"\"}");
	snprintf(big, sizeof(big), "{\"a\":\"%0*d\"}", (int)fill, 0);
	assert_int_equal(strlen(big), CF_NOTIFY_PAYLOAD_MAX);
	assert_int_equal(cf_store_notify_enqueue(fx->st, NULL, "webhook", "big", big), 0);
	snprintf(big, sizeof(big), "{\"a\":\"%0*d\"}", (int)fill + 1, 0);
	assert_int_equal(cf_store_notify_enqueue(fx->st, &id, "webhook", "big", big), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "too long"));
	/* within the limit as given, beyond it as stored (1e-5 is written 1.0000000000000001e-05) */
	fill = CF_NOTIFY_PAYLOAD_MAX - strlen("{\"a\":\"\",\"b\":1e-5}");
	snprintf(big, sizeof(big), "{\"a\":\"%0*d\",\"b\":1e-5}", (int)fill, 0);
	assert_int_equal(strlen(big), CF_NOTIFY_PAYLOAD_MAX);
	assert_int_equal(cf_store_notify_enqueue(fx->st, &id, "webhook", "big", big), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "normalized"));

	/* nothing was written by a refused call, and id was left alone */
	assert_int_equal(id, 77);
	assert_int_equal(notify_count(fx), 2);
	expect_no_event(fx);
}

static void
test_outbox__due_order_and_next_at(void **state)
{
	struct fx *fx = *state;
	int64_t t, a, b, c;
	char want[64];

	a = enqueue(fx, "webhook", "job.completed", "{\"n\": 1}");
	b = enqueue(fx, "webhook", "job.completed", "{\"n\": 2}");
	c = enqueue(fx, "exec", "job.completed", "{\"n\": 3}");
	t = notify_get(fx, c).next_at;

	expect_due(fx, t - 1000, 0, ""); /* not yet due before they were queued */
	snprintf(want, sizeof(want), "%lld,%lld,%lld", (long long)a, (long long)b, (long long)c);
	expect_due(fx, t + 5, 0, want);
	snprintf(want, sizeof(want), "%lld,%lld", (long long)a, (long long)b);
	expect_due(fx, t + 5, 2, want);

	/* a failed attempt waits for its next_at, and then comes after those due earlier */
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_PENDING, t + 100,
	    "HTTP 503"), 0);
	snprintf(want, sizeof(want), "%lld,%lld", (long long)b, (long long)c);
	expect_due(fx, t + 99, 0, want);
	snprintf(want, sizeof(want), "%lld,%lld,%lld", (long long)b, (long long)c, (long long)a);
	expect_due(fx, t + 100, 0, want);
	/* an earlier retry goes first */
	assert_int_equal(cf_store_notify_attempted(fx->st, b, CF_NOTIFY_PENDING, t + 50, NULL), 0);
	snprintf(want, sizeof(want), "%lld,%lld,%lld", (long long)c, (long long)b, (long long)a);
	expect_due(fx, t + 100, 0, want);

	/* delivered and given up leave the queue for good */
	assert_int_equal(cf_store_notify_attempted(fx->st, c, CF_NOTIFY_DELIVERED, 0, NULL), 0);
	assert_int_equal(cf_store_notify_attempted(fx->st, b, CF_NOTIFY_GAVE_UP, 0, "timeout"), 0);
	snprintf(want, sizeof(want), "%lld", (long long)a);
	expect_due(fx, t + 100000, 0, want);
	expect_no_event(fx);
}

static void
test_outbox__attempted_state_table(void **state)
{
	struct fx *fx = *state;
	cf_notify_rec x;
	int64_t a, b, next_at;

	a = enqueue(fx, "webhook", "job.completed", "{}");
	b = enqueue(fx, "webhook", "job.completed", "{}");
	next_at = notify_get(fx, a).next_at + 60;

	/* refused before anything is read */
	assert_int_equal(cf_store_notify_attempted(fx->st, 0, CF_NOTIFY_DELIVERED, 0, NULL),
	    CF_EINVAL);
	assert_int_equal(cf_store_notify_attempted(fx->st, -3, CF_NOTIFY_DELIVERED, 0, NULL),
	    CF_EINVAL);
	assert_int_equal(cf_store_notify_attempted(fx->st, a, (cf_notify_state)3, 0, NULL),
	    CF_EINVAL);
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_PENDING, 0, "no time"),
	    CF_EINVAL);
	assert_int_equal(cf_store_notify_attempted(fx->st, 9999, CF_NOTIFY_DELIVERED, 0, NULL),
	    CF_ENOTFOUND);
	assert_non_null(strstr(cf_error_last(), "9999"));
	x = notify_get(fx, a);
	assert_int_equal(x.attempts, 0);
	cf_notify_rec_clear(&x);

	/* PENDING -> PENDING (retry) -> DELIVERED */
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_PENDING, next_at,
	    "connection refused"), 0);
	x = notify_get(fx, a);
	assert_int_equal(x.state, CF_NOTIFY_PENDING);
	assert_int_equal(x.attempts, 1);
	assert_int_equal(x.next_at, next_at);
	assert_string_equal(x.last_error, "connection refused");
	assert_true(x.updated_at >= x.created_at);
	cf_notify_rec_clear(&x);
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_DELIVERED, 0, NULL), 0);
	x = notify_get(fx, a);
	assert_int_equal(x.state, CF_NOTIFY_DELIVERED);
	assert_int_equal(x.attempts, 2);
	assert_int_equal(x.next_at, next_at); /* kept: when it was last due */
	assert_string_equal(x.last_error, ""); /* no error this time */
	cf_notify_rec_clear(&x);

	/* DELIVERED and GAVE_UP are terminal, whatever is asked */
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_DELIVERED, 0, NULL),
	    CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "DELIVERED"));
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_PENDING, next_at, "x"),
	    CF_ESTATE);
	assert_int_equal(cf_store_notify_attempted(fx->st, b, CF_NOTIFY_GAVE_UP, 0, "HTTP 410"), 0);
	assert_int_equal(cf_store_notify_attempted(fx->st, b, CF_NOTIFY_PENDING, next_at, NULL),
	    CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "GAVE_UP"));
	assert_int_equal(cf_store_notify_attempted(fx->st, b, CF_NOTIFY_GAVE_UP, 0, NULL), CF_ESTATE);
	x = notify_get(fx, a);
	assert_int_equal(x.attempts, 2);
	cf_notify_rec_clear(&x);
	x = notify_get(fx, b);
	assert_int_equal(x.state, CF_NOTIFY_GAVE_UP);
	assert_int_equal(x.attempts, 1);
	assert_string_equal(x.last_error, "HTTP 410");
	cf_notify_rec_clear(&x);
	expect_no_event(fx);
}

/* A sink's error text is recorded whatever it holds: cut to fit, control characters blanked. */
static void
test_outbox__error_text_is_kept_safe(void **state)
{
	struct fx *fx = *state;
	cf_notify_rec x;
	char err[600];
	int64_t a, next_at;
	size_t i;

	a = enqueue(fx, "exec", "job.completed", "{}");
	next_at = notify_get(fx, a).next_at + 1;
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_PENDING, next_at,
	    "exit 1:\nline two\tand\x7f"), 0);
	x = notify_get(fx, a);
	assert_string_equal(x.last_error, "exit 1: line two and ");
	cf_notify_rec_clear(&x);
	/* 254 ASCII bytes then two-byte characters: the cut never splits one */
	memset(err, 'e', 254);
	for (i = 254; i + 2 < sizeof(err); i += 2) {
		err[i] = (char)0xc3;
		err[i + 1] = (char)0xa9;
	}
	err[i] = '\0';
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_PENDING, next_at, err), 0);
	x = notify_get(fx, a);
	assert_int_equal(strlen(x.last_error), 254);
	assert_int_equal(x.attempts, 2);
	cf_notify_rec_clear(&x);
	memset(err, 'e', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	assert_int_equal(cf_store_notify_attempted(fx->st, a, CF_NOTIFY_GAVE_UP, 0, err), 0);
	x = notify_get(fx, a);
	assert_int_equal(strlen(x.last_error), sizeof(x.last_error) - 1);
	cf_notify_rec_clear(&x);
}

static void
test_outbox__list(void **state)
{
	struct fx *fx = *state;
	cf_notify_rec *v = NULL;
	size_t n = 0;
	int64_t a, b, c;

	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, -1, 0), 0);
	assert_int_equal(n, 0);
	assert_null(v);
	a = enqueue(fx, "webhook", "k", "{}");
	b = enqueue(fx, "webhook", "k", "{}");
	c = enqueue(fx, "webhook", "k", "{}");
	assert_int_equal(cf_store_notify_attempted(fx->st, b, CF_NOTIFY_DELIVERED, 0, NULL), 0);

	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, -1, 0), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].id, c); /* newest first */
	assert_int_equal(v[1].id, b);
	assert_int_equal(v[2].id, a);
	cf_notify_recs_free(v, n);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, CF_NOTIFY_PENDING, 0), 0);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].id, c);
	assert_int_equal(v[1].id, a);
	cf_notify_recs_free(v, n);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, CF_NOTIFY_PENDING, 1), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, c);
	cf_notify_recs_free(v, n);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, CF_NOTIFY_DELIVERED, 0), 0);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].id, b);
	cf_notify_recs_free(v, n);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, CF_NOTIFY_GAVE_UP, 0), 0);
	assert_int_equal(n, 0);
	cf_notify_recs_free(v, n);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, 3, 0), CF_EINVAL);
	assert_int_equal(cf_store_notify_list(fx->st, &v, &n, -2, 0), CF_EINVAL);
}

/* Written in the transaction of what it reports: gone with its rollback, kept with its commit. */
static void
test_outbox__in_the_callers_transaction(void **state)
{
	struct fx *fx = *state;
	int64_t id = 0;

	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_thing_create(fx->st, "sensor-2", NULL), 0);
	assert_int_equal(cf_store_notify_enqueue(fx->st, &id, "webhook", "thing.created",
	    "{\"thing\": \"sensor-2\"}"), 0);
	/* a refused one inside leaves the transaction usable */
	assert_int_equal(cf_store_notify_enqueue(fx->st, NULL, "webhook", "thing.created", "[]"),
	    CF_EINVAL);
	assert_int_equal(notify_count(fx), 1);
	cf_store_rollback(fx->st);
	assert_int_equal(notify_count(fx), 0);
	expect_no_event(fx);

	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_notify_enqueue(fx->st, &id, "webhook", "thing.created",
	    "{\"thing\": \"sensor-2\"}"), 0);
	assert_int_equal(cf_store_notify_attempted(fx->st, id, CF_NOTIFY_DELIVERED, 0, NULL), 0);
	assert_int_equal(cf_store_commit(fx->st), 0);
	assert_int_equal(notify_count(fx), 1);
	assert_int_equal(notify_get(fx, id).state, CF_NOTIFY_DELIVERED);
	expect_no_event(fx);
}

static void
test_outbox__state_names(void **state)
{
	(void)state;
	assert_string_equal(cf_notify_state_name(CF_NOTIFY_PENDING), "PENDING");
	assert_string_equal(cf_notify_state_name(CF_NOTIFY_DELIVERED), "DELIVERED");
	assert_string_equal(cf_notify_state_name(CF_NOTIFY_GAVE_UP), "GAVE_UP");
	assert_string_equal(cf_notify_state_name(CF_NOTIFY__COUNT), "UNKNOWN");
	assert_string_equal(cf_notify_state_name((cf_notify_state)-1), "UNKNOWN");
}

/*
 * The delivery thread asks for due rows every tick while delivered ones pile
 * up: the due query (the statement of cf_store_sqlite.c) must be an ordered
 * range of the partial index, never a walk over the table's history.
 */
static void
test_outbox__due_is_an_index_range(void **state)
{
	struct fx *fx = *state;
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	char plan[1024];
	size_t len = 0;

	assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, "EXPLAIN QUERY PLAN SELECT id, sink, kind, payload, "
	    "state, attempts, created_at, next_at, updated_at, last_error FROM notifications WHERE "
	    "state = 'PENDING' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2", -1, &s, NULL),
	    SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW && len < sizeof(plan))
		len += (size_t)snprintf(plan + len, sizeof(plan) - len, "%s\n",
		    (const char *)sqlite3_column_text(s, 3));
	sqlite3_finalize(s);
	sqlite3_close(h);
	if (strstr(plan, "USING INDEX notifications_due") == NULL ||
	    strstr(plan, "TEMP B-TREE") != NULL)
		fail_msg("the due query is not an ordered index range:\n%s", plan);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_outbox__enqueue_and_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox__enqueue_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox__due_order_and_next_at, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox__attempted_state_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox__error_text_is_kept_safe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox__list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox__in_the_callers_transaction, setup,
		    teardown),
		cmocka_unit_test(test_outbox__state_names),
		cmocka_unit_test_setup_teardown(test_outbox__due_is_an_index_range, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
