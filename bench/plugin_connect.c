/*
 * plugin_connect — connection-rate load generator for bench/plugin-handshake.
 *
 * N threads, each looping for T seconds: connect (mutual TLS, MQTT v5) →
 * CONNACK → DISCONNECT, on one reused libmosquitto handle (so its SSL_CTX is
 * built once; every connect is still a full TLS handshake: libmosquitto does
 * not resume sessions). Prints key=value lines: connects, failures, seconds,
 * connects_per_s, threads, and the median / 99th percentile connect latency.
 *
 *   plugin_connect --port N --cafile F --cert F --key F --client-id ID
 *                  [--host 127.0.0.1] [--threads 2] [--seconds 5]
 *
 * In --cert, --key and --client-id, "{i}" is replaced by the thread index
 * (0..N-1): the plugin only accepts a certificate with its own thing's client
 * id, and two threads sharing a client id would take each other's sessions
 * over. Exit 0 if at least one connect succeeded, 1 otherwise, 2 on usage.
 *
 * --publishes N: after each CONNACK, N QoS 1 publishes to
 * <prefix>things/<client id>/telemetry (--prefix, default "cf/"), each
 * waiting for its PUBACK, before the disconnect: the plugin's ACL and
 * stamping path on top of the handshake. Adds publishes, publish_failures
 * and publishes_per_s.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define CONNACK_TIMEOUT_MS 5000
#define MAX_SAMPLES 1000000

struct opts {
	const char *host, *cafile, *cert, *key, *client_id, *prefix;
	int port, threads, publishes;
	double seconds;
};

struct worker {
	const struct opts *o;
	int index;
	char cert[4096], key[4096], client_id[256];
	long connects, failures, publishes, publish_failures;
	int connack; /* -1 while waiting */
	int puback;  /* -1 while waiting: the PUBACK reason code */
	char topic[512];
	double *lat;  /* connect latencies (s) */
	size_t nlat;
	char last_error[160];
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* subst: dst = src with every "{i}" replaced by index. */
static int
subst(char *dst, size_t n, const char *src, int index)
{
	size_t o = 0;
	int w;

	while (*src != '\0') {
		if (strncmp(src, "{i}", 3) == 0) {
			w = snprintf(dst + o, n - o, "%d", index);
			if (w < 0 || (size_t)w >= n - o)
				return -1;
			o += (size_t)w;
			src += 3;
			continue;
		}
		if (o + 1 >= n)
			return -1;
		dst[o++] = *src++;
	}
	dst[o] = '\0';
	return 0;
}

static void
on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *props)
{
	struct worker *w = obj;

	(void)m;
	(void)flags;
	(void)props;
	w->connack = rc;
}

static void
on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *props)
{
	struct worker *w = obj;

	(void)m;
	(void)mid;
	(void)props;
	w->puback = reason;
}

static void
fail(struct worker *w, const char *what, int rc)
{
	w->failures++;
	snprintf(w->last_error, sizeof(w->last_error), "%s: %s", what,
	    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
}

/* --publishes: QoS 1 publishes on the live connection, one PUBACK at a time. */
static int
publish_some(struct worker *w, struct mosquitto *m)
{
	double deadline;
	int i, rc;

	for (i = 0; i < w->o->publishes; i++) {
		w->puback = -1;
		rc = mosquitto_publish_v5(m, NULL, w->topic, 8, "{\"t\":21}", 1, false, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			w->publish_failures++;
			snprintf(w->last_error, sizeof(w->last_error), "publish: %s", mosquitto_strerror(rc));
			return -1;
		}
		deadline = now() + CONNACK_TIMEOUT_MS / 1000.0;
		while (w->puback < 0 && now() < deadline) {
			if ((rc = mosquitto_loop(m, 100, 1)) != MOSQ_ERR_SUCCESS && w->puback < 0) {
				w->publish_failures++;
				snprintf(w->last_error, sizeof(w->last_error), "waiting for PUBACK: %s",
				    mosquitto_strerror(rc));
				return -1;
			}
		}
		/* Any reason below 0x80 is a success (16: no matching subscribers). */
		if (w->puback < 0 || w->puback >= 0x80) {
			w->publish_failures++;
			snprintf(w->last_error, sizeof(w->last_error), "PUBACK %d", w->puback);
			continue;
		}
		w->publishes++;
	}
	return 0;
}

/* One connect → CONNACK → disconnect; 0 if CONNACK 0 arrived. */
static int
one_connect(struct worker *w, struct mosquitto *m, int first)
{
	const struct opts *o = w->o;
	double t0 = now(), deadline;
	int rc;

	w->connack = -1;
	if (first)
		rc = mosquitto_connect_bind_v5(m, o->host, o->port, 30, NULL, NULL);
	else
		rc = mosquitto_reconnect(m);
	if (rc != MOSQ_ERR_SUCCESS) {
		fail(w, "connect", rc);
		return -1;
	}
	deadline = t0 + CONNACK_TIMEOUT_MS / 1000.0;
	while (w->connack < 0 && now() < deadline) {
		rc = mosquitto_loop(m, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS && w->connack < 0) {
			fail(w, "waiting for CONNACK", rc);
			return -1;
		}
	}
	if (w->connack != 0) {
		if (w->connack < 0)
			snprintf(w->last_error, sizeof(w->last_error), "no CONNACK within %d ms", CONNACK_TIMEOUT_MS);
		else
			snprintf(w->last_error, sizeof(w->last_error), "CONNACK %d (%s)", w->connack,
			    mosquitto_reason_string(w->connack));
		w->failures++;
		mosquitto_disconnect(m);
		return -1;
	}
	if (w->nlat < MAX_SAMPLES)
		w->lat[w->nlat++] = now() - t0;
	w->connects++;
	if (publish_some(w, m) != 0) {
		mosquitto_disconnect(m);
		return -1;
	}
	mosquitto_disconnect_v5(m, MQTT_RC_NORMAL_DISCONNECTION, NULL);
	return 0;
}

static struct mosquitto *
new_client(struct worker *w)
{
	struct mosquitto *m;
	int rc;

	if ((m = mosquitto_new(w->client_id, true, w)) == NULL) {
		snprintf(w->last_error, sizeof(w->last_error), "mosquitto_new: %s", strerror(errno));
		return NULL;
	}
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(m, on_connect);
	mosquitto_publish_v5_callback_set(m, on_publish);
	rc = mosquitto_tls_set(m, w->o->cafile, NULL, w->cert, w->key, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		snprintf(w->last_error, sizeof(w->last_error), "mosquitto_tls_set: %s", mosquitto_strerror(rc));
		mosquitto_destroy(m);
		return NULL;
	}
	return m;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	double end = now() + w->o->seconds;
	struct mosquitto *m = NULL;
	int first = 1;

	while (now() < end) {
		if (m == NULL) {
			if ((m = new_client(w)) == NULL) {
				w->failures++;
				break;
			}
			first = 1;
		}
		if (one_connect(w, m, first) != 0) {
			/* start over with a fresh handle after any failure */
			mosquitto_destroy(m);
			m = NULL;
			continue;
		}
		first = 0;
	}
	if (m != NULL)
		mosquitto_destroy(m);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void
usage(void)
{
	fprintf(stderr, "usage: plugin_connect --port N --cafile F --cert F --key F --client-id ID "
			"[--host H] [--threads N] [--seconds S] [--publishes N] [--prefix P]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "cafile", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "client-id", required_argument, NULL, 'i' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "publishes", required_argument, NULL, 'n' },
		{ "prefix", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .host = "127.0.0.1", .threads = 2, .seconds = 5.0, .prefix = "cf/" };
	static struct worker w[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	long connects = 0, failures = 0, publishes = 0, publish_failures = 0;
	char cid[sizeof(w[0].client_id)];
	double t0, elapsed, *all;
	size_t nall = 0, j;
	int ch, i;

	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'a': o.cafile = optarg; break;
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'i': o.client_id = optarg; break;
		case 't': o.threads = atoi(optarg); break;
		case 's': o.seconds = atof(optarg); break;
		case 'n': o.publishes = atoi(optarg); break;
		case 'x': o.prefix = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || o.port <= 0 || o.port > 65535 || !o.cafile || !o.cert || !o.key ||
	    !o.client_id || o.threads < 1 || o.threads > MAX_THREADS || !(o.seconds > 0) ||
	    o.publishes < 0)
		usage();

	mosquitto_lib_init();
	for (i = 0; i < o.threads; i++) {
		w[i].o = &o;
		w[i].index = i;
		if (subst(w[i].cert, sizeof(w[i].cert), o.cert, i) != 0 ||
		    subst(w[i].key, sizeof(w[i].key), o.key, i) != 0 ||
		    subst(w[i].client_id, sizeof(w[i].client_id), o.client_id, i) != 0)
			usage();
		memcpy(cid, w[i].client_id, sizeof(cid)); /* a copy: GCC sees w[i] on both sides */
		if ((size_t)snprintf(w[i].topic, sizeof(w[i].topic), "%sthings/%s/telemetry", o.prefix,
		    cid) >= sizeof(w[i].topic))
			usage();
		if ((w[i].lat = calloc(MAX_SAMPLES, sizeof(double))) == NULL) {
			perror("calloc");
			return 1;
		}
	}
	t0 = now();
	for (i = 0; i < o.threads; i++) {
		if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	for (i = 0; i < o.threads; i++)
		pthread_join(th[i], NULL);
	elapsed = now() - t0;

	for (i = 0; i < o.threads; i++) {
		connects += w[i].connects;
		failures += w[i].failures;
		publishes += w[i].publishes;
		publish_failures += w[i].publish_failures;
		nall += w[i].nlat;
	}
	if ((all = calloc(nall ? nall : 1, sizeof(double))) == NULL) {
		perror("calloc");
		return 1;
	}
	for (i = 0, j = 0; i < o.threads; i++) {
		memcpy(all + j, w[i].lat, w[i].nlat * sizeof(double));
		j += w[i].nlat;
	}
	qsort(all, nall, sizeof(double), cmp_double);

	printf("threads=%d\n", o.threads);
	printf("seconds=%.3f\n", elapsed);
	printf("connects=%ld\n", connects);
	printf("failures=%ld\n", failures);
	printf("connects_per_s=%.1f\n", connects / elapsed);
	if (o.publishes > 0) {
		printf("publishes=%ld\n", publishes);
		printf("publish_failures=%ld\n", publish_failures);
		printf("publishes_per_s=%.1f\n", publishes / elapsed);
	}
	if (nall > 0) {
		printf("latency_p50_ms=%.3f\n", all[nall / 2] * 1e3);
		printf("latency_p99_ms=%.3f\n", all[(nall * 99) / 100] * 1e3);
	}
	for (i = 0; i < o.threads; i++) {
		if (w[i].last_error[0] != '\0')
			printf("last_error_thread_%d=\"%s\"\n", i, w[i].last_error);
		free(w[i].lat);
	}
	free(all);
	mosquitto_lib_cleanup();
	return connects > 0 ? 0 : 1;
}
