/*
 * cf_tls — hands a cf_key to an application-built TLS client context
 * (cf_tls.h). The one file outside cf_pki*.c and cf_keyq.c that looks
 * inside a cf_key (cf_pki_int.h): it passes the EVP_PKEY to libssl, which
 * keeps its own reference, and nothing else.
 */
#include "cf_tls.h"

#include <openssl/ssl.h>

#include "cf_pki_int.h"

int
cf_tls_ctx_use_key(void *ssl_ctx, const cf_key *key)
{
	if (ssl_ctx == NULL || key == NULL || key->pkey == NULL) {
		cf_error_set("no TLS context or no key");
		return CF_EINVAL;
	}
	if (SSL_CTX_use_PrivateKey(ssl_ctx, key->pkey) != 1) {
		cf_error_ssl("the TLS context refused the key");
		return CF_ERROR;
	}
	return 0;
}
