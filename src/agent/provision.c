/*
 * certfleet-agent: provisioning by claim on first boot (docs/provisioning.md).
 * A short-lived libmosquitto client over the claim pair drives cf_prov_agent:
 * with the file key store the claim pair is the bundle's files; with the
 * PKCS#11 key store the claim key was adopted into the token as generation
 * 1 when the store was opened, and the connection uses it there through the
 * same TLS context the daemon builds (cf_p11_tls_ctx).
 * connect as <thing>, subscribe to this client's two reply topics, publish
 * the request, resend it (the same key) after response_timeout_s, stop at
 * the first answer. The broker refusing the claim at CONNECT (disabled,
 * unknown) or certfleetd rejecting the request ends it: both are final for
 * this claim and are reported with their reason.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "agent.h"
#include "cf_log.h"
#include "cf_p11.h"
#include "cf_util.h"

typedef struct {
	cf_prov_agent *pa;
	char *subs[2];
	int up;          /* subscribed */
	int refused;     /* CONNACK with an error: the claim is not accepted */
	int lost;
	int answered;    /* 1 accepted, -1 rejected or unusable */
	cf_prov_code code;
	char why[512];
} pctx;

static void
on_connect(struct mosquitto *m, void *arg, int rc, int flags, const mosquitto_property *props)
{
	pctx *p = arg;

	(void)flags;
	(void)props;
	if (rc != 0) {
		snprintf(p->why, sizeof(p->why), "the broker refused the claim certificate: %s",
		    mosquitto_reason_string(rc));
		p->refused = 1;
		return;
	}
	if (mosquitto_subscribe_multiple(m, NULL, 2, p->subs, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
		p->lost = 1;
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted,
    const mosquitto_property *props)
{
	pctx *p = arg;
	int i;

	(void)m;
	(void)mid;
	(void)props;
	for (i = 0; i < n; i++) {
		if (granted[i] >= 0x80) {
			snprintf(p->why, sizeof(p->why), "the broker refused the reply subscription");
			p->refused = 1;
			return;
		}
	}
	p->up = 1;
}

static void
on_disconnect(struct mosquitto *m, void *arg, int rc, const mosquitto_property *props)
{
	pctx *p = arg;

	(void)m;
	(void)rc;
	(void)props;
	p->lost = 1;
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
    const mosquitto_property *props)
{
	pctx *p = arg;
	int r;

	(void)m;
	(void)props;
	if (p->answered || msg->topic == NULL)
		return;
	r = cf_prov_agent_reply(p->pa, &p->code, msg->topic, msg->payload,
	    msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0);
	if (r == CF_ENOTFOUND)
		return;
	if (r == 0) {
		p->answered = 1;
		return;
	}
	snprintf(p->why, sizeof(p->why), "%s", cf_error_last());
	if (r != CF_EREJECTED)
		p->code = CF_PROV_INTERNAL_ERROR;
	p->answered = -1;
}

/*
 * TLS with the claim pair. A PKCS#11 key store holds the claim key in the
 * token (its active generation, adopted from the bundle's device.key): the
 * context is made with that key's URI; *ctx is the caller's to free after
 * mosquitto_destroy. Otherwise the bundle's key file.
 */
static int
claim_tls(struct mosquitto *m, const agent_prov_conn *c, cf_keystore *ks, void **ctx)
{
	struct cf_p11 *tok = cf_keystore_pkcs11_token(ks);
	char uri[CF_P11_URI_MAX], cert[4096];
	cf_keystore_status s;
	int r, rc;

	if (tok == NULL) {
		if ((rc = mosquitto_tls_set(m, c->ca_file, NULL, c->cert_file, c->key_file, NULL)) !=
		    MOSQ_ERR_SUCCESS || (rc = mosquitto_tls_opts_set(m, 1, NULL, NULL)) !=
		    MOSQ_ERR_SUCCESS) {
			cf_error_set("tls setup: %s", mosquitto_strerror(rc));
			return CF_ERROR;
		}
		return 0;
	}
	if ((r = ks->ops->status(ks->st, &s)) != 0 ||
	    (r = ks->ops->locate(ks->st, uri, sizeof(uri), cert, sizeof(cert), s.active)) != 0 ||
	    (r = cf_p11_tls_ctx(ctx, tok, uri, c->ca_file, c->cert_file, c->host)) != 0) {
		cf_error_prefix("tls setup with the claim key in the token");
		return r;
	}
	if ((rc = mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0)) != MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, *ctx)) != MOSQ_ERR_SUCCESS) {
		cf_error_set("tls setup: %s", mosquitto_strerror(rc));
		return CF_ERROR;
	}
	return 0;
}

int
agent_provision(const agent_prov_conn *c, cf_keystore *ks, const cf_prov_agent_opts *o,
    volatile sig_atomic_t *stop)
{
	struct mosquitto *m = NULL;
	void *tls_ctx = NULL;
	char *topic = NULL, *payload = NULL;
	int64_t deadline, now;
	int r, rc, attempt = 0, sent = 0;
	pctx p;

	memset(&p, 0, sizeof(p));
	if ((r = cf_prov_agent_start(&p.pa, o, ks)) != 0) {
		cf_error_prefix("provisioning (journal in %s)", o->state_dir);
		goto out;
	}
	if (cf_prov_agent_state_get(p.pa) == CF_PROV_AGENT_DONE) {
		r = 0;
		goto out;
	}
	if ((r = cf_prov_agent_reply_topics(p.pa, &p.subs[0], &p.subs[1])) != 0)
		goto out;
	cf_log(CF_LOG_INFO, "provisioning", "template=%s thing=%s", o->template_name,
	    cf_prov_agent_thing(p.pa));
	r = CF_ERROR;
	if ((m = mosquitto_new(cf_prov_agent_thing(p.pa), true, &p)) == NULL) {
		cf_error_set("mosquitto_new: %s", strerror(errno));
		goto out;
	}
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_connect_v5_callback_set(m, on_connect);
	mosquitto_disconnect_v5_callback_set(m, on_disconnect);
	mosquitto_subscribe_v5_callback_set(m, on_subscribe);
	mosquitto_message_v5_callback_set(m, on_message);
	if (claim_tls(m, c, ks, &tls_ctx) != 0)
		goto out;
	while (!*stop && attempt < c->max_attempts && !p.answered && !p.refused) {
		attempt++;
		p.up = p.lost = 0;
		sent = 0;
		rc = mosquitto_connect_bind_v5(m, c->host, (int)c->port, 60, NULL, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			cf_log(CF_LOG_WARN, "provisioning: connect failed", "attempt=%d error=%s", attempt,
			    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
			(void)poll(NULL, 0, 1000);
			continue;
		}
		deadline = cf_time_now() + c->connect_timeout_s;
		while (!*stop && !p.answered && !p.refused && !p.lost) {
			rc = mosquitto_loop(m, 200, 1);
			now = cf_time_now();
			if (rc != MOSQ_ERR_SUCCESS)
				break;
			if (p.up && !sent) {
				free(topic);
				free(payload);
				topic = payload = NULL;
				if ((r = cf_prov_agent_request(p.pa, &topic, &payload)) != 0)
					goto out;
				r = CF_ERROR;
				if (mosquitto_publish_v5(m, NULL, topic, (int)strlen(payload), payload, 1, false,
				    NULL) == MOSQ_ERR_SUCCESS) {
					sent = 1;
					deadline = now + c->response_timeout_s;
					cf_log(CF_LOG_INFO, "provisioning request sent", "attempt=%d topic=%s",
					    attempt, topic);
				}
			}
			if (now >= deadline) {
				cf_log(CF_LOG_WARN, "provisioning: no answer", "attempt=%d timeout_s=%ld",
				    attempt, sent ? c->response_timeout_s : c->connect_timeout_s);
				break;
			}
		}
		(void)mosquitto_disconnect_v5(m, 0, NULL);
		(void)mosquitto_loop(m, 100, 1);
	}
	if (p.answered == 1) {
		cf_log(CF_LOG_INFO, "provisioned", "thing=%s", cf_prov_agent_thing(p.pa));
		r = 0;
	} else if (p.answered == -1 || p.refused) {
		cf_error_set("provisioning refused: %s", p.why);
		cf_log(CF_LOG_ERROR, "provisioning refused", "code=%s reason=\"%s\"",
		    p.refused ? "ConnectRefused" : cf_prov_code_name(p.code), p.why);
		r = CF_EREJECTED;
	} else if (!*stop) {
		cf_error_set("provisioning: no answer after %d attempts", attempt);
		r = CF_ERROR;
	} else {
		r = CF_ERROR;
		cf_error_set("stopped");
	}
out:
	if (m != NULL)
		mosquitto_destroy(m);
	if (tls_ctx != NULL)
		cf_p11_tls_ctx_free(tls_ctx);
	free(topic);
	free(payload);
	free(p.subs[0]);
	free(p.subs[1]);
	cf_prov_agent_free(p.pa);
	return r;
}
