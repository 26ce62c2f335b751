/*
 * cf_pki — keys, CSRs, certificates, CRLs and chain verification.
 *
 * The only module (with cf_keyq) that touches OpenSSL. Everything crosses
 * this boundary as opaque cf_key / cf_csr / cf_cert handles or as PEM
 * strings. Handles are owned by whoever received them through **out and
 * are released with the matching _free(), which accepts NULL. Strings
 * returned through char **out are malloc()ed; private-key PEM must be
 * released with cf_secret_free() (it is wiped).
 *
 * Algorithm names are the contract of DESIGN §3 and the agent config:
 *   key:     RSA-2048 RSA-3072 ECDSA-P256 ECDSA-P384 ECDSA-P521 ED25519
 *   signing: SHA256WITHRSA SHA384WITHRSA SHA512WITHRSA
 *            SHA256WITHRSAANDMGF1 SHA384WITHRSAANDMGF1 SHA512WITHRSAANDMGF1 (RSA-PSS)
 *            ECDSA-WITH-SHA256 ECDSA-WITH-SHA384 ECDSA-WITH-SHA512 ED25519
 * Names are matched case-insensitively; "P-256"/"P256" style aliases are
 * accepted for the curves. A certificate id is the lowercase hex SHA-256
 * of its DER (CF_ID_LEN characters).
 */
#ifndef CF_PKI_H
#define CF_PKI_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"

#define CF_ID_LEN 64      /* hex SHA-256 */
#define CF_SERIAL_LEN 64  /* hex serial, at most 20 bytes in practice */

typedef struct cf_key cf_key;   /* a key pair or a public key */
typedef struct cf_csr cf_csr;
typedef struct cf_cert cf_cert;

typedef enum {
	CF_KEY_RSA2048,
	CF_KEY_RSA3072,
	CF_KEY_P256,
	CF_KEY_P384,
	CF_KEY_P521,
	CF_KEY_ED25519,
	CF_KEY__COUNT
} cf_key_alg;

typedef enum {
	CF_SIG_SHA256_RSA,
	CF_SIG_SHA384_RSA,
	CF_SIG_SHA512_RSA,
	CF_SIG_SHA256_RSA_PSS,
	CF_SIG_SHA384_RSA_PSS,
	CF_SIG_SHA512_RSA_PSS,
	CF_SIG_ECDSA_SHA256,
	CF_SIG_ECDSA_SHA384,
	CF_SIG_ECDSA_SHA512,
	CF_SIG_ED25519,
	CF_SIG__COUNT
} cf_sig_alg;

/* ---- algorithm names and validation -------------------------------- */

/* Parses a key algorithm name. CF_EINVAL naming the value and listing the valid ones. */
int cf_key_alg_parse(cf_key_alg *out, const char *name) CF_MUST_CHECK;
const char *cf_key_alg_name(cf_key_alg alg);      /* canonical name, static */
int cf_sig_alg_parse(cf_sig_alg *out, const char *name) CF_MUST_CHECK;
const char *cf_sig_alg_name(cf_sig_alg alg);
/* The natural signing algorithm for a key algorithm (P-384 -> ECDSA-WITH-SHA384 ...). */
cf_sig_alg cf_sig_alg_default(cf_key_alg alg);

/*
 * Parses both names and checks that they go together. A NULL or empty
 * key_name is an error; a NULL sig_name picks cf_sig_alg_default(). Every
 * unknown name and every
 * mismatched pair is CF_EINVAL with a message naming both values, e.g.
 * "signing algorithm ECDSA-WITH-SHA256 cannot be used with key algorithm RSA-2048".
 */
int cf_alg_validate(cf_key_alg *key_out, cf_sig_alg *sig_out, const char *key_name,
    const char *sig_name) CF_MUST_CHECK;

/* ---- keys ------------------------------------------------------------ */

typedef struct {
	char type[16];  /* "RSA", "EC", "ED25519", "ED448", "DSA", or OpenSSL's name */
	int bits;       /* modulus or field size */
	char curve[32]; /* "prime256v1", "secp384r1" ... for EC, else "" */
} cf_key_info;

int cf_key_generate(cf_key **out, cf_key_alg alg) CF_MUST_CHECK;
void cf_key_free(cf_key *key); /* wipes private material */
/* A second handle on the same key (shared, reference-counted); cf_key_free each. */
int cf_key_dup(cf_key **out, const cf_key *key) CF_MUST_CHECK;

/*
 * PKCS#8 PEM of the private key. With a passphrase it is encrypted
 * (AES-256-CBC, PBKDF2-HMAC-SHA256); with NULL it is plain (device keys,
 * which live in 0600 files or a token). Free with cf_secret_free().
 */
int cf_key_to_pem(char **out, const cf_key *key, const char *passphrase) CF_MUST_CHECK;

/*
 * Parses a private key PEM (PKCS#8 encrypted or not, or traditional).
 * CF_EPASS when the key is encrypted and the passphrase is wrong or
 * missing; CF_EINVAL when it is not a private key.
 */
int cf_key_from_pem(cf_key **out, const char *pem, size_t len, const char *passphrase) CF_MUST_CHECK;

/* cf_key_to_pem + cf_file_write_atomic with mode 0600 / cf_file_read + cf_key_from_pem. */
int cf_key_save(const char *path, const cf_key *key, const char *passphrase) CF_MUST_CHECK;
int cf_key_load(cf_key **out, const char *path, const char *passphrase) CF_MUST_CHECK;

/* SubjectPublicKeyInfo PEM. */
int cf_key_public_pem(char **out, const cf_key *key) CF_MUST_CHECK;

/* Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (blocklists use it). */
int cf_key_fingerprint(char out[CF_ID_LEN + 1], const cf_key *key) CF_MUST_CHECK;

int cf_key_info_get(cf_key_info *out, const cf_key *key) CF_MUST_CHECK;

/* The cf_key_alg this key is, or CF_EINVAL if it is none of them (e.g. RSA-1024). */
int cf_key_alg_of(cf_key_alg *out, const cf_key *key) CF_MUST_CHECK;

/* 1 if both hold the same public key. */
int cf_key_equal_public(const cf_key *a, const cf_key *b);

/*
 * Signs data with the key using sig (which must fit the key: CF_EINVAL
 * otherwise) / verifies such a signature (CF_EREJECTED if it does not
 * verify). The signature is raw bytes, malloc()ed.
 */
int cf_key_sign(unsigned char **out, size_t *out_len, const cf_key *key, cf_sig_alg sig,
    const void *data, size_t len) CF_MUST_CHECK;
int cf_key_verify(const cf_key *key, cf_sig_alg sig, const void *data, size_t len,
    const unsigned char *sigbuf, size_t sig_len) CF_MUST_CHECK;

/* ---- CSRs -------------------------------------------------------------- */

/* A CSR for a device: subject CN=thing, SAN URI urn:certfleet:thing:<thing>, signed with sig. */
int cf_csr_create(char **out_pem, const cf_key *key, cf_sig_alg sig, const char *thing) CF_MUST_CHECK;

/* Parses PEM or DER (detected). CF_EINVAL on anything malformed. Does not verify. */
int cf_csr_parse(cf_csr **out, const void *data, size_t len) CF_MUST_CHECK;
void cf_csr_free(cf_csr *csr);

/* Verifies the CSR's self-signature. CF_EREJECTED if it does not verify. */
int cf_csr_verify(const cf_csr *csr) CF_MUST_CHECK;

/*
 * Checks the subject names exactly this thing: CN == thing, exactly one CN,
 * and any SAN URI equals urn:certfleet:thing:<thing>. CF_EREJECTED naming
 * what was found otherwise.
 */
int cf_csr_check_subject(const cf_csr *csr, const char *thing) CF_MUST_CHECK;

/* The CSR's public key (a new handle). */
int cf_csr_pubkey(cf_key **out, const cf_csr *csr) CF_MUST_CHECK;

/* The CSR's signature algorithm as OpenSSL names it ("ecdsa-with-SHA256", "sha1WithRSAEncryption"). */
int cf_csr_sig_name(char *out, size_t out_len, const cf_csr *csr) CF_MUST_CHECK;

/* ---- certificates ----------------------------------------------------- */

typedef struct {
	char id[CF_ID_LEN + 1];       /* fingerprint */
	char serial[CF_SERIAL_LEN + 1]; /* lowercase hex, no leading zeros beyond one byte */
	char subject_cn[256];
	char issuer_cn[256];
	int64_t not_before, not_after; /* epoch seconds */
	cf_key_info key;
	char sig_alg[64];   /* OpenSSL's long name of the signature algorithm */
	int is_ca;          /* basicConstraints CA:TRUE */
	int self_signed;    /* subject == issuer and the signature verifies with its own key */
} cf_cert_info;

/* Parses one certificate, PEM or DER (detected). CF_EINVAL on anything malformed. */
int cf_cert_parse(cf_cert **out, const void *data, size_t len) CF_MUST_CHECK;
/* Parses every certificate in a PEM bundle (at least one). Free with cf_cert_list_free. */
int cf_cert_parse_bundle(cf_cert ***out, size_t *out_n, const void *data, size_t len) CF_MUST_CHECK;
void cf_cert_list_free(cf_cert **list, size_t n);
int cf_cert_load(cf_cert **out, const char *path) CF_MUST_CHECK;
void cf_cert_free(cf_cert *cert);
cf_cert *cf_cert_dup(const cf_cert *cert); /* NULL on allocation failure */

int cf_cert_to_pem(char **out, const cf_cert *cert) CF_MUST_CHECK;
int cf_cert_fingerprint(char out[CF_ID_LEN + 1], const cf_cert *cert) CF_MUST_CHECK;
int cf_cert_info_get(cf_cert_info *out, const cf_cert *cert) CF_MUST_CHECK;
int cf_cert_pubkey(cf_key **out, const cf_cert *cert) CF_MUST_CHECK;
/*
 * The public key of a certificate given as PEM or DER, as cf_cert_parse +
 * cf_cert_pubkey would give it (the same errors) but without decoding
 * anything else: for callers that only need the key.
 */
int cf_cert_pubkey_from_pem(cf_key **out, const void *data, size_t len) CF_MUST_CHECK;
/* 1 if the certificate holds key's public key. */
int cf_cert_matches_key(const cf_cert *cert, const cf_key *key);

/*
 * Checks that a device certificate names exactly this thing, in every name
 * the device profile (cf_pki_issue_device) writes: exactly one subject CN,
 * equal to thing, and exactly one subjectAltName extension whose entries
 * are all (at least one) the URI urn:certfleet:thing:<thing> — a DNS, IP or
 * e-mail entry, or a URI for another thing, is refused. CF_EREJECTED naming
 * what was found; CF_EINVAL if thing is not a valid name.
 */
int cf_cert_check_thing(const cf_cert *cert, const char *thing) CF_MUST_CHECK;

/* ---- issuing ---------------------------------------------------------- */

/*
 * A self-signed root: CA:TRUE (critical), keyCertSign|cRLSign, SKI,
 * 128-bit random serial. The digest follows the key (SHA-256 for RSA and
 * P-256, SHA-384 for P-384, SHA-512 for P-521, none for Ed25519).
 */
int cf_pki_make_root(cf_cert **out, const cf_key *key, const char *cn, int validity_days) CF_MUST_CHECK;

/*
 * An intermediate signed by root: CA:TRUE pathlen:0, keyCertSign|cRLSign,
 * SKI/AKI. notAfter never exceeds the root's.
 */
int cf_pki_make_intermediate(cf_cert **out, const cf_key *pub, const char *cn, int validity_days,
    const cf_cert *root, const cf_key *root_key) CF_MUST_CHECK;

/*
 * Issues a device certificate from a CSR (DESIGN §3): subject CN=thing,
 * SAN URI urn:certfleet:thing:<thing>, CA:FALSE, digitalSignature (plus
 * keyEncipherment for RSA), EKU clientAuth, SKI/AKI, 128-bit random serial,
 * notBefore now - 5 min (clock skew), notAfter notBefore + validity_days
 * but never past the issuer's notAfter.
 * The CSR is verified and its subject checked first (CF_EREJECTED), and
 * the issuer must be a CA whose key matches issuer_key (CF_EINVAL).
 * validity_seconds overrides validity_days when > 0 (tests, short-lived certs).
 */
int cf_pki_issue_device(cf_cert **out, const cf_csr *csr, const char *thing, int validity_days,
    int64_t validity_seconds, const cf_cert *issuer, const cf_key *issuer_key) CF_MUST_CHECK;

/*
 * A TLS certificate for infrastructure, not a thing: the broker's server
 * certificate (server = 1: EKU serverAuth) or certfleetd's service client
 * certificate (server = 0: clientAuth). san is an OpenSSL subjectAltName
 * value ("DNS:localhost,IP:127.0.0.1") or NULL. CA:FALSE, SKI/AKI, random
 * 128-bit serial, clamped to the issuer's validity.
 */
int cf_pki_issue_tls(cf_cert **out, const cf_key *pub, const char *cn, const char *san, int server,
    int validity_days, const cf_cert *issuer, const cf_key *issuer_key) CF_MUST_CHECK;

/* ---- revocation ------------------------------------------------------- */

typedef struct {
	const char *serial; /* hex, as in cf_cert_info.serial */
	int64_t revoked_at;
	int reason;         /* RFC 5280 CRLReason code */
} cf_crl_entry;

/* RFC 5280 reason names: unspecified keyCompromise cACompromise affiliationChanged
 * superseded cessationOfOperation certificateHold privilegeWithdrawn aACompromise
 * (case-insensitive). CF_EINVAL listing them otherwise. */
int cf_pki_reason_parse(int *out, const char *name) CF_MUST_CHECK;
const char *cf_pki_reason_name(int reason);

/* A v2 CRL signed by ca with crlNumber and AKI; nextUpdate now + next_update_days. PEM out. */
int cf_pki_make_crl(char **out_pem, const cf_cert *ca, const cf_key *ca_key,
    const cf_crl_entry *entries, size_t n, int64_t crl_number, int next_update_days) CF_MUST_CHECK;

/* ---- verification ----------------------------------------------------- */

/*
 * Verifies leaf up to one of roots through intermediates, at time at
 * (0 = now), requiring clientAuth purpose when client_auth is set.
 * crls_pem (may be NULL) enables CRL checking of the whole chain: it must
 * then hold a current CRL from every CA above the leaf (the intermediate's
 * for the leaf, the root's for the intermediate), or verification fails
 * with "unable to get certificate CRL".
 * CF_EREJECTED with OpenSSL's reason ("certificate has expired", ...).
 */
int cf_pki_verify_chain(const cf_cert *leaf, cf_cert *const *intermediates, size_t n_int,
    cf_cert *const *roots, size_t n_roots, const char *crls_pem, int64_t at,
    int client_auth) CF_MUST_CHECK;

/* ---- small primitives -------------------------------------------------- */

/* Lowercase hex SHA-256 of data. */
void cf_sha256_hex(char out[CF_ID_LEN + 1], const void *data, size_t len);
/* Cryptographically random bytes. */
int cf_random_bytes(void *out, size_t len) CF_MUST_CHECK;
/*
 * HMAC-SHA256 over the concatenation of n parts (parts[i], lens[i] bytes),
 * into out (32 bytes). Nothing is copied, so large payloads cost no memory.
 */
int cf_hmac_sha256(unsigned char out[32], const void *key, size_t key_len,
    const void *const *parts, const size_t *lens, size_t n) CF_MUST_CHECK;
/* Constant-time compare: 1 if equal. */
int cf_secure_equal(const void *a, const void *b, size_t len);

#endif
