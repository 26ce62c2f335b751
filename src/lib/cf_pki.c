/*
 * cf_pki — keys, CSRs, certificates, CRLs and chain verification on top of
 * OpenSSL 3 (no deprecated interfaces). Owns the cf_key / cf_csr / cf_cert
 * handles and every OpenSSL object behind them; callers see PEM strings and
 * plain structs. The algorithm tables live in cf_pki_alg.c, issuing,
 * revocation and chain verification in cf_pki_ca.c.
 *
 * Untrusted input (CSRs from devices, certificates from anywhere) enters
 * only through cf_csr_parse, cf_cert_parse* and cf_cert_pubkey_from_pem,
 * which bound the size, detect PEM or DER and insist that DER is consumed
 * exactly. CSRs, key-only certificate reads and key files go through
 * cf_pki_der.c, which builds the common keys without OSSL_DECODER.
 */
#include "cf_pki_int.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/pkcs12.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf_util.h"

#define CF_PKI_MAX_INPUT (1024 * 1024) /* a CSR, certificate or bundle */
#define CF_PBKDF2_ITER 100000          /* encrypted private keys */
#define CF_PBKDF2_SALT 16

/* ---- small primitives ---------------------------------------------------- */

static void
hex_lower(char *out, const unsigned char *in, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

void
cf_sha256_hex(char out[CF_ID_LEN + 1], const void *data, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
		/* Cannot happen with the default provider; never hand back garbage. */
		ERR_clear_error();
		memset(out, '0', CF_ID_LEN);
		out[CF_ID_LEN] = '\0';
		return;
	}
	hex_lower(out, md, 32);
}

int
cf_random_bytes(void *out, size_t len)
{
	if (len > INT_MAX || RAND_bytes(out, (int)len) != 1) {
		cf_error_ssl("random number generator failed");
		return CF_ERROR;
	}
	return 0;
}

int
cf_secure_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

int
cf_hmac_sha256(unsigned char out[32], const void *key, size_t key_len,
    const void *const *parts, const size_t *lens, size_t n)
{
	EVP_MAC *mac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	size_t i, got = 0;
	int r = CF_ERROR;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (ctx = EVP_MAC_CTX_new(mac)) == NULL ||
	    !EVP_MAC_init(ctx, key, key_len, params)) {
		cf_error_ssl("HMAC-SHA256");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (!EVP_MAC_update(ctx, parts[i], lens[i])) {
			cf_error_ssl("HMAC-SHA256");
			goto out;
		}
	}
	if (!EVP_MAC_final(ctx, out, &got, 32) || got != 32) {
		cf_error_ssl("HMAC-SHA256");
		goto out;
	}
	r = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return r;
}

/* The contents of a memory BIO as a malloc()ed NUL-terminated string. */
int
cf_pki_bio_to_string(char **out, BIO *bio)
{
	BUF_MEM *bm = NULL;
	char *s;

	BIO_get_mem_ptr(bio, &bm);
	if (bm == NULL || (s = malloc(bm->length + 1)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	memcpy(s, bm->data, bm->length);
	s[bm->length] = '\0';
	*out = s;
	return 0;
}

/* A read-only BIO over caller memory; CF_EINVAL if len is out of range. */
int
cf_pki_bio_over(BIO **out, const void *data, size_t len)
{
	if (data == NULL || len == 0 || len > CF_PKI_MAX_INPUT) {
		cf_error_set("input is empty or larger than %d bytes", CF_PKI_MAX_INPUT);
		return CF_EINVAL;
	}
	if ((*out = BIO_new_mem_buf(data, (int)len)) == NULL) {
		cf_error_ssl("out of memory");
		return CF_ERROR;
	}
	return 0;
}

/* PEM if the first non-blank bytes are a PEM boundary, else DER. */
static int
looks_pem(const void *data, size_t len)
{
	const char *p = data;
	size_t i = 0;

	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	return len - i >= 10 && memcmp(p + i, "-----BEGIN", 10) == 0;
}

/* The first CN of a name as UTF-8 into out ("" if none; truncated to fit). */
void
cf_pki_name_cn(char *out, size_t out_len, const X509_NAME *name)
{
	const X509_NAME_ENTRY *e;
	unsigned char *utf8 = NULL;
	int idx, n;

	out[0] = '\0';
	if (name == NULL || (idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1)) < 0)
		return;
	e = X509_NAME_get_entry(name, idx);
	if ((n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e))) < 0) {
		ERR_clear_error();
		return;
	}
	snprintf(out, out_len, "%.*s", n, (const char *)utf8);
	OPENSSL_free(utf8);
}

X509_NAME *
cf_pki_name_from_cn(const char *cn)
{
	X509_NAME *name;

	if ((name = X509_NAME_new()) == NULL)
		return NULL;
	if (!X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0)) {
		X509_NAME_free(name);
		return NULL;
	}
	return name;
}

/* ---- keys ------------------------------------------------------------------ */

static int
key_wrap(cf_key **out, EVP_PKEY *pkey)
{
	cf_key *k;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	k->pkey = pkey;
	*out = k;
	return 0;
}

int
cf_key_dup(cf_key **out, const cf_key *key)
{
	if (!EVP_PKEY_up_ref(key->pkey)) {
		cf_error_ssl("cannot reference the key");
		return CF_ERROR;
	}
	if (key_wrap(out, key->pkey) != 0) {
		EVP_PKEY_free(key->pkey);
		return CF_ERROR;
	}
	return 0;
}

int
cf_key_generate(cf_key **out, cf_key_alg alg)
{
	EVP_PKEY *pkey = NULL;
	int r = CF_ERROR;

	switch (alg) {
	case CF_KEY_RSA2048:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	case CF_KEY_RSA3072:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	case CF_KEY_P256:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case CF_KEY_P384:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	case CF_KEY_P521:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
		break;
	case CF_KEY_ED25519:
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	default:
		cf_error_set("unknown key algorithm %d", (int)alg);
		return CF_EINVAL;
	}
	if (pkey == NULL) {
		cf_error_ssl("%s key generation failed", cf_key_alg_name(alg));
		goto out;
	}
	if ((r = key_wrap(out, pkey)) != 0)
		goto out;
	pkey = NULL;
out:
	EVP_PKEY_free(pkey);
	return r;
}

void
cf_key_free(cf_key *key)
{
	if (key == NULL)
		return;
	/* EVP_PKEY_free wipes the private components through the provider. */
	EVP_PKEY_free(key->pkey);
	free(key);
}

int
cf_key_to_pem(char **out, const cf_key *key, const char *passphrase)
{
	int r = CF_ERROR;
	PKCS8_PRIV_KEY_INFO *p8 = NULL;
	X509_SIG *enc = NULL;
	BIO *bio = NULL;
	BUF_MEM *bm = NULL;
	unsigned char salt[CF_PBKDF2_SALT];
	size_t plen = passphrase ? strlen(passphrase) : 0;

	/* A secure-memory BIO wipes its buffer (and every regrowth) when freed. */
	if ((bio = BIO_new(BIO_s_secmem())) == NULL ||
	    (p8 = EVP_PKEY2PKCS8(key->pkey)) == NULL) {
		cf_error_ssl("cannot encode the private key as PKCS#8");
		goto out;
	}
	if (passphrase == NULL) {
		if (PEM_write_bio_PKCS8_PRIV_KEY_INFO(bio, p8) != 1) {
			cf_error_ssl("cannot encode the private key");
			goto out;
		}
	} else {
		/*
		 * PBES2: PBKDF2-HMAC-SHA256 (pbe_nid -1 takes OpenSSL's default PRF)
		 * and AES-256-CBC. OSSL_ENCODER and PEM_write_bio_PKCS8PrivateKey
		 * fix the iteration count at 2048; an offline CA key deserves more.
		 */
		if ((r = cf_random_bytes(salt, sizeof(salt))) != 0)
			goto out;
		r = CF_ERROR;
		if (plen > INT_MAX || (enc = PKCS8_encrypt_ex(-1, EVP_aes_256_cbc(), passphrase,
		    (int)plen, salt, sizeof(salt), CF_PBKDF2_ITER, p8, NULL, NULL)) == NULL ||
		    PEM_write_bio_PKCS8(bio, enc) != 1) {
			cf_error_ssl("cannot encrypt the private key");
			goto out;
		}
	}
	if ((r = cf_pki_bio_to_string(out, bio)) != 0)
		goto out;
	r = 0;
out:
	if (bio != NULL) {
		BIO_get_mem_ptr(bio, &bm);
		if (bm != NULL && bm->data != NULL)
			OPENSSL_cleanse(bm->data, bm->length);
	}
	BIO_free(bio);
	X509_SIG_free(enc);
	PKCS8_PRIV_KEY_INFO_free(p8); /* its free callback wipes the key bytes */
	return r;
}

/* 1 if needle occurs in the first len bytes of hay (which need not be a string). */
static int
contains(const char *hay, size_t len, const char *needle)
{
	size_t i, nl = strlen(needle);

	for (i = 0; i + nl <= len; i++) {
		if (memcmp(hay + i, needle, nl) == 0)
			return 1;
	}
	return 0;
}

struct pass_arg {
	const char *pass;
	int asked;
};

/* Hands OpenSSL the passphrase we were given; never prompts. */
static int
pem_pass_cb(char *buf, int size, int rwflag, void *u)
{
	struct pass_arg *pa = u;
	size_t len;

	(void)rwflag;
	pa->asked = 1;
	if (pa->pass == NULL || size <= 0)
		return -1;
	len = strlen(pa->pass);
	if (len > (size_t)size)
		return -1;
	memcpy(buf, pa->pass, len);
	return (int)len;
}

int
cf_key_from_pem(cf_key **out, const char *pem, size_t len, const char *passphrase)
{
	int r = CF_ERROR;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	struct pass_arg pa = { passphrase, 0 };
	int encrypted;

	if ((r = cf_pki_bio_over(&bio, pem, len)) != 0)
		goto out;
	r = CF_ERROR;
	/* What our key stores write, without the decoder (cf_pki_der.c); else OpenSSL's reader. */
	if ((pkey = cf_pki_der_private_pem(pem, len)) != NULL)
		goto wrap;
	encrypted = contains(pem, len, "ENCRYPTED");
	pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, pem_pass_cb, &pa, NULL, NULL);
	if (pkey == NULL) {
		if (encrypted || pa.asked) {
			r = CF_EPASS;
			cf_error_ssl("cannot decrypt the private key: %s passphrase",
			    passphrase ? "wrong" : "missing");
		} else {
			r = CF_EINVAL;
			cf_error_ssl("not a private key in PEM");
		}
		goto out;
	}
wrap:
	if ((r = key_wrap(out, pkey)) != 0)
		goto out;
	pkey = NULL;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	return r;
}

int
cf_key_save(const char *path, const cf_key *key, const char *passphrase)
{
	int r;
	char *pem = NULL;

	if ((r = cf_key_to_pem(&pem, key, passphrase)) != 0)
		goto out;
	if ((r = cf_file_write_atomic(path, pem, strlen(pem), 0600)) != 0)
		goto out;
out:
	cf_secret_free(pem, 0);
	return r;
}

int
cf_key_load(cf_key **out, const char *path, const char *passphrase)
{
	int r;
	char *buf = NULL;
	size_t len = 0;

	if ((r = cf_file_read(&buf, &len, path, CF_PKI_MAX_INPUT)) != 0)
		goto out;
	if ((r = cf_key_from_pem(out, buf, len, passphrase)) != 0) {
		cf_error_prefix("%s", path);
		goto out;
	}
out:
	if (buf != NULL)
		cf_secret_free(buf, len + 1);
	return r;
}

int
cf_pki_pem_bundle_end(size_t n)
{
	unsigned long e = ERR_peek_last_error();

	if (n > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
		ERR_pop_to_mark();
		return 1;
	}
	ERR_clear_last_mark();
	return 0;
}

int
cf_key_public_pem(char **out, const cf_key *key)
{
	int r = CF_ERROR;
	BIO *bio = NULL;

	if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_PUBKEY(bio, key->pkey) != 1) {
		cf_error_ssl("cannot encode the public key");
		goto out;
	}
	r = cf_pki_bio_to_string(out, bio);
out:
	BIO_free(bio);
	return r;
}

static int
pkey_fingerprint(char out[CF_ID_LEN + 1], const EVP_PKEY *pkey)
{
	unsigned char *der = NULL;
	int n;

	if ((n = i2d_PUBKEY(pkey, &der)) <= 0) {
		cf_error_ssl("cannot encode the public key");
		return CF_ERROR;
	}
	cf_sha256_hex(out, der, (size_t)n);
	OPENSSL_free(der);
	return 0;
}

int
cf_key_fingerprint(char out[CF_ID_LEN + 1], const cf_key *key)
{
	return pkey_fingerprint(out, key->pkey);
}

static int
pkey_info(cf_key_info *out, const EVP_PKEY *pkey)
{
	const char *tn;
	size_t glen = 0;

	memset(out, 0, sizeof(*out));
	out->bits = EVP_PKEY_get_bits(pkey);
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
	case EVP_PKEY_RSA_PSS:
		snprintf(out->type, sizeof(out->type), "RSA");
		break;
	case EVP_PKEY_EC:
		snprintf(out->type, sizeof(out->type), "EC");
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, out->curve,
		    sizeof(out->curve), &glen) != 1) {
			out->curve[0] = '\0'; /* explicit curve parameters: no name */
			ERR_clear_error();
		}
		break;
	case EVP_PKEY_ED25519:
		snprintf(out->type, sizeof(out->type), "ED25519");
		out->bits = 256; /* OpenSSL says 253; the key is 256 bits on the wire */
		break;
	case EVP_PKEY_ED448:
		snprintf(out->type, sizeof(out->type), "ED448");
		break;
	case EVP_PKEY_DSA:
		snprintf(out->type, sizeof(out->type), "DSA");
		break;
	default:
		tn = EVP_PKEY_get0_type_name(pkey);
		snprintf(out->type, sizeof(out->type), "%s", tn ? tn : "unknown");
		break;
	}
	return 0;
}

int
cf_key_info_get(cf_key_info *out, const cf_key *key)
{
	return pkey_info(out, key->pkey);
}

static int
pkey_alg(cf_key_alg *out, const EVP_PKEY *pkey)
{
	cf_key_info ki;

	(void)pkey_info(&ki, pkey);
	if (strcmp(ki.type, "RSA") == 0 && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
	    (ki.bits == 2048 || ki.bits == 3072)) {
		*out = ki.bits == 2048 ? CF_KEY_RSA2048 : CF_KEY_RSA3072;
		return 0;
	}
	if (strcmp(ki.type, "EC") == 0) {
		if (strcmp(ki.curve, "prime256v1") == 0) {
			*out = CF_KEY_P256;
			return 0;
		}
		if (strcmp(ki.curve, "secp384r1") == 0) {
			*out = CF_KEY_P384;
			return 0;
		}
		if (strcmp(ki.curve, "secp521r1") == 0) {
			*out = CF_KEY_P521;
			return 0;
		}
	}
	if (strcmp(ki.type, "ED25519") == 0) {
		*out = CF_KEY_ED25519;
		return 0;
	}
	cf_error_set("key %s%s%s-%d is not a supported key algorithm", ki.type,
	    ki.curve[0] ? " " : "", ki.curve, ki.bits);
	return CF_EINVAL;
}

int
cf_key_alg_of(cf_key_alg *out, const cf_key *key)
{
	return pkey_alg(out, key->pkey);
}

int
cf_key_equal_public(const cf_key *a, const cf_key *b)
{
	int eq = EVP_PKEY_eq(a->pkey, b->pkey) == 1;

	ERR_clear_error();
	return eq;
}

/* ---- CSRs ------------------------------------------------------------------ */

static GENERAL_NAMES *
san_for_thing(const char *thing)
{
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gen = NULL;
	ASN1_IA5STRING *uri = NULL;
	char buf[sizeof(CF_URN_PREFIX) + CF_NAME_MAX];

	snprintf(buf, sizeof(buf), CF_URN_PREFIX "%s", thing);
	if ((gens = GENERAL_NAMES_new()) == NULL || (gen = GENERAL_NAME_new()) == NULL ||
	    (uri = ASN1_IA5STRING_new()) == NULL || !ASN1_STRING_set(uri, buf, -1))
		goto fail;
	GENERAL_NAME_set0_value(gen, GEN_URI, uri);
	uri = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto fail;
	return gens;
fail:
	ASN1_IA5STRING_free(uri);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return NULL;
}

int
cf_csr_create(char **out_pem, const cf_key *key, cf_sig_alg sig, const char *thing)
{
	int r = CF_ERROR;
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	GENERAL_NAMES *gens = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext = NULL;
	EVP_MD_CTX *mctx = NULL;
	BIO *bio = NULL;

	if (!cf_name_valid("thing", thing)) {
		r = CF_EINVAL;
		goto out;
	}
	if ((mctx = EVP_MD_CTX_new()) == NULL) {
		cf_error_ssl("out of memory");
		goto out;
	}
	if ((r = cf_pki_md_init(mctx, key->pkey, sig, 1)) != 0)
		goto out;
	r = CF_ERROR;
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    (name = cf_pki_name_from_cn(thing)) == NULL || !X509_REQ_set_subject_name(req, name)) {
		cf_error_ssl("cannot build the CSR");
		goto out;
	}
	/* The SPKI from the raw public key when we can (the encoder costs ~140 us), same bytes. */
	if (cf_pki_der_set_pubkey(X509_REQ_get_X509_PUBKEY(req), key->pkey) != 0 &&
	    !X509_REQ_set_pubkey(req, key->pkey)) {
		cf_error_ssl("cannot set the CSR's public key");
		goto out;
	}
	if ((gens = san_for_thing(thing)) == NULL ||
	    (ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens)) == NULL ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL ||
	    !sk_X509_EXTENSION_push(exts, ext)) {
		cf_error_ssl("cannot build the CSR's subjectAltName");
		goto out;
	}
	ext = NULL;
	if (!X509_REQ_add_extensions(req, exts)) {
		cf_error_ssl("cannot add the CSR's extensions");
		goto out;
	}
	/* The signing context carries the PSS parameters into the AlgorithmIdentifier. */
	if (X509_REQ_sign_ctx(req, mctx) <= 0) {
		cf_error_ssl("cannot sign the CSR with %s", cf_sig_alg_name(sig));
		goto out;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509_REQ(bio, req) != 1) {
		cf_error_ssl("cannot encode the CSR");
		goto out;
	}
	r = cf_pki_bio_to_string(out_pem, bio);
out:
	BIO_free(bio);
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_NAME_free(name);
	X509_REQ_free(req);
	EVP_MD_CTX_free(mctx);
	return r;
}

/* Hands PEM a missing passphrase: a CSR or certificate is never encrypted, and nothing prompts. */
static int
no_pass_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/*
 * The DER of the first PEM block called name (or its older aliases, as
 * PEM_read_bio_X509* find them) into *der (OPENSSL_free it). 1 if there is
 * none (OpenSSL's error queued); CF_EINVAL if len is out of range.
 */
static int
pem_body(unsigned char **der, long *der_len, const void *data, size_t len, const char *name)
{
	BIO *bio = NULL;
	char *nm = NULL;
	int r;

	if ((r = cf_pki_bio_over(&bio, data, len)) != 0)
		return r;
	r = PEM_bytes_read_bio(der, der_len, &nm, name, bio, no_pass_cb, NULL) == 1 ? 0 : 1;
	OPENSSL_free(nm);
	BIO_free(bio);
	return r;
}

int
cf_csr_parse(cf_csr **out, const void *data, size_t len)
{
	int r = CF_EINVAL;
	unsigned char *pem_der = NULL;
	long pem_len = 0;
	cf_der_req *req = NULL;
	cf_csr *csr = NULL;

	/*
	 * OpenSSL's templates as in d2i_X509_REQ, but the public key is built
	 * here (cf_pki_der.c) instead of by OSSL_DECODER during the parse.
	 * Exactly one DER value, in a PEM body as well.
	 */
	if (looks_pem(data, len)) {
		if ((r = pem_body(&pem_der, &pem_len, data, len, PEM_STRING_X509_REQ)) < 0)
			goto out;
		if (r != 0 || pem_len <= 0 ||
		    cf_pki_der_req_parse(&req, pem_der, (size_t)pem_len) != 0)
			req = NULL;
	} else if (len > 0 && len <= CF_PKI_MAX_INPUT) {
		if (cf_pki_der_req_parse(&req, data, len) != 0)
			req = NULL;
	}
	if (req == NULL) {
		r = CF_EINVAL;
		cf_error_ssl("malformed certificate signing request");
		goto out;
	}
	if ((csr = calloc(1, sizeof(*csr))) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	csr->req = req;
	req = NULL;
	/* As d2i_X509_REQ: an undecodable key is not a parse error; verify rejects it. */
	csr->pkey = cf_pki_der_spki_pkey(csr->req->info->spki);
	ERR_clear_error();
	*out = csr;
	r = 0;
out:
	cf_pki_der_req_free(req);
	OPENSSL_free(pem_der);
	return r;
}

void
cf_csr_free(cf_csr *csr)
{
	if (csr == NULL)
		return;
	cf_pki_der_req_free(csr->req);
	EVP_PKEY_free(csr->pkey);
	free(csr);
}

int
cf_csr_verify(const cf_csr *csr)
{
	if (csr->verified)
		return 0;
	if (csr->pkey == NULL) {
		cf_error_set("CSR public key cannot be decoded");
		return CF_EREJECTED;
	}
	if (cf_pki_der_req_verify(csr->req, csr->pkey) != 1) {
		cf_error_ssl("CSR signature does not verify");
		return CF_EREJECTED;
	}
	/* The memo is not the caller's state: csr is const to every caller. */
	((cf_csr *)csr)->verified = 1;
	return 0;
}

/* Every subjectAltName entry must be the thing's URN; what ("CSR", "certificate") names the holder. */
static int
check_san(const GENERAL_NAMES *gens, const char *urn, const char *what)
{
	const GENERAL_NAME *gen;
	const ASN1_IA5STRING *uri;
	int i, type;

	for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		gen = sk_GENERAL_NAME_value(gens, i);
		uri = GENERAL_NAME_get0_value(gen, &type);
		if (type != GEN_URI) {
			cf_error_set("%s has a subjectAltName entry of type %d, only the URI %s "
			    "is allowed", what, type, urn);
			return CF_EREJECTED;
		}
		if ((size_t)ASN1_STRING_length(uri) != strlen(urn) ||
		    memcmp(ASN1_STRING_get0_data(uri), urn, strlen(urn)) != 0) {
			cf_error_set("%s subjectAltName URI '%.*s' is not %s", what,
			    ASN1_STRING_length(uri) > 200 ? 200 : ASN1_STRING_length(uri),
			    (const char *)ASN1_STRING_get0_data(uri), urn);
			return CF_EREJECTED;
		}
	}
	return 0;
}

int
cf_csr_check_subject(const cf_csr *csr, const char *thing)
{
	int r = CF_EREJECTED, idx, n = 0, i;
	const X509_NAME *name;
	const X509_NAME_ENTRY *e;
	unsigned char *utf8 = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509_EXTENSION *ext;
	char urn[sizeof(CF_URN_PREFIX) + CF_NAME_MAX];

	if (!cf_name_valid("thing", thing)) {
		r = CF_EINVAL;
		goto out;
	}
	snprintf(urn, sizeof(urn), CF_URN_PREFIX "%s", thing);
	name = csr->req->info->subject;
	for (idx = -1; (idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0;)
		n++;
	if (n != 1) {
		cf_error_set("CSR subject has %d common names, expected exactly one (%s)", n,
		    thing);
		goto out;
	}
	e = X509_NAME_get_entry(name, X509_NAME_get_index_by_NID(name, NID_commonName, -1));
	if ((n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e))) < 0) {
		cf_error_ssl("CSR common name cannot be decoded");
		goto out;
	}
	if ((size_t)n != strlen(thing) || memcmp(utf8, thing, (size_t)n) != 0) {
		cf_error_set("CSR subject CN '%.*s' is not the thing '%s'", n > 200 ? 200 : n,
		    (const char *)utf8, thing);
		goto out;
	}
	exts = cf_pki_der_req_extensions(csr->req);
	for (i = 0; exts != NULL && i < sk_X509_EXTENSION_num(exts); i++) {
		ext = sk_X509_EXTENSION_value(exts, i);
		if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name)
			continue;
		if ((gens = X509V3_EXT_d2i(ext)) == NULL) {
			cf_error_ssl("CSR subjectAltName is malformed");
			goto out;
		}
		if (check_san(gens, urn, "CSR") != 0)
			goto out;
		GENERAL_NAMES_free(gens);
		gens = NULL;
	}
	r = 0;
out:
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	OPENSSL_free(utf8);
	ERR_clear_error();
	return r;
}

int
cf_csr_pubkey(cf_key **out, const cf_csr *csr)
{
	EVP_PKEY *pkey = csr->pkey;

	if (pkey == NULL) {
		cf_error_set("CSR public key cannot be decoded");
		return CF_EINVAL;
	}
	if (!EVP_PKEY_up_ref(pkey)) {
		cf_error_ssl("out of memory");
		return CF_ERROR;
	}
	if (key_wrap(out, pkey) != 0) {
		EVP_PKEY_free(pkey);
		return CF_ERROR;
	}
	return 0;
}

static int
alg_name(char *out, size_t out_len, const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj = NULL;
	int nid;

	X509_ALGOR_get0(&obj, NULL, NULL, alg);
	if ((nid = OBJ_obj2nid(obj)) != NID_undef)
		return cf_strfmt(out, out_len, "%s", OBJ_nid2ln(nid));
	if (out_len > INT_MAX || OBJ_obj2txt(out, (int)out_len, obj, 1) <= 0) {
		cf_error_set("unprintable signature algorithm");
		return CF_EINVAL;
	}
	return 0;
}

int
cf_csr_sig_name(char *out, size_t out_len, const cf_csr *csr)
{
	return alg_name(out, out_len, csr->req->sig_alg);
}

/* ---- certificates ------------------------------------------------------- */

int
cf_pki_cert_wrap(cf_cert **out, X509 *x)
{
	cf_cert *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	c->x509 = x;
	*out = c;
	return 0;
}

/*
 * The DER of a certificate OpenSSL built, assembled from its parts:
 * SEQUENCE { TBSCertificate, signatureAlgorithm, signatureValue }.
 * i2d_X509 would encode the TBS twice (once to learn its length, once to
 * write it: OpenSSL's template encoder does that at every nesting level),
 * here it is encoded once; the bytes are the same (DER has one encoding).
 */
static int
x509_der(unsigned char **out, size_t *out_len, X509 *x)
{
	const ASN1_BIT_STRING *sig = NULL;
	const X509_ALGOR *alg = NULL;
	unsigned char *tbs = NULL, *der = NULL, *p;
	int ntbs, nalg, nsig, body, total, r = CF_ERROR;

	X509_get0_signature(&sig, &alg, x);
	if ((ntbs = i2d_re_X509_tbs(x, &tbs)) <= 0 || (nalg = i2d_X509_ALGOR(alg, NULL)) <= 0 ||
	    (nsig = i2d_ASN1_BIT_STRING(sig, NULL)) <= 0 || ntbs > INT_MAX / 2 - nalg - nsig ||
	    (total = ASN1_object_size(1, body = ntbs + nalg + nsig, V_ASN1_SEQUENCE)) <= 0 ||
	    (der = OPENSSL_malloc((size_t)total)) == NULL) {
		cf_error_ssl("cannot encode the certificate");
		goto out;
	}
	p = der;
	ASN1_put_object(&p, 1, body, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(p, tbs, (size_t)ntbs);
	p += ntbs;
	if (i2d_X509_ALGOR(alg, &p) != nalg || i2d_ASN1_BIT_STRING(sig, &p) != nsig ||
	    p != der + total) {
		cf_error_ssl("cannot encode the certificate");
		goto out;
	}
	*out = der;
	*out_len = (size_t)total;
	der = NULL;
	r = 0;
out:
	OPENSSL_free(der);
	OPENSSL_free(tbs);
	return r;
}

int
cf_pki_cert_wrap_signed(cf_cert **out, X509 *x)
{
	unsigned char *der = NULL;
	size_t len = 0;

	if (x509_der(&der, &len, x) != 0)
		return CF_ERROR;
	if (cf_pki_cert_wrap(out, x) != 0) {
		OPENSSL_free(der);
		return CF_ERROR;
	}
	(*out)->der = der;
	(*out)->der_len = len;
	return 0;
}

int
cf_cert_parse(cf_cert **out, const void *data, size_t len)
{
	int r = CF_ERROR;
	BIO *bio = NULL;
	X509 *x = NULL;
	const unsigned char *p = data;

	if (looks_pem(data, len)) {
		if ((r = cf_pki_bio_over(&bio, data, len)) != 0)
			goto out;
		x = PEM_read_bio_X509(bio, NULL, no_pass_cb, NULL);
	} else if (len > 0 && len <= CF_PKI_MAX_INPUT) {
		x = d2i_X509(NULL, &p, (long)len);
		if (x != NULL && p != (const unsigned char *)data + len) {
			X509_free(x);
			x = NULL;
		}
	}
	if (x == NULL) {
		r = CF_EINVAL;
		cf_error_ssl("malformed certificate");
		goto out;
	}
	if ((r = cf_pki_cert_wrap(out, x)) != 0)
		goto out;
	x = NULL;
out:
	X509_free(x);
	BIO_free(bio);
	return r;
}

void
cf_cert_list_free(cf_cert **list, size_t n)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; i < n; i++)
		cf_cert_free(list[i]);
	free(list);
}

int
cf_cert_parse_bundle(cf_cert ***out, size_t *out_n, const void *data, size_t len)
{
	int r = CF_ERROR;
	BIO *bio = NULL;
	X509 *x = NULL;
	cf_cert **list = NULL, **grown;
	size_t n = 0;

	if (!looks_pem(data, len)) {
		/* A lone DER certificate is a bundle of one. */
		if ((list = calloc(1, sizeof(*list))) == NULL) {
			cf_error_set("out of memory");
			goto out;
		}
		if ((r = cf_cert_parse(&list[0], data, len)) != 0)
			goto out;
		n = 1;
		goto done;
	}
	if ((r = cf_pki_bio_over(&bio, data, len)) != 0)
		goto out;
	r = CF_ERROR;
	for (;;) {
		ERR_set_mark();
		if ((x = PEM_read_bio_X509(bio, NULL, no_pass_cb, NULL)) == NULL) {
			if (cf_pki_pem_bundle_end(n))
				break;
			r = CF_EINVAL;
			cf_error_ssl("malformed certificate %zu in bundle", n + 1);
			goto out;
		}
		ERR_clear_last_mark();
		if (n >= 1024 || (grown = realloc(list, (n + 1) * sizeof(*list))) == NULL) {
			cf_error_set("bundle too large");
			goto out;
		}
		list = grown;
		if ((r = cf_pki_cert_wrap(&list[n], x)) != 0)
			goto out;
		x = NULL;
		n++;
		r = CF_ERROR;
	}
done:
	*out = list;
	list = NULL;
	*out_n = n;
	n = 0;
	r = 0;
out:
	cf_cert_list_free(list, n);
	X509_free(x);
	BIO_free(bio);
	return r;
}

int
cf_cert_load(cf_cert **out, const char *path)
{
	int r;
	char *buf = NULL;
	size_t len = 0;

	if ((r = cf_file_read(&buf, &len, path, CF_PKI_MAX_INPUT)) != 0)
		goto out;
	if ((r = cf_cert_parse(out, buf, len)) != 0) {
		cf_error_prefix("%s", path);
		goto out;
	}
out:
	free(buf);
	return r;
}

void
cf_cert_free(cf_cert *cert)
{
	if (cert == NULL)
		return;
	X509_free(cert->x509);
	EVP_PKEY_free(cert->pub);
	OPENSSL_free(cert->der);
	free(cert);
}

cf_cert *
cf_cert_dup(const cf_cert *cert)
{
	cf_cert *c = NULL;

	/* Handles are immutable once built, so sharing the X509 is a copy. */
	if (!X509_up_ref(cert->x509))
		return NULL;
	if (cf_pki_cert_wrap(&c, cert->x509) != 0) {
		X509_free(cert->x509);
		return NULL;
	}
	if (cert->der != NULL) {
		if ((c->der = OPENSSL_memdup(cert->der, cert->der_len)) == NULL) {
			cf_cert_free(c);
			return NULL;
		}
		c->der_len = cert->der_len;
	}
	return c;
}

int
cf_pki_pem_from_der(char **out, const char *label, const unsigned char *der, size_t len)
{
	static const char begin[] = "-----BEGIN ", end[] = "-----END ", dashes[] = "-----\n";
	size_t lines = (len + 47) / 48, size, off = 0, chunk, i;
	char *s;

	size = 2 * (sizeof(begin) + strlen(label) + sizeof(dashes)) + 4 * ((len + 2) / 3) + lines + 1;
	if (len > INT_MAX || (s = malloc(size)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	off += (size_t)snprintf(s + off, size - off, "%s%s%s", begin, label, dashes);
	for (i = 0; i < len; i += chunk) {
		chunk = len - i < 48 ? len - i : 48;
		off += (size_t)EVP_EncodeBlock((unsigned char *)s + off, der + i, (int)chunk);
		s[off++] = '\n';
	}
	(void)snprintf(s + off, size - off, "%s%s%s", end, label, dashes);
	*out = s;
	return 0;
}

/* A certificate's DER: the bytes kept when it was signed here, or a new encoding in *tmp. */
static int
cert_der(const unsigned char **der, size_t *len, unsigned char **tmp, const cf_cert *cert)
{
	int n;

	*tmp = NULL;
	if (cert->der != NULL) {
		*der = cert->der;
		*len = cert->der_len;
		return 0;
	}
	if ((n = i2d_X509(cert->x509, tmp)) <= 0) {
		cf_error_ssl("cannot encode the certificate");
		return CF_ERROR;
	}
	*der = *tmp;
	*len = (size_t)n;
	return 0;
}

int
cf_cert_to_pem(char **out, const cf_cert *cert)
{
	const unsigned char *der = NULL;
	unsigned char *tmp = NULL;
	size_t len = 0;
	int r;

	if ((r = cert_der(&der, &len, &tmp, cert)) == 0)
		r = cf_pki_pem_from_der(out, PEM_STRING_X509, der, len);
	OPENSSL_free(tmp);
	return r;
}

int
cf_cert_fingerprint(char out[CF_ID_LEN + 1], const cf_cert *cert)
{
	const unsigned char *der = NULL;
	unsigned char *tmp = NULL;
	size_t len = 0;
	int r;

	if ((r = cert_der(&der, &len, &tmp, cert)) == 0)
		cf_sha256_hex(out, der, len);
	OPENSSL_free(tmp);
	return r;
}

EVP_PKEY *
cf_pki_x509_pkey(const X509 *x)
{
	EVP_PKEY *pkey;
	unsigned char *der = NULL;
	int n;

	ERR_set_mark();
	pkey = X509_get0_pubkey(x);
	ERR_pop_to_mark();
	if (pkey != NULL)
		return EVP_PKEY_up_ref(pkey) ? pkey : NULL;
	/* Issued in this process: the key is still only bytes (see copy_pubkey). */
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der)) <= 0)
		return NULL;
	pkey = cf_pki_der_pubkey(der, (size_t)n);
	OPENSSL_free(der);
	return pkey;
}

EVP_PKEY *
cf_pki_cert_pkey(const cf_cert *c)
{
	if (c->pub != NULL)
		return EVP_PKEY_up_ref(c->pub) ? c->pub : NULL;
	return cf_pki_x509_pkey(c->x509);
}

X509 *
cf_pki_x509_complete(X509 *x)
{
	X509 *copy = NULL;
	unsigned char *der = NULL;
	const unsigned char *p;
	int n;

	ERR_set_mark();
	if (X509_get0_pubkey(x) != NULL) {
		ERR_pop_to_mark();
		return X509_up_ref(x) ? x : NULL;
	}
	ERR_pop_to_mark();
	if ((n = i2d_X509(x, &der)) > 0) {
		p = der;
		copy = d2i_X509(NULL, &p, n);
	}
	OPENSSL_free(der);
	return copy;
}

static int64_t
asn1_time_epoch(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

/* Lowercase hex of an ASN1_INTEGER serial ("-" prefixed if negative). */
static int
serial_hex(char *out, size_t out_len, const ASN1_INTEGER *serial)
{
	BIGNUM *bn = NULL;
	char *hex = NULL, *p;
	int r = CF_ERROR;

	if ((bn = ASN1_INTEGER_to_BN(serial, NULL)) == NULL || (hex = BN_bn2hex(bn)) == NULL) {
		cf_error_ssl("malformed serial number");
		goto out;
	}
	for (p = hex; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
	r = cf_strfmt(out, out_len, "%s", hex);
out:
	OPENSSL_free(hex);
	BN_free(bn);
	return r;
}

/*
 * 1 if x's basicConstraints says cA: exactly what sets OpenSSL's EXFLAG_CA
 * (one basicConstraints extension that decodes, cA TRUE), read without
 * X509_get_extension_flags, whose first call on a certificate hashes all
 * of it with SHA-1 and decodes every extension (~0.1M instructions, most
 * of cf_cert_info_get on a certificate just issued).
 */
static int
bc_is_ca(const X509 *x)
{
	BASIC_CONSTRAINTS *bs;
	int crit = -1, ca;

	bs = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	ca = bs != NULL && bs->ca;
	BASIC_CONSTRAINTS_free(bs);
	return ca;
}

int
cf_cert_info_get(cf_cert_info *out, const cf_cert *cert)
{
	int r = CF_ERROR;
	X509 *x = cert->x509;
	EVP_PKEY *pkey = NULL;

	memset(out, 0, sizeof(*out));
	if ((r = cf_cert_fingerprint(out->id, cert)) != 0)
		goto out;
	if ((r = serial_hex(out->serial, sizeof(out->serial), X509_get0_serialNumber(x))) != 0)
		goto out;
	r = CF_ERROR;
	cf_pki_name_cn(out->subject_cn, sizeof(out->subject_cn), X509_get_subject_name(x));
	cf_pki_name_cn(out->issuer_cn, sizeof(out->issuer_cn), X509_get_issuer_name(x));
	out->not_before = asn1_time_epoch(X509_get0_notBefore(x));
	out->not_after = asn1_time_epoch(X509_get0_notAfter(x));
	if ((pkey = cf_pki_cert_pkey(cert)) == NULL) {
		r = CF_EINVAL;
		cf_error_ssl("certificate public key cannot be decoded");
		goto out;
	}
	(void)pkey_info(&out->key, pkey);
	snprintf(out->sig_alg, sizeof(out->sig_alg), "%s",
	    OBJ_nid2ln(X509_get_signature_nid(x)) ? OBJ_nid2ln(X509_get_signature_nid(x)) :
	    "unknown");
	out->is_ca = bc_is_ca(x);
	out->self_signed = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0 &&
	    X509_verify(x, pkey) == 1;
	r = 0;
out:
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return r;
}

int
cf_cert_pubkey(cf_key **out, const cf_cert *cert)
{
	EVP_PKEY *pkey;

	if ((pkey = cf_pki_cert_pkey(cert)) == NULL) {
		cf_error_ssl("certificate public key cannot be decoded");
		return CF_EINVAL;
	}
	if (key_wrap(out, pkey) != 0) {
		EVP_PKEY_free(pkey);
		return CF_ERROR;
	}
	return 0;
}

int
cf_pki_der_cert_read(cf_der_cert **out, const void *data, size_t len)
{
	unsigned char *der = NULL;
	long der_len = 0;
	int r = CF_EINVAL;

	if (looks_pem(data, len)) {
		if ((r = pem_body(&der, &der_len, data, len, PEM_STRING_X509)) != 0 || der_len <= 0)
			r = CF_EINVAL;
		else
			r = cf_pki_der_cert_parse(out, der, (size_t)der_len);
	} else if (len > 0 && len <= CF_PKI_MAX_INPUT) {
		r = cf_pki_der_cert_parse(out, data, len);
	}
	OPENSSL_free(der);
	return r;
}

int
cf_cert_pubkey_from_pem(cf_key **out, const void *data, size_t len)
{
	cf_der_cert *dc = NULL;
	cf_cert *cert = NULL;
	EVP_PKEY *pkey = NULL;
	int r;

	/* The certificate read as d2i_X509 would, its key built without the decoder. */
	ERR_set_mark();
	if (cf_pki_der_cert_read(&dc, data, len) == 0)
		pkey = cf_pki_der_spki_pkey(dc->tbs->spki);
	ERR_pop_to_mark();
	cf_pki_der_cert_free(dc);
	if (pkey != NULL) {
		if ((r = key_wrap(out, pkey)) != 0)
			EVP_PKEY_free(pkey);
		return r;
	}
	/* Anything else (a TRUSTED CERTIFICATE, a bad key): the full parse and its errors. */
	if ((r = cf_cert_parse(&cert, data, len)) == 0)
		r = cf_cert_pubkey(out, cert);
	cf_cert_free(cert);
	return r;
}

int
cf_cert_matches_key(const cf_cert *cert, const cf_key *key)
{
	EVP_PKEY *pkey;
	int eq;

	if ((pkey = cf_pki_cert_pkey(cert)) == NULL) {
		ERR_clear_error();
		return 0;
	}
	eq = EVP_PKEY_eq(pkey, key->pkey) == 1;
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return eq;
}

int
cf_cert_check_thing(const cf_cert *cert, const char *thing)
{
	int r = CF_EREJECTED, idx, n = 0, len, crit = 0;
	const X509_NAME *name;
	unsigned char *utf8 = NULL;
	GENERAL_NAMES *gens = NULL;
	char urn[sizeof(CF_URN_PREFIX) + CF_NAME_MAX];

	if (!cf_name_valid("thing", thing)) {
		r = CF_EINVAL;
		goto out;
	}
	snprintf(urn, sizeof(urn), CF_URN_PREFIX "%s", thing);
	name = X509_get_subject_name(cert->x509);
	for (idx = -1; (idx = X509_NAME_get_index_by_NID(name, NID_commonName, idx)) >= 0;)
		n++;
	if (n != 1) {
		cf_error_set("certificate subject has %d common names, expected exactly one (%s)", n,
		    thing);
		goto out;
	}
	idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if ((len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name,
	    idx)))) < 0) {
		cf_error_ssl("certificate common name cannot be decoded");
		goto out;
	}
	if ((size_t)len != strlen(thing) || memcmp(utf8, thing, (size_t)len) != 0) {
		cf_error_set("certificate subject CN '%.*s' is not the thing '%s'", len > 200 ? 200 : len,
		    (const char *)utf8, thing);
		goto out;
	}
	/* Exactly one subjectAltName extension (crit -2 says there are several, -1 none). */
	if ((gens = X509_get_ext_d2i(cert->x509, NID_subject_alt_name, &crit, NULL)) == NULL) {
		cf_error_set("certificate has %s, expected the URI %s",
		    crit == -2 ? "several subjectAltName extensions" :
		    crit == -1 ? "no subjectAltName" : "a malformed subjectAltName", urn);
		goto out;
	}
	if (sk_GENERAL_NAME_num(gens) < 1) {
		cf_error_set("certificate subjectAltName is empty, expected the URI %s", urn);
		goto out;
	}
	if (check_san(gens, urn, "certificate") != 0)
		goto out;
	r = 0;
out:
	GENERAL_NAMES_free(gens);
	OPENSSL_free(utf8);
	ERR_clear_error();
	return r;
}
