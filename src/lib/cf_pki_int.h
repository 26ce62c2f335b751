/*
 * cf_pki_int — what the cf_pki*.c files and cf_keyq.c share behind the
 * public interface: the handle layouts, the DER structures of cf_pki_der.c
 * and a few OpenSSL-level helpers. Nothing outside those files includes it
 * but cf_tls.c (which hands a key's EVP_PKEY to libssl) and the white-box
 * tests and fuzz targets of the PKI module, so OpenSSL types stay behind
 * the PKI module (STYLE: "OpenSSL stays behind the PKI module").
 */
#ifndef CF_PKI_INT_H
#define CF_PKI_INT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cf_pki.h"

struct cf_key {
	EVP_PKEY *pkey;
};

/*
 * DER structures as cf_pki_der.c reads them: OpenSSL's ASN.1 templates with
 * the SubjectPublicKeyInfo kept as bytes, so that no OSSL_DECODER runs
 * (docs/pki.md). The enc fields hold the encoding as received.
 */
typedef struct {
	ASN1_ENCODING enc;
	X509_ALGOR *alg;
	ASN1_BIT_STRING *key;
} cf_der_spki;

typedef struct {
	ASN1_ENCODING enc; /* the CertificationRequestInfo as signed */
	ASN1_INTEGER *version;
	X509_NAME *subject;
	cf_der_spki *spki;
	STACK_OF(X509_ATTRIBUTE) *attributes;
} cf_der_req_info;

typedef struct {
	cf_der_req_info *info;
	X509_ALGOR *sig_alg;
	ASN1_BIT_STRING *signature;
} cf_der_req;

typedef struct {
	ASN1_INTEGER *version;
	ASN1_INTEGER *serial;
	X509_ALGOR *signature;
	X509_NAME *issuer;
	X509_VAL *validity;
	X509_NAME *subject;
	cf_der_spki *spki;
	ASN1_BIT_STRING *issuer_uid, *subject_uid;
	STACK_OF(X509_EXTENSION) *extensions;
} cf_der_tbs;

typedef struct {
	cf_der_tbs *tbs;
	X509_ALGOR *sig_alg;
	ASN1_BIT_STRING *signature;
} cf_der_cert;

struct cf_csr {
	cf_der_req *req;
	/*
	 * The CSR's key, built at parse time by cf_pki_der_spki_pkey; NULL if
	 * it cannot be decoded (cf_csr_verify then rejects the CSR).
	 */
	EVP_PKEY *pkey;
	/*
	 * Set once cf_csr_verify succeeded: the CSR cannot change afterwards,
	 * so the CA path (cf_ca_issue_csr, then cf_pki_issue_device) verifies
	 * the signature once, not twice.
	 */
	int verified;
};

struct cf_cert {
	X509 *x509;
	/*
	 * Optional: the decoded public key of a certificate issued in this
	 * process (the CSR's key, whose encoding copy_pubkey copied), so that
	 * reading it back does not decode the bytes again (~100 us each in
	 * OpenSSL 3.0). NULL otherwise. Use cf_pki_cert_pkey, never directly.
	 */
	EVP_PKEY *pub;
	/*
	 * Optional: the certificate's DER, encoded once right after it was
	 * signed here (cf_pki_cert_wrap_signed), so that the fingerprint and
	 * the PEM do not encode the whole certificate again (OpenSSL keeps no
	 * encoding of a certificate it built: every i2d_X509 re-encodes the
	 * TBS). NULL for parsed certificates, whose TBS encoding OpenSSL keeps.
	 */
	unsigned char *der;
	size_t der_len;
};

#define CF_URN_PREFIX "urn:certfleet:thing:"

/* Broad key families; signing algorithms belong to exactly one. */
typedef enum {
	CF_FAMILY_NONE,
	CF_FAMILY_RSA,
	CF_FAMILY_EC,
	CF_FAMILY_ED25519,
} cf_family;

/* The family of an OpenSSL key (CF_FAMILY_NONE for DSA, Ed448 ...). */
cf_family cf_pki_family_of(const EVP_PKEY *pkey);

/*
 * Initialises mctx for signing (sign != 0) or verifying with pkey under
 * sig: digest, and for RSA-PSS the padding, MGF1 digest and a salt as
 * long as the digest. CF_EINVAL (naming both) if sig does not fit the key.
 */
int cf_pki_md_init(EVP_MD_CTX *mctx, EVP_PKEY *pkey, cf_sig_alg sig, int sign) CF_MUST_CHECK;

/*
 * The digest behind a signature AlgorithmIdentifier (NID_sha1 for
 * sha1WithRSAEncryption, the hashAlgorithm of RSASSA-PSS parameters,
 * NID_undef for Ed25519/Ed448). CF_EINVAL if the algorithm is unknown.
 */
int cf_pki_sig_md_nid(int *out, const X509_ALGOR *alg) CF_MUST_CHECK;

/*
 * A new reference to a certificate's public key (EVP_PKEY_free it), or
 * NULL. Certificates issued in this process hold their key only as bytes
 * (cf_pki_issue_device copies the CSR's encoding), so this decodes on
 * demand; never call X509_get0_pubkey on a cf_cert directly.
 */
EVP_PKEY *cf_pki_x509_pkey(const X509 *x);

/* Like cf_pki_x509_pkey, but takes the cached key of a certificate issued here. */
EVP_PKEY *cf_pki_cert_pkey(const cf_cert *c);

/*
 * A new reference (X509_free it) to x, or to a re-read copy of x if its key
 * is not decoded yet: what OpenSSL's verifier must be given. NULL on error.
 */
X509 *cf_pki_x509_complete(X509 *x);

/* Helpers cf_pki.c lends to cf_pki_ca.c. */
int cf_pki_cert_wrap(cf_cert **out, X509 *x) CF_MUST_CHECK;     /* takes x on success */
/* cf_pki_cert_wrap for a certificate just signed here: also keeps its DER (takes x on success). */
int cf_pki_cert_wrap_signed(cf_cert **out, X509 *x) CF_MUST_CHECK;
int cf_pki_bio_to_string(char **out, BIO *bio) CF_MUST_CHECK;  /*
 * After a PEM_read_bio_* returned NULL inside ERR_set_mark(): 1 if that was
 * the clean end of a bundle of n >= 1 objects (the error is popped), 0 if
 * the input is malformed (the mark is cleared, the error stays queued).
 */
int cf_pki_pem_bundle_end(size_t n);

/*
 * The PEM of len bytes of DER under label ("CERTIFICATE"), malloc()ed and
 * NUL-terminated, byte for byte what PEM_write_bio writes: the boundary
 * lines, then base64 in lines of 64 characters, each ending in '\n'.
 */
int cf_pki_pem_from_der(char **out, const char *label, const unsigned char *der, size_t len)
    CF_MUST_CHECK;

/* a memory BIO's contents */
int cf_pki_bio_over(BIO **out, const void *data, size_t len) CF_MUST_CHECK; /* read-only */
void cf_pki_name_cn(char *out, size_t out_len, const X509_NAME *name); /* first CN, or "" */
X509_NAME *cf_pki_name_from_cn(const char *cn);                  /* CN=cn, NULL on error */

/* ---- cf_pki_der.c: reading without OSSL_DECODER --------------------------- */

/*
 * The key of a parsed SubjectPublicKeyInfo (a new reference), or NULL with
 * OpenSSL's error queued. EC P-256/P-384/P-521 (named curve, uncompressed
 * point) and Ed25519 in canonical DER are built directly; everything else
 * goes through d2i_PUBKEY on the bytes as received.
 */
EVP_PKEY *cf_pki_der_spki_pkey(const cf_der_spki *spki);
/* The same from exactly len bytes of DER SubjectPublicKeyInfo (d2i_PUBKEY's replacement). */
EVP_PKEY *cf_pki_der_pubkey(const unsigned char *der, size_t len);
/* The fast path alone: NULL wherever cf_pki_der_pubkey would ask the decoder (tests, fuzzing). */
EVP_PKEY *cf_pki_der_pubkey_fast(const unsigned char *der, size_t len);
/* Lowercase hex SHA-256 of the SPKI's canonical DER (what cf_key_fingerprint gives). */
int cf_pki_der_spki_fingerprint(char out[CF_ID_LEN + 1], const cf_der_spki *spki) CF_MUST_CHECK;
/*
 * Sets pub to pkey's SubjectPublicKeyInfo from its raw public key, without
 * the encoder, for the keys the fast path knows: 0 if set, 1 if the caller
 * must use X509_*_set_pubkey (the bytes are the same either way).
 */
int cf_pki_der_set_pubkey(X509_PUBKEY *pub, EVP_PKEY *pkey) CF_MUST_CHECK;

/* A CSR from exactly len bytes of DER. CF_EINVAL (OpenSSL's error queued) if malformed. */
int cf_pki_der_req_parse(cf_der_req **out, const unsigned char *der, size_t len) CF_MUST_CHECK;
void cf_pki_der_req_free(cf_der_req *req);
/* X509_REQ_verify for a cf_der_req: 1 if the signature verifies with pkey. */
int cf_pki_der_req_verify(const cf_der_req *req, EVP_PKEY *pkey);
/* X509_REQ_get_extensions for a cf_der_req (sk_X509_EXTENSION_pop_free it); NULL if malformed. */
STACK_OF(X509_EXTENSION) *cf_pki_der_req_extensions(const cf_der_req *req);

/* A certificate from exactly len bytes of DER, its key left as bytes. CF_EINVAL if malformed. */
int cf_pki_der_cert_parse(cf_der_cert **out, const unsigned char *der, size_t len) CF_MUST_CHECK;
void cf_pki_der_cert_free(cf_der_cert *cert);
/* cf_pki_der_cert_parse of PEM (the first CERTIFICATE block) or DER, as cf_cert_parse detects. */
int cf_pki_der_cert_read(cf_der_cert **out, const void *data, size_t len) CF_MUST_CHECK;

/*
 * The private key of an unencrypted PKCS#8 PEM ("PRIVATE KEY", what
 * cf_key_to_pem writes) for EC P-256/P-384/P-521 with its public key and
 * Ed25519; NULL for anything else, with no error queued: the caller then
 * reads it with PEM_read_bio_PrivateKey. Every copy of the key bytes is wiped.
 */
EVP_PKEY *cf_pki_der_private_pem(const char *pem, size_t len);

#endif
