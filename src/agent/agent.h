/*
 * certfleet-agent's private interface between main.c (the rotation daemon)
 * and provision.c (first boot with a claim bundle, docs/provisioning.md).
 */
#ifndef CF_AGENT_PRIVATE_H
#define CF_AGENT_PRIVATE_H

#include <signal.h>

#include "cf_keystore.h"
#include "cf_prov_agent.h"

typedef struct {
	const char *host;
	long port;
	const char *ca_file;    /* the bundle's paths: the claim pair until provisioned */
	const char *cert_file;
	const char *key_file;
	long connect_timeout_s;
	long response_timeout_s;
	int max_attempts;
} agent_prov_conn;

/*
 * Provisions the device if its journal is not DONE: connects with the
 * claim as client id <thing>, sends the request, installs and switches to
 * the certificate it gets (cf_prov_agent). 0 when provisioned (now or
 * earlier); CF_EREJECTED when certfleetd rejected the request or the
 * broker refused the claim (logged with the errorCode); another negative
 * CF_E* otherwise. Returns early when *stop becomes non-zero.
 */
int agent_provision(const agent_prov_conn *c, cf_keystore *ks, const cf_prov_agent_opts *o,
    volatile sig_atomic_t *stop) CF_MUST_CHECK;

#endif
