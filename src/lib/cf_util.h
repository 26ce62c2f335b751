/*
 * cf_util — small helpers every module needs: whole-file I/O with crash-safe
 * replacement, secret wiping, passphrase input, names and time.
 */
#ifndef CF_UTIL_H
#define CF_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cf_error.h"

#define CF_NAME_MAX 128 /* things, groups, CAs: [A-Za-z0-9_.:-], 1..128 chars */

/*
 * Reads a whole file into a NUL-terminated buffer (owned by the caller, free()).
 * Fails with CF_ENOTFOUND if it does not exist, CF_EINVAL if larger than max.
 */
int cf_file_read(char **out, size_t *out_len, const char *path, size_t max) CF_MUST_CHECK;

/*
 * Replaces path with data atomically: writes a temp file in the same
 * directory with the given mode, fsyncs it, renames it over path and fsyncs
 * the directory. On failure the old file is untouched and no temp remains.
 */
int cf_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode) CF_MUST_CHECK;

/* Like cf_file_write_atomic but fails with CF_EEXISTS if path exists. */
int cf_file_create_new(const char *path, const void *data, size_t len, mode_t mode) CF_MUST_CHECK;

/* mkdir -p with mode for the directories it creates. */
int cf_mkdir_p(const char *path, mode_t mode) CF_MUST_CHECK;

/* Removes a directory tree (does not follow symlinks). Missing is not an error. */
int cf_rmtree(const char *path);

/* 1 if path does not exist or is an empty directory, 0 otherwise (with cf_error set). */
int cf_dir_missing_or_empty(const char *path);

/*
 * Makes a fresh 0700 staging directory next to path ("<dir>/.<base>.XXXXXX")
 * so that it can later be renamed onto path within one file system.
 */
int cf_staging_dir(char *out, size_t out_len, const char *path) CF_MUST_CHECK;

/*
 * Renames a staging directory onto path (which must be missing or an empty
 * directory) and fsyncs the parent.
 */
int cf_staging_commit(const char *staging, const char *path) CF_MUST_CHECK;

/* fsync a directory (after creating or renaming entries in it). */
int cf_fsync_dir(const char *dir) CF_MUST_CHECK;

/* Overwrites len bytes with zeros in a way the compiler keeps. */
void cf_wipe(void *p, size_t len);

/* Wipes len bytes (len 0: strlen) of s and frees it. Accepts NULL. */
void cf_secret_free(char *s, size_t len);

/*
 * Reads a passphrase: from file (first line, trailing newline removed) when
 * file is non-NULL, else from the terminal without echo (prompt, and asked
 * twice when confirm). Fails without a terminal. Empty passphrases and
 * passphrases shorter than min_len are refused. Free with cf_secret_free().
 */
int cf_passphrase_read(char **out, const char *file, const char *prompt, int confirm,
    size_t min_len) CF_MUST_CHECK;

/*
 * Index of name in names[0..n) (case-insensitively when ignore_case), or -1
 * when it is absent or name is NULL. For the many "parse a name from a
 * table" functions; they set their own error message.
 */
int cf_name_index(const char *const *names, size_t n, const char *name, int ignore_case);

/* 1 if name is a valid thing/group/CA name, else 0 with cf_error set. */
int cf_name_valid(const char *kind, const char *name);

/* Seconds since the epoch (UTC). */
int64_t cf_time_now(void);

/* RFC 3339 UTC ("2026-11-23T10:30:00Z") into out (>= 21 bytes). */
void cf_time_format(char *out, size_t out_len, int64_t t);

/* snprintf into a fixed buffer; CF_EINVAL (with an error) if it was truncated. */
int cf_strfmt(char *out, size_t out_len, const char *fmt, ...) CF_PRINTF(3, 4) CF_MUST_CHECK;

/*
 * Failpoints for the crash and fault tests (docs/testing.md). Only compiled
 * in when CF_FAILPOINTS is defined (the sanitizer build used by `make
 * check`); in a release build cf_failpoint() is always 0. The environment
 * variable CERTFLEET_FAILPOINTS lists "name:action" pairs separated by
 * commas; when name matches, the action runs:
 *   kill     raise(SIGKILL) right here, as kill -9 would
 *   drop     return 1: the caller skips what it was about to do (a lost message)
 *   sleep=N  sleep N seconds (1..600), then return 0
 * Anything else, or no match: 0. Names are [a-z0-9_.-], matched ignoring case; each call site's
 * name is listed in docs/testing.md.
 */
int cf_failpoint(const char *name);

#endif
