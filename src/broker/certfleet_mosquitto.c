/*
 * certfleet_mosquitto — the Mosquitto 2.0 plugin (API v5): decides who may
 * connect (the registry's view of the TLS client certificate), which topics
 * a client may use (cf_acl), stamps device messages with the proven
 * identity (cf_stamp), reports connections on $cf/broker/connection and
 * kicks clients whose certificate or CA stops being ACTIVE, or whose thing
 * enters or leaves the quarantine group (docs/broker.md; broker facts in
 * MOSQUITTO-NOTES.md).
 *
 * An adapter: the rules live in the library. It owns one read-only registry
 * handle (reopened lazily after an error), the stamp key, a few counters
 * and the set of quarantined things (cf_acl_names: loaded at start, kept
 * current from the event tail, so an ACL check never queries the store).
 * It keeps no per-client table: a client's kind and certificate id travel
 * in its username, "<kind>:<certificate id>". Callbacks never
 * block: the registry is opened read-only with a 100 ms lock limit and
 * queried by primary key or index only.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "cf_acl.h"
#include "cf_error.h"
#include "cf_mitigate.h"
#include "cf_pki.h"
#include "cf_stamp.h"
#include "cf_store.h"
#include "cf_util.h"

#define CF_EXPORT __attribute__((visibility("default")))

#define CONNECTION_TOPIC "$cf/broker/connection"
#define TICK_PERIOD_MS 200
#define EVENTS_PER_TICK 256
#define REFUSED_EVENTS_PER_S 50
#define KICK_SLOTS 64          /* recent kicks, to name the reason of the disconnects they cause */
#define KICK_MEMORY_MS 10000

struct kick {
	char username[CF_ACL_USERNAME_MAX];
	int64_t at_ms;
};

/*
 * A connection the plugin accepted and has not yet reported closed, keyed
 * by the broker's client context. Mosquitto calls the disconnect hook again
 * for an offline persistent session when a new connection takes it over;
 * only a context found here was a live connection, so each connection is
 * reported closed exactly once, under its own ref.
 */
struct live {
	const void *client; /* NULL: free slot */
	uint64_t n;         /* ref = "<boot>-<n>" */
};

struct plugin {
	mosquitto_plugin_id_t *pid;
	int64_t boot;              /* start time: refs stay unique across broker restarts */
	uint64_t conn_seq;
	struct live *live;         /* open addressing, linear probing, power-of-two size */
	size_t live_cap, live_n;
	char *db_path;
	char *service_cert_path;
	char *stamp_key_path;
	char *prefix;
	char *quarantine_group;
	cf_acl_names *quarantined; /* the group's members */
	char service_id[CF_ID_LEN + 1];
	cf_stamp_key key;
	cf_store *st;              /* NULL after an error: reopened on next use */
	int store_broken;          /* logged once per outage */
	int64_t cursor;            /* last event sequence number acted on */
	int64_t last_tick_ms;
	int64_t refused_window_ms; /* start of the current one-second window */
	int refused_in_window;
	struct kick kicks[KICK_SLOTS];
	size_t kick_next;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void plog(int level, const char *fmt, ...) CF_PRINTF(2, 3);

static void
plog(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	mosquitto_log_printf(level, "certfleet: %s", buf);
}

/* The certificate id (SHA-256 of the DER) of the client's TLS certificate. */
static int
client_cert_id(char out[CF_ID_LEN + 1], struct mosquitto *client)
{
	X509 *x = mosquitto_client_certificate(client);
	unsigned char *der = NULL;
	int len, r = CF_ENOTFOUND;

	if (x == NULL)
		goto out;
	r = CF_ERROR;
	if ((len = i2d_X509(x, &der)) <= 0)
		goto out;
	cf_sha256_hex(out, der, (size_t)len);
	r = 0;
out:
	OPENSSL_free(der);
	X509_free(x);
	return r;
}

/* The registry, opened read-only on demand. NULL (logged once per outage) if it cannot be. */
static cf_store *
store(struct plugin *pl)
{
	if (pl->st != NULL)
		return pl->st;
	if (cf_store_open(&pl->st, pl->db_path, CF_STORE_READONLY) != 0) {
		pl->st = NULL;
		if (!pl->store_broken)
			plog(MOSQ_LOG_ERR, "registry %s unavailable: %s", pl->db_path, cf_error_last());
		pl->store_broken = 1;
		return NULL;
	}
	if (pl->store_broken)
		plog(MOSQ_LOG_NOTICE, "registry %s reopened", pl->db_path);
	pl->store_broken = 0;
	return pl->st;
}

/* After a failed query: drop the handle on anything but a plain "not found". */
static void
store_failed(struct plugin *pl, int r)
{
	if (r == CF_ENOTFOUND || pl->st == NULL)
		return;
	plog(MOSQ_LOG_WARNING, "registry query failed (%s), reopening: %s", cf_error_name(r),
	    cf_error_last());
	cf_store_close(pl->st);
	pl->st = NULL;
}

/* ---- connection events ------------------------------------------------- */

static int
json_set_str(json_t *o, const char *key, const char *value)
{
	char safe[CF_ACL_PRINTABLE_MAX];
	json_t *s = json_string(value ? value : "");

	/* jansson refuses invalid UTF-8; Mosquitto validates client ids, but be sure. */
	if (s == NULL)
		s = json_string(cf_acl_printable(safe, value));
	if (s == NULL || json_object_set_new(o, key, s) != 0)
		return CF_ERROR;
	return 0;
}

/* ---- live connections -------------------------------------------------- */

static size_t
live_home(const struct plugin *pl, const void *client)
{
	uint64_t h = (uint64_t)(uintptr_t)client * 0x9E3779B97F4A7C15ull;

	return (size_t)(h >> 32) & (pl->live_cap - 1);
}

static int
live_grow(struct plugin *pl)
{
	struct live *old = pl->live;
	size_t old_cap = pl->live_cap, i, j;

	pl->live_cap = old_cap ? old_cap * 2 : 1024;
	if ((pl->live = calloc(pl->live_cap, sizeof(*pl->live))) == NULL) {
		pl->live = old;
		pl->live_cap = old_cap;
		return CF_ERROR;
	}
	for (i = 0; i < old_cap; i++) {
		if (old[i].client == NULL)
			continue;
		for (j = live_home(pl, old[i].client); pl->live[j].client != NULL;
		    j = (j + 1) & (pl->live_cap - 1))
			;
		pl->live[j] = old[i];
	}
	free(old);
	return 0;
}

/* Records client as a live connection with a fresh number (replacing a stale entry). */
static int
live_put(struct plugin *pl, const void *client, uint64_t *out)
{
	size_t i;

	if ((pl->live_n + 1) * 2 > pl->live_cap && live_grow(pl) != 0)
		return CF_ERROR;
	for (i = live_home(pl, client); pl->live[i].client != NULL && pl->live[i].client != client;
	    i = (i + 1) & (pl->live_cap - 1))
		;
	if (pl->live[i].client == NULL)
		pl->live_n++;
	pl->live[i].client = client;
	pl->live[i].n = *out = ++pl->conn_seq;
	return 0;
}

/* Removes client, giving its number; CF_ENOTFOUND if it is not a live connection. */
static int
live_take(struct plugin *pl, const void *client, uint64_t *out)
{
	size_t i, j, k, mask = pl->live_cap - 1;

	if (pl->live_cap == 0)
		return CF_ENOTFOUND;
	for (i = live_home(pl, client); pl->live[i].client != client; i = (i + 1) & mask)
		if (pl->live[i].client == NULL)
			return CF_ENOTFOUND;
	*out = pl->live[i].n;
	/* Backward-shift deletion keeps every probe sequence unbroken. */
	for (j = (i + 1) & mask; pl->live[j].client != NULL; j = (j + 1) & mask) {
		k = live_home(pl, pl->live[j].client);
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			pl->live[i] = pl->live[j];
			i = j;
		}
	}
	pl->live[i].client = NULL;
	pl->live_n--;
	return 0;
}

static void
conn_ref(char out[CF_CONN_REF_MAX + 1], const struct plugin *pl, uint64_t n)
{
	snprintf(out, CF_CONN_REF_MAX + 1, "%lld-%llu", (long long)pl->boot, (unsigned long long)n);
}

/* ---- connection events -------------------------------------------------- */

static void
publish_connection(const char *event, struct mosquitto *client, const char *ref,
    const char *principal, const char *kind, const char *reason)
{
	json_t *o = json_object();
	char *text = NULL;
	int r;

	if (o == NULL || json_set_str(o, "event", event) != 0 ||
	    (ref != NULL && json_set_str(o, "connection", ref) != 0) ||
	    json_set_str(o, "clientId", mosquitto_client_id(client)) != 0 ||
	    json_set_str(o, "principal", principal) != 0 || json_set_str(o, "kind", kind) != 0 ||
	    json_set_str(o, "peer", mosquitto_client_address(client)) != 0 ||
	    json_object_set_new(o, "time", json_integer(cf_time_now())) != 0 ||
	    json_set_str(o, "reason", reason) != 0 ||
	    (text = json_dumps(o, JSON_COMPACT)) == NULL) {
		plog(MOSQ_LOG_WARNING, "cannot build a %s event", event);
		goto out;
	}
	r = mosquitto_broker_publish_copy(NULL, CONNECTION_TOPIC, (int)strlen(text), text, 1, false,
	    NULL);
	if (r != MOSQ_ERR_SUCCESS)
		plog(MOSQ_LOG_WARNING, "cannot publish a %s event: %s", event, mosquitto_strerror(r));
out:
	free(text);
	json_decref(o);
}

/* ---- authentication --------------------------------------------------- */

/*
 * Steps 3-7 of docs/broker.md, decided by the library. 0 to accept as a
 * device, or as a claim (docs/provisioning.md): *kind says which.
 */
static int
check_device(struct plugin *pl, cf_acl_kind *kind, char *reason, size_t reason_len,
    const char *id, const char *client_id)
{
	cf_store *st;
	int r;

	if ((st = store(pl)) == NULL) {
		snprintf(reason, reason_len, "registry unavailable");
		return CF_EREJECTED;
	}
	r = cf_acl_authenticate(st, kind, id, client_id, cf_time_now(), reason, reason_len);
	if (r != 0 && r != CF_EREJECTED)
		store_failed(pl, r);
	return r;
}

static void
refuse(struct plugin *pl, struct mosquitto *client, const char *id, const char *reason)
{
	char cid[CF_ACL_PRINTABLE_MAX];
	int64_t now = mono_ms();

	plog(MOSQ_LOG_NOTICE, "refused %s from %s: %s", cf_acl_printable(cid, mosquitto_client_id(client)),
	    mosquitto_client_address(client), reason);
	/*
	 * A username the client sent must not outlive the refusal: the
	 * disconnect event that follows would take it for one we set.
	 */
	if (mosquitto_set_username(client, NULL) != MOSQ_ERR_SUCCESS)
		plog(MOSQ_LOG_WARNING, "cannot clear the username of a refused client");
	if (now - pl->refused_window_ms >= 1000) {
		pl->refused_window_ms = now;
		pl->refused_in_window = 0;
	}
	if (pl->refused_in_window++ < REFUSED_EVENTS_PER_S)
		publish_connection("refused", client, NULL, id, "unknown", reason);
}

static int
on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ev = event_data;
	struct plugin *pl = userdata;
	const char *client_id = mosquitto_client_id(ev->client);
	char reason[512] = "", uname[CF_ACL_USERNAME_MAX], cid[CF_ACL_PRINTABLE_MAX];
	char ref[CF_CONN_REF_MAX + 1];
	cf_principal p = { .kind = CF_KIND_DEVICE, .id = "" };
	uint64_t n;
	int r;

	(void)event;
	if ((r = client_cert_id(p.id, ev->client)) != 0) {
		snprintf(reason, sizeof(reason), "%s", r == CF_ENOTFOUND ? "no client certificate" :
		    "cannot read the client certificate");
		goto refused;
	}
	if (strcmp(p.id, pl->service_id) == 0)
		p.kind = CF_KIND_SERVICE;
	else if (check_device(pl, &p.kind, reason, sizeof(reason), p.id, client_id) != 0)
		goto refused;
	if (cf_acl_principal_format(uname, sizeof(uname), &p) != 0 ||
	    mosquitto_set_username(ev->client, uname) != MOSQ_ERR_SUCCESS) {
		snprintf(reason, sizeof(reason), "cannot set the username");
		goto refused;
	}
	plog(MOSQ_LOG_INFO, "accepted %s from %s as %s", cf_acl_printable(cid, client_id),
	    mosquitto_client_address(ev->client), uname);
	if (live_put(pl, ev->client, &n) != 0) {
		snprintf(reason, sizeof(reason), "out of memory");
		goto refused;
	}
	conn_ref(ref, pl, n);
	publish_connection("connected", ev->client, ref, p.id, cf_acl_kind_name(p.kind), "");
	return MOSQ_ERR_SUCCESS;
refused:
	refuse(pl, ev->client, p.id, reason);
	return MOSQ_ERR_AUTH;
}

/* ---- quarantine ---------------------------------------------------------- */

/* The cf_acl principal flags of an authenticated client (a device's thing is its client id). */
static unsigned
principal_flags(const struct plugin *pl, const cf_principal *p, const char *client_id)
{
	if (p->kind == CF_KIND_DEVICE && cf_acl_names_has(pl->quarantined, client_id))
		return CF_ACL_QUARANTINED;
	return 0;
}

/* The quarantine group's members as a set; a group that does not exist yet has none. */
static int
quarantine_read(cf_store *st, const char *group, cf_acl_names **out)
{
	char **v = NULL;
	size_t n = 0;
	int r;

	if ((r = cf_store_group_members(st, &v, &n, group)) == CF_ENOTFOUND)
		r = 0;
	if (r == 0)
		r = cf_acl_names_new(out, v, n);
	cf_strv_free(v, n);
	return r;
}

/* ---- authorization ---------------------------------------------------- */

static int
on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ev = event_data;
	struct plugin *pl = userdata;
	const char *client_id;
	cf_principal p;
	cf_acl_access access;

	(void)event;
	if (cf_acl_principal_parse(&p, mosquitto_client_username(ev->client)) != 0)
		return MOSQ_ERR_ACL_DENIED;
	switch (ev->access) {
	case MOSQ_ACL_READ:
		access = CF_ACL_READ;
		break;
	case MOSQ_ACL_WRITE:
		access = CF_ACL_PUBLISH;
		break;
	case MOSQ_ACL_SUBSCRIBE:   /* the topic is the filter */
	case MOSQ_ACL_UNSUBSCRIBE:
		access = CF_ACL_SUBSCRIBE;
		break;
	default:
		return MOSQ_ERR_ACL_DENIED;
	}
	client_id = mosquitto_client_id(ev->client);
	if (cf_acl_check_flags(p.kind, principal_flags(pl, &p, client_id), client_id, pl->prefix,
	    ev->topic, access) != 0)
		return MOSQ_ERR_ACL_DENIED;
	return MOSQ_ERR_SUCCESS;
}

/* ---- stamping ---------------------------------------------------------- */

static int
is_stamp_name(const char *name)
{
	return strcasecmp(name, CF_PROP_PRINCIPAL) == 0 || strcasecmp(name, CF_PROP_CLIENT_ID) == 0 ||
	    strcasecmp(name, CF_PROP_STAMP) == 0;
}

/*
 * Appends a copy of one property to *out, unless it is a user property
 * named like one of ours. Values read from the list are allocated by the
 * broker and freed with mosquitto_free.
 */
static int
copy_property(mosquitto_property **out, const mosquitto_property *prop)
{
	int id = mosquitto_property_identifier(prop), r = MOSQ_ERR_INVAL;
	char *name = NULL, *value = NULL;
	void *bin = NULL;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;

	switch (id) {
	case MQTT_PROP_USER_PROPERTY:
		if (mosquitto_property_read_string_pair(prop, id, &name, &value, false) == NULL)
			break;
		r = is_stamp_name(name) ? MOSQ_ERR_SUCCESS :
		    mosquitto_property_add_string_pair(out, id, name, value);
		break;
	case MQTT_PROP_CONTENT_TYPE:
	case MQTT_PROP_RESPONSE_TOPIC:
		if (mosquitto_property_read_string(prop, id, &value, false) == NULL)
			break;
		r = mosquitto_property_add_string(out, id, value);
		break;
	case MQTT_PROP_CORRELATION_DATA:
		if (mosquitto_property_read_binary(prop, id, &bin, &u16, false) == NULL)
			break;
		r = mosquitto_property_add_binary(out, id, bin, u16);
		break;
	case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
		if (mosquitto_property_read_byte(prop, id, &u8, false) == NULL)
			break;
		r = mosquitto_property_add_byte(out, id, u8);
		break;
	case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
		if (mosquitto_property_read_int32(prop, id, &u32, false) == NULL)
			break;
		r = mosquitto_property_add_int32(out, id, u32);
		break;
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
		if (mosquitto_property_read_varint(prop, id, &u32, false) == NULL)
			break;
		r = mosquitto_property_add_varint(out, id, u32);
		break;
	case MQTT_PROP_TOPIC_ALIAS:
		if (mosquitto_property_read_int16(prop, id, &u16, false) == NULL)
			break;
		r = mosquitto_property_add_int16(out, id, u16);
		break;
	default:
		/* Not a PUBLISH property: the broker keeps none of these on a message. */
		r = MOSQ_ERR_SUCCESS;
		break;
	}
	mosquitto_free(name);
	mosquitto_free(value);
	mosquitto_free(bin);
	return r;
}

static int
on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ev = event_data;
	struct plugin *pl = userdata;
	mosquitto_property *props = NULL, *old;
	const mosquitto_property *prop;
	const char *client_id = mosquitto_client_id(ev->client);
	char stamp[CF_STAMP_HEX_LEN + 1];
	cf_principal p;
	int r = MOSQ_ERR_ACL_DENIED;

	(void)event;
	if (cf_acl_principal_parse(&p, mosquitto_client_username(ev->client)) != 0)
		goto out; /* cannot happen for an authenticated client: never pass it unstamped */
	r = MOSQ_ERR_SUCCESS;
	if (p.kind == CF_KIND_SERVICE)
		goto out;
	for (prop = ev->properties; prop != NULL; prop = mosquitto_property_next(prop)) {
		if ((r = copy_property(&props, prop)) != MOSQ_ERR_SUCCESS)
			goto out;
	}
	r = MOSQ_ERR_NOMEM;
	if (cf_stamp_compute(stamp, &pl->key, p.id, client_id ? client_id : "", ev->topic,
	    ev->payload, ev->payloadlen) != 0) {
		plog(MOSQ_LOG_ERR, "cannot stamp a message: %s", cf_error_last());
		goto out;
	}
	if (mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, CF_PROP_PRINCIPAL,
	    p.id) != MOSQ_ERR_SUCCESS ||
	    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, CF_PROP_CLIENT_ID,
	    client_id ? client_id : "") != MOSQ_ERR_SUCCESS ||
	    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, CF_PROP_STAMP,
	    stamp) != MOSQ_ERR_SUCCESS)
		goto out;
	/* 2.0.11 stores whatever list we leave here and never frees the old one. */
	old = ev->properties;
	ev->properties = props;
	props = NULL;
	mosquitto_property_free_all(&old);
	r = MOSQ_ERR_SUCCESS;
out:
	mosquitto_property_free_all(&props);
	return r;
}

/* ---- kicking ------------------------------------------------------------- */

static void
kick(struct plugin *pl, cf_acl_kind kind, const char *id)
{
	cf_principal p = { .kind = kind };
	struct kick *k = &pl->kicks[pl->kick_next];

	snprintf(p.id, sizeof(p.id), "%s", id);
	if (cf_acl_principal_format(k->username, sizeof(k->username), &p) != 0)
		return;
	k->at_ms = mono_ms();
	pl->kick_next = (pl->kick_next + 1) % KICK_SLOTS;
	/* No will: a revoked client's last words are not delivered. */
	mosquitto_kick_client_by_username(k->username, false);
}

/*
 * A disabled claim: every live connection holding it, by client id. A
 * leaked claim is typically connected from several clients at once, and
 * kicking by username was seen to leave all but one connected (2.0.11), so
 * the live table names them; ids are copied first because each kick runs
 * on_disconnect, which changes the table.
 */
static void
kick_claim(struct plugin *pl, const char *id)
{
	char want[CF_ACL_USERNAME_MAX], **ids = NULL;
	cf_principal p = { .kind = CF_KIND_CLAIM };
	const char *u, *cid;
	size_t i, n = 0;

	kick(pl, CF_KIND_CLAIM, id);
	snprintf(p.id, sizeof(p.id), "%s", id);
	if (cf_acl_principal_format(want, sizeof(want), &p) != 0 || pl->live_n == 0 ||
	    (ids = calloc(pl->live_n, sizeof(*ids))) == NULL)
		return;
	for (i = 0; i < pl->live_cap; i++) {
		if (pl->live[i].client == NULL)
			continue;
		u = mosquitto_client_username(pl->live[i].client);
		cid = mosquitto_client_id(pl->live[i].client);
		if (n < pl->live_n && u != NULL && cid != NULL && strcmp(u, want) == 0 &&
		    (ids[n] = strdup(cid)) != NULL)
			n++;
	}
	for (i = 0; i < n; i++) {
		(void)mosquitto_kick_client_by_clientid(ids[i], false);
		free(ids[i]);
	}
	free(ids);
}

static void
kick_cert(struct plugin *pl, const char *id)
{
	kick(pl, CF_KIND_DEVICE, id);
	kick(pl, CF_KIND_CLAIM, id);
}

/* Kicks every ACTIVE certificate issued by ca_id (indexed by (ca_id, status)). */
static int
kick_issued_by(struct plugin *pl, cf_store *st, const char *ca_id)
{
	cf_cert_filter f = { .status = CF_CERT_ACTIVE, .ca_id = ca_id };
	cf_cert_rec *certs = NULL;
	size_t n = 0, i;
	int r;

	if ((r = cf_store_cert_list(st, &certs, &n, &f)) != 0)
		goto out;
	for (i = 0; i < n; i++)
		kick_cert(pl, certs[i].id);
	if (n > 0)
		plog(MOSQ_LOG_NOTICE, "kicked %zu certificate(s) of CA %s", n, ca_id);
out:
	cf_cert_recs_free(certs, n);
	return r;
}

/* Kicks the clients of every ACTIVE certificate of thing (indexed by (thing, status)). */
static int
kick_thing(struct plugin *pl, cf_store *st, const char *thing)
{
	cf_cert_filter f = { .status = CF_CERT_ACTIVE, .thing = thing };
	cf_cert_rec *certs = NULL;
	size_t n = 0, i;
	int r;

	if ((r = cf_store_cert_list(st, &certs, &n, &f)) != 0)
		goto out;
	for (i = 0; i < n; i++)
		kick(pl, CF_KIND_DEVICE, certs[i].id);
out:
	cf_cert_recs_free(certs, n);
	return r;
}

/*
 * A change of the quarantine group (group.* about it) or the deletion of a
 * member (which leaves every group without a group event): re-reads the
 * members, and kicks every thing that entered or left so that it
 * reconnects under its new rule with fresh subscriptions. (Mosquitto 2.0
 * checks MOSQ_ACL_READ on every delivery too, so the new rule holds for
 * existing subscriptions even before the kick lands.) On an error the set
 * is unchanged and the event is retried.
 */
static int
quarantine_event(struct plugin *pl, cf_store *st, const cf_event_rec *ev)
{
	cf_acl_names *next = NULL;
	size_t n_old = cf_acl_names_count(pl->quarantined), n_new, i = 0, j = 0;
	const char *thing;
	int c, r = 0;

	if (!(strncmp(ev->type, "group.", 6) == 0 && strcmp(ev->subject, pl->quarantine_group) == 0) &&
	    !(strcmp(ev->type, "thing.deleted") == 0 && cf_acl_names_has(pl->quarantined, ev->subject)))
		return 0;
	if ((r = quarantine_read(st, pl->quarantine_group, &next)) != 0)
		goto out;
	n_new = cf_acl_names_count(next);
	/* Both in strcmp order: one merge walk finds the things that entered or left. */
	while (r == 0 && (i < n_old || j < n_new)) {
		c = i == n_old ? 1 : j == n_new ? -1 :
		    strcmp(cf_acl_names_at(pl->quarantined, i), cf_acl_names_at(next, j));
		if (c == 0) {
			i++;
			j++;
			continue;
		}
		thing = c < 0 ? cf_acl_names_at(pl->quarantined, i++) : cf_acl_names_at(next, j++);
		plog(MOSQ_LOG_NOTICE, "thing %s %s quarantine group %s: kicking its clients", thing,
		    c < 0 ? "left" : "entered", pl->quarantine_group);
		r = kick_thing(pl, st, thing);
	}
	if (r != 0)
		goto out;
	cf_acl_names_free(pl->quarantined);
	pl->quarantined = next;
	next = NULL;
out:
	cf_acl_names_free(next);
	return r;
}

/* Acts on one event; CF_ENOTFOUND (the subject is gone) is not an error. */
static int
handle_event(struct plugin *pl, cf_store *st, const cf_event_rec *ev)
{
	cf_cert_rec c = { 0 };
	cf_ca_rec ca = { 0 };
	cf_ca_rec *all = NULL;
	cf_claim_rec cl;
	size_t n = 0, i;
	int r = 0;

	if (strcmp(ev->type, "cert.status") == 0) {
		if ((r = cf_store_cert_get(st, &c, ev->subject)) != 0)
			goto out;
		if (c.status != CF_CERT_ACTIVE) {
			plog(MOSQ_LOG_NOTICE, "certificate %s is %s: kicking its clients", c.id,
			    cf_cert_status_name(c.status));
			kick_cert(pl, c.id);
		}
	} else if (strcmp(ev->type, "claim.status") == 0) {
		/* A disabled claim (misuse, or an operator) is cut off at once. */
		if ((r = cf_store_claim_get(st, &cl, ev->subject)) != 0 || cl.status == CF_CLAIM_ENABLED)
			goto out;
		plog(MOSQ_LOG_NOTICE, "claim certificate %s is %s: kicking its clients", cl.cert_id,
		    cf_claim_status_name(cl.status));
		kick_claim(pl, cl.cert_id);
	} else if (strcmp(ev->type, "ca.status") == 0) {
		if ((r = cf_store_ca_get(st, &ca, ev->subject)) != 0 || ca.status == CF_CERT_ACTIVE)
			goto out;
		if ((r = kick_issued_by(pl, st, ca.id)) != 0)
			goto out;
		/* A root's intermediates (the CA table is small). */
		if ((r = cf_store_ca_list(st, &all, &n)) != 0)
			goto out;
		for (i = 0; i < n && r == 0; i++) {
			if (strcmp(all[i].parent_id, ca.id) == 0)
				r = kick_issued_by(pl, st, all[i].id);
		}
	} else {
		r = quarantine_event(pl, st, ev);
	}
out:
	cf_ca_recs_free(all, n);
	cf_ca_rec_clear(&ca);
	cf_cert_rec_clear(&c);
	return r == CF_ENOTFOUND ? 0 : r;
}

static int
on_tick(int event, void *event_data, void *userdata)
{
	struct plugin *pl = userdata;
	cf_event_rec *evs = NULL;
	size_t n = 0, i;
	int64_t now = mono_ms();
	cf_store *st;
	int r;

	(void)event;
	(void)event_data; /* its time fields are not filled in 2.0.11 */
	if (now - pl->last_tick_ms < TICK_PERIOD_MS)
		return MOSQ_ERR_SUCCESS;
	pl->last_tick_ms = now;
	if ((st = store(pl)) == NULL)
		return MOSQ_ERR_SUCCESS;
	if ((r = cf_store_event_list_after(st, &evs, &n, pl->cursor, EVENTS_PER_TICK)) != 0) {
		store_failed(pl, r);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((r = handle_event(pl, st, &evs[i])) != 0) {
			/* Retried on the next tick, from this event. */
			store_failed(pl, r);
			goto out;
		}
		pl->cursor = evs[i].seq;
	}
out:
	cf_event_recs_free(evs, n);
	return MOSQ_ERR_SUCCESS;
}

/* ---- disconnects ------------------------------------------------------- */

/* "kicked" if we kicked this username lately (the slot is then forgotten). */
static const char *
disconnect_reason(struct plugin *pl, const char *username, int reason)
{
	int64_t now = mono_ms();
	size_t i;

	for (i = 0; i < KICK_SLOTS; i++) {
		struct kick *k = &pl->kicks[i];

		if (k->username[0] != '\0' && now - k->at_ms < KICK_MEMORY_MS &&
		    strcmp(k->username, username) == 0) {
			k->username[0] = '\0';
			return "kicked";
		}
	}
	/* 2.0.11 passes -1 for every disconnect; later versions pass a MOSQ_ERR code. */
	switch (reason) {
	case MOSQ_ERR_SUCCESS:
		return "client";
	case MOSQ_ERR_KEEPALIVE:
		return "keepalive";
	case MOSQ_ERR_CONN_LOST:
		return "connection-lost";
	case MOSQ_ERR_ADMINISTRATIVE_ACTION:
		return "kicked";
	case MOSQ_ERR_PROTOCOL:
	case MOSQ_ERR_MALFORMED_PACKET:
		return "protocol-error";
	default:
		return "closed";
	}
}

static int
on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ev = event_data;
	struct plugin *pl = userdata;
	const char *username = mosquitto_client_username(ev->client);
	char id[CF_ID_LEN + 1], ref[CF_CONN_REF_MAX + 1];
	cf_principal p;
	uint64_t n;

	(void)event;
	/* Only clients we accepted carry a username that parses (refusals clear theirs). */
	if (cf_acl_principal_parse(&p, username) != 0)
		return MOSQ_ERR_SUCCESS;
	if (client_cert_id(id, ev->client) == 0 && strcmp(id, p.id) != 0)
		return MOSQ_ERR_SUCCESS;
	/* An offline session being taken over is not a connection ending: it already did. */
	if (live_take(pl, ev->client, &n) != 0)
		return MOSQ_ERR_SUCCESS;
	conn_ref(ref, pl, n);
	publish_connection("disconnected", ev->client, ref, p.id, cf_acl_kind_name(p.kind),
	    disconnect_reason(pl, username, ev->reason));
	return MOSQ_ERR_SUCCESS;
}

/* ---- life cycle ---------------------------------------------------------- */

static void
plugin_free(struct plugin *pl)
{
	if (pl == NULL)
		return;
	cf_store_close(pl->st);
	free(pl->live);
	cf_stamp_key_wipe(&pl->key);
	free(pl->db_path);
	free(pl->service_cert_path);
	free(pl->stamp_key_path);
	free(pl->prefix);
	free(pl->quarantine_group);
	cf_acl_names_free(pl->quarantined);
	free(pl);
}

static int
options_read(struct plugin *pl, const struct mosquitto_opt *opts, int n)
{
	struct {
		const char *key;
		char **dst;
	} known[] = {
		{ "database", &pl->db_path },
		{ "service_cert", &pl->service_cert_path },
		{ "stamp_key", &pl->stamp_key_path },
		{ "topic_prefix", &pl->prefix },
		{ "quarantine_group", &pl->quarantine_group },
	};
	size_t k;
	int i, r = CF_EINVAL;

	for (i = 0; i < n; i++) {
		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
			if (strcmp(opts[i].key, known[k].key) == 0)
				break;
		}
		if (k == sizeof(known) / sizeof(known[0])) {
			plog(MOSQ_LOG_WARNING, "ignoring unknown option plugin_opt_%s", opts[i].key);
			continue;
		}
		free(*known[k].dst);
		if ((*known[k].dst = strdup(opts[i].value ? opts[i].value : "")) == NULL)
			goto out;
	}
	if (pl->prefix == NULL && (pl->prefix = strdup("cf/")) == NULL)
		goto out;
	for (k = 0; k < 3; k++) {
		if (*known[k].dst == NULL || (*known[k].dst)[0] == '\0') {
			plog(MOSQ_LOG_ERR, "option plugin_opt_%s is required", known[k].key);
			goto out;
		}
	}
	if (cf_acl_prefix_check(pl->prefix) != 0) {
		plog(MOSQ_LOG_ERR, "option plugin_opt_topic_prefix: %s", cf_error_last());
		goto out;
	}
	if (pl->quarantine_group == NULL &&
	    (pl->quarantine_group = strdup(CF_MITIGATE_QUARANTINE_GROUP)) == NULL)
		goto out;
	if (!cf_name_valid("group", pl->quarantine_group)) {
		plog(MOSQ_LOG_ERR, "option plugin_opt_quarantine_group: %s", cf_error_last());
		goto out;
	}
	r = 0;
out:
	return r;
}

CF_EXPORT int
mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for (i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5)
			return 5;
	}
	return -1;
}

CF_EXPORT int
mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
    struct mosquitto_opt *options, int option_count)
{
	struct plugin *pl = NULL;
	cf_cert *svc = NULL;
	int r = MOSQ_ERR_UNKNOWN;

	if ((pl = calloc(1, sizeof(*pl))) == NULL) {
		r = MOSQ_ERR_NOMEM;
		goto out;
	}
	pl->pid = identifier;
	pl->boot = cf_time_now();
	if (options_read(pl, options, option_count) != 0)
		goto out;
	if (cf_cert_load(&svc, pl->service_cert_path) != 0 ||
	    cf_cert_fingerprint(pl->service_id, svc) != 0) {
		plog(MOSQ_LOG_ERR, "option plugin_opt_service_cert: %s", cf_error_last());
		goto out;
	}
	if (cf_stamp_key_load(&pl->key, pl->stamp_key_path) != 0) {
		plog(MOSQ_LOG_ERR, "option plugin_opt_stamp_key: %s", cf_error_last());
		goto out;
	}
	if (cf_store_open(&pl->st, pl->db_path, CF_STORE_READONLY) != 0) {
		pl->st = NULL;
		plog(MOSQ_LOG_ERR, "option plugin_opt_database: %s", cf_error_last());
		goto out;
	}
	/* Kicking starts after the newest event: earlier changes predate every connection. */
	if (cf_store_event_head(pl->st, &pl->cursor) != 0) {
		plog(MOSQ_LOG_ERR, "cannot read the event log of %s: %s", pl->db_path, cf_error_last());
		goto out;
	}
	/* After the head: a change in between is replayed from the tail (a re-read). */
	if (quarantine_read(pl->st, pl->quarantine_group, &pl->quarantined) != 0) {
		plog(MOSQ_LOG_ERR, "cannot read quarantine group %s: %s", pl->quarantine_group,
		    cf_error_last());
		goto out;
	}
	if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, pl) ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, pl) ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, NULL, pl) ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, pl) ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, pl)) {
		plog(MOSQ_LOG_ERR, "cannot register callbacks");
		goto out;
	}
	plog(MOSQ_LOG_NOTICE, "registry %s, service certificate %s, topic prefix '%s', events after %lld, "
	    "quarantine group %s (%zu things)", pl->db_path, pl->service_id, pl->prefix,
	    (long long)pl->cursor, pl->quarantine_group, cf_acl_names_count(pl->quarantined));
	*userdata = pl;
	pl = NULL;
	r = MOSQ_ERR_SUCCESS;
out:
	if (pl != NULL) {
		/* Registered callbacks would outlive pl: take them back. */
		mosquitto_callback_unregister(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_MESSAGE, on_message, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_TICK, on_tick, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	}
	cf_cert_free(svc);
	plugin_free(pl);
	return r;
}

CF_EXPORT int
mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct plugin *pl = userdata;

	(void)options;
	(void)option_count;
	if (pl == NULL)
		return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(pl->pid, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(pl->pid, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(pl->pid, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(pl->pid, MOSQ_EVT_TICK, on_tick, NULL);
	mosquitto_callback_unregister(pl->pid, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	plugin_free(pl);
	return MOSQ_ERR_SUCCESS;
}
