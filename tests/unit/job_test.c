/*
 * Unit tests for cf_job: every edge of the execution state machine, the
 * update rule, retries, rollout, abort, timeouts and maintenance windows,
 * at their exact boundaries. All times are fixed (2026-11-21 is a Saturday).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cf_job.h"

#define MIN 60
#define HOUR 3600
#define DAY (24 * HOUR)
#define SAT INT64_C(1795219200) /* 2026-11-21 00:00:00 UTC, a Saturday */
#define SUN (SAT + DAY)
#define MON (SAT + 2 * DAY)

/*
 * The expected state machine, written out independently of the table in
 * cf_job.c: every (from, to, who) listed here is allowed (force: only with
 * CF_JOB_FORCE), everything else is refused.
 */
static const struct {
	cf_exec_status from, to;
	cf_job_who who;
	int force;
} allowed[] = {
	{ CF_EXEC_QUEUED, CF_EXEC_IN_PROGRESS, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_QUEUED, CF_EXEC_REJECTED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_IN_PROGRESS, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_SUCCEEDED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_FAILED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_REJECTED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_QUEUED, CF_EXEC_CANCELED, CF_JOB_SERVER, 0 },
	{ CF_EXEC_QUEUED, CF_EXEC_REMOVED, CF_JOB_SERVER, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_TIMED_OUT, CF_JOB_SERVER, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_CANCELED, CF_JOB_SERVER, 1 },
	{ CF_EXEC_FAILED, CF_EXEC_QUEUED, CF_JOB_SERVER, 0 },
	{ CF_EXEC_TIMED_OUT, CF_EXEC_QUEUED, CF_JOB_SERVER, 0 },
};

#define N_ALLOWED (sizeof(allowed) / sizeof(allowed[0]))

static int
expected_row(cf_exec_status from, cf_exec_status to, cf_job_who who)
{
	size_t i;

	for (i = 0; i < N_ALLOWED; i++) {
		if (allowed[i].from == from && allowed[i].to == to && allowed[i].who == who)
			return (int)i;
	}
	return -1;
}

static void
test_job__every_edge_of_the_table(void **state)
{
	const cf_job_transition *t;
	size_t n;
	int from, to, who, force, row, edges = 0, allowed_edges = 0;

	(void)state;
	t = cf_job_transitions(&n);
	assert_non_null(t);
	assert_int_equal(n, N_ALLOWED);
	for (from = 0; from < CF_EXEC__COUNT; from++) {
		for (to = 0; to < CF_EXEC__COUNT; to++) {
			for (who = 0; who < CF_JOB_WHO__COUNT; who++) {
				for (force = 0; force <= 1; force++) {
					cf_proto_code code = CF_PROTO_CODE__COUNT;
					int r = cf_job_transition_check(&code, (cf_exec_status)from,
					    (cf_exec_status)to, (cf_job_who)who, force ? CF_JOB_FORCE : 0);

					edges++;
					row = expected_row((cf_exec_status)from, (cf_exec_status)to,
					    (cf_job_who)who);
					if (row >= 0 && (!allowed[row].force || force)) {
						assert_int_equal(r, 0);
						assert_int_equal(code, CF_PROTO_CODE__COUNT); /* untouched */
						allowed_edges++;
						continue;
					}
					assert_int_equal(r, CF_ESTATE);
					if (row < 0 && cf_job_status_terminal((cf_exec_status)from))
						assert_int_equal(code, CF_PROTO_TERMINAL_STATE_REACHED);
					else
						assert_int_equal(code, CF_PROTO_INVALID_STATE_TRANSITION);
				}
			}
		}
	}
	assert_int_equal(edges, CF_EXEC__COUNT * CF_EXEC__COUNT * CF_JOB_WHO__COUNT * 2);
	assert_int_equal(allowed_edges, 2 * (int)N_ALLOWED - 1); /* the force-only row once */
	/* out of range is a bad request, not a state error */
	assert_int_equal(cf_job_transition_check(NULL, CF_EXEC__COUNT, CF_EXEC_QUEUED,
	    CF_JOB_SERVER, 0), CF_EINVAL);
	assert_int_equal(cf_job_transition_check(NULL, CF_EXEC_QUEUED, CF_EXEC_IN_PROGRESS,
	    CF_JOB_WHO__COUNT, 0), CF_EINVAL);
	assert_string_equal(cf_job_who_name(CF_JOB_DEVICE), "device");
	assert_string_equal(cf_job_who_name(CF_JOB_SERVER), "server");
	assert_string_equal(cf_job_who_name(CF_JOB_WHO__COUNT), "unknown");
}

static void
test_job__terminal_statuses(void **state)
{
	(void)state;
	assert_false(cf_job_status_terminal(CF_EXEC_QUEUED));
	assert_false(cf_job_status_terminal(CF_EXEC_IN_PROGRESS));
	assert_true(cf_job_status_terminal(CF_EXEC_SUCCEEDED));
	assert_true(cf_job_status_terminal(CF_EXEC_FAILED));
	assert_true(cf_job_status_terminal(CF_EXEC_TIMED_OUT));
	assert_true(cf_job_status_terminal(CF_EXEC_REJECTED));
	assert_true(cf_job_status_terminal(CF_EXEC_REMOVED));
	assert_true(cf_job_status_terminal(CF_EXEC_CANCELED));
	assert_false(cf_job_status_terminal(CF_EXEC__COUNT));
}

static void
test_job__update_bumps_version(void **state)
{
	cf_job_exec e;
	cf_proto_code code;

	(void)state;
	cf_job_exec_init(&e);
	assert_int_equal(e.status, CF_EXEC_QUEUED);
	assert_int_equal(e.execution_number, 1);
	assert_int_equal(e.version_number, 1);
	assert_int_equal(cf_job_update(&e, &code, &e, CF_EXEC_IN_PROGRESS, 1), 0);
	assert_int_equal(e.status, CF_EXEC_IN_PROGRESS);
	assert_int_equal(e.version_number, 2);
	/* progress: same status, still a new version */
	assert_int_equal(cf_job_update(&e, &code, &e, CF_EXEC_IN_PROGRESS, 2), 0);
	assert_int_equal(e.version_number, 3);
	/* no expectedVersion: accepted at any version */
	assert_int_equal(cf_job_update(&e, &code, &e, CF_EXEC_IN_PROGRESS, -1), 0);
	assert_int_equal(e.version_number, 4);
	assert_int_equal(cf_job_update(&e, &code, &e, CF_EXEC_SUCCEEDED, 4), 0);
	assert_int_equal(e.status, CF_EXEC_SUCCEEDED);
	assert_int_equal(e.version_number, 5);
	assert_int_equal(e.execution_number, 1);
}

static void
test_job__version_mismatch_keeps_state(void **state)
{
	cf_job_exec e, out;
	cf_proto_code code = CF_PROTO_CODE__COUNT;

	(void)state;
	cf_job_exec_init(&e);
	assert_int_equal(cf_job_update(&e, &code, &e, CF_EXEC_IN_PROGRESS, 1), 0);
	memset(&out, 0xa5, sizeof(out));
	/* stale, and from the future */
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_SUCCEEDED, 1), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_VERSION_MISMATCH);
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_SUCCEEDED, 3), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_VERSION_MISMATCH);
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_SUCCEEDED, 0), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_VERSION_MISMATCH);
	assert_non_null(strstr(cf_error_last(), "version 2"));
	/* out untouched on failure, cur unchanged */
	assert_int_equal(out.version_number, (int64_t)0xa5a5a5a5a5a5a5a5ULL);
	assert_int_equal(e.status, CF_EXEC_IN_PROGRESS);
	assert_int_equal(e.version_number, 2);
	/* right version, wrong move */
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_QUEUED, 2), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_INVALID_STATE_TRANSITION);
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_TIMED_OUT, 2), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_INVALID_STATE_TRANSITION);
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_CANCELED, 2), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_INVALID_STATE_TRANSITION);
	/* a QUEUED execution cannot succeed without being started */
	cf_job_exec_init(&e);
	assert_int_equal(cf_job_update(&out, &code, &e, CF_EXEC_SUCCEEDED, 1), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_INVALID_STATE_TRANSITION);
	/* a NULL code is fine */
	assert_int_equal(cf_job_update(&out, NULL, &e, CF_EXEC_SUCCEEDED, 9), CF_ESTATE);
}

static void
test_job__terminal_states_refuse_updates(void **state)
{
	static const cf_exec_status terminal[] = { CF_EXEC_SUCCEEDED, CF_EXEC_FAILED,
		CF_EXEC_TIMED_OUT, CF_EXEC_REJECTED, CF_EXEC_REMOVED, CF_EXEC_CANCELED };
	cf_job_exec e, out;
	cf_proto_code code;
	size_t i;
	int to;

	(void)state;
	for (i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++) {
		cf_job_exec_init(&e);
		e.status = terminal[i];
		e.version_number = 7;
		for (to = 0; to < CF_EXEC__COUNT; to++) {
			/* right version, stale version, none: TerminalStateReached wins */
			code = CF_PROTO_CODE__COUNT;
			assert_int_equal(cf_job_update(&out, &code, &e, (cf_exec_status)to, 7), CF_ESTATE);
			assert_int_equal(code, CF_PROTO_TERMINAL_STATE_REACHED);
			assert_int_equal(cf_job_update(&out, &code, &e, (cf_exec_status)to, 3), CF_ESTATE);
			assert_int_equal(code, CF_PROTO_TERMINAL_STATE_REACHED);
			assert_int_equal(cf_job_update(&out, &code, &e, (cf_exec_status)to, -1), CF_ESTATE);
			assert_int_equal(code, CF_PROTO_TERMINAL_STATE_REACHED);
		}
		assert_int_equal(e.version_number, 7);
	}
}

static void
test_job__server_moves(void **state)
{
	cf_job_exec q, ip, out;
	cf_proto_code code;

	(void)state;
	cf_job_exec_init(&q);
	assert_int_equal(cf_job_update(&ip, &code, &q, CF_EXEC_IN_PROGRESS, 1), 0);

	assert_int_equal(cf_job_server_move(&out, &code, &q, CF_EXEC_CANCELED, 0), 0);
	assert_int_equal(out.status, CF_EXEC_CANCELED);
	assert_int_equal(out.version_number, 2);
	assert_int_equal(cf_job_server_move(&out, &code, &q, CF_EXEC_REMOVED, 0), 0);
	assert_int_equal(out.status, CF_EXEC_REMOVED);
	/* a plain cancel leaves IN_PROGRESS alone; a force-cancel ends it */
	assert_int_equal(cf_job_server_move(&out, &code, &ip, CF_EXEC_CANCELED, 0), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_INVALID_STATE_TRANSITION);
	assert_int_equal(cf_job_server_move(&out, &code, &ip, CF_EXEC_CANCELED, CF_JOB_FORCE), 0);
	assert_int_equal(out.status, CF_EXEC_CANCELED);
	assert_int_equal(out.version_number, 3);
	assert_int_equal(cf_job_server_move(&out, &code, &ip, CF_EXEC_TIMED_OUT, 0), 0);
	assert_int_equal(out.status, CF_EXEC_TIMED_OUT);
	/* the server never reports a device's outcome */
	assert_int_equal(cf_job_server_move(&out, &code, &ip, CF_EXEC_SUCCEEDED, CF_JOB_FORCE),
	    CF_ESTATE);
	/* canceling twice: the second says the execution is over */
	assert_int_equal(cf_job_server_move(&out, &code, &q, CF_EXEC_CANCELED, 0), 0);
	assert_int_equal(cf_job_server_move(&out, &code, &out, CF_EXEC_CANCELED, CF_JOB_FORCE),
	    CF_ESTATE);
	assert_int_equal(code, CF_PROTO_TERMINAL_STATE_REACHED);
	/* the device cannot use the server's moves */
	assert_int_equal(cf_job_update(&out, &code, &ip, CF_EXEC_CANCELED, -1), CF_ESTATE);

	assert_true(cf_job_cancel_applies(CF_EXEC_QUEUED, 0));
	assert_true(cf_job_cancel_applies(CF_EXEC_QUEUED, 1));
	assert_false(cf_job_cancel_applies(CF_EXEC_IN_PROGRESS, 0));
	assert_true(cf_job_cancel_applies(CF_EXEC_IN_PROGRESS, 1));
	assert_false(cf_job_cancel_applies(CF_EXEC_SUCCEEDED, 1));
	assert_false(cf_job_cancel_applies(CF_EXEC_FAILED, 1));
	assert_false(cf_job_cancel_applies(CF_EXEC_CANCELED, 1));
}

/* Runs attempts ending in `end` until no retry is due; returns how many attempts were made. */
static int
attempts_until_done(const cf_job_retry_policy *p, cf_exec_status end, cf_job_exec *e)
{
	cf_proto_code code;
	int attempts = 0;
	int64_t last_version = 0;

	cf_job_exec_init(e);
	for (;;) {
		attempts++;
		assert_int_equal(e->execution_number, attempts);
		assert_true(e->version_number > last_version);
		assert_int_equal(cf_job_update(e, &code, e, CF_EXEC_IN_PROGRESS, e->version_number), 0);
		if (end == CF_EXEC_TIMED_OUT)
			assert_int_equal(cf_job_server_move(e, &code, e, end, 0), 0);
		else
			assert_int_equal(cf_job_update(e, &code, e, end, e->version_number), 0);
		last_version = e->version_number;
		if (!cf_job_retry_due(p, e))
			break;
		assert_int_equal(cf_job_server_move(e, &code, e, CF_EXEC_QUEUED, 0), 0);
		assert_int_equal(e->status, CF_EXEC_QUEUED);
	}
	return attempts;
}

static void
test_job__retries_count_down(void **state)
{
	cf_job_retry_criterion c[] = { { CF_JOB_FAILURE_FAILED, 2 },
		{ CF_JOB_FAILURE_TIMED_OUT, 1 } };
	cf_job_retry_policy p;
	cf_job_exec e;
	cf_proto_code code;

	(void)state;
	assert_int_equal(cf_job_retry_policy_from(&p, c, 2), 0);
	assert_int_equal(p.failed, 2);
	assert_int_equal(p.timed_out, 1);
	assert_int_equal(attempts_until_done(&p, CF_EXEC_FAILED, &e), 3);
	assert_int_equal(e.retries_failed, 2);
	assert_int_equal(e.status, CF_EXEC_FAILED);
	/* versions never repeat across attempts: 1, + 2 per attempt, + 1 per retry */
	assert_int_equal(e.version_number, 1 + 3 * 2 + 2);
	assert_int_equal(attempts_until_done(&p, CF_EXEC_TIMED_OUT, &e), 2);
	assert_int_equal(e.retries_timed_out, 1);
	/* REJECTED is never retried */
	assert_int_equal(attempts_until_done(&p, CF_EXEC_REJECTED, &e), 1);
	/* the budgets are separate: a FAILED after a TIMED_OUT retry still has its own */
	cf_job_exec_init(&e);
	e.status = CF_EXEC_FAILED;
	e.retries_timed_out = 1;
	assert_true(cf_job_retry_due(&p, &e));
	/* a retry needs a retryable status in the table too */
	cf_job_exec_init(&e);
	e.status = CF_EXEC_SUCCEEDED;
	assert_false(cf_job_retry_due(&p, &e));
	assert_int_equal(cf_job_server_move(&e, &code, &e, CF_EXEC_QUEUED, 0), CF_ESTATE);
	assert_int_equal(code, CF_PROTO_TERMINAL_STATE_REACHED);
	/* no criteria: no retries */
	assert_int_equal(cf_job_retry_policy_from(&p, NULL, 0), 0);
	assert_int_equal(attempts_until_done(&p, CF_EXEC_FAILED, &e), 1);
}

static void
test_job__retry_policy_all_and_overrides(void **state)
{
	cf_job_retry_criterion all_last[] = { { CF_JOB_FAILURE_FAILED, 1 },
		{ CF_JOB_FAILURE_ALL, 4 } };
	cf_job_retry_criterion all_only[] = { { CF_JOB_FAILURE_ALL, 10 } };
	cf_job_retry_criterion bad;
	cf_job_retry_criterion twice[] = { { CF_JOB_FAILURE_FAILED, 1 },
		{ CF_JOB_FAILURE_FAILED, 2 } };
	cf_job_retry_policy p;

	(void)state;
	assert_int_equal(cf_job_retry_policy_from(&p, all_last, 2), 0);
	assert_int_equal(p.failed, 1);
	assert_int_equal(p.timed_out, 4);
	assert_int_equal(cf_job_retry_policy_from(&p, all_only, 1), 0);
	assert_int_equal(p.failed, 10);
	assert_int_equal(p.timed_out, 10);
	bad = (cf_job_retry_criterion){ CF_JOB_FAILURE_REJECTED, 1 };
	assert_int_equal(cf_job_retry_policy_from(&p, &bad, 1), CF_EINVAL);
	bad = (cf_job_retry_criterion){ CF_JOB_FAILURE_FAILED, 11 };
	assert_int_equal(cf_job_retry_policy_from(&p, &bad, 1), CF_EINVAL);
	bad = (cf_job_retry_criterion){ CF_JOB_FAILURE_FAILED, -1 };
	assert_int_equal(cf_job_retry_policy_from(&p, &bad, 1), CF_EINVAL);
	bad = (cf_job_retry_criterion){ CF_JOB_FAILURE__COUNT, 1 };
	assert_int_equal(cf_job_retry_policy_from(&p, &bad, 1), CF_EINVAL);
	assert_int_equal(cf_job_retry_policy_from(&p, twice, 2), CF_EINVAL);
	bad = (cf_job_retry_criterion){ CF_JOB_FAILURE_TIMED_OUT, 0 };
	assert_int_equal(cf_job_retry_policy_from(&p, &bad, 1), 0);
	assert_int_equal(p.timed_out, 0);
}

static void
test_job__rollout_max_per_minute(void **state)
{
	cf_job_rollout ro = { .max_per_minute = 5 };
	cf_job_rollout_state st;
	int64_t t0 = MON + 10 * HOUR + 17, t, released = 0, n;
	int minute;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(cf_job_rollout_validate(&ro), 0);
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0), 5);
	assert_int_equal(cf_job_rollout_next_at(&ro, &st, t0), t0);
	/* a tick every 10 s for 4 minutes, 17 pending things: 5, 5, 5, 2 */
	for (minute = 0; minute < 4; minute++) {
		int64_t in_minute = 0;

		for (t = t0 + minute * MIN; t < t0 + (minute + 1) * MIN; t += 10) {
			n = cf_job_rollout_allowance(&ro, &st, t);
			if (n > 17 - released)
				n = 17 - released;
			cf_job_rollout_record(&st, t, n);
			released += n;
			in_minute += n;
		}
		assert_int_equal(in_minute, minute < 3 ? 5 : 2);
	}
	assert_int_equal(st.notified, 17);
	/* one at a time: the sixth in a minute waits for the next window */
	memset(&st, 0, sizeof(st));
	for (n = 0; n < 5; n++) {
		assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0 + n), 5 - n);
		cf_job_rollout_record(&st, t0 + n, 1);
	}
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0 + 59), 0);
	assert_int_equal(cf_job_rollout_next_at(&ro, &st, t0 + 30), t0 + MIN);
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0 + MIN), 5);
	/* windows count from the rollout's start, not from wall-clock minutes */
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0 + MIN - 1), 0);
	/* a quiet stretch does not bank releases */
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0 + 10 * MIN + 5), 5);
	cf_job_rollout_record(&st, t0 + 10 * MIN + 5, 5);
	assert_int_equal(st.window_start, t0 + 10 * MIN);
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, t0 + 11 * MIN - 1), 0);
	assert_int_equal(cf_job_rollout_next_at(&ro, &st, t0 + 10 * MIN + 30), t0 + 11 * MIN);
}

static void
test_job__ramp_steps_up_after_successes(void **state)
{
	cf_job_rollout ro = { .max_per_minute = 20, .base_per_minute = 2,
		.increment_factor = 2.0, .succeeded_step = 3 };
	cf_job_rollout_state st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(cf_job_rollout_validate(&ro), 0);
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 2);
	cf_job_rollout_record(&st, MON, 2);
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, MON + 1), 0);
	st.succeeded = 2;
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 2);
	st.succeeded = 3; /* one step: 4 per minute, 2 more in this very minute */
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 4);
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, MON + 1), 2);
	st.succeeded = 5;
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 4);
	st.succeeded = 6;
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 8);
	st.succeeded = 9;
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 16);
	st.succeeded = 12; /* 32, capped */
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 20);
	st.succeeded = 1000000000;
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 20);
	/* notified counts do not matter for a success ramp */
	memset(&st, 0, sizeof(st));
	st.notified = 100;
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 2);
}

static void
test_job__ramp_after_notified_rounds_down(void **state)
{
	cf_job_rollout ro = { .max_per_minute = 1000, .base_per_minute = 10,
		.increment_factor = 1.5, .notified_step = 10 };
	cf_job_rollout_state st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(cf_job_rollout_validate(&ro), 0);
	cf_job_rollout_record(&st, MON, 10);
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 15);
	assert_int_equal(cf_job_rollout_allowance(&ro, &st, MON + 59), 5);
	cf_job_rollout_record(&st, MON + 59, 5);
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 15); /* 15 / 10 = 1 step */
	cf_job_rollout_record(&st, MON + 60, 5);
	assert_int_equal(st.window_notified, 5);
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 22); /* 22.5 */
	cf_job_rollout_record(&st, MON + 60, 10);
	assert_int_equal(cf_job_rollout_rate(&ro, &st), 33); /* 33.75 */
}

static void
test_job__rollout_validate(void **state)
{
	cf_job_rollout ro;

	(void)state;
	ro = (cf_job_rollout){ .max_per_minute = 0 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 1001 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 1000 };
	assert_int_equal(cf_job_rollout_validate(&ro), 0);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = 11,
		.increment_factor = 2, .notified_step = 1 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = 1,
		.increment_factor = 1.0, .notified_step = 1 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = 1,
		.increment_factor = 5.1, .notified_step = 1 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = 1,
		.increment_factor = 2, .notified_step = 1, .succeeded_step = 1 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = 1, .increment_factor = 2 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = -1 };
	assert_int_equal(cf_job_rollout_validate(&ro), CF_EINVAL);
	ro = (cf_job_rollout){ .max_per_minute = 10, .base_per_minute = 1,
		.increment_factor = 1.1, .succeeded_step = 1 };
	assert_int_equal(cf_job_rollout_validate(&ro), 0);
}

static void
test_job__abort_thresholds(void **state)
{
	cf_job_abort_criterion c[] = {
		{ CF_JOB_FAILURE_FAILED, 10.0, 20 },
		{ CF_JOB_FAILURE_ALL, 50.0, 4 },
	};
	cf_job_counts k;
	size_t which = 99;

	(void)state;
	assert_int_equal(cf_job_abort_validate(c, 2), 0);
	/* 20 executed: 1 failed (5 %) below, 2 (10 %) at, 3 (15 %) above */
	k = (cf_job_counts){ .succeeded = 19, .failed = 1 };
	assert_false(cf_job_abort_due(&which, c, 2, &k));
	k = (cf_job_counts){ .succeeded = 18, .failed = 2 };
	assert_true(cf_job_abort_due(&which, c, 2, &k));
	assert_int_equal(which, 0);
	k = (cf_job_counts){ .succeeded = 17, .failed = 3 };
	assert_true(cf_job_abort_due(&which, c, 2, &k));
	/* minimum executed not reached: 2 of 19 is over 10 % but too early */
	k = (cf_job_counts){ .succeeded = 17, .failed = 2 };
	assert_false(cf_job_abort_due(&which, c, 2, &k));
	/* other failure types do not count for FAILED, but do for ALL */
	k = (cf_job_counts){ .succeeded = 17, .rejected = 1, .timed_out = 2 };
	assert_false(cf_job_abort_due(&which, c, 2, &k));
	k = (cf_job_counts){ .succeeded = 2, .rejected = 1, .timed_out = 1 };
	assert_true(cf_job_abort_due(&which, c, 2, &k));
	assert_int_equal(which, 1);
	k = (cf_job_counts){ .succeeded = 2, .rejected = 1 }; /* 3 executed < 4 */
	assert_false(cf_job_abort_due(&which, c, 2, &k));
	k = (cf_job_counts){ .succeeded = 3, .failed = 1, .rejected = 1 }; /* 40 % < 50 % */
	assert_false(cf_job_abort_due(NULL, c, 2, &k));
	/* nothing executed, no criteria */
	k = (cf_job_counts){ 0 };
	assert_false(cf_job_abort_due(&which, c, 2, &k));
	k = (cf_job_counts){ .failed = 100 };
	assert_false(cf_job_abort_due(&which, c, 0, &k));
	/* a fractional threshold, exactly at it: 1 of 8 = 12.5 % */
	c[0] = (cf_job_abort_criterion){ CF_JOB_FAILURE_TIMED_OUT, 12.5, 8 };
	k = (cf_job_counts){ .succeeded = 7, .timed_out = 1 };
	assert_true(cf_job_abort_due(&which, c, 1, &k));
	k = (cf_job_counts){ .succeeded = 8, .timed_out = 1 };
	assert_false(cf_job_abort_due(&which, c, 1, &k));
	/* 100 %: only when everything failed */
	c[0] = (cf_job_abort_criterion){ CF_JOB_FAILURE_REJECTED, 100.0, 1 };
	k = (cf_job_counts){ .rejected = 3 };
	assert_true(cf_job_abort_due(&which, c, 1, &k));
	k = (cf_job_counts){ .rejected = 3, .succeeded = 1 };
	assert_false(cf_job_abort_due(&which, c, 1, &k));
}

static void
test_job__abort_validate(void **state)
{
	cf_job_abort_criterion c;
	cf_job_abort_criterion many[CF_JOB_ABORT_MAX + 1];
	size_t i;

	(void)state;
	c = (cf_job_abort_criterion){ CF_JOB_FAILURE_ALL, 0.0, 1 };
	assert_int_equal(cf_job_abort_validate(&c, 1), CF_EINVAL);
	c = (cf_job_abort_criterion){ CF_JOB_FAILURE_ALL, 100.1, 1 };
	assert_int_equal(cf_job_abort_validate(&c, 1), CF_EINVAL);
	c = (cf_job_abort_criterion){ CF_JOB_FAILURE_ALL, 10, 0 };
	assert_int_equal(cf_job_abort_validate(&c, 1), CF_EINVAL);
	c = (cf_job_abort_criterion){ CF_JOB_FAILURE__COUNT, 10, 1 };
	assert_int_equal(cf_job_abort_validate(&c, 1), CF_EINVAL);
	for (i = 0; i < CF_JOB_ABORT_MAX + 1; i++)
		many[i] = (cf_job_abort_criterion){ CF_JOB_FAILURE_FAILED, 10, 1 };
	assert_int_equal(cf_job_abort_validate(many, CF_JOB_ABORT_MAX), 0);
	assert_int_equal(cf_job_abort_validate(many, CF_JOB_ABORT_MAX + 1), CF_EINVAL);
	assert_int_equal(cf_job_abort_validate(NULL, 0), 0);
}

static void
test_job__timeouts_at_the_exact_boundary(void **state)
{
	cf_job_timeouts t = { .in_progress_s = 600, .step_s = 120 };
	int64_t s = MON;

	(void)state;
	assert_int_equal(cf_job_timeouts_validate(&t), 0);
	/* the step timer runs out first */
	assert_int_equal(cf_job_timeout_deadline(&t, s, s), s + 120);
	assert_false(cf_job_timed_out(&t, s, s, s + 119));
	assert_true(cf_job_timed_out(&t, s, s, s + 120));
	/* progress restarts the step, but never beyond the in-progress limit */
	assert_int_equal(cf_job_timeout_deadline(&t, s, s + 100), s + 220);
	assert_int_equal(cf_job_timeout_deadline(&t, s, s + 500), s + 600);
	assert_false(cf_job_timed_out(&t, s, s + 500, s + 599));
	assert_true(cf_job_timed_out(&t, s, s + 500, s + 600));
	/* each alone, and neither */
	t = (cf_job_timeouts){ .in_progress_s = 600 };
	assert_int_equal(cf_job_timeout_deadline(&t, s, s + 590), s + 600);
	t = (cf_job_timeouts){ .step_s = 60 };
	assert_int_equal(cf_job_timeout_deadline(&t, s, s + 590), s + 650);
	t = (cf_job_timeouts){ 0 };
	assert_int_equal(cf_job_timeout_deadline(&t, s, s), CF_JOB_NEVER);
	assert_false(cf_job_timed_out(&t, s, s, INT64_MAX - 1));
	/* limits */
	t = (cf_job_timeouts){ .in_progress_s = CF_JOB_TIMEOUT_MAX, .step_s = CF_JOB_TIMEOUT_MAX };
	assert_int_equal(cf_job_timeouts_validate(&t), 0);
	t = (cf_job_timeouts){ .in_progress_s = CF_JOB_TIMEOUT_MAX + 1 };
	assert_int_equal(cf_job_timeouts_validate(&t), CF_EINVAL);
	t = (cf_job_timeouts){ .step_s = -1 };
	assert_int_equal(cf_job_timeouts_validate(&t), CF_EINVAL);
}

static void
test_job__daily_window_across_midnight(void **state)
{
	cf_job_window w = { .weekday = CF_JOB_DAILY, .start_minute = 23 * 60, .duration_min = 120 };

	(void)state;
	assert_false(cf_job_window_contains(&w, MON + 23 * HOUR - 1));
	assert_true(cf_job_window_contains(&w, MON + 23 * HOUR));
	assert_true(cf_job_window_contains(&w, MON + DAY)); /* midnight */
	assert_true(cf_job_window_contains(&w, MON + DAY + HOUR - 1));
	assert_false(cf_job_window_contains(&w, MON + DAY + HOUR));
	/* the morning after midnight belongs to the previous evening's window */
	assert_true(cf_job_window_contains(&w, MON + 30 * MIN));
	assert_false(cf_job_window_contains(&w, MON + 12 * HOUR));
	assert_int_equal(cf_job_window_next_start(&w, MON + 12 * HOUR), MON + 23 * HOUR);
	/* strictly after: at an opening, the next is a day later */
	assert_int_equal(cf_job_window_next_start(&w, MON + 23 * HOUR), MON + 47 * HOUR);
	assert_int_equal(cf_job_window_next_start(&w, MON + 23 * HOUR - 1), MON + 23 * HOUR);
	assert_int_equal(cf_job_window_next_start(&w, MON + DAY + 30 * MIN), MON + 47 * HOUR);
	/* all day */
	w = (cf_job_window){ .weekday = CF_JOB_DAILY, .start_minute = 0, .duration_min = 1440 };
	assert_true(cf_job_window_contains(&w, MON));
	assert_true(cf_job_window_contains(&w, MON - 1));
	/* before the epoch too (floor, not truncating division) */
	w = (cf_job_window){ .weekday = CF_JOB_DAILY, .start_minute = 23 * 60, .duration_min = 60 };
	assert_true(cf_job_window_contains(&w, -1));
	assert_false(cf_job_window_contains(&w, -HOUR - 1));
}

static void
test_job__weekly_window_wraps_the_week(void **state)
{
	/* Saturday 22:00 for 4 hours: into Sunday, across the week's edge */
	cf_job_window w = { .weekday = 6, .start_minute = 22 * 60, .duration_min = 240 };
	cf_job_window sun = { .weekday = 0, .start_minute = 0, .duration_min = 60 };

	(void)state;
	assert_false(cf_job_window_contains(&w, SAT + 22 * HOUR - 1));
	assert_true(cf_job_window_contains(&w, SAT + 22 * HOUR));
	assert_true(cf_job_window_contains(&w, SUN));
	assert_true(cf_job_window_contains(&w, SUN + 2 * HOUR - 1));
	assert_false(cf_job_window_contains(&w, SUN + 2 * HOUR));
	assert_false(cf_job_window_contains(&w, MON + 22 * HOUR)); /* Monday is not Saturday */
	assert_true(cf_job_window_contains(&w, SAT + 7 * DAY + 23 * HOUR));
	assert_int_equal(cf_job_window_next_start(&w, SUN + 2 * HOUR), SAT + 7 * DAY + 22 * HOUR);
	assert_int_equal(cf_job_window_next_start(&w, SAT), SAT + 22 * HOUR);
	assert_int_equal(cf_job_window_next_start(&w, SAT + 22 * HOUR), SAT + 7 * DAY + 22 * HOUR);
	/* Sunday 00:00 is the start of our week */
	assert_true(cf_job_window_contains(&sun, SUN));
	assert_false(cf_job_window_contains(&sun, SUN - 1));
	assert_int_equal(cf_job_window_next_start(&sun, SUN - 1), SUN);
	/* the whole week */
	w = (cf_job_window){ .weekday = 3, .start_minute = 0, .duration_min = 10080 };
	assert_true(cf_job_window_contains(&w, SAT));
	assert_true(cf_job_window_contains(&w, MON + 12345));
}

static void
test_job__schedule_start_end_and_windows(void **state)
{
	cf_job_schedule s;

	(void)state;
	memset(&s, 0, sizeof(s));
	/* no schedule: always */
	assert_int_equal(cf_job_schedule_validate(&s), 0);
	assert_true(cf_job_schedule_may_start(&s, MON));
	assert_int_equal(cf_job_schedule_next_start(&s, MON), MON);
	assert_false(cf_job_schedule_ended(&s, INT64_MAX));

	/* from Monday 08:00 to Friday 00:00, nightly 01:00-03:00 and Saturday 22:00 for 4 h */
	s.start_at = MON + 8 * HOUR;
	s.end_at = MON + 4 * DAY;
	s.end_behavior = CF_JOB_END_CANCEL;
	assert_int_equal(cf_job_window_parse(&s.windows[0], "daily@01:00+120"), 0);
	assert_int_equal(cf_job_window_parse(&s.windows[1], "sat@22:00+240"), 0);
	s.n_windows = 2;
	assert_int_equal(cf_job_schedule_validate(&s), 0);
	/* Monday 01:30 is inside a window but before the start */
	assert_false(cf_job_schedule_may_start(&s, MON + 90 * MIN));
	assert_int_equal(cf_job_schedule_next_start(&s, MON + 90 * MIN), MON + DAY + HOUR);
	assert_false(cf_job_schedule_may_start(&s, MON + 9 * HOUR));
	assert_true(cf_job_schedule_may_start(&s, MON + DAY + HOUR));
	assert_int_equal(cf_job_schedule_next_start(&s, MON + DAY + 90 * MIN), MON + DAY + 90 * MIN);
	assert_false(cf_job_schedule_may_start(&s, MON + DAY + 3 * HOUR));
	/* Thursday's window opens before the end; Friday's would be after it */
	assert_int_equal(cf_job_schedule_next_start(&s, MON + 2 * DAY + 4 * HOUR),
	    MON + 3 * DAY + HOUR);
	assert_int_equal(cf_job_schedule_next_start(&s, MON + 3 * DAY + 4 * HOUR), CF_JOB_NEVER);
	assert_false(cf_job_schedule_ended(&s, MON + 4 * DAY - 1));
	assert_true(cf_job_schedule_ended(&s, MON + 4 * DAY));
	assert_int_equal(cf_job_schedule_next_start(&s, MON + 5 * DAY), CF_JOB_NEVER);
	/* an end inside a window cuts it short */
	s.end_at = MON + DAY + 2 * HOUR;
	assert_true(cf_job_schedule_may_start(&s, MON + DAY + 2 * HOUR - 1));
	assert_false(cf_job_schedule_may_start(&s, MON + DAY + 2 * HOUR));

	/* invalid schedules */
	s.end_at = s.start_at;
	assert_int_equal(cf_job_schedule_validate(&s), CF_EINVAL);
	s.end_at = 0;
	s.end_behavior = CF_JOB_END__COUNT;
	assert_int_equal(cf_job_schedule_validate(&s), CF_EINVAL);
	s.end_behavior = CF_JOB_END_FORCE_CANCEL;
	s.windows[1].duration_min = 0;
	assert_int_equal(cf_job_schedule_validate(&s), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "maintenance window 2"));
	s.windows[1].duration_min = 60;
	s.n_windows = CF_JOB_WINDOWS_MAX + 1;
	assert_int_equal(cf_job_schedule_validate(&s), CF_EINVAL);
}

static void
test_job__end_behaviour(void **state)
{
	int st;

	(void)state;
	for (st = 0; st < CF_EXEC__COUNT; st++) {
		cf_exec_status s = (cf_exec_status)st;

		assert_false(cf_job_end_applies(CF_JOB_END_STOP_ROLLOUT, s));
		assert_int_equal(cf_job_end_applies(CF_JOB_END_CANCEL, s), s == CF_EXEC_QUEUED);
		assert_int_equal(cf_job_end_applies(CF_JOB_END_FORCE_CANCEL, s),
		    s == CF_EXEC_QUEUED || s == CF_EXEC_IN_PROGRESS);
		assert_false(cf_job_end_applies(CF_JOB_END__COUNT, s));
	}
}

static void
test_job__window_parse_and_format(void **state)
{
	static const char *const good[] = { "daily@00:00+1", "daily@23:59+1440", "sun@00:00+60",
		"sat@22:00+240", "wed@12:30+10080" };
	static const char *const bad[] = { "", "sat", "sat@", "sat@22:00", "sat@22:00+",
		"sat@22:00+0", "sat@24:00+10", "sat@22:60+10", "sat@2:00+10", "sat@22:00+-5",
		"sat@22:00+10x", "Sat@22:00+10", "saturday@22:00+10", "daily@01:00+1441",
		"sat@22:00+10081", "@22:00+10", "sat@22:00 +10", "sat@22:00+99999999999999999999" };
	cf_job_window w;
	char buf[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(cf_job_window_parse(&w, good[i]), 0);
		assert_int_equal(cf_job_window_format(buf, sizeof(buf), &w), 0);
		assert_string_equal(buf, good[i]);
	}
	assert_int_equal(cf_job_window_parse(&w, "sat@22:00+240"), 0);
	assert_int_equal(w.weekday, 6);
	assert_int_equal(w.start_minute, 22 * 60);
	assert_int_equal(w.duration_min, 240);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w = (cf_job_window){ 1, 2, 3 };
		assert_int_equal(cf_job_window_parse(&w, bad[i]), CF_EINVAL);
		assert_int_equal(w.weekday, 1); /* untouched */
	}
	assert_int_equal(cf_job_window_parse(&w, NULL), CF_EINVAL);
	w = (cf_job_window){ 7, 0, 10 };
	assert_int_equal(cf_job_window_format(buf, sizeof(buf), &w), CF_EINVAL);
	w = (cf_job_window){ 6, 0, 10 };
	assert_int_equal(cf_job_window_format(buf, 4, &w), CF_EINVAL); /* too small */
}

static void
test_job__names_round_trip(void **state)
{
	cf_job_failure f;
	cf_job_end e;
	int i;

	(void)state;
	for (i = 0; i < CF_JOB_FAILURE__COUNT; i++) {
		assert_int_equal(cf_job_failure_parse(&f, cf_job_failure_name((cf_job_failure)i)), 0);
		assert_int_equal(f, i);
	}
	for (i = 0; i < CF_JOB_END__COUNT; i++) {
		assert_int_equal(cf_job_end_parse(&e, cf_job_end_name((cf_job_end)i)), 0);
		assert_int_equal(e, i);
	}
	assert_string_equal(cf_job_failure_name(CF_JOB_FAILURE_TIMED_OUT), "TIMED_OUT");
	assert_string_equal(cf_job_end_name(CF_JOB_END_FORCE_CANCEL), "FORCE_CANCEL");
	assert_string_equal(cf_job_failure_name(CF_JOB_FAILURE__COUNT), "UNKNOWN");
	assert_string_equal(cf_job_end_name(CF_JOB_END__COUNT), "UNKNOWN");
	assert_int_equal(cf_job_failure_parse(&f, "failed"), CF_EINVAL);
	assert_int_equal(cf_job_failure_parse(&f, NULL), CF_EINVAL);
	assert_int_equal(cf_job_end_parse(&e, "CANCEL "), CF_EINVAL);
	assert_int_equal(cf_job_end_parse(&e, ""), CF_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_job__every_edge_of_the_table),
		cmocka_unit_test(test_job__terminal_statuses),
		cmocka_unit_test(test_job__update_bumps_version),
		cmocka_unit_test(test_job__version_mismatch_keeps_state),
		cmocka_unit_test(test_job__terminal_states_refuse_updates),
		cmocka_unit_test(test_job__server_moves),
		cmocka_unit_test(test_job__retries_count_down),
		cmocka_unit_test(test_job__retry_policy_all_and_overrides),
		cmocka_unit_test(test_job__rollout_max_per_minute),
		cmocka_unit_test(test_job__ramp_steps_up_after_successes),
		cmocka_unit_test(test_job__ramp_after_notified_rounds_down),
		cmocka_unit_test(test_job__rollout_validate),
		cmocka_unit_test(test_job__abort_thresholds),
		cmocka_unit_test(test_job__abort_validate),
		cmocka_unit_test(test_job__timeouts_at_the_exact_boundary),
		cmocka_unit_test(test_job__daily_window_across_midnight),
		cmocka_unit_test(test_job__weekly_window_wraps_the_week),
		cmocka_unit_test(test_job__schedule_start_end_and_windows),
		cmocka_unit_test(test_job__end_behaviour),
		cmocka_unit_test(test_job__window_parse_and_format),
		cmocka_unit_test(test_job__names_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
