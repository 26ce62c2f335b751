/*
 * cf_p11 — keys inside a PKCS#11 token (an HSM, a smart card, SoftHSM2,
 * tpm2-pkcs11), for the agent's PKCS#11 key store and the issuing CA.
 *
 * Part of the PKI module (it is the only other place that touches OpenSSL):
 * key pairs are generated, listed and destroyed through the module's own
 * PKCS#11 functions (dlopen + C_GetFunctionList), and private keys are used
 * through OpenSSL's "pkcs11" engine from libp11 (libengine-pkcs11-openssl):
 * cf_p11_load_key() hands out an ordinary cf_key whose signing operations
 * run C_Sign in the token, so cf_csr_create(), cf_key_sign() and the
 * issuing functions work unchanged, and libmosquitto's TLS reaches the same
 * key through the same engine by its RFC 7512 URI. docs/pkcs11.md has why.
 *
 * One module per process: the engine is process-wide, configured with the
 * module path of the first cf_p11_open() (and the PIN of the latest), and
 * neither it nor the module is ever finalized (C_Finalize would end every
 * session of the process).
 * PINs are wiped after use and never logged.
 */
#ifndef CF_P11_H
#define CF_P11_H

#include <stddef.h>

#include "cf_error.h"
#include "cf_pki.h"

typedef struct cf_p11 cf_p11;

#define CF_P11_URI_MAX 512
#define CF_P11_ID_LEN 16 /* random CKA_ID bytes given to every key pair */

/*
 * Loads module, finds the token whose label is token, opens a read/write
 * session and logs in as the user with pin, and readies the engine with the
 * same module and PIN. CF_ENOTFOUND if no token has that label; CF_EPASS if
 * the token refuses the PIN. Release with cf_p11_free().
 */
int cf_p11_open(cf_p11 **out, const char *module, const char *token, const char *pin) CF_MUST_CHECK;
void cf_p11_free(cf_p11 *p);

/*
 * Reads a PIN from the first line of path. The file must not be accessible
 * to others (any o= permission) nor writable by the group: CF_EINVAL naming
 * its mode. Free with cf_secret_free().
 */
int cf_p11_pin_read(char **out, const char *path) CF_MUST_CHECK;

/*
 * Generates a key pair of alg inside the token: both objects are token
 * objects labelled label with one fresh random CKA_ID; the private key is
 * CKA_PRIVATE, CKA_SENSITIVE and not CKA_EXTRACTABLE. The RFC 7512 URI of
 * the private key goes to uri_out. CF_EINVAL for an algorithm the engine
 * cannot sign with (Ed25519: libp11 0.4.12 has no EdDSA).
 */
int cf_p11_generate(char *uri_out, size_t uri_len, cf_p11 *p, const char *label,
    cf_key_alg alg) CF_MUST_CHECK;

/*
 * Imports key (an RSA or EC private key held in memory, e.g. a bundle's
 * device.key) as a token key pair, with the same attributes as
 * cf_p11_generate (the token then never lets it out again, but it was
 * outside once: CKA_ALWAYS_SENSITIVE is false).
 */
int cf_p11_import(char *uri_out, size_t uri_len, cf_p11 *p, const char *label,
    const cf_key *key) CF_MUST_CHECK;

/* The RFC 7512 URI of the private key labelled label in this token (no id=). */
int cf_p11_uri(char *out, size_t len, const cf_p11 *p, const char *label) CF_MUST_CHECK;

/* Destroys every token object labelled label (none is not an error). */
int cf_p11_destroy(cf_p11 *p, const char *label) CF_MUST_CHECK;

/*
 * Calls cb with the label of every token object whose label starts with
 * prefix (once per object: a key pair is reported twice). A non-zero
 * return from cb stops the walk and is returned.
 */
int cf_p11_list(cf_p11 *p, const char *prefix, int (*cb)(const char *label, void *arg),
    void *arg) CF_MUST_CHECK;

/*
 * The private key named by uri (RFC 7512, as cf_p11_generate returns) as a
 * cf_key whose operations run in the token. CF_ENOTFOUND if the token has
 * no such key.
 */
int cf_p11_load_key(cf_key **out, cf_p11 *p, const char *uri) CF_MUST_CHECK;

/* The public half of that key as a plain cf_key (no token handle). */
int cf_p11_load_public(cf_key **out, cf_p11 *p, const char *uri) CF_MUST_CHECK;

/*
 * A TLS client context (an OpenSSL SSL_CTX, as void * so that OpenSSL
 * stays behind cf_pki) for a connection with the token key uri and the
 * certificate in cert_file, trusting ca_file, verifying the server's
 * certificate and its name host (an IP address or a DNS name). For
 * libmosquitto's MOSQ_OPT_SSL_CTX: its own engine route
 * (MOSQ_OPT_TLS_ENGINE) cannot be used with 2.0.11, whose
 * mosquitto_tls_set() insists on opening the key "file" (docs/pkcs11.md).
 * Release with cf_p11_tls_ctx_free().
 */
int cf_p11_tls_ctx(void **out, cf_p11 *p, const char *uri, const char *ca_file,
    const char *cert_file, const char *host) CF_MUST_CHECK;
void cf_p11_tls_ctx_free(void *ctx);

/*
 * The value of attribute attr ("token", "object" ...) of a pkcs11: URI,
 * percent-decoded, into out. CF_ENOTFOUND if the URI has none, CF_EINVAL if
 * it is not a pkcs11: URI.
 */
int cf_p11_uri_attr(char *out, size_t len, const char *uri, const char *attr) CF_MUST_CHECK;

/* What the token says about a private key (for tests and `--check`). */
typedef struct {
	int found;             /* a private key with this label exists */
	int token;             /* CKA_TOKEN */
	int sensitive;         /* CKA_SENSITIVE */
	int extractable;       /* CKA_EXTRACTABLE */
	int always_sensitive;  /* CKA_ALWAYS_SENSITIVE */
	int never_extractable; /* CKA_NEVER_EXTRACTABLE */
	int value_readable;    /* reading CKA_VALUE / CKA_PRIVATE_EXPONENT succeeded */
	unsigned long value_rv; /* the CK_RV of that read (CKR_ATTRIBUTE_SENSITIVE = 0x11) */
} cf_p11_key_attrs;

int cf_p11_key_attrs_get(cf_p11_key_attrs *out, cf_p11 *p, const char *label) CF_MUST_CHECK;

/* Whether the token offers mechanism-level support for alg (for docs and tests). */
int cf_p11_supports(cf_p11 *p, cf_key_alg alg);

#endif
