/*
 * audit_bench — the full certificate audit against a raw SQLite scan of the
 * same certificates table, in one run (bench/audit-bench drives it).
 *
 *   audit_bench DB ROWS [DISTINCT CACHE]
 *                          builds DB with ROWS certificates (and things),
 *                          then times the raw scan and cf_audit_run, and
 *                          prints raw_s, audit_s and ratio=audit/raw.
 *
 * Without DISTINCT, rows reuse 4 real certificate PEMs (ECDSA P-256/P-384
 * and RSA-2048 keys). With DISTINCT (> 0), rows cycle through DISTINCT
 * different certificates signed by one test root: 7 in 8 with their own
 * P-256 key, 1 in 8 RSA-2048 (distinct certificates over a pool of 64 RSA
 * keys: generating a fresh RSA key per row would take hours; the audit's
 * cost per certificate is the same). The set is generated once into CACHE
 * (root PEM first, then the device PEMs) and read back on later runs;
 * generation is outside the timed region. Every row has distinct ids,
 * serials, things and dates; 1% expire within 30 days. The bulk insert
 * uses SQLite directly: one transaction, prepared statements, each row
 * with the key facts cf_store_cert_insert would store (computed once per
 * distinct PEM, outside the timed region, and cached next to CACHE under
 * the default policy's fingerprint).
 *
 * CF_BENCH_REEVAL=1 also times an audit under a changed key policy (one
 * blocklisted fingerprint that matches nothing: every row's stored facts
 * are stale, so every PEM is parsed again and its facts rewritten), then
 * one more under that policy (current again).
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "cf_audit.h"
#include "cf_pki.h"
#include "cf_pki_int.h"
#include "cf_store.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	fprintf(stderr, "audit_bench: %s: %s\n", what, cf_error_last());
	exit(1);
}

static void
sq(sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "audit_bench: %s: %s\n", what, sqlite3_errmsg(db));
		exit(1);
	}
}

#define CACHE_MAGIC "certfleet-audit-bench-1\n"
#define RSA_POOL 64

/* Writes one length-prefixed record. */
static void
put_rec(FILE *f, const char *s)
{
	uint32_t len = (uint32_t)strlen(s);

	if (fwrite(&len, sizeof(len), 1, f) != 1 || fwrite(s, 1, len, f) != len) {
		fprintf(stderr, "audit_bench: cannot write the cache\n");
		exit(1);
	}
}

/* Reads one length-prefixed record (malloc()ed), or NULL at the end. */
static char *
get_rec(FILE *f)
{
	uint32_t len;
	char *s;

	if (fread(&len, sizeof(len), 1, f) != 1 || len > (1u << 20) || (s = malloc(len + 1)) == NULL)
		return NULL;
	if (fread(s, 1, len, f) != len) {
		free(s);
		return NULL;
	}
	s[len] = '\0';
	return s;
}

/*
 * A minimal client certificate for pub, signed by the root (OpenSSL
 * directly: cf_pki_issue_tls does checks a bulk generator need not repeat).
 */
static char *
quick_cert(EVP_PKEY *pub, const char *cn, const cf_cert *root, const cf_key *rk)
{
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	unsigned char sn[16];
	BIGNUM *bn = NULL;
	char *pem = NULL;
	long len;

	if (x == NULL || nm == NULL || bio == NULL || RAND_bytes(sn, sizeof(sn)) != 1)
		die("certificate");
	sn[0] &= 0x7f;
	if ((bn = BN_bin2bn(sn, sizeof(sn), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL || X509_set_version(x, 2) != 1 ||
	    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
	    0) != 1 || X509_set_subject_name(x, nm) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(root->x509)) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) == NULL ||
	    X509_set_pubkey(x, pub) != 1 || X509_sign(x, rk->pkey, EVP_sha256()) <= 0 ||
	    PEM_write_bio_X509(bio, x) != 1)
		die("certificate");
	len = BIO_get_mem_data(bio, &pem);
	pem = strndup(pem, (size_t)len);
	BN_free(bn);
	BIO_free(bio);
	X509_NAME_free(nm);
	X509_free(x);
	return pem;
}

/*
 * The distinct set: *root_pem and n device PEMs, from cache if it holds
 * exactly n, else generated (and the cache written atomically).
 */
static char **
distinct_set(char **root_pem, long n, const char *cache)
{
	char **v = calloc((size_t)n, sizeof(*v)), tmp[4096], magic[sizeof(CACHE_MAGIC)];
	cf_key *rk = NULL, *pool[RSA_POOL] = { NULL }, *k = NULL;
	cf_cert *root = NULL;
	FILE *f;
	long i, got = 0;
	double a = now_s();

	if (v == NULL)
		exit(1);
	if ((f = fopen(cache, "rb")) != NULL) {
		if (fread(magic, 1, strlen(CACHE_MAGIC), f) == strlen(CACHE_MAGIC) &&
		    memcmp(magic, CACHE_MAGIC, strlen(CACHE_MAGIC)) == 0 &&
		    (*root_pem = get_rec(f)) != NULL)
			for (got = 0; got < n && (v[got] = get_rec(f)) != NULL; got++)
				;
		fclose(f);
		if (got == n) {
			fprintf(stderr, "audit_bench: %ld distinct certificates from %s\n", n, cache);
			return v;
		}
		for (i = 0; i < got; i++)
			free(v[i]);
		free(*root_pem);
		*root_pem = NULL;
	}
	fprintf(stderr, "audit_bench: generating %ld distinct certificates into %s ...\n", n, cache);
	if (cf_key_generate(&rk, CF_KEY_P256) != 0 ||
	    cf_pki_make_root(&root, rk, "bench root", 3650) != 0 || cf_cert_to_pem(root_pem, root) != 0)
		die("root");
	for (i = 0; i < n; i++) {
		int rsa = i % 8 == 2;

		if (rsa && pool[(i / 8) % RSA_POOL] == NULL &&
		    cf_key_generate(&pool[(i / 8) % RSA_POOL], CF_KEY_RSA2048) != 0)
			die("RSA key");
		if (!rsa && cf_key_generate(&k, CF_KEY_P256) != 0)
			die("key");
		snprintf(tmp, sizeof(tmp), "device-%ld", i);
		if ((v[i] = quick_cert(rsa ? pool[(i / 8) % RSA_POOL]->pkey : k->pkey, tmp, root,
		    rk)) == NULL)
			die("device certificate");
		cf_key_free(k);
		k = NULL;
		if (i > 0 && i % 100000 == 0)
			fprintf(stderr, "audit_bench: %ld generated (%.0f s)\n", i, now_s() - a);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", cache);
	if ((f = fopen(tmp, "wb")) == NULL || fwrite(CACHE_MAGIC, 1, strlen(CACHE_MAGIC), f) !=
	    strlen(CACHE_MAGIC)) {
		fprintf(stderr, "audit_bench: cannot write %s\n", tmp);
		exit(1);
	}
	put_rec(f, *root_pem);
	for (i = 0; i < n; i++)
		put_rec(f, v[i]);
	if (fclose(f) != 0 || rename(tmp, cache) != 0) {
		fprintf(stderr, "audit_bench: cannot write %s\n", cache);
		exit(1);
	}
	fprintf(stderr, "audit_bench: generated in %.1f s\n", now_s() - a);
	for (i = 0; i < RSA_POOL; i++)
		cf_key_free(pool[i]);
	cf_cert_free(root);
	cf_key_free(rk);
	return v;
}

struct facts {
	char spki[CF_ID_LEN + 1];
	unsigned flags;
	char *detail;
};

/* The key facts of each PEM under the default policy (fp), from cache if there. */
static struct facts *
facts_set(char **pem, long n, const char *cache, const char *fp)
{
	struct facts *v = calloc((size_t)n, sizeof(*v));
	char path[4096], tmp[4200], *spki = NULL;
	cf_cert_keyq c;
	uint32_t fl;
	FILE *f;
	long i, got = 0;
	double a = now_s();

	if (v == NULL)
		exit(1);
	snprintf(path, sizeof(path), "%s.facts-%s", cache ? cache : "", fp);
	if (cache != NULL && (f = fopen(path, "rb")) != NULL) {
		for (got = 0; got < n && (spki = get_rec(f)) != NULL && strlen(spki) == CF_ID_LEN &&
		    fread(&fl, sizeof(fl), 1, f) == 1 && (v[got].detail = get_rec(f)) != NULL; got++) {
			memcpy(v[got].spki, spki, CF_ID_LEN + 1);
			v[got].flags = fl;
			free(spki);
			spki = NULL;
		}
		free(spki);
		fclose(f);
		if (got == n)
			return v;
		for (i = 0; i < n; i++)
			free(v[i].detail);
		memset(v, 0, (size_t)n * sizeof(*v));
	}
	for (i = 0; i < n; i++) {
		if (cf_cert_keyq_compute(&c, pem[i], NULL, fp) != 0)
			die("key facts");
		memcpy(v[i].spki, c.spki_sha256, sizeof(v[i].spki));
		v[i].flags = c.keyq_flags;
		if ((v[i].detail = strdup(c.keyq_detail ? c.keyq_detail : "")) == NULL)
			exit(1);
		free(c.keyq_detail);
	}
	if (cache == NULL)
		return v;
	fprintf(stderr, "audit_bench: key facts of %ld PEMs computed in %.1f s\n", n, now_s() - a);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "wb")) == NULL)
		exit(1);
	for (i = 0; i < n; i++) {
		fl = v[i].flags;
		put_rec(f, v[i].spki);
		if (fwrite(&fl, sizeof(fl), 1, f) != 1)
			exit(1);
		put_rec(f, v[i].detail);
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		exit(1);
	return v;
}

int
main(int argc, char **argv)
{
	cf_store *st = NULL;
	cf_key *rk = NULL, *dk[4] = { NULL };
	cf_cert *root = NULL, *dev[4] = { NULL };
	char *root_pem = NULL, *pem4[4] = { NULL }, **pem = pem4, id[CF_ID_LEN + 1], thing[32],
	    serial[41];
	long distinct = 0, npem = 4;
	int rsa;
	struct facts *kf;
	char fp[CF_KEYQ_POLICY_FP_LEN + 1];
	cf_keyq_policy *changed = NULL;
	cf_audit_opts o;
	double reeval_s = 0, again_s = 0;
	size_t reeval_parses = 0, reeval_updated = 0, again_parses = 0;
	cf_ca_rec ca;
	sqlite3 *db;
	sqlite3_stmt *ti, *ci, *scan;
	long rows, i;
	int64_t t0 = (int64_t)time(NULL);
	double a, raw_s, audit_s;
	size_t bytes = 0;
	cf_audit_result res;
	static const cf_key_alg algs[4] = { CF_KEY_P256, CF_KEY_P256, CF_KEY_RSA2048, CF_KEY_P384 };

	if ((argc != 3 && argc != 5) || (rows = atol(argv[2])) <= 0 ||
	    (argc == 5 && (distinct = atol(argv[3])) <= 0)) {
		fprintf(stderr, "usage: audit_bench DB ROWS [DISTINCT CACHE]\n");
		return 2;
	}
	/* The store (schema, a root CA) through the library. */
	if (cf_store_open(&st, argv[1], CF_STORE_CREATE) != 0)
		die("open");
	if (distinct > 0) {
		pem = distinct_set(&root_pem, distinct, argv[4]);
		npem = distinct;
		if (cf_cert_parse(&root, root_pem, strlen(root_pem)) != 0)
			die("root");
	} else if (cf_key_generate(&rk, CF_KEY_P256) != 0 ||
	    cf_pki_make_root(&root, rk, "bench root", 3650) != 0 || cf_cert_to_pem(&root_pem, root) != 0)
		die("root");
	memset(&ca, 0, sizeof(ca));
	if (cf_cert_fingerprint(ca.id, root) != 0)
		die("fingerprint");
	snprintf(ca.name, sizeof(ca.name), "root");
	ca.role = CF_CA_ROOT;
	ca.status = CF_CERT_ACTIVE;
	snprintf(ca.serial, sizeof(ca.serial), "01");
	ca.not_before = t0 - 86400;
	ca.not_after = t0 + 3650L * 86400;
	ca.created_at = t0;
	snprintf(ca.key_alg, sizeof(ca.key_alg), "ECDSA-P256");
	ca.key_bits = 256;
	snprintf(ca.key_ref, sizeof(ca.key_ref), "ca/root.key");
	ca.pem = root_pem;
	if (cf_store_ca_insert(st, &ca) != 0)
		die("insert CA");
	for (i = 0; i < 4 && distinct == 0; i++)
		if (cf_key_generate(&dk[i], algs[i]) != 0 ||
		    cf_pki_issue_tls(&dev[i], dk[i], "device", NULL, 0, 365, root, rk) != 0 ||
		    cf_cert_to_pem(&pem[i], dev[i]) != 0)
			die("device certificate");
	cf_store_close(st);
	if (cf_keyq_policy_fingerprint(fp, NULL) != 0)
		die("policy fingerprint");
	kf = facts_set(pem, npem, distinct > 0 ? argv[4] : NULL, fp);

	/* The bulk rows: SQLite directly, one transaction. */
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		return 1;
	sq(db, sqlite3_exec(db, "PRAGMA synchronous = OFF; BEGIN", NULL, NULL, NULL), "begin");
	sq(db, sqlite3_prepare_v2(db, "INSERT INTO things(name, attributes, created_at) VALUES (?1, '{}', ?2)",
	    -1, &ti, NULL), "prepare");
	sq(db, sqlite3_prepare_v2(db, "INSERT INTO certificates(id, serial, ca_id, thing, status, "
	    "not_before, not_after, created_at, updated_at, key_alg, key_bits, sig_alg, pem, "
	    "spki_sha256, keyq_flags, keyq_policy, keyq_detail) VALUES "
	    "(?1, ?2, ?3, ?4, 'ACTIVE', ?5, ?6, ?5, ?5, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)", -1, &ci,
	    NULL), "prepare");
	for (i = 0; i < rows; i++) {
		snprintf(thing, sizeof(thing), "dev-%08ld", i);
		snprintf(serial, sizeof(serial), "%040lx", i + 1);
		cf_sha256_hex(id, serial, strlen(serial));
		sqlite3_bind_text(ti, 1, thing, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ti, 2, t0);
		sq(db, sqlite3_step(ti), "insert thing");
		sqlite3_reset(ti);
		sqlite3_bind_text(ci, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 2, serial, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 3, ca.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 4, thing, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ci, 5, t0 - 86400 * (i % 300));
		/* 1 in 100 expires within 30 days: some findings to write. */
		sqlite3_bind_int64(ci, 6, t0 + 86400 * (i % 100 == 0 ? 10 : 200 + i % 100));
		/* The RSA ones: 1 in 4 of the reused PEMs, 1 in 8 of a distinct set. */
		rsa = distinct > 0 ? (i % npem) % 8 == 2 : i % 4 == 2;
		sqlite3_bind_text(ci, 7, rsa ? "RSA-2048" : "ECDSA-P256", -1, SQLITE_STATIC);
		sqlite3_bind_int(ci, 8, rsa ? 2048 : 256);
		sqlite3_bind_text(ci, 9, rsa ? "sha256WithRSAEncryption" : "ecdsa-with-SHA256", -1,
		    SQLITE_STATIC);
		sqlite3_bind_text(ci, 10, pem[i % npem], -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 11, kf[i % npem].spki, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ci, 12, kf[i % npem].flags);
		sqlite3_bind_text(ci, 13, fp, -1, SQLITE_STATIC);
		sqlite3_bind_text(ci, 14, kf[i % npem].detail, -1, SQLITE_STATIC);
		sq(db, sqlite3_step(ci), "insert certificate");
		sqlite3_reset(ci);
	}
	sqlite3_finalize(ti);
	sqlite3_finalize(ci);
	sq(db, sqlite3_exec(db, "COMMIT; ANALYZE", NULL, NULL, NULL), "commit");

	/* Every column the audit reads. Warm the page cache equally for both: one untimed scan. */
	sq(db, sqlite3_prepare_v2(db, "SELECT id, serial, ca_id, thing, status, not_before, "
	    "not_after, created_at, key_alg, key_bits, sig_alg, pem, keyq_flags, keyq_policy, "
	    "keyq_detail FROM certificates", -1, &scan, NULL), "prepare scan");
	for (int pass = 0; pass < 2; pass++) {
		a = now_s();
		bytes = 0;
		while (sqlite3_step(scan) == SQLITE_ROW) {
			for (int c = 0; c < 15; c++) {
				if (c == 5 || c == 6 || c == 7 || c == 9 || c == 12)
					bytes += (size_t)sqlite3_column_int64(scan, c) & 1;
				else if (sqlite3_column_text(scan, c) != NULL)
					bytes += (size_t)sqlite3_column_bytes(scan, c);
			}
		}
		sqlite3_reset(scan);
		raw_s = now_s() - a;
	}
	sqlite3_finalize(scan);
	sqlite3_close(db);

	if (cf_store_open(&st, argv[1], 0) != 0)
		die("reopen");
	a = now_s();
	if (cf_audit_run(st, &res, NULL) != 0)
		die("audit");
	audit_s = now_s() - a;
	printf("rows=%ld distinct_pems=%ld raw_bytes=%zu findings=%zu cert_passes=%zu "
	    "pem_parses=%zu keyq_stored=%zu\n", rows, npem, bytes, res.findings, res.cert_passes,
	    res.pem_parses, res.keyq_stored);
	if (getenv("CF_BENCH_REEVAL") != NULL) {
		cf_audit_opts_init(&o);
		if (cf_keyq_policy_new(&changed) != 0 ||
		    cf_keyq_policy_block(changed, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") != 0)
			die("policy");
		o.keyq = changed;
		a = now_s();
		if (cf_audit_run(st, &res, &o) != 0)
			die("audit (changed policy)");
		reeval_s = now_s() - a;
		reeval_parses = res.pem_parses;
		reeval_updated = res.keyq_updated;
		a = now_s();
		if (cf_audit_run(st, &res, &o) != 0)
			die("audit (changed policy, again)");
		again_s = now_s() - a;
		again_parses = res.pem_parses;
		cf_keyq_policy_free(changed);
		printf("policy_changed: reeval_s=%.3f pem_parses=%zu keyq_updated=%zu reeval_ratio=%.2f; "
		    "next audit: audit_s=%.3f pem_parses=%zu ratio=%.2f\n", reeval_s, reeval_parses,
		    reeval_updated, reeval_s / raw_s, again_s, again_parses, again_s / raw_s);
	}
	printf("raw_s=%.3f audit_s=%.3f ratio=%.2f\n", raw_s, audit_s, audit_s / raw_s);
	cf_store_close(st);
	for (i = 0; i < 4; i++) {
		cf_cert_free(dev[i]);
		cf_key_free(dk[i]);
	}
	for (i = 0; i < npem; i++) {
		free(pem[i]);
		free(kf[i].detail);
	}
	free(kf);
	if (pem != pem4)
		free(pem);
	cf_cert_free(root);
	cf_key_free(rk);
	free(root_pem);
	return 0;
}
