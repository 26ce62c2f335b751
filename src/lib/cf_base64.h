/*
 * cf_base64 — standard base64 (RFC 4648 §4, alphabet A-Z a-z 0-9 + /, with
 * '=' padding) for binary values carried in JSON, such as the custody
 * signatures of the rotation protocol (docs/protocol.md).
 *
 * Decoding is strict, because its input comes from devices: no whitespace,
 * no URL-safe alphabet, padding required, and the unused bits of the last
 * character must be zero, so every byte string has exactly one accepted
 * encoding.
 */
#ifndef CF_BASE64_H
#define CF_BASE64_H

#include <stddef.h>

#include "cf_error.h"

/* Characters needed to encode n bytes (without the NUL). */
#define CF_BASE64_LEN(n) ((((n) + 2) / 3) * 4)

/* Encodes len bytes into a NUL-terminated malloc()ed string (free()). */
int cf_base64_encode(char **out, const void *data, size_t len) CF_MUST_CHECK;

/*
 * Decodes len characters of text into malloc()ed bytes (free(); *out_len
 * bytes, plus a NUL not counted). CF_EINVAL with a message for anything
 * that is not canonical base64 (an empty string decodes to zero bytes).
 */
int cf_base64_decode(unsigned char **out, size_t *out_len, const char *text, size_t len) CF_MUST_CHECK;

#endif
