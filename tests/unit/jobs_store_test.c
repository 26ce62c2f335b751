/*
 * jobs_store_test — the registry's jobs, job executions and rotation
 * records (cf_store, SQLite): validation, the job and rotation state
 * tables, one live execution per (job, thing), the versionNumber
 * compare-and-set (also between two processes racing on one file), $next,
 * counts, the timeout query, the events every mutator appends, rollback,
 * and migration 3 on a version-2 file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cf_store.h"
#include "cf_util.h"

struct fx {
	char dir[64];
	char db[128];
	cf_store *st;
	int64_t head; /* event seq already checked */
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/cf-jobs-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->db, sizeof(fx->db), "%s/certfleet.db", fx->dir);
	if (cf_store_open(&fx->st, fx->db, CF_STORE_CREATE) != 0)
		return -1;
	if (cf_store_thing_create(fx->st, "sensor-1", NULL) != 0 ||
	    cf_store_thing_create(fx->st, "sensor-2", NULL) != 0 ||
	    cf_store_thing_create(fx->st, "sensor-3", NULL) != 0 ||
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

/* Exactly one event appended since the last check, of this type; returns its detail (free()). */
static char *
expect_event(struct fx *fx, const char *type)
{
	cf_event_rec *ev = NULL;
	size_t n = 0;
	char *detail;

	assert_int_equal(cf_store_event_list_after(fx->st, &ev, &n, fx->head, 0), 0);
	if (n != 1)
		fail_msg("expected one %s event, found %zu (first %s)", type, n,
		    n ? ev[0].type : "-");
	assert_string_equal(ev[0].type, type);
	fx->head = ev[0].seq;
	detail = strdup(ev[0].detail);
	cf_event_recs_free(ev, n);
	return detail;
}

static void
expect_event_is(struct fx *fx, const char *type)
{
	free(expect_event(fx, type));
}

static void
expect_no_event(struct fx *fx)
{
	int64_t head = -1;

	assert_int_equal(cf_store_event_head(fx->st, &head), 0);
	assert_int_equal(head, fx->head);
}

static void
expect_chain_ok(cf_store *st)
{
	int64_t count = 0, bad = -1;

	assert_int_equal(cf_store_event_verify(st, &count, &bad, NULL), 0);
	assert_int_equal(bad, 0);
}

static cf_job_rec
job(const char *id)
{
	cf_job_rec j;

	memset(&j, 0, sizeof(j));
	snprintf(j.id, sizeof(j.id), "%s", id);
	snprintf(j.operation, sizeof(j.operation), "ROTATE_CERTIFICATE");
	j.document = "{\"operation\": \"ROTATE_CERTIFICATE\", \"keyAlgorithm\": \"EC-P256\"}";
	j.targets = "{\"things\": [\"sensor-1\", \"sensor-2\"]}";
	j.selection = CF_JOB_SELECTION_SNAPSHOT;
	j.status = CF_JOB_STATE_IN_PROGRESS;
	return j;
}

static cf_exec_rec
exec(const char *job_id, const char *thing, int64_t queued_at)
{
	cf_exec_rec e;

	memset(&e, 0, sizeof(e));
	snprintf(e.job_id, sizeof(e.job_id), "%s", job_id);
	snprintf(e.thing, sizeof(e.thing), "%s", thing);
	e.status = CF_EXEC_QUEUED;
	e.queued_at = queued_at;
	return e;
}

static void
add_job(struct fx *fx, const char *id)
{
	cf_job_rec j = job(id);

	assert_int_equal(cf_store_job_insert(fx->st, &j), 0);
	expect_event_is(fx, "job.created");
}

static void
add_exec(struct fx *fx, const char *job_id, const char *thing, int64_t queued_at)
{
	cf_exec_rec e = exec(job_id, thing, queued_at);

	assert_int_equal(cf_store_exec_insert(fx->st, &e), 0);
	expect_event_is(fx, "execution.queued");
}

/* Moves the latest execution of (job, thing) to status at time t through the CAS. */
static void
move(struct fx *fx, const char *job_id, const char *thing, cf_exec_status to, int64_t t)
{
	cf_exec_rec cur, next;
	int64_t v;

	assert_int_equal(cf_store_exec_get(fx->st, &cur, job_id, thing, 0), 0);
	next = cur;
	v = cur.version;
	next.status = to;
	next.version = v + 1;
	if (to == CF_EXEC_IN_PROGRESS) {
		if (next.started_at == 0)
			next.started_at = t;
		next.last_step_at = t;
	}
	next.last_updated_at = t;
	assert_int_equal(cf_store_exec_update(fx->st, &next, v), 0);
	expect_event_is(fx, "execution.status");
	cf_exec_rec_clear(&cur);
}

static void
fake_id(char out[CF_ID_LEN + 1], const char *seed)
{
	cf_sha256_hex(out, seed, strlen(seed));
}

/* ---- jobs ------------------------------------------------------------------- */

static void
test_jobs_store__insert_get_list(void **state)
{
	struct fx *fx = *state;
	cf_job_rec j = job("rot-1"), got, *list = NULL;
	size_t n = 0;
	char *detail;

	j.config = "{\"rollout\": {\"maxPerMinute\": 10}, \"abort\": []}";
	j.comment = "roll the intermediate";
	j.created_at = 1000;
	assert_int_equal(cf_store_job_insert(fx->st, &j), 0);
	detail = expect_event(fx, "job.created");
	assert_non_null(strstr(detail, "\"operation\":\"ROTATE_CERTIFICATE\""));
	free(detail);
	j = job("rot-2");
	j.status = CF_JOB_STATE_SCHEDULED;
	j.selection = CF_JOB_SELECTION_CONTINUOUS;
	j.targets = "[{\"group\": \"fleet\"}]";
	j.created_at = 2000;
	assert_int_equal(cf_store_job_insert(fx->st, &j), 0);
	expect_event_is(fx, "job.created");

	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-1"), 0);
	assert_string_equal(got.operation, "ROTATE_CERTIFICATE");
	/* stored compact with sorted keys */
	assert_string_equal(got.document,
	    "{\"keyAlgorithm\":\"EC-P256\",\"operation\":\"ROTATE_CERTIFICATE\"}");
	assert_string_equal(got.config, "{\"abort\":[],\"rollout\":{\"maxPerMinute\":10}}");
	assert_string_equal(got.comment, "roll the intermediate");
	assert_int_equal(got.status, CF_JOB_STATE_IN_PROGRESS);
	assert_int_equal(got.selection, CF_JOB_SELECTION_SNAPSHOT);
	assert_int_equal(got.created_at, 1000);
	assert_int_equal(got.completed_at, 0);
	cf_job_rec_clear(&got);
	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-2"), 0);
	assert_string_equal(got.config, "{}");
	assert_null(got.comment);
	assert_int_equal(got.selection, CF_JOB_SELECTION_CONTINUOUS);
	assert_string_equal(got.targets, "[{\"group\":\"fleet\"}]");
	cf_job_rec_clear(&got);
	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-3"), CF_ENOTFOUND);

	assert_int_equal(cf_store_job_list(fx->st, &list, &n, -1), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, "rot-1");
	assert_string_equal(list[1].id, "rot-2");
	cf_job_recs_free(list, n);
	assert_int_equal(cf_store_job_list(fx->st, &list, &n, CF_JOB_STATE_SCHEDULED), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "rot-2");
	cf_job_recs_free(list, n);
	assert_int_equal(cf_store_job_list(fx->st, &list, &n, CF_JOB_STATE_CANCELED), 0);
	assert_int_equal(n, 0);
	cf_job_recs_free(list, n);
	assert_int_equal(cf_store_job_list(fx->st, &list, &n, 9), CF_EINVAL);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__duplicate_and_invalid_jobs(void **state)
{
	struct fx *fx = *state;
	cf_job_rec j;
	static const char *const bad_ids[] = { "", "has space", "dot.ted", "slash/", "ümlaut" };
	size_t i;
	cf_job_rec got;

	add_job(fx, "rot-1");
	j = job("rot-1");
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EEXISTS);
	assert_non_null(strstr(cf_error_last(), "already exists"));
	for (i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		j = job(bad_ids[i]);
		assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	}
	j = job("x");
	memset(j.id, 'a', sizeof(j.id)); /* unterminated: 65 characters */
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	assert_int_equal(cf_store_job_get(fx->st, &got, "a/b"), CF_EINVAL);

	j = job("rot-2");
	j.document = "{\"operation\": ";
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j.document = "[1, 2]"; /* a document is an object */
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j.document = "{\"a\": 1, \"a\": 2}";
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j = job("rot-2");
	j.targets = "\"sensor-1\"";
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j.targets = NULL;
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j = job("rot-2");
	j.config = "not json";
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j = job("rot-2");
	snprintf(j.operation, sizeof(j.operation), "rotate");
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j = job("rot-2");
	j.status = CF_JOB_STATE_COMPLETED;
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j = job("rot-2");
	j.selection = (cf_job_selection)7;
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	j = job("rot-2");
	j.comment = "two\nlines";
	assert_int_equal(cf_store_job_insert(fx->st, &j), CF_EINVAL);
	/* nothing above was stored, nor recorded */
	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-2"), CF_ENOTFOUND);
	expect_no_event(fx);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__job_status_table(void **state)
{
	struct fx *fx = *state;
	cf_job_rec j, got;
	char *detail;

	j = job("rot-1");
	j.status = CF_JOB_STATE_SCHEDULED;
	assert_int_equal(cf_store_job_insert(fx->st, &j), 0);
	expect_event_is(fx, "job.created");
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_SCHEDULED, 0, NULL), 0);
	expect_no_event(fx); /* same status: no-op */
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_IN_PROGRESS, 0, NULL),
	    0);
	expect_event_is(fx, "job.status");
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_SCHEDULED, 0, NULL),
	    CF_ESTATE);
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_CANCELED, 1,
	    "operator: wrong CA"), 0);
	detail = expect_event(fx, "job.status");
	assert_non_null(strstr(detail, "\"force\":true"));
	assert_non_null(strstr(detail, "\"from\":\"IN_PROGRESS\""));
	assert_non_null(strstr(detail, "\"to\":\"CANCELED\""));
	free(detail);
	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-1"), 0);
	assert_int_equal(got.status, CF_JOB_STATE_CANCELED);
	assert_int_equal(got.force_canceled, 1);
	assert_true(got.completed_at > 0);
	assert_string_equal(got.comment, "operator: wrong CA");
	cf_job_rec_clear(&got);
	/* terminal */
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_IN_PROGRESS, 0, NULL),
	    CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "ended"));
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_COMPLETED, 0, NULL),
	    CF_ESTATE);
	assert_int_equal(cf_store_job_set_status(fx->st, "nope", CF_JOB_STATE_COMPLETED, 0, NULL),
	    CF_ENOTFOUND);
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", (cf_job_state)9, 0, NULL),
	    CF_EINVAL);
	expect_no_event(fx);

	add_job(fx, "rot-2");
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-2", CF_JOB_STATE_COMPLETED, 1, NULL), 0);
	expect_event_is(fx, "job.status");
	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-2"), 0);
	assert_int_equal(got.force_canceled, 0); /* force only means something for a cancel */
	cf_job_rec_clear(&got);
	expect_chain_ok(fx->st);
}

/* ---- executions ------------------------------------------------------------------ */

static void
test_jobs_store__exec_insert_rules(void **state)
{
	struct fx *fx = *state;
	cf_exec_rec e, got;
	char *detail;

	e = exec("nope", "sensor-1", 0);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ENOTFOUND);
	add_job(fx, "rot-1");
	e = exec("rot-1", "ghost", 0);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ENOTFOUND);
	e = exec("rot-1", "bad thing!", 0);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_EINVAL);
	e = exec("rot-1", "sensor-1", 0);
	e.status = CF_EXEC_IN_PROGRESS;
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_EINVAL);
	e = exec("rot-1", "sensor-1", 0);
	e.status_details = "{\"reason\": 3}"; /* statusDetails values are strings */
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_EINVAL);
	e.status_details = "[\"x\"]";
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_EINVAL);
	e = exec("rot-1", "sensor-1", 0);
	e.execution_number = 2; /* the first is #1 */
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ESTATE);
	expect_no_event(fx);

	e = exec("rot-1", "sensor-1", 500);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), 0);
	detail = expect_event(fx, "execution.queued");
	assert_non_null(strstr(detail, "\"execution_number\":1"));
	assert_non_null(strstr(detail, "\"version\":1"));
	free(detail);
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(got.execution_number, 1);
	assert_int_equal(got.version, 1);
	assert_int_equal(got.status, CF_EXEC_QUEUED);
	assert_string_equal(got.status_details, "{}");
	assert_int_equal(got.queued_at, 500);
	assert_int_equal(got.last_updated_at, 500);
	assert_int_equal(got.started_at, 0);
	cf_exec_rec_clear(&got);
	/* one live execution per (job, thing) */
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ESTATE);
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-2", 0), CF_ENOTFOUND);
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 2), CF_ENOTFOUND);

	/* a retry after a terminal status: #2, and versionNumber carries on */
	move(fx, "rot-1", "sensor-1", CF_EXEC_IN_PROGRESS, 600);
	move(fx, "rot-1", "sensor-1", CF_EXEC_FAILED, 700);
	e = exec("rot-1", "sensor-1", 800);
	e.version = 2; /* would repeat a version of attempt #1 */
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ESTATE);
	e.version = 0;
	e.retries_failed = 1;
	assert_int_equal(cf_store_exec_insert(fx->st, &e), 0);
	expect_event_is(fx, "execution.queued");
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(got.execution_number, 2);
	assert_int_equal(got.version, 4);
	assert_int_equal(got.retries_failed, 1);
	cf_exec_rec_clear(&got);
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 1), 0);
	assert_int_equal(got.status, CF_EXEC_FAILED);
	cf_exec_rec_clear(&got);

	/* an ended job queues nothing */
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_CANCELED, 0, NULL), 0);
	expect_event_is(fx, "job.status");
	e = exec("rot-1", "sensor-2", 0);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ESTATE);
	expect_no_event(fx);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__cas_update(void **state)
{
	struct fx *fx = *state;
	cf_exec_rec cur, next, got;
	char *detail;

	add_job(fx, "rot-1");
	add_exec(fx, "rot-1", "sensor-1", 100);
	assert_int_equal(cf_store_exec_get(fx->st, &cur, "rot-1", "sensor-1", 0), 0);
	next = cur;
	next.status_details = "{\"step\": \"generating key\"}";
	next.status = CF_EXEC_IN_PROGRESS;
	next.version = 2;
	next.started_at = next.last_step_at = next.last_updated_at = 200;
	assert_int_equal(cf_store_exec_update(fx->st, &next, 1), 0);
	detail = expect_event(fx, "execution.status");
	assert_non_null(strstr(detail, "\"from\":\"QUEUED\""));
	assert_non_null(strstr(detail, "\"to\":\"IN_PROGRESS\""));
	assert_non_null(strstr(detail, "\"version\":2"));
	free(detail);
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 1), 0);
	assert_int_equal(got.version, 2);
	assert_int_equal(got.status, CF_EXEC_IN_PROGRESS);
	assert_string_equal(got.status_details, "{\"step\":\"generating key\"}");
	assert_int_equal(got.started_at, 200);
	assert_int_equal(got.queued_at, 100);
	cf_exec_rec_clear(&got);

	/* the same update again carries a stale expectedVersion: refused, row untouched */
	next.status = CF_EXEC_SUCCEEDED;
	next.status_details = "{\"stale\": \"yes\"}";
	assert_int_equal(cf_store_exec_update(fx->st, &next, 1), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "version mismatch"));
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(got.version, 2);
	assert_int_equal(got.status, CF_EXEC_IN_PROGRESS);
	assert_string_equal(got.status_details, "{\"step\":\"generating key\"}");
	cf_exec_rec_clear(&got);
	expect_no_event(fx);

	/* the version moves by exactly one */
	next.version = 5;
	assert_int_equal(cf_store_exec_update(fx->st, &next, 2), CF_EINVAL);
	next.version = 3;
	next.status = (cf_exec_status)42;
	assert_int_equal(cf_store_exec_update(fx->st, &next, 2), CF_EINVAL);
	next.status = CF_EXEC_SUCCEEDED;
	next.status_details = "{\"n\": 1}";
	assert_int_equal(cf_store_exec_update(fx->st, &next, 2), CF_EINVAL);
	next.status_details = NULL;
	next.execution_number = 7;
	assert_int_equal(cf_store_exec_update(fx->st, &next, 2), CF_ENOTFOUND);
	next.execution_number = 1;
	next.last_updated_at = 0; /* now */
	assert_int_equal(cf_store_exec_update(fx->st, &next, 2), 0);
	expect_event_is(fx, "execution.status");
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(got.version, 3);
	assert_int_equal(got.status, CF_EXEC_SUCCEEDED);
	assert_string_equal(got.status_details, "{}");
	assert_true(got.last_updated_at > 200);
	cf_exec_rec_clear(&got);
	cf_exec_rec_clear(&cur);
	expect_chain_ok(fx->st);
}

/* Two handles on one file, as two daemons: both read version 1, only one update lands. */
static void
test_jobs_store__cas_two_handles(void **state)
{
	struct fx *fx = *state;
	cf_store *other = NULL;
	cf_exec_rec a, b, got;
	int r_other, r_mine;

	add_job(fx, "rot-1");
	add_exec(fx, "rot-1", "sensor-1", 100);
	assert_int_equal(cf_store_open(&other, fx->db, 0), 0);
	assert_int_equal(cf_store_exec_get(fx->st, &a, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(cf_store_exec_get(other, &b, "rot-1", "sensor-1", 0), 0);
	a.status = CF_EXEC_IN_PROGRESS;
	a.version = 2;
	b.status = CF_EXEC_CANCELED;
	b.version = 2;
	r_other = cf_store_exec_update(other, &b, 1);
	r_mine = cf_store_exec_update(fx->st, &a, 1);
	assert_int_equal(r_other, 0);
	assert_int_equal(r_mine, CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "version mismatch"));
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(got.status, CF_EXEC_CANCELED);
	assert_int_equal(got.version, 2);
	cf_exec_rec_clear(&got);
	expect_event_is(fx, "execution.status");
	cf_exec_rec_clear(&a);
	cf_exec_rec_clear(&b);
	cf_store_close(other);
	expect_chain_ok(fx->st);
}

/* The same race between processes started together: exactly one wins, whatever the order. */
static void
test_jobs_store__cas_race_between_processes(void **state)
{
	struct fx *fx = *state;
	enum { RACERS = 4 };
	pid_t pids[RACERS];
	int go[2], i, status, wins = 0, lost = 0;
	cf_exec_rec got;
	cf_event_rec *ev = NULL;
	size_t n = 0;

	add_job(fx, "rot-1");
	add_exec(fx, "rot-1", "sensor-1", 100);
	assert_int_equal(pipe(go), 0);
	for (i = 0; i < RACERS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			cf_store *st = NULL;
			cf_exec_rec e;
			int r;
			char b;

			close(go[1]);
			if (cf_store_open(&st, fx->db, 0) != 0 ||
			    cf_store_exec_get(st, &e, "rot-1", "sensor-1", 0) != 0)
				_exit(3);
			if (read(go[0], &b, 1) != 0) /* EOF: everyone starts at once */
				_exit(3);
			e.status = i % 2 ? CF_EXEC_IN_PROGRESS : CF_EXEC_REJECTED;
			e.version = 2;
			r = cf_store_exec_update(st, &e, 1);
			cf_exec_rec_clear(&e);
			cf_store_close(st);
			_exit(r == 0 ? 0 : r == CF_ESTATE ? 1 : 2);
		}
	}
	close(go[0]);
	usleep(100 * 1000); /* let every racer read version 1 */
	close(go[1]);
	for (i = 0; i < RACERS; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		if (WEXITSTATUS(status) == 0)
			wins++;
		else if (WEXITSTATUS(status) == 1)
			lost++;
		else
			fail_msg("racer %d exited with %d", i, WEXITSTATUS(status));
	}
	assert_int_equal(wins, 1);
	assert_int_equal(lost, RACERS - 1);
	assert_int_equal(cf_store_exec_get(fx->st, &got, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(got.version, 2);
	cf_exec_rec_clear(&got);
	assert_int_equal(cf_store_event_list_after(fx->st, &ev, &n, fx->head, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ev[0].type, "execution.status");
	cf_event_recs_free(ev, n);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__next_pending_order(void **state)
{
	struct fx *fx = *state;
	cf_exec_rec got;

	assert_int_equal(cf_store_exec_next_pending(fx->st, &got, "sensor-1"), CF_ENOTFOUND);
	add_job(fx, "job-a");
	add_job(fx, "job-b");
	add_job(fx, "job-c");
	add_exec(fx, "job-a", "sensor-1", 300);
	add_exec(fx, "job-b", "sensor-1", 200);
	add_exec(fx, "job-c", "sensor-1", 200);
	add_exec(fx, "job-a", "sensor-2", 100);
	/* the oldest QUEUED, ties by job id; another thing's executions do not count */
	assert_int_equal(cf_store_exec_next_pending(fx->st, &got, "sensor-1"), 0);
	assert_string_equal(got.job_id, "job-b");
	cf_exec_rec_clear(&got);
	/* an IN_PROGRESS one comes first, even if queued later */
	move(fx, "job-a", "sensor-1", CF_EXEC_IN_PROGRESS, 400);
	assert_int_equal(cf_store_exec_next_pending(fx->st, &got, "sensor-1"), 0);
	assert_string_equal(got.job_id, "job-a");
	assert_int_equal(got.status, CF_EXEC_IN_PROGRESS);
	cf_exec_rec_clear(&got);
	/* terminal ones are not pending */
	move(fx, "job-a", "sensor-1", CF_EXEC_SUCCEEDED, 500);
	move(fx, "job-b", "sensor-1", CF_EXEC_CANCELED, 500);
	assert_int_equal(cf_store_exec_next_pending(fx->st, &got, "sensor-1"), 0);
	assert_string_equal(got.job_id, "job-c");
	cf_exec_rec_clear(&got);
	move(fx, "job-c", "sensor-1", CF_EXEC_REMOVED, 600);
	assert_int_equal(cf_store_exec_next_pending(fx->st, &got, "sensor-1"), CF_ENOTFOUND);
	assert_int_equal(cf_store_exec_next_pending(fx->st, &got, "bad name!"), CF_EINVAL);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__list_and_counts(void **state)
{
	struct fx *fx = *state;
	int64_t counts[CF_EXEC__COUNT];
	cf_exec_rec *list = NULL, e;
	size_t n = 0;

	add_job(fx, "rot-1");
	add_job(fx, "rot-2");
	add_exec(fx, "rot-1", "sensor-1", 10);
	add_exec(fx, "rot-1", "sensor-2", 10);
	add_exec(fx, "rot-1", "sensor-3", 10);
	add_exec(fx, "rot-2", "sensor-1", 10);
	move(fx, "rot-1", "sensor-1", CF_EXEC_IN_PROGRESS, 20);
	move(fx, "rot-1", "sensor-1", CF_EXEC_FAILED, 30);
	move(fx, "rot-1", "sensor-2", CF_EXEC_IN_PROGRESS, 20);
	move(fx, "rot-1", "sensor-2", CF_EXEC_SUCCEEDED, 30);
	assert_int_equal(cf_store_exec_counts(fx->st, counts, "rot-1"), 0);
	assert_int_equal(counts[CF_EXEC_QUEUED], 1);
	assert_int_equal(counts[CF_EXEC_FAILED], 1);
	assert_int_equal(counts[CF_EXEC_SUCCEEDED], 1);
	assert_int_equal(counts[CF_EXEC_IN_PROGRESS], 0);
	/* a retry: only the latest attempt of each thing counts */
	e = exec("rot-1", "sensor-1", 40);
	e.retries_failed = 1;
	assert_int_equal(cf_store_exec_insert(fx->st, &e), 0);
	expect_event_is(fx, "execution.queued");
	assert_int_equal(cf_store_exec_counts(fx->st, counts, "rot-1"), 0);
	assert_int_equal(counts[CF_EXEC_QUEUED], 2);
	assert_int_equal(counts[CF_EXEC_FAILED], 0);
	assert_int_equal(counts[CF_EXEC_SUCCEEDED], 1);
	assert_int_equal(cf_store_exec_counts(fx->st, counts, "nope"), 0);
	assert_int_equal(counts[CF_EXEC_QUEUED], 0);
	assert_int_equal(cf_store_exec_counts(fx->st, counts, "bad id"), CF_EINVAL);

	/* the list has every attempt, by thing then number */
	assert_int_equal(cf_store_exec_list(fx->st, &list, &n, "rot-1", -1, 0), 0);
	assert_int_equal(n, 4);
	assert_string_equal(list[0].thing, "sensor-1");
	assert_int_equal(list[0].execution_number, 1);
	assert_int_equal(list[1].execution_number, 2);
	assert_string_equal(list[2].thing, "sensor-2");
	assert_string_equal(list[3].thing, "sensor-3");
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list(fx->st, &list, &n, "rot-1", CF_EXEC_QUEUED, 0), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].thing, "sensor-1");
	assert_string_equal(list[1].thing, "sensor-3");
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list(fx->st, &list, &n, "rot-1", -1, 1), 0);
	assert_int_equal(n, 1);
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list(fx->st, &list, &n, "rot-1", 99, 0), CF_EINVAL);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__timeouts_boundary(void **state)
{
	struct fx *fx = *state;
	cf_exec_rec *list = NULL;
	size_t n = 0;

	add_job(fx, "rot-1");
	add_job(fx, "rot-2");
	add_exec(fx, "rot-1", "sensor-1", 10);
	add_exec(fx, "rot-1", "sensor-2", 10);
	add_exec(fx, "rot-2", "sensor-3", 10);
	move(fx, "rot-1", "sensor-1", CF_EXEC_IN_PROGRESS, 1000); /* started 1000 */
	move(fx, "rot-1", "sensor-1", CF_EXEC_IN_PROGRESS, 1500); /* a step at 1500 */
	move(fx, "rot-2", "sensor-3", CF_EXEC_IN_PROGRESS, 1200);
	/* sensor-2 stays QUEUED: never stale */

	/* step: last_step_at <= T; the boundary itself is included */
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 1199, 0, 0), 0);
	assert_int_equal(n, 0);
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 1200, 0, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].thing, "sensor-3");
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 1500, 0, 0), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].thing, "sensor-3"); /* by last_step_at */
	assert_string_equal(list[1].thing, "sensor-1");
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, "rot-1", 1500, 0, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].thing, "sensor-1");
	cf_exec_recs_free(list, n);
	/* in progress too long: started_at <= T, whatever the last step */
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 0, 999, 0), 0);
	assert_int_equal(n, 0);
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 0, 1000, 0), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].thing, "sensor-1");
	assert_int_equal(list[0].started_at, 1000);
	assert_int_equal(list[0].last_step_at, 1500);
	cf_exec_recs_free(list, n);
	/* either criterion */
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 1200, 1000, 0), 0);
	assert_int_equal(n, 2);
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 1200, 1000, 1), 0);
	assert_int_equal(n, 1);
	cf_exec_recs_free(list, n);
	/* ended executions are not timed out */
	move(fx, "rot-2", "sensor-3", CF_EXEC_SUCCEEDED, 1600);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 2000, 0, 0), 0);
	assert_int_equal(n, 1);
	cf_exec_recs_free(list, n);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, NULL, 0, 0, 0), CF_EINVAL);
	assert_int_equal(cf_store_exec_list_stale(fx->st, &list, &n, "bad/id", 5, 0, 0), CF_EINVAL);
	expect_chain_ok(fx->st);
}

/* ---- rotations ----------------------------------------------------------------------- */

static cf_rotation_rec
rotation(const char *job_id, const char *thing, int64_t number, const char *old_seed,
    const char *new_seed)
{
	cf_rotation_rec r;

	memset(&r, 0, sizeof(r));
	snprintf(r.job_id, sizeof(r.job_id), "%s", job_id);
	snprintf(r.thing, sizeof(r.thing), "%s", thing);
	r.execution_number = number;
	fake_id(r.old_cert, old_seed);
	if (new_seed != NULL)
		fake_id(r.new_cert, new_seed);
	r.state = CF_ROTATION_CREATED;
	return r;
}

static void
test_jobs_store__rotations(void **state)
{
	struct fx *fx = *state;
	cf_rotation_rec x, got, *found = NULL;
	size_t n = 0;
	char old_id[CF_ID_LEN + 1], new_id[CF_ID_LEN + 1], *detail;

	fake_id(old_id, "old");
	fake_id(new_id, "new");
	add_job(fx, "rot-1");
	x = rotation("rot-1", "sensor-1", 1, "old", NULL);
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_ENOTFOUND); /* no execution */
	add_exec(fx, "rot-1", "sensor-1", 10);
	move(fx, "rot-1", "sensor-1", CF_EXEC_IN_PROGRESS, 20);

	/* validation */
	x = rotation("rot-1", "sensor-1", 1, "old", NULL);
	x.state = CF_ROTATION_COMMITTED;
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_EINVAL);
	x = rotation("rot-1", "sensor-1", 1, "old", "old");
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_EINVAL);
	x = rotation("rot-1", "sensor-1", 1, "old", NULL);
	x.old_cert[0] = 'G';
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_EINVAL);
	x = rotation("rot-1", "sensor-1", 0, "old", NULL);
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_EINVAL);
	expect_no_event(fx);

	/* recorded before issuance, then the new certificate */
	x = rotation("rot-1", "sensor-1", 1, "old", NULL);
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	expect_event_is(fx, "rotation.created");
	assert_int_equal(cf_store_rotation_get(fx->st, &got, "rot-1", "sensor-1", 1), 0);
	assert_int_equal(got.state, CF_ROTATION_CREATED);
	assert_string_equal(got.new_cert, "");
	assert_string_equal(got.old_cert, old_id);
	/* nothing issued: nothing to commit */
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_COMMITTED, NULL), CF_ESTATE);
	x = rotation("rot-1", "sensor-1", 1, "old", "new");
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	detail = expect_event(fx, "rotation.updated");
	assert_non_null(strstr(detail, new_id));
	free(detail);
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0); /* the same again */
	expect_no_event(fx);
	x = rotation("rot-1", "sensor-1", 1, "old", NULL); /* an issued certificate stays known */
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_ESTATE);
	x = rotation("rot-1", "sensor-1", 1, "other-old", "new");
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_ESTATE);
	expect_no_event(fx);
	x = rotation("rot-1", "sensor-1", 1, "old", "newer"); /* a repeated create: replaced */
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	detail = expect_event(fx, "rotation.updated");
	assert_non_null(strstr(detail, new_id)); /* previous_new_cert */
	free(detail);
	x = rotation("rot-1", "sensor-1", 1, "old", "new");
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	expect_event_is(fx, "rotation.updated");
	assert_int_equal(cf_store_rotation_get(fx->st, &got, "rot-1", "sensor-1", 1), 0);
	assert_string_equal(got.new_cert, new_id);

	/* find by either certificate */
	assert_int_equal(cf_store_rotation_find_cert(fx->st, &found, &n, old_id), 0);
	assert_int_equal(n, 1);
	assert_string_equal(found[0].thing, "sensor-1");
	cf_rotation_recs_free(found, n);
	assert_int_equal(cf_store_rotation_find_cert(fx->st, &found, &n, new_id), 0);
	assert_int_equal(n, 1);
	assert_string_equal(found[0].new_cert, new_id);
	cf_rotation_recs_free(found, n);
	fake_id(old_id, "unrelated");
	assert_int_equal(cf_store_rotation_find_cert(fx->st, &found, &n, old_id), 0);
	assert_int_equal(n, 0);
	cf_rotation_recs_free(found, n);
	assert_int_equal(cf_store_rotation_find_cert(fx->st, &found, &n, "abcd"), CF_EINVAL);

	/* the state table */
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_INDETERMINATE, NULL), CF_ESTATE); /* created -> indeterminate */
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_COMMITTED, NULL), 0);
	expect_event_is(fx, "rotation.committed");
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_COMMITTED, NULL), 0);
	expect_no_event(fx);
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), CF_ESTATE); /* left created */
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_INDETERMINATE, "TIMED_OUT after commit"), 0);
	detail = expect_event(fx, "rotation.indeterminate");
	assert_non_null(strstr(detail, "TIMED_OUT after commit"));
	assert_non_null(strstr(detail, "\"from\":\"committed\""));
	free(detail);
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_SUCCEEDED, "connected with the new certificate"), 0);
	expect_event_is(fx, "rotation.succeeded");
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_FAILED, NULL), CF_ESTATE); /* terminal */
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_CREATED, NULL), CF_ESTATE);
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    (cf_rotation_state)9, NULL), CF_EINVAL);
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-2", 1,
	    CF_ROTATION_FAILED, NULL), CF_ENOTFOUND);
	assert_int_equal(cf_store_rotation_get(fx->st, &got, "rot-1", "sensor-1", 1), 0);
	assert_int_equal(got.state, CF_ROTATION_SUCCEEDED);
	assert_true(got.updated_at >= got.created_at);
	expect_no_event(fx);

	/* created -> failed (FAILED or TIMED_OUT after create) */
	add_exec(fx, "rot-1", "sensor-2", 10);
	x = rotation("rot-1", "sensor-2", 1, "old-2", "new-2");
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	expect_event_is(fx, "rotation.created");
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-2", 1,
	    CF_ROTATION_FAILED, "create never answered"), 0);
	expect_event_is(fx, "rotation.failed");
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__state_names(void **state)
{
	cf_job_state js;
	cf_rotation_state rs;
	int i;

	(void)state;
	for (i = 0; i < CF_JOB_STATE__COUNT; i++) {
		assert_int_equal(cf_job_state_parse(&js, cf_job_state_name((cf_job_state)i)), 0);
		assert_int_equal(js, i);
	}
	for (i = 0; i < CF_ROTATION__COUNT; i++) {
		assert_int_equal(cf_rotation_state_parse(&rs, cf_rotation_state_name((cf_rotation_state)i)),
		    0);
		assert_int_equal(rs, i);
	}
	assert_int_equal(cf_job_state_parse(&js, "scheduled"), CF_EINVAL);
	assert_int_equal(cf_job_state_parse(&js, NULL), CF_EINVAL);
	assert_int_equal(cf_rotation_state_parse(&rs, "CREATED"), CF_EINVAL);
	assert_string_equal(cf_job_state_name((cf_job_state)99), "UNKNOWN");
	assert_string_equal(cf_rotation_state_name((cf_rotation_state)99), "unknown");
}

/* Everything inside a caller's transaction goes away with its rollback, events included. */
static void
test_jobs_store__rollback_leaves_nothing(void **state)
{
	struct fx *fx = *state;
	cf_job_rec j = job("rot-1"), got;
	cf_exec_rec e = exec("rot-1", "sensor-1", 10), ge;
	cf_rotation_rec x = rotation("rot-1", "sensor-1", 1, "old", "new"), gr, *found = NULL;
	size_t n = 0;
	char old_id[CF_ID_LEN + 1];

	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_job_insert(fx->st, &j), 0);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), 0);
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	/* a failing mutator inside undoes only itself */
	assert_int_equal(cf_store_exec_insert(fx->st, &e), CF_ESTATE);
	assert_int_equal(cf_store_exec_get(fx->st, &ge, "rot-1", "sensor-1", 0), 0);
	cf_exec_rec_clear(&ge);
	cf_store_rollback(fx->st);

	assert_int_equal(cf_store_job_get(fx->st, &got, "rot-1"), CF_ENOTFOUND);
	assert_int_equal(cf_store_exec_get(fx->st, &ge, "rot-1", "sensor-1", 0), CF_ENOTFOUND);
	assert_int_equal(cf_store_rotation_get(fx->st, &gr, "rot-1", "sensor-1", 1), CF_ENOTFOUND);
	fake_id(old_id, "old");
	assert_int_equal(cf_store_rotation_find_cert(fx->st, &found, &n, old_id), 0);
	assert_int_equal(n, 0);
	cf_rotation_recs_free(found, n);
	expect_no_event(fx);
	expect_chain_ok(fx->st);

	/* and commits together */
	assert_int_equal(cf_store_begin(fx->st), 0);
	assert_int_equal(cf_store_job_insert(fx->st, &j), 0);
	assert_int_equal(cf_store_exec_insert(fx->st, &e), 0);
	assert_int_equal(cf_store_commit(fx->st), 0);
	assert_int_equal(cf_store_exec_get(fx->st, &ge, "rot-1", "sensor-1", 0), 0);
	cf_exec_rec_clear(&ge);
	expect_chain_ok(fx->st);
}

static void
raw_sql(const char *path, const char *sql)
{
	sqlite3 *h = NULL;
	char *err = NULL;

	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(h);
}

/* Migration 3 runs on a version-2 file and leaves its data alone; the CHECKs hold in SQL. */
static void
test_jobs_store__migration_from_version_2(void **state)
{
	struct fx *fx = *state;
	cf_store *st = NULL;
	cf_thing_rec t;
	sqlite3 *h = NULL;
	char *err = NULL;
	int v = cf_store_schema_version(fx->st);

	assert_true(v >= 3);
	cf_store_close(fx->st);
	fx->st = NULL;
	raw_sql(fx->db, "DROP TABLE rotations; DROP TABLE job_executions; DROP TABLE jobs; "
	    "PRAGMA user_version = 2");
	assert_int_equal(cf_store_open(&st, fx->db, 0), 0);
	assert_int_equal(cf_store_schema_version(st), v);
	assert_int_equal(cf_store_thing_get(st, &t, "sensor-1"), 0);
	cf_thing_rec_clear(&t);
	fx->st = st;
	add_job(fx, "rot-1");
	add_exec(fx, "rot-1", "sensor-1", 1);

	/* the database itself refuses values outside the CHECKs */
	assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(h, "UPDATE job_executions SET status = 'DONE'", NULL, NULL,
	    &err), SQLITE_OK);
	sqlite3_free(err);
	err = NULL;
	assert_int_not_equal(sqlite3_exec(h, "UPDATE jobs SET selection = 'SOMETIMES'", NULL, NULL,
	    &err), SQLITE_OK);
	sqlite3_free(err);
	err = NULL;
	assert_int_not_equal(sqlite3_exec(h, "UPDATE job_executions SET version = 0", NULL, NULL,
	    &err), SQLITE_OK);
	sqlite3_free(err);
	sqlite3_close(h);
	expect_chain_ok(fx->st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_jobs_store__insert_get_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__duplicate_and_invalid_jobs, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__job_status_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__exec_insert_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__cas_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__cas_two_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__cas_race_between_processes, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__next_pending_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__list_and_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__timeouts_boundary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__rotations, setup, teardown),
		cmocka_unit_test(test_jobs_store__state_names),
		cmocka_unit_test_setup_teardown(test_jobs_store__rollback_leaves_nothing, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__migration_from_version_2, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
