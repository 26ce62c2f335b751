/*
 * cf_pki_der — public and private keys, CSRs and certificates read without
 * OpenSSL 3.0's OSSL_DECODER. Every d2i_X509, d2i_X509_REQ, d2i_PUBKEY and
 * PEM_read_bio_PrivateKey builds an OSSL_DECODER_CTX, which enumerates
 * every provider's decoders and key managers per call (~1.4M instructions
 * for one P-256 key): most of the CA's time per certificate and a quarter
 * of the simulator's. Here the structures are read with OpenSSL's ASN.1
 * template reader (the same bounds-checked machinery and the same
 * acceptance as d2i_X509_REQ / d2i_X509, only with the
 * SubjectPublicKeyInfo kept as bytes), and the keys OpenSSL would decode
 * for P-256/P-384/P-521 and Ed25519 are built directly with
 * EVP_PKEY_fromdata / EVP_PKEY_new_raw_*_key.
 *
 * The fast path only ever takes a key in its canonical DER form; anything
 * else (RSA, RSA-PSS, explicit or unknown curves, compressed points,
 * non-DER encodings, encrypted or traditional key files) goes to the
 * decoder exactly as before, so results never change, only speed
 * (docs/pki.md). A point that is not on its curve fails EVP_PKEY_fromdata
 * (EC_POINT_oct2point checks it) and then the decoder, which rejects it in
 * the same function. Owns nothing between calls.
 */
#include "cf_pki_int.h"

#include <limits.h>
#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <string.h>

/* ---- templates ----------------------------------------------------------- */

/* SubjectPublicKeyInfo as it was received (enc: the bytes, for hashing and the decoder). */
ASN1_SEQUENCE_enc(cf_der_spki, enc, 0) = {
	ASN1_SIMPLE(cf_der_spki, alg, X509_ALGOR),
	ASN1_SIMPLE(cf_der_spki, key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END_ref(cf_der_spki, cf_der_spki)

/* The same fields without the saved encoding: encoding it gives the canonical DER. */
typedef struct {
	X509_ALGOR *alg;
	ASN1_BIT_STRING *key;
} spki_plain;

ASN1_SEQUENCE(spki_plain) = {
	ASN1_SIMPLE(spki_plain, alg, X509_ALGOR),
	ASN1_SIMPLE(spki_plain, key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(spki_plain)

/* CertificationRequestInfo (RFC 2986), its bytes kept: they are what was signed. */
ASN1_SEQUENCE_enc(cf_der_req_info, enc, 0) = {
	ASN1_SIMPLE(cf_der_req_info, version, ASN1_INTEGER),
	ASN1_SIMPLE(cf_der_req_info, subject, X509_NAME),
	ASN1_SIMPLE(cf_der_req_info, spki, cf_der_spki),
	/* Not OPTIONAL in RFC 2986; OpenSSL's X509_REQ_INFO accepts it absent too. */
	ASN1_IMP_SET_OF_OPT(cf_der_req_info, attributes, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END_ref(cf_der_req_info, cf_der_req_info)

ASN1_SEQUENCE(cf_der_req) = {
	ASN1_SIMPLE(cf_der_req, info, cf_der_req_info),
	ASN1_SIMPLE(cf_der_req, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(cf_der_req, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(cf_der_req)

/* TBSCertificate (RFC 5280), field for field what OpenSSL's X509_CINF reads. */
ASN1_SEQUENCE(cf_der_tbs) = {
	ASN1_EXP_OPT(cf_der_tbs, version, ASN1_INTEGER, 0),
	ASN1_SIMPLE(cf_der_tbs, serial, ASN1_INTEGER),
	ASN1_SIMPLE(cf_der_tbs, signature, X509_ALGOR),
	ASN1_SIMPLE(cf_der_tbs, issuer, X509_NAME),
	ASN1_SIMPLE(cf_der_tbs, validity, X509_VAL),
	ASN1_SIMPLE(cf_der_tbs, subject, X509_NAME),
	ASN1_SIMPLE(cf_der_tbs, spki, cf_der_spki),
	ASN1_IMP_OPT(cf_der_tbs, issuer_uid, ASN1_BIT_STRING, 1),
	ASN1_IMP_OPT(cf_der_tbs, subject_uid, ASN1_BIT_STRING, 2),
	ASN1_EXP_SEQUENCE_OF_OPT(cf_der_tbs, extensions, X509_EXTENSION, 3),
} static_ASN1_SEQUENCE_END(cf_der_tbs)

ASN1_SEQUENCE(cf_der_cert) = {
	ASN1_SIMPLE(cf_der_cert, tbs, cf_der_tbs),
	ASN1_SIMPLE(cf_der_cert, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(cf_der_cert, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(cf_der_cert)

/* ECPrivateKey (RFC 5915), the inside of an EC PKCS#8 key. */
typedef struct {
	ASN1_INTEGER *version;
	ASN1_OCTET_STRING *priv;
	ASN1_TYPE *params;        /* [0] ECParameters: only a named curve is taken here */
	ASN1_BIT_STRING *pub;     /* [1] */
} ec_priv;

/* The private scalar is wiped whenever the structure goes, parsed or half-parsed. */
static int
ec_priv_cb(int op, ASN1_VALUE **pval, const ASN1_ITEM *it, void *exarg)
{
	ec_priv *k = (ec_priv *)*pval;

	(void)it;
	(void)exarg;
	if (op == ASN1_OP_FREE_PRE && k != NULL && k->priv != NULL && k->priv->data != NULL)
		OPENSSL_cleanse(k->priv->data, (size_t)k->priv->length);
	return 1;
}

ASN1_SEQUENCE_cb(ec_priv, ec_priv_cb) = {
	ASN1_SIMPLE(ec_priv, version, ASN1_INTEGER),
	ASN1_SIMPLE(ec_priv, priv, ASN1_OCTET_STRING),
	ASN1_EXP_OPT(ec_priv, params, ASN1_ANY, 0),
	ASN1_EXP_OPT(ec_priv, pub, ASN1_BIT_STRING, 1),
} static_ASN1_SEQUENCE_END_cb(ec_priv, ec_priv)

/*
 * d2i of a whole buffer with an item: NULL unless the bytes are exactly
 * one value (trailing bytes are refused). len bounded by the caller.
 */
static ASN1_VALUE *
d2i_exact(const unsigned char *der, size_t len, const ASN1_ITEM *it)
{
	const unsigned char *p = der;
	ASN1_VALUE *v;

	if (der == NULL || len == 0 || len > LONG_MAX)
		return NULL;
	if ((v = ASN1_item_d2i(NULL, &p, (long)len, it)) == NULL)
		return NULL;
	if (p != der + len) {
		ASN1_item_free(v, it);
		return NULL;
	}
	return v;
}

/* ---- keys from their parts ----------------------------------------------- */

/* The curves of the fast path; the point is 1 + 2 * field bytes (uncompressed). */
static size_t
ec_field_bytes(int nid)
{
	switch (nid) {
	case NID_X9_62_prime256v1:
		return 32;
	case NID_secp384r1:
		return 48;
	case NID_secp521r1:
		return 66;
	default:
		return 0;
	}
}

/* The named curve of an id-ecPublicKey AlgorithmIdentifier, NID_undef for anything else. */
static int
ec_alg_curve(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj = NULL;
	const void *pval = NULL;
	int ptype = V_ASN1_UNDEF, nid;

	X509_ALGOR_get0(&obj, &ptype, &pval, alg);
	if (OBJ_obj2nid(obj) != NID_X9_62_id_ecPublicKey || ptype != V_ASN1_OBJECT)
		return NID_undef;
	nid = OBJ_obj2nid(pval);
	return ec_field_bytes(nid) != 0 ? nid : NID_undef;
}

/* A BIT STRING's bytes if it has no unused bits (a key never has), else NULL. */
static const unsigned char *
bits_whole(size_t *len, const ASN1_BIT_STRING *bs)
{
	if (bs == NULL || bs->length <= 0 ||
	    ((bs->flags & ASN1_STRING_FLAG_BITS_LEFT) && (bs->flags & 0x07) != 0))
		return NULL;
	*len = (size_t)bs->length;
	return bs->data;
}

/* An uncompressed point of the right length for the curve (oct2point checks the rest). */
static int
ec_point_ok(int nid, const unsigned char *pt, size_t len)
{
	return pt != NULL && len == 1 + 2 * ec_field_bytes(nid) && pt[0] == 0x04;
}

/*
 * An EC key on a named curve from its point (and private scalar, big-endian,
 * when priv is not NULL). NULL if OpenSSL refuses it: the point is not on
 * the curve, the scalar is out of range.
 */
static EVP_PKEY *
ec_from_parts(int nid, const unsigned char *pt, size_t pt_len, const unsigned char *priv,
    size_t priv_len)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	BIGNUM *bn = NULL;

	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid), 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, pt_len))
		goto out;
	/* A secure BIGNUM makes the builder put the scalar in secure, wiped memory too. */
	if (priv != NULL && (priv_len > INT_MAX || (bn = BN_secure_new()) == NULL ||
	    BN_bin2bn(priv, (int)priv_len, bn) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn)))
		goto out;
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, priv != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
	    params) <= 0) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(bn);
	return pkey;
}

/*
 * Per-curve templates: an EC key holding only its group, built once per
 * process. EVP_PKEY_fromdata builds the group from the curve's name every
 * time (EC_GROUP_new_by_curve_name_ex: two Montgomery contexts, each a
 * modular inversion, ~0.19M instructions for P-256); a copy of a template
 * copies the group instead. The templates are written only inside
 * CRYPTO_THREAD_run_once and only read afterwards (EVP_PKEY_dup), so the
 * threads of certfleetd and of the tests share them safely. They live as
 * long as the process (reachable, never freed: nothing may use them after
 * OPENSSL_cleanup anyway).
 */
static const int ec_template_nids[] = { NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1 };
static EVP_PKEY *ec_templates[sizeof(ec_template_nids) / sizeof(ec_template_nids[0])];
static CRYPTO_ONCE ec_templates_once = CRYPTO_ONCE_STATIC_INIT;

static void
ec_templates_init(void)
{
	OSSL_PARAM params[2];
	EVP_PKEY_CTX *ctx;
	size_t i;

	ERR_set_mark();
	for (i = 0; i < sizeof(ec_templates) / sizeof(ec_templates[0]); i++) {
		params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
		    (char *)OBJ_nid2sn(ec_template_nids[i]), 0);
		params[1] = OSSL_PARAM_construct_end();
		if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
		    EVP_PKEY_fromdata_init(ctx) <= 0 ||
		    EVP_PKEY_fromdata(ctx, &ec_templates[i], EVP_PKEY_KEY_PARAMETERS, params) <= 0)
			ec_templates[i] = NULL; /* then that curve takes ec_from_parts */
		EVP_PKEY_CTX_free(ctx);
	}
	ERR_pop_to_mark();
}

/*
 * An EC public key on a named curve of the fast path from its point: a
 * copy of the curve's template given the point. EVP_PKEY_set1_encoded_public_key
 * decodes it with EC_POINT_oct2point, which refuses a point that is not on
 * the curve (NULL then, as from ec_from_parts).
 */
static EVP_PKEY *
ec_public(int nid, const unsigned char *pt, size_t pt_len)
{
	EVP_PKEY *t = NULL, *pkey;
	size_t i;

	if (CRYPTO_THREAD_run_once(&ec_templates_once, ec_templates_init)) {
		for (i = 0; i < sizeof(ec_template_nids) / sizeof(ec_template_nids[0]); i++) {
			if (ec_template_nids[i] == nid)
				t = ec_templates[i];
		}
	}
	if (t == NULL)
		return ec_from_parts(nid, pt, pt_len, NULL, 0);
	if ((pkey = EVP_PKEY_dup(t)) == NULL)
		return NULL;
	if (EVP_PKEY_set1_encoded_public_key(pkey, pt, pt_len) != 1) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

/* The fast path for parsed SPKI fields: a key, or NULL to let the decoder decide. */
static EVP_PKEY *
spki_fast(const X509_ALGOR *alg, const ASN1_BIT_STRING *bits)
{
	const ASN1_OBJECT *obj = NULL;
	const unsigned char *pk;
	size_t len = 0;
	int ptype = V_ASN1_UNDEF, nid;

	if ((pk = bits_whole(&len, bits)) == NULL)
		return NULL;
	X509_ALGOR_get0(&obj, &ptype, NULL, alg);
	if (OBJ_obj2nid(obj) == NID_ED25519) {
		/* RFC 8410: parameters absent, 32 bytes. */
		if (ptype != V_ASN1_UNDEF || len != 32)
			return NULL;
		return EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, pk, len);
	}
	if ((nid = ec_alg_curve(alg)) == NID_undef || !ec_point_ok(nid, pk, len))
		return NULL;
	return ec_public(nid, pk, len);
}

/* 1 if the SPKI was received in its canonical DER encoding (the fast path takes no other). */
static int
spki_is_der(const cf_der_spki *spki)
{
	spki_plain plain = { spki->alg, spki->key };
	unsigned char *der = NULL;
	int n, same;

	if (spki->enc.enc == NULL || (n = ASN1_item_i2d((ASN1_VALUE *)&plain, &der,
	    ASN1_ITEM_rptr(spki_plain))) <= 0)
		return 0;
	same = (long)n == spki->enc.len && memcmp(der, spki->enc.enc, (size_t)n) == 0;
	OPENSSL_free(der);
	return same;
}

EVP_PKEY *
cf_pki_der_spki_pkey(const cf_der_spki *spki)
{
	EVP_PKEY *pkey = NULL;
	const unsigned char *p;

	ERR_set_mark();
	if (spki_is_der(spki))
		pkey = spki_fast(spki->alg, spki->key);
	ERR_pop_to_mark();
	if (pkey != NULL || spki->enc.enc == NULL)
		return pkey;
	/* Not ours: the decoder, on the bytes as received (what d2i_X509 gives it). */
	p = spki->enc.enc;
	return d2i_PUBKEY(NULL, &p, spki->enc.len);
}

EVP_PKEY *
cf_pki_der_pubkey_fast(const unsigned char *der, size_t len)
{
	cf_der_spki *spki;
	EVP_PKEY *pkey = NULL;

	ERR_set_mark();
	if ((spki = (cf_der_spki *)d2i_exact(der, len, ASN1_ITEM_rptr(cf_der_spki))) != NULL &&
	    spki_is_der(spki))
		pkey = spki_fast(spki->alg, spki->key);
	ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(cf_der_spki));
	ERR_pop_to_mark();
	return pkey;
}

EVP_PKEY *
cf_pki_der_pubkey(const unsigned char *der, size_t len)
{
	cf_der_spki *spki;
	EVP_PKEY *pkey = NULL;
	const unsigned char *p = der;

	ERR_set_mark();
	spki = (cf_der_spki *)d2i_exact(der, len, ASN1_ITEM_rptr(cf_der_spki));
	ERR_pop_to_mark();
	if (spki != NULL) {
		pkey = cf_pki_der_spki_pkey(spki);
		ASN1_item_free((ASN1_VALUE *)spki, ASN1_ITEM_rptr(cf_der_spki));
		return pkey;
	}
	if (der == NULL || len == 0 || len > LONG_MAX)
		return NULL;
	/* Unparseable as an SPKI of exactly len bytes: the decoder's verdict and message. */
	if ((pkey = d2i_PUBKEY(NULL, &p, (long)len)) != NULL && p != der + len) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	return pkey;
}

int
cf_pki_der_spki_fingerprint(char out[CF_ID_LEN + 1], const cf_der_spki *spki)
{
	spki_plain plain = { spki->alg, spki->key };
	unsigned char *der = NULL;
	int n;

	/* The canonical encoding, as i2d_X509_PUBKEY of the parsed certificate gave it. */
	if ((n = ASN1_item_i2d((ASN1_VALUE *)&plain, &der, ASN1_ITEM_rptr(spki_plain))) <= 0) {
		cf_error_ssl("cannot encode the public key");
		return CF_ERROR;
	}
	cf_sha256_hex(out, der, (size_t)n);
	OPENSSL_free(der);
	return 0;
}

int
cf_pki_der_set_pubkey(X509_PUBKEY *pub, EVP_PKEY *pkey)
{
	unsigned char buf[1 + 2 * 66], *penc = NULL;
	char group[32], enc[32];
	size_t len = 0;
	ASN1_OBJECT *curve = NULL;
	int nid;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_ED25519:
		if (EVP_PKEY_get_raw_public_key(pkey, buf, &len) != 1 || len != 32)
			goto fallback;
		if ((penc = OPENSSL_memdup(buf, len)) == NULL ||
		    !X509_PUBKEY_set0_param(pub, OBJ_nid2obj(NID_ED25519), V_ASN1_UNDEF, NULL, penc,
		    (int)len))
			goto fallback;
		return 0;
	case EVP_PKEY_EC:
		/* Only what the encoder would write as namedCurve + uncompressed point. */
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		    sizeof(group), NULL) != 1 ||
		    EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_EC_ENCODING, enc,
		    sizeof(enc), NULL) != 1 || strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) != 0 ||
		    (nid = OBJ_sn2nid(group)) == NID_undef || ec_field_bytes(nid) == 0 ||
		    EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, buf, sizeof(buf),
		    &len) != 1 || !ec_point_ok(nid, buf, len))
			goto fallback;
		if ((curve = OBJ_nid2obj(nid)) == NULL || (penc = OPENSSL_memdup(buf, len)) == NULL ||
		    !X509_PUBKEY_set0_param(pub, OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
		    V_ASN1_OBJECT, curve, penc, (int)len))
			goto fallback;
		return 0;
	default:
		break;
	}
fallback:
	/* The NIDs' objects are static: nothing to free but the copy of the point. */
	OPENSSL_free(penc);
	ERR_clear_error();
	return 1;
}

/* ---- CSRs and certificates ------------------------------------------------- */

int
cf_pki_der_req_parse(cf_der_req **out, const unsigned char *der, size_t len)
{
	cf_der_req *req;

	if ((req = (cf_der_req *)d2i_exact(der, len, ASN1_ITEM_rptr(cf_der_req))) == NULL)
		return CF_EINVAL;
	*out = req;
	return 0;
}

void
cf_pki_der_req_free(cf_der_req *req)
{
	ASN1_item_free((ASN1_VALUE *)req, ASN1_ITEM_rptr(cf_der_req));
}

int
cf_pki_der_req_verify(const cf_der_req *req, EVP_PKEY *pkey)
{
	/*
	 * What X509_REQ_verify does in 3.0: the signature over the
	 * CertificationRequestInfo, whose encoding is the one received.
	 */
	return ASN1_item_verify_ex(ASN1_ITEM_rptr(cf_der_req_info), req->sig_alg, req->signature,
	    req->info, NULL, pkey, NULL, NULL);
}

STACK_OF(X509_EXTENSION) *
cf_pki_der_req_extensions(const cf_der_req *req)
{
	static const int nids[] = { NID_ext_req, NID_ms_ext_req };
	X509_ATTRIBUTE *attr;
	ASN1_TYPE *ext = NULL;
	const unsigned char *p;
	size_t i;
	int idx;

	/* As X509_REQ_get_extensions: the first extensionRequest attribute's first value. */
	for (i = 0; i < sizeof(nids) / sizeof(nids[0]) && ext == NULL; i++) {
		if ((idx = X509at_get_attr_by_NID(req->info->attributes, nids[i], -1)) < 0)
			continue;
		attr = X509at_get_attr(req->info->attributes, idx);
		if ((ext = X509_ATTRIBUTE_get0_type(attr, 0)) == NULL)
			break;
	}
	if (ext == NULL)
		return sk_X509_EXTENSION_new_null();
	if (ext->type != V_ASN1_SEQUENCE)
		return NULL;
	p = ext->value.sequence->data;
	return (STACK_OF(X509_EXTENSION) *)ASN1_item_d2i(NULL, &p, ext->value.sequence->length,
	    ASN1_ITEM_rptr(X509_EXTENSIONS));
}

int
cf_pki_der_cert_parse(cf_der_cert **out, const unsigned char *der, size_t len)
{
	cf_der_cert *c;

	if ((c = (cf_der_cert *)d2i_exact(der, len, ASN1_ITEM_rptr(cf_der_cert))) == NULL)
		return CF_EINVAL;
	*out = c;
	return 0;
}

void
cf_pki_der_cert_free(cf_der_cert *cert)
{
	ASN1_item_free((ASN1_VALUE *)cert, ASN1_ITEM_rptr(cf_der_cert));
}

/* ---- private keys ---------------------------------------------------------- */

/* Ed25519 (RFC 8410): the PKCS#8 key is an OCTET STRING holding the 32-byte seed. */
static EVP_PKEY *
ed25519_private(const X509_ALGOR *alg, const unsigned char *pk, int pklen)
{
	ASN1_OCTET_STRING *seed;
	EVP_PKEY *pkey = NULL;
	int ptype = V_ASN1_UNDEF;

	X509_ALGOR_get0(NULL, &ptype, NULL, alg);
	if (ptype != V_ASN1_UNDEF || pklen <= 0 ||
	    (seed = (ASN1_OCTET_STRING *)d2i_exact(pk, (size_t)pklen,
	    ASN1_ITEM_rptr(ASN1_OCTET_STRING))) == NULL)
		return NULL;
	if (seed->length == 32)
		pkey = EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, seed->data, 32);
	ASN1_STRING_clear_free(seed);
	return pkey;
}

/*
 * EC: ECPrivateKey version 1 on the same named curve as the AlgorithmIdentifier,
 * with its public key (without it OpenSSL computes the point and remembers
 * to write the key without it again: the decoder keeps that).
 */
static EVP_PKEY *
ec_private(const X509_ALGOR *alg, const unsigned char *pk, int pklen)
{
	ec_priv *k;
	EVP_PKEY *pkey = NULL;
	const unsigned char *pt;
	size_t pt_len = 0;
	int nid;

	if ((nid = ec_alg_curve(alg)) == NID_undef || pklen <= 0 ||
	    (k = (ec_priv *)d2i_exact(pk, (size_t)pklen, ASN1_ITEM_rptr(ec_priv))) == NULL)
		return NULL;
	if (ASN1_INTEGER_get(k->version) != 1 || k->priv->length <= 0 ||
	    (size_t)k->priv->length > ec_field_bytes(nid))
		goto out;
	if (k->params != NULL && (k->params->type != V_ASN1_OBJECT ||
	    OBJ_obj2nid(k->params->value.object) != nid))
		goto out;
	if ((pt = bits_whole(&pt_len, k->pub)) == NULL || !ec_point_ok(nid, pt, pt_len))
		goto out;
	pkey = ec_from_parts(nid, pt, pt_len, k->priv->data, (size_t)k->priv->length);
out:
	ASN1_item_free((ASN1_VALUE *)k, ASN1_ITEM_rptr(ec_priv));
	return pkey;
}

/* An unencrypted PKCS#8 PrivateKeyInfo (DER) on the fast path, else NULL. */
static EVP_PKEY *
pkcs8_fast(const unsigned char *der, size_t len)
{
	PKCS8_PRIV_KEY_INFO *p8;
	const ASN1_OBJECT *obj = NULL;
	const X509_ALGOR *alg = NULL;
	const unsigned char *pk = NULL;
	const STACK_OF(X509_ATTRIBUTE) *attrs;
	EVP_PKEY *pkey = NULL;
	int pklen = 0;

	/* Its free callback wipes the key bytes. */
	if ((p8 = (PKCS8_PRIV_KEY_INFO *)d2i_exact(der, len,
	    ASN1_ITEM_rptr(PKCS8_PRIV_KEY_INFO))) == NULL)
		return NULL;
	attrs = PKCS8_pkey_get0_attrs(p8);
	if (!PKCS8_pkey_get0(&obj, &pk, &pklen, &alg, p8) ||
	    (attrs != NULL && sk_X509_ATTRIBUTE_num(attrs) > 0))
		goto out;
	switch (OBJ_obj2nid(obj)) {
	case NID_ED25519:
		pkey = ed25519_private(alg, pk, pklen);
		break;
	case NID_X9_62_id_ecPublicKey:
		pkey = ec_private(alg, pk, pklen);
		break;
	default:
		break;
	}
out:
	PKCS8_PRIV_KEY_INFO_free(p8);
	return pkey;
}

EVP_PKEY *
cf_pki_der_private_pem(const char *pem, size_t len)
{
	BIO *bio = NULL;
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen = 0;
	EVP_PKEY *pkey = NULL;

	if (len == 0 || len > INT_MAX)
		return NULL;
	ERR_set_mark();
	/* PEM_FLAG_SECURE: the decoded body lives in secure memory, wiped when freed. */
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL ||
	    PEM_read_bio_ex(bio, &name, &header, &data, &dlen,
	    PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE) != 1)
		goto out;
	/* Only the plain "PRIVATE KEY" the key stores write, with no PEM headers. */
	if (strcmp(name, PEM_STRING_PKCS8INF) != 0 || header[0] != '\0' || dlen <= 0)
		goto out;
	pkey = pkcs8_fast(data, (size_t)dlen);
out:
	ERR_pop_to_mark();
	OPENSSL_secure_free(name);
	OPENSSL_secure_free(header);
	if (data != NULL)
		OPENSSL_secure_clear_free(data, (size_t)dlen);
	BIO_free(bio);
	return pkey;
}
