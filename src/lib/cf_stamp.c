/*
 * cf_stamp — computes and verifies the broker's message stamps. Owns the
 * stamp key format (64 hex characters in a 0600 file).
 */
#include "cf_stamp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_util.h"

static const char hexdigits[] = "0123456789abcdef";

int
cf_stamp_key_create(const char *path)
{
	unsigned char raw[CF_STAMP_KEY_LEN];
	char hex[CF_STAMP_KEY_LEN * 2 + 2];
	size_t i;
	int r;

	if ((r = cf_random_bytes(raw, sizeof(raw))) != 0)
		return r;
	for (i = 0; i < sizeof(raw); i++) {
		hex[2 * i] = hexdigits[raw[i] >> 4];
		hex[2 * i + 1] = hexdigits[raw[i] & 15];
	}
	hex[2 * sizeof(raw)] = '\n';
	hex[2 * sizeof(raw) + 1] = '\0';
	r = cf_file_create_new(path, hex, strlen(hex), 0600);
	cf_wipe(raw, sizeof(raw));
	cf_wipe(hex, sizeof(hex));
	return r;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
cf_stamp_key_load(cf_stamp_key *out, const char *path)
{
	char *text = NULL;
	size_t len = 0, i;
	int r, hi, lo;

	if ((r = cf_file_read(&text, &len, path, 4096)) != 0)
		return r;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		len--;
	r = CF_EINVAL;
	if (len != CF_STAMP_KEY_LEN * 2)
		goto out;
	for (i = 0; i < CF_STAMP_KEY_LEN; i++) {
		if ((hi = hexval(text[2 * i])) < 0 || (lo = hexval(text[2 * i + 1])) < 0)
			goto out;
		out->key[i] = (unsigned char)(hi << 4 | lo);
	}
	r = 0;
out:
	if (r != 0) {
		cf_stamp_key_wipe(out);
		cf_error_set("%s: a stamp key is %d hex characters", path, CF_STAMP_KEY_LEN * 2);
	}
	cf_secret_free(text, len);
	return r;
}

void
cf_stamp_key_wipe(cf_stamp_key *k)
{
	cf_wipe(k->key, sizeof(k->key));
}

int
cf_stamp_compute(char out[CF_STAMP_HEX_LEN + 1], const cf_stamp_key *k, const char *principal,
    const char *client_id, const char *topic, const void *payload, size_t payload_len)
{
	static const char version[] = "cf-stamp-v1\n", nl[] = "\n";
	const void *parts[] = { version, principal, nl, client_id, nl, topic, nl,
		payload ? payload : "" };
	const size_t lens[] = { sizeof(version) - 1, strlen(principal), 1, strlen(client_id), 1,
		strlen(topic), 1, payload ? payload_len : 0 };
	unsigned char mac[32];
	size_t i;
	int r;

	if ((r = cf_hmac_sha256(mac, k->key, sizeof(k->key), parts, lens, 8)) != 0)
		return r;
	for (i = 0; i < sizeof(mac); i++) {
		out[2 * i] = hexdigits[mac[i] >> 4];
		out[2 * i + 1] = hexdigits[mac[i] & 15];
	}
	out[CF_STAMP_HEX_LEN] = '\0';
	return 0;
}

int
cf_stamp_verify(const cf_stamp_key *k, const char *stamp, const char *principal,
    const char *client_id, const char *topic, const void *payload, size_t payload_len)
{
	char want[CF_STAMP_HEX_LEN + 1];
	int r;

	if (stamp == NULL || strlen(stamp) != CF_STAMP_HEX_LEN) {
		cf_error_set("message has no valid %s property", CF_PROP_STAMP);
		return CF_EREJECTED;
	}
	if ((r = cf_stamp_compute(want, k, principal, client_id, topic, payload, payload_len)) != 0)
		return r;
	if (!cf_secure_equal(want, stamp, CF_STAMP_HEX_LEN)) {
		cf_error_set("message stamp does not verify (not stamped by the broker)");
		return CF_EREJECTED;
	}
	return 0;
}
