/*
 * cf_config — parses `key = value` files into a small ordered list.
 * Owns copies of every key and value; nothing is looked up lazily.
 */
#include "cf_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cf_util.h"

#define CF_CONFIG_MAX_BYTES (1024 * 1024)

struct cf_entry {
	char *key;
	char *value;
	int line;
};

struct cf_config {
	char *path;
	struct cf_entry *v;
	size_t n;
};

void
cf_config_free(cf_config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->n; i++) {
		free(cfg->v[i].key);
		free(cfg->v[i].value);
	}
	free(cfg->v);
	free(cfg->path);
	free(cfg);
}

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

static const struct cf_entry *
find(const cf_config *cfg, const char *key)
{
	size_t i;

	for (i = 0; i < cfg->n; i++)
		if (strcmp(cfg->v[i].key, key) == 0)
			return &cfg->v[i];
	return NULL;
}

static int
add(cf_config *cfg, const char *key, const char *value, int line)
{
	struct cf_entry *nv;

	if ((nv = realloc(cfg->v, (cfg->n + 1) * sizeof(*nv))) == NULL)
		goto oom;
	cfg->v = nv;
	nv[cfg->n].line = line;
	nv[cfg->n].key = strdup(key);
	nv[cfg->n].value = strdup(value);
	if (nv[cfg->n].key == NULL || nv[cfg->n].value == NULL) {
		free(nv[cfg->n].key);
		free(nv[cfg->n].value);
		goto oom;
	}
	cfg->n++;
	return 0;
oom:
	cf_error_set("out of memory");
	return CF_ERROR;
}

int
cf_config_parse(cf_config **out, const char *name, const char *text)
{
	int r = CF_ERROR, line = 0;
	cf_config *cfg = NULL;
	char *copy = NULL, *cur, *nl, *eq, *key, *value;
	const struct cf_entry *dup;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL || (cfg->path = strdup(name)) == NULL ||
	    (copy = strdup(text)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	for (cur = copy; cur != NULL; cur = nl) {
		line++;
		if ((nl = strchr(cur, '\n')) != NULL)
			*nl++ = '\0';
		key = trim(cur);
		if (*key == '\0' || *key == '#')
			continue;
		if ((eq = strchr(key, '=')) == NULL) {
			r = CF_EINVAL;
			cf_error_set("%s:%d: expected 'key = value'", name, line);
			goto out;
		}
		*eq = '\0';
		key = trim(key);
		value = trim(eq + 1);
		if (*key == '\0') {
			r = CF_EINVAL;
			cf_error_set("%s:%d: missing key before '='", name, line);
			goto out;
		}
		if ((dup = find(cfg, key)) != NULL) {
			r = CF_EINVAL;
			cf_error_set("%s:%d: '%s' already set on line %d", name, line, key, dup->line);
			goto out;
		}
		if ((r = add(cfg, key, value, line)) != 0)
			goto out;
	}
	*out = cfg;
	cfg = NULL;
	r = 0;
out:
	free(copy);
	cf_config_free(cfg);
	return r;
}

int
cf_config_load(cf_config **out, const char *path)
{
	char *text = NULL;
	size_t len;
	int r;

	if ((r = cf_file_read(&text, &len, path, CF_CONFIG_MAX_BYTES)) != 0)
		return r;
	if (strlen(text) != len) {
		cf_error_set("%s: contains a NUL byte (not a text file)", path);
		r = CF_EINVAL;
	} else
		r = cf_config_parse(out, path, text);
	free(text);
	return r;
}

const char *
cf_config_key_at(const cf_config *cfg, size_t i)
{
	return i < cfg->n ? cfg->v[i].key : NULL;
}

/* known is a key, or a family "prefix.*" matching "prefix.<anything non-empty>". */
static int
key_matches(const char *known, const char *key)
{
	size_t n = strlen(known);

	if (n >= 2 && strcmp(known + n - 2, ".*") == 0)
		return strncmp(known, key, n - 1) == 0 && key[n - 1] != '\0';
	return strcmp(known, key) == 0;
}

int
cf_config_check_keys(const cf_config *cfg, const char *const *known)
{
	size_t i, k;

	for (i = 0; i < cfg->n; i++) {
		for (k = 0; known[k] != NULL; k++)
			if (key_matches(known[k], cfg->v[i].key))
				break;
		if (known[k] == NULL) {
			cf_error_set("%s:%d: unknown key '%s'", cfg->path, cfg->v[i].line,
			    cfg->v[i].key);
			return CF_EINVAL;
		}
	}
	return 0;
}

const char *
cf_config_get(const cf_config *cfg, const char *key)
{
	const struct cf_entry *e = find(cfg, key);

	return e ? e->value : NULL;
}

const char *
cf_config_get_str(const cf_config *cfg, const char *key, const char *def)
{
	const char *v = cf_config_get(cfg, key);

	return v && *v ? v : def;
}

int
cf_config_get_int(long *out, const cf_config *cfg, const char *key, long min, long max, long def)
{
	const struct cf_entry *e = find(cfg, key);
	char *end;
	long v;

	if (e == NULL || e->value[0] == '\0') {
		*out = def;
		return 0;
	}
	errno = 0;
	v = strtol(e->value, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max) {
		cf_error_set("%s:%d: %s must be a whole number from %ld to %ld, not '%s'",
		    cfg->path, e->line, key, min, max, e->value);
		return CF_EINVAL;
	}
	*out = v;
	return 0;
}

const char *
cf_config_path(const cf_config *cfg)
{
	return cfg->path;
}
