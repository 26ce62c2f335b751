/*
 * cf_base64 — strict standard base64. Hand-written rather than OpenSSL's
 * EVP_EncodeBlock/EVP_DecodeBlock because OpenSSL stays behind cf_pki and
 * EVP_DecodeBlock accepts whitespace and non-canonical trailing bits.
 */
#include "cf_base64.h"

#include <stdint.h>
#include <stdlib.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
cf_base64_encode(char **out, const void *data, size_t len)
{
	const unsigned char *p = data;
	char *s = NULL;
	size_t i, o = 0;
	uint32_t v;
	int r = -1;

	if (len > (SIZE_MAX / 4) * 3 - 3) {
		cf_error_set("base64: input too large");
		goto out;
	}
	if ((s = malloc(CF_BASE64_LEN(len) + 1)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	for (i = 0; i + 3 <= len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		s[o++] = alphabet[v >> 18 & 63];
		s[o++] = alphabet[v >> 12 & 63];
		s[o++] = alphabet[v >> 6 & 63];
		s[o++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)p[i] << 16;
		s[o++] = alphabet[v >> 18 & 63];
		s[o++] = alphabet[v >> 12 & 63];
		s[o++] = '=';
		s[o++] = '=';
	} else if (len - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		s[o++] = alphabet[v >> 18 & 63];
		s[o++] = alphabet[v >> 12 & 63];
		s[o++] = alphabet[v >> 6 & 63];
		s[o++] = '=';
	}
	s[o] = '\0';
	*out = s;
	s = NULL;
	r = 0;
out:
	free(s);
	return r;
}

/* The 6-bit value of c, or -1 if c is not in the alphabet. */
static int
sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
cf_base64_decode(unsigned char **out, size_t *out_len, const char *text, size_t len)
{
	unsigned char *b = NULL;
	size_t i, j, o = 0, pad = 0;
	uint32_t v;
	int d, r = CF_EINVAL;

	if (text == NULL || len % 4 != 0) {
		cf_error_set("not base64: length is not a multiple of 4");
		goto out;
	}
	if (len > 0 && text[len - 1] == '=')
		pad = text[len - 2] == '=' ? 2 : 1;
	if ((b = malloc(len / 4 * 3 + 1)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	for (i = 0; i < len; i += 4) {
		v = 0;
		for (j = 0; j < 4; j++) {
			/* '=' only in the last pad positions of the last group. */
			if (i + 4 == len && j >= 4 - pad) {
				v <<= 6;
				continue;
			}
			if ((d = sextet(text[i + j])) < 0) {
				cf_error_set("not base64: unexpected character at offset %zu", i + j);
				goto out;
			}
			v = v << 6 | (uint32_t)d;
		}
		b[o++] = (unsigned char)(v >> 16);
		if (i + 4 < len || pad < 2)
			b[o++] = (unsigned char)(v >> 8);
		if (i + 4 < len || pad < 1)
			b[o++] = (unsigned char)v;
		/* Canonical: the bits the padding drops must be zero. */
		if (i + 4 == len && ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0))) {
			cf_error_set("not base64: non-zero trailing bits");
			goto out;
		}
	}
	b[o] = '\0';
	*out = b;
	*out_len = o;
	b = NULL;
	r = 0;
out:
	free(b);
	return r;
}
