/*
 * cf_job — the rules of the jobs engine (DESIGN §7) as pure functions: the
 * execution state machine as a table, the versionNumber/expectedVersion
 * update rule, retries by failure type, the rollout rate (maximum per
 * minute or an exponential ramp), abort criteria, in-progress and step
 * timeouts, and scheduling with recurring maintenance windows.
 *
 * No I/O, no store, no clock: every time is a parameter (seconds since the
 * epoch, UTC), so certfleetd calls these from its reactor and the tests
 * are exact. The execution status enum and the stable error codes belong
 * to the protocol module (cf_proto.h); the job document too.
 * docs/jobs.md explains the semantics with examples.
 */
#ifndef CF_JOB_H
#define CF_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"
#include "cf_proto.h"

#define CF_JOB_NEVER INT64_MAX /* a deadline or start time that never comes */

/* ---- the execution state machine ---------------------------------------- */

/* Who asks for a transition. */
typedef enum {
	CF_JOB_DEVICE, /* the thing itself, through jobs/<jobId>/update */
	CF_JOB_SERVER, /* certfleetd: cancel, abort, timeouts, target changes, retries, schedule end */
	CF_JOB_WHO__COUNT
} cf_job_who;

/* Flags of a table row, and of a request (cf_job_transition_check). */
#define CF_JOB_FORCE 0x1u /* row: only with a force-cancel; request: this is one */
#define CF_JOB_RETRY 0x2u /* row: the move starts a new attempt (executionNumber + 1) */

typedef struct {
	cf_exec_status from;
	cf_exec_status to;
	cf_job_who who;
	unsigned flags;
} cf_job_transition;

/* The table itself (borrowed, static) and its length, for docs and tests. */
const cf_job_transition *cf_job_transitions(size_t *out_n);

/* "device", "server"; "unknown" otherwise. Static string. */
const char *cf_job_who_name(cf_job_who who);

/* 1 for SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED and CANCELED, else 0. */
int cf_job_status_terminal(cf_exec_status s);

/*
 * Whether who may move an execution from one status to another. flags is 0
 * or CF_JOB_FORCE (a row marked CF_JOB_FORCE needs it; the others allow it).
 * 0 if a row allows it. CF_ESTATE with a message otherwise, and when code
 * is not NULL the errorCode to answer with: TerminalStateReached when from
 * is terminal and no row leaves it for who, else InvalidStateTransition.
 */
int cf_job_transition_check(cf_proto_code *code, cf_exec_status from, cf_exec_status to,
    cf_job_who who, unsigned flags) CF_MUST_CHECK;

/* ---- one execution and the update rule ---------------------------------- */

/*
 * What the engine keeps per (job, thing). versionNumber starts at 1 and grows
 * by one on every accepted change, including a retry, so that it never
 * repeats for a (job, thing): a delayed update from an earlier attempt can
 * never match the current one's version.
 */
typedef struct {
	cf_exec_status status;
	int64_t execution_number;  /* 1 for the first attempt, + 1 per retry */
	int64_t version_number;    /* >= 1 */
	int retries_failed;        /* retries already made after FAILED */
	int retries_timed_out;     /* ... after TIMED_OUT */
} cf_job_exec;

/* A fresh QUEUED execution: executionNumber 1, versionNumber 1, no retries. */
void cf_job_exec_init(cf_job_exec *out);

/*
 * A device's update: to, with expected_version (negative = the request
 * carried none). Checks in this order and, on success, writes the new
 * state to out (which may be cur) with versionNumber + 1:
 *   cur terminal                      -> TerminalStateReached
 *   expected_version >= 0 and != cur  -> VersionMismatch
 *   no device row from cur to to      -> InvalidStateTransition
 * Every failure is CF_ESTATE with a message (CF_EINVAL and InvalidRequest
 * for a status out of range), *code set when code is not NULL, and out
 * untouched; the caller answers with cur (executionState).
 */
int cf_job_update(cf_job_exec *out, cf_proto_code *code, const cf_job_exec *cur,
    cf_exec_status to, int64_t expected_version) CF_MUST_CHECK;

/*
 * A server move (cancel, force-cancel, abort, timeout, removal, retry): as
 * cf_job_transition_check for CF_JOB_SERVER, then writes the new state to
 * out (may be cur) with versionNumber + 1. A CF_JOB_RETRY row also adds one
 * to executionNumber and to the retry counter of the failure it leaves.
 * Whether a retry is due is cf_job_retry_due's decision, not this one's.
 */
int cf_job_server_move(cf_job_exec *out, cf_proto_code *code, const cf_job_exec *cur,
    cf_exec_status to, unsigned flags) CF_MUST_CHECK;

/*
 * Whether a cancel moves an execution in status s to CANCELED: QUEUED
 * always, IN_PROGRESS only when force; nothing else.
 */
int cf_job_cancel_applies(cf_exec_status s, int force);

/* ---- failure types (retries and abort criteria) -------------------------- */

typedef enum {
	CF_JOB_FAILURE_FAILED,
	CF_JOB_FAILURE_REJECTED,
	CF_JOB_FAILURE_TIMED_OUT,
	CF_JOB_FAILURE_ALL, /* any of the three */
	CF_JOB_FAILURE__COUNT
} cf_job_failure;

/* "FAILED", "REJECTED", "TIMED_OUT", "ALL"; "UNKNOWN" otherwise. Static string. */
const char *cf_job_failure_name(cf_job_failure f);
int cf_job_failure_parse(cf_job_failure *out, const char *name) CF_MUST_CHECK;

/* ---- retries -------------------------------------------------------------- */

#define CF_JOB_RETRY_MAX 10

typedef struct {
	cf_job_failure type; /* FAILED, TIMED_OUT or ALL (REJECTED means retrying cannot help) */
	int retries;         /* 0..CF_JOB_RETRY_MAX */
} cf_job_retry_criterion;

/* How many retries each retryable failure gets (per thing, per job). */
typedef struct {
	int failed;
	int timed_out;
} cf_job_retry_policy;

/*
 * Builds a policy from criteria (n may be 0: no retries). ALL gives both
 * failures its count; a FAILED or TIMED_OUT entry overrides ALL for its
 * failure whatever the order. CF_EINVAL with a message for REJECTED, a
 * count outside 0..CF_JOB_RETRY_MAX or a failure type given twice.
 */
int cf_job_retry_policy_from(cf_job_retry_policy *out, const cf_job_retry_criterion *list,
    size_t n) CF_MUST_CHECK;

/*
 * 1 if the execution ended FAILED or TIMED_OUT and has retries of that
 * kind left (then cf_job_server_move(..., CF_EXEC_QUEUED, 0) requeues it),
 * else 0.
 */
int cf_job_retry_due(const cf_job_retry_policy *p, const cf_job_exec *e);

/* ---- rollout -------------------------------------------------------------- */

#define CF_JOB_ROLLOUT_MAX 1000 /* executions per minute, the most anyone can ask for */

/*
 * The rate at which QUEUED executions are released (created and notified)
 * to devices. Minutes are windows of 60 s counted from the rollout's
 * start. With base_per_minute 0 the rate is max_per_minute throughout.
 * Otherwise it is an exponential ramp: base_per_minute * factor^k, cut
 * down to a whole number and capped at max_per_minute, where k is the
 * number of completed steps: notified / notified_step, or succeeded /
 * succeeded_step (exactly one of the two steps is non-zero).
 */
typedef struct {
	int max_per_minute;      /* 1..CF_JOB_ROLLOUT_MAX */
	int base_per_minute;     /* 0 (no ramp) or 1..max_per_minute */
	double increment_factor; /* ramp: 1.1 .. 5.0 */
	int64_t notified_step;   /* ramp: raise the rate after every this many notified ... */
	int64_t succeeded_step;  /* ... or after every this many SUCCEEDED */
} cf_job_rollout;

/* Where a rollout stands; zero it to begin (cf_job_rollout_record starts it). */
typedef struct {
	int64_t began_at;        /* time of the first release, 0 = not begun */
	int64_t window_start;    /* start of the current minute window */
	int64_t window_notified; /* released in that window */
	int64_t notified;        /* released in all */
	int64_t succeeded;       /* of those, SUCCEEDED (the caller keeps it current) */
} cf_job_rollout_state;

/* 0, or CF_EINVAL with a message naming the first bad field. */
int cf_job_rollout_validate(const cf_job_rollout *r) CF_MUST_CHECK;

/* The rate (per minute) that applies given the counts in st. */
int cf_job_rollout_rate(const cf_job_rollout *r, const cf_job_rollout_state *st);

/* How many executions may be released at now (>= 0). */
int64_t cf_job_rollout_allowance(const cf_job_rollout *r, const cf_job_rollout_state *st,
    int64_t now);

/* Records n releases made at now (moving to a new window if now is past the current one). */
void cf_job_rollout_record(cf_job_rollout_state *st, int64_t now, int64_t n);

/* The earliest time >= now at which the allowance is positive: now, or the next window's start. */
int64_t cf_job_rollout_next_at(const cf_job_rollout *r, const cf_job_rollout_state *st,
    int64_t now);

/* ---- abort criteria ------------------------------------------------------- */

#define CF_JOB_ABORT_MAX 8

typedef struct {
	cf_job_failure type;      /* FAILED, REJECTED, TIMED_OUT or ALL */
	double threshold_percent; /* > 0 and <= 100 */
	int64_t min_executed;     /* >= 1 */
} cf_job_abort_criterion;

/*
 * Executions by final status (the latest attempt of each thing; one that
 * is being retried is not final). executed = succeeded + failed + rejected
 * + timed_out: CANCELED and REMOVED executions were not executed.
 */
typedef struct {
	int64_t succeeded;
	int64_t failed;
	int64_t rejected;
	int64_t timed_out;
} cf_job_counts;

/* 0, or CF_EINVAL with a message. */
int cf_job_abort_validate(const cf_job_abort_criterion *list, size_t n) CF_MUST_CHECK;

/*
 * 1 if some criterion holds: at least min_executed executions are executed
 * and its failures are at least threshold_percent of them; *out (if not
 * NULL) is the index of the first that holds. 0 otherwise.
 */
int cf_job_abort_due(size_t *out, const cf_job_abort_criterion *list, size_t n,
    const cf_job_counts *c);

/* ---- timeouts ------------------------------------------------------------- */

#define CF_JOB_TIMEOUT_MAX (7 * 24 * 3600) /* a week, in seconds */

typedef struct {
	int64_t in_progress_s; /* 0 = none; from entering IN_PROGRESS to a final status */
	int64_t step_s;        /* 0 = none; from the last accepted IN_PROGRESS update */
} cf_job_timeouts;

/* 0, or CF_EINVAL: each 0..CF_JOB_TIMEOUT_MAX. */
int cf_job_timeouts_validate(const cf_job_timeouts *t) CF_MUST_CHECK;

/*
 * When an IN_PROGRESS execution times out: the earlier of started_at +
 * in_progress_s and last_step_at + step_s (last_step_at is the time of the
 * last accepted update to IN_PROGRESS, the first being the move from
 * QUEUED). CF_JOB_NEVER when neither timeout is set.
 */
int64_t cf_job_timeout_deadline(const cf_job_timeouts *t, int64_t started_at,
    int64_t last_step_at);

/* 1 if now >= the deadline: the deadline itself is already too late. */
int cf_job_timed_out(const cf_job_timeouts *t, int64_t started_at, int64_t last_step_at,
    int64_t now);

/* ---- scheduling ----------------------------------------------------------- */

typedef enum {
	CF_JOB_END_STOP_ROLLOUT, /* release no more; executions already out carry on */
	CF_JOB_END_CANCEL,       /* and cancel the QUEUED ones */
	CF_JOB_END_FORCE_CANCEL, /* and cancel the IN_PROGRESS ones too */
	CF_JOB_END__COUNT
} cf_job_end;

/* "STOP_ROLLOUT", "CANCEL", "FORCE_CANCEL"; "UNKNOWN" otherwise. Static string. */
const char *cf_job_end_name(cf_job_end e);
int cf_job_end_parse(cf_job_end *out, const char *name) CF_MUST_CHECK;

/* 1 if the schedule's end moves an execution in status s to CANCELED (force-cancel semantics). */
int cf_job_end_applies(cf_job_end e, cf_exec_status s);

#define CF_JOB_WINDOWS_MAX 16
#define CF_JOB_DAILY (-1) /* cf_job_window.weekday for a window every day */

/* A recurring maintenance window, in UTC. */
typedef struct {
	int weekday;      /* 0 = Sunday .. 6 = Saturday, or CF_JOB_DAILY */
	int start_minute; /* minute of the day it opens, 0..1439 */
	int duration_min; /* 1..1440 (daily) or 1..10080 (weekly) */
} cf_job_window;

/*
 * Parses "<day>@HH:MM+<minutes>", day one of sun mon tue wed thu fri sat
 * or daily: "sat@22:00+240" opens every Saturday at 22:00 UTC for four
 * hours. CF_EINVAL with a message otherwise.
 */
int cf_job_window_parse(cf_job_window *out, const char *s) CF_MUST_CHECK;

/* Formats w as cf_job_window_parse reads it (out >= 24 bytes). CF_EINVAL if w is invalid. */
int cf_job_window_format(char *out, size_t out_len, const cf_job_window *w) CF_MUST_CHECK;

typedef struct {
	int64_t start_at; /* 0 = at once */
	int64_t end_at;   /* 0 = never */
	cf_job_end end_behavior;
	cf_job_window windows[CF_JOB_WINDOWS_MAX]; /* none: any time between start and end */
	size_t n_windows;
} cf_job_schedule;

/* 0, or CF_EINVAL with a message (bad window, end not after start, unknown end behaviour). */
int cf_job_schedule_validate(const cf_job_schedule *s) CF_MUST_CHECK;

/* 1 if t is inside w: [opening, opening + duration). */
int cf_job_window_contains(const cf_job_window *w, int64_t t);

/* The first opening of w strictly after t. */
int64_t cf_job_window_next_start(const cf_job_window *w, int64_t t);

/* 1 if executions may be released at t: start_at <= t < end_at and inside a window if any. */
int cf_job_schedule_may_start(const cf_job_schedule *s, int64_t t);

/* 1 if the schedule has ended at t (end_at set and t >= end_at). */
int cf_job_schedule_ended(const cf_job_schedule *s, int64_t t);

/* The earliest time >= t at which cf_job_schedule_may_start holds, or CF_JOB_NEVER. */
int64_t cf_job_schedule_next_start(const cf_job_schedule *s, int64_t t);

#endif
