/*
 * sim_run — `certfleet-sim connect` and `certfleet-sim rotate`: the fleet
 * created by create-fleet, one cf_agent per device, in one libevent loop.
 *
 * Each device owns a file key store (its bundle), a cf_agent (journal in
 * the bundle's state/) and, while connected, a libmosquitto handle without
 * a thread: like certfleetd (src/server/mqtt.c) the loop watches the
 * handle's socket, calls mosquitto_loop_read on readable, arms a write event
 * only while output is queued, and runs mosquitto_loop_misc from a 1 s tick
 * that also fires the agents' timers. Like certfleet-agent a reconnect
 * destroys the handle and makes a new one, so TLS loads the bundle paths
 * (the active pair) again: every connect is a full mutual-TLS handshake.
 *
 * New connections go through a queue with at most --concurrency handshakes
 * in flight, so that connecting 10,000 devices does not time out at the
 * broker. Handle calls never happen inside a libmosquitto callback: the
 * callbacks set flags, the loop acts on them after the call returns.
 *
 * rotate creates one job for the fleet's group through certfleetd's API
 * (evhttp client in the same loop), then watches every agent's state after
 * each event to time the phases of its rotation (docs/sim.md).
 *
 * Failure injection: --drop-rate drops outgoing publishes (the agent sees a
 * success and must time out and resend), --kill-rate kills that fraction of
 * rotating instances once at a random state (agent, key store and
 * connection freed without a clean disconnect) and restarts them from their
 * journal, --reconnect-delay delays every connect the agent asks for.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cf_agent.h"
#include "cf_config.h"
#include "cf_keystore.h"
#include "cf_log.h"
#include "cf_tls.h"
#include "cf_util.h"
#include "sim.h"

#define KEEPALIVE_S 60
#define N_SUBS 5
#define TOPIC_MAX 256
#define CONNECT_TIMEOUT_S 30
#define LOST_RETRY_MS 1000
#define KILL_RESTART_MS 200

/* Phases of one rotation, timed from the agent states the loop observes. */
enum {
	PH_INPROGRESS, /* notify (job seen) -> update IN_PROGRESS accepted */
	PH_CREATE,     /* certificate/create sent -> accepted and installed */
	PH_RECONNECT,  /* reconnect asked -> connected with the new pair */
	PH_COMMIT,     /* certificate/commit sent -> accepted */
	PH_TOTAL,      /* notify -> back to IDLE */
	PH__COUNT
};
static const char *const phase_names[PH__COUNT] = {
	"notify_to_in_progress", "create_to_accepted", "reconnect_new_pair",
	"commit_to_accepted", "total",
};

typedef struct sim sim;

typedef struct {
	double *v;
	size_t n, cap;
} samples;

/* A CA chain file's text and the certificate store made from it (trust_get). */
typedef struct {
	char *pem;
	X509_STORE *store;
} trust;

typedef struct {
	sim *s;
	long idx;
	char name[SIM_NAME_MAX];
	cf_keystore *ks;
	cf_agent *agent;
	struct mosquitto *m;
	SSL_CTX *ctx;        /* the active pair's TLS context, kept across reconnects */
	unsigned ctx_gen;    /* the key store generation ctx was built from */
	struct event *ev_read, *ev_write, *ev_wake;
	int fd;
	int queued;          /* in the connect queue */
	int inflight;        /* counted in s->inflight */
	int session_up;
	int lost;
	int want_reconnect;
	int dead;            /* killed: waiting for the restart */
	int fatal;
	double t_attempt;    /* when the current attempt started */
	int64_t attempt_deadline;
	/* the rotation being timed */
	cf_agent_state last;
	double t_state[CF_AGENT__COUNT]; /* first time each state was reached, 0: not yet */
	double t_notify;
	int rotating, failed, kill_at, killed, done;
} dev;

struct sim {
	const sim_opts *o;
	struct event_base *base;
	struct event *ev_tick, *ev_sig;
	cf_config *fleet;
	const char *host, *topic_prefix, *api_host;
	long port, api_port;
	char *ca_pem;
	cf_cert **ca_certs; /* ca_pem parsed, shared by the agents */
	size_t n_ca_certs;
	trust *trust;   /* one per distinct CA chain the devices hold */
	size_t n_trust;
	dev *devs;
	long n;         /* devices in this process (this shard) */
	long total;     /* devices in the fleet (or --count) */
	/* connect queue (ring of device indices) */
	long *q;
	long q_head, q_len;
	long inflight;
	/* statistics */
	long connected;        /* sessions up now */
	long first_connects;   /* devices connected at least once */
	samples connect_lat;   /* attempt -> SUBACK, seconds */
	samples phase[PH__COUNT];
	long rot_ok, rot_failed, rot_done, kills, restarts, drops, publishes, reconnects;
	long connect_failures;
	double t_all_connected, t_job, t_last_done;
	int rotate, job_posted, job_failed, stopping;
	char job_id[128];
	json_t *job_final;
	struct evhttp_connection *http;
	int http_busy;
};

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double
frand(void)
{
	return (double)random() / ((double)RAND_MAX + 1.0);
}

static void
sample_add(samples *sm, double v)
{
	double *nv;
	size_t cap;

	if (sm->n == sm->cap) {
		cap = sm->cap ? sm->cap * 2 : 1024;
		if ((nv = realloc(sm->v, cap * sizeof(*nv))) == NULL)
			return;
		sm->v = nv;
		sm->cap = cap;
	}
	sm->v[sm->n++] = v;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, in milliseconds. */
static double
pct_ms(const samples *sm, double p)
{
	size_t k;

	if (sm->n == 0)
		return 0;
	k = (size_t)ceil(p / 100.0 * (double)sm->n);
	if (k > 0)
		k--;
	if (k >= sm->n)
		k = sm->n - 1;
	return sm->v[k] * 1000.0;
}

static void
print_lat(const char *name, samples *sm)
{
	qsort(sm->v, sm->n, sizeof(double), cmp_double);
	printf("%s_n=%zu\n%s_p50_ms=%.1f\n%s_p99_ms=%.1f\n%s_max_ms=%.1f\n", name, sm->n, name,
	    pct_ms(sm, 50), name, pct_ms(sm, 99), name, pct_ms(sm, 100));
}

/* ---- the connection ----------------------------------------------------------- */

static void dev_sync(dev *d);
static void pump(sim *s);
static void after_event(dev *d);

static void
bundle_path(char *out, size_t len, const dev *d, const char *file)
{
	if (cf_strfmt(out, len, "%s/devices/%s%s%s", d->s->o->dir, d->name, file ? "/" : "",
	    file ? file : "") != 0)
		out[0] = '\0';
}

static void
drop_events(dev *d)
{
	if (d->ev_read)
		event_free(d->ev_read);
	if (d->ev_write)
		event_free(d->ev_write);
	d->ev_read = d->ev_write = NULL;
	d->fd = -1;
}

static void
end_inflight(dev *d)
{
	if (d->inflight) {
		d->inflight = 0;
		d->s->inflight--;
	}
}

/* Closes the handle (cleanly if asked and possible); no agent event. */
static void
drop_conn(dev *d, int clean)
{
	drop_events(d);
	if (d->m != NULL) {
		if (clean && d->session_up && mosquitto_disconnect_v5(d->m, 0, NULL) == MOSQ_ERR_SUCCESS)
			(void)mosquitto_loop_write(d->m, 1);
		mosquitto_destroy(d->m);
		d->m = NULL;
	}
	if (d->session_up)
		d->s->connected--;
	d->session_up = 0;
	d->lost = 0;
	d->attempt_deadline = 0;
	end_inflight(d);
}

static void
enqueue(dev *d)
{
	sim *s = d->s;

	if (d->queued || d->m != NULL || d->dead)
		return;
	d->queued = 1;
	s->q[(s->q_head + s->q_len) % s->n] = d->idx;
	s->q_len++;
}

static void
on_wake(evutil_socket_t fd, short what, void *arg);

/* Connect again after ms (0: through the queue at once). */
static void
schedule_connect(dev *d, long ms)
{
	struct timeval tv;

	if (ms <= 0) {
		enqueue(d);
		return;
	}
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(d->ev_wake, &tv);
}

static void
agent_result(dev *d, int r, const char *what)
{
	if (r != 0 && !d->fatal) {
		d->fatal = 1;
		fprintf(stderr, "certfleet-sim: %s: agent %s failed: %s\n", d->name, what,
		    cf_error_last());
	}
}

/* The session or attempt ended: tell the agent, try again later. */
static void
conn_lost(dev *d)
{
	if (!d->session_up)
		d->s->connect_failures++;
	drop_conn(d, 0);
	if (d->agent != NULL)
		agent_result(d, cf_agent_disconnected(d->agent, cf_time_now()), "disconnected");
	schedule_connect(d, LOST_RETRY_MS + d->s->o->reconnect_delay_ms);
}

static void
on_connect(struct mosquitto *m, void *arg, int rc, int flags, const mosquitto_property *props)
{
	dev *d = arg;
	const char *prefix = d->s->topic_prefix;
	char subs[N_SUBS][TOPIC_MAX], *sp[N_SUBS];
	static const char *const tail[N_SUBS] = {
		"jobs/notify-next", "jobs/$next/get/+", "jobs/+/update/+",
		"certificate/create/+", "certificate/commit/+",
	};
	int i;

	(void)flags;
	(void)props;
	if (rc != 0) {
		d->lost = 1;
		return;
	}
	for (i = 0; i < N_SUBS; i++) {
		snprintf(subs[i], TOPIC_MAX, "%sthings/%s/%s", prefix, d->name, tail[i]);
		sp[i] = subs[i];
	}
	if (mosquitto_subscribe_multiple(m, NULL, N_SUBS, sp, 1, 0, NULL) != MOSQ_ERR_SUCCESS)
		d->lost = 1;
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted,
    const mosquitto_property *props)
{
	dev *d = arg;
	sim *s = d->s;
	int i;

	(void)m;
	(void)mid;
	(void)props;
	for (i = 0; i < n; i++)
		if (granted[i] >= 0x80) {
			d->lost = 1;
			return;
		}
	if (d->session_up)
		return;
	d->session_up = 1;
	d->attempt_deadline = 0;
	s->connected++;
	if (d->t_attempt > 0)
		sample_add(&s->connect_lat, mono() - d->t_attempt);
	end_inflight(d);
	agent_result(d, cf_agent_connected(d->agent, cf_time_now()), "connected");
}

static void
on_disconnect(struct mosquitto *m, void *arg, int rc, const mosquitto_property *props)
{
	dev *d = arg;

	(void)m;
	(void)rc;
	(void)props;
	d->lost = 1;
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
    const mosquitto_property *props)
{
	dev *d = arg;

	(void)m;
	(void)props;
	if (!d->session_up || msg->topic == NULL || d->agent == NULL)
		return;
	agent_result(d, cf_agent_message(d->agent, msg->topic, msg->payload,
	    msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0, cf_time_now()), "message");
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	dev *d = arg;

	(void)fd;
	(void)what;
	if (mosquitto_loop_read(d->m, 1) != MOSQ_ERR_SUCCESS)
		d->lost = 1;
	after_event(d);
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	dev *d = arg;

	(void)fd;
	(void)what;
	if (mosquitto_loop_write(d->m, 1) != MOSQ_ERR_SUCCESS)
		d->lost = 1;
	after_event(d);
}

/* Watches the handle's current socket; the write event only while output is queued. */
static void
dev_sync(dev *d)
{
	int fd;

	if (d->m == NULL)
		return;
	fd = mosquitto_socket(d->m);
	if (fd != d->fd)
		drop_events(d);
	if (fd < 0) {
		d->lost = 1;
		return;
	}
	if (d->ev_read == NULL) {
		d->fd = fd;
		d->ev_read = event_new(d->s->base, fd, EV_READ | EV_PERSIST, on_read, d);
		d->ev_write = event_new(d->s->base, fd, EV_WRITE | EV_PERSIST, on_write, d);
		if (d->ev_read == NULL || d->ev_write == NULL || event_add(d->ev_read, NULL) != 0) {
			d->lost = 1;
			return;
		}
	}
	if (mosquitto_want_write(d->m))
		event_add(d->ev_write, NULL);
	else
		event_del(d->ev_write);
}

/*
 * The TLS context of d's active pair, built from the bundle paths (like
 * certfleet-agent, which lets libmosquitto load them) but only when the
 * active generation changed: OpenSSL 3.0 spends ~1 ms decoding a PEM key
 * and certificate, which the broker-side handshake does not pay, so
 * rebuilding it on every connect made the simulator, not the broker, the
 * bottleneck (docs/sim.md). For the same reason the private key comes
 * from the key cache (which loaded it for the rotation's signatures
 * anyway) and the CA chain's certificate store is shared by the devices
 * whose chain file says the same (trust_get). Every connect is still a
 * full mutual-TLS handshake: nothing is resumed. Server verification is
 * ours, as MOSQUITTO-NOTES.md prescribes for an application-built SSL_CTX:
 * the bundle's CA chain, SSL_VERIFY_PEER, and the broker's host or address.
 */
/*
 * The certificate store for the CA chain file at path, shared by every
 * device whose file holds the same text (SSL_CTX_set1_cert_store). A real
 * device parses its one chain; loading it per device and per generation
 * made the simulator decode the same two certificates thousands of times.
 * Borrowed from s (freed with it).
 */
static int
trust_get(X509_STORE **out, sim *s, const char *path)
{
	char *pem = NULL;
	X509_STORE *store = NULL;
	trust *nt;
	size_t i;
	int r;

	if ((r = cf_file_read(&pem, NULL, path, 1 << 20)) != 0)
		return r;
	for (i = 0; i < s->n_trust; i++)
		if (strcmp(s->trust[i].pem, pem) == 0) {
			*out = s->trust[i].store;
			free(pem);
			return 0;
		}
	r = CF_ERROR;
	if ((nt = realloc(s->trust, (s->n_trust + 1) * sizeof(*nt))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	s->trust = nt;
	if ((store = X509_STORE_new()) == NULL || X509_STORE_load_file(store, path) != 1) {
		cf_error_set("cannot load the CA chain %s", path);
		goto out;
	}
	s->trust[s->n_trust].pem = pem;
	s->trust[s->n_trust].store = store;
	s->n_trust++;
	*out = store;
	pem = NULL;
	store = NULL;
	r = 0;
out:
	X509_STORE_free(store);
	free(pem);
	return r;
}

static int
dev_ctx(dev *d)
{
	char ca[SIM_PATH_MAX], crt[SIM_PATH_MAX], key[SIM_PATH_MAX];
	cf_keystore_status st;
	X509_VERIFY_PARAM *vp;
	X509_STORE *store;
	SSL_CTX *ctx = NULL;
	const cf_key *k;
	int r;

	if ((r = d->ks->ops->status(d->ks->st, &st)) != 0)
		return r;
	if (d->ctx != NULL && d->ctx_gen == st.active)
		return 0;
	bundle_path(ca, sizeof(ca), d, "ca-chain.crt");
	bundle_path(crt, sizeof(crt), d, "device.crt");
	bundle_path(key, sizeof(key), d, "device.key");
	if ((r = trust_get(&store, d->s, ca)) != 0)
		return r;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	SSL_CTX_set1_cert_store(ctx, store);
	if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1)
		goto fail;
	/* The key cache holds the active key already (it signs with it): no second decode. */
	if (d->s->o->no_key_cache) {
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
			goto fail;
	} else if (cf_keystore_cache_key(&k, d->ks, st.active) != 0 ||
	    cf_tls_ctx_use_key(ctx, k) != 0) {
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	vp = SSL_CTX_get0_param(ctx);
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, d->s->host) != 1 &&
	    X509_VERIFY_PARAM_set1_host(vp, d->s->host, 0) != 1)
		goto fail;
	SSL_CTX_free(d->ctx);
	d->ctx = ctx;
	d->ctx_gen = st.active;
	return 0;
fail:
	cf_error_set("%s: TLS context from %s", d->name, crt);
	SSL_CTX_free(ctx);
	return CF_ERROR;
}

static int
attempt(dev *d)
{
	int rc;

	if (dev_ctx(d) != 0)
		return CF_ERROR;
	if ((d->m = mosquitto_new(d->name, true, d)) == NULL)
		return CF_ERROR;
	mosquitto_int_option(d->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(d->m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(d->m, on_connect);
	mosquitto_disconnect_v5_callback_set(d->m, on_disconnect);
	mosquitto_subscribe_v5_callback_set(d->m, on_subscribe);
	mosquitto_message_v5_callback_set(d->m, on_message);
	if ((rc = mosquitto_int_option(d->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0)) != MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_void_option(d->m, MOSQ_OPT_SSL_CTX, d->ctx)) != MOSQ_ERR_SUCCESS)
		return CF_ERROR;
	d->t_attempt = mono();
	d->attempt_deadline = cf_time_now() + CONNECT_TIMEOUT_S;
	d->inflight = 1;
	d->s->inflight++;
	rc = mosquitto_connect_bind_v5(d->m, d->s->host, (int)d->s->port, KEEPALIVE_S, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		return CF_ERROR;
	dev_sync(d);
	return 0;
}

/* Starts queued connects while fewer than --concurrency handshakes are in flight. */
static void
pump(sim *s)
{
	dev *d;

	while (s->q_len > 0 && s->inflight < s->o->concurrency && !s->stopping) {
		d = &s->devs[s->q[s->q_head]];
		s->q_head = (s->q_head + 1) % s->n;
		s->q_len--;
		d->queued = 0;
		if (d->dead || d->m != NULL)
			continue;
		if (attempt(d) != 0) {
			d->lost = 1;
			after_event(d);
		}
	}
}

/* ---- rotation timing and failure injection -------------------------------------- */

static int
in_rotation(cf_agent_state st)
{
	return st != CF_AGENT_IDLE && st != CF_AGENT_DONE;
}

static void kill_dev(dev *d);

static void
rotation_end(dev *d, double now)
{
	sim *s = d->s;
	const char *reason = cf_agent_reason(d->agent);
	int ok = !d->failed && reason[0] == '\0' && d->t_state[CF_AGENT_COMMITTED] > 0;

	if (ok) {
		sample_add(&s->phase[PH_INPROGRESS],
		    d->t_state[CF_AGENT_KEY_GENERATED] - d->t_notify);
		sample_add(&s->phase[PH_CREATE],
		    d->t_state[CF_AGENT_CERT_RECEIVED] - d->t_state[CF_AGENT_CREATE_SENT]);
		sample_add(&s->phase[PH_RECONNECT],
		    d->t_state[CF_AGENT_VERIFYING] - d->t_state[CF_AGENT_RECONNECTING_NEW]);
		sample_add(&s->phase[PH_COMMIT],
		    d->t_state[CF_AGENT_COMMITTED] - d->t_state[CF_AGENT_COMMIT_SENT]);
		sample_add(&s->phase[PH_TOTAL], now - d->t_notify);
		s->rot_ok++;
	} else {
		s->rot_failed++;
		if (!s->o->quiet)
			fprintf(stderr, "certfleet-sim: %s: rotation failed: %s\n", d->name,
			    reason[0] ? reason : "(no reason)");
	}
	if (!d->done) {
		d->done = 1;
		s->rot_done++;
	}
	s->t_last_done = now;
	d->rotating = 0;
}

/*
 * Called after every event of d: stamps the states reached since the last
 * look. The happy path's states are in enum order, so every state between
 * the last one seen and this one was passed through now.
 */
static void
observe(dev *d)
{
	cf_agent_state st, k;
	double now;

	if (d->agent == NULL)
		return;
	st = cf_agent_state_get(d->agent);
	if (st == d->last)
		return;
	now = mono();
	if (!d->rotating && in_rotation(st)) {
		memset(d->t_state, 0, sizeof(d->t_state));
		d->rotating = 1;
		d->failed = 0;
		d->killed = 0;
		d->t_notify = now;
		d->kill_at = 0;
		if (d->s->o->kill_rate > 0 && frand() < d->s->o->kill_rate)
			d->kill_at = CF_AGENT_IN_PROGRESS_SENT +
			    (int)(frand() * (CF_AGENT_CLEANUP - CF_AGENT_IN_PROGRESS_SENT + 1));
	}
	if (d->rotating) {
		if (st == CF_AGENT_ROLLING_BACK || st == CF_AGENT_REPORTING_FAILURE)
			d->failed = 1;
		else if (st <= CF_AGENT_CLEANUP)
			for (k = d->last < st ? d->last + 1 : st; k <= st; k++)
				if (d->t_state[k] == 0)
					d->t_state[k] = now;
		if (!in_rotation(st))
			rotation_end(d, now);
	}
	d->last = st;
	if (d->rotating && d->kill_at != 0 && !d->killed && (int)st >= d->kill_at &&
	    st <= CF_AGENT_CLEANUP)
		kill_dev(d);
}

/* A simulated crash: everything in memory goes; the journal and bundle stay. */
static void
kill_dev(dev *d)
{
	d->killed = 1;
	d->dead = 1;
	d->s->kills++;
	drop_conn(d, 0);
	cf_agent_free(d->agent);
	d->agent = NULL;
	cf_keystore_free(d->ks);
	d->ks = NULL;
	SSL_CTX_free(d->ctx);
	d->ctx = NULL;
	schedule_connect(d, KILL_RESTART_MS + d->s->o->reconnect_delay_ms);
}

/* ---- transport for cf_agent ---------------------------------------------------- */

static int
t_publish(void *arg, const char *topic, const char *payload)
{
	dev *d = arg;
	sim *s = d->s;
	int rc;

	if (d->m == NULL || !d->session_up) {
		cf_error_set("not connected");
		return CF_ESTATE;
	}
	s->publishes++;
	if (s->o->drop_rate > 0 && frand() < s->o->drop_rate) {
		s->drops++;
		return 0; /* lost on the way: the agent must time out and resend */
	}
	rc = mosquitto_publish_v5(d->m, NULL, topic, (int)strlen(payload), payload, 1, false, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		cf_error_set("publish %s: %s", topic, mosquitto_strerror(rc));
		return CF_ERROR;
	}
	return 0;
}

static int
t_reconnect(void *arg)
{
	dev *d = arg;

	d->want_reconnect = 1;
	return 0;
}

static int
dev_start(dev *d)
{
	sim *s = d->s;
	cf_agent_transport t;
	cf_agent_opts ao;
	cf_keystore *file = NULL;
	char bundle[SIM_PATH_MAX], state[SIM_PATH_MAX];
	int r, i;

	bundle_path(bundle, sizeof(bundle), d, NULL);
	bundle_path(state, sizeof(state), d, "state");
	memset(&ao, 0, sizeof(ao));
	ao.thing = d->name;
	ao.prefix = s->topic_prefix;
	ao.state_dir = state;
	ao.ca_chain_pem = s->ca_pem;
	ao.ca_certs = s->ca_certs; /* parsed once for every device (docs/sim.md) */
	ao.n_ca_certs = s->n_ca_certs;
	if (s->o->response_timeout_s > 0)
		for (i = 0; i < CF_AGENT__COUNT; i++)
			ao.timeout_s[i] = (int)s->o->response_timeout_s;
	memset(&t, 0, sizeof(t));
	t.publish = t_publish;
	t.reconnect = t_reconnect;
	t.arg = d;
	if ((r = cf_mkdir_p(state, 0700)) != 0 || (r = cf_keystore_file_open(&file, bundle)) != 0)
		goto fail;
	/* The key cache keeps N devices' PEM decodes off this one CPU (docs/sim.md). */
	if (s->o->no_key_cache) {
		d->ks = file;
	} else if ((r = cf_keystore_cache_wrap(&d->ks, file)) != 0) {
		cf_keystore_free(file);
		goto fail;
	}
	if ((r = cf_agent_start(&d->agent, &ao, d->ks, &t, cf_time_now())) != 0)
		goto fail;
	d->last = cf_agent_state_get(d->agent);
	return 0;
fail:
	cf_error_prefix("%s", d->name);
	return r;
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	dev *d = arg;

	(void)fd;
	(void)what;
	if (d->dead) {
		/* The restart after a kill: recovery from the journal, then connect. */
		if (dev_start(d) != 0) {
			fprintf(stderr, "certfleet-sim: restart: %s\n", cf_error_last());
			d->fatal = 1;
			return;
		}
		d->dead = 0;
		d->s->restarts++;
		observe(d);
	}
	enqueue(d);
	pump(d->s);
}

/* After every call into the handle or the agent: act on what the callbacks asked. */
static void
after_event(dev *d)
{
	sim *s = d->s;

	observe(d);
	if (d->dead)
		return;
	if (d->want_reconnect) {
		d->want_reconnect = 0;
		s->reconnects++;
		drop_conn(d, 1);
		schedule_connect(d, s->o->reconnect_delay_ms);
	} else if (d->lost) {
		conn_lost(d);
	} else {
		dev_sync(d);
		if (d->lost)
			conn_lost(d);
	}
	observe(d);
	pump(s);
}

/* ---- the tick: keepalive, agent timers, connect timeouts -------------------------- */

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	sim *s = arg;
	int64_t now = cf_time_now(), dl;
	long i;
	dev *d;

	(void)fd;
	(void)what;
	for (i = 0; i < s->n; i++) {
		d = &s->devs[i];
		if (d->dead || d->agent == NULL)
			continue;
		if (d->m != NULL) {
			if (!d->session_up && d->attempt_deadline != 0 && now >= d->attempt_deadline)
				d->lost = 1;
			else if (d->fd >= 0 && mosquitto_loop_misc(d->m) != MOSQ_ERR_SUCCESS &&
			    d->session_up)
				d->lost = 1;
		}
		dl = cf_agent_deadline(d->agent);
		if (dl != 0 && now >= dl && !d->fatal)
			agent_result(d, cf_agent_timer(d->agent, now), "timer");
		if (d->m != NULL || d->lost || d->want_reconnect || d->agent != NULL)
			after_event(d);
	}
}

static void
on_signal(evutil_socket_t fd, short what, void *arg)
{
	sim *s = arg;

	(void)fd;
	(void)what;
	s->stopping = 1;
	event_base_loopbreak(s->base);
}

/* ---- the job, through certfleetd's API -------------------------------------------- */

static void
on_job_created(struct evhttp_request *req, void *arg)
{
	sim *s = arg;
	struct evbuffer *in;
	json_t *j = NULL;
	int code = req ? evhttp_request_get_response_code(req) : 0;
	const char *id;

	s->http_busy = 0;
	if (req != NULL) {
		in = evhttp_request_get_input_buffer(req);
		j = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0,
		    NULL);
	}
	id = json_string_value(json_object_get(j, "jobId"));
	if (code / 100 != 2 || id == NULL) {
		id = json_string_value(json_object_get(j, "error"));
		fprintf(stderr, "certfleet-sim: POST /v1/jobs failed (HTTP %d): %s\n", code,
		    id != NULL ? id : "no answer");
		s->job_failed = 1;
		event_base_loopbreak(s->base);
	} else {
		snprintf(s->job_id, sizeof(s->job_id), "%s", id);
		s->job_posted = 1;
	}
	json_decref(j);
}

static void
on_job_status(struct evhttp_request *req, void *arg)
{
	sim *s = arg;
	struct evbuffer *in;
	json_t *j;

	s->http_busy = 0;
	if (req == NULL || evhttp_request_get_response_code(req) != 200)
		return;
	in = evhttp_request_get_input_buffer(req);
	j = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, NULL);
	if (j == NULL)
		return;
	json_decref(s->job_final);
	s->job_final = j;
}

static int
http_request(sim *s, enum evhttp_cmd_type type, const char *path, const char *body,
    void (*cb)(struct evhttp_request *, void *))
{
	struct evhttp_request *req;
	struct evkeyvalq *h;

	if (s->http == NULL &&
	    (s->http = evhttp_connection_base_new(s->base, NULL, s->api_host,
	    (unsigned short)s->api_port)) == NULL)
		return CF_ERROR;
	if ((req = evhttp_request_new(cb, s)) == NULL)
		return CF_ERROR;
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", s->api_host);
	if (body != NULL) {
		evhttp_add_header(h, "Content-Type", "application/json");
		evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	}
	if (evhttp_make_request(s->http, req, type, path) != 0)
		return CF_ERROR;
	s->http_busy = 1;
	return 0;
}

static int
job_create(sim *s)
{
	json_t *j;
	char *body;
	int r;

	j = json_pack("{s:{s:[s]}, s:s}", "targets", "groups",
	    cf_config_get_str(s->fleet, "group", "sim"), "keyAlgorithm", s->o->rotate_alg);
	if (j == NULL)
		return CF_ERROR;
	if (s->o->max_per_minute > 0)
		json_object_set_new(j, "config", json_pack("{s:{s:I}}", "rollout", "maxPerMinute",
		    (json_int_t)s->o->max_per_minute));
	body = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (body == NULL)
		return CF_ERROR;
	s->t_job = mono();
	r = http_request(s, EVHTTP_REQ_POST, "/v1/jobs", body, on_job_created);
	free(body);
	return r;
}

static void
job_poll(sim *s)
{
	char path[256];

	if (s->http_busy || s->job_id[0] == '\0')
		return;
	snprintf(path, sizeof(path), "/v1/jobs/%s", s->job_id);
	(void)http_request(s, EVHTTP_REQ_GET, path, NULL, on_job_status);
}

/* ---- setup and the run ------------------------------------------------------------ */

/*
 * Each device holds three descriptors while connected: its socket and the
 * socket pair libmosquitto 2.0.11 opens in every mosquitto_new (there is no
 * option to turn it off). The soft limit goes up to the hard one; if that is
 * not enough, the hard limit too (root, up to fs.nr_open).
 */
static int
raise_nofile(long devices)
{
	struct rlimit rl;
	long need = 3 * devices + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return CF_ERROR;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((long)rl.rlim_cur < need) {
		struct rlimit more = { (rlim_t)need, (rlim_t)need };

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			rl = more;
	}
	printf("rlimit_nofile=%ld\n", (long)rl.rlim_cur);
	if ((long)rl.rlim_cur < need) {
		cf_error_set("%ld devices need %ld open files (3 each: the socket and libmosquitto's "
		    "socket pair); the limit is %ld and could not be raised (docs/sim.md)", devices,
		    need, (long)rl.rlim_cur);
		return CF_EINVAL;
	}
	return 0;
}

static int
load_fleet(sim *s)
{
	char path[SIM_PATH_MAX];
	long count;
	int r;

	if ((r = cf_strfmt(path, sizeof(path), "%s/%s", s->o->dir, SIM_FLEET_CONF)) != 0 ||
	    (r = cf_config_load(&s->fleet, path)) != 0 ||
	    (r = cf_config_get_int(&count, s->fleet, "count", 1, 1000000, 0)) != 0 ||
	    (r = cf_config_get_int(&s->port, s->fleet, "mqtt_port", 1, 65535, 8883)) != 0 ||
	    (r = cf_config_get_int(&s->api_port, s->fleet, "api_port", 1, 65535, 8884)) != 0)
		return r;
	s->host = cf_config_get_str(s->fleet, "mqtt_host", "127.0.0.1");
	s->api_host = cf_config_get_str(s->fleet, "api_host", "127.0.0.1");
	s->topic_prefix = cf_config_get_str(s->fleet, "topic_prefix", "cf/");
	if (s->o->count > 0 && s->o->count < count)
		count = s->o->count;
	s->total = count;
	s->n = (count - s->o->shard_index + s->o->shard_count - 1) / s->o->shard_count;
	if ((r = cf_strfmt(path, sizeof(path), "%s/ca-chain.crt", s->o->dir)) != 0 ||
	    (r = cf_file_read(&s->ca_pem, NULL, path, 1 << 20)) != 0 ||
	    (r = cf_cert_parse_bundle(&s->ca_certs, &s->n_ca_certs, s->ca_pem,
	    strlen(s->ca_pem))) != 0)
		return r;
	return 0;
}

/* Every phase sample, "phase milliseconds" a line, for merging shards. */
static int
write_samples(const sim *s, const char *path)
{
	FILE *f = fopen(path, "w");
	size_t i;
	int ph;

	if (f == NULL)
		return CF_ERROR;
	for (ph = 0; ph < PH__COUNT; ph++)
		for (i = 0; i < s->phase[ph].n; i++)
			fprintf(f, "%s %.3f\n", phase_names[ph], s->phase[ph].v[i] * 1000.0);
	for (i = 0; i < s->connect_lat.n; i++)
		fprintf(f, "connect %.3f\n", s->connect_lat.v[i] * 1000.0);
	return fclose(f) == 0 ? 0 : CF_ERROR;
}

static void
report_common(sim *s, double wall, double cpu)
{
	printf("devices=%ld\nconnected=%ld\nconnect_failures=%ld\n", s->n, s->connected,
	    s->connect_failures);
	print_lat("connect", &s->connect_lat);
	printf("sim_wall_s=%.3f\nsim_cpu_s=%.3f\nsim_cpu_percent=%.1f\n", wall, cpu,
	    wall > 0 ? 100.0 * cpu / wall : 0);
}

int
sim_run(const sim_opts *o, int rotate)
{
	sim s;
	struct timeval one = { 1, 0 }, slice = { 0, 100000 };
	double t0, c0, t_conn = 0, deadline;
	int r = CF_ERROR, i;
	long k;
	size_t sz;
	json_t *counts;

	memset(&s, 0, sizeof(s));
	s.o = o;
	s.rotate = rotate;
	srandom(o->seed + (unsigned)o->shard_index);
	if ((r = load_fleet(&s)) != 0 || (r = raise_nofile(s.n)) != 0)
		goto out;
	r = CF_ERROR;
	if ((s.base = event_base_new()) == NULL ||
	    (s.devs = calloc((size_t)s.n, sizeof(*s.devs))) == NULL ||
	    (s.q = calloc((size_t)s.n, sizeof(*s.q))) == NULL) {
		cf_error_set("out of memory");
		goto out;
	}
	mosquitto_lib_init();
	signal(SIGPIPE, SIG_IGN);
	s.ev_tick = event_new(s.base, -1, EV_PERSIST, on_tick, &s);
	s.ev_sig = evsignal_new(s.base, SIGINT, on_signal, &s);
	if (s.ev_tick == NULL || s.ev_sig == NULL)
		goto out;
	event_add(s.ev_tick, &one);
	event_add(s.ev_sig, NULL);
	for (k = 0; k < s.n; k++) {
		dev *d = &s.devs[k];

		d->s = &s;
		d->idx = k;
		d->fd = -1;
		if ((r = cf_strfmt(d->name, sizeof(d->name), "%s%ld",
		    cf_config_get_str(s.fleet, "prefix", "sim-"),
		    k * o->shard_count + o->shard_index)) != 0 ||
		    (d->ev_wake = evtimer_new(s.base, on_wake, d)) == NULL ||
		    (r = dev_start(d)) != 0)
			goto out;
		if (in_rotation(d->last))
			fprintf(stderr, "certfleet-sim: %s resumes in %s\n", d->name,
			    cf_agent_state_name(d->last));
		enqueue(d);
	}

	/* Connect everyone. */
	t0 = mono();
	c0 = cpu_seconds();
	deadline = t0 + (o->timeout_s > 0 ? o->timeout_s : 600);
	pump(&s);
	while (!s.stopping && s.connected < s.n && mono() < deadline) {
		event_base_loopexit(s.base, &slice);
		event_base_dispatch(s.base);
	}
	t_conn = mono() - t0;
	printf("mode=%s\n", rotate ? "rotate" : "connect");
	printf("connect_seconds=%.3f\nconnects_per_s=%.1f\n", t_conn,
	    t_conn > 0 ? (double)s.connected / t_conn : 0);
	printf("connect_sim_cpu_percent=%.1f\n", t_conn > 0 ? 100.0 * (cpu_seconds() - c0) / t_conn : 0);
	/* Now, not at exit: bench/rotation starts the other processes' clocks on this line. */
	fflush(stdout);
	if (s.connected < s.n) {
		cf_error_set("only %ld of %ld devices connected", s.connected, s.n);
		report_common(&s, mono() - t0, cpu_seconds() - c0);
		r = CF_ERROR;
		goto out;
	}

	if (!rotate) {
		double until = mono() + o->hold_s;

		while (!s.stopping && mono() < until) {
			event_base_loopexit(s.base, &slice);
			event_base_dispatch(s.base);
		}
		report_common(&s, mono() - t0, cpu_seconds() - c0);
		r = 0;
		goto out;
	}

	/* Rotate: one job for the group; wait until every device finished its rotation. */
	t0 = mono();
	c0 = cpu_seconds();
	deadline = t0 + (o->timeout_s > 0 ? o->timeout_s : 600);
	if (o->no_job) {
		/* Another shard creates the job once every shard reported ready. */
		printf("ready=1\n");
		fflush(stdout);
	} else if (job_create(&s) != 0) {
		cf_error_set("cannot send the job to %s:%ld", s.api_host, s.api_port);
		goto out;
	}
	while (!s.stopping && !s.job_failed && s.rot_done < s.n && mono() < deadline) {
		event_base_loopexit(s.base, &slice);
		event_base_dispatch(s.base);
	}
	/* Let the last SUCCEEDED updates land, then read the job's counts. */
	for (i = 0; i < 30 && !s.job_failed && !o->no_job && !s.stopping; i++) {
		json_t *c = json_object_get(s.job_final, "counts");

		if (c != NULL && json_integer_value(json_object_get(c, "IN_PROGRESS")) == 0 &&
		    json_integer_value(json_object_get(c, "QUEUED")) == 0)
			break;
		job_poll(&s);
		event_base_loopexit(s.base, &one);
		event_base_dispatch(s.base);
	}
	{
		double wall = s.t_last_done > t0 ? s.t_last_done - t0 : mono() - t0;
		double cpu = cpu_seconds() - c0;
		int ph;

		if (o->samples != NULL && write_samples(&s, o->samples) != 0)
			fprintf(stderr, "certfleet-sim: cannot write %s\n", o->samples);
		/* CLOCK_MONOTONIC is one clock for every process: shards merge on it. */
		printf("t_start_mono=%.6f\nt_last_done_mono=%.6f\n", t0, s.t_last_done);
		printf("job_id=%s\n", s.job_id);
		printf("rotations_ok=%ld\nrotations_failed=%ld\nrotations_unfinished=%ld\n", s.rot_ok,
		    s.rot_failed, s.n - s.rot_done);
		printf("rotation_seconds=%.3f\nrotations_per_s=%.2f\n", wall,
		    wall > 0 ? (double)s.rot_ok / wall : 0);
		for (ph = 0; ph < PH__COUNT; ph++)
			print_lat(phase_names[ph], &s.phase[ph]);
		printf("publishes=%ld\ndropped=%ld\nkills=%ld\nrestarts=%ld\nreconnects=%ld\n",
		    s.publishes, s.drops, s.kills, s.restarts, s.reconnects);
		counts = json_object_get(s.job_final, "counts");
		if (counts != NULL) {
			const char *key;
			json_t *v;

			json_object_foreach(counts, key, v)
				printf("job_%s=%" JSON_INTEGER_FORMAT "\n", key, json_integer_value(v));
		}
		report_common(&s, mono() - t0, cpu);
		printf("rotate_sim_cpu_percent=%.1f\n", wall > 0 ? 100.0 * cpu / wall : 0);
	}
	r = (!s.job_failed && s.rot_done == s.n && s.rot_failed == 0) ? 0 : CF_ERROR;
	if (r != 0)
		cf_error_set("%ld of %ld rotations succeeded", s.rot_ok, s.n);
out:
	if (s.devs != NULL) {
		s.stopping = 1;
		for (k = 0; k < s.n; k++) {
			dev *d = &s.devs[k];

			drop_conn(d, 1);
			if (d->ev_wake)
				event_free(d->ev_wake);
			cf_agent_free(d->agent);
			cf_keystore_free(d->ks);
			SSL_CTX_free(d->ctx);
		}
	}
	if (s.http)
		evhttp_connection_free(s.http);
	json_decref(s.job_final);
	for (i = 0; i < PH__COUNT; i++)
		free(s.phase[i].v);
	free(s.connect_lat.v);
	if (s.ev_tick)
		event_free(s.ev_tick);
	if (s.ev_sig)
		event_free(s.ev_sig);
	if (s.base)
		event_base_free(s.base);
	if (s.devs != NULL)
		mosquitto_lib_cleanup();
	free(s.devs);
	free(s.q);
	free(s.ca_pem);
	cf_cert_list_free(s.ca_certs, s.n_ca_certs);
	for (sz = 0; sz < s.n_trust; sz++) {
		X509_STORE_free(s.trust[sz].store);
		free(s.trust[sz].pem);
	}
	free(s.trust);
	cf_config_free(s.fleet);
	return r;
}
