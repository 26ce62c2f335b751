/*
 * pki_der_test — cf_pki_der: keys, CSRs and certificates read without
 * OpenSSL's OSSL_DECODER must give exactly what the decoder gave. Every case
 * compares against OpenSSL's own path (d2i_PUBKEY, d2i_X509_REQ +
 * X509_REQ_verify, d2i_X509, PEM_read_bio_PrivateKey, the encoder) for all
 * six key algorithms, and the malformed cases must be refused by both.
 * White-box: it includes cf_pki_int.h to reach the EVP_PKEY behind a handle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define CF_TEST_X509
#include "cf_test.h"

#include <openssl/core_names.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_keyq.h"
#include "cf_pki.h"
#include "cf_pki_int.h"
#include "cf_util.h"

static struct {
	cf_key *keys[CF_KEY__COUNT]; /* one of each algorithm */
	cf_key *root_key, *ed_root_key;
	cf_cert *root, *ed_root;
} g;

static const char *const thing = "der-thing-1";

static int
group_setup(void **state)
{
	int a;

	(void)state;
	for (a = 0; a < CF_KEY__COUNT; a++)
		must(cf_key_generate(&g.keys[a], (cf_key_alg)a));
	must(cf_key_generate(&g.root_key, CF_KEY_P256));
	must(cf_pki_make_root(&g.root, g.root_key, "der root", 30));
	must(cf_key_generate(&g.ed_root_key, CF_KEY_ED25519));
	must(cf_pki_make_root(&g.ed_root, g.ed_root_key, "der ed root", 30));
	return 0;
}

static int
group_teardown(void **state)
{
	int a;

	(void)state;
	for (a = 0; a < CF_KEY__COUNT; a++)
		cf_key_free(g.keys[a]);
	cf_key_free(g.root_key);
	cf_cert_free(g.root);
	cf_key_free(g.ed_root_key);
	cf_cert_free(g.ed_root);
	return 0;
}

static int
fast_alg(int a)
{
	return a != CF_KEY_RSA2048 && a != CF_KEY_RSA3072;
}

/* DER SubjectPublicKeyInfo of a key, from OpenSSL's encoder. */
static int
spki_der(unsigned char **out, const cf_key *k)
{
	int n;

	*out = NULL;
	n = i2d_PUBKEY(k->pkey, out);
	assert_true(n > 0);
	return n;
}

/* The fast path alone on DER bytes: a key or NULL. */
static EVP_PKEY *
fast_only(const unsigned char *der, size_t len)
{
	return cf_pki_der_pubkey_fast(der, len);
}

static EVP_PKEY *
decoder(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);

	if (k != NULL && p != der + len) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	ERR_clear_error();
	return k;
}

/* The DER of a CSR made by cf_csr_create. */
static unsigned char *
csr_der(int *len, const cf_key *k, cf_sig_alg sig)
{
	char *pem = NULL;
	BIO *bio;
	X509_REQ *req;
	unsigned char *der = NULL;

	must(cf_csr_create(&pem, k, sig, thing));
	bio = BIO_new_mem_buf(pem, -1);
	req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	assert_non_null(req);
	*len = i2d_X509_REQ(req, &der);
	assert_true(*len > 0);
	X509_REQ_free(req);
	BIO_free(bio);
	free(pem);
	return der;
}

/* The old verdict: d2i_X509_REQ, its decoded key, X509_REQ_verify. 1 verifies. */
static int
old_csr_verdict(const unsigned char *der, int len)
{
	const unsigned char *p = der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, len);
	EVP_PKEY *k;
	int v = 0;

	if (req != NULL && p == der + len && (k = X509_REQ_get0_pubkey(req)) != NULL)
		v = X509_REQ_verify(req, k) == 1;
	X509_REQ_free(req);
	ERR_clear_error();
	return v;
}

static int
new_csr_verdict(const unsigned char *der, int len)
{
	cf_csr *csr = NULL;
	int v;

	if (cf_csr_parse(&csr, der, (size_t)len) != 0)
		return -1;
	v = cf_csr_verify(csr) == 0;
	cf_csr_free(csr);
	return v;
}

/* Finds needle in hay (a test helper over test data, not a parser). */
static unsigned char *
find_bytes(unsigned char *hay, size_t len, const unsigned char *needle, size_t nl)
{
	size_t i;

	for (i = 0; i + nl <= len; i++) {
		if (memcmp(hay + i, needle, nl) == 0)
			return hay + i;
	}
	return NULL;
}

/* ---- SubjectPublicKeyInfo --------------------------------------------------- */

static void
test_pki_der__spki_fast_equals_decoder_all_algorithms(void **state)
{
	unsigned char *der = NULL, *again = NULL;
	EVP_PKEY *fast, *full, *dec;
	int a, n, m;

	(void)state;
	for (a = 0; a < CF_KEY__COUNT; a++) {
		n = spki_der(&der, g.keys[a]);
		fast = fast_only(der, (size_t)n);
		full = cf_pki_der_pubkey(der, (size_t)n);
		dec = decoder(der, (size_t)n);
		assert_non_null(dec);
		assert_non_null(full);
		/* EC and Ed25519 never reach the decoder; RSA always does. */
		if (fast_alg(a)) {
			assert_non_null(fast);
			assert_int_equal(EVP_PKEY_eq(fast, dec), 1);
		} else {
			assert_null(fast);
		}
		assert_int_equal(EVP_PKEY_eq(full, dec), 1);
		assert_int_equal(EVP_PKEY_eq(full, g.keys[a]->pkey), 1);
		/* Re-encoded by OpenSSL, the key is the same bytes. */
		m = i2d_PUBKEY(full, &again);
		assert_int_equal(m, n);
		assert_memory_equal(again, der, (size_t)n);
		assert_string_equal(EVP_PKEY_get0_type_name(full), EVP_PKEY_get0_type_name(dec));
		assert_int_equal(EVP_PKEY_get_bits(full), EVP_PKEY_get_bits(dec));
		OPENSSL_free(again);
		again = NULL;
		EVP_PKEY_free(fast);
		EVP_PKEY_free(full);
		EVP_PKEY_free(dec);
		OPENSSL_free(der);
		der = NULL;
	}
}

static void
test_pki_der__spki_point_not_on_curve_rejected_like_decoder(void **state)
{
	unsigned char *der = NULL;
	int a, n, i;
	const int ec[] = { CF_KEY_P256, CF_KEY_P384, CF_KEY_P521 };

	(void)state;
	for (i = 0; i < 3; i++) {
		a = ec[i];
		n = spki_der(&der, g.keys[a]);
		/* The last byte of y: the point leaves the curve. */
		der[n - 1] ^= 0x01;
		assert_null(fast_only(der, (size_t)n));
		assert_null(decoder(der, (size_t)n));
		assert_null(cf_pki_der_pubkey(der, (size_t)n));
		ERR_clear_error();
		OPENSSL_free(der);
		der = NULL;
	}
}

/* The SPKI of key with its point's coordinates all set to byte b. */
static int
spki_coords_set(unsigned char **out, const cf_key *key, unsigned char b)
{
	int n = spki_der(out, key), field = (EVP_PKEY_get_bits(key->pkey) + 7) / 8;

	memset(*out + n - 2 * field, b, (size_t)(2 * field));
	return n;
}

static void
test_pki_der__spki_zero_and_out_of_range_points_rejected(void **state)
{
	const int ec[] = { CF_KEY_P256, CF_KEY_P384, CF_KEY_P521 };
	unsigned char *der = NULL;
	int i, b, n;

	(void)state;
	for (i = 0; i < 3; i++) {
		for (b = 0; b < 2; b++) {
			n = spki_coords_set(&der, g.keys[ec[i]], b ? 0xff : 0x00);
			assert_int_equal(der[n - 1 - 2 * ((EVP_PKEY_get_bits(g.keys[ec[i]]->pkey) + 7) / 8)],
			    0x04);
			assert_null(fast_only(der, (size_t)n));
			assert_null(decoder(der, (size_t)n));
			assert_null(cf_pki_der_pubkey(der, (size_t)n));
			ERR_clear_error();
			OPENSSL_free(der);
			der = NULL;
		}
	}
}

/*
 * Keys built from one curve's template are copies: two different points
 * give two different keys, each equal to the decoder's, and building
 * them from several threads at once, the templates' one-time set-up
 * included (this test runs first), gives the same.
 */
#define KEYS_PER_THREAD 40
#define THREADS 4

static void *
build_keys(void *arg)
{
	unsigned char **ders = arg;
	EVP_PKEY *k, *d;
	size_t i, a, bad = 0;
	const int ec[] = { CF_KEY_P256, CF_KEY_P384, CF_KEY_P521 };

	for (i = 0; i < KEYS_PER_THREAD; i++) {
		for (a = 0; a < 3; a++) {
			const unsigned char *der = ders[2 * a];
			size_t len = (size_t)(uintptr_t)ders[2 * a + 1];

			k = fast_only(der, len);
			d = decoder(der, len);
			if (k == NULL || d == NULL || EVP_PKEY_eq(k, d) != 1 ||
			    EVP_PKEY_eq(k, g.keys[ec[a]]->pkey) != 1)
				bad++;
			EVP_PKEY_free(k);
			EVP_PKEY_free(d);
		}
	}
	return (void *)(uintptr_t)bad;
}

static void
test_pki_der__spki_template_copies_independent_and_thread_safe(void **state)
{
	const int ec[] = { CF_KEY_P256, CF_KEY_P384, CF_KEY_P521 };
	unsigned char *ders[6], *der2 = NULL;
	cf_key *other = NULL;
	EVP_PKEY *k1, *k2;
	pthread_t th[THREADS];
	void *bad;
	int a, n;

	(void)state;
	for (a = 0; a < 3; a++) {
		n = spki_der(&ders[2 * a], g.keys[ec[a]]);
		ders[2 * a + 1] = (unsigned char *)(uintptr_t)n;
	}
	/* First in this binary: the threads race to the templates' one-time set-up. */
	for (a = 0; a < THREADS; a++)
		assert_int_equal(pthread_create(&th[a], NULL, build_keys, ders), 0);
	for (a = 0; a < THREADS; a++) {
		assert_int_equal(pthread_join(th[a], &bad), 0);
		assert_int_equal((uintptr_t)bad, 0);
	}
	for (a = 0; a < 3; a++) {
		must(cf_key_generate(&other, (cf_key_alg)ec[a]));
		n = spki_der(&der2, other);
		k1 = fast_only(ders[2 * a], (size_t)(uintptr_t)ders[2 * a + 1]);
		k2 = fast_only(der2, (size_t)n);
		assert_non_null(k1);
		assert_non_null(k2);
		assert_int_equal(EVP_PKEY_eq(k1, k2), 0);
		assert_int_equal(EVP_PKEY_eq(k1, g.keys[ec[a]]->pkey), 1);
		assert_int_equal(EVP_PKEY_eq(k2, other->pkey), 1);
		EVP_PKEY_free(k1);
		EVP_PKEY_free(k2);
		OPENSSL_free(der2);
		der2 = NULL;
		cf_key_free(other);
		other = NULL;
		ERR_clear_error();
	}
	for (a = 0; a < 3; a++)
		OPENSSL_free(ders[2 * a]);
}

/* An SPKI built with OpenSSL's own setters (the encoder is not involved). */
static int
spki_with(unsigned char **out, int alg_nid, int ptype, void *pval, const unsigned char *pt,
    int pt_len)
{
	X509_PUBKEY *pub = X509_PUBKEY_new();
	unsigned char *penc = OPENSSL_memdup(pt, (size_t)pt_len);
	int n;

	assert_non_null(pub);
	assert_true(X509_PUBKEY_set0_param(pub, OBJ_nid2obj(alg_nid), ptype, pval, penc, pt_len));
	*out = NULL;
	n = i2d_X509_PUBKEY(pub, out);
	assert_true(n > 0);
	X509_PUBKEY_free(pub);
	return n;
}

static void
test_pki_der__spki_wrong_curve_and_unknown_curve(void **state)
{
	unsigned char pt[200], *der = NULL;
	size_t len = 0;
	EVP_PKEY *k1, *full, *dec;
	int n;

	(void)state;
	assert_int_equal(EVP_PKEY_get_octet_string_param(g.keys[CF_KEY_P256]->pkey,
	    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len), 1);
	/* A P-256 point labelled P-384: neither path takes it. */
	n = spki_with(&der, NID_X9_62_id_ecPublicKey, V_ASN1_OBJECT, OBJ_nid2obj(NID_secp384r1), pt,
	    (int)len);
	assert_null(fast_only(der, (size_t)n));
	assert_null(decoder(der, (size_t)n));
	assert_null(cf_pki_der_pubkey(der, (size_t)n));
	OPENSSL_free(der);
	/* A P-256 point labelled Ed25519 (wrong length): refused. */
	n = spki_with(&der, NID_ED25519, V_ASN1_UNDEF, NULL, pt, (int)len);
	assert_null(fast_only(der, (size_t)n));
	assert_null(decoder(der, (size_t)n));
	assert_null(cf_pki_der_pubkey(der, (size_t)n));
	OPENSSL_free(der);
	/* Ed25519 with parameters (RFC 8410 forbids them): refused. */
	n = spki_with(&der, NID_ED25519, V_ASN1_NULL, NULL, pt, 32);
	assert_null(fast_only(der, (size_t)n));
	assert_null(decoder(der, (size_t)n));
	assert_null(cf_pki_der_pubkey(der, (size_t)n));
	OPENSSL_free(der);
	/* secp256k1 is not on the fast path: the decoder takes it, and so do we. */
	k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
	assert_non_null(k1);
	der = NULL;
	n = i2d_PUBKEY(k1, &der);
	assert_null(fast_only(der, (size_t)n));
	full = cf_pki_der_pubkey(der, (size_t)n);
	dec = decoder(der, (size_t)n);
	assert_non_null(full);
	assert_int_equal(EVP_PKEY_eq(full, dec), 1);
	EVP_PKEY_free(full);
	EVP_PKEY_free(dec);
	OPENSSL_free(der);
	EVP_PKEY_free(k1);
	/* A compressed P-256 point: the decoder's business, the same key. */
	k1 = EVP_PKEY_dup(g.keys[CF_KEY_P256]->pkey);
	assert_int_equal(EVP_PKEY_set_utf8_string_param(k1, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
	    "compressed"), 1);
	der = NULL;
	n = i2d_PUBKEY(k1, &der);
	assert_int_equal(n, 59); /* 0x02/0x03 + x */
	assert_null(fast_only(der, (size_t)n));
	full = cf_pki_der_pubkey(der, (size_t)n);
	assert_non_null(full);
	assert_int_equal(EVP_PKEY_eq(full, g.keys[CF_KEY_P256]->pkey), 1);
	EVP_PKEY_free(full);
	OPENSSL_free(der);
	EVP_PKEY_free(k1);
	ERR_clear_error();
}

static void
test_pki_der__spki_trailing_truncated_and_ber(void **state)
{
	unsigned char *der = NULL, *buf;
	EVP_PKEY *k, *dec;
	int n, cut;

	(void)state;
	n = spki_der(&der, g.keys[CF_KEY_P256]);
	/* Trailing garbage. */
	buf = malloc((size_t)n + 1);
	memcpy(buf, der, (size_t)n);
	buf[n] = 0;
	assert_null(fast_only(buf, (size_t)n + 1));
	assert_null(cf_pki_der_pubkey(buf, (size_t)n + 1));
	free(buf);
	/* Every truncation. */
	for (cut = 0; cut < n; cut++) {
		assert_null(fast_only(der, (size_t)cut));
		assert_null(cf_pki_der_pubkey(der, (size_t)cut));
	}
	/* BER: the outer length in long form (0x30 0x81 0x59). Not DER: never the fast path. */
	buf = malloc((size_t)n + 1);
	buf[0] = 0x30;
	buf[1] = 0x81;
	memcpy(buf + 2, der + 1, (size_t)n - 1);
	assert_int_equal(der[1], 0x59);
	assert_null(fast_only(buf, (size_t)n + 1));
	k = cf_pki_der_pubkey(buf, (size_t)n + 1);
	dec = decoder(buf, (size_t)n + 1);
	/* Whatever OpenSSL's decoder says about it, we say the same. */
	assert_int_equal(k != NULL, dec != NULL);
	if (k != NULL)
		assert_int_equal(EVP_PKEY_eq(k, dec), 1);
	EVP_PKEY_free(k);
	EVP_PKEY_free(dec);
	free(buf);
	/* Wrong outer tag (SET instead of SEQUENCE). */
	der[0] = 0x31;
	assert_null(cf_pki_der_pubkey(der, (size_t)n));
	assert_null(decoder(der, (size_t)n));
	OPENSSL_free(der);
	ERR_clear_error();
}

/* ---- CSRs ------------------------------------------------------------------ */

static void
test_pki_der__csr_create_spki_bytes_are_the_encoders(void **state)
{
	unsigned char *der, *spki = NULL, *enc = NULL;
	const unsigned char *p;
	X509_REQ *req;
	int a, len, n, m;

	(void)state;
	for (a = 0; a < CF_KEY__COUNT; a++) {
		der = csr_der(&len, g.keys[a], cf_sig_alg_default((cf_key_alg)a));
		p = der;
		req = d2i_X509_REQ(NULL, &p, len);
		assert_non_null(req);
		/* What X509_REQ_set_pubkey (the encoder) would have written. */
		n = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &spki);
		m = i2d_PUBKEY(g.keys[a]->pkey, &enc);
		assert_int_equal(n, m);
		assert_memory_equal(spki, enc, (size_t)n);
		assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
		OPENSSL_free(spki);
		OPENSSL_free(enc);
		spki = enc = NULL;
		X509_REQ_free(req);
		OPENSSL_free(der);
	}
}

static void
test_pki_der__csr_key_and_verdict_equal_openssl_all_algorithms(void **state)
{
	const cf_sig_alg sigs[] = { CF_SIG_SHA256_RSA, CF_SIG_SHA384_RSA_PSS, CF_SIG_ECDSA_SHA256,
		CF_SIG_ECDSA_SHA384, CF_SIG_ECDSA_SHA512, CF_SIG_ED25519 };
	const int keys[] = { CF_KEY_RSA2048, CF_KEY_RSA3072, CF_KEY_P256, CF_KEY_P384, CF_KEY_P521,
		CF_KEY_ED25519 };
	unsigned char *der;
	const unsigned char *p;
	X509_REQ *req;
	cf_csr *csr = NULL;
	cf_key *pub = NULL;
	char name[64], old_name[64];
	int i, len;

	(void)state;
	for (i = 0; i < 6; i++) {
		der = csr_der(&len, g.keys[keys[i]], sigs[i]);
		p = der;
		req = d2i_X509_REQ(NULL, &p, len);
		assert_non_null(req);
		must(cf_csr_parse(&csr, der, (size_t)len));
		must(cf_csr_pubkey(&pub, csr));
		assert_int_equal(EVP_PKEY_eq(pub->pkey, X509_REQ_get0_pubkey(req)), 1);
		assert_int_equal(new_csr_verdict(der, len), 1);
		assert_int_equal(old_csr_verdict(der, len), 1);
		must(cf_csr_check_subject(csr, thing));
		assert_int_equal(cf_csr_check_subject(csr, "other-thing"), CF_EREJECTED);
		must(cf_csr_sig_name(name, sizeof(name), csr));
		snprintf(old_name, sizeof(old_name), "%s", OBJ_nid2ln(X509_REQ_get_signature_nid(req)));
		assert_string_equal(name, old_name);
		/* Tampered signature: the last byte of the BIT STRING. */
		der[len - 1] ^= 0x01;
		assert_int_equal(new_csr_verdict(der, len), 0);
		assert_int_equal(old_csr_verdict(der, len), 0);
		der[len - 1] ^= 0x01;
		/* Tampered request info: a byte of the thing's name. */
		p = find_bytes(der, (size_t)len, (const unsigned char *)thing, strlen(thing));
		assert_non_null(p);
		der[p - der] ^= 0x20;
		assert_int_equal(new_csr_verdict(der, len), 0);
		assert_int_equal(old_csr_verdict(der, len), 0);
		cf_key_free(pub);
		pub = NULL;
		cf_csr_free(csr);
		csr = NULL;
		X509_REQ_free(req);
		OPENSSL_free(der);
	}
}

static void
test_pki_der__csr_malformed_trailing_truncated(void **state)
{
	unsigned char *der, *buf;
	cf_csr *csr = NULL;
	int len, cut;

	(void)state;
	der = csr_der(&len, g.keys[CF_KEY_P256], CF_SIG_ECDSA_SHA256);
	buf = malloc((size_t)len + 2);
	memcpy(buf, der, (size_t)len);
	buf[len] = 0;
	buf[len + 1] = 0;
	assert_int_equal(cf_csr_parse(&csr, buf, (size_t)len + 2), CF_EINVAL);
	for (cut = 1; cut < len; cut++)
		assert_int_equal(cf_csr_parse(&csr, der, (size_t)cut), CF_EINVAL);
	/* The signature algorithm's SEQUENCE tag turned into a SET. */
	memcpy(buf, der, (size_t)len);
	assert_int_equal(buf[0], 0x30);
	buf[0] = 0x31;
	assert_int_equal(cf_csr_parse(&csr, buf, (size_t)len), CF_EINVAL);
	free(buf);
	OPENSSL_free(der);
}

static void
test_pki_der__csr_point_off_curve_rejected_at_verify(void **state)
{
	unsigned char *der, *spki = NULL, *at;
	cf_csr *csr = NULL;
	int len, n;

	(void)state;
	der = csr_der(&len, g.keys[CF_KEY_P384], CF_SIG_ECDSA_SHA384);
	n = spki_der(&spki, g.keys[CF_KEY_P384]);
	at = find_bytes(der, (size_t)len, spki, (size_t)n);
	assert_non_null(at);
	at[n - 1] ^= 0x01;
	/* As d2i_X509_REQ: parsing succeeds, the key does not decode, verify refuses. */
	must(cf_csr_parse(&csr, der, (size_t)len));
	assert_null(csr->pkey);
	assert_int_equal(cf_csr_verify(csr), CF_EREJECTED);
	assert_non_null(strstr(cf_error_last(), "cannot be decoded"));
	assert_int_equal(old_csr_verdict(der, len), 0);
	cf_csr_free(csr);
	OPENSSL_free(spki);
	OPENSSL_free(der);
}

static void
test_pki_der__csr_spki_algorithm_differs_from_signature(void **state)
{
	X509_REQ *req = X509_REQ_new();
	unsigned char *der = NULL;
	cf_csr *csr = NULL;
	int len;

	(void)state;
	/* An EC key in the request, signed by an Ed25519 key. */
	assert_non_null(req);
	assert_true(X509_REQ_set_pubkey(req, g.keys[CF_KEY_P256]->pkey));
	assert_true(X509_REQ_sign(req, g.keys[CF_KEY_ED25519]->pkey, NULL) > 0);
	len = i2d_X509_REQ(req, &der);
	assert_true(len > 0);
	must(cf_csr_parse(&csr, der, (size_t)len));
	assert_int_equal(cf_csr_verify(csr), CF_EREJECTED);
	assert_int_equal(old_csr_verdict(der, len), 0);
	cf_csr_free(csr);
	/* And the other way: an Ed25519 key, signed with ECDSA by the EC key. */
	X509_REQ_free(req);
	OPENSSL_free(der);
	der = NULL;
	req = X509_REQ_new();
	assert_true(X509_REQ_set_pubkey(req, g.keys[CF_KEY_ED25519]->pkey));
	assert_true(X509_REQ_sign(req, g.keys[CF_KEY_P256]->pkey, EVP_sha256()) > 0);
	len = i2d_X509_REQ(req, &der);
	must(cf_csr_parse(&csr, der, (size_t)len));
	assert_int_equal(cf_csr_verify(csr), CF_EREJECTED);
	assert_int_equal(old_csr_verdict(der, len), 0);
	cf_csr_free(csr);
	X509_REQ_free(req);
	OPENSSL_free(der);
	ERR_clear_error();
}

/* ---- issued certificates ----------------------------------------------------- */

/*
 * The certificate issued from a CSR is byte-identical to the one OpenSSL's
 * own path gives for the same serial and times: the same certificate with
 * the public key set from d2i_X509_REQ's decoded key (X509_set_pubkey, the
 * encoder), signed again. With the Ed25519 root the signature is
 * deterministic, so the whole signed certificate must match; with the P-256
 * root (ECDSA is randomised) the TBSCertificate.
 */
static void
test_pki_der__issued_certificate_byte_identical_all_algorithms(void **state)
{
	unsigned char *der, *b_new = NULL, *b_old = NULL;
	const unsigned char *p;
	X509_REQ *req;
	X509 *issued, *expected;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	int a, len, n, m, ed;

	(void)state;
	for (ed = 0; ed < 2; ed++) {
		for (a = 0; a < CF_KEY__COUNT; a++) {
			der = csr_der(&len, g.keys[a], cf_sig_alg_default((cf_key_alg)a));
			must(cf_csr_parse(&csr, der, (size_t)len));
			must(cf_pki_issue_device(&cert, csr, thing, 10, 0, ed ? g.ed_root : g.root,
			    ed ? g.ed_root_key : g.root_key));
			issued = x509_of(cert);
			p = der;
			req = d2i_X509_REQ(NULL, &p, len);
			assert_non_null(req);
			expected = X509_dup(issued);
			assert_non_null(expected);
			assert_true(X509_set_pubkey(expected, X509_REQ_get0_pubkey(req)));
			if (ed) {
				assert_true(X509_sign(expected, g.ed_root_key->pkey, NULL) > 0);
				n = i2d_X509(issued, &b_new);
				m = i2d_X509(expected, &b_old);
			} else {
				n = i2d_re_X509_tbs(issued, &b_new);
				m = i2d_re_X509_tbs(expected, &b_old);
			}
			assert_true(n > 0);
			assert_int_equal(n, m);
			assert_memory_equal(b_new, b_old, (size_t)n);
			/* keyEncipherment exactly for RSA keys (the family the CSR's key gave). */
			assert_int_equal((X509_get_key_usage(issued) & KU_KEY_ENCIPHERMENT) != 0,
			    a == CF_KEY_RSA2048 || a == CF_KEY_RSA3072);
			/* The certificate holds the CSR's key, read either way. */
			assert_int_equal(cf_cert_matches_key(cert, g.keys[a]), 1);
			OPENSSL_free(b_new);
			OPENSSL_free(b_old);
			b_new = b_old = NULL;
			X509_free(expected);
			X509_free(issued);
			X509_REQ_free(req);
			cf_cert_free(cert);
			cert = NULL;
			cf_csr_free(csr);
			csr = NULL;
			OPENSSL_free(der);
		}
	}
}

/*
 * The certificate the config-string profile gives: got's serial and times,
 * CN=cn through a separate X509_NAME and X509_set_subject_name, pub through
 * the encoder, and the extensions from OpenSSL config strings
 * (X509V3_EXT_conf_nid + X509_add_ext), signed by the Ed25519 root (a
 * deterministic signature). What cf_pki_ca.c did before building names and
 * extensions directly: the two must be the same bytes.
 */
struct conf_ext {
	int nid;
	const char *value;
};

static X509 *
config_profile(const X509 *got, EVP_PKEY *pub, const char *cn, X509 *issuer,
    const struct conf_ext *exts, size_t n)
{
	X509 *x = X509_new();
	X509_NAME *name = cf_pki_name_from_cn(cn);
	X509_EXTENSION *e;
	X509V3_CTX ctx;
	size_t i;

	assert_non_null(x);
	assert_non_null(name);
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(X509_set_serialNumber(x, (ASN1_INTEGER *)X509_get0_serialNumber(got)));
	assert_true(X509_set_subject_name(x, name));
	assert_true(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name));
	assert_true(X509_set1_notBefore(x, X509_get0_notBefore(got)));
	assert_true(X509_set1_notAfter(x, X509_get0_notAfter(got)));
	assert_true(X509_set_pubkey(x, pub));
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	for (i = 0; i < n; i++) {
		e = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
		assert_non_null(e);
		assert_true(X509_add_ext(x, e, -1));
		X509_EXTENSION_free(e);
	}
	assert_true(X509_sign(x, g.ed_root_key->pkey, NULL) > 0);
	X509_NAME_free(name);
	return x;
}

static void
assert_same_der(X509 *a, X509 *b)
{
	unsigned char *da = NULL, *db = NULL;
	int na = i2d_X509(a, &da), nb = i2d_X509(b, &db);

	assert_true(na > 0);
	assert_int_equal(na, nb);
	assert_memory_equal(da, db, (size_t)na);
	OPENSSL_free(da);
	OPENSSL_free(db);
}

static void
test_pki_der__every_profile_equals_config_string_profile(void **state)
{
	const struct conf_ext root_exts[] = {
		{ NID_basic_constraints, "critical,CA:TRUE" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
	}, inter_exts[] = {
		{ NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	struct conf_ext leaf[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, NULL },
		{ NID_ext_key_usage, NULL },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
		{ NID_subject_alt_name, NULL },
	};
	char san[128];
	unsigned char *der;
	const unsigned char *p;
	X509 *got, *want;
	X509_REQ *req;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	int a, len, server;

	(void)state;
	/* The Ed25519 root itself, and an intermediate under it. */
	got = x509_of(g.ed_root);
	want = config_profile(got, g.ed_root_key->pkey, "der ed root", NULL, root_exts, 3);
	assert_same_der(got, want);
	X509_free(want);
	X509_free(got);
	must(cf_pki_make_intermediate(&cert, g.keys[CF_KEY_P384], "der inter", 10, g.ed_root,
	    g.ed_root_key));
	got = x509_of(cert);
	want = config_profile(got, g.keys[CF_KEY_P384]->pkey, "der inter", g.ed_root->x509,
	    inter_exts, 4);
	assert_same_der(got, want);
	X509_free(want);
	X509_free(got);
	cf_cert_free(cert);
	cert = NULL;
	for (a = 0; a < CF_KEY__COUNT; a++) {
		int rsa = a == CF_KEY_RSA2048 || a == CF_KEY_RSA3072;

		leaf[1].value = rsa ? "critical,digitalSignature,keyEncipherment" :
		    "critical,digitalSignature";
		/* A device certificate from a CSR. */
		der = csr_der(&len, g.keys[a], cf_sig_alg_default((cf_key_alg)a));
		must(cf_csr_parse(&csr, der, (size_t)len));
		must(cf_pki_issue_device(&cert, csr, thing, 10, 0, g.ed_root, g.ed_root_key));
		p = der;
		req = d2i_X509_REQ(NULL, &p, len);
		assert_non_null(req);
		leaf[2].value = "clientAuth";
		snprintf(san, sizeof(san), "URI:urn:certfleet:thing:%s", thing);
		leaf[5].value = san;
		got = x509_of(cert);
		want = config_profile(got, X509_REQ_get0_pubkey(req), thing, g.ed_root->x509, leaf, 6);
		assert_same_der(got, want);
		X509_free(want);
		X509_free(got);
		X509_REQ_free(req);
		cf_cert_free(cert);
		cert = NULL;
		cf_csr_free(csr);
		csr = NULL;
		OPENSSL_free(der);
		/* A TLS certificate, server and client, with and without a SAN. */
		for (server = 0; server < 2; server++) {
			leaf[2].value = server ? "serverAuth" : "clientAuth";
			leaf[5].value = "DNS:localhost,IP:127.0.0.1";
			must(cf_pki_issue_tls(&cert, g.keys[a], "broker", server ? leaf[5].value : NULL,
			    server, 10, g.ed_root, g.ed_root_key));
			got = x509_of(cert);
			want = config_profile(got, g.keys[a]->pkey, "broker", g.ed_root->x509, leaf,
			    server ? 6 : 5);
			assert_same_der(got, want);
			X509_free(want);
			X509_free(got);
			cf_cert_free(cert);
			cert = NULL;
		}
	}
}

/* An issuer without a subjectKeyIdentifier cannot give keyid:always: refused, as before. */
static void
test_pki_der__issuer_without_ski_refused(void **state)
{
	X509 *x = X509_new();
	X509_EXTENSION *e;
	X509V3_CTX ctx;
	cf_cert *ca = NULL, *cert = NULL;
	unsigned char *der;
	cf_csr *csr = NULL;
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm = NULL;
	int len;

	(void)state;
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), 7));
	assert_true(X509_set_subject_name(x, X509_get_subject_name(g.root->x509)));
	assert_true(X509_set_issuer_name(x, X509_get_subject_name(g.root->x509)));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_true(X509_set_pubkey(x, g.root_key->pkey));
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
	assert_true(X509_add_ext(x, e, -1));
	X509_EXTENSION_free(e);
	e = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign");
	assert_true(X509_add_ext(x, e, -1));
	X509_EXTENSION_free(e);
	assert_true(X509_sign(x, g.root_key->pkey, EVP_sha256()) > 0);
	assert_true(PEM_write_bio_X509(bio, x) == 1);
	BIO_get_mem_ptr(bio, &bm);
	must(cf_cert_parse(&ca, bm->data, bm->length));
	der = csr_der(&len, g.keys[CF_KEY_P256], CF_SIG_ECDSA_SHA256);
	must(cf_csr_parse(&csr, der, (size_t)len));
	assert_int_equal(cf_pki_issue_device(&cert, csr, thing, 10, 0, ca, g.root_key), CF_ERROR);
	assert_null(cert);
	assert_non_null(strstr(cf_error_last(), "authorityKeyIdentifier"));
	/* And with it, the same issuer works. */
	must(cf_pki_issue_device(&cert, csr, thing, 10, 0, g.root, g.root_key));
	cf_cert_free(cert);
	cf_csr_free(csr);
	OPENSSL_free(der);
	cf_cert_free(ca);
	BIO_free(bio);
	X509_free(x);
	ERR_clear_error();
}

/* PEM_write_bio's bytes for der under label, NUL-terminated (free it). */
static char *
pem_write_of(const char *label, const unsigned char *der, long len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm = NULL;
	char *s;

	assert_non_null(bio);
	assert_true(PEM_write_bio(bio, label, "", der, len) > 0);
	BIO_get_mem_ptr(bio, &bm);
	s = malloc(bm->length + 1);
	assert_non_null(s);
	memcpy(s, bm->data, bm->length);
	s[bm->length] = '\0';
	BIO_free(bio);
	return s;
}

/*
 * cf_pki_pem_from_der writes what PEM_write_bio writes for every length
 * around the line boundaries (48 bytes a line) and the base64 padding
 * (len % 3), and for a length of several kilobytes.
 */
static void
test_pki_der__pem_from_der_equals_pem_write(void **state)
{
	unsigned char buf[5000];
	char *ours = NULL, *theirs;
	size_t len;

	(void)state;
	assert_int_equal(RAND_bytes(buf, sizeof(buf)), 1);
	for (len = 1; len <= sizeof(buf); len = len < 300 ? len + 1 : len + 937) {
		must(cf_pki_pem_from_der(&ours, "CERTIFICATE", buf, len));
		theirs = pem_write_of("CERTIFICATE", buf, (long)len);
		assert_string_equal(ours, theirs);
		free(ours);
		free(theirs);
		ours = NULL;
	}
	/* Exactly one full line: no empty line before the end boundary. */
	must(cf_pki_pem_from_der(&ours, "X", buf, 48));
	assert_null(strstr(ours, "\n\n"));
	assert_int_equal(strlen(ours), strlen("-----BEGIN X-----\n") + 65 + strlen("-----END X-----\n"));
	free(ours);
}

/* What a certificate signed here keeps is its encoding, in every profile. */
static void
check_kept_der(const cf_cert *c)
{
	unsigned char *der = NULL, md[32];
	char *pem = NULL, *expect, fp[CF_ID_LEN + 1], hex[CF_ID_LEN + 1];
	cf_cert *copy, *parsed = NULL;
	int n, i;

	assert_non_null(c->der);
	n = i2d_X509(c->x509, &der);
	assert_true(n > 0);
	assert_int_equal((size_t)n, c->der_len);
	assert_memory_equal(c->der, der, (size_t)n);
	/* The PEM and the fingerprint come from the kept bytes and equal OpenSSL's. */
	must(cf_cert_to_pem(&pem, c));
	expect = pem_write_of(PEM_STRING_X509, der, n);
	assert_string_equal(pem, expect);
	free(expect);
	{
		BIO *bio = BIO_new(BIO_s_mem());
		BUF_MEM *bm = NULL;

		assert_true(PEM_write_bio_X509(bio, c->x509) == 1);
		BIO_get_mem_ptr(bio, &bm);
		assert_int_equal(bm->length, strlen(pem));
		assert_memory_equal(bm->data, pem, bm->length);
		BIO_free(bio);
	}
	must(cf_cert_fingerprint(fp, c));
	assert_non_null(SHA256(der, (size_t)n, md));
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	assert_string_equal(fp, hex);
	/* Read back: no kept bytes, the same PEM and fingerprint. A copy keeps them. */
	must(cf_cert_parse(&parsed, pem, strlen(pem)));
	assert_null(parsed->der);
	free(pem);
	pem = NULL;
	must(cf_cert_to_pem(&pem, parsed));
	expect = pem_write_of(PEM_STRING_X509, der, n);
	assert_string_equal(pem, expect);
	free(expect);
	must(cf_cert_fingerprint(fp, parsed));
	assert_string_equal(fp, hex);
	copy = cf_cert_dup(c);
	assert_non_null(copy);
	assert_int_equal(copy->der_len, c->der_len);
	assert_memory_equal(copy->der, c->der, c->der_len);
	assert_ptr_not_equal(copy->der, c->der);
	cf_cert_free(copy);
	cf_cert_free(parsed);
	free(pem);
	OPENSSL_free(der);
}

static void
test_pki_der__signed_certificate_keeps_its_der_all_profiles(void **state)
{
	unsigned char *der;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL, *inter = NULL;
	int a, len, ed;

	(void)state;
	check_kept_der(g.root);
	check_kept_der(g.ed_root);
	must(cf_pki_make_intermediate(&inter, g.keys[CF_KEY_P384], "der inter", 10, g.root,
	    g.root_key));
	check_kept_der(inter);
	cf_cert_free(inter);
	must(cf_pki_issue_tls(&cert, g.keys[CF_KEY_RSA2048], "broker", "DNS:localhost", 1, 10,
	    g.ed_root, g.ed_root_key));
	check_kept_der(cert);
	cf_cert_free(cert);
	cert = NULL;
	for (ed = 0; ed < 2; ed++) {
		for (a = 0; a < CF_KEY__COUNT; a++) {
			der = csr_der(&len, g.keys[a], cf_sig_alg_default((cf_key_alg)a));
			must(cf_csr_parse(&csr, der, (size_t)len));
			must(cf_pki_issue_device(&cert, csr, thing, 10, 0, ed ? g.ed_root : g.root,
			    ed ? g.ed_root_key : g.root_key));
			check_kept_der(cert);
			cf_cert_free(cert);
			cert = NULL;
			cf_csr_free(csr);
			csr = NULL;
			OPENSSL_free(der);
		}
	}
}

/* ---- cf_cert_info_get ---------------------------------------------------------- */

/* OpenSSL's EXFLAG_CA for the certificate in pem, from a copy OpenSSL parsed itself. */
static int
exflag_ca(const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	int ca;

	assert_non_null(x);
	ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
	X509_free(x);
	BIO_free(bio);
	ERR_clear_error();
	return ca;
}

/*
 * cf_cert_info_get of a certificate gives the same as of the same
 * certificate read back from its PEM, and is_ca is OpenSSL's EXFLAG_CA.
 */
static int
check_info(const cf_cert *c)
{
	cf_cert_info a, b;
	cf_cert *back = NULL;
	char *pem = NULL;

	must(cf_cert_info_get(&a, c));
	must(cf_cert_to_pem(&pem, c));
	must(cf_cert_parse(&back, pem, strlen(pem)));
	must(cf_cert_info_get(&b, back));
	assert_memory_equal(&a, &b, sizeof(a));
	assert_int_equal(a.is_ca, exflag_ca(pem));
	cf_cert_free(back);
	free(pem);
	return a.is_ca;
}

static void
test_pki_der__cert_info_equal_read_back_all_profiles(void **state)
{
	unsigned char *der;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL;
	int a, len, ed;

	(void)state;
	assert_int_equal(check_info(g.root), 1);
	assert_int_equal(check_info(g.ed_root), 1);
	must(cf_pki_make_intermediate(&cert, g.keys[CF_KEY_P521], "der inter", 10, g.ed_root,
	    g.ed_root_key));
	assert_int_equal(check_info(cert), 1);
	cf_cert_free(cert);
	cert = NULL;
	for (ed = 0; ed < 2; ed++) {
		for (a = 0; a < CF_KEY__COUNT; a++) {
			der = csr_der(&len, g.keys[a], cf_sig_alg_default((cf_key_alg)a));
			must(cf_csr_parse(&csr, der, (size_t)len));
			must(cf_pki_issue_device(&cert, csr, thing, 10, 0, ed ? g.ed_root : g.root,
			    ed ? g.ed_root_key : g.root_key));
			assert_int_equal(check_info(cert), 0);
			cf_cert_free(cert);
			cert = NULL;
			cf_csr_free(csr);
			csr = NULL;
			OPENSSL_free(der);
		}
	}
}

/* One extension from its DER value (ours, not the config parser's). */
static void
add_raw_ext(X509 *x, int nid, int crit, const char *hex)
{
	long n = 0;
	unsigned char *v = OPENSSL_hexstr2buf(hex, &n);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *e;

	assert_non_null(v);
	assert_true(ASN1_OCTET_STRING_set(os, v, (int)n));
	e = X509_EXTENSION_create_by_NID(NULL, nid, crit, os);
	assert_non_null(e);
	assert_true(X509_add_ext(x, e, -1));
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	OPENSSL_free(v);
}

/*
 * is_ca follows OpenSSL's EXFLAG_CA for every form of basicConstraints:
 * absent, version 1, critical or not, cA FALSE or TRUE with and without
 * pathlen, cA FALSE with pathlen, a negative pathlen, a non-DER TRUE, two
 * of them, one that does not decode, trailing bytes.
 */
static void
test_pki_der__cert_info_is_ca_follows_openssl_every_basic_constraints(void **state)
{
	static const struct {
		int v1;
		const char *bc1, *bc2; /* DER of BasicConstraints, "" for none */
		int crit, expect;
	} cases[] = {
		{ 0, "", "", 0, 0 },
		{ 1, "", "", 0, 0 },
		{ 0, "3003010100", "", 1, 0 },        /* cA FALSE spelt out (BER default) */
		{ 0, "3000", "", 1, 0 },              /* cA absent: FALSE */
		{ 0, "30030101ff", "", 1, 1 },
		{ 0, "30030101ff", "", 0, 1 },        /* not critical */
		{ 0, "30060101ff020102", "", 1, 1 },  /* pathlen 2 */
		{ 0, "3003020101", "", 1, 0 },        /* cA FALSE with a pathlen */
		{ 0, "30060101ff0201ff", "", 1, 1 },  /* negative pathlen: CA, but invalid */
		{ 0, "3003010101", "", 1, 1 },        /* TRUE as 0x01 */
		{ 0, "30030101ff", "30030101ff", 1, 0 }, /* twice: OpenSSL takes neither */
		{ 0, "30030101ff", "3000", 1, 0 },
		{ 0, "30040101ff", "", 1, 0 },        /* does not decode */
		{ 0, "30030101ff00", "", 1, 1 },      /* a trailing byte: OpenSSL ignores it */
		{ 0, "0101ff", "", 1, 0 },            /* not a SEQUENCE */
	};
	char *pem = NULL;
	cf_cert *c = NULL;
	cf_cert_info info;
	X509 *x;
	size_t i;
	BIO *bio;
	BUF_MEM *bm = NULL;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		x = X509_new();
		assert_non_null(x);
		assert_true(X509_set_version(x, cases[i].v1 ? X509_VERSION_1 : X509_VERSION_3));
		assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)i + 1));
		assert_true(X509_set_subject_name(x, X509_get_subject_name(g.root->x509)));
		assert_true(X509_set_issuer_name(x, X509_get_subject_name(g.root->x509)));
		assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
		assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
		assert_true(X509_set_pubkey(x, g.keys[i % CF_KEY__COUNT]->pkey));
		if (cases[i].bc1[0])
			add_raw_ext(x, NID_basic_constraints, cases[i].crit, cases[i].bc1);
		if (cases[i].bc2[0])
			add_raw_ext(x, NID_basic_constraints, cases[i].crit, cases[i].bc2);
		assert_true(X509_sign(x, g.root_key->pkey, EVP_sha256()) > 0);
		bio = BIO_new(BIO_s_mem());
		assert_true(PEM_write_bio_X509(bio, x) == 1);
		BIO_get_mem_ptr(bio, &bm);
		must(cf_cert_parse(&c, bm->data, bm->length));
		must(cf_cert_info_get(&info, c));
		must(cf_cert_to_pem(&pem, c));
		if (info.is_ca != cases[i].expect || info.is_ca != exflag_ca(pem))
			fail_msg("case %zu (%s %s): is_ca %d, expected %d, OpenSSL %d", i,
			    cases[i].bc1, cases[i].bc2, info.is_ca, cases[i].expect, exflag_ca(pem));
		free(pem);
		pem = NULL;
		cf_cert_free(c);
		c = NULL;
		BIO_free(bio);
		X509_free(x);
	}
}

/* ---- certificates: the key only ---------------------------------------------- */

static void
test_pki_der__cert_pubkey_from_pem_all_algorithms(void **state)
{
	unsigned char *der;
	cf_csr *csr = NULL;
	cf_cert *cert = NULL, *parsed = NULL;
	cf_key *fast = NULL, *slow = NULL;
	char *pem = NULL, fp[CF_ID_LEN + 1], spki[CF_ID_LEN + 1];
	cf_keyq_result res;
	int a, len;

	(void)state;
	for (a = 0; a < CF_KEY__COUNT; a++) {
		der = csr_der(&len, g.keys[a], cf_sig_alg_default((cf_key_alg)a));
		must(cf_csr_parse(&csr, der, (size_t)len));
		must(cf_pki_issue_device(&cert, csr, thing, 10, 0, g.root, g.root_key));
		must(cf_cert_to_pem(&pem, cert));
		must(cf_cert_pubkey_from_pem(&fast, pem, strlen(pem)));
		must(cf_cert_parse(&parsed, pem, strlen(pem)));
		must(cf_cert_pubkey(&slow, parsed));
		assert_int_equal(cf_key_equal_public(fast, slow), 1);
		assert_int_equal(cf_key_equal_public(fast, g.keys[a]), 1);
		/* The stored SPKI fingerprint is the key's fingerprint. */
		must(cf_keyq_check_cert_pem(&res, spki, NULL, pem, strlen(pem)));
		must(cf_key_fingerprint(fp, g.keys[a]));
		assert_string_equal(spki, fp);
		assert_int_equal(res.flags, 0);
		cf_key_free(fast);
		cf_key_free(slow);
		fast = slow = NULL;
		cf_cert_free(parsed);
		parsed = NULL;
		free(pem);
		pem = NULL;
		cf_cert_free(cert);
		cert = NULL;
		cf_csr_free(csr);
		csr = NULL;
		OPENSSL_free(der);
	}
}

static void
test_pki_der__cert_pubkey_from_pem_fallbacks_and_errors(void **state)
{
	X509 *x;
	BIO *bio;
	BUF_MEM *bm;
	char *pem = NULL, *trusted, *bad;
	unsigned char *der;
	cf_cert *c = NULL;
	cf_key *k = NULL;
	cf_keyq_result res;
	char spki[CF_ID_LEN + 1], fp[CF_ID_LEN + 1];
	size_t n;

	(void)state;
	/* A TRUSTED CERTIFICATE (X509 + aux): cf_cert_parse refuses it, and so do we. */
	must(cf_cert_to_pem(&pem, g.root));
	bio = BIO_new_mem_buf(pem, -1);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_true(X509_add1_trust_object(x, OBJ_nid2obj(NID_client_auth)));
	bio = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio_X509_AUX(bio, x));
	BIO_get_mem_ptr(bio, &bm);
	trusted = strndup(bm->data, bm->length);
	BIO_free(bio);
	assert_non_null(strstr(trusted, "TRUSTED CERTIFICATE"));
	assert_int_equal(cf_cert_parse(&c, trusted, strlen(trusted)), CF_EINVAL);
	assert_int_equal(cf_cert_pubkey_from_pem(&k, trusted, strlen(trusted)), CF_EINVAL);
	assert_int_equal(cf_keyq_check_cert_pem(&res, spki, NULL, trusted, strlen(trusted)),
	    CF_EINVAL);
	free(trusted);
	/*
	 * Bytes after the certificate inside the PEM body: cf_cert_parse reads
	 * them (PEM_read_bio_X509 ignores the rest), the strict reader does not,
	 * so both functions fall back to it and give its answer.
	 */
	der = NULL;
	n = (size_t)i2d_X509(x, &der);
	der = OPENSSL_realloc(der, n + 3);
	memcpy(der + n, "\x05\x00\x00", 3);
	bio = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio(bio, "CERTIFICATE", "", der, (long)n + 3) > 0);
	BIO_get_mem_ptr(bio, &bm);
	trusted = strndup(bm->data, bm->length);
	BIO_free(bio);
	OPENSSL_free(der);
	X509_free(x);
	must(cf_cert_parse(&c, trusted, strlen(trusted)));
	cf_cert_free(c);
	must(cf_cert_pubkey_from_pem(&k, trusted, strlen(trusted)));
	assert_int_equal(cf_key_equal_public(k, g.root_key), 1);
	cf_key_free(k);
	k = NULL;
	must(cf_keyq_check_cert_pem(&res, spki, NULL, trusted, strlen(trusted)));
	must(cf_key_fingerprint(fp, g.root_key));
	assert_string_equal(spki, fp);
	free(trusted);
	/* Garbage in the base64: CF_EINVAL, as cf_cert_parse. */
	bad = strdup(pem);
	n = strlen(bad);
	bad[n / 2] = '*';
	assert_int_equal(cf_cert_pubkey_from_pem(&k, bad, n), CF_EINVAL);
	assert_int_equal(cf_keyq_check_cert_pem(&res, spki, NULL, bad, n), CF_EINVAL);
	assert_string_equal(spki, "");
	assert_int_equal(cf_cert_pubkey_from_pem(&k, "nonsense", 8), CF_EINVAL);
	assert_null(k);
	free(bad);
	free(pem);
}

/* ---- private keys ------------------------------------------------------------ */

static int
ssl_ctx_accepts(const cf_key *k)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	cf_cert *self = NULL;
	X509 *x;
	int ok;

	assert_non_null(ctx);
	must(cf_pki_make_root(&self, k, "key check", 1));
	x = cf_pki_x509_complete(self->x509);
	ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
	X509_free(x);
	ok = ok && SSL_CTX_use_PrivateKey(ctx, k->pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
	cf_cert_free(self);
	SSL_CTX_free(ctx);
	return ok;
}

static void
test_pki_der__private_pem_fast_equals_openssl_all_algorithms(void **state)
{
	char *pem = NULL, *again = NULL;
	cf_key *k = NULL;
	EVP_PKEY *fast, *old;
	BIO *bio;
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	int a;

	(void)state;
	for (a = 0; a < CF_KEY__COUNT; a++) {
		must(cf_key_to_pem(&pem, g.keys[a], NULL));
		assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
		fast = cf_pki_der_private_pem(pem, strlen(pem));
		if (fast_alg(a))
			assert_non_null(fast);
		else
			assert_null(fast);
		assert_int_equal(ERR_peek_error(), 0);
		bio = BIO_new_mem_buf(pem, -1);
		old = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
		assert_non_null(old);
		if (fast != NULL) {
			assert_int_equal(EVP_PKEY_eq(fast, old), 1);
			assert_int_equal(EVP_PKEY_get_base_id(fast), EVP_PKEY_get_base_id(old));
		}
		must(cf_key_from_pem(&k, pem, strlen(pem), NULL));
		assert_int_equal(cf_key_equal_public(k, g.keys[a]), 1);
		/* Written back, the key is the same PEM. */
		must(cf_key_to_pem(&again, k, NULL));
		assert_string_equal(again, pem);
		/* It signs (checked with the original), and TLS takes it with its certificate. */
		must(cf_key_sign(&sig, &sig_len, k, cf_sig_alg_default((cf_key_alg)a), "data", 4));
		must(cf_key_verify(g.keys[a], cf_sig_alg_default((cf_key_alg)a), "data", 4, sig,
		    sig_len));
		assert_true(ssl_ctx_accepts(k));
		free(sig);
		sig = NULL;
		cf_secret_free(again, 0);
		cf_secret_free(pem, 0);
		again = pem = NULL;
		cf_key_free(k);
		k = NULL;
		EVP_PKEY_free(fast);
		EVP_PKEY_free(old);
	}
}

/* A PEM of pkey written by OpenSSL's encoder (traditional or PKCS#8). */
static char *
openssl_pem(EVP_PKEY *pkey, int traditional)
{
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	char *s;

	assert_true(traditional ? PEM_write_bio_PrivateKey_traditional(bio, pkey, NULL, NULL, 0,
	    NULL, NULL) : PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL));
	BIO_get_mem_ptr(bio, &bm);
	s = strndup(bm->data, bm->length);
	BIO_free(bio);
	return s;
}

static void
test_pki_der__private_pem_fallbacks(void **state)
{
	char *pem = NULL;
	cf_key *k = NULL;
	EVP_PKEY *dup;
	int a;

	(void)state;
	for (a = CF_KEY_P256; a <= CF_KEY_P521; a++) {
		/* Traditional "EC PRIVATE KEY": not the fast path, still read. */
		pem = openssl_pem(g.keys[a]->pkey, 1);
		assert_non_null(strstr(pem, "EC PRIVATE KEY"));
		assert_null(cf_pki_der_private_pem(pem, strlen(pem)));
		must(cf_key_from_pem(&k, pem, strlen(pem), NULL));
		assert_int_equal(cf_key_equal_public(k, g.keys[a]), 1);
		cf_key_free(k);
		k = NULL;
		free(pem);
		/* PKCS#8 without the public key: the decoder computes it. */
		dup = EVP_PKEY_dup(g.keys[a]->pkey);
		assert_int_equal(EVP_PKEY_set_int_param(dup, OSSL_PKEY_PARAM_EC_INCLUDE_PUBLIC, 0), 1);
		pem = openssl_pem(dup, 0);
		assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
		assert_null(cf_pki_der_private_pem(pem, strlen(pem)));
		must(cf_key_from_pem(&k, pem, strlen(pem), NULL));
		assert_int_equal(cf_key_equal_public(k, g.keys[a]), 1);
		cf_key_free(k);
		k = NULL;
		free(pem);
		EVP_PKEY_free(dup);
	}
	/* Encrypted PKCS#8: right passphrase works, wrong or missing fails cleanly. */
	must(cf_key_to_pem(&pem, g.keys[CF_KEY_P256], "s3cret"));
	assert_null(cf_pki_der_private_pem(pem, strlen(pem)));
	must(cf_key_from_pem(&k, pem, strlen(pem), "s3cret"));
	assert_int_equal(cf_key_equal_public(k, g.keys[CF_KEY_P256]), 1);
	cf_key_free(k);
	k = NULL;
	assert_int_equal(cf_key_from_pem(&k, pem, strlen(pem), "wrong"), CF_EPASS);
	assert_null(k);
	assert_int_equal(cf_key_from_pem(&k, pem, strlen(pem), NULL), CF_EPASS);
	assert_null(k);
	cf_secret_free(pem, 0);
	ERR_clear_error();
}

/* A PKCS#8 PEM with one byte of its DER changed at offset at (from the end if negative). */
static char *
pem_with_flipped_byte(const cf_key *key, int at, unsigned char mask)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key->pkey);
	unsigned char *der = NULL;
	const unsigned char *p;
	BIO *bio;
	BUF_MEM *bm;
	char *s;
	int n;

	n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
	PKCS8_PRIV_KEY_INFO_free(p8);
	der[at < 0 ? n + at : at] ^= mask;
	p = der;
	bio = BIO_new(BIO_s_mem());
	assert_true(PEM_write_bio(bio, "PRIVATE KEY", "", p, n) > 0);
	BIO_get_mem_ptr(bio, &bm);
	s = strndup(bm->data, bm->length);
	BIO_free(bio);
	OPENSSL_clear_free(der, (size_t)n);
	return s;
}

static void
test_pki_der__private_pem_damaged_same_verdict_as_openssl(void **state)
{
	const struct {
		int alg, at;
		unsigned char mask;
	} cases[] = {
		{ CF_KEY_P256, -1, 0x01 },   /* public point leaves the curve */
		{ CF_KEY_P384, -1, 0x01 },
		{ CF_KEY_P521, -1, 0x01 },
		{ CF_KEY_P256, 0, 0x01 },    /* SEQUENCE tag broken */
		{ CF_KEY_ED25519, -1, 0x01 }, /* a different seed: a different key */
		{ CF_KEY_ED25519, 1, 0x01 }, /* outer length wrong */
	};
	char *pem;
	cf_key *k = NULL;
	EVP_PKEY *fast, *old;
	BIO *bio;
	size_t i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pem = pem_with_flipped_byte(g.keys[cases[i].alg], cases[i].at, cases[i].mask);
		fast = cf_pki_der_private_pem(pem, strlen(pem));
		bio = BIO_new_mem_buf(pem, -1);
		old = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
		BIO_free(bio);
		ERR_clear_error();
		/* Never more than OpenSSL accepts; where both accept, the same key. */
		if (fast != NULL) {
			assert_non_null(old);
			assert_int_equal(EVP_PKEY_eq(fast, old), 1);
		}
		r = cf_key_from_pem(&k, pem, strlen(pem), NULL);
		assert_int_equal(r == 0, old != NULL);
		if (r != 0)
			assert_int_equal(r, CF_EINVAL);
		cf_key_free(k);
		k = NULL;
		EVP_PKEY_free(fast);
		EVP_PKEY_free(old);
		free(pem);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pki_der__spki_template_copies_independent_and_thread_safe),
		cmocka_unit_test(test_pki_der__spki_fast_equals_decoder_all_algorithms),
		cmocka_unit_test(test_pki_der__spki_point_not_on_curve_rejected_like_decoder),
		cmocka_unit_test(test_pki_der__spki_zero_and_out_of_range_points_rejected),
		cmocka_unit_test(test_pki_der__spki_wrong_curve_and_unknown_curve),
		cmocka_unit_test(test_pki_der__spki_trailing_truncated_and_ber),
		cmocka_unit_test(test_pki_der__csr_create_spki_bytes_are_the_encoders),
		cmocka_unit_test(test_pki_der__csr_key_and_verdict_equal_openssl_all_algorithms),
		cmocka_unit_test(test_pki_der__csr_malformed_trailing_truncated),
		cmocka_unit_test(test_pki_der__csr_point_off_curve_rejected_at_verify),
		cmocka_unit_test(test_pki_der__csr_spki_algorithm_differs_from_signature),
		cmocka_unit_test(test_pki_der__issued_certificate_byte_identical_all_algorithms),
		cmocka_unit_test(test_pki_der__every_profile_equals_config_string_profile),
		cmocka_unit_test(test_pki_der__issuer_without_ski_refused),
		cmocka_unit_test(test_pki_der__pem_from_der_equals_pem_write),
		cmocka_unit_test(test_pki_der__signed_certificate_keeps_its_der_all_profiles),
		cmocka_unit_test(test_pki_der__cert_info_equal_read_back_all_profiles),
		cmocka_unit_test(test_pki_der__cert_info_is_ca_follows_openssl_every_basic_constraints),
		cmocka_unit_test(test_pki_der__cert_pubkey_from_pem_all_algorithms),
		cmocka_unit_test(test_pki_der__cert_pubkey_from_pem_fallbacks_and_errors),
		cmocka_unit_test(test_pki_der__private_pem_fast_equals_openssl_all_algorithms),
		cmocka_unit_test(test_pki_der__private_pem_fallbacks),
		cmocka_unit_test(test_pki_der__private_pem_damaged_same_verdict_as_openssl),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
