/*
 * cf_error — return codes and the thread-local error message.
 *
 * Every fallible function returns 0 or a negative CF_E* code. A named code
 * exists only for failures a caller handles; anything else is CF_ERROR (-1).
 * The human-readable reason goes to a thread-local buffer with
 * cf_error_set(); callers print cf_error_last().
 */
#ifndef CF_ERROR_H
#define CF_ERROR_H

#define CF_MUST_CHECK __attribute__((warn_unused_result))
#define CF_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum {
	CF_OK = 0,
	CF_ERROR = -1,     /* anything a caller does not branch on */
	CF_ENOTFOUND = -2, /* the named thing, certificate, CA, file ... does not exist */
	CF_EEXISTS = -3,   /* a unique name or id is taken */
	CF_EINVAL = -4,    /* bad input: malformed, mismatched, out of range */
	CF_ESTATE = -5,    /* illegal state transition */
	CF_EPASS = -6,     /* wrong passphrase */
	CF_ECORRUPT = -7,  /* stored data failed an integrity check */
	CF_EREJECTED = -8, /* a policy refused the request (weak key, wrong subject ...) */
};

/* Sets the thread's error message (printf-style). Always returns. */
void cf_error_set(const char *fmt, ...) CF_PRINTF(1, 2);

/*
 * Sets the message and appends the reasons in OpenSSL's error queue, which
 * it empties. Use right after a failed OpenSSL call.
 */
void cf_error_ssl(const char *fmt, ...) CF_PRINTF(1, 2);

/* Prefixes the current message with more context: "ctx: old message". */
void cf_error_prefix(const char *fmt, ...) CF_PRINTF(1, 2);

/* The last message set on this thread ("" if none). Borrowed. */
const char *cf_error_last(void);

void cf_error_clear(void);

/* A short name for a CF_E* code ("not found", ...). Static string. */
const char *cf_error_name(int code);

#endif
