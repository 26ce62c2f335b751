/*
 * cf_ca — a certfleet data directory and the CA operations on it.
 *
 * Owns the layout of docs/cli.md (configuration, database, CA certificates
 * and encrypted keys, intermediate passphrase files, CRLs) and combines
 * cf_pki and cf_store into the operations the CLI and certfleetd share:
 * initialising the hierarchy, creating and revoking intermediates,
 * issuing device certificates, revoking them and publishing CRLs.
 *
 * The root key is only ever loaded by the ceremonies that need it
 * (cf_ca_create_intermediate, cf_ca_revoke_ca, a root CRL), with a
 * passphrase the caller supplies. The online signer (cf_ca_issue_csr,
 * cf_ca_revoke_cert) refuses to load a key that belongs to a root.
 */
#ifndef CF_CA_H
#define CF_CA_H

#include <stdint.h>

#include "cf_config.h"
#include "cf_keyq.h"
#include "cf_pki.h"
#include "cf_store.h"

typedef struct cf_ca cf_ca;

typedef struct {
	const char *root_cn;           /* default "certfleet root CA" */
	const char *intermediate_name; /* default "issuing-1" */
	cf_key_alg key_alg;            /* for root and intermediate; default ECDSA-P256 */
	int root_validity_days;        /* default 7300 */
	int intermediate_validity_days;/* default 1825 */
	int device_validity_days;      /* default 365, written to certfleet.conf */
	int mqtt_port;                 /* default 8883: the broker's TLS listener */
	int api_port;                  /* default 8884: certfleetd's HTTP API */
	/*
	 * Optional (docs/pkcs11.md): the intermediate's key in a PKCS#11 token,
	 * named by an RFC 7512 URI with token= and object= (generated there when
	 * the token has no such key). module and pin_file go to certfleet.conf
	 * as pkcs11_module / pkcs11_pin_file. NULL: an encrypted key file.
	 */
	const char *pkcs11_uri;
	const char *pkcs11_module;
	const char *pkcs11_pin_file;
} cf_ca_init_opts;

/* Defaults for every field. */
void cf_ca_init_opts_default(cf_ca_init_opts *o);

/*
 * Creates a data directory: dir must not exist or be empty. Besides the CA
 * hierarchy and registry it writes the broker's TLS server certificate,
 * certfleetd's service certificate and the message stamp key
 * (docs/broker.md). Everything is
 * built in a sibling staging directory and renamed into place, so a
 * failure leaves dir as it was. root_pass encrypts the root key;
 * inter_pass (NULL: 32 random bytes, hex) the intermediate's, stored in
 * private/<name>.pass.
 */
int cf_ca_init(const char *dir, const cf_ca_init_opts *o, const char *root_pass,
    const char *inter_pass) CF_MUST_CHECK;

/*
 * Opens an initialised data directory: reads certfleet.conf (unknown keys
 * are errors) and opens the database (never creates it). CF_ENOTFOUND
 * with a hint to run init when dir holds no certfleet.conf.
 */
int cf_ca_open(cf_ca **out, const char *dir) CF_MUST_CHECK;
void cf_ca_close(cf_ca *ca);

cf_store *cf_ca_store(cf_ca *ca);             /* borrowed */
const cf_config *cf_ca_config(cf_ca *ca);     /* borrowed */
const cf_keyq_policy *cf_ca_policy(cf_ca *ca);/* borrowed */
const char *cf_ca_dir(cf_ca *ca);             /* borrowed */
int cf_ca_device_validity_days(cf_ca *ca);

/*
 * Loads the issuing CA's signer now (it is otherwise loaded on first use),
 * so a daemon fails at start on a missing or wrong passphrase, a key that
 * does not match, or a root key configured as the issuer's.
 */
int cf_ca_load_issuer(cf_ca *ca) CF_MUST_CHECK;

/* A new intermediate signed by the root (root_pass decrypts ca/root.key). */
int cf_ca_create_intermediate(cf_ca *ca, cf_ca_rec *out, const char *name, cf_key_alg alg,
    int validity_days, const char *root_pass, const char *inter_pass, int set_issuer) CF_MUST_CHECK;

/*
 * The same with the new intermediate's key in a PKCS#11 token: uri names it
 * (token= and object=; generated in the token with alg if it does not
 * exist), the module and PIN file come from certfleet.conf (pkcs11_module,
 * pkcs11_pin_file). The CA's key_ref is the key's URI.
 */
int cf_ca_create_intermediate_pkcs11(cf_ca *ca, cf_ca_rec *out, const char *name, cf_key_alg alg,
    int validity_days, const char *root_pass, const char *uri, int set_issuer) CF_MUST_CHECK;

/* Makes an ACTIVE intermediate the issuer and rewrites ca-chain.crt. A root is refused. */
int cf_ca_set_issuer(cf_ca *ca, const char *ref) CF_MUST_CHECK;

/* The root revokes an intermediate and rewrites the root's CRL. */
int cf_ca_revoke_ca(cf_ca *ca, const char *ref, int reason, const char *root_pass) CF_MUST_CHECK;

/*
 * Regenerates the CRL of a CA into crl/<name>.crl.pem (and returns the PEM
 * when out is non-NULL). A root's CRL needs root_pass; an intermediate's
 * uses its passphrase file.
 */
int cf_ca_publish_crl(cf_ca *ca, char **out, const char *ref, const char *root_pass) CF_MUST_CHECK;

/*
 * Issues an ACTIVE certificate for thing from a CSR (PEM or DER) with the
 * issuing CA: the CSR's signature, subject and key quality are checked
 * (CF_EREJECTED with the reason). The record is inserted in the store's
 * current transaction (or its own). validity_days 0: the configured default.
 */
int cf_ca_issue_csr(cf_ca *ca, cf_cert_rec *out, const void *csr, size_t csr_len,
    const char *thing, int validity_days) CF_MUST_CHECK;

/*
 * cf_ca_issue_csr with the record's status (ACTIVE, or PENDING_ACTIVATION
 * for a provisioned device until it first connects) and, when attach is 0,
 * attached to no thing (a provisioning claim certificate: its subject
 * still names `thing`, e.g. "claim.<template>").
 */
int cf_ca_issue_csr_ex(cf_ca *ca, cf_cert_rec *out, const void *csr, size_t csr_len,
    const char *thing, int attach, cf_cert_status status, int validity_days) CF_MUST_CHECK;

/*
 * cf_ca_issue_csr_ex from a CSR the caller already parsed (and perhaps
 * verified: a verified cf_csr is not verified again — certfleetd checks a
 * rotation's CSR before it opens the transaction, then issues from it).
 * Every check is still made; csr stays the caller's.
 */
int cf_ca_issue_parsed(cf_ca *ca, cf_cert_rec *out, const cf_csr *csr, const char *thing,
    int attach, cf_cert_status status, int validity_days) CF_MUST_CHECK;

/* Revokes a device certificate and rewrites its CA's CRL, as one step. Already revoked: a no-op. */
int cf_ca_revoke_cert(cf_ca *ca, const char *ref, int reason) CF_MUST_CHECK;

/* The issuing intermediate followed by its root, PEM. */
int cf_ca_chain_pem(cf_ca *ca, char **out) CF_MUST_CHECK;

typedef struct {
	const char *name;
	const char *attributes_json;   /* NULL: none */
	const char *const *groups;     /* static groups to join */
	size_t n_groups;
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
	int validity_days;             /* 0: configured default */
	const char *bundle_dir;        /* generate a key and write a device bundle here */
	const void *csr;               /* or issue from the device's CSR */
	size_t csr_len;
} cf_ca_thing_opts;

/*
 * Registers a thing (and its groups) and, with a bundle directory or a
 * CSR, its first certificate — all in one transaction. The bundle
 * (device.key 0600, device.crt, ca-chain.crt, agent.conf) is written to a
 * staging directory and renamed to bundle_dir only once the transaction
 * has committed; bundle_dir must not exist or be empty. out may be NULL;
 * otherwise it receives the certificate (zeroed when none was issued).
 */
int cf_ca_thing_create(cf_ca *ca, cf_cert_rec *out, const cf_ca_thing_opts *o) CF_MUST_CHECK;

/*
 * A provisioning claim (docs/provisioning.md): generates a key here, issues
 * its certificate from the issuing CA (subject "claim.<template>", attached
 * to no thing, ACTIVE), records it as an ENABLED claim of the template and
 * writes the batch's bundle (device.key 0600, device.crt, ca-chain.crt and
 * an agent.conf with provision_template and provision_name_pattern) to
 * bundle_dir — all or nothing, as cf_ca_thing_create. out may be NULL.
 * CF_ENOTFOUND for an unknown template; CF_EEXISTS for a non-empty bundle_dir.
 */
typedef struct {
	const char *template_name;
	const char *bundle_dir;
	cf_key_alg key_alg;      /* the claim's key, and key_algorithm in agent.conf */
	cf_sig_alg sig_alg;
	int validity_days;       /* 0: the configured default */
} cf_ca_claim_opts;

int cf_ca_claim_create(cf_ca *ca, cf_cert_rec *out, const cf_ca_claim_opts *o) CF_MUST_CHECK;

#endif
