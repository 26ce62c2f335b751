/*
 * cf_keystore_gen — generation directories and the `current` switch, shared
 * by cf_keystore_file.c and cf_keystore_pkcs11.c (cf_keystore_gen.h).
 */
#include "cf_keystore_gen.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_util.h"

#define KSGEN_PATH 1024
#define KSGEN_MAX_FILE (64 * 1024)

int
cf_ksgen_path(char *out, size_t len, const char *dir, unsigned gen, const char *name)
{
	if (name == NULL)
		return cf_strfmt(out, len, "%s/gen-%u", dir, gen);
	return cf_strfmt(out, len, "%s/gen-%u/%s", dir, gen, name);
}

unsigned
cf_ksgen_parse(const char *name)
{
	unsigned long n;
	char *end;

	if (strncmp(name, "gen-", 4) != 0 || name[4] < '1' || name[4] > '9')
		return 0;
	errno = 0;
	n = strtoul(name + 4, &end, 10);
	if (errno != 0 || *end != '\0' || n > UINT_MAX / 2)
		return 0;
	return (unsigned)n;
}

int
cf_ksgen_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

int
cf_ksgen_read_active(unsigned *out, const char *dir)
{
	char path[KSGEN_PATH], target[64];
	ssize_t n;
	int r;

	if ((r = cf_strfmt(path, sizeof(path), "%s/current", dir)) != 0)
		return r;
	if ((n = readlink(path, target, sizeof(target) - 1)) < 0) {
		cf_error_set("%s: %s", path, strerror(errno));
		return errno == ENOENT ? CF_ENOTFOUND : CF_ERROR;
	}
	target[n] = '\0';
	if ((*out = cf_ksgen_parse(target)) == 0) {
		cf_error_set("%s: points to '%s', not a generation", path, target);
		return CF_ECORRUPT;
	}
	return 0;
}

int
cf_ksgen_replace_link(const char *dir, const char *name, const char *target)
{
	char tmp[KSGEN_PATH], path[KSGEN_PATH];
	int r;

	if ((r = cf_strfmt(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s", dir, name)) != 0)
		return r;
	(void)unlink(tmp);
	if (symlink(target, tmp) != 0) {
		cf_error_set("symlink %s: %s", tmp, strerror(errno));
		return CF_ERROR;
	}
	/* The switch's midpoint, for the crash tests: the new link exists, `current` is unchanged. */
	if (strcmp(name, "current") == 0)
		(void)cf_failpoint("keystore.before-switch-rename");
	if (rename(tmp, path) != 0) {
		cf_error_set("rename %s: %s", path, strerror(errno));
		(void)unlink(tmp);
		return CF_ERROR;
	}
	return cf_fsync_dir(dir);
}

int
cf_ksgen_link_current(const char *dir, const char *name)
{
	char target[KSGEN_PATH];
	int r;

	if ((r = cf_strfmt(target, sizeof(target), "current/%s", name)) != 0)
		return r;
	return cf_ksgen_replace_link(dir, name, target);
}

int
cf_ksgen_set_current(const char *dir, unsigned gen)
{
	char target[32];
	int r;

	if ((r = cf_strfmt(target, sizeof(target), "gen-%u", gen)) != 0)
		return r;
	return cf_ksgen_replace_link(dir, "current", target);
}

int
cf_ksgen_plain_file(const char *dir, const char *name)
{
	char path[KSGEN_PATH];
	struct stat st;
	int r;

	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", dir, name)) != 0)
		return r;
	if (lstat(path, &st) != 0)
		return CF_ENOTFOUND;
	return S_ISLNK(st.st_mode) ? 0 : 1;
}

int
cf_ksgen_chain(char **out, const char *dir, unsigned gen)
{
	char path[KSGEN_PATH];
	int r;

	*out = NULL;
	if ((r = cf_ksgen_path(path, sizeof(path), dir, gen, CF_KSGEN_CHAIN)) != 0)
		return r;
	return cf_file_read(out, NULL, path, KSGEN_MAX_FILE);
}

int
cf_ksgen_read_chain(char **out, const char *dir, unsigned gen)
{
	int r = cf_ksgen_chain(out, dir, gen);

	return r == CF_ENOTFOUND ? 0 : r;
}

int
cf_ksgen_ensure_chain(const char *dir, unsigned gen, unsigned active)
{
	char path[KSGEN_PATH], *pem = NULL;
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), dir, gen, CF_KSGEN_CHAIN)) != 0 ||
	    cf_ksgen_exists(path))
		return r;
	if ((r = cf_ksgen_read_chain(&pem, dir, active)) == 0 && pem != NULL)
		r = cf_file_write_atomic(path, pem, strlen(pem), 0644);
	free(pem);
	return r;
}

/* Takes gen-<n> away atomically (rename to a temp name, fsync), forgets it, deletes it. */
static int
remove_gen(const cf_ksgen *g, unsigned gen)
{
	char path[KSGEN_PATH], tmp[KSGEN_PATH];
	int r;

	if ((r = cf_ksgen_path(path, sizeof(path), g->dir, gen, NULL)) != 0 ||
	    (r = cf_strfmt(tmp, sizeof(tmp), "%s/.gen-%u.del", g->dir, gen)) != 0)
		return r;
	(void)cf_rmtree(tmp);
	if (rename(path, tmp) != 0) {
		if (errno != ENOENT) {
			cf_error_set("rename %s: %s", path, strerror(errno));
			return CF_ERROR;
		}
	} else if ((r = cf_fsync_dir(g->dir)) != 0) {
		return r;
	}
	if (g->forget != NULL && (r = g->forget(g->st, gen)) != 0)
		return r;
	return cf_rmtree(tmp);
}

/* A temp name the stores make (and may delete): .gen-<n>.tmp/.del, .<link>.tmp. */
static int
own_temp(const char *name)
{
	size_t n = strlen(name);

	if (strncmp(name, ".gen-", 5) == 0)
		return n > 9 && (strcmp(name + n - 4, ".tmp") == 0 || strcmp(name + n - 4, ".del") == 0);
	return strcmp(name, ".current.tmp") == 0 || strcmp(name, "." CF_KSGEN_KEY ".tmp") == 0 ||
	    strcmp(name, "." CF_KSGEN_CERT ".tmp") == 0 || strcmp(name, "." CF_KSGEN_CHAIN ".tmp") == 0;
}

int
cf_ksgen_scan(const cf_ksgen *g, unsigned active, unsigned *above, unsigned *below,
    int drop_above, int drop_other)
{
	int r = 0;
	DIR *d = NULL;
	struct dirent *e;
	unsigned n, hi = 0, lo = 0, kill[64];
	size_t nkill = 0, i;
	char path[KSGEN_PATH];

	if ((d = opendir(g->dir)) == NULL) {
		cf_error_set("%s: %s", g->dir, strerror(errno));
		return CF_ERROR;
	}
	while ((e = readdir(d)) != NULL) {
		if (own_temp(e->d_name)) {
			if (cf_strfmt(path, sizeof(path), "%s/%s", g->dir, e->d_name) == 0)
				(void)cf_rmtree(path);
			continue;
		}
		if ((n = cf_ksgen_parse(e->d_name)) == 0 || n == active)
			continue;
		if ((drop_other || (drop_above && n > active)) && nkill < sizeof(kill) / sizeof(kill[0])) {
			kill[nkill++] = n;
			continue;
		}
		if (n > active && n > hi)
			hi = n;
		if (n < active && n > lo)
			lo = n;
	}
	closedir(d);
	for (i = 0; i < nkill && r == 0; i++)
		r = remove_gen(g, kill[i]);
	if (r == 0 && (drop_above || drop_other) && g->sweep != NULL)
		r = g->sweep(g->st, active);
	if (above)
		*above = hi;
	if (below)
		*below = lo;
	return r;
}

int
cf_ksgen_status(const cf_ksgen *g, cf_keystore_status *out)
{
	char path[KSGEN_PATH];
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = cf_ksgen_read_active(&out->active, g->dir)) != 0 ||
	    (r = cf_ksgen_scan(g, out->active, &out->pending, &out->backup, 0, 0)) != 0)
		return r;
	if (out->pending != 0) {
		if ((r = cf_ksgen_path(path, sizeof(path), g->dir, out->pending, CF_KSGEN_CERT)) != 0)
			return r;
		out->pending_has_cert = cf_ksgen_exists(path);
	}
	return 0;
}

/* gen becomes active: its pair checked, its chain ensured, then the switch. */
static int
switch_to(const cf_ksgen *g, unsigned gen, unsigned active)
{
	int r;

	if ((r = g->check_pair(g->st, gen)) != 0 ||
	    (r = cf_ksgen_ensure_chain(g->dir, gen, active)) != 0)
		return r;
	return cf_ksgen_set_current(g->dir, gen);
}

int
cf_ksgen_activate(const cf_ksgen *g, unsigned gen)
{
	unsigned active;
	char path[KSGEN_PATH];
	int r;

	if ((r = cf_ksgen_read_active(&active, g->dir)) != 0 || gen == active)
		return r;
	if ((r = cf_ksgen_path(path, sizeof(path), g->dir, gen, NULL)) != 0)
		return r;
	if (gen < active || !cf_ksgen_exists(path)) {
		cf_error_set("generation %u is not pending (active is %u)", gen, active);
		return CF_ESTATE;
	}
	return switch_to(g, gen, active);
}

int
cf_ksgen_rollback(const cf_ksgen *g, unsigned gen)
{
	unsigned active;
	char path[KSGEN_PATH];
	int r;

	if ((r = cf_ksgen_read_active(&active, g->dir)) != 0 ||
	    (r = cf_ksgen_path(path, sizeof(path), g->dir, gen, NULL)) != 0)
		return r;
	if (!cf_ksgen_exists(path)) {
		cf_error_set("generation %u does not exist", gen);
		return CF_ENOTFOUND;
	}
	if (gen != active && (r = switch_to(g, gen, active)) != 0)
		return r;
	return cf_ksgen_scan(g, gen, NULL, NULL, 1, 0);
}

int
cf_ksgen_cleanup(const cf_ksgen *g)
{
	unsigned active;
	int r;

	if ((r = cf_ksgen_read_active(&active, g->dir)) != 0)
		return r;
	return cf_ksgen_scan(g, active, NULL, NULL, 0, 1);
}
