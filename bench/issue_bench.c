/*
 * issue_bench — issuance throughput for bench/issuance, three ways over the
 * same CSRs in one process and one run:
 *
 *   ca      cf_ca_issue_csr: CSR parse + verify + subject and key-policy
 *           checks + sign + the certificate stored durably (its own SQLite
 *           transaction, with its event) — the path certfleetd runs
 *   raw     bare OpenSSL in this process: PEM CSR parse, X509_REQ_verify, a
 *           certificate with the same extensions signed by the same issuer
 *           key, PEM out; nothing stored (the ceiling for this key type)
 *   cfssl   `cfssl serve` (--cfssl-url) signing each CSR over HTTP
 *           (POST /api/v1/cfssl/sign, one keep-alive connection); it stores
 *           nothing
 *
 * All three run at concurrency 1 (the CA path is serial: one store writer).
 * Prints key=value lines: per-way certs_per_s and the ratios.
 *
 *   issue_bench --data DIR --issuer-key PEM [--count N] [--cfssl-url URL] [--batch N] [--ca-only]
 *
 * --issuer-key: the issuing CA's key, unencrypted (the script exports it for
 * cfssl anyway); the raw way signs with it. --batch N (0 = off) adds a fourth
 * way, "ca_batch": the CA path with N issuances per store transaction.
 * --ca-only: only the CA path (for a profiler).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cf_ca.h"
#include "cf_pki.h"
#include "cf_store.h"
#include "cf_util.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MAX_ROUNDS 64
enum { W_RAW, W_CA, W_BATCH, W_CFSSL, N_WAYS };
static const char *const way_names[N_WAYS] = { "raw", "ca", "ca_batch", "cfssl" };

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* CPU seconds of this thread (pid 0) or of process pid (user + system). */
static double
cpu_now(int pid)
{
	struct timespec ts;
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	int i;

	if (pid == 0) {
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
		return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (p == NULL || (p = strrchr(buf, ')')) == NULL)
		return 0;
	/* after ") ": field 3 (state) ... utime is field 14, stime 15 */
	for (i = 3; i < 14 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void
die(const char *what)
{
	fprintf(stderr, "issue_bench: %s: %s\n", what, cf_error_last());
	exit(1);
}

/* ---- raw OpenSSL ------------------------------------------------------------------ */

static int
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = e != NULL && X509_add_ext(x, e, -1);

	X509_EXTENSION_free(e);
	return ok ? 0 : -1;
}

/* One certificate from a PEM CSR, the way a minimal OpenSSL CA would do it. */
static int
raw_issue(char **out, const char *csr_pem, const char *thing, X509 *issuer, EVP_PKEY *key)
{
	BIO *in = BIO_new_mem_buf(csr_pem, -1), *mem = NULL;
	X509_REQ *req = NULL;
	X509 *x = NULL;
	EVP_PKEY *pub;
	BIGNUM *bn = NULL;
	unsigned char serial[16];
	X509V3_CTX ctx;
	char san[256];
	BUF_MEM *bm;
	int r = -1;

	if (in == NULL || (req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL)) == NULL ||
	    (pub = X509_REQ_get0_pubkey(req)) == NULL || X509_REQ_verify(req, pub) != 1)
		goto out;
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f;
	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3) ||
	    (bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    !X509_set_subject_name(x, X509_REQ_get_subject_name(req)) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(issuer)) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) == NULL ||
	    !X509_set_pubkey(x, pub))
		goto out;
	snprintf(san, sizeof(san), "URI:urn:certfleet:thing:%s", thing);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") != 0 ||
	    add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") != 0 ||
	    add_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0 ||
	    add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") != 0 ||
	    add_ext(x, &ctx, NID_subject_alt_name, san) != 0)
		goto out;
	if (X509_sign(x, key, EVP_sha256()) <= 0 || (mem = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_X509(mem, x))
		goto out;
	BIO_get_mem_ptr(mem, &bm);
	if ((*out = strndup(bm->data, bm->length)) == NULL)
		goto out;
	r = 0;
out:
	BIO_free(in);
	BIO_free(mem);
	BN_free(bn);
	X509_REQ_free(req);
	X509_free(x);
	return r;
}

/* ---- cfssl over HTTP ---------------------------------------------------------------- */

typedef struct {
	char *buf;
	size_t len;
} membuf;

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	membuf *m = arg;
	char *nb = realloc(m->buf, m->len + size * n + 1);

	if (nb == NULL)
		return 0;
	memcpy(nb + m->len, p, size * n);
	m->len += size * n;
	nb[m->len] = '\0';
	m->buf = nb;
	return size * n;
}

static int
cfssl_sign(CURL *c, const char *url, const char *csr_pem)
{
	json_t *req = json_pack("{s:s}", "certificate_request", csr_pem), *resp = NULL;
	char *body = json_dumps(req, JSON_COMPACT);
	membuf mb = { NULL, 0 };
	long code = 0;
	int r = -1;

	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &mb);
	if (curl_easy_perform(c) == CURLE_OK &&
	    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 &&
	    (resp = json_loads(mb.buf, 0, NULL)) != NULL &&
	    json_is_true(json_object_get(resp, "success")) &&
	    json_is_string(json_object_get(json_object_get(resp, "result"), "certificate")))
		r = 0;
	else
		fprintf(stderr, "issue_bench: cfssl: HTTP %ld %.200s\n", code, mb.buf ? mb.buf : "");
	json_decref(req);
	json_decref(resp);
	free(body);
	free(mb.buf);
	return r;
}

/* ---- main ----------------------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr, "usage: issue_bench --data DIR --issuer-key PEM [--count N] "
	    "[--cfssl-url URL] [--batch N] [--ca-only]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },
		{ "issuer-key", required_argument, NULL, 'k' },
		{ "count", required_argument, NULL, 'n' },
		{ "cfssl-url", required_argument, NULL, 'u' },
		{ "batch", required_argument, NULL, 'b' },
		{ "ca-only", no_argument, NULL, 'c' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "cfssl-pid", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *data = NULL, *issuer_key = NULL, *cfssl_url = NULL;
	long count = 500, batch = 0, i;
	int ca_only = 0;
	char **csrs, **things, tag[16], *pem;
	cf_ca *ca = NULL;
	cf_key *key = NULL;
	cf_cert_rec rec;
	cf_ca_rec issuer_rec;
	X509 *issuer = NULL;
	EVP_PKEY *ikey = NULL;
	BIO *b;
	FILE *f;
	CURL *c = NULL;
	double t0, c0, ratio, wall[N_WAYS][MAX_ROUNDS], cpu[N_WAYS] = { 0 };
	double rate[N_WAYS] = { 0 }, cpu_rate[N_WAYS] = { 0 };
	long done[N_WAYS] = { 0 }, rounds = 5;
	long round;
	int o, k, cfssl_pid = 0;
	char url[512], **things2, **csrs2;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'd': data = optarg; break;
		case 'k': issuer_key = optarg; break;
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 'u': cfssl_url = optarg; break;
		case 'b': batch = strtol(optarg, NULL, 10); break;
		case 'c': ca_only = 1; break;
		case 'r': rounds = strtol(optarg, NULL, 10); break;
		case 'p': cfssl_pid = (int)strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (data == NULL || issuer_key == NULL || rounds < 1 || rounds > MAX_ROUNDS ||
	    count < rounds)
		usage();
	if (cf_ca_open(&ca, data) != 0 || cf_ca_load_issuer(ca) != 0)
		die("open CA");
	memset(&issuer_rec, 0, sizeof(issuer_rec));
	if (cf_store_ca_get_issuer(cf_ca_store(ca), &issuer_rec) != 0)
		die("issuer");
	b = BIO_new_mem_buf(issuer_rec.pem, -1);
	issuer = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	if ((f = fopen(issuer_key, "r")) == NULL ||
	    (ikey = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL || issuer == NULL) {
		fprintf(stderr, "issue_bench: cannot load the issuer (%s)\n", issuer_key);
		return 1;
	}
	fclose(f);
	cf_ca_rec_clear(&issuer_rec);

	/* The workload: count things (4 ways), a P-256 key and CSR each. Not timed. */
	snprintf(tag, sizeof(tag), "%08x", (unsigned)(now() * 1000) ^ (unsigned)getpid());
	csrs = calloc((size_t)count, sizeof(*csrs));
	things = calloc((size_t)count, sizeof(*things));
	things2 = calloc((size_t)count, sizeof(*things2));
	csrs2 = calloc((size_t)count, sizeof(*csrs2));
	if (csrs == NULL || things == NULL || things2 == NULL || csrs2 == NULL ||
	    cf_store_begin(cf_ca_store(ca)) != 0)
		die("setup");
	for (i = 0; i < count; i++) {
		char name[64];

		snprintf(name, sizeof(name), "ib-%s-b%ld", tag, i);
		if ((things2[i] = strdup(name)) == NULL ||
		    cf_store_thing_create(cf_ca_store(ca), name, NULL) != 0 ||
		    (batch > 0 && (cf_key_generate(&key, CF_KEY_P256) != 0 ||
		    cf_csr_create(&csrs2[i], key, cf_sig_alg_default(CF_KEY_P256), name) != 0)))
			die("workload");
		cf_key_free(key);
		key = NULL;
		snprintf(name, sizeof(name), "ib-%s-%ld", tag, i);
		if ((things[i] = strdup(name)) == NULL ||
		    cf_store_thing_create(cf_ca_store(ca), name, NULL) != 0 ||
		    cf_key_generate(&key, CF_KEY_P256) != 0 ||
		    cf_csr_create(&csrs[i], key, cf_sig_alg_default(CF_KEY_P256), name) != 0)
			die("workload");
		cf_key_free(key);
		key = NULL;
	}
	if (cf_store_commit(cf_ca_store(ca)) != 0)
		die("commit");
	printf("bench=issuance\nkey_algorithm=ECDSA-P256\ncount=%ld\nrounds=%ld\nconcurrency=1\n",
	    count, rounds);

	if (cfssl_url != NULL) {
		snprintf(url, sizeof(url), "%s/api/v1/cfssl/sign", cfssl_url);
		curl_global_init(CURL_GLOBAL_DEFAULT);
		if ((c = curl_easy_init()) == NULL)
			return 1;
		if (cfssl_sign(c, url, csrs[0]) != 0) /* warm-up: connection, first request */
			return 1;
	}
	/*
	 * rounds slices of the CSRs; in each round every way issues its slice,
	 * the order rotating, so that load from outside hits all ways alike.
	 * Rates: the median over rounds of wall-clock certs/s, and certs per
	 * CPU second (this thread; cfssl's process from /proc) as a check that
	 * is less sensitive to other load on the machine.
	 */
	for (round = 0; round < rounds; round++) {
		long lo = count * round / rounds, hi = count * (round + 1) / rounds;
		int way;

		for (k = 0; k < N_WAYS; k++) {
			way = (k + round) % N_WAYS;
			if ((way == W_RAW && ca_only) || (way == W_BATCH && batch <= 0) ||
			    (way == W_CFSSL && cfssl_url == NULL))
				continue;
			t0 = now();
			c0 = cpu_now(way == W_CFSSL ? cfssl_pid : 0);
			for (i = lo; i < hi; i++) {
				if (way == W_RAW) {
					if (raw_issue(&pem, csrs[i], things[i], issuer, ikey) != 0) {
						fprintf(stderr, "issue_bench: raw issue failed\n");
						return 1;
					}
					free(pem);
				} else if (way == W_CA || way == W_BATCH) {
					if (way == W_BATCH && (i - lo) % batch == 0 &&
					    cf_store_begin(cf_ca_store(ca)) != 0)
						die("begin");
					memset(&rec, 0, sizeof(rec));
					if (way == W_CA ? cf_ca_issue_csr(ca, &rec, csrs[i], strlen(csrs[i]),
					    things[i], 0) != 0 : cf_ca_issue_csr(ca, &rec, csrs2[i],
					    strlen(csrs2[i]), things2[i], 0) != 0)
						die("cf_ca_issue_csr");
					cf_cert_rec_clear(&rec);
					if (way == W_BATCH && ((i - lo) % batch == batch - 1 || i == hi - 1) &&
					    cf_store_commit(cf_ca_store(ca)) != 0)
						die("commit");
				} else if (cfssl_sign(c, url, csrs[i]) != 0) {
					return 1;
				}
			}
			wall[way][round] = (double)(hi - lo) / (now() - t0);
			cpu[way] += cpu_now(way == W_CFSSL ? cfssl_pid : 0) - c0;
			done[way] += hi - lo;
		}
	}
	for (k = 0; k < N_WAYS; k++) {
		if (done[k] == 0)
			continue;
		qsort(wall[k], (size_t)rounds, sizeof(double), cmp_double);
		rate[k] = rounds % 2 ? wall[k][rounds / 2] :
		    (wall[k][rounds / 2 - 1] + wall[k][rounds / 2]) / 2;
		cpu_rate[k] = cpu[k] > 0 ? (double)done[k] / cpu[k] : 0;
		printf("%s_certs_per_s=%.1f\n%s_certs_per_cpu_s=%.1f\n", way_names[k], rate[k],
		    way_names[k], cpu_rate[k]);
	}
	if (batch > 0)
		printf("ca_batch_size=%ld\n", batch);
	if (c != NULL) {
		curl_easy_cleanup(c);
		curl_global_cleanup();
	}
	if (!ca_only) {
		ratio = rate[W_CA] / rate[W_RAW];
		printf("ca_vs_raw=%.3f\nca_vs_raw_cpu=%.3f\ntarget_ca_vs_raw=0.6\nmeets_ca_vs_raw=%s\n",
		    ratio, cpu_rate[W_CA] / cpu_rate[W_RAW], ratio >= 0.6 ? "yes" : "no");
	}
	if (done[W_CFSSL] > 0) {
		ratio = rate[W_CA] / rate[W_CFSSL];
		printf("ca_vs_cfssl=%.3f\n", ratio);
		if (cpu_rate[W_CFSSL] > 0)
			printf("ca_vs_cfssl_cpu=%.3f\n", cpu_rate[W_CA] / cpu_rate[W_CFSSL]);
		printf("target_ca_vs_cfssl=1.5\nmeets_ca_vs_cfssl=%s\n", ratio >= 1.5 ? "yes" : "no");
	}
	for (i = 0; i < count; i++) {
		free(csrs[i]);
		free(things[i]);
		free(things2[i]);
		free(csrs2[i]);
	}
	free(csrs);
	free(things);
	free(things2);
	free(csrs2);
	X509_free(issuer);
	EVP_PKEY_free(ikey);
	cf_ca_close(ca);
	return 0;
}
