/*
 * certfleetd's audits: the schedule and the automatic mitigation rules
 * (DESIGN §8, docs/audit.md "In certfleetd").
 *
 * Owns the settings audit_schedule / audit_interval, audit_checks,
 * audit_params, mitigation_rule.<CHECK>, mitigation_rotate_key_algorithm and
 * mitigation_rotate_config, and one timer on the reactor that starts a
 * scheduled audit when one is due. The audit itself is cf_audit_run, one
 * pass over the certificates (1.3 s for a million of them, bench/RESULTS.md),
 * so it runs on the reactor like every other store write; nothing else
 * writes meanwhile, which is what makes the rules' idempotence checks safe.
 *
 * "Due" is decided against the store: the latest audit with trigger
 * "scheduled" is the last run (read once at start, then kept here), so a
 * restart neither runs a slot twice nor skips one that passed while the
 * daemon was down (it runs once, late). With no scheduled audit ever, the
 * daemon's start is the last run: the first slot after it runs.
 *
 * After every audit the daemon runs (scheduled, or POST /v1/audits) the
 * rules apply to its unsuppressed findings: each finding gets its rule's
 * actions in order, a failed one stopping the rest for that finding. The
 * actions go phase by phase (every finding's first action, then every
 * finding's second ...), so that the "rotate" of one rule becomes ONE
 * rotation job for all the things its findings name (one per key
 * algorithm), and no thing with a live rotation execution gets another.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "certfleetd.h"
#include "cf_config.h"
#include "cf_mitigate.h"
#include "cf_util.h"

#define TICK_S 1
#define RULE_MAX (CF_MITIGATE__COUNT * 2) /* actions in one rule */
#define ROTATE_KEY_DEFAULT "ECDSA-P256"   /* a finding with no certificate to copy it from */
/* Retries 2 (FAILED or TIMED_OUT), an hour to finish once started. */
#define ROTATE_CONFIG_DEFAULT \
	"{\"retry\":[{\"failureType\":\"ALL\",\"numberOfRetries\":2}]," \
	"\"timeouts\":{\"inProgressSeconds\":3600}}"

struct cfd_auditor {
	struct event *tick;
	cf_audit_schedule s;
	char schedule_text[64];
	cf_audit_opts opts;                      /* audit_checks, audit_params */
	cf_mitigate_action rule[CF_AUDIT__COUNT][RULE_MAX];
	size_t rule_n[CF_AUDIT__COUNT];
	char rotate_key_alg[32];                 /* "" = the certificate's own */
	char *rotate_config;                     /* canonical job config */
	char quarantine_group[CF_NAME_MAX + 1];
	char broker_config[PATH_MAX];            /* "" = none */
	int64_t last_run;                        /* started_at of the last scheduled audit */
};

/* ---- settings ----------------------------------------------------------------------------- */

/* "a,b,c" into acts (at most RULE_MAX). CF_EINVAL naming the bad action. */
static int
parse_rule(cf_mitigate_action *acts, size_t *n, const char *key, const char *text)
{
	char buf[512], *tok, *save = NULL;

	*n = 0;
	if (strlen(text) >= sizeof(buf)) {
		cf_error_set("%s is too long", key);
		return CF_EINVAL;
	}
	memcpy(buf, text, strlen(text) + 1);
	for (tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (*n == RULE_MAX) {
			cf_error_set("%s: more than %d actions", key, RULE_MAX);
			return CF_EINVAL;
		}
		if (cf_mitigate_action_parse(&acts[*n], tok) != 0) {
			cf_error_prefix("%s", key);
			return CF_EINVAL;
		}
		(*n)++;
	}
	if (*n == 0) {
		cf_error_set("%s names no action", key);
		return CF_EINVAL;
	}
	return 0;
}

/* Every mitigation_rule.<NAME> must name a check (a typo would silently disable a rule). */
static int
check_rule_names(const cf_config *cfg)
{
	const char *k;
	size_t i;

	for (i = 0; (k = cf_config_key_at(cfg, i)) != NULL; i++) {
		if (strncmp(k, "mitigation_rule.", 16) == 0 && cf_audit_check_find(k + 16) < 0) {
			cf_error_set("%s: %s: no check is named '%s' (docs/audit.md lists them)",
			    cf_config_path(cfg), k, k + 16);
			return CF_EINVAL;
		}
	}
	return 0;
}

static int
load_settings(cfd *d, cfd_auditor *a)
{
	const cf_config *cfg = cf_ca_config(d->ca);
	const char *path = cf_config_path(cfg), *v, *sched_text, *interval_text;
	char key[128], *p, *save = NULL, buf[2048];
	cf_jobspec_config jc;
	cf_key_alg ka;
	long interval = 0;
	size_t i;
	int r;

	cf_audit_opts_init(&a->opts);
	sched_text = cf_config_get(cfg, "audit_schedule");
	interval_text = cf_config_get(cfg, "audit_interval");
	if (sched_text != NULL && *sched_text != '\0' && interval_text != NULL) {
		cf_error_set("%s: set audit_schedule or audit_interval, not both", path);
		return CF_EINVAL;
	}
	if (sched_text != NULL && *sched_text != '\0' && strcmp(sched_text, "off") != 0) {
		if ((r = cf_audit_schedule_parse(&a->s, sched_text)) != 0) {
			cf_error_prefix("%s", path);
			return r;
		}
		snprintf(a->schedule_text, sizeof(a->schedule_text), "%s", sched_text);
	}
	if (interval_text != NULL) {
		if ((r = cf_config_get_int(&interval, cfg, "audit_interval", 1, 366L * 86400, 86400)) != 0)
			return r;
		a->s.kind = CF_AUDIT_SCHED_INTERVAL;
		a->s.interval = interval;
		snprintf(a->schedule_text, sizeof(a->schedule_text), "every %lds", interval);
	}
	if ((v = cf_config_get(cfg, "audit_checks")) != NULL && *v != '\0' && strcmp(v, "all") != 0 &&
	    (r = cf_audit_opts_select(&a->opts, v)) != 0) {
		cf_error_prefix("%s: audit_checks", path);
		return r;
	}
	if ((v = cf_config_get(cfg, "audit_params")) != NULL && *v != '\0') {
		if (strlen(v) >= sizeof(buf)) {
			cf_error_set("%s: audit_params is too long", path);
			return CF_EINVAL;
		}
		memcpy(buf, v, strlen(v) + 1);
		for (p = strtok_r(buf, ", ", &save); p != NULL; p = strtok_r(NULL, ", ", &save)) {
			if ((r = cf_audit_opts_param(&a->opts, p)) != 0) {
				cf_error_prefix("%s: audit_params", path);
				return r;
			}
		}
	}
	a->opts.keyq = cf_ca_policy(d->ca);
	a->opts.topic_prefix = d->topic_prefix;
	if ((v = cf_config_get(cfg, "broker_config")) != NULL && *v != '\0') {
		if ((r = v[0] == '/' ? cf_strfmt(a->broker_config, sizeof(a->broker_config), "%s", v) :
		    cf_strfmt(a->broker_config, sizeof(a->broker_config), "%s/%s", d->dir, v)) != 0)
			return r;
		a->opts.broker_config = a->broker_config;
	}
	/* mitigation_rule.<CHECK>: the key family is accepted by cf_ca; the names are checked here. */
	for (i = 0; i < CF_AUDIT__COUNT; i++) {
		snprintf(key, sizeof(key), "mitigation_rule.%s", cf_audit_checks[i].name);
		if ((v = cf_config_get(cfg, key)) != NULL &&
		    (r = parse_rule(a->rule[i], &a->rule_n[i], key, v)) != 0) {
			cf_error_prefix("%s", path);
			return r;
		}
	}
	if ((r = check_rule_names(cfg)) != 0)
		return r;
	if ((v = cf_config_get(cfg, "mitigation_rotate_key_algorithm")) != NULL && *v != '\0') {
		if ((r = cf_key_alg_parse(&ka, v)) != 0) {
			cf_error_prefix("%s: mitigation_rotate_key_algorithm", path);
			return r;
		}
		snprintf(a->rotate_key_alg, sizeof(a->rotate_key_alg), "%s", cf_key_alg_name(ka));
	}
	v = cf_config_get_str(cfg, "mitigation_rotate_config", ROTATE_CONFIG_DEFAULT);
	if ((r = cf_jobspec_config_parse(&jc, v)) != 0 ||
	    (r = cf_jobspec_config_dump(&a->rotate_config, &jc)) != 0) {
		cf_error_prefix("%s: mitigation_rotate_config", path);
		return r;
	}
	v = cf_config_get_str(cfg, "quarantine_group", CF_MITIGATE_QUARANTINE_GROUP);
	if (!cf_name_valid("group", v)) {
		cf_error_prefix("%s: quarantine_group", path);
		return CF_EINVAL;
	}
	snprintf(a->quarantine_group, sizeof(a->quarantine_group), "%s", v);
	return 0;
}

/* ---- mitigation rules ----------------------------------------------------------------------- */

typedef struct {
	cf_finding_rec f;
	int check;      /* its cf_audit_check */
	int dead;       /* an action failed (or it became suppressed): no more actions */
	size_t group;   /* the rotation group of the current phase, SIZE_MAX: none */
} mfinding;

/* The things of one rule's rotate step with one key algorithm: one job. */
typedef struct {
	int check;
	char key_alg[32];
	char **things;
	size_t n;
} rgroup;

/* Adds one execution to the answer of POST /v1/audits (log may be NULL). */
static void
log_action(json_t *log, const cf_mitigation_rec *m)
{
	if (log != NULL)
		json_array_append_new(log, json_pack("{s:I, s:s, s:s, s:s}", "finding",
		    (json_int_t)m->finding_id, "action", m->action, "status", m->status, "detail",
		    m->detail));
	cf_log(strcmp(m->status, "failed") == 0 ? CF_LOG_WARN : CF_LOG_INFO, "mitigation",
	    "finding=%lld action=%s status=%s detail=\"%s\"", (long long)m->finding_id, m->action,
	    m->status, m->detail);
}

/* Records an action this module performed; a failed record marks the finding dead too. */
static void
record(cfd *d, mfinding *mf, cf_mitigate_action act, const char *status, const char *detail,
    json_t *log)
{
	cf_mitigation_rec m;

	memset(&m, 0, sizeof(m));
	if (cf_mitigate_record(cf_ca_store(d->ca), &m, mf->f.id, act, status, detail) != 0) {
		cf_log(CF_LOG_ERROR, "cannot record a mitigation action", "finding=%lld error=%s",
		    (long long)mf->f.id, cf_error_last());
		mf->dead = 1;
		return;
	}
	if (strcmp(status, "failed") == 0)
		mf->dead = 1;
	log_action(log, &m);
}

/*
 * A live rotation of thing: an execution QUEUED or IN_PROGRESS of a
 * ROTATE_CERTIFICATE job. 1 with what filled in, 0 if none, < 0 on error.
 */
static int
live_rotation(cf_store *st, char *what, size_t len, const char *thing)
{
	cf_exec_rec e;
	cf_job_rec j;
	int r;

	memset(&e, 0, sizeof(e));
	memset(&j, 0, sizeof(j));
	if ((r = cf_store_exec_next_pending(st, &e, thing)) == CF_ENOTFOUND)
		return 0;
	if (r != 0)
		return r;
	if ((r = cf_store_job_get(st, &j, e.job_id)) == 0) {
		r = strcmp(j.operation, "ROTATE_CERTIFICATE") == 0;
		if (r)
			snprintf(what, len, "thing '%s' already has rotation job %s execution %lld %s",
			    thing, e.job_id, (long long)e.execution_number,
			    cf_proto_status_name(e.status));
	}
	cf_job_rec_clear(&j);
	cf_exec_rec_clear(&e);
	return r;
}

/*
 * Things that are targets of a live (SCHEDULED or IN_PROGRESS) rotation job
 * but have no execution yet: the job has not started, or its rollout has
 * not reached them. Unsorted; free with cf_strv_free.
 */
static int
unreleased_targets(cf_store *st, char ***out, size_t *out_n)
{
	static const cf_job_state live[] = { CF_JOB_STATE_SCHEDULED, CF_JOB_STATE_IN_PROGRESS };
	cf_job_rec *jobs = NULL;
	cf_job_target_rec *tg = NULL;
	size_t n_jobs = 0, n_tg = 0, i, j, k, n = 0;
	char **v = NULL, **nv;
	int r = 0;

	for (k = 0; k < sizeof(live) / sizeof(live[0]) && r == 0; k++) {
		if ((r = cf_store_job_list(st, &jobs, &n_jobs, (int)live[k])) != 0)
			break;
		for (i = 0; i < n_jobs && r == 0; i++) {
			if (strcmp(jobs[i].operation, "ROTATE_CERTIFICATE") != 0)
				continue;
			if ((r = cf_store_job_target_list(st, &tg, &n_tg, jobs[i].id, CF_TARGETS_UNRELEASED,
			    0)) != 0)
				break;
			for (j = 0; j < n_tg && r == 0; j++) {
				if ((nv = realloc(v, (n + 1) * sizeof(*v))) == NULL ||
				    (nv[n] = strdup(tg[j].thing)) == NULL) {
					if (nv != NULL)
						v = nv;
					cf_error_set("out of memory");
					r = CF_ERROR;
					break;
				}
				v = nv;
				n++;
			}
			cf_job_target_recs_free(tg, n_tg);
			tg = NULL;
			n_tg = 0;
		}
		cf_job_recs_free(jobs, n_jobs);
		jobs = NULL;
		n_jobs = 0;
	}
	if (r != 0) {
		cf_strv_free(v, n);
		return r;
	}
	*out = v;
	*out_n = n;
	return 0;
}

/* The key algorithm to rotate thing's certificate cert_id to. */
static void
rotate_alg(const cfd_auditor *a, cf_store *st, char out[32], const char *cert_id)
{
	cf_cert_rec c;
	cf_key_alg ka;

	snprintf(out, 32, "%s", a->rotate_key_alg[0] ? a->rotate_key_alg : ROTATE_KEY_DEFAULT);
	if (a->rotate_key_alg[0] != '\0' || cert_id[0] == '\0')
		return;
	memset(&c, 0, sizeof(c));
	/* A key the policy refuses (RSA-1024 ...) has no cf_key_alg name: the default then. */
	if (cf_store_cert_get(st, &c, cert_id) == 0 && cf_key_alg_parse(&ka, c.key_alg) == 0)
		snprintf(out, 32, "%s", cf_key_alg_name(ka));
	cf_cert_rec_clear(&c);
}

static int
strv_has(char *const *v, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* Phase k's rotate steps: one job per (rule, key algorithm). */
static void
rotate_phase(cfd *d, mfinding *mf, size_t n, size_t k, int64_t audit_id, json_t *log)
{
	cfd_auditor *a = d->auditor;
	cf_store *st = cf_ca_store(d->ca);
	char cert[CF_ID_LEN + 1], caid[CF_ID_LEN + 1], thing[CF_NAME_MAX + 1], alg[32];
	char what[CF_AUDIT_DETAIL_MAX + 1], job_id[CF_PROTO_JOB_ID_MAX + 1], comment[160];
	rgroup *g = NULL, *ng;
	size_t n_g = 0, n_pending = 0, i, j;
	cf_finding_rec cur;
	char **nv, **pending = NULL;
	int r, loaded = 0;

	for (i = 0; i < n; i++) {
		mf[i].group = SIZE_MAX;
		if (mf[i].dead || a->rule_n[mf[i].check] <= k ||
		    a->rule[mf[i].check][k] != CF_MITIGATE_ROTATE)
			continue;
		if (!loaded) {
			if (unreleased_targets(st, &pending, &n_pending) != 0) {
				record(d, &mf[i], CF_MITIGATE_ROTATE, "failed", cf_error_last(), log);
				continue;
			}
			loaded = 1;
		}
		/* Suppressed since the audit: never mitigated, nothing recorded (as cf_mitigate_apply). */
		if (cf_mitigate_finding(st, &cur, mf[i].f.id) != 0) {
			cf_log(CF_LOG_INFO, "mitigation skipped", "finding=%lld reason=\"%s\"",
			    (long long)mf[i].f.id, cf_error_last());
			mf[i].dead = 1;
			continue;
		}
		if ((r = cf_mitigate_target(st, cert, caid, thing, &cur)) != 0 || thing[0] == '\0') {
			record(d, &mf[i], CF_MITIGATE_ROTATE, "failed", r != 0 ? cf_error_last() :
			    "the finding names no thing", log);
			continue;
		}
		if ((r = live_rotation(st, what, sizeof(what), thing)) != 0) {
			record(d, &mf[i], CF_MITIGATE_ROTATE, r > 0 ? "noop" : "failed",
			    r > 0 ? what : cf_error_last(), log);
			continue;
		}
		if (strv_has(pending, n_pending, thing)) {
			snprintf(what, sizeof(what), "thing '%s' is already a target of a rotation job not "
			    "released to it yet", thing);
			record(d, &mf[i], CF_MITIGATE_ROTATE, "noop", what, log);
			continue;
		}
		rotate_alg(a, st, alg, cert);
		for (j = 0; j < n_g; j++)
			if (g[j].check == mf[i].check && strcmp(g[j].key_alg, alg) == 0)
				break;
		if (j == n_g) {
			if ((ng = realloc(g, (n_g + 1) * sizeof(*g))) == NULL) {
				record(d, &mf[i], CF_MITIGATE_ROTATE, "failed", "out of memory", log);
				continue;
			}
			g = ng;
			memset(&g[n_g], 0, sizeof(g[n_g]));
			g[n_g].check = mf[i].check;
			snprintf(g[n_g].key_alg, sizeof(g[n_g].key_alg), "%s", alg);
			n_g++;
		}
		if (!strv_has(g[j].things, g[j].n, thing)) {
			if ((nv = realloc(g[j].things, (g[j].n + 1) * sizeof(*nv))) == NULL ||
			    (nv[g[j].n] = strdup(thing)) == NULL) {
				if (nv != NULL)
					g[j].things = nv;
				record(d, &mf[i], CF_MITIGATE_ROTATE, "failed", "out of memory", log);
				continue;
			}
			g[j].things = nv;
			g[j].n++;
		}
		mf[i].group = j;
	}
	for (j = 0; j < n_g; j++) {
		snprintf(comment, sizeof(comment), "audit %lld: %s -> rotate", (long long)audit_id,
		    cf_audit_checks[g[j].check].name);
		r = cfd_jobs_create_rotation(d, job_id, (const char *const *)g[j].things, g[j].n,
		    g[j].key_alg, a->rotate_config, comment);
		if (r == 0)
			snprintf(what, sizeof(what), "rotation job %s (%zu things, %s)", job_id, g[j].n,
			    g[j].key_alg);
		else
			snprintf(what, sizeof(what), "cannot create the rotation job: %s", cf_error_last());
		for (i = 0; i < n; i++)
			if (mf[i].group == j)
				record(d, &mf[i], CF_MITIGATE_ROTATE, r == 0 ? "succeeded" : "failed", what,
				    log);
		cf_strv_free(g[j].things, g[j].n);
	}
	free(g);
	cf_strv_free(pending, n_pending);
}

/* notify: the finding through cfd_notify (every configured sink), recorded in the same transaction. */
static void
notify_one(cfd *d, mfinding *mf, json_t *log)
{
	cf_store *st = cf_ca_store(d->ca);
	char cert[CF_ID_LEN + 1], caid[CF_ID_LEN + 1], thing[CF_NAME_MAX + 1], reason[700];
	cf_finding_rec cur;
	cf_mitigation_rec m;
	cfd_notice nt;
	int r;

	if (cf_mitigate_finding(st, &cur, mf->f.id) != 0) {
		mf->dead = 1;
		return;
	}
	if (d->notify == NULL) {
		record(d, mf, CF_MITIGATE_NOTIFY, "noop", "no notification sink is configured", log);
		return;
	}
	if (cf_mitigate_target(st, cert, caid, thing, &cur) != 0)
		thing[0] = '\0';
	snprintf(reason, sizeof(reason), "%s %s: %s", cur.check, cur.reason_code, cur.detail);
	memset(&nt, 0, sizeof(nt));
	nt.kind = "audit.finding";
	nt.thing = thing[0] ? thing : NULL;
	nt.reason = reason;
	nt.old_cert = cert[0] ? cert : NULL;
	nt.finding = &cur;
	memset(&m, 0, sizeof(m));
	if ((r = cf_store_begin(st)) != 0)
		goto fail;
	if ((r = cfd_notify(d, &nt)) != 0 ||
	    (r = cf_mitigate_record(st, &m, cur.id, CF_MITIGATE_NOTIFY, "succeeded",
	    "notification queued")) != 0) {
		cf_store_rollback(st);
		goto fail;
	}
	if ((r = cf_store_commit(st)) != 0)
		goto fail;
	cfd_notify_wake(d);
	log_action(log, &m);
	return;
fail:
	record(d, mf, CF_MITIGATE_NOTIFY, "failed", cf_error_last(), log);
}

/* The rules on audit audit_id's unsuppressed findings (docs/audit.md "Rules"). */
static void
apply_rules(cfd *d, int64_t audit_id, json_t *log)
{
	cfd_auditor *a = d->auditor;
	cf_store *st = cf_ca_store(d->ca);
	cf_finding_filter ff = { .audit_id = audit_id, .severity = -1, .check = NULL };
	cf_finding_rec *fs = NULL;
	mfinding *mf = NULL;
	cf_mitigation_rec m;
	size_t n_fs = 0, n = 0, i, k, longest = 0;
	int c;

	for (c = 0; c < CF_AUDIT__COUNT; c++)
		if (a->rule_n[c] > longest)
			longest = a->rule_n[c];
	if (longest == 0)
		return;
	if (cf_store_finding_list(st, &fs, &n_fs, &ff) != 0) {
		cf_log(CF_LOG_ERROR, "mitigation: cannot list the findings", "audit=%lld error=%s",
		    (long long)audit_id, cf_error_last());
		return;
	}
	if (n_fs > 0 && (mf = calloc(n_fs, sizeof(*mf))) == NULL) {
		cf_log(CF_LOG_ERROR, "mitigation: out of memory", "audit=%lld", (long long)audit_id);
		free(fs);
		return;
	}
	for (i = 0; i < n_fs; i++) {
		if (fs[i].suppressed || (c = cf_audit_check_find(fs[i].check)) < 0 || a->rule_n[c] == 0)
			continue;
		mf[n].f = fs[i];
		mf[n].check = c;
		n++;
	}
	for (k = 0; k < longest; k++) {
		rotate_phase(d, mf, n, k, audit_id, log);
		for (i = 0; i < n; i++) {
			if (mf[i].dead || a->rule_n[mf[i].check] <= k)
				continue;
			switch (a->rule[mf[i].check][k]) {
			case CF_MITIGATE_ROTATE:
				break; /* done by rotate_phase */
			case CF_MITIGATE_NOTIFY:
				notify_one(d, &mf[i], log);
				break;
			default:
				memset(&m, 0, sizeof(m));
				if (cf_mitigate_apply(d->ca, &m, mf[i].f.id, a->rule[mf[i].check][k],
				    a->quarantine_group) != 0) {
					mf[i].dead = 1;
					if (m.action[0] == '\0') { /* suppressed meanwhile: nothing recorded */
						cf_log(CF_LOG_INFO, "mitigation skipped", "finding=%lld reason=\"%s\"",
						    (long long)mf[i].f.id, cf_error_last());
						break;
					}
				}
				log_action(log, &m);
				break;
			}
		}
	}
	free(mf);
	free(fs);
}

/* ---- running ------------------------------------------------------------------------------- */

int
cfd_audit_run(cfd *d, cf_audit_result *out, const cf_audit_opts *o, json_t *actions,
    int mitigate)
{
	cf_audit_result res;
	int64_t t0 = cfd_mono_us() / 1000;
	int r;

	memset(&res, 0, sizeof(res));
	if ((r = cf_audit_run(cf_ca_store(d->ca), &res, o)) != 0) {
		cf_log(CF_LOG_ERROR, "audit failed", "trigger=%s error=%s", o->trigger, cf_error_last());
		d->metrics.audits_failed++;
		return r;
	}
	d->metrics.audits_run++;
	cf_log(CF_LOG_INFO, "audit finished", "audit=%lld trigger=%s findings=%zu suppressed=%zu "
	    "ms=%lld", (long long)res.audit_id, o->trigger, res.findings, res.suppressed,
	    (long long)(cfd_mono_us() / 1000 - t0));
	if (mitigate)
		apply_rules(d, res.audit_id, actions);
	if (out != NULL)
		*out = res;
	return 0;
}

const cf_audit_opts *
cfd_audit_default_opts(const cfd *d)
{
	return &d->auditor->opts;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	cfd *d = arg;
	cfd_auditor *a = d->auditor;
	cf_audit_opts o;
	int64_t now = cf_time_now();

	(void)fd;
	(void)what;
	if (d->stopping || !cf_audit_schedule_due(&a->s, a->last_run, now))
		return;
	o = a->opts;
	o.trigger = "scheduled";
	/* Whatever happens, this slot is taken: the audit row exists from its start on. */
	a->last_run = now;
	cf_log(CF_LOG_INFO, "scheduled audit", "schedule=%s", a->schedule_text);
	if (cfd_audit_run(d, NULL, &o, NULL, 1) != 0)
		return; /* logged and counted there; the next slot tries again */
}

/* The last scheduled audit's start, or 0. */
static int
last_scheduled(cf_store *st, int64_t *out)
{
	cf_audit_rec *v = NULL;
	size_t n = 0, i;
	int r;

	*out = 0;
	if ((r = cf_store_audit_list(st, &v, &n, 0)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (strcmp(v[i].trigger, "scheduled") == 0) {
			*out = v[i].started_at;
			break;
		}
	}
	cf_audit_recs_free(v, n);
	return 0;
}

int
cfd_audit_start(cfd *d)
{
	struct timeval tv = { TICK_S, 0 };
	cfd_auditor *a;
	int64_t last = 0;
	int r;

	if ((a = calloc(1, sizeof(*a))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	d->auditor = a;
	if ((r = load_settings(d, a)) != 0)
		return r;
	if (a->s.kind == CF_AUDIT_SCHED_OFF)
		return 0;
	if ((r = last_scheduled(cf_ca_store(d->ca), &last)) != 0)
		return r;
	a->last_run = last != 0 ? last : cf_time_now();
	if ((a->tick = event_new(d->base, -1, EV_PERSIST, on_tick, d)) == NULL ||
	    event_add(a->tick, &tv) != 0) {
		cf_error_set("cannot start the audit timer");
		return CF_ERROR;
	}
	cf_log(CF_LOG_INFO, "audit schedule", "schedule=%s last_run=%lld", a->schedule_text,
	    (long long)last);
	return 0;
}

void
cfd_audit_stop(cfd *d)
{
	cfd_auditor *a = d->auditor;

	if (a == NULL)
		return;
	if (a->tick != NULL)
		event_free(a->tick);
	free(a->rotate_config);
	free(a);
	d->auditor = NULL;
}
