/*
 * jobs_store_test — the registry's jobs, job executions and rotation
 * records (cf_store, SQLite): validation, the job and rotation state
 * tables, one live execution per (job, thing), the versionNumber
 * compare-and-set (also between two processes racing on one file), $next,
 * counts, the timeout query, the events every mutator appends, rollback,
 * migration 3 on a version-2 file; rotations by state, the job targets of
 * schema 4 (no events, their indexes at 10,000 targets) and migration 4 on
 * a version-3 file.
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
	raw_sql(fx->db, "DROP INDEX certificates_spki; ALTER TABLE certificates DROP COLUMN keyq_detail; ALTER TABLE certificates DROP COLUMN keyq_policy; ALTER TABLE certificates DROP COLUMN keyq_flags; ALTER TABLE certificates DROP COLUMN spki_sha256; "
	    "DROP TABLE prov_attempts; DROP TABLE prov_serials; DROP TABLE prov_claims; DROP TABLE prov_templates; "
	    "DROP TABLE mitigation_actions; DROP TABLE suppressions; DROP TABLE findings; DROP TABLE audits; DROP INDEX connections_ended; "
	    "DROP TABLE notifications; DROP TABLE job_targets; DROP TABLE rotations; "
	    "DROP TABLE job_executions; DROP TABLE jobs; PRAGMA user_version = 2");
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

/* ---- rotations by state (the indeterminate sweep) ------------------------------------ */

static void
test_jobs_store__rotation_list_state(void **state)
{
	struct fx *fx = *state;
	cf_rotation_rec x, *list = NULL;
	size_t n = 0;
	const char *things[] = { "sensor-3", "sensor-1", "sensor-2" };
	size_t i;

	add_job(fx, "rot-1");
	for (i = 0; i < 3; i++) {
		add_exec(fx, "rot-1", things[i], 10);
		x = rotation("rot-1", things[i], 1, things[i], "new");
		assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
		expect_event_is(fx, "rotation.created");
		assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", things[i], 1,
		    CF_ROTATION_COMMITTED, NULL), 0);
		expect_event_is(fx, "rotation.committed");
	}
	/* sensor-3 then sensor-2 become indeterminate; sensor-1 succeeds */
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-3", 1,
	    CF_ROTATION_INDETERMINATE, NULL), 0);
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-2", 1,
	    CF_ROTATION_INDETERMINATE, NULL), 0);
	assert_int_equal(cf_store_rotation_set_state(fx->st, "rot-1", "sensor-1", 1,
	    CF_ROTATION_SUCCEEDED, NULL), 0);

	assert_int_equal(cf_store_rotation_list_state(fx->st, &list, &n, CF_ROTATION_INDETERMINATE,
	    0), 0);
	assert_int_equal(n, 2);
	/* the same second: oldest updated first, then by key */
	assert_true(list[0].updated_at <= list[1].updated_at);
	if (list[0].updated_at == list[1].updated_at)
		assert_string_equal(list[0].thing, "sensor-2");
	for (i = 0; i < n; i++)
		assert_int_equal(list[i].state, CF_ROTATION_INDETERMINATE);
	cf_rotation_recs_free(list, n);
	assert_int_equal(cf_store_rotation_list_state(fx->st, &list, &n, CF_ROTATION_INDETERMINATE,
	    1), 0);
	assert_int_equal(n, 1);
	cf_rotation_recs_free(list, n);
	assert_int_equal(cf_store_rotation_list_state(fx->st, &list, &n, CF_ROTATION_SUCCEEDED, 0),
	    0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].thing, "sensor-1");
	cf_rotation_recs_free(list, n);
	assert_int_equal(cf_store_rotation_list_state(fx->st, &list, &n, CF_ROTATION_CREATED, 0), 0);
	assert_int_equal(n, 0);
	assert_null(list);
	assert_int_equal(cf_store_rotation_list_state(fx->st, &list, &n, (cf_rotation_state)9, 0),
	    CF_EINVAL);
	assert_int_equal(cf_store_rotation_list_state(fx->st, &list, &n, (cf_rotation_state)-1, 0),
	    CF_EINVAL);
}

/* ---- job targets (schema 4) ------------------------------------------------------------ */

static void
target_add(struct fx *fx, const char *job_id, const char *thing, int64_t now, int want_added)
{
	int added = -1;

	assert_int_equal(cf_store_job_target_add(fx->st, &added, job_id, thing, now), 0);
	assert_int_equal(added, want_added);
}

/* One target of job by thing (CF_ENOTFOUND-free: fails the test if absent). */
static cf_job_target_rec
target_get(struct fx *fx, const char *job_id, const char *thing)
{
	cf_job_target_rec *v = NULL, x;
	size_t n = 0, i;

	memset(&x, 0, sizeof(x));
	assert_int_equal(cf_store_job_target_list(fx->st, &v, &n, job_id, CF_TARGETS_ALL, 0), 0);
	for (i = 0; i < n; i++)
		if (strcmp(v[i].thing, thing) == 0)
			x = v[i];
	free(v);
	if (x.thing[0] == '\0')
		fail_msg("%s is not a target of %s", thing, job_id);
	return x;
}

/* The things of a target list, joined by ',' (the order is what is tested). */
static void
expect_targets(struct fx *fx, const char *job_id, cf_targets_which which, size_t limit,
    const char *want)
{
	cf_job_target_rec *v = NULL;
	size_t n = 0, i;
	char got[512] = "";

	assert_int_equal(cf_store_job_target_list(fx->st, &v, &n, job_id, which, limit), 0);
	for (i = 0; i < n; i++) {
		assert_string_equal(v[i].job_id, job_id);
		if (i > 0)
			strcat(got, ",");
		strcat(got, v[i].thing);
	}
	free(v);
	assert_string_equal(got, want);
}

static void
test_jobs_store__targets_lifecycle(void **state)
{
	struct fx *fx = *state;
	cf_job_target_rec x;
	int added = -1;

	add_job(fx, "rot-1");
	/* added out of name order: the rollout's queue follows added_at */
	target_add(fx, "rot-1", "sensor-1", 30, 1);
	target_add(fx, "rot-1", "sensor-2", 10, 1);
	target_add(fx, "rot-1", "sensor-3", 20, 1);
	target_add(fx, "rot-1", "sensor-3", 40, 0); /* already there: no change */
	assert_int_equal(cf_store_job_target_add(fx->st, NULL, "rot-1", "sensor-3", 0), 0);
	x = target_get(fx, "rot-1", "sensor-3");
	assert_int_equal(x.added_at, 20);
	assert_int_equal(x.released_at, 0);
	assert_int_equal(x.removed_at, 0);
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "sensor-1,sensor-2,sensor-3");
	expect_targets(fx, "rot-1", CF_TARGETS_UNRELEASED, 0, "sensor-2,sensor-3,sensor-1");
	expect_targets(fx, "rot-1", CF_TARGETS_UNRELEASED, 2, "sensor-2,sensor-3");
	expect_targets(fx, "rot-1", CF_TARGETS_RELEASED, 0, "");
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 1, "sensor-1");

	/* release: once */
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-2", 100), 0);
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-2", 101), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "released"));
	x = target_get(fx, "rot-1", "sensor-2");
	assert_int_equal(x.released_at, 100);
	expect_targets(fx, "rot-1", CF_TARGETS_UNRELEASED, 0, "sensor-3,sensor-1");
	expect_targets(fx, "rot-1", CF_TARGETS_RELEASED, 0, "sensor-2");
	target_add(fx, "rot-1", "sensor-2", 110, 0); /* a released target stays released */
	assert_int_equal(target_get(fx, "rot-1", "sensor-2").released_at, 100);

	/* remove: an unreleased one can no longer be released; twice is a no-op */
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-1", 120), 0);
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-1", 121), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "removed"));
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-1", 130), 0);
	x = target_get(fx, "rot-1", "sensor-1");
	assert_int_equal(x.removed_at, 120);
	assert_int_equal(x.released_at, 0);
	/* a released one leaves RELEASED but keeps its release time */
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-2", 140), 0);
	x = target_get(fx, "rot-1", "sensor-2");
	assert_int_equal(x.released_at, 100);
	assert_int_equal(x.removed_at, 140);
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-2", 141), CF_ESTATE);
	expect_targets(fx, "rot-1", CF_TARGETS_UNRELEASED, 0, "sensor-3");
	expect_targets(fx, "rot-1", CF_TARGETS_RELEASED, 0, "");
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "sensor-1,sensor-2,sensor-3");

	/* back again: a new attempt, queued behind the others */
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-1", "sensor-2", 200), 0);
	assert_int_equal(added, 1);
	x = target_get(fx, "rot-1", "sensor-2");
	assert_int_equal(x.added_at, 200);
	assert_int_equal(x.released_at, 0);
	assert_int_equal(x.removed_at, 0);
	expect_targets(fx, "rot-1", CF_TARGETS_UNRELEASED, 0, "sensor-3,sensor-2");
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-2", 210), 0);
	expect_targets(fx, "rot-1", CF_TARGETS_RELEASED, 0, "sensor-2");

	/* now = 0 is the clock */
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-3", 0), 0);
	assert_true(target_get(fx, "rot-1", "sensor-3").released_at >= cf_time_now() - 5);

	/* bookkeeping, not registry facts: no events at all */
	expect_no_event(fx);
	expect_chain_ok(fx->st);
}

static void
test_jobs_store__targets_refused(void **state)
{
	struct fx *fx = *state;
	cf_job_target_rec *v = NULL;
	cf_job_target_stats s;
	size_t n = 0;
	int added = -1;

	add_job(fx, "rot-1");
	/* unknown job, thing or target */
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "nope", "sensor-1", 10),
	    CF_ENOTFOUND);
	assert_int_equal(added, 0);
	assert_non_null(strstr(cf_error_last(), "nope"));
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-1", "ghost", 10), CF_ENOTFOUND);
	assert_non_null(strstr(cf_error_last(), "ghost"));
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-1", 10), CF_ENOTFOUND);
	assert_non_null(strstr(cf_error_last(), "sensor-1"));
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-1", 10), CF_ENOTFOUND);
	assert_int_equal(cf_store_job_target_release(fx->st, "nope", "sensor-1", 10), CF_ENOTFOUND);

	/* malformed arguments */
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "bad/id", "sensor-1", 10),
	    CF_EINVAL);
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-1", "bad name", 10), CF_EINVAL);
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-1", "sensor-1", -1), CF_EINVAL);
	assert_int_equal(cf_store_job_target_add(fx->st, &added, NULL, "sensor-1", 10), CF_EINVAL);
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", NULL, 10), CF_EINVAL);
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-1", -5), CF_EINVAL);
	assert_int_equal(cf_store_job_target_list(fx->st, &v, &n, "rot-1", (cf_targets_which)7, 0),
	    CF_EINVAL);
	assert_int_equal(cf_store_job_target_list(fx->st, &v, &n, "bad/id", CF_TARGETS_ALL, 0),
	    CF_EINVAL);
	assert_int_equal(cf_store_job_target_stats(fx->st, &s, "", 0), CF_EINVAL);
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "");

	/* an ended job takes no targets, not even a removed one coming back */
	target_add(fx, "rot-1", "sensor-1", 10, 1);
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-1", 20), 0);
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-1", CF_JOB_STATE_CANCELED, 0, NULL), 0);
	expect_event_is(fx, "job.status");
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-1", "sensor-1", 30), CF_ESTATE);
	assert_int_equal(added, 0);
	assert_non_null(strstr(cf_error_last(), "CANCELED"));
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-1", "sensor-2", 30), CF_ESTATE);
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "sensor-1");
	assert_int_equal(target_get(fx, "rot-1", "sensor-1").removed_at, 20);
	add_job(fx, "rot-2");
	assert_int_equal(cf_store_job_set_status(fx->st, "rot-2", CF_JOB_STATE_COMPLETED, 0, NULL), 0);
	expect_event_is(fx, "job.status");
	assert_int_equal(cf_store_job_target_add(fx->st, &added, "rot-2", "sensor-1", 30), CF_ESTATE);
	assert_non_null(strstr(cf_error_last(), "COMPLETED"));
	expect_targets(fx, "rot-2", CF_TARGETS_ALL, 0, "");
	expect_no_event(fx);
}

static void
expect_stats(struct fx *fx, const char *job_id, int64_t since, int64_t total, int64_t unreleased,
    int64_t released, int64_t removed, int64_t first, int64_t released_since)
{
	cf_job_target_stats s;

	memset(&s, 0x5a, sizeof(s));
	assert_int_equal(cf_store_job_target_stats(fx->st, &s, job_id, since), 0);
	assert_int_equal(s.total, total);
	assert_int_equal(s.unreleased, unreleased);
	assert_int_equal(s.released, released);
	assert_int_equal(s.removed, removed);
	assert_int_equal(s.first_released_at, first);
	assert_int_equal(s.released_since, released_since);
}

static void
test_jobs_store__targets_stats(void **state)
{
	struct fx *fx = *state;

	add_job(fx, "rot-1");
	add_job(fx, "rot-2");
	expect_stats(fx, "rot-1", 0, 0, 0, 0, 0, 0, 0);
	expect_stats(fx, "no-such-job", 0, 0, 0, 0, 0, 0, 0);
	target_add(fx, "rot-1", "sensor-1", 10, 1);
	target_add(fx, "rot-1", "sensor-2", 10, 1);
	target_add(fx, "rot-1", "sensor-3", 10, 1);
	target_add(fx, "rot-2", "sensor-1", 10, 1); /* another job's rows do not count */
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-2", "sensor-1", 50), 0);
	expect_stats(fx, "rot-1", 0, 3, 3, 0, 0, 0, 0);

	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-1", 100), 0);
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-2", 200), 0);
	expect_stats(fx, "rot-1", 0, 3, 1, 2, 0, 100, 2);
	expect_stats(fx, "rot-1", 150, 3, 1, 2, 0, 100, 1);
	expect_stats(fx, "rot-1", 200, 3, 1, 2, 0, 100, 1); /* since is inclusive */
	expect_stats(fx, "rot-1", 201, 3, 1, 2, 0, 100, 0);

	/* the first released leaves: no longer released, but the rollout began at 100 */
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-1", 300), 0);
	expect_stats(fx, "rot-1", 0, 3, 1, 1, 1, 100, 1);
	expect_stats(fx, "rot-1", 100, 3, 1, 1, 1, 100, 1);
	/* an unreleased one leaves */
	assert_int_equal(cf_store_job_target_remove(fx->st, "rot-1", "sensor-3", 310), 0);
	expect_stats(fx, "rot-1", 0, 3, 0, 1, 2, 100, 1);
	/* and one comes back */
	target_add(fx, "rot-1", "sensor-1", 400, 1);
	expect_stats(fx, "rot-1", 0, 3, 1, 1, 1, 200, 1);
	expect_stats(fx, "rot-2", 0, 1, 0, 1, 0, 50, 1);
	expect_no_event(fx);
}

/* A caller's rollback takes its targets with it; a deleted thing leaves every job's targets. */
static void
test_jobs_store__targets_rollback_and_thing_delete(void **state)
{
	struct fx *fx = *state;

	add_job(fx, "rot-1");
	assert_int_equal(cf_store_begin(fx->st), 0);
	target_add(fx, "rot-1", "sensor-1", 10, 1);
	target_add(fx, "rot-1", "sensor-2", 10, 1);
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-1", 20), 0);
	/* a failing one inside undoes only itself */
	assert_int_equal(cf_store_job_target_release(fx->st, "rot-1", "sensor-1", 20), CF_ESTATE);
	expect_targets(fx, "rot-1", CF_TARGETS_RELEASED, 0, "sensor-1");
	cf_store_rollback(fx->st);
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "");

	assert_int_equal(cf_store_begin(fx->st), 0);
	target_add(fx, "rot-1", "sensor-1", 10, 1);
	target_add(fx, "rot-1", "sensor-2", 10, 1);
	assert_int_equal(cf_store_commit(fx->st), 0);
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "sensor-1,sensor-2");

	assert_int_equal(cf_store_thing_delete(fx->st, "sensor-1"), 0);
	expect_event_is(fx, "thing.deleted");
	expect_targets(fx, "rot-1", CF_TARGETS_ALL, 0, "sensor-2");
	expect_stats(fx, "rot-1", 0, 1, 1, 0, 0, 0, 0);
	expect_no_event(fx);
}

/* EXPLAIN QUERY PLAN of sql on path, one line per step. */
static void
query_plan(char *out, size_t out_len, const char *path, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	char q[1024];
	size_t len = 0;

	out[0] = '\0';
	snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, q, -1, &s, NULL), SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW)
		len += (size_t)snprintf(out + len, out_len - len, "%s\n",
		    (const char *)sqlite3_column_text(s, 3));
	assert_true(len < out_len);
	sqlite3_finalize(s);
	sqlite3_close(h);
}

/*
 * 10,000 targets on one job: the rollout's queries stay index lookups (the
 * plans, checked with the same statements the store runs) and give the
 * right answers at that size.
 */
static void
test_jobs_store__targets_ten_thousand(void **state)
{
	struct fx *fx = *state;
	cf_job_target_rec *v = NULL;
	size_t n = 0, i;
	char name[32], plan[2048];
	int64_t head;

	add_job(fx, "rot-big");
	add_job(fx, "rot-other");
	assert_int_equal(cf_store_begin(fx->st), 0);
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "dev-%05zu", i);
		assert_int_equal(cf_store_thing_create(fx->st, name, NULL), 0);
		/* added in reverse name order, so the queue order is not the key order */
		target_add(fx, "rot-big", name, (int64_t)(20000 - i), 1);
		if (i % 10 == 0)
			target_add(fx, "rot-other", name, 1, 1);
	}
	for (i = 0; i < 10000; i += 2) {
		snprintf(name, sizeof(name), "dev-%05zu", i);
		assert_int_equal(cf_store_job_target_release(fx->st, "rot-big", name,
		    (int64_t)(1000 + i)), 0);
	}
	assert_int_equal(cf_store_commit(fx->st), 0);
	assert_int_equal(cf_store_event_head(fx->st, &head), 0);
	fx->head = head; /* the thing.created events */

	assert_int_equal(cf_store_job_target_list(fx->st, &v, &n, "rot-big", CF_TARGETS_UNRELEASED,
	    3), 0);
	assert_int_equal(n, 3);
	assert_string_equal(v[0].thing, "dev-09999");
	assert_string_equal(v[1].thing, "dev-09997");
	assert_string_equal(v[2].thing, "dev-09995");
	free(v);
	assert_int_equal(cf_store_job_target_list(fx->st, &v, &n, "rot-big", CF_TARGETS_RELEASED, 0),
	    0);
	assert_int_equal(n, 5000);
	assert_string_equal(v[0].thing, "dev-00000");
	assert_string_equal(v[4999].thing, "dev-09998");
	free(v);
	expect_stats(fx, "rot-big", 5000, 10000, 5000, 5000, 0, 1000, 3000); /* i >= 4000 */
	expect_stats(fx, "rot-other", 0, 1000, 1000, 0, 0, 0, 0);

	/* the statements of cf_store_sqlite.c, as the planner sees them */
	query_plan(plan, sizeof(plan), fx->db, "SELECT job_id, thing, added_at, released_at, "
	    "removed_at FROM job_targets WHERE job_id = 'rot-big' AND released_at = 0 AND "
	    "removed_at = 0 ORDER BY added_at, thing LIMIT 3");
	if (strstr(plan, "USING INDEX job_targets_unreleased") == NULL ||
	    strstr(plan, "TEMP B-TREE") != NULL)
		fail_msg("unreleased targets are not an ordered index range:\n%s", plan);
	query_plan(plan, sizeof(plan), fx->db, "SELECT count(*), "
	    "coalesce(sum(released_at = 0 AND removed_at = 0), 0), "
	    "coalesce(sum(released_at != 0 AND removed_at = 0), 0), "
	    "coalesce(sum(removed_at != 0), 0), "
	    "coalesce(min(CASE WHEN released_at != 0 THEN released_at END), 0), "
	    "coalesce(sum(released_at != 0 AND removed_at = 0 AND released_at >= 5), 0) "
	    "FROM job_targets WHERE job_id = 'rot-big'");
	if (strstr(plan, "(job_id=?)") == NULL)
		fail_msg("target stats do not search by job:\n%s", plan);
	query_plan(plan, sizeof(plan), fx->db, "SELECT 1 FROM job_targets WHERE thing = 'dev-00001'");
	if (strstr(plan, "job_targets_thing") == NULL)
		fail_msg("deleting a thing would scan every job's targets:\n%s", plan);
	expect_no_event(fx);
}

/* Every schema object of the file, in name order: the text a migration must reproduce. */
static void
schema_text(char *out, size_t out_len, const char *path)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	size_t len = 0;

	out[0] = '\0';
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, "SELECT type, name, tbl_name, coalesce(sql, '') FROM "
	    "sqlite_master ORDER BY type, name", -1, &s, NULL), SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW) {
		len += (size_t)snprintf(out + len, out_len - len, "%s %s %s: %s\n",
		    (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
		    (const char *)sqlite3_column_text(s, 2), (const char *)sqlite3_column_text(s, 3));
		assert_true(len < out_len);
	}
	sqlite3_finalize(s);
	sqlite3_close(h);
}

/*
 * Migration 4 on a version-3 file that holds jobs, executions and rotations:
 * the data stays, the schema ends up exactly as a new file's, and the new
 * tables work on the old jobs.
 */
static void
test_jobs_store__migration_from_version_3(void **state)
{
	struct fx *fx = *state;
	static char fresh[32768], migrated[32768];
	cf_store *st = NULL;
	cf_job_rec j;
	cf_exec_rec e;
	cf_rotation_rec x;
	cf_thing_rec t;
	cf_notify_rec *nv = NULL;
	sqlite3 *h = NULL;
	char *err = NULL;
	size_t n = 0;
	int64_t id = 0, head = 0, count = 0;
	int v = cf_store_schema_version(fx->st);

	assert_true(v >= 4); /* schemas 5 (audits) and 6 (provisioning) drop their own tables below too */
	schema_text(fresh, sizeof(fresh), fx->db);
	assert_non_null(strstr(fresh, "table job_targets"));
	assert_non_null(strstr(fresh, "table notifications"));
	add_job(fx, "rot-1");
	add_exec(fx, "rot-1", "sensor-1", 10);
	x = rotation("rot-1", "sensor-1", 1, "old", "new");
	assert_int_equal(cf_store_rotation_upsert(fx->st, &x), 0);
	expect_event_is(fx, "rotation.created");
	cf_store_close(fx->st);
	fx->st = NULL;

	/* what version 3 had: no targets, no outbox, no rotations_state index */
	raw_sql(fx->db, "DROP INDEX certificates_spki; ALTER TABLE certificates DROP COLUMN keyq_detail; ALTER TABLE certificates DROP COLUMN keyq_policy; ALTER TABLE certificates DROP COLUMN keyq_flags; ALTER TABLE certificates DROP COLUMN spki_sha256; "
	    "DROP TABLE prov_attempts; DROP TABLE prov_serials; DROP TABLE prov_claims; DROP TABLE prov_templates; "
	    "DROP TABLE mitigation_actions; DROP TABLE suppressions; DROP TABLE findings; DROP TABLE audits; DROP INDEX connections_ended; "
	    "DROP TABLE notifications; DROP TABLE job_targets; "
	    "DROP INDEX rotations_state; PRAGMA user_version = 3");
	schema_text(migrated, sizeof(migrated), fx->db);
	assert_null(strstr(migrated, "job_targets"));
	/* a reader never migrates */
	assert_int_equal(cf_store_open(&st, fx->db, CF_STORE_READONLY), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "schema version 3"));

	assert_int_equal(cf_store_open(&st, fx->db, 0), 0);
	fx->st = st;
	assert_int_equal(cf_store_schema_version(st), v);
	schema_text(migrated, sizeof(migrated), fx->db);
	assert_string_equal(migrated, fresh);

	/* the old data, untouched */
	assert_int_equal(cf_store_thing_get(st, &t, "sensor-1"), 0);
	cf_thing_rec_clear(&t);
	assert_int_equal(cf_store_job_get(st, &j, "rot-1"), 0);
	assert_int_equal(j.status, CF_JOB_STATE_IN_PROGRESS);
	cf_job_rec_clear(&j);
	assert_int_equal(cf_store_exec_get(st, &e, "rot-1", "sensor-1", 0), 0);
	assert_int_equal(e.version, 1);
	cf_exec_rec_clear(&e);
	assert_int_equal(cf_store_rotation_get(st, &x, "rot-1", "sensor-1", 1), 0);
	assert_int_equal(x.state, CF_ROTATION_CREATED);
	assert_int_equal(cf_store_event_head(st, &head), 0);
	assert_int_equal(head, fx->head);
	assert_int_equal(cf_store_event_verify(st, &count, NULL, NULL), 0);
	assert_int_equal(count, head);

	/* the new tables, on the old job */
	target_add(fx, "rot-1", "sensor-1", 20, 1);
	expect_targets(fx, "rot-1", CF_TARGETS_UNRELEASED, 0, "sensor-1");
	assert_int_equal(cf_store_notify_enqueue(st, &id, "webhook", "job.completed",
	    "{\"job\": \"rot-1\"}"), 0);
	assert_int_equal(id, 1);
	assert_int_equal(cf_store_notify_list(st, &nv, &n, -1, 0), 0);
	assert_int_equal(n, 1);
	cf_notify_recs_free(nv, n);
	expect_no_event(fx);

	/* the database itself refuses what the store would */
	assert_int_equal(sqlite3_open(fx->db, &h), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(h, "UPDATE notifications SET state = 'SENT'", NULL, NULL,
	    &err), SQLITE_OK);
	sqlite3_free(err);
	err = NULL;
	assert_int_not_equal(sqlite3_exec(h, "PRAGMA foreign_keys = ON; INSERT INTO job_targets("
	    "job_id, thing, added_at) VALUES ('no-such-job', 'sensor-1', 1)", NULL, NULL, &err),
	    SQLITE_OK);
	sqlite3_free(err);
	err = NULL;
	assert_int_not_equal(sqlite3_exec(h, "UPDATE job_targets SET released_at = -1", NULL, NULL,
	    &err), SQLITE_OK);
	sqlite3_free(err);
	sqlite3_close(h);
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
		cmocka_unit_test_setup_teardown(test_jobs_store__rotation_list_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__targets_lifecycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__targets_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__targets_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__targets_rollback_and_thing_delete,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__targets_ten_thousand, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_jobs_store__migration_from_version_3, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
