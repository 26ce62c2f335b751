/*
 * Fuzz target: the broker's topic rules and username parsing, fed with
 * client-controlled bytes. Input: kind byte, client id, NUL, topic bytes.
 * Checks an invariant besides "no crash": a device is never allowed a
 * topic outside cf/things/<its id>/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy, *client, *topic, prefix[300];
	const char *nul;
	size_t topic_len;
	cf_principal p;
	cf_acl_kind kind;
	int access;

	if (size < 2)
		return 0;
	kind = (cf_acl_kind)(data[0] % CF_KIND__COUNT);
	if ((copy = malloc(size)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	if (cf_acl_principal_parse(&p, copy) == 0 && p.kind >= CF_KIND__COUNT)
		abort();
	client = copy;
	nul = memchr(data + 1, '\0', size - 1);
	topic = nul ? copy + (nul - (const char *)(data + 1)) + 1 : copy + size - 1;
	topic_len = (size_t)(copy + size - 1 - topic);
	for (access = CF_ACL_READ; access <= CF_ACL_SUBSCRIBE; access++) {
		if (cf_acl_check_n(kind, client, "cf/", topic, topic_len, (cf_acl_access)access) != 0 ||
		    kind != CF_KIND_DEVICE)
			continue;
		/* Allowed for a device: must lie under its own prefix. */
		if ((size_t)snprintf(prefix, sizeof(prefix), "cf/things/%s/", client) >= sizeof(prefix) ||
		    topic_len < strlen(prefix) || memcmp(topic, prefix, strlen(prefix)) != 0)
			abort();
	}
	free(copy);
	return 0;
}
