/*
 * cf_log — one logfmt line per event, for the daemons (docs/certfleetd.md).
 *
 *   time=2026-11-23T10:30:00.123Z level=info msg="mqtt connected" port=8883
 *
 * Keys come from the program text; every value is escaped here, so a
 * hostile value (a client id, a topic, a path) can never end the line or
 * forge a key: a value with a space, '=', '"', '\', a control character or
 * a non-ASCII byte is quoted, with \" \\ \n \r \t and \xHH escapes. Each
 * line is one write(2) to stderr or to an O_APPEND log file.
 *
 * Never pass secrets (keys, passphrases) or message payloads as values.
 * The level and the destination are process-wide; the daemon is single
 * threaded, so they are changed without locks.
 */
#ifndef CF_LOG_H
#define CF_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"

typedef enum {
	CF_LOG_DEBUG,
	CF_LOG_INFO,
	CF_LOG_WARN,
	CF_LOG_ERROR,
} cf_log_level;

/* The longest line written, newline included; longer lines end in truncated=true. */
#define CF_LOG_LINE_MAX 4096
/* Values longer than this many bytes are cut and end in "...". */
#define CF_LOG_VALUE_MAX 512

/* "debug", "info", "warn" (or "warning"), "error". CF_EINVAL otherwise. */
int cf_log_level_parse(cf_log_level *out, const char *name) CF_MUST_CHECK;
const char *cf_log_level_name(cf_log_level l);

/* Lines below the level are dropped (default info). */
void cf_log_set_level(cf_log_level l);
cf_log_level cf_log_get_level(void);
int cf_log_enabled(cf_log_level l);

/*
 * Sends lines to path (created 0640, appended to), or to stderr when path
 * is NULL. Reopening (after logrotate, on SIGHUP) opens the new file first
 * and keeps the old destination if that fails.
 */
int cf_log_open(const char *path) CF_MUST_CHECK;
/* Back to stderr; closes the log file. */
void cf_log_close(void);

/*
 * Logs msg with the fields of fmt: literal keys each followed by '=' and
 * one conversion, e.g. "port=%d client=%s". Conversions: %s %c %d %i %u %x
 * with the length modifiers l ll z j, and %%. A NULL %s value prints "".
 */
void cf_log(cf_log_level l, const char *msg, const char *fmt, ...) CF_PRINTF(3, 4);
/* A line without fields. */
void cf_log_msg(cf_log_level l, const char *msg);

/*
 * Formats a line (NUL-terminated, ending in '\n') into out (at least
 * CF_LOG_LINE_MAX bytes for full lines); fmt may be NULL. ms is the time in
 * milliseconds since the epoch. Returns the length. For tests and cf_log.
 */
size_t cf_log_vformat(char *out, size_t out_len, int64_t ms, cf_log_level l, const char *msg,
    const char *fmt, va_list ap);

#endif
