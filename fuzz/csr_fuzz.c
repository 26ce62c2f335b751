/*
 * csr_fuzz — the path every device CSR takes on the server: parse (PEM or
 * DER), verify the self-signature, check the subject against a thing name,
 * and the key-quality checks. Nothing here may crash, leak or read out of
 * bounds, whatever the bytes.
 */
#include <stddef.h>
#include <stdint.h>

#include "cf_keyq.h"
#include "cf_pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static cf_keyq_policy *policy;
	cf_csr *csr = NULL;
	cf_key *pub = NULL;
	cf_keyq_result res;
	char name[128], fp[CF_ID_LEN + 1];
	int r;

	if (policy == NULL && cf_keyq_policy_new(&policy) != 0)
		return 0;
	if (cf_csr_parse(&csr, data, size) != 0)
		return 0;
	r = cf_csr_verify(csr);
	r = cf_csr_check_subject(csr, "fuzz-thing");
	r = cf_csr_sig_name(name, sizeof(name), csr);
	r = cf_keyq_check_csr(&res, policy, csr);
	if (cf_csr_pubkey(&pub, csr) == 0) {
		r = cf_key_fingerprint(fp, pub);
		cf_key_free(pub);
	}
	(void)r;
	cf_csr_free(csr);
	return 0;
}
