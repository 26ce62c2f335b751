/*
 * cf_keystore — where a device keeps its key pairs, behind a small interface.
 *
 * A key store holds numbered generations of (private key, certificate).
 * Exactly one generation is ACTIVE: its pair is what the device connects
 * with. During a rotation a newer PENDING generation exists (its key first,
 * its certificate once issued); after the switch the previous active one is
 * kept as the BACKUP until the rotation commits. Generation numbers only grow.
 *
 * Every operation is idempotent and takes the generation it means
 * explicitly, so that the agent can replay it from its journal after a power
 * cut (docs/agent.md): activating the generation that is already active,
 * rolling back to the one already active, or cleaning up twice are no-ops.
 *
 * The interface is a struct of function pointers and an opaque state so that
 * firmware can bring its own (a secure element); this library ships the
 * file implementation (cf_keystore_file_open) and a PKCS#11 one
 * (cf_keystore_pkcs11_open). Private key material never
 * leaves the store except as signatures and CSRs.
 */
#ifndef CF_KEYSTORE_H
#define CF_KEYSTORE_H

#include <stddef.h>

#include "cf_error.h"
#include "cf_pki.h"

typedef struct {
	unsigned active;  /* always >= 1 once opened */
	unsigned pending; /* newest generation above active, 0 if none */
	unsigned backup;  /* newest generation below active, 0 if none */
	int pending_has_cert; /* the pending generation has its certificate installed */
} cf_keystore_status;

typedef struct cf_keystore_ops {
	int (*status)(void *st, cf_keystore_status *out);
	/*
	 * Discards every generation above the active one, then creates a new
	 * pending generation active + 1 with a fresh key of alg. Its number in out.
	 */
	int (*generate)(void *st, unsigned *out, cf_key_alg alg);
	/* A CSR for thing made with generation gen's key (cf_csr_create). PEM, caller frees. */
	int (*csr)(void *st, char **out_pem, unsigned gen, cf_sig_alg sig, const char *thing);
	/* Signs data with generation gen's key (cf_key_sign). Caller frees *out. */
	int (*sign)(void *st, unsigned char **out, size_t *out_len, unsigned gen, cf_sig_alg sig,
	    const void *data, size_t len);
	/* Generation gen's public key (a new handle, cf_key_free). */
	int (*public_key)(void *st, cf_key **out, unsigned gen);
	/* Generation gen's certificate (a new handle). CF_ENOTFOUND before install_cert. */
	int (*certificate)(void *st, cf_cert **out, unsigned gen);
	/*
	 * Stores pem as generation gen's certificate. CF_EINVAL if it does not
	 * hold gen's public key; CF_ESTATE if gen is the active generation.
	 */
	int (*install_cert)(void *st, unsigned gen, const char *pem, size_t len);
	/*
	 * Optional (NULL in a store that keeps no CA chain). Generation gen's
	 * CA chain — the certificates the device trusts while gen is active —
	 * as PEM (caller frees); CF_ENOTFOUND if gen has none.
	 */
	int (*chain)(void *st, char **out_pem, unsigned gen);
	/*
	 * Optional: stores pem (one or more certificates) as generation gen's CA
	 * chain; it becomes the device's CA chain in the same atomic step that
	 * makes gen active. CF_EINVAL if pem holds no certificate; CF_ESTATE if
	 * gen is the active generation. (The file store does nothing, and
	 * checks nothing, when gen's chain already is pem byte for byte: the
	 * copy generate made.)
	 */
	int (*install_chain)(void *st, unsigned gen, const char *pem, size_t len);
	/*
	 * Makes gen (pending, with its certificate) the active generation in one
	 * atomic step; the previous active one becomes the backup. A no-op if
	 * gen is already active. CF_ESTATE if gen is neither.
	 */
	int (*activate)(void *st, unsigned gen);
	/*
	 * Returns to generation gen (the backup, or the active one): makes it
	 * active in one atomic step if it is not, then discards every newer
	 * generation. CF_ENOTFOUND if gen does not exist.
	 */
	int (*rollback)(void *st, unsigned gen);
	/* Discards every generation but the active one (the backup, leftovers). */
	int (*cleanup)(void *st);
	/*
	 * Where generation gen's pair lives, for a transport that loads it
	 * itself (file paths for the file store, URIs for a token).
	 */
	int (*locate)(void *st, char *key_out, size_t key_len, char *cert_out, size_t cert_len,
	    unsigned gen);
	void (*free)(void *st);
} cf_keystore_ops;

typedef struct cf_keystore {
	const cf_keystore_ops *ops;
	void *st;
} cf_keystore;

/*
 * The file key store in dir, the device bundle's directory (DESIGN §10):
 *
 *   dir/gen-<n>/device.key   private key, PKCS#8 PEM, 0600, created O_EXCL
 *   dir/gen-<n>/device.crt   its certificate
 *   dir/current -> gen-<n>   the active generation (a symlink)
 *   dir/device.key -> current/device.key
 *   dir/device.crt -> current/device.crt
 *   dir/gen-<n>/ca-chain.crt the CA chain trusted while gen-<n> is active
 *   dir/ca-chain.crt -> current/ca-chain.crt
 *
 * Switching generations replaces `current` with rename(2), so both bundle
 * paths move together in one atomic step and always name the pair in use.
 * The first open adopts a bundle whose device.key/device.crt are plain files
 * (they become gen-1), crash-safely, and likewise a plain dir/ca-chain.crt
 * (it moves into the active generation; without one the store keeps no
 * chain). A new generation starts with a copy of the active one's chain.
 * CF_ENOTFOUND if dir holds neither a
 * bundle nor a store; CF_ECORRUPT if the active key and certificate differ.
 * Release with cf_keystore_free().
 */
int cf_keystore_file_open(cf_keystore **out, const char *dir) CF_MUST_CHECK;

/*
 * A key store over inner (taken: freed with it, also on success only) that
 * keeps each generation's private key in memory once read, and answers csr,
 * sign and public_key from there; everything else, every write included, is
 * inner's. inner must implement locate (the key's file path). For embedders
 * that run many devices on one CPU (the simulator, docs/sim.md): a device
 * keeps using the plain file store. CF_EINVAL if inner cannot locate keys.
 */
int cf_keystore_cache_wrap(cf_keystore **out, cf_keystore *inner) CF_MUST_CHECK;

/*
 * Generation gen's private key from a key cache (loaded on first use), for
 * the embedder's TLS context (cf_tls_ctx_use_key), so that a connect does
 * not decode the key file once more. Borrowed: valid until the next
 * generate, rollback, cleanup or free of ks. CF_EINVAL if ks is not a key
 * cache; the inner store's errors otherwise (CF_ENOTFOUND: no such key).
 */
int cf_keystore_cache_key(const cf_key **out, cf_keystore *ks, unsigned gen) CF_MUST_CHECK;

/* Where the PKCS#11 key store finds its token (docs/pkcs11.md). */
typedef struct {
	const char *module;   /* the PKCS#11 module (.so) */
	const char *token;    /* the token's label */
	const char *pin_file; /* the user PIN, first line; refused if others may read it */
	const char *object;   /* object label prefix, NULL = "certfleet" */
} cf_keystore_pkcs11_opts;

/*
 * The PKCS#11 key store: private keys live in a token and never leave it;
 * certificates and CA chains stay in dir, laid out like the file store's:
 *
 *   dir/gen-<n>/key.uri      RFC 7512 URI of generation n's private key
 *   dir/gen-<n>/device.crt   its certificate
 *   dir/gen-<n>/ca-chain.crt the CA chain trusted while gen-<n> is active
 *   dir/current -> gen-<n>   the active generation (a symlink, the journal)
 *   dir/device.crt -> current/device.crt, dir/ca-chain.crt -> current/ca-chain.crt
 *   token: key pair labelled "<object>-gen-<n>", CKA_ID 16 random bytes
 *
 * A generation exists when its directory does; token objects without one
 * are leftovers of an interrupted generate or removal and are destroyed.
 * New keys are generated in the token (CKA_SENSITIVE, not CKA_EXTRACTABLE).
 * The first open adopts a file bundle: a plain dir/device.key is imported
 * into the token as generation 1 and then overwritten and removed.
 * CF_ENOTFOUND if dir holds neither a bundle nor a store, CF_EPASS for a
 * PIN the token refuses, CF_ECORRUPT if the active key and certificate
 * differ. Release with cf_keystore_free().
 */
int cf_keystore_pkcs11_open(cf_keystore **out, const char *dir, const cf_keystore_pkcs11_opts *o)
    CF_MUST_CHECK;

/* The token behind a PKCS#11 key store (borrowed), NULL for any other store. */
struct cf_p11;
struct cf_p11 *cf_keystore_pkcs11_token(cf_keystore *ks);

static inline void
cf_keystore_free(cf_keystore *ks)
{
	if (ks != NULL)
		ks->ops->free(ks->st);
}

#endif
