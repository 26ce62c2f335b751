/*
 * cert_fuzz — certificates from anywhere (device bundles, CA imports,
 * audits): parse one (PEM or DER) and a PEM bundle, read every field the
 * registry stores, the fingerprint, the PEM form and the key-quality checks.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cf_keyq.h"
#include "cf_pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static cf_keyq_policy *policy;
	cf_cert *cert = NULL, **list = NULL;
	cf_key *pub = NULL;
	cf_cert_info info;
	cf_keyq_result res;
	char fp[CF_ID_LEN + 1], *pem = NULL;
	size_t n = 0;
	int r;

	if (policy == NULL && cf_keyq_policy_new(&policy) != 0)
		return 0;
	if (cf_cert_parse(&cert, data, size) == 0) {
		r = cf_cert_info_get(&info, cert);
		r = cf_cert_fingerprint(fp, cert);
		r = cf_keyq_check_cert(&res, policy, cert);
		if (cf_cert_to_pem(&pem, cert) == 0)
			free(pem);
		if (cf_cert_pubkey(&pub, cert) == 0) {
			(void)cf_cert_matches_key(cert, pub);
			cf_key_free(pub);
		}
		(void)r;
		cf_cert_free(cert);
	}
	if (cf_cert_parse_bundle(&list, &n, data, size) == 0)
		cf_cert_list_free(list, n);
	return 0;
}
