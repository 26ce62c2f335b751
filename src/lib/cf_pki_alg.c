/*
 * cf_pki_alg — the algorithm tables: key and signing algorithm names, which
 * pairs go together, raw signing and verification with a named signing
 * algorithm, and the RFC 5280 revocation reasons. The names are a contract
 * (DESIGN §3, agent config, job documents); every table lives here once.
 */
#include "cf_pki_int.h"

#include <openssl/err.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cf_util.h"

static const struct {
	cf_key_alg alg;
	const char *name;       /* canonical */
	cf_family family;
	cf_sig_alg sig_default;
	const char *aliases[6]; /* also accepted, case-insensitively */
} key_algs[CF_KEY__COUNT] = {
	[CF_KEY_RSA2048] = { CF_KEY_RSA2048, "RSA-2048", CF_FAMILY_RSA, CF_SIG_SHA256_RSA,
	    { "RSA2048", "RSA_2048" } },
	[CF_KEY_RSA3072] = { CF_KEY_RSA3072, "RSA-3072", CF_FAMILY_RSA, CF_SIG_SHA256_RSA,
	    { "RSA3072", "RSA_3072" } },
	[CF_KEY_P256] = { CF_KEY_P256, "ECDSA-P256", CF_FAMILY_EC, CF_SIG_ECDSA_SHA256,
	    { "ECDSA-P-256", "P-256", "P256", "EC-P256", "prime256v1", "secp256r1" } },
	[CF_KEY_P384] = { CF_KEY_P384, "ECDSA-P384", CF_FAMILY_EC, CF_SIG_ECDSA_SHA384,
	    { "ECDSA-P-384", "P-384", "P384", "EC-P384", "secp384r1" } },
	[CF_KEY_P521] = { CF_KEY_P521, "ECDSA-P521", CF_FAMILY_EC, CF_SIG_ECDSA_SHA512,
	    { "ECDSA-P-521", "P-521", "P521", "EC-P521", "secp521r1" } },
	[CF_KEY_ED25519] = { CF_KEY_ED25519, "ED25519", CF_FAMILY_ED25519, CF_SIG_ED25519,
	    { "EDDSA-ED25519" } },
};

static const struct {
	cf_sig_alg alg;
	const char *name;
	cf_family family;
	const char *md; /* NULL: the algorithm hashes itself (Ed25519) */
	int pss;
} sig_algs[CF_SIG__COUNT] = {
	[CF_SIG_SHA256_RSA] = { CF_SIG_SHA256_RSA, "SHA256WITHRSA", CF_FAMILY_RSA, "SHA256", 0 },
	[CF_SIG_SHA384_RSA] = { CF_SIG_SHA384_RSA, "SHA384WITHRSA", CF_FAMILY_RSA, "SHA384", 0 },
	[CF_SIG_SHA512_RSA] = { CF_SIG_SHA512_RSA, "SHA512WITHRSA", CF_FAMILY_RSA, "SHA512", 0 },
	[CF_SIG_SHA256_RSA_PSS] = { CF_SIG_SHA256_RSA_PSS, "SHA256WITHRSAANDMGF1", CF_FAMILY_RSA,
	    "SHA256", 1 },
	[CF_SIG_SHA384_RSA_PSS] = { CF_SIG_SHA384_RSA_PSS, "SHA384WITHRSAANDMGF1", CF_FAMILY_RSA,
	    "SHA384", 1 },
	[CF_SIG_SHA512_RSA_PSS] = { CF_SIG_SHA512_RSA_PSS, "SHA512WITHRSAANDMGF1", CF_FAMILY_RSA,
	    "SHA512", 1 },
	[CF_SIG_ECDSA_SHA256] = { CF_SIG_ECDSA_SHA256, "ECDSA-WITH-SHA256", CF_FAMILY_EC, "SHA256", 0 },
	[CF_SIG_ECDSA_SHA384] = { CF_SIG_ECDSA_SHA384, "ECDSA-WITH-SHA384", CF_FAMILY_EC, "SHA384", 0 },
	[CF_SIG_ECDSA_SHA512] = { CF_SIG_ECDSA_SHA512, "ECDSA-WITH-SHA512", CF_FAMILY_EC, "SHA512", 0 },
	[CF_SIG_ED25519] = { CF_SIG_ED25519, "ED25519", CF_FAMILY_ED25519, NULL, 0 },
};

static const char *const family_names[] = {
	[CF_FAMILY_NONE] = "unsupported",
	[CF_FAMILY_RSA] = "RSA",
	[CF_FAMILY_EC] = "EC",
	[CF_FAMILY_ED25519] = "Ed25519",
};

/* RFC 5280 §5.3.1; 7 is unused and removeFromCRL (8) belongs to delta CRLs only. */
static const struct {
	int code;
	const char *name;
} reasons[] = {
	{ 0, "unspecified" },
	{ 1, "keyCompromise" },
	{ 2, "cACompromise" },
	{ 3, "affiliationChanged" },
	{ 4, "superseded" },
	{ 5, "cessationOfOperation" },
	{ 6, "certificateHold" },
	{ 9, "privilegeWithdrawn" },
	{ 10, "aACompromise" },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int
key_alg_lookup(cf_key_alg *out, const char *name)
{
	size_t i, j;

	if (name == NULL)
		return -1;
	for (i = 0; i < NELEM(key_algs); i++) {
		if (strcasecmp(name, key_algs[i].name) == 0) {
			*out = key_algs[i].alg;
			return 0;
		}
		for (j = 0; j < NELEM(key_algs[i].aliases) && key_algs[i].aliases[j]; j++) {
			if (strcasecmp(name, key_algs[i].aliases[j]) == 0) {
				*out = key_algs[i].alg;
				return 0;
			}
		}
	}
	return -1;
}

static int
sig_alg_lookup(cf_sig_alg *out, const char *name)
{
	size_t i;

	if (name == NULL)
		return -1;
	for (i = 0; i < NELEM(sig_algs); i++) {
		if (strcasecmp(name, sig_algs[i].name) == 0) {
			*out = sig_algs[i].alg;
			return 0;
		}
	}
	return -1;
}

#define KEY_ALG_LIST "RSA-2048, RSA-3072, ECDSA-P256, ECDSA-P384, ECDSA-P521, ED25519"
#define SIG_ALG_LIST                                                                  \
	"SHA256WITHRSA, SHA384WITHRSA, SHA512WITHRSA, SHA256WITHRSAANDMGF1, "          \
	"SHA384WITHRSAANDMGF1, SHA512WITHRSAANDMGF1, ECDSA-WITH-SHA256, "              \
	"ECDSA-WITH-SHA384, ECDSA-WITH-SHA512, ED25519"

int
cf_key_alg_parse(cf_key_alg *out, const char *name)
{
	if (key_alg_lookup(out, name) != 0) {
		cf_error_set("unknown key algorithm '%s' (valid: %s)", name ? name : "",
		    KEY_ALG_LIST);
		return CF_EINVAL;
	}
	return 0;
}

const char *
cf_key_alg_name(cf_key_alg alg)
{
	if ((unsigned)alg >= CF_KEY__COUNT)
		return "unknown";
	return key_algs[alg].name;
}

int
cf_sig_alg_parse(cf_sig_alg *out, const char *name)
{
	if (sig_alg_lookup(out, name) != 0) {
		cf_error_set("unknown signing algorithm '%s' (valid: %s)", name ? name : "",
		    SIG_ALG_LIST);
		return CF_EINVAL;
	}
	return 0;
}

const char *
cf_sig_alg_name(cf_sig_alg alg)
{
	if ((unsigned)alg >= CF_SIG__COUNT)
		return "unknown";
	return sig_algs[alg].name;
}

cf_sig_alg
cf_sig_alg_default(cf_key_alg alg)
{
	if ((unsigned)alg >= CF_KEY__COUNT)
		return CF_SIG_SHA256_RSA;
	return key_algs[alg].sig_default;
}

int
cf_alg_validate(cf_key_alg *key_out, cf_sig_alg *sig_out, const char *key_name,
    const char *sig_name)
{
	cf_key_alg k;
	cf_sig_alg s;
	const char *sn = sig_name ? sig_name : "(default)";

	if (key_name == NULL || *key_name == '\0') {
		cf_error_set("a key algorithm is required with signing algorithm %s (valid: %s)",
		    sn, KEY_ALG_LIST);
		return CF_EINVAL;
	}
	if (key_alg_lookup(&k, key_name) != 0) {
		cf_error_set("unknown key algorithm '%s' with signing algorithm %s (valid: %s)",
		    key_name, sn, KEY_ALG_LIST);
		return CF_EINVAL;
	}
	if (sig_name == NULL) {
		s = key_algs[k].sig_default;
	} else if (sig_alg_lookup(&s, sig_name) != 0) {
		cf_error_set("unknown signing algorithm '%s' with key algorithm %s (valid: %s)",
		    sig_name, key_name, SIG_ALG_LIST);
		return CF_EINVAL;
	}
	if (sig_algs[s].family != key_algs[k].family) {
		cf_error_set("signing algorithm %s cannot be used with key algorithm %s",
		    sig_algs[s].name, key_algs[k].name);
		return CF_EINVAL;
	}
	if (key_out)
		*key_out = k;
	if (sig_out)
		*sig_out = s;
	return 0;
}

cf_family
cf_pki_family_of(const EVP_PKEY *pkey)
{
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		return CF_FAMILY_RSA;
	case EVP_PKEY_EC:
		return CF_FAMILY_EC;
	case EVP_PKEY_ED25519:
		return CF_FAMILY_ED25519;
	default:
		return CF_FAMILY_NONE;
	}
}

int
cf_pki_md_init(EVP_MD_CTX *mctx, EVP_PKEY *pkey, cf_sig_alg sig, int sign)
{
	EVP_PKEY_CTX *pctx = NULL;
	cf_family fam;
	int ok;

	if ((unsigned)sig >= CF_SIG__COUNT) {
		cf_error_set("unknown signing algorithm %d", (int)sig);
		return CF_EINVAL;
	}
	fam = cf_pki_family_of(pkey);
	if (fam != sig_algs[sig].family) {
		cf_error_set("signing algorithm %s cannot be used with a%s %s key", sig_algs[sig].name,
		    fam == CF_FAMILY_RSA || fam == CF_FAMILY_EC ? "n" : "",
		    fam == CF_FAMILY_NONE ? EVP_PKEY_get0_type_name(pkey) : family_names[fam]);
		return CF_EINVAL;
	}
	if (sign)
		ok = EVP_DigestSignInit_ex(mctx, &pctx, sig_algs[sig].md, NULL, NULL, pkey, NULL);
	else
		ok = EVP_DigestVerifyInit_ex(mctx, &pctx, sig_algs[sig].md, NULL, NULL, pkey, NULL);
	if (ok != 1) {
		cf_error_ssl("cannot set up %s", sig_algs[sig].name);
		return CF_ERROR;
	}
	if (sig_algs[sig].pss &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, sig_algs[sig].md, NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0)) {
		cf_error_ssl("cannot set up RSA-PSS for %s", sig_algs[sig].name);
		return CF_ERROR;
	}
	return 0;
}

int
cf_key_sign(unsigned char **out, size_t *out_len, const cf_key *key, cf_sig_alg sig,
    const void *data, size_t len)
{
	int r = CF_ERROR;
	EVP_MD_CTX *mctx = NULL;
	unsigned char *buf = NULL;
	size_t blen = 0;

	if ((mctx = EVP_MD_CTX_new()) == NULL) {
		cf_error_ssl("out of memory");
		goto out;
	}
	if ((r = cf_pki_md_init(mctx, key->pkey, sig, 1)) != 0)
		goto out;
	r = CF_ERROR;
	/* One-shot: Ed25519 cannot stream, and the others do not mind. */
	if (EVP_DigestSign(mctx, NULL, &blen, data, len) != 1) {
		cf_error_ssl("%s signature", cf_sig_alg_name(sig));
		goto out;
	}
	if ((buf = malloc(blen ? blen : 1)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	if (EVP_DigestSign(mctx, buf, &blen, data, len) != 1) {
		cf_error_ssl("%s signature", cf_sig_alg_name(sig));
		goto out;
	}
	*out = buf;
	buf = NULL;
	*out_len = blen;
	r = 0;
out:
	free(buf);
	EVP_MD_CTX_free(mctx);
	return r;
}

int
cf_key_verify(const cf_key *key, cf_sig_alg sig, const void *data, size_t len,
    const unsigned char *sigbuf, size_t sig_len)
{
	int r = CF_ERROR;
	EVP_MD_CTX *mctx = NULL;

	if ((mctx = EVP_MD_CTX_new()) == NULL) {
		cf_error_ssl("out of memory");
		goto out;
	}
	if ((r = cf_pki_md_init(mctx, key->pkey, sig, 0)) != 0)
		goto out;
	/* 0 is a bad signature, <0 a malformed one: both are a refusal here. */
	if (EVP_DigestVerify(mctx, sigbuf, sig_len, data, len) != 1) {
		ERR_clear_error();
		cf_error_set("%s signature does not verify", cf_sig_alg_name(sig));
		r = CF_EREJECTED;
		goto out;
	}
	r = 0;
out:
	EVP_MD_CTX_free(mctx);
	return r;
}

int
cf_pki_sig_md_nid(int *out, const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj = NULL;
	int ptype = 0, nid, md = NID_undef, pk = NID_undef;
	const void *pval = NULL;
	RSA_PSS_PARAMS *pss = NULL;

	X509_ALGOR_get0(&obj, &ptype, &pval, alg);
	nid = OBJ_obj2nid(obj);
	if (nid == NID_rsassaPss) {
		/* RFC 4055: an absent hashAlgorithm means SHA-1. */
		*out = NID_sha1;
		if (ptype != V_ASN1_SEQUENCE)
			return 0;
		pss = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(RSA_PSS_PARAMS), alg->parameter);
		if (pss == NULL) {
			ERR_clear_error();
			cf_error_set("malformed RSASSA-PSS parameters");
			return CF_EINVAL;
		}
		if (pss->hashAlgorithm != NULL)
			*out = OBJ_obj2nid(pss->hashAlgorithm->algorithm);
		RSA_PSS_PARAMS_free(pss);
		return 0;
	}
	if (nid == NID_undef || !OBJ_find_sigid_algs(nid, &md, &pk)) {
		cf_error_set("unknown signature algorithm");
		return CF_EINVAL;
	}
	*out = md;
	return 0;
}

int
cf_pki_reason_parse(int *out, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < NELEM(reasons); i++) {
		if (strcasecmp(name, reasons[i].name) == 0) {
			*out = reasons[i].code;
			return 0;
		}
	}
	cf_error_set("unknown revocation reason '%s' (valid: unspecified, keyCompromise, "
	    "cACompromise, affiliationChanged, superseded, cessationOfOperation, "
	    "certificateHold, privilegeWithdrawn, aACompromise)", name ? name : "");
	return CF_EINVAL;
}

const char *
cf_pki_reason_name(int reason)
{
	size_t i;

	for (i = 0; i < NELEM(reasons); i++) {
		if (reasons[i].code == reason)
			return reasons[i].name;
	}
	return "unknown";
}
