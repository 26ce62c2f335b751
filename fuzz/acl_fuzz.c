/*
 * Fuzz target: the broker's topic rules and username parsing, fed with
 * client-controlled bytes. Input: kind byte (its top bit: quarantined),
 * client id, NUL, topic bytes. Checks invariants besides "no crash": a
 * device is never allowed a topic outside cf/things/<its id>/; a
 * quarantined one never outside cf/things/<its id>/jobs/ or
 * .../certificate/; and the flag only ever narrows (allowed quarantined
 * implies allowed without it, for every kind).
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
	char *copy, *client, *topic, prefix[300], jobs[320], certs[320], uname[CF_ACL_USERNAME_MAX];
	const char *nul;
	size_t topic_len;
	cf_principal p;
	cf_acl_kind kind;
	unsigned flags;
	int access;

	if (size < 2)
		return 0;
	kind = (cf_acl_kind)((data[0] & 0x3f) % CF_KIND__COUNT);
	flags = ((data[0] & 0x80) ? CF_ACL_QUARANTINED : 0) | ((data[0] & 0x40) ? CF_ACL_ROTATION_ONLY : 0);
	if ((copy = malloc(size)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	/* A username that parses formats back to itself (the plugin kicks by the formatted one). */
	if (cf_acl_principal_parse(&p, copy) == 0 && (p.kind >= CF_KIND__COUNT ||
	    cf_acl_principal_format(uname, sizeof(uname), &p) != 0 || strcmp(uname, copy) != 0))
		abort();
	client = copy;
	nul = memchr(data + 1, '\0', size - 1);
	topic = nul ? copy + (nul - (const char *)(data + 1)) + 1 : copy + size - 1;
	topic_len = (size_t)(copy + size - 1 - topic);
	for (access = CF_ACL_READ; access <= CF_ACL_SUBSCRIBE; access++) {
		if (cf_acl_check_flags_n(kind, flags, client, "cf/", topic, topic_len,
		    (cf_acl_access)access) != 0)
			continue;
		/* The flag only narrows. */
		if (flags != 0 && cf_acl_check_n(kind, client, "cf/", topic, topic_len,
		    (cf_acl_access)access) != 0)
			abort();
		if (kind != CF_KIND_DEVICE)
			continue;
		/* Allowed for a device: must lie under its own prefix. */
		if ((size_t)snprintf(prefix, sizeof(prefix), "cf/things/%s/", client) >= sizeof(prefix) ||
		    topic_len < strlen(prefix) || memcmp(topic, prefix, strlen(prefix)) != 0)
			abort();
		if (flags == 0)
			continue;
		/* Quarantined or rotation-only: only below its jobs/ or certificate/ level. */
		snprintf(jobs, sizeof(jobs), "%sjobs/", prefix);
		snprintf(certs, sizeof(certs), "%scertificate/", prefix);
		if (!(topic_len >= strlen(jobs) && memcmp(topic, jobs, strlen(jobs)) == 0) &&
		    !(topic_len >= strlen(certs) && memcmp(topic, certs, strlen(certs)) == 0))
			abort();
	}
	free(copy);
	return 0;
}
