/*
 * cf_pki_p11 — cf_p11 (cf_p11.h): key pairs in a PKCS#11 token.
 *
 * Two routes into one module, on purpose. Object management (generate,
 * import, list, destroy, attribute checks) calls the module's PKCS#11
 * functions directly: libp11 0.4.12 cannot generate EC keys nor set the
 * attributes we need. Signing goes through OpenSSL's "pkcs11" engine
 * (libp11), because it yields an EVP_PKEY that the rest of cf_pki and
 * libmosquitto's TLS (MOSQ_OPT_TLS_ENGINE) use unchanged. Both routes load
 * the same shared object, so they share the module's state; the module is
 * initialised once (CKR_CRYPTOKI_ALREADY_INITIALIZED is fine) and never
 * finalised, which would close the engine's sessions as well.
 *
 * Every key pair gets a fresh random CKA_ID and its URI names that id: the
 * engine caches keys by handle, and a generation number can be reused
 * after a rollback, so a label alone could name a destroyed key.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* the ENGINE API: Debian 12 has no pkcs11-provider */

#include "cf_p11.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <p11-kit/pkcs11.h>

#include "cf_pki_int.h"
#include "cf_util.h"

#define P11_LABEL_MAX 128

struct cf_p11 {
	void *dl;
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE s;
	int have_session;
	char token[33];
	ENGINE *e; /* a functional reference to "pkcs11", held while open */
};

/* DER OIDs of the curves (CKA_EC_PARAMS). */
static const unsigned char oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const unsigned char oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const unsigned char oid_p521[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 };

static const struct {
	const char *group; /* OpenSSL's group name */
	const unsigned char *oid;
	size_t oid_len;
	size_t field; /* bytes of a scalar */
} curves[] = {
	{ "prime256v1", oid_p256, sizeof(oid_p256), 32 },
	{ "secp384r1", oid_p384, sizeof(oid_p384), 48 },
	{ "secp521r1", oid_p521, sizeof(oid_p521), 66 },
};

static int
ck_fail(const char *what, CK_RV rv)
{
	cf_error_set("PKCS#11 %s failed (CKR 0x%lx)", what, (unsigned long)rv);
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE ? CF_EPASS : CF_ERROR;
}

/* ---- opening ------------------------------------------------------------- */

static int
find_slot(CK_SLOT_ID *out, cf_p11 *p, const char *label)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO ti;
	CK_RV rv;
	char have[33];
	size_t len;
	int r = CF_ENOTFOUND;

	if ((rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK)
		return ck_fail("C_GetSlotList", rv);
	if (n == 0 || (slots = calloc(n, sizeof(*slots))) == NULL)
		goto out;
	if ((rv = p->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
		r = ck_fail("C_GetSlotList", rv);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(have, ti.label, 32);
		for (len = 32; len > 0 && have[len - 1] == ' '; len--)
			;
		have[len] = '\0';
		if (strcmp(have, label) == 0) {
			*out = slots[i];
			r = 0;
			goto out;
		}
	}
out:
	if (r == CF_ENOTFOUND)
		cf_error_set("no PKCS#11 token labelled '%s'", label);
	free(slots);
	return r;
}

/*
 * The process's "pkcs11" engine, initialised once and never finished: when
 * its last functional reference goes, libp11 unloads the module with
 * C_Finalize, which ends every session of the process (ours included) and
 * leaves tpm2-pkcs11 unable to find keys made afterwards. The one piece of
 * process-wide state here, as the module itself is.
 */
static ENGINE *engine_held;

/* The engine, configured with the module and PIN (a later open updates the PIN). */
static int
engine_open(cf_p11 *p, const char *module, const char *pin)
{
	ENGINE *e;
	char path[1024];
	const char *dir = OpenSSL_version(OPENSSL_ENGINES_DIR), *q;

	if (engine_held != NULL) {
		if (!ENGINE_ctrl_cmd_string(engine_held, "PIN", pin, 0)) {
			cf_error_ssl("cannot give the pkcs11 engine the PIN");
			return CF_ERROR;
		}
		p->e = engine_held;
		return 0;
	}

	/*
	 * Pin the engine's shared object (RTLD_NODELETE): OpenSSL unloads it at
	 * exit, and libp11 0.4.12 keeps its RSA/EC methods in statics it never
	 * frees, which would turn them into leaks under LeakSanitizer.
	 */
	if ((q = strchr(dir, '"')) != NULL && cf_strfmt(path, sizeof(path), "%.*s/pkcs11.so",
	    (int)strcspn(q + 1, "\""), q + 1) == 0)
		(void)dlopen(path, RTLD_NOW | RTLD_NODELETE);
	ENGINE_load_builtin_engines();
	if ((e = ENGINE_by_id("pkcs11")) == NULL) {
		cf_error_ssl("OpenSSL engine 'pkcs11' not found (install libengine-pkcs11-openssl)");
		return CF_ERROR;
	}
	/* MODULE_PATH only applies before the first ENGINE_init: one module per process. */
	if (!ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) ||
	    !ENGINE_ctrl_cmd_string(e, "PIN", pin, 0) || !ENGINE_init(e)) {
		cf_error_ssl("cannot set up the pkcs11 engine with %s", module);
		ENGINE_free(e);
		return CF_ERROR;
	}
	ENGINE_free(e); /* keep the functional reference ENGINE_init took, for good */
	engine_held = e;
	p->e = e;
	return 0;
}

int
cf_p11_open(cf_p11 **out, const char *module, const char *token, const char *pin)
{
	cf_p11 *p = NULL;
	CK_C_GetFunctionList gfl;
	CK_C_INITIALIZE_ARGS args;
	CK_SLOT_ID slot;
	CK_RV rv;
	int r = CF_ERROR;

	if (strlen(token) > 32) {
		cf_error_set("PKCS#11 token label '%s' is longer than 32 bytes", token);
		return CF_EINVAL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	memcpy(p->token, token, strlen(token) + 1);
	if ((p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		cf_error_set("PKCS#11 module %s: %s", module, dlerror());
		r = CF_ENOTFOUND;
		goto out;
	}
	*(void **)&gfl = dlsym(p->dl, "C_GetFunctionList");
	if (gfl == NULL || gfl(&p->f) != CKR_OK || p->f == NULL) {
		cf_error_set("%s is not a PKCS#11 module (no C_GetFunctionList)", module);
		goto out;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = p->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		r = ck_fail("C_Initialize", rv);
		goto out;
	}
	if ((r = find_slot(&slot, p, token)) != 0)
		goto out;
	if ((rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	    &p->s)) != CKR_OK) {
		r = ck_fail("C_OpenSession", rv);
		goto out;
	}
	p->have_session = 1;
	rv = p->f->C_Login(p->s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		r = ck_fail("C_Login", rv);
		cf_error_prefix("token '%s'", token);
		goto out;
	}
	if ((r = engine_open(p, module, pin)) != 0)
		goto out;
	*out = p;
	p = NULL;
	r = 0;
out:
	cf_p11_free(p);
	return r;
}

void
cf_p11_free(cf_p11 *p)
{
	if (p == NULL)
		return;
	if (p->have_session)
		(void)p->f->C_CloseSession(p->s);
	/* Neither C_Finalize, dlclose nor ENGINE_finish: the engine shares the module (see the top). */
	free(p);
}

int
cf_p11_pin_read(char **out, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		cf_error_set("PIN file %s: %s", path, strerror(errno));
		return errno == ENOENT ? CF_ENOTFOUND : CF_ERROR;
	}
	if (!S_ISREG(st.st_mode)) {
		cf_error_set("PIN file %s: not a regular file", path);
		return CF_EINVAL;
	}
	if ((st.st_mode & 0027) != 0) {
		cf_error_set("PIN file %s has mode %04o: a PIN file must not be readable by others "
		    "nor writable by its group (chmod 600 it)", path, (unsigned)(st.st_mode & 07777));
		return CF_EINVAL;
	}
	return cf_passphrase_read(out, path, NULL, 0, 1);
}

/* ---- URIs ------------------------------------------------------------------ */

/* Appends s percent-encoded (RFC 7512: everything but unreserved characters). */
static int
uri_put(char *out, size_t len, size_t *pos, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			if (*pos + 1 >= len)
				goto full;
			out[(*pos)++] = (char)c;
		} else {
			if (*pos + 3 >= len)
				goto full;
			out[(*pos)++] = '%';
			out[(*pos)++] = hex[c >> 4];
			out[(*pos)++] = hex[c & 15];
		}
	}
	out[*pos] = '\0';
	return 0;
full:
	cf_error_set("PKCS#11 URI too long");
	return CF_EINVAL;
}

static int
make_uri(char *out, size_t len, const cf_p11 *p, const unsigned char *id, size_t id_len,
    const char *label)
{
	size_t pos = 0;
	int r;

	if ((r = cf_strfmt(out, len, "pkcs11:token=")) != 0)
		return r;
	pos = strlen(out);
	if ((r = uri_put(out, len, &pos, (const unsigned char *)p->token, strlen(p->token))) != 0)
		return r;
	if ((r = cf_strfmt(out + pos, len - pos, ";id=")) != 0)
		return r;
	pos = strlen(out);
	/* id as %XX for every byte: RFC 7512 form that every parser accepts. */
	for (size_t i = 0; i < id_len; i++) {
		if (pos + 3 >= len) {
			cf_error_set("PKCS#11 URI too long");
			return CF_EINVAL;
		}
		pos += (size_t)snprintf(out + pos, len - pos, "%%%02X", id[i]);
	}
	if ((r = cf_strfmt(out + pos, len - pos, ";object=")) != 0)
		return r;
	pos = strlen(out);
	if ((r = uri_put(out, len, &pos, (const unsigned char *)label, strlen(label))) != 0)
		return r;
	return cf_strfmt(out + pos, len - pos, ";type=private");
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
cf_p11_uri_attr(char *out, size_t len, const char *uri, const char *attr)
{
	const char *q, *end;
	size_t alen = strlen(attr), n = 0;
	int hi, lo;

	if (strncmp(uri, "pkcs11:", 7) != 0) {
		cf_error_set("'%s' is not a pkcs11: URI", uri);
		return CF_EINVAL;
	}
	/* The path part ends at '?' (query attributes such as pin-source are not looked at). */
	for (q = uri + 7; *q != '\0' && *q != '?'; q = *end == ';' ? end + 1 : end) {
		end = q + strcspn(q, ";?");
		if ((size_t)(end - q) <= alen || strncmp(q, attr, alen) != 0 || q[alen] != '=')
			continue;
		for (q += alen + 1; q < end; q++) {
			if (n + 1 >= len)
				goto bad;
			if (*q != '%') {
				out[n++] = *q;
				continue;
			}
			if (q + 2 >= end || (hi = hexval(q[1])) < 0 || (lo = hexval(q[2])) < 0)
				goto bad;
			out[n++] = (char)(hi * 16 + lo);
			q += 2;
		}
		out[n] = '\0';
		return 0;
	}
	cf_error_set("the pkcs11: URI has no '%s' attribute", attr);
	return CF_ENOTFOUND;
bad:
	cf_error_set("the '%s' attribute of the pkcs11: URI is malformed or too long", attr);
	return CF_EINVAL;
}

int
cf_p11_uri(char *out, size_t len, const cf_p11 *p, const char *label)
{
	size_t pos;
	int r;

	if ((r = cf_strfmt(out, len, "pkcs11:token=")) != 0)
		return r;
	pos = strlen(out);
	if ((r = uri_put(out, len, &pos, (const unsigned char *)p->token, strlen(p->token))) != 0 ||
	    (r = cf_strfmt(out + pos, len - pos, ";object=")) != 0)
		return r;
	pos = strlen(out);
	if ((r = uri_put(out, len, &pos, (const unsigned char *)label, strlen(label))) != 0)
		return r;
	return cf_strfmt(out + pos, len - pos, ";type=private");
}

/* ---- objects --------------------------------------------------------------- */

static int
check_label(const char *label)
{
	if (label == NULL || label[0] == '\0' || strlen(label) >= P11_LABEL_MAX) {
		cf_error_set("PKCS#11 object label empty or too long");
		return CF_EINVAL;
	}
	return 0;
}

static int
curve_of(cf_key_alg alg)
{
	switch (alg) {
	case CF_KEY_P256:
		return 0;
	case CF_KEY_P384:
		return 1;
	case CF_KEY_P521:
		return 2;
	default:
		return -1;
	}
}

int
cf_p11_generate(char *uri_out, size_t uri_len, cf_p11 *p, const char *label, cf_key_alg alg)
{
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 0;
	CK_BYTE exp[] = { 0x01, 0x00, 0x01 };
	CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hpub, hpriv;
	unsigned char id[CF_P11_ID_LEN];
	CK_ULONG label_len;
	CK_RV rv;
	int r, c;

	if ((r = check_label(label)) != 0)
		return r;
	label_len = (CK_ULONG)strlen(label);
	if ((r = cf_random_bytes(id, sizeof(id))) != 0)
		return r;
	CK_ATTRIBUTE pub[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, label_len },
		{ CKA_ID, id, sizeof(id) },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) }, /* or CKA_EC_PARAMS, set below */
		{ CKA_PUBLIC_EXPONENT, exp, sizeof(exp) },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, label_len },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_ULONG npub = sizeof(pub) / sizeof(pub[0]);

	switch (alg) {
	case CF_KEY_RSA2048:
		bits = 2048;
		break;
	case CF_KEY_RSA3072:
		bits = 3072;
		break;
	case CF_KEY_P256:
	case CF_KEY_P384:
	case CF_KEY_P521:
		c = curve_of(alg);
		mech.mechanism = CKM_EC_KEY_PAIR_GEN;
		pub[5].type = CKA_EC_PARAMS;
		pub[5].pValue = (void *)curves[c].oid;
		pub[5].ulValueLen = (CK_ULONG)curves[c].oid_len;
		npub--; /* no public exponent */
		break;
	default:
		cf_error_set("key algorithm %s is not supported in a PKCS#11 token (libp11's engine "
		    "cannot sign with it)", cf_key_alg_name(alg));
		return CF_EINVAL;
	}
	rv = p->f->C_GenerateKeyPair(p->s, &mech, pub, npub, priv, sizeof(priv) / sizeof(priv[0]),
	    &hpub, &hpriv);
	if (rv != CKR_OK) {
		r = ck_fail("C_GenerateKeyPair", rv);
		cf_error_prefix("%s key in token '%s'", cf_key_alg_name(alg), p->token);
		return r;
	}
	return make_uri(uri_out, uri_len, p, id, sizeof(id), label);
}

/* Big-endian bytes of an OpenSSL BIGNUM parameter of pkey, left-padded to pad (0: natural). */
static int
bn_param(unsigned char **out, size_t *out_len, const EVP_PKEY *pkey, const char *name, size_t pad)
{
	BIGNUM *bn = NULL;
	size_t n;
	int r = CF_ERROR;

	*out = NULL;
	if (!EVP_PKEY_get_bn_param(pkey, name, &bn)) {
		cf_error_ssl("key parameter %s", name);
		goto out;
	}
	n = (size_t)BN_num_bytes(bn);
	if (pad < n)
		pad = n;
	if (pad == 0)
		pad = 1;
	if ((*out = OPENSSL_secure_zalloc(pad)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	if (BN_bn2binpad(bn, *out, (int)pad) < 0) {
		cf_error_ssl("key parameter %s", name);
		goto out;
	}
	*out_len = pad;
	r = 0;
out:
	BN_clear_free(bn);
	if (r != 0) {
		OPENSSL_secure_clear_free(*out, pad);
		*out = NULL;
	}
	return r;
}

#define IMPORT_MAX 8

int
cf_p11_import(char *uri_out, size_t uri_len, cf_p11 *p, const char *label, const cf_key *key)
{
	static const char *const rsa_names[IMPORT_MAX] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
		OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	static const CK_ATTRIBUTE_TYPE rsa_types[IMPORT_MAX] = {
		CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,
		CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT,
	};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY, cpub = CKO_PUBLIC_KEY;
	CK_KEY_TYPE kt;
	CK_OBJECT_HANDLE h;
	CK_ATTRIBUTE priv[9 + IMPORT_MAX], pub[6 + 2];
	CK_ULONG npriv = 0, npub = 0, label_len;
	unsigned char id[CF_P11_ID_LEN], *val[IMPORT_MAX] = { NULL }, pt[200], point[203];
	size_t vlen[IMPORT_MAX] = { 0 }, nval = 0, ptlen = 0, pointlen = 0, i;
	char group[64];
	int r = CF_ERROR, c = -1;
	cf_family fam = cf_pki_family_of(key->pkey);
	CK_RV rv;

	if ((r = check_label(label)) != 0 || (r = cf_random_bytes(id, sizeof(id))) != 0)
		return r;
	r = CF_ERROR;
	label_len = (CK_ULONG)strlen(label);
#define ADD(a, t, v, l) \
	do { \
		a[n##a].type = (t); \
		a[n##a].pValue = (void *)(v); \
		a[n##a].ulValueLen = (CK_ULONG)(l); \
		n##a++; \
	} while (0)
	if (fam == CF_FAMILY_RSA) {
		kt = CKK_RSA;
		for (nval = 0; nval < IMPORT_MAX; nval++)
			if ((r = bn_param(&val[nval], &vlen[nval], key->pkey, rsa_names[nval], 0)) != 0)
				goto out;
		for (i = 0; i < IMPORT_MAX; i++)
			ADD(priv, rsa_types[i], val[i], vlen[i]);
		ADD(pub, CKA_MODULUS, val[0], vlen[0]);
		ADD(pub, CKA_PUBLIC_EXPONENT, val[1], vlen[1]);
	} else if (fam == CF_FAMILY_EC) {
		kt = CKK_EC;
		if (!EVP_PKEY_get_utf8_string_param(key->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		    sizeof(group), NULL)) {
			cf_error_ssl("EC key without a named curve");
			goto out;
		}
		for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
			if (strcmp(curves[i].group, group) == 0)
				c = (int)i;
		if (c < 0) {
			cf_error_set("curve %s cannot be imported into a token", group);
			r = CF_EINVAL;
			goto out;
		}
		if ((r = bn_param(&val[0], &vlen[0], key->pkey, OSSL_PKEY_PARAM_PRIV_KEY,
		    curves[c].field)) != 0)
			goto out;
		nval = 1;
		r = CF_ERROR;
		if (!EVP_PKEY_get_octet_string_param(key->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
		    sizeof(pt), &ptlen) || ptlen > 200) {
			cf_error_ssl("EC public point");
			goto out;
		}
		/* CKA_EC_POINT is the DER OCTET STRING around the uncompressed point. */
		point[0] = 0x04;
		if (ptlen < 128) {
			point[1] = (unsigned char)ptlen;
			pointlen = 2;
		} else {
			point[1] = 0x81;
			point[2] = (unsigned char)ptlen;
			pointlen = 3;
		}
		memcpy(point + pointlen, pt, ptlen);
		pointlen += ptlen;
		ADD(priv, CKA_EC_PARAMS, curves[c].oid, curves[c].oid_len);
		ADD(priv, CKA_VALUE, val[0], vlen[0]);
		ADD(pub, CKA_EC_PARAMS, curves[c].oid, curves[c].oid_len);
		ADD(pub, CKA_EC_POINT, point, pointlen);
	} else {
		cf_error_set("only RSA and EC keys can be imported into a token");
		r = CF_EINVAL;
		goto out;
	}
	ADD(priv, CKA_CLASS, &cpriv, sizeof(cpriv));
	ADD(priv, CKA_KEY_TYPE, &kt, sizeof(kt));
	ADD(priv, CKA_TOKEN, &yes, sizeof(yes));
	ADD(priv, CKA_PRIVATE, &yes, sizeof(yes));
	ADD(priv, CKA_SENSITIVE, &yes, sizeof(yes));
	ADD(priv, CKA_EXTRACTABLE, &no, sizeof(no));
	ADD(priv, CKA_SIGN, &yes, sizeof(yes));
	ADD(priv, CKA_LABEL, label, label_len);
	ADD(priv, CKA_ID, id, sizeof(id));
	ADD(pub, CKA_CLASS, &cpub, sizeof(cpub));
	ADD(pub, CKA_KEY_TYPE, &kt, sizeof(kt));
	ADD(pub, CKA_TOKEN, &yes, sizeof(yes));
	ADD(pub, CKA_VERIFY, &yes, sizeof(yes));
	ADD(pub, CKA_LABEL, label, label_len);
	ADD(pub, CKA_ID, id, sizeof(id));
#undef ADD
	if ((rv = p->f->C_CreateObject(p->s, pub, npub, &h)) != CKR_OK ||
	    (rv = p->f->C_CreateObject(p->s, priv, npriv, &h)) != CKR_OK) {
		if (cf_p11_destroy(p, label) != 0) {
			/* the error that matters is the import's, set next */
		}
		r = ck_fail("C_CreateObject", rv);
		goto out;
	}
	r = make_uri(uri_out, uri_len, p, id, sizeof(id), label);
out:
	for (i = 0; i < nval; i++)
		OPENSSL_secure_clear_free(val[i], vlen[i]);
	cf_wipe(priv, sizeof(priv));
	return r;
}

/* Calls fn for every token object matching tmpl (n attributes). */
static int
each_object(cf_p11 *p, CK_ATTRIBUTE *tmpl, CK_ULONG n,
    int (*fn)(cf_p11 *p, CK_OBJECT_HANDLE h, void *arg), void *arg)
{
	CK_OBJECT_HANDLE hs[64];
	CK_ULONG got, i;
	CK_RV rv;
	int r = 0;

	/* Collect first, act afterwards: destroying inside a find operation is not portable. */
	if ((rv = p->f->C_FindObjectsInit(p->s, tmpl, n)) != CKR_OK)
		return ck_fail("C_FindObjectsInit", rv);
	rv = p->f->C_FindObjects(p->s, hs, sizeof(hs) / sizeof(hs[0]), &got);
	(void)p->f->C_FindObjectsFinal(p->s);
	if (rv != CKR_OK)
		return ck_fail("C_FindObjects", rv);
	for (i = 0; i < got && r == 0; i++)
		r = fn(p, hs[i], arg);
	return r;
}

static int
destroy_one(cf_p11 *p, CK_OBJECT_HANDLE h, void *arg)
{
	CK_RV rv;

	(*(int *)arg)++;
	if ((rv = p->f->C_DestroyObject(p->s, h)) != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID)
		return ck_fail("C_DestroyObject", rv);
	return 0;
}

int
cf_p11_destroy(cf_p11 *p, const char *label)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, (CK_ULONG)strlen(label) },
	};
	int r, n = 0;

	if ((r = check_label(label)) != 0)
		return r;
	/* A label holds a key pair; more than one batch only after many interrupted attempts. */
	do {
		n = 0;
		if ((r = each_object(p, t, 2, destroy_one, &n)) != 0)
			return r;
	} while (n == 64);
	/*
	 * Not followed by the engine's RE_ENUMERATE, although libp11 then keeps
	 * stale entries for modules that reuse handles (tpm2-pkcs11): it frees
	 * the key objects that live EVP_PKEYs still point to (a crash under
	 * tpm2-pkcs11, docs/pkcs11.md "TPM 2.0").
	 */
	return 0;
}

typedef struct {
	const char *prefix;
	int (*cb)(const char *label, void *arg);
	void *arg;
} list_ctx;

static int
list_one(cf_p11 *p, CK_OBJECT_HANDLE h, void *arg)
{
	list_ctx *c = arg;
	char label[P11_LABEL_MAX];
	CK_ATTRIBUTE a = { CKA_LABEL, label, sizeof(label) - 1 };

	if (p->f->C_GetAttributeValue(p->s, h, &a, 1) != CKR_OK ||
	    a.ulValueLen == (CK_ULONG)-1 || a.ulValueLen >= sizeof(label))
		return 0;
	label[a.ulValueLen] = '\0';
	if (strncmp(label, c->prefix, strlen(c->prefix)) != 0)
		return 0;
	return c->cb(label, c->arg);
}

int
cf_p11_list(cf_p11 *p, const char *prefix, int (*cb)(const char *label, void *arg), void *arg)
{
	CK_BBOOL yes = CK_TRUE;
	CK_ATTRIBUTE t[] = { { CKA_TOKEN, &yes, sizeof(yes) } };
	list_ctx c = { prefix, cb, arg };

	return each_object(p, t, 1, list_one, &c);
}

int
cf_p11_load_key(cf_key **out, cf_p11 *p, const char *uri)
{
	EVP_PKEY *pkey;
	cf_key *k;

	ERR_clear_error();
	if ((pkey = ENGINE_load_private_key(p->e, uri, NULL, NULL)) == NULL) {
		cf_error_ssl("no private key %s in the token", uri);
		return CF_ENOTFOUND;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		EVP_PKEY_free(pkey);
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	k->pkey = pkey;
	*out = k;
	return 0;
}

int
cf_p11_load_public(cf_key **out, cf_p11 *p, const char *uri)
{
	cf_key *priv = NULL, *k = NULL;
	unsigned char *der = NULL;
	const unsigned char *q;
	int len, r;

	if ((r = cf_p11_load_key(&priv, p, uri)) != 0)
		return r;
	r = CF_ERROR;
	if ((len = i2d_PUBKEY(priv->pkey, &der)) <= 0) {
		cf_error_ssl("public key of %s", uri);
		goto out;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	q = der;
	if ((k->pkey = d2i_PUBKEY(NULL, &q, len)) == NULL) {
		cf_error_ssl("public key of %s", uri);
		goto out;
	}
	*out = k;
	k = NULL;
	r = 0;
out:
	OPENSSL_free(der);
	free(k);
	cf_key_free(priv);
	return r;
}

int
cf_p11_tls_ctx(void **out, cf_p11 *p, const char *uri, const char *ca_file, const char *cert_file,
    const char *host)
{
	SSL_CTX *ctx = NULL;
	cf_key *key = NULL;
	X509_VERIFY_PARAM *vp;
	int r;

	if ((r = cf_p11_load_key(&key, p, uri)) != 0)
		return r;
	r = CF_ERROR;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		cf_error_ssl("TLS context");
		goto out;
	}
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		cf_error_ssl("TLS trust %s", ca_file);
		goto out;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		cf_error_ssl("TLS certificate %s", cert_file);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key->pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		cf_error_ssl("TLS key %s does not fit %s", uri, cert_file);
		goto out;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	vp = SSL_CTX_get0_param(ctx);
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 &&
	    X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1) {
		cf_error_ssl("TLS server name %s", host);
		goto out;
	}
	ERR_clear_error();
	*out = ctx;
	ctx = NULL;
	r = 0;
out:
	SSL_CTX_free(ctx);
	cf_key_free(key);
	return r;
}

void
cf_p11_tls_ctx_free(void *ctx)
{
	SSL_CTX_free(ctx);
}

/* ---- inspection ------------------------------------------------------------ */

static int
get_bool(cf_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t)
{
	CK_BBOOL v = CK_FALSE;
	CK_ATTRIBUTE a = { t, &v, sizeof(v) };

	if (p->f->C_GetAttributeValue(p->s, h, &a, 1) != CKR_OK)
		return -1;
	return v == CK_TRUE;
}

static int
attrs_one(cf_p11 *p, CK_OBJECT_HANDLE h, void *arg)
{
	cf_p11_key_attrs *o = arg;
	unsigned char buf[1024];
	CK_KEY_TYPE kt = 0;
	CK_ATTRIBUTE ka = { CKA_KEY_TYPE, &kt, sizeof(kt) };
	CK_ATTRIBUTE va = { CKA_VALUE, buf, sizeof(buf) };
	CK_RV rv;

	o->found = 1;
	o->token = get_bool(p, h, CKA_TOKEN);
	o->sensitive = get_bool(p, h, CKA_SENSITIVE);
	o->extractable = get_bool(p, h, CKA_EXTRACTABLE);
	o->always_sensitive = get_bool(p, h, CKA_ALWAYS_SENSITIVE);
	o->never_extractable = get_bool(p, h, CKA_NEVER_EXTRACTABLE);
	if (p->f->C_GetAttributeValue(p->s, h, &ka, 1) == CKR_OK && kt == CKK_RSA)
		va.type = CKA_PRIVATE_EXPONENT;
	rv = p->f->C_GetAttributeValue(p->s, h, &va, 1);
	o->value_rv = (unsigned long)rv;
	o->value_readable = rv == CKR_OK && va.ulValueLen != (CK_ULONG)-1;
	cf_wipe(buf, sizeof(buf));
	return 0;
}

int
cf_p11_key_attrs_get(cf_p11_key_attrs *out, cf_p11 *p, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, (CK_ULONG)strlen(label) },
	};

	memset(out, 0, sizeof(*out));
	return each_object(p, t, 2, attrs_one, out);
}

int
cf_p11_supports(cf_p11 *p, cf_key_alg alg)
{
	CK_MECHANISM_INFO mi;
	CK_SESSION_INFO si;
	CK_MECHANISM_TYPE m;

	switch (alg) {
	case CF_KEY_RSA2048:
	case CF_KEY_RSA3072:
		m = CKM_RSA_PKCS_KEY_PAIR_GEN;
		break;
	case CF_KEY_P256:
	case CF_KEY_P384:
	case CF_KEY_P521:
		m = CKM_EC_KEY_PAIR_GEN;
		break;
	default:
		return 0;
	}
	if (p->f->C_GetSessionInfo(p->s, &si) != CKR_OK ||
	    p->f->C_GetMechanismInfo(si.slotID, m, &mi) != CKR_OK)
		return 0;
	return (mi.flags & CKF_GENERATE_KEY_PAIR) != 0;
}
