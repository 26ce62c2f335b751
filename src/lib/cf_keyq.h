/*
 * cf_keyq — key quality: is a key or certificate good enough to trust?
 *
 * Checks (each a stable reason code, DESIGN §8 / audit checks use them):
 *   RSA_KEY_TOO_SHORT       RSA modulus below policy (default 2048 bits)
 *   CURVE_NOT_ALLOWED       EC curve outside policy (default P-256, P-384, P-521)
 *   KEY_TYPE_NOT_ALLOWED    DSA, and anything not RSA / EC / Ed25519
 *   WEAK_SIGNATURE          MD5 or SHA-1 (or MD2/MD4) signature on a certificate or CSR
 *   ROCA_VULNERABLE         RSA modulus with the ROCA fingerprint (CVE-2017-15361)
 *   BLOCKLISTED             SPKI SHA-256 fingerprint on the configured blocklist
 * A result collects every problem found, not just the first.
 */
#ifndef CF_KEYQ_H
#define CF_KEYQ_H

#include <stddef.h>

#include "cf_pki.h"

typedef enum {
	CF_KEYQ_RSA_KEY_TOO_SHORT = 1u << 0,
	CF_KEYQ_CURVE_NOT_ALLOWED = 1u << 1,
	CF_KEYQ_KEY_TYPE_NOT_ALLOWED = 1u << 2,
	CF_KEYQ_WEAK_SIGNATURE = 1u << 3,
	CF_KEYQ_ROCA_VULNERABLE = 1u << 4,
	CF_KEYQ_BLOCKLISTED = 1u << 5,
} cf_keyq_flag;

typedef struct cf_keyq_policy cf_keyq_policy;

/*
 * The version of the checks' logic: part of every policy fingerprint, so
 * results stored under an older version are computed again. Bump it when a
 * check changes what it reports.
 */
#define CF_KEYQ_CHECKS_VERSION 1
#define CF_KEYQ_POLICY_FP_LEN 16 /* hex characters */

/* The default policy: RSA >= 2048, curves P-256/P-384/P-521, Ed25519 allowed, empty blocklist. */
int cf_keyq_policy_new(cf_keyq_policy **out) CF_MUST_CHECK;
void cf_keyq_policy_free(cf_keyq_policy *p);
int cf_keyq_policy_set_min_rsa_bits(cf_keyq_policy *p, int bits) CF_MUST_CHECK; /* 1024..16384 */
/* Comma-separated OpenSSL curve names or NIST aliases ("P-256,secp384r1"); replaces the set. */
int cf_keyq_policy_set_curves(cf_keyq_policy *p, const char *list) CF_MUST_CHECK;
/* Adds one SPKI fingerprint (64 hex chars, case-insensitive). CF_EINVAL otherwise. */
int cf_keyq_policy_block(cf_keyq_policy *p, const char *fingerprint) CF_MUST_CHECK;
/*
 * Loads a blocklist file: one fingerprint per line, '#' comments and blank
 * lines ignored. CF_EINVAL naming the line of the first bad entry.
 */
int cf_keyq_policy_load_blocklist(cf_keyq_policy *p, const char *path) CF_MUST_CHECK;
/* The default policy as a static object (never freed): what a NULL policy means. */
const cf_keyq_policy *cf_keyq_policy_default(void);
/*
 * A short fingerprint of everything the checks' result depends on: the
 * minimum RSA size, the allowed curves (as a set), the blocklist and
 * CF_KEYQ_CHECKS_VERSION. Equal fingerprints give equal results for any
 * key (a 64-bit prefix of a SHA-256: for change detection, not security).
 * p NULL: the default policy.
 */
int cf_keyq_policy_fingerprint(char out[CF_KEYQ_POLICY_FP_LEN + 1], const cf_keyq_policy *p) CF_MUST_CHECK;

typedef struct {
	unsigned flags;     /* OR of cf_keyq_flag; 0 = acceptable */
	char detail[512];   /* human-readable, every problem, "; "-separated */
} cf_keyq_result;

/* Checks a key (public part). Returns 0 even when problems are found; <0 only on error. */
int cf_keyq_check_key(cf_keyq_result *out, const cf_keyq_policy *p, const cf_key *key) CF_MUST_CHECK;
/* Key checks plus the certificate's signature algorithm. */
int cf_keyq_check_cert(cf_keyq_result *out, const cf_keyq_policy *p, const cf_cert *cert) CF_MUST_CHECK;
/*
 * cf_keyq_check_cert on a certificate given as PEM (or DER), also giving
 * its SPKI fingerprint (as cf_key_fingerprint) in spki: what the registry
 * stores with each certificate. p NULL: the default policy. CF_EINVAL if
 * it does not parse.
 */
int cf_keyq_check_cert_pem(cf_keyq_result *out, char spki[CF_ID_LEN + 1], const cf_keyq_policy *p,
    const char *pem, size_t len) CF_MUST_CHECK;
/*
 * cf_keyq_check_cert_pem's result and SPKI fingerprint for a certificate
 * already held as a cf_cert: the same facts, byte for byte, as that
 * function gives for the cf_cert's PEM, without parsing it again. A
 * certificate issued in this process (cf_pki_issue_device) is checked with
 * the CSR's already decoded key, so nothing is decoded at all. p NULL: the
 * default policy. CF_EINVAL if the public key cannot be read.
 */
int cf_keyq_check_cert_spki(cf_keyq_result *out, char spki[CF_ID_LEN + 1], const cf_keyq_policy *p,
    const cf_cert *cert) CF_MUST_CHECK;
/* Key checks plus the CSR's signature algorithm. */
int cf_keyq_check_csr(cf_keyq_result *out, const cf_keyq_policy *p, const cf_csr *csr) CF_MUST_CHECK;

/* The stable code of a single flag ("RSA_KEY_TOO_SHORT" ...), static. */
const char *cf_keyq_flag_code(cf_keyq_flag flag);

/* ROCA fingerprint test on a big-endian modulus: 1 vulnerable, 0 not. */
int cf_keyq_roca_modulus(const unsigned char *n, size_t n_len);

#endif
