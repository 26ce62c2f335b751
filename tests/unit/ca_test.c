/*
 * Unit tests for cf_ca: the data directory, the CA ceremonies, issuance,
 * revocation with CRLs, and the all-or-nothing thing creation.
 */
#define _GNU_SOURCE /* asprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cf_ca.h"
#include "cf_util.h"

#define ROOT_PASS "correct horse battery staple"

static char base[64], dir[128];

static int
setup(void **state)
{
	cf_ca_init_opts o;

	(void)state;
	snprintf(base, sizeof(base), "/tmp/cf-ca-XXXXXX");
	if (mkdtemp(base) == NULL)
		return -1;
	snprintf(dir, sizeof(dir), "%s/data", base);
	cf_ca_init_opts_default(&o);
	if (cf_ca_init(dir, &o, ROOT_PASS, NULL) != 0) {
		/* cmocka skips teardown when setup fails: leave no directory behind. */
		print_error("setup: %s\n", cf_error_last());
		cf_rmtree(base);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	return cf_rmtree(base);
}

static char *
path_in(const char *rel)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return p;
}

static cf_ca *
open_ca(void)
{
	cf_ca *ca = NULL;

	assert_int_equal(cf_ca_open(&ca, dir), 0);
	return ca;
}

/* A fresh P-256 key and its CSR for thing. */
static char *
make_csr(const char *thing, cf_key **key_out)
{
	cf_key *key = NULL;
	char *csr = NULL;

	assert_int_equal(cf_key_generate(&key, CF_KEY_P256), 0);
	assert_int_equal(cf_csr_create(&csr, key, CF_SIG_ECDSA_SHA256, thing), 0);
	if (key_out)
		*key_out = key;
	else
		cf_key_free(key);
	return csr;
}

static void
test_ca__init_layout(void **state)
{
	struct stat st;
	char *pem = NULL;

	(void)state;
	assert_int_equal(stat(path_in("private"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(path_in("private/issuing-1.pass"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(path_in("ca/root.key"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(access(path_in("crl/root.crl.pem"), F_OK), 0);
	assert_int_equal(access(path_in("crl/issuing-1.crl.pem"), F_OK), 0);
	assert_int_equal(access(path_in("ca-chain.crt"), F_OK), 0);
	assert_int_equal(cf_file_read(&pem, NULL, path_in("ca/root.key"), 65536), 0);
	assert_non_null(strstr(pem, "BEGIN ENCRYPTED PRIVATE KEY"));
	free(pem);
	assert_int_equal(cf_file_read(&pem, NULL, path_in("certfleet.conf"), 65536), 0);
	assert_null(strstr(pem, ROOT_PASS));
	free(pem);
}

static void
test_ca__init_refuses_nonempty_and_leaves_it_alone(void **state)
{
	cf_ca_init_opts o;
	char *before = NULL, *after = NULL;

	(void)state;
	cf_ca_init_opts_default(&o);
	assert_int_equal(cf_file_read(&before, NULL, path_in("ca/root.crt"), 65536), 0);
	assert_int_equal(cf_ca_init(dir, &o, ROOT_PASS, NULL), CF_EEXISTS);
	assert_int_equal(cf_file_read(&after, NULL, path_in("ca/root.crt"), 65536), 0);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void
test_ca__init_bad_name_creates_nothing(void **state)
{
	cf_ca_init_opts o;
	char other[128];

	(void)state;
	cf_ca_init_opts_default(&o);
	o.intermediate_name = "root";
	snprintf(other, sizeof(other), "%s/other", base);
	assert_int_equal(cf_ca_init(other, &o, ROOT_PASS, NULL), CF_EINVAL);
	assert_int_equal(access(other, F_OK), -1);
	o.intermediate_name = "bad name";
	assert_int_equal(cf_ca_init(other, &o, ROOT_PASS, NULL), CF_EINVAL);
	assert_int_equal(access(other, F_OK), -1);
}

static void
test_ca__open_missing_dir_and_unknown_config_key(void **state)
{
	cf_ca *ca = NULL;
	char *conf = NULL, *bad = NULL;
	size_t len;

	(void)state;
	assert_int_equal(cf_ca_open(&ca, "/nonexistent/certfleet"), CF_ENOTFOUND);
	assert_int_equal(cf_file_read(&conf, &len, path_in("certfleet.conf"), 65536), 0);
	assert_int_equal(asprintf(&bad, "%sdatabse = x\n", conf) > 0, 1);
	assert_int_equal(cf_file_write_atomic(path_in("certfleet.conf"), bad, strlen(bad), 0600), 0);
	assert_int_equal(cf_ca_open(&ca, dir), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "unknown key 'databse'"));
	free(conf);
	free(bad);
}

static void
test_ca__issue_verifies_with_chain(void **state)
{
	cf_ca *ca = open_ca();
	cf_cert_rec rec;
	cf_cert *leaf = NULL, **chain = NULL;
	cf_key *key = NULL;
	char *csr = make_csr("sensor-1", &key), *chain_pem = NULL;
	size_t n = 0;

	(void)state;
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL), 0);
	assert_int_equal(cf_ca_issue_csr(ca, &rec, csr, strlen(csr), "sensor-1", 30), 0);
	assert_int_equal(rec.status, CF_CERT_ACTIVE);
	assert_string_equal(rec.key_alg, "ECDSA-P256");
	assert_true(rec.not_after - rec.not_before >= 30 * 86400);
	assert_true(rec.not_after - rec.not_before <= 30 * 86400 + 600);
	assert_int_equal(cf_cert_parse(&leaf, rec.pem, strlen(rec.pem)), 0);
	assert_true(cf_cert_matches_key(leaf, key));
	assert_int_equal(cf_ca_chain_pem(ca, &chain_pem), 0);
	assert_int_equal(cf_cert_parse_bundle(&chain, &n, chain_pem, strlen(chain_pem)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(cf_pki_verify_chain(leaf, chain, 1, chain + 1, 1, NULL, 0, 1), 0);
	cf_cert_list_free(chain, n);
	cf_cert_free(leaf);
	cf_key_free(key);
	free(chain_pem);
	free(csr);
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
}

/* A fresh RSA-1024 key (cf_key_generate makes none that weak). */
static cf_key *
rsa_1024(void)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	cf_key *k = NULL;

	assert_non_null(pk);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
	BIO_get_mem_ptr(bio, &bm);
	assert_int_equal(cf_key_from_pem(&k, bm->data, bm->length, NULL), 0);
	EVP_PKEY_free(pk);
	BIO_free(bio);
	return k;
}

/* The stored key facts of id equal what the PEM path computes from the stored PEM under p. */
static void
assert_facts_from_pem(cf_store *st, const char *id, const cf_keyq_policy *p, const char *what)
{
	char fp[CF_KEYQ_POLICY_FP_LEN + 1];
	cf_cert_keyq kq;
	cf_cert_rec rec;

	memset(&rec, 0, sizeof(rec));
	assert_int_equal(cf_store_cert_get(st, &rec, id), 0);
	assert_int_equal(cf_keyq_policy_fingerprint(fp, p), 0);
	assert_int_equal(cf_cert_keyq_compute(&kq, rec.pem, p, fp), 0);
	if (strcmp(rec.spki_sha256, kq.spki_sha256) != 0 || rec.keyq_flags != kq.keyq_flags ||
	    strcmp(rec.keyq_policy, kq.keyq_policy) != 0 ||
	    strcmp(rec.keyq_detail ? rec.keyq_detail : "", kq.keyq_detail ? kq.keyq_detail : "") != 0)
		fail_msg("%s: stored %s %#x %s '%s', from the PEM %s %#x %s '%s'", what,
		    rec.spki_sha256, rec.keyq_flags, rec.keyq_policy,
		    rec.keyq_detail ? rec.keyq_detail : "", kq.spki_sha256, kq.keyq_flags,
		    kq.keyq_policy, kq.keyq_detail ? kq.keyq_detail : "");
	assert_int_equal(strlen(rec.spki_sha256), CF_ID_LEN);
	free(kq.keyq_detail);
	cf_cert_rec_clear(&rec);
}

/*
 * The CA hands the store the certificate it built (cf_store_cert_insert_parsed):
 * the key facts stored for every key algorithm it issues must be those the
 * PEM gives. Weak keys never pass the CA's CSR check, so they go through
 * the store directly, under a policy that flags them and blocks a key.
 */
static void
test_ca__stored_key_facts_match_pem_path(void **state)
{
	static const struct { cf_key_alg alg; cf_sig_alg sig; } algs[] = {
		{ CF_KEY_RSA2048, CF_SIG_SHA256_RSA }, { CF_KEY_RSA3072, CF_SIG_SHA256_RSA },
		{ CF_KEY_P256, CF_SIG_ECDSA_SHA256 }, { CF_KEY_P384, CF_SIG_ECDSA_SHA384 },
		{ CF_KEY_P521, CF_SIG_ECDSA_SHA512 }, { CF_KEY_ED25519, CF_SIG_ED25519 },
	};
	cf_ca *ca = open_ca();
	cf_store *st = cf_ca_store(ca);
	cf_key *key = NULL, *root_key = NULL, *weak = NULL;
	cf_cert *root = NULL, *cert = NULL;
	cf_csr *csr = NULL;
	cf_cert_rec rec, got;
	cf_cert_info info;
	cf_ca_rec issuer;
	cf_keyq_policy *strict = NULL;
	char *csr_pem = NULL, thing[32], fp[CF_ID_LEN + 1];
	size_t i;

	(void)state;
	memset(&rec, 0, sizeof(rec));
	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		snprintf(thing, sizeof(thing), "facts-%zu", i);
		assert_int_equal(cf_store_thing_create(st, thing, NULL), 0);
		assert_int_equal(cf_key_generate(&key, algs[i].alg), 0);
		assert_int_equal(cf_csr_create(&csr_pem, key, algs[i].sig, thing), 0);
		assert_int_equal(cf_ca_issue_csr(ca, &rec, csr_pem, strlen(csr_pem), thing, 0), 0);
		assert_facts_from_pem(st, rec.id, NULL, cf_key_alg_name(algs[i].alg));
		/* ... and they are the key's: its fingerprint, clean under the default policy. */
		assert_int_equal(cf_key_fingerprint(fp, key), 0);
		assert_int_equal(cf_store_cert_get(st, &got, rec.id), 0);
		assert_string_equal(got.spki_sha256, fp);
		assert_int_equal(got.keyq_flags, 0);
		assert_null(got.keyq_detail);
		cf_cert_rec_clear(&got);
		cf_cert_rec_clear(&rec);
		cf_key_free(key);
		free(csr_pem);
		key = NULL;
		csr_pem = NULL;
	}
	/* An RSA-1024 key and a blocked P-256 key, issued outside the CA's checks. */
	assert_int_equal(cf_keyq_policy_new(&strict), 0);
	assert_int_equal(cf_key_generate(&root_key, CF_KEY_P256), 0);
	assert_int_equal(cf_pki_make_root(&root, root_key, "facts root", 30), 0);
	assert_int_equal(cf_store_ca_get_issuer(st, &issuer), 0);
	for (i = 0; i < 2; i++) {
		if (i == 0) {
			weak = rsa_1024();
		} else {
			assert_int_equal(cf_key_generate(&weak, CF_KEY_P256), 0);
			assert_int_equal(cf_key_fingerprint(fp, weak), 0);
			assert_int_equal(cf_keyq_policy_block(strict, fp), 0);
		}
		assert_int_equal(cf_store_set_keyq_policy(st, strict), 0);
		assert_int_equal(cf_csr_create(&csr_pem, weak, i == 0 ? CF_SIG_SHA256_RSA :
		    CF_SIG_ECDSA_SHA256, "facts-0"), 0);
		assert_int_equal(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)), 0);
		assert_int_equal(cf_csr_verify(csr), 0);
		assert_int_equal(cf_pki_issue_device(&cert, csr, "facts-0", 1, 0, root, root_key), 0);
		assert_int_equal(cf_cert_info_get(&info, cert), 0);
		memcpy(rec.id, info.id, sizeof(rec.id));
		memcpy(rec.serial, info.serial, sizeof(rec.serial));
		memcpy(rec.ca_id, issuer.id, sizeof(rec.ca_id));
		rec.status = CF_CERT_INACTIVE;
		rec.not_before = info.not_before;
		rec.not_after = info.not_after;
		snprintf(rec.key_alg, sizeof(rec.key_alg), "%s", info.key.type);
		snprintf(rec.sig_alg, sizeof(rec.sig_alg), "%s", info.sig_alg);
		assert_int_equal(cf_cert_to_pem(&rec.pem, cert), 0);
		assert_int_equal(cf_store_cert_insert_parsed(st, &rec, cert), 0);
		assert_facts_from_pem(st, rec.id, strict, i == 0 ? "RSA-1024" : "blocked P-256");
		assert_int_equal(cf_store_cert_get(st, &got, rec.id), 0);
		assert_int_equal(got.keyq_flags,
		    i == 0 ? CF_KEYQ_RSA_KEY_TOO_SHORT : CF_KEYQ_BLOCKLISTED);
		assert_non_null(got.keyq_detail);
		cf_cert_rec_clear(&got);
		cf_cert_rec_clear(&rec);
		cf_cert_free(cert);
		cf_csr_free(csr);
		cf_key_free(weak);
		free(csr_pem);
		cert = NULL;
		csr = NULL;
		weak = NULL;
		csr_pem = NULL;
	}
	assert_int_equal(cf_store_set_keyq_policy(st, NULL), 0);
	cf_keyq_policy_free(strict);
	cf_ca_rec_clear(&issuer);
	cf_cert_free(root);
	cf_key_free(root_key);
	cf_ca_close(ca);
}

static void
test_ca__issue_refuses_other_subject_and_garbage(void **state)
{
	cf_ca *ca = open_ca();
	char *csr = make_csr("sensor-2", NULL);
	cf_cert_rec *list = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL), 0);
	assert_int_equal(cf_ca_issue_csr(ca, NULL, csr, strlen(csr), "sensor-1", 0), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "sensor-2"));
	assert_int_equal(cf_ca_issue_csr(ca, NULL, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", 40,
	    "sensor-1", 0), CF_EINVAL);
	assert_int_equal(cf_store_cert_list(cf_ca_store(ca), &list, &n, NULL), 0);
	assert_int_equal(n, 0);
	free(csr);
	cf_ca_close(ca);
}

/* Issuance from a parsed CSR still makes every check; an unverified CSR is verified. */
static void
test_ca__issue_parsed_checks_everything(void **state)
{
	cf_ca *ca = open_ca();
	char *csr_pem = make_csr("sensor-1", NULL), *end, *p;
	cf_csr *csr = NULL, *bad = NULL;
	cf_cert_rec rec, *list = NULL;
	size_t n = 0;

	(void)state;
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL), 0);
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-2", NULL), 0);
	assert_int_equal(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)), 0);
	assert_int_equal(cf_ca_issue_parsed(ca, NULL, csr, "sensor-2", 1, CF_CERT_ACTIVE, 0),
	    CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "sensor-1"));
	assert_int_equal(cf_ca_issue_parsed(ca, &rec, csr, "sensor-1", 0,
	    CF_CERT_PENDING_ACTIVATION, 0), 0);
	assert_string_equal(rec.thing, "");
	assert_int_equal(rec.status, CF_CERT_PENDING_ACTIVATION);
	/* The signature's last bytes changed: parsed, and refused at issuance. */
	end = strstr(csr_pem, "\n-----END");
	assert_non_null(end);
	p = end - 5;
	*p = *p == 'A' ? 'B' : 'A';
	assert_int_equal(cf_csr_parse(&bad, csr_pem, strlen(csr_pem)), 0);
	assert_int_equal(cf_ca_issue_parsed(ca, NULL, bad, "sensor-1", 1, CF_CERT_ACTIVE, 0),
	    CF_EREJECTED);
	assert_int_equal(cf_store_cert_list(cf_ca_store(ca), &list, &n, NULL), 0);
	assert_int_equal(n, 1);
	for (size_t i = 0; i < n; i++)
		cf_cert_rec_clear(&list[i]);
	free(list);
	cf_cert_rec_clear(&rec);
	cf_csr_free(csr);
	cf_csr_free(bad);
	free(csr_pem);
	cf_ca_close(ca);
}

static void
test_ca__configured_root_key_is_refused(void **state)
{
	cf_ca *ca = NULL;
	char *conf = NULL, *bad = NULL, *csr = make_csr("sensor-1", NULL);

	(void)state;
	assert_int_equal(cf_file_read(&conf, NULL, path_in("certfleet.conf"), 65536), 0);
	assert_int_equal(asprintf(&bad, "%sissuer_key = ca/root.key\n", conf) > 0, 1);
	assert_int_equal(cf_file_write_atomic(path_in("certfleet.conf"), bad, strlen(bad), 0600), 0);
	ca = open_ca();
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL), 0);
	assert_int_equal(cf_ca_issue_csr(ca, NULL, csr, strlen(csr), "sensor-1", 0), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "root CA"));
	cf_ca_close(ca);
	free(conf);
	free(bad);
	free(csr);
}

static void
test_ca__root_cannot_become_issuer(void **state)
{
	cf_ca *ca = open_ca();
	cf_ca_rec issuer;

	(void)state;
	assert_int_equal(cf_ca_set_issuer(ca, "root"), CF_EREJECTED);
	assert_int_equal(cf_store_ca_get_issuer(cf_ca_store(ca), &issuer), 0);
	assert_string_equal(issuer.name, "issuing-1");
	cf_ca_rec_clear(&issuer);
	cf_ca_close(ca);
}

static void
test_ca__revoke_cert_updates_crl(void **state)
{
	cf_ca *ca = open_ca();
	cf_cert_rec rec, got;
	cf_cert *leaf = NULL, **chain = NULL;
	char *csr = make_csr("sensor-1", NULL), *chain_pem = NULL, *crl = NULL;
	size_t n = 0;

	(void)state;
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL), 0);
	assert_int_equal(cf_ca_issue_csr(ca, &rec, csr, strlen(csr), "sensor-1", 0), 0);
	assert_int_equal(cf_ca_revoke_cert(ca, rec.id, 1), 0);
	assert_int_equal(cf_store_cert_get(cf_ca_store(ca), &got, rec.id), 0);
	assert_int_equal(got.status, CF_CERT_REVOKED);
	assert_int_equal(got.revoke_reason, 1);
	cf_cert_rec_clear(&got);
	assert_int_equal(cf_file_read(&crl, NULL, path_in("crl/issuing-1.crl.pem"), 1 << 20), 0);
	assert_int_equal(cf_ca_chain_pem(ca, &chain_pem), 0);
	assert_int_equal(cf_cert_parse_bundle(&chain, &n, chain_pem, strlen(chain_pem)), 0);
	assert_int_equal(cf_cert_parse(&leaf, rec.pem, strlen(rec.pem)), 0);
	assert_int_equal(cf_pki_verify_chain(leaf, chain, 1, chain + 1, 1, NULL, 0, 1), 0);
	assert_int_equal(cf_pki_verify_chain(leaf, chain, 1, chain + 1, 1, crl, 0, 1), CF_EREJECTED);
	/* Revoking again is a no-op, never an error. */
	assert_int_equal(cf_ca_revoke_cert(ca, rec.id, 1), 0);
	assert_int_equal(cf_store_cert_set_status(cf_ca_store(ca), rec.id, CF_CERT_ACTIVE, 0), CF_ESTATE);
	cf_cert_list_free(chain, n);
	cf_cert_free(leaf);
	free(chain_pem);
	free(crl);
	free(csr);
	cf_cert_rec_clear(&rec);
	cf_ca_close(ca);
}

static void
test_ca__intermediate_ceremonies(void **state)
{
	cf_ca *ca = open_ca();
	cf_ca_rec rec, issuer;
	char *crl = NULL, *csr = make_csr("sensor-1", NULL);

	(void)state;
	memset(&rec, 0, sizeof(rec));
	/* A wrong root passphrase leaves neither files nor a registry row. */
	assert_int_equal(cf_ca_create_intermediate(ca, &rec, "issuing-2", CF_KEY_P384, 365,
	    "wrong passphrase", NULL, 1), CF_EPASS);
	assert_int_equal(access(path_in("ca/issuing-2.key"), F_OK), -1);
	assert_int_equal(access(path_in("private/issuing-2.pass"), F_OK), -1);
	assert_int_equal(cf_store_ca_get(cf_ca_store(ca), &rec, "issuing-2"), CF_ENOTFOUND);

	assert_int_equal(cf_ca_create_intermediate(ca, &rec, "issuing-2", CF_KEY_P384, 365,
	    ROOT_PASS, NULL, 1), 0);
	assert_string_equal(rec.key_alg, "ECDSA-P384");
	cf_ca_rec_clear(&rec);
	assert_int_equal(cf_ca_create_intermediate(ca, &rec, "issuing-2", CF_KEY_P256, 365,
	    ROOT_PASS, NULL, 0), CF_EEXISTS);
	assert_int_equal(cf_store_ca_get_issuer(cf_ca_store(ca), &issuer), 0);
	assert_string_equal(issuer.name, "issuing-2");

	/* The root revokes the old intermediate: the root's CRL lists it. */
	assert_int_equal(cf_store_ca_get(cf_ca_store(ca), &rec, "issuing-1"), 0);
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 2, NULL), CF_EINVAL);
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 2, "wrong passphrase"), CF_EPASS);
	assert_int_equal(cf_ca_revoke_ca(ca, "issuing-1", 2, ROOT_PASS), 0);
	assert_int_equal(cf_ca_revoke_ca(ca, "root", 2, ROOT_PASS), CF_EINVAL);
	assert_int_equal(cf_file_read(&crl, NULL, path_in("crl/root.crl.pem"), 1 << 20), 0);
	cf_ca_rec_clear(&rec);
	assert_int_equal(cf_store_ca_get(cf_ca_store(ca), &rec, "issuing-1"), 0);
	assert_int_equal(rec.status, CF_CERT_REVOKED);
	/* Revoked intermediates cannot become the issuer again. */
	assert_int_not_equal(cf_ca_set_issuer(ca, "issuing-1"), 0);
	/* Issuance goes on with the new issuer. */
	assert_int_equal(cf_store_thing_create(cf_ca_store(ca), "sensor-1", NULL), 0);
	assert_int_equal(cf_ca_issue_csr(ca, NULL, csr, strlen(csr), "sensor-1", 0), 0);
	cf_ca_rec_clear(&rec);
	cf_ca_rec_clear(&issuer);
	free(crl);
	free(csr);
	cf_ca_close(ca);
}

static void
test_ca__thing_create_is_all_or_nothing(void **state)
{
	cf_ca *ca = open_ca();
	cf_ca_thing_opts o;
	cf_thing_rec t;
	cf_cert_rec rec;
	const char *groups[] = { "no-such-group" };
	char bundle[256], keypath[300];
	struct stat st;

	(void)state;
	memset(&o, 0, sizeof(o));
	memset(&rec, 0, sizeof(rec));
	snprintf(bundle, sizeof(bundle), "%s/bundle", base);
	o.name = "sensor-9";
	o.key_alg = CF_KEY_ED25519;
	o.sig_alg = CF_SIG_ED25519;
	o.bundle_dir = bundle;
	o.groups = groups;
	o.n_groups = 1;
	assert_int_equal(cf_ca_thing_create(ca, NULL, &o), CF_ENOTFOUND);
	assert_int_equal(cf_store_thing_get(cf_ca_store(ca), &t, "sensor-9"), CF_ENOTFOUND);
	assert_int_equal(access(bundle, F_OK), -1);

	o.n_groups = 0;
	assert_int_equal(cf_ca_thing_create(ca, &rec, &o), 0);
	assert_string_equal(rec.key_alg, "ED25519");
	snprintf(keypath, sizeof(keypath), "%s/device.key", bundle);
	assert_int_equal(stat(keypath, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	cf_cert_rec_clear(&rec);
	/* The same name again: refused, and the existing bundle is untouched. */
	assert_int_equal(cf_ca_thing_create(ca, NULL, &o), CF_EEXISTS);
	o.name = "sensor-10";
	assert_int_equal(cf_ca_thing_create(ca, NULL, &o), CF_EEXISTS); /* bundle dir not empty */
	assert_int_equal(cf_store_thing_get(cf_ca_store(ca), &t, "sensor-10"), CF_ENOTFOUND);
	cf_ca_close(ca);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ca__init_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__init_refuses_nonempty_and_leaves_it_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__init_bad_name_creates_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__open_missing_dir_and_unknown_config_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__issue_verifies_with_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__stored_key_facts_match_pem_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__issue_refuses_other_subject_and_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__issue_parsed_checks_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__configured_root_key_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__root_cannot_become_issuer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__revoke_cert_updates_crl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__intermediate_ceremonies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca__thing_create_is_all_or_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
