/*
 * cf_config — `key = value` configuration files (certfleet.conf, agent.conf).
 *
 * One setting per line; '#' starts a comment line; blank lines are ignored;
 * whitespace around key and value is trimmed. A key may appear once. Errors
 * name the file and line ("certfleet.conf:7: unknown key 'databse'").
 */
#ifndef CF_CONFIG_H
#define CF_CONFIG_H

#include <stddef.h>

#include "cf_error.h"

typedef struct cf_config cf_config;

/* Loads path. CF_ENOTFOUND if missing, CF_EINVAL (file:line) if malformed. */
int cf_config_load(cf_config **out, const char *path) CF_MUST_CHECK;
/* Parses text (name is used in messages). */
int cf_config_parse(cf_config **out, const char *name, const char *text) CF_MUST_CHECK;
void cf_config_free(cf_config *cfg);

/*
 * Fails with CF_EINVAL naming the first key not in known (NULL-terminated).
 * An entry "family.*" accepts every key "family.<name>" (the caller checks
 * the name, e.g. mitigation_rule.<CHECK>).
 */
int cf_config_check_keys(const cf_config *cfg, const char *const *known) CF_MUST_CHECK;

/* The value (borrowed) or NULL when absent. */
const char *cf_config_get(const cf_config *cfg, const char *key);
/* The value, or def when absent. */
const char *cf_config_get_str(const cf_config *cfg, const char *key, const char *def);
/* An integer in [min, max], or def when absent. CF_EINVAL naming key, line and range. */
int cf_config_get_int(long *out, const cf_config *cfg, const char *key, long min, long max,
    long def) CF_MUST_CHECK;

/* The key of the i-th setting in file order (borrowed), NULL past the last. */
const char *cf_config_key_at(const cf_config *cfg, size_t i);

/* The file the configuration came from (borrowed). */
const char *cf_config_path(const cf_config *cfg);

#endif
