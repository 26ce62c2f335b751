/*
 * cf_job — the jobs engine's rules: one transition table that every state
 * change goes through (device updates and server moves alike), the update
 * rule on top of it, and the arithmetic of retries, rollout, abort,
 * timeouts and maintenance windows. Pure: no I/O, no clock, no allocation.
 */
#include "cf_job.h"

#include <stdlib.h>
#include <string.h>

#include "cf_util.h"

#define MINUTE 60
#define DAY (24 * 3600)
#define WEEK (7 * DAY)
#define EPOCH_WEEKDAY 4 /* 1970-01-01 was a Thursday (Sunday = 0) */

/*
 * Every allowed move; anything not here is refused. A device drives its own
 * execution forward (it may decline a QUEUED one outright with REJECTED, as
 * nothing has happened yet); the server ends executions the device cannot
 * end (cancel, removal, timeout) and starts retries. IN_PROGRESS is only
 * ever canceled by a force-cancel: the device may be half-way through a
 * rotation.
 */
static const cf_job_transition transitions[] = {
	{ CF_EXEC_QUEUED, CF_EXEC_IN_PROGRESS, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_QUEUED, CF_EXEC_REJECTED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_IN_PROGRESS, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_SUCCEEDED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_FAILED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_REJECTED, CF_JOB_DEVICE, 0 },
	{ CF_EXEC_QUEUED, CF_EXEC_CANCELED, CF_JOB_SERVER, 0 },
	{ CF_EXEC_QUEUED, CF_EXEC_REMOVED, CF_JOB_SERVER, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_TIMED_OUT, CF_JOB_SERVER, 0 },
	{ CF_EXEC_IN_PROGRESS, CF_EXEC_CANCELED, CF_JOB_SERVER, CF_JOB_FORCE },
	{ CF_EXEC_FAILED, CF_EXEC_QUEUED, CF_JOB_SERVER, CF_JOB_RETRY },
	{ CF_EXEC_TIMED_OUT, CF_EXEC_QUEUED, CF_JOB_SERVER, CF_JOB_RETRY },
};

#define N_TRANSITIONS (sizeof(transitions) / sizeof(transitions[0]))

static const char *const who_names[CF_JOB_WHO__COUNT] = {
	[CF_JOB_DEVICE] = "device",
	[CF_JOB_SERVER] = "server",
};

static const char *const failure_names[CF_JOB_FAILURE__COUNT] = {
	[CF_JOB_FAILURE_FAILED] = "FAILED",
	[CF_JOB_FAILURE_REJECTED] = "REJECTED",
	[CF_JOB_FAILURE_TIMED_OUT] = "TIMED_OUT",
	[CF_JOB_FAILURE_ALL] = "ALL",
};

static const char *const end_names[CF_JOB_END__COUNT] = {
	[CF_JOB_END_STOP_ROLLOUT] = "STOP_ROLLOUT",
	[CF_JOB_END_CANCEL] = "CANCEL",
	[CF_JOB_END_FORCE_CANCEL] = "FORCE_CANCEL",
};

static const char *const day_names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

const cf_job_transition *
cf_job_transitions(size_t *out_n)
{
	*out_n = N_TRANSITIONS;
	return transitions;
}

const char *
cf_job_who_name(cf_job_who who)
{
	return (unsigned)who < CF_JOB_WHO__COUNT ? who_names[who] : "unknown";
}

int
cf_job_status_terminal(cf_exec_status s)
{
	switch (s) {
	case CF_EXEC_SUCCEEDED:
	case CF_EXEC_FAILED:
	case CF_EXEC_TIMED_OUT:
	case CF_EXEC_REJECTED:
	case CF_EXEC_REMOVED:
	case CF_EXEC_CANCELED:
		return 1;
	case CF_EXEC_QUEUED:
	case CF_EXEC_IN_PROGRESS:
	default:
		return 0;
	}
}

static const cf_job_transition *
find_row(cf_exec_status from, cf_exec_status to, cf_job_who who)
{
	size_t i;

	for (i = 0; i < N_TRANSITIONS; i++) {
		if (transitions[i].from == from && transitions[i].to == to && transitions[i].who == who)
			return &transitions[i];
	}
	return NULL;
}

int
cf_job_transition_check(cf_proto_code *code, cf_exec_status from, cf_exec_status to,
    cf_job_who who, unsigned flags)
{
	const cf_job_transition *row;
	cf_proto_code why = CF_PROTO_INVALID_STATE_TRANSITION;
	int r = CF_ESTATE;

	if ((unsigned)from >= CF_EXEC__COUNT || (unsigned)to >= CF_EXEC__COUNT ||
	    (unsigned)who >= CF_JOB_WHO__COUNT) {
		cf_error_set("unknown execution status or actor");
		why = CF_PROTO_INVALID_REQUEST;
		r = CF_EINVAL;
		goto out;
	}
	if ((row = find_row(from, to, who)) == NULL) {
		if (cf_job_status_terminal(from)) {
			why = CF_PROTO_TERMINAL_STATE_REACHED;
			cf_error_set("the execution is already %s", cf_proto_status_name(from));
		} else {
			cf_error_set("the %s may not move an execution from %s to %s",
			    who_names[who], cf_proto_status_name(from), cf_proto_status_name(to));
		}
		goto out;
	}
	if ((row->flags & CF_JOB_FORCE) && !(flags & CF_JOB_FORCE)) {
		cf_error_set("an execution %s is only canceled by a force-cancel",
		    cf_proto_status_name(from));
		goto out;
	}
	r = 0;
out:
	if (r != 0 && code != NULL)
		*code = why;
	return r;
}

void
cf_job_exec_init(cf_job_exec *out)
{
	memset(out, 0, sizeof(*out));
	out->status = CF_EXEC_QUEUED;
	out->execution_number = 1;
	out->version_number = 1;
}

int
cf_job_update(cf_job_exec *out, cf_proto_code *code, const cf_job_exec *cur,
    cf_exec_status to, int64_t expected_version)
{
	cf_job_exec next;
	int r = CF_ESTATE;

	if (cf_job_status_terminal(cur->status)) {
		cf_error_set("the execution is already %s", cf_proto_status_name(cur->status));
		if (code != NULL)
			*code = CF_PROTO_TERMINAL_STATE_REACHED;
		goto out;
	}
	if (expected_version >= 0 && expected_version != cur->version_number) {
		cf_error_set("expectedVersion %lld, but the execution is at version %lld",
		    (long long)expected_version, (long long)cur->version_number);
		if (code != NULL)
			*code = CF_PROTO_VERSION_MISMATCH;
		goto out;
	}
	if ((r = cf_job_transition_check(code, cur->status, to, CF_JOB_DEVICE, 0)) != 0)
		goto out;
	next = *cur;
	next.status = to;
	next.version_number++;
	*out = next;
	r = 0;
out:
	return r;
}

int
cf_job_server_move(cf_job_exec *out, cf_proto_code *code, const cf_job_exec *cur,
    cf_exec_status to, unsigned flags)
{
	const cf_job_transition *row;
	cf_job_exec next;
	int r;

	if ((r = cf_job_transition_check(code, cur->status, to, CF_JOB_SERVER, flags)) != 0)
		goto out;
	row = find_row(cur->status, to, CF_JOB_SERVER);
	next = *cur;
	if (row->flags & CF_JOB_RETRY) {
		next.execution_number++;
		if (cur->status == CF_EXEC_FAILED)
			next.retries_failed++;
		else
			next.retries_timed_out++;
	}
	next.status = to;
	next.version_number++;
	*out = next;
out:
	return r;
}

int
cf_job_cancel_applies(cf_exec_status s, int force)
{
	return cf_job_transition_check(NULL, s, CF_EXEC_CANCELED, CF_JOB_SERVER,
	    force ? CF_JOB_FORCE : 0) == 0;
}

/* ---- failure types ---------------------------------------------------------- */

const char *
cf_job_failure_name(cf_job_failure f)
{
	return (unsigned)f < CF_JOB_FAILURE__COUNT ? failure_names[f] : "UNKNOWN";
}

int
cf_job_failure_parse(cf_job_failure *out, const char *name)
{
	int i, r = CF_EINVAL;

	if ((i = cf_name_index(failure_names, CF_JOB_FAILURE__COUNT, name, 0)) < 0) {
		cf_error_set("unknown failure type '%s' (FAILED, REJECTED, TIMED_OUT or ALL)",
		    name ? name : "");
		goto out;
	}
	*out = (cf_job_failure)i;
	r = 0;
out:
	return r;
}

/* ---- retries ---------------------------------------------------------------- */

int
cf_job_retry_policy_from(cf_job_retry_policy *out, const cf_job_retry_criterion *list, size_t n)
{
	int seen[CF_JOB_FAILURE__COUNT] = { 0 };
	int count[CF_JOB_FAILURE__COUNT] = { 0 };
	size_t i;
	int r = CF_EINVAL;

	for (i = 0; i < n; i++) {
		cf_job_failure t = list[i].type;

		if (t != CF_JOB_FAILURE_FAILED && t != CF_JOB_FAILURE_TIMED_OUT &&
		    t != CF_JOB_FAILURE_ALL) {
			cf_error_set("retries are for FAILED, TIMED_OUT or ALL, not %s",
			    cf_job_failure_name(t));
			goto out;
		}
		if (list[i].retries < 0 || list[i].retries > CF_JOB_RETRY_MAX) {
			cf_error_set("%s retries must be 0..%d, not %d", failure_names[t],
			    CF_JOB_RETRY_MAX, list[i].retries);
			goto out;
		}
		if (seen[t]) {
			cf_error_set("retries for %s given twice", failure_names[t]);
			goto out;
		}
		seen[t] = 1;
		count[t] = list[i].retries;
	}
	out->failed = seen[CF_JOB_FAILURE_FAILED] ? count[CF_JOB_FAILURE_FAILED] :
	    count[CF_JOB_FAILURE_ALL];
	out->timed_out = seen[CF_JOB_FAILURE_TIMED_OUT] ? count[CF_JOB_FAILURE_TIMED_OUT] :
	    count[CF_JOB_FAILURE_ALL];
	r = 0;
out:
	return r;
}

int
cf_job_retry_due(const cf_job_retry_policy *p, const cf_job_exec *e)
{
	switch (e->status) {
	case CF_EXEC_FAILED:
		return e->retries_failed < p->failed;
	case CF_EXEC_TIMED_OUT:
		return e->retries_timed_out < p->timed_out;
	default:
		return 0;
	}
}

/* ---- rollout ---------------------------------------------------------------- */

int
cf_job_rollout_validate(const cf_job_rollout *ro)
{
	int r = CF_EINVAL;

	if (ro->max_per_minute < 1 || ro->max_per_minute > CF_JOB_ROLLOUT_MAX) {
		cf_error_set("maximum per minute must be 1..%d", CF_JOB_ROLLOUT_MAX);
		goto out;
	}
	if (ro->base_per_minute == 0) {
		r = 0;
		goto out;
	}
	if (ro->base_per_minute < 1 || ro->base_per_minute > ro->max_per_minute) {
		cf_error_set("ramp base rate must be 1..%d (the maximum per minute)",
		    ro->max_per_minute);
		goto out;
	}
	if (!(ro->increment_factor >= 1.1 && ro->increment_factor <= 5.0)) {
		cf_error_set("ramp increment factor must be 1.1..5.0");
		goto out;
	}
	if ((ro->notified_step > 0) == (ro->succeeded_step > 0) || ro->notified_step < 0 ||
	    ro->succeeded_step < 0) {
		cf_error_set("ramp needs exactly one of: a number notified, a number succeeded");
		goto out;
	}
	r = 0;
out:
	return r;
}

int
cf_job_rollout_rate(const cf_job_rollout *ro, const cf_job_rollout_state *st)
{
	double rate;
	int64_t k, i;

	if (ro->base_per_minute <= 0)
		return ro->max_per_minute;
	if (ro->notified_step > 0)
		k = st->notified / ro->notified_step;
	else if (ro->succeeded_step > 0)
		k = st->succeeded / ro->succeeded_step;
	else
		k = 0;
	/* Stops at the cap: at most ~75 rounds for a factor of 1.1 (1000 if unvalidated). */
	rate = ro->base_per_minute;
	for (i = 0; i < k && i < 1000 && rate < ro->max_per_minute; i++) {
		if (ro->increment_factor <= 1.0)
			break;
		rate *= ro->increment_factor;
	}
	if (rate >= ro->max_per_minute)
		return ro->max_per_minute;
	return (int)rate;
}

/* Start of the minute window that holds now (windows count from began_at). */
static int64_t
window_of(const cf_job_rollout_state *st, int64_t now)
{
	if (now <= st->window_start)
		return st->window_start; /* same window (or the clock stepped back) */
	return st->began_at + ((now - st->began_at) / MINUTE) * MINUTE;
}

int64_t
cf_job_rollout_allowance(const cf_job_rollout *ro, const cf_job_rollout_state *st, int64_t now)
{
	int64_t used = 0, left;

	if (st->began_at != 0 && window_of(st, now) == st->window_start)
		used = st->window_notified;
	left = (int64_t)cf_job_rollout_rate(ro, st) - used;
	return left > 0 ? left : 0;
}

void
cf_job_rollout_record(cf_job_rollout_state *st, int64_t now, int64_t n)
{
	int64_t w;

	if (st->began_at == 0) {
		st->began_at = now;
		st->window_start = now;
		st->window_notified = 0;
	}
	w = window_of(st, now);
	if (w != st->window_start) {
		st->window_start = w;
		st->window_notified = 0;
	}
	st->window_notified += n;
	st->notified += n;
}

int64_t
cf_job_rollout_next_at(const cf_job_rollout *ro, const cf_job_rollout_state *st, int64_t now)
{
	if (cf_job_rollout_allowance(ro, st, now) > 0)
		return now;
	return window_of(st, now) + MINUTE;
}

/* ---- abort ------------------------------------------------------------------ */

int
cf_job_abort_validate(const cf_job_abort_criterion *list, size_t n)
{
	size_t i;
	int r = CF_EINVAL;

	if (n > CF_JOB_ABORT_MAX) {
		cf_error_set("at most %d abort criteria", CF_JOB_ABORT_MAX);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned)list[i].type >= CF_JOB_FAILURE__COUNT) {
			cf_error_set("abort criterion %zu: unknown failure type", i + 1);
			goto out;
		}
		if (!(list[i].threshold_percent > 0.0 && list[i].threshold_percent <= 100.0)) {
			cf_error_set("abort criterion %zu: threshold must be above 0 and at most 100 percent",
			    i + 1);
			goto out;
		}
		if (list[i].min_executed < 1) {
			cf_error_set("abort criterion %zu: minimum executed must be at least 1", i + 1);
			goto out;
		}
	}
	r = 0;
out:
	return r;
}

static int64_t
failures_of(const cf_job_counts *c, cf_job_failure t)
{
	switch (t) {
	case CF_JOB_FAILURE_FAILED:
		return c->failed;
	case CF_JOB_FAILURE_REJECTED:
		return c->rejected;
	case CF_JOB_FAILURE_TIMED_OUT:
		return c->timed_out;
	case CF_JOB_FAILURE_ALL:
		return c->failed + c->rejected + c->timed_out;
	case CF_JOB_FAILURE__COUNT:
	default:
		return 0;
	}
}

int
cf_job_abort_due(size_t *out, const cf_job_abort_criterion *list, size_t n, const cf_job_counts *c)
{
	int64_t executed = c->succeeded + c->failed + c->rejected + c->timed_out;
	size_t i;

	for (i = 0; i < n; i++) {
		if (executed < list[i].min_executed || executed <= 0)
			continue;
		/* failures / executed >= threshold / 100, without dividing */
		if ((double)failures_of(c, list[i].type) * 100.0 >=
		    list[i].threshold_percent * (double)executed) {
			if (out != NULL)
				*out = i;
			return 1;
		}
	}
	return 0;
}

/* ---- timeouts --------------------------------------------------------------- */

int
cf_job_timeouts_validate(const cf_job_timeouts *t)
{
	int r = CF_EINVAL;

	if (t->in_progress_s < 0 || t->in_progress_s > CF_JOB_TIMEOUT_MAX || t->step_s < 0 ||
	    t->step_s > CF_JOB_TIMEOUT_MAX) {
		cf_error_set("timeouts must be 0 (none) .. %d seconds", CF_JOB_TIMEOUT_MAX);
		goto out;
	}
	r = 0;
out:
	return r;
}

int64_t
cf_job_timeout_deadline(const cf_job_timeouts *t, int64_t started_at, int64_t last_step_at)
{
	int64_t d = CF_JOB_NEVER;

	if (t->in_progress_s > 0)
		d = started_at + t->in_progress_s;
	if (t->step_s > 0 && last_step_at + t->step_s < d)
		d = last_step_at + t->step_s;
	return d;
}

int
cf_job_timed_out(const cf_job_timeouts *t, int64_t started_at, int64_t last_step_at, int64_t now)
{
	return now >= cf_job_timeout_deadline(t, started_at, last_step_at);
}

/* ---- scheduling ------------------------------------------------------------- */

const char *
cf_job_end_name(cf_job_end e)
{
	return (unsigned)e < CF_JOB_END__COUNT ? end_names[e] : "UNKNOWN";
}

int
cf_job_end_parse(cf_job_end *out, const char *name)
{
	int i, r = CF_EINVAL;

	if ((i = cf_name_index(end_names, CF_JOB_END__COUNT, name, 0)) < 0) {
		cf_error_set("unknown end behaviour '%s' (STOP_ROLLOUT, CANCEL or FORCE_CANCEL)",
		    name ? name : "");
		goto out;
	}
	*out = (cf_job_end)i;
	r = 0;
out:
	return r;
}

int
cf_job_end_applies(cf_job_end e, cf_exec_status s)
{
	switch (e) {
	case CF_JOB_END_CANCEL:
		return cf_job_cancel_applies(s, 0);
	case CF_JOB_END_FORCE_CANCEL:
		return cf_job_cancel_applies(s, 1);
	case CF_JOB_END_STOP_ROLLOUT:
	case CF_JOB_END__COUNT:
	default:
		return 0;
	}
}

static int64_t
floor_mod(int64_t a, int64_t m)
{
	int64_t r = a % m;

	return r < 0 ? r + m : r;
}

static int
window_valid(const cf_job_window *w)
{
	int max = w->weekday == CF_JOB_DAILY ? 1440 : 10080;

	if (w->weekday < CF_JOB_DAILY || w->weekday > 6) {
		cf_error_set("window day must be daily or sun..sat");
		return 0;
	}
	if (w->start_minute < 0 || w->start_minute > 1439) {
		cf_error_set("window start must be 00:00..23:59");
		return 0;
	}
	if (w->duration_min < 1 || w->duration_min > max) {
		cf_error_set("window duration must be 1..%d minutes", max);
		return 0;
	}
	return 1;
}

/*
 * How far t is past the window's latest opening (0 <= rel < period): the
 * window is open when rel < duration, and opens next at t + period - rel.
 */
static int64_t
window_rel(const cf_job_window *w, int64_t t, int64_t *period)
{
	if (w->weekday == CF_JOB_DAILY) {
		*period = DAY;
		return floor_mod(t - (int64_t)w->start_minute * MINUTE, DAY);
	}
	*period = WEEK;
	return floor_mod(t + (int64_t)EPOCH_WEEKDAY * DAY -
	    ((int64_t)w->weekday * DAY + (int64_t)w->start_minute * MINUTE), WEEK);
}

int
cf_job_window_contains(const cf_job_window *w, int64_t t)
{
	int64_t period;

	return window_rel(w, t, &period) < (int64_t)w->duration_min * MINUTE;
}

int64_t
cf_job_window_next_start(const cf_job_window *w, int64_t t)
{
	int64_t period, rel = window_rel(w, t, &period);

	return t + (period - rel);
}

/* Reads exactly n decimal digits from *s into *v. */
static int
digits(const char **s, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if ((*s)[i] < '0' || (*s)[i] > '9')
			return 0;
		*v = *v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	return 1;
}

int
cf_job_window_parse(cf_job_window *out, const char *s)
{
	cf_job_window w;
	const char *at, *p;
	char *end;
	long dur;
	int i, hh, mm, r = CF_EINVAL;

	if (s == NULL || (at = strchr(s, '@')) == NULL)
		goto bad;
	w.weekday = -2;
	if ((size_t)(at - s) == 5 && memcmp(s, "daily", 5) == 0)
		w.weekday = CF_JOB_DAILY;
	for (i = 0; i < 7; i++) {
		if ((size_t)(at - s) == 3 && memcmp(s, day_names[i], 3) == 0)
			w.weekday = i;
	}
	if (w.weekday == -2)
		goto bad;
	p = at + 1;
	if (!digits(&p, 2, &hh) || *p++ != ':' || !digits(&p, 2, &mm) || *p++ != '+')
		goto bad;
	if (hh > 23 || mm > 59 || *p < '0' || *p > '9')
		goto bad;
	dur = strtol(p, &end, 10);
	if (*end != '\0' || dur < 1 || dur > 10080)
		goto bad;
	w.start_minute = hh * 60 + mm;
	w.duration_min = (int)dur;
	if (!window_valid(&w))
		goto out;
	*out = w;
	r = 0;
	goto out;
bad:
	cf_error_set("maintenance window '%s' is not <day>@HH:MM+<minutes> "
	    "(day: daily or sun..sat, UTC), e.g. sat@22:00+240", s ? s : "");
out:
	return r;
}

int
cf_job_window_format(char *out, size_t out_len, const cf_job_window *w)
{
	int r = CF_EINVAL;

	if (!window_valid(w))
		goto out;
	r = cf_strfmt(out, out_len, "%s@%02d:%02d+%d",
	    w->weekday == CF_JOB_DAILY ? "daily" : day_names[w->weekday], w->start_minute / 60,
	    w->start_minute % 60, w->duration_min);
out:
	return r;
}

int
cf_job_schedule_validate(const cf_job_schedule *s)
{
	size_t i;
	int r = CF_EINVAL;

	if (s->start_at < 0 || s->end_at < 0 || (s->end_at != 0 && s->end_at <= s->start_at)) {
		cf_error_set("schedule end must come after its start");
		goto out;
	}
	if ((unsigned)s->end_behavior >= CF_JOB_END__COUNT) {
		cf_error_set("unknown end behaviour");
		goto out;
	}
	if (s->n_windows > CF_JOB_WINDOWS_MAX) {
		cf_error_set("at most %d maintenance windows", CF_JOB_WINDOWS_MAX);
		goto out;
	}
	for (i = 0; i < s->n_windows; i++) {
		if (!window_valid(&s->windows[i])) {
			cf_error_prefix("maintenance window %zu", i + 1);
			goto out;
		}
	}
	r = 0;
out:
	return r;
}

static int
in_some_window(const cf_job_schedule *s, int64_t t)
{
	size_t i;

	if (s->n_windows == 0)
		return 1;
	for (i = 0; i < s->n_windows; i++) {
		if (cf_job_window_contains(&s->windows[i], t))
			return 1;
	}
	return 0;
}

int
cf_job_schedule_ended(const cf_job_schedule *s, int64_t t)
{
	return s->end_at != 0 && t >= s->end_at;
}

int
cf_job_schedule_may_start(const cf_job_schedule *s, int64_t t)
{
	return t >= s->start_at && !cf_job_schedule_ended(s, t) && in_some_window(s, t);
}

int64_t
cf_job_schedule_next_start(const cf_job_schedule *s, int64_t t)
{
	int64_t t0 = t > s->start_at ? t : s->start_at, best = CF_JOB_NEVER, n;
	size_t i;

	if (cf_job_schedule_ended(s, t0))
		return CF_JOB_NEVER;
	if (in_some_window(s, t0))
		return t0;
	for (i = 0; i < s->n_windows; i++) {
		n = cf_job_window_next_start(&s->windows[i], t0);
		if (n < best)
			best = n;
	}
	if (cf_job_schedule_ended(s, best))
		return CF_JOB_NEVER;
	return best;
}
