/*
 * audit_test — cf_audit checks (a positive and a negative fixture each,
 * severity and reason code), suppression semantics, the one-pass property,
 * and cf_mitigate's refusal of a suppressed finding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "cf_audit.h"
#include "cf_mitigate.h"
#include "cf_pki.h"
#include "cf_store.h"
#include "cf_util.h"

#define DAY 86400

struct fx {
	char dir[64], path[128];
	cf_store *st;
	cf_key *key;
	cf_cert *root;
	char *pem;
	char root_id[CF_ID_LEN + 1], int_id[CF_ID_LEN + 1];
	int64_t now;
};

static void
add_ca(struct fx *x, char id[CF_ID_LEN + 1], const char *name, const char *parent,
    cf_cert_status status, int64_t not_after)
{
	cf_ca_rec ca;

	memset(&ca, 0, sizeof(ca));
	cf_sha256_hex(id, name, strlen(name));
	memcpy(ca.id, id, CF_ID_LEN + 1);
	snprintf(ca.name, sizeof(ca.name), "%s", name);
	ca.role = parent ? CF_CA_INTERMEDIATE : CF_CA_ROOT;
	if (parent)
		memcpy(ca.parent_id, parent, CF_ID_LEN + 1);
	ca.status = status;
	snprintf(ca.serial, sizeof(ca.serial), "01");
	ca.not_before = x->now - DAY;
	ca.not_after = not_after;
	ca.created_at = x->now;
	snprintf(ca.key_alg, sizeof(ca.key_alg), "ECDSA-P256");
	ca.key_bits = 256;
	snprintf(ca.key_ref, sizeof(ca.key_ref), "k");
	ca.pem = x->pem;
	assert_int_equal(cf_store_ca_insert(x->st, &ca), 0);
}

static void
add_cert_pem(struct fx *x, char id[CF_ID_LEN + 1], const char *seed, const char *thing,
    const char *ca_id, int64_t not_before, int64_t not_after, char *pem)
{
	cf_cert_rec c;

	memset(&c, 0, sizeof(c));
	cf_sha256_hex(id, seed, strlen(seed));
	memcpy(c.id, id, CF_ID_LEN + 1);
	snprintf(c.serial, sizeof(c.serial), "%.16s", id);
	memcpy(c.ca_id, ca_id, CF_ID_LEN + 1);
	snprintf(c.thing, sizeof(c.thing), "%s", thing);
	c.status = CF_CERT_ACTIVE;
	c.not_before = not_before;
	c.not_after = not_after;
	snprintf(c.key_alg, sizeof(c.key_alg), "ECDSA-P256");
	c.key_bits = 256;
	snprintf(c.sig_alg, sizeof(c.sig_alg), "ecdsa-with-SHA256");
	c.pem = pem;
	assert_int_equal(cf_store_cert_insert(x->st, &c), 0);
}

static void
add_cert(struct fx *x, char id[CF_ID_LEN + 1], const char *seed, const char *thing,
    const char *ca_id, int64_t not_before, int64_t not_after)
{
	add_cert_pem(x, id, seed, thing, ca_id, not_before, not_after, x->pem);
}

static int
setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	snprintf(x->dir, sizeof(x->dir), "/tmp/audit_test.XXXXXX");
	assert_non_null(mkdtemp(x->dir));
	snprintf(x->path, sizeof(x->path), "%s/db", x->dir);
	assert_int_equal(cf_store_open(&x->st, x->path, CF_STORE_CREATE), 0);
	assert_int_equal(cf_key_generate(&x->key, CF_KEY_P256), 0);
	assert_int_equal(cf_pki_make_root(&x->root, x->key, "t", 3650), 0);
	assert_int_equal(cf_cert_to_pem(&x->pem, x->root), 0);
	x->now = cf_time_now();
	add_ca(x, x->root_id, "root", NULL, CF_CERT_ACTIVE, x->now + 3000L * DAY);
	add_ca(x, x->int_id, "int", x->root_id, CF_CERT_ACTIVE, x->now + 1000L * DAY);
	*state = x;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *x = *state;
	char cmd[200];

	cf_store_close(x->st);
	cf_cert_free(x->root);
	cf_key_free(x->key);
	free(x->pem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", x->dir);
	assert_int_equal(system(cmd), 0);
	free(x);
	return 0;
}

/* Runs the audit and returns its findings. */
static cf_finding_rec *
run(struct fx *x, size_t *n, cf_audit_result *res, const char *checks)
{
	cf_audit_opts o;
	cf_audit_result r;
	cf_finding_filter f = { .severity = -1 };
	cf_finding_rec *v = NULL;

	cf_audit_opts_init(&o);
	if (checks)
		assert_int_equal(cf_audit_opts_select(&o, checks), 0);
	assert_int_equal(cf_audit_run(x->st, res ? res : &r, &o), 0);
	f.audit_id = res ? res->audit_id : r.audit_id;
	assert_int_equal(cf_store_finding_list(x->st, &v, n, &f), 0);
	return v;
}

static const cf_finding_rec *
find(const cf_finding_rec *v, size_t n, const char *check, const char *resource)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i].check, check) == 0 && strcmp(v[i].resource_id, resource) == 0)
			return &v[i];
	return NULL;
}

static void
test_audit__table_is_complete(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < CF_AUDIT__COUNT; i++) {
		assert_non_null(cf_audit_checks[i].name);
		assert_true(cf_audit_checks[i].on_cert != NULL || cf_audit_checks[i].run != NULL);
		assert_int_equal(cf_audit_check_find(cf_audit_checks[i].name), i);
	}
	assert_int_equal(cf_audit_check_find("NOPE"), -1);
}

static void
test_audit__expiring_expired_and_fresh(void **state)
{
	struct fx *x = *state;
	char soon[CF_ID_LEN + 1], gone[CF_ID_LEN + 1], fresh[CF_ID_LEN + 1];
	const cf_finding_rec *f;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	assert_int_equal(cf_store_thing_create(x->st, "b", NULL), 0);
	assert_int_equal(cf_store_thing_create(x->st, "c", NULL), 0);
	add_cert(x, soon, "soon", "a", x->int_id, x->now - DAY, x->now + 10 * DAY);
	add_cert(x, gone, "gone", "b", x->int_id, x->now - 100 * DAY, x->now - DAY);
	add_cert(x, fresh, "fresh", "c", x->int_id, x->now - DAY, x->now + 300 * DAY);
	v = run(x, &n, NULL, "DEVICE_CERTIFICATE_EXPIRING_CHECK");
	assert_non_null(f = find(v, n, "DEVICE_CERTIFICATE_EXPIRING_CHECK", soon));
	assert_string_equal(f->reason_code, "CERTIFICATE_EXPIRING");
	assert_int_equal(f->severity, CF_SEV_MEDIUM);
	assert_non_null(f = find(v, n, "DEVICE_CERTIFICATE_EXPIRING_CHECK", gone));
	assert_string_equal(f->reason_code, "CERTIFICATE_EXPIRED_BUT_ACTIVE");
	assert_int_equal(f->severity, CF_SEV_CRITICAL);
	assert_null(find(v, n, "DEVICE_CERTIFICATE_EXPIRING_CHECK", fresh));
	assert_int_equal(n, 2);
	free(v);
}

static void
test_audit__age(void **state)
{
	struct fx *x = *state;
	char old[CF_ID_LEN + 1], young[CF_ID_LEN + 1];
	const cf_finding_rec *f;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	add_cert(x, old, "old", "a", x->int_id, x->now - 400 * DAY, x->now + 300 * DAY);
	add_cert(x, young, "young", "a", x->int_id, x->now - 10 * DAY, x->now + 300 * DAY);
	v = run(x, &n, NULL, "DEVICE_CERTIFICATE_AGE_CHECK");
	assert_non_null(f = find(v, n, "DEVICE_CERTIFICATE_AGE_CHECK", old));
	assert_string_equal(f->reason_code, "CERTIFICATE_PAST_MAX_AGE");
	assert_int_equal(f->severity, CF_SEV_LOW);
	assert_null(find(v, n, "DEVICE_CERTIFICATE_AGE_CHECK", young));
	free(v);
}

static void
test_audit__revoked_intermediate(void **state)
{
	struct fx *x = *state;
	char bad_int[CF_ID_LEN + 1], under[CF_ID_LEN + 1], fine[CF_ID_LEN + 1], sub[CF_ID_LEN + 1];
	const cf_finding_rec *f;
	cf_finding_rec *v;
	size_t n;

	add_ca(x, bad_int, "int-bad", x->root_id, CF_CERT_ACTIVE, x->now + 900L * DAY);
	add_ca(x, sub, "sub", bad_int, CF_CERT_ACTIVE, x->now + 900L * DAY);
	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	add_cert(x, under, "under", "a", bad_int, x->now - DAY, x->now + 300 * DAY);
	add_cert(x, fine, "fine", "a", x->int_id, x->now - DAY, x->now + 300 * DAY);
	assert_int_equal(cf_store_ca_set_status(x->st, bad_int, CF_CERT_REVOKED, 1), 0);
	v = run(x, &n, NULL, "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK,"
	    "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK");
	assert_non_null(f = find(v, n, "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK",
	    under));
	assert_string_equal(f->reason_code, "ISSUER_CA_REVOKED");
	assert_int_equal(f->severity, CF_SEV_CRITICAL);
	assert_null(find(v, n, "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK", fine));
	assert_non_null(f = find(v, n, "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK", sub));
	assert_string_equal(f->reason_code, "CA_ANCESTOR_REVOKED");
	assert_null(find(v, n, "REVOKED_CA_CERTIFICATE_STILL_ACTIVE_CHECK", x->int_id));
	free(v);
}

static void
test_audit__ca_expiring(void **state)
{
	struct fx *x = *state;
	char soon[CF_ID_LEN + 1];
	const cf_finding_rec *f;
	cf_finding_rec *v;
	size_t n;

	add_ca(x, soon, "int-soon", x->root_id, CF_CERT_ACTIVE, x->now + 60L * DAY);
	v = run(x, &n, NULL, "CA_CERTIFICATE_EXPIRING_CHECK");
	assert_non_null(f = find(v, n, "CA_CERTIFICATE_EXPIRING_CHECK", soon));
	assert_string_equal(f->reason_code, "CA_CERTIFICATE_EXPIRING");
	assert_null(find(v, n, "CA_CERTIFICATE_EXPIRING_CHECK", x->int_id));
	free(v);
}

static void
test_audit__things_unattached_and_one_pass(void **state)
{
	struct fx *x = *state;
	char loose[CF_ID_LEN + 1], held[CF_ID_LEN + 1];
	cf_audit_result res;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "empty", NULL), 0);
	assert_int_equal(cf_store_thing_create(x->st, "full", NULL), 0);
	add_cert(x, loose, "loose", "", x->int_id, x->now - DAY, x->now + 300 * DAY);
	add_cert(x, held, "held", "full", x->int_id, x->now - DAY, x->now + 300 * DAY);
	v = run(x, &n, &res, NULL);
	assert_non_null(find(v, n, "THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK", "empty"));
	assert_null(find(v, n, "THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK", "full"));
	assert_non_null(find(v, n, "UNATTACHED_CERTIFICATE_CHECK", loose));
	assert_null(find(v, n, "UNATTACHED_CERTIFICATE_CHECK", held));
	/* Every certificate check, one read of the table; one PEM parsed for both rows. */
	assert_int_equal(res.cert_passes, 1);
	assert_int_equal(res.cert_rows, 2);
	assert_int_equal(res.pem_parses, 1); /* the CAs and certificates share one PEM text here */
	free(v);
}

static void
conn(struct fx *x, const char *ref, const char *client, const char *principal, const char *peer,
    int64_t at)
{
	cf_conn_rec c;

	memset(&c, 0, sizeof(c));
	snprintf(c.ref, sizeof(c.ref), "%s", ref);
	snprintf(c.client_id, sizeof(c.client_id), "%s", client);
	snprintf(c.principal, sizeof(c.principal), "%s", principal);
	snprintf(c.kind, sizeof(c.kind), "device");
	snprintf(c.peer, sizeof(c.peer), "%s", peer);
	c.connected_at = at;
	assert_int_equal(cf_store_connection_open(x->st, &c), 0);
}

static void
test_audit__connections(void **state)
{
	struct fx *x = *state;
	char rev[CF_ID_LEN + 1], shared[CF_ID_LEN + 1], solo[CF_ID_LEN + 1];
	const cf_finding_rec *f;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	assert_int_equal(cf_store_thing_create(x->st, "b", NULL), 0);
	add_cert(x, rev, "rev", "a", x->int_id, x->now - DAY, x->now + 300 * DAY);
	add_cert(x, shared, "shared", "b", x->int_id, x->now - DAY, x->now + 300 * DAY);
	add_cert(x, solo, "solo", "b", x->int_id, x->now - DAY, x->now + 300 * DAY);
	assert_int_equal(cf_store_cert_set_status(x->st, rev, CF_CERT_REVOKED, 1), 0);
	conn(x, "r1", "a", rev, "10.0.0.1:1", x->now - 50);
	conn(x, "r2", "b", shared, "10.0.0.2:1", x->now - 40);
	conn(x, "r3", "b", shared, "10.0.0.3:1", x->now - 30); /* same certificate, overlapping */
	conn(x, "r4", "x", solo, "10.0.0.4:1", x->now - 20);
	conn(x, "r5", "x", shared, "10.0.0.5:1", x->now - 10); /* client id x: two principals */
	v = run(x, &n, NULL, "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK,"
	    "DEVICE_CERTIFICATE_SHARED_CHECK,CONFLICTING_CLIENT_IDS_CHECK");
	assert_non_null(f = find(v, n, "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK", rev));
	assert_string_equal(f->reason_code, "REVOKED_CERTIFICATE_CONNECTED");
	assert_null(find(v, n, "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK", shared));
	assert_non_null(f = find(v, n, "DEVICE_CERTIFICATE_SHARED_CHECK", shared));
	assert_string_equal(f->reason_code, "CERTIFICATE_SHARED_BY_CLIENT_IDS");
	assert_null(find(v, n, "DEVICE_CERTIFICATE_SHARED_CHECK", solo));
	assert_non_null(f = find(v, n, "CONFLICTING_CLIENT_IDS_CHECK", "x"));
	assert_string_equal(f->reason_code, "CLIENT_ID_CONCURRENT_PRINCIPALS");
	assert_null(find(v, n, "CONFLICTING_CLIENT_IDS_CHECK", "a"));
	free(v);
}

static void
test_audit__policy_file(void **state)
{
	struct fx *x = *state;
	char conf[128], acl[128];
	FILE *f;
	cf_audit_opts o;
	cf_audit_result res;
	cf_finding_rec *v = NULL;
	cf_finding_filter flt = { .severity = -1 };
	size_t n, i, wild = 0, anon = 0, noplug = 0;

	snprintf(conf, sizeof(conf), "%s/m.conf", x->dir);
	snprintf(acl, sizeof(acl), "%s/acl", x->dir);
	assert_non_null(f = fopen(acl, "w"));
	fputs("topic readwrite #\ntopic deny #\ntopic read cf/things/%c/#\n", f);
	fclose(f);
	assert_non_null(f = fopen(conf, "w"));
	fprintf(f, "allow_anonymous true\nacl_file %s\n", acl);
	fclose(f);
	cf_audit_opts_init(&o);
	assert_int_equal(cf_audit_opts_select(&o, "IOT_POLICY_OVERLY_PERMISSIVE_CHECK"), 0);
	o.broker_config = conf;
	o.topic_prefix = "cf/";
	assert_int_equal(cf_audit_run(x->st, &res, &o), 0);
	flt.audit_id = res.audit_id;
	assert_int_equal(cf_store_finding_list(x->st, &v, &n, &flt), 0);
	for (i = 0; i < n; i++) {
		wild += strcmp(v[i].reason_code, "WILDCARD_TOPIC_RULE") == 0;
		anon += strcmp(v[i].reason_code, "ANONYMOUS_ACCESS_ALLOWED") == 0;
		noplug += strcmp(v[i].reason_code, "ACL_PLUGIN_NOT_LOADED") == 0;
	}
	assert_int_equal(wild, 1); /* deny # and the per-thing pattern are fine */
	assert_int_equal(anon, 1);
	assert_int_equal(noplug, 1);
	free(v);
}

static void
test_audit__suppression_semantics(void **state)
{
	struct fx *x = *state;
	char gone[CF_ID_LEN + 1];
	cf_suppression_rec s;
	cf_audit_result res;
	cf_finding_rec *v, f;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	add_cert(x, gone, "gone", "a", x->int_id, x->now - 100 * DAY, x->now - DAY);
	memset(&s, 0, sizeof(s));
	snprintf(s.check, sizeof(s.check), "DEVICE_CERTIFICATE_EXPIRING_CHECK");
	memcpy(s.resource_id, gone, CF_ID_LEN + 1);
	s.until = x->now - 10; /* in the past: refused */
	assert_int_equal(cf_store_suppression_set(x->st, &s), CF_EINVAL);
	s.until = 0;           /* forever */
	assert_int_equal(cf_store_suppression_set(x->st, &s), 0);
	v = run(x, &n, &res, "DEVICE_CERTIFICATE_EXPIRING_CHECK");
	assert_int_equal(n, 1);
	assert_true(v[0].suppressed);
	assert_int_equal(res.suppressed, 1);
	assert_int_equal(res.by_severity[CF_SEV_CRITICAL], 0);
	/* A suppressed finding is never mitigated, and the refusal is not recorded. */
	assert_int_equal(cf_mitigate_finding(x->st, &f, v[0].id), CF_ESTATE);
	free(v);
	/* Expired suppressions do not apply. */
	assert_int_equal(cf_audit_is_suppressed(&s, 1, s.check, gone, x->now), 1);
	s.until = x->now + 5;
	assert_int_equal(cf_audit_is_suppressed(&s, 1, s.check, gone, x->now + 10), 0);
	assert_int_equal(cf_audit_is_suppressed(&s, 1, "OTHER_CHECK", gone, x->now), 0);
	assert_int_equal(cf_store_suppression_remove(x->st, s.check, gone), 0);
	assert_int_equal(cf_store_suppression_remove(x->st, s.check, gone), CF_ENOTFOUND);
	v = run(x, &n, &res, "DEVICE_CERTIFICATE_EXPIRING_CHECK");
	assert_false(v[0].suppressed);
	free(v);
}

/* Claims (provisioning): disabled for misuse, ENABLED on a dead certificate; operator-disabled and healthy ones pass. */
static void
test_audit__provisioning_claims(void **state)
{
	struct fx *x = *state;
	char misuse[CF_ID_LEN + 1], dead[CF_ID_LEN + 1], manual[CF_ID_LEN + 1], ok[CF_ID_LEN + 1];
	const cf_finding_rec *f;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_store_prov_template_create(x->st, "t", "{\"namePattern\":\"d-{S}\"}"), 0);
	add_cert(x, misuse, "claim-misuse", "", x->int_id, x->now - DAY, x->now + 100 * DAY);
	add_cert(x, dead, "claim-dead", "", x->int_id, x->now - DAY, x->now + 100 * DAY);
	add_cert(x, manual, "claim-manual", "", x->int_id, x->now - DAY, x->now + 100 * DAY);
	add_cert(x, ok, "claim-ok", "", x->int_id, x->now - DAY, x->now + 100 * DAY);
	assert_int_equal(cf_store_claim_create(x->st, misuse, "t"), 0);
	assert_int_equal(cf_store_claim_create(x->st, dead, "t"), 0);
	assert_int_equal(cf_store_claim_create(x->st, manual, "t"), 0);
	assert_int_equal(cf_store_claim_create(x->st, ok, "t"), 0);
	assert_int_equal(cf_store_claim_set_status(x->st, NULL, misuse, CF_CLAIM_DISABLED,
	    "RateExceeded: more than 2 requests a minute"), 0);
	assert_int_equal(cf_store_claim_set_status(x->st, NULL, manual, CF_CLAIM_DISABLED,
	    "disabled by an operator"), 0);
	assert_int_equal(cf_store_cert_set_status(x->st, dead, CF_CERT_INACTIVE, 0), 0);
	v = run(x, &n, NULL, "PROVISIONING_CLAIM_MISUSE_CHECK");
	assert_non_null(f = find(v, n, "PROVISIONING_CLAIM_MISUSE_CHECK", misuse));
	assert_string_equal(f->reason_code, "CLAIM_DISABLED_FOR_MISUSE");
	assert_int_equal(f->severity, CF_SEV_HIGH);
	assert_non_null(f = find(v, n, "PROVISIONING_CLAIM_MISUSE_CHECK", dead));
	assert_string_equal(f->reason_code, "CLAIM_CERTIFICATE_NOT_ACTIVE");
	assert_null(find(v, n, "PROVISIONING_CLAIM_MISUSE_CHECK", manual));
	assert_null(find(v, n, "PROVISIONING_CLAIM_MISUSE_CHECK", ok));
	assert_int_equal(n, 2);
	free(v);
}

static void
test_audit__export_escapes(void **state)
{
	struct fx *x = *state;
	cf_audit_rec a;
	cf_finding_rec f;
	char *buf = NULL;
	size_t len = 0;
	FILE *m;

	(void)x;
	memset(&a, 0, sizeof(a));
	memset(&f, 0, sizeof(f));
	snprintf(a.trigger, sizeof(a.trigger), "on_demand");
	snprintf(f.check, sizeof(f.check), "CONFLICTING_CLIENT_IDS_CHECK");
	snprintf(f.resource_type, sizeof(f.resource_type), "CLIENT_ID");
	snprintf(f.resource_id, sizeof(f.resource_id), "<script>\"x\"&'");
	snprintf(f.reason_code, sizeof(f.reason_code), "CLIENT_ID_TAKEOVER");
	assert_non_null(m = open_memstream(&buf, &len));
	assert_int_equal(cf_audit_export(m, CF_AUDIT_EXPORT_HTML, &a, &f, 1), 0);
	fclose(m);
	assert_null(strstr(buf, "<script>"));
	assert_non_null(strstr(buf, "&lt;script&gt;&quot;x&quot;&amp;&#39;"));
	free(buf);
	assert_non_null(m = open_memstream(&buf, &len));
	assert_int_equal(cf_audit_export(m, CF_AUDIT_EXPORT_CSV, &a, &f, 1), 0);
	fclose(m);
	assert_non_null(strstr(buf, "\"<script>\"\"x\"\"&'\""));
	free(buf);
}

/* ---- key facts stored with each certificate (schema 7) --------------------------- */

/* A device certificate PEM for a new key ("RSA" 1024 bits, or P-256), signed by the root; *fp its SPKI fingerprint. */
static char *
device_pem(struct fx *x, int rsa1024, char fp[CF_ID_LEN + 1])
{
	EVP_PKEY *pk = rsa1024 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024) : NULL;
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	cf_key *k = NULL;
	cf_cert *c = NULL;
	char *pem = NULL;

	if (rsa1024) {
		assert_non_null(pk);
		assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
		BIO_get_mem_ptr(bio, &bm);
		assert_int_equal(cf_key_from_pem(&k, bm->data, bm->length, NULL), 0);
	} else {
		assert_int_equal(cf_key_generate(&k, CF_KEY_P256), 0);
	}
	assert_int_equal(cf_key_fingerprint(fp, k), 0);
	assert_int_equal(cf_pki_issue_tls(&c, k, "dev", NULL, 0, 30, x->root, x->key), 0);
	assert_int_equal(cf_cert_to_pem(&pem, c), 0);
	cf_cert_free(c);
	cf_key_free(k);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return pem;
}

static void
raw_sql(struct fx *x, const char *sql)
{
	sqlite3 *h = NULL;
	char *err = NULL;

	assert_int_equal(sqlite3_open(x->path, &h), SQLITE_OK);
	if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(h);
}

static size_t
count_reason(const cf_finding_rec *v, size_t n, const char *resource, const char *reason)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		k += strcmp(v[i].resource_id, resource) == 0 && strcmp(v[i].reason_code, reason) == 0;
	return k;
}

#define KEYQ_CHECKS "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK,CA_CERTIFICATE_KEY_QUALITY_CHECK"

static void
test_audit__key_facts_stored_at_insert(void **state)
{
	struct fx *x = *state;
	char weak[CF_ID_LEN + 1], bl[CF_ID_LEN + 1], weak_fp[CF_ID_LEN + 1], bl_fp[CF_ID_LEN + 1];
	char def_fp[CF_KEYQ_POLICY_FP_LEN + 1], pol_fp[CF_KEYQ_POLICY_FP_LEN + 1];
	char *weak_pem = device_pem(x, 1, weak_fp), *bl_pem = device_pem(x, 0, bl_fp);
	cf_keyq_policy *pol = NULL;
	cf_cert_rec c;
	cf_audit_result res;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_keyq_policy_fingerprint(def_fp, NULL), 0);
	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	/* Under the default policy: RSA-1024 flagged, the SPKI stored. */
	add_cert_pem(x, weak, "weak", "a", x->int_id, x->now - DAY, x->now + 20 * DAY, weak_pem);
	assert_int_equal(cf_store_cert_get(x->st, &c, weak), 0);
	assert_true(c.keyq_flags & CF_KEYQ_RSA_KEY_TOO_SHORT);
	assert_string_equal(c.spki_sha256, weak_fp);
	assert_string_equal(c.keyq_policy, def_fp);
	assert_non_null(strstr(c.keyq_detail, "1024"));
	cf_cert_rec_clear(&c);
	/* Under a configured policy with a blocklist: the blocklisted key flagged at insert. */
	assert_int_equal(cf_keyq_policy_new(&pol), 0);
	assert_int_equal(cf_keyq_policy_block(pol, bl_fp), 0);
	assert_int_equal(cf_keyq_policy_fingerprint(pol_fp, pol), 0);
	assert_string_not_equal(pol_fp, def_fp);
	assert_int_equal(cf_store_set_keyq_policy(x->st, pol), 0);
	add_cert_pem(x, bl, "bl", "a", x->int_id, x->now - DAY, x->now + 20 * DAY, bl_pem);
	assert_int_equal(cf_store_cert_get(x->st, &c, bl), 0);
	assert_int_equal(c.keyq_flags, CF_KEYQ_BLOCKLISTED);
	assert_string_equal(c.spki_sha256, bl_fp);
	assert_string_equal(c.keyq_policy, pol_fp);
	cf_cert_rec_clear(&c);
	assert_int_equal(cf_store_set_keyq_policy(x->st, NULL), 0);

	/* An audit under the default policy: weak judged by its stored facts, bl evaluated anew. */
	v = run(x, &n, &res, KEYQ_CHECKS);
	assert_int_equal(res.keyq_stored, 1);
	assert_int_equal(res.keyq_updated, 1);
	assert_int_equal(res.pem_parses, 2); /* bl, and the CAs' one PEM */
	assert_int_equal(count_reason(v, n, weak, "KEY_TOO_SMALL"), 1);
	assert_int_equal(count_reason(v, n, bl, "BLOCKLISTED_KEY"), 0);
	free(v);
	assert_int_equal(cf_store_cert_get(x->st, &c, bl), 0);
	assert_int_equal(c.keyq_flags, 0);
	assert_string_equal(c.keyq_policy, def_fp);
	assert_string_equal(c.spki_sha256, bl_fp);
	cf_cert_rec_clear(&c);
	/* The next one parses no device PEM. */
	v = run(x, &n, &res, KEYQ_CHECKS);
	assert_int_equal(res.keyq_stored, 2);
	assert_int_equal(res.keyq_updated, 0);
	assert_int_equal(res.pem_parses, 1);
	assert_int_equal(count_reason(v, n, weak, "KEY_TOO_SMALL"), 1);
	free(v);
	cf_keyq_policy_free(pol);
	free(weak_pem);
	free(bl_pem);
}

static void
test_audit__policy_change_reevaluates_once(void **state)
{
	struct fx *x = *state;
	char id[CF_ID_LEN + 1], other[CF_ID_LEN + 1], fp[CF_ID_LEN + 1], ofp[CF_ID_LEN + 1];
	char pol_fp[CF_KEYQ_POLICY_FP_LEN + 1];
	char *pem = device_pem(x, 0, fp), *opem = device_pem(x, 0, ofp);
	cf_keyq_policy *pol = NULL;
	cf_audit_opts o;
	cf_audit_result res;
	cf_finding_rec *v = NULL;
	cf_finding_filter flt = { .severity = -1 };
	cf_cert_rec c;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	add_cert_pem(x, id, "k1", "a", x->int_id, x->now - DAY, x->now + 20 * DAY, pem);
	add_cert_pem(x, other, "k2", "a", x->int_id, x->now - DAY, x->now + 20 * DAY, opem);
	v = run(x, &n, &res, KEYQ_CHECKS);
	assert_int_equal(n, 0);
	assert_int_equal(res.keyq_stored, 2);
	assert_int_equal(res.pem_parses, 1);
	free(v);
	/* The blocklist is edited: every stored fact is stale, re-evaluated in the pass, stored. */
	assert_int_equal(cf_keyq_policy_new(&pol), 0);
	assert_int_equal(cf_keyq_policy_block(pol, fp), 0);
	assert_int_equal(cf_keyq_policy_fingerprint(pol_fp, pol), 0);
	cf_audit_opts_init(&o);
	assert_int_equal(cf_audit_opts_select(&o, KEYQ_CHECKS), 0);
	o.keyq = pol;
	assert_int_equal(cf_audit_run(x->st, &res, &o), 0);
	assert_int_equal(res.cert_passes, 1);
	assert_int_equal(res.keyq_stored, 0);
	assert_int_equal(res.keyq_updated, 2);
	assert_int_equal(res.pem_parses, 3);
	flt.audit_id = res.audit_id;
	assert_int_equal(cf_store_finding_list(x->st, &v, &n, &flt), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].resource_id, id);
	assert_string_equal(v[0].reason_code, "BLOCKLISTED_KEY");
	assert_int_equal(v[0].severity, CF_SEV_CRITICAL);
	free(v);
	assert_int_equal(cf_store_cert_get(x->st, &c, id), 0);
	assert_int_equal(c.keyq_flags, CF_KEYQ_BLOCKLISTED);
	assert_string_equal(c.keyq_policy, pol_fp);
	cf_cert_rec_clear(&c);
	/* Under the same policy again: nothing parsed, the same finding from the stored flags. */
	assert_int_equal(cf_audit_run(x->st, &res, &o), 0);
	assert_int_equal(res.keyq_stored, 2);
	assert_int_equal(res.keyq_updated, 0);
	assert_int_equal(res.pem_parses, 1);
	assert_int_equal(res.by_check[CF_AUDIT_DEVICE_CERTIFICATE_KEY_QUALITY], 1);
	cf_keyq_policy_free(pol);
	free(pem);
	free(opem);
}

/* The stored flags are what the audit reports (a tampered row shows it reads them). */
static void
test_audit__stored_flags_are_used(void **state)
{
	struct fx *x = *state;
	char id[CF_ID_LEN + 1], sql[256];
	cf_audit_result res;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_store_thing_create(x->st, "a", NULL), 0);
	add_cert(x, id, "tampered", "a", x->int_id, x->now - DAY, x->now + 20 * DAY);
	cf_store_close(x->st);
	snprintf(sql, sizeof(sql), "UPDATE certificates SET keyq_flags = %u, keyq_detail = "
	    "'ROCA_VULNERABLE: stored' WHERE id = '%s'", (unsigned)CF_KEYQ_ROCA_VULNERABLE, id);
	raw_sql(x, sql);
	assert_int_equal(cf_store_open(&x->st, x->path, 0), 0);
	v = run(x, &n, &res, "DEVICE_CERTIFICATE_KEY_QUALITY_CHECK");
	assert_int_equal(res.pem_parses, 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].reason_code, "ROCA_VULNERABLE_KEY");
	assert_non_null(strstr(v[0].detail, "stored"));
	free(v);
}

/* A version 6 database (no key facts) is migrated to 7: every row backfilled, nothing else changed. */
static void
test_audit__migration_backfills_key_facts(void **state)
{
	struct fx *x = *state;
	char weak[CF_ID_LEN + 1], good[CF_ID_LEN + 1], bad[CF_ID_LEN + 1];
	char weak_fp[CF_ID_LEN + 1], def_fp[CF_KEYQ_POLICY_FP_LEN + 1];
	char *weak_pem = device_pem(x, 1, weak_fp);
	char junk[] = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
	cf_cert_rec before, c;
	cf_thing_rec t;
	cf_audit_result res;
	cf_finding_rec *v;
	size_t n;

	assert_int_equal(cf_keyq_policy_fingerprint(def_fp, NULL), 0);
	assert_int_equal(cf_store_schema_version(x->st), 7);
	assert_int_equal(cf_store_thing_create(x->st, "a", "{\"k\":\"v\"}"), 0);
	add_cert_pem(x, weak, "weak", "a", x->int_id, x->now - DAY, x->now + 20 * DAY, weak_pem);
	add_cert(x, good, "good", "a", x->int_id, x->now - DAY, x->now + 200 * DAY);
	add_cert_pem(x, bad, "bad", "", x->int_id, x->now - DAY, x->now + 200 * DAY, junk);
	assert_int_equal(cf_store_cert_set_status(x->st, good, CF_CERT_INACTIVE, 0), 0);
	assert_int_equal(cf_store_cert_get(x->st, &before, good), 0);
	cf_store_close(x->st);
	/* Back to what version 6 had. */
	raw_sql(x, "DROP INDEX certificates_spki; ALTER TABLE certificates DROP COLUMN keyq_detail; "
	    "ALTER TABLE certificates DROP COLUMN keyq_policy; ALTER TABLE certificates DROP COLUMN "
	    "keyq_flags; ALTER TABLE certificates DROP COLUMN spki_sha256; PRAGMA user_version = 6");
	assert_int_equal(cf_store_open(&x->st, x->path, CF_STORE_READONLY), CF_EINVAL);
	assert_int_equal(cf_store_open(&x->st, x->path, 0), 0);
	assert_int_equal(cf_store_schema_version(x->st), 7);
	/* Backfilled under the default policy. */
	assert_int_equal(cf_store_cert_get(x->st, &c, weak), 0);
	assert_true(c.keyq_flags & CF_KEYQ_RSA_KEY_TOO_SHORT);
	assert_string_equal(c.spki_sha256, weak_fp);
	assert_string_equal(c.keyq_policy, def_fp);
	assert_string_equal(c.pem, weak_pem);
	cf_cert_rec_clear(&c);
	/* The rest of each row as it was. */
	assert_int_equal(cf_store_cert_get(x->st, &c, good), 0);
	assert_string_equal(c.serial, before.serial);
	assert_string_equal(c.thing, before.thing);
	assert_int_equal(c.status, CF_CERT_INACTIVE);
	assert_int_equal(c.not_after, before.not_after);
	assert_int_equal(c.updated_at, before.updated_at);
	assert_string_equal(c.pem, before.pem);
	assert_string_equal(c.spki_sha256, before.spki_sha256);
	assert_int_equal(c.keyq_flags, 0);
	assert_string_equal(c.keyq_policy, def_fp);
	cf_cert_rec_clear(&c);
	cf_cert_rec_clear(&before);
	/* A PEM that does not parse keeps no facts (the migration does not fail on it). */
	assert_int_equal(cf_store_cert_get(x->st, &c, bad), 0);
	assert_string_equal(c.keyq_policy, "");
	assert_string_equal(c.spki_sha256, "");
	cf_cert_rec_clear(&c);
	assert_int_equal(cf_store_thing_get(x->st, &t, "a"), 0);
	assert_non_null(strstr(t.attributes, "\"k\""));
	cf_thing_rec_clear(&t);
	/* The audit reads the backfilled facts: only the CAs' PEM is parsed. */
	assert_int_equal(cf_store_cert_set_status(x->st, bad, CF_CERT_INACTIVE, 0), 0);
	v = run(x, &n, &res, KEYQ_CHECKS);
	assert_int_equal(res.pem_parses, 1);
	assert_int_equal(res.keyq_stored, 1);
	assert_int_equal(count_reason(v, n, weak, "KEY_TOO_SMALL"), 1);
	free(v);
	free(weak_pem);
}

/* ---- schedule ---------------------------------------------------------------------------- */

/* 2026-11-23 (a Monday) 13:25:10 UTC. */
#define MON_1325 ((int64_t)1795440310)

static void
test_audit__schedule_parse(void **state)
{
	cf_audit_schedule s;

	(void)state;
	assert_int_equal(cf_audit_schedule_parse(&s, "daily@02:30"), 0);
	assert_int_equal(s.kind, CF_AUDIT_SCHED_DAILY);
	assert_int_equal(s.hour, 2);
	assert_int_equal(s.minute, 30);
	assert_int_equal(cf_audit_schedule_parse(&s, "weekly@Sun@03:00"), 0);
	assert_int_equal(s.kind, CF_AUDIT_SCHED_WEEKLY);
	assert_int_equal(s.wday, 0);
	assert_int_equal(cf_audit_schedule_parse(&s, "weekly@friday@23:59"), 0);
	assert_int_equal(s.wday, 5);
	assert_int_equal(cf_audit_schedule_parse(&s, "monthly@28@00:00"), 0);
	assert_int_equal(s.mday, 28);
	assert_int_equal(cf_audit_schedule_parse(&s, "off"), 0);
	assert_int_equal(s.kind, CF_AUDIT_SCHED_OFF);
}

static void
test_audit__schedule_parse_refuses_malformed(void **state)
{
	static const char *const bad[] = { "daily", "daily@24:00", "daily@2:30", "daily@02:60",
		"daily@ 2:30", "daily@02:30x", "weekly@monkey@01:00", "weekly@01:00", "monthly@29@01:00",
		"monthly@0@01:00", "monthly@x@01:00", "hourly@01:00", "DAILY@01:00" };
	cf_audit_schedule s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(cf_audit_schedule_parse(&s, bad[i]), CF_EINVAL);
		assert_non_null(strstr(cf_error_last(), "audit_schedule"));
	}
}

static void
test_audit__schedule_prev_slot(void **state)
{
	cf_audit_schedule s;
	int64_t day0 = MON_1325 - (13 * 3600 + 25 * 60 + 10);

	(void)state;
	assert_int_equal(cf_audit_schedule_parse(&s, "daily@02:30"), 0);
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), day0 + 2 * 3600 + 30 * 60);
	assert_int_equal(cf_audit_schedule_parse(&s, "daily@13:26"), 0); /* later today: yesterday's */
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), day0 - 86400 + 13 * 3600 + 26 * 60);
	assert_int_equal(cf_audit_schedule_parse(&s, "daily@13:25"), 0); /* this very minute */
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), day0 + 13 * 3600 + 25 * 60);
	assert_int_equal(cf_audit_schedule_parse(&s, "weekly@mon@13:00"), 0);
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), day0 + 13 * 3600);
	assert_int_equal(cf_audit_schedule_parse(&s, "weekly@mon@14:00"), 0); /* last week's */
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), day0 - 7 * 86400 + 14 * 3600);
	assert_int_equal(cf_audit_schedule_parse(&s, "weekly@sun@03:00"), 0);
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), day0 - 86400 + 3 * 3600);
	assert_int_equal(cf_audit_schedule_parse(&s, "monthly@1@04:00"), 0); /* 2026-11-01 */
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), (int64_t)1793491200 + 4 * 3600);
	assert_int_equal(cf_audit_schedule_parse(&s, "monthly@28@00:00"), 0); /* 2026-10-28 */
	assert_int_equal(cf_audit_schedule_prev(&s, MON_1325), (int64_t)1793145600);
}

static void
test_audit__schedule_due_neither_skips_nor_doubles(void **state)
{
	cf_audit_schedule s;
	int64_t slot;

	(void)state;
	assert_int_equal(cf_audit_schedule_parse(&s, "daily@13:00"), 0);
	slot = cf_audit_schedule_prev(&s, MON_1325);
	/* Ran at the slot: not again today, even after a restart (last_run from the store). */
	assert_int_equal(cf_audit_schedule_due(&s, slot + 2, MON_1325), 0);
	assert_int_equal(cf_audit_schedule_due(&s, slot + 2, slot + 86400 - 1), 0);
	assert_int_equal(cf_audit_schedule_due(&s, slot + 2, slot + 86400), 1);
	/* Down over the slot (last run yesterday): due once on start, then not again. */
	assert_int_equal(cf_audit_schedule_due(&s, slot - 86400 + 5, MON_1325), 1);
	assert_int_equal(cf_audit_schedule_due(&s, MON_1325, MON_1325 + 1), 0);
	/* Down over three slots: still one run. */
	assert_int_equal(cf_audit_schedule_due(&s, slot - 3 * 86400, MON_1325), 1);
	assert_int_equal(cf_audit_schedule_due(&s, MON_1325, MON_1325 + 60), 0);
	s.kind = CF_AUDIT_SCHED_INTERVAL;
	s.interval = 60;
	assert_int_equal(cf_audit_schedule_due(&s, 1000, 1059), 0);
	assert_int_equal(cf_audit_schedule_due(&s, 1000, 1060), 1);
	s.kind = CF_AUDIT_SCHED_OFF;
	assert_int_equal(cf_audit_schedule_due(&s, 0, MON_1325), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_audit__table_is_complete),
		cmocka_unit_test(test_audit__schedule_parse),
		cmocka_unit_test(test_audit__schedule_parse_refuses_malformed),
		cmocka_unit_test(test_audit__schedule_prev_slot),
		cmocka_unit_test(test_audit__schedule_due_neither_skips_nor_doubles),
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_audit__expiring_expired_and_fresh),
		T(test_audit__age),
		T(test_audit__revoked_intermediate),
		T(test_audit__ca_expiring),
		T(test_audit__things_unattached_and_one_pass),
		T(test_audit__connections),
		T(test_audit__policy_file),
		T(test_audit__suppression_semantics),
		T(test_audit__export_escapes),
		T(test_audit__provisioning_claims),
		T(test_audit__key_facts_stored_at_insert),
		T(test_audit__policy_change_reevaluates_once),
		T(test_audit__stored_flags_are_used),
		T(test_audit__migration_backfills_key_facts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
