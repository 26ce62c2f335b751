/*
 * cf_jobspec — a job's targets and configuration as JSON: parsed member by
 * member into the structs of cf_job.h (every value range-checked here with
 * its JSON path, then the whole checked again by cf_job's validators),
 * printed back canonically, and the targets resolved against the registry.
 * Owns nothing beyond the names in cf_jobspec_targets.
 */
#include "cf_jobspec.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf_util.h"

#define DAY (24 * 3600)
#define EXPIRY_DAYS_MAX 3650             /* expiringWithinDays: ten years */
#define TIME_MAX INT64_C(253402300799)   /* 9999-12-31T23:59:59Z */
#define PATH_MAX_LEN 128

/*
 * A JSON path into out (PATH_MAX_LEN bytes). Paths are built from our own
 * member names and indexes, so they fit; one that did not would be cut.
 */
static void CF_PRINTF(2, 3)
pathf(char *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, PATH_MAX_LEN, fmt, ap);
	va_end(ap);
}

/* Sets "path: message" and returns CF_EINVAL. */
static int CF_PRINTF(2, 3)
bad(const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cf_error_set("%s: %s", path, msg);
	return CF_EINVAL;
}

/* "path: " in front of the message a validator set; returns CF_EINVAL. */
static int
bad_prefix(const char *path)
{
	cf_error_prefix("%s", path);
	return CF_EINVAL;
}

/* An object holding only members named in allowed (NULL-terminated). */
static int
object_check(const json_t *o, const char *path, const char *const *allowed, const char *expect)
{
	const char *key;
	json_t *v;
	size_t i;

	if (!json_is_object(o))
		return bad(path, "must be an object");
	json_object_foreach((json_t *)o, key, v) {
		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(key, allowed[i]) == 0)
				break;
		}
		if (allowed[i] == NULL)
			return bad(path, "unknown member '%.64s' (expected %s)", key, expect);
	}
	return 0;
}

/* An integer member in [min, max]; *out untouched when it is absent. */
static int
int_member(int64_t *out, const json_t *o, const char *path, const char *name, int64_t min,
    int64_t max)
{
	char p[PATH_MAX_LEN];
	json_t *v = json_object_get(o, name);
	json_int_t i;

	if (v == NULL)
		return 0;
	pathf(p, "%s.%s", path, name);
	if (!json_is_integer(v))
		return bad(p, "must be an integer");
	i = json_integer_value(v);
	if (i < min || i > max) {
		if (max == INT64_MAX)
			return bad(p, "must be at least %lld", (long long)min);
		return bad(p, "must be %lld..%lld", (long long)min, (long long)max);
	}
	*out = (int64_t)i;
	return 0;
}

static int
required(const json_t *o, const char *path, const char *name)
{
	char p[PATH_MAX_LEN];

	if (json_object_get(o, name) != NULL)
		return 0;
	pathf(p, "%s.%s", path, name);
	return bad(p, "required");
}

/* A number (integer or not) member, required. */
static int
number_member(double *out, const json_t *o, const char *path, const char *name)
{
	char p[PATH_MAX_LEN];
	json_t *v = json_object_get(o, name);

	pathf(p, "%s.%s", path, name);
	if (v == NULL)
		return bad(p, "required");
	if (!json_is_number(v))
		return bad(p, "must be a number");
	*out = json_number_value(v);
	return 0;
}

/* A string member; NULL (and 0) when absent. */
static int
string_member(const char **out, const json_t *o, const char *path, const char *name)
{
	char p[PATH_MAX_LEN];
	json_t *v = json_object_get(o, name);

	*out = NULL;
	if (v == NULL)
		return 0;
	pathf(p, "%s.%s", path, name);
	if (!json_is_string(v))
		return bad(p, "must be a string");
	*out = json_string_value(v);
	return 0;
}

static int
load(json_t **out, const char *json, const char *path)
{
	json_error_t err;
	json_t *j;

	if ((j = json_loads(json, JSON_REJECT_DUPLICATES, &err)) == NULL)
		return bad(path, "not valid JSON: %s (line %d, column %d)", err.text, err.line,
		    err.column);
	if (!json_is_object(j)) {
		json_decref(j);
		return bad(path, "must be an object");
	}
	*out = j;
	return 0;
}

static int
dump(char **out, const json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	if (s == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	*out = s;
	return 0;
}

/* ---- RFC 3339 times (UTC, whole seconds) ----------------------------------- */

static int
digits(const char *s, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		*v = *v * 10 + (s[i] - '0');
	}
	return 1;
}

/* Exactly "YYYY-MM-DDTHH:MM:SSZ", a real date, 1970..9999. */
static int
time_parse(int64_t *out, const char *s, const char *path)
{
	struct tm tm, back;
	int y, mo, d, h, mi, se;
	time_t t;

	if (strlen(s) != 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se) ||
	    s[19] != 'Z')
		goto fail;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
		goto fail;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	t = timegm(&tm);
	/* timegm normalises 02-30 into March: a date that does not come back is not real. */
	if (gmtime_r(&t, &back) == NULL || back.tm_mday != d || back.tm_mon != mo - 1)
		goto fail;
	*out = (int64_t)t;
	return 0;
fail:
	return bad(path, "'%.40s' is not an RFC 3339 UTC time YYYY-MM-DDTHH:MM:SSZ (1970..9999)",
	    s);
}

static int
time_member(json_t *o, const char *key, int64_t t, const char *path)
{
	char buf[32];

	if (t < 0 || t > TIME_MAX)
		return bad(path, "time out of range");
	cf_time_format(buf, sizeof(buf), t);
	json_object_set_new(o, key, json_string(buf));
	return 0;
}

/* ---- targets ---------------------------------------------------------------- */

static const char *const targets_members[] = { "things", "groups", "certificates", NULL };
static const char *const query_members[] = { "issuer", "expiringWithinDays", "weakKey", NULL };

/*
 * A non-empty array of valid names into *out, in the order given with
 * duplicates dropped (a jansson object serves as the set: up to
 * CF_JOBSPEC_TARGETS_MAX names, so no quadratic scan). *budget is what is
 * left of CF_JOBSPEC_TARGETS_MAX entries for things and groups together.
 */
static int
names_parse(char ***out, size_t *out_n, const json_t *a, const char *path, const char *kind,
    size_t *budget)
{
	char p[PATH_MAX_LEN], **v = NULL;
	json_t *seen = NULL;
	size_t i, n = 0;
	int r = CF_EINVAL;

	if (!json_is_array(a)) {
		r = bad(path, "must be an array of %s names", kind);
		goto out;
	}
	if (json_array_size(a) == 0) {
		r = bad(path, "must name at least one %s", kind);
		goto out;
	}
	if (json_array_size(a) > *budget) {
		r = bad(path, "at most %d names of things and groups in all",
		    CF_JOBSPEC_TARGETS_MAX);
		goto out;
	}
	if ((v = calloc(json_array_size(a), sizeof(*v))) == NULL ||
	    (seen = json_object()) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	for (i = 0; i < json_array_size(a); i++) {
		json_t *e = json_array_get(a, i);

		pathf(p, "%s[%zu]", path, i);
		if (!json_is_string(e)) {
			r = bad(p, "must be a string");
			goto out;
		}
		if (!cf_name_valid(kind, json_string_value(e))) {
			r = bad_prefix(p);
			goto out;
		}
		if (json_object_get(seen, json_string_value(e)) != NULL)
			continue;
		if (json_object_set_new(seen, json_string_value(e), json_true()) != 0 ||
		    (v[n] = strdup(json_string_value(e))) == NULL) {
			cf_error_set("out of memory");
			r = CF_ERROR;
			goto out;
		}
		n++;
	}
	*budget -= json_array_size(a);
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
	r = 0;
out:
	json_decref(seen);
	cf_strv_free(v, n);
	return r;
}

static int
query_parse(cf_jobspec_targets *t, const json_t *q)
{
	const char *path = "targets.certificates", *issuer;
	json_t *wk;
	int64_t days = 0;
	int r;

	if ((r = object_check(q, path, query_members, "issuer, expiringWithinDays, weakKey")) != 0)
		return r;
	if (json_object_size(q) == 0)
		return bad(path, "needs at least one of issuer, expiringWithinDays, weakKey");
	if ((r = string_member(&issuer, q, path, "issuer")) != 0)
		return r;
	if (issuer != NULL && !cf_name_valid("CA", issuer))
		return bad_prefix("targets.certificates.issuer");
	if (issuer != NULL)
		snprintf(t->issuer, sizeof(t->issuer), "%s", issuer);
	if ((r = int_member(&days, q, path, "expiringWithinDays", 1, EXPIRY_DAYS_MAX)) != 0)
		return r;
	t->expiring_within_s = days * DAY;
	if ((wk = json_object_get(q, "weakKey")) != NULL) {
		if (!json_is_boolean(wk))
			return bad("targets.certificates.weakKey", "must be true or false");
		t->weak_key = json_is_true(wk);
	}
	if (t->issuer[0] == '\0' && t->expiring_within_s == 0 && !t->weak_key)
		return bad(path, "needs at least one criterion (weakKey false selects nothing)");
	t->has_query = 1;
	return 0;
}

int
cf_jobspec_targets_parse(cf_jobspec_targets *out, const char *json)
{
	cf_jobspec_targets t;
	json_t *j = NULL, *v;
	size_t budget = CF_JOBSPEC_TARGETS_MAX;
	int r = CF_EINVAL;

	memset(out, 0, sizeof(*out));
	memset(&t, 0, sizeof(t));
	if (json == NULL) {
		r = bad("targets", "required");
		goto out;
	}
	if ((r = load(&j, json, "targets")) != 0 ||
	    (r = object_check(j, "targets", targets_members, "things, groups, certificates")) != 0)
		goto out;
	if (json_object_size(j) == 0) {
		r = bad("targets", "must name things, groups or certificates");
		goto out;
	}
	if ((v = json_object_get(j, "things")) != NULL &&
	    (r = names_parse(&t.things, &t.n_things, v, "targets.things", "thing", &budget)) != 0)
		goto out;
	if ((v = json_object_get(j, "groups")) != NULL &&
	    (r = names_parse(&t.groups, &t.n_groups, v, "targets.groups", "group", &budget)) != 0)
		goto out;
	if ((v = json_object_get(j, "certificates")) != NULL && (r = query_parse(&t, v)) != 0)
		goto out;
	*out = t;
	memset(&t, 0, sizeof(t));
	r = 0;
out:
	cf_jobspec_targets_clear(&t);
	json_decref(j);
	return r;
}

static json_t *
names_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static int
names_valid(char *const *v, size_t n, const char *path, const char *kind)
{
	char p[PATH_MAX_LEN];
	size_t i;

	for (i = 0; i < n; i++) {
		pathf(p, "%s[%zu]", path, i);
		if (!cf_name_valid(kind, v[i]))
			return bad_prefix(p);
	}
	return 0;
}

int
cf_jobspec_targets_dump(char **out, const cf_jobspec_targets *t)
{
	json_t *j = json_object(), *q = NULL;
	int r = CF_EINVAL;

	if (j == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	if ((r = names_valid(t->things, t->n_things, "targets.things", "thing")) != 0 ||
	    (r = names_valid(t->groups, t->n_groups, "targets.groups", "group")) != 0)
		goto out;
	if (t->n_things > 0)
		json_object_set_new(j, "things", names_json(t->things, t->n_things));
	if (t->n_groups > 0)
		json_object_set_new(j, "groups", names_json(t->groups, t->n_groups));
	if (t->has_query) {
		if (t->expiring_within_s < 0 ||
		    t->expiring_within_s > (int64_t)EXPIRY_DAYS_MAX * DAY ||
		    t->expiring_within_s % DAY != 0) {
			r = bad("targets.certificates.expiringWithinDays",
			    "must be whole days, 1..%d", EXPIRY_DAYS_MAX);
			goto out;
		}
		if (t->issuer[0] == '\0' && t->expiring_within_s == 0 && !t->weak_key) {
			r = bad("targets.certificates", "needs at least one criterion");
			goto out;
		}
		if (t->issuer[0] != '\0' && !cf_name_valid("CA", t->issuer)) {
			r = bad_prefix("targets.certificates.issuer");
			goto out;
		}
		q = json_object();
		if (t->issuer[0] != '\0')
			json_object_set_new(q, "issuer", json_string(t->issuer));
		if (t->expiring_within_s > 0)
			json_object_set_new(q, "expiringWithinDays",
			    json_integer(t->expiring_within_s / DAY));
		if (t->weak_key)
			json_object_set_new(q, "weakKey", json_true());
		json_object_set_new(j, "certificates", q);
	}
	if (json_object_size(j) == 0) {
		r = bad("targets", "must name things, groups or certificates");
		goto out;
	}
	r = dump(out, j);
out:
	json_decref(j);
	return r;
}

void
cf_jobspec_targets_clear(cf_jobspec_targets *t)
{
	if (t == NULL)
		return;
	cf_strv_free(t->things, t->n_things);
	cf_strv_free(t->groups, t->n_groups);
	memset(t, 0, sizeof(*t));
}

/* ---- resolving targets ------------------------------------------------------- */

typedef struct {
	char **v;
	size_t n, cap;
} strv;

static int
strv_add(strv *s, const char *name)
{
	char **nv;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;

		if ((nv = realloc(s->v, cap * sizeof(*nv))) == NULL)
			goto oom;
		s->v = nv;
		s->cap = cap;
	}
	if ((s->v[s->n] = strdup(name)) == NULL)
		goto oom;
	s->n++;
	return 0;
oom:
	cf_error_set("out of memory");
	return CF_ERROR;
}

static int
strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * *out = 1 if the policy flags the certificate's key. The key only: a weak
 * signature is the issuer's doing, and weakKey selects devices whose own
 * key needs replacing.
 */
static int
cert_weak(int *out, const cf_cert_rec *c, const cf_keyq_policy *policy)
{
	cf_keyq_result res;
	cf_key *key = NULL;
	int r;

	if ((r = cf_cert_pubkey_from_pem(&key, c->pem, strlen(c->pem))) != 0) {
		cf_error_prefix("certificate %.16s...", c->id);
		goto out;
	}
	if ((r = cf_keyq_check_key(&res, policy, key)) != 0)
		goto out;
	*out = res.flags != 0;
out:
	cf_key_free(key);
	return r;
}

static int
query_resolve(strv *s, cf_store *st, const cf_jobspec_targets *t, const cf_keyq_policy *policy,
    int64_t now)
{
	cf_keyq_policy *def = NULL;
	cf_cert_filter f = { .status = CF_CERT_ACTIVE };
	cf_cert_rec *certs = NULL;
	cf_ca_rec ca;
	size_t i, n = 0;
	int weak, r;

	memset(&ca, 0, sizeof(ca));
	if (t->issuer[0] != '\0') {
		if ((r = cf_store_ca_get(st, &ca, t->issuer)) == CF_ENOTFOUND)
			cf_error_set("targets.certificates.issuer: no CA '%s' in the registry",
			    t->issuer);
		if (r != 0)
			goto out;
		f.ca_id = ca.id;
	}
	if (t->expiring_within_s > 0)
		f.not_after_before = now + t->expiring_within_s;
	if (t->weak_key && policy == NULL) {
		if ((r = cf_keyq_policy_new(&def)) != 0)
			goto out;
		policy = def;
	}
	if ((r = cf_store_cert_list(st, &certs, &n, &f)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (certs[i].thing[0] == '\0')
			continue;
		weak = 1;
		if (t->weak_key && (r = cert_weak(&weak, &certs[i], policy)) != 0)
			goto out;
		if (weak && (r = strv_add(s, certs[i].thing)) != 0)
			goto out;
	}
	r = 0;
out:
	cf_cert_recs_free(certs, n);
	cf_ca_rec_clear(&ca);
	cf_keyq_policy_free(def);
	return r;
}

int
cf_jobspec_targets_resolve(char ***out, size_t *out_n, cf_store *st, const cf_jobspec_targets *t,
    const cf_keyq_policy *policy, int64_t now)
{
	strv s = { 0 };
	cf_thing_rec thing;
	char **members = NULL;
	size_t i, k, n_members = 0;
	int r;

	memset(&thing, 0, sizeof(thing));
	for (i = 0; i < t->n_things; i++) {
		if ((r = cf_store_thing_get(st, &thing, t->things[i])) == CF_ENOTFOUND)
			cf_error_set("targets.things: no thing '%s' in the registry", t->things[i]);
		cf_thing_rec_clear(&thing);
		if (r != 0 || (r = strv_add(&s, t->things[i])) != 0)
			goto out;
	}
	for (i = 0; i < t->n_groups; i++) {
		if ((r = cf_store_group_members(st, &members, &n_members, t->groups[i])) ==
		    CF_ENOTFOUND)
			cf_error_set("targets.groups: no group '%s' in the registry", t->groups[i]);
		if (r != 0)
			goto out;
		for (k = 0; k < n_members; k++) {
			if ((r = strv_add(&s, members[k])) != 0)
				goto out;
		}
		cf_strv_free(members, n_members);
		members = NULL;
		n_members = 0;
	}
	if (t->has_query && (r = query_resolve(&s, st, t, policy, now)) != 0)
		goto out;
	if (s.n > 1)
		qsort(s.v, s.n, sizeof(*s.v), strcmp_p);
	for (i = k = 0; i < s.n; i++) {
		if (k > 0 && strcmp(s.v[k - 1], s.v[i]) == 0) {
			free(s.v[i]);
			continue;
		}
		s.v[k++] = s.v[i];
	}
	s.n = k;
	*out = s.v;
	*out_n = s.n;
	s.v = NULL;
	s.n = 0;
	r = 0;
out:
	cf_strv_free(members, n_members);
	cf_strv_free(s.v, s.n);
	return r;
}

/* ---- configuration ------------------------------------------------------------- */

static const char *const config_members[] = {
	"rollout", "abort", "retry", "timeouts", "schedule", NULL
};
static const char *const rollout_members[] = { "maxPerMinute", "exponentialRate", NULL };
static const char *const ramp_members[] = {
	"baseRatePerMinute", "incrementFactor", "rateIncreaseCriteria", NULL
};
static const char *const criteria_members[] = {
	"numberOfNotifiedThings", "numberOfSucceededThings", NULL
};
static const char *const abort_members[] = {
	"failureType", "thresholdPercentage", "minNumberOfExecutedThings", NULL
};
static const char *const retry_members[] = { "failureType", "numberOfRetries", NULL };
static const char *const timeouts_members[] = { "inProgressSeconds", "stepSeconds", NULL };
static const char *const schedule_members[] = {
	"startTime", "endTime", "endBehavior", "maintenanceWindows", NULL
};

static int
ramp_parse(cf_job_rollout *ro, const json_t *o)
{
	const char *path = "config.rollout.exponentialRate";
	const char *cpath = "config.rollout.exponentialRate.rateIncreaseCriteria";
	json_t *c;
	int64_t base = 0;
	int r;

	if ((r = object_check(o, path, ramp_members,
	    "baseRatePerMinute, incrementFactor, rateIncreaseCriteria")) != 0 ||
	    (r = required(o, path, "baseRatePerMinute")) != 0 ||
	    (r = int_member(&base, o, path, "baseRatePerMinute", 1, ro->max_per_minute)) != 0)
		return r;
	ro->base_per_minute = (int)base;
	if ((r = number_member(&ro->increment_factor, o, path, "incrementFactor")) != 0)
		return r;
	if (!(ro->increment_factor >= 1.1 && ro->increment_factor <= 5.0))
		return bad("config.rollout.exponentialRate.incrementFactor", "must be 1.1..5");
	if ((c = json_object_get(o, "rateIncreaseCriteria")) == NULL)
		return bad(cpath, "required");
	if ((r = object_check(c, cpath, criteria_members,
	    "numberOfNotifiedThings or numberOfSucceededThings")) != 0)
		return r;
	if (json_object_size(c) != 1)
		return bad(cpath, "exactly one of numberOfNotifiedThings, numberOfSucceededThings");
	if ((r = int_member(&ro->notified_step, c, cpath, "numberOfNotifiedThings", 1,
	    INT64_MAX)) != 0 ||
	    (r = int_member(&ro->succeeded_step, c, cpath, "numberOfSucceededThings", 1,
	    INT64_MAX)) != 0)
		return r;
	return 0;
}

static int
rollout_parse(cf_jobspec_config *c, const json_t *o)
{
	const char *path = "config.rollout";
	json_t *ramp;
	int64_t max = 0;
	int r;

	if ((r = object_check(o, path, rollout_members, "maxPerMinute, exponentialRate")) != 0 ||
	    (r = required(o, path, "maxPerMinute")) != 0 ||
	    (r = int_member(&max, o, path, "maxPerMinute", 1, CF_JOB_ROLLOUT_MAX)) != 0)
		return r;
	c->rollout.max_per_minute = (int)max;
	if ((ramp = json_object_get(o, "exponentialRate")) != NULL &&
	    (r = ramp_parse(&c->rollout, ramp)) != 0)
		return r;
	if (cf_job_rollout_validate(&c->rollout) != 0)
		return bad_prefix(path);
	c->has_rollout = 1;
	return 0;
}

static int
failure_member(cf_job_failure *out, const json_t *o, const char *path)
{
	char p[PATH_MAX_LEN];
	const char *s;
	int r;

	if ((r = required(o, path, "failureType")) != 0 ||
	    (r = string_member(&s, o, path, "failureType")) != 0)
		return r;
	pathf(p, "%s.failureType", path);
	if (cf_job_failure_parse(out, s) != 0)
		return bad_prefix(p);
	return 0;
}

static int
abort_parse(cf_jobspec_config *c, const json_t *a)
{
	char path[PATH_MAX_LEN];
	size_t i;
	int r;

	if (!json_is_array(a))
		return bad("config.abort", "must be an array of criteria");
	if (json_array_size(a) > CF_JOB_ABORT_MAX)
		return bad("config.abort", "at most %d criteria", CF_JOB_ABORT_MAX);
	for (i = 0; i < json_array_size(a); i++) {
		const json_t *o = json_array_get(a, i);
		cf_job_abort_criterion *ac = &c->abort[i];

		pathf(path, "config.abort[%zu]", i);
		if ((r = object_check(o, path, abort_members,
		    "failureType, thresholdPercentage, minNumberOfExecutedThings")) != 0 ||
		    (r = failure_member(&ac->type, o, path)) != 0 ||
		    (r = number_member(&ac->threshold_percent, o, path, "thresholdPercentage")) != 0)
			return r;
		if (!(ac->threshold_percent > 0.0 && ac->threshold_percent <= 100.0)) {
			pathf(path, "config.abort[%zu].thresholdPercentage", i);
			return bad(path, "must be above 0 and at most 100");
		}
		if ((r = required(o, path, "minNumberOfExecutedThings")) != 0 ||
		    (r = int_member(&ac->min_executed, o, path, "minNumberOfExecutedThings", 1,
		    INT64_MAX)) != 0)
			return r;
	}
	c->n_abort = json_array_size(a);
	if (cf_job_abort_validate(c->abort, c->n_abort) != 0)
		return bad_prefix("config.abort");
	return 0;
}

static int
retry_parse(cf_jobspec_config *c, const json_t *a)
{
	char path[PATH_MAX_LEN], p[PATH_MAX_LEN];
	int seen[CF_JOB_FAILURE__COUNT] = { 0 };
	int64_t n = 0;
	size_t i;
	int r;

	if (!json_is_array(a))
		return bad("config.retry", "must be an array of criteria");
	if (json_array_size(a) > CF_JOB_FAILURE__COUNT)
		return bad("config.retry", "at most one criterion per failure type");
	for (i = 0; i < json_array_size(a); i++) {
		const json_t *o = json_array_get(a, i);
		cf_job_retry_criterion *rc = &c->retry[i];

		pathf(path, "config.retry[%zu]", i);
		pathf(p, "config.retry[%zu].failureType", i);
		if ((r = object_check(o, path, retry_members, "failureType, numberOfRetries")) != 0 ||
		    (r = failure_member(&rc->type, o, path)) != 0)
			return r;
		if (rc->type == CF_JOB_FAILURE_REJECTED)
			return bad(p, "REJECTED is not retried (the device said retrying cannot help)");
		if (seen[rc->type]++)
			return bad(p, "%s given twice", cf_job_failure_name(rc->type));
		if ((r = required(o, path, "numberOfRetries")) != 0 ||
		    (r = int_member(&n, o, path, "numberOfRetries", 0, CF_JOB_RETRY_MAX)) != 0)
			return r;
		rc->retries = (int)n;
	}
	c->n_retry = json_array_size(a);
	if (cf_job_retry_policy_from(&c->retry_policy, c->retry, c->n_retry) != 0)
		return bad_prefix("config.retry");
	return 0;
}

static int
timeouts_parse(cf_jobspec_config *c, const json_t *o)
{
	const char *path = "config.timeouts";
	int r;

	if ((r = object_check(o, path, timeouts_members, "inProgressSeconds, stepSeconds")) != 0 ||
	    (r = int_member(&c->timeouts.in_progress_s, o, path, "inProgressSeconds", 0,
	    CF_JOB_TIMEOUT_MAX)) != 0 ||
	    (r = int_member(&c->timeouts.step_s, o, path, "stepSeconds", 0,
	    CF_JOB_TIMEOUT_MAX)) != 0)
		return r;
	if (cf_job_timeouts_validate(&c->timeouts) != 0)
		return bad_prefix(path);
	return 0;
}

static int
schedule_parse(cf_jobspec_config *c, const json_t *o)
{
	const char *path = "config.schedule", *s;
	char p[PATH_MAX_LEN];
	cf_job_schedule *sc = &c->schedule;
	json_t *w;
	size_t i;
	int r;

	if ((r = object_check(o, path, schedule_members,
	    "startTime, endTime, endBehavior, maintenanceWindows")) != 0)
		return r;
	if ((r = string_member(&s, o, path, "startTime")) != 0 ||
	    (s != NULL && (r = time_parse(&sc->start_at, s, "config.schedule.startTime")) != 0))
		return r;
	if ((r = string_member(&s, o, path, "endTime")) != 0 ||
	    (s != NULL && (r = time_parse(&sc->end_at, s, "config.schedule.endTime")) != 0))
		return r;
	if (s != NULL && sc->end_at <= sc->start_at)
		return bad("config.schedule.endTime", "must come after startTime");
	if ((r = string_member(&s, o, path, "endBehavior")) != 0)
		return r;
	if (s != NULL && cf_job_end_parse(&sc->end_behavior, s) != 0)
		return bad_prefix("config.schedule.endBehavior");
	if ((w = json_object_get(o, "maintenanceWindows")) != NULL) {
		if (!json_is_array(w))
			return bad("config.schedule.maintenanceWindows", "must be an array of windows");
		if (json_array_size(w) > CF_JOB_WINDOWS_MAX)
			return bad("config.schedule.maintenanceWindows", "at most %d windows",
			    CF_JOB_WINDOWS_MAX);
		for (i = 0; i < json_array_size(w); i++) {
			const json_t *e = json_array_get(w, i);

			pathf(p, "config.schedule.maintenanceWindows[%zu]", i);
			if (!json_is_string(e))
				return bad(p, "must be a string such as \"sat@22:00+240\"");
			if (cf_job_window_parse(&sc->windows[i], json_string_value(e)) != 0)
				return bad_prefix(p);
		}
		sc->n_windows = json_array_size(w);
	}
	if (cf_job_schedule_validate(sc) != 0)
		return bad_prefix(path);
	return 0;
}

int
cf_jobspec_config_parse(cf_jobspec_config *out, const char *json)
{
	cf_jobspec_config c;
	json_t *j = NULL, *v;
	int r = CF_EINVAL;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.schedule.end_behavior = CF_JOB_END_STOP_ROLLOUT;
	if (json == NULL || json[0] == '\0')
		goto done;
	if ((r = load(&j, json, "config")) != 0 ||
	    (r = object_check(j, "config", config_members,
	    "rollout, abort, retry, timeouts, schedule")) != 0)
		goto out;
	if ((v = json_object_get(j, "rollout")) != NULL && (r = rollout_parse(&c, v)) != 0)
		goto out;
	if ((v = json_object_get(j, "abort")) != NULL && (r = abort_parse(&c, v)) != 0)
		goto out;
	if ((v = json_object_get(j, "retry")) != NULL && (r = retry_parse(&c, v)) != 0)
		goto out;
	if ((v = json_object_get(j, "timeouts")) != NULL && (r = timeouts_parse(&c, v)) != 0)
		goto out;
	if ((v = json_object_get(j, "schedule")) != NULL && (r = schedule_parse(&c, v)) != 0)
		goto out;
done:
	*out = c;
	r = 0;
out:
	json_decref(j);
	return r;
}

static int
rollout_dump(json_t *j, const cf_jobspec_config *c)
{
	const cf_job_rollout *ro = &c->rollout;
	json_t *o, *ramp, *crit;

	if (!c->has_rollout)
		return 0;
	if (cf_job_rollout_validate(ro) != 0)
		return bad_prefix("config.rollout");
	o = json_object();
	json_object_set_new(o, "maxPerMinute", json_integer(ro->max_per_minute));
	if (ro->base_per_minute > 0) {
		ramp = json_object();
		crit = json_object();
		json_object_set_new(ramp, "baseRatePerMinute", json_integer(ro->base_per_minute));
		json_object_set_new(ramp, "incrementFactor", json_real(ro->increment_factor));
		if (ro->notified_step > 0)
			json_object_set_new(crit, "numberOfNotifiedThings",
			    json_integer(ro->notified_step));
		else
			json_object_set_new(crit, "numberOfSucceededThings",
			    json_integer(ro->succeeded_step));
		json_object_set_new(ramp, "rateIncreaseCriteria", crit);
		json_object_set_new(o, "exponentialRate", ramp);
	}
	json_object_set_new(j, "rollout", o);
	return 0;
}

static int
criteria_dump(json_t *j, const cf_jobspec_config *c)
{
	cf_job_retry_policy pol;
	json_t *a, *o;
	size_t i;

	if (c->n_abort > 0) {
		if (cf_job_abort_validate(c->abort, c->n_abort) != 0)
			return bad_prefix("config.abort");
		a = json_array();
		for (i = 0; i < c->n_abort; i++) {
			o = json_object();
			json_object_set_new(o, "failureType",
			    json_string(cf_job_failure_name(c->abort[i].type)));
			json_object_set_new(o, "thresholdPercentage",
			    json_real(c->abort[i].threshold_percent));
			json_object_set_new(o, "minNumberOfExecutedThings",
			    json_integer(c->abort[i].min_executed));
			json_array_append_new(a, o);
		}
		json_object_set_new(j, "abort", a);
	}
	if (c->n_retry > 0) {
		if (c->n_retry > CF_JOB_FAILURE__COUNT ||
		    cf_job_retry_policy_from(&pol, c->retry, c->n_retry) != 0)
			return c->n_retry > CF_JOB_FAILURE__COUNT ?
			    bad("config.retry", "at most one criterion per failure type") :
			    bad_prefix("config.retry");
		a = json_array();
		for (i = 0; i < c->n_retry; i++) {
			o = json_object();
			json_object_set_new(o, "failureType",
			    json_string(cf_job_failure_name(c->retry[i].type)));
			json_object_set_new(o, "numberOfRetries", json_integer(c->retry[i].retries));
			json_array_append_new(a, o);
		}
		json_object_set_new(j, "retry", a);
	}
	return 0;
}

static int
schedule_dump(json_t *j, const cf_jobspec_config *c)
{
	const cf_job_schedule *sc = &c->schedule;
	char buf[32];
	json_t *o, *a;
	size_t i;
	int r = CF_EINVAL;

	if (cf_job_schedule_validate(sc) != 0)
		return bad_prefix("config.schedule");
	if (sc->start_at == 0 && sc->end_at == 0 && sc->end_behavior == CF_JOB_END_STOP_ROLLOUT &&
	    sc->n_windows == 0)
		return 0;
	o = json_object();
	if ((sc->start_at != 0 &&
	    (r = time_member(o, "startTime", sc->start_at, "config.schedule.startTime")) != 0) ||
	    (sc->end_at != 0 &&
	    (r = time_member(o, "endTime", sc->end_at, "config.schedule.endTime")) != 0))
		goto out;
	if (sc->end_behavior != CF_JOB_END_STOP_ROLLOUT)
		json_object_set_new(o, "endBehavior", json_string(cf_job_end_name(sc->end_behavior)));
	if (sc->n_windows > 0) {
		a = json_array();
		for (i = 0; i < sc->n_windows; i++) {
			if (cf_job_window_format(buf, sizeof(buf), &sc->windows[i]) != 0) {
				json_decref(a);
				r = bad_prefix("config.schedule.maintenanceWindows");
				goto out;
			}
			json_array_append_new(a, json_string(buf));
		}
		json_object_set_new(o, "maintenanceWindows", a);
	}
	json_object_set_new(j, "schedule", o);
	o = NULL;
	r = 0;
out:
	json_decref(o);
	return r;
}

int
cf_jobspec_config_dump(char **out, const cf_jobspec_config *c)
{
	json_t *j = json_object(), *o;
	int r = CF_EINVAL;

	if (j == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	if ((r = rollout_dump(j, c)) != 0 || (r = criteria_dump(j, c)) != 0)
		goto out;
	if (c->timeouts.in_progress_s != 0 || c->timeouts.step_s != 0) {
		if (cf_job_timeouts_validate(&c->timeouts) != 0) {
			r = bad_prefix("config.timeouts");
			goto out;
		}
		o = json_object();
		if (c->timeouts.in_progress_s != 0)
			json_object_set_new(o, "inProgressSeconds",
			    json_integer(c->timeouts.in_progress_s));
		if (c->timeouts.step_s != 0)
			json_object_set_new(o, "stepSeconds", json_integer(c->timeouts.step_s));
		json_object_set_new(j, "timeouts", o);
	}
	if ((r = schedule_dump(j, c)) != 0)
		goto out;
	r = dump(out, j);
out:
	json_decref(j);
	return r;
}
