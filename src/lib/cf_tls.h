/*
 * cf_tls — what a TLS client context needs from the PKI module's handles.
 *
 * An application that builds its own OpenSSL SSL_CTX for libmosquitto
 * (MOSQ_OPT_SSL_CTX) and already holds the device's key as a cf_key hands
 * it over here, instead of having OpenSSL decode the PEM file once more
 * (SSL_CTX_use_PrivateKey_file: OpenSSL 3.0's decoder set-up, most of a
 * millisecond). The context is passed as void *, as in cf_p11_tls_ctx, so
 * that OpenSSL types stay behind the PKI module.
 */
#ifndef CF_TLS_H
#define CF_TLS_H

#include "cf_error.h"
#include "cf_pki.h"

/*
 * Makes key the private key of ssl_ctx (an SSL_CTX *). The context takes
 * its own reference: key may be freed afterwards. key must hold the private
 * half (a public key is accepted here and by SSL_CTX_check_private_key,
 * which compares public halves, but fails the handshake). CF_EINVAL without
 * a context or key; -1 if OpenSSL refuses the key (SSL_CTX_use_PrivateKey:
 * e.g. the certificate already set does not hold its public key).
 */
int cf_tls_ctx_use_key(void *ssl_ctx, const cf_key *key) CF_MUST_CHECK;

#endif
