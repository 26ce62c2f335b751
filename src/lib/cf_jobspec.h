/*
 * cf_jobspec — a job's targets and configuration as JSON (DESIGN §7,
 * docs/jobs.md "Job specification"): parsed and validated into the structs
 * of cf_job.h, printed back canonically, and the targets resolved against
 * the registry.
 *
 * certfleetd validates every job it is asked to create with these (the
 * API answers 400 naming the first bad field) and the engine reads the
 * stored JSON back with them; the CLI builds the same JSON from its flags.
 * Errors name the JSON path of the bad value ("config.rollout.maxPerMinute:
 * must be 1..1000").
 *
 * Targets:
 *   {"things": ["a", ...], "groups": ["g", ...],
 *    "certificates": {"issuer": "<CA id or name>", "expiringWithinDays": N,
 *                     "weakKey": true}}
 * at least one of the three; "certificates" needs at least one criterion
 * and matches ACTIVE certificates attached to a thing (all criteria must
 * hold). Groups may be static or dynamic (cf_store_group_members).
 *
 * Configuration (every member optional; {} is a job released at once,
 * without limits, retries, abort or timeouts):
 *   {"rollout": {"maxPerMinute": 1..1000,
 *                "exponentialRate": {"baseRatePerMinute": N, "incrementFactor": 1.1..5,
 *                    "rateIncreaseCriteria": {"numberOfNotifiedThings": N} |
 *                                            {"numberOfSucceededThings": N}}},
 *    "abort": [{"failureType": "FAILED|REJECTED|TIMED_OUT|ALL",
 *               "thresholdPercentage": (0,100], "minNumberOfExecutedThings": N >= 1}],
 *    "retry": [{"failureType": "FAILED|TIMED_OUT|ALL", "numberOfRetries": 0..10}],
 *    "timeouts": {"inProgressSeconds": N, "stepSeconds": N},
 *    "schedule": {"startTime": "RFC 3339 UTC", "endTime": "...",
 *                 "endBehavior": "STOP_ROLLOUT|CANCEL|FORCE_CANCEL",
 *                 "maintenanceWindows": ["sat@22:00+240", ...]}}
 * Unknown members are refused (a typo must not silently drop a limit).
 */
#ifndef CF_JOBSPEC_H
#define CF_JOBSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"
#include "cf_job.h"
#include "cf_keyq.h"
#include "cf_store.h"

#define CF_JOBSPEC_TARGETS_MAX 100000 /* things + groups named in one job */

typedef struct {
	char **things;  /* validated names, in the order given, duplicates removed */
	size_t n_things;
	char **groups;
	size_t n_groups;
	int has_query;              /* "certificates" given */
	char issuer[CF_NAME_MAX + 1];  /* "" = any; a CA id (full or prefix) or name as given */
	int64_t expiring_within_s;  /* 0 = any; else not_after < now + this */
	int weak_key;               /* 1: only keys the policy flags (cf_keyq) */
} cf_jobspec_targets;

typedef struct {
	int has_rollout;               /* 0: release everything at once */
	cf_job_rollout rollout;
	cf_job_abort_criterion abort[CF_JOB_ABORT_MAX];
	size_t n_abort;
	cf_job_retry_criterion retry[CF_JOB_FAILURE__COUNT];
	size_t n_retry;
	cf_job_retry_policy retry_policy; /* from retry[] (cf_job_retry_policy_from) */
	cf_job_timeouts timeouts;
	cf_job_schedule schedule;
} cf_jobspec_config;

/* Parses and validates; out is cleared first (free with cf_jobspec_targets_clear). */
int cf_jobspec_targets_parse(cf_jobspec_targets *out, const char *json) CF_MUST_CHECK;
/* Canonical JSON (compact, sorted keys). */
int cf_jobspec_targets_dump(char **out, const cf_jobspec_targets *t) CF_MUST_CHECK;
void cf_jobspec_targets_clear(cf_jobspec_targets *t);

/*
 * The thing names the targets select at now, sorted and unique: the named
 * things (each must exist: CF_ENOTFOUND naming it), the members of each
 * group (CF_ENOTFOUND for an unknown group), and the things of the ACTIVE
 * certificates matching the query (one pass over the certificate list;
 * weakKey checks each key with cf_keyq under policy, which may be NULL
 * for the defaults). An unknown issuer is CF_ENOTFOUND. Free with
 * cf_strv_free.
 */
int cf_jobspec_targets_resolve(char ***out, size_t *out_n, cf_store *st,
    const cf_jobspec_targets *t, const cf_keyq_policy *policy, int64_t now) CF_MUST_CHECK;

/* Parses and validates (NULL or "" is {}). */
int cf_jobspec_config_parse(cf_jobspec_config *out, const char *json) CF_MUST_CHECK;
/* Canonical JSON of c (compact, sorted keys; members at their defaults left out). */
int cf_jobspec_config_dump(char **out, const cf_jobspec_config *c) CF_MUST_CHECK;

#endif
