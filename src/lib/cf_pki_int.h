/*
 * cf_pki_int — what cf_pki.c, cf_pki_alg.c and cf_keyq.c share behind the
 * public interface: the handle layouts and a few OpenSSL-level helpers.
 * Nothing else includes it but cf_tls.c (which hands a key's EVP_PKEY to
 * libssl), so OpenSSL types stay behind the PKI module (STYLE: "OpenSSL
 * stays behind the PKI module").
 */
#ifndef CF_PKI_INT_H
#define CF_PKI_INT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "cf_pki.h"

struct cf_key {
	EVP_PKEY *pkey;
};

struct cf_csr {
	X509_REQ *req;
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
int cf_pki_bio_to_string(char **out, BIO *bio) CF_MUST_CHECK;  /*
 * After a PEM_read_bio_* returned NULL inside ERR_set_mark(): 1 if that was
 * the clean end of a bundle of n >= 1 objects (the error is popped), 0 if
 * the input is malformed (the mark is cleared, the error stays queued).
 */
int cf_pki_pem_bundle_end(size_t n);

/* a memory BIO's contents */
int cf_pki_bio_over(BIO **out, const void *data, size_t len) CF_MUST_CHECK; /* read-only */
void cf_pki_name_cn(char *out, size_t out_len, const X509_NAME *name); /* first CN, or "" */
X509_NAME *cf_pki_name_from_cn(const char *cn);                  /* CN=cn, NULL on error */

#endif
