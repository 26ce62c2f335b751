/*
 * cf_ca — a certfleet data directory and the CA operations on it.
 *
 * Owns: the directory layout (docs/cli.md), the cached online signer (the
 * issuing intermediate's certificate and key, wiped on close) and the
 * ordering that keeps files and registry consistent: CRLs are written
 * inside the registry transaction that revokes (so a crash can only leave
 * a CRL that revokes too much, never too little), and new directories are
 * built aside and renamed into place.
 */
#include "cf_ca.h"
#include "cf_p11.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_prov.h"
#include "cf_stamp.h"
#include "cf_util.h"

#define CF_CONF_FILE "certfleet.conf"
#define CF_DB_FILE "certfleet.db"
#define CF_CHAIN_FILE "ca-chain.crt"
#define CF_BROKER_TRUST "broker/ca.crt"
#define CF_INFRA_DAYS 825 /* broker and service certificates (clamped to the issuer) */
#define CF_ROOT_NAME "root"
#define CF_PATH_MAX 4096

struct cf_ca {
	char *dir;
	cf_config *cfg;
	cf_store *st;
	cf_keyq_policy *policy;
	long device_days;
	long crl_days;
	/* The online signer, loaded on first use. */
	char signer_id[CF_ID_LEN + 1];
	cf_cert *signer_cert;
	cf_key *signer_key;
	cf_p11 *p11; /* the token of a CA key named by a pkcs11: URI, opened on first use */
};

/* Every key certfleet.conf may hold; later modules add theirs here. */
static const char *const cf_conf_keys[] = {
	"database", "device_validity_days", "crl_next_update_days", "key_min_rsa_bits",
	"key_allowed_curves", "key_blocklist", "issuer_key", "issuer_passphrase_file",
	"mqtt_host", "mqtt_port", "api_host", "api_port", "topic_prefix", "log_level",
	"service_cert", "service_key", "broker_cafile", "stamp_key_file",
	"quarantine_group", "broker_config",
	"notify_webhook_url", "notify_webhook_secret_file", "notify_webhook_timeout", "notify_exec",
	"notify_exec_timeout", "notify_max_attempts", "notify_backoff",
	"audit_schedule", "audit_interval", "audit_checks", "audit_params", "mitigation_rule.*",
	"mitigation_rotate_key_algorithm", "mitigation_rotate_config", "pkcs11_module",
	"pkcs11_pin_file", "provision_sweep_s", NULL,
};

void
cf_ca_init_opts_default(cf_ca_init_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->root_cn = "certfleet root CA";
	o->intermediate_name = "issuing-1";
	o->key_alg = CF_KEY_P256;
	o->root_validity_days = 7300;
	o->intermediate_validity_days = 1825;
	o->device_validity_days = 365;
	o->mqtt_port = 8883;
	o->api_port = 8884;
}

/* dir + "/" + rel, or rel itself when absolute. */
static int
dpath(char *out, size_t len, const char *dir, const char *rel)
{
	if (rel[0] == '/')
		return cf_strfmt(out, len, "%s", rel);
	return cf_strfmt(out, len, "%s/%s", dir, rel);
}

static int
write_pem_file(const char *dir, const char *rel, const char *pem, mode_t mode)
{
	char path[CF_PATH_MAX];
	int r;

	if ((r = dpath(path, sizeof(path), dir, rel)) != 0)
		return r;
	return cf_file_write_atomic(path, pem, strlen(pem), mode);
}

static int
ca_rec_from_cert(cf_ca_rec *out, const cf_cert *cert, const char *name, cf_ca_role role,
    const char *parent_id, const char *key_ref)
{
	cf_cert_info info;
	cf_key_alg alg;
	cf_key *pub = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = cf_cert_info_get(&info, cert)) != 0 || (r = cf_cert_pubkey(&pub, cert)) != 0)
		goto out;
	memcpy(out->id, info.id, sizeof(out->id));
	memcpy(out->serial, info.serial, sizeof(out->serial));
	snprintf(out->name, sizeof(out->name), "%s", name);
	snprintf(out->parent_id, sizeof(out->parent_id), "%s", parent_id ? parent_id : "");
	snprintf(out->key_ref, sizeof(out->key_ref), "%s", key_ref);
	if (cf_key_alg_of(&alg, pub) == 0)
		snprintf(out->key_alg, sizeof(out->key_alg), "%s", cf_key_alg_name(alg));
	else
		snprintf(out->key_alg, sizeof(out->key_alg), "%s", info.key.type);
	out->key_bits = info.key.bits;
	out->role = role;
	out->status = CF_CERT_ACTIVE;
	out->not_before = info.not_before;
	out->not_after = info.not_after;
	r = cf_cert_to_pem(&out->pem, cert);
out:
	cf_key_free(pub);
	return r;
}

/*
 * Builds and writes the CRL of one CA: its revoked certificates and its
 * revoked child CAs, with the next CRL number. Runs in the store's current
 * transaction (or its own) so the number and the file agree.
 */
static int
write_crl(char **out, const char *dir, cf_store *st, const cf_ca_rec *rec, const cf_cert *cert,
    const cf_key *key, long days)
{
	int r = CF_ERROR;
	cf_cert_rec *certs = NULL;
	cf_ca_rec *cas = NULL;
	size_t n_certs = 0, n_cas = 0, n = 0, i;
	cf_crl_entry *entries = NULL;
	cf_cert_filter f = { .status = CF_CERT_REVOKED, .ca_id = rec->id };
	int64_t number;
	char *pem = NULL, rel[CF_PATH_MAX], detail[256];

	if ((r = cf_store_begin(st)) != 0)
		return r;
	if ((r = cf_store_cert_list(st, &certs, &n_certs, &f)) != 0 ||
	    (r = cf_store_ca_list(st, &cas, &n_cas)) != 0)
		goto out;
	if ((entries = calloc(n_certs + n_cas + 1, sizeof(*entries))) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	for (i = 0; i < n_certs; i++)
		entries[n++] = (cf_crl_entry){ certs[i].serial, certs[i].revoked_at,
			certs[i].revoke_reason };
	for (i = 0; i < n_cas; i++)
		if (cas[i].status == CF_CERT_REVOKED && strcmp(cas[i].parent_id, rec->id) == 0)
			entries[n++] = (cf_crl_entry){ cas[i].serial, cas[i].revoked_at,
				cas[i].revoke_reason };
	if ((r = cf_store_ca_next_crl_number(st, &number, rec->id)) != 0 ||
	    (r = cf_pki_make_crl(&pem, cert, key, entries, n, number, (int)days)) != 0 ||
	    (r = cf_strfmt(rel, sizeof(rel), "crl/%s.crl.pem", rec->name)) != 0 ||
	    (r = write_pem_file(dir, rel, pem, 0644)) != 0)
		goto out;
	snprintf(detail, sizeof(detail), "{\"ca\":\"%s\",\"crlNumber\":%lld,\"entries\":%zu}",
	    rec->name, (long long)number, n);
	if ((r = cf_store_event_append(st, "crl.published", rec->id, detail)) != 0 ||
	    (r = cf_store_commit(st)) != 0)
		goto out;
	if (out != NULL) {
		*out = pem;
		pem = NULL;
	}
	r = 0;
out:
	if (r != 0)
		cf_store_rollback(st);
	free(pem);
	free(entries);
	cf_cert_recs_free(certs, n_certs);
	cf_ca_recs_free(cas, n_cas);
	return r;
}

static int
make_secret_hex(char **out)
{
	unsigned char raw[32];
	char *hex;
	size_t i;

	if (cf_random_bytes(raw, sizeof(raw)) != 0)
		return CF_ERROR;
	if ((hex = malloc(sizeof(raw) * 2 + 2)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	for (i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	cf_wipe(raw, sizeof(raw));
	*out = hex;
	return 0;
}

/* ---- keys in a PKCS#11 token (docs/pkcs11.md) ------------------------------ */

static int
is_p11(const char *ref)
{
	return ref != NULL && strncmp(ref, "pkcs11:", 7) == 0;
}

/* Opens the token that uri names, with module and the PIN in pin_file. */
static int
open_token(cf_p11 **out, const char *module, const char *pin_file, const char *uri)
{
	char token[64], *pin = NULL;
	int r;

	if (module == NULL || *module == '\0' || pin_file == NULL || *pin_file == '\0') {
		cf_error_set("a CA key in a PKCS#11 token needs pkcs11_module and pkcs11_pin_file "
		    "in certfleet.conf");
		return CF_EINVAL;
	}
	if ((r = cf_p11_uri_attr(token, sizeof(token), uri, "token")) != 0 ||
	    (r = cf_p11_pin_read(&pin, pin_file)) != 0)
		return r;
	r = cf_p11_open(out, module, token, pin);
	cf_secret_free(pin, 0);
	return r;
}

/* The data directory's token (certfleet.conf's module and PIN file), kept open. */
static int
ca_token(cf_ca *ca, const char *uri)
{
	char module[CF_PATH_MAX], pin[CF_PATH_MAX];
	const char *m = cf_config_get(ca->cfg, "pkcs11_module");
	const char *pf = cf_config_get(ca->cfg, "pkcs11_pin_file");
	int r;

	if (ca->p11 != NULL)
		return 0;
	if (m == NULL || pf == NULL)
		return open_token(&ca->p11, NULL, NULL, uri);
	if ((r = dpath(module, sizeof(module), ca->dir, m)) != 0 ||
	    (r = dpath(pin, sizeof(pin), ca->dir, pf)) != 0)
		return r;
	return open_token(&ca->p11, module, pin, uri);
}

/*
 * The CA key uri names, generated in the token (as alg, labelled with the
 * URI's object=) when there is none; the URI to record (with the key's
 * CKA_ID when generated) goes to uri_out.
 */
static int
token_ca_key(cf_key **out, char *uri_out, size_t len, cf_p11 *p, const char *uri, cf_key_alg alg)
{
	char label[128];
	int r;

	if ((r = cf_p11_load_key(out, p, uri)) != CF_ENOTFOUND)
		return r != 0 ? r : cf_strfmt(uri_out, len, "%s", uri);
	if ((r = cf_p11_uri_attr(label, sizeof(label), uri, "object")) != 0) {
		cf_error_prefix("no key %s in the token, and nothing to label a new one", uri);
		return r;
	}
	if ((r = cf_p11_generate(uri_out, len, p, label, alg)) != 0)
		return r;
	return cf_p11_load_key(out, p, uri_out);
}

static int
write_conf(const char *dir, const cf_ca_init_opts *o)
{
	char text[4096];
	int r;

	if ((r = cf_strfmt(text, sizeof(text),
	    "# certfleet data directory configuration (docs/config.md).\n"
	    "# Paths are relative to this directory.\n"
	    "database = " CF_DB_FILE "\n"
	    "device_validity_days = %d\n"
	    "crl_next_update_days = 7\n"
	    "key_min_rsa_bits = 2048\n"
	    "key_allowed_curves = P-256,P-384,P-521\n"
	    "# key_blocklist = blocklist.txt\n"
	    "# The online signer is the issuing intermediate recorded in the database.\n"
	    "# issuer_key / issuer_passphrase_file override where its key is read from;\n"
	    "# a root CA key is always refused here.\n"
	    "\n"
	    "# The broker and certfleetd (docs/broker.md).\n"
	    "mqtt_host = 127.0.0.1\n"
	    "mqtt_port = %d\n"
	    "api_host = 127.0.0.1\n"
	    "api_port = %d\n"
	    "topic_prefix = cf/\n"
	    "log_level = info\n"
	    "service_cert = service/certfleetd.crt\n"
	    "service_key = service/certfleetd.key\n"
	    "broker_cafile = " CF_CHAIN_FILE "\n"
	    "stamp_key_file = private/stamp.key\n"
	    "%s%s%s%s%s%s", o->device_validity_days, o->mqtt_port, o->api_port,
	    o->pkcs11_uri ? "\n# The issuing CA's key is in a PKCS#11 token (docs/pkcs11.md).\n" : "",
	    o->pkcs11_uri ? "pkcs11_module = " : "", o->pkcs11_uri ? o->pkcs11_module : "",
	    o->pkcs11_uri ? "\npkcs11_pin_file = " : "", o->pkcs11_uri ? o->pkcs11_pin_file : "",
	    o->pkcs11_uri ? "\n" : "")) != 0)
		return r;
	return write_pem_file(dir, CF_CONF_FILE, text, 0600);
}

static int
write_chain(const char *dir, const cf_ca_rec *inter, const cf_ca_rec *root)
{
	char *chain = NULL;
	size_t a = strlen(inter->pem), b = strlen(root->pem);
	int r;

	if ((chain = malloc(a + b + 1)) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	memcpy(chain, inter->pem, a);
	memcpy(chain + a, root->pem, b + 1);
	r = write_pem_file(dir, CF_CHAIN_FILE, chain, 0644);
	free(chain);
	return r;
}

/*
 * Generates a CA key, writes it encrypted to ca/<name>.key (and, for an
 * intermediate, its passphrase to private/<name>.pass) under dir.
 */
static int
new_ca_key(cf_key **out, const char *dir, const char *name, cf_key_alg alg, const char *pass)
{
	char path[CF_PATH_MAX];
	cf_key *key = NULL;
	int r;

	if ((r = cf_key_generate(&key, alg)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/ca/%s.key", dir, name)) != 0)
		goto out;
	if (access(path, F_OK) == 0) {
		r = CF_EEXISTS;
		cf_error_set("%s already exists", path);
		goto out;
	}
	if ((r = cf_key_save(path, key, pass)) != 0)
		goto out;
	*out = key;
	key = NULL;
out:
	cf_key_free(key);
	return r;
}

static int
new_inter_pass(char **out, const char *dir, const char *name, const char *given)
{
	char path[CF_PATH_MAX];
	char *pass = NULL;
	int r;

	if (given != NULL)
		r = (pass = strdup(given)) ? 0 : CF_ERROR;
	else
		r = make_secret_hex(&pass);
	if (r != 0 || (r = cf_strfmt(path, sizeof(path), "%s/private/%s.pass", dir, name)) != 0 ||
	    (r = cf_file_create_new(path, pass, strlen(pass), 0600)) != 0) {
		cf_secret_free(pass, 0);
		return r ? r : CF_ERROR;
	}
	*out = pass;
	return 0;
}

/*
 * broker/ca.crt: the anchors the broker accepts client certificates under —
 * the roots and every intermediate that is not revoked. The plugin still
 * checks each CA's status in the registry; this file keeps a revoked
 * intermediate's certificates out at the TLS layer as well.
 */
static int
write_broker_trust(const char *dir, cf_store *st)
{
	cf_ca_rec *cas = NULL;
	size_t n = 0, i, len = 0, off = 0;
	char *bundle = NULL;
	int r;

	if ((r = cf_store_ca_list(st, &cas, &n)) != 0)
		return r;
	for (i = 0; i < n; i++)
		len += strlen(cas[i].pem);
	if ((bundle = malloc(len + 1)) == NULL) {
		r = CF_ERROR;
		cf_error_set("out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (cas[i].status == CF_CERT_REVOKED)
			continue;
		memcpy(bundle + off, cas[i].pem, strlen(cas[i].pem));
		off += strlen(cas[i].pem);
	}
	bundle[off] = '\0';
	r = write_pem_file(dir, CF_BROKER_TRUST, bundle, 0644);
out:
	free(bundle);
	cf_ca_recs_free(cas, n);
	return r;
}

/* A fresh key and TLS certificate (broker server or certfleetd service) under dir. */
static int
new_infra_cert(const char *dir, const char *name, const char *cn, const char *san, int server,
    const cf_cert *issuer, const cf_key *issuer_key)
{
	char path[CF_PATH_MAX];
	cf_key *key = NULL;
	cf_cert *cert = NULL;
	char *pem = NULL;
	int r;

	if ((r = cf_key_generate(&key, CF_KEY_P256)) != 0 ||
	    (r = cf_pki_issue_tls(&cert, key, cn, san, server, CF_INFRA_DAYS, issuer,
	    issuer_key)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s.key", dir, name)) != 0 ||
	    (r = cf_key_save(path, key, NULL)) != 0 ||
	    (r = cf_cert_to_pem(&pem, cert)) != 0 ||
	    (r = cf_strfmt(path, sizeof(path), "%s/%s.crt", dir, name)) != 0)
		goto out;
	r = cf_file_write_atomic(path, pem, strlen(pem), 0644);
out:
	free(pem);
	cf_cert_free(cert);
	cf_key_free(key);
	return r;
}

int
cf_ca_init(const char *dir, const cf_ca_init_opts *o, const char *root_pass, const char *inter_pass)
{
	int r = CF_ERROR;
	char staging[CF_PATH_MAX] = "", path[CF_PATH_MAX], rel[CF_PATH_MAX];
	char key_uri[CF_P11_URI_MAX];
	char *ipass = NULL;
	cf_p11 *p11 = NULL;
	cf_key *root_key = NULL, *inter_key = NULL;
	cf_cert *root = NULL, *inter = NULL;
	cf_ca_rec root_rec, inter_rec;
	cf_store *st = NULL;

	memset(&root_rec, 0, sizeof(root_rec));
	memset(&inter_rec, 0, sizeof(inter_rec));
	if (!cf_name_valid("intermediate", o->intermediate_name) ||
	    strcmp(o->intermediate_name, CF_ROOT_NAME) == 0) {
		if (strcmp(o->intermediate_name, CF_ROOT_NAME) == 0)
			cf_error_set("the intermediate cannot be called '%s'", CF_ROOT_NAME);
		return CF_EINVAL;
	}
	if (!cf_dir_missing_or_empty(dir)) {
		cf_error_prefix("cannot initialise %s (it must be empty or not exist)", dir);
		return CF_EEXISTS;
	}
	if ((r = cf_staging_dir(staging, sizeof(staging), dir)) != 0)
		return r;
	if ((r = dpath(path, sizeof(path), staging, "ca")) != 0 || (r = cf_mkdir_p(path, 0755)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "crl")) != 0 || (r = cf_mkdir_p(path, 0755)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "private")) != 0 ||
	    (r = cf_mkdir_p(path, 0700)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "broker")) != 0 ||
	    (r = cf_mkdir_p(path, 0755)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "service")) != 0 ||
	    (r = cf_mkdir_p(path, 0700)) != 0)
		goto out;
	if (o->mqtt_port < 1 || o->mqtt_port > 65535 || o->api_port < 1 || o->api_port > 65535 ||
	    o->mqtt_port == o->api_port) {
		r = CF_EINVAL;
		cf_error_set("ports must be two different numbers from 1 to 65535 (mqtt %d, api %d)",
		    o->mqtt_port, o->api_port);
		goto out;
	}

	/* The root: its key is encrypted with the operator's passphrase. */
	if ((r = new_ca_key(&root_key, staging, CF_ROOT_NAME, o->key_alg, root_pass)) != 0 ||
	    (r = cf_pki_make_root(&root, root_key, o->root_cn, o->root_validity_days)) != 0 ||
	    (r = ca_rec_from_cert(&root_rec, root, CF_ROOT_NAME, CF_CA_ROOT, NULL,
	    "ca/" CF_ROOT_NAME ".key")) != 0 ||
	    (r = write_pem_file(staging, "ca/" CF_ROOT_NAME ".crt", root_rec.pem, 0644)) != 0)
		goto out;

	/*
	 * The first intermediate: its passphrase lives in private/ for the online
	 * signer — or its key in a PKCS#11 token, named by a URI.
	 */
	if (o->pkcs11_uri != NULL) {
		if ((r = open_token(&p11, o->pkcs11_module, o->pkcs11_pin_file, o->pkcs11_uri)) != 0 ||
		    (r = token_ca_key(&inter_key, key_uri, sizeof(key_uri), p11, o->pkcs11_uri,
		    o->key_alg)) != 0)
			goto out;
	} else if ((r = new_inter_pass(&ipass, staging, o->intermediate_name, inter_pass)) != 0 ||
	    (r = new_ca_key(&inter_key, staging, o->intermediate_name, o->key_alg, ipass)) != 0) {
		goto out;
	}
	if ((r = cf_strfmt(path, sizeof(path), "certfleet intermediate CA %s",
	    o->intermediate_name)) != 0 ||
	    (r = cf_pki_make_intermediate(&inter, inter_key, path, o->intermediate_validity_days,
	    root, root_key)) != 0 ||
	    (r = (o->pkcs11_uri != NULL ? cf_strfmt(rel, sizeof(rel), "%s", key_uri) :
	    cf_strfmt(rel, sizeof(rel), "ca/%s.key", o->intermediate_name))) != 0 ||
	    (r = ca_rec_from_cert(&inter_rec, inter, o->intermediate_name, CF_CA_INTERMEDIATE,
	    root_rec.id, rel)) != 0 ||
	    (r = cf_strfmt(rel, sizeof(rel), "ca/%s.crt", o->intermediate_name)) != 0 ||
	    (r = write_pem_file(staging, rel, inter_rec.pem, 0644)) != 0 ||
	    (r = write_chain(staging, &inter_rec, &root_rec)) != 0 ||
	    (r = write_conf(staging, o)) != 0)
		goto out;

	/* The broker's server certificate, certfleetd's service certificate, the stamp key. */
	if ((r = dpath(path, sizeof(path), staging, "broker")) != 0 ||
	    (r = new_infra_cert(path, "server", "certfleet broker", "DNS:localhost,IP:127.0.0.1", 1,
	    inter, inter_key)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "service")) != 0 ||
	    (r = new_infra_cert(path, "certfleetd", "certfleetd", NULL, 0, inter, inter_key)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "private/stamp.key")) != 0 ||
	    (r = cf_stamp_key_create(path)) != 0)
		goto out;

	/* The registry, with both CAs and their first (empty) CRLs. */
	if ((r = dpath(path, sizeof(path), staging, CF_DB_FILE)) != 0 ||
	    (r = cf_store_open(&st, path, CF_STORE_CREATE)) != 0 ||
	    (r = cf_store_begin(st)) != 0)
		goto out;
	if ((r = cf_store_ca_insert(st, &root_rec)) != 0 ||
	    (r = cf_store_ca_insert(st, &inter_rec)) != 0 ||
	    (r = cf_store_ca_set_issuer(st, inter_rec.id)) != 0 ||
	    (r = write_crl(NULL, staging, st, &root_rec, root, root_key, 7)) != 0 ||
	    (r = write_crl(NULL, staging, st, &inter_rec, inter, inter_key, 7)) != 0 ||
	    (r = write_broker_trust(staging, st)) != 0 ||
	    (r = cf_store_commit(st)) != 0) {
		cf_store_rollback(st);
		goto out;
	}
	cf_store_close(st);
	st = NULL;
	if ((r = cf_staging_commit(staging, dir)) != 0)
		goto out;
	staging[0] = '\0';
	r = 0;
out:
	cf_store_close(st);
	if (staging[0] != '\0')
		cf_rmtree(staging); /* best effort: a leftover is hidden and harmless */
	cf_secret_free(ipass, 0);
	cf_key_free(root_key);
	cf_key_free(inter_key);
	cf_p11_free(p11);
	cf_cert_free(root);
	cf_cert_free(inter);
	cf_ca_rec_clear(&root_rec);
	cf_ca_rec_clear(&inter_rec);
	return r;
}

/* ---- opening ------------------------------------------------------------ */

int
cf_ca_open(cf_ca **out, const char *dir)
{
	int r = CF_ERROR;
	cf_ca *ca = NULL;
	char path[CF_PATH_MAX];
	const char *v;
	long bits;
	struct stat st;

	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		cf_error_set("data directory %s does not exist (run 'certfleet init --dir %s')", dir, dir);
		return CF_ENOTFOUND;
	}
	if ((ca = calloc(1, sizeof(*ca))) == NULL || (ca->dir = strdup(dir)) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	if ((r = dpath(path, sizeof(path), dir, CF_CONF_FILE)) != 0)
		goto out;
	if ((r = cf_config_load(&ca->cfg, path)) != 0) {
		if (r == CF_ENOTFOUND)
			cf_error_set("%s is not a certfleet data directory: no %s (run 'certfleet init --dir %s')",
			    dir, CF_CONF_FILE, dir);
		goto out;
	}
	if ((r = cf_config_check_keys(ca->cfg, cf_conf_keys)) != 0 ||
	    (r = cf_config_get_int(&ca->device_days, ca->cfg, "device_validity_days", 1, 36500, 365)) != 0 ||
	    (r = cf_config_get_int(&ca->crl_days, ca->cfg, "crl_next_update_days", 1, 365, 7)) != 0 ||
	    (r = cf_config_get_int(&bits, ca->cfg, "key_min_rsa_bits", 1024, 16384, 2048)) != 0)
		goto out;
	if ((r = cf_keyq_policy_new(&ca->policy)) != 0 ||
	    (r = cf_keyq_policy_set_min_rsa_bits(ca->policy, (int)bits)) != 0)
		goto out;
	if ((v = cf_config_get(ca->cfg, "key_allowed_curves")) != NULL && *v &&
	    (r = cf_keyq_policy_set_curves(ca->policy, v)) != 0) {
		cf_error_prefix("%s: key_allowed_curves", path);
		goto out;
	}
	if ((v = cf_config_get(ca->cfg, "key_blocklist")) != NULL && *v) {
		char bl[CF_PATH_MAX];
		if ((r = dpath(bl, sizeof(bl), dir, v)) != 0 ||
		    (r = cf_keyq_policy_load_blocklist(ca->policy, bl)) != 0)
			goto out;
	}
	if ((r = dpath(path, sizeof(path), dir, cf_config_get_str(ca->cfg, "database", CF_DB_FILE))) != 0)
		goto out;
	if ((r = cf_store_open(&ca->st, path, 0)) != 0)
		goto out;
	/* Certificates issued from here store their key facts under the configured policy. */
	if ((r = cf_store_set_keyq_policy(ca->st, ca->policy)) != 0)
		goto out;
	*out = ca;
	ca = NULL;
	r = 0;
out:
	cf_ca_close(ca);
	return r;
}

void
cf_ca_close(cf_ca *ca)
{
	if (ca == NULL)
		return;
	cf_store_close(ca->st);
	cf_config_free(ca->cfg);
	cf_keyq_policy_free(ca->policy);
	cf_cert_free(ca->signer_cert);
	cf_key_free(ca->signer_key);
	cf_p11_free(ca->p11);
	free(ca->dir);
	free(ca);
}

cf_store *cf_ca_store(cf_ca *ca) { return ca->st; }
const cf_config *cf_ca_config(cf_ca *ca) { return ca->cfg; }
const cf_keyq_policy *cf_ca_policy(cf_ca *ca) { return ca->policy; }
const char *cf_ca_dir(cf_ca *ca) { return ca->dir; }
int cf_ca_device_validity_days(cf_ca *ca) { return (int)ca->device_days; }

/* ---- signers ----------------------------------------------------------------- */

/*
 * Refuses a key that belongs to a root: by file (before any passphrase is
 * tried) and by public key (after loading), so a misconfigured
 * issuer_key can never put the root online.
 */
static int
refuse_root_key(cf_ca *ca, const char *key_path, const cf_key *key)
{
	cf_ca_rec *cas = NULL;
	size_t n = 0, i;
	char rpath[CF_PATH_MAX], real_a[PATH_MAX], real_b[PATH_MAX];
	cf_cert *c = NULL;
	int r;

	if ((r = cf_store_ca_list(ca->st, &cas, &n)) != 0)
		return r;
	for (i = 0; i < n && r == 0; i++) {
		if (cas[i].role != CF_CA_ROOT)
			continue;
		if (key_path != NULL && dpath(rpath, sizeof(rpath), ca->dir, cas[i].key_ref) == 0 &&
		    realpath(rpath, real_a) != NULL && realpath(key_path, real_b) != NULL &&
		    strcmp(real_a, real_b) == 0)
			r = CF_EREJECTED;
		if (r == 0 && key != NULL && cf_cert_parse(&c, cas[i].pem, strlen(cas[i].pem)) == 0 &&
		    cf_cert_matches_key(c, key))
			r = CF_EREJECTED;
		cf_cert_free(c);
		c = NULL;
		if (r != 0)
			cf_error_set("refusing to load %s: it is the key of root CA '%s'; the root "
			    "stays offline and only signs intermediates", key_path ? key_path : "a key",
			    cas[i].name);
	}
	cf_ca_recs_free(cas, n);
	return r;
}

/*
 * Loads the certificate and private key of a CA. A root needs root_pass; an
 * intermediate's passphrase comes from private/<name>.pass (or, for the
 * issuer, the configured issuer_key / issuer_passphrase_file) and may never
 * turn out to be a root's key.
 */
static int
load_ca_signer(cf_ca *ca, const cf_ca_rec *rec, const char *root_pass, cf_cert **cert_out,
    cf_key **key_out)
{
	int r = CF_ERROR;
	char key_path[CF_PATH_MAX], pass_path[CF_PATH_MAX], rel[CF_PATH_MAX];
	const char *kconf = NULL, *pconf = NULL;
	char *pass = NULL;
	cf_cert *cert = NULL;
	cf_key *key = NULL;
	cf_cert_info info;

	if ((r = cf_cert_parse(&cert, rec->pem, strlen(rec->pem))) != 0 ||
	    (r = cf_cert_info_get(&info, cert)) != 0)
		goto out;
	if (rec->role == CF_CA_ROOT) {
		if (root_pass == NULL) {
			r = CF_EINVAL;
			cf_error_set("CA '%s' is a root: this needs the root passphrase", rec->name);
			goto out;
		}
		if ((r = dpath(key_path, sizeof(key_path), ca->dir, rec->key_ref)) != 0)
			goto out;
		if ((r = cf_key_load(&key, key_path, root_pass)) != 0) {
			if (r == CF_EPASS)
				cf_error_set("wrong root passphrase for %s", key_path);
			goto out;
		}
	} else {
		if (rec->is_issuer) {
			kconf = cf_config_get(ca->cfg, "issuer_key");
			pconf = cf_config_get(ca->cfg, "issuer_passphrase_file");
		}
		if (info.self_signed) {
			r = CF_EREJECTED;
			cf_error_set("CA '%s' is self-signed: a root never signs online", rec->name);
			goto out;
		}
		if (is_p11(kconf && *kconf ? kconf : rec->key_ref)) {
			/* In a token: the PIN (certfleet.conf's pkcs11_pin_file) replaces the passphrase. */
			const char *uri = kconf && *kconf ? kconf : rec->key_ref;

			if ((r = cf_strfmt(key_path, sizeof(key_path), "%s", uri)) != 0 ||
			    (r = ca_token(ca, uri)) != 0 || (r = cf_p11_load_key(&key, ca->p11, uri)) != 0 ||
			    (r = refuse_root_key(ca, NULL, key)) != 0)
				goto out;
			goto matched;
		}
		if ((r = cf_strfmt(rel, sizeof(rel), "private/%s.pass", rec->name)) != 0 ||
		    (r = dpath(key_path, sizeof(key_path), ca->dir,
		    kconf && *kconf ? kconf : rec->key_ref)) != 0 ||
		    (r = dpath(pass_path, sizeof(pass_path), ca->dir, pconf && *pconf ? pconf : rel)) != 0)
			goto out;
		if ((r = refuse_root_key(ca, key_path, NULL)) != 0 ||
		    (r = cf_passphrase_read(&pass, pass_path, NULL, 0, 1)) != 0)
			goto out;
		if ((r = cf_key_load(&key, key_path, pass)) != 0) {
			if (r == CF_EPASS)
				cf_error_set("the passphrase in %s does not open %s", pass_path, key_path);
			goto out;
		}
		if ((r = refuse_root_key(ca, key_path, key)) != 0)
			goto out;
	}
matched:
	if (!cf_cert_matches_key(cert, key)) {
		r = CF_EINVAL;
		cf_error_set("the key %s does not belong to CA '%s'", key_path, rec->name);
		goto out;
	}
	*cert_out = cert;
	*key_out = key;
	cert = NULL;
	key = NULL;
	r = 0;
out:
	cf_secret_free(pass, 0);
	cf_cert_free(cert);
	cf_key_free(key);
	return r;
}

/* The issuing CA's signer, cached until the issuer changes. */
static int
issuer_signer(cf_ca *ca, cf_ca_rec *rec)
{
	int r;

	if ((r = cf_store_ca_get_issuer(ca->st, rec)) != 0) {
		if (r == CF_ENOTFOUND)
			cf_error_set("there is no issuing CA (run 'certfleet ca create-intermediate "
			    "NAME --set-issuer' or 'certfleet ca set-issuer CA')");
		return r;
	}
	if (rec->status != CF_CERT_ACTIVE) {
		cf_error_set("issuing CA '%s' is %s", rec->name, cf_cert_status_name(rec->status));
		return CF_ESTATE;
	}
	if (ca->signer_key != NULL && strcmp(ca->signer_id, rec->id) == 0)
		return 0;
	cf_cert_free(ca->signer_cert);
	cf_key_free(ca->signer_key);
	ca->signer_cert = NULL;
	ca->signer_key = NULL;
	if ((r = load_ca_signer(ca, rec, NULL, &ca->signer_cert, &ca->signer_key)) != 0)
		return r;
	memcpy(ca->signer_id, rec->id, sizeof(ca->signer_id));
	return 0;
}

int
cf_ca_load_issuer(cf_ca *ca)
{
	cf_ca_rec rec;
	int r;

	memset(&rec, 0, sizeof(rec));
	r = issuer_signer(ca, &rec);
	cf_ca_rec_clear(&rec);
	return r;
}

/* ---- issuing ---------------------------------------------------------------- */

int
cf_ca_issue_csr(cf_ca *ca, cf_cert_rec *out, const void *csr_data, size_t csr_len,
    const char *thing, int validity_days)
{
	return cf_ca_issue_csr_ex(ca, out, csr_data, csr_len, thing, 1, CF_CERT_ACTIVE, validity_days);
}

int
cf_ca_issue_csr_ex(cf_ca *ca, cf_cert_rec *out, const void *csr_data, size_t csr_len,
    const char *thing, int attach, cf_cert_status status, int validity_days)
{
	cf_csr *csr = NULL;
	int r;

	if ((r = cf_csr_parse(&csr, csr_data, csr_len)) != 0) {
		cf_error_prefix("CSR");
		goto out;
	}
	r = cf_ca_issue_parsed(ca, out, csr, thing, attach, status, validity_days);
out:
	cf_csr_free(csr);
	return r;
}

int
cf_ca_issue_parsed(cf_ca *ca, cf_cert_rec *out, const cf_csr *csr, const char *thing, int attach,
    cf_cert_status status, int validity_days)
{
	int r = CF_ERROR;
	cf_cert *cert = NULL;
	cf_key *pub = NULL;
	cf_keyq_result q;
	cf_cert_info info;
	cf_ca_rec issuer;
	cf_cert_rec rec;
	cf_key_alg alg;

	memset(&issuer, 0, sizeof(issuer));
	memset(&rec, 0, sizeof(rec));
	if ((r = cf_csr_verify(csr)) != 0) {
		cf_error_prefix("CSR refused");
		goto out;
	}
	if ((r = cf_csr_check_subject(csr, thing)) != 0) {
		cf_error_prefix("CSR refused");
		goto out;
	}
	if ((r = cf_keyq_check_csr(&q, ca->policy, csr)) != 0)
		goto out;
	if (q.flags != 0) {
		r = CF_EREJECTED;
		cf_error_set("CSR refused by key policy: %s", q.detail);
		goto out;
	}
	if ((r = issuer_signer(ca, &issuer)) != 0 ||
	    (r = cf_pki_issue_device(&cert, csr, thing,
	    validity_days > 0 ? validity_days : (int)ca->device_days, 0, ca->signer_cert,
	    ca->signer_key)) != 0 ||
	    (r = cf_cert_info_get(&info, cert)) != 0 || (r = cf_cert_pubkey(&pub, cert)) != 0)
		goto out;
	memcpy(rec.id, info.id, sizeof(rec.id));
	memcpy(rec.serial, info.serial, sizeof(rec.serial));
	memcpy(rec.ca_id, issuer.id, sizeof(rec.ca_id));
	snprintf(rec.thing, sizeof(rec.thing), "%s", attach ? thing : "");
	rec.status = status;
	rec.not_before = info.not_before;
	rec.not_after = info.not_after;
	if (cf_key_alg_of(&alg, pub) == 0)
		snprintf(rec.key_alg, sizeof(rec.key_alg), "%s", cf_key_alg_name(alg));
	else
		snprintf(rec.key_alg, sizeof(rec.key_alg), "%s", info.key.type);
	rec.key_bits = info.key.bits;
	snprintf(rec.sig_alg, sizeof(rec.sig_alg), "%s", info.sig_alg);
	/* The store takes its key facts from cert itself: no second parse of the PEM. */
	if ((r = cf_cert_to_pem(&rec.pem, cert)) != 0 ||
	    (r = cf_store_cert_insert_parsed(ca->st, &rec, cert)) != 0)
		goto out;
	if (out != NULL) {
		*out = rec;
		memset(&rec, 0, sizeof(rec));
	}
	r = 0;
out:
	cf_cert_rec_clear(&rec);
	cf_ca_rec_clear(&issuer);
	cf_cert_free(cert);
	cf_key_free(pub);
	return r;
}

int
cf_ca_chain_pem(cf_ca *ca, char **out)
{
	char path[CF_PATH_MAX];
	int r;

	if ((r = dpath(path, sizeof(path), ca->dir, CF_CHAIN_FILE)) != 0)
		return r;
	return cf_file_read(out, NULL, path, 1024 * 1024);
}

/* ---- revocation and CRLs ------------------------------------------------------ */

int
cf_ca_publish_crl(cf_ca *ca, char **out, const char *ref, const char *root_pass)
{
	int r;
	cf_ca_rec rec;
	cf_cert *cert = NULL;
	cf_key *key = NULL;

	memset(&rec, 0, sizeof(rec));
	r = ref ? cf_store_ca_get(ca->st, &rec, ref) : cf_store_ca_get_issuer(ca->st, &rec);
	if (r != 0)
		goto out;
	if ((r = load_ca_signer(ca, &rec, root_pass, &cert, &key)) != 0)
		goto out;
	r = write_crl(out, ca->dir, ca->st, &rec, cert, key, ca->crl_days);
out:
	cf_ca_rec_clear(&rec);
	cf_cert_free(cert);
	cf_key_free(key);
	return r;
}

int
cf_ca_revoke_cert(cf_ca *ca, const char *ref, int reason)
{
	int r;
	cf_cert_rec rec;

	memset(&rec, 0, sizeof(rec));
	if ((r = cf_store_begin(ca->st)) != 0)
		return r;
	if ((r = cf_store_cert_get(ca->st, &rec, ref)) != 0)
		goto fail;
	/* Revoked is terminal: a second revocation changes nothing, not even the CRL. */
	if (rec.status == CF_CERT_REVOKED) {
		cf_store_rollback(ca->st);
		goto out;
	}
	if ((r = cf_store_cert_set_status(ca->st, rec.id, CF_CERT_REVOKED, reason)) != 0 ||
	    (r = cf_ca_publish_crl(ca, NULL, rec.ca_id, NULL)) != 0 ||
	    (r = cf_store_commit(ca->st)) != 0)
		goto fail;
	goto out;
fail:
	cf_store_rollback(ca->st);
out:
	cf_cert_rec_clear(&rec);
	return r;
}

static int
find_root(cf_ca *ca, cf_ca_rec *out)
{
	cf_ca_rec *cas = NULL;
	size_t n = 0, i;
	int r;

	if ((r = cf_store_ca_list(ca->st, &cas, &n)) != 0)
		return r;
	r = CF_ENOTFOUND;
	cf_error_set("there is no active root CA in %s", ca->dir);
	for (i = 0; i < n; i++) {
		if (cas[i].role == CF_CA_ROOT && cas[i].status == CF_CERT_ACTIVE) {
			*out = cas[i];
			memset(&cas[i], 0, sizeof(cas[i]));
			r = 0;
			break;
		}
	}
	cf_ca_recs_free(cas, n);
	return r;
}

int
cf_ca_revoke_ca(cf_ca *ca, const char *ref, int reason, const char *root_pass)
{
	int r;
	cf_ca_rec rec, root;
	cf_cert *rcert = NULL;
	cf_key *rkey = NULL;

	memset(&rec, 0, sizeof(rec));
	memset(&root, 0, sizeof(root));
	if ((r = cf_store_ca_get(ca->st, &rec, ref)) != 0)
		goto out;
	if (rec.role == CF_CA_ROOT) {
		r = CF_EINVAL;
		cf_error_set("CA '%s' is a root: only intermediates are revoked (by their root)",
		    rec.name);
		goto out;
	}
	if ((r = cf_store_ca_get(ca->st, &root, rec.parent_id)) != 0 ||
	    (r = load_ca_signer(ca, &root, root_pass, &rcert, &rkey)) != 0)
		goto out;
	if ((r = cf_store_begin(ca->st)) != 0)
		goto out;
	if ((r = cf_store_ca_set_status(ca->st, rec.id, CF_CERT_REVOKED, reason)) != 0 ||
	    (r = write_crl(NULL, ca->dir, ca->st, &root, rcert, rkey, ca->crl_days)) != 0 ||
	    (r = write_broker_trust(ca->dir, ca->st)) != 0 ||
	    (r = cf_store_commit(ca->st)) != 0)
		cf_store_rollback(ca->st);
out:
	cf_ca_rec_clear(&rec);
	cf_ca_rec_clear(&root);
	cf_cert_free(rcert);
	cf_key_free(rkey);
	return r;
}

/* ---- intermediates -------------------------------------------------------------- */

static int
rewrite_chain(cf_ca *ca)
{
	cf_ca_rec issuer, root;
	int r;

	memset(&issuer, 0, sizeof(issuer));
	memset(&root, 0, sizeof(root));
	if ((r = cf_store_ca_get_issuer(ca->st, &issuer)) == 0 &&
	    (r = cf_store_ca_get(ca->st, &root, issuer.parent_id)) == 0)
		r = write_chain(ca->dir, &issuer, &root);
	cf_ca_rec_clear(&issuer);
	cf_ca_rec_clear(&root);
	return r;
}

int
cf_ca_set_issuer(cf_ca *ca, const char *ref)
{
	cf_ca_rec rec;
	int r;

	memset(&rec, 0, sizeof(rec));
	if ((r = cf_store_ca_get(ca->st, &rec, ref)) != 0)
		goto out;
	if (rec.role == CF_CA_ROOT) {
		r = CF_EREJECTED;
		cf_error_set("CA '%s' is a root: a root never issues device certificates (its key "
		    "stays offline)", rec.name);
		goto out;
	}
	if ((r = cf_store_begin(ca->st)) != 0)
		goto out;
	if ((r = cf_store_ca_set_issuer(ca->st, rec.id)) != 0 || (r = rewrite_chain(ca)) != 0 ||
	    (r = cf_store_commit(ca->st)) != 0)
		cf_store_rollback(ca->st);
out:
	cf_ca_rec_clear(&rec);
	return r;
}

/* The files a CA owns in the data directory, by name. */
static const struct {
	const char *dir, *ext;
} ca_files[] = { { "private", "pass" }, { "ca", "key" }, { "ca", "crt" }, { "crl", "crl.pem" } };

/* A new intermediate: its key in an encrypted file (uri NULL) or in a PKCS#11 token. */
static int
create_intermediate(cf_ca *ca, cf_ca_rec *out, const char *name, cf_key_alg alg,
    int validity_days, const char *root_pass, const char *inter_pass, const char *uri,
    int set_issuer)
{
	int r = CF_ERROR, files = 0;
	cf_ca_rec root, rec, existing;
	cf_cert *rcert = NULL, *cert = NULL;
	cf_key *rkey = NULL, *key = NULL;
	char *ipass = NULL, cn[256], rel[CF_PATH_MAX], path[CF_PATH_MAX], key_uri[CF_P11_URI_MAX];
	size_t i;

	memset(&root, 0, sizeof(root));
	memset(&rec, 0, sizeof(rec));
	memset(&existing, 0, sizeof(existing));
	if (!cf_name_valid("CA", name))
		return CF_EINVAL;
	if (cf_store_ca_get(ca->st, &existing, name) == 0) {
		cf_ca_rec_clear(&existing);
		cf_error_set("a CA named '%s' already exists", name);
		return CF_EEXISTS;
	}
	for (i = 0; i < sizeof(ca_files) / sizeof(ca_files[0]); i++) {
		if ((r = cf_strfmt(rel, sizeof(rel), "%s/%s.%s", ca_files[i].dir, name,
		    ca_files[i].ext)) != 0 ||
		    (r = dpath(path, sizeof(path), ca->dir, rel)) != 0)
			return r;
		if (access(path, F_OK) == 0) {
			cf_error_set("%s already exists: choose another name for the CA", path);
			return CF_EEXISTS;
		}
	}
	if ((r = find_root(ca, &root)) != 0 ||
	    (r = load_ca_signer(ca, &root, root_pass, &rcert, &rkey)) != 0)
		goto out;
	files = 1; /* from here on, the files named after this CA are ours to remove */
	if (uri != NULL) {
		if ((r = ca_token(ca, uri)) != 0 ||
		    (r = token_ca_key(&key, key_uri, sizeof(key_uri), ca->p11, uri, alg)) != 0 ||
		    (r = refuse_root_key(ca, NULL, key)) != 0)
			goto out;
	} else if ((r = new_inter_pass(&ipass, ca->dir, name, inter_pass)) != 0 ||
	    (r = new_ca_key(&key, ca->dir, name, alg, ipass)) != 0) {
		goto out;
	}
	if ((r = cf_strfmt(cn, sizeof(cn), "certfleet intermediate CA %s", name)) != 0 ||
	    (r = cf_pki_make_intermediate(&cert, key, cn, validity_days, rcert, rkey)) != 0 ||
	    (r = (uri != NULL ? cf_strfmt(rel, sizeof(rel), "%s", key_uri) :
	    cf_strfmt(rel, sizeof(rel), "ca/%s.key", name))) != 0 ||
	    (r = ca_rec_from_cert(&rec, cert, name, CF_CA_INTERMEDIATE, root.id, rel)) != 0 ||
	    (r = cf_strfmt(rel, sizeof(rel), "ca/%s.crt", name)) != 0 ||
	    (r = write_pem_file(ca->dir, rel, rec.pem, 0644)) != 0)
		goto out;
	if ((r = cf_store_begin(ca->st)) != 0)
		goto out;
	if ((r = cf_store_ca_insert(ca->st, &rec)) != 0 ||
	    (r = write_crl(NULL, ca->dir, ca->st, &rec, cert, key, ca->crl_days)) != 0 ||
	    (r = write_broker_trust(ca->dir, ca->st)) != 0 ||
	    (set_issuer && ((r = cf_store_ca_set_issuer(ca->st, rec.id)) != 0 ||
	    (r = rewrite_chain(ca)) != 0)) ||
	    (r = cf_store_commit(ca->st)) != 0) {
		cf_store_rollback(ca->st);
		goto out;
	}
	rec.is_issuer = set_issuer;
	files = 0;
	if (out != NULL) {
		*out = rec;
		memset(&rec, 0, sizeof(rec));
	}
	r = 0;
out:
	if (files) {
		for (i = 0; i < sizeof(ca_files) / sizeof(ca_files[0]); i++)
			if (cf_strfmt(rel, sizeof(rel), "%s/%s.%s", ca_files[i].dir, name,
		    ca_files[i].ext) == 0 &&
			    dpath(path, sizeof(path), ca->dir, rel) == 0)
				unlink(path);
	}
	cf_secret_free(ipass, 0);
	cf_ca_rec_clear(&root);
	cf_ca_rec_clear(&rec);
	cf_cert_free(rcert);
	cf_cert_free(cert);
	cf_key_free(rkey);
	cf_key_free(key);
	return r;
}

int
cf_ca_create_intermediate(cf_ca *ca, cf_ca_rec *out, const char *name, cf_key_alg alg,
    int validity_days, const char *root_pass, const char *inter_pass, int set_issuer)
{
	return create_intermediate(ca, out, name, alg, validity_days, root_pass, inter_pass, NULL,
	    set_issuer);
}

int
cf_ca_create_intermediate_pkcs11(cf_ca *ca, cf_ca_rec *out, const char *name, cf_key_alg alg,
    int validity_days, const char *root_pass, const char *uri, int set_issuer)
{
	if (!is_p11(uri)) {
		cf_error_set("'%s' is not a pkcs11: URI", uri ? uri : "");
		return CF_EINVAL;
	}
	return create_intermediate(ca, out, name, alg, validity_days, root_pass, NULL, uri,
	    set_issuer);
}

/* ---- things ------------------------------------------------------------------------ */

static int
write_agent_conf(const char *bundle, const cf_ca_thing_opts *o, const cf_config *cfg)
{
	char text[4096];
	int r;

	if ((r = cf_strfmt(text, sizeof(text),
	    "# certfleet-agent configuration for thing %s (docs/agent.md).\n"
	    "# Relative paths are relative to this file's directory.\n"
	    "thing = %s\n"
	    "broker_host = %s\n"
	    "broker_port = %s\n"
	    "ca_file = ca-chain.crt\n"
	    "cert_file = device.crt\n"
	    "key_file = device.key\n"
	    "key_algorithm = %s\n"
	    "signing_algorithm = %s\n"
	    "state_dir = state\n",
	    o->name, o->name, cf_config_get_str(cfg, "mqtt_host", "127.0.0.1"),
	    cf_config_get_str(cfg, "mqtt_port", "8883"), cf_key_alg_name(o->key_alg),
	    cf_sig_alg_name(o->sig_alg))) != 0)
		return r;
	return write_pem_file(bundle, "agent.conf", text, 0644);
}

/* Generates the device key here (the factory path) and issues its certificate. */
static int
issue_bundle(cf_ca *ca, cf_cert_rec *out, const cf_ca_thing_opts *o, const char *staging)
{
	int r;
	cf_key *key = NULL;
	char *csr = NULL, *chain = NULL, path[CF_PATH_MAX];

	if ((r = cf_key_generate(&key, o->key_alg)) != 0 ||
	    (r = cf_csr_create(&csr, key, o->sig_alg, o->name)) != 0 ||
	    (r = cf_ca_issue_csr(ca, out, csr, strlen(csr), o->name, o->validity_days)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "device.key")) != 0 ||
	    (r = cf_key_save(path, key, NULL)) != 0 ||
	    (r = write_pem_file(staging, "device.crt", out->pem, 0644)) != 0 ||
	    (r = cf_ca_chain_pem(ca, &chain)) != 0 ||
	    (r = write_pem_file(staging, "ca-chain.crt", chain, 0644)) != 0 ||
	    (r = write_agent_conf(staging, o, ca->cfg)) != 0)
		goto out;
out:
	free(csr);
	free(chain);
	cf_key_free(key);
	return r;
}

int
cf_ca_thing_create(cf_ca *ca, cf_cert_rec *out, const cf_ca_thing_opts *o)
{
	int r = CF_ERROR;
	char staging[CF_PATH_MAX] = "";
	cf_cert_rec rec;
	size_t i;

	memset(&rec, 0, sizeof(rec));
	if (o->bundle_dir != NULL && o->csr != NULL) {
		cf_error_set("a thing gets either a generated bundle or a CSR, not both");
		return CF_EINVAL;
	}
	if (o->bundle_dir != NULL) {
		if (!cf_dir_missing_or_empty(o->bundle_dir))
			return CF_EEXISTS;
		if ((r = cf_staging_dir(staging, sizeof(staging), o->bundle_dir)) != 0)
			return r;
	}
	if ((r = cf_store_begin(ca->st)) != 0)
		goto out;
	if ((r = cf_store_thing_create(ca->st, o->name, o->attributes_json)) != 0)
		goto fail;
	for (i = 0; i < o->n_groups; i++)
		if ((r = cf_store_group_add(ca->st, o->groups[i], o->name)) != 0)
			goto fail;
	if (o->bundle_dir != NULL)
		r = issue_bundle(ca, &rec, o, staging);
	else if (o->csr != NULL)
		r = cf_ca_issue_csr(ca, &rec, o->csr, o->csr_len, o->name, o->validity_days);
	if (r != 0 || (r = cf_store_commit(ca->st)) != 0)
		goto fail;
	/*
	 * The registry has committed; only now does the bundle appear. Should the
	 * rename fail, the thing exists and its certificate can be revoked — the
	 * error says so — but no half-written bundle is left.
	 */
	if (staging[0] != '\0') {
		if ((r = cf_staging_commit(staging, o->bundle_dir)) != 0) {
			cf_error_prefix("thing '%s' was registered but its bundle was not written "
			    "(revoke certificate %.16s and create it again)", o->name, rec.id);
			goto out;
		}
		staging[0] = '\0';
	}
	if (out != NULL) {
		*out = rec;
		memset(&rec, 0, sizeof(rec));
	}
	r = 0;
	goto out;
fail:
	cf_store_rollback(ca->st);
out:
	if (staging[0] != '\0')
		cf_rmtree(staging);
	cf_cert_rec_clear(&rec);
	return r;
}

/* ---- provisioning claims (docs/provisioning.md) ---------------------------------------- */

static int
write_claim_conf(const char *bundle, const char *template_name, const char *pattern,
    const cf_ca_claim_opts *o, const cf_config *cfg)
{
	char text[2048];
	int r;

	if ((r = cf_strfmt(text, sizeof(text),
	    "# certfleet-agent configuration for a batch provisioned by claim with template %s\n"
	    "# (docs/provisioning.md). Start the agent with --param NAME=VALUE for each {NAME}\n"
	    "# of the name pattern, or set provision_params = NAME=VALUE,... here.\n"
	    "# Relative paths are relative to this file's directory.\n"
	    "provision_template = %s\n"
	    "provision_name_pattern = %s\n"
	    "keep_claim = no\n"
	    "broker_host = %s\n"
	    "broker_port = %s\n"
	    "ca_file = ca-chain.crt\n"
	    "cert_file = device.crt\n"
	    "key_file = device.key\n"
	    "key_algorithm = %s\n"
	    "signing_algorithm = %s\n"
	    "state_dir = state\n",
	    template_name, template_name, pattern, cf_config_get_str(cfg, "mqtt_host", "127.0.0.1"),
	    cf_config_get_str(cfg, "mqtt_port", "8883"), cf_key_alg_name(o->key_alg),
	    cf_sig_alg_name(o->sig_alg))) != 0)
		return r;
	return write_pem_file(bundle, "agent.conf", text, 0644);
}

int
cf_ca_claim_create(cf_ca *ca, cf_cert_rec *out, const cf_ca_claim_opts *o)
{
	cf_prov_template_rec trec;
	cf_prov_template t;
	cf_cert_rec rec;
	cf_key *key = NULL;
	char staging[CF_PATH_MAX] = "", subject[CF_NAME_MAX + 1], *csr = NULL, *chain = NULL;
	char path[CF_PATH_MAX];
	int r;

	memset(&trec, 0, sizeof(trec));
	memset(&t, 0, sizeof(t));
	memset(&rec, 0, sizeof(rec));
	if ((r = cf_store_prov_template_get(ca->st, &trec, o->template_name)) != 0 ||
	    (r = cf_prov_template_parse(&t, trec.name, trec.spec)) != 0 ||
	    (r = cf_strfmt(subject, sizeof(subject), "claim.%s", o->template_name)) != 0)
		goto out;
	if (!cf_dir_missing_or_empty(o->bundle_dir)) {
		r = CF_EEXISTS;
		goto out;
	}
	if ((r = cf_staging_dir(staging, sizeof(staging), o->bundle_dir)) != 0)
		goto out;
	if ((r = cf_store_begin(ca->st)) != 0)
		goto out;
	if ((r = cf_key_generate(&key, o->key_alg)) != 0 ||
	    (r = cf_csr_create(&csr, key, o->sig_alg, subject)) != 0 ||
	    (r = cf_ca_issue_csr_ex(ca, &rec, csr, strlen(csr), subject, 0, CF_CERT_ACTIVE,
	    o->validity_days)) != 0 ||
	    (r = cf_store_claim_create(ca->st, rec.id, o->template_name)) != 0 ||
	    (r = dpath(path, sizeof(path), staging, "device.key")) != 0 ||
	    (r = cf_key_save(path, key, NULL)) != 0 ||
	    (r = write_pem_file(staging, "device.crt", rec.pem, 0644)) != 0 ||
	    (r = cf_ca_chain_pem(ca, &chain)) != 0 ||
	    (r = write_pem_file(staging, "ca-chain.crt", chain, 0644)) != 0 ||
	    (r = write_claim_conf(staging, o->template_name, t.pattern, o, ca->cfg)) != 0 ||
	    (r = cf_store_commit(ca->st)) != 0) {
		cf_store_rollback(ca->st);
		goto out;
	}
	if ((r = cf_staging_commit(staging, o->bundle_dir)) != 0) {
		cf_error_prefix("claim %.16s was registered but its bundle was not written (disable it "
		    "and create another)", rec.id);
		goto out;
	}
	staging[0] = '\0';
	if (out != NULL) {
		*out = rec;
		memset(&rec, 0, sizeof(rec));
	}
	r = 0;
out:
	if (staging[0] != '\0')
		cf_rmtree(staging);
	cf_cert_rec_clear(&rec);
	cf_prov_template_clear(&t);
	cf_prov_template_rec_clear(&trec);
	cf_key_free(key);
	free(csr);
	free(chain);
	return r;
}
