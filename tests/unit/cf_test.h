/*
 * cf_test — helpers the unit tests share (included after <cmocka.h>).
 * Header-only and static: each test binary stays one file plus the library.
 */
#ifndef CF_TEST_H
#define CF_TEST_H

#include "cf_error.h"

/* Fails the test with the library's last error unless r is 0. */
static inline void
must(int r)
{
	if (r != 0)
		fail_msg("unexpected error %d: %s", r, cf_error_last());
}

#ifdef CF_TEST_X509
#include <openssl/pem.h>

#include "cf_pki.h"

/* The certificate as an OpenSSL X509, read back from its PEM (X509_free it). */
static inline X509 *
x509_of(const cf_cert *cert)
{
	char *pem = NULL;
	BIO *bio;
	X509 *x;

	must(cf_cert_to_pem(&pem, cert));
	bio = BIO_new_mem_buf(pem, -1);
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	assert_non_null(x);
	BIO_free(bio);
	free(pem);
	return x;
}
#endif

#endif
