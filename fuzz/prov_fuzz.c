/*
 * Fuzz target: the provisioning messages and template specs (cf_prov), fed
 * with device-controlled bytes. The first byte picks the decoder: request,
 * accepted, rejection, template spec, allow-list, name pattern. Besides "no
 * crash": a decoded request re-encodes and decodes to the same parameters.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cf_prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cf_prov_request rq, again;
	cf_prov_accepted acc;
	cf_prov_rejection rej;
	cf_prov_template t;
	char *text = NULL, *copy, **allow = NULL, name[CF_NAME_MAX + 1];
	size_t n = 0, i;

	if (size < 1)
		return 0;
	if ((copy = malloc(size)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	switch (data[0] % 6) {
	case 0:
		if (cf_prov_decode_request(&rq, data + 1, size - 1) == 0) {
			if (cf_prov_encode_request(&text, &rq) != 0 ||
			    cf_prov_decode_request(&again, text, strlen(text)) != 0)
				abort();
			if (again.params.n != rq.params.n)
				abort();
			for (i = 0; i < rq.params.n; i++)
				if (strcmp(cf_prov_params_get(&again.params, rq.params.name[i]),
				    rq.params.value[i]) != 0)
					abort();
			cf_prov_request_clear(&again);
			cf_prov_request_clear(&rq);
		}
		break;
	case 1:
		if (cf_prov_decode_accepted(&acc, data + 1, size - 1) == 0)
			cf_prov_accepted_clear(&acc);
		break;
	case 2:
		if (cf_prov_decode_rejection(&rej, data + 1, size - 1) == 0 &&
		    (unsigned)rej.code >= CF_PROV__CODE_COUNT)
			abort();
		break;
	case 3:
		if (cf_prov_template_parse(&t, "t", copy) == 0 && t.serial_param[0] == '\0')
			abort();
		cf_prov_template_clear(&t);
		break;
	case 4:
		if (cf_prov_allow_parse(&allow, &n, copy) == 0) {
			for (i = 0; i < n; i++)
				free(allow[i]);
			free(allow);
		}
		break;
	default:
		memset(&rq, 0, sizeof(rq));
		if (cf_prov_params_set(&rq.params, "S", "1") != 0)
			abort();
		if (cf_prov_name_expand(name, sizeof(name), copy, &rq.params) == 0 &&
		    !cf_name_valid("thing", name))
			abort();
		break;
	}
	free(text);
	free(copy);
	return 0;
}
