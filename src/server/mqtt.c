/*
 * certfleetd's MQTT client: libmosquitto without its own thread, driven by
 * the reactor (docs/broker.md, "certfleetd").
 *
 * Owns the mosquitto handle and the events around its socket: a read
 * event, a write event armed only while libmosquitto has output queued, a
 * 1 s timer for keepalive (mosquitto_loop_misc) and the reconnect timer
 * (backoff 0.5 s doubling to 5 s). The client is "certfleetd", MQTT v5 over
 * mutual TLS with the service certificate, clean start off with a one-day
 * session expiry, so QoS 1 messages published while it is away wait for it.
 *
 * Every message is hostile until proven otherwise: connection events on
 * $cf/broker/connection are parsed with jansson and validated field by
 * field; device messages are trusted only when the broker's cf-stamp
 * verifies and cf-client-id is the thing in the topic.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "certfleetd.h"
#include "cf_util.h"

#define CLIENT_ID "certfleetd"
#define KEEPALIVE_S 30
#define SESSION_EXPIRY_S 86400
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 5000
#define CONN_TOPIC "$cf/broker/connection"
#define CONN_EVENT_MAX 4096     /* bytes of a connection event's JSON */
#define DROP_WARN_PER_S 10      /* warn lines about dropped messages per second */

struct cfd_mqtt {
	cfd *d;
	struct mosquitto *m;
	mosquitto_property *connect_props;
	struct event *ev_read, *ev_write, *ev_misc, *ev_retry;
	int fd;                 /* the socket ev_read/ev_write watch, -1: none */
	int connected;          /* CONNACK success seen on this connection */
	int ever_connected;
	int backoff_ms;
	char last_failure[256]; /* the failure last logged at warn: each change is logged once */
	int64_t drop_second;
	unsigned drop_warned;
	uint64_t drop_quiet;    /* drops not logged in the current second */
};

static void sync_events(cfd_mqtt *q);

/* ---- state changes, logged once each ----------------------------------------- */

/* A failure is logged at warn when it differs from the last one, at debug otherwise. */
static void
note_failure(cfd_mqtt *q, const char *msg, const char *error)
{
	char key[sizeof(q->last_failure)];

	snprintf(key, sizeof(key), "%s: %s", msg, error);
	if (strcmp(key, q->last_failure) == 0) {
		cf_log(CF_LOG_DEBUG, msg, "error=%s retry_ms=%d", error, q->backoff_ms);
		return;
	}
	memcpy(q->last_failure, key, sizeof(key));
	cf_log(CF_LOG_WARN, msg, "error=%s host=%s port=%ld", error, q->d->mqtt_host, q->d->mqtt_port);
}

/* Dropped messages: warn, but at most DROP_WARN_PER_S lines a second. */
static int
drop_warn_allowed(cfd_mqtt *q)
{
	int64_t now = cf_time_now();

	if (now != q->drop_second) {
		if (q->drop_quiet > 0)
			cf_log(CF_LOG_WARN, "more messages dropped without a log line", "count=%ju",
			    (uintmax_t)q->drop_quiet);
		q->drop_second = now;
		q->drop_warned = 0;
		q->drop_quiet = 0;
	}
	if (q->drop_warned < DROP_WARN_PER_S) {
		q->drop_warned++;
		return 1;
	}
	q->drop_quiet++;
	return 0;
}

/* ---- connecting ------------------------------------------------------------------ */

static void
schedule_retry(cfd_mqtt *q)
{
	struct timeval tv;

	if (q->d->stopping || evtimer_pending(q->ev_retry, NULL))
		return;
	tv.tv_sec = q->backoff_ms / 1000;
	tv.tv_usec = (q->backoff_ms % 1000) * 1000;
	evtimer_add(q->ev_retry, &tv);
	q->backoff_ms = q->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : q->backoff_ms * 2;
}

/*
 * mosquitto_connect_bind_v5 on every attempt, not mosquitto_reconnect:
 * libmosquitto 2.0 does not keep CONNECT properties for a reconnect, and
 * without the session expiry interval the broker would drop the session
 * at the next disconnect. The TCP connect blocks (127.0.0.1: at once); the
 * TLS handshake and CONNECT then run from the reactor.
 */
static void
attempt_connect(cfd_mqtt *q)
{
	int rc;

	rc = mosquitto_connect_bind_v5(q->m, q->d->mqtt_host, (int)q->d->mqtt_port, KEEPALIVE_S,
	    NULL, q->connect_props);
	if (rc != MOSQ_ERR_SUCCESS) {
		note_failure(q, "mqtt connect failed",
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		schedule_retry(q);
		return;
	}
	cf_log(CF_LOG_DEBUG, "mqtt tcp connected, handshaking", "host=%s port=%ld", q->d->mqtt_host,
	    q->d->mqtt_port);
	sync_events(q);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	attempt_connect(arg);
}

/* ---- the socket in the reactor ------------------------------------------------------ */

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);

static void
drop_socket_events(cfd_mqtt *q)
{
	if (q->ev_read)
		event_free(q->ev_read);
	if (q->ev_write)
		event_free(q->ev_write);
	q->ev_read = q->ev_write = NULL;
	q->fd = -1;
}

/*
 * After every call into libmosquitto: watch its current socket (it changes
 * on each connect), arm the write event only while output is queued, and
 * start the reconnect timer once the socket is gone.
 */
static void
sync_events(cfd_mqtt *q)
{
	int fd = mosquitto_socket(q->m);

	if (fd != q->fd)
		drop_socket_events(q);
	if (fd < 0) {
		if (q->connected) {
			/* Lost without a disconnect callback (should not happen, but be safe). */
			q->connected = 0;
			cf_log_msg(CF_LOG_WARN, "mqtt disconnected");
		}
		schedule_retry(q);
		return;
	}
	if (q->ev_read == NULL) {
		q->fd = fd;
		q->ev_read = event_new(q->d->base, fd, EV_READ | EV_PERSIST, on_read, q);
		q->ev_write = event_new(q->d->base, fd, EV_WRITE | EV_PERSIST, on_write, q);
		if (q->ev_read == NULL || q->ev_write == NULL || event_add(q->ev_read, NULL) != 0) {
			cf_log_msg(CF_LOG_ERROR, "cannot watch the mqtt socket");
			drop_socket_events(q);
			mosquitto_disconnect(q->m);
			schedule_retry(q);
			return;
		}
	}
	if (mosquitto_want_write(q->m))
		event_add(q->ev_write, NULL);
	else
		event_del(q->ev_write);
}

static void
after_loop(cfd_mqtt *q, int rc, const char *where)
{
	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
		cf_log(CF_LOG_DEBUG, "mqtt loop", "step=%s error=%s", where,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	sync_events(q);
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	cfd_mqtt *q = arg;

	(void)fd;
	(void)what;
	after_loop(q, mosquitto_loop_read(q->m, 1), "read");
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	cfd_mqtt *q = arg;

	(void)fd;
	(void)what;
	after_loop(q, mosquitto_loop_write(q->m, 1), "write");
}

/* Keepalive (PINGREQ) and its timeout. */
static void
on_misc(evutil_socket_t fd, short what, void *arg)
{
	cfd_mqtt *q = arg;

	(void)fd;
	(void)what;
	if (q->fd < 0)
		return;
	after_loop(q, mosquitto_loop_misc(q->m), "misc");
}

/* ---- libmosquitto callbacks (run inside mosquitto_loop_*) ---------------------------- */

static void
on_connect(struct mosquitto *m, void *arg, int rc, int flags, const mosquitto_property *props)
{
	cfd_mqtt *q = arg;
	cfd *d = q->d;
	char *subs[3];
	char things[CFD_TOPIC_PREFIX_MAX + 16], prov[CFD_TOPIC_PREFIX_MAX + 32];
	size_t n = 0;
	int session_present = flags & 1;

	(void)props;
	if (rc != 0) {
		note_failure(q, "mqtt connection refused", mosquitto_reason_string(rc));
		return;
	}
	q->connected = 1;
	q->backoff_ms = BACKOFF_MIN_MS;
	q->last_failure[0] = '\0';
	if (q->ever_connected)
		d->metrics.mqtt_reconnects++;
	q->ever_connected = 1;
	cf_log(CF_LOG_INFO, "mqtt connected", "host=%s port=%ld client_id=%s session_present=%d",
	    d->mqtt_host, d->mqtt_port, CLIENT_ID, session_present);
	snprintf(things, sizeof(things), "%sthings/+/#", d->topic_prefix);
	snprintf(prov, sizeof(prov), "%sprovisioning/+/provision", d->topic_prefix);
	subs[0] = "$cf/broker/#";
	subs[1] = things;
	subs[2] = prov;
	/* No local: our own replies and notifications below things/ never come back to us. */
	rc = mosquitto_subscribe_multiple(m, NULL, 3, subs, 1, MQTT_SUB_OPT_NO_LOCAL, NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		cf_log(CF_LOG_ERROR, "mqtt subscribe failed", "error=%s", mosquitto_strerror(rc));
	/*
	 * No session at the broker: it restarted (or never knew us), so the
	 * connections recorded as open are gone, and their disconnect events
	 * were never published.
	 */
	if (!session_present) {
		if (cf_store_connection_close_all(cf_ca_store(d->ca), cf_time_now(), "broker-restart",
		    &n) != 0)
			cf_log(CF_LOG_ERROR, "cannot close stale connections", "error=%s", cf_error_last());
		else if (n > 0)
			cf_log(CF_LOG_INFO, "closed connections left open", "count=%zu reason=%s", n,
			    "broker-restart");
	}
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int count, const int *granted,
    const mosquitto_property *props)
{
	int i;

	(void)m;
	(void)arg;
	(void)props;
	for (i = 0; i < count; i++) {
		if (granted[i] > 2)
			cf_log(CF_LOG_ERROR, "mqtt subscription refused", "mid=%d index=%d reason=%s", mid,
			    i, mosquitto_reason_string(granted[i]));
	}
	cf_log(CF_LOG_DEBUG, "mqtt subscribed", "mid=%d count=%d", mid, count);
}

static void
on_disconnect(struct mosquitto *m, void *arg, int rc, const mosquitto_property *props)
{
	cfd_mqtt *q = arg;

	(void)m;
	(void)props;
	if (!q->connected)
		return;
	q->connected = 0;
	if (q->d->stopping)
		cf_log_msg(CF_LOG_INFO, "mqtt disconnected");
	else
		cf_log(CF_LOG_WARN, "mqtt disconnected, reconnecting", "reason=%s",
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
}

static void
on_mosq_log(struct mosquitto *m, void *arg, int level, const char *text)
{
	cfd_mqtt *q = arg;

	(void)m;
	/* TLS verification failures only show up here. */
	if (level & MOSQ_LOG_ERR)
		note_failure(q, "libmosquitto error", text);
	else
		cf_log(CF_LOG_DEBUG, "libmosquitto", "text=%s", text);
}

/* ---- connection events from the plugin ------------------------------------------- */

/* A string member: required, at most max bytes (NUL-free: jansson refuses \u0000 by default). */
static int
get_str(const char **out, json_t *o, const char *key, size_t max, int required)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL && !required) {
		*out = "";
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) > max) {
		cf_error_set("'%s' is missing, not a string or longer than %zu", key, max);
		return CF_EINVAL;
	}
	*out = json_string_value(v);
	return 0;
}

static int
is_hex_id(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == CF_ID_LEN;
}

static int
one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return 1;
	return 0;
}

static void
drop_malformed(cfd_mqtt *q, const char *topic, const char *why)
{
	q->d->metrics.dropped_malformed++;
	if (drop_warn_allowed(q))
		cf_log(CF_LOG_WARN, "dropped malformed message", "topic=%s reason=%s", topic, why);
}

static void
on_connection_event(cfd_mqtt *q, const struct mosquitto_message *msg)
{
	static const char *const events[] = { "connected", "disconnected", "refused", NULL };
	static const char *const kinds[] = { "device", "service", "claim", "unknown", NULL };
	cfd *d = q->d;
	cf_store *st = cf_ca_store(d->ca);
	json_t *o = NULL, *t, *detail = NULL;
	json_error_t jerr;
	const char *event, *client_id, *principal, *kind, *peer, *reason, *ref;
	char *detail_text = NULL;
	int64_t when;
	cf_conn_rec c;
	int r;

	if (msg->payloadlen <= 0 || msg->payloadlen > CONN_EVENT_MAX) {
		drop_malformed(q, msg->topic, "empty or oversized connection event");
		goto out;
	}
	if ((o = json_loadb(msg->payload, (size_t)msg->payloadlen, JSON_REJECT_DUPLICATES, &jerr)) == NULL ||
	    !json_is_object(o)) {
		drop_malformed(q, msg->topic, o ? "not a JSON object" : jerr.text);
		goto out;
	}
	if (get_str(&event, o, "event", 16, 1) != 0 || get_str(&client_id, o, "clientId", 255, 1) != 0 ||
	    get_str(&principal, o, "principal", CF_ID_LEN, 0) != 0 ||
	    get_str(&kind, o, "kind", 15, 1) != 0 || get_str(&peer, o, "peer", 63, 0) != 0 ||
	    get_str(&reason, o, "reason", 512, 0) != 0 ||
	    get_str(&ref, o, "connection", CF_CONN_REF_MAX, 0) != 0) {
		drop_malformed(q, msg->topic, cf_error_last());
		goto out;
	}
	if (!one_of(event, events) || !one_of(kind, kinds) || (principal[0] && !is_hex_id(principal))) {
		drop_malformed(q, msg->topic, "unknown event or kind, or a principal that is not a certificate id");
		goto out;
	}
	t = json_object_get(o, "time");
	if (t != NULL && (!json_is_integer(t) || json_integer_value(t) <= 0 ||
	    json_integer_value(t) > ((int64_t)1 << 40))) {
		drop_malformed(q, msg->topic, "'time' is not epoch seconds");
		goto out;
	}
	when = t ? (int64_t)json_integer_value(t) : cf_time_now();
	if (strcmp(event, "refused") != 0 && (client_id[0] == '\0' || ref[0] == '\0')) {
		drop_malformed(q, msg->topic, "empty clientId or connection");
		goto out;
	}

	if (strcmp(event, "connected") == 0) {
		d->metrics.conn_connected++;
		memset(&c, 0, sizeof(c));
		snprintf(c.ref, sizeof(c.ref), "%s", ref);
		snprintf(c.client_id, sizeof(c.client_id), "%s", client_id);
		snprintf(c.principal, sizeof(c.principal), "%s", principal);
		snprintf(c.kind, sizeof(c.kind), "%s", kind);
		snprintf(c.peer, sizeof(c.peer), "%s", peer);
		c.connected_at = when;
		if ((r = cf_store_connection_open(st, &c)) != 0)
			cf_log(CF_LOG_ERROR, "cannot record connection", "client_id=%s error=%s", client_id,
			    cf_error_last());
		else
			cf_log(CF_LOG_INFO, "client connected", "client_id=%s kind=%s principal=%s peer=%s",
			    client_id, kind, principal, peer);
		if (strcmp(kind, "device") == 0 && cfd_rotation_connected(d, client_id, principal) < 0)
			cf_log(CF_LOG_ERROR, "cannot settle indeterminate rotations", "client_id=%s error=%s",
			    client_id, cf_error_last());
		cfd_prov_connected(d, kind, client_id, principal);
	} else if (strcmp(event, "disconnected") == 0) {
		char why[sizeof(c.reason)];

		d->metrics.conn_disconnected++;
		/* The store keeps 63 bytes of reason; cut, never refuse a disconnect. */
		snprintf(why, sizeof(why), "%s", reason[0] ? reason : "client");
		r = cf_store_connection_close(st, ref, when, why);
		if (r == CF_ENOTFOUND)
			cf_log(CF_LOG_DEBUG, "disconnect of a connection not recorded as open",
			    "client_id=%s connection=%s", client_id, ref);
		else if (r != 0)
			cf_log(CF_LOG_ERROR, "cannot record disconnection", "client_id=%s error=%s",
			    client_id, cf_error_last());
		else
			cf_log(CF_LOG_INFO, "client disconnected", "client_id=%s kind=%s reason=%s",
			    client_id, kind, why);
	} else {
		d->metrics.conn_refused++;
		/* The detail is rebuilt from the validated fields, never copied from the payload. */
		detail = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "clientId", client_id, "principal",
		    principal, "kind", kind, "peer", peer, "time", (json_int_t)when, "reason", reason);
		if (detail == NULL || (detail_text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
			cf_log_msg(CF_LOG_ERROR, "out of memory");
			goto out;
		}
		if (cf_store_event_append(st, "broker.refused", client_id[0] ? client_id : "-",
		    detail_text) != 0)
			cf_log(CF_LOG_ERROR, "cannot record refusal", "client_id=%s error=%s", client_id,
			    cf_error_last());
		else
			cf_log(CF_LOG_INFO, "client refused", "client_id=%s peer=%s reason=%s", client_id,
			    peer, reason);
	}
out:
	free(detail_text);
	json_decref(detail);
	json_decref(o);
}

/* ---- device messages ------------------------------------------------------------------ */

typedef struct {
	char *principal, *client_id, *stamp;
	int dup;  /* one of them appeared twice: the broker never does that */
} stamp_props;

static void
take_prop(char **slot, char *value, int *dup)
{
	if (*slot != NULL) {
		*dup = 1;
		free(value);
		return;
	}
	*slot = value;
}

static void
read_stamp_props(stamp_props *sp, const mosquitto_property *props)
{
	const mosquitto_property *p;
	char *name = NULL, *value = NULL;

	memset(sp, 0, sizeof(*sp));
	p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
	while (p != NULL) {
		if (strcmp(name, CF_PROP_PRINCIPAL) == 0)
			take_prop(&sp->principal, value, &sp->dup);
		else if (strcmp(name, CF_PROP_CLIENT_ID) == 0)
			take_prop(&sp->client_id, value, &sp->dup);
		else if (strcmp(name, CF_PROP_STAMP) == 0)
			take_prop(&sp->stamp, value, &sp->dup);
		else
			free(value);
		free(name);
		name = value = NULL;
		p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true);
	}
}

static void
stamp_props_free(stamp_props *sp)
{
	free(sp->principal);
	free(sp->client_id);
	free(sp->stamp);
}

static void
on_thing_message(cfd_mqtt *q, const struct mosquitto_message *msg, const char *rest,
    const mosquitto_property *props)
{
	cfd *d = q->d;
	char thing[CF_NAME_MAX + 1];
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	stamp_props sp;
	const char *why = NULL;

	memset(&sp, 0, sizeof(sp));
	if (n == 0 || n > CF_NAME_MAX) {
		drop_malformed(q, msg->topic, "no thing name in the topic");
		return;
	}
	memcpy(thing, rest, n);
	thing[n] = '\0';
	if (!cf_name_valid("thing", thing)) {
		drop_malformed(q, msg->topic, "not a thing name");
		return;
	}
	read_stamp_props(&sp, props);
	if (sp.dup)
		why = "a stamp property appears twice";
	else if (sp.principal == NULL || sp.client_id == NULL || sp.stamp == NULL)
		why = "no broker stamp";
	else if (strcmp(sp.client_id, thing) != 0)
		why = "cf-client-id is not the thing in the topic";
	else if (cf_stamp_verify(&d->stamp_key, sp.stamp, sp.principal, sp.client_id, msg->topic,
	    msg->payload, (size_t)msg->payloadlen) != 0)
		why = "stamp does not verify";
	if (why != NULL) {
		d->metrics.dropped_unstamped++;
		if (drop_warn_allowed(q))
			cf_log(CF_LOG_WARN, "dropped untrusted message", "topic=%s thing=%s reason=%s",
			    msg->topic, thing, why);
		goto out;
	}
	d->metrics.mqtt_accepted++;
	cf_log(CF_LOG_DEBUG, "message accepted", "topic=%s thing=%s principal=%s bytes=%d",
	    msg->topic, thing, sp.principal, msg->payloadlen);
	cfd_jobs_on_message(d, msg->topic, msg->payload, (size_t)msg->payloadlen, sp.principal,
	    sp.client_id);
out:
	stamp_props_free(&sp);
}

/* A claim's provisioning request (docs/provisioning.md): trusted only with a verified stamp. */
static void
on_provisioning_message(cfd_mqtt *q, const struct mosquitto_message *msg,
    const mosquitto_property *props)
{
	cfd *d = q->d;
	stamp_props sp;
	const char *why = NULL;

	read_stamp_props(&sp, props);
	if (sp.dup)
		why = "a stamp property appears twice";
	else if (sp.principal == NULL || sp.client_id == NULL || sp.stamp == NULL)
		why = "no broker stamp";
	else if (!is_hex_id(sp.principal) || sp.client_id[0] == '\0' ||
	    strpbrk(sp.client_id, "/+#") != NULL)
		why = "stamped principal or client id unusable";
	else if (cf_stamp_verify(&d->stamp_key, sp.stamp, sp.principal, sp.client_id, msg->topic,
	    msg->payload, (size_t)msg->payloadlen) != 0)
		why = "stamp does not verify";
	if (why != NULL) {
		d->metrics.dropped_unstamped++;
		if (drop_warn_allowed(q))
			cf_log(CF_LOG_WARN, "dropped untrusted message", "topic=%s reason=%s", msg->topic,
			    why);
		goto out;
	}
	d->metrics.mqtt_accepted++;
	cfd_prov_on_message(d, msg->topic, msg->payload, (size_t)msg->payloadlen, sp.principal,
	    sp.client_id);
out:
	stamp_props_free(&sp);
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
    const mosquitto_property *props)
{
	cfd_mqtt *q = arg;
	const char *prefix = q->d->topic_prefix;
	size_t plen = strlen(prefix);

	(void)m;
	q->d->metrics.mqtt_received++;
	if (strcmp(msg->topic, CONN_TOPIC) == 0) {
		on_connection_event(q, msg);
	} else if (strncmp(msg->topic, prefix, plen) == 0 &&
	    strncmp(msg->topic + plen, "things/", 7) == 0) {
		on_thing_message(q, msg, msg->topic + plen + 7, props);
	} else if (strncmp(msg->topic, prefix, plen) == 0 &&
	    strncmp(msg->topic + plen, "provisioning/", 13) == 0) {
		on_provisioning_message(q, msg, props);
	} else if (strncmp(msg->topic, "$cf/broker/", 11) == 0) {
		cf_log(CF_LOG_DEBUG, "ignored broker message", "topic=%s", msg->topic);
	} else {
		drop_malformed(q, msg->topic, "unexpected topic");
	}
}

/* ---- start and stop ------------------------------------------------------------------- */

/* Never prompt for a key passphrase: the service key is unencrypted (0600). */
static int
no_password(char *buf, int size, int rwflag, void *userdata)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)userdata;
	return 0;
}

int
cfd_mqtt_start(cfd *d)
{
	cfd_mqtt *q = NULL;
	struct timeval one_s = { 1, 0 };
	int r = CF_ERROR, rc;

	if ((q = calloc(1, sizeof(*q))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	q->d = d;
	q->fd = -1;
	q->backoff_ms = BACKOFF_MIN_MS;
	if ((q->m = mosquitto_new(CLIENT_ID, false, q)) == NULL) {
		cf_error_set("mosquitto_new: %s", strerror(errno));
		goto out;
	}
	mosquitto_int_option(q->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(q->m, MOSQ_OPT_TCP_NODELAY, 1);
	if ((rc = mosquitto_tls_set(q->m, d->broker_cafile, NULL, d->service_cert, d->service_key,
	    no_password)) != MOSQ_ERR_SUCCESS) {
		cf_error_set("TLS setup with %s, %s: %s", d->service_cert, d->broker_cafile,
		    mosquitto_strerror(rc));
		goto out;
	}
	/* Verify the broker's certificate and its name (SAN IP 127.0.0.1, DNS localhost). */
	if ((rc = mosquitto_tls_opts_set(q->m, 1 /* SSL_VERIFY_PEER */, NULL, NULL)) != MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_tls_insecure_set(q->m, false)) != MOSQ_ERR_SUCCESS) {
		cf_error_set("TLS options: %s", mosquitto_strerror(rc));
		goto out;
	}
	if ((rc = mosquitto_property_add_int32(&q->connect_props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
	    SESSION_EXPIRY_S)) != MOSQ_ERR_SUCCESS) {
		cf_error_set("session expiry property: %s", mosquitto_strerror(rc));
		goto out;
	}
	mosquitto_connect_v5_callback_set(q->m, on_connect);
	mosquitto_disconnect_v5_callback_set(q->m, on_disconnect);
	mosquitto_message_v5_callback_set(q->m, on_message);
	mosquitto_subscribe_v5_callback_set(q->m, on_subscribe);
	mosquitto_log_callback_set(q->m, on_mosq_log);
	if ((q->ev_misc = event_new(d->base, -1, EV_PERSIST, on_misc, q)) == NULL ||
	    (q->ev_retry = evtimer_new(d->base, on_retry, q)) == NULL ||
	    event_add(q->ev_misc, &one_s) != 0) {
		cf_error_set("cannot create the mqtt timers");
		goto out;
	}
	d->mqtt = q;
	q = NULL;
	/* The first attempt now; failures retry from the reactor. */
	attempt_connect(d->mqtt);
	r = 0;
out:
	if (q != NULL) {
		if (q->ev_misc)
			event_free(q->ev_misc);
		if (q->ev_retry)
			event_free(q->ev_retry);
		mosquitto_property_free_all(&q->connect_props);
		mosquitto_destroy(q->m);
		free(q);
	}
	return r;
}

void
cfd_mqtt_stop(cfd *d)
{
	cfd_mqtt *q = d->mqtt;

	if (q == NULL)
		return;
	if (mosquitto_socket(q->m) >= 0) {
		/* Normal disconnect: the broker keeps the session for SESSION_EXPIRY_S. */
		if (mosquitto_disconnect_v5(q->m, 0, NULL) == MOSQ_ERR_SUCCESS)
			(void)mosquitto_loop_write(q->m, 1);
	}
	if (q->connected) {
		q->connected = 0;
		cf_log_msg(CF_LOG_INFO, "mqtt disconnected");
	}
	drop_socket_events(q);
	if (q->ev_misc)
		event_free(q->ev_misc);
	if (q->ev_retry)
		event_free(q->ev_retry);
	mosquitto_property_free_all(&q->connect_props);
	mosquitto_destroy(q->m);
	free(q);
	d->mqtt = NULL;
}

int
cfd_mqtt_publish(cfd *d, const char *topic, const char *payload)
{
	cfd_mqtt *q = d->mqtt;
	int rc;

	if (q == NULL || !q->connected) {
		cf_error_set("not connected to the broker");
		return CF_ESTATE;
	}
	rc = mosquitto_publish_v5(q->m, NULL, topic, (int)strlen(payload), payload, 1, false, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		cf_error_set("publish to %s: %s", topic, mosquitto_strerror(rc));
		return CF_ERROR;
	}
	sync_events(q);
	return 0;
}

int
cfd_mqtt_connected(const cfd *d)
{
	return d->mqtt != NULL && d->mqtt->connected;
}
