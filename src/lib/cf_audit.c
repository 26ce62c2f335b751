/*
 * cf_audit — the audit checks (one table), one run over the registry, and
 * the report export. Owns a run's state (cf_audit_ctx): the CAs, the
 * connections look-back window, the CAs' key-quality cache, the device
 * certificates' key facts recomputed under a changed policy, and the
 * findings collected before they are written with the audit's finish.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cf_audit.h"
#include "cf_util.h"

#define DAY 86400
#define KEYQ_CACHE_SLOTS (1u << 8) /* power of two; CA PEMs only (device certificates: stored facts) */
#define KEYQ_CACHE_MAX (KEYQ_CACHE_SLOTS / 2)

struct keyq_slot {
	uint64_t hash;
	char *pem;       /* NULL: free slot */
	unsigned flags;
	char detail[512];
};

struct ca_info {
	const cf_ca_rec *ca;
	int chain_revoked;    /* it or a CA above it is REVOKED */
	int ancestor_revoked; /* a CA above it is REVOKED */
	char revoked_name[CF_NAME_MAX + 1];
};

struct cf_audit_ctx {
	cf_store *st;
	const cf_audit_opts *o;
	const cf_keyq_policy *keyq;
	int64_t now;
	cf_ca_rec *cas;
	struct ca_info *info;
	size_t n_cas;
	const struct ca_info *last_ca; /* most certificates share a CA */
	cf_conn_rec *conns;            /* the look-back window, by connected_at */
	size_t n_conns;
	char (*open_principals)[CF_ID_LEN + 1]; /* sorted */
	size_t n_open;
	struct keyq_slot *cache;       /* CA PEMs (few) */
	size_t cache_n;
	char keyq_fp[CF_KEYQ_POLICY_FP_LEN + 1]; /* the policy's: stored facts under it are current */
	cf_cert_keyq *stale;           /* facts recomputed in the pass, written after it */
	size_t n_stale, cap_stale;
	cf_finding_rec *findings;
	size_t n_findings, cap_findings;
	cf_audit_result *res;
	int failed;                    /* an allocation failed while adding a finding */
};

/* ---- findings ------------------------------------------------------------ */

/* Copies s into out (out_len) with control characters as '?': resource ids may be client-chosen. */
static void
safe_copy(char *out, size_t out_len, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < out_len; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	out[i] = '\0';
}

static void add(cf_audit_ctx *x, cf_audit_check check, cf_severity sev, const char *resource,
    const char *reason, const char *fmt, ...) CF_PRINTF(6, 7);

static void
add(cf_audit_ctx *x, cf_audit_check check, cf_severity sev, const char *resource,
    const char *reason, const char *fmt, ...)
{
	cf_finding_rec *f, *nv;
	size_t ncap;
	va_list ap;
	char detail[CF_AUDIT_DETAIL_MAX + 1];

	if (x->n_findings == x->cap_findings) {
		ncap = x->cap_findings ? x->cap_findings * 2 : 64;
		if ((nv = realloc(x->findings, ncap * sizeof(*nv))) == NULL) {
			x->failed = 1;
			return;
		}
		x->findings = nv;
		x->cap_findings = ncap;
	}
	f = &x->findings[x->n_findings++];
	memset(f, 0, sizeof(*f));
	snprintf(f->check, sizeof(f->check), "%s", cf_audit_checks[check].name);
	f->severity = sev;
	snprintf(f->resource_type, sizeof(f->resource_type), "%s", cf_audit_checks[check].resource_type);
	safe_copy(f->resource_id, sizeof(f->resource_id), resource);
	snprintf(f->reason_code, sizeof(f->reason_code), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	safe_copy(f->detail, sizeof(f->detail), detail);
}

static const char *
day_text(char buf[32], int64_t t)
{
	cf_time_format(buf, 32, t);
	return buf;
}

static int64_t
param(const cf_audit_ctx *x, cf_audit_check c)
{
	return x->o->param[c] > 0 ? x->o->param[c] : cf_audit_checks[c].param_default;
}

/* ---- CAs ------------------------------------------------------------------ */

static const struct ca_info *
ca_find(cf_audit_ctx *x, const char *id)
{
	size_t i;

	if (x->last_ca != NULL && strcmp(x->last_ca->ca->id, id) == 0)
		return x->last_ca;
	for (i = 0; i < x->n_cas; i++) {
		if (strcmp(x->cas[i].id, id) == 0) {
			x->last_ca = &x->info[i];
			return x->last_ca;
		}
	}
	return NULL;
}

/* Walks up from each CA (at most n_cas steps: a loop in damaged data ends). */
static void
ca_chains(cf_audit_ctx *x)
{
	size_t i, j, steps;
	const cf_ca_rec *p;

	for (i = 0; i < x->n_cas; i++) {
		x->info[i].ca = &x->cas[i];
		if (x->cas[i].status == CF_CERT_REVOKED) {
			x->info[i].chain_revoked = 1;
			snprintf(x->info[i].revoked_name, sizeof(x->info[i].revoked_name), "%s",
			    x->cas[i].name);
		}
		p = &x->cas[i];
		for (steps = 0; p->parent_id[0] != '\0' && steps < x->n_cas; steps++) {
			for (j = 0; j < x->n_cas && strcmp(x->cas[j].id, p->parent_id) != 0; j++)
				;
			if (j == x->n_cas)
				break;
			p = &x->cas[j];
			if (p->status == CF_CERT_REVOKED) {
				x->info[i].ancestor_revoked = 1;
				if (!x->info[i].chain_revoked)
					snprintf(x->info[i].revoked_name, sizeof(x->info[i].revoked_name),
					    "%s", p->name);
				x->info[i].chain_revoked = 1;
			}
		}
	}
}

/* ---- key quality: CAs once per distinct PEM, device certificates from stored facts ---- */

/* A fast 64-bit hash of a PEM (word at a time; PEMs of one fleet differ early and late). */
static uint64_t
pem_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull ^ len, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, s + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
	return h ^ (h >> 32);
}

static int
keyq_cached(cf_audit_ctx *x, unsigned *flags, const char **detail, const char *pem)
{
	static char uncached[512];
	size_t len = strlen(pem), i;
	uint64_t h = pem_hash(pem, len);
	struct keyq_slot *sl = NULL;
	cf_cert *cert = NULL;
	cf_keyq_result res;
	int r;

	if (x->cache == NULL && (x->cache = calloc(KEYQ_CACHE_SLOTS, sizeof(*x->cache))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	for (i = h & (KEYQ_CACHE_SLOTS - 1);; i = (i + 1) & (KEYQ_CACHE_SLOTS - 1)) {
		sl = &x->cache[i];
		if (sl->pem == NULL)
			break;
		if (sl->hash == h && strcmp(sl->pem, pem) == 0) {
			*flags = sl->flags;
			*detail = sl->detail;
			return 0;
		}
	}
	x->res->pem_parses++;
	if ((r = cf_cert_parse(&cert, pem, len)) != 0)
		return r;
	r = cf_keyq_check_cert(&res, x->keyq, cert);
	cf_cert_free(cert);
	if (r != 0)
		return r;
	*flags = res.flags;
	if (x->cache_n < KEYQ_CACHE_MAX && (sl->pem = strdup(pem)) != NULL) {
		x->cache_n++;
		sl->hash = h;
		sl->flags = res.flags;
		snprintf(sl->detail, sizeof(sl->detail), "%s", res.detail);
		*detail = sl->detail;
	} else {
		snprintf(uncached, sizeof(uncached), "%s", res.detail);
		*detail = uncached;
	}
	return 0;
}

static const struct {
	cf_keyq_flag flag;
	const char *reason;
	cf_severity severity;
} keyq_reasons[] = {
	{ CF_KEYQ_RSA_KEY_TOO_SHORT, "KEY_TOO_SMALL", CF_SEV_HIGH },
	{ CF_KEYQ_CURVE_NOT_ALLOWED, "CURVE_NOT_ALLOWED", CF_SEV_HIGH },
	{ CF_KEYQ_KEY_TYPE_NOT_ALLOWED, "KEY_TYPE_NOT_ALLOWED", CF_SEV_HIGH },
	{ CF_KEYQ_WEAK_SIGNATURE, "WEAK_SIGNATURE_ALGORITHM", CF_SEV_MEDIUM },
	{ CF_KEYQ_ROCA_VULNERABLE, "ROCA_VULNERABLE_KEY", CF_SEV_CRITICAL },
	{ CF_KEYQ_BLOCKLISTED, "BLOCKLISTED_KEY", CF_SEV_CRITICAL },
};

/* One finding per problem in flags. */
static void
key_findings(cf_audit_ctx *x, cf_audit_check check, const char *resource, unsigned flags,
    const char *detail)
{
	size_t i;

	for (i = 0; i < sizeof(keyq_reasons) / sizeof(keyq_reasons[0]); i++)
		if (flags & keyq_reasons[i].flag)
			add(x, check, keyq_reasons[i].severity, resource, keyq_reasons[i].reason, "%s (%s)",
			    cf_keyq_flag_code(keyq_reasons[i].flag), detail);
}

/* One finding per problem found in pem (CAs: few, cached per PEM). */
static int
key_quality(cf_audit_ctx *x, cf_audit_check check, const char *resource, const char *pem)
{
	unsigned flags = 0;
	const char *detail = "";
	int r;

	if ((r = keyq_cached(x, &flags, &detail, pem)) != 0) {
		cf_error_prefix("%s %.16s...", cf_audit_checks[check].resource_type, resource);
		return r;
	}
	key_findings(x, check, resource, flags, detail);
	return 0;
}

/*
 * A device certificate's key quality: the facts stored with it when they
 * were computed under this policy (no parse), else computed now from its
 * PEM and queued to be stored after the pass.
 */
static int
device_key_quality(cf_audit_ctx *x, const cf_cert_rec *c)
{
	cf_cert_keyq *k, *nv;
	size_t ncap;
	int r;

	if (strcmp(c->keyq_policy, x->keyq_fp) == 0) {
		x->res->keyq_stored++;
		key_findings(x, CF_AUDIT_DEVICE_CERTIFICATE_KEY_QUALITY, c->id, c->keyq_flags,
		    c->keyq_detail ? c->keyq_detail : "");
		return 0;
	}
	if (x->n_stale == x->cap_stale) {
		ncap = x->cap_stale ? x->cap_stale * 2 : 256;
		if ((nv = realloc(x->stale, ncap * sizeof(*nv))) == NULL) {
			cf_error_set("out of memory");
			return CF_ERROR;
		}
		x->stale = nv;
		x->cap_stale = ncap;
	}
	k = &x->stale[x->n_stale];
	memset(k, 0, sizeof(*k));
	x->res->pem_parses++;
	if ((r = cf_cert_keyq_compute(k, c->pem, x->keyq, x->keyq_fp)) != 0) {
		cf_error_prefix("DEVICE_CERTIFICATE %.16s...", c->id);
		return r;
	}
	memcpy(k->id, c->id, sizeof(k->id));
	x->n_stale++;
	key_findings(x, CF_AUDIT_DEVICE_CERTIFICATE_KEY_QUALITY, c->id, k->keyq_flags,
	    k->keyq_detail ? k->keyq_detail : "");
	return 0;
}

/* ---- certificate checks (per row of the one pass) ------------------------------ */

static int
on_expiring(cf_audit_ctx *x, const cf_cert_rec *c)
{
	char t[32];
	int64_t days = param(x, CF_AUDIT_DEVICE_CERTIFICATE_EXPIRING);

	if (c->status != CF_CERT_ACTIVE)
		return 0;
	if (c->not_after <= x->now)
		add(x, CF_AUDIT_DEVICE_CERTIFICATE_EXPIRING, CF_SEV_CRITICAL, c->id,
		    "CERTIFICATE_EXPIRED_BUT_ACTIVE", "expired %s and still ACTIVE (thing '%s')",
		    day_text(t, c->not_after), c->thing);
	else if (c->not_after - x->now <= days * DAY)
		add(x, CF_AUDIT_DEVICE_CERTIFICATE_EXPIRING, cf_audit_checks[0].severity, c->id,
		    "CERTIFICATE_EXPIRING", "expires %s, within %lld days (thing '%s')",
		    day_text(t, c->not_after), (long long)days, c->thing);
	return 0;
}

static int
on_age(cf_audit_ctx *x, const cf_cert_rec *c)
{
	int64_t days = param(x, CF_AUDIT_DEVICE_CERTIFICATE_AGE);
	char t[32];

	if (c->status == CF_CERT_ACTIVE && x->now - c->not_before > days * DAY)
		add(x, CF_AUDIT_DEVICE_CERTIFICATE_AGE, cf_audit_checks[CF_AUDIT_DEVICE_CERTIFICATE_AGE].severity,
		    c->id, "CERTIFICATE_PAST_MAX_AGE", "valid since %s, older than %lld days (thing '%s')",
		    day_text(t, c->not_before), (long long)days, c->thing);
	return 0;
}

static int
on_issuer_revoked(cf_audit_ctx *x, const cf_cert_rec *c)
{
	const struct ca_info *ci;

	if (c->status != CF_CERT_ACTIVE || (ci = ca_find(x, c->ca_id)) == NULL || !ci->chain_revoked)
		return 0;
	add(x, CF_AUDIT_INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES, CF_SEV_CRITICAL, c->id,
	    "ISSUER_CA_REVOKED", "ACTIVE certificate of thing '%s' chains to revoked CA '%s'", c->thing,
	    ci->revoked_name);
	return 0;
}

static int
on_device_key(cf_audit_ctx *x, const cf_cert_rec *c)
{
	if (c->status != CF_CERT_ACTIVE && c->status != CF_CERT_PENDING_ACTIVATION)
		return 0;
	return device_key_quality(x, c);
}

static int
principal_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int
on_revoked_connected(cf_audit_ctx *x, const cf_cert_rec *c)
{
	if (x->n_open == 0 || (c->status != CF_CERT_REVOKED && c->status != CF_CERT_INACTIVE))
		return 0;
	if (bsearch(c->id, x->open_principals, x->n_open, sizeof(x->open_principals[0]),
	    principal_cmp) == NULL)
		return 0;
	if (c->status == CF_CERT_REVOKED)
		add(x, CF_AUDIT_REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE, CF_SEV_CRITICAL, c->id,
		    "REVOKED_CERTIFICATE_CONNECTED", "REVOKED certificate of thing '%s' has an open "
		    "connection", c->thing);
	else
		add(x, CF_AUDIT_REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE, CF_SEV_HIGH, c->id,
		    "INACTIVE_CERTIFICATE_CONNECTED", "INACTIVE certificate of thing '%s' has an open "
		    "connection", c->thing);
	return 0;
}

static int
on_unattached(cf_audit_ctx *x, const cf_cert_rec *c)
{
	if (c->thing[0] == '\0' && (c->status == CF_CERT_ACTIVE ||
	    c->status == CF_CERT_PENDING_ACTIVATION))
		add(x, CF_AUDIT_UNATTACHED_CERTIFICATE,
		    cf_audit_checks[CF_AUDIT_UNATTACHED_CERTIFICATE].severity, c->id,
		    "CERTIFICATE_NOT_ATTACHED", "%s certificate attached to no thing",
		    cf_cert_status_name(c->status));
	return 0;
}

/* ---- checks run once ---------------------------------------------------------- */

static int
run_ca_expiring(cf_audit_ctx *x)
{
	int64_t days = param(x, CF_AUDIT_CA_CERTIFICATE_EXPIRING);
	size_t i;
	char t[32];

	for (i = 0; i < x->n_cas; i++) {
		const cf_ca_rec *ca = &x->cas[i];

		if (ca->status != CF_CERT_ACTIVE)
			continue;
		if (ca->not_after <= x->now)
			add(x, CF_AUDIT_CA_CERTIFICATE_EXPIRING, CF_SEV_CRITICAL, ca->id,
			    "CA_CERTIFICATE_EXPIRED", "CA '%s' expired %s and is still ACTIVE", ca->name,
			    day_text(t, ca->not_after));
		else if (ca->not_after - x->now <= days * DAY)
			add(x, CF_AUDIT_CA_CERTIFICATE_EXPIRING,
			    cf_audit_checks[CF_AUDIT_CA_CERTIFICATE_EXPIRING].severity, ca->id,
			    "CA_CERTIFICATE_EXPIRING", "CA '%s' expires %s, within %lld days", ca->name,
			    day_text(t, ca->not_after), (long long)days);
	}
	return 0;
}

static int
run_revoked_ca_active(cf_audit_ctx *x)
{
	size_t i;

	for (i = 0; i < x->n_cas; i++) {
		const cf_ca_rec *ca = &x->cas[i];

		if (ca->status == CF_CERT_ACTIVE && x->info[i].ancestor_revoked)
			add(x, CF_AUDIT_REVOKED_CA_CERTIFICATE_STILL_ACTIVE, CF_SEV_CRITICAL, ca->id,
			    "CA_ANCESTOR_REVOKED", "CA '%s' is ACTIVE under revoked CA '%s'", ca->name,
			    x->info[i].revoked_name);
		else if (ca->status == CF_CERT_ACTIVE && ca->revoked_at != 0)
			add(x, CF_AUDIT_REVOKED_CA_CERTIFICATE_STILL_ACTIVE, CF_SEV_CRITICAL, ca->id,
			    "CA_REVOKED_BUT_ACTIVE", "CA '%s' has a revocation time but is ACTIVE",
			    ca->name);
		else if (ca->status == CF_CERT_REVOKED && ca->is_issuer)
			add(x, CF_AUDIT_REVOKED_CA_CERTIFICATE_STILL_ACTIVE, CF_SEV_CRITICAL, ca->id,
			    "REVOKED_CA_STILL_ISSUER", "revoked CA '%s' is still the issuer", ca->name);
	}
	return 0;
}

static int
run_ca_key(cf_audit_ctx *x)
{
	size_t i;
	int r;

	for (i = 0; i < x->n_cas; i++) {
		if (x->cas[i].status == CF_CERT_REVOKED)
			continue;
		if ((r = key_quality(x, CF_AUDIT_CA_CERTIFICATE_KEY_QUALITY, x->cas[i].id,
		    x->cas[i].pem)) != 0)
			return r;
	}
	return 0;
}

static int
run_things(cf_audit_ctx *x)
{
	char **names = NULL;
	size_t n = 0, i;
	int r;

	if ((r = cf_store_thing_list_without_active(x->st, &names, &n)) != 0)
		return r;
	for (i = 0; i < n; i++)
		add(x, CF_AUDIT_THING_WITHOUT_ACTIVE_CERTIFICATE,
		    cf_audit_checks[CF_AUDIT_THING_WITHOUT_ACTIVE_CERTIFICATE].severity, names[i],
		    "THING_WITHOUT_ACTIVE_CERTIFICATE", "thing '%s' holds no ACTIVE certificate", names[i]);
	cf_strv_free(names, n);
	return 0;
}

/* The end of a connection for overlap tests: open ones last forever. */
static int64_t
conn_end(const cf_conn_rec *c)
{
	return c->disconnected_at ? c->disconnected_at : INT64_MAX;
}

/* "1.2.3.4:5678" and "1.2.3.4:999" are the same host. */
static int
same_host(const char *a, const char *b)
{
	const char *ca = strrchr(a, ':'), *cb = strrchr(b, ':');
	size_t la = ca ? (size_t)(ca - a) : strlen(a), lb = cb ? (size_t)(cb - b) : strlen(b);

	return la == lb && memcmp(a, b, la) == 0;
}

/*
 * b started while a was connected, or took it over: a ended the very
 * second b started, from another host (a reconnect comes from the same one).
 */
static int
overlaps(const cf_conn_rec *a, const cf_conn_rec *b)
{
	return b->connected_at < conn_end(a) ||
	    (b->connected_at == a->disconnected_at && !same_host(a->peer, b->peer));
}

static const cf_conn_rec *sort_base;

static int
by_principal(const void *pa, const void *pb)
{
	const cf_conn_rec *a = &sort_base[*(const size_t *)pa], *b = &sort_base[*(const size_t *)pb];
	int c = strcmp(a->principal, b->principal);

	return c ? c : (a->connected_at > b->connected_at) - (a->connected_at < b->connected_at);
}

static int
by_client(const void *pa, const void *pb)
{
	const cf_conn_rec *a = &sort_base[*(const size_t *)pa], *b = &sort_base[*(const size_t *)pb];
	int c = strcmp(a->client_id, b->client_id);

	return c ? c : (a->connected_at > b->connected_at) - (a->connected_at < b->connected_at);
}

/* Indices of the device connections in the window, sorted by cmp. */
static int
conn_sorted(cf_audit_ctx *x, size_t **out, size_t *out_n, int (*cmp)(const void *, const void *))
{
	size_t *idx, i, n = 0;

	*out = NULL;
	*out_n = 0;
	if (x->n_conns == 0)
		return 0;
	if ((idx = malloc(x->n_conns * sizeof(*idx))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	for (i = 0; i < x->n_conns; i++)
		if (strcmp(x->conns[i].kind, "device") == 0)
			idx[n++] = i;
	sort_base = x->conns; /* qsort has no argument: the audit runs on one thread */
	qsort(idx, n, sizeof(*idx), cmp);
	*out = idx;
	*out_n = n;
	return 0;
}

static int
run_shared(cf_audit_ctx *x)
{
	size_t *idx, n, i, j, k, ids;
	int r, concurrent;
	const cf_conn_rec *a, *b;
	int64_t since = x->now - param(x, CF_AUDIT_DEVICE_CERTIFICATE_SHARED);

	if ((r = conn_sorted(x, &idx, &n, by_principal)) != 0)
		return r;
	for (i = 0; i < n; i = j) {
		a = &x->conns[idx[i]];
		ids = 1;
		concurrent = 0;
		for (j = i + 1; j < n && strcmp(x->conns[idx[j]].principal, a->principal) == 0; j++) {
			b = &x->conns[idx[j]];
			for (k = i; k < j && strcmp(x->conns[idx[k]].client_id, b->client_id) != 0; k++)
				;
			ids += k == j;
			if (overlaps(&x->conns[idx[j - 1]], b) && conn_end(b) >= since)
				concurrent++;
		}
		if (ids > 1)
			add(x, CF_AUDIT_DEVICE_CERTIFICATE_SHARED, CF_SEV_HIGH, a->principal,
			    "CERTIFICATE_SHARED_BY_CLIENT_IDS", "used by %zu client ids in the window "
			    "(first '%s')", ids, a->client_id);
		else if (concurrent > 0)
			add(x, CF_AUDIT_DEVICE_CERTIFICATE_SHARED, CF_SEV_HIGH, a->principal,
			    "CERTIFICATE_USED_CONCURRENTLY", "%d overlapping or taken-over connections "
			    "of client '%s' (peers differ)", concurrent, a->client_id);
	}
	free(idx);
	return 0;
}

static int
run_conflicting(cf_audit_ctx *x)
{
	size_t *idx, n, i, j;
	int r, concurrent, takeover;
	const cf_conn_rec *a, *b;

	if ((r = conn_sorted(x, &idx, &n, by_client)) != 0)
		return r;
	for (i = 0; i < n; i = j) {
		a = &x->conns[idx[i]];
		concurrent = takeover = 0;
		for (j = i + 1; j < n && strcmp(x->conns[idx[j]].client_id, a->client_id) == 0; j++) {
			const cf_conn_rec *p = &x->conns[idx[j - 1]];

			b = &x->conns[idx[j]];
			if (strcmp(p->principal, b->principal) == 0)
				continue;
			if (b->connected_at < conn_end(p))
				concurrent++;
			else if (overlaps(p, b))
				takeover++;
		}
		if (concurrent > 0)
			add(x, CF_AUDIT_CONFLICTING_CLIENT_IDS, CF_SEV_HIGH, a->client_id,
			    "CLIENT_ID_CONCURRENT_PRINCIPALS", "client id used by different "
			    "certificates at the same time (%d times)", concurrent);
		else if (takeover > 0)
			add(x, CF_AUDIT_CONFLICTING_CLIENT_IDS, CF_SEV_HIGH, a->client_id,
			    "CLIENT_ID_TAKEOVER", "client id taken over by another certificate from "
			    "another host (%d times)", takeover);
	}
	free(idx);
	return 0;
}

/* A rule's topic lets a client reach other clients' topics. */
static int
wide_topic(const char *topic)
{
	return strcmp(topic, "#") == 0 || strncmp(topic, "+/", 2) == 0 || strcmp(topic, "+") == 0 ||
	    (strchr(topic, '#') != NULL && strchr(topic, '%') == NULL &&
	    strstr(topic, "things/") == NULL) ||
	    strncmp(topic, "$SYS", 4) == 0 || strncmp(topic, "$cf/", 4) == 0;
}

static void
scan_acl(cf_audit_ctx *x, const char *path)
{
	FILE *f;
	char line[1024], res[CF_AUDIT_RESOURCE_MAX + 1], *p, *w[4];
	int no = 0, nw;

	if ((f = fopen(path, "r")) == NULL) {
		add(x, CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE, CF_SEV_MEDIUM, path, "ACL_FILE_UNREADABLE",
		    "acl_file %s cannot be read: its rules were not checked", path);
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		no++;
		for (nw = 0, p = strtok(line, " \t\r\n"); p != NULL && nw < 4; p = strtok(NULL, " \t\r\n"))
			w[nw++] = p;
		if (nw < 2 || w[0][0] == '#' || (strcmp(w[0], "topic") != 0 && strcmp(w[0], "pattern") != 0))
			continue;
		/* "topic [read|write|readwrite|deny] TOPIC" */
		if (nw >= 3 && strcmp(w[1], "deny") == 0)
			continue;
		p = nw >= 3 ? w[2] : w[1];
		if (!wide_topic(p))
			continue;
		snprintf(res, sizeof(res), "%s:%d", path, no);
		add(x, CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE, CF_SEV_HIGH, res, "WILDCARD_TOPIC_RULE",
		    "%s rule '%s %s' reaches other clients' topics", w[0], nw >= 3 ? w[1] : "readwrite",
		    p);
	}
	fclose(f);
}

static int
run_policy(cf_audit_ctx *x)
{
	FILE *f;
	char line[1024], res[CF_AUDIT_RESOURCE_MAX + 1], *k, *v, *e;
	int no = 0, plugin = 0;

	if (x->o->topic_prefix != NULL && x->o->topic_prefix[0] == '\0')
		add(x, CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE, CF_SEV_LOW, "topic_prefix",
		    "TOPIC_PREFIX_EMPTY", "topic_prefix is empty: device topics share the broker's "
		    "root with every other application");
	if (x->o->broker_config == NULL)
		return 0;
	if ((f = fopen(x->o->broker_config, "r")) == NULL) {
		add(x, CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE, CF_SEV_MEDIUM, x->o->broker_config,
		    "BROKER_CONFIG_UNREADABLE", "broker configuration cannot be read: not checked");
		return 0;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		no++;
		k = line + strspn(line, " \t");
		if (*k == '#' || *k == '\n' || *k == '\0')
			continue;
		v = k + strcspn(k, " \t\r\n");
		if (*v != '\0')
			*v++ = '\0';
		v += strspn(v, " \t");
		for (e = v + strlen(v); e > v && isspace((unsigned char)e[-1]); e--)
			e[-1] = '\0';
		snprintf(res, sizeof(res), "%s:%d", x->o->broker_config, no);
		if (strcmp(k, "allow_anonymous") == 0 && strcmp(v, "true") == 0)
			add(x, CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE, CF_SEV_CRITICAL, res,
			    "ANONYMOUS_ACCESS_ALLOWED", "allow_anonymous true: clients without a "
			    "certificate may connect");
		else if (strcmp(k, "acl_file") == 0)
			scan_acl(x, v);
		else if ((strcmp(k, "plugin") == 0 || strcmp(k, "auth_plugin") == 0) &&
		    strstr(v, "certfleet") != NULL)
			plugin = 1;
	}
	fclose(f);
	if (!plugin)
		add(x, CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE, CF_SEV_CRITICAL, x->o->broker_config,
		    "ACL_PLUGIN_NOT_LOADED", "the certfleet plugin is not loaded: its per-thing topic "
		    "rules do not apply");
	return 0;
}

/*
 * Claim certificates (docs/provisioning.md): one that certfleetd disabled
 * for misuse (its reason starts with the errorCode, e.g. "RateExceeded: ...")
 * and is still DISABLED — a leaked claim key to replace — and one that is
 * ENABLED although its certificate is no longer ACTIVE (nothing can use it).
 */
static int
run_claims(cf_audit_ctx *x)
{
	cf_claim_rec *v = NULL;
	cf_cert_rec c;
	size_t n = 0, i;
	int r;

	if ((r = cf_store_claim_list(x->st, &v, &n, NULL)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (v[i].status == CF_CLAIM_DISABLED && strncmp(v[i].reason, "disabled by", 11) != 0) {
			add(x, CF_AUDIT_PROVISIONING_CLAIM_MISUSE, CF_SEV_HIGH, v[i].cert_id,
			    "CLAIM_DISABLED_FOR_MISUSE", "claim of template '%s' was disabled: %s",
			    v[i].template_name, v[i].reason);
			continue;
		}
		memset(&c, 0, sizeof(c));
		if (v[i].status == CF_CLAIM_ENABLED && cf_store_cert_get(x->st, &c, v[i].cert_id) == 0 &&
		    c.status != CF_CERT_ACTIVE)
			add(x, CF_AUDIT_PROVISIONING_CLAIM_MISUSE, CF_SEV_LOW, v[i].cert_id,
			    "CLAIM_CERTIFICATE_NOT_ACTIVE", "claim of template '%s' is ENABLED but its "
			    "certificate is %s", v[i].template_name, cf_cert_status_name(c.status));
		cf_cert_rec_clear(&c);
	}
	cf_claim_recs_free(v, n);
	return 0;
}

/* ---- the table ------------------------------------------------------------------ */

const cf_audit_check_def cf_audit_checks[CF_AUDIT__COUNT] = {
	[CF_AUDIT_DEVICE_CERTIFICATE_EXPIRING] = { "DEVICE_CERTIFICATE_EXPIRING_CHECK", CF_SEV_MEDIUM,
	    "DEVICE_CERTIFICATE", "days", 30, "days",
	    "CERTIFICATE_EXPIRING CERTIFICATE_EXPIRED_BUT_ACTIVE", on_expiring, NULL },
	[CF_AUDIT_DEVICE_CERTIFICATE_AGE] = { "DEVICE_CERTIFICATE_AGE_CHECK", CF_SEV_LOW,
	    "DEVICE_CERTIFICATE", "days", 365, "days", "CERTIFICATE_PAST_MAX_AGE", on_age, NULL },
	[CF_AUDIT_CA_CERTIFICATE_EXPIRING] = { "CA_CERTIFICATE_EXPIRING_CHECK", CF_SEV_MEDIUM,
	    "CA_CERTIFICATE", "days", 90, "days", "CA_CERTIFICATE_EXPIRING CA_CERTIFICATE_EXPIRED",
	    NULL, run_ca_expiring },
	[CF_AUDIT_REVOKED_CA_CERTIFICATE_STILL_ACTIVE] = { "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK",
	    CF_SEV_CRITICAL, "CA_CERTIFICATE", NULL, 0, NULL,
	    "CA_ANCESTOR_REVOKED CA_REVOKED_BUT_ACTIVE REVOKED_CA_STILL_ISSUER", NULL,
	    run_revoked_ca_active },
	[CF_AUDIT_INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES] = {
	    "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK", CF_SEV_CRITICAL,
	    "DEVICE_CERTIFICATE", NULL, 0, NULL, "ISSUER_CA_REVOKED", on_issuer_revoked, NULL },
	[CF_AUDIT_DEVICE_CERTIFICATE_KEY_QUALITY] = { "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK",
	    CF_SEV_HIGH, "DEVICE_CERTIFICATE", NULL, 0, NULL,
	    "KEY_TOO_SMALL CURVE_NOT_ALLOWED KEY_TYPE_NOT_ALLOWED WEAK_SIGNATURE_ALGORITHM "
	    "ROCA_VULNERABLE_KEY BLOCKLISTED_KEY", on_device_key, NULL },
	[CF_AUDIT_CA_CERTIFICATE_KEY_QUALITY] = { "CA_CERTIFICATE_KEY_QUALITY_CHECK", CF_SEV_HIGH,
	    "CA_CERTIFICATE", NULL, 0, NULL,
	    "KEY_TOO_SMALL CURVE_NOT_ALLOWED KEY_TYPE_NOT_ALLOWED WEAK_SIGNATURE_ALGORITHM "
	    "ROCA_VULNERABLE_KEY BLOCKLISTED_KEY", NULL, run_ca_key },
	[CF_AUDIT_REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE] = {
	    "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK", CF_SEV_CRITICAL, "DEVICE_CERTIFICATE",
	    NULL, 0, NULL, "REVOKED_CERTIFICATE_CONNECTED INACTIVE_CERTIFICATE_CONNECTED",
	    on_revoked_connected, NULL },
	[CF_AUDIT_DEVICE_CERTIFICATE_SHARED] = { "DEVICE_CERTIFICATE_SHARED_CHECK", CF_SEV_HIGH,
	    "DEVICE_CERTIFICATE", "window", 14 * DAY, "seconds",
	    "CERTIFICATE_SHARED_BY_CLIENT_IDS CERTIFICATE_USED_CONCURRENTLY", NULL, run_shared },
	[CF_AUDIT_CONFLICTING_CLIENT_IDS] = { "CONFLICTING_CLIENT_IDS_CHECK", CF_SEV_HIGH, "CLIENT_ID",
	    "window", 14 * DAY, "seconds", "CLIENT_ID_CONCURRENT_PRINCIPALS CLIENT_ID_TAKEOVER", NULL,
	    run_conflicting },
	[CF_AUDIT_THING_WITHOUT_ACTIVE_CERTIFICATE] = { "THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK",
	    CF_SEV_LOW, "THING", NULL, 0, NULL, "THING_WITHOUT_ACTIVE_CERTIFICATE", NULL, run_things },
	[CF_AUDIT_UNATTACHED_CERTIFICATE] = { "UNATTACHED_CERTIFICATE_CHECK", CF_SEV_LOW,
	    "DEVICE_CERTIFICATE", NULL, 0, NULL, "CERTIFICATE_NOT_ATTACHED", on_unattached, NULL },
	[CF_AUDIT_IOT_POLICY_OVERLY_PERMISSIVE] = { "IOT_POLICY_OVERLY_PERMISSIVE_CHECK", CF_SEV_HIGH,
	    "POLICY", NULL, 0, NULL,
	    "WILDCARD_TOPIC_RULE ANONYMOUS_ACCESS_ALLOWED ACL_PLUGIN_NOT_LOADED TOPIC_PREFIX_EMPTY "
	    "ACL_FILE_UNREADABLE BROKER_CONFIG_UNREADABLE", NULL, run_policy },
	[CF_AUDIT_PROVISIONING_CLAIM_MISUSE] = { "PROVISIONING_CLAIM_MISUSE_CHECK", CF_SEV_HIGH,
	    "CLAIM_CERTIFICATE", NULL, 0, NULL, "CLAIM_DISABLED_FOR_MISUSE CLAIM_CERTIFICATE_NOT_ACTIVE",
	    NULL, run_claims },
};

int
cf_audit_check_find(const char *name)
{
	int i;

	for (i = 0; name != NULL && i < CF_AUDIT__COUNT; i++)
		if (strcmp(cf_audit_checks[i].name, name) == 0)
			return i;
	return -1;
}

void
cf_audit_opts_init(cf_audit_opts *o)
{
	int i;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < CF_AUDIT__COUNT; i++) {
		o->enabled[i] = 1;
		o->param[i] = cf_audit_checks[i].param_default;
	}
	o->trigger = "on_demand";
}

int
cf_audit_opts_select(cf_audit_opts *o, const char *list)
{
	unsigned char en[CF_AUDIT__COUNT];
	char *copy = NULL, *p, *save = NULL;
	int r = CF_EINVAL, i, any = 0;

	memset(en, 0, sizeof(en));
	if (list == NULL || (copy = strdup(list)) == NULL) {
		cf_error_set(list == NULL ? "no checks named" : "out of memory");
		goto out;
	}
	for (p = strtok_r(copy, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
		if ((i = cf_audit_check_find(p)) < 0) {
			cf_error_set("unknown check '%s' (certfleet audit checks lists them)", p);
			goto out;
		}
		en[i] = 1;
		any = 1;
	}
	if (!any) {
		cf_error_set("no checks named");
		goto out;
	}
	memcpy(o->enabled, en, sizeof(en));
	r = 0;
out:
	free(copy);
	return r;
}

int
cf_audit_opts_param(cf_audit_opts *o, const char *assignment)
{
	const char *eq = assignment ? strchr(assignment, '=') : NULL;
	char name[CF_AUDIT_CHECK_MAX + 1], *end;
	long long v;
	int i;

	if (eq == NULL || (size_t)(eq - assignment) >= sizeof(name)) {
		cf_error_set("parameter '%s' must be CHECK=VALUE", assignment ? assignment : "");
		return CF_EINVAL;
	}
	memcpy(name, assignment, (size_t)(eq - assignment));
	name[eq - assignment] = '\0';
	if ((i = cf_audit_check_find(name)) < 0 || cf_audit_checks[i].param == NULL) {
		cf_error_set("'%s' is not a check with a parameter", name);
		return CF_EINVAL;
	}
	v = strtoll(eq + 1, &end, 10);
	if (eq[1] == '\0' || *end != '\0' || v <= 0 || v > 100LL * 365 * DAY) {
		cf_error_set("%s: '%s' is not a positive number of %s", name, eq + 1,
		    cf_audit_checks[i].param_unit);
		return CF_EINVAL;
	}
	o->param[i] = v;
	return 0;
}

/* ---- the run --------------------------------------------------------------------- */

static int
on_cert(const cf_cert_rec *c, void *arg)
{
	cf_audit_ctx *x = arg;
	int i, r;

	x->res->cert_rows++;
	for (i = 0; i < CF_AUDIT__COUNT; i++)
		if (x->o->enabled[i] && cf_audit_checks[i].on_cert != NULL &&
		    (r = cf_audit_checks[i].on_cert(x, c)) != 0)
			return r;
	if (x->failed) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	return 0;
}

int
cf_audit_is_suppressed(const cf_suppression_rec *supp, size_t n, const char *check,
    const char *resource_id, int64_t now)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(supp[i].check, check) == 0 && strcmp(supp[i].resource_id, resource_id) == 0)
			return supp[i].until == 0 || now < supp[i].until;
	return 0;
}

static int
supp_cmp(const void *pa, const void *pb)
{
	const cf_suppression_rec *a = pa, *b = pb;
	int c = strcmp(a->check, b->check);

	return c ? c : strcmp(a->resource_id, b->resource_id);
}

static int
load_window(cf_audit_ctx *x)
{
	int64_t w = 0;
	size_t i;
	int r;

	if (x->o->enabled[CF_AUDIT_DEVICE_CERTIFICATE_SHARED])
		w = param(x, CF_AUDIT_DEVICE_CERTIFICATE_SHARED);
	if (x->o->enabled[CF_AUDIT_CONFLICTING_CLIENT_IDS] &&
	    param(x, CF_AUDIT_CONFLICTING_CLIENT_IDS) > w)
		w = param(x, CF_AUDIT_CONFLICTING_CLIENT_IDS);
	if (w == 0 && !x->o->enabled[CF_AUDIT_REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE])
		return 0;
	/* With no window wanted, only the open connections (ended >= now matches none ended). */
	if ((r = cf_store_connection_window(x->st, &x->conns, &x->n_conns,
	    w > 0 ? x->now - w : x->now + 1)) != 0)
		return r;
	if (x->n_conns > 0 && (x->open_principals = calloc(x->n_conns,
	    sizeof(x->open_principals[0]))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	for (i = 0; i < x->n_conns; i++)
		if (x->conns[i].disconnected_at == 0)
			memcpy(x->open_principals[x->n_open++], x->conns[i].principal, CF_ID_LEN + 1);
	if (x->n_open > 1)
		qsort(x->open_principals, x->n_open, sizeof(x->open_principals[0]), principal_cmp);
	return 0;
}

static int
counts_json(char **out, const cf_audit_result *res)
{
	json_t *j = json_object(), *sev = json_object(), *chk = json_object();
	int i, r = CF_ERROR;

	if (j == NULL || sev == NULL || chk == NULL)
		goto out;
	for (i = 0; i < CF_SEV__COUNT; i++)
		json_object_set_new(sev, cf_severity_name((cf_severity)i),
		    json_integer((json_int_t)res->by_severity[i]));
	for (i = 0; i < CF_AUDIT__COUNT; i++)
		if (res->by_check[i] > 0)
			json_object_set_new(chk, cf_audit_checks[i].name,
			    json_integer((json_int_t)res->by_check[i]));
	json_object_set_new(j, "findings", json_integer((json_int_t)res->findings));
	json_object_set_new(j, "suppressed", json_integer((json_int_t)res->suppressed));
	json_object_set(j, "by_severity", sev);
	json_object_set(j, "by_check", chk);
	if ((*out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS)) != NULL)
		r = 0;
out:
	if (r != 0)
		cf_error_set("out of memory");
	json_decref(sev);
	json_decref(chk);
	json_decref(j);
	return r;
}

int
cf_audit_run(cf_store *st, cf_audit_result *out, const cf_audit_opts *o)
{
	cf_audit_ctx x;
	cf_audit_opts defaults;
	cf_keyq_policy *own = NULL;
	cf_suppression_rec *supp = NULL, key;
	size_t n_supp = 0, i;
	json_t *names = NULL;
	char *names_text = NULL, *counts = NULL;
	int r = CF_ERROR, c, any_cert = 0;

	memset(&x, 0, sizeof(x));
	memset(out, 0, sizeof(*out));
	if (o == NULL) {
		cf_audit_opts_init(&defaults);
		o = &defaults;
	}
	x.st = st;
	x.o = o;
	x.res = out;
	x.now = o->now ? o->now : cf_time_now();
	if ((x.keyq = o->keyq) == NULL) {
		if ((r = cf_keyq_policy_new(&own)) != 0)
			goto out;
		x.keyq = own;
	}
	if ((r = cf_keyq_policy_fingerprint(x.keyq_fp, x.keyq)) != 0)
		goto out;
	if ((names = json_array()) == NULL)
		goto oom;
	for (c = 0; c < CF_AUDIT__COUNT; c++) {
		if (!o->enabled[c])
			continue;
		json_array_append_new(names, json_string(cf_audit_checks[c].name));
		any_cert |= cf_audit_checks[c].on_cert != NULL;
	}
	if ((names_text = json_dumps(names, JSON_COMPACT)) == NULL)
		goto oom;
	if ((r = cf_store_audit_start(st, &out->audit_id, o->trigger ? o->trigger : "on_demand",
	    names_text)) != 0)
		goto out;
	/* The small inputs first, then the one pass, then the checks that run once. */
	if ((r = cf_store_ca_list(st, &x.cas, &x.n_cas)) != 0)
		goto out;
	if (x.n_cas > 0 && (x.info = calloc(x.n_cas, sizeof(*x.info))) == NULL)
		goto oom;
	ca_chains(&x);
	if ((r = load_window(&x)) != 0)
		goto out;
	if (any_cert) {
		out->cert_passes++;
		if ((r = cf_store_cert_foreach(st, on_cert, &x)) != 0)
			goto out;
		/* Facts recomputed under a changed policy: stored once, in one transaction. */
		if ((r = cf_store_cert_keyq_update(st, x.stale, x.n_stale)) != 0)
			goto out;
		out->keyq_updated = x.n_stale;
	}
	for (c = 0; c < CF_AUDIT__COUNT; c++)
		if (o->enabled[c] && cf_audit_checks[c].run != NULL &&
		    (r = cf_audit_checks[c].run(&x)) != 0)
			goto out;
	if (x.failed)
		goto oom;
	/* Suppressions: sorted once, one lookup per finding. */
	if ((r = cf_store_suppression_list(st, &supp, &n_supp)) != 0)
		goto out;
	if (n_supp > 1)
		qsort(supp, n_supp, sizeof(*supp), supp_cmp);
	for (i = 0; i < x.n_findings; i++) {
		cf_finding_rec *f = &x.findings[i];
		const cf_suppression_rec *s;

		memset(&key, 0, sizeof(key));
		memcpy(key.check, f->check, sizeof(key.check));
		memcpy(key.resource_id, f->resource_id, sizeof(key.resource_id));
		s = n_supp ? bsearch(&key, supp, n_supp, sizeof(*supp), supp_cmp) : NULL;
		f->suppressed = s != NULL && (s->until == 0 || x.now < s->until);
		out->findings++;
		if (f->suppressed) {
			out->suppressed++;
			continue;
		}
		out->by_severity[f->severity]++;
		if ((c = cf_audit_check_find(f->check)) >= 0)
			out->by_check[c]++;
	}
	if ((r = counts_json(&counts, out)) != 0)
		goto out;
	r = cf_store_audit_finish(st, out->audit_id, x.findings, x.n_findings, counts);
	goto out;
oom:
	r = CF_ERROR;
	cf_error_set("out of memory");
out:
	if (x.cache != NULL) {
		for (i = 0; i < KEYQ_CACHE_SLOTS; i++)
			free(x.cache[i].pem);
		free(x.cache);
	}
	for (i = 0; i < x.n_stale; i++)
		free(x.stale[i].keyq_detail);
	free(x.stale);
	free(x.findings);
	free(x.open_principals);
	cf_conn_recs_free(x.conns, x.n_conns);
	free(x.info);
	cf_ca_recs_free(x.cas, x.n_cas);
	free(supp);
	free(counts);
	free(names_text);
	json_decref(names);
	cf_keyq_policy_free(own);
	return r;
}

/* ---- export ------------------------------------------------------------------------- */

int
cf_audit_format_parse(cf_audit_format *out, const char *name)
{
	if (name != NULL && strcmp(name, "json") == 0)
		*out = CF_AUDIT_EXPORT_JSON;
	else if (name != NULL && strcmp(name, "csv") == 0)
		*out = CF_AUDIT_EXPORT_CSV;
	else if (name != NULL && strcmp(name, "html") == 0)
		*out = CF_AUDIT_EXPORT_HTML;
	else {
		cf_error_set("unknown format '%s' (json, csv or html)", name ? name : "");
		return CF_EINVAL;
	}
	return 0;
}

static void
csv_field(FILE *f, const char *s, int last)
{
	/* Quote every text field; a leading = + - @ is prefixed so spreadsheets do not run it. */
	fputc('"', f);
	if (strchr("=+-@", s[0]) != NULL && s[0] != '\0')
		fputc('\'', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputs(last ? "\"\r\n" : "\",", f);
}

static void
html(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f); break;
		}
	}
}

static json_t *
audit_json(const cf_audit_rec *a)
{
	return json_pack("{s:I,s:I,s:I,s:s,s:o,s:o}", "id", (json_int_t)a->id, "started_at",
	    (json_int_t)a->started_at, "finished_at", (json_int_t)a->finished_at, "trigger",
	    a->trigger, "checks", json_loads(a->checks ? a->checks : "[]", 0, NULL), "counts",
	    json_loads(a->counts ? a->counts : "{}", 0, NULL));
}

static int
export_json(FILE *f, const cf_audit_rec *a, const cf_finding_rec *v, size_t n)
{
	json_t *j = json_object(), *arr = json_array();
	size_t i;
	int r = CF_ERROR;

	if (j == NULL || arr == NULL)
		goto out;
	for (i = 0; i < n; i++)
		json_array_append_new(arr, json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "id",
		    (json_int_t)v[i].id, "audit_id", (json_int_t)v[i].audit_id, "check", v[i].check,
		    "severity", cf_severity_name(v[i].severity), "resource_type", v[i].resource_type,
		    "resource_id", v[i].resource_id, "reason_code", v[i].reason_code, "detail",
		    v[i].detail, "suppressed", v[i].suppressed));
	json_object_set_new(j, "audit", audit_json(a));
	json_object_set(j, "findings", arr);
	if (json_dumpf(j, f, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 && fputc('\n', f) != EOF)
		r = 0;
out:
	json_decref(arr);
	json_decref(j);
	if (r != 0)
		cf_error_set("cannot write the JSON report");
	return r;
}

int
cf_audit_export(FILE *f, cf_audit_format fmt, const cf_audit_rec *a, const cf_finding_rec *v,
    size_t n)
{
	size_t i;
	char t1[32], t2[32], num[32];

	switch (fmt) {
	case CF_AUDIT_EXPORT_JSON:
		return export_json(f, a, v, n);
	case CF_AUDIT_EXPORT_CSV:
		fputs("id,audit_id,check,severity,resource_type,resource_id,reason_code,suppressed,"
		    "detail\r\n", f);
		for (i = 0; i < n; i++) {
			fprintf(f, "%lld,%lld,", (long long)v[i].id, (long long)v[i].audit_id);
			csv_field(f, v[i].check, 0);
			csv_field(f, cf_severity_name(v[i].severity), 0);
			csv_field(f, v[i].resource_type, 0);
			csv_field(f, v[i].resource_id, 0);
			csv_field(f, v[i].reason_code, 0);
			fprintf(f, "%d,", v[i].suppressed);
			csv_field(f, v[i].detail, 1);
		}
		break;
	case CF_AUDIT_EXPORT_HTML:
		snprintf(num, sizeof(num), "%lld", (long long)a->id);
		fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		    "<title>certfleet audit ", f);
		fputs(num, f);
		fputs("</title>\n<style>body{font-family:sans-serif;margin:2em}"
		    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
		    "text-align:left;vertical-align:top}th{background:#eee}"
		    ".CRITICAL{color:#fff;background:#a00}.HIGH{background:#f99}"
		    ".MEDIUM{background:#fd8}.LOW{background:#dfd}.sup{color:#888}</style>\n"
		    "</head><body>\n<h1>certfleet audit ", f);
		fputs(num, f);
		fputs("</h1>\n<p>Trigger: ", f);
		html(f, a->trigger);
		fputs(". Started ", f);
		cf_time_format(t1, sizeof(t1), a->started_at);
		html(f, t1);
		fputs(", finished ", f);
		cf_time_format(t2, sizeof(t2), a->finished_at);
		html(f, a->finished_at ? t2 : "-");
		fprintf(f, ". %zu finding(s).</p>\n<p>Counts: <code>", n);
		html(f, a->counts ? a->counts : "{}");
		fputs("</code></p>\n<table>\n<tr><th>ID</th><th>Severity</th><th>Check</th>"
		    "<th>Resource</th><th>Reason</th><th>Detail</th><th>Suppressed</th></tr>\n", f);
		for (i = 0; i < n; i++) {
			fprintf(f, "<tr%s><td>%lld</td><td class=\"%s\">%s</td><td>",
			    v[i].suppressed ? " class=\"sup\"" : "", (long long)v[i].id,
			    cf_severity_name(v[i].severity), cf_severity_name(v[i].severity));
			html(f, v[i].check);
			fputs("</td><td>", f);
			html(f, v[i].resource_type);
			fputs(" ", f);
			html(f, v[i].resource_id);
			fputs("</td><td>", f);
			html(f, v[i].reason_code);
			fputs("</td><td>", f);
			html(f, v[i].detail);
			fprintf(f, "</td><td>%s</td></tr>\n", v[i].suppressed ? "yes" : "no");
		}
		fputs("</table>\n</body></html>\n", f);
		break;
	default:
		cf_error_set("unknown export format");
		return CF_EINVAL;
	}
	if (ferror(f)) {
		cf_error_set("cannot write the report");
		return CF_ERROR;
	}
	return 0;
}

/* ---- schedule (certfleetd) ------------------------------------------------------------- */

static int
parse_hm(cf_audit_schedule *s, const char *p)
{
	int h, m;

	if (strlen(p) != 5 || !isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1]) ||
	    p[2] != ':' || !isdigit((unsigned char)p[3]) || !isdigit((unsigned char)p[4]))
		return CF_EINVAL;
	h = (p[0] - '0') * 10 + (p[1] - '0');
	m = (p[3] - '0') * 10 + (p[4] - '0');
	if (h > 23 || m > 59)
		return CF_EINVAL;
	s->hour = h;
	s->minute = m;
	return 0;
}

int
cf_audit_schedule_parse(cf_audit_schedule *out, const char *text)
{
	static const char *const days[] = { "sunday", "monday", "tuesday", "wednesday", "thursday",
		"friday", "saturday" };
	char buf[64], *day, *at;
	cf_audit_schedule s;
	char *end;
	long v;
	size_t i;

	memset(&s, 0, sizeof(s));
	if (*text == '\0' || strcmp(text, "off") == 0) {
		*out = s;
		return 0;
	}
	if (strlen(text) >= sizeof(buf))
		goto bad;
	memcpy(buf, text, strlen(text) + 1);
	if (strncmp(buf, "daily@", 6) == 0) {
		s.kind = CF_AUDIT_SCHED_DAILY;
		if (parse_hm(&s, buf + 6) != 0)
			goto bad;
	} else if (strncmp(buf, "weekly@", 7) == 0 || strncmp(buf, "monthly@", 8) == 0) {
		s.kind = buf[0] == 'w' ? CF_AUDIT_SCHED_WEEKLY : CF_AUDIT_SCHED_MONTHLY;
		day = strchr(buf, '@') + 1;
		if ((at = strchr(day, '@')) == NULL)
			goto bad;
		*at = '\0';
		if (parse_hm(&s, at + 1) != 0)
			goto bad;
		if (s.kind == CF_AUDIT_SCHED_WEEKLY) {
			for (i = 0; i < 7; i++)
				if (strcasecmp(day, days[i]) == 0 ||
				    (strlen(day) == 3 && strncasecmp(day, days[i], 3) == 0))
					break;
			if (i == 7)
				goto bad;
			s.wday = (int)i;
		} else {
			v = strtol(day, &end, 10);
			if (*day == '\0' || *end != '\0' || v < 1 || v > 28)
				goto bad;
			s.mday = (int)v;
		}
	} else {
		goto bad;
	}
	*out = s;
	return 0;
bad:
	cf_error_set("audit_schedule '%s' is not daily@HH:MM, weekly@<mon..sun>@HH:MM or "
	    "monthly@<1-28>@HH:MM (UTC)", text);
	return CF_EINVAL;
}

int64_t
cf_audit_schedule_prev(const cf_audit_schedule *s, int64_t now)
{
	time_t t = (time_t)now;
	struct tm tm;
	int64_t day0, slot;
	int back;

	gmtime_r(&t, &tm);
	day0 = now - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
	switch (s->kind) {
	case CF_AUDIT_SCHED_DAILY:
		slot = day0 + s->hour * 3600 + s->minute * 60;
		return slot > now ? slot - 86400 : slot;
	case CF_AUDIT_SCHED_WEEKLY:
		back = (tm.tm_wday - s->wday + 7) % 7;
		slot = day0 - (int64_t)back * 86400 + s->hour * 3600 + s->minute * 60;
		return slot > now ? slot - 7 * 86400 : slot;
	case CF_AUDIT_SCHED_MONTHLY:
		tm.tm_mday = s->mday;
		tm.tm_hour = s->hour;
		tm.tm_min = s->minute;
		tm.tm_sec = 0;
		slot = (int64_t)timegm(&tm);
		if (slot > now) {
			tm.tm_mon -= 1; /* timegm normalizes January - 1 */
			slot = (int64_t)timegm(&tm);
		}
		return slot;
	default:
		return 0;
	}
}

int
cf_audit_schedule_due(const cf_audit_schedule *s, int64_t last_run, int64_t now)
{
	switch (s->kind) {
	case CF_AUDIT_SCHED_INTERVAL:
		return now >= last_run + s->interval;
	case CF_AUDIT_SCHED_DAILY:
	case CF_AUDIT_SCHED_WEEKLY:
	case CF_AUDIT_SCHED_MONTHLY:
		return cf_audit_schedule_prev(s, now) > last_run;
	default:
		return 0;
	}
}
