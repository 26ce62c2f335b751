/*
 * cf_proto — topics, payloads, error codes and custody signatures of the
 * device <-> certfleetd message family (docs/protocol.md). Owns the wire
 * format: each message's decoder and encoder sit side by side and share
 * one checker per field, so an encoder never writes what the decoder
 * would refuse. Topics are read through one bounds-checked cursor; JSON
 * goes through jansson with duplicate keys and NUL refused.
 */
#include "cf_proto.h"

#include "cf_util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_base64.h"

#define OPERATION_ROTATE "ROTATE_CERTIFICATE"
#define RESERVED_JOB_ID "notify-next" /* would make jobs/notify-next ambiguous */

/* ---- tables --------------------------------------------------------------- */

static const char *const code_names[CF_PROTO_CODE__COUNT] = {
	[CF_PROTO_INVALID_TOPIC] = "InvalidTopic",
	[CF_PROTO_INVALID_JSON] = "InvalidJson",
	[CF_PROTO_INVALID_REQUEST] = "InvalidRequest",
	[CF_PROTO_INVALID_STATE_TRANSITION] = "InvalidStateTransition",
	[CF_PROTO_RESOURCE_NOT_FOUND] = "ResourceNotFound",
	[CF_PROTO_VERSION_MISMATCH] = "VersionMismatch",
	[CF_PROTO_TERMINAL_STATE_REACHED] = "TerminalStateReached",
	[CF_PROTO_REQUEST_THROTTLED] = "RequestThrottled",
	[CF_PROTO_INTERNAL_ERROR] = "InternalError",
	[CF_PROTO_NOT_IN_PROGRESS] = "NotInProgress",
	[CF_PROTO_NOT_A_ROTATION] = "NotARotation",
	[CF_PROTO_CLIENT_ID_MISMATCH] = "ClientIdMismatch",
	[CF_PROTO_PRINCIPAL_MISMATCH] = "PrincipalMismatch",
	[CF_PROTO_BAD_SIGNATURE] = "BadSignature",
	[CF_PROTO_CSR_INVALID] = "CsrInvalid",
	[CF_PROTO_CSR_SUBJECT_MISMATCH] = "CsrSubjectMismatch",
	[CF_PROTO_WEAK_KEY] = "WeakKey",
	[CF_PROTO_CERTIFICATE_MISMATCH] = "CertificateMismatch",
	[CF_PROTO_REPLAY] = "Replay",
};

static const char *const status_names[CF_EXEC__COUNT] = {
	[CF_EXEC_QUEUED] = "QUEUED",
	[CF_EXEC_IN_PROGRESS] = "IN_PROGRESS",
	[CF_EXEC_SUCCEEDED] = "SUCCEEDED",
	[CF_EXEC_FAILED] = "FAILED",
	[CF_EXEC_TIMED_OUT] = "TIMED_OUT",
	[CF_EXEC_REJECTED] = "REJECTED",
	[CF_EXEC_REMOVED] = "REMOVED",
	[CF_EXEC_CANCELED] = "CANCELED",
};

/* Topic levels below things/<thing>/, by kind. */
static const char *const kind_paths[CF_PROTO__COUNT] = {
	[CF_PROTO_NOTIFY_NEXT] = "jobs/notify-next",
	[CF_PROTO_NEXT_GET] = "jobs/$next/get",
	[CF_PROTO_UPDATE] = "jobs/%s/update",
	[CF_PROTO_CREATE] = "certificate/create",
	[CF_PROTO_COMMIT] = "certificate/commit",
};

const char *
cf_proto_code_name(cf_proto_code code)
{
	if ((unsigned)code >= CF_PROTO_CODE__COUNT)
		return code_names[CF_PROTO_INTERNAL_ERROR];
	return code_names[code];
}

int
cf_proto_code_parse(cf_proto_code *out, const char *name)
{
	int i;

	if ((i = cf_name_index(code_names, CF_PROTO_CODE__COUNT, name, 0)) >= 0) {
		*out = (cf_proto_code)i;
		return 0;
	}
	cf_error_set("unknown errorCode");
	return CF_EINVAL;
}

const char *
cf_proto_status_name(cf_exec_status status)
{
	if ((unsigned)status >= CF_EXEC__COUNT)
		return "UNKNOWN";
	return status_names[status];
}

int
cf_proto_status_parse(cf_exec_status *out, const char *name)
{
	int i;

	if ((i = cf_name_index(status_names, CF_EXEC__COUNT, name, 0)) >= 0) {
		*out = (cf_exec_status)i;
		return 0;
	}
	cf_error_set("status is not one of QUEUED IN_PROGRESS SUCCEEDED FAILED TIMED_OUT REJECTED "
	    "REMOVED CANCELED");
	return CF_EINVAL;
}

/* ---- field checkers (shared by decoders and encoders) ------------------------ */

int
cf_proto_job_id_valid(const char *s)
{
	size_t i, n = s ? strnlen(s, CF_PROTO_JOB_ID_MAX + 1) : 0;

	if (n == 0 || n > CF_PROTO_JOB_ID_MAX) {
		cf_error_set("jobId must be 1 to %d characters", CF_PROTO_JOB_ID_MAX);
		return 0;
	}
	for (i = 0; i < n; i++) {
		char c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-')
			continue;
		cf_error_set("jobId has a character outside [A-Za-z0-9_-] at position %zu", i + 1);
		return 0;
	}
	if (strcmp(s, RESERVED_JOB_ID) == 0) {
		cf_error_set("jobId '%s' is reserved", RESERVED_JOB_ID);
		return 0;
	}
	return 1;
}

static int
check_job_id(const char *s)
{
	return cf_proto_job_id_valid(s) ? 0 : CF_EINVAL;
}

static int
check_cert_id(const char *s)
{
	size_t i, n = s ? strnlen(s, CF_ID_LEN + 1) : 0;

	for (i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			break;
	}
	if (n != CF_ID_LEN || i != n) {
		cf_error_set("certificateId must be %d lowercase hex characters", CF_ID_LEN);
		return CF_EINVAL;
	}
	return 0;
}

static int
check_token(const char *s)
{
	if (s != NULL && strnlen(s, CF_PROTO_TOKEN_MAX + 1) > CF_PROTO_TOKEN_MAX) {
		cf_error_set("clientToken is longer than %d bytes", CF_PROTO_TOKEN_MAX);
		return CF_EINVAL;
	}
	return 0;
}

static int
check_signature(const char *s)
{
	unsigned char *raw = NULL;
	size_t n = s ? strnlen(s, CF_PROTO_SIG_MAX + 1) : 0, raw_len;
	int r = CF_EINVAL;

	if (n == 0 || n > CF_PROTO_SIG_MAX) {
		cf_error_set("signature must be 1 to %d base64 characters", CF_PROTO_SIG_MAX);
		goto out;
	}
	if ((r = cf_base64_decode(&raw, &raw_len, s, n)) != 0) {
		cf_error_prefix("signature");
		r = CF_EINVAL;
		goto out;
	}
out:
	free(raw);
	return r;
}

/* A PEM text of 1..max bytes that starts with "-----BEGIN <label>-----". */
static int
check_pem(const char *field, const char *s, size_t n, size_t max, const char *label)
{
	char head[64];
	size_t hl;

	if (s == NULL || n == 0 || n > max) {
		cf_error_set("%s must be 1 to %zu characters of PEM", field, max);
		return CF_EINVAL;
	}
	hl = (size_t)snprintf(head, sizeof(head), "-----BEGIN %s-----", label);
	if (n < hl || memcmp(s, head, hl) != 0 || memchr(s, '\0', n) != NULL) {
		cf_error_set("%s is not a PEM %s", field, label);
		return CF_EINVAL;
	}
	return 0;
}

static int
check_version(const char *field, int64_t v, int64_t min)
{
	if (v < min) {
		cf_error_set("%s must be an integer >= %lld", field, (long long)min);
		return CF_EINVAL;
	}
	return 0;
}

static int
check_status(cf_exec_status s)
{
	if ((unsigned)s >= CF_EXEC__COUNT) {
		cf_error_set("not an execution status");
		return CF_EINVAL;
	}
	return 0;
}

static int
check_detail(const char *key, const char *value)
{
	size_t kl = key ? strnlen(key, CF_PROTO_DETAIL_KEY_MAX + 1) : 0;

	if (kl == 0 || kl > CF_PROTO_DETAIL_KEY_MAX) {
		cf_error_set("statusDetails keys must be 1 to %d bytes", CF_PROTO_DETAIL_KEY_MAX);
		return CF_EINVAL;
	}
	if (value == NULL || strnlen(value, CF_PROTO_DETAIL_VALUE_MAX + 1) > CF_PROTO_DETAIL_VALUE_MAX) {
		cf_error_set("statusDetails values must be strings of at most %d bytes",
		    CF_PROTO_DETAIL_VALUE_MAX);
		return CF_EINVAL;
	}
	return 0;
}

/* ---- topics: one bounds-checked cursor over the topic bytes ------------------ */

typedef struct {
	const char *p;
	size_t n; /* bytes left */
} reader;

/* Consumes lit if the input starts with it. */
static int
rd_eat(reader *rd, const char *lit)
{
	size_t l = strlen(lit);

	if (rd->n < l || memcmp(rd->p, lit, l) != 0)
		return 0;
	rd->p += l;
	rd->n -= l;
	return 1;
}

/* Consumes one topic level (up to '/' or the end, which stays) into out (NUL-terminated). */
static int
rd_level(reader *rd, char *out, size_t out_len)
{
	const char *slash = memchr(rd->p, '/', rd->n);
	size_t l = slash ? (size_t)(slash - rd->p) : rd->n;

	if (l == 0 || l >= out_len)
		return 0;
	memcpy(out, rd->p, l);
	out[l] = '\0';
	rd->p += l;
	rd->n -= l;
	return 1;
}

/* 1 if what is left is exactly lit (nothing is consumed). */
static int
rd_is(const reader *rd, const char *lit)
{
	return rd->n == strlen(lit) && memcmp(rd->p, lit, rd->n) == 0;
}

/* What is left: nothing, "/accepted" or "/rejected". */
static int
rd_reply(const reader *rd, cf_proto_reply *out)
{
	if (rd->n == 0)
		*out = CF_PROTO_REQUEST;
	else if (rd_is(rd, "/accepted"))
		*out = CF_PROTO_ACCEPTED;
	else if (rd_is(rd, "/rejected"))
		*out = CF_PROTO_REJECTED;
	else
		return 0;
	return 1;
}

/*
 * 1 if what is left of rd (taken by value: a failed match consumes
 * nothing) is exactly lit, followed by a reply suffix when replies is set.
 */
static int
rd_path(reader rd, const char *lit, int replies, cf_proto_reply *out)
{
	if (!rd_eat(&rd, lit))
		return 0;
	if (!replies) {
		*out = CF_PROTO_REQUEST;
		return rd.n == 0;
	}
	return rd_reply(&rd, out);
}

int
cf_proto_topic_parse(cf_proto_topic *out, const char *prefix, const char *topic, size_t topic_len)
{
	cf_proto_topic t = { 0 };
	reader rd = { topic, topic_len };
	char level[CF_NAME_MAX + 2];
	int r = CF_EINVAL;

	if (prefix == NULL || topic == NULL || topic_len > CF_PROTO_TOPIC_MAX ||
	    memchr(topic, '\0', topic_len) != NULL) {
		cf_error_set("not a certfleet topic (empty, too long or holds NUL)");
		goto out;
	}
	if (!rd_eat(&rd, prefix) || !rd_eat(&rd, "things/")) {
		cf_error_set("topic is not under %sthings/", prefix);
		goto out;
	}
	if (!rd_level(&rd, t.thing, sizeof(t.thing)) || !cf_name_valid("thing", t.thing)) {
		cf_error_set("topic does not name a valid thing");
		goto out;
	}
	if (rd_path(rd, "/jobs/notify-next", 0, &t.reply)) {
		t.kind = CF_PROTO_NOTIFY_NEXT;
	} else if (rd_path(rd, "/jobs/$next/get", 1, &t.reply)) {
		t.kind = CF_PROTO_NEXT_GET;
	} else if (rd_path(rd, "/certificate/create", 1, &t.reply)) {
		t.kind = CF_PROTO_CREATE;
	} else if (rd_path(rd, "/certificate/commit", 1, &t.reply)) {
		t.kind = CF_PROTO_COMMIT;
	} else if (rd_eat(&rd, "/jobs/") && rd_level(&rd, level, sizeof(level)) &&
	    cf_proto_job_id_valid(level) && rd_path(rd, "/update", 1, &t.reply)) {
		t.kind = CF_PROTO_UPDATE;
		memcpy(t.job_id, level, strlen(level) + 1);
	} else {
		cf_error_set("unknown topic below %sthings/%s/", prefix, t.thing);
		goto out;
	}
	*out = t;
	r = 0;
out:
	return r;
}

int
cf_proto_topic_format(char *out, size_t out_len, const char *prefix, const cf_proto_topic *t)
{
	static const char *const replies[] = { "", "/accepted", "/rejected" };
	char path[CF_PROTO_JOB_ID_MAX + 32];
	int r = CF_EINVAL;

	if (prefix == NULL || !cf_name_valid("thing", t->thing))
		goto out;
	if ((unsigned)t->kind >= CF_PROTO__COUNT || (unsigned)t->reply > CF_PROTO_REJECTED ||
	    (t->kind == CF_PROTO_NOTIFY_NEXT && t->reply != CF_PROTO_REQUEST)) {
		cf_error_set("not a valid topic kind");
		goto out;
	}
	if (t->kind == CF_PROTO_UPDATE) {
		if (!cf_proto_job_id_valid(t->job_id))
			goto out;
		if ((r = cf_strfmt(path, sizeof(path), "jobs/%s/update", t->job_id)) != 0)
			goto out;
	} else if ((r = cf_strfmt(path, sizeof(path), "%s", kind_paths[t->kind])) != 0) {
		goto out;
	}
	r = cf_strfmt(out, out_len, "%sthings/%s/%s%s", prefix, t->thing, path, replies[t->reply]);
out:
	return r;
}

/* ---- JSON reading and writing helpers ---------------------------------------- */

static void
set_why(cf_proto_code *why, cf_proto_code code)
{
	if (why != NULL)
		*why = code;
}

/*
 * After a decoder's load() succeeded, a failure is the request's fault
 * (InvalidRequest) unless it was an internal one (out of memory).
 */
static void
why_after(cf_proto_code *why, int r, const json_t *root)
{
	if (r == 0 || root == NULL)
		return;
	set_why(why, r == CF_EINVAL ? CF_PROTO_INVALID_REQUEST : CF_PROTO_INTERNAL_ERROR);
}

/* Parses payload into an object. Sets *why itself when it fails. */
static int
load(json_t **out, const void *payload, size_t len, cf_proto_code *why)
{
	json_error_t err;
	json_t *root = NULL;
	int r = CF_EINVAL;

	if (len > CF_PROTO_PAYLOAD_MAX) {
		cf_error_set("payload is larger than %d bytes", CF_PROTO_PAYLOAD_MAX);
		set_why(why, CF_PROTO_INVALID_REQUEST);
		goto out;
	}
	/* No JSON_ALLOW_NUL: "\u0000" is refused; jansson also refuses invalid UTF-8. */
	if (payload == NULL || (root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &err)) == NULL) {
		cf_error_set("payload is not JSON: %s", payload == NULL ? "empty" : err.text);
		set_why(why, CF_PROTO_INVALID_JSON);
		goto out;
	}
	if (!json_is_object(root)) {
		cf_error_set("payload is not a JSON object");
		set_why(why, CF_PROTO_INVALID_REQUEST);
		goto out;
	}
	*out = root;
	root = NULL;
	r = 0;
out:
	json_decref(root);
	return r;
}

/*
 * The string field name of o: *out borrowed from o (NULL if absent and not
 * required), *out_len its length in bytes.
 */
static int
get_str(const char **out, size_t *out_len, const json_t *o, const char *name, int required)
{
	json_t *v = json_object_get(o, name);

	*out = NULL;
	if (out_len)
		*out_len = 0;
	if (v == NULL && !required)
		return 0;
	if (!json_is_string(v)) {
		cf_error_set("%s %s", name, v == NULL ? "is missing" : "must be a string");
		return CF_EINVAL;
	}
	*out = json_string_value(v);
	if (out_len)
		*out_len = json_string_length(v);
	return 0;
}

/* Copies the string field name (at most max bytes) into buf; "" when absent and optional. */
static int
get_fixed(char *buf, size_t max, const json_t *o, const char *name, int required)
{
	const char *s;
	size_t n;
	int r;

	buf[0] = '\0';
	if ((r = get_str(&s, &n, o, name, required)) != 0 || s == NULL)
		return r;
	if (n > max) {
		cf_error_set("%s is longer than %zu bytes", name, max);
		return CF_EINVAL;
	}
	memcpy(buf, s, n + 1);
	return 0;
}

/* The integer field name; *out = -1 when absent and optional. */
static int
get_int(int64_t *out, const json_t *o, const char *name, int required)
{
	json_t *v = json_object_get(o, name);

	*out = -1;
	if (v == NULL && !required)
		return 0;
	if (!json_is_integer(v)) {
		cf_error_set("%s %s", name, v == NULL ? "is missing" : "must be an integer");
		return CF_EINVAL;
	}
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int
get_token(char buf[CF_PROTO_TOKEN_MAX + 1], const json_t *o)
{
	return get_fixed(buf, CF_PROTO_TOKEN_MAX, o, "clientToken", 0);
}

static int
get_status(cf_exec_status *out, const json_t *o)
{
	const char *s;
	int r;

	if ((r = get_str(&s, NULL, o, "status", 1)) != 0)
		return r;
	return cf_proto_status_parse(out, s);
}

/* Adds key = string (len bytes) to o. -1 if the string is not valid UTF-8 or out of memory. */
static int
put_strn(json_t *o, const char *key, const char *s, size_t len)
{
	if (json_object_set_new(o, key, json_stringn(s, len)) != 0) {
		cf_error_set("%s is not valid UTF-8", key);
		return CF_EINVAL;
	}
	return 0;
}

static int
put_str(json_t *o, const char *key, const char *s)
{
	return put_strn(o, key, s, strlen(s));
}

static int
put_int(json_t *o, const char *key, int64_t v)
{
	if (json_object_set_new(o, key, json_integer((json_int_t)v)) != 0) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	return 0;
}

/* clientToken when set. */
static int
put_token(json_t *o, const char *token)
{
	int r;

	if ((r = check_token(token)) != 0 || token[0] == '\0')
		return r;
	return put_str(o, "clientToken", token);
}

static json_t *
new_object(void)
{
	json_t *o = json_object();

	if (o == NULL)
		cf_error_set("out of memory");
	return o;
}

/* Compact JSON of o into *out; CF_EINVAL if it exceeds the payload limit. */
static int
dump(char **out, const json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	if (s == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	if (strlen(s) > CF_PROTO_PAYLOAD_MAX) {
		cf_error_set("message would be larger than %d bytes", CF_PROTO_PAYLOAD_MAX);
		free(s);
		return CF_EINVAL;
	}
	*out = s;
	return 0;
}

/* ---- jobs/$next/get: {"clientToken"?} ------------------------------------------- */

int
cf_proto_decode_next_get(cf_proto_next_get *out, const void *payload, size_t len, cf_proto_code *why)
{
	cf_proto_next_get m = { { 0 } };
	json_t *root = NULL;
	int r;

	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_token(m.client_token, root)) != 0)
		goto out;
	*out = m;
out:
	why_after(why, r, root);
	json_decref(root);
	return r;
}

int
cf_proto_encode_next_get(char **out, const cf_proto_next_get *m)
{
	json_t *o = NULL;
	int r = CF_ERROR;

	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/* ---- jobs/<jobId>/update: {"status", "statusDetails"?, "expectedVersion"?, "clientToken"?} ---- */

int
cf_proto_update_set_detail(cf_proto_update *u, const char *key, const char *value)
{
	char *k = NULL, *v = NULL;
	size_t i;
	int r;

	if ((r = check_detail(key, value)) != 0)
		goto out;
	for (i = 0; i < u->n_details; i++) {
		if (strcmp(u->details[i].key, key) == 0)
			break;
	}
	if (i == CF_PROTO_DETAILS_MAX) {
		cf_error_set("statusDetails holds at most %d entries", CF_PROTO_DETAILS_MAX);
		r = CF_EINVAL;
		goto out;
	}
	r = CF_ERROR;
	if ((v = strdup(value)) == NULL || (i == u->n_details && (k = strdup(key)) == NULL)) {
		cf_error_set("out of memory");
		goto out;
	}
	if (i == u->n_details) {
		u->details[i].key = k;
		k = NULL;
		u->n_details++;
	}
	free(u->details[i].value);
	u->details[i].value = v;
	v = NULL;
	r = 0;
out:
	free(k);
	free(v);
	return r;
}

const char *
cf_proto_update_detail(const cf_proto_update *u, const char *key)
{
	size_t i;

	for (i = 0; i < u->n_details; i++) {
		if (strcmp(u->details[i].key, key) == 0)
			return u->details[i].value;
	}
	return NULL;
}

void
cf_proto_update_clear(cf_proto_update *u)
{
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n_details && i < CF_PROTO_DETAILS_MAX; i++) {
		free(u->details[i].key);
		free(u->details[i].value);
	}
	memset(u, 0, sizeof(*u));
	u->expected_version = -1;
}

int
cf_proto_decode_update(cf_proto_update *out, const void *payload, size_t len, cf_proto_code *why)
{
	cf_proto_update m;
	json_t *root = NULL, *details, *v;
	const char *key;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_status(&m.status, root)) != 0 ||
	    (r = get_int(&m.expected_version, root, "expectedVersion", 0)) != 0 ||
	    (r = get_token(m.client_token, root)) != 0)
		goto out;
	if (json_object_get(root, "expectedVersion") != NULL &&
	    (r = check_version("expectedVersion", m.expected_version, 0)) != 0)
		goto out;
	if ((details = json_object_get(root, "statusDetails")) != NULL) {
		r = CF_EINVAL;
		if (!json_is_object(details)) {
			cf_error_set("statusDetails must be an object of strings");
			goto out;
		}
		if (json_object_size(details) > CF_PROTO_DETAILS_MAX) {
			cf_error_set("statusDetails holds at most %d entries", CF_PROTO_DETAILS_MAX);
			goto out;
		}
		json_object_foreach(details, key, v) {
			if (!json_is_string(v)) {
				cf_error_set("statusDetails values must be strings");
				goto out;
			}
			if ((r = cf_proto_update_set_detail(&m, key, json_string_value(v))) != 0)
				goto out;
		}
	}
	*out = m;
	memset(&m, 0, sizeof(m));
	r = 0;
out:
	why_after(why, r, root);
	cf_proto_update_clear(&m);
	json_decref(root);
	return r;
}

int
cf_proto_encode_update(char **out, const cf_proto_update *m)
{
	json_t *o = NULL, *details = NULL;
	size_t i;
	int r = CF_ERROR;

	if ((r = check_status(m->status)) != 0)
		goto out;
	r = CF_ERROR;
	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_str(o, "status", cf_proto_status_name(m->status))) != 0)
		goto out;
	if (m->n_details > 0) {
		r = CF_EINVAL;
		if (m->n_details > CF_PROTO_DETAILS_MAX) {
			cf_error_set("statusDetails holds at most %d entries", CF_PROTO_DETAILS_MAX);
			goto out;
		}
		if ((details = new_object()) == NULL || json_object_set(o, "statusDetails", details) != 0) {
			r = CF_ERROR;
			goto out;
		}
		for (i = 0; i < m->n_details; i++) {
			if ((r = check_detail(m->details[i].key, m->details[i].value)) != 0 ||
			    (r = put_str(details, m->details[i].key, m->details[i].value)) != 0)
				goto out;
		}
	}
	if (m->expected_version >= 0 && (r = put_int(o, "expectedVersion", m->expected_version)) != 0)
		goto out;
	if ((r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(details);
	json_decref(o);
	return r;
}

/* ---- certificate/create: {"jobId", "csr", "signature", "clientToken"?} ------------- */

void
cf_proto_create_clear(cf_proto_create *c)
{
	if (c == NULL)
		return;
	free(c->csr);
	free(c->signature);
	memset(c, 0, sizeof(*c));
}

int
cf_proto_decode_create(cf_proto_create *out, const void *payload, size_t len, cf_proto_code *why)
{
	cf_proto_create m;
	json_t *root = NULL;
	const char *csr, *sig;
	size_t csr_len;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_fixed(m.job_id, CF_PROTO_JOB_ID_MAX, root, "jobId", 1)) != 0 ||
	    (r = check_job_id(m.job_id)) != 0 ||
	    (r = get_str(&csr, &csr_len, root, "csr", 1)) != 0 ||
	    (r = check_pem("csr", csr, csr_len, CF_PROTO_CSR_MAX, "CERTIFICATE REQUEST")) != 0 ||
	    (r = get_str(&sig, NULL, root, "signature", 1)) != 0 ||
	    (r = check_signature(sig)) != 0 ||
	    (r = get_token(m.client_token, root)) != 0)
		goto out;
	r = CF_ERROR;
	if ((m.csr = strdup(csr)) == NULL || (m.signature = strdup(sig)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	m.csr_len = csr_len;
	*out = m;
	memset(&m, 0, sizeof(m));
	r = 0;
out:
	why_after(why, r, root);
	cf_proto_create_clear(&m);
	json_decref(root);
	return r;
}

int
cf_proto_encode_create(char **out, const cf_proto_create *m)
{
	json_t *o = NULL;
	int r;

	if ((r = check_job_id(m->job_id)) != 0 ||
	    (r = check_pem("csr", m->csr, m->csr_len, CF_PROTO_CSR_MAX, "CERTIFICATE REQUEST")) != 0 ||
	    (r = check_signature(m->signature)) != 0)
		goto out;
	r = CF_ERROR;
	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_str(o, "jobId", m->job_id)) != 0 ||
	    (r = put_strn(o, "csr", m->csr, m->csr_len)) != 0 ||
	    (r = put_str(o, "signature", m->signature)) != 0 ||
	    (r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/* ---- certificate/commit: {"jobId", "certificateId", "signature", "clientToken"?} --- */

void
cf_proto_commit_clear(cf_proto_commit *c)
{
	if (c == NULL)
		return;
	free(c->signature);
	memset(c, 0, sizeof(*c));
}

int
cf_proto_decode_commit(cf_proto_commit *out, const void *payload, size_t len, cf_proto_code *why)
{
	cf_proto_commit m;
	json_t *root = NULL;
	const char *sig;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_fixed(m.job_id, CF_PROTO_JOB_ID_MAX, root, "jobId", 1)) != 0 ||
	    (r = check_job_id(m.job_id)) != 0 ||
	    (r = get_fixed(m.certificate_id, CF_ID_LEN, root, "certificateId", 1)) != 0 ||
	    (r = check_cert_id(m.certificate_id)) != 0 ||
	    (r = get_str(&sig, NULL, root, "signature", 1)) != 0 ||
	    (r = check_signature(sig)) != 0 ||
	    (r = get_token(m.client_token, root)) != 0)
		goto out;
	if ((m.signature = strdup(sig)) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	*out = m;
	memset(&m, 0, sizeof(m));
	r = 0;
out:
	why_after(why, r, root);
	cf_proto_commit_clear(&m);
	json_decref(root);
	return r;
}

int
cf_proto_encode_commit(char **out, const cf_proto_commit *m)
{
	json_t *o = NULL;
	int r;

	if ((r = check_job_id(m->job_id)) != 0 || (r = check_cert_id(m->certificate_id)) != 0 ||
	    (r = check_signature(m->signature)) != 0)
		goto out;
	r = CF_ERROR;
	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_str(o, "jobId", m->job_id)) != 0 ||
	    (r = put_str(o, "certificateId", m->certificate_id)) != 0 ||
	    (r = put_str(o, "signature", m->signature)) != 0 ||
	    (r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/*
 * ---- notify-next and $next/get/accepted ----
 * {"execution": {"jobId", "status", "jobDocument": {"operation": "ROTATE_CERTIFICATE",
 *  "keyAlgorithm", "signingAlgorithm"?}, "executionNumber", "versionNumber"}, "clientToken"?}
 * or {"clientToken"?} when nothing is pending.
 */

static int
get_job_doc(cf_proto_job_doc *out, const json_t *e)
{
	json_t *doc = json_object_get(e, "jobDocument");
	const char *op, *key, *sig;
	int r;

	if (!json_is_object(doc)) {
		cf_error_set("execution.jobDocument %s", doc == NULL ? "is missing" : "must be an object");
		return CF_EINVAL;
	}
	if ((r = get_str(&op, NULL, doc, "operation", 1)) != 0)
		return r;
	if (strcmp(op, OPERATION_ROTATE) != 0) {
		cf_error_set("jobDocument.operation is not %s", OPERATION_ROTATE);
		return CF_EINVAL;
	}
	if ((r = get_str(&key, NULL, doc, "keyAlgorithm", 1)) != 0 ||
	    (r = get_str(&sig, NULL, doc, "signingAlgorithm", 0)) != 0)
		return r;
	return cf_alg_validate(&out->key_alg, &out->sig_alg, key, sig);
}

int
cf_proto_decode_execution(cf_proto_execution *out, const void *payload, size_t len, cf_proto_code *why)
{
	cf_proto_execution m;
	json_t *root = NULL, *e;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_token(m.client_token, root)) != 0)
		goto out;
	if ((e = json_object_get(root, "execution")) != NULL) {
		if (!json_is_object(e)) {
			cf_error_set("execution must be an object");
			r = CF_EINVAL;
			goto out;
		}
		m.present = 1;
		if ((r = get_fixed(m.job_id, CF_PROTO_JOB_ID_MAX, e, "jobId", 1)) != 0 ||
		    (r = check_job_id(m.job_id)) != 0 ||
		    (r = get_status(&m.status, e)) != 0 ||
		    (r = get_job_doc(&m.doc, e)) != 0 ||
		    (r = get_int(&m.execution_number, e, "executionNumber", 1)) != 0 ||
		    (r = check_version("executionNumber", m.execution_number, 1)) != 0 ||
		    (r = get_int(&m.version_number, e, "versionNumber", 1)) != 0 ||
		    (r = check_version("versionNumber", m.version_number, 0)) != 0)
			goto out;
	}
	*out = m;
out:
	why_after(why, r, root);
	json_decref(root);
	return r;
}

int
cf_proto_encode_execution(char **out, const cf_proto_execution *m)
{
	json_t *o = NULL, *e = NULL, *doc = NULL;
	int r = CF_ERROR;

	if ((o = new_object()) == NULL)
		goto out;
	if (m->present) {
		if ((r = check_job_id(m->job_id)) != 0 || (r = check_status(m->status)) != 0 ||
		    (r = check_version("executionNumber", m->execution_number, 1)) != 0 ||
		    (r = check_version("versionNumber", m->version_number, 0)) != 0)
			goto out;
		if ((unsigned)m->doc.key_alg >= CF_KEY__COUNT || (unsigned)m->doc.sig_alg >= CF_SIG__COUNT) {
			cf_error_set("jobDocument has no valid algorithms");
			r = CF_EINVAL;
			goto out;
		}
		r = CF_ERROR;
		if ((e = new_object()) == NULL || (doc = new_object()) == NULL ||
		    json_object_set(o, "execution", e) != 0)
			goto out;
		if ((r = put_str(e, "jobId", m->job_id)) != 0 ||
		    (r = put_str(e, "status", cf_proto_status_name(m->status))) != 0)
			goto out;
		r = CF_ERROR;
		if (json_object_set(e, "jobDocument", doc) != 0)
			goto out;
		if ((r = put_str(doc, "operation", OPERATION_ROTATE)) != 0 ||
		    (r = put_str(doc, "keyAlgorithm", cf_key_alg_name(m->doc.key_alg))) != 0 ||
		    (r = put_str(doc, "signingAlgorithm", cf_sig_alg_name(m->doc.sig_alg))) != 0 ||
		    (r = put_int(e, "executionNumber", m->execution_number)) != 0 ||
		    (r = put_int(e, "versionNumber", m->version_number)) != 0)
			goto out;
		/* The pair must be one cf_alg_validate accepts, as the decoder requires. */
		if ((r = cf_alg_validate(&(cf_key_alg){ 0 }, &(cf_sig_alg){ 0 },
		    cf_key_alg_name(m->doc.key_alg), cf_sig_alg_name(m->doc.sig_alg))) != 0)
			goto out;
	}
	if ((r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(doc);
	json_decref(e);
	json_decref(o);
	return r;
}

/* ---- executionState {"status", "versionNumber"} (update replies) ------------------- */

static int
get_state(cf_proto_state *out, const json_t *o)
{
	json_t *s = json_object_get(o, "executionState");
	int r;

	if (!json_is_object(s)) {
		cf_error_set("executionState must be an object");
		return CF_EINVAL;
	}
	if ((r = get_status(&out->status, s)) != 0 ||
	    (r = get_int(&out->version_number, s, "versionNumber", 1)) != 0)
		return r;
	return check_version("versionNumber", out->version_number, 0);
}

static int
put_state(json_t *o, const cf_proto_state *st)
{
	json_t *s = NULL;
	int r;

	if ((r = check_status(st->status)) != 0 ||
	    (r = check_version("versionNumber", st->version_number, 0)) != 0)
		goto out;
	r = CF_ERROR;
	if ((s = new_object()) == NULL || json_object_set(o, "executionState", s) != 0)
		goto out;
	if ((r = put_str(s, "status", cf_proto_status_name(st->status))) != 0 ||
	    (r = put_int(s, "versionNumber", st->version_number)) != 0)
		goto out;
out:
	json_decref(s);
	return r;
}

/* update/accepted: {"executionState", "clientToken"?} */

int
cf_proto_decode_update_accepted(cf_proto_update_accepted *out, const void *payload, size_t len,
    cf_proto_code *why)
{
	cf_proto_update_accepted m;
	json_t *root = NULL;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_state(&m.state, root)) != 0 || (r = get_token(m.client_token, root)) != 0)
		goto out;
	*out = m;
out:
	why_after(why, r, root);
	json_decref(root);
	return r;
}

int
cf_proto_encode_update_accepted(char **out, const cf_proto_update_accepted *m)
{
	json_t *o = NULL;
	int r = CF_ERROR;

	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_state(o, &m->state)) != 0 || (r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/* ---- certificate/create/accepted: {"certificateId", "certificatePem", "chainPem", "clientToken"?} */

void
cf_proto_create_accepted_clear(cf_proto_create_accepted *a)
{
	if (a == NULL)
		return;
	free(a->certificate_pem);
	free(a->chain_pem);
	memset(a, 0, sizeof(*a));
}

int
cf_proto_decode_create_accepted(cf_proto_create_accepted *out, const void *payload, size_t len,
    cf_proto_code *why)
{
	cf_proto_create_accepted m;
	json_t *root = NULL;
	const char *cert, *chain;
	size_t cert_len, chain_len;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_fixed(m.certificate_id, CF_ID_LEN, root, "certificateId", 1)) != 0 ||
	    (r = check_cert_id(m.certificate_id)) != 0 ||
	    (r = get_str(&cert, &cert_len, root, "certificatePem", 1)) != 0 ||
	    (r = check_pem("certificatePem", cert, cert_len, CF_PROTO_PEM_MAX, "CERTIFICATE")) != 0 ||
	    (r = get_str(&chain, &chain_len, root, "chainPem", 1)) != 0 ||
	    (r = check_pem("chainPem", chain, chain_len, CF_PROTO_PEM_MAX, "CERTIFICATE")) != 0 ||
	    (r = get_token(m.client_token, root)) != 0)
		goto out;
	if ((m.certificate_pem = strdup(cert)) == NULL || (m.chain_pem = strdup(chain)) == NULL) {
		cf_error_set("out of memory");
		r = CF_ERROR;
		goto out;
	}
	*out = m;
	memset(&m, 0, sizeof(m));
	r = 0;
out:
	why_after(why, r, root);
	cf_proto_create_accepted_clear(&m);
	json_decref(root);
	return r;
}

int
cf_proto_encode_create_accepted(char **out, const cf_proto_create_accepted *m)
{
	json_t *o = NULL;
	size_t cert_len = m->certificate_pem ? strlen(m->certificate_pem) : 0;
	size_t chain_len = m->chain_pem ? strlen(m->chain_pem) : 0;
	int r;

	if ((r = check_cert_id(m->certificate_id)) != 0 ||
	    (r = check_pem("certificatePem", m->certificate_pem, cert_len, CF_PROTO_PEM_MAX,
	    "CERTIFICATE")) != 0 ||
	    (r = check_pem("chainPem", m->chain_pem, chain_len, CF_PROTO_PEM_MAX, "CERTIFICATE")) != 0)
		goto out;
	r = CF_ERROR;
	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_str(o, "certificateId", m->certificate_id)) != 0 ||
	    (r = put_str(o, "certificatePem", m->certificate_pem)) != 0 ||
	    (r = put_str(o, "chainPem", m->chain_pem)) != 0 ||
	    (r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/* ---- certificate/commit/accepted: {"certificateId", "clientToken"?} ------------------ */

int
cf_proto_decode_commit_accepted(cf_proto_commit_accepted *out, const void *payload, size_t len,
    cf_proto_code *why)
{
	cf_proto_commit_accepted m;
	json_t *root = NULL;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_fixed(m.certificate_id, CF_ID_LEN, root, "certificateId", 1)) != 0 ||
	    (r = check_cert_id(m.certificate_id)) != 0 ||
	    (r = get_token(m.client_token, root)) != 0)
		goto out;
	*out = m;
out:
	why_after(why, r, root);
	json_decref(root);
	return r;
}

int
cf_proto_encode_commit_accepted(char **out, const cf_proto_commit_accepted *m)
{
	json_t *o = NULL;
	int r;

	if ((r = check_cert_id(m->certificate_id)) != 0)
		goto out;
	r = CF_ERROR;
	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_str(o, "certificateId", m->certificate_id)) != 0 ||
	    (r = put_token(o, m->client_token)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/* ---- every .../rejected: {"errorCode", "errorMessage", "clientToken"?, "executionState"?} -- */

void
cf_proto_rejection_set(cf_proto_rejection *out, cf_proto_code code, const char *client_token,
    const char *fmt, ...)
{
	va_list ap;
	size_t i;

	memset(out, 0, sizeof(*out));
	out->code = (unsigned)code < CF_PROTO_CODE__COUNT ? code : CF_PROTO_INTERNAL_ERROR;
	va_start(ap, fmt);
	vsnprintf(out->message, sizeof(out->message), fmt, ap);
	va_end(ap);
	/*
	 * Messages often quote what the device sent; keep them printable ASCII
	 * so that the reply always encodes (a cut could split a UTF-8 sequence).
	 */
	for (i = 0; out->message[i] != '\0'; i++) {
		if ((unsigned char)out->message[i] < 0x20 || (unsigned char)out->message[i] > 0x7e)
			out->message[i] = '?';
	}
	if (client_token != NULL && strlen(client_token) <= CF_PROTO_TOKEN_MAX)
		memcpy(out->client_token, client_token, strlen(client_token) + 1);
}

int
cf_proto_decode_rejection(cf_proto_rejection *out, const void *payload, size_t len,
    cf_proto_code *why)
{
	cf_proto_rejection m;
	json_t *root = NULL;
	const char *code;
	int r;

	memset(&m, 0, sizeof(m));
	if ((r = load(&root, payload, len, why)) != 0)
		goto out;
	if ((r = get_str(&code, NULL, root, "errorCode", 1)) != 0 ||
	    (r = cf_proto_code_parse(&m.code, code)) != 0 ||
	    (r = get_fixed(m.message, CF_PROTO_MESSAGE_MAX, root, "errorMessage", 1)) != 0 ||
	    (r = get_token(m.client_token, root)) != 0)
		goto out;
	if (json_object_get(root, "executionState") != NULL) {
		if ((r = get_state(&m.state, root)) != 0)
			goto out;
		m.has_state = 1;
	}
	*out = m;
out:
	why_after(why, r, root);
	json_decref(root);
	return r;
}

int
cf_proto_encode_rejection(char **out, const cf_proto_rejection *m)
{
	json_t *o = NULL;
	int r = CF_EINVAL;

	if ((unsigned)m->code >= CF_PROTO_CODE__COUNT ||
	    strnlen(m->message, sizeof(m->message)) > CF_PROTO_MESSAGE_MAX) {
		cf_error_set("not a valid rejection");
		goto out;
	}
	r = CF_ERROR;
	if ((o = new_object()) == NULL)
		goto out;
	if ((r = put_str(o, "errorCode", cf_proto_code_name(m->code))) != 0 ||
	    (r = put_str(o, "errorMessage", m->message)) != 0 ||
	    (r = put_token(o, m->client_token)) != 0)
		goto out;
	if (m->has_state && (r = put_state(o, &m->state)) != 0)
		goto out;
	r = dump(out, o);
out:
	json_decref(o);
	return r;
}

/* ---- chain of custody ----------------------------------------------------------- */

int
cf_proto_custody_create_msg(char out[CF_PROTO_CUSTODY_MAX], const char *job_id, const char *thing,
    const void *csr, size_t csr_len)
{
	char hash[CF_ID_LEN + 1];

	if (!cf_proto_job_id_valid(job_id) || !cf_name_valid("thing", thing))
		return CF_EINVAL;
	if (csr == NULL || csr_len == 0) {
		cf_error_set("no CSR to sign over");
		return CF_EINVAL;
	}
	cf_sha256_hex(hash, csr, csr_len);
	return cf_strfmt(out, CF_PROTO_CUSTODY_MAX, "%s|%s|%s", job_id, thing, hash);
}

int
cf_proto_custody_commit_msg(char out[CF_PROTO_CUSTODY_MAX], const char *job_id, const char *thing,
    const char *certificate_id)
{
	int r;

	if (!cf_proto_job_id_valid(job_id) || !cf_name_valid("thing", thing))
		return CF_EINVAL;
	if ((r = check_cert_id(certificate_id)) != 0)
		return r;
	return cf_strfmt(out, CF_PROTO_CUSTODY_MAX, "%s|%s|%s", job_id, thing, certificate_id);
}

int
cf_proto_custody_sign(char **out, const cf_key *key, const char *msg)
{
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	cf_key_alg alg;
	int r;

	if ((r = cf_key_alg_of(&alg, key)) != 0)
		goto out;
	if ((r = cf_key_sign(&sig, &sig_len, key, cf_sig_alg_default(alg), msg, strlen(msg))) != 0)
		goto out;
	r = cf_base64_encode(out, sig, sig_len);
out:
	free(sig);
	return r;
}

int
cf_proto_custody_verify(const cf_key *key, const char *msg, const char *signature)
{
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	cf_key_alg alg;
	int r;

	if (check_signature(signature) != 0 ||
	    cf_base64_decode(&sig, &sig_len, signature, strlen(signature)) != 0) {
		cf_error_prefix("custody signature");
		r = CF_EREJECTED;
		goto out;
	}
	if ((r = cf_key_alg_of(&alg, key)) != 0)
		goto out;
	if ((r = cf_key_verify(key, cf_sig_alg_default(alg), msg, strlen(msg), sig, sig_len)) != 0) {
		cf_error_prefix("custody signature over '%s'", msg);
		goto out;
	}
out:
	free(sig);
	return r;
}
