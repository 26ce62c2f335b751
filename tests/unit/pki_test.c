/*
 * pki_test — cf_pki: keys, PEM/DER I/O, CSRs, the root / intermediate /
 * device profiles, CRLs and chain verification, cross-checked against the
 * openssl command line. Keys are generated once per binary (RSA-3072 is
 * slow under the sanitizers); every case builds what else it needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define CF_TEST_X509
#include "cf_test.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_keyq.h"
#include "cf_pki.h"
#include "cf_util.h"

static struct {
	cf_key *keys[CF_KEY__COUNT]; /* one of each algorithm */
	cf_key *root_key, *int_key, *dev_key;
	cf_cert *root, *inter;
	char tmpdir[64];
} g;

/* ---- helpers ------------------------------------------------------------- */

static char *
path_in_tmp(const char *name)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", g.tmpdir, name);
	return buf[i];
}

static void
write_file(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(s, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static char *run(int *status, const char *fmt, ...) CF_PRINTF(2, 3);

/* Runs a shell command, returns its output (malloc) and exit status. */
static char *
run(int *status, const char *fmt, ...)
{
	char cmd[2048], *out;
	size_t len = 0, n;
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	out = calloc(1, 65536);
	assert_non_null(out);
	p = popen(cmd, "r");
	assert_non_null(p);
	while ((n = fread(out + len, 1, 65535 - len, p)) > 0)
		len += n;
	*status = pclose(p);
	return out;
}

static char *
issue_pem(const char *thing, cf_key *key, int64_t seconds)
{
	char *csr_pem = NULL, *pem = NULL;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	cf_key_alg alg;

	must(cf_key_alg_of(&alg, key));
	must(cf_csr_create(&csr_pem, key, cf_sig_alg_default(alg), thing));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_pki_issue_device(&cert, csr, thing, 30, seconds, g.inter, g.int_key));
	must(cf_cert_to_pem(&pem, cert));
	cf_cert_free(cert);
	cf_csr_free(csr);
	free(csr_pem);
	return pem;
}

static cf_cert *
issue(const char *thing, cf_key *key, int64_t seconds)
{
	char *pem = issue_pem(thing, key, seconds);
	cf_cert *cert = NULL;

	must(cf_cert_parse(&cert, pem, strlen(pem)));
	free(pem);
	return cert;
}

static unsigned char *
pem_to_der(const char *pem, const char *kind, long *len)
{
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	BIO *bio = BIO_new_mem_buf(pem, -1);

	assert_int_equal(PEM_read_bio(bio, &name, &header, &data, len), 1);
	assert_string_equal(name, kind);
	OPENSSL_free(name);
	OPENSSL_free(header);
	BIO_free(bio);
	return data;
}

/* A CSR built by hand: any CNs, an optional SAN URI, any digest. */
static char *
raw_csr(EVP_PKEY *pkey, const char *const *cns, int n_cn, const char *san, const EVP_MD *md)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext;
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	char *out;
	int i;

	for (i = 0; i < n_cn; i++)
		assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
		    (const unsigned char *)cns[i], -1, -1, 0), 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, pkey), 1);
	if (san != NULL) {
		ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
		assert_non_null(ext);
		sk_X509_EXTENSION_push(exts, ext);
		assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
	}
	assert_true(X509_REQ_sign(req, pkey, md) > 0);
	assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
	BIO_get_mem_ptr(bio, &bm);
	out = strndup(bm->data, bm->length);
	BIO_free(bio);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return out;
}

/* A self-signed certificate built by hand: any CNs and an optional subjectAltName (config syntax). */
static cf_cert *
raw_cert(const char *const *cns, int n_cn, const char *san)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	cf_cert *cert = NULL;
	int i;

	assert_non_null(pkey);
	for (i = 0; i < n_cn; i++)
		assert_int_equal(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
		    (const unsigned char *)cns[i], -1, -1, 0), 1);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
	assert_int_equal(X509_set_subject_name(x, name), 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, pkey), 1);
	if (san != NULL) {
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		assert_non_null(ext);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509(bio, x), 1);
	BIO_get_mem_ptr(bio, &bm);
	must(cf_cert_parse(&cert, bm->data, bm->length));
	BIO_free(bio);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return cert;
}

static int
has_ext_text(X509 *x, int nid, const char *want)
{
	int idx = X509_get_ext_by_NID(x, nid, -1);
	X509_EXTENSION *ext;
	BIO *bio;
	BUF_MEM *bm;
	int ok;

	if (idx < 0)
		return 0;
	ext = X509_get_ext(x, idx);
	bio = BIO_new(BIO_s_mem());
	X509V3_EXT_print(bio, ext, 0, 0);
	BIO_write(bio, "", 1);
	BIO_get_mem_ptr(bio, &bm);
	ok = strstr(bm->data, want) != NULL;
	BIO_free(bio);
	return ok;
}

static int
ext_critical(X509 *x, int nid)
{
	int idx = X509_get_ext_by_NID(x, nid, -1);

	return idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, idx));
}

/* ---- setup --------------------------------------------------------------- */

static int
group_setup(void **state)
{
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		if (cf_key_generate(&g.keys[i], (cf_key_alg)i) != 0)
			return -1;
	}
	if (cf_key_generate(&g.root_key, CF_KEY_P384) != 0 ||
	    cf_key_generate(&g.int_key, CF_KEY_P256) != 0 ||
	    cf_key_generate(&g.dev_key, CF_KEY_P256) != 0)
		return -1;
	if (cf_pki_make_root(&g.root, g.root_key, "certfleet test root", 3650) != 0 ||
	    cf_pki_make_intermediate(&g.inter, g.int_key, "certfleet test issuing CA", 1825,
	    g.root, g.root_key) != 0) {
		fprintf(stderr, "setup: %s\n", cf_error_last());
		return -1;
	}
	snprintf(g.tmpdir, sizeof(g.tmpdir), "/tmp/cf_pki_test.XXXXXX");
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
	for (i = 0; i < CF_KEY__COUNT; i++)
		cf_key_free(g.keys[i]);
	cf_key_free(g.root_key);
	cf_key_free(g.int_key);
	cf_key_free(g.dev_key);
	cf_cert_free(g.root);
	cf_cert_free(g.inter);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g.tmpdir);
	if (g.tmpdir[0] && system(cmd) != 0)
		return -1;
	return 0;
}

/* ---- primitives -------------------------------------------------------- */

static void
test_pki__sha256_hex_known_vector(void **state)
{
	char hex[CF_ID_LEN + 1];

	(void)state;
	cf_sha256_hex(hex, "abc", 3);
	assert_string_equal(hex,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_pki__random_and_secure_equal(void **state)
{
	unsigned char a[32], b[32];

	(void)state;
	must(cf_random_bytes(a, sizeof(a)));
	must(cf_random_bytes(b, sizeof(b)));
	assert_false(cf_secure_equal(a, b, sizeof(a)));
	memcpy(b, a, sizeof(a));
	assert_true(cf_secure_equal(a, b, sizeof(a)));
}

/* ---- keys ---------------------------------------------------------------- */

static void
test_pki__keygen_all_algorithms(void **state)
{
	static const struct {
		const char *type;
		int bits;
		const char *curve;
	} want[CF_KEY__COUNT] = {
		[CF_KEY_RSA2048] = { "RSA", 2048, "" },
		[CF_KEY_RSA3072] = { "RSA", 3072, "" },
		[CF_KEY_P256] = { "EC", 256, "prime256v1" },
		[CF_KEY_P384] = { "EC", 384, "secp384r1" },
		[CF_KEY_P521] = { "EC", 521, "secp521r1" },
		[CF_KEY_ED25519] = { "ED25519", 256, "" },
	};
	cf_key_info ki;
	cf_key_alg alg;
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		must(cf_key_info_get(&ki, g.keys[i]));
		assert_string_equal(ki.type, want[i].type);
		assert_int_equal(ki.bits, want[i].bits);
		assert_string_equal(ki.curve, want[i].curve);
		must(cf_key_alg_of(&alg, g.keys[i]));
		assert_int_equal(alg, i);
	}
	assert_int_equal(cf_key_generate(&(cf_key *){ NULL }, CF_KEY__COUNT), CF_EINVAL);
}

static void
test_pki__key_pem_roundtrip_plain(void **state)
{
	char *pem = NULL, *pub = NULL;
	cf_key *back = NULL;
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		must(cf_key_to_pem(&pem, g.keys[i], NULL));
		assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
		must(cf_key_from_pem(&back, pem, strlen(pem), NULL));
		assert_true(cf_key_equal_public(back, g.keys[i]));
		must(cf_key_public_pem(&pub, back));
		assert_non_null(strstr(pub, "-----BEGIN PUBLIC KEY-----"));
		assert_null(strstr(pub, "PRIVATE"));
		free(pub);
		pub = NULL;
		cf_key_free(back);
		back = NULL;
		cf_secret_free(pem, 0);
		pem = NULL;
	}
	assert_false(cf_key_equal_public(g.keys[CF_KEY_P256], g.dev_key));
}

static void
test_pki__key_encrypted_pkcs8_aes256_pbkdf2(void **state)
{
	char *pem = NULL, *out;
	cf_key *back = NULL;
	int status;

	(void)state;
	must(cf_key_to_pem(&pem, g.root_key, "correct horse battery staple"));
	assert_non_null(strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
	must(cf_key_from_pem(&back, pem, strlen(pem), "correct horse battery staple"));
	assert_true(cf_key_equal_public(back, g.root_key));
	write_file(path_in_tmp("enc.pem"), pem);
	/* The structure, as OpenSSL itself reads it. */
	out = run(&status, "openssl asn1parse -in '%s' 2>&1", path_in_tmp("enc.pem"));
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "PBES2"));
	assert_non_null(strstr(out, "PBKDF2"));
	assert_non_null(strstr(out, "hmacWithSHA256"));
	assert_non_null(strstr(out, "aes-256-cbc"));
	assert_non_null(strstr(out, ":0186A0")); /* 100000 PBKDF2 iterations */
	free(out);
	out = run(&status, "openssl pkey -in '%s' -passin pass:'correct horse battery staple' "
	    "-noout 2>&1", path_in_tmp("enc.pem"));
	assert_int_equal(status, 0);
	free(out);
	cf_key_free(back);
	cf_secret_free(pem, 0);
}

static void
test_pki__key_wrong_passphrase_is_epass(void **state)
{
	char *pem = NULL;
	cf_key *back = NULL;

	(void)state;
	must(cf_key_to_pem(&pem, g.int_key, "s3cret-passphrase"));
	assert_int_equal(cf_key_from_pem(&back, pem, strlen(pem), "wrong-passphrase"), CF_EPASS);
	assert_null(back);
	assert_non_null(strstr(cf_error_last(), "passphrase"));
	assert_int_equal(cf_key_from_pem(&back, pem, strlen(pem), NULL), CF_EPASS);
	assert_int_equal(cf_key_from_pem(&back, pem, strlen(pem), ""), CF_EPASS);
	must(cf_key_save(path_in_tmp("int.key"), g.int_key, "s3cret-passphrase"));
	assert_int_equal(cf_key_load(&back, path_in_tmp("int.key"), "nope"), CF_EPASS);
	cf_secret_free(pem, 0);
}

static void
test_pki__key_save_load_0600(void **state)
{
	struct stat st;
	cf_key *back = NULL;

	(void)state;
	must(cf_key_save(path_in_tmp("dev.key"), g.dev_key, NULL));
	assert_int_equal(stat(path_in_tmp("dev.key"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	must(cf_key_load(&back, path_in_tmp("dev.key"), NULL));
	assert_true(cf_key_equal_public(back, g.dev_key));
	cf_key_free(back);
	back = NULL;
	must(cf_key_save(path_in_tmp("root.key"), g.root_key, "pw-for-root"));
	must(cf_key_load(&back, path_in_tmp("root.key"), "pw-for-root"));
	assert_true(cf_key_equal_public(back, g.root_key));
	cf_key_free(back);
	back = NULL;
	assert_int_equal(cf_key_load(&back, path_in_tmp("missing.key"), NULL), CF_ENOTFOUND);
}

static void
test_pki__key_from_pem_malformed(void **state)
{
	static const char garbage[] = "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n"
	    "-----END PRIVATE KEY-----\n";
	char *pub = NULL;
	cf_key *k = NULL;

	(void)state;
	assert_int_equal(cf_key_from_pem(&k, garbage, sizeof(garbage) - 1, NULL), CF_EINVAL);
	assert_int_equal(cf_key_from_pem(&k, "hello", 5, NULL), CF_EINVAL);
	assert_int_equal(cf_key_from_pem(&k, "", 0, NULL), CF_EINVAL);
	/* A public key is not a private key. */
	must(cf_key_public_pem(&pub, g.dev_key));
	assert_int_equal(cf_key_from_pem(&k, pub, strlen(pub), NULL), CF_EINVAL);
	assert_null(k);
	free(pub);
	cf_key_free(NULL);
	cf_csr_free(NULL);
	cf_cert_free(NULL);
	cf_cert_list_free(NULL, 0);
}

static void
test_pki__key_fingerprint_is_sha256_of_spki(void **state)
{
	char fp[CF_ID_LEN + 1], *pub = NULL, *out;
	int status;

	(void)state;
	must(cf_key_fingerprint(fp, g.dev_key));
	must(cf_key_public_pem(&pub, g.dev_key));
	write_file(path_in_tmp("pub.pem"), pub);
	out = run(&status, "openssl pkey -pubin -in '%s' -outform DER | openssl dgst -sha256 -r",
	    path_in_tmp("pub.pem"));
	assert_int_equal(status, 0);
	assert_memory_equal(out, fp, CF_ID_LEN);
	free(out);
	free(pub);
}

/* ---- CSRs ---------------------------------------------------------------- */

static void
test_pki__csr_create_parse_verify_pem_and_der(void **state)
{
	char *pem = NULL, name[64];
	unsigned char *der;
	long der_len;
	cf_csr *csr = NULL;
	cf_key *pub = NULL;

	(void)state;
	must(cf_csr_create(&pem, g.dev_key, CF_SIG_ECDSA_SHA256, "sensor-0001"));
	assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE REQUEST-----"));
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_csr_verify(csr));
	must(cf_csr_check_subject(csr, "sensor-0001"));
	must(cf_csr_pubkey(&pub, csr));
	assert_true(cf_key_equal_public(pub, g.dev_key));
	must(cf_csr_sig_name(name, sizeof(name), csr));
	assert_string_equal(name, "ecdsa-with-SHA256");
	cf_csr_free(csr);
	csr = NULL;
	der = pem_to_der(pem, "CERTIFICATE REQUEST", &der_len);
	must(cf_csr_parse(&csr, der, (size_t)der_len));
	must(cf_csr_verify(csr));
	must(cf_csr_check_subject(csr, "sensor-0001"));
	cf_csr_free(csr);
	csr = NULL;
	/* Bad thing names never make a CSR. */
	assert_int_equal(cf_csr_create(&(char *){ NULL }, g.dev_key, CF_SIG_ECDSA_SHA256,
	    "bad/name"), CF_EINVAL);
	assert_int_equal(cf_csr_create(&(char *){ NULL }, g.dev_key, CF_SIG_ECDSA_SHA256, ""),
	    CF_EINVAL);
	OPENSSL_free(der);
	cf_key_free(pub);
	free(pem);
}

static void
test_pki__csr_malformed_pem(void **state)
{
	static const char bad[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
	    "MIIBAzCBqgIBADAWMRQwEgYDVQQDDAtzZW5zb3ItMDAwMTBZMBMGByqGSM49AgEG\n"
	    "-----END CERTIFICATE REQUEST-----\n";
	static const char nobody[] = "-----BEGIN CERTIFICATE REQUEST-----\n";
	cf_csr *csr = NULL;

	(void)state;
	assert_int_equal(cf_csr_parse(&csr, bad, sizeof(bad) - 1), CF_EINVAL);
	assert_int_equal(cf_csr_parse(&csr, nobody, sizeof(nobody) - 1), CF_EINVAL);
	assert_int_equal(cf_csr_parse(&csr, "garbage", 7), CF_EINVAL);
	assert_int_equal(cf_csr_parse(&csr, "", 0), CF_EINVAL);
	assert_null(csr);
}

static void
test_pki__csr_truncated_der(void **state)
{
	char *pem = NULL;
	unsigned char *der, *longer;
	long len, cut;
	cf_csr *csr = NULL;

	(void)state;
	must(cf_csr_create(&pem, g.dev_key, CF_SIG_ECDSA_SHA256, "sensor-0002"));
	der = pem_to_der(pem, "CERTIFICATE REQUEST", &len);
	for (cut = 1; cut < len; cut += 7)
		assert_int_equal(cf_csr_parse(&csr, der, (size_t)(len - cut)), CF_EINVAL);
	/* Trailing bytes after the DER are refused too. */
	longer = malloc((size_t)len + 1);
	memcpy(longer, der, (size_t)len);
	longer[len] = 0;
	assert_int_equal(cf_csr_parse(&csr, longer, (size_t)len + 1), CF_EINVAL);
	assert_null(csr);
	free(longer);
	OPENSSL_free(der);
	free(pem);
}

static void
test_pki__csr_tampered_signature_rejected(void **state)
{
	char *pem = NULL;
	unsigned char *der;
	long len;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		cf_key_alg alg = (cf_key_alg)i;

		must(cf_csr_create(&pem, g.keys[i], cf_sig_alg_default(alg), "sensor-0003"));
		der = pem_to_der(pem, "CERTIFICATE REQUEST", &len);
		der[len - 1] ^= 0x01; /* the last byte of the signature */
		must(cf_csr_parse(&csr, der, (size_t)len));
		assert_int_equal(cf_csr_verify(csr), CF_EREJECTED);
		assert_int_equal(cf_pki_issue_device(&cert, csr, "sensor-0003", 30, 0, g.inter,
		    g.int_key), CF_EREJECTED);
		assert_null(cert);
		cf_csr_free(csr);
		csr = NULL;
		OPENSSL_free(der);
		free(pem);
		pem = NULL;
	}
}

static void
test_pki__csr_subject_other_thing_rejected(void **state)
{
	char *pem = NULL;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;

	(void)state;
	must(cf_csr_create(&pem, g.dev_key, CF_SIG_ECDSA_SHA256, "sensor-0004"));
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_csr_verify(csr));
	assert_int_equal(cf_csr_check_subject(csr, "sensor-0005"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "sensor-0004"));
	assert_int_equal(cf_pki_issue_device(&cert, csr, "sensor-0005", 30, 0, g.inter,
	    g.int_key), CF_EREJECTED);
	assert_null(cert);
	/* A prefix is not the thing either. */
	assert_int_equal(cf_csr_check_subject(csr, "sensor-000"), CF_EREJECTED);
	cf_csr_free(csr);
	free(pem);
}

static void
test_pki__csr_two_cns_rejected(void **state)
{
	static const char *const two[] = { "sensor-0006", "sensor-0006" };
	static const char *const none[] = { NULL };
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *pem;
	cf_csr *csr = NULL;

	(void)state;
	pem = raw_csr(pkey, two, 2, "URI:urn:certfleet:thing:sensor-0006", EVP_sha256());
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_csr_verify(csr));
	assert_int_equal(cf_csr_check_subject(csr, "sensor-0006"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "2 common names"));
	cf_csr_free(csr);
	csr = NULL;
	free(pem);
	pem = raw_csr(pkey, none, 0, NULL, EVP_sha256());
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	assert_int_equal(cf_csr_check_subject(csr, "sensor-0006"), CF_EREJECTED);
	cf_csr_free(csr);
	free(pem);
	EVP_PKEY_free(pkey);
}

static void
test_pki__csr_mismatched_san_rejected(void **state)
{
	static const char *const cn[] = { "sensor-0007" };
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char *pem;
	cf_csr *csr = NULL;

	(void)state;
	pem = raw_csr(pkey, cn, 1, "URI:urn:certfleet:thing:sensor-9999", EVP_sha256());
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_csr_verify(csr));
	assert_int_equal(cf_csr_check_subject(csr, "sensor-0007"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "sensor-9999"));
	cf_csr_free(csr);
	csr = NULL;
	free(pem);
	/* Other name types are not the thing either. */
	pem = raw_csr(pkey, cn, 1, "DNS:evil.example.com", EVP_sha256());
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	assert_int_equal(cf_csr_check_subject(csr, "sensor-0007"), CF_EREJECTED);
	cf_csr_free(csr);
	csr = NULL;
	free(pem);
	/* No SAN at all is fine: the CN names the thing. */
	pem = raw_csr(pkey, cn, 1, NULL, EVP_sha256());
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_csr_check_subject(csr, "sensor-0007"));
	cf_csr_free(csr);
	free(pem);
	EVP_PKEY_free(pkey);
}

/* ---- certificates and profiles --------------------------------------------- */

static void
test_pki__root_profile(void **state)
{
	cf_cert_info info;
	X509 *x = x509_of(g.root);

	(void)state;
	must(cf_cert_info_get(&info, g.root));
	assert_string_equal(info.subject_cn, "certfleet test root");
	assert_string_equal(info.issuer_cn, "certfleet test root");
	assert_true(info.is_ca);
	assert_true(info.self_signed);
	assert_string_equal(info.key.curve, "secp384r1");
	assert_string_equal(info.sig_alg, "ecdsa-with-SHA384");
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_true(has_ext_text(x, NID_basic_constraints, "CA:TRUE"));
	assert_true(ext_critical(x, NID_key_usage));
	assert_true(has_ext_text(x, NID_key_usage, "Certificate Sign, CRL Sign"));
	assert_true(X509_get_ext_by_NID(x, NID_subject_key_identifier, -1) >= 0);
	assert_true(info.not_after - info.not_before == 3650LL * 86400);
	assert_true(cf_cert_matches_key(g.root, g.root_key));
	assert_false(cf_cert_matches_key(g.root, g.int_key));
	X509_free(x);
	assert_int_equal(cf_pki_make_root(&(cf_cert *){ NULL }, g.root_key, "", 10), CF_EINVAL);
	assert_int_equal(cf_pki_make_root(&(cf_cert *){ NULL }, g.root_key, "r", 0), CF_EINVAL);
}

static void
test_pki__intermediate_profile(void **state)
{
	cf_cert_info info;
	X509 *x = x509_of(g.inter);

	(void)state;
	must(cf_cert_info_get(&info, g.inter));
	assert_string_equal(info.subject_cn, "certfleet test issuing CA");
	assert_string_equal(info.issuer_cn, "certfleet test root");
	assert_true(info.is_ca);
	assert_false(info.self_signed);
	assert_string_equal(info.sig_alg, "ecdsa-with-SHA384"); /* the root's P-384 key signs */
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_true(has_ext_text(x, NID_basic_constraints, "pathlen:0"));
	assert_true(has_ext_text(x, NID_key_usage, "Certificate Sign, CRL Sign"));
	assert_true(X509_get_ext_by_NID(x, NID_authority_key_identifier, -1) >= 0);
	assert_true(X509_get_ext_by_NID(x, NID_subject_key_identifier, -1) >= 0);
	assert_true(info.not_after - info.not_before == 1825LL * 86400);
	X509_free(x);
}

static void
test_pki__issue_device_profile(void **state)
{
	char *csr_pem = NULL, hex[CF_SERIAL_LEN + 1];
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	cf_cert_info info;
	X509 *x;
	const ASN1_INTEGER *serial;
	BIGNUM *bn;
	int64_t now = cf_time_now();

	(void)state;
	must(cf_csr_create(&csr_pem, g.dev_key, CF_SIG_ECDSA_SHA256, "thermostat-42"));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_pki_issue_device(&cert, csr, "thermostat-42", 90, 0, g.inter, g.int_key));
	/* The handle issuance returns is complete: it verifies as it is. */
	must(cf_pki_verify_chain(cert, &g.inter, 1, &g.root, 1, NULL, 0, 1));
	must(cf_cert_info_get(&info, cert));
	assert_string_equal(info.subject_cn, "thermostat-42");
	assert_string_equal(info.issuer_cn, "certfleet test issuing CA");
	assert_false(info.is_ca);
	assert_false(info.self_signed);
	assert_string_equal(info.key.type, "EC");
	assert_string_equal(info.key.curve, "prime256v1");
	assert_string_equal(info.sig_alg, "ecdsa-with-SHA256");
	/* notBefore is backdated five minutes; validity counts from it. */
	assert_true(info.not_before <= now - 300 && info.not_before >= now - 310);
	assert_true(info.not_after - info.not_before == 90LL * 86400);
	assert_true(cf_cert_matches_key(cert, g.dev_key));
	assert_int_equal(strlen(info.id), CF_ID_LEN);

	x = x509_of(cert);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_true(has_ext_text(x, NID_basic_constraints, "CA:FALSE"));
	assert_true(ext_critical(x, NID_key_usage));
	assert_true(has_ext_text(x, NID_key_usage, "Digital Signature"));
	assert_false(has_ext_text(x, NID_key_usage, "Key Encipherment"));
	assert_true(has_ext_text(x, NID_ext_key_usage, "TLS Web Client Authentication"));
	assert_false(has_ext_text(x, NID_ext_key_usage, "Server"));
	assert_true(has_ext_text(x, NID_subject_alt_name, "URI:urn:certfleet:thing:thermostat-42"));
	assert_true(X509_get_ext_by_NID(x, NID_subject_key_identifier, -1) >= 0);
	assert_true(X509_get_ext_by_NID(x, NID_authority_key_identifier, -1) >= 0);
	assert_int_equal(X509_check_purpose(x, X509_PURPOSE_SSL_CLIENT, 0), 1);
	assert_int_not_equal(X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0), 1);
	serial = X509_get0_serialNumber(x);
	assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER); /* not V_ASN1_NEG_INTEGER */
	bn = ASN1_INTEGER_to_BN(serial, NULL);
	assert_true(BN_num_bits(bn) <= 128 && BN_num_bits(bn) > 64);
	BN_free(bn);
	/* The registry's serial is lowercase hex. */
	snprintf(hex, sizeof(hex), "%s", info.serial);
	for (size_t i = 0; hex[i]; i++)
		assert_true((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
	X509_free(x);
	cf_cert_free(cert);
	cf_csr_free(csr);
	free(csr_pem);
}

static void
test_pki__validity_clamped_to_issuer(void **state)
{
	cf_cert *leaf = NULL, *sub = NULL;
	cf_cert_info li, ii, ri, si;
	char *csr_pem = NULL;
	cf_csr *csr = NULL;

	(void)state;
	must(cf_csr_create(&csr_pem, g.dev_key, CF_SIG_ECDSA_SHA256, "long-lived"));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	must(cf_pki_issue_device(&leaf, csr, "long-lived", 36500, 0, g.inter, g.int_key));
	must(cf_pki_make_intermediate(&sub, g.keys[CF_KEY_P256], "long CA", 36500, g.root,
	    g.root_key));
	must(cf_cert_info_get(&li, leaf));
	must(cf_cert_info_get(&ii, g.inter));
	must(cf_cert_info_get(&si, sub));
	must(cf_cert_info_get(&ri, g.root));
	assert_true(li.not_after == ii.not_after);
	assert_true(si.not_after == ri.not_after);
	must(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, NULL, 0, 1));
	cf_cert_free(leaf);
	cf_cert_free(sub);
	cf_csr_free(csr);
	free(csr_pem);
}

static void
test_pki__issue_rsa_device_has_key_encipherment(void **state)
{
	cf_cert *cert = issue("rsa-device", g.keys[CF_KEY_RSA2048], 0);
	X509 *x = x509_of(cert);
	cf_cert_info info;

	(void)state;
	assert_true(has_ext_text(x, NID_key_usage, "Digital Signature, Key Encipherment"));
	must(cf_cert_info_get(&info, cert));
	assert_string_equal(info.key.type, "RSA");
	assert_int_equal(info.key.bits, 2048);
	assert_true(cf_cert_matches_key(cert, g.keys[CF_KEY_RSA2048]));
	X509_free(x);
	cf_cert_free(cert);
}

static void
test_pki__issue_every_key_algorithm_verifies(void **state)
{
	cf_cert *cert;
	cf_key *pub = NULL;
	cf_key_alg alg;
	int i;

	(void)state;
	for (i = 0; i < CF_KEY__COUNT; i++) {
		cert = issue("multi-alg", g.keys[i], 0);
		must(cf_pki_verify_chain(cert, &g.inter, 1, &g.root, 1, NULL, 0, 1));
		/* The copied SubjectPublicKeyInfo decodes to the device's key. */
		must(cf_cert_pubkey(&pub, cert));
		assert_true(cf_key_equal_public(pub, g.keys[i]));
		must(cf_key_alg_of(&alg, pub));
		assert_int_equal(alg, i);
		cf_key_free(pub);
		pub = NULL;
		cf_cert_free(cert);
	}
}

/* RSA-PSS CSRs: OpenSSL reads our parameters, and issuance accepts them. */
static void
test_pki__pss_csr_parameters_and_issuance(void **state)
{
	char *pem = NULL, *out;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	int status;

	(void)state;
	must(cf_csr_create(&pem, g.keys[CF_KEY_RSA2048], CF_SIG_SHA384_RSA_PSS, "pss-device"));
	write_file(path_in_tmp("pss.csr"), pem);
	out = run(&status, "openssl req -in '%s' -noout -verify -text 2>&1", path_in_tmp("pss.csr"));
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "verify OK"));
	assert_non_null(strstr(out, "rsassaPss"));
	assert_non_null(strstr(out, "Hash Algorithm: sha384"));
	assert_non_null(strstr(out, "Mask Algorithm: mgf1 with sha384"));
	assert_non_null(strstr(out, "Salt Length: 0x30"));
	free(out);
	must(cf_csr_parse(&csr, pem, strlen(pem)));
	must(cf_pki_issue_device(&cert, csr, "pss-device", 30, 0, g.inter, g.int_key));
	must(cf_pki_verify_chain(cert, &g.inter, 1, &g.root, 1, NULL, 0, 1));
	assert_true(cf_cert_matches_key(cert, g.keys[CF_KEY_RSA2048]));
	cf_cert_free(cert);
	cf_csr_free(csr);
	free(pem);
}

/*
 * Issuance copies the CSR's key bytes without decoding them: the handle it
 * returns must still do everything a parsed certificate does.
 */
static void
test_pki__issued_handle_works_without_reparse(void **state)
{
	char *csr_pem = NULL, *pem = NULL, fp[CF_ID_LEN + 1], fp2[CF_ID_LEN + 1];
	cf_csr *csr = NULL;
	cf_cert *cert = NULL, *parsed = NULL, *dup, *sub = NULL;
	cf_cert_info info, pinfo;
	cf_key *pub = NULL;
	cf_keyq_policy *policy = NULL;
	cf_keyq_result res;
	cf_key_alg alg;
	int i;

	(void)state;
	must(cf_keyq_policy_new(&policy));
	for (i = 0; i < CF_KEY__COUNT; i++) {
		must(cf_csr_create(&csr_pem, g.keys[i], cf_sig_alg_default((cf_key_alg)i), "mem"));
		must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
		must(cf_pki_issue_device(&cert, csr, "mem", 30, 0, g.inter, g.int_key));
		must(cf_cert_info_get(&info, cert));
		must(cf_cert_to_pem(&pem, cert));
		must(cf_cert_parse(&parsed, pem, strlen(pem)));
		must(cf_cert_info_get(&pinfo, parsed));
		assert_memory_equal(&info, &pinfo, sizeof(info));
		assert_false(info.self_signed);
		must(cf_cert_fingerprint(fp, cert));
		must(cf_cert_fingerprint(fp2, parsed));
		assert_string_equal(fp, fp2);
		assert_true(cf_cert_matches_key(cert, g.keys[i]));
		assert_false(cf_cert_matches_key(cert, g.dev_key));
		must(cf_cert_pubkey(&pub, cert));
		must(cf_key_alg_of(&alg, pub));
		assert_int_equal(alg, i);
		must(cf_keyq_check_cert(&res, policy, cert));
		assert_int_equal(res.flags, 0);
		dup = cf_cert_dup(cert);
		assert_non_null(dup);
		must(cf_pki_verify_chain(dup, &g.inter, 1, &g.root, 1, NULL, 0, 1));
		/* Given as an issuer it is decoded to compare keys, and refused as no CA. */
		assert_int_equal(cf_pki_make_intermediate(&sub, g.dev_key, "x", 30, cert, g.keys[i]),
		    CF_EINVAL);
		assert_non_null(strstr(cf_error_last(), "not a CA"));
		cf_cert_free(dup);
		cf_key_free(pub);
		pub = NULL;
		cf_cert_free(parsed);
		parsed = NULL;
		free(pem);
		pem = NULL;
		cf_cert_free(cert);
		cert = NULL;
		cf_csr_free(csr);
		csr = NULL;
		free(csr_pem);
		csr_pem = NULL;
	}
	cf_keyq_policy_free(policy);
}

static void
test_pki__serial_is_positive_128_bit(void **state)
{
	int i, long_form = 0;
	unsigned char *der = NULL;
	const unsigned char *p;
	const ASN1_INTEGER *serial;
	cf_cert *cert;
	X509 *x;
	int len;

	(void)state;
	for (i = 0; i < 32; i++) {
		cert = issue("serial-test", g.dev_key, 0);
		x = x509_of(cert);
		serial = X509_get0_serialNumber(x);
		der = NULL;
		len = i2d_ASN1_INTEGER(serial, &der);
		p = der;
		/* INTEGER, length 16 or 17 (a leading 0x00 keeps it positive), first bit 0. */
		assert_int_equal(p[0], 0x02);
		assert_true(p[1] <= 17 && p[1] >= 9);
		assert_int_equal(len, p[1] + 2);
		assert_int_equal(p[2] & 0x80, 0);
		if (p[1] == 17) {
			assert_int_equal(p[2], 0x00);
			assert_true(p[3] & 0x80);
			long_form++;
		}
		OPENSSL_free(der);
		X509_free(x);
		cf_cert_free(cert);
	}
	/* Half of all serials have the top bit set; 32 without one is 2^-32. */
	assert_true(long_form > 0);
}

static void
test_pki__issue_refuses_non_ca_issuer(void **state)
{
	cf_cert *leaf = issue("not-a-ca", g.dev_key, 0), *cert = NULL;
	char *csr_pem = NULL;
	cf_csr *csr = NULL;

	(void)state;
	must(cf_csr_create(&csr_pem, g.keys[CF_KEY_P256], CF_SIG_ECDSA_SHA256, "victim"));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	assert_int_equal(cf_pki_issue_device(&cert, csr, "victim", 30, 0, leaf, g.dev_key),
	    CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "not a CA"));
	assert_int_equal(cf_pki_make_intermediate(&cert, g.keys[CF_KEY_P256], "sub", 30, leaf,
	    g.dev_key), CF_EINVAL);
	assert_int_equal(cf_pki_make_crl(&(char *){ NULL }, leaf, g.dev_key, NULL, 0, 1, 7),
	    CF_EINVAL);
	assert_null(cert);
	cf_csr_free(csr);
	free(csr_pem);
	cf_cert_free(leaf);
}

static void
test_pki__issue_refuses_mismatched_issuer_key(void **state)
{
	char *csr_pem = NULL;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;

	(void)state;
	must(cf_csr_create(&csr_pem, g.dev_key, CF_SIG_ECDSA_SHA256, "victim"));
	must(cf_csr_parse(&csr, csr_pem, strlen(csr_pem)));
	assert_int_equal(cf_pki_issue_device(&cert, csr, "victim", 30, 0, g.inter, g.root_key),
	    CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "does not match"));
	assert_int_equal(cf_pki_make_intermediate(&cert, g.int_key, "x", 30, g.root, g.int_key),
	    CF_EINVAL);
	assert_int_equal(cf_pki_make_crl(&(char *){ NULL }, g.inter, g.root_key, NULL, 0, 1, 7),
	    CF_EINVAL);
	/* A validity of nothing is not a certificate. */
	assert_int_equal(cf_pki_issue_device(&cert, csr, "victim", 0, 0, g.inter, g.int_key),
	    CF_EINVAL);
	assert_null(cert);
	cf_csr_free(csr);
	free(csr_pem);
}

static void
test_pki__cert_pem_der_parse_and_fingerprint(void **state)
{
	char *pem = issue_pem("fp-device", g.dev_key, 0), fp[CF_ID_LEN + 1], fp2[CF_ID_LEN + 1];
	unsigned char *der;
	long len;
	cf_cert *a = NULL, *b = NULL, *c;
	cf_cert_info info;

	(void)state;
	must(cf_cert_parse(&a, pem, strlen(pem)));
	der = pem_to_der(pem, "CERTIFICATE", &len);
	must(cf_cert_parse(&b, der, (size_t)len));
	must(cf_cert_fingerprint(fp, a));
	must(cf_cert_fingerprint(fp2, b));
	assert_string_equal(fp, fp2);
	cf_sha256_hex(fp2, der, (size_t)len);
	assert_string_equal(fp, fp2);
	must(cf_cert_info_get(&info, b));
	assert_string_equal(info.id, fp);
	c = cf_cert_dup(a);
	assert_non_null(c);
	cf_cert_free(a);
	must(cf_cert_fingerprint(fp2, c));
	assert_string_equal(fp, fp2);
	write_file(path_in_tmp("fp.pem"), pem);
	cf_cert_free(b);
	b = NULL;
	must(cf_cert_load(&b, path_in_tmp("fp.pem")));
	must(cf_cert_fingerprint(fp2, b));
	assert_string_equal(fp, fp2);
	assert_int_equal(cf_cert_load(&a, path_in_tmp("none.pem")), CF_ENOTFOUND);
	cf_cert_free(b);
	cf_cert_free(c);
	OPENSSL_free(der);
	free(pem);
}

static void
test_pki__cert_malformed_and_truncated(void **state)
{
	char *pem = issue_pem("trunc-device", g.dev_key, 0), *bad;
	unsigned char *der;
	long len, cut;
	cf_cert *c = NULL;
	char *p;

	(void)state;
	der = pem_to_der(pem, "CERTIFICATE", &len);
	for (cut = 1; cut < len; cut += 5)
		assert_int_equal(cf_cert_parse(&c, der, (size_t)(len - cut)), CF_EINVAL);
	/* Break the base64 in the middle of the PEM. */
	bad = strdup(pem);
	p = strchr(bad, '\n') + 10;
	memcpy(p, "!!!!", 4);
	assert_int_equal(cf_cert_parse(&c, bad, strlen(bad)), CF_EINVAL);
	/* A PEM cut in half. */
	bad[strlen(bad) / 2] = '\0';
	assert_int_equal(cf_cert_parse(&c, bad, strlen(bad)), CF_EINVAL);
	assert_int_equal(cf_cert_parse(&c, "\x30\x03\x02\x01", 4), CF_EINVAL);
	assert_null(c);
	free(bad);
	OPENSSL_free(der);
	free(pem);
}

static void
test_pki__cert_parse_bundle(void **state)
{
	char *a = NULL, *b = NULL, *bundle, fp[CF_ID_LEN + 1], want[CF_ID_LEN + 1];
	cf_cert **list = NULL;
	size_t n = 0;

	(void)state;
	must(cf_cert_to_pem(&a, g.inter));
	must(cf_cert_to_pem(&b, g.root));
	bundle = malloc(strlen(a) + strlen(b) + 2);
	sprintf(bundle, "%s\n%s", a, b);
	must(cf_cert_parse_bundle(&list, &n, bundle, strlen(bundle)));
	assert_int_equal(n, 2);
	must(cf_cert_fingerprint(fp, list[1]));
	must(cf_cert_fingerprint(want, g.root));
	assert_string_equal(fp, want);
	cf_cert_list_free(list, n);
	list = NULL;
	/* A bundle whose second certificate is cut short is malformed. */
	bundle[strlen(a) + strlen(b) / 2] = '\0';
	assert_int_equal(cf_cert_parse_bundle(&list, &n, bundle, strlen(bundle)), CF_EINVAL);
	assert_int_equal(cf_cert_parse_bundle(&list, &n, "nothing here", 12), CF_EINVAL);
	assert_null(list);
	free(bundle);
	free(a);
	free(b);
}

/* ---- CRLs and verification ------------------------------------------------- */

static void
test_pki__reason_names(void **state)
{
	int code = -1;

	(void)state;
	must(cf_pki_reason_parse(&code, "keycompromise"));
	assert_int_equal(code, 1);
	must(cf_pki_reason_parse(&code, "aACompromise"));
	assert_int_equal(code, 10);
	must(cf_pki_reason_parse(&code, "privilegeWithdrawn"));
	assert_int_equal(code, 9);
	assert_string_equal(cf_pki_reason_name(4), "superseded");
	assert_string_equal(cf_pki_reason_name(7), "unknown");
	assert_int_equal(cf_pki_reason_parse(&code, "removeFromCRL"), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "keyCompromise"));
	assert_int_equal(cf_pki_reason_parse(&code, NULL), CF_EINVAL);
}

static void
test_pki__crl_v2_number_aki_reasons(void **state)
{
	cf_cert *a = issue("crl-a", g.dev_key, 0), *b = issue("crl-b", g.dev_key, 0);
	cf_cert_info ia, ib;
	cf_crl_entry e[2];
	char *pem = NULL;
	BIO *bio;
	X509_CRL *crl;
	ASN1_INTEGER *num;
	ASN1_ENUMERATED *reason;
	X509_REVOKED *rev;
	X509 *ix, *ax;
	int crit, i;

	(void)state;
	must(cf_cert_info_get(&ia, a));
	must(cf_cert_info_get(&ib, b));
	e[0] = (cf_crl_entry){ ia.serial, cf_time_now() - 60, 1 };
	e[1] = (cf_crl_entry){ ib.serial, cf_time_now() - 30, 0 };
	must(cf_pki_make_crl(&pem, g.inter, g.int_key, e, 2, 42, 7));
	bio = BIO_new_mem_buf(pem, -1);
	crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
	assert_non_null(crl);
	assert_int_equal(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
	num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
	assert_non_null(num);
	assert_int_equal(ASN1_INTEGER_get(num), 42);
	ASN1_INTEGER_free(num);
	assert_true(X509_CRL_get_ext_by_NID(crl, NID_authority_key_identifier, -1) >= 0);
	ix = x509_of(g.inter);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ix)), 1);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)), 2);
	ax = x509_of(a);
	for (i = 0; i < 2; i++) {
		rev = sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), i);
		reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
		if (ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(rev),
		    X509_get0_serialNumber(ax)) == 0) {
			assert_non_null(reason);
			assert_int_equal(ASN1_ENUMERATED_get(reason), 1);
		} else {
			assert_null(reason); /* unspecified is left out (RFC 5280) */
		}
		ASN1_ENUMERATED_free(reason);
	}
	assert_true(X509_cmp_time(X509_CRL_get0_nextUpdate(crl), NULL) > 0);
	/* Bad entries. */
	e[0].reason = 7;
	assert_int_equal(cf_pki_make_crl(&(char *){ NULL }, g.inter, g.int_key, e, 1, 43, 7),
	    CF_EINVAL);
	e[0] = (cf_crl_entry){ "xyz", 0, 1 };
	assert_int_equal(cf_pki_make_crl(&(char *){ NULL }, g.inter, g.int_key, e, 1, 43, 7),
	    CF_EINVAL);
	assert_int_equal(cf_pki_make_crl(&(char *){ NULL }, g.inter, g.int_key, NULL, 0, -1, 7),
	    CF_EINVAL);
	X509_free(ix);
	X509_free(ax);
	X509_CRL_free(crl);
	BIO_free(bio);
	free(pem);
	cf_cert_free(a);
	cf_cert_free(b);
}

static void
test_pki__verify_chain_ok(void **state)
{
	cf_cert *leaf = issue("verify-ok", g.dev_key, 0);

	(void)state;
	must(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, NULL, 0, 1));
	must(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, NULL, 0, 0));
	/* Without the intermediate there is no path. */
	assert_int_equal(cf_pki_verify_chain(leaf, NULL, 0, &g.root, 1, NULL, 0, 1), CF_EREJECTED);
	assert_int_equal(cf_pki_verify_chain(leaf, &g.inter, 1, NULL, 0, NULL, 0, 1), CF_EINVAL);
	cf_cert_free(leaf);
}

static void
test_pki__verify_chain_wrong_root(void **state)
{
	cf_cert *leaf = issue("verify-wrong-root", g.dev_key, 0), *other = NULL;

	(void)state;
	must(cf_pki_make_root(&other, g.keys[CF_KEY_P256], "certfleet test root", 30));
	/* Same name, different key: the signature check must catch it. */
	assert_int_equal(cf_pki_verify_chain(leaf, &g.inter, 1, &other, 1, NULL, 0, 1),
	    CF_EREJECTED);
	print_message("wrong root: %s\n", cf_error_last());
	cf_cert_free(other);
	cf_cert_free(leaf);
}

static void
test_pki__verify_chain_expired_leaf(void **state)
{
	cf_cert *leaf = issue("verify-expired", g.dev_key, 600);
	cf_cert_info info;

	(void)state;
	must(cf_cert_info_get(&info, leaf));
	assert_true(info.not_after - info.not_before == 600);
	must(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, NULL, info.not_before + 10, 1));
	assert_int_equal(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, NULL,
	    info.not_after + 3600, 1), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "expired"));
	assert_int_equal(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, NULL,
	    info.not_before - 3600, 1), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "not yet valid"));
	cf_cert_free(leaf);
}

static void
test_pki__verify_chain_revoked_leaf_with_crl(void **state)
{
	cf_cert *leaf = issue("verify-revoked", g.dev_key, 0), *good = issue("verify-good",
	    g.dev_key, 0);
	cf_cert_info info;
	cf_crl_entry e;
	char *int_crl = NULL, *root_crl = NULL, *crls, *empty_crl = NULL, *crls2;

	(void)state;
	must(cf_cert_info_get(&info, leaf));
	e = (cf_crl_entry){ info.serial, cf_time_now(), 1 };
	must(cf_pki_make_crl(&int_crl, g.inter, g.int_key, &e, 1, 2, 7));
	must(cf_pki_make_crl(&empty_crl, g.inter, g.int_key, NULL, 0, 1, 7));
	must(cf_pki_make_crl(&root_crl, g.root, g.root_key, NULL, 0, 1, 30));
	crls = malloc(strlen(int_crl) + strlen(root_crl) + 1);
	sprintf(crls, "%s%s", int_crl, root_crl);
	crls2 = malloc(strlen(empty_crl) + strlen(root_crl) + 1);
	sprintf(crls2, "%s%s", empty_crl, root_crl);
	assert_int_equal(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, crls, 0, 1),
	    CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "revoked"));
	must(cf_pki_verify_chain(good, &g.inter, 1, &g.root, 1, crls, 0, 1));
	must(cf_pki_verify_chain(leaf, &g.inter, 1, &g.root, 1, crls2, 0, 1));
	/* ... and the root's CRL is what vouches for the intermediate. */
	assert_int_equal(cf_pki_verify_chain(good, &g.inter, 1, &g.root, 1, empty_crl, 0, 1),
	    CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "unable to get certificate CRL"));
	/* CRL checking covers the whole chain: a missing CRL is a failure, not a pass. */
	assert_int_equal(cf_pki_verify_chain(good, &g.inter, 1, &g.root, 1, root_crl, 0, 1),
	    CF_EREJECTED);
	assert_int_equal(cf_pki_verify_chain(good, &g.inter, 1, &g.root, 1, "junk", 0, 1),
	    CF_EINVAL);
	free(crls);
	free(crls2);
	free(int_crl);
	free(root_crl);
	free(empty_crl);
	cf_cert_free(leaf);
	cf_cert_free(good);
}

static void
test_pki__verify_chain_client_auth_purpose(void **state)
{
	(void)state;
	/* A CA certificate is not a client certificate. */
	must(cf_pki_verify_chain(g.inter, NULL, 0, &g.root, 1, NULL, 0, 0));
	assert_int_equal(cf_pki_verify_chain(g.inter, NULL, 0, &g.root, 1, NULL, 0, 1),
	    CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "purpose"));
}

static void
test_pki__openssl_cli_cross_check(void **state)
{
	cf_cert *leaf = issue("cli-device", g.keys[CF_KEY_RSA2048], 0);
	cf_cert_info info;
	cf_crl_entry e;
	char *s = NULL, *out;
	int status;

	(void)state;
	must(cf_cert_to_pem(&s, g.root));
	write_file(path_in_tmp("root.pem"), s);
	free(s);
	must(cf_cert_to_pem(&s, g.inter));
	write_file(path_in_tmp("inter.pem"), s);
	free(s);
	must(cf_cert_to_pem(&s, leaf));
	write_file(path_in_tmp("device.pem"), s);
	free(s);
	must(cf_pki_make_crl(&s, g.inter, g.int_key, NULL, 0, 1, 7));
	write_file(path_in_tmp("empty.crl"), s);
	free(s);
	must(cf_cert_info_get(&info, leaf));
	e = (cf_crl_entry){ info.serial, cf_time_now(), 4 };
	must(cf_pki_make_crl(&s, g.inter, g.int_key, &e, 1, 2, 7));
	write_file(path_in_tmp("revoked.crl"), s);
	free(s);

	out = run(&status, "openssl verify -purpose sslclient -CAfile '%s' -untrusted '%s' '%s' 2>&1",
	    path_in_tmp("root.pem"), path_in_tmp("inter.pem"), path_in_tmp("device.pem"));
	print_message("%s", out);
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "device.pem: OK"));
	free(out);
	out = run(&status, "openssl verify -crl_check -CAfile '%s' -untrusted '%s' -CRLfile '%s' "
	    "'%s' 2>&1", path_in_tmp("root.pem"), path_in_tmp("inter.pem"),
	    path_in_tmp("empty.crl"), path_in_tmp("device.pem"));
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "device.pem: OK"));
	free(out);
	out = run(&status, "openssl verify -crl_check -CAfile '%s' -untrusted '%s' -CRLfile '%s' "
	    "'%s' 2>&1", path_in_tmp("root.pem"), path_in_tmp("inter.pem"),
	    path_in_tmp("revoked.crl"), path_in_tmp("device.pem"));
	print_message("%s", out);
	assert_int_not_equal(status, 0);
	assert_non_null(strstr(out, "certificate revoked"));
	assert_null(strstr(out, "device.pem: OK"));
	free(out);
	/* OpenSSL reads the CRL's fields as we meant them. */
	out = run(&status, "openssl crl -in '%s' -noout -text 2>&1", path_in_tmp("revoked.crl"));
	assert_int_equal(status, 0);
	assert_non_null(strstr(out, "Version 2"));
	assert_non_null(strstr(out, "X509v3 CRL Number"));
	assert_non_null(strstr(out, "X509v3 Authority Key Identifier"));
	assert_non_null(strstr(out, "Superseded"));
	free(out);
	cf_cert_free(leaf);
}

static void
test_pki__cert_check_thing_issued_device(void **state)
{
	cf_cert *c = issue("sensor-1", g.dev_key, 0);

	(void)state;
	must(cf_cert_check_thing(c, "sensor-1"));
	assert_int_equal(cf_cert_check_thing(c, "sensor-2"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "CN 'sensor-1' is not the thing 'sensor-2'"));
	assert_int_equal(cf_cert_check_thing(c, "bad thing"), CF_EINVAL);
	cf_cert_free(c);
}

/* The CN names the thing but the SAN URI another one (and the other way round). */
static void
test_pki__cert_check_thing_cn_and_san_must_agree(void **state)
{
	static const char *const one[] = {"sensor-1"}, *const two[] = {"sensor-2"};
	cf_cert *c;

	(void)state;
	c = raw_cert(one, 1, "URI:urn:certfleet:thing:sensor-2");
	assert_int_equal(cf_cert_check_thing(c, "sensor-1"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "URI 'urn:certfleet:thing:sensor-2' is not "
	    "urn:certfleet:thing:sensor-1"));
	cf_cert_free(c);
	c = raw_cert(two, 1, "URI:urn:certfleet:thing:sensor-1");
	assert_int_equal(cf_cert_check_thing(c, "sensor-1"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "CN 'sensor-2'"));
	cf_cert_free(c);
	/* Both right: a hand-made certificate passes the name check (the chain is checked elsewhere). */
	c = raw_cert(one, 1, "URI:urn:certfleet:thing:sensor-1");
	must(cf_cert_check_thing(c, "sensor-1"));
	cf_cert_free(c);
}

/* No SAN, a second URI, a DNS or IP entry, two CNs, no CN: all refused. */
static void
test_pki__cert_check_thing_missing_or_extra_names(void **state)
{
	static const char *const one[] = {"sensor-1"}, *const both[] = {"sensor-1", "sensor-1"};
	static const struct {
		const char *san;
		const char *why;
	} bad[] = {
		{NULL, "no subjectAltName"},
		{"URI:urn:certfleet:thing:sensor-1,URI:urn:certfleet:thing:sensor-9", "sensor-9"},
		{"URI:urn:certfleet:thing:sensor-1,DNS:sensor-1", "entry of type"},
		{"DNS:sensor-1", "entry of type"},
		{"IP:127.0.0.1,URI:urn:certfleet:thing:sensor-1", "entry of type"},
		{"URI:urn:certfleet:thing:sensor-1x", "is not urn:certfleet:thing:sensor-1"},
		{"URI:URN:CERTFLEET:THING:sensor-1", "is not urn:certfleet:thing:sensor-1"},
	};
	cf_cert *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = raw_cert(one, 1, bad[i].san);
		assert_int_equal(cf_cert_check_thing(c, "sensor-1"), CF_EREJECTED);
		if (strstr(cf_error_last(), bad[i].why) == NULL)
			fail_msg("SAN %s: '%s' lacks '%s'", bad[i].san ? bad[i].san : "(none)",
			    cf_error_last(), bad[i].why);
		cf_cert_free(c);
	}
	c = raw_cert(both, 2, "URI:urn:certfleet:thing:sensor-1");
	assert_int_equal(cf_cert_check_thing(c, "sensor-1"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "2 common names"));
	cf_cert_free(c);
	c = raw_cert(one, 0, "URI:urn:certfleet:thing:sensor-1");
	assert_int_equal(cf_cert_check_thing(c, "sensor-1"), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "0 common names"));
	cf_cert_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pki__sha256_hex_known_vector),
		cmocka_unit_test(test_pki__random_and_secure_equal),
		cmocka_unit_test(test_pki__keygen_all_algorithms),
		cmocka_unit_test(test_pki__key_pem_roundtrip_plain),
		cmocka_unit_test(test_pki__key_encrypted_pkcs8_aes256_pbkdf2),
		cmocka_unit_test(test_pki__key_wrong_passphrase_is_epass),
		cmocka_unit_test(test_pki__key_save_load_0600),
		cmocka_unit_test(test_pki__key_from_pem_malformed),
		cmocka_unit_test(test_pki__key_fingerprint_is_sha256_of_spki),
		cmocka_unit_test(test_pki__csr_create_parse_verify_pem_and_der),
		cmocka_unit_test(test_pki__csr_malformed_pem),
		cmocka_unit_test(test_pki__csr_truncated_der),
		cmocka_unit_test(test_pki__csr_tampered_signature_rejected),
		cmocka_unit_test(test_pki__csr_subject_other_thing_rejected),
		cmocka_unit_test(test_pki__csr_two_cns_rejected),
		cmocka_unit_test(test_pki__csr_mismatched_san_rejected),
		cmocka_unit_test(test_pki__root_profile),
		cmocka_unit_test(test_pki__intermediate_profile),
		cmocka_unit_test(test_pki__issue_device_profile),
		cmocka_unit_test(test_pki__validity_clamped_to_issuer),
		cmocka_unit_test(test_pki__issue_rsa_device_has_key_encipherment),
		cmocka_unit_test(test_pki__issue_every_key_algorithm_verifies),
		cmocka_unit_test(test_pki__pss_csr_parameters_and_issuance),
		cmocka_unit_test(test_pki__issued_handle_works_without_reparse),
		cmocka_unit_test(test_pki__serial_is_positive_128_bit),
		cmocka_unit_test(test_pki__issue_refuses_non_ca_issuer),
		cmocka_unit_test(test_pki__issue_refuses_mismatched_issuer_key),
		cmocka_unit_test(test_pki__cert_pem_der_parse_and_fingerprint),
		cmocka_unit_test(test_pki__cert_malformed_and_truncated),
		cmocka_unit_test(test_pki__cert_parse_bundle),
		cmocka_unit_test(test_pki__cert_check_thing_issued_device),
		cmocka_unit_test(test_pki__cert_check_thing_cn_and_san_must_agree),
		cmocka_unit_test(test_pki__cert_check_thing_missing_or_extra_names),
		cmocka_unit_test(test_pki__reason_names),
		cmocka_unit_test(test_pki__crl_v2_number_aki_reasons),
		cmocka_unit_test(test_pki__verify_chain_ok),
		cmocka_unit_test(test_pki__verify_chain_wrong_root),
		cmocka_unit_test(test_pki__verify_chain_expired_leaf),
		cmocka_unit_test(test_pki__verify_chain_revoked_leaf_with_crl),
		cmocka_unit_test(test_pki__verify_chain_client_auth_purpose),
		cmocka_unit_test(test_pki__openssl_cli_cross_check),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
