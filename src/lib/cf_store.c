/*
 * cf_store — the back-end-neutral half of the registry.
 *
 * Owns every rule of the store: argument validation, the certificate and CA
 * status transitions (cf_cert_status_check is the only place they are
 * decided), the "at most two ACTIVE certificates per thing" rule, dynamic
 * group evaluation, id and prefix lookups, the job and rotation state
 * tables, the execution versionNumber compare-and-set, the job targets'
 * life (unreleased, released, removed), the notification outbox's
 * attempts, nesting of transactions and the hash-chained event log
 * (docs/event-log.md). Each mutator runs in a transaction (its own, or a
 * nested one inside the caller's) and appends its event in it, so a change
 * and its event commit together or not at all; job targets and the outbox
 * are bookkeeping and append none.
 *
 * Storage goes through struct cf_store_ops (cf_store_backend.h); nothing
 * here knows which database is underneath. A cf_store is used by one thread
 * at a time.
 */
#include "cf_store.h"

#include "cf_util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cf_store_backend.h"

#define PREFIX_MIN 8          /* shortest id prefix accepted in a lookup */
#define ACTIVE_PER_THING_MAX 2 /* one, and one more during a rotation */

static const char zero_hash[CF_ID_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct cf_store {
	const struct cf_store_ops *ops;
	struct cf_store_backend *b;
	int depth; /* open transactions, outermost included */
	const cf_keyq_policy *keyq;                     /* NULL: the default */
	char keyq_fp[CF_KEYQ_POLICY_FP_LEN + 1];        /* its fingerprint, "" until needed */
};

/* ---- status ------------------------------------------------------------- */

static const char *const status_names[CF_CERT__STATUS_COUNT] = {
	[CF_CERT_PENDING_ACTIVATION] = "PENDING_ACTIVATION",
	[CF_CERT_ACTIVE] = "ACTIVE",
	[CF_CERT_INACTIVE] = "INACTIVE",
	[CF_CERT_REVOKED] = "REVOKED",
};

/* status_allowed[from][to]: DESIGN §4. from == to is a no-op and allowed. */
static const unsigned char status_allowed[CF_CERT__STATUS_COUNT][CF_CERT__STATUS_COUNT] = {
	[CF_CERT_PENDING_ACTIVATION] = {
		[CF_CERT_PENDING_ACTIVATION] = 1, [CF_CERT_ACTIVE] = 1,
		[CF_CERT_INACTIVE] = 1, [CF_CERT_REVOKED] = 1,
	},
	[CF_CERT_ACTIVE] = {
		[CF_CERT_ACTIVE] = 1, [CF_CERT_INACTIVE] = 1, [CF_CERT_REVOKED] = 1,
	},
	[CF_CERT_INACTIVE] = {
		[CF_CERT_ACTIVE] = 1, [CF_CERT_INACTIVE] = 1, [CF_CERT_REVOKED] = 1,
	},
	[CF_CERT_REVOKED] = {
		[CF_CERT_REVOKED] = 1,
	},
};

static int
status_valid(int s)
{
	return s >= 0 && s < CF_CERT__STATUS_COUNT;
}

const char *
cf_cert_status_name(cf_cert_status s)
{
	return status_valid((int)s) ? status_names[s] : "UNKNOWN";
}

int
cf_cert_status_parse(cf_cert_status *out, const char *name)
{
	int i;

	if ((i = cf_name_index(status_names, CF_CERT__STATUS_COUNT, name, 1)) >= 0) {
		*out = (cf_cert_status)i;
		return 0;
	}
	cf_error_set("unknown certificate status '%s' (PENDING_ACTIVATION, ACTIVE, INACTIVE, REVOKED)",
	    name ? name : "");
	return CF_EINVAL;
}

int
cf_cert_status_check(cf_cert_status from, cf_cert_status to)
{
	if (!status_valid((int)from) || !status_valid((int)to)) {
		cf_error_set("unknown certificate status %d -> %d", (int)from, (int)to);
		return CF_EINVAL;
	}
	if (!status_allowed[from][to]) {
		cf_error_set("status cannot change from %s to %s%s", status_names[from],
		    status_names[to], from == CF_CERT_REVOKED ? " (REVOKED is terminal)" : "");
		return CF_ESTATE;
	}
	return 0;
}

/* ---- small helpers ---------------------------------------------------------- */

/* 1 if s is min_len..CF_ID_LEN hex digits (either case). */
static int
is_hex(const char *s, size_t min_len)
{
	size_t i, len = strlen(s);

	if (len < min_len || len > CF_ID_LEN)
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return 0;
	}
	return 1;
}

static void
lower_copy(char *out, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
	out[i] = '\0';
}

static int
id_valid(const char *kind, const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			break;
	}
	if (i != CF_ID_LEN || id[i] != '\0') {
		cf_error_set("%s id must be %d lowercase hex characters", kind, CF_ID_LEN);
		return 0;
	}
	return 1;
}

/* Compact JSON with sorted keys: one line, stable text for hashing and storing. */
static int
json_text(char **out, const json_t *j)
{
	char *s;

	if ((s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	*out = s;
	return 0;
}

/* Attribute keys share the name alphabet, so every attribute can be queried. */
static int
attributes_normalize(char **out, const char *text)
{
	int r = CF_EINVAL;
	json_t *j = NULL, *v;
	json_error_t jerr;
	const char *k;

	if (text == NULL)
		text = "{}";
	if ((j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		cf_error_set("attributes are not valid JSON: %s (line %d)", jerr.text, jerr.line);
		goto out;
	}
	if (!json_is_object(j)) {
		cf_error_set("attributes must be a JSON object");
		goto out;
	}
	json_object_foreach(j, k, v) {
		if (!cf_name_valid("attribute", k)) {
			cf_error_prefix("attributes");
			goto out;
		}
		if (!json_is_string(v)) {
			cf_error_set("attribute '%s' must be a string", k);
			goto out;
		}
	}
	r = json_text(out, j);
out:
	json_decref(j);
	return r;
}

/*
 * A dynamic group query: "key=value" terms joined by ','. Keys follow the
 * name alphabet; values are non-empty and contain neither ',' nor '='.
 * With attrs, returns 1 if every term matches that attributes object and 0
 * if not; with attrs NULL, only validates (0). CF_EINVAL if malformed.
 */
static int
query_eval(const char *query, const json_t *attrs)
{
	const char *p = query, *eq, *end;
	char key[CF_NAME_MAX + 1];
	size_t klen, vlen;
	const json_t *v;
	int match = 1;

	if (query == NULL || *query == '\0') {
		cf_error_set("a dynamic group query must not be empty");
		return CF_EINVAL;
	}
	for (;;) {
		end = p + strcspn(p, ",");
		eq = memchr(p, '=', (size_t)(end - p));
		klen = eq ? (size_t)(eq - p) : 0;
		vlen = eq ? (size_t)(end - eq - 1) : 0;
		if (eq == NULL || klen == 0 || klen > CF_NAME_MAX || vlen == 0 ||
		    memchr(eq + 1, '=', vlen) != NULL) {
			cf_error_set("group query '%s': each term must be key=value, joined by ','",
			    query);
			return CF_EINVAL;
		}
		memcpy(key, p, klen);
		key[klen] = '\0';
		if (!cf_name_valid("query key", key)) {
			cf_error_prefix("group query '%s'", query);
			return CF_EINVAL;
		}
		if (attrs != NULL) {
			v = json_object_get(attrs, key);
			if (!json_is_string(v) || json_string_length(v) != vlen ||
			    memcmp(json_string_value(v), eq + 1, vlen) != 0)
				match = 0;
		}
		if (*end == '\0')
			break;
		p = end + 1;
	}
	return attrs != NULL ? match : 0;
}

static int
thing_matches(int *out, const cf_thing_rec *t, const char *query)
{
	json_t *attrs;
	json_error_t jerr;
	int r;

	if ((attrs = json_loads(t->attributes ? t->attributes : "{}", 0, &jerr)) == NULL) {
		cf_error_set("thing '%s': stored attributes are not JSON: %s", t->name, jerr.text);
		return CF_ECORRUPT;
	}
	r = query_eval(query, attrs);
	json_decref(attrs);
	if (r < 0)
		return r;
	*out = r;
	return 0;
}

/* ---- records ------------------------------------------------------------- */

void
cf_thing_rec_clear(cf_thing_rec *r)
{
	if (r == NULL)
		return;
	free(r->attributes);
	memset(r, 0, sizeof(*r));
}

void
cf_thing_recs_free(cf_thing_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_thing_rec_clear(&r[i]);
	free(r);
}

void
cf_group_rec_clear(cf_group_rec *r)
{
	if (r == NULL)
		return;
	free(r->query);
	memset(r, 0, sizeof(*r));
}

void
cf_group_recs_free(cf_group_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_group_rec_clear(&r[i]);
	free(r);
}

void
cf_strv_free(char **v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
cf_ca_rec_clear(cf_ca_rec *r)
{
	if (r == NULL)
		return;
	free(r->pem);
	memset(r, 0, sizeof(*r));
}

void
cf_ca_recs_free(cf_ca_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_ca_rec_clear(&r[i]);
	free(r);
}

void
cf_cert_rec_clear(cf_cert_rec *r)
{
	if (r == NULL)
		return;
	free(r->pem);
	free(r->keyq_detail);
	memset(r, 0, sizeof(*r));
}

void
cf_cert_recs_free(cf_cert_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_cert_rec_clear(&r[i]);
	free(r);
}

void
cf_event_recs_free(cf_event_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		free(r[i].detail);
	free(r);
}

/* ---- opening and transactions --------------------------------------------- */

static const struct {
	const char *prefix; /* URI scheme, NULL: anything else (a file path) */
	const struct cf_store_ops *ops;
} backends[] = {
	{ "postgres://", NULL },
	{ "postgresql://", NULL },
	{ NULL, &cf_store_sqlite_ops },
};

int
cf_store_open(cf_store **out, const char *uri, int flags)
{
	int r = CF_ERROR;
	cf_store *st = NULL;
	size_t i;

	if (uri == NULL || *uri == '\0') {
		cf_error_set("no store given");
		return CF_EINVAL;
	}
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (backends[i].prefix == NULL ||
		    strncmp(uri, backends[i].prefix, strlen(backends[i].prefix)) == 0)
			break;
	}
	if (i == sizeof(backends) / sizeof(backends[0]) || backends[i].ops == NULL) {
		cf_error_set("%s: no back end for this store in this build", uri);
		return CF_EINVAL;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	st->ops = backends[i].ops;
	if ((r = st->ops->open(&st->b, uri, flags)) != 0)
		goto out;
	*out = st;
	st = NULL;
	r = 0;
out:
	free(st);
	return r;
}

void
cf_store_close(cf_store *st)
{
	if (st == NULL)
		return;
	if (st->b != NULL)
		st->ops->close(st->b);
	free(st);
}

int
cf_store_schema_version(cf_store *st)
{
	return st->ops->schema_version(st->b);
}

int
cf_store_begin(cf_store *st)
{
	int r;

	if ((r = st->ops->begin(st->b, st->depth)) != 0)
		return r;
	st->depth++;
	return 0;
}

int
cf_store_commit(cf_store *st)
{
	if (st->depth == 0) {
		cf_error_set("commit without a transaction");
		return CF_EINVAL;
	}
	st->depth--;
	return st->ops->commit(st->b, st->depth);
}

void
cf_store_rollback(cf_store *st)
{
	if (st->depth == 0)
		return;
	st->depth--;
	st->ops->rollback(st->b, st->depth);
}

/* Ends a mutator's own (possibly nested) transaction: commits on r == 0. */
static int
tx_end(cf_store *st, int r)
{
	if (r == 0)
		return cf_store_commit(st);
	cf_store_rollback(st);
	return r;
}

/* ---- the event chain -------------------------------------------------------- */

/*
 * hash = hex SHA-256 of prev_hash "\n" seq "\n" ts "\n" type "\n" subject
 * "\n" detail (decimal integers). docs/event-log.md is the contract.
 */
static int
event_hash(char out[CF_ID_LEN + 1], const cf_event_rec *ev)
{
	const char *detail = ev->detail ? ev->detail : "";
	size_t len = CF_ID_LEN + 2 * 21 + strlen(ev->type) + strlen(ev->subject) +
	    strlen(detail) + 8;
	char *buf;
	int n;

	if ((buf = malloc(len)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	n = snprintf(buf, len, "%s\n%lld\n%lld\n%s\n%s\n%s", ev->prev_hash, (long long)ev->seq,
	    (long long)ev->ts, ev->type, ev->subject, detail);
	cf_sha256_hex(out, buf, (size_t)n);
	free(buf);
	return 0;
}

static int
event_type_valid(const char *type)
{
	size_t i, len = type ? strlen(type) : 0;

	if (len == 0 || len >= sizeof(((cf_event_rec *)0)->type))
		goto bad;
	for (i = 0; i < len; i++) {
		char c = type[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-'))
			goto bad;
	}
	return 1;
bad:
	cf_error_set("event type '%s' must be 1 to %zu characters of [a-z0-9._-]", type ? type : "",
	    sizeof(((cf_event_rec *)0)->type) - 1);
	return 0;
}

static int
event_subject_valid(const char *subject)
{
	size_t i, len = strlen(subject);

	if (len >= sizeof(((cf_event_rec *)0)->subject)) {
		cf_error_set("event subject is too long (max %zu characters)",
		    sizeof(((cf_event_rec *)0)->subject) - 1);
		return 0;
	}
	/* No control characters: the hashed text is newline-separated. */
	for (i = 0; i < len; i++) {
		if ((unsigned char)subject[i] < 0x20 || subject[i] == 0x7f) {
			cf_error_set("event subject has a control character at position %zu",
			    i + 1);
			return 0;
		}
	}
	return 1;
}

/* Appends with detail already normalized; the caller holds a transaction. */
static int
event_add_text(cf_store *st, const char *type, const char *subject, char *detail)
{
	int r;
	cf_event_rec ev;

	memset(&ev, 0, sizeof(ev));
	if (!event_type_valid(type) || !event_subject_valid(subject))
		return CF_EINVAL;
	memcpy(ev.type, type, strlen(type) + 1);
	memcpy(ev.subject, subject, strlen(subject) + 1);
	ev.detail = detail;
	if ((r = st->ops->event_head(st->b, &ev.seq, ev.prev_hash)) != 0)
		return r;
	ev.seq++;
	ev.ts = cf_time_now();
	if ((r = event_hash(ev.hash, &ev)) != 0)
		return r;
	return st->ops->event_insert(st->b, &ev);
}

/* Appends an event whose detail is j (consumed, may be NULL for "{}"). */
static int
event_add(cf_store *st, const char *type, const char *subject, json_t *j)
{
	int r;
	char *text = NULL;

	if (j == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	if ((r = json_text(&text, j)) == 0)
		r = event_add_text(st, type, subject, text);
	free(text);
	json_decref(j);
	return r;
}

int
cf_store_event_append(cf_store *st, const char *type, const char *subject,
    const char *detail_json)
{
	int r = CF_EINVAL;
	json_t *j = NULL;
	json_error_t jerr;
	char *text = NULL;

	if (subject == NULL)
		subject = "";
	if (!event_type_valid(type) || !event_subject_valid(subject))
		goto out;
	if ((j = json_loads(detail_json ? detail_json : "{}", JSON_REJECT_DUPLICATES,
	    &jerr)) == NULL || !json_is_object(j)) {
		cf_error_set("event detail must be a JSON object%s%s", j ? "" : ": ",
		    j ? "" : jerr.text);
		goto out;
	}
	if ((r = json_text(&text, j)) != 0)
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	r = tx_end(st, event_add_text(st, type, subject, text));
out:
	free(text);
	json_decref(j);
	return r;
}

int
cf_store_event_list(cf_store *st, cf_event_rec **out, size_t *out_n, int64_t since,
    size_t limit)
{
	return st->ops->event_list(st->b, out, out_n, since, limit);
}

int
cf_store_event_head(cf_store *st, int64_t *out)
{
	char hash[CF_ID_LEN + 1];

	return st->ops->event_head(st->b, out, hash);
}

int
cf_store_event_list_after(cf_store *st, cf_event_rec **out, size_t *out_n, int64_t after,
    size_t limit)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->event_list_after(st->b, out, out_n, after, limit);
}

/* ---- connections ------------------------------------------------------------------ */

static int
conn_valid(const cf_conn_rec *c)
{
	static const char *const kinds[] = { "device", "claim", "service", "unknown", NULL };
	size_t i;

	for (i = 0; kinds[i] != NULL; i++)
		if (strcmp(c->kind, kinds[i]) == 0)
			break;
	if (kinds[i] == NULL) {
		cf_error_set("connection kind '%s' is not device, claim, service or unknown", c->kind);
		return 0;
	}
	if (c->client_id[0] == '\0' || memchr(c->client_id, '\0', sizeof(c->client_id)) == NULL) {
		cf_error_set("connection without a client id");
		return 0;
	}
	if (!cf_name_valid("connection ref", c->ref))
		return 0;
	return 1;
}

int
cf_store_connection_open(cf_store *st, const cf_conn_rec *c)
{
	if (!conn_valid(c))
		return CF_EINVAL;
	return st->ops->conn_insert(st->b, c);
}

int
cf_store_connection_close(cf_store *st, const char *ref, int64_t at, const char *reason)
{
	if (!cf_name_valid("connection ref", ref))
		return CF_EINVAL;
	return st->ops->conn_close(st->b, ref, at, reason ? reason : "");
}

int
cf_store_connection_close_all(cf_store *st, int64_t at, const char *reason, size_t *out_n)
{
	size_t n = 0;
	int r = st->ops->conn_close_all(st->b, at, reason ? reason : "", &n);

	if (out_n != NULL)
		*out_n = n;
	return r;
}

int
cf_store_connection_list(cf_store *st, cf_conn_rec **out, size_t *out_n, const char *client_id,
    int open_only, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->conn_list(st->b, out, out_n, client_id, open_only, limit);
}

void
cf_conn_recs_free(cf_conn_rec *r, size_t n)
{
	(void)n; /* flat records: nothing owned inside */
	free(r);
}

struct verify_state {
	int64_t count;   /* events checked and found good */
	int64_t bad;     /* seq of the first bad event, 0 if none yet */
	char head[CF_ID_LEN + 1];
};

static int
verify_one(const cf_event_rec *ev, void *arg)
{
	struct verify_state *vs = arg;
	char want[CF_ID_LEN + 1];
	int r;

	if (ev->seq != vs->count + 1) {
		cf_error_set("event #%lld: sequence broken, expected #%lld (events deleted or "
		    "reordered)", (long long)ev->seq, (long long)(vs->count + 1));
		goto bad;
	}
	if (strcmp(ev->prev_hash, vs->head) != 0) {
		cf_error_set("event #%lld: prev_hash %.16s... does not match the hash of event #%lld "
		    "(%.16s...)", (long long)ev->seq, ev->prev_hash, (long long)vs->count, vs->head);
		goto bad;
	}
	if ((r = event_hash(want, ev)) != 0)
		return r;
	if (strcmp(want, ev->hash) != 0) {
		cf_error_set("event #%lld: stored hash %.16s... does not match its content "
		    "(%.16s...): the event was altered", (long long)ev->seq, ev->hash, want);
		goto bad;
	}
	vs->count++;
	memcpy(vs->head, ev->hash, sizeof(vs->head));
	return 0;
bad:
	vs->bad = ev->seq;
	return CF_ECORRUPT;
}

int
cf_store_event_verify(cf_store *st, int64_t *count, int64_t *first_bad,
    char head[CF_ID_LEN + 1])
{
	struct verify_state vs;
	int r;

	memset(&vs, 0, sizeof(vs));
	memcpy(vs.head, zero_hash, sizeof(vs.head));
	r = st->ops->event_foreach(st->b, verify_one, &vs);
	/* A row the back end could not even read (an oversized hash ...) is bad too. */
	if (r == CF_ECORRUPT && vs.bad == 0)
		vs.bad = vs.count + 1;
	if (count != NULL)
		*count = vs.count;
	if (first_bad != NULL)
		*first_bad = vs.bad;
	if (head != NULL)
		memcpy(head, vs.head, CF_ID_LEN + 1);
	return r;
}

/* ---- things -------------------------------------------------------------- */

int
cf_store_thing_create(cf_store *st, const char *name, const char *attributes_json)
{
	int r = CF_EINVAL;
	cf_thing_rec t;
	json_t *attrs = NULL;

	memset(&t, 0, sizeof(t));
	if (!cf_name_valid("thing", name))
		goto out;
	if ((r = attributes_normalize(&t.attributes, attributes_json)) != 0)
		goto out;
	memcpy(t.name, name, strlen(name) + 1);
	t.created_at = cf_time_now();
	if ((attrs = json_loads(t.attributes, 0, NULL)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->thing_insert(st->b, &t)) == CF_EEXISTS)
		cf_error_set("thing '%s' already exists", name);
	if (r == 0)
		r = event_add(st, "thing.created", name, json_pack("{s:O}", "attributes", attrs));
	r = tx_end(st, r);
out:
	json_decref(attrs);
	cf_thing_rec_clear(&t);
	return r;
}

int
cf_store_thing_get(cf_store *st, cf_thing_rec *out, const char *name)
{
	if (!cf_name_valid("thing", name))
		return CF_EINVAL;
	return st->ops->thing_get(st->b, out, name);
}

int
cf_store_thing_list(cf_store *st, cf_thing_rec **out, size_t *out_n)
{
	return st->ops->thing_list(st->b, out, out_n);
}

int
cf_store_thing_set_attributes(cf_store *st, const char *name, const char *attributes_json)
{
	int r = CF_EINVAL;
	cf_thing_rec t;
	char *attrs = NULL;
	json_t *j = NULL;

	memset(&t, 0, sizeof(t));
	if (!cf_name_valid("thing", name))
		goto out;
	if ((r = attributes_normalize(&attrs, attributes_json)) != 0)
		goto out;
	if ((j = json_loads(attrs, 0, NULL)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->thing_get(st->b, &t, name)) == 0 && strcmp(t.attributes, attrs) != 0) {
		free(t.attributes);
		t.attributes = attrs;
		attrs = NULL;
		if ((r = st->ops->thing_update(st->b, &t)) == 0)
			r = event_add(st, "thing.updated", name, json_pack("{s:O}", "attributes", j));
	}
	r = tx_end(st, r);
out:
	json_decref(j);
	free(attrs);
	cf_thing_rec_clear(&t);
	return r;
}

int
cf_store_thing_delete(cf_store *st, const char *name)
{
	int r = CF_EINVAL;
	cf_thing_rec t;
	cf_cert_rec *certs = NULL;
	size_t n = 0, i;
	cf_cert_filter f = { .status = -1, .thing = name };

	memset(&t, 0, sizeof(t));
	if (!cf_name_valid("thing", name))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->thing_get(st->b, &t, name)) != 0)
		goto end;
	if ((r = st->ops->cert_list(st->b, &certs, &n, &f)) != 0)
		goto end;
	for (i = 0; i < n; i++) {
		if (certs[i].status == CF_CERT_ACTIVE ||
		    certs[i].status == CF_CERT_PENDING_ACTIVATION) {
			r = CF_ESTATE;
			cf_error_set("thing '%s' still holds %s certificate %.16s...: deactivate or "
			    "revoke it first", name, cf_cert_status_name(certs[i].status),
			    certs[i].id);
			goto end;
		}
	}
	if ((r = st->ops->thing_delete(st->b, name)) != 0)
		goto end;
	r = event_add(st, "thing.deleted", name,
	    json_pack("{s:I}", "detached_certificates", (json_int_t)n));
end:
	r = tx_end(st, r);
out:
	cf_cert_recs_free(certs, n);
	cf_thing_rec_clear(&t);
	return r;
}

/* ---- groups ---------------------------------------------------------------- */

int
cf_store_group_create(cf_store *st, const char *name, const char *query)
{
	int r = CF_EINVAL;
	cf_group_rec g;

	memset(&g, 0, sizeof(g));
	if (!cf_name_valid("group", name))
		goto out;
	if (query != NULL && (r = query_eval(query, NULL)) != 0)
		goto out;
	memcpy(g.name, name, strlen(name) + 1);
	if (query != NULL && (g.query = strdup(query)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	g.created_at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->group_insert(st->b, &g)) == CF_EEXISTS)
		cf_error_set("group '%s' already exists", name);
	if (r == 0)
		r = event_add(st, "group.created", name, query ?
		    json_pack("{s:s,s:s}", "type", "dynamic", "query", query) :
		    json_pack("{s:s}", "type", "static"));
	r = tx_end(st, r);
out:
	cf_group_rec_clear(&g);
	return r;
}

/* Adds (add = 1) or removes a static group's member, with its event. */
static int
group_member_change(cf_store *st, const char *group, const char *thing, int add)
{
	int r = CF_EINVAL;
	cf_group_rec g;
	cf_thing_rec t;

	memset(&g, 0, sizeof(g));
	memset(&t, 0, sizeof(t));
	if (!cf_name_valid("group", group) || !cf_name_valid("thing", thing))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->group_get(st->b, &g, group)) != 0 ||
	    (r = st->ops->thing_get(st->b, &t, thing)) != 0)
		goto end;
	if (g.query != NULL) {
		r = CF_EINVAL;
		cf_error_set("group '%s' is dynamic (%s): its members follow their attributes",
		    group, g.query);
		goto end;
	}
	r = add ? st->ops->group_member_add(st->b, group, thing, cf_time_now()) :
	    st->ops->group_member_remove(st->b, group, thing);
	if (r == CF_EEXISTS) {
		r = 0; /* already a member: nothing changes, no event */
		goto end;
	}
	if (r == 0)
		r = event_add(st, add ? "group.member_added" : "group.member_removed", group,
		    json_pack("{s:s}", "thing", thing));
end:
	r = tx_end(st, r);
out:
	cf_group_rec_clear(&g);
	cf_thing_rec_clear(&t);
	return r;
}

int
cf_store_group_add(cf_store *st, const char *group, const char *thing)
{
	return group_member_change(st, group, thing, 1);
}

int
cf_store_group_remove(cf_store *st, const char *group, const char *thing)
{
	return group_member_change(st, group, thing, 0);
}

static int
strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the things matching query (already sorted: thing_list is by name). */
static int
dynamic_members(char ***out, size_t *out_n, const cf_thing_rec *things, size_t n,
    const char *query)
{
	int r = CF_ERROR, m;
	char **v = NULL;
	size_t i, k = 0;

	if (n > 0 && (v = calloc(n, sizeof(*v))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((r = thing_matches(&m, &things[i], query)) != 0)
			goto out;
		if (!m)
			continue;
		if ((v[k] = strdup(things[i].name)) == NULL) {
			r = CF_ERROR;
			cf_error_set("out of memory");
			goto out;
		}
		k++;
	}
	*out = v;
	*out_n = k;
	v = NULL;
	r = 0;
out:
	cf_strv_free(v, k);
	return r;
}

int
cf_store_group_members(cf_store *st, char ***out, size_t *out_n, const char *group)
{
	int r = CF_EINVAL;
	cf_group_rec g;
	cf_thing_rec *things = NULL;
	size_t n = 0;

	memset(&g, 0, sizeof(g));
	if (!cf_name_valid("group", group))
		goto out;
	if ((r = st->ops->group_get(st->b, &g, group)) != 0)
		goto out;
	if (g.query == NULL) {
		r = st->ops->group_member_list(st->b, out, out_n, group);
		goto out;
	}
	if ((r = st->ops->thing_list(st->b, &things, &n)) != 0)
		goto out;
	if ((r = dynamic_members(out, out_n, things, n, g.query)) != 0)
		goto out;
	if (*out_n > 1) /* thing_list order is the back end's collation */
		qsort(*out, *out_n, sizeof(**out), strcmp_p);
out:
	cf_thing_recs_free(things, n);
	cf_group_rec_clear(&g);
	return r;
}

int
cf_store_group_list(cf_store *st, cf_group_rec **out, size_t *out_n)
{
	int r, m;
	cf_group_rec *groups = NULL;
	cf_thing_rec *things = NULL;
	size_t ng = 0, nt = 0, i, j;

	if ((r = st->ops->group_list(st->b, &groups, &ng)) != 0)
		goto out;
	for (i = 0; i < ng; i++) {
		if (groups[i].query == NULL)
			continue;
		if (things == NULL && (r = st->ops->thing_list(st->b, &things, &nt)) != 0)
			goto out;
		groups[i].members = 0;
		for (j = 0; j < nt; j++) {
			if ((r = thing_matches(&m, &things[j], groups[i].query)) != 0)
				goto out;
			groups[i].members += (size_t)m;
		}
	}
	*out = groups;
	*out_n = ng;
	groups = NULL;
	r = 0;
out:
	cf_thing_recs_free(things, nt);
	cf_group_recs_free(groups, ng);
	return r;
}

/* ---- lookups by id, prefix or name ------------------------------------------ */

/*
 * Resolves ref (a full id or a unique prefix of at least PREFIX_MIN hex
 * characters) to a full id. CF_ENOTFOUND, or CF_EINVAL if ambiguous or not
 * an id at all.
 */
static int
resolve_id(cf_store *st, char out[CF_ID_LEN + 1], cf_store_kind kind, const char *ref)
{
	const char *what = kind == CF_STORE_KIND_CA ? "CA" : "certificate";
	char prefix[CF_ID_LEN + 1], ids[2][CF_ID_LEN + 1];
	size_t n = 0;
	int r;

	if (ref == NULL || !is_hex(ref, PREFIX_MIN)) {
		cf_error_set("%s '%s': give its id or at least %d hex characters of it", what,
		    ref ? ref : "", PREFIX_MIN);
		return CF_EINVAL;
	}
	lower_copy(prefix, ref);
	if ((r = st->ops->id_prefix(st->b, ids, &n, 2, kind, prefix)) != 0)
		return r;
	if (n == 0) {
		cf_error_set("no %s with id %s%s", what, prefix,
		    strlen(prefix) < CF_ID_LEN ? "..." : "");
		return CF_ENOTFOUND;
	}
	if (n > 1) {
		cf_error_set("%s id prefix %s is ambiguous (%.16s..., %.16s..., ...): give more of it",
		    what, prefix, ids[0], ids[1]);
		return CF_EINVAL;
	}
	memcpy(out, ids[0], CF_ID_LEN + 1);
	return 0;
}

static int
ca_lookup(cf_store *st, cf_ca_rec *out, const char *ref)
{
	char id[CF_ID_LEN + 1];
	int r;

	if (ref != NULL && strlen(ref) <= CF_NAME_MAX && cf_name_valid("CA", ref)) {
		r = st->ops->ca_get_by_name(st->b, out, ref);
		if (r != CF_ENOTFOUND)
			return r;
		if (!is_hex(ref, PREFIX_MIN)) {
			cf_error_set("no CA named '%s'", ref);
			return CF_ENOTFOUND;
		}
	}
	if ((r = resolve_id(st, id, CF_STORE_KIND_CA, ref)) != 0)
		return r;
	return st->ops->ca_get(st->b, out, id);
}

static int
cert_lookup(cf_store *st, cf_cert_rec *out, const char *ref)
{
	char id[CF_ID_LEN + 1];
	int r;

	if ((r = resolve_id(st, id, CF_STORE_KIND_CERT, ref)) != 0)
		return r;
	return st->ops->cert_get(st->b, out, id);
}

/* ---- certificate authorities ------------------------------------------------ */

static const char *
ca_role_name(cf_ca_role role)
{
	return role == CF_CA_ROOT ? "ROOT" : "INTERMEDIATE";
}

/* Clears the issuer flag on every CA but keep_id; *prev gets the old issuer's name. */
static int
issuer_clear_others(cf_store *st, const char *keep_id, char prev[CF_NAME_MAX + 1])
{
	int r;
	cf_ca_rec *cas = NULL;
	size_t n = 0, i;

	prev[0] = '\0';
	if ((r = st->ops->ca_list(st->b, &cas, &n)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (!cas[i].is_issuer || strcmp(cas[i].id, keep_id) == 0)
			continue;
		memcpy(prev, cas[i].name, CF_NAME_MAX + 1);
		cas[i].is_issuer = 0;
		if ((r = st->ops->ca_update(st->b, &cas[i])) != 0)
			goto out;
	}
out:
	cf_ca_recs_free(cas, n);
	return r;
}

int
cf_store_ca_insert(cf_store *st, const cf_ca_rec *ca)
{
	int r = CF_EINVAL;
	cf_ca_rec rec, parent;
	char prev[CF_NAME_MAX + 1];

	memset(&parent, 0, sizeof(parent));
	rec = *ca;
	rec.pem = NULL;
	if (!id_valid("CA", ca->id) || !cf_name_valid("CA", ca->name))
		goto out;
	if (ca->role != CF_CA_ROOT && ca->role != CF_CA_INTERMEDIATE) {
		cf_error_set("CA '%s': unknown role %d", ca->name, (int)ca->role);
		goto out;
	}
	if (ca->status != CF_CERT_ACTIVE && ca->status != CF_CERT_INACTIVE &&
	    ca->status != CF_CERT_REVOKED) {
		cf_error_set("CA '%s': status must be ACTIVE, INACTIVE or REVOKED", ca->name);
		goto out;
	}
	if (ca->role == CF_CA_ROOT && ca->parent_id[0] != '\0') {
		cf_error_set("CA '%s': a root has no parent", ca->name);
		goto out;
	}
	if (ca->parent_id[0] != '\0' && !id_valid("parent CA", ca->parent_id))
		goto out;
	if (ca->is_issuer && (ca->role != CF_CA_INTERMEDIATE || ca->status != CF_CERT_ACTIVE)) {
		cf_error_set("CA '%s': only an ACTIVE intermediate can be the issuer", ca->name);
		goto out;
	}
	if (ca->pem == NULL || ca->pem[0] == '\0') {
		cf_error_set("CA '%s': no certificate PEM", ca->name);
		goto out;
	}
	if (memchr(ca->serial, '\0', sizeof(ca->serial)) == NULL ||
	    memchr(ca->key_alg, '\0', sizeof(ca->key_alg)) == NULL ||
	    memchr(ca->key_ref, '\0', sizeof(ca->key_ref)) == NULL) {
		cf_error_set("CA '%s': unterminated field", ca->name);
		goto out;
	}
	rec.pem = ca->pem; /* borrowed for the insert, never freed here */
	rec.is_issuer = ca->is_issuer ? 1 : 0;
	if (rec.created_at == 0)
		rec.created_at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if (rec.parent_id[0] != '\0' && (r = st->ops->ca_get(st->b, &parent, rec.parent_id)) != 0) {
		if (r == CF_ENOTFOUND)
			cf_error_set("CA '%s': parent CA %.16s... is not in the registry", ca->name,
			    ca->parent_id);
		goto end;
	}
	if (rec.is_issuer && (r = issuer_clear_others(st, rec.id, prev)) != 0)
		goto end;
	if ((r = st->ops->ca_insert(st->b, &rec)) == CF_EEXISTS)
		cf_error_set("a CA named '%s' or with id %.16s... already exists", ca->name, ca->id);
	if (r != 0)
		goto end;
	r = event_add(st, "ca.created", rec.name,
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:b}", "id", rec.id, "role",
	    ca_role_name(rec.role), "parent_id", rec.parent_id, "status",
	    cf_cert_status_name(rec.status), "serial", rec.serial, "not_after",
	    (json_int_t)rec.not_after, "is_issuer", rec.is_issuer));
	if (r == 0 && rec.is_issuer)
		r = event_add(st, "ca.issuer_set", rec.name,
		    json_pack("{s:s,s:s}", "id", rec.id, "previous", prev));
end:
	r = tx_end(st, r);
out:
	cf_ca_rec_clear(&parent);
	return r;
}

int
cf_store_ca_get(cf_store *st, cf_ca_rec *out, const char *ref)
{
	return ca_lookup(st, out, ref);
}

int
cf_store_ca_list(cf_store *st, cf_ca_rec **out, size_t *out_n)
{
	return st->ops->ca_list(st->b, out, out_n);
}

int
cf_store_ca_get_issuer(cf_store *st, cf_ca_rec *out)
{
	int r;

	/* One indexed row (cas_one_issuer), not the list: the CA path asks at every issuance. */
	if ((r = st->ops->ca_get_issuer(st->b, out)) == CF_ENOTFOUND)
		cf_error_set("no issuing CA is set (certfleet ca set-issuer)");
	return r;
}

int
cf_store_ca_set_issuer(cf_store *st, const char *id)
{
	int r;
	cf_ca_rec ca;
	char prev[CF_NAME_MAX + 1];

	memset(&ca, 0, sizeof(ca));
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = ca_lookup(st, &ca, id)) != 0)
		goto end;
	if (ca.role != CF_CA_INTERMEDIATE) {
		r = CF_EINVAL;
		cf_error_set("CA '%s' is a root: only an intermediate issues device certificates",
		    ca.name);
		goto end;
	}
	if (ca.status != CF_CERT_ACTIVE) {
		r = CF_ESTATE;
		cf_error_set("CA '%s' is %s: only an ACTIVE intermediate can be the issuer",
		    ca.name, cf_cert_status_name(ca.status));
		goto end;
	}
	if (ca.is_issuer)
		goto end; /* already: no change, no event */
	if ((r = issuer_clear_others(st, ca.id, prev)) != 0)
		goto end;
	ca.is_issuer = 1;
	if ((r = st->ops->ca_update(st->b, &ca)) != 0)
		goto end;
	r = event_add(st, "ca.issuer_set", ca.name,
	    json_pack("{s:s,s:s}", "id", ca.id, "previous", prev));
end:
	r = tx_end(st, r);
out:
	cf_ca_rec_clear(&ca);
	return r;
}

int
cf_store_ca_set_status(cf_store *st, const char *id, cf_cert_status to, int reason)
{
	int r, cleared = 0;
	cf_ca_rec ca;
	cf_cert_status from;

	memset(&ca, 0, sizeof(ca));
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = ca_lookup(st, &ca, id)) != 0)
		goto end;
	from = ca.status;
	if ((r = cf_cert_status_check(from, to)) != 0) {
		cf_error_prefix("CA '%s'", ca.name);
		goto end;
	}
	if (from == to)
		goto end;
	if (to == CF_CERT_PENDING_ACTIVATION) {
		r = CF_ESTATE;
		cf_error_set("CA '%s': a CA is never PENDING_ACTIVATION", ca.name);
		goto end;
	}
	ca.status = to;
	if (to == CF_CERT_REVOKED) {
		ca.revoked_at = cf_time_now();
		ca.revoke_reason = reason;
	}
	/* Only an ACTIVE CA may issue. */
	if (ca.is_issuer && to != CF_CERT_ACTIVE) {
		ca.is_issuer = 0;
		cleared = 1;
	}
	if ((r = st->ops->ca_update(st->b, &ca)) != 0)
		goto end;
	r = event_add(st, "ca.status", ca.name,
	    to == CF_CERT_REVOKED ?
	    json_pack("{s:s,s:s,s:s,s:i,s:b}", "id", ca.id, "from", cf_cert_status_name(from),
	    "to", cf_cert_status_name(to), "reason", reason, "issuer_cleared", cleared) :
	    json_pack("{s:s,s:s,s:s,s:b}", "id", ca.id, "from", cf_cert_status_name(from),
	    "to", cf_cert_status_name(to), "issuer_cleared", cleared));
end:
	r = tx_end(st, r);
out:
	cf_ca_rec_clear(&ca);
	return r;
}

int
cf_store_ca_next_crl_number(cf_store *st, int64_t *out, const char *id)
{
	int r;
	cf_ca_rec ca;

	memset(&ca, 0, sizeof(ca));
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = ca_lookup(st, &ca, id)) != 0)
		goto end;
	ca.crl_number++;
	if ((r = st->ops->ca_update(st->b, &ca)) != 0)
		goto end;
	*out = ca.crl_number;
end:
	r = tx_end(st, r);
out:
	cf_ca_rec_clear(&ca);
	return r;
}

/* ---- certificates ------------------------------------------------------------- */

/* CF_ESTATE if thing already holds ACTIVE_PER_THING_MAX ACTIVE certificates other than except_id. */
static int
active_limit_check(cf_store *st, const char *thing, const char *except_id)
{
	int r;
	size_t active = 0;

	if (thing[0] == '\0')
		return 0;
	if ((r = st->ops->cert_count(st->b, &active, thing, CF_CERT_ACTIVE, except_id)) != 0)
		return r;
	if (active >= ACTIVE_PER_THING_MAX) {
		cf_error_set("thing '%s' already has %zu ACTIVE certificates (at most %d, during a "
		    "rotation): deactivate one first", thing, active, ACTIVE_PER_THING_MAX);
		return CF_ESTATE;
	}
	return 0;
}

int
cf_store_set_keyq_policy(cf_store *st, const cf_keyq_policy *p)
{
	char fp[CF_KEYQ_POLICY_FP_LEN + 1];
	int r;

	if ((r = cf_keyq_policy_fingerprint(fp, p)) != 0)
		return r;
	st->keyq = p;
	memcpy(st->keyq_fp, fp, sizeof(fp));
	return 0;
}

/*
 * The key facts of a certificate, from its parsed form when the caller has
 * one (cert, which must be pem parsed), else from pem: cf_keyq gives the
 * same facts either way, so whichever is at hand decides nothing.
 */
static int
keyq_compute(cf_cert_keyq *out, const char *pem, const cf_cert *cert, const cf_keyq_policy *p,
    const char policy_fp[CF_KEYQ_POLICY_FP_LEN + 1])
{
	cf_keyq_result res;
	int r;

	out->spki_sha256[0] = out->keyq_policy[0] = '\0';
	out->keyq_flags = 0;
	out->keyq_detail = NULL;
	if (cert == NULL && pem == NULL) {
		cf_error_set("no PEM");
		return CF_EINVAL;
	}
	r = cert != NULL ? cf_keyq_check_cert_spki(&res, out->spki_sha256, p, cert) :
	    cf_keyq_check_cert_pem(&res, out->spki_sha256, p, pem, strlen(pem));
	if (r != 0)
		return r;
	if (res.detail[0] != '\0' && (out->keyq_detail = strdup(res.detail)) == NULL) {
		out->spki_sha256[0] = '\0';
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	out->keyq_flags = res.flags;
	snprintf(out->keyq_policy, sizeof(out->keyq_policy), "%s", policy_fp);
	return 0;
}

int
cf_cert_keyq_compute(cf_cert_keyq *out, const char *pem, const cf_keyq_policy *p,
    const char policy_fp[CF_KEYQ_POLICY_FP_LEN + 1])
{
	return keyq_compute(out, pem, NULL, p, policy_fp);
}

int
cf_store_cert_insert(cf_store *st, const cf_cert_rec *cert)
{
	return cf_store_cert_insert_parsed(st, cert, NULL);
}

int
cf_store_cert_insert_parsed(cf_store *st, const cf_cert_rec *cert, const cf_cert *parsed)
{
	int r = CF_EINVAL;
	cf_cert_rec rec;
	cf_cert_keyq kq;
	cf_ca_rec ca;
	cf_thing_rec t;

	memset(&ca, 0, sizeof(ca));
	memset(&t, 0, sizeof(t));
	memset(&kq, 0, sizeof(kq));
	rec = *cert;
	rec.keyq_detail = NULL; /* computed below, never the caller's */
	if (!id_valid("certificate", cert->id) || !id_valid("CA", cert->ca_id))
		goto out;
	if (cert->thing[0] != '\0' && !cf_name_valid("thing", cert->thing))
		goto out;
	if (!status_valid((int)cert->status)) {
		cf_error_set("certificate %.16s...: unknown status %d", cert->id, (int)cert->status);
		goto out;
	}
	if (memchr(cert->serial, '\0', sizeof(cert->serial)) == NULL || cert->serial[0] == '\0' ||
	    !is_hex(cert->serial, 1)) {
		cf_error_set("certificate %.16s...: the serial must be hex", cert->id);
		goto out;
	}
	if (memchr(cert->key_alg, '\0', sizeof(cert->key_alg)) == NULL ||
	    memchr(cert->sig_alg, '\0', sizeof(cert->sig_alg)) == NULL) {
		cf_error_set("certificate %.16s...: unterminated field", cert->id);
		goto out;
	}
	if (cert->pem == NULL || cert->pem[0] == '\0') {
		cf_error_set("certificate %.16s...: no PEM", cert->id);
		goto out;
	}
	if (rec.created_at == 0)
		rec.created_at = cf_time_now();
	if (rec.updated_at == 0)
		rec.updated_at = rec.created_at;
	/* The key facts, once, here (one place): a PEM that does not parse keeps none. */
	if (st->keyq_fp[0] == '\0' && (r = cf_store_set_keyq_policy(st, st->keyq)) != 0)
		goto out;
	if (keyq_compute(&kq, cert->pem, parsed, st->keyq, st->keyq_fp) != 0)
		cf_error_clear();
	memcpy(rec.spki_sha256, kq.spki_sha256, sizeof(rec.spki_sha256));
	rec.keyq_flags = kq.keyq_flags;
	memcpy(rec.keyq_policy, kq.keyq_policy, sizeof(rec.keyq_policy));
	rec.keyq_detail = kq.keyq_detail;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->ca_get(st->b, &ca, rec.ca_id)) != 0) {
		if (r == CF_ENOTFOUND)
			cf_error_set("certificate %.16s...: issuing CA %.16s... is not in the registry",
			    rec.id, rec.ca_id);
		goto end;
	}
	if (rec.thing[0] != '\0' && (r = st->ops->thing_get(st->b, &t, rec.thing)) != 0)
		goto end;
	if (rec.status == CF_CERT_ACTIVE && (r = active_limit_check(st, rec.thing, rec.id)) != 0)
		goto end;
	if ((r = st->ops->cert_insert(st->b, &rec)) == CF_EEXISTS)
		cf_error_set("certificate %.16s... is already in the registry", rec.id);
	if (r != 0)
		goto end;
	r = event_add(st, "cert.issued", rec.id,
	    json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "thing", rec.thing, "ca_id", rec.ca_id,
	    "serial", rec.serial, "status", cf_cert_status_name(rec.status), "not_after",
	    (json_int_t)rec.not_after, "key_alg", rec.key_alg));
end:
	r = tx_end(st, r);
out:
	free(kq.keyq_detail);
	cf_ca_rec_clear(&ca);
	cf_thing_rec_clear(&t);
	return r;
}

int
cf_store_cert_get(cf_store *st, cf_cert_rec *out, const char *ref)
{
	return cert_lookup(st, out, ref);
}

int
cf_store_cert_list(cf_store *st, cf_cert_rec **out, size_t *out_n, const cf_cert_filter *f)
{
	cf_cert_filter any = { .status = -1 };

	if (f == NULL)
		f = &any;
	if (f->status != -1 && !status_valid(f->status)) {
		cf_error_set("unknown certificate status %d in filter", f->status);
		return CF_EINVAL;
	}
	return st->ops->cert_list(st->b, out, out_n, f);
}

int
cf_store_cert_set_status(cf_store *st, const char *id, cf_cert_status to, int reason)
{
	int r;
	cf_cert_rec c;
	cf_cert_status from;

	memset(&c, 0, sizeof(c));
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = cert_lookup(st, &c, id)) != 0)
		goto end;
	from = c.status;
	if ((r = cf_cert_status_check(from, to)) != 0) {
		cf_error_prefix("certificate %.16s...", c.id);
		goto end;
	}
	if (from == to)
		goto end; /* revoking twice, activating the active one: nothing happens */
	if (to == CF_CERT_ACTIVE && (r = active_limit_check(st, c.thing, c.id)) != 0)
		goto end;
	c.status = to;
	c.updated_at = cf_time_now();
	if (to == CF_CERT_REVOKED) {
		c.revoked_at = c.updated_at;
		c.revoke_reason = reason;
	}
	if ((r = st->ops->cert_update(st->b, &c)) != 0)
		goto end;
	r = event_add(st, "cert.status", c.id,
	    to == CF_CERT_REVOKED ?
	    json_pack("{s:s,s:s,s:s,s:i}", "thing", c.thing, "from", cf_cert_status_name(from),
	    "to", cf_cert_status_name(to), "reason", reason) :
	    json_pack("{s:s,s:s,s:s}", "thing", c.thing, "from", cf_cert_status_name(from), "to",
	    cf_cert_status_name(to)));
end:
	r = tx_end(st, r);
out:
	cf_cert_rec_clear(&c);
	return r;
}

/* ---- jobs ---------------------------------------------------------------------- */

static const char *const job_state_names[CF_JOB_STATE__COUNT] = {
	[CF_JOB_STATE_SCHEDULED] = "SCHEDULED",
	[CF_JOB_STATE_IN_PROGRESS] = "IN_PROGRESS",
	[CF_JOB_STATE_CANCELED] = "CANCELED",
	[CF_JOB_STATE_COMPLETED] = "COMPLETED",
};

/* job_allowed[from][to]: a job starts, then ends once (CANCELED and COMPLETED are terminal). */
static const unsigned char job_allowed[CF_JOB_STATE__COUNT][CF_JOB_STATE__COUNT] = {
	[CF_JOB_STATE_SCHEDULED] = {
		[CF_JOB_STATE_SCHEDULED] = 1, [CF_JOB_STATE_IN_PROGRESS] = 1,
		[CF_JOB_STATE_CANCELED] = 1, [CF_JOB_STATE_COMPLETED] = 1,
	},
	[CF_JOB_STATE_IN_PROGRESS] = {
		[CF_JOB_STATE_IN_PROGRESS] = 1, [CF_JOB_STATE_CANCELED] = 1,
		[CF_JOB_STATE_COMPLETED] = 1,
	},
	[CF_JOB_STATE_CANCELED] = { [CF_JOB_STATE_CANCELED] = 1 },
	[CF_JOB_STATE_COMPLETED] = { [CF_JOB_STATE_COMPLETED] = 1 },
};

const char *
cf_job_state_name(cf_job_state s)
{
	return (unsigned)s < CF_JOB_STATE__COUNT ? job_state_names[s] : "UNKNOWN";
}

int
cf_job_state_parse(cf_job_state *out, const char *name)
{
	int i;

	if ((i = cf_name_index(job_state_names, CF_JOB_STATE__COUNT, name, 0)) >= 0) {
		*out = (cf_job_state)i;
		return 0;
	}
	cf_error_set("unknown job status '%s' (SCHEDULED, IN_PROGRESS, CANCELED, COMPLETED)",
	    name ? name : "");
	return CF_EINVAL;
}

void
cf_job_rec_clear(cf_job_rec *r)
{
	if (r == NULL)
		return;
	free(r->document);
	free(r->targets);
	free(r->config);
	free(r->comment);
	memset(r, 0, sizeof(*r));
}

void
cf_job_recs_free(cf_job_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_job_rec_clear(&r[i]);
	free(r);
}

/*
 * Parses what (a JSON column of a job or execution) and returns it compact
 * with sorted keys in *out. kinds: 1 = object, 2 = object or array;
 * strings_only: every member of the object must be a string.
 */
static int
json_column(char **out, const char *what, const char *text, int kinds, int strings_only)
{
	int r = CF_EINVAL;
	json_t *j = NULL, *v;
	json_error_t jerr;
	const char *k;

	*out = NULL;
	if (text == NULL || strlen(text) > CF_JOB_JSON_MAX) {
		cf_error_set("%s: %s", what, text == NULL ? "missing" : "too long");
		goto out;
	}
	if ((j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		cf_error_set("%s is not valid JSON: %s (line %d)", what, jerr.text, jerr.line);
		goto out;
	}
	if (!json_is_object(j) && !(kinds == 2 && json_is_array(j))) {
		cf_error_set("%s must be a JSON object%s", what, kinds == 2 ? " or array" : "");
		goto out;
	}
	if (strings_only) {
		json_object_foreach(j, k, v) {
			if (!json_is_string(v)) {
				cf_error_set("%s: '%s' must be a string", what, k);
				goto out;
			}
		}
	}
	r = json_text(out, j);
out:
	json_decref(j);
	return r;
}

static int
text_valid(const char *what, const char *s, size_t max)
{
	size_t i, len = strlen(s);

	if (len > max) {
		cf_error_set("%s is too long (at most %zu characters)", what, max);
		return 0;
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			cf_error_set("%s has a control character at position %zu", what, i + 1);
			return 0;
		}
	}
	return 1;
}

static int
operation_valid(const char *op)
{
	size_t i, len = strnlen(op, CF_JOB_OPERATION_MAX + 1);

	for (i = 0; i < len; i++) {
		if (!((op[i] >= 'A' && op[i] <= 'Z') || (op[i] >= '0' && op[i] <= '9') ||
		    op[i] == '_'))
			break;
	}
	if (len == 0 || len > CF_JOB_OPERATION_MAX || i != len) {
		cf_error_set("job operation must be 1 to %d characters of [A-Z0-9_]",
		    CF_JOB_OPERATION_MAX);
		return 0;
	}
	return 1;
}

static int
job_id_check(const char *id)
{
	if (id == NULL || !cf_proto_job_id_valid(id)) {
		cf_error_prefix("job id '%.64s'", id ? id : "");
		return 0;
	}
	return 1;
}

int
cf_store_job_insert(cf_store *st, const cf_job_rec *job)
{
	int r = CF_EINVAL;
	cf_job_rec rec;

	memset(&rec, 0, sizeof(rec));
	if (memchr(job->id, '\0', sizeof(job->id)) == NULL || !job_id_check(job->id))
		goto out;
	if (memchr(job->operation, '\0', sizeof(job->operation)) == NULL ||
	    !operation_valid(job->operation))
		goto out;
	if (job->selection != CF_JOB_SELECTION_SNAPSHOT &&
	    job->selection != CF_JOB_SELECTION_CONTINUOUS) {
		cf_error_set("job '%s': unknown target selection %d", job->id, (int)job->selection);
		goto out;
	}
	if (job->status != CF_JOB_STATE_SCHEDULED && job->status != CF_JOB_STATE_IN_PROGRESS) {
		cf_error_set("job '%s': a new job is SCHEDULED or IN_PROGRESS", job->id);
		goto out;
	}
	if (job->comment != NULL && !text_valid("job comment", job->comment, CF_JOB_COMMENT_MAX))
		goto out;
	memcpy(rec.id, job->id, sizeof(rec.id));
	memcpy(rec.operation, job->operation, sizeof(rec.operation));
	if ((r = json_column(&rec.document, "job document", job->document, 1, 0)) != 0 ||
	    (r = json_column(&rec.targets, "job targets", job->targets, 2, 0)) != 0 ||
	    (r = json_column(&rec.config, "job configuration", job->config ? job->config : "{}",
	    1, 0)) != 0)
		goto out;
	if (job->comment != NULL && (rec.comment = strdup(job->comment)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	rec.selection = job->selection;
	rec.status = job->status;
	rec.created_at = job->created_at ? job->created_at : cf_time_now();
	rec.updated_at = rec.created_at;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->job_insert(st->b, &rec)) == CF_EEXISTS)
		cf_error_set("job '%s' already exists", rec.id);
	if (r == 0)
		r = event_add(st, "job.created", rec.id,
		    json_pack("{s:s,s:s,s:s}", "operation", rec.operation, "selection",
		    rec.selection == CF_JOB_SELECTION_CONTINUOUS ? "CONTINUOUS" : "SNAPSHOT",
		    "status", cf_job_state_name(rec.status)));
	r = tx_end(st, r);
out:
	cf_job_rec_clear(&rec);
	return r;
}

int
cf_store_job_get(cf_store *st, cf_job_rec *out, const char *id)
{
	if (!job_id_check(id))
		return CF_EINVAL;
	return st->ops->job_get(st->b, out, id);
}

int
cf_store_job_list(cf_store *st, cf_job_rec **out, size_t *out_n, int status)
{
	*out = NULL;
	*out_n = 0;
	if (status != -1 && (status < 0 || status >= CF_JOB_STATE__COUNT)) {
		cf_error_set("unknown job status %d in filter", status);
		return CF_EINVAL;
	}
	return st->ops->job_list(st->b, out, out_n, status);
}

int
cf_store_job_set_status(cf_store *st, const char *id, cf_job_state to, int force,
    const char *comment)
{
	int r = CF_EINVAL;
	cf_job_rec j;
	cf_job_state from;

	memset(&j, 0, sizeof(j));
	if (!job_id_check(id))
		goto out;
	if ((unsigned)to >= CF_JOB_STATE__COUNT) {
		cf_error_set("job '%s': unknown status %d", id, (int)to);
		goto out;
	}
	if (comment != NULL && !text_valid("job comment", comment, CF_JOB_COMMENT_MAX))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->job_get(st->b, &j, id)) != 0)
		goto end;
	from = j.status;
	if (!job_allowed[from][to]) {
		r = CF_ESTATE;
		cf_error_set("job '%s': status cannot change from %s to %s%s", id,
		    job_state_names[from], job_state_names[to],
		    from == CF_JOB_STATE_CANCELED || from == CF_JOB_STATE_COMPLETED ?
		    " (the job has ended)" : "");
		goto end;
	}
	if (from == to)
		goto end;
	j.status = to;
	j.force_canceled = to == CF_JOB_STATE_CANCELED && force;
	j.updated_at = cf_time_now();
	if (to == CF_JOB_STATE_CANCELED || to == CF_JOB_STATE_COMPLETED)
		j.completed_at = j.updated_at;
	if (comment != NULL) {
		free(j.comment);
		if ((j.comment = strdup(comment)) == NULL) {
			r = CF_ERROR;
			cf_error_set("out of memory");
			goto end;
		}
	}
	if ((r = st->ops->job_update(st->b, &j)) != 0)
		goto end;
	r = event_add(st, "job.status", id,
	    json_pack("{s:s,s:s,s:b,s:s}", "from", job_state_names[from], "to",
	    job_state_names[to], "force", j.force_canceled, "comment",
	    comment ? comment : ""));
end:
	r = tx_end(st, r);
out:
	cf_job_rec_clear(&j);
	return r;
}

/* ---- job executions ---------------------------------------------------------------- */

void
cf_exec_rec_clear(cf_exec_rec *r)
{
	if (r == NULL)
		return;
	free(r->status_details);
	memset(r, 0, sizeof(*r));
}

void
cf_exec_recs_free(cf_exec_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_exec_rec_clear(&r[i]);
	free(r);
}

/* A live execution can still change; the others are history (cf_job.h's terminal states). */
static int
exec_live(cf_exec_status s)
{
	return s == CF_EXEC_QUEUED || s == CF_EXEC_IN_PROGRESS;
}

/* The event subject of an execution or rotation: "<job>/<thing>" (at most 64 + 1 + 128). */
static void
exec_subject(char out[256], const char *job_id, const char *thing)
{
	snprintf(out, 256, "%s/%s", job_id, thing);
}

/* Checks the key of an execution or rotation (job id, thing, execution number >= min). */
static int
exec_key_valid(const char *job_id, size_t job_len, const char *thing, size_t thing_len,
    int64_t execution_number, int64_t min)
{
	if ((job_len && memchr(job_id, '\0', job_len) == NULL) || !job_id_check(job_id))
		return 0;
	if ((thing_len && memchr(thing, '\0', thing_len) == NULL) ||
	    !cf_name_valid("thing", thing))
		return 0;
	if (execution_number < min) {
		cf_error_set("job '%s', thing '%s': execution number %lld must be at least %lld",
		    job_id, thing, (long long)execution_number, (long long)min);
		return 0;
	}
	return 1;
}

int
cf_store_exec_insert(cf_store *st, const cf_exec_rec *e)
{
	int r = CF_EINVAL;
	cf_exec_rec rec, prev;
	cf_job_rec job;
	cf_thing_rec t;
	int64_t number = 1, version = 1;
	char subject[256];

	memset(&rec, 0, sizeof(rec));
	memset(&prev, 0, sizeof(prev));
	memset(&job, 0, sizeof(job));
	memset(&t, 0, sizeof(t));
	if (!exec_key_valid(e->job_id, sizeof(e->job_id), e->thing, sizeof(e->thing),
	    e->execution_number, 0))
		goto out;
	if (e->status != CF_EXEC_QUEUED) {
		cf_error_set("job '%s', thing '%s': a new execution is QUEUED, not %s", e->job_id,
		    e->thing, cf_proto_status_name(e->status));
		goto out;
	}
	if (e->version < 0 || e->retries_failed < 0 || e->retries_timed_out < 0) {
		cf_error_set("job '%s', thing '%s': negative version or retry count", e->job_id,
		    e->thing);
		goto out;
	}
	rec = *e;
	rec.status_details = NULL;
	if ((r = json_column(&rec.status_details, "statusDetails",
	    e->status_details ? e->status_details : "{}", 1, 1)) != 0)
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->job_get(st->b, &job, e->job_id)) != 0 ||
	    (r = st->ops->thing_get(st->b, &t, e->thing)) != 0)
		goto end;
	if (job.status == CF_JOB_STATE_CANCELED || job.status == CF_JOB_STATE_COMPLETED) {
		r = CF_ESTATE;
		cf_error_set("job '%s' is %s: it queues no more executions", job.id,
		    job_state_names[job.status]);
		goto end;
	}
	r = st->ops->exec_get(st->b, &prev, e->job_id, e->thing, 0);
	if (r != 0 && r != CF_ENOTFOUND)
		goto end;
	if (r == 0) {
		if (exec_live(prev.status)) {
			r = CF_ESTATE;
			cf_error_set("job '%s' already has execution #%lld for thing '%s' (%s)",
			    job.id, (long long)prev.execution_number, e->thing,
			    cf_proto_status_name(prev.status));
			goto end;
		}
		number = prev.execution_number + 1;
		version = prev.version + 1;
	}
	r = 0;
	if (e->execution_number != 0 && e->execution_number != number) {
		r = CF_ESTATE;
		cf_error_set("job '%s', thing '%s': the next execution is #%lld, not #%lld", job.id,
		    e->thing, (long long)number, (long long)e->execution_number);
		goto end;
	}
	if (e->version != 0 && e->version < version) {
		r = CF_ESTATE;
		cf_error_set("job '%s', thing '%s': versionNumber %lld would repeat (the next is at "
		    "least %lld)", job.id, e->thing, (long long)e->version, (long long)version);
		goto end;
	}
	rec.execution_number = number;
	if (rec.version == 0)
		rec.version = version;
	if (rec.queued_at == 0)
		rec.queued_at = cf_time_now();
	if (rec.last_updated_at == 0)
		rec.last_updated_at = rec.queued_at;
	if ((r = st->ops->exec_insert(st->b, &rec)) == CF_EEXISTS)
		cf_error_set("job '%s' already has execution #%lld for thing '%s'", job.id,
		    (long long)number, e->thing);
	if (r != 0)
		goto end;
	exec_subject(subject, rec.job_id, rec.thing);
	r = event_add(st, "execution.queued", subject,
	    json_pack("{s:s,s:s,s:I,s:I}", "job_id", rec.job_id, "thing", rec.thing,
	    "execution_number", (json_int_t)rec.execution_number, "version",
	    (json_int_t)rec.version));
end:
	r = tx_end(st, r);
out:
	cf_exec_rec_clear(&rec);
	cf_exec_rec_clear(&prev);
	cf_job_rec_clear(&job);
	cf_thing_rec_clear(&t);
	return r;
}

int
cf_store_exec_get(cf_store *st, cf_exec_rec *out, const char *job_id, const char *thing,
    int64_t execution_number)
{
	if (!exec_key_valid(job_id, 0, thing, 0, execution_number, 0))
		return CF_EINVAL;
	return st->ops->exec_get(st->b, out, job_id, thing, execution_number);
}

int
cf_store_exec_update(cf_store *st, const cf_exec_rec *next, int64_t expected_version)
{
	int r = CF_EINVAL, changed = 0;
	cf_exec_rec rec, cur;
	char subject[256];

	memset(&rec, 0, sizeof(rec));
	memset(&cur, 0, sizeof(cur));
	if (!exec_key_valid(next->job_id, sizeof(next->job_id), next->thing, sizeof(next->thing),
	    next->execution_number, 1))
		goto out;
	if ((unsigned)next->status >= CF_EXEC__COUNT) {
		cf_error_set("execution %s/%s: unknown status %d", next->job_id, next->thing,
		    (int)next->status);
		goto out;
	}
	if (expected_version < 1 || next->version != expected_version + 1) {
		cf_error_set("execution %s/%s: an update moves versionNumber from %lld to %lld, not "
		    "to %lld", next->job_id, next->thing, (long long)expected_version,
		    (long long)expected_version + 1, (long long)next->version);
		goto out;
	}
	if (next->retries_failed < 0 || next->retries_timed_out < 0) {
		cf_error_set("execution %s/%s: negative retry count", next->job_id, next->thing);
		goto out;
	}
	rec = *next;
	rec.status_details = NULL;
	if ((r = json_column(&rec.status_details, "statusDetails",
	    next->status_details ? next->status_details : "{}", 1, 1)) != 0)
		goto out;
	if (rec.last_updated_at == 0)
		rec.last_updated_at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	/* Read first for the event's "from" and a clear error; the UPDATE decides. */
	if ((r = st->ops->exec_get(st->b, &cur, rec.job_id, rec.thing,
	    rec.execution_number)) != 0)
		goto end;
	if (cur.version == expected_version &&
	    (r = st->ops->exec_update(st->b, &rec, expected_version, &changed)) != 0)
		goto end;
	if (!changed) {
		r = CF_ESTATE;
		cf_error_set("execution %s/%s #%lld: version mismatch (expected %lld, stored %lld)",
		    rec.job_id, rec.thing, (long long)rec.execution_number,
		    (long long)expected_version, (long long)cur.version);
		goto end;
	}
	exec_subject(subject, rec.job_id, rec.thing);
	r = event_add(st, "execution.status", subject,
	    json_pack("{s:s,s:s,s:I,s:s,s:s,s:I}", "job_id", rec.job_id, "thing", rec.thing,
	    "execution_number", (json_int_t)rec.execution_number, "from",
	    cf_proto_status_name(cur.status), "to", cf_proto_status_name(rec.status), "version",
	    (json_int_t)rec.version));
end:
	r = tx_end(st, r);
out:
	cf_exec_rec_clear(&rec);
	cf_exec_rec_clear(&cur);
	return r;
}

int
cf_store_exec_next_pending(cf_store *st, cf_exec_rec *out, const char *thing)
{
	int r;

	if (!cf_name_valid("thing", thing))
		return CF_EINVAL;
	r = st->ops->exec_oldest(st->b, out, thing, CF_EXEC_IN_PROGRESS);
	if (r == CF_ENOTFOUND)
		r = st->ops->exec_oldest(st->b, out, thing, CF_EXEC_QUEUED);
	if (r == CF_ENOTFOUND)
		cf_error_set("thing '%s' has no pending job execution", thing);
	return r;
}

int
cf_store_exec_list(cf_store *st, cf_exec_rec **out, size_t *out_n, const char *job_id,
    int status, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	if (!job_id_check(job_id))
		return CF_EINVAL;
	if (status != -1 && (status < 0 || status >= CF_EXEC__COUNT)) {
		cf_error_set("unknown execution status %d in filter", status);
		return CF_EINVAL;
	}
	return st->ops->exec_list(st->b, out, out_n, job_id, status, limit);
}

int
cf_store_exec_counts(cf_store *st, int64_t counts[CF_EXEC__COUNT], const char *job_id)
{
	memset(counts, 0, sizeof(int64_t) * CF_EXEC__COUNT);
	if (!job_id_check(job_id))
		return CF_EINVAL;
	return st->ops->exec_counts(st->b, counts, job_id);
}

int
cf_store_exec_list_stale(cf_store *st, cf_exec_rec **out, size_t *out_n, const char *job_id,
    int64_t step_at_or_before, int64_t started_at_or_before, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	if (job_id != NULL && !job_id_check(job_id))
		return CF_EINVAL;
	if (step_at_or_before <= 0 && started_at_or_before <= 0) {
		cf_error_set("stale executions: give a step or a start time");
		return CF_EINVAL;
	}
	return st->ops->exec_stale(st->b, out, out_n, job_id, step_at_or_before,
	    started_at_or_before, limit);
}

/* ---- rotation records ------------------------------------------------------------- */

static const char *const rotation_names[CF_ROTATION__COUNT] = {
	[CF_ROTATION_CREATED] = "created",
	[CF_ROTATION_COMMITTED] = "committed",
	[CF_ROTATION_INDETERMINATE] = "indeterminate",
	[CF_ROTATION_SUCCEEDED] = "succeeded",
	[CF_ROTATION_FAILED] = "failed",
};

/* rotation_allowed[from][to]: DESIGN §6 terminal handling (cf_store.h). */
static const unsigned char rotation_allowed[CF_ROTATION__COUNT][CF_ROTATION__COUNT] = {
	[CF_ROTATION_CREATED] = {
		[CF_ROTATION_CREATED] = 1, [CF_ROTATION_COMMITTED] = 1, [CF_ROTATION_FAILED] = 1,
	},
	[CF_ROTATION_COMMITTED] = {
		[CF_ROTATION_COMMITTED] = 1, [CF_ROTATION_SUCCEEDED] = 1,
		[CF_ROTATION_INDETERMINATE] = 1, [CF_ROTATION_FAILED] = 1,
	},
	[CF_ROTATION_INDETERMINATE] = {
		[CF_ROTATION_INDETERMINATE] = 1, [CF_ROTATION_SUCCEEDED] = 1,
		[CF_ROTATION_FAILED] = 1,
	},
	[CF_ROTATION_SUCCEEDED] = { [CF_ROTATION_SUCCEEDED] = 1 },
	[CF_ROTATION_FAILED] = { [CF_ROTATION_FAILED] = 1 },
};

const char *
cf_rotation_state_name(cf_rotation_state s)
{
	return (unsigned)s < CF_ROTATION__COUNT ? rotation_names[s] : "unknown";
}

int
cf_rotation_state_parse(cf_rotation_state *out, const char *name)
{
	int i;

	if ((i = cf_name_index(rotation_names, CF_ROTATION__COUNT, name, 0)) >= 0) {
		*out = (cf_rotation_state)i;
		return 0;
	}
	cf_error_set("unknown rotation state '%s' (created, committed, indeterminate, succeeded, "
	    "failed)", name ? name : "");
	return CF_EINVAL;
}

void
cf_rotation_recs_free(cf_rotation_rec *r, size_t n)
{
	(void)n; /* flat records: nothing owned inside */
	free(r);
}

void
cf_job_target_recs_free(cf_job_target_rec *r, size_t n)
{
	(void)n; /* flat records */
	free(r);
}

int
cf_store_rotation_upsert(cf_store *st, const cf_rotation_rec *x)
{
	int r = CF_EINVAL;
	cf_rotation_rec rec, cur;
	cf_exec_rec e;
	char subject[256];

	memset(&e, 0, sizeof(e));
	memset(&cur, 0, sizeof(cur));
	if (!exec_key_valid(x->job_id, sizeof(x->job_id), x->thing, sizeof(x->thing),
	    x->execution_number, 1))
		goto out;
	if (memchr(x->old_cert, '\0', sizeof(x->old_cert)) == NULL ||
	    memchr(x->new_cert, '\0', sizeof(x->new_cert)) == NULL ||
	    !id_valid("old certificate", x->old_cert) ||
	    (x->new_cert[0] != '\0' && !id_valid("new certificate", x->new_cert)))
		goto out;
	if (strcmp(x->old_cert, x->new_cert) == 0) {
		cf_error_set("rotation %s/%s: the new certificate is the old one", x->job_id,
		    x->thing);
		goto out;
	}
	if (x->state != CF_ROTATION_CREATED) {
		cf_error_set("rotation %s/%s: a rotation is recorded as created, then moved",
		    x->job_id, x->thing);
		goto out;
	}
	rec = *x;
	exec_subject(subject, rec.job_id, rec.thing);
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->exec_get(st->b, &e, rec.job_id, rec.thing, rec.execution_number)) != 0)
		goto end;
	rec.updated_at = cf_time_now();
	r = st->ops->rotation_get(st->b, &cur, rec.job_id, rec.thing, rec.execution_number);
	if (r == CF_ENOTFOUND) {
		rec.created_at = rec.created_at ? rec.created_at : rec.updated_at;
		if ((r = st->ops->rotation_insert(st->b, &rec)) != 0)
			goto end;
		r = event_add(st, "rotation.created", subject,
		    json_pack("{s:s,s:s,s:I,s:s,s:s}", "job_id", rec.job_id, "thing", rec.thing,
		    "execution_number", (json_int_t)rec.execution_number, "old_cert", rec.old_cert,
		    "new_cert", rec.new_cert));
		goto end;
	}
	if (r != 0)
		goto end;
	if (cur.state != CF_ROTATION_CREATED) {
		r = CF_ESTATE;
		cf_error_set("rotation %s/%s #%lld is already %s", rec.job_id, rec.thing,
		    (long long)rec.execution_number, rotation_names[cur.state]);
		goto end;
	}
	if (strcmp(cur.old_cert, rec.old_cert) == 0 && strcmp(cur.new_cert, rec.new_cert) == 0)
		goto end; /* the same create again: nothing changes */
	/* The old certificate is where the rotation started; an issued one is never forgotten. */
	if (strcmp(cur.old_cert, rec.old_cert) != 0) {
		r = CF_ESTATE;
		cf_error_set("rotation %s/%s #%lld started from certificate %.16s...: the old "
		    "certificate cannot change", rec.job_id, rec.thing,
		    (long long)rec.execution_number, cur.old_cert);
		goto end;
	}
	if (cur.new_cert[0] != '\0' && rec.new_cert[0] == '\0') {
		r = CF_ESTATE;
		cf_error_set("rotation %s/%s #%lld: certificate %.16s... was issued; it can be "
		    "replaced, not forgotten", rec.job_id, rec.thing,
		    (long long)rec.execution_number, cur.new_cert);
		goto end;
	}
	rec.created_at = cur.created_at;
	if ((r = st->ops->rotation_update(st->b, &rec)) != 0)
		goto end;
	r = event_add(st, "rotation.updated", subject,
	    json_pack("{s:s,s:s,s:I,s:s,s:s,s:s}", "job_id", rec.job_id, "thing", rec.thing,
	    "execution_number", (json_int_t)rec.execution_number, "old_cert", rec.old_cert,
	    "new_cert", rec.new_cert, "previous_new_cert", cur.new_cert));
end:
	r = tx_end(st, r);
out:
	cf_exec_rec_clear(&e);
	return r;
}

int
cf_store_rotation_get(cf_store *st, cf_rotation_rec *out, const char *job_id, const char *thing,
    int64_t execution_number)
{
	if (!exec_key_valid(job_id, 0, thing, 0, execution_number, 1))
		return CF_EINVAL;
	return st->ops->rotation_get(st->b, out, job_id, thing, execution_number);
}

int
cf_store_rotation_set_state(cf_store *st, const char *job_id, const char *thing,
    int64_t execution_number, cf_rotation_state to, const char *reason)
{
	int r = CF_EINVAL;
	cf_rotation_rec x;
	cf_rotation_state from;
	char subject[256], type[64];

	memset(&x, 0, sizeof(x));
	if (!exec_key_valid(job_id, 0, thing, 0, execution_number, 1))
		goto out;
	if ((unsigned)to >= CF_ROTATION__COUNT) {
		cf_error_set("rotation %s/%s: unknown state %d", job_id, thing, (int)to);
		goto out;
	}
	if (reason != NULL && !text_valid("rotation reason", reason, CF_JOB_COMMENT_MAX))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->rotation_get(st->b, &x, job_id, thing, execution_number)) != 0)
		goto end;
	from = x.state;
	if (!rotation_allowed[from][to]) {
		r = CF_ESTATE;
		cf_error_set("rotation %s/%s #%lld cannot go from %s to %s", job_id, thing,
		    (long long)execution_number, rotation_names[from], rotation_names[to]);
		goto end;
	}
	if (from == to)
		goto end;
	if (to == CF_ROTATION_COMMITTED && x.new_cert[0] == '\0') {
		r = CF_ESTATE;
		cf_error_set("rotation %s/%s #%lld: nothing was issued, so nothing can be committed",
		    job_id, thing, (long long)execution_number);
		goto end;
	}
	x.state = to;
	x.updated_at = cf_time_now();
	if ((r = st->ops->rotation_update(st->b, &x)) != 0)
		goto end;
	exec_subject(subject, job_id, thing);
	snprintf(type, sizeof(type), "rotation.%s", rotation_names[to]);
	r = event_add(st, type, subject,
	    json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s}", "job_id", job_id, "thing", thing,
	    "execution_number", (json_int_t)execution_number, "from", rotation_names[from], "to",
	    rotation_names[to], "old_cert", x.old_cert, "new_cert", x.new_cert, "reason",
	    reason ? reason : ""));
end:
	r = tx_end(st, r);
out:
	return r;
}

int
cf_store_rotation_find_cert(cf_store *st, cf_rotation_rec **out, size_t *out_n,
    const char *cert_id)
{
	*out = NULL;
	*out_n = 0;
	if (cert_id == NULL || !id_valid("certificate", cert_id))
		return CF_EINVAL;
	return st->ops->rotation_find_cert(st->b, out, out_n, cert_id);
}

int
cf_store_rotation_list_state(cf_store *st, cf_rotation_rec **out, size_t *out_n,
    cf_rotation_state state, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	if ((unsigned)state >= CF_ROTATION__COUNT) {
		cf_error_set("unknown rotation state %d in filter", (int)state);
		return CF_EINVAL;
	}
	return st->ops->rotation_list_state(st->b, out, out_n, state, limit);
}

/* ---- job targets ------------------------------------------------------------------ */

/* The key of a job target, and a time that is 0 (now) or a real one. */
static int
target_args_valid(const char *job_id, const char *thing, int64_t now)
{
	if (!job_id_check(job_id) || !cf_name_valid("thing", thing))
		return 0;
	if (now < 0) {
		cf_error_set("job '%s', thing '%s': time %lld is negative", job_id, thing,
		    (long long)now);
		return 0;
	}
	return 1;
}

int
cf_store_job_target_add(cf_store *st, int *added, const char *job_id, const char *thing,
    int64_t now)
{
	int r = CF_EINVAL, fresh = 0;
	cf_job_rec job;
	cf_thing_rec t;
	cf_job_target_rec x;

	memset(&job, 0, sizeof(job));
	memset(&t, 0, sizeof(t));
	memset(&x, 0, sizeof(x));
	if (added != NULL)
		*added = 0;
	if (!target_args_valid(job_id, thing, now))
		goto out;
	if (now == 0)
		now = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->job_get(st->b, &job, job_id)) != 0 ||
	    (r = st->ops->thing_get(st->b, &t, thing)) != 0)
		goto end;
	if (job.status == CF_JOB_STATE_CANCELED || job.status == CF_JOB_STATE_COMPLETED) {
		r = CF_ESTATE;
		cf_error_set("job '%s' is %s: it takes no more targets", job.id,
		    job_state_names[job.status]);
		goto end;
	}
	r = st->ops->target_get(st->b, &x, job_id, thing);
	if (r == CF_ENOTFOUND) {
		memcpy(x.job_id, job.id, sizeof(x.job_id));
		memcpy(x.thing, t.name, sizeof(x.thing));
		x.added_at = now;
		if ((r = st->ops->target_insert(st->b, &x)) == 0)
			fresh = 1;
		goto end;
	}
	if (r != 0 || x.removed_at == 0)
		goto end; /* already a target, released or not: nothing changes */
	/* A removed target came back: it waits for release again, as a new attempt. */
	x.added_at = now;
	x.released_at = 0;
	x.removed_at = 0;
	if ((r = st->ops->target_update(st->b, &x)) == 0)
		fresh = 1;
end:
	r = tx_end(st, r);
	if (r == 0 && added != NULL)
		*added = fresh;
out:
	cf_job_rec_clear(&job);
	cf_thing_rec_clear(&t);
	return r;
}

int
cf_store_job_target_list(cf_store *st, cf_job_target_rec **out, size_t *out_n,
    const char *job_id, cf_targets_which which, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	if (!job_id_check(job_id))
		return CF_EINVAL;
	if (which != CF_TARGETS_ALL && which != CF_TARGETS_UNRELEASED &&
	    which != CF_TARGETS_RELEASED) {
		cf_error_set("job '%s': unknown target filter %d", job_id, (int)which);
		return CF_EINVAL;
	}
	return st->ops->target_list(st->b, out, out_n, job_id, which, limit);
}

int
cf_store_job_target_release(cf_store *st, const char *job_id, const char *thing, int64_t now)
{
	int r = CF_EINVAL;
	cf_job_target_rec x;

	if (!target_args_valid(job_id, thing, now))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->target_get(st->b, &x, job_id, thing)) != 0)
		goto end;
	if (x.removed_at != 0 || x.released_at != 0) {
		r = CF_ESTATE;
		cf_error_set("job '%s': target '%s' was already %s", job_id, thing,
		    x.removed_at != 0 ? "removed" : "released");
		goto end;
	}
	x.released_at = now ? now : cf_time_now();
	r = st->ops->target_update(st->b, &x);
end:
	r = tx_end(st, r);
out:
	return r;
}

int
cf_store_job_target_remove(cf_store *st, const char *job_id, const char *thing, int64_t now)
{
	int r = CF_EINVAL;
	cf_job_target_rec x;

	if (!target_args_valid(job_id, thing, now))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->target_get(st->b, &x, job_id, thing)) != 0 || x.removed_at != 0)
		goto end; /* already removed: the first removal's time stands */
	x.removed_at = now ? now : cf_time_now();
	r = st->ops->target_update(st->b, &x);
end:
	r = tx_end(st, r);
out:
	return r;
}

int
cf_store_job_target_stats(cf_store *st, cf_job_target_stats *out, const char *job_id,
    int64_t since)
{
	memset(out, 0, sizeof(*out));
	if (!job_id_check(job_id))
		return CF_EINVAL;
	return st->ops->target_stats(st->b, out, job_id, since);
}

/* ---- notification outbox ------------------------------------------------------------ */

static const char *const notify_state_names[CF_NOTIFY__COUNT] = {
	[CF_NOTIFY_PENDING] = "PENDING",
	[CF_NOTIFY_DELIVERED] = "DELIVERED",
	[CF_NOTIFY_GAVE_UP] = "GAVE_UP",
};

const char *
cf_notify_state_name(cf_notify_state s)
{
	return (unsigned)s < CF_NOTIFY__COUNT ? notify_state_names[s] : "UNKNOWN";
}

void
cf_notify_rec_clear(cf_notify_rec *r)
{
	if (r == NULL)
		return;
	free(r->payload);
	memset(r, 0, sizeof(*r));
}

void
cf_notify_recs_free(cf_notify_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_notify_rec_clear(&r[i]);
	free(r);
}

/* 1 if s is 1..max characters of [a-z0-9._-] (a sink or a notification kind). */
static int
notify_word_valid(const char *what, const char *s, size_t max)
{
	size_t i, len = s ? strnlen(s, max + 1) : 0;

	for (i = 0; i < len; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		    s[i] == '_' || s[i] == '-'))
			break;
	}
	if (len == 0 || len > max || i != len) {
		cf_error_set("notification %s '%.*s' must be 1 to %zu characters of [a-z0-9._-]",
		    what, (int)(len < 64 ? len : 64), s ? s : "", max);
		return 0;
	}
	return 1;
}

int
cf_store_notify_enqueue(cf_store *st, int64_t *id, const char *sink, const char *kind,
    const char *payload)
{
	int r = CF_EINVAL;
	int64_t nid = 0;
	cf_notify_rec n;

	memset(&n, 0, sizeof(n));
	if (!notify_word_valid("sink", sink, CF_NOTIFY_SINK_MAX) ||
	    !notify_word_valid("kind", kind, CF_NOTIFY_KIND_MAX))
		goto out;
	if (payload == NULL || strlen(payload) > CF_NOTIFY_PAYLOAD_MAX) {
		cf_error_set("notification payload: %s (at most %d bytes)",
		    payload == NULL ? "missing" : "too long", CF_NOTIFY_PAYLOAD_MAX);
		goto out;
	}
	if ((r = json_column(&n.payload, "notification payload", payload, 1, 0)) != 0)
		goto out;
	/* Normalizing can lengthen numbers (1e-5): the limit holds for what is stored. */
	if (strlen(n.payload) > CF_NOTIFY_PAYLOAD_MAX) {
		r = CF_EINVAL;
		cf_error_set("notification payload: too long once normalized (at most %d bytes)",
		    CF_NOTIFY_PAYLOAD_MAX);
		goto out;
	}
	memcpy(n.sink, sink, strlen(sink) + 1);
	memcpy(n.kind, kind, strlen(kind) + 1);
	n.state = CF_NOTIFY_PENDING;
	n.created_at = cf_time_now();
	n.next_at = n.created_at;
	n.updated_at = n.created_at;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	r = tx_end(st, st->ops->notify_insert(st->b, &nid, &n));
	if (r == 0 && id != NULL)
		*id = nid;
out:
	cf_notify_rec_clear(&n);
	return r;
}

int
cf_store_notify_due(cf_store *st, cf_notify_rec **out, size_t *out_n, int64_t now, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->notify_due(st->b, out, out_n, now, limit);
}

/*
 * Copies a delivery error into out: at most out_len - 1 bytes, cut on a
 * UTF-8 character boundary, control characters as spaces. A sink's error
 * text (an HTTP body, a hook's stderr) is not ours to refuse: the attempt
 * must be recorded whatever it says.
 */
static void
error_copy(char *out, size_t out_len, const char *error)
{
	size_t i, len = error ? strlen(error) : 0;

	if (len >= out_len) {
		len = out_len - 1;
		while (len > 0 && ((unsigned char)error[len] & 0xc0) == 0x80)
			len--; /* error[len] continues a character: cut before it starts */
	}
	for (i = 0; i < len; i++)
		out[i] = (unsigned char)error[i] < 0x20 || error[i] == 0x7f ? ' ' : error[i];
	out[len] = '\0';
}

int
cf_store_notify_attempted(cf_store *st, int64_t id, cf_notify_state to, int64_t next_at,
    const char *error)
{
	int r = CF_EINVAL, changed = 0;
	cf_notify_rec n;

	memset(&n, 0, sizeof(n));
	if (id <= 0) {
		cf_error_set("notification id %lld: ids start at 1", (long long)id);
		goto out;
	}
	if ((unsigned)to >= CF_NOTIFY__COUNT) {
		cf_error_set("notification %lld: unknown state %d", (long long)id, (int)to);
		goto out;
	}
	if (to == CF_NOTIFY_PENDING && next_at <= 0) {
		cf_error_set("notification %lld: a retry needs the time of its next attempt",
		    (long long)id);
		goto out;
	}
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->notify_get(st->b, &n, id)) != 0)
		goto end;
	if (n.state != CF_NOTIFY_PENDING) {
		r = CF_ESTATE;
		cf_error_set("notification %lld is already %s", (long long)id,
		    notify_state_names[n.state]);
		goto end;
	}
	n.attempts++;
	n.state = to;
	if (to == CF_NOTIFY_PENDING)
		n.next_at = next_at; /* a terminal row keeps the next_at it was due at */
	n.updated_at = cf_time_now();
	error_copy(n.last_error, sizeof(n.last_error), error);
	if ((r = st->ops->notify_update(st->b, &n, &changed)) != 0)
		goto end;
	if (!changed) {
		r = CF_ESTATE;
		cf_error_set("notification %lld is no longer PENDING", (long long)id);
	}
end:
	r = tx_end(st, r);
out:
	cf_notify_rec_clear(&n);
	return r;
}

int
cf_store_notify_list(cf_store *st, cf_notify_rec **out, size_t *out_n, int state, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	if (state != -1 && (state < 0 || state >= CF_NOTIFY__COUNT)) {
		cf_error_set("unknown notification state %d in filter", state);
		return CF_EINVAL;
	}
	return st->ops->notify_list(st->b, out, out_n, state, limit);
}

/* ---- audits, findings, suppressions, mitigation actions ---------------------------- */

static const char *const severity_names[CF_SEV__COUNT] = {
	[CF_SEV_LOW] = "LOW",
	[CF_SEV_MEDIUM] = "MEDIUM",
	[CF_SEV_HIGH] = "HIGH",
	[CF_SEV_CRITICAL] = "CRITICAL",
};

const char *
cf_severity_name(cf_severity s)
{
	return (unsigned)s < CF_SEV__COUNT ? severity_names[s] : "UNKNOWN";
}

int
cf_severity_parse(cf_severity *out, const char *name)
{
	int i;

	for (i = 0; name != NULL && i < CF_SEV__COUNT; i++) {
		if (strcasecmp(name, severity_names[i]) == 0) {
			*out = (cf_severity)i;
			return 0;
		}
	}
	cf_error_set("unknown severity '%s' (LOW, MEDIUM, HIGH or CRITICAL)", name ? name : "");
	return CF_EINVAL;
}

void
cf_audit_rec_clear(cf_audit_rec *r)
{
	if (r == NULL)
		return;
	free(r->checks);
	free(r->counts);
	memset(r, 0, sizeof(*r));
}

void
cf_audit_recs_free(cf_audit_rec *r, size_t n)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_audit_rec_clear(&r[i]);
	free(r);
}

/* A check name: 1 to CF_AUDIT_CHECK_MAX characters of [A-Z0-9_]. */
static int
check_name_valid(const char *check)
{
	size_t i, len = check ? strlen(check) : 0;

	if (len == 0 || len > CF_AUDIT_CHECK_MAX)
		goto bad;
	for (i = 0; i < len; i++)
		if (!((check[i] >= 'A' && check[i] <= 'Z') || (check[i] >= '0' && check[i] <= '9') ||
		    check[i] == '_'))
			goto bad;
	return 1;
bad:
	cf_error_set("check name '%s' must be 1 to %d characters of [A-Z0-9_]", check ? check : "",
	    CF_AUDIT_CHECK_MAX);
	return 0;
}

static int
finding_valid(const cf_finding_rec *f)
{
	if (!check_name_valid(f->check) || !text_valid("finding resource", f->resource_id,
	    CF_AUDIT_RESOURCE_MAX) || !text_valid("finding detail", f->detail, CF_AUDIT_DETAIL_MAX))
		return 0;
	if ((unsigned)f->severity >= CF_SEV__COUNT || f->resource_type[0] == '\0' ||
	    f->reason_code[0] == '\0' || memchr(f->resource_type, '\0', sizeof(f->resource_type)) == NULL ||
	    memchr(f->reason_code, '\0', sizeof(f->reason_code)) == NULL) {
		cf_error_set("finding of %s: bad severity, resource type or reason code", f->check);
		return 0;
	}
	return 1;
}

int
cf_store_audit_start(cf_store *st, int64_t *out, const char *trigger, const char *checks_json)
{
	int r = CF_EINVAL;
	int64_t id = 0;
	cf_audit_rec a;
	char subject[32];

	memset(&a, 0, sizeof(a));
	if (trigger == NULL || (strcmp(trigger, "on_demand") != 0 && strcmp(trigger, "scheduled") != 0)) {
		cf_error_set("audit trigger '%s' must be on_demand or scheduled", trigger ? trigger : "");
		goto out;
	}
	if ((r = json_column(&a.checks, "audit checks", checks_json ? checks_json : "[]", 2, 1)) != 0)
		goto out;
	memcpy(a.trigger, trigger, strlen(trigger) + 1);
	a.started_at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->audit_insert(st->b, &id, &a)) == 0) {
		snprintf(subject, sizeof(subject), "audit:%lld", (long long)id);
		r = event_add(st, "audit.started", subject,
		    json_pack("{s:I,s:s,s:o}", "id", (json_int_t)id, "trigger", trigger, "checks",
		    json_loads(a.checks, 0, NULL)));
	}
	if ((r = tx_end(st, r)) == 0)
		*out = id;
out:
	cf_audit_rec_clear(&a);
	return r;
}

int
cf_store_audit_finish(cf_store *st, int64_t id, const cf_finding_rec *findings, size_t n,
    const char *counts_json)
{
	int r = CF_EINVAL;
	cf_audit_rec a;
	cf_finding_rec f;
	size_t i, suppressed = 0;
	char subject[32];

	memset(&a, 0, sizeof(a));
	if (id <= 0) {
		r = CF_ENOTFOUND;
		cf_error_set("no audit %lld", (long long)id);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (!finding_valid(&findings[i]))
			goto out;
		suppressed += findings[i].suppressed != 0;
	}
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->audit_get(st->b, &a, id)) != 0)
		goto end;
	if (a.finished_at != 0) {
		r = CF_ESTATE;
		cf_error_set("audit %lld is already finished", (long long)id);
		goto end;
	}
	free(a.counts);
	a.counts = NULL;
	if ((r = json_column(&a.counts, "audit counts", counts_json ? counts_json : "{}", 1, 0)) != 0)
		goto end;
	for (i = 0; i < n && r == 0; i++) {
		f = findings[i];
		f.audit_id = id;
		r = st->ops->finding_insert(st->b, NULL, &f);
	}
	if (r != 0)
		goto end;
	a.finished_at = cf_time_now();
	if ((r = st->ops->audit_update(st->b, &a)) != 0)
		goto end;
	snprintf(subject, sizeof(subject), "audit:%lld", (long long)id);
	r = event_add(st, "audit.finished", subject, json_pack("{s:I,s:I,s:I}", "id", (json_int_t)id,
	    "findings", (json_int_t)n, "suppressed", (json_int_t)suppressed));
end:
	r = tx_end(st, r);
out:
	cf_audit_rec_clear(&a);
	return r;
}

int
cf_store_audit_get(cf_store *st, cf_audit_rec *out, int64_t id)
{
	if (id < 0) {
		cf_error_set("no audit %lld", (long long)id);
		return CF_ENOTFOUND;
	}
	return st->ops->audit_get(st->b, out, id);
}

int
cf_store_audit_list(cf_store *st, cf_audit_rec **out, size_t *out_n, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->audit_list(st->b, out, out_n, limit);
}

int
cf_store_finding_get(cf_store *st, cf_finding_rec *out, int64_t id)
{
	return st->ops->finding_get(st->b, out, id);
}

int
cf_store_finding_list(cf_store *st, cf_finding_rec **out, size_t *out_n, const cf_finding_filter *f)
{
	cf_finding_filter any = { .severity = -1 };

	*out = NULL;
	*out_n = 0;
	if (f == NULL)
		f = &any;
	if (f->severity >= CF_SEV__COUNT || f->severity < -1) {
		cf_error_set("unknown severity %d in filter", f->severity);
		return CF_EINVAL;
	}
	if (f->check != NULL && !check_name_valid(f->check))
		return CF_EINVAL;
	return st->ops->finding_list(st->b, out, out_n, f);
}

int
cf_store_suppression_set(cf_store *st, const cf_suppression_rec *s)
{
	int r = CF_EINVAL, replaced = 0;
	cf_suppression_rec x;

	if (!check_name_valid(s->check) ||
	    !text_valid("suppressed resource", s->resource_id, CF_AUDIT_RESOURCE_MAX) ||
	    (s->comment[0] != '\0' && !text_valid("suppression comment", s->comment,
	    CF_AUDIT_COMMENT_MAX)))
		return CF_EINVAL;
	x = *s;
	if (x.created_at == 0)
		x.created_at = cf_time_now();
	if (x.until < 0 || (x.until > 0 && x.until <= x.created_at)) {
		cf_error_set("suppression until must be in the future (or forever)");
		return CF_EINVAL;
	}
	if ((r = cf_store_begin(st)) != 0)
		return r;
	if ((r = st->ops->supp_upsert(st->b, &x, &replaced)) == 0)
		r = event_add(st, "suppression.created", x.resource_id,
		    json_pack("{s:s,s:I,s:s,s:b}", "check", x.check, "until", (json_int_t)x.until,
		    "comment", x.comment, "replaced", replaced));
	return tx_end(st, r);
}

int
cf_store_suppression_remove(cf_store *st, const char *check, const char *resource_id)
{
	int r;

	if (!check_name_valid(check) ||
	    !text_valid("suppressed resource", resource_id, CF_AUDIT_RESOURCE_MAX))
		return CF_EINVAL;
	if ((r = cf_store_begin(st)) != 0)
		return r;
	if ((r = st->ops->supp_delete(st->b, check, resource_id)) == 0)
		r = event_add(st, "suppression.removed", resource_id, json_pack("{s:s}", "check", check));
	return tx_end(st, r);
}

int
cf_store_suppression_list(cf_store *st, cf_suppression_rec **out, size_t *out_n)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->supp_list(st->b, out, out_n);
}

int
cf_store_mitigation_record(cf_store *st, int64_t *id, const cf_mitigation_rec *m)
{
	int r;
	int64_t nid = 0;
	cf_mitigation_rec x = *m;
	cf_finding_rec f;
	char subject[32];

	if (strcmp(x.status, "succeeded") != 0 && strcmp(x.status, "noop") != 0 &&
	    strcmp(x.status, "failed") != 0) {
		cf_error_set("mitigation status '%s' must be succeeded, noop or failed", x.status);
		return CF_EINVAL;
	}
	if (x.action[0] == '\0' || memchr(x.action, '\0', sizeof(x.action)) == NULL ||
	    (x.detail[0] != '\0' && !text_valid("mitigation detail", x.detail, CF_AUDIT_DETAIL_MAX))) {
		cf_error_set("mitigation action or detail: %s", cf_error_last());
		return CF_EINVAL;
	}
	if (x.created_at == 0)
		x.created_at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		return r;
	if ((r = st->ops->finding_get(st->b, &f, x.finding_id)) != 0 ||
	    (r = st->ops->mitig_insert(st->b, &nid, &x)) != 0)
		goto end;
	snprintf(subject, sizeof(subject), "finding:%lld", (long long)x.finding_id);
	r = event_add(st, "mitigation.action", subject, json_pack("{s:I,s:s,s:s,s:s,s:s}", "id",
	    (json_int_t)nid, "action", x.action, "status", x.status, "check", f.check,
	    "resource", f.resource_id));
end:
	r = tx_end(st, r);
	if (r == 0 && id != NULL)
		*id = nid;
	return r;
}

int
cf_store_mitigation_list(cf_store *st, cf_mitigation_rec **out, size_t *out_n, int64_t finding_id)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->mitig_list(st->b, out, out_n, finding_id);
}

int
cf_store_cert_foreach(cf_store *st, cf_store_cert_cb cb, void *arg)
{
	return st->ops->cert_foreach(st->b, cb, arg);
}

int
cf_store_cert_keyq_update(cf_store *st, const cf_cert_keyq *v, size_t n)
{
	size_t i;
	int r;

	if (n == 0)
		return 0;
	if ((r = cf_store_begin(st)) != 0)
		return r;
	for (i = 0; i < n && r == 0; i++) {
		if (!id_valid("certificate", v[i].id)) {
			r = CF_EINVAL;
			break;
		}
		r = st->ops->cert_keyq_update(st->b, &v[i]);
	}
	return tx_end(st, r);
}

int
cf_store_connection_window(cf_store *st, cf_conn_rec **out, size_t *out_n, int64_t since)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->conn_window(st->b, out, out_n, since);
}

int
cf_store_thing_list_without_active(cf_store *st, char ***out, size_t *out_n)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->thing_without_active(st->b, out, out_n);
}

/* ---- provisioning by claim (schema v6) --------------------------------------------- */

#define PROV_SPEC_MAX (4 << 20) /* a template's spec, allow-list included */

static const char *const claim_status_names[CF_CLAIM__STATUS_COUNT] = {
	[CF_CLAIM_ENABLED] = "ENABLED",
	[CF_CLAIM_DISABLED] = "DISABLED",
};

const char *
cf_claim_status_name(cf_claim_status s)
{
	if ((unsigned)s >= CF_CLAIM__STATUS_COUNT)
		return "UNKNOWN";
	return claim_status_names[s];
}

void
cf_prov_template_rec_clear(cf_prov_template_rec *r)
{
	if (r == NULL)
		return;
	free(r->spec);
	memset(r, 0, sizeof(*r));
}

void
cf_prov_template_recs_free(cf_prov_template_rec *r, size_t n)
{
	size_t i;

	for (i = 0; r != NULL && i < n; i++)
		cf_prov_template_rec_clear(&r[i]);
	free(r);
}

void
cf_claim_recs_free(cf_claim_rec *r, size_t n)
{
	(void)n;
	free(r);
}

static int
full_id_valid(const char *what, const char *id)
{
	size_t i;

	if (id == NULL || strlen(id) != CF_ID_LEN)
		goto bad;
	for (i = 0; i < CF_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			goto bad;
	return 1;
bad:
	cf_error_set("%s is not a %d-character certificate id", what, CF_ID_LEN);
	return 0;
}

int
cf_store_prov_template_create(cf_store *st, const char *name, const char *spec_json)
{
	cf_prov_template_rec t;
	json_t *j = NULL;
	json_error_t jerr;
	int r = CF_EINVAL;

	memset(&t, 0, sizeof(t));
	if (!cf_name_valid("template", name))
		goto out;
	if (spec_json == NULL || strlen(spec_json) > PROV_SPEC_MAX ||
	    (j = json_loads(spec_json, JSON_REJECT_DUPLICATES, &jerr)) == NULL || !json_is_object(j)) {
		cf_error_set("template %s: the spec is not a JSON object of at most %d bytes", name,
		    PROV_SPEC_MAX);
		goto out;
	}
	if ((r = json_text(&t.spec, j)) != 0)
		goto out;
	memcpy(t.name, name, strlen(name) + 1);
	t.created_at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->ptemplate_insert(st->b, &t)) == CF_EEXISTS)
		cf_error_set("provisioning template '%s' already exists", name);
	/* The event holds the spec without the allow-list (it can be large): its size instead. */
	if (r == 0) {
		json_t *d = json_deep_copy(j), *allow = json_object_get(j, "allowList");

		if (d != NULL && allow != NULL) {
			json_object_del(d, "allowList");
			json_object_set_new(d, "allowListSize", json_integer((json_int_t)json_array_size(allow)));
		}
		r = event_add(st, "prov.template_created", name, d);
	}
	r = tx_end(st, r);
out:
	json_decref(j);
	cf_prov_template_rec_clear(&t);
	return r;
}

int
cf_store_prov_template_get(cf_store *st, cf_prov_template_rec *out, const char *name)
{
	memset(out, 0, sizeof(*out));
	if (!cf_name_valid("template", name))
		return CF_EINVAL;
	return st->ops->ptemplate_get(st->b, out, name);
}

int
cf_store_prov_template_list(cf_store *st, cf_prov_template_rec **out, size_t *out_n)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->ptemplate_list(st->b, out, out_n);
}

int
cf_store_claim_create(cf_store *st, const char *cert_id, const char *template_name)
{
	cf_prov_template_rec t;
	cf_cert_rec c;
	cf_claim_rec cl;
	int r = CF_EINVAL;

	memset(&t, 0, sizeof(t));
	memset(&c, 0, sizeof(c));
	memset(&cl, 0, sizeof(cl));
	if (!full_id_valid("claim certificate", cert_id) || !cf_name_valid("template", template_name))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->ptemplate_get(st->b, &t, template_name)) != 0 ||
	    (r = st->ops->cert_get(st->b, &c, cert_id)) != 0)
		goto end;
	if (c.thing[0] != '\0') {
		r = CF_EINVAL;
		cf_error_set("certificate %s belongs to thing %s: a claim belongs to no thing", cert_id,
		    c.thing);
		goto end;
	}
	memcpy(cl.cert_id, cert_id, CF_ID_LEN + 1);
	memcpy(cl.template_name, template_name, strlen(template_name) + 1);
	cl.status = CF_CLAIM_ENABLED;
	cl.created_at = cl.updated_at = cf_time_now();
	if ((r = st->ops->claim_insert(st->b, &cl)) == CF_EEXISTS)
		cf_error_set("certificate %s is already a claim", cert_id);
	if (r == 0)
		r = event_add(st, "claim.created", cert_id, json_pack("{s:s}", "template", template_name));
end:
	r = tx_end(st, r);
out:
	cf_cert_rec_clear(&c);
	cf_prov_template_rec_clear(&t);
	return r;
}

int
cf_store_claim_get(cf_store *st, cf_claim_rec *out, const char *cert_id)
{
	memset(out, 0, sizeof(*out));
	if (!full_id_valid("claim certificate", cert_id))
		return CF_EINVAL;
	return st->ops->claim_get(st->b, out, cert_id);
}

int
cf_store_claim_list(cf_store *st, cf_claim_rec **out, size_t *out_n, const char *template_name)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->claim_list(st->b, out, out_n, template_name);
}

int
cf_store_claim_set_status(cf_store *st, int *changed, const char *cert_id, cf_claim_status to,
    const char *reason)
{
	cf_claim_rec c;
	cf_claim_status from;
	int r = CF_EINVAL;

	if (changed != NULL)
		*changed = 0;
	if ((unsigned)to >= CF_CLAIM__STATUS_COUNT || reason == NULL || reason[0] == '\0' ||
	    !text_valid("reason", reason, sizeof(c.reason) - 1)) {
		if (reason == NULL || reason[0] == '\0')
			cf_error_set("a claim status change needs a reason");
		goto out;
	}
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = cf_store_claim_get(st, &c, cert_id)) != 0 || c.status == to)
		goto end;
	from = c.status;
	c.status = to;
	snprintf(c.reason, sizeof(c.reason), "%s", reason);
	c.updated_at = cf_time_now();
	if ((r = st->ops->claim_update(st->b, &c)) == 0)
		r = event_add(st, "claim.status", cert_id, json_pack("{s:s,s:s,s:s,s:s}", "from",
		    cf_claim_status_name(from), "to", cf_claim_status_name(to), "reason", reason,
		    "template", c.template_name));
	if (r == 0 && changed != NULL)
		*changed = 1;
end:
	r = tx_end(st, r);
out:
	return r;
}

static int
serial_valid(const char *serial)
{
	size_t i, n = serial ? strlen(serial) : 0;

	if (n == 0 || n > CF_PROV_SERIAL_MAX)
		goto bad;
	for (i = 0; i < n; i++) {
		char ch = serial[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '.' || ch == '_' || ch == ':' || ch == '-'))
			goto bad;
	}
	return 1;
bad:
	cf_error_set("serial is not [A-Za-z0-9._:-]{1,%d}", CF_PROV_SERIAL_MAX);
	return 0;
}

int
cf_store_prov_serial_put(cf_store *st, const cf_prov_serial_rec *rec)
{
	cf_prov_template_rec t;
	cf_prov_serial_rec x = *rec;
	int r = CF_EINVAL;

	memset(&t, 0, sizeof(t));
	if (!cf_name_valid("template", rec->template_name) || !serial_valid(rec->serial) ||
	    !cf_name_valid("thing", rec->thing) || !full_id_valid("certificate", rec->cert_id) ||
	    !full_id_valid("claim", rec->claim_id) || !full_id_valid("key id", rec->key_id) ||
	    !text_valid("client id", rec->client_id, sizeof(rec->client_id) - 1))
		goto out;
	if (x.at == 0)
		x.at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->ptemplate_get(st->b, &t, rec->template_name)) == 0 &&
	    (r = st->ops->pserial_put(st->b, &x)) == 0)
		r = event_add(st, "prov.provisioned", rec->thing, json_pack("{s:s,s:s,s:s,s:s,s:s}",
		    "template", rec->template_name, "serial", rec->serial, "certificate", rec->cert_id,
		    "claim", rec->claim_id, "clientId", rec->client_id));
	r = tx_end(st, r);
out:
	cf_prov_template_rec_clear(&t);
	return r;
}

int
cf_store_prov_serial_get(cf_store *st, cf_prov_serial_rec *out, const char *template_name,
    const char *serial)
{
	memset(out, 0, sizeof(*out));
	if (!cf_name_valid("template", template_name) || !serial_valid(serial))
		return CF_EINVAL;
	return st->ops->pserial_get(st->b, out, template_name, serial, NULL);
}

int
cf_store_prov_serial_find_key(cf_store *st, cf_prov_serial_rec *out, const char *key_id)
{
	memset(out, 0, sizeof(*out));
	if (!full_id_valid("key id", key_id))
		return CF_EINVAL;
	return st->ops->pserial_get(st->b, out, NULL, NULL, key_id);
}

int
cf_store_prov_serial_delete(cf_store *st, const char *template_name, const char *serial,
    const char *reason)
{
	int r = CF_EINVAL;

	if (!cf_name_valid("template", template_name) || !serial_valid(serial) || reason == NULL ||
	    !text_valid("reason", reason, 255))
		goto out;
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->pserial_delete(st->b, template_name, serial)) == 0)
		r = event_add(st, "prov.serial_released", template_name, json_pack("{s:s,s:s}",
		    "serial", serial, "reason", reason));
	r = tx_end(st, r);
out:
	return r;
}

int
cf_store_prov_serial_list(cf_store *st, cf_prov_serial_rec **out, size_t *out_n,
    const char *template_name, size_t limit)
{
	*out = NULL;
	*out_n = 0;
	return st->ops->pserial_list(st->b, out, out_n, template_name, limit);
}

int
cf_store_prov_serial_count(cf_store *st, int64_t *out, const char *template_name)
{
	*out = 0;
	if (!cf_name_valid("template", template_name))
		return CF_EINVAL;
	return st->ops->pserial_count(st->b, out, template_name);
}

int
cf_store_prov_attempt_add(cf_store *st, const cf_prov_attempt_rec *a)
{
	cf_prov_attempt_rec x = *a;
	int r = CF_EINVAL;

	if (!full_id_valid("claim", a->claim_id) ||
	    !text_valid("template", a->template_name, sizeof(a->template_name) - 1) ||
	    !text_valid("serial", a->serial, sizeof(a->serial) - 1) ||
	    !text_valid("client id", a->client_id, sizeof(a->client_id) - 1) || a->outcome[0] == '\0' ||
	    !text_valid("outcome", a->outcome, sizeof(a->outcome) - 1))
		goto out;
	if (x.at == 0)
		x.at = cf_time_now();
	if ((r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = st->ops->pattempt_insert(st->b, &x)) == 0)
		r = event_add(st, "prov.attempt", a->claim_id, json_pack("{s:s,s:s,s:s,s:s}", "template",
		    a->template_name, "serial", a->serial, "clientId", a->client_id, "outcome",
		    a->outcome));
	r = tx_end(st, r);
out:
	return r;
}

int
cf_store_prov_attempt_count(cf_store *st, int64_t *total, int64_t *denied, const char *claim_id,
    int64_t since)
{
	*total = *denied = 0;
	if (!full_id_valid("claim", claim_id))
		return CF_EINVAL;
	return st->ops->pattempt_count(st->b, total, denied, claim_id, since);
}
