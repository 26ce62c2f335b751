/*
 * cf_acl — principal usernames and the per-kind topic rules the broker
 * plugin enforces, and the name set that feeds its principal flags. Pure
 * functions over byte strings: no broker, no store.
 * Every comparison is a bounded literal prefix match; wildcards in a
 * filter are only ever allowed after the part that names the client.
 */
#include "cf_acl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_util.h"

#define PREFIX_MAX 256

/*
 * What a quarantined device keeps, below <prefix>things/<client id>/: the
 * job and certificate topics a rotation needs (docs/protocol.md), so a
 * rotation can still heal it.
 */
static const char *const quarantine_subtrees[] = {
	"jobs/",
	"certificate/",
};

/*
 * RFC 5280 CRLReason codes that retire a CA rather than condemn it: the key
 * is not compromised, the CA is only being replaced or shut down, so its
 * certificates may still authenticate a rotation onto the current issuer.
 * Everything else (unspecified, keyCompromise, cACompromise, ...) refuses.
 */
static const int retiring_reasons[] = {
	3, /* affiliationChanged */
	4, /* superseded */
	5, /* cessationOfOperation */
};

/* The username suffix of CF_ACL_ROTATION_ONLY. */
#define ROTATION_ONLY_SUFFIX ":rotation-only"

static const char *const kind_names[CF_KIND__COUNT] = {
	[CF_KIND_DEVICE] = "device",
	[CF_KIND_CLAIM] = "claim",
	[CF_KIND_SERVICE] = "service",
};

const char *
cf_acl_kind_name(cf_acl_kind kind)
{
	if ((unsigned)kind >= CF_KIND__COUNT)
		return "unknown";
	return kind_names[kind];
}

static int
is_lower_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return 1;
}

int
cf_acl_principal_parse(cf_principal *out, const char *username)
{
	const char *colon;
	size_t klen;
	unsigned flags = 0;
	int k, r = CF_EINVAL;

	if (username == NULL) {
		cf_error_set("no username");
		goto out;
	}
	if ((colon = strchr(username, ':')) == NULL) {
		cf_error_set("username is not <kind>:<certificate id>");
		goto out;
	}
	klen = (size_t)(colon - username);
	for (k = 0; k < CF_KIND__COUNT; k++) {
		if (strlen(kind_names[k]) == klen && memcmp(kind_names[k], username, klen) == 0)
			break;
	}
	if (k == CF_KIND__COUNT) {
		cf_error_set("username has an unknown principal kind");
		goto out;
	}
	if (k == CF_KIND_DEVICE && strlen(colon + 1) == CF_ID_LEN + strlen(ROTATION_ONLY_SUFFIX) &&
	    strcmp(colon + 1 + CF_ID_LEN, ROTATION_ONLY_SUFFIX) == 0)
		flags = CF_ACL_ROTATION_ONLY;
	else if (strlen(colon + 1) != CF_ID_LEN) {
		cf_error_set("username does not end in a %d-character certificate id", CF_ID_LEN);
		goto out;
	}
	if (!is_lower_hex(colon + 1, CF_ID_LEN)) {
		cf_error_set("username does not end in a %d-character certificate id", CF_ID_LEN);
		goto out;
	}
	out->kind = (cf_acl_kind)k;
	out->flags = flags;
	memcpy(out->id, colon + 1, CF_ID_LEN);
	out->id[CF_ID_LEN] = '\0';
	r = 0;
out:
	return r;
}

int
cf_acl_principal_format(char *out, size_t out_len, const cf_principal *p)
{
	int r = CF_EINVAL;

	if ((unsigned)p->kind >= CF_KIND__COUNT || strnlen(p->id, CF_ID_LEN + 1) != CF_ID_LEN ||
	    !is_lower_hex(p->id, CF_ID_LEN) ||
	    (p->flags != 0 && !(p->kind == CF_KIND_DEVICE && p->flags == CF_ACL_ROTATION_ONLY))) {
		cf_error_set("not a valid principal");
		goto out;
	}
	r = cf_strfmt(out, out_len, "%s:%s%s", kind_names[p->kind], p->id,
	    p->flags == CF_ACL_ROTATION_ONLY ? ROTATION_ONLY_SUFFIX : "");
out:
	return r;
}

int
cf_acl_prefix_check(const char *prefix)
{
	size_t n;
	int r = CF_EINVAL;

	if (prefix == NULL || (n = strnlen(prefix, PREFIX_MAX + 1)) > PREFIX_MAX) {
		cf_error_set("topic prefix is missing or longer than %d bytes", PREFIX_MAX);
		goto out;
	}
	if (n > 0 && prefix[n - 1] != '/') {
		cf_error_set("topic prefix '%s' does not end in '/'", prefix);
		goto out;
	}
	if (prefix[0] == '$' || strpbrk(prefix, "+#") != NULL) {
		cf_error_set("topic prefix '%s' must not start with '$' or contain '+' or '#'", prefix);
		goto out;
	}
	r = 0;
out:
	return r;
}

/* 1 if s[0..n) begins with the NUL-terminated lit, which is then consumed from s and n. */
static int
eat(const char **s, size_t *n, const char *lit)
{
	size_t l = strlen(lit);

	if (*n < l || memcmp(*s, lit, l) != 0)
		return 0;
	*s += l;
	*n -= l;
	return 1;
}

/* 1 if s[0..n) is exactly lit. */
static int
equals(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Length of the first topic level of s[0..n) (up to '/' or the end). */
static size_t
level_len(const char *s, size_t n)
{
	const char *slash = memchr(s, '/', n);

	return slash ? (size_t)(slash - s) : n;
}

/*
 * A device: <prefix>things/<client id>/ followed by anything (wildcards
 * included); quarantined or rotation-only, only followed by one of
 * quarantine_subtrees and then anything.
 */
static int
device_allows(const char *client_id, const char *prefix, const char *t, size_t n,
    unsigned flags)
{
	size_t idlen = strlen(client_id), i;

	if (!eat(&t, &n, prefix) || !eat(&t, &n, "things/"))
		return 0;
	if (n < idlen + 1 || memcmp(t, client_id, idlen) != 0 || t[idlen] != '/')
		return 0;
	if (!(flags & (CF_ACL_QUARANTINED | CF_ACL_ROTATION_ONLY)))
		return 1;
	t += idlen + 1;
	n -= idlen + 1;
	for (i = 0; i < sizeof(quarantine_subtrees) / sizeof(quarantine_subtrees[0]); i++) {
		if (eat(&t, &n, quarantine_subtrees[i]))
			return 1;
	}
	return 0;
}

/*
 * A claim: publish <prefix>provisioning/<template>/provision; subscribe to
 * and receive only its own replies,
 * <prefix>provisioning/<template>/provision/<client id>/accepted|rejected,
 * so that one device of a batch never reads another's certificate or
 * rejection. <template> is one non-empty level without wildcards; no
 * wildcards anywhere.
 */
static int
claim_allows(const char *client_id, const char *prefix, const char *t, size_t n,
    cf_acl_access access)
{
	size_t tl;

	if (!eat(&t, &n, prefix) || !eat(&t, &n, "provisioning/"))
		return 0;
	tl = level_len(t, n);
	if (tl == 0 || tl == n || memchr(t, '+', tl) != NULL || memchr(t, '#', tl) != NULL)
		return 0;
	t += tl + 1;
	n -= tl + 1;
	if (access == CF_ACL_PUBLISH)
		return equals(t, n, "provision");
	if (!eat(&t, &n, "provision/") || !eat(&t, &n, client_id) || !eat(&t, &n, "/"))
		return 0;
	return equals(t, n, "accepted") || equals(t, n, "rejected");
}

int
cf_acl_check_n(cf_acl_kind kind, const char *client_id, const char *prefix,
    const char *topic, size_t topic_len, cf_acl_access access)
{
	return cf_acl_check_flags_n(kind, 0, client_id, prefix, topic, topic_len, access);
}

int
cf_acl_check_flags_n(cf_acl_kind kind, unsigned flags, const char *client_id,
    const char *prefix, const char *topic, size_t topic_len, cf_acl_access access)
{
	int r = CF_EREJECTED;

	if (topic == NULL || topic_len == 0) {
		cf_error_set("empty topic");
		goto out;
	}
	if (topic_len > CF_ACL_TOPIC_MAX) {
		cf_error_set("topic longer than %d bytes", CF_ACL_TOPIC_MAX);
		goto out;
	}
	if (memchr(topic, '\0', topic_len) != NULL) {
		cf_error_set("topic contains NUL");
		goto out;
	}
	if (access != CF_ACL_READ && access != CF_ACL_PUBLISH && access != CF_ACL_SUBSCRIBE) {
		cf_error_set("unknown access");
		goto out;
	}
	if ((flags & ~CF_ACL_FLAGS_ALL) != 0) {
		cf_error_set("unknown principal flags 0x%x", flags);
		goto out;
	}
	switch (kind) {
	case CF_KIND_SERVICE:
		r = 0;
		break;
	case CF_KIND_DEVICE:
		if (client_id == NULL || client_id[0] == '\0' || strpbrk(client_id, "/+#") != NULL ||
		    prefix == NULL) {
			cf_error_set("client id cannot name a thing");
			break;
		}
		if (device_allows(client_id, prefix, topic, topic_len, flags))
			r = 0;
		else if (flags & (CF_ACL_QUARANTINED | CF_ACL_ROTATION_ONLY))
			cf_error_set("%s device '%s' may only use %sthings/%s/jobs/... and "
			    ".../certificate/...", (flags & CF_ACL_QUARANTINED) ? "quarantined" :
			    "rotation-only", client_id, prefix, client_id);
		else
			cf_error_set("device '%s' may only use %sthings/%s/...", client_id, prefix,
			    client_id);
		break;
	case CF_KIND_CLAIM:
		if (client_id == NULL || client_id[0] == '\0' || strpbrk(client_id, "/+#") != NULL ||
		    prefix == NULL) {
			cf_error_set("client id cannot be a topic level");
			break;
		}
		if (claim_allows(client_id, prefix, topic, topic_len, access))
			r = 0;
		else
			cf_error_set("a claim certificate may only use %sprovisioning/<template>/provision "
			    "and its replies to client '%s'", prefix, client_id);
		break;
	default:
		cf_error_set("unknown principal kind");
		break;
	}
out:
	return r;
}

int
cf_acl_check(cf_acl_kind kind, const char *client_id, const char *prefix, const char *topic,
    cf_acl_access access)
{
	return cf_acl_check_flags(kind, 0, client_id, prefix, topic, access);
}

int
cf_acl_check_flags(cf_acl_kind kind, unsigned flags, const char *client_id, const char *prefix,
    const char *topic, cf_acl_access access)
{
	if (topic == NULL) {
		cf_error_set("no topic");
		return CF_EREJECTED;
	}
	return cf_acl_check_flags_n(kind, flags, client_id, prefix, topic,
	    strnlen(topic, CF_ACL_TOPIC_MAX + 1), access);
}

/* ---- name sets --------------------------------------------------------------- */

struct cf_acl_names {
	char **sorted;   /* owned copies, strcmp order */
	size_t n;
	size_t *slots;   /* open addressing: index into sorted + 1, 0 = empty */
	size_t mask;     /* slots has mask + 1 entries, a power of two >= 2n */
};

/* FNV-1a, 64 bits. */
static size_t
name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (size_t)(h ^ (h >> 32));
}

static int
strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
cf_acl_names_new(cf_acl_names **out, char *const *names, size_t n)
{
	cf_acl_names *set = NULL;
	size_t cap = 16, i, j;
	int r = CF_ERROR;

	while (cap < 2 * n)
		cap *= 2;
	if ((set = calloc(1, sizeof(*set))) == NULL ||
	    (n > 0 && (set->sorted = calloc(n, sizeof(*set->sorted))) == NULL) ||
	    (set->slots = calloc(cap, sizeof(*set->slots))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	set->mask = cap - 1;
	for (i = 0; i < n; i++) {
		if ((set->sorted[i] = strdup(names[i])) == NULL) {
			cf_error_set("out of memory");
			goto out;
		}
		set->n++;
	}
	if (n > 1)
		qsort(set->sorted, n, sizeof(*set->sorted), strcmp_p);
	for (i = 0; i < n; i++) {
		for (j = name_hash(set->sorted[i]) & set->mask; set->slots[j] != 0;
		    j = (j + 1) & set->mask)
			;
		set->slots[j] = i + 1;
	}
	*out = set;
	set = NULL;
	r = 0;
out:
	cf_acl_names_free(set);
	return r;
}

int
cf_acl_names_has(const cf_acl_names *set, const char *name)
{
	size_t j;

	if (set == NULL || set->n == 0 || name == NULL)
		return 0;
	for (j = name_hash(name) & set->mask; set->slots[j] != 0; j = (j + 1) & set->mask) {
		if (strcmp(set->sorted[set->slots[j] - 1], name) == 0)
			return 1;
	}
	return 0;
}

size_t
cf_acl_names_count(const cf_acl_names *set)
{
	return set ? set->n : 0;
}

const char *
cf_acl_names_at(const cf_acl_names *set, size_t i)
{
	return set->sorted[i];
}

void
cf_acl_names_free(cf_acl_names *set)
{
	size_t i;

	if (set == NULL)
		return;
	for (i = 0; i < set->n; i++)
		free(set->sorted[i]);
	free(set->sorted);
	free(set->slots);
	free(set);
}

/* ---- helpers for the CONNECT decision (cf_acl_auth.c) ------------------------ */

const char *
cf_acl_printable(char out[CF_ACL_PRINTABLE_MAX], const char *s)
{
	size_t i;

	if (s == NULL)
		s = "";
	for (i = 0; s[i] != '\0' && i < CF_ACL_PRINTABLE_MAX - 4; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] != '\0') {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
	return out;
}

int
cf_acl_reason_retires(int reason)
{
	size_t i;

	for (i = 0; i < sizeof(retiring_reasons) / sizeof(retiring_reasons[0]); i++) {
		if (reason == retiring_reasons[i])
			return 1;
	}
	return 0;
}

int
cf_acl_ca_retired(const cf_ca_rec *ca)
{
	return ca->role == CF_CA_INTERMEDIATE && ca->status == CF_CERT_REVOKED &&
	    cf_acl_reason_retires(ca->revoke_reason);
}
