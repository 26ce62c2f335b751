/*
 * cf_prov — templates, name patterns, parameters, rejection codes, topics
 * and the provisioning messages (cf_prov.h). Every decoder takes untrusted
 * bytes: lengths are bounded before jansson sees them, every field is
 * type- and size-checked, unknown template keys are refused.
 */
#include "cf_prov.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *const code_names[CF_PROV__CODE_COUNT] = {
	[CF_PROV_INVALID_REQUEST] = "InvalidRequest",
	[CF_PROV_TEMPLATE_UNKNOWN] = "TemplateUnknown",
	[CF_PROV_TEMPLATE_MISMATCH] = "TemplateMismatch",
	[CF_PROV_CLAIM_DISABLED] = "ClaimDisabled",
	[CF_PROV_PARAMETER_MISSING] = "ParameterMissing",
	[CF_PROV_PARAMETER_NOT_ALLOWED] = "ParameterNotAllowed",
	[CF_PROV_SERIAL_ALREADY_PROVISIONED] = "SerialAlreadyProvisioned",
	[CF_PROV_THING_EXISTS] = "ThingExists",
	[CF_PROV_LIMIT_REACHED] = "LimitReached",
	[CF_PROV_RATE_EXCEEDED] = "RateExceeded",
	[CF_PROV_OUTSIDE_WINDOW] = "OutsideWindow",
	[CF_PROV_CONCURRENT_USE] = "ConcurrentUse",
	[CF_PROV_REQUEST_REPLAYED] = "RequestReplayed",
	[CF_PROV_CSR_INVALID] = "CsrInvalid",
	[CF_PROV_CSR_SUBJECT_MISMATCH] = "CsrSubjectMismatch",
	[CF_PROV_WEAK_KEY] = "WeakKey",
	[CF_PROV_INTERNAL_ERROR] = "InternalError",
};

const char *
cf_prov_code_name(cf_prov_code code)
{
	if ((unsigned)code >= CF_PROV__CODE_COUNT)
		return "InternalError";
	return code_names[code];
}

int
cf_prov_code_parse(cf_prov_code *out, const char *name)
{
	int i = cf_name_index(code_names, CF_PROV__CODE_COUNT, name, 0);

	if (i < 0) {
		cf_error_set("unknown provisioning error code '%s'", name ? name : "");
		return CF_EINVAL;
	}
	*out = (cf_prov_code)i;
	return 0;
}

int
cf_prov_code_is_misuse(cf_prov_code code)
{
	switch (code) {
	case CF_PROV_SERIAL_ALREADY_PROVISIONED:
	case CF_PROV_RATE_EXCEEDED:
	case CF_PROV_OUTSIDE_WINDOW:
	case CF_PROV_CONCURRENT_USE:
		return 1;
	default:
		return 0;
	}
}

/* ---- parameters ------------------------------------------------------------ */

int
cf_prov_param_name_valid(const char *name)
{
	size_t i, n = name ? strlen(name) : 0;

	if (n == 0 || n > CF_PROV_PARAM_NAME_MAX)
		goto bad;
	for (i = 0; i < n; i++) {
		char c = name[i];
		int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');

		if (!alpha && (i == 0 || !((c >= '0' && c <= '9') || c == '_')))
			goto bad;
	}
	return 1;
bad:
	cf_error_set("parameter name '%.40s' is not [A-Za-z][A-Za-z0-9_]{0,%d}", name ? name : "",
	    CF_PROV_PARAM_NAME_MAX - 1);
	return 0;
}

int
cf_prov_param_value_valid(const char *value)
{
	size_t i, n = value ? strlen(value) : 0;

	if (n == 0 || n > CF_PROV_VALUE_MAX)
		goto bad;
	for (i = 0; i < n; i++) {
		char c = value[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == ':' || c == '-'))
			goto bad;
	}
	return 1;
bad:
	cf_error_set("parameter value is not [A-Za-z0-9._:-]{1,%d}", CF_PROV_VALUE_MAX);
	return 0;
}

int
cf_prov_params_set(cf_prov_params *p, const char *name, const char *value)
{
	size_t i;

	if (!cf_prov_param_name_valid(name) || !cf_prov_param_value_valid(value))
		return CF_EINVAL;
	for (i = 0; i < p->n && strcmp(p->name[i], name) != 0; i++)
		;
	if (i == p->n) {
		if (p->n == CF_PROV_PARAMS_MAX) {
			cf_error_set("more than %d parameters", CF_PROV_PARAMS_MAX);
			return CF_EINVAL;
		}
		p->n++;
	}
	snprintf(p->name[i], sizeof(p->name[i]), "%s", name);
	snprintf(p->value[i], sizeof(p->value[i]), "%s", value);
	return 0;
}

int
cf_prov_params_set_kv(cf_prov_params *p, const char *kv)
{
	char name[CF_PROV_PARAM_NAME_MAX + 2];
	const char *eq = kv ? strchr(kv, '=') : NULL;

	if (eq == NULL || (size_t)(eq - kv) >= sizeof(name)) {
		cf_error_set("parameter '%.40s' is not Name=value", kv ? kv : "");
		return CF_EINVAL;
	}
	memcpy(name, kv, (size_t)(eq - kv));
	name[eq - kv] = '\0';
	return cf_prov_params_set(p, name, eq + 1);
}

const char *
cf_prov_params_get(const cf_prov_params *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		if (strcmp(p->name[i], name) == 0)
			return p->value[i];
	}
	return NULL;
}

/* ---- the name pattern --------------------------------------------------------- */

/*
 * Walks pattern: calls on_lit for each literal byte and on_ph for each
 * placeholder name. CF_EINVAL (message set) if the pattern is malformed.
 */
typedef int (*lit_fn)(void *arg, char c);
typedef int (*ph_fn)(void *arg, const char *name);

static int
walk(const char *pattern, lit_fn on_lit, ph_fn on_ph, void *arg)
{
	char name[CF_PROV_PARAM_NAME_MAX + 1];
	const char *p, *close;
	size_t n, placeholders = 0;
	int r;

	if (pattern == NULL || (n = strlen(pattern)) == 0 || n > CF_PROV_PATTERN_MAX) {
		cf_error_set("name pattern is empty or longer than %d bytes", CF_PROV_PATTERN_MAX);
		return CF_EINVAL;
	}
	for (p = pattern; *p != '\0'; p++) {
		if (*p == '}') {
			cf_error_set("name pattern '%s': '}' without '{'", pattern);
			return CF_EINVAL;
		}
		if (*p != '{') {
			if ((r = on_lit(arg, *p)) != 0)
				return r;
			continue;
		}
		if ((close = strchr(p + 1, '}')) == NULL || (size_t)(close - p - 1) > CF_PROV_PARAM_NAME_MAX) {
			cf_error_set("name pattern '%s': '{' without '}', or too long a name", pattern);
			return CF_EINVAL;
		}
		memcpy(name, p + 1, (size_t)(close - p - 1));
		name[close - p - 1] = '\0';
		if (!cf_prov_param_name_valid(name)) {
			cf_error_prefix("name pattern '%s'", pattern);
			return CF_EINVAL;
		}
		if ((r = on_ph(arg, name)) != 0)
			return r;
		placeholders++;
		p = close;
	}
	if (placeholders == 0) {
		cf_error_set("name pattern '%s' has no {Parameter}: every device would get one name",
		    pattern);
		return CF_EINVAL;
	}
	return 0;
}

static int
lit_check(void *arg, char c)
{
	(void)arg;
	if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '-')) {
		cf_error_set("name pattern: '%c' cannot be part of a thing name", c);
		return CF_EINVAL;
	}
	return 0;
}

static int
ph_ignore(void *arg, const char *name)
{
	(void)arg;
	(void)name;
	return 0;
}

int
cf_prov_pattern_check(const char *pattern)
{
	return walk(pattern, lit_check, ph_ignore, NULL);
}

struct first_ph {
	char *out;
	int found;
};

static int
ph_first(void *arg, const char *name)
{
	struct first_ph *f = arg;

	if (!f->found) {
		snprintf(f->out, CF_PROV_PARAM_NAME_MAX + 1, "%s", name);
		f->found = 1;
	}
	return 0;
}

int
cf_prov_pattern_serial(char out[CF_PROV_PARAM_NAME_MAX + 1], const char *pattern)
{
	struct first_ph f = { .out = out, .found = 0 };

	return walk(pattern, lit_check, ph_first, &f);
}

struct uses {
	const char *name;
	int found;
};

static int
ph_uses(void *arg, const char *name)
{
	struct uses *u = arg;

	if (strcmp(name, u->name) == 0)
		u->found = 1;
	return 0;
}

int
cf_prov_pattern_uses(const char *pattern, const char *name)
{
	struct uses u = { .name = name, .found = 0 };

	if (walk(pattern, lit_check, ph_uses, &u) != 0)
		return 0;
	return u.found;
}

struct expand {
	char *out;
	size_t len, at;
	const cf_prov_params *p;
};

static int
put(struct expand *e, const char *s, size_t n)
{
	if (e->at + n + 1 > e->len) {
		cf_error_set("the thing name does not fit in %zu bytes", e->len - 1);
		return CF_EINVAL;
	}
	memcpy(e->out + e->at, s, n);
	e->at += n;
	e->out[e->at] = '\0';
	return 0;
}

static int
lit_put(void *arg, char c)
{
	int r;

	if ((r = lit_check(NULL, c)) != 0)
		return r;
	return put(arg, &c, 1);
}

static int
ph_put(void *arg, const char *name)
{
	struct expand *e = arg;
	const char *v = cf_prov_params_get(e->p, name);

	if (v == NULL) {
		cf_error_set("parameter '%s' is missing (the name pattern needs it)", name);
		return CF_ENOTFOUND;
	}
	return put(e, v, strlen(v));
}

int
cf_prov_name_expand(char *out, size_t out_len, const char *pattern, const cf_prov_params *p)
{
	struct expand e = { .out = out, .len = out_len, .at = 0, .p = p };
	int r;

	if (out_len == 0)
		return CF_EINVAL;
	out[0] = '\0';
	if ((r = walk(pattern, lit_put, ph_put, &e)) != 0)
		return r;
	if (!cf_name_valid("thing", out))
		return CF_EINVAL;
	return 0;
}

/* ---- templates -------------------------------------------------------------- */

void
cf_prov_template_clear(cf_prov_template *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n_groups; i++)
		free(t->groups[i]);
	free(t->groups);
	for (i = 0; i < t->n_allow; i++)
		free(t->allow[i]);
	free(t->allow);
	free(t->attributes);
	free(t->hook);
	memset(t, 0, sizeof(*t));
}

static int
strv_push(char ***v, size_t *n, const char *s)
{
	char **nv;

	if ((nv = realloc(*v, (*n + 1) * sizeof(*nv))) == NULL)
		goto oom;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL)
		goto oom;
	(*n)++;
	return 0;
oom:
	cf_error_set("out of memory");
	return CF_ERROR;
}

/* An integer member in [lo, hi], default def when absent. */
static int
get_int(int64_t *out, json_t *o, const char *key, int64_t lo, int64_t hi, int64_t def)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		cf_error_set("template: '%s' is not an integer in [%lld, %lld]", key, (long long)lo,
		    (long long)hi);
		return CF_EINVAL;
	}
	*out = json_integer_value(v);
	return 0;
}

static const char *const spec_keys[] = {
	"namePattern", "groups", "attributes", "allowList", "hook", "ratePerMinute", "windowStart",
	"windowEnd", "maxCount", "maxDenials", "maxConcurrent", "allowReprovision", "pendingSeconds",
	NULL,
};

int
cf_prov_template_parse(cf_prov_template *out, const char *name, const char *spec)
{
	json_t *o = NULL, *v, *e;
	json_error_t jerr;
	const char *key;
	int64_t x;
	size_t i;
	int r = CF_EINVAL, k;

	memset(out, 0, sizeof(*out));
	if (!cf_name_valid("template", name))
		goto out;
	snprintf(out->name, sizeof(out->name), "%s", name);
	if (spec == NULL || strlen(spec) > CF_PROTO_PAYLOAD_MAX * 32 ||
	    (o = json_loads(spec, JSON_REJECT_DUPLICATES, &jerr)) == NULL || !json_is_object(o)) {
		cf_error_set("template %s: spec is not a JSON object", name);
		goto out;
	}
	json_object_foreach(o, key, v) {
		for (k = 0; spec_keys[k] != NULL && strcmp(spec_keys[k], key) != 0; k++)
			;
		if (spec_keys[k] == NULL) {
			cf_error_set("template %s: unknown key '%.40s'", name, key);
			goto out;
		}
	}
	v = json_object_get(o, "namePattern");
	if (!json_is_string(v) || cf_prov_pattern_serial(out->serial_param, json_string_value(v)) != 0) {
		if (!json_is_string(v))
			cf_error_set("template %s: namePattern is required", name);
		goto out;
	}
	snprintf(out->pattern, sizeof(out->pattern), "%s", json_string_value(v));
	if ((v = json_object_get(o, "groups")) != NULL) {
		if (!json_is_array(v)) {
			cf_error_set("template %s: groups is not an array", name);
			goto out;
		}
		json_array_foreach(v, i, e) {
			if (!json_is_string(e) || !cf_name_valid("group", json_string_value(e)))
				goto out;
			if ((r = strv_push(&out->groups, &out->n_groups, json_string_value(e))) != 0)
				goto out;
			r = CF_EINVAL;
		}
	}
	v = json_object_get(o, "attributes");
	if (v != NULL) {
		json_object_foreach(v, key, e) {
			if (!json_is_string(e)) {
				cf_error_set("template %s: attribute '%.40s' is not a string", name, key);
				goto out;
			}
		}
	}
	if (v != NULL && !json_is_object(v)) {
		cf_error_set("template %s: attributes is not an object", name);
		goto out;
	}
	if ((out->attributes = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}")) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	if ((v = json_object_get(o, "allowList")) != NULL) {
		if (!json_is_array(v) || json_array_size(v) > CF_PROV_ALLOW_MAX) {
			cf_error_set("template %s: allowList is not an array of at most %d values", name,
			    CF_PROV_ALLOW_MAX);
			goto out;
		}
		out->has_allow = 1;
		json_array_foreach(v, i, e) {
			if (!json_is_string(e) || !cf_prov_param_value_valid(json_string_value(e))) {
				cf_error_prefix("template %s: allowList entry %zu", name, i);
				goto out;
			}
			if ((r = strv_push(&out->allow, &out->n_allow, json_string_value(e))) != 0)
				goto out;
			r = CF_EINVAL;
		}
	}
	out->hook_timeout_s = 5;
	if ((v = json_object_get(o, "hook")) != NULL) {
		e = json_object_get(v, "command");
		if (!json_is_object(v) || json_object_size(v) > 2 || !json_is_string(e) ||
		    json_string_length(e) == 0 || json_string_length(e) > CF_PROV_HOOK_MAX ||
		    memchr(json_string_value(e), '\n', json_string_length(e)) != NULL) {
			cf_error_set("template %s: hook is not {\"command\", \"timeoutSeconds\"}", name);
			goto out;
		}
		if ((out->hook = strdup(json_string_value(e))) == NULL) {
			r = CF_ERROR;
			goto out;
		}
		if (get_int(&x, v, "timeoutSeconds", 1, CF_PROV_HOOK_TIMEOUT_MAX, 5) != 0)
			goto out;
		out->hook_timeout_s = (int)x;
	}
	if (get_int(&x, o, "ratePerMinute", 0, 1000000, 0) != 0)
		goto out;
	out->rate_per_minute = (int)x;
	if (get_int(&out->window_start, o, "windowStart", 0, (int64_t)1 << 40, 0) != 0 ||
	    get_int(&out->window_end, o, "windowEnd", 0, (int64_t)1 << 40, 0) != 0)
		goto out;
	if (out->window_start && out->window_end && out->window_end <= out->window_start) {
		cf_error_set("template %s: windowEnd is not after windowStart", name);
		goto out;
	}
	if (get_int(&x, o, "maxCount", 0, 100000000, 0) != 0)
		goto out;
	out->max_count = (int)x;
	if (get_int(&x, o, "maxDenials", 0, 1000000, 0) != 0)
		goto out;
	out->max_denials = (int)x;
	if (get_int(&x, o, "maxConcurrent", 1, 100000, 1) != 0)
		goto out;
	out->max_concurrent = (int)x;
	if (get_int(&x, o, "pendingSeconds", 60, 86400 * 365, 86400) != 0)
		goto out;
	out->pending_s = (int)x;
	v = json_object_get(o, "allowReprovision");
	if (v != NULL && !json_is_boolean(v)) {
		cf_error_set("template %s: allowReprovision is not true or false", name);
		goto out;
	}
	out->allow_reprovision = v != NULL && json_is_true(v);
	r = 0;
out:
	json_decref(o);
	return r;
}

int
cf_prov_template_spec(char **out, const cf_prov_template *t)
{
	json_t *o = json_object(), *a = NULL, *attrs = NULL;
	json_error_t jerr;
	size_t i;
	int r = CF_ERROR;

	*out = NULL;
	if (o == NULL || json_object_set_new(o, "namePattern", json_string(t->pattern)) != 0)
		goto out;
	if (t->n_groups > 0) {
		if ((a = json_array()) == NULL)
			goto out;
		for (i = 0; i < t->n_groups; i++)
			if (json_array_append_new(a, json_string(t->groups[i])) != 0)
				goto out;
		if (json_object_set_new(o, "groups", a) != 0) {
			a = NULL;
			goto out;
		}
		a = NULL;
	}
	if (t->attributes != NULL && strcmp(t->attributes, "{}") != 0) {
		if ((attrs = json_loads(t->attributes, 0, &jerr)) == NULL ||
		    json_object_set_new(o, "attributes", attrs) != 0)
			goto out;
	}
	if (t->has_allow) {
		if ((a = json_array()) == NULL)
			goto out;
		for (i = 0; i < t->n_allow; i++)
			if (json_array_append_new(a, json_string(t->allow[i])) != 0)
				goto out;
		if (json_object_set_new(o, "allowList", a) != 0) {
			a = NULL;
			goto out;
		}
		a = NULL;
	}
	if (t->hook != NULL && json_object_set_new(o, "hook", json_pack("{s:s, s:i}", "command",
	    t->hook, "timeoutSeconds", t->hook_timeout_s)) != 0)
		goto out;
#define SET_INT(key, val, skip) \
	if ((val) != (skip) && json_object_set_new(o, key, json_integer(val)) != 0) \
		goto out
	SET_INT("ratePerMinute", t->rate_per_minute, 0);
	SET_INT("windowStart", t->window_start, 0);
	SET_INT("windowEnd", t->window_end, 0);
	SET_INT("maxCount", t->max_count, 0);
	SET_INT("maxDenials", t->max_denials, 0);
	SET_INT("maxConcurrent", t->max_concurrent, 0);
	SET_INT("pendingSeconds", t->pending_s, 0);
#undef SET_INT
	if (json_object_set_new(o, "allowReprovision", json_boolean(t->allow_reprovision)) != 0)
		goto out;
	if ((*out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	r = 0;
out:
	if (r != 0)
		cf_error_set("out of memory");
	json_decref(a);
	json_decref(o);
	return r;
}

int
cf_prov_allow_parse(char ***out, size_t *out_n, const char *text)
{
	char **v = NULL, line[CF_PROV_VALUE_MAX + 2];
	const char *p = text, *nl;
	size_t n = 0, len, lineno = 0;
	int r = CF_EINVAL;

	while (p != NULL && *p != '\0') {
		lineno++;
		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
		while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		while (len > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			len--;
		}
		if (len > 0 && *p != '#') {
			if (len > CF_PROV_VALUE_MAX) {
				cf_error_set("allow-list line %zu: longer than %d characters", lineno,
				    CF_PROV_VALUE_MAX);
				goto out;
			}
			memcpy(line, p, len);
			line[len] = '\0';
			if (!cf_prov_param_value_valid(line)) {
				cf_error_prefix("allow-list line %zu", lineno);
				goto out;
			}
			if (n == CF_PROV_ALLOW_MAX) {
				cf_error_set("allow-list: more than %d values", CF_PROV_ALLOW_MAX);
				goto out;
			}
			if ((r = strv_push(&v, &n, line)) != 0)
				goto out;
			r = CF_EINVAL;
		}
		p = nl ? nl + 1 : NULL;
	}
	*out = v;
	*out_n = n;
	v = NULL;
	n = 0;
	r = 0;
out:
	while (n > 0)
		free(v[--n]);
	free(v);
	return r;
}

int
cf_prov_allowed(const cf_prov_template *t, const char *value)
{
	size_t i;

	if (!t->has_allow)
		return 1;
	for (i = 0; i < t->n_allow; i++) {
		if (strcmp(t->allow[i], value) == 0)
			return 1;
	}
	return 0;
}

int
cf_prov_window_check(const cf_prov_template *t, int64_t now)
{
	char when[32];

	if (t->window_start != 0 && now < t->window_start) {
		cf_time_format(when, sizeof(when), t->window_start);
		cf_error_set("template %s opens at %s", t->name, when);
		return CF_EREJECTED;
	}
	if (t->window_end != 0 && now >= t->window_end) {
		cf_time_format(when, sizeof(when), t->window_end);
		cf_error_set("template %s closed at %s", t->name, when);
		return CF_EREJECTED;
	}
	return 0;
}

/* ---- topics ------------------------------------------------------------------- */

int
cf_prov_topic_format(char *out, size_t out_len, const char *prefix, const char *template_name,
    const char *client_id, cf_proto_reply reply)
{
	if (!cf_name_valid("template", template_name))
		return CF_EINVAL;
	switch (reply) {
	case CF_PROTO_REQUEST:
		return cf_strfmt(out, out_len, "%sprovisioning/%s/provision", prefix, template_name);
	case CF_PROTO_ACCEPTED:
	case CF_PROTO_REJECTED:
		if (client_id == NULL || client_id[0] == '\0' || strpbrk(client_id, "/+#") != NULL) {
			cf_error_set("client id cannot be a topic level");
			return CF_EINVAL;
		}
		return cf_strfmt(out, out_len, "%sprovisioning/%s/provision/%s/%s", prefix,
		    template_name, client_id, reply == CF_PROTO_ACCEPTED ? "accepted" : "rejected");
	default:
		cf_error_set("unknown reply kind");
		return CF_EINVAL;
	}
}

int
cf_prov_topic_parse(char out[CF_NAME_MAX + 1], const char *prefix, const char *topic)
{
	size_t plen = strlen(prefix), tl;
	const char *t;

	if (strncmp(topic, prefix, plen) != 0 || strncmp(topic + plen, "provisioning/", 13) != 0)
		goto bad;
	t = topic + plen + 13;
	tl = strcspn(t, "/");
	if (tl == 0 || tl > CF_NAME_MAX || strcmp(t + tl, "/provision") != 0)
		goto bad;
	memcpy(out, t, tl);
	out[tl] = '\0';
	if (!cf_name_valid("template", out))
		return CF_EINVAL;
	return 0;
bad:
	cf_error_set("not a provisioning request topic");
	return CF_EINVAL;
}

/* ---- messages ----------------------------------------------------------------- */

static json_t *
load_object(const void *payload, size_t len)
{
	json_error_t jerr;
	json_t *o;

	if (payload == NULL || len == 0 || len > CF_PROTO_PAYLOAD_MAX) {
		cf_error_set("payload is empty or longer than %d bytes", CF_PROTO_PAYLOAD_MAX);
		return NULL;
	}
	if ((o = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		cf_error_set("payload is not JSON: %s", jerr.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		cf_error_set("payload is not a JSON object");
		json_decref(o);
		return NULL;
	}
	return o;
}

/* A string member of at most max bytes into *out (borrowed); optional ones may be absent (""). */
static int
str_member(const char **out, json_t *o, const char *key, size_t max, int required)
{
	json_t *v = json_object_get(o, key);

	*out = "";
	if (v == NULL && !required)
		return 0;
	if (!json_is_string(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v) ||
	    (required && json_string_length(v) == 0)) {
		cf_error_set("'%s' is %s", key, v == NULL ? "missing" :
		    "not a string of the allowed length");
		return CF_EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

static int
token_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < 0x21 || s[i] > 0x7e) {
			cf_error_set("clientToken holds a character outside printable ASCII");
			return 0;
		}
	}
	return 1;
}

void
cf_prov_request_clear(cf_prov_request *m)
{
	if (m == NULL)
		return;
	free(m->csr);
	memset(m, 0, sizeof(*m));
}

int
cf_prov_decode_request(cf_prov_request *out, const void *payload, size_t len)
{
	json_t *o, *params, *v;
	const char *csr, *token, *key;
	int r = CF_EINVAL;

	memset(out, 0, sizeof(*out));
	if ((o = load_object(payload, len)) == NULL)
		return CF_EINVAL;
	if (str_member(&csr, o, "csr", CF_PROTO_CSR_MAX, 1) != 0 ||
	    str_member(&token, o, "clientToken", CF_PROTO_TOKEN_MAX, 0) != 0 || !token_valid(token))
		goto out;
	params = json_object_get(o, "parameters");
	if (params == NULL || !json_is_object(params)) {
		cf_error_set("'parameters' is missing or not an object");
		goto out;
	}
	json_object_foreach(params, key, v) {
		if (!json_is_string(v)) {
			cf_error_set("parameter '%.40s' is not a string", key);
			goto out;
		}
		if ((r = cf_prov_params_set(&out->params, key, json_string_value(v))) != 0)
			goto out;
	}
	if ((out->csr = strdup(csr)) == NULL) {
		r = CF_ERROR;
		goto out;
	}
	out->csr_len = strlen(csr);
	snprintf(out->client_token, sizeof(out->client_token), "%s", token);
	r = 0;
out:
	if (r != 0)
		cf_prov_request_clear(out);
	json_decref(o);
	return r;
}

static int
dump(char **out, json_t *o)
{
	*out = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (*out == NULL) {
		cf_error_set("cannot encode a message");
		return CF_ERROR;
	}
	return 0;
}

int
cf_prov_encode_request(char **out, const cf_prov_request *m)
{
	json_t *o = json_pack("{s:s, s:{}}", "csr", m->csr ? m->csr : "", "parameters"), *p;
	size_t i;

	if (o == NULL)
		return dump(out, NULL);
	p = json_object_get(o, "parameters");
	for (i = 0; i < m->params.n; i++)
		json_object_set_new(p, m->params.name[i], json_string(m->params.value[i]));
	if (m->client_token[0] != '\0')
		json_object_set_new(o, "clientToken", json_string(m->client_token));
	return dump(out, o);
}

void
cf_prov_accepted_clear(cf_prov_accepted *m)
{
	if (m == NULL)
		return;
	free(m->certificate_pem);
	free(m->chain_pem);
	memset(m, 0, sizeof(*m));
}

int
cf_prov_decode_accepted(cf_prov_accepted *out, const void *payload, size_t len)
{
	json_t *o;
	const char *thing, *id, *cert, *chain, *token;
	int r = CF_EINVAL;

	memset(out, 0, sizeof(*out));
	if ((o = load_object(payload, len)) == NULL)
		return CF_EINVAL;
	if (str_member(&thing, o, "thingName", CF_NAME_MAX, 1) != 0 ||
	    str_member(&id, o, "certificateId", CF_ID_LEN, 1) != 0 ||
	    str_member(&cert, o, "certificatePem", CF_PROTO_PEM_MAX, 1) != 0 ||
	    str_member(&chain, o, "chainPem", CF_PROTO_PEM_MAX, 1) != 0 ||
	    str_member(&token, o, "clientToken", CF_PROTO_TOKEN_MAX, 0) != 0)
		goto out;
	if (!cf_name_valid("thing", thing))
		goto out;
	if ((out->certificate_pem = strdup(cert)) == NULL || (out->chain_pem = strdup(chain)) == NULL) {
		r = CF_ERROR;
		goto out;
	}
	snprintf(out->thing, sizeof(out->thing), "%s", thing);
	snprintf(out->certificate_id, sizeof(out->certificate_id), "%s", id);
	snprintf(out->client_token, sizeof(out->client_token), "%s", token);
	r = 0;
out:
	if (r != 0)
		cf_prov_accepted_clear(out);
	json_decref(o);
	return r;
}

int
cf_prov_encode_accepted(char **out, const cf_prov_accepted *m)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "thingName", m->thing, "certificateId",
	    m->certificate_id, "certificatePem", m->certificate_pem ? m->certificate_pem : "",
	    "chainPem", m->chain_pem ? m->chain_pem : "");

	if (o != NULL && m->client_token[0] != '\0')
		json_object_set_new(o, "clientToken", json_string(m->client_token));
	return dump(out, o);
}

int
cf_prov_decode_rejection(cf_prov_rejection *out, const void *payload, size_t len)
{
	json_t *o;
	const char *code, *msg, *token;
	int r = CF_EINVAL;

	memset(out, 0, sizeof(*out));
	if ((o = load_object(payload, len)) == NULL)
		return CF_EINVAL;
	if (str_member(&code, o, "errorCode", 64, 1) != 0 ||
	    str_member(&msg, o, "errorMessage", CF_PROTO_MESSAGE_MAX, 0) != 0 ||
	    str_member(&token, o, "clientToken", CF_PROTO_TOKEN_MAX, 0) != 0 ||
	    cf_prov_code_parse(&out->code, code) != 0)
		goto out;
	snprintf(out->message, sizeof(out->message), "%s", msg);
	snprintf(out->client_token, sizeof(out->client_token), "%s", token);
	r = 0;
out:
	json_decref(o);
	return r;
}

int
cf_prov_encode_rejection(char **out, const cf_prov_rejection *m)
{
	json_t *o = json_pack("{s:s, s:s}", "errorCode", cf_prov_code_name(m->code), "errorMessage",
	    m->message);

	if (o != NULL && m->client_token[0] != '\0')
		json_object_set_new(o, "clientToken", json_string(m->client_token));
	return dump(out, o);
}
