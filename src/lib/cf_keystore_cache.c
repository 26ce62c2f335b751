/*
 * cf_keystore_cache — a key store that keeps the private keys of another
 * key store in memory once read (cf_keystore_cache_wrap, cf_keystore.h).
 *
 * The file store reads and decodes a generation's PEM key for every CSR,
 * signature and public-key request; OpenSSL 3.0 spends most of a millisecond
 * setting up its decoders each time. A device does that a handful of times
 * per rotation on its own CPU; the simulator does it for thousands of
 * devices on one, where it was 75 % of its profile. This wrapper loads a
 * generation's key once, through the inner store's locate() paths, and
 * answers csr, sign and public_key from memory, and lends the key to the
 * embedder's TLS context (cf_keystore_cache_key). Every other operation,
 * and every write, goes to the inner store unchanged: durability and the
 * crash rules are the inner store's.
 *
 * Generation numbers can be reused (generate discards everything above the
 * active generation, then creates active + 1; rollback discards newer ones),
 * so a cached key is dropped whenever the inner store may have replaced its
 * generation: by generate (the new number and above), rollback (above the
 * target), cleanup (all but the active one). The keys are freed (and wiped,
 * cf_key_free) with the store.
 */
#include <stdlib.h>
#include <string.h>

#include "cf_keystore.h"

#define CACHE_SLOTS 4
#define CACHE_PATH 4096

typedef struct {
	unsigned gen;  /* 0: empty */
	cf_key *key;
} slot;

typedef struct {
	cf_keystore ks;     /* handed out; st points back here */
	cf_keystore *inner; /* owned */
	slot slots[CACHE_SLOTS];
	unsigned next;      /* round-robin victim */
} ks_cache;

static void
drop_if(ks_cache *c, unsigned lo, unsigned hi, unsigned keep)
{
	int i;

	for (i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].gen != 0 && c->slots[i].gen >= lo && c->slots[i].gen <= hi &&
		    c->slots[i].gen != keep) {
			cf_key_free(c->slots[i].key);
			c->slots[i].key = NULL;
			c->slots[i].gen = 0;
		}
}

/* Generation gen's key, borrowed from the cache (loaded on first use). */
static int
get_key(const cf_key **out, ks_cache *c, unsigned gen)
{
	char key_path[CACHE_PATH], cert_path[CACHE_PATH];
	cf_key *key = NULL;
	slot *s;
	int i, r;

	for (i = 0; i < CACHE_SLOTS; i++)
		if (c->slots[i].gen == gen && gen != 0) {
			*out = c->slots[i].key;
			return 0;
		}
	if (c->inner->ops->locate == NULL) {
		cf_error_set("the key store cannot say where its keys are");
		return CF_EINVAL;
	}
	if ((r = c->inner->ops->locate(c->inner->st, key_path, sizeof(key_path), cert_path,
	    sizeof(cert_path), gen)) != 0 || (r = cf_key_load(&key, key_path, NULL)) != 0)
		return r;
	s = &c->slots[c->next];
	c->next = (c->next + 1) % CACHE_SLOTS;
	cf_key_free(s->key);
	s->key = key;
	s->gen = gen;
	*out = key;
	return 0;
}

static int
kc_status(void *st, cf_keystore_status *out)
{
	ks_cache *c = st;

	return c->inner->ops->status(c->inner->st, out);
}

static int
kc_generate(void *st, unsigned *out, cf_key_alg alg)
{
	ks_cache *c = st;
	cf_keystore_status s;
	int r;

	/* Everything above the active generation is discarded and active + 1 made anew. */
	if ((r = c->inner->ops->status(c->inner->st, &s)) != 0)
		return r;
	drop_if(c, s.active + 1, ~0u, 0);
	return c->inner->ops->generate(c->inner->st, out, alg);
}

static int
kc_csr(void *st, char **out_pem, unsigned gen, cf_sig_alg sig, const char *thing)
{
	const cf_key *key;
	int r;

	if ((r = get_key(&key, st, gen)) != 0)
		return r;
	return cf_csr_create(out_pem, key, sig, thing);
}

static int
kc_sign(void *st, unsigned char **out, size_t *out_len, unsigned gen, cf_sig_alg sig,
    const void *data, size_t len)
{
	const cf_key *key;
	int r;

	if ((r = get_key(&key, st, gen)) != 0)
		return r;
	return cf_key_sign(out, out_len, key, sig, data, len);
}

static int
kc_public_key(void *st, cf_key **out, unsigned gen)
{
	const cf_key *key;
	int r;

	if ((r = get_key(&key, st, gen)) != 0)
		return r;
	return cf_key_dup(out, key);
}

static int
kc_certificate(void *st, cf_cert **out, unsigned gen)
{
	ks_cache *c = st;

	return c->inner->ops->certificate(c->inner->st, out, gen);
}

static int
kc_install_cert(void *st, unsigned gen, const char *pem, size_t len)
{
	ks_cache *c = st;

	return c->inner->ops->install_cert(c->inner->st, gen, pem, len);
}

static int
kc_chain(void *st, char **out_pem, unsigned gen)
{
	ks_cache *c = st;

	if (c->inner->ops->chain == NULL) {
		cf_error_set("the key store keeps no CA chain");
		return CF_ENOTFOUND;
	}
	return c->inner->ops->chain(c->inner->st, out_pem, gen);
}

static int
kc_install_chain(void *st, unsigned gen, const char *pem, size_t len)
{
	ks_cache *c = st;

	if (c->inner->ops->install_chain == NULL) {
		cf_error_set("the key store keeps no CA chain");
		return CF_EINVAL;
	}
	return c->inner->ops->install_chain(c->inner->st, gen, pem, len);
}

static int
kc_activate(void *st, unsigned gen)
{
	ks_cache *c = st;

	return c->inner->ops->activate(c->inner->st, gen);
}

static int
kc_rollback(void *st, unsigned gen)
{
	ks_cache *c = st;

	drop_if(c, gen + 1, ~0u, 0);
	return c->inner->ops->rollback(c->inner->st, gen);
}

static int
kc_cleanup(void *st)
{
	ks_cache *c = st;
	cf_keystore_status s;
	int r;

	if ((r = c->inner->ops->status(c->inner->st, &s)) != 0)
		return r;
	drop_if(c, 1, ~0u, s.active);
	return c->inner->ops->cleanup(c->inner->st);
}

static int
kc_locate(void *st, char *key_out, size_t key_len, char *cert_out, size_t cert_len, unsigned gen)
{
	ks_cache *c = st;

	return c->inner->ops->locate(c->inner->st, key_out, key_len, cert_out, cert_len, gen);
}

static void
kc_free(void *st)
{
	ks_cache *c = st;
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < CACHE_SLOTS; i++)
		cf_key_free(c->slots[i].key);
	cf_keystore_free(c->inner);
	free(c);
}

static const cf_keystore_ops cache_ops = {
	.status = kc_status,
	.generate = kc_generate,
	.csr = kc_csr,
	.sign = kc_sign,
	.public_key = kc_public_key,
	.certificate = kc_certificate,
	.install_cert = kc_install_cert,
	.chain = kc_chain,
	.install_chain = kc_install_chain,
	.activate = kc_activate,
	.rollback = kc_rollback,
	.cleanup = kc_cleanup,
	.locate = kc_locate,
	.free = kc_free,
};

int
cf_keystore_cache_key(const cf_key **out, cf_keystore *ks, unsigned gen)
{
	if (ks == NULL || ks->ops != &cache_ops) {
		cf_error_set("not a key cache");
		return CF_EINVAL;
	}
	return get_key(out, ks->st, gen);
}

int
cf_keystore_cache_wrap(cf_keystore **out, cf_keystore *inner)
{
	ks_cache *c;

	if (inner == NULL || inner->ops->locate == NULL) {
		cf_error_set("a key cache needs a key store that can locate its keys");
		return CF_EINVAL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	c->inner = inner;
	c->ks.ops = &cache_ops;
	c->ks.st = c;
	*out = &c->ks;
	return 0;
}
