/*
 * certfleetd's jobs engine (DESIGN §7, docs/jobs.md "The engine").
 *
 * One timer on the reactor runs a pass every second, and sooner when
 * something happened (cfd_engine_kick: at once, or 100 ms after the last
 * pass — a pass counts a job's executions, so a pass per ended execution
 * made a large rollout quadratic). A pass takes every SCHEDULED or
 * IN_PROGRESS job through the same steps, in this order:
 *
 *   schedule    start a SCHEDULED job when it may start; at the schedule's
 *               end apply its end behaviour (CANCEL, FORCE_CANCEL, or
 *               STOP_ROLLOUT: release no more)
 *   targets     CONTINUOUS jobs: things that joined the targets become
 *               targets; things that left lose their unreleased target or
 *               QUEUED execution (REMOVED)
 *   timeouts    IN_PROGRESS executions past their in-progress or step
 *               deadline become TIMED_OUT (their rotations are settled)
 *   retries     FAILED / TIMED_OUT executions with retries left are queued
 *               again as a new attempt
 *   abort       a criterion that holds cancels the job (QUEUED executions
 *               CANCELED, nothing more released) and notifies
 *   release     unreleased targets get their QUEUED execution, as many as
 *               the rollout allows now (inside a maintenance window if any)
 *   completion  a job with nothing unreleased and every execution terminal
 *               is COMPLETED (CONTINUOUS jobs complete only when their
 *               schedule ends)
 *
 * Every decision is one of cf_job's pure functions and every change goes
 * to the store in a transaction with its event; the rollout's state is
 * derived from the targets' release times, so a restarted daemon carries
 * on where it stopped. Devices hear of new and requeued executions through
 * notify-next, published after the transaction committed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "certfleetd.h"
#include "cf_job.h"
#include "cf_jobspec.h"
#include "cf_util.h"

#define TICK_S 1
#define RELEASE_BATCH 1000  /* releases per job per pass: the reactor stays responsive; a full
                              batch kicks the next pass */
#define FOLLOW_EVERY_S 5    /* CONTINUOUS jobs re-resolve their targets this often */
#define KICK_GAP_US 100000  /* a kicked pass runs at most this soon after the last pass */

struct cfd_engine {
	struct event *tick;
	struct event *soon;
	int64_t last_follow;
	int64_t last_pass_us; /* cfd_mono_us() at the start of the last pass, 0 before any */
};

/* Things to send notify-next to once the pass's transaction committed. */
typedef struct {
	char **v;
	size_t n, cap;
} wake_list;

static void
wake_add(wake_list *w, const char *thing)
{
	char **nv;

	if (w->n == w->cap) {
		nv = realloc(w->v, (w->cap ? w->cap * 2 : 16) * sizeof(*nv));
		if (nv == NULL)
			return; /* the device asks $next/get on connect: a lost notify only delays it */
		w->v = nv;
		w->cap = w->cap ? w->cap * 2 : 16;
	}
	if ((w->v[w->n] = strdup(thing)) != NULL)
		w->n++;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One notify-next per thing, however many of its executions changed. */
static void
wake_send(cfd *d, wake_list *w)
{
	size_t i;

	if (w->n > 1)
		qsort(w->v, w->n, sizeof(*w->v), name_cmp);
	for (i = 0; i < w->n; i++)
		if (i == 0 || strcmp(w->v[i], w->v[i - 1]) != 0)
			cfd_jobs_notify_next(d, w->v[i]);
	for (i = 0; i < w->n; i++) /* after the loop: it compares with the previous name */
		free(w->v[i]);
	free(w->v);
	memset(w, 0, sizeof(*w));
}

static void
exec_to_job(cf_job_exec *out, const cf_exec_rec *e)
{
	out->status = e->status;
	out->execution_number = e->execution_number;
	out->version_number = e->version;
	out->retries_failed = e->retries_failed;
	out->retries_timed_out = e->retries_timed_out;
}

/*
 * A server move of an execution (cf_job_server_move decides), written with
 * compare-and-set, its end handled (rotation, notifications); reason goes
 * into statusDetails. Inside the caller's transaction.
 */
static int
server_move(cfd *d, const cf_exec_rec *cur, cf_exec_status to, unsigned flags, const char *reason)
{
	cf_job_exec je, jn;
	cf_exec_rec next;
	json_t *details = NULL;
	char *text = NULL;
	int r;

	exec_to_job(&je, cur);
	if ((r = cf_job_server_move(&jn, NULL, &je, to, flags)) != 0)
		return r;
	next = *cur;
	next.status = jn.status;
	next.version = jn.version_number;
	next.last_updated_at = 0;
	if ((details = json_pack("{s:s}", "reason", reason)) == NULL ||
	    (text = json_dumps(details, JSON_COMPACT)) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	next.status_details = text;
	if ((r = cf_store_exec_update(cf_ca_store(d->ca), &next, cur->version)) != 0)
		goto out;
	if (cf_job_status_terminal(next.status))
		r = cfd_execution_ended(d, &next, reason);
	cf_log(CF_LOG_INFO, "execution moved by the engine", "thing=%s job=%s from=%s to=%s reason=%s",
	    cur->thing, cur->job_id, cf_proto_status_name(cur->status),
	    cf_proto_status_name(next.status), reason);
out:
	free(text);
	json_decref(details);
	return r;
}

/* The latest attempt of (job, thing), or CF_ENOTFOUND. */
static int
latest(cf_store *st, cf_exec_rec *out, const char *job_id, const char *thing)
{
	memset(out, 0, sizeof(*out));
	return cf_store_exec_get(st, out, job_id, thing, 0);
}

/*
 * Ends a job: its QUEUED executions (and IN_PROGRESS ones when force) are
 * CANCELED, and the job CANCELED with comment, in one transaction.
 */
static int
cancel_job(cfd *d, const char *job_id, int force, const char *comment, wake_list *wake)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_job_target_rec *tg = NULL;
	cf_exec_rec e;
	size_t n = 0, i;
	int r;

	memset(&e, 0, sizeof(e));
	if ((r = cf_store_begin(st)) != 0)
		return r;
	if ((r = cf_store_job_target_list(st, &tg, &n, job_id, CF_TARGETS_RELEASED, 0)) != 0)
		goto fail;
	for (i = 0; i < n; i++) {
		cf_exec_rec_clear(&e);
		if ((r = latest(st, &e, job_id, tg[i].thing)) == CF_ENOTFOUND)
			continue;
		if (r != 0)
			goto fail;
		if (!cf_job_cancel_applies(e.status, force))
			continue;
		if ((r = server_move(d, &e, CF_EXEC_CANCELED,
		    e.status == CF_EXEC_IN_PROGRESS ? CF_JOB_FORCE : 0, comment)) != 0)
			goto fail;
		wake_add(wake, e.thing);
	}
	if ((r = cf_store_job_set_status(st, job_id, CF_JOB_STATE_CANCELED, force, comment)) != 0 ||
	    (r = cf_store_commit(st)) != 0)
		goto fail;
	cf_log(CF_LOG_INFO, "job canceled", "job=%s force=%d comment=%s", job_id, force, comment);
	goto out;
fail:
	cf_store_rollback(st);
out:
	cf_exec_rec_clear(&e);
	cf_job_target_recs_free(tg, n);
	return r;
}

/* CONTINUOUS jobs: follow the targets as they are now. */
static int
follow_targets(cfd *d, const cf_job_rec *job, int64_t now, wake_list *wake)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_jobspec_targets t;
	cf_job_target_rec *tg = NULL;
	cf_exec_rec e;
	char **want = NULL;
	size_t n_want = 0, n_tg = 0, i, j;
	int r, cmp, added;

	memset(&t, 0, sizeof(t));
	memset(&e, 0, sizeof(e));
	if ((r = cf_jobspec_targets_parse(&t, job->targets)) != 0 ||
	    (r = cf_jobspec_targets_resolve(&want, &n_want, st, &t, cf_ca_policy(d->ca), now)) != 0 ||
	    (r = cf_store_job_target_list(st, &tg, &n_tg, job->id, CF_TARGETS_ALL, 0)) != 0)
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	/* Both lists are sorted by thing: one merge walk. */
	for (i = 0, j = 0; i < n_want || j < n_tg;) {
		cmp = i == n_want ? 1 : j == n_tg ? -1 : strcmp(want[i], tg[j].thing);
		if (cmp <= 0 && (cmp < 0 || tg[j].removed_at != 0)) {
			/* joined (or came back) */
			if ((r = cf_store_job_target_add(st, &added, job->id, want[i], now)) != 0)
				goto fail;
			if (added)
				cf_log(CF_LOG_INFO, "thing joined a continuous job", "job=%s thing=%s",
				    job->id, want[i]);
		} else if (cmp > 0 && tg[j].removed_at == 0) {
			/* left: an unreleased target or a QUEUED execution goes */
			if (tg[j].released_at != 0) {
				cf_exec_rec_clear(&e);
				r = latest(st, &e, job->id, tg[j].thing);
				if (r != 0 && r != CF_ENOTFOUND)
					goto fail;
				if (r == CF_ENOTFOUND || e.status != CF_EXEC_QUEUED)
					goto next; /* running or done: it finishes */
				if ((r = server_move(d, &e, CF_EXEC_REMOVED, 0,
				    "the thing left the job's targets")) != 0)
					goto fail;
				wake_add(wake, e.thing);
			}
			if ((r = cf_store_job_target_remove(st, job->id, tg[j].thing, now)) != 0)
				goto fail;
			cf_log(CF_LOG_INFO, "thing left a continuous job", "job=%s thing=%s", job->id,
			    tg[j].thing);
		}
next:
		if (cmp <= 0)
			i++;
		if (cmp >= 0)
			j++;
	}
	if ((r = cf_store_commit(st)) != 0)
		goto fail;
	goto out;
fail:
	cf_store_rollback(st);
out:
	cf_exec_rec_clear(&e);
	cf_job_target_recs_free(tg, n_tg);
	cf_strv_free(want, n_want);
	cf_jobspec_targets_clear(&t);
	return r;
}

/* IN_PROGRESS executions past a deadline: TIMED_OUT. */
static int
time_out(cfd *d, const cf_job_rec *job, const cf_job_timeouts *to, int64_t now)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_exec_rec *ex = NULL;
	size_t n = 0, i;
	char reason[128];
	int r;

	if (to->in_progress_s == 0 && to->step_s == 0)
		return 0;
	if ((r = cf_store_exec_list_stale(st, &ex, &n, job->id, to->step_s ? now - to->step_s : 0,
	    to->in_progress_s ? now - to->in_progress_s : 0, 0)) != 0 || n == 0)
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (!cf_job_timed_out(to, ex[i].started_at, ex[i].last_step_at, now))
			continue;
		if (to->in_progress_s && now >= ex[i].started_at + to->in_progress_s)
			snprintf(reason, sizeof(reason), "in-progress timeout of %" PRId64 " s ran out",
			    to->in_progress_s);
		else
			snprintf(reason, sizeof(reason), "step timeout of %" PRId64 " s ran out",
			    to->step_s);
		if ((r = server_move(d, &ex[i], CF_EXEC_TIMED_OUT, 0, reason)) != 0) {
			cf_store_rollback(st);
			goto out;
		}
	}
	if ((r = cf_store_commit(st)) != 0)
		cf_store_rollback(st);
out:
	cf_exec_recs_free(ex, n);
	return r;
}

/* Latest attempts that FAILED or TIMED_OUT with retries left: queued again. */
static int
retry(cfd *d, const cf_job_rec *job, const cf_job_retry_policy *p, wake_list *wake)
{
	static const cf_exec_status ended[] = { CF_EXEC_FAILED, CF_EXEC_TIMED_OUT };
	cf_store *st = cf_ca_store(d->ca);
	cf_exec_rec *ex = NULL, cur, again;
	cf_job_exec je, jn;
	size_t n = 0, i, k;
	int r = 0, began = 0;

	if (p->failed == 0 && p->timed_out == 0)
		return 0;
	memset(&cur, 0, sizeof(cur));
	for (k = 0; k < sizeof(ended) / sizeof(ended[0]); k++) {
		if ((r = cf_store_exec_list(st, &ex, &n, job->id, (int)ended[k], 0)) != 0)
			goto out;
		for (i = 0; i < n; i++) {
			cf_exec_rec_clear(&cur);
			if ((r = latest(st, &cur, job->id, ex[i].thing)) != 0)
				goto out;
			if (cur.execution_number != ex[i].execution_number)
				continue; /* an older attempt */
			exec_to_job(&je, &cur);
			if (!cf_job_retry_due(p, &je))
				continue;
			if ((r = cf_job_server_move(&jn, NULL, &je, CF_EXEC_QUEUED, 0)) != 0)
				goto out;
			if (!began) {
				if ((r = cf_store_begin(st)) != 0)
					goto out;
				began = 1;
			}
			memset(&again, 0, sizeof(again));
			snprintf(again.job_id, sizeof(again.job_id), "%s", job->id);
			snprintf(again.thing, sizeof(again.thing), "%s", cur.thing);
			again.status = CF_EXEC_QUEUED;
			again.execution_number = jn.execution_number;
			again.version = jn.version_number;
			again.retries_failed = jn.retries_failed;
			again.retries_timed_out = jn.retries_timed_out;
			if ((r = cf_store_exec_insert(st, &again)) != 0)
				goto out;
			cf_log(CF_LOG_INFO, "execution retried", "thing=%s job=%s attempt=%jd after=%s",
			    cur.thing, job->id, (intmax_t)again.execution_number,
			    cf_proto_status_name(cur.status));
			wake_add(wake, cur.thing);
		}
		cf_exec_recs_free(ex, n);
		ex = NULL;
		n = 0;
	}
	if (began && (r = cf_store_commit(st)) == 0)
		began = 0;
out:
	if (began)
		cf_store_rollback(st);
	cf_exec_rec_clear(&cur);
	cf_exec_recs_free(ex, n);
	return r;
}

/* Releases as many unreleased targets as the rollout allows now. */
static int
release(cfd *d, const cf_job_rec *job, const cf_jobspec_config *cfg,
    const int64_t counts[CF_EXEC__COUNT], int64_t now, wake_list *wake)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_job_target_stats ts;
	cf_job_rollout_state rs;
	cf_job_target_rec *tg = NULL;
	cf_exec_rec e;
	int64_t allow = RELEASE_BATCH;
	size_t n = 0, i;
	int r;

	memset(&rs, 0, sizeof(rs));
	if ((r = cf_store_job_target_stats(st, &ts, job->id, 0)) != 0 || ts.unreleased == 0)
		return r;
	if (cfg->has_rollout) {
		if (ts.first_released_at != 0) {
			rs.began_at = ts.first_released_at;
			rs.window_start = rs.began_at +
			    (now > rs.began_at ? (now - rs.began_at) / 60 * 60 : 0);
			if ((r = cf_store_job_target_stats(st, &ts, job->id, rs.window_start)) != 0)
				return r;
			rs.window_notified = ts.released_since;
			rs.notified = ts.released + ts.removed;
			rs.succeeded = counts[CF_EXEC_SUCCEEDED];
		}
		allow = cf_job_rollout_allowance(&cfg->rollout, &rs, now);
		if (allow > RELEASE_BATCH)
			allow = RELEASE_BATCH;
	}
	if (allow <= 0)
		return 0;
	if ((r = cf_store_job_target_list(st, &tg, &n, job->id, CF_TARGETS_UNRELEASED,
	    (size_t)allow)) != 0)
		return r;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		memset(&e, 0, sizeof(e));
		snprintf(e.job_id, sizeof(e.job_id), "%s", job->id);
		snprintf(e.thing, sizeof(e.thing), "%s", tg[i].thing);
		e.status = CF_EXEC_QUEUED;
		if ((r = cf_store_job_target_release(st, job->id, tg[i].thing, now)) != 0)
			goto fail;
		r = cf_store_exec_insert(st, &e);
		if (r == CF_ENOTFOUND) {
			/* the thing was deleted since it became a target */
			cf_log(CF_LOG_WARN, "target no longer exists", "job=%s thing=%s", job->id,
			    tg[i].thing);
			if ((r = cf_store_job_target_remove(st, job->id, tg[i].thing, now)) != 0)
				goto fail;
			continue;
		}
		if (r != 0)
			goto fail;
		wake_add(wake, tg[i].thing);
	}
	if ((r = cf_store_commit(st)) != 0)
		goto fail;
	cf_log(CF_LOG_INFO, "executions released", "job=%s count=%zu", job->id, n);
	if (n == RELEASE_BATCH)
		cfd_engine_kick(d); /* more may be due now: after the reactor served what waits */
	goto out;
fail:
	cf_store_rollback(st);
out:
	cf_job_target_recs_free(tg, n);
	return r;
}

static int
notify_aborted(cfd *d, const cf_job_rec *job, const char *why)
{
	cfd_notice n;

	memset(&n, 0, sizeof(n));
	n.kind = "job.aborted";
	n.job_id = job->id;
	n.status = "CANCELED";
	n.reason = why;
	return cfd_notify(d, &n);
}

static int
job_pass(cfd *d, const cf_job_rec *job, int64_t now, int follow, wake_list *wake)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_jobspec_config cfg;
	cf_job_target_stats ts;
	int64_t counts[CF_EXEC__COUNT];
	cf_job_counts jc;
	size_t which;
	char why[256];
	int r, ended;

	if ((r = cf_jobspec_config_parse(&cfg, job->config)) != 0) {
		cf_error_prefix("job %s: stored configuration", job->id);
		return r;
	}
	ended = cf_job_schedule_ended(&cfg.schedule, now);
	if (ended && cfg.schedule.end_behavior != CF_JOB_END_STOP_ROLLOUT)
		return cancel_job(d, job->id, cfg.schedule.end_behavior == CF_JOB_END_FORCE_CANCEL,
		    "the schedule ended", wake);
	if (job->status == CF_JOB_STATE_SCHEDULED) {
		if (!ended && !cf_job_schedule_may_start(&cfg.schedule, now))
			return 0;
		if ((r = cf_store_job_set_status(st, job->id, CF_JOB_STATE_IN_PROGRESS, 0,
		    NULL)) != 0)
			return r;
		cf_log(CF_LOG_INFO, "job started", "job=%s", job->id);
	}
	if (job->selection == CF_JOB_SELECTION_CONTINUOUS && !ended && follow &&
	    (r = follow_targets(d, job, now, wake)) != 0)
		return r;
	if ((r = time_out(d, job, &cfg.timeouts, now)) != 0 ||
	    (r = retry(d, job, &cfg.retry_policy, wake)) != 0 ||
	    (r = cf_store_exec_counts(st, counts, job->id)) != 0)
		return r;
	jc.succeeded = counts[CF_EXEC_SUCCEEDED];
	jc.failed = counts[CF_EXEC_FAILED];
	jc.rejected = counts[CF_EXEC_REJECTED];
	jc.timed_out = counts[CF_EXEC_TIMED_OUT];
	if (cf_job_abort_due(&which, cfg.abort, cfg.n_abort, &jc)) {
		snprintf(why, sizeof(why), "aborted: %s reached %g%% of %jd executed (minimum %jd)",
		    cf_job_failure_name(cfg.abort[which].type), cfg.abort[which].threshold_percent,
		    (intmax_t)(jc.succeeded + jc.failed + jc.rejected + jc.timed_out),
		    (intmax_t)cfg.abort[which].min_executed);
		if ((r = cancel_job(d, job->id, 0, why, wake)) != 0)
			return r;
		cf_log(CF_LOG_WARN, "job aborted", "job=%s reason=%s", job->id, why);
		if ((r = notify_aborted(d, job, why)) == 0)
			cfd_notify_wake(d);
		return r;
	}
	if (!ended && cf_job_schedule_may_start(&cfg.schedule, now) &&
	    (r = release(d, job, &cfg, counts, now, wake)) != 0)
		return r;
	/* Completion: nothing left to release (or the rollout stopped) and nothing pending. */
	if (job->selection == CF_JOB_SELECTION_CONTINUOUS && !ended)
		return 0;
	if ((r = cf_store_job_target_stats(st, &ts, job->id, 0)) != 0 ||
	    (r = cf_store_exec_counts(st, counts, job->id)) != 0)
		return r;
	if ((ts.unreleased == 0 || ended) && counts[CF_EXEC_QUEUED] == 0 &&
	    counts[CF_EXEC_IN_PROGRESS] == 0) {
		if ((r = cf_store_job_set_status(st, job->id, CF_JOB_STATE_COMPLETED, 0,
		    ended && ts.unreleased ? "the schedule ended" : NULL)) != 0)
			return r;
		cf_log(CF_LOG_INFO, "job completed", "job=%s succeeded=%jd failed=%jd timed_out=%jd "
		    "rejected=%jd", job->id, (intmax_t)counts[CF_EXEC_SUCCEEDED],
		    (intmax_t)counts[CF_EXEC_FAILED], (intmax_t)counts[CF_EXEC_TIMED_OUT],
		    (intmax_t)counts[CF_EXEC_REJECTED]);
	}
	return 0;
}

/* Indeterminate rotations whose device is connected now: its principal settles them. */
static void
settle_connected(cfd *d)
{
	cf_store *st = cf_ca_store(d->ca);
	cf_rotation_rec *rots = NULL;
	cf_conn_rec *conns = NULL;
	size_t n = 0, nc = 0, i;

	if (cf_store_rotation_list_state(st, &rots, &n, CF_ROTATION_INDETERMINATE, 100) != 0) {
		cf_log(CF_LOG_ERROR, "cannot list indeterminate rotations", "error=%s",
		    cf_error_last());
		return;
	}
	for (i = 0; i < n; i++) {
		if (cf_store_connection_list(st, &conns, &nc, rots[i].thing, 1, 1) != 0)
			continue;
		if (nc == 1 && cfd_rotation_connected(d, rots[i].thing, conns[0].principal) < 0)
			cf_log(CF_LOG_ERROR, "cannot settle an indeterminate rotation", "thing=%s error=%s",
			    rots[i].thing, cf_error_last());
		cf_conn_recs_free(conns, nc);
		conns = NULL;
		nc = 0;
	}
	cf_rotation_recs_free(rots, n);
}

void
cfd_engine_pass(cfd *d)
{
	static const cf_job_state live[] = { CF_JOB_STATE_SCHEDULED, CF_JOB_STATE_IN_PROGRESS };
	cf_store *st = cf_ca_store(d->ca);
	cf_job_rec *jobs = NULL;
	wake_list wake;
	int64_t now = cf_time_now();
	size_t n = 0, i, k;
	int follow;

	if (d->engine == NULL)
		return;
	d->engine->last_pass_us = cfd_mono_us();
	follow = now - d->engine->last_follow >= FOLLOW_EVERY_S;
	memset(&wake, 0, sizeof(wake));
	if (follow)
		d->engine->last_follow = now;
	for (k = 0; k < sizeof(live) / sizeof(live[0]); k++) {
		if (cf_store_job_list(st, &jobs, &n, (int)live[k]) != 0) {
			cf_log(CF_LOG_ERROR, "cannot list jobs", "error=%s", cf_error_last());
			continue;
		}
		for (i = 0; i < n; i++)
			if (job_pass(d, &jobs[i], now, follow, &wake) != 0)
				cf_log(CF_LOG_ERROR, "job pass failed", "job=%s error=%s", jobs[i].id,
				    cf_error_last());
		cf_job_recs_free(jobs, n);
		jobs = NULL;
		n = 0;
	}
	settle_connected(d);
	cfd_notify_wake(d);
	wake_send(d, &wake);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cfd_engine_pass(arg);
}

int
cfd_engine_start(cfd *d)
{
	struct timeval tv = { TICK_S, 0 };
	cfd_engine *e;

	if ((e = calloc(1, sizeof(*e))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	d->engine = e;
	if ((e->tick = event_new(d->base, -1, EV_PERSIST, on_tick, d)) == NULL ||
	    (e->soon = evtimer_new(d->base, on_tick, d)) == NULL || event_add(e->tick, &tv) != 0) {
		cfd_engine_stop(d);
		cf_error_set("cannot start the jobs engine's timer");
		return CF_ERROR;
	}
	cfd_engine_kick(d);
	return 0;
}

void
cfd_engine_stop(cfd *d)
{
	cfd_engine *e = d->engine;

	if (e == NULL)
		return;
	if (e->tick)
		event_free(e->tick);
	if (e->soon)
		event_free(e->soon);
	free(e);
	d->engine = NULL;
}

void
cfd_engine_kick(cfd *d)
{
	cfd_engine *e = d->engine;
	struct timeval tv = { 0, 0 };
	int64_t since;

	if (e == NULL || evtimer_pending(e->soon, NULL))
		return;
	/* Kicks coalesce: during a rollout executions end hundreds of times a second. */
	since = cfd_mono_us() - e->last_pass_us;
	if (e->last_pass_us != 0 && since >= 0 && since < KICK_GAP_US)
		tv.tv_usec = (suseconds_t)(KICK_GAP_US - since);
	evtimer_add(e->soon, &tv);
}

int
cfd_engine_cancel(cfd *d, const char *job_id, int force, const char *comment)
{
	cf_job_rec job;
	wake_list wake;
	int r;

	memset(&job, 0, sizeof(job));
	memset(&wake, 0, sizeof(wake));
	if ((r = cf_store_job_get(cf_ca_store(d->ca), &job, job_id)) != 0)
		return r;
	if (job.status == CF_JOB_STATE_CANCELED || job.status == CF_JOB_STATE_COMPLETED) {
		cf_error_set("job %s is already %s", job_id, cf_job_state_name(job.status));
		r = CF_ESTATE;
		goto out;
	}
	r = cancel_job(d, job_id, force, comment && comment[0] ? comment :
	    force ? "force-canceled by an operator" : "canceled by an operator", &wake);
	cfd_notify_wake(d);
	wake_send(d, &wake);
out:
	cf_job_rec_clear(&job);
	return r;
}
