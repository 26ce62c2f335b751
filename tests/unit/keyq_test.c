/*
 * keyq_test — cf_keyq with real weak material: an RSA-1024 key, P-192 and
 * secp256k1 keys, DSA/Ed448/X25519 keys, SHA-1 and MD5 signed certificates and
 * CSRs made here with OpenSSL, public ROCA-vulnerable moduli from the ROCA
 * detector's test vectors (tests/data/roca/README.md), a blocklist file,
 * and freshly generated RSA-2048 keys as the negative control.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cf_test.h"

#include <openssl/bn.h>
#include <openssl/dsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf_keyq.h"
#include "cf_util.h"

static struct {
	cf_keyq_policy *policy;
	EVP_PKEY *ca;     /* signs the test certificates */
	EVP_PKEY *rsa2048;
	cf_key *good[3];  /* RSA-2048, P-256, Ed25519 */
	char tmpdir[64];
} g;

static const char *
data_path(const char *name)
{
	static char buf[512];
	const char *dir = getenv("CF_TEST_DATA");

	snprintf(buf, sizeof(buf), "%s/%s", dir ? dir : "tests/data", name);
	return buf;
}

static char *
slurp(const char *path)
{
	char *buf = NULL;
	size_t len;

	if (cf_file_read(&buf, &len, path, 1 << 20) != 0)
		fail_msg("%s", cf_error_last());
	return buf;
}

/* An OpenSSL key as a cf_key (through its private key PEM); consumes pkey. */
static cf_key *
wrap(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	cf_key *key = NULL;

	assert_non_null(pkey);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
	BIO_get_mem_ptr(bio, &bm);
	must(cf_key_from_pem(&key, bm->data, bm->length, NULL));
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return key;
}

/* A certificate for subject's public key signed by signer with md, as a cf_cert. */
static cf_cert *
make_cert(EVP_PKEY *subject, EVP_PKEY *signer, const EVP_MD *md)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	cf_cert *cert = NULL;

	X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)"weak", -1, -1, 0);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	assert_int_equal(X509_set_pubkey(x, subject), 1);
	assert_true(X509_sign(x, signer, md) > 0);
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	BIO_get_mem_ptr(bio, &bm);
	must(cf_cert_parse(&cert, bm->data, bm->length));
	BIO_free(bio);
	X509_NAME_free(name);
	X509_free(x);
	return cert;
}

static cf_csr *
make_csr(EVP_PKEY *pkey, const EVP_MD *md)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	cf_csr *csr = NULL;

	X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)"weak-csr", -1, -1, 0);
	X509_REQ_set_subject_name(req, name);
	X509_REQ_set_pubkey(req, pkey);
	assert_true(X509_REQ_sign(req, pkey, md) > 0);
	assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
	BIO_get_mem_ptr(bio, &bm);
	must(cf_csr_parse(&csr, bm->data, bm->length));
	must(cf_csr_verify(csr));
	BIO_free(bio);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return csr;
}

static EVP_PKEY *
read_pubkey(const char *path)
{
	char *pem = slurp(path);
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

	assert_non_null(pkey);
	BIO_free(bio);
	free(pem);
	return pkey;
}

/* A hex modulus file ("0x..." on one line) as big-endian bytes. */
static unsigned char *
read_modulus(const char *path, size_t *len)
{
	char *hex = slurp(path), *p = hex;
	BIGNUM *bn = NULL;
	unsigned char *out;

	hex[strcspn(hex, "\r\n")] = '\0';
	if (strncmp(p, "0x", 2) == 0)
		p += 2;
	assert_true(BN_hex2bn(&bn, p) > 0);
	*len = (size_t)BN_num_bytes(bn);
	out = malloc(*len);
	assert_int_equal(BN_bn2bin(bn, out), (int)*len);
	BN_free(bn);
	free(hex);
	return out;
}

static int
group_setup(void **state)
{
	(void)state;
	if (cf_keyq_policy_new(&g.policy) != 0)
		return -1;
	g.ca = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	g.rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (g.ca == NULL || g.rsa2048 == NULL ||
	    cf_key_generate(&g.good[0], CF_KEY_RSA2048) != 0 ||
	    cf_key_generate(&g.good[1], CF_KEY_P256) != 0 ||
	    cf_key_generate(&g.good[2], CF_KEY_ED25519) != 0)
		return -1;
	snprintf(g.tmpdir, sizeof(g.tmpdir), "/tmp/cf_keyq_test.XXXXXX");
	if (mkdtemp(g.tmpdir) == NULL)
		return -1;
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[128];
	int i;

	(void)state;
	cf_keyq_policy_free(g.policy);
	cf_keyq_policy_free(NULL);
	EVP_PKEY_free(g.ca);
	EVP_PKEY_free(g.rsa2048);
	for (i = 0; i < 3; i++)
		cf_key_free(g.good[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_keyq__good_keys_pass(void **state)
{
	cf_keyq_result res;
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		must(cf_keyq_check_key(&res, g.policy, g.good[i]));
		assert_int_equal(res.flags, 0);
		assert_string_equal(res.detail, "");
	}
}

static void
test_keyq__rsa_1024_too_short(void **state)
{
	cf_key *weak = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024));
	cf_keyq_policy *lax = NULL;
	cf_keyq_result res;

	(void)state;
	must(cf_keyq_check_key(&res, g.policy, weak));
	assert_int_equal(res.flags, CF_KEYQ_RSA_KEY_TOO_SHORT);
	assert_non_null(strstr(res.detail, "RSA_KEY_TOO_SHORT"));
	assert_non_null(strstr(res.detail, "1024"));
	/* A policy may lower or raise the bar, within range. */
	must(cf_keyq_policy_new(&lax));
	must(cf_keyq_policy_set_min_rsa_bits(lax, 1024));
	must(cf_keyq_check_key(&res, lax, weak));
	assert_int_equal(res.flags, 0);
	must(cf_keyq_policy_set_min_rsa_bits(lax, 3072));
	must(cf_keyq_check_key(&res, lax, g.good[0]));
	assert_int_equal(res.flags, CF_KEYQ_RSA_KEY_TOO_SHORT);
	assert_int_equal(cf_keyq_policy_set_min_rsa_bits(lax, 512), CF_EINVAL);
	assert_int_equal(cf_keyq_policy_set_min_rsa_bits(lax, 32768), CF_EINVAL);
	cf_keyq_policy_free(lax);
	cf_key_free(weak);
}

static void
test_keyq__curves_outside_policy(void **state)
{
	static const char *const bad[] = { "prime192v1", "secp256k1", "secp224r1" };
	cf_keyq_result res;
	cf_key *k;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		k = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "EC", bad[i]));
		must(cf_keyq_check_key(&res, g.policy, k));
		assert_int_equal(res.flags, CF_KEYQ_CURVE_NOT_ALLOWED);
		assert_non_null(strstr(res.detail, bad[i]));
		cf_key_free(k);
	}
}

static void
test_keyq__set_curves(void **state)
{
	cf_keyq_policy *p = NULL;
	cf_keyq_result res;
	cf_key *k1 = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1")), *p384 = NULL;

	(void)state;
	must(cf_key_generate(&p384, CF_KEY_P384));
	must(cf_keyq_policy_new(&p));
	must(cf_keyq_policy_set_curves(p, " P-256 , secp256k1"));
	must(cf_keyq_check_key(&res, p, k1));
	assert_int_equal(res.flags, 0);
	must(cf_keyq_check_key(&res, p, g.good[1]));
	assert_int_equal(res.flags, 0);
	must(cf_keyq_check_key(&res, p, p384));
	assert_int_equal(res.flags, CF_KEYQ_CURVE_NOT_ALLOWED);
	must(cf_keyq_policy_set_curves(p, "P384"));
	must(cf_keyq_check_key(&res, p, p384));
	assert_int_equal(res.flags, 0);
	assert_int_equal(cf_keyq_policy_set_curves(p, "P-256,curve9000"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "curve9000"));
	assert_int_equal(cf_keyq_policy_set_curves(p, "sha256"), CF_EINVAL);
	assert_int_equal(cf_keyq_policy_set_curves(p, ""), CF_EINVAL);
	assert_int_equal(cf_keyq_policy_set_curves(p, "P-256,,P-384"), CF_EINVAL);
	/* A failed update leaves the set as it was. */
	must(cf_keyq_check_key(&res, p, p384));
	assert_int_equal(res.flags, 0);
	cf_keyq_policy_free(p);
	cf_key_free(p384);
	cf_key_free(k1);
}

static void
test_keyq__key_types_not_allowed(void **state)
{
	static const char *const types[] = { "ED448", "X25519", "X448" };
	cf_keyq_result res;
	cf_key *k;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		k = wrap(EVP_PKEY_Q_keygen(NULL, NULL, types[i]));
		must(cf_keyq_check_key(&res, g.policy, k));
		assert_int_equal(res.flags, CF_KEYQ_KEY_TYPE_NOT_ALLOWED);
		assert_non_null(strstr(res.detail, "KEY_TYPE_NOT_ALLOWED"));
		cf_key_free(k);
	}
}

/* DSA: parameters, then a key, both generated here (1024 bits is quick). */
static void
test_keyq__dsa_not_allowed(void **state)
{
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL), *kctx = NULL;
	EVP_PKEY *params = NULL, *dsa = NULL;
	cf_keyq_result res;
	cf_key *k;

	(void)state;
	assert_non_null(pctx);
	assert_int_equal(EVP_PKEY_paramgen_init(pctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_dsa_paramgen_bits(pctx, 1024), 1);
	assert_int_equal(EVP_PKEY_paramgen(pctx, &params), 1);
	kctx = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL);
	assert_int_equal(EVP_PKEY_keygen_init(kctx), 1);
	assert_int_equal(EVP_PKEY_keygen(kctx, &dsa), 1);
	k = wrap(dsa);
	must(cf_keyq_check_key(&res, g.policy, k));
	assert_int_equal(res.flags, CF_KEYQ_KEY_TYPE_NOT_ALLOWED);
	assert_non_null(strstr(res.detail, "DSA"));
	cf_key_free(k);
	EVP_PKEY_free(params);
	EVP_PKEY_CTX_free(kctx);
	EVP_PKEY_CTX_free(pctx);
}

static void
test_keyq__sha1_and_md5_certificates_weak(void **state)
{
	cf_cert *sha1 = make_cert(g.ca, g.ca, EVP_sha1());
	cf_cert *md5 = make_cert(g.rsa2048, g.rsa2048, EVP_md5());
	cf_cert *sha256 = make_cert(g.ca, g.ca, EVP_sha256());
	cf_cert_info info;
	cf_keyq_result res;

	(void)state;
	must(cf_cert_info_get(&info, sha1));
	assert_string_equal(info.sig_alg, "ecdsa-with-SHA1");
	must(cf_keyq_check_cert(&res, g.policy, sha1));
	assert_int_equal(res.flags, CF_KEYQ_WEAK_SIGNATURE);
	assert_non_null(strstr(res.detail, "SHA1"));
	must(cf_keyq_check_cert(&res, g.policy, md5));
	assert_int_equal(res.flags, CF_KEYQ_WEAK_SIGNATURE);
	assert_non_null(strstr(res.detail, "MD5"));
	must(cf_keyq_check_cert(&res, g.policy, sha256));
	assert_int_equal(res.flags, 0);
	cf_cert_free(sha1);
	cf_cert_free(md5);
	cf_cert_free(sha256);
}

static void
test_keyq__sha1_csr_weak(void **state)
{
	cf_csr *sha1 = make_csr(g.rsa2048, EVP_sha1()), *good = make_csr(g.ca, EVP_sha384());
	cf_keyq_result res;
	char name[64];

	(void)state;
	must(cf_csr_sig_name(name, sizeof(name), sha1));
	assert_string_equal(name, "sha1WithRSAEncryption");
	must(cf_keyq_check_csr(&res, g.policy, sha1));
	assert_int_equal(res.flags, CF_KEYQ_WEAK_SIGNATURE);
	must(cf_keyq_check_csr(&res, g.policy, good));
	assert_int_equal(res.flags, 0);
	cf_csr_free(sha1);
	cf_csr_free(good);
}

static void
test_keyq__pss_csr_with_sha512_is_fine(void **state)
{
	char *pem = NULL;
	cf_csr *csr = NULL;
	cf_keyq_result res;

	(void)state;
	must(cf_csr_create(&pem, g.good[0], CF_SIG_SHA512_RSA_PSS, "pss-thing"));
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_keyq_check_csr(&res, g.policy, csr));
	assert_int_equal(res.flags, 0);
	cf_csr_free(csr);
	free(pem);
}

static void
test_keyq__roca_moduli_from_detector_vectors(void **state)
{
	static const char *const positive[] = { "roca/mod01.txt", "roca/mod03.txt" };
	unsigned char *n;
	size_t len, i;

	(void)state;
	for (i = 0; i < sizeof(positive) / sizeof(positive[0]); i++) {
		n = read_modulus(data_path(positive[i]), &len);
		assert_int_equal(cf_keyq_roca_modulus(n, len), 1);
		/* N + 2 is no longer of the form: the fingerprint is that specific. */
		n[len - 1] += 2;
		assert_int_equal(cf_keyq_roca_modulus(n, len), 0);
		free(n);
	}
	assert_int_equal(cf_keyq_roca_modulus(NULL, 0), 0);
	/* Degenerate values are not moduli (1 is a power of anything). */
	assert_int_equal(cf_keyq_roca_modulus((const unsigned char *)"\x01", 1), 0);
}

static void
test_keyq__roca_key_in_certificate(void **state)
{
	EVP_PKEY *vuln = read_pubkey(data_path("roca/pubkey03.pem"));
	EVP_PKEY *clean = read_pubkey(data_path("roca/pubkey01.pem"));
	cf_cert *a = make_cert(vuln, g.ca, EVP_sha256()), *b = make_cert(clean, g.ca, EVP_sha256());
	cf_keyq_result res;

	(void)state;
	must(cf_keyq_check_cert(&res, g.policy, a));
	assert_int_equal(res.flags, CF_KEYQ_ROCA_VULNERABLE);
	assert_non_null(strstr(res.detail, "ROCA_VULNERABLE"));
	must(cf_keyq_check_cert(&res, g.policy, b));
	assert_int_equal(res.flags, 0);
	cf_cert_free(a);
	cf_cert_free(b);
	EVP_PKEY_free(vuln);
	EVP_PKEY_free(clean);
}

/* Negative control: keys OpenSSL generates must not look like Infineon's. */
static void
test_keyq__fresh_rsa_2048_not_roca(void **state)
{
	cf_keyq_result res;
	cf_key *k = NULL;
	BIGNUM *n = NULL;
	unsigned char buf[256];
	int i;

	(void)state;
	must(cf_keyq_check_key(&res, g.policy, g.good[0]));
	assert_int_equal(res.flags & CF_KEYQ_ROCA_VULNERABLE, 0);
	for (i = 0; i < 2; i++) {
		must(cf_key_generate(&k, CF_KEY_RSA2048));
		must(cf_keyq_check_key(&res, g.policy, k));
		assert_int_equal(res.flags, 0);
		cf_key_free(k);
		k = NULL;
	}
	assert_int_equal(EVP_PKEY_get_bn_param(g.rsa2048, "n", &n), 1);
	assert_int_equal(BN_bn2binpad(n, buf, sizeof(buf)), 256);
	assert_int_equal(cf_keyq_roca_modulus(buf, sizeof(buf)), 0);
	BN_free(n);
}

static void
test_keyq__blocklist_file(void **state)
{
	char fp[CF_ID_LEN + 1], upper[CF_ID_LEN + 1], path[128], text[512];
	cf_keyq_policy *p = NULL;
	cf_keyq_result res;
	FILE *f;
	size_t i;

	(void)state;
	must(cf_key_fingerprint(fp, g.good[1]));
	for (i = 0; i <= CF_ID_LEN; i++)
		upper[i] = (char)(fp[i] >= 'a' && fp[i] <= 'f' ? fp[i] - 'a' + 'A' : fp[i]);
	snprintf(path, sizeof(path), "%s/blocklist", g.tmpdir);
	snprintf(text, sizeof(text), "# known-bad keys\n\n%s  # the P-256 test key\n"
	    "%.64s\n", upper, "0000000000000000000000000000000000000000000000000000000000000000");
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	must(cf_keyq_policy_new(&p));
	must(cf_keyq_policy_load_blocklist(p, path));
	must(cf_keyq_check_key(&res, p, g.good[1]));
	assert_int_equal(res.flags, CF_KEYQ_BLOCKLISTED);
	assert_non_null(strstr(res.detail, fp));
	must(cf_keyq_check_key(&res, p, g.good[2]));
	assert_int_equal(res.flags, 0);
	/* A bad line is reported with its number. */
	f = fopen(path, "a");
	fputs("# fine\nnot-a-fingerprint\n", f);
	fclose(f);
	assert_int_equal(cf_keyq_policy_load_blocklist(p, path), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), ":6:"));
	assert_non_null(strstr(cf_error_last(), "not-a-fingerprint"));
	f = fopen(path, "w");
	fprintf(f, "%.63s\n", fp);
	fclose(f);
	assert_int_equal(cf_keyq_policy_load_blocklist(p, path), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), ":1:"));
	snprintf(text, sizeof(text), "%s/none", g.tmpdir);
	assert_int_equal(cf_keyq_policy_load_blocklist(p, text), CF_ENOTFOUND);
	cf_keyq_policy_free(p);
}

static void
test_keyq__block_single_fingerprint(void **state)
{
	char fp[CF_ID_LEN + 1];
	cf_keyq_policy *p = NULL;
	cf_keyq_result res;
	cf_cert *cert = make_cert(g.rsa2048, g.ca, EVP_sha256());
	cf_key *pub = NULL;

	(void)state;
	must(cf_keyq_policy_new(&p));
	must(cf_cert_pubkey(&pub, cert));
	must(cf_key_fingerprint(fp, pub));
	must(cf_keyq_policy_block(p, fp));
	must(cf_keyq_policy_block(p, fp)); /* twice is once */
	must(cf_keyq_check_cert(&res, p, cert));
	assert_int_equal(res.flags, CF_KEYQ_BLOCKLISTED);
	assert_int_equal(cf_keyq_policy_block(p, "abc"), CF_EINVAL);
	assert_int_equal(cf_keyq_policy_block(p, NULL), CF_EINVAL);
	fp[10] = 'g';
	assert_int_equal(cf_keyq_policy_block(p, fp), CF_EINVAL);
	cf_key_free(pub);
	cf_cert_free(cert);
	cf_keyq_policy_free(p);
}

static void
test_keyq__collects_every_problem(void **state)
{
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	cf_cert *cert = make_cert(weak, weak, EVP_sha1());
	cf_keyq_policy *p = NULL;
	cf_keyq_result res;
	cf_key *pub = NULL;
	char fp[CF_ID_LEN + 1];

	(void)state;
	must(cf_keyq_policy_new(&p));
	must(cf_cert_pubkey(&pub, cert));
	must(cf_key_fingerprint(fp, pub));
	must(cf_keyq_policy_block(p, fp));
	must(cf_keyq_check_cert(&res, p, cert));
	assert_int_equal(res.flags, CF_KEYQ_RSA_KEY_TOO_SHORT | CF_KEYQ_WEAK_SIGNATURE |
	    CF_KEYQ_BLOCKLISTED);
	assert_non_null(strstr(res.detail, "RSA_KEY_TOO_SHORT"));
	assert_non_null(strstr(res.detail, "; WEAK_SIGNATURE"));
	assert_non_null(strstr(res.detail, "BLOCKLISTED"));
	cf_key_free(pub);
	cf_keyq_policy_free(p);
	cf_cert_free(cert);
	EVP_PKEY_free(weak);
}

/* Both ways to a certificate's key facts must agree byte for byte. */
static void
assert_same_facts(const cf_keyq_policy *p, cf_cert *cert, const char *what)
{
	cf_keyq_result a, b;
	char spki_a[CF_ID_LEN + 1], spki_b[CF_ID_LEN + 1], *pem = NULL;
	int ra, rb;

	must(cf_cert_to_pem(&pem, cert));
	ra = cf_keyq_check_cert_pem(&a, spki_a, p, pem, strlen(pem));
	rb = cf_keyq_check_cert_spki(&b, spki_b, p, cert);
	if (ra != 0 || rb != 0)
		fail_msg("%s: pem path %d, parsed path %d: %s", what, ra, rb, cf_error_last());
	if (a.flags != b.flags || strcmp(a.detail, b.detail) != 0 || strcmp(spki_a, spki_b) != 0)
		fail_msg("%s: pem path %#x '%s' %s, parsed path %#x '%s' %s", what, a.flags, a.detail,
		    spki_a, b.flags, b.detail, spki_b);
	assert_int_equal(strlen(spki_b), CF_ID_LEN);
	free(pem);
}

/* Which flags the strict policy of the test below gives each key (a test that can fail). */
struct facts_case {
	const char *name;
	cf_key *key;
	cf_sig_alg sig;
	unsigned strict_flags;
};

/*
 * cf_keyq_check_cert_spki against cf_keyq_check_cert_pem, over
 * certificates issued in this process (key held only as bytes plus the
 * CSR's decoded key: the CA path) for every key algorithm the CA issues
 * and for weak keys, and over certificates parsed from PEM (a SHA-1 signed
 * RSA-1024 one, a ROCA key, an Ed448 key), under the default policy, the
 * test's and a strict one with a blocklist.
 */
static void
test_keyq__cert_spki_matches_pem_path(void **state)
{
	static const struct { cf_key_alg alg; cf_sig_alg sig; unsigned strict; } algs[] = {
		{ CF_KEY_RSA2048, CF_SIG_SHA256_RSA, CF_KEYQ_RSA_KEY_TOO_SHORT },
		{ CF_KEY_RSA3072, CF_SIG_SHA384_RSA_PSS, 0 },
		{ CF_KEY_P256, CF_SIG_ECDSA_SHA256, CF_KEYQ_CURVE_NOT_ALLOWED | CF_KEYQ_BLOCKLISTED },
		{ CF_KEY_P384, CF_SIG_ECDSA_SHA384, 0 },
		{ CF_KEY_P521, CF_SIG_ECDSA_SHA512, CF_KEYQ_CURVE_NOT_ALLOWED },
		{ CF_KEY_ED25519, CF_SIG_ED25519, CF_KEYQ_BLOCKLISTED },
	};
	struct facts_case c[8];
	cf_key *issuer_key[2] = { NULL, NULL }, *pub = NULL;
	cf_cert *issuer[2] = { NULL, NULL }, *cert = NULL, *parsed[3];
	cf_keyq_policy *strict = NULL;
	const cf_keyq_policy *pols[3];
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *ed448 = EVP_PKEY_Q_keygen(NULL, NULL, "ED448");
	EVP_PKEY *roca = read_pubkey(data_path("roca/pubkey03.pem"));
	cf_keyq_result res;
	cf_csr *csr = NULL;
	char *csr_pem = NULL, fp[CF_ID_LEN + 1], spki[CF_ID_LEN + 1], what[96];
	size_t i, j, k, n = 0;

	(void)state;
	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++, n++) {
		c[n].name = cf_key_alg_name(algs[i].alg);
		must(cf_key_generate(&c[n].key, algs[i].alg));
		c[n].sig = algs[i].sig;
		c[n].strict_flags = algs[i].strict;
	}
	c[n].name = "RSA-1024";
	c[n].key = wrap(EVP_PKEY_dup(weak));
	c[n].sig = CF_SIG_SHA256_RSA;
	c[n++].strict_flags = CF_KEYQ_RSA_KEY_TOO_SHORT;
	c[n].name = "P-192";
	c[n].key = wrap(EVP_PKEY_Q_keygen(NULL, NULL, "EC", "prime192v1"));
	c[n].sig = CF_SIG_ECDSA_SHA256;
	c[n++].strict_flags = CF_KEYQ_CURVE_NOT_ALLOWED;
	/* strict: RSA >= 3072, P-384 only, the P-256 and Ed25519 test keys blocked. */
	must(cf_keyq_policy_new(&strict));
	must(cf_keyq_policy_set_min_rsa_bits(strict, 3072));
	must(cf_keyq_policy_set_curves(strict, "P-384"));
	must(cf_key_fingerprint(fp, c[2].key));
	must(cf_keyq_policy_block(strict, fp));
	must(cf_key_fingerprint(fp, c[5].key));
	must(cf_keyq_policy_block(strict, fp));
	pols[0] = NULL;
	pols[1] = g.policy;
	pols[2] = strict;
	/* Two issuers, so the certificates' signatures differ too (ECDSA, RSA). */
	must(cf_key_generate(&issuer_key[0], CF_KEY_P256));
	must(cf_key_generate(&issuer_key[1], CF_KEY_RSA2048));
	for (j = 0; j < 2; j++)
		must(cf_pki_make_root(&issuer[j], issuer_key[j], "facts root", 30));
	for (j = 0; j < 2; j++) {
		for (i = 0; i < n; i++) {
			must(cf_csr_create(&csr_pem, c[i].key, c[i].sig, "facts-thing"));
			must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
			must(cf_csr_verify(csr));
			must(cf_pki_issue_device(&cert, csr, "facts-thing", 1, 0, issuer[j],
			    issuer_key[j]));
			for (k = 0; k < 3; k++) {
				snprintf(what, sizeof(what), "%s from issuer %zu, policy %zu", c[i].name, j,
				    k);
				assert_same_facts(pols[k], cert, what);
			}
			/* The facts are what they should be, not merely equal. */
			must(cf_keyq_check_cert_spki(&res, spki, strict, cert));
			if (res.flags != c[i].strict_flags)
				fail_msg("%s: flags %#x under the strict policy, want %#x (%s)", c[i].name,
				    res.flags, c[i].strict_flags, res.detail);
			must(cf_key_fingerprint(fp, c[i].key));
			assert_string_equal(spki, fp);
			must(cf_keyq_check_cert_spki(&res, spki, NULL, cert));
			assert_int_equal(res.flags, i < 6 ? 0u : c[i].strict_flags);
			cf_cert_free(cert);
			cf_csr_free(csr);
			free(csr_pem);
			cert = NULL;
			csr = NULL;
			csr_pem = NULL;
		}
	}
	/* Parsed from PEM, not issued here: SHA-1 signature, a ROCA modulus, Ed448. */
	parsed[0] = make_cert(weak, weak, EVP_sha1());
	parsed[1] = make_cert(roca, g.ca, EVP_sha256());
	parsed[2] = make_cert(ed448, g.ca, EVP_sha256());
	for (i = 0; i < 3; i++) {
		for (k = 0; k < 3; k++) {
			snprintf(what, sizeof(what), "parsed certificate %zu, policy %zu", i, k);
			assert_same_facts(pols[k], parsed[i], what);
		}
	}
	must(cf_keyq_check_cert_spki(&res, spki, NULL, parsed[0]));
	assert_int_equal(res.flags, CF_KEYQ_RSA_KEY_TOO_SHORT | CF_KEYQ_WEAK_SIGNATURE);
	must(cf_keyq_check_cert_spki(&res, spki, NULL, parsed[1]));
	assert_int_equal(res.flags, CF_KEYQ_ROCA_VULNERABLE);
	must(cf_keyq_check_cert_spki(&res, spki, NULL, parsed[2]));
	assert_int_equal(res.flags, CF_KEYQ_KEY_TYPE_NOT_ALLOWED);
	must(cf_cert_pubkey(&pub, parsed[2]));
	must(cf_key_fingerprint(fp, pub));
	assert_string_equal(spki, fp);
	for (i = 0; i < 3; i++)
		cf_cert_free(parsed[i]);
	for (i = 0; i < n; i++)
		cf_key_free(c[i].key);
	for (j = 0; j < 2; j++) {
		cf_cert_free(issuer[j]);
		cf_key_free(issuer_key[j]);
	}
	cf_key_free(pub);
	cf_keyq_policy_free(strict);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(ed448);
	EVP_PKEY_free(roca);
}

static void
test_keyq__flag_codes(void **state)
{
	(void)state;
	assert_string_equal(cf_keyq_flag_code(CF_KEYQ_RSA_KEY_TOO_SHORT), "RSA_KEY_TOO_SHORT");
	assert_string_equal(cf_keyq_flag_code(CF_KEYQ_CURVE_NOT_ALLOWED), "CURVE_NOT_ALLOWED");
	assert_string_equal(cf_keyq_flag_code(CF_KEYQ_KEY_TYPE_NOT_ALLOWED),
	    "KEY_TYPE_NOT_ALLOWED");
	assert_string_equal(cf_keyq_flag_code(CF_KEYQ_WEAK_SIGNATURE), "WEAK_SIGNATURE");
	assert_string_equal(cf_keyq_flag_code(CF_KEYQ_ROCA_VULNERABLE), "ROCA_VULNERABLE");
	assert_string_equal(cf_keyq_flag_code(CF_KEYQ_BLOCKLISTED), "BLOCKLISTED");
	assert_string_equal(cf_keyq_flag_code((cf_keyq_flag)0), "UNKNOWN");
}

/* The policy fingerprint: equal policies equal, any change different (stored key facts depend on it). */
static void
test_keyq__policy_fingerprint(void **state)
{
	cf_keyq_policy *a = NULL, *b = NULL;
	char fa[CF_KEYQ_POLICY_FP_LEN + 1], fb[CF_KEYQ_POLICY_FP_LEN + 1], fd[CF_KEYQ_POLICY_FP_LEN + 1];
	const char *bl = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

	(void)state;
	must(cf_keyq_policy_new(&a));
	must(cf_keyq_policy_new(&b));
	must(cf_keyq_policy_fingerprint(fd, NULL));
	must(cf_keyq_policy_fingerprint(fa, a));
	assert_int_equal(strlen(fa), CF_KEYQ_POLICY_FP_LEN);
	assert_string_equal(fa, fd); /* a new policy is the default one */
	/* The curves are a set: order does not matter. */
	must(cf_keyq_policy_set_curves(a, "P-256,P-384"));
	must(cf_keyq_policy_set_curves(b, "secp384r1,P-256"));
	must(cf_keyq_policy_fingerprint(fa, a));
	must(cf_keyq_policy_fingerprint(fb, b));
	assert_string_equal(fa, fb);
	assert_string_not_equal(fa, fd);
	/* A blocklist entry, or the RSA minimum, changes it. */
	must(cf_keyq_policy_block(b, bl));
	must(cf_keyq_policy_fingerprint(fb, b));
	assert_string_not_equal(fa, fb);
	must(cf_keyq_policy_block(a, bl));
	must(cf_keyq_policy_fingerprint(fa, a));
	assert_string_equal(fa, fb);
	must(cf_keyq_policy_set_min_rsa_bits(b, 3072));
	must(cf_keyq_policy_fingerprint(fb, b));
	assert_string_not_equal(fa, fb);
	cf_keyq_policy_free(a);
	cf_keyq_policy_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyq__good_keys_pass),
		cmocka_unit_test(test_keyq__rsa_1024_too_short),
		cmocka_unit_test(test_keyq__curves_outside_policy),
		cmocka_unit_test(test_keyq__set_curves),
		cmocka_unit_test(test_keyq__key_types_not_allowed),
		cmocka_unit_test(test_keyq__dsa_not_allowed),
		cmocka_unit_test(test_keyq__sha1_and_md5_certificates_weak),
		cmocka_unit_test(test_keyq__sha1_csr_weak),
		cmocka_unit_test(test_keyq__pss_csr_with_sha512_is_fine),
		cmocka_unit_test(test_keyq__roca_moduli_from_detector_vectors),
		cmocka_unit_test(test_keyq__roca_key_in_certificate),
		cmocka_unit_test(test_keyq__fresh_rsa_2048_not_roca),
		cmocka_unit_test(test_keyq__blocklist_file),
		cmocka_unit_test(test_keyq__block_single_fingerprint),
		cmocka_unit_test(test_keyq__collects_every_problem),
		cmocka_unit_test(test_keyq__cert_spki_matches_pem_path),
		cmocka_unit_test(test_keyq__flag_codes),
		cmocka_unit_test(test_keyq__policy_fingerprint),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
