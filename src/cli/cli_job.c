/*
 * CLI verbs of the jobs engine, through certfleetd's HTTP API
 * (docs/certfleetd.md "Jobs and rotation", docs/cli.md "Jobs"):
 * `job create-rotation`, `job list`, `job describe`, `job cancel` and
 * `job watch`. The daemon owns jobs (it notifies the devices), so these
 * never write the registry themselves.
 *
 * create-rotation turns its flags into the targets and config JSON of
 * cf_jobspec and validates both here, with the library the daemon uses,
 * before anything is sent: a bad flag is a usage error (exit 2) naming the
 * flag, and needs no daemon. Thing names and status details in answers
 * come from devices: text output replaces control characters.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cf_job.h"
#include "cf_jobspec.h"
#include "cf_proto.h"

#define MAX_THINGS 10000
#define MAX_GROUPS 1000
#define COMMENT_MAX CF_JOB_COMMENT_MAX /* what certfleetd keeps */
#define EXPIRING_MAX_DAYS 3650
#define WATCH_INTERVAL_MAX 3600.0

/* create-rotation's options; OPT_FIRST.. index the "given twice" check. */
enum {
	OPT_FIRST = 2100,
	OPT_THING = OPT_FIRST,
	OPT_GROUP,
	OPT_ISSUER,
	OPT_EXPIRING,
	OPT_WEAK_KEY,
	OPT_CONTINUOUS,
	OPT_KEYALG,
	OPT_SIGALG,
	OPT_MAX_PER_MINUTE,
	OPT_RAMP_BASE,
	OPT_RAMP_FACTOR,
	OPT_RAMP_NOTIFIED,
	OPT_RAMP_SUCCEEDED,
	OPT_ABORT,
	OPT_RETRY,
	OPT_IN_PROGRESS_TIMEOUT,
	OPT_STEP_TIMEOUT,
	OPT_START_AT,
	OPT_END_AT,
	OPT_END_BEHAVIOR,
	OPT_WINDOW,
	OPT_JOB_ID,
	OPT_COMMENT,
	OPT_FORCE,
	OPT_INTERVAL,
	OPT_TIMEOUT,
	OPT_LAST
};

static const char *
jstr(json_t *o, const char *key, const char *def)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL ? v : def;
}

static long long
jint(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

static const char *
printable(char *buf, size_t len, const char *s)
{
	size_t i;

	snprintf(buf, len, "%s", s ? s : "");
	for (i = 0; buf[i]; i++)
		if ((unsigned char)buf[i] < ' ' || (unsigned char)buf[i] == 0x7f)
			buf[i] = '?';
	return buf;
}

/* "certfleet: FLAG: why" plus the verb's usage; CLI_USAGE. */
static int
flag_error(cli *c, const char *flag, const char *why)
{
	return cli_usage(c, "%s: %s", flag, why);
}

/* As flag_error with cf_error_last() as the reason. */
static int
flag_error_last(cli *c, const char *flag)
{
	char why[512];

	snprintf(why, sizeof(why), "%s", cf_error_last());
	return flag_error(c, flag, why);
}

/* ---- counts --------------------------------------------------------------- */

/* "QUEUED 1 IN_PROGRESS 0 ..." for the non-zero counts, in the state machine's order. */
static void
format_counts(char *out, size_t len, json_t *counts)
{
	size_t used = 0;
	int s, n;

	out[0] = '\0';
	for (s = 0; s < CF_EXEC__COUNT; s++) {
		const char *name = cf_proto_status_name((cf_exec_status)s);
		long long v = jint(counts, name);

		if (v == 0)
			continue;
		n = snprintf(out + used, len - used, "%s%s %lld", used ? " " : "", name, v);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	if (used == 0)
		snprintf(out, len, "-");
}

static void
print_counts(json_t *counts)
{
	char buf[512];

	format_counts(buf, sizeof(buf), counts);
	printf("%s\n", buf);
}

/* Executions whose latest attempt is final (counts), and the job's size. */
static void
job_progress(long long *done, long long *total, json_t *job)
{
	json_t *counts = json_object_get(job, "counts");
	json_t *tc = json_object_get(job, "targetCount");
	long long sum = 0, fin = 0, v;
	int s;

	for (s = 0; s < CF_EXEC__COUNT; s++) {
		v = jint(counts, cf_proto_status_name((cf_exec_status)s));
		sum += v;
		if (cf_job_status_terminal((cf_exec_status)s))
			fin += v;
	}
	*done = fin;
	/* targetCount.total counts targets not released yet; older daemons lack it. */
	*total = json_is_integer(json_object_get(tc, "total")) ? jint(tc, "total") : sum;
	if (*total < sum)
		*total = sum;
}

static int
job_ended(json_t *job)
{
	const char *st = jstr(job, "status", "");

	return strcmp(st, "CANCELED") == 0 || strcmp(st, "COMPLETED") == 0;
}

/* ---- create-rotation: parsing the flags -------------------------------------- */

typedef struct {
	json_t *things, *groups, *abort, *retry, *windows;
	const char *issuer, *key_name, *sig_name, *job_id, *comment, *end_behavior;
	long expiring_days, max_per_minute, ramp_base, ramp_notified, ramp_succeeded;
	double ramp_factor;
	int weak_key, continuous, json;
	int64_t in_progress_s, step_s, start_at, end_at;
	int given[OPT_LAST - OPT_FIRST];
	int retry_seen[CF_JOB_FAILURE__COUNT];
} rot_flags;

/* "90", "90s", "15m", "2h", "1d": 1 s .. max s. */
static int
parse_duration(int64_t *out, const char *s, int64_t max)
{
	char *e;
	long long v, mult = 1;

	errno = 0;
	v = strtoll(s, &e, 10);
	if (e == s || *s == '-' || *s == '+' || errno != 0)
		goto bad;
	if (*e != '\0') {
		switch (*e) {
		case 's': mult = 1; break;
		case 'm': mult = 60; break;
		case 'h': mult = 3600; break;
		case 'd': mult = 86400; break;
		default: goto bad;
		}
		if (e[1] != '\0')
			goto bad;
	}
	if (v < 1 || v > max / mult)
		goto bad;
	*out = (int64_t)(v * mult);
	return 0;
bad:
	cf_error_set("'%s' is not a duration from 1 s to %lld s (seconds, or a number with s, m, h "
	    "or d)", s, (long long)max);
	return CF_EINVAL;
}

/* A finite decimal in [min, max] (min excluded when open_min). */
static int
parse_decimal(double *out, const char *s, double min, double max, int open_min)
{
	char *e;
	double v;

	errno = 0;
	v = strtod(s, &e);
	if (e == s || *e != '\0' || errno != 0 || !isfinite(v) || v > max ||
	    (open_min ? v <= min : v < min)) {
		cf_error_set("'%s' is not a number %s %g and at most %g", s,
		    open_min ? "above" : "of at least", min, max);
		return CF_EINVAL;
	}
	*out = v;
	return 0;
}

/* Splits "a:b[:c]" into exactly n fields in buf; 0 or CF_EINVAL. */
static int
split_fields(char *buf, size_t len, char **f, int n, const char *s)
{
	char *p;
	int i;

	if (cf_strfmt(buf, len, "%s", s) != 0)
		return CF_EINVAL;
	p = buf;
	for (i = 0; i < n; i++) {
		f[i] = p;
		p = strchr(p, ':');
		if (i == n - 1)
			return p == NULL ? 0 : CF_EINVAL;
		if (p == NULL)
			return CF_EINVAL;
		*p++ = '\0';
	}
	return CF_EINVAL;
}

/* --abort TYPE:PERCENT:MIN */
static int
add_abort(cli *c, rot_flags *f, const char *s)
{
	char buf[128], *fld[3];
	cf_job_failure type;
	double pct;
	long min;

	if (json_array_size(f->abort) >= CF_JOB_ABORT_MAX) {
		cf_error_set("at most %d criteria", CF_JOB_ABORT_MAX);
		return flag_error_last(c, "--abort");
	}
	if (split_fields(buf, sizeof(buf), fld, 3, s) != 0) {
		cf_error_set("'%s' is not TYPE:PERCENT:MIN (e.g. FAILED:20:10)", s);
		return flag_error_last(c, "--abort");
	}
	if (cf_job_failure_parse(&type, fld[0]) != 0)
		return flag_error_last(c, "--abort");
	if (parse_decimal(&pct, fld[1], 0, 100, 1) != 0)
		return flag_error_last(c, "--abort (PERCENT)");
	if (cli_parse_int(&min, fld[2], 1, CF_JOBSPEC_TARGETS_MAX) != 0)
		return flag_error_last(c, "--abort (MIN executed)");
	if (json_array_append_new(f->abort, json_pack("{s:s, s:f, s:I}", "failureType",
	    cf_job_failure_name(type), "thresholdPercentage", pct, "minNumberOfExecutedThings",
	    (json_int_t)min)) != 0)
		return cli_fail("out of memory");
	return CLI_OK;
}

/* --retry TYPE:N */
static int
add_retry(cli *c, rot_flags *f, const char *s)
{
	char buf[128], *fld[2];
	cf_job_failure type;
	long n;

	if (split_fields(buf, sizeof(buf), fld, 2, s) != 0) {
		cf_error_set("'%s' is not TYPE:N (e.g. FAILED:3)", s);
		return flag_error_last(c, "--retry");
	}
	if (cf_job_failure_parse(&type, fld[0]) != 0)
		return flag_error_last(c, "--retry");
	if (type == CF_JOB_FAILURE_REJECTED)
		return flag_error(c, "--retry", "REJECTED is never retried (the device said retrying "
		    "cannot help); use FAILED, TIMED_OUT or ALL");
	if (f->retry_seen[type]) {
		cf_error_set("%s is given twice", cf_job_failure_name(type));
		return flag_error_last(c, "--retry");
	}
	if (cli_parse_int(&n, fld[1], 0, CF_JOB_RETRY_MAX) != 0)
		return flag_error_last(c, "--retry (N)");
	f->retry_seen[type] = 1;
	if (json_array_append_new(f->retry, json_pack("{s:s, s:I}", "failureType",
	    cf_job_failure_name(type), "numberOfRetries", (json_int_t)n)) != 0)
		return cli_fail("out of memory");
	return CLI_OK;
}

/* --window DAY@HH:MM+MINUTES, kept in cf_job_window_format's canonical form. */
static int
add_window(cli *c, rot_flags *f, const char *s)
{
	cf_job_window w;
	char buf[32];

	if (json_array_size(f->windows) >= CF_JOB_WINDOWS_MAX) {
		cf_error_set("at most %d windows", CF_JOB_WINDOWS_MAX);
		return flag_error_last(c, "--window");
	}
	if (cf_job_window_parse(&w, s) != 0 || cf_job_window_format(buf, sizeof(buf), &w) != 0)
		return flag_error_last(c, "--window");
	if (json_array_append_new(f->windows, json_string(buf)) != 0)
		return cli_fail("out of memory");
	return CLI_OK;
}

static int
add_name(cli *c, json_t *arr, const char *flag, const char *kind, size_t max, const char *s)
{
	char why[64];

	if (!cf_name_valid(kind, s))
		return flag_error_last(c, flag);
	if (json_array_size(arr) >= max) {
		snprintf(why, sizeof(why), "at most %zu", max);
		return flag_error(c, flag, why);
	}
	if (json_array_append_new(arr, json_string(s)) != 0)
		return cli_fail("out of memory");
	return CLI_OK;
}

/* Text a human typed for the job's record: bounded, no control characters. */
static int
text_valid(const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > max) {
		cf_error_set("must be 1 to %zu bytes", max);
		return 0;
	}
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] < ' ' || (unsigned char)s[i] == 0x7f) {
			cf_error_set("has a control character at position %zu", i + 1);
			return 0;
		}
	}
	return 1;
}

/* One option of create-rotation into f. CLI_OK, or what the verb returns. */
static int
rot_option(cli *c, rot_flags *f, int ch, const char *arg)
{
	static const char *const once_names[OPT_LAST - OPT_FIRST] = {
		[OPT_ISSUER - OPT_FIRST] = "--issuer",
		[OPT_EXPIRING - OPT_FIRST] = "--expiring-within",
		[OPT_KEYALG - OPT_FIRST] = "--key-algorithm",
		[OPT_SIGALG - OPT_FIRST] = "--signing-algorithm",
		[OPT_MAX_PER_MINUTE - OPT_FIRST] = "--max-per-minute",
		[OPT_RAMP_BASE - OPT_FIRST] = "--ramp-base",
		[OPT_RAMP_FACTOR - OPT_FIRST] = "--ramp-factor",
		[OPT_RAMP_NOTIFIED - OPT_FIRST] = "--ramp-after-notified",
		[OPT_RAMP_SUCCEEDED - OPT_FIRST] = "--ramp-after-succeeded",
		[OPT_IN_PROGRESS_TIMEOUT - OPT_FIRST] = "--in-progress-timeout",
		[OPT_STEP_TIMEOUT - OPT_FIRST] = "--step-timeout",
		[OPT_START_AT - OPT_FIRST] = "--start-at",
		[OPT_END_AT - OPT_FIRST] = "--end-at",
		[OPT_END_BEHAVIOR - OPT_FIRST] = "--end-behavior",
		[OPT_JOB_ID - OPT_FIRST] = "--job-id",
		[OPT_COMMENT - OPT_FIRST] = "--comment",
	};
	const char *once = NULL;
	cf_job_end end;

	if (ch >= OPT_FIRST && ch < OPT_LAST) {
		once = once_names[ch - OPT_FIRST];
		if (once != NULL && f->given[ch - OPT_FIRST])
			return flag_error(c, once, "given twice");
		f->given[ch - OPT_FIRST] = 1;
	}
	switch (ch) {
	case CLI_OPT_JSON: f->json = 1; return CLI_OK;
	case OPT_THING: return add_name(c, f->things, "--thing", "thing", MAX_THINGS, arg);
	case OPT_GROUP: return add_name(c, f->groups, "--group", "group", MAX_GROUPS, arg);
	case OPT_ISSUER:
		if (!cf_name_valid("CA", arg))
			return flag_error_last(c, "--issuer");
		f->issuer = arg;
		return CLI_OK;
	case OPT_EXPIRING:
		if (cli_parse_int(&f->expiring_days, arg, 1, EXPIRING_MAX_DAYS) != 0)
			return flag_error_last(c, "--expiring-within (days)");
		return CLI_OK;
	case OPT_WEAK_KEY: f->weak_key = 1; return CLI_OK;
	case OPT_CONTINUOUS: f->continuous = 1; return CLI_OK;
	case OPT_KEYALG: f->key_name = arg; return CLI_OK;
	case OPT_SIGALG: f->sig_name = arg; return CLI_OK;
	case OPT_MAX_PER_MINUTE:
		if (cli_parse_int(&f->max_per_minute, arg, 1, CF_JOB_ROLLOUT_MAX) != 0)
			return flag_error_last(c, "--max-per-minute");
		return CLI_OK;
	case OPT_RAMP_BASE:
		if (cli_parse_int(&f->ramp_base, arg, 1, CF_JOB_ROLLOUT_MAX) != 0)
			return flag_error_last(c, "--ramp-base");
		return CLI_OK;
	case OPT_RAMP_FACTOR:
		if (parse_decimal(&f->ramp_factor, arg, 1.1, 5.0, 0) != 0)
			return flag_error_last(c, "--ramp-factor");
		return CLI_OK;
	case OPT_RAMP_NOTIFIED:
		if (cli_parse_int(&f->ramp_notified, arg, 1, CF_JOBSPEC_TARGETS_MAX) != 0)
			return flag_error_last(c, "--ramp-after-notified");
		return CLI_OK;
	case OPT_RAMP_SUCCEEDED:
		if (cli_parse_int(&f->ramp_succeeded, arg, 1, CF_JOBSPEC_TARGETS_MAX) != 0)
			return flag_error_last(c, "--ramp-after-succeeded");
		return CLI_OK;
	case OPT_ABORT: return add_abort(c, f, arg);
	case OPT_RETRY: return add_retry(c, f, arg);
	case OPT_IN_PROGRESS_TIMEOUT:
		if (parse_duration(&f->in_progress_s, arg, CF_JOB_TIMEOUT_MAX) != 0)
			return flag_error_last(c, "--in-progress-timeout");
		return CLI_OK;
	case OPT_STEP_TIMEOUT:
		if (parse_duration(&f->step_s, arg, CF_JOB_TIMEOUT_MAX) != 0)
			return flag_error_last(c, "--step-timeout");
		return CLI_OK;
	case OPT_START_AT:
		if (cli_parse_time(&f->start_at, arg) != 0)
			return flag_error_last(c, "--start-at");
		if (f->start_at <= 0)
			return flag_error(c, "--start-at", "must be after 1970-01-01T00:00:00Z");
		return CLI_OK;
	case OPT_END_AT:
		if (cli_parse_time(&f->end_at, arg) != 0)
			return flag_error_last(c, "--end-at");
		if (f->end_at <= 0)
			return flag_error(c, "--end-at", "must be after 1970-01-01T00:00:00Z");
		return CLI_OK;
	case OPT_END_BEHAVIOR:
		if (cf_job_end_parse(&end, arg) != 0)
			return flag_error_last(c, "--end-behavior");
		f->end_behavior = cf_job_end_name(end);
		return CLI_OK;
	case OPT_WINDOW: return add_window(c, f, arg);
	case OPT_JOB_ID:
		if (!cf_proto_job_id_valid(arg))
			return flag_error_last(c, "--job-id");
		f->job_id = arg;
		return CLI_OK;
	case OPT_COMMENT:
		if (!text_valid(arg, COMMENT_MAX))
			return flag_error_last(c, "--comment");
		f->comment = arg;
		return CLI_OK;
	default:
		return cli_usage(c, "unexpected option");
	}
}

/* What the flags say together, that no single flag can. */
static int
rot_check(cli *c, rot_flags *f)
{
	int ramp = f->ramp_base || f->ramp_factor > 0 || f->ramp_notified || f->ramp_succeeded;
	cf_key_alg ka;
	cf_sig_alg sa;
	char why[256];

	if (json_array_size(f->things) == 0 && json_array_size(f->groups) == 0 &&
	    f->issuer == NULL && f->expiring_days == 0 && !f->weak_key)
		return cli_usage(c, "give at least one target: --thing, --group, or a certificate "
		    "query (--issuer, --expiring-within, --weak-key)");
	if (ramp) {
		if (f->ramp_base == 0)
			return flag_error(c, "--ramp-base", "the ramp needs --ramp-base (with --ramp-factor "
			    "and --ramp-after-notified or --ramp-after-succeeded)");
		if (f->ramp_factor == 0)
			return flag_error(c, "--ramp-factor", "the ramp needs --ramp-factor");
		if (f->ramp_notified == 0 && f->ramp_succeeded == 0)
			return flag_error(c, "--ramp-after-notified", "the ramp needs "
			    "--ramp-after-notified or --ramp-after-succeeded");
		if (f->ramp_notified != 0 && f->ramp_succeeded != 0)
			return flag_error(c, "--ramp-after-succeeded", "give --ramp-after-notified or "
			    "--ramp-after-succeeded, not both");
		if (f->max_per_minute != 0 && f->ramp_base > f->max_per_minute) {
			snprintf(why, sizeof(why), "%ld is above --max-per-minute %ld", f->ramp_base,
			    f->max_per_minute);
			return flag_error(c, "--ramp-base", why);
		}
	}
	if (f->end_behavior != NULL && f->end_at == 0)
		return flag_error(c, "--end-behavior", "needs --end-at");
	if (f->end_at != 0 && f->start_at != 0 && f->end_at <= f->start_at)
		return flag_error(c, "--end-at", "must be after --start-at");
	if (f->key_name == NULL)
		f->key_name = "ECDSA-P256";
	if (cf_alg_validate(&ka, &sa, f->key_name, NULL) != 0)
		return flag_error_last(c, "--key-algorithm");
	/* Refuse a bad pair here too, with the same message the daemon gives. */
	if (f->sig_name != NULL && cf_alg_validate(&ka, &sa, f->key_name, f->sig_name) != 0)
		return flag_error_last(c, "--signing-algorithm");
	return CLI_OK;
}

/* The targets JSON of cf_jobspec from the flags. */
static json_t *
rot_targets(const rot_flags *f)
{
	json_t *t = json_object(), *q;

	if (t == NULL)
		return NULL;
	if (json_array_size(f->things) > 0)
		json_object_set(t, "things", f->things);
	if (json_array_size(f->groups) > 0)
		json_object_set(t, "groups", f->groups);
	if (f->issuer != NULL || f->expiring_days != 0 || f->weak_key) {
		if ((q = json_object()) == NULL || json_object_set_new(t, "certificates", q) != 0)
			goto oom;
		if (f->issuer != NULL)
			json_object_set_new(q, "issuer", json_string(f->issuer));
		if (f->expiring_days != 0)
			json_object_set_new(q, "expiringWithinDays", json_integer(f->expiring_days));
		if (f->weak_key)
			json_object_set_new(q, "weakKey", json_true());
	}
	return t;
oom:
	json_decref(t);
	return NULL;
}

/* The config JSON of cf_jobspec from the flags (members only for what was given). */
static json_t *
rot_config(const rot_flags *f)
{
	json_t *cfg = json_object(), *o, *ramp;
	char t[CLI_TIME_LEN];

	if (cfg == NULL)
		return NULL;
	if (f->max_per_minute != 0 || f->ramp_base != 0) {
		/* A ramp without --max-per-minute grows up to the most anyone can ask for. */
		o = json_pack("{s:I}", "maxPerMinute", (json_int_t)(f->max_per_minute ?
		    f->max_per_minute : CF_JOB_ROLLOUT_MAX));
		if (o == NULL || json_object_set_new(cfg, "rollout", o) != 0)
			goto oom;
		if (f->ramp_base != 0) {
			ramp = json_pack("{s:I, s:f, s:{s:I}}", "baseRatePerMinute",
			    (json_int_t)f->ramp_base, "incrementFactor", f->ramp_factor,
			    "rateIncreaseCriteria", f->ramp_notified ? "numberOfNotifiedThings" :
			    "numberOfSucceededThings", (json_int_t)(f->ramp_notified ? f->ramp_notified :
			    f->ramp_succeeded));
			if (ramp == NULL || json_object_set_new(o, "exponentialRate", ramp) != 0)
				goto oom;
		}
	}
	if (json_array_size(f->abort) > 0)
		json_object_set(cfg, "abort", f->abort);
	if (json_array_size(f->retry) > 0)
		json_object_set(cfg, "retry", f->retry);
	if (f->in_progress_s != 0 || f->step_s != 0) {
		if ((o = json_object()) == NULL || json_object_set_new(cfg, "timeouts", o) != 0)
			goto oom;
		if (f->in_progress_s != 0)
			json_object_set_new(o, "inProgressSeconds", json_integer(f->in_progress_s));
		if (f->step_s != 0)
			json_object_set_new(o, "stepSeconds", json_integer(f->step_s));
	}
	if (f->start_at != 0 || f->end_at != 0 || json_array_size(f->windows) > 0) {
		if ((o = json_object()) == NULL || json_object_set_new(cfg, "schedule", o) != 0)
			goto oom;
		if (f->start_at != 0)
			json_object_set_new(o, "startTime", json_string(cli_time(t, f->start_at)));
		if (f->end_at != 0)
			json_object_set_new(o, "endTime", json_string(cli_time(t, f->end_at)));
		if (f->end_behavior != NULL)
			json_object_set_new(o, "endBehavior", json_string(f->end_behavior));
		if (json_array_size(f->windows) > 0)
			json_object_set(o, "maintenanceWindows", f->windows);
	}
	return cfg;
oom:
	json_decref(cfg);
	return NULL;
}

/*
 * The flag behind a cf_jobspec error, from the JSON member it names (most
 * specific first), so that even a check only the library makes points at
 * what the operator typed.
 */
static const char *
flag_of_spec_error(const char *msg)
{
	static const struct {
		const char *member, *flag;
	} map[] = {
		{ "baseRatePerMinute", "--ramp-base" },
		{ "incrementFactor", "--ramp-factor" },
		{ "numberOfNotifiedThings", "--ramp-after-notified" },
		{ "numberOfSucceededThings", "--ramp-after-succeeded" },
		{ "rateIncreaseCriteria", "--ramp-after-notified/--ramp-after-succeeded" },
		{ "exponentialRate", "--ramp-base" },
		{ "maxPerMinute", "--max-per-minute" },
		{ "rollout", "--max-per-minute" },
		{ "abort", "--abort" },
		{ "retry", "--retry" },
		{ "inProgressSeconds", "--in-progress-timeout" },
		{ "stepSeconds", "--step-timeout" },
		{ "startTime", "--start-at" },
		{ "endTime", "--end-at" },
		{ "endBehavior", "--end-behavior" },
		{ "maintenanceWindows", "--window" },
		{ "expiringWithinDays", "--expiring-within" },
		{ "weakKey", "--weak-key" },
		{ "issuer", "--issuer" },
		{ "certificates", "--issuer/--expiring-within/--weak-key" },
		{ "things", "--thing" },
		{ "groups", "--group" },
		{ "schedule", "--start-at/--end-at/--window" },
		{ "timeouts", "--in-progress-timeout/--step-timeout" },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(msg, map[i].member) != NULL)
			return map[i].flag;
	return NULL;
}

/* Validates targets and config with cf_jobspec, as certfleetd will. */
static int
rot_validate(cli *c, json_t *targets, json_t *cfg)
{
	cf_jobspec_targets t;
	cf_jobspec_config conf;
	char *ts = NULL, *cs = NULL, why[512];
	const char *flag;
	const char *part = "targets";
	int r = CLI_FAIL;

	memset(&t, 0, sizeof(t));
	if ((ts = json_dumps(targets, JSON_COMPACT)) == NULL ||
	    (cs = json_dumps(cfg, JSON_COMPACT)) == NULL) {
		r = cli_fail("out of memory");
		goto out;
	}
	if (cf_jobspec_targets_parse(&t, ts) != 0 ||
	    (part = "config", cf_jobspec_config_parse(&conf, cs)) != 0) {
		snprintf(why, sizeof(why), "%s", cf_error_last());
		if ((flag = flag_of_spec_error(why)) != NULL)
			r = flag_error(c, flag, why);
		else
			r = cli_usage(c, "job %s: %s", part, why);
		goto out;
	}
	r = CLI_OK;
out:
	cf_jobspec_targets_clear(&t);
	free(ts);
	free(cs);
	return r;
}

/* "ROTATE_CERTIFICATE to ED25519 (ED25519), SNAPSHOT, 12 targets, status SCHEDULED" */
static void
print_summary(json_t *job)
{
	json_t *doc = json_object_get(job, "document");
	json_t *tc = json_object_get(job, "targetCount");

	printf("%s to %s (%s), %s", jstr(job, "operation", "ROTATE_CERTIFICATE"),
	    jstr(doc, "keyAlgorithm", "?"), jstr(doc, "signingAlgorithm", "?"),
	    jstr(job, "targetSelection", "SNAPSHOT"));
	if (json_is_integer(json_object_get(tc, "total")))
		printf(", %lld targets", jint(tc, "total"));
	printf(", status %s\n", jstr(job, "status", "?"));
}

int
cli_job_create_rotation(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ "thing", required_argument, NULL, OPT_THING },
		{ "group", required_argument, NULL, OPT_GROUP },
		{ "issuer", required_argument, NULL, OPT_ISSUER },
		{ "expiring-within", required_argument, NULL, OPT_EXPIRING },
		{ "weak-key", no_argument, NULL, OPT_WEAK_KEY },
		{ "continuous", no_argument, NULL, OPT_CONTINUOUS },
		{ "key-algorithm", required_argument, NULL, OPT_KEYALG },
		{ "signing-algorithm", required_argument, NULL, OPT_SIGALG },
		{ "max-per-minute", required_argument, NULL, OPT_MAX_PER_MINUTE },
		{ "ramp-base", required_argument, NULL, OPT_RAMP_BASE },
		{ "ramp-factor", required_argument, NULL, OPT_RAMP_FACTOR },
		{ "ramp-after-notified", required_argument, NULL, OPT_RAMP_NOTIFIED },
		{ "ramp-after-succeeded", required_argument, NULL, OPT_RAMP_SUCCEEDED },
		{ "abort", required_argument, NULL, OPT_ABORT },
		{ "retry", required_argument, NULL, OPT_RETRY },
		{ "in-progress-timeout", required_argument, NULL, OPT_IN_PROGRESS_TIMEOUT },
		{ "step-timeout", required_argument, NULL, OPT_STEP_TIMEOUT },
		{ "start-at", required_argument, NULL, OPT_START_AT },
		{ "end-at", required_argument, NULL, OPT_END_AT },
		{ "end-behavior", required_argument, NULL, OPT_END_BEHAVIOR },
		{ "window", required_argument, NULL, OPT_WINDOW },
		{ "job-id", required_argument, NULL, OPT_JOB_ID },
		{ "comment", required_argument, NULL, OPT_COMMENT },
		{ NULL, 0, NULL, 0 },
	};
	char base[4200];
	json_t *req = NULL, *targets = NULL, *cfg = NULL, *ans = NULL;
	rot_flags f;
	long code = 0;
	int ch, r = CLI_FAIL;

	memset(&f, 0, sizeof(f));
	f.things = json_array();
	f.groups = json_array();
	f.abort = json_array();
	f.retry = json_array();
	f.windows = json_array();
	if (!f.things || !f.groups || !f.abort || !f.retry || !f.windows) {
		r = cli_fail("out of memory");
		goto out;
	}
	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		if (ch == CLI_DONE_OK || ch == CLI_DONE_USAGE) {
			r = ch == CLI_DONE_OK ? CLI_OK : CLI_USAGE;
			goto out;
		}
		if ((r = rot_option(c, &f, ch, optarg)) != CLI_OK)
			goto out;
	}
	if (optind < argc) {
		r = cli_usage(c, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if ((r = rot_check(c, &f)) != CLI_OK)
		goto out;
	if ((targets = rot_targets(&f)) == NULL || (cfg = rot_config(&f)) == NULL) {
		r = cli_fail("out of memory");
		goto out;
	}
	if ((r = rot_validate(c, targets, cfg)) != CLI_OK)
		goto out;
	req = json_pack("{s:O, s:s, s:s}", "targets", targets, "targetSelection",
	    f.continuous ? "CONTINUOUS" : "SNAPSHOT", "keyAlgorithm", f.key_name);
	if (req == NULL ||
	    (f.sig_name && json_object_set_new(req, "signingAlgorithm", json_string(f.sig_name)) != 0) ||
	    (json_object_size(cfg) > 0 && json_object_set(req, "config", cfg) != 0) ||
	    (f.job_id && json_object_set_new(req, "jobId", json_string(f.job_id)) != 0) ||
	    (f.comment && json_object_set_new(req, "comment", json_string(f.comment)) != 0)) {
		r = cli_fail("out of memory");
		goto out;
	}
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "POST", "/v1/jobs", req, &code, &ans)) != CLI_OK)
		goto out;
	if (code != 201 && code != 200) {
		r = cli_api_fail("job create-rotation", code, ans);
		goto out;
	}
	if (f.json) {
		r = cli_print_json(ans);
		ans = NULL;
		goto out;
	}
	printf("%s\n", jstr(ans, "jobId", ""));
	print_summary(ans);
	r = CLI_OK;
out:
	json_decref(ans);
	json_decref(req);
	json_decref(cfg);
	json_decref(targets);
	json_decref(f.things);
	json_decref(f.groups);
	json_decref(f.abort);
	json_decref(f.retry);
	json_decref(f.windows);
	return r;
}

/* ---- list, describe ------------------------------------------------------------ */

int
cli_job_list(cli *c, int argc, char **argv)
{
	char base[4200];
	json_t *ans = NULL, *arr, *o;
	long code = 0;
	size_t i;
	int json = 0, r;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (optind < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "GET", "/v1/jobs", NULL, &code, &ans)) != CLI_OK)
		goto out;
	/* {"jobs": [...]}; a daemon before the jobs engine answered the bare array. */
	arr = json_is_array(ans) ? ans : json_object_get(ans, "jobs");
	if (code != 200 || !json_is_array(arr)) {
		r = cli_api_fail("job list", code, ans);
		goto out;
	}
	if (json) {
		r = cli_print_json(json_incref(arr));
		goto out;
	}
	printf("%-32s %-20s %-12s %-21s %s\n", "JOB", "OPERATION", "STATUS", "CREATED", "EXECUTIONS");
	json_array_foreach(arr, i, o) {
		printf("%-32s %-20s %-12s %-21s ", jstr(o, "jobId", "?"), jstr(o, "operation", "?"),
		    jstr(o, "status", "?"), jstr(o, "createdAt", "-"));
		print_counts(json_object_get(o, "counts"));
	}
	r = CLI_OK;
out:
	json_decref(ans);
	return r;
}

/* GET /v1/jobs/ID into *out (an object). CLI_OK, or CLI_FAIL after printing why. */
static int
get_job(json_t **out, const char *base, const char *id, const char *what)
{
	char path[256], label[128];
	json_t *o = NULL;
	long code = 0;
	int r;

	*out = NULL;
	snprintf(path, sizeof(path), "/v1/jobs/%s", id);
	if ((r = cli_http(base, "GET", path, NULL, &code, &o)) != CLI_OK)
		return r;
	if (code != 200 || !json_is_object(o)) {
		snprintf(label, sizeof(label), "%s %s", what, id);
		r = cli_api_fail(label, code, o);
		json_decref(o);
		return r;
	}
	*out = o;
	return CLI_OK;
}

/* "things a, b, c (+ 7 more)" style lists of a JSON string array. */
static void
print_names(const char *label, json_t *arr)
{
	char name[CF_NAME_MAX + 1];
	size_t i, n = json_array_size(arr);
	json_t *v;

	if (n == 0)
		return;
	printf("%-14s", label);
	json_array_foreach(arr, i, v) {
		if (i == 8) {
			printf(" (+ %zu more)", n - i);
			break;
		}
		printf("%s%s", i ? ", " : "", printable(name, sizeof(name), json_string_value(v)));
	}
	printf("\n");
}

static void
print_duration(const char *label, json_t *v)
{
	long long s = (long long)json_integer_value(v);

	if (!json_is_integer(v))
		return;
	if (s % 86400 == 0)
		printf("%s %lldd", label, s / 86400);
	else if (s % 3600 == 0)
		printf("%s %lldh", label, s / 3600);
	else if (s % 60 == 0)
		printf("%s %lldm", label, s / 60);
	else
		printf("%s %llds", label, s);
}

/* The job's targets and configuration, one line per part that is set. */
static void
print_spec(json_t *job)
{
	json_t *t = json_object_get(job, "targets"), *cfg = json_object_get(job, "config");
	json_t *q = json_object_get(t, "certificates"), *ro, *ramp, *crit, *v, *to, *sc;
	char buf[CF_NAME_MAX + 1];
	size_t i;

	print_names("things", json_object_get(t, "things"));
	print_names("groups", json_object_get(t, "groups"));
	if (json_is_object(q)) {
		printf("%-14s", "certificates");
		if (json_object_get(q, "issuer"))
			printf(" issuer %s", printable(buf, sizeof(buf), jstr(q, "issuer", "")));
		if (json_object_get(q, "expiringWithinDays"))
			printf(" expiring within %lld days", jint(q, "expiringWithinDays"));
		if (json_is_true(json_object_get(q, "weakKey")))
			printf(" weak keys");
		printf("\n");
	}
	if ((ro = json_object_get(cfg, "rollout")) != NULL) {
		printf("%-14s at most %lld/min", "rollout", jint(ro, "maxPerMinute"));
		if ((ramp = json_object_get(ro, "exponentialRate")) != NULL) {
			crit = json_object_get(ramp, "rateIncreaseCriteria");
			printf(", ramp from %lld/min x%g after every %lld %s", jint(ramp, "baseRatePerMinute"),
			    json_number_value(json_object_get(ramp, "incrementFactor")),
			    json_object_get(crit, "numberOfNotifiedThings") ?
			    jint(crit, "numberOfNotifiedThings") : jint(crit, "numberOfSucceededThings"),
			    json_object_get(crit, "numberOfNotifiedThings") ? "notified" : "succeeded");
		}
		printf("\n");
	}
	json_array_foreach(json_object_get(cfg, "abort"), i, v)
		printf("%-14s %s >= %g%% of >= %lld executed\n", i ? "" : "abort", jstr(v, "failureType", "?"),
		    json_number_value(json_object_get(v, "thresholdPercentage")),
		    jint(v, "minNumberOfExecutedThings"));
	json_array_foreach(json_object_get(cfg, "retry"), i, v)
		printf("%-14s %s up to %lld times\n", i ? "" : "retry", jstr(v, "failureType", "?"),
		    jint(v, "numberOfRetries"));
	if ((to = json_object_get(cfg, "timeouts")) != NULL) {
		printf("%-14s", "timeouts");
		print_duration(" in progress", json_object_get(to, "inProgressSeconds"));
		print_duration(" step", json_object_get(to, "stepSeconds"));
		printf("\n");
	}
	if ((sc = json_object_get(cfg, "schedule")) != NULL) {
		printf("%-14s", "schedule");
		if (json_object_get(sc, "startTime"))
			printf(" start %s", jstr(sc, "startTime", "?"));
		if (json_object_get(sc, "endTime"))
			printf(" end %s (%s)", jstr(sc, "endTime", "?"), jstr(sc, "endBehavior",
			    "STOP_ROLLOUT"));
		json_array_foreach(json_object_get(sc, "maintenanceWindows"), i, v)
			printf("%s%s", i ? " " : " windows ", printable(buf, sizeof(buf),
			    json_string_value(v)));
		printf("\n");
	}
}

int
cli_job_describe(cli *c, int argc, char **argv)
{
	char base[4200], name[CF_NAME_MAX + 1], reason[256], comment[COMMENT_MAX + 1];
	json_t *o = NULL, *e, *doc, *tc;
	size_t i;
	int json = 0, r;

	if ((r = cli_plain_opts(c, argc, argv, &json)) != CLI_OK)
		return r == CLI_DONE_OK ? CLI_OK : r;
	if (argc - optind != 1)
		return cli_usage(c, "give one job id");
	if (!cf_proto_job_id_valid(argv[optind]))
		return cli_usage_error(c);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = get_job(&o, base, argv[optind], "job describe")) != CLI_OK)
		goto out;
	if (json) {
		r = cli_print_json(o);
		o = NULL;
		goto out;
	}
	doc = json_object_get(o, "document");
	tc = json_object_get(o, "targetCount");
	printf("%-14s%s\n", "job", jstr(o, "jobId", "?"));
	printf("%-14s%s\n", "operation", jstr(o, "operation", "?"));
	printf("%-14s%s%s\n", "status", jstr(o, "status", "?"),
	    json_is_true(json_object_get(o, "forceCanceled")) ? " (force-canceled)" : "");
	printf("%-14s%s / %s\n", "algorithms", jstr(doc, "keyAlgorithm", "?"),
	    jstr(doc, "signingAlgorithm", "?"));
	printf("%-14s%s\n", "selection", jstr(o, "targetSelection", "SNAPSHOT"));
	if (json_object_get(o, "comment") && !json_is_null(json_object_get(o, "comment")))
		printf("%-14s%s\n", "comment", printable(comment, sizeof(comment), jstr(o, "comment", "")));
	printf("%-14s%s\n", "created", jstr(o, "createdAt", "-"));
	if (json_is_string(json_object_get(o, "updatedAt")))
		printf("%-14s%s\n", "updated", jstr(o, "updatedAt", "-"));
	if (json_is_string(json_object_get(o, "completedAt")))
		printf("%-14s%s\n", "completed", jstr(o, "completedAt", "-"));
	print_spec(o);
	if (json_is_object(tc))
		printf("%-14s%lld total: %lld released, %lld unreleased, %lld removed\n", "targets",
		    jint(tc, "total"), jint(tc, "released"), jint(tc, "unreleased"), jint(tc, "removed"));
	printf("%-14s", "executions");
	print_counts(json_object_get(o, "counts"));
	printf("\n%-32s %-7s %-12s %-8s %-21s %s\n", "THING", "ATTEMPT", "STATUS", "VERSION",
	    "UPDATED", "REASON");
	json_array_foreach(json_object_get(o, "executions"), i, e) {
		printf("%-32s %-7lld %-12s %-8lld %-21s %s\n",
		    printable(name, sizeof(name), jstr(e, "thing", "?")), jint(e, "executionNumber"),
		    jstr(e, "status", "?"), jint(e, "versionNumber"), jstr(e, "lastUpdatedAt", "-"),
		    printable(reason, sizeof(reason),
		    jstr(json_object_get(e, "statusDetails"), "reason", "")));
	}
	r = CLI_OK;
out:
	json_decref(o);
	return r;
}

/* ---- cancel --------------------------------------------------------------------- */

int
cli_job_cancel(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "json", no_argument, NULL, CLI_OPT_JSON },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "comment", required_argument, NULL, OPT_COMMENT },
		{ NULL, 0, NULL, 0 },
	};
	const char *comment = NULL, *id, *msg;
	char base[4200], path[256];
	json_t *req = NULL, *ans = NULL;
	long code = 0;
	int json = 0, force = 0, ch, r = CLI_FAIL;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case CLI_OPT_JSON: json = 1; break;
		case OPT_FORCE: force = 1; break;
		case OPT_COMMENT:
			if (!text_valid(optarg, COMMENT_MAX))
				return flag_error_last(c, "--comment");
			comment = optarg;
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give one job id");
	id = argv[optind];
	if (!cf_proto_job_id_valid(id))
		return cli_usage_error(c);
	if ((req = json_pack("{s:b}", "force", force)) == NULL ||
	    (comment && json_object_set_new(req, "comment", json_string(comment)) != 0)) {
		r = cli_fail("out of memory");
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK ||
	    (r = cli_http(base, "POST", path, req, &code, &ans)) != CLI_OK)
		goto out;
	if (code == 409) {
		msg = json_string_value(json_object_get(ans, "error"));
		fprintf(stderr, "certfleet: job cancel: job %s has already ended and cannot be "
		    "canceled%s%s (HTTP 409)\n", id, msg ? ": " : "", msg ? msg : "");
		r = CLI_FAIL;
		goto out;
	}
	if (code != 200 || !json_is_object(ans)) {
		snprintf(path, sizeof(path), "job cancel %s", id);
		r = cli_api_fail(path, code, ans);
		goto out;
	}
	if (json) {
		r = cli_print_json(ans);
		ans = NULL;
		goto out;
	}
	printf("%s %s%s: ", jstr(ans, "jobId", id), jstr(ans, "status", "?"),
	    force ? " (force)" : "");
	print_counts(json_object_get(ans, "counts"));
	r = CLI_OK;
out:
	json_decref(ans);
	json_decref(req);
	return r;
}

/* ---- watch ------------------------------------------------------------------------ */

/* Ends the progress line a terminal shows, before anything else is printed. */
static void
end_line(int *drawn)
{
	if (*drawn)
		printf("\n");
	*drawn = 0;
}

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_for(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* "IN_PROGRESS 3/10 30% SUCCEEDED 3 QUEUED 5 IN_PROGRESS 2" */
static void
format_progress(char *out, size_t len, json_t *job, int bar)
{
	char counts[512], bars[32];
	long long done, total;
	int pct, i, filled;

	job_progress(&done, &total, job);
	pct = total > 0 ? (int)(done * 100 / total) : 0;
	format_counts(counts, sizeof(counts), json_object_get(job, "counts"));
	if (!bar) {
		snprintf(out, len, "%s %s %lld/%lld %d%% %s", jstr(job, "jobId", "?"),
		    jstr(job, "status", "?"), done, total, pct, counts);
		return;
	}
	filled = pct / 5;
	for (i = 0; i < 20; i++)
		bars[i] = i < filled ? '#' : '.';
	bars[20] = '\0';
	snprintf(out, len, "%s [%s] %lld/%lld %3d%% %s", jstr(job, "status", "?"), bars, done,
	    total, pct, counts);
}

/*
 * Prints the things whose latest attempt did not succeed; returns their
 * number (0 when every execution SUCCEEDED).
 */
static long long
report_unsucceeded(json_t *job)
{
	json_t *ex = json_object_get(job, "executions"), *e, *f;
	char name[CF_NAME_MAX + 1], reason[256];
	size_t i, j;
	long long n = 0;

	json_array_foreach(ex, i, e) {
		int latest = 1;

		/* Executions may list every attempt: only the latest one per thing counts. */
		json_array_foreach(ex, j, f) {
			if (j != i && strcmp(jstr(f, "thing", ""), jstr(e, "thing", "")) == 0 &&
			    (jint(f, "executionNumber") > jint(e, "executionNumber") ||
			    (jint(f, "executionNumber") == jint(e, "executionNumber") && j > i)))
				latest = 0;
		}
		if (!latest || strcmp(jstr(e, "status", ""), "SUCCEEDED") == 0)
			continue;
		printf("  %s %s%s%s\n", printable(name, sizeof(name), jstr(e, "thing", "?")),
		    jstr(e, "status", "?"),
		    json_object_get(json_object_get(e, "statusDetails"), "reason") ? ": " : "",
		    printable(reason, sizeof(reason),
		    jstr(json_object_get(e, "statusDetails"), "reason", "")));
		n++;
	}
	return n;
}

int
cli_job_watch(cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{ "interval", required_argument, NULL, OPT_INTERVAL },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ NULL, 0, NULL, 0 },
	};
	char base[4200], line[1024], last[1024] = "";
	const char *id;
	json_t *job = NULL;
	double interval = 1.0, start, left;
	int64_t timeout_s = 0;
	long long bad, done, total;
	int tty = isatty(STDOUT_FILENO), drawn = 0, ch, r = CLI_FAIL;

	while ((ch = cli_getopt(c, argc, argv, opts)) != -1) {
		switch (ch) {
		case CLI_DONE_OK: return CLI_OK;
		case CLI_DONE_USAGE: return CLI_USAGE;
		case OPT_INTERVAL:
			if (parse_decimal(&interval, optarg, 0.1, WATCH_INTERVAL_MAX, 0) != 0)
				return flag_error_last(c, "--interval (seconds)");
			break;
		case OPT_TIMEOUT:
			if (parse_duration(&timeout_s, optarg, INT64_C(365) * 86400) != 0)
				return flag_error_last(c, "--timeout");
			break;
		default: return cli_usage(c, "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage(c, "give one job id");
	id = argv[optind];
	if (!cf_proto_job_id_valid(id))
		return cli_usage_error(c);
	if ((r = cli_api_url(c, base, sizeof(base))) != CLI_OK)
		return r;
	start = now_mono();
	for (;;) {
		json_decref(job);
		if ((r = get_job(&job, base, id, "job watch")) != CLI_OK) {
			end_line(&drawn);
			goto out;
		}
		format_progress(line, sizeof(line), job, tty);
		if (tty) {
			/* One line, redrawn in place; \033[K clears what a longer one left. */
			printf("\r%s\033[K", line);
			fflush(stdout);
			drawn = 1;
		} else if (strcmp(line, last) != 0) {
			printf("%s\n", line);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", line);
		}
		if (job_ended(job))
			break;
		left = timeout_s > 0 ? (double)timeout_s - (now_mono() - start) : interval;
		if (left <= 0) {
			end_line(&drawn);
			job_progress(&done, &total, job);
			fprintf(stderr, "certfleet: job watch: timed out after %lld s: job %s is still "
			    "%s (%lld/%lld executions done)\n", (long long)timeout_s, id,
			    jstr(job, "status", "?"), done, total);
			r = CLI_FAIL;
			goto out;
		}
		sleep_for(left < interval ? left : interval);
	}
	end_line(&drawn);
	if ((bad = report_unsucceeded(job)) != 0 || strcmp(jstr(job, "status", ""), "COMPLETED") != 0) {
		fflush(stdout);
		fprintf(stderr, "certfleet: job watch: job %s ended %s with %lld execution%s not "
		    "SUCCEEDED\n", id, jstr(job, "status", "?"), bad, bad == 1 ? "" : "s");
		r = CLI_FAIL;
		goto out;
	}
	r = CLI_OK;
out:
	json_decref(job);
	return r;
}
