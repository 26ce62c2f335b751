/*
 * cf_keystore_gen — the generation-directory layer the file and PKCS#11 key
 * stores share (internal to the key-store module; layout in cf_keystore.h):
 * gen-<n> directories under the store's directory, and the `current`
 * symlink naming the active one, switched by renaming a new link over it and
 * fsyncing the directory. Each store keeps what differs (where the private
 * key lives, how a pair is checked, what removing a generation destroys).
 */
#ifndef CF_KEYSTORE_GEN_H
#define CF_KEYSTORE_GEN_H

#include <stddef.h>

#include "cf_error.h"
#include "cf_keystore.h"

#define CF_KSGEN_KEY "device.key"
#define CF_KSGEN_CERT "device.crt"
#define CF_KSGEN_CHAIN "ca-chain.crt"

/*
 * A store's generation directory and what each store does its own way, for
 * the operations below that are otherwise the same.
 */
typedef struct {
	const char *dir;
	void *st; /* handed to the hooks */
	/* 0 if generation gen holds a key and a certificate for it */
	int (*check_pair)(void *st, unsigned gen);
	/* NULL, or what a removed generation leaves elsewhere is destroyed (token objects) */
	int (*forget)(void *st, unsigned gen);
	/* NULL, or after a scan that dropped generations: what no generation owns is destroyed */
	int (*sweep)(void *st, unsigned active);
} cf_ksgen;

/* dir/gen-<gen>, or dir/gen-<gen>/name. */
int cf_ksgen_path(char *out, size_t len, const char *dir, unsigned gen, const char *name)
    CF_MUST_CHECK;

/* "gen-<n>" with n >= 1, no leading zero and nothing else: n; 0 otherwise. */
unsigned cf_ksgen_parse(const char *name);

/* 1 when path exists (a dangling symlink counts), else 0. */
int cf_ksgen_exists(const char *path);

/* The generation `current` names: CF_ENOTFOUND without one, CF_ECORRUPT if it names no generation. */
int cf_ksgen_read_active(unsigned *out, const char *dir) CF_MUST_CHECK;

/*
 * Creates or atomically replaces the symlink dir/name -> target (a temp link
 * renamed over it), then fsyncs dir. The rename of `current` is the switch.
 */
int cf_ksgen_replace_link(const char *dir, const char *name, const char *target) CF_MUST_CHECK;

/* dir/name -> current/name: a bundle file that follows the active generation. */
int cf_ksgen_link_current(const char *dir, const char *name) CF_MUST_CHECK;

/* Points `current` at gen-<gen>: the switch. */
int cf_ksgen_set_current(const char *dir, unsigned gen) CF_MUST_CHECK;

/* dir/name is a plain file (a bundle not yet adopted) → 1; a symlink → 0; missing → CF_ENOTFOUND. */
int cf_ksgen_plain_file(const char *dir, const char *name);

/* Generation gen's chain (malloc'ed): CF_ENOTFOUND if it has none (the chain op). */
int cf_ksgen_chain(char **out, const char *dir, unsigned gen) CF_MUST_CHECK;

/* Generation gen's chain (malloc'ed), NULL and 0 if it has none. */
int cf_ksgen_read_chain(char **out, const char *dir, unsigned gen) CF_MUST_CHECK;

/*
 * Before gen becomes active: a generation made before the store kept chains
 * gets a copy of the active one's, so that ca-chain.crt never dangles. A
 * no-op when gen has a chain or the active one has none.
 */
int cf_ksgen_ensure_chain(const char *dir, unsigned gen, unsigned active) CF_MUST_CHECK;

/*
 * Scans the directory: the newest generation above and below active (either
 * may be NULL), and when drop_above / drop_other is set, removes generations
 * above active / every one but active (each renamed to a temp name and the
 * directory fsynced before it is deleted; then g->forget, and g->sweep once).
 * Temp leftovers are always removed.
 */
int cf_ksgen_scan(const cf_ksgen *g, unsigned active, unsigned *above, unsigned *below,
    int drop_above, int drop_other) CF_MUST_CHECK;

/* The cf_keystore ops of the same names, for a store described by g. */
int cf_ksgen_status(const cf_ksgen *g, cf_keystore_status *out) CF_MUST_CHECK;
int cf_ksgen_activate(const cf_ksgen *g, unsigned gen) CF_MUST_CHECK;
int cf_ksgen_rollback(const cf_ksgen *g, unsigned gen) CF_MUST_CHECK;
int cf_ksgen_cleanup(const cf_ksgen *g) CF_MUST_CHECK;

#endif
