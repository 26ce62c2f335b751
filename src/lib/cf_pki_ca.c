/*
 * cf_pki_ca — the CA side of cf_pki: the root, intermediate and device
 * certificate profiles (DESIGN §3), CRLs, and chain verification. Owns
 * nothing between calls; every OpenSSL object is built and freed here.
 */
#include "cf_pki_int.h"

#include <limits.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cf_util.h"

#define CF_SKEW_SECONDS 300 /* notBefore is backdated by this much */
#define CF_SERIAL_BYTES 16  /* 128 random bits */

/* ---- issuing --------------------------------------------------------------- */

static int
cn_valid(const char *what, const char *cn)
{
	size_t len = cn ? strlen(cn) : 0;

	if (len == 0 || len > 64) {
		cf_error_set("%s common name must be 1 to 64 characters", what);
		return 0;
	}
	return 1;
}

/* The digest a CA key signs with: SHA-256 for RSA and P-256, up with the curve. */
static int
ca_md(const EVP_MD **out, const EVP_PKEY *pkey)
{
	int bits = EVP_PKEY_get_bits(pkey);

	switch (cf_pki_family_of(pkey)) {
	case CF_FAMILY_RSA:
		*out = EVP_sha256();
		return 0;
	case CF_FAMILY_EC:
		*out = bits <= 256 ? EVP_sha256() : bits <= 384 ? EVP_sha384() : EVP_sha512();
		return 0;
	case CF_FAMILY_ED25519:
		*out = NULL;
		return 0;
	default:
		cf_error_set("a %s key cannot sign certificates", EVP_PKEY_get0_type_name(pkey));
		return CF_EINVAL;
	}
}

/* A positive 128-bit random serial: the leading 0x00 is DER's job, not ours. */
static int
set_random_serial(X509 *x)
{
	unsigned char raw[CF_SERIAL_BYTES];
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;
	int r = CF_ERROR;

	do {
		if ((r = cf_random_bytes(raw, sizeof(raw))) != 0)
			goto out;
		r = CF_ERROR;
		BN_free(bn);
		/* BN_bin2bn reads unsigned big-endian, so the value is never negative. */
		if ((bn = BN_bin2bn(raw, sizeof(raw), NULL)) == NULL)
			goto ssl;
	} while (BN_is_zero(bn));
	if ((ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || !X509_set_serialNumber(x, ai))
		goto ssl;
	r = 0;
	goto out;
ssl:
	cf_error_ssl("cannot set the serial number");
out:
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	return r;
}

/* Adds an extension from its OpenSSL config string (ctx gives SKI/AKI their keys). */
static int
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext;
	int ok;

	if ((ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value)) == NULL) {
		cf_error_ssl("cannot build extension %s=%s", OBJ_nid2sn(nid), value);
		return CF_ERROR;
	}
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ok) {
		cf_error_ssl("cannot add extension %s", OBJ_nid2sn(nid));
		return CF_ERROR;
	}
	return 0;
}

static int
set_validity(X509 *x, int64_t not_before, int64_t seconds)
{
	time_t base = (time_t)not_before;

	if (X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &base) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)(seconds / 86400),
	    (long)(seconds % 86400), &base) == NULL) {
		cf_error_ssl("cannot set the validity period");
		return CF_ERROR;
	}
	return 0;
}

/* The issuer must be a CA and issuer_key its key (CF_EINVAL otherwise). */
static int
check_issuer(X509 *issuer, const EVP_PKEY *issuer_key)
{
	EVP_PKEY *pub = NULL;
	char cn[256];
	int r = CF_EINVAL;

	cf_pki_name_cn(cn, sizeof(cn), X509_get_subject_name(issuer));
	if ((X509_get_extension_flags(issuer) & EXFLAG_CA) == 0 ||
	    (X509_get_key_usage(issuer) & KU_KEY_CERT_SIGN) == 0) {
		cf_error_set("issuer '%s' is not a CA certificate", cn);
		goto out;
	}
	if ((pub = cf_pki_x509_pkey(issuer)) == NULL || EVP_PKEY_eq(pub, issuer_key) != 1) {
		cf_error_set("the issuer key does not match the certificate of '%s'", cn);
		goto out;
	}
	r = 0;
out:
	EVP_PKEY_free(pub);
	ERR_clear_error();
	return r;
}

/*
 * The common part of every certificate: v3, random serial, CN=cn as the
 * subject, the issuer's name (NULL: the subject's, self-issued), validity.
 * The CN goes straight into the certificate's own name: X509_set_subject_name
 * would copy a name built apart (encode, decode, canonical form). The
 * public key is set by the caller.
 */
static int
cert_begin(X509 **out, const char *cn, const X509_NAME *issuer, int64_t seconds)
{
	X509 *x = NULL;
	int r = CF_ERROR;

	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3)) {
		cf_error_ssl("cannot build the certificate");
		goto out;
	}
	if (!X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
	    (const unsigned char *)cn, -1, -1, 0)) {
		cf_error_ssl("cannot build the subject name");
		goto out;
	}
	if (!X509_set_issuer_name(x, issuer != NULL ? issuer : X509_get_subject_name(x))) {
		cf_error_ssl("cannot build the certificate");
		goto out;
	}
	if ((r = set_random_serial(x)) != 0)
		goto out;
	if ((r = set_validity(x, cf_time_now() - CF_SKEW_SECONDS, seconds)) != 0)
		goto out;
	*out = x;
	x = NULL;
out:
	X509_free(x);
	return r;
}

/* A certificate never outlives its issuer: clamp notAfter to the issuer's. */
static int
clamp_to_issuer(X509 *x, const X509 *issuer)
{
	const ASN1_TIME *limit = X509_get0_notAfter(issuer);

	if (ASN1_TIME_compare(X509_get0_notAfter(x), limit) > 0 && !X509_set1_notAfter(x, limit)) {
		cf_error_ssl("cannot set the validity period");
		return CF_ERROR;
	}
	return 0;
}

static int
cert_sign(X509 *x, EVP_PKEY *key)
{
	const EVP_MD *md = NULL;
	int r;

	if ((r = ca_md(&md, key)) != 0)
		return r;
	if (X509_sign(x, key, md) <= 0) {
		cf_error_ssl("cannot sign the certificate");
		return CF_ERROR;
	}
	return 0;
}

static int
days_valid(int days)
{
	if (days <= 0 || days > 36500) {
		cf_error_set("validity of %d days is out of range (1..36500)", days);
		return 0;
	}
	return 1;
}

int
cf_pki_make_root(cf_cert **out, const cf_key *key, const char *cn, int validity_days)
{
	int r = CF_EINVAL;
	X509 *x = NULL;
	X509V3_CTX ctx;

	if (!cn_valid("root", cn) || !days_valid(validity_days))
		goto out;
	if ((r = cert_begin(&x, cn, NULL, (int64_t)validity_days * 86400)) != 0)
		goto out;
	r = CF_ERROR;
	if (!X509_set_pubkey(x, key->pkey)) {
		cf_error_ssl("cannot set the root's public key");
		goto out;
	}
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE")) != 0 ||
	    (r = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")) != 0 ||
	    (r = add_ext(x, &ctx, NID_subject_key_identifier, "hash")) != 0 ||
	    (r = cert_sign(x, key->pkey)) != 0)
		goto out;
	if ((r = cf_pki_cert_wrap_signed(out, x)) != 0)
		goto out;
	x = NULL;
out:
	X509_free(x);
	return r;
}

int
cf_pki_make_intermediate(cf_cert **out, const cf_key *pub, const char *cn, int validity_days,
    const cf_cert *root, const cf_key *root_key)
{
	int r = CF_EINVAL;
	X509 *x = NULL;
	X509V3_CTX ctx;

	if (!cn_valid("intermediate", cn) || !days_valid(validity_days))
		goto out;
	if ((r = check_issuer(root->x509, root_key->pkey)) != 0)
		goto out;
	if ((r = cert_begin(&x, cn, X509_get_subject_name(root->x509),
	    (int64_t)validity_days * 86400)) != 0 || (r = clamp_to_issuer(x, root->x509)) != 0)
		goto out;
	r = CF_ERROR;
	if (!X509_set_pubkey(x, pub->pkey)) {
		cf_error_ssl("cannot set the intermediate's public key");
		goto out;
	}
	X509V3_set_ctx(&ctx, root->x509, x, NULL, NULL, 0);
	if ((r = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) != 0 ||
	    (r = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")) != 0 ||
	    (r = add_ext(x, &ctx, NID_subject_key_identifier, "hash")) != 0 ||
	    (r = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) != 0 ||
	    (r = cert_sign(x, root_key->pkey)) != 0)
		goto out;
	if ((r = cf_pki_cert_wrap_signed(out, x)) != 0)
		goto out;
	x = NULL;
out:
	X509_free(x);
	return r;
}

/*
 * Copies the CSR's SubjectPublicKeyInfo into the certificate as encoded
 * bytes. X509_set_pubkey would re-encode the decoded key through the
 * provider and decode the result again, which dominates issuance time in
 * OpenSSL 3.0. The certificate then holds its key only as bytes: every
 * place that needs it decoded goes through cf_pki_x509_pkey or
 * cf_pki_x509_complete. Parameters of a kind we do not know how to copy
 * fall back to X509_set_pubkey.
 */
static int
copy_pubkey(X509 *x, const cf_csr *csr)
{
	const ASN1_OBJECT *pobj = NULL;
	const unsigned char *pk = csr->req->info->spki->key->data;
	int pklen = csr->req->info->spki->key->length, ptype = V_ASN1_UNDEF;
	const void *pval = NULL;
	ASN1_OBJECT *aobj = NULL;
	void *val = NULL;
	unsigned char *penc = NULL;

	if (pk == NULL || pklen <= 0)
		goto fallback;
	X509_ALGOR_get0(&pobj, &ptype, &pval, csr->req->info->spki->alg);
	switch (ptype) {
	case V_ASN1_UNDEF:
	case V_ASN1_NULL:
		break;
	case V_ASN1_OBJECT:
		if ((val = OBJ_dup(pval)) == NULL)
			goto fallback;
		break;
	case V_ASN1_SEQUENCE:
		if ((val = ASN1_STRING_dup(pval)) == NULL)
			goto fallback;
		break;
	default:
		goto fallback;
	}
	if ((aobj = OBJ_dup(pobj)) == NULL ||
	    (penc = OPENSSL_memdup(pk, (size_t)pklen)) == NULL)
		goto fallback;
	if (!X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), aobj, ptype, val, penc, pklen))
		goto fallback;
	return 0;
fallback:
	ASN1_OBJECT_free(aobj);
	OPENSSL_free(penc);
	if (ptype == V_ASN1_OBJECT)
		ASN1_OBJECT_free(val);
	else if (ptype == V_ASN1_SEQUENCE)
		ASN1_STRING_free(val);
	ERR_clear_error();
	if (csr->pkey == NULL || !X509_set_pubkey(x, csr->pkey)) {
		cf_error_ssl("cannot set the device's public key");
		return CF_ERROR;
	}
	return 0;
}

/* Adds an extension from its value (the value stays the caller's). */
static int
add_ext_value(X509 *x, int nid, int crit, void *value)
{
	/* X509_add1_ext_i2d encodes value into a new extension and keeps it: no copy. */
	if (value == NULL || X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_APPEND) != 1) {
		cf_error_ssl("cannot add extension %s", OBJ_nid2sn(nid));
		return CF_ERROR;
	}
	return 0;
}

/*
 * The authorityKeyIdentifier "keyid:always" gives a certificate that is not
 * its issuer: the keyid of the issuer's (first) subjectKeyIdentifier, which
 * must be there and not empty.
 */
static AUTHORITY_KEYID *
issuer_akid(const X509 *issuer)
{
	AUTHORITY_KEYID *akid = NULL;
	ASN1_OCTET_STRING *kid = NULL;
	X509_EXTENSION *ext;
	int i;

	if ((i = X509_get_ext_by_NID(issuer, NID_subject_key_identifier, -1)) >= 0 &&
	    (ext = X509_get_ext(issuer, i)) != NULL)
		kid = X509V3_EXT_d2i(ext);
	if (kid == NULL || ASN1_STRING_length(kid) == 0) {
		ASN1_OCTET_STRING_free(kid);
		ERR_raise(ERR_LIB_X509V3, X509V3_R_UNABLE_TO_GET_ISSUER_KEYID);
		return NULL;
	}
	if ((akid = AUTHORITY_KEYID_new()) == NULL) {
		ASN1_OCTET_STRING_free(kid);
		return NULL;
	}
	akid->keyid = kid;
	return akid;
}

/* The subjectKeyIdentifier "hash" gives: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2). */
static ASN1_OCTET_STRING *
key_hash(const X509 *x)
{
	const unsigned char *pk = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int pklen = 0;
	ASN1_OCTET_STRING *os;

	if (!X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(x)) ||
	    EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) != 1 ||
	    (os = ASN1_OCTET_STRING_new()) == NULL)
		return NULL;
	if (!ASN1_OCTET_STRING_set(os, md, (int)mdlen)) {
		ASN1_OCTET_STRING_free(os);
		return NULL;
	}
	return os;
}

/*
 * The end-entity profile shared by device, broker and service certificates:
 * critical CA:FALSE, critical digitalSignature (+ keyEncipherment for RSA),
 * one EKU, SKI and AKI, in this order (the caller adds a subjectAltName
 * after them). The values are built directly rather than parsed from
 * OpenSSL config strings by X509V3_EXT_conf_nid and then copied by
 * X509_add_ext (encode + decode each): the same DER, a sixth of the
 * instructions (pki_der_test compares them with the config strings').
 */
static int
leaf_extensions(X509 *x, const X509 *issuer, int rsa, int eku_nid)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	ASN1_OCTET_STRING *ski = NULL;
	AUTHORITY_KEYID *akid = NULL;
	int r = CF_ERROR;

	if (bc == NULL || ku == NULL || eku == NULL || !ASN1_BIT_STRING_set_bit(ku, 0, 1) ||
	    (rsa && !ASN1_BIT_STRING_set_bit(ku, 2, 1)) ||
	    !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(eku_nid))) {
		cf_error_ssl("cannot build the certificate's extensions");
		goto out;
	}
	bc->ca = 0;
	if ((r = add_ext_value(x, NID_basic_constraints, 1, bc)) != 0 ||
	    (r = add_ext_value(x, NID_key_usage, 1, ku)) != 0 ||
	    (r = add_ext_value(x, NID_ext_key_usage, 0, eku)) != 0 ||
	    (r = add_ext_value(x, NID_subject_key_identifier, 0, ski = key_hash(x))) != 0 ||
	    (r = add_ext_value(x, NID_authority_key_identifier, 0, akid = issuer_akid(issuer))) != 0)
		goto out;
out:
	AUTHORITY_KEYID_free(akid);
	ASN1_OCTET_STRING_free(ski);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	ASN1_BIT_STRING_free(ku);
	BASIC_CONSTRAINTS_free(bc);
	return r;
}

/* A subjectAltName of one URI, built directly (see leaf_extensions). */
static int
add_san_uri(X509 *x, const char *uri)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int r = CF_ERROR;

	if (gens == NULL || gen == NULL || ia5 == NULL || !ASN1_STRING_set(ia5, uri, -1)) {
		cf_error_ssl("cannot build the subjectAltName");
		goto out;
	}
	GENERAL_NAME_set0_value(gen, GEN_URI, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen)) {
		cf_error_ssl("cannot build the subjectAltName");
		goto out;
	}
	gen = NULL;
	r = add_ext_value(x, NID_subject_alt_name, 0, gens);
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return r;
}

int
cf_pki_issue_device(cf_cert **out, const cf_csr *csr, const char *thing, int validity_days,
    int64_t validity_seconds, const cf_cert *issuer, const cf_key *issuer_key)
{
	int r;
	X509 *x = NULL;
	int64_t seconds;
	char san[sizeof(CF_URN_PREFIX) + CF_NAME_MAX + 8];
	cf_cert *c = NULL;
	EVP_PKEY *pub;
	int rsa;

	if ((r = cf_csr_verify(csr)) != 0 || (r = cf_csr_check_subject(csr, thing)) != 0)
		goto out;
	if ((r = check_issuer(issuer->x509, issuer_key->pkey)) != 0)
		goto out;
	r = CF_EINVAL;
	if (validity_seconds > 0) {
		if (validity_seconds > (int64_t)36500 * 86400) {
			cf_error_set("validity of %lld seconds is out of range",
			    (long long)validity_seconds);
			goto out;
		}
		seconds = validity_seconds;
	} else {
		if (!days_valid(validity_days))
			goto out;
		seconds = (int64_t)validity_days * 86400;
	}
	if ((r = cert_begin(&x, thing, X509_get_subject_name(issuer->x509), seconds)) != 0 ||
	    (r = clamp_to_issuer(x, issuer->x509)) != 0 || (r = copy_pubkey(x, csr)) != 0)
		goto out;
	rsa = cf_pki_family_of(csr->pkey) == CF_FAMILY_RSA;
	snprintf(san, sizeof(san), CF_URN_PREFIX "%s", thing);
	if ((r = leaf_extensions(x, issuer->x509, rsa, NID_client_auth)) != 0 ||
	    (r = add_san_uri(x, san)) != 0 ||
	    (r = cert_sign(x, issuer_key->pkey)) != 0)
		goto out;
	if ((r = cf_pki_cert_wrap_signed(&c, x)) != 0)
		goto out;
	x = NULL;
	/* The key copy_pubkey copied, built by cf_csr_parse: no decode later. */
	pub = csr->pkey;
	if (pub != NULL && EVP_PKEY_up_ref(pub))
		c->pub = pub;
	*out = c;
out:
	X509_free(x);
	return r;
}

int
cf_pki_issue_tls(cf_cert **out, const cf_key *pub, const char *cn, const char *san, int server,
    int validity_days, const cf_cert *issuer, const cf_key *issuer_key)
{
	int r = CF_EINVAL, rsa;
	X509 *x = NULL;
	X509V3_CTX ctx;

	if (!cn_valid("certificate", cn) || !days_valid(validity_days))
		goto out;
	if ((r = check_issuer(issuer->x509, issuer_key->pkey)) != 0)
		goto out;
	if ((r = cert_begin(&x, cn, X509_get_subject_name(issuer->x509),
	    (int64_t)validity_days * 86400)) != 0 || (r = clamp_to_issuer(x, issuer->x509)) != 0)
		goto out;
	r = CF_ERROR;
	if (!X509_set_pubkey(x, pub->pkey)) {
		cf_error_ssl("cannot set the public key");
		goto out;
	}
	rsa = cf_pki_family_of(pub->pkey) == CF_FAMILY_RSA;
	X509V3_set_ctx(&ctx, issuer->x509, x, NULL, NULL, 0);
	if ((r = leaf_extensions(x, issuer->x509, rsa, server ? NID_server_auth : NID_client_auth)) != 0 ||
	    (san != NULL && (r = add_ext(x, &ctx, NID_subject_alt_name, san)) != 0) ||
	    (r = cert_sign(x, issuer_key->pkey)) != 0)
		goto out;
	if ((r = cf_pki_cert_wrap_signed(out, x)) != 0)
		goto out;
	x = NULL;
out:
	X509_free(x);
	return r;
}

/* ---- revocation ------------------------------------------------------------ */

static int
add_revoked(X509_CRL *crl, const cf_crl_entry *e)
{
	X509_REVOKED *rev = NULL;
	BIGNUM *bn = NULL;
	ASN1_INTEGER *serial = NULL;
	ASN1_TIME *when = NULL;
	ASN1_ENUMERATED *reason = NULL;
	size_t i, len = e->serial ? strlen(e->serial) : 0;
	int r = CF_EINVAL;

	for (i = 0; i < len; i++) {
		if (!((e->serial[i] >= '0' && e->serial[i] <= '9') ||
		    (e->serial[i] >= 'a' && e->serial[i] <= 'f') ||
		    (e->serial[i] >= 'A' && e->serial[i] <= 'F')))
			break;
	}
	if (len == 0 || len > 40 || i != len) {
		cf_error_set("serial '%s' is not 1 to 40 hex digits", e->serial ? e->serial : "");
		goto out;
	}
	if (strcmp(cf_pki_reason_name(e->reason), "unknown") == 0) {
		cf_error_set("revocation reason %d is not a valid CRL reason", e->reason);
		goto out;
	}
	r = CF_ERROR;
	if (!BN_hex2bn(&bn, e->serial) || (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    (when = ASN1_TIME_set(NULL, (time_t)(e->revoked_at ? e->revoked_at :
	    cf_time_now()))) == NULL || (rev = X509_REVOKED_new()) == NULL ||
	    !X509_REVOKED_set_serialNumber(rev, serial) ||
	    !X509_REVOKED_set_revocationDate(rev, when))
		goto ssl;
	/* RFC 5280 §5.3.1: leave the extension out rather than say "unspecified". */
	if (e->reason != 0 && ((reason = ASN1_ENUMERATED_new()) == NULL ||
	    !ASN1_ENUMERATED_set(reason, e->reason) ||
	    !X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0)))
		goto ssl;
	if (!X509_CRL_add0_revoked(crl, rev))
		goto ssl;
	rev = NULL;
	r = 0;
	goto out;
ssl:
	cf_error_ssl("cannot add serial %s to the CRL", e->serial);
out:
	ASN1_ENUMERATED_free(reason);
	ASN1_TIME_free(when);
	ASN1_INTEGER_free(serial);
	BN_free(bn);
	X509_REVOKED_free(rev);
	return r;
}

int
cf_pki_make_crl(char **out_pem, const cf_cert *ca, const cf_key *ca_key,
    const cf_crl_entry *entries, size_t n, int64_t crl_number, int next_update_days)
{
	int r = CF_EINVAL;
	X509_CRL *crl = NULL;
	ASN1_TIME *tm = NULL;
	ASN1_INTEGER *num = NULL;
	X509_EXTENSION *ext = NULL;
	const EVP_MD *md = NULL;
	X509V3_CTX ctx;
	BIO *bio = NULL;
	time_t now = (time_t)cf_time_now();
	size_t i;

	if (crl_number < 0 || !days_valid(next_update_days) || (n > 0 && entries == NULL)) {
		if (crl_number < 0)
			cf_error_set("CRL number %lld is negative", (long long)crl_number);
		else if (n > 0 && entries == NULL)
			cf_error_set("no CRL entries given");
		goto out;
	}
	if ((r = check_issuer(ca->x509, ca_key->pkey)) != 0 || (r = ca_md(&md, ca_key->pkey)) != 0)
		goto out;
	r = CF_ERROR;
	if ((crl = X509_CRL_new()) == NULL || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
	    !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->x509)) ||
	    (tm = ASN1_TIME_set(NULL, now)) == NULL || !X509_CRL_set1_lastUpdate(crl, tm) ||
	    X509_time_adj_ex(tm, next_update_days, 0, &now) == NULL ||
	    !X509_CRL_set1_nextUpdate(crl, tm)) {
		cf_error_ssl("cannot build the CRL");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((r = add_revoked(crl, &entries[i])) != 0)
			goto out;
	}
	r = CF_ERROR;
	X509V3_set_ctx(&ctx, ca->x509, NULL, NULL, crl, 0);
	if ((num = ASN1_INTEGER_new()) == NULL || !ASN1_INTEGER_set_int64(num, crl_number) ||
	    !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) ||
	    (ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier,
	    "keyid:always")) == NULL || !X509_CRL_add_ext(crl, ext, -1) || !X509_CRL_sort(crl) ||
	    X509_CRL_sign(crl, ca_key->pkey, md) <= 0) {
		cf_error_ssl("cannot sign the CRL");
		goto out;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509_CRL(bio, crl) != 1) {
		cf_error_ssl("cannot encode the CRL");
		goto out;
	}
	r = cf_pki_bio_to_string(out_pem, bio);
out:
	BIO_free(bio);
	X509_EXTENSION_free(ext);
	ASN1_INTEGER_free(num);
	ASN1_TIME_free(tm);
	X509_CRL_free(crl);
	return r;
}

/* ---- verification --------------------------------------------------------- */

static int
add_crls(X509_STORE *store, const char *pem)
{
	BIO *bio = NULL;
	X509_CRL *crl = NULL;
	int r = CF_ERROR, n = 0;

	if ((r = cf_pki_bio_over(&bio, pem, strlen(pem))) != 0)
		goto out;
	r = CF_ERROR;
	for (;;) {
		ERR_set_mark();
		if ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) == NULL) {
			if (cf_pki_pem_bundle_end((size_t)n))
				break;
			r = CF_EINVAL;
			cf_error_ssl("malformed CRL %d", n + 1);
			goto out;
		}
		ERR_clear_last_mark();
		if (!X509_STORE_add_crl(store, crl)) {
			cf_error_ssl("cannot use CRL %d", n + 1);
			goto out;
		}
		X509_CRL_free(crl);
		crl = NULL;
		n++;
	}
	r = 0;
out:
	X509_CRL_free(crl);
	BIO_free(bio);
	return r;
}

int
cf_pki_verify_chain(const cf_cert *leaf, cf_cert *const *intermediates, size_t n_int,
    cf_cert *const *roots, size_t n_roots, const char *crls_pem, int64_t at, int client_auth)
{
	int r = CF_ERROR, err, ok;
	X509 *x, *leaf_x = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	unsigned long flags = 0;
	char cn[256];
	size_t i;

	if (n_roots == 0) {
		r = CF_EINVAL;
		cf_error_set("no trusted root to verify against");
		goto out;
	}
	if ((store = X509_STORE_new()) == NULL || (untrusted = sk_X509_new_null()) == NULL ||
	    (ctx = X509_STORE_CTX_new()) == NULL) {
		cf_error_ssl("out of memory");
		goto out;
	}
	/* OpenSSL's verifier needs every key decoded (see copy_pubkey). */
	for (i = 0; i < n_roots; i++) {
		x = cf_pki_x509_complete(roots[i]->x509);
		ok = x != NULL && X509_STORE_add_cert(store, x);
		X509_free(x);
		if (!ok) {
			cf_error_ssl("cannot use root %zu", i + 1);
			goto out;
		}
	}
	for (i = 0; i < n_int; i++) {
		x = cf_pki_x509_complete(intermediates[i]->x509);
		if (x == NULL || !X509_add_cert(untrusted, x, 0)) {
			X509_free(x);
			cf_error_ssl("cannot use intermediate %zu", i + 1);
			goto out;
		}
	}
	if ((leaf_x = cf_pki_x509_complete(leaf->x509)) == NULL) {
		cf_error_ssl("cannot use the certificate");
		goto out;
	}
	if (crls_pem != NULL) {
		if ((r = add_crls(store, crls_pem)) != 0)
			goto out;
		r = CF_ERROR;
		flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
	}
	if (!X509_STORE_CTX_init(ctx, store, leaf_x, untrusted)) {
		cf_error_ssl("cannot set up verification");
		goto out;
	}
	if (flags)
		X509_STORE_CTX_set_flags(ctx, flags);
	if (at != 0)
		X509_STORE_CTX_set_time(ctx, 0, (time_t)at);
	if (client_auth && !X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT)) {
		cf_error_ssl("cannot require clientAuth");
		goto out;
	}
	if (X509_verify_cert(ctx) != 1) {
		err = X509_STORE_CTX_get_error(ctx);
		cf_pki_name_cn(cn, sizeof(cn), X509_STORE_CTX_get_current_cert(ctx) ?
		    X509_get_subject_name(X509_STORE_CTX_get_current_cert(ctx)) : NULL);
		cf_error_set("%s (depth %d%s%s)", X509_verify_cert_error_string(err),
		    X509_STORE_CTX_get_error_depth(ctx), cn[0] ? ", " : "", cn);
		ERR_clear_error();
		r = CF_EREJECTED;
		goto out;
	}
	r = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_free(leaf_x);
	sk_X509_pop_free(untrusted, X509_free);
	X509_STORE_free(store);
	return r;
}
