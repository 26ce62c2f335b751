/*
 * cf_stamp — the broker's proof that it, not the client, labelled a message.
 *
 * The Mosquitto plugin stamps every message a device publishes with the
 * MQTT v5 user properties cf-principal (certificate id of the TLS client
 * certificate), cf-client-id and cf-stamp, after removing any of the three
 * the client sent. cf-stamp is
 *
 *   hex(HMAC-SHA256(key, "cf-stamp-v1\n" principal "\n" client_id "\n" topic "\n" payload))
 *
 * with a key only the broker and certfleetd read (private/stamp.key).
 * Will messages never pass through the plugin's message hook, so a will
 * carrying forged properties has no valid stamp, and certfleetd (which
 * trusts only verified stamps) ignores it (docs/broker.md).
 */
#ifndef CF_STAMP_H
#define CF_STAMP_H

#include <stddef.h>

#include "cf_error.h"
#include "cf_pki.h"

#define CF_STAMP_KEY_LEN 32
#define CF_STAMP_HEX_LEN 64

#define CF_PROP_PRINCIPAL "cf-principal"
#define CF_PROP_CLIENT_ID "cf-client-id"
#define CF_PROP_STAMP "cf-stamp"

typedef struct {
	unsigned char key[CF_STAMP_KEY_LEN];
} cf_stamp_key;

/* Creates a key file (64 hex characters, 0600); CF_EEXISTS if it exists. */
int cf_stamp_key_create(const char *path) CF_MUST_CHECK;
/* Loads a key file. CF_EINVAL if it is not 64 hex characters. Wipe with cf_stamp_key_wipe. */
int cf_stamp_key_load(cf_stamp_key *out, const char *path) CF_MUST_CHECK;
void cf_stamp_key_wipe(cf_stamp_key *k);

/* The stamp of one message into out (64 hex characters + NUL). */
int cf_stamp_compute(char out[CF_STAMP_HEX_LEN + 1], const cf_stamp_key *k, const char *principal,
    const char *client_id, const char *topic, const void *payload, size_t payload_len) CF_MUST_CHECK;

/* 0 if stamp is the stamp of this message (constant time), CF_EREJECTED otherwise. */
int cf_stamp_verify(const cf_stamp_key *k, const char *stamp, const char *principal,
    const char *client_id, const char *topic, const void *payload, size_t payload_len) CF_MUST_CHECK;

#endif
