/*
 * cf_error — the thread-local error message behind every CF_E* return.
 * Owns one fixed buffer per thread; nothing here allocates.
 */
#include "cf_error.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CF_ERROR_MAX 1024

static _Thread_local char cf_errbuf[CF_ERROR_MAX];

void
cf_error_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cf_errbuf, sizeof(cf_errbuf), fmt, ap);
	va_end(ap);
}

void
cf_error_ssl(const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	size_t len;
	char reason[256];

	va_start(ap, fmt);
	vsnprintf(cf_errbuf, sizeof(cf_errbuf), fmt, ap);
	va_end(ap);
	/* Append every queued reason, earliest first, as far as the buffer goes. */
	while ((e = ERR_get_error()) != 0) {
		len = strlen(cf_errbuf);
		if (len + 3 >= sizeof(cf_errbuf))
			continue;
		ERR_error_string_n(e, reason, sizeof(reason));
		snprintf(cf_errbuf + len, sizeof(cf_errbuf) - len, "%s%s",
		    len ? ": " : "", reason);
	}
}

void
cf_error_prefix(const char *fmt, ...)
{
	char old[CF_ERROR_MAX], ctx[256];
	va_list ap;

	memcpy(old, cf_errbuf, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	/* A message too long for the buffer is cut; the context comes first. */
	if (snprintf(cf_errbuf, sizeof(cf_errbuf), "%s: %s", ctx, old) < 0)
		cf_errbuf[0] = '\0';
}

const char *
cf_error_last(void)
{
	return cf_errbuf;
}

void
cf_error_clear(void)
{
	cf_errbuf[0] = '\0';
	ERR_clear_error();
}

const char *
cf_error_name(int code)
{
	switch (code) {
	case CF_OK: return "ok";
	case CF_ENOTFOUND: return "not found";
	case CF_EEXISTS: return "already exists";
	case CF_EINVAL: return "invalid input";
	case CF_ESTATE: return "illegal state transition";
	case CF_EPASS: return "wrong passphrase";
	case CF_ECORRUPT: return "corrupt data";
	case CF_EREJECTED: return "rejected by policy";
	default: return "error";
	}
}
