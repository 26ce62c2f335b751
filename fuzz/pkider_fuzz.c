/*
 * pkider_fuzz — differential: the readers of cf_pki_der.c against OpenSSL's
 * decoder path, on the same bytes read four ways (SubjectPublicKeyInfo,
 * CSR, certificate, and the body of a "PRIVATE KEY" PEM). For any input:
 * what the fast path accepts, OpenSSL accepts too, with an EVP_PKEY_eq-equal
 * key and the same signature verdict; where the fast path steps aside, the
 * result is OpenSSL's. Any difference aborts (a crash to libFuzzer).
 */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_keyq.h"
#include "cf_pki.h"
#include "cf_pki_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
differ(const char *what)
{
	fprintf(stderr, "pkider_fuzz: fast path and OpenSSL differ: %s\n", what);
	abort();
}

/* Both NULL, or both keys and equal. */
static void
same_key(EVP_PKEY *fast, EVP_PKEY *old, const char *what)
{
	if ((fast == NULL) != (old == NULL))
		differ(what);
	if (fast != NULL && EVP_PKEY_eq(fast, old) != 1)
		differ(what);
}

static void
spki(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	EVP_PKEY *old, *full, *fast;

	old = d2i_PUBKEY(NULL, &p, (long)size);
	if (old != NULL && p != data + size) {
		EVP_PKEY_free(old);
		old = NULL;
	}
	fast = cf_pki_der_pubkey_fast(data, size);
	full = cf_pki_der_pubkey(data, size);
	/* The fast path never accepts what the decoder refuses. */
	if (fast != NULL)
		same_key(fast, old, "SPKI fast path");
	same_key(full, old, "SPKI");
	EVP_PKEY_free(fast);
	EVP_PKEY_free(full);
	EVP_PKEY_free(old);
}

static void
csr(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509_REQ *old;
	cf_csr *c = NULL;
	cf_keyq_result res;
	char name[128];
	int r, old_ok, new_ok;

	old = d2i_X509_REQ(NULL, &p, (long)size);
	if (old != NULL && p != data + size) {
		X509_REQ_free(old);
		old = NULL;
	}
	/* PEM goes another way in cf_csr_parse; DER only here. */
	if (size >= 10 && memcmp(data, "-----BEGIN", 10) == 0)
		goto out;
	r = cf_csr_parse(&c, data, size);
	/* The same templates: the same inputs parse. */
	if ((r == 0) != (old != NULL))
		differ("CSR parse");
	if (c == NULL)
		goto out;
	same_key(c->pkey, X509_REQ_get0_pubkey(old), "CSR key");
	old_ok = X509_REQ_get0_pubkey(old) != NULL &&
	    X509_REQ_verify(old, X509_REQ_get0_pubkey(old)) == 1;
	new_ok = cf_csr_verify(c) == 0;
	if (old_ok != new_ok)
		differ("CSR verify");
	r = cf_csr_check_subject(c, "fuzz-thing");
	r = cf_csr_sig_name(name, sizeof(name), c);
	r = cf_keyq_check_csr(&res, cf_keyq_policy_default(), c);
	(void)r;
out:
	cf_csr_free(c);
	X509_REQ_free(old);
}

static void
cert(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509 *old;
	cf_der_cert *c = NULL;
	cf_key *k = NULL, *k_old = NULL;
	cf_cert *parsed = NULL;
	EVP_PKEY *key = NULL;
	cf_keyq_result res;
	char spki_fp[CF_ID_LEN + 1];
	int r, r_old;

	old = d2i_X509(NULL, &p, (long)size);
	if (old != NULL && p != data + size) {
		X509_free(old);
		old = NULL;
	}
	if ((cf_pki_der_cert_parse(&c, data, size) == 0) != (old != NULL))
		differ("certificate parse");
	if (c != NULL) {
		key = cf_pki_der_spki_pkey(c->tbs->spki);
		same_key(key, X509_get0_pubkey(old), "certificate key");
	}
	/* The public entry points, PEM or DER: the same verdicts as the full parse. */
	r = cf_cert_pubkey_from_pem(&k, data, size);
	r_old = cf_cert_parse(&parsed, data, size);
	if (r_old == 0)
		r_old = cf_cert_pubkey(&k_old, parsed);
	if ((r == 0) != (r_old == 0))
		differ("cf_cert_pubkey_from_pem");
	if ((cf_keyq_check_cert_pem(&res, spki_fp, NULL, (const char *)data, size) == 0) !=
	    (r_old == 0))
		differ("cf_keyq_check_cert_pem");
	if (r == 0 && cf_key_equal_public(k, k_old) != 1)
		differ("certificate key (PEM)");
	cf_key_free(k);
	cf_key_free(k_old);
	cf_cert_free(parsed);
	EVP_PKEY_free(key);
	cf_pki_der_cert_free(c);
	X509_free(old);
}

/* Never a passphrase, never a prompt. */
static int
no_pass(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static void
private_key(const uint8_t *data, size_t size)
{
	BIO *bio = NULL;
	BUF_MEM *bm = NULL;
	EVP_PKEY *fast = NULL, *old = NULL;
	BIGNUM *a = NULL, *b = NULL;
	unsigned char ra[64], rb[64];
	size_t la = sizeof(ra), lb = sizeof(rb);

	if (size == 0 || (bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio(bio, "PRIVATE KEY", "", data, (long)size) <= 0)
		goto out;
	BIO_get_mem_ptr(bio, &bm);
	fast = cf_pki_der_private_pem(bm->data, bm->length);
	old = PEM_read_bio_PrivateKey(bio, NULL, no_pass, NULL);
	if (fast == NULL)
		goto out;
	same_key(fast, old, "private key");
	/* The private halves too. */
	if (EVP_PKEY_get_base_id(fast) == EVP_PKEY_EC) {
		if (EVP_PKEY_get_bn_param(fast, "priv", &a) != 1 ||
		    EVP_PKEY_get_bn_param(old, "priv", &b) != 1 || BN_cmp(a, b) != 0)
			differ("EC private scalar");
	} else if (EVP_PKEY_get_raw_private_key(fast, ra, &la) != 1 ||
	    EVP_PKEY_get_raw_private_key(old, rb, &lb) != 1 || la != lb || memcmp(ra, rb, la) != 0) {
		differ("Ed25519 private key");
	}
out:
	BN_clear_free(a);
	BN_clear_free(b);
	EVP_PKEY_free(fast);
	EVP_PKEY_free(old);
	BIO_free(bio);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	spki(data, size);
	csr(data, size);
	cert(data, size);
	private_key(data, size);
	ERR_clear_error();
	return 0;
}
