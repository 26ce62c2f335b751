/*
 * certfleetd's notifications (docs/notifications.md).
 *
 * Owns the notify_* settings, the webhook secret and the delivery thread.
 * cfd_notify() runs on the reactor thread: it builds the JSON payload of a
 * notice and queues one outbox row per configured sink ("webhook", "exec")
 * in the store, inside whatever transaction the caller has open, so a
 * notification is committed exactly when what it reports is. The delivery
 * thread has its own store handle on the same database (SQLite in WAL mode
 * serialises the writers); it sleeps on a condition variable, woken by
 * cfd_notify_wake() or once a second, sends the rows that are due and
 * records each attempt: DELIVERED, PENDING again after a backoff, or
 * GAVE_UP after notify_max_attempts. Delivery is at least once; receivers
 * deduplicate on the payload's "id".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "certfleetd.h"
#include "cf_config.h"
#include "cf_pki.h"
#include "cf_store.h"
#include "cf_util.h"

extern char **environ;

#define SECRET_MAX 1024
#define URL_MAX 2048
#define CMD_MAX 4096
#define DUE_BATCH 32
#define BACKOFF_CAP_S 300
#define ERR_MAX 256
#define NOTICE_ID_BYTES 16
#define KIND_VAR "CERTFLEET_NOTIFY_KIND="
#define ID_VAR "CERTFLEET_NOTIFY_ID="

typedef enum { SINK_WEBHOOK, SINK_EXEC, SINK__COUNT } sink;

static const char *const sink_names[SINK__COUNT] = {
	[SINK_WEBHOOK] = "webhook",
	[SINK_EXEC] = "exec",
};

struct cfd_notifier {
	/* settings (read-only once the thread runs) */
	char url[URL_MAX];
	unsigned char secret[SECRET_MAX];
	size_t secret_len;
	long webhook_timeout_s;
	char cmd[CMD_MAX];
	long exec_timeout_s;
	long max_attempts;
	long backoff_s;
	int sink_on[SINK__COUNT];

	/* the delivery thread and what it shares with the reactor */
	cf_store *st;               /* the thread's own handle */
	pthread_t thread;
	int thread_started;
	int curl_init;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int wake;
	int stop;
};

/* ---- settings ------------------------------------------------------------------------ */

/* Reads the secret from path: a regular file not readable by others, first line, not empty. */
static int
read_secret(cfd_notifier *n, const char *cfg_path, const char *path)
{
	unsigned char buf[SECRET_MAX + 2];
	struct stat sb;
	ssize_t got;
	size_t len = 0;
	int fd = -1, r = CF_EINVAL;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		cf_error_set("%s: notify_webhook_secret_file %s: %s", cfg_path, path, strerror(errno));
		r = errno == ENOENT ? CF_ENOTFOUND : CF_ERROR;
		goto out;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		cf_error_set("%s: notify_webhook_secret_file %s: not a regular file", cfg_path, path);
		goto out;
	}
	if ((sb.st_mode & 007) != 0) {
		cf_error_set("%s: notify_webhook_secret_file %s has mode %04o: the webhook secret must "
		    "not be readable by others (chmod 600 it)", cfg_path, path,
		    (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	while (len < sizeof(buf)) {
		got = read(fd, buf + len, sizeof(buf) - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			cf_error_set("%s: notify_webhook_secret_file %s: %s", cfg_path, path,
			    strerror(errno));
			r = CF_ERROR;
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	/* The first line is the secret; a trailing "\n" or "\r\n" is not part of it. */
	for (n->secret_len = 0; n->secret_len < len && buf[n->secret_len] != '\n'; n->secret_len++)
		;
	if (n->secret_len > 0 && buf[n->secret_len - 1] == '\r')
		n->secret_len--;
	if (n->secret_len == 0 || n->secret_len > SECRET_MAX) {
		cf_error_set("%s: notify_webhook_secret_file %s: the first line must hold a secret of "
		    "1 to %d bytes", cfg_path, path, SECRET_MAX);
		n->secret_len = 0;
		goto out;
	}
	memcpy(n->secret, buf, n->secret_len);
	r = 0;
out:
	cf_wipe(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return r;
}

static int
copy_setting(char *out, size_t len, const cf_config *cfg, const char *key, const char *v)
{
	if (strlen(v) >= len) {
		cf_error_set("%s: %s is longer than %zu characters", cf_config_path(cfg), key, len - 1);
		return CF_EINVAL;
	}
	memcpy(out, v, strlen(v) + 1);
	return 0;
}

/* DIR-relative path of a setting, like every path in certfleet.conf. */
static int
dir_path(char *out, size_t len, const char *dir, const char *v)
{
	if (v[0] == '/')
		return cf_strfmt(out, len, "%s", v);
	return cf_strfmt(out, len, "%s/%s", dir, v);
}

static int
load_settings(cfd_notifier *n, const cfd *d)
{
	const cf_config *cfg = cf_ca_config(d->ca);
	const char *cp = cf_config_path(cfg), *url, *secret, *cmd;
	char path[PATH_MAX];
	size_t i;
	int r;

	if ((r = cf_config_get_int(&n->webhook_timeout_s, cfg, "notify_webhook_timeout", 1, 300,
	    5)) != 0 ||
	    (r = cf_config_get_int(&n->exec_timeout_s, cfg, "notify_exec_timeout", 1, 3600, 10)) != 0 ||
	    (r = cf_config_get_int(&n->max_attempts, cfg, "notify_max_attempts", 1, 100, 8)) != 0 ||
	    (r = cf_config_get_int(&n->backoff_s, cfg, "notify_backoff", 1, BACKOFF_CAP_S, 2)) != 0)
		return r;
	url = cf_config_get_str(cfg, "notify_webhook_url", "");
	secret = cf_config_get_str(cfg, "notify_webhook_secret_file", "");
	cmd = cf_config_get_str(cfg, "notify_exec", "");
	if (*url != '\0') {
		if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
			cf_error_set("%s: notify_webhook_url '%.200s' must start with http:// or https://",
			    cp, url);
			return CF_EINVAL;
		}
		for (i = 0; url[i]; i++)
			if ((unsigned char)url[i] <= ' ' || (unsigned char)url[i] == 0x7f) {
				cf_error_set("%s: notify_webhook_url must not hold spaces or control "
				    "characters", cp);
				return CF_EINVAL;
			}
		if (*secret == '\0') {
			cf_error_set("%s: notify_webhook_url is set but notify_webhook_secret_file is not "
			    "(every webhook request is signed)", cp);
			return CF_EINVAL;
		}
		if ((r = copy_setting(n->url, sizeof(n->url), cfg, "notify_webhook_url", url)) != 0 ||
		    (r = dir_path(path, sizeof(path), d->dir, secret)) != 0 ||
		    (r = read_secret(n, cp, path)) != 0)
			return r;
		n->sink_on[SINK_WEBHOOK] = 1;
	} else if (*secret != '\0') {
		cf_error_set("%s: notify_webhook_secret_file is set but notify_webhook_url is not", cp);
		return CF_EINVAL;
	}
	if (*cmd != '\0') {
		if ((r = copy_setting(n->cmd, sizeof(n->cmd), cfg, "notify_exec", cmd)) != 0)
			return r;
		n->sink_on[SINK_EXEC] = 1;
	}
	return 0;
}

/* The database certfleetd's cf_ca opened (certfleet.conf "database", relative to DIR). */
static int
db_path(char *out, size_t len, const cfd *d)
{
	return dir_path(out, len, d->dir, cf_config_get_str(cf_ca_config(d->ca), "database",
	    "certfleet.db"));
}

/* ---- delivery ------------------------------------------------------------------------- */

static size_t
discard_body(char *p, size_t size, size_t nmemb, void *arg)
{
	(void)p;
	(void)arg;
	return size * nmemb;
}

/* POSTs r's payload to the webhook. 0 on a 2xx answer, else -1 with err. */
static int
send_webhook(cfd_notifier *n, const cf_notify_rec *rec, char *err, size_t err_len)
{
	const void *parts[1];
	size_t lens[1];
	unsigned char mac[32];
	char sig[32 + 2 * sizeof(mac) + 1], ev[32 + CF_NOTIFY_KIND_MAX + 1];
	char cerr[CURL_ERROR_SIZE];
	/* "Expect:" turns off curl's 100-continue round trip. */
	const char *const hdrs[] = { "Content-Type: application/json", sig, ev, "Expect:" };
	struct curl_slist *h = NULL, *h2;
	CURL *c = NULL;
	CURLcode cc;
	long code = 0;
	size_t i;
	int r = -1;

	parts[0] = rec->payload;
	lens[0] = strlen(rec->payload);
	if (cf_hmac_sha256(mac, n->secret, n->secret_len, parts, lens, 1) != 0) {
		snprintf(err, err_len, "HMAC: %s", cf_error_last());
		goto out;
	}
	memcpy(sig, "X-Certfleet-Signature: sha256=", 30);
	for (i = 0; i < sizeof(mac); i++)
		snprintf(sig + 30 + 2 * i, 3, "%02x", mac[i]);
	snprintf(ev, sizeof(ev), "X-Certfleet-Event: %s", rec->kind);
	cerr[0] = '\0';
	if ((c = curl_easy_init()) == NULL) {
		snprintf(err, err_len, "curl_easy_init failed");
		goto out;
	}
	/* On failure curl_slist_append leaves the list as it was: h is always freeable. */
	for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		if ((h2 = curl_slist_append(h, hdrs[i])) == NULL) {
			snprintf(err, err_len, "out of memory");
			goto out;
		}
		h = h2;
	}
	if (curl_easy_setopt(c, CURLOPT_URL, n->url) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_TIMEOUT, n->webhook_timeout_s) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, n->webhook_timeout_s) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDS, rec->payload) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)lens[0]) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT, "certfleetd/0.1.0") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr) != CURLE_OK) {
		snprintf(err, err_len, "curl_easy_setopt failed");
		goto out;
	}
	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		snprintf(err, err_len, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
		goto out;
	}
	(void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (code < 200 || code > 299) {
		snprintf(err, err_len, "HTTP %ld", code);
		goto out;
	}
	r = 0;
out:
	cf_wipe(mac, sizeof(mac));
	curl_slist_free_all(h);
	if (c)
		curl_easy_cleanup(c);
	return r;
}

/* The environment of the hook: ours plus CERTFLEET_NOTIFY_KIND and _ID. Free with free(). */
static char **
exec_env(char *kind_var, char *id_var)
{
	size_t n = 0, i, j = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	if ((env = calloc(n + 3, sizeof(*env))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], KIND_VAR, strlen(KIND_VAR)) != 0 &&
		    strncmp(environ[i], ID_VAR, strlen(ID_VAR)) != 0)
			env[j++] = environ[i];
	env[j++] = kind_var;
	env[j++] = id_var;
	env[j] = NULL;
	return env;
}

/*
 * Runs /bin/sh -c notify_exec in its own process group with the payload on
 * stdin; 0 when it exits 0 within notify_exec_timeout, else -1 with err (the
 * group is killed at the timeout). posix_spawn, not fork: the daemon has
 * threads, and nothing but exec runs in the child.
 */
static int
run_exec(cfd_notifier *n, const cf_notify_rec *rec, char *err, size_t err_len)
{
	char kind_var[32 + CF_NOTIFY_KIND_MAX], id_var[64];
	char *argv[] = { "sh", "-c", n->cmd, NULL };
	char **env = NULL;
	const char *nid;
	json_t *j = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t def;
	struct timespec ts0, ts;
	size_t len, off = 0;
	ssize_t w;
	pid_t pid = -1, p;
	int fds[2] = { -1, -1 }, fa_ok = 0, at_ok = 0, status = 0, e, r = -1;
	double elapsed;

	j = json_loads(rec->payload, 0, NULL);
	nid = json_string_value(json_object_get(j, "id"));
	snprintf(kind_var, sizeof(kind_var), KIND_VAR "%s", rec->kind);
	snprintf(id_var, sizeof(id_var), ID_VAR "%.40s", nid ? nid : "");
	if ((env = exec_env(kind_var, id_var)) == NULL) {
		snprintf(err, err_len, "out of memory");
		goto out;
	}
	/* Close-on-exec: only the dup2'd stdin reaches the hook (this thread is the only spawner). */
	if (pipe(fds) != 0 || fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(err, err_len, "pipe: %s", strerror(errno));
		goto out;
	}
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		goto spawn_fail;
	fa_ok = 1;
	if ((e = posix_spawnattr_init(&at)) != 0)
		goto spawn_fail;
	at_ok = 1;
	if ((e = posix_spawn_file_actions_adddup2(&fa, fds[0], STDIN_FILENO)) != 0 ||
	    (e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF)) != 0 ||
	    (e = posix_spawnattr_setpgroup(&at, 0)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&at, &def)) != 0 ||
	    (e = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env)) != 0)
		goto spawn_fail;
	close(fds[0]);
	fds[0] = -1;
	/* The payload fits in a pipe (<= 16 KiB); a hook that does not read it is not waited for. */
	(void)fcntl(fds[1], F_SETFL, O_NONBLOCK);
	len = strlen(rec->payload);
	while (off < len) {
		w = write(fds[1], rec->payload + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(fds[1]);
	fds[1] = -1;
	clock_gettime(CLOCK_MONOTONIC, &ts0);
	for (;;) {
		p = waitpid(pid, &status, WNOHANG);
		if (p == pid)
			break;
		if (p < 0 && errno != EINTR) {
			snprintf(err, err_len, "waitpid: %s", strerror(errno));
			pid = -1;
			goto out;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		elapsed = (double)(ts.tv_sec - ts0.tv_sec) + (double)(ts.tv_nsec - ts0.tv_nsec) / 1e9;
		if (elapsed >= (double)n->exec_timeout_s) {
			(void)kill(-pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			snprintf(err, err_len, "timed out after %ld s (killed)", n->exec_timeout_s);
			pid = -1;
			goto out;
		}
		(void)poll(NULL, 0, 20);
	}
	pid = -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		r = 0;
	else if (WIFEXITED(status))
		snprintf(err, err_len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(err, err_len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(err, err_len, "ended abnormally");
	goto out;
spawn_fail:
	snprintf(err, err_len, "cannot run /bin/sh: %s", strerror(e));
out:
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (at_ok)
		posix_spawnattr_destroy(&at);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	free(env);
	json_decref(j);
	return r;
}

/* Seconds before attempt number `made + 1`: min(base * 2^(made-1), cap). */
static int64_t
backoff(const cfd_notifier *n, int made)
{
	int64_t d = n->backoff_s;
	int i;

	for (i = 1; i < made && d < BACKOFF_CAP_S; i++)
		d *= 2;
	return d < BACKOFF_CAP_S ? d : BACKOFF_CAP_S;
}

/* One attempt on rec, recorded in the store. */
static void
attempt(cfd_notifier *n, const cf_notify_rec *rec)
{
	char err[ERR_MAX] = "";
	struct timespec now;
	cf_notify_state to;
	int64_t next_at = 0;
	int made = rec->attempts + 1, ok;

	if (strcmp(rec->sink, sink_names[SINK_WEBHOOK]) == 0 && n->sink_on[SINK_WEBHOOK])
		ok = send_webhook(n, rec, err, sizeof(err)) == 0;
	else if (strcmp(rec->sink, sink_names[SINK_EXEC]) == 0 && n->sink_on[SINK_EXEC])
		ok = run_exec(n, rec, err, sizeof(err)) == 0;
	else {
		/* Queued while a sink was configured that no longer is: keep trying until it is back. */
		snprintf(err, sizeof(err), "sink '%s' is not configured", rec->sink);
		ok = 0;
	}
	if (ok) {
		to = CF_NOTIFY_DELIVERED;
		cf_log(CF_LOG_INFO, "notification delivered", "id=%jd sink=%s kind=%s attempt=%d",
		    (intmax_t)rec->id, rec->sink, rec->kind, made);
	} else if (made >= n->max_attempts) {
		to = CF_NOTIFY_GAVE_UP;
		cf_log(CF_LOG_ERROR, "notification given up", "id=%jd sink=%s kind=%s attempts=%d "
		    "error=%s", (intmax_t)rec->id, rec->sink, rec->kind, made, err);
	} else {
		to = CF_NOTIFY_PENDING;
		/*
		 * next_at is in whole seconds and a row is due when now >= next_at:
		 * rounding the real time up keeps every wait at least the backoff.
		 */
		clock_gettime(CLOCK_REALTIME, &now);
		next_at = (int64_t)now.tv_sec + (now.tv_nsec > 0) + backoff(n, made);
		cf_log(CF_LOG_WARN, "notification not delivered, will retry", "id=%jd sink=%s kind=%s "
		    "attempt=%d retry_in_s=%jd error=%s", (intmax_t)rec->id, rec->sink, rec->kind, made,
		    (intmax_t)backoff(n, made), err);
	}
	if (cf_store_notify_attempted(n->st, rec->id, to, next_at, ok ? NULL : err) != 0)
		cf_log(CF_LOG_ERROR, "cannot record a notification attempt", "id=%jd error=%s",
		    (intmax_t)rec->id, cf_error_last());
}

static int
stopping(cfd_notifier *n)
{
	int s;

	pthread_mutex_lock(&n->mu);
	s = n->stop;
	pthread_mutex_unlock(&n->mu);
	return s;
}

/* Delivers what is due, a batch at a time, until nothing is or stop is asked. */
static void
deliver_due(cfd_notifier *n)
{
	cf_notify_rec *recs = NULL;
	size_t nrec = 0, i;

	while (!stopping(n)) {
		if (cf_store_notify_due(n->st, &recs, &nrec, cf_time_now(), DUE_BATCH) != 0) {
			cf_log(CF_LOG_ERROR, "cannot read the notification outbox", "error=%s",
			    cf_error_last());
			return;
		}
		for (i = 0; i < nrec && !stopping(n); i++)
			attempt(n, &recs[i]);
		cf_notify_recs_free(recs, nrec);
		if (nrec < DUE_BATCH)
			return;
	}
}

static void *
delivery_thread(void *arg)
{
	cfd_notifier *n = arg;
	struct timespec until;

	pthread_mutex_lock(&n->mu);
	while (!n->stop) {
		if (!n->wake) {
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += 1;
			(void)pthread_cond_timedwait(&n->cv, &n->mu, &until);
		}
		n->wake = 0;
		if (n->stop)
			break;
		pthread_mutex_unlock(&n->mu);
		deliver_due(n);
		pthread_mutex_lock(&n->mu);
	}
	pthread_mutex_unlock(&n->mu);
	return NULL;
}

/* ---- the interface ------------------------------------------------------------------- */

static void
notify_free(cfd_notifier *n)
{
	if (n == NULL)
		return;
	cf_store_close(n->st);
	if (n->curl_init)
		curl_global_cleanup();
	pthread_cond_destroy(&n->cv);
	pthread_mutex_destroy(&n->mu);
	cf_wipe(n->secret, sizeof(n->secret));
	n->secret_len = 0;
	free(n);
}

int
cfd_notify_start(cfd *d)
{
	cfd_notifier *n = NULL;
	pthread_condattr_t ca;
	char path[PATH_MAX];
	int r = CF_ERROR, e;

	if ((n = calloc(1, sizeof(*n))) == NULL) {
		cf_error_set("out of memory");
		return CF_ERROR;
	}
	pthread_mutex_init(&n->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->cv, &ca);
	pthread_condattr_destroy(&ca);
	if ((r = load_settings(n, d)) != 0)
		goto out;
	if (!n->sink_on[SINK_WEBHOOK] && !n->sink_on[SINK_EXEC]) {
		cf_log_msg(CF_LOG_DEBUG, "no notification sink configured");
		r = 0;
		goto out;
	}
	r = CF_ERROR;
	/* Before any other thread exists: curl_global_init is not thread-safe everywhere. */
	if (n->sink_on[SINK_WEBHOOK]) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			cf_error_set("curl_global_init failed");
			goto out;
		}
		n->curl_init = 1;
	}
	if ((r = db_path(path, sizeof(path), d)) != 0 || (r = cf_store_open(&n->st, path, 0)) != 0) {
		cf_error_prefix("notifications: opening the store");
		goto out;
	}
	if ((e = pthread_create(&n->thread, NULL, delivery_thread, n)) != 0) {
		cf_error_set("cannot start the notification thread: %s", strerror(e));
		r = CF_ERROR;
		goto out;
	}
	n->thread_started = 1;
	cf_log(CF_LOG_INFO, "notifications on", "webhook=%s exec=%s max_attempts=%ld backoff_s=%ld",
	    n->sink_on[SINK_WEBHOOK] ? "yes" : "no", n->sink_on[SINK_EXEC] ? "yes" : "no",
	    n->max_attempts, n->backoff_s);
	d->notify = n;
	n = NULL;
	r = 0;
out:
	notify_free(n);
	return r;
}

void
cfd_notify_stop(cfd *d)
{
	cfd_notifier *n = d->notify;

	if (n == NULL)
		return;
	d->notify = NULL;
	pthread_mutex_lock(&n->mu);
	n->stop = 1;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
	if (n->thread_started)
		pthread_join(n->thread, NULL);
	notify_free(n);
}

void
cfd_notify_wake(cfd *d)
{
	cfd_notifier *n = d->notify;

	if (n == NULL)
		return;
	pthread_mutex_lock(&n->mu);
	n->wake = 1;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
}

static int
set_str(json_t *o, const char *key, const char *v)
{
	if (v == NULL || *v == '\0')
		return 0;
	return json_object_set_new(o, key, json_string(v)) == 0 ? 0 : CF_ERROR;
}

/* An audit finding as in `certfleet audit findings --json`. */
static json_t *
finding_json(const cf_finding_rec *f)
{
	return json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)f->id,
	    "auditId", (json_int_t)f->audit_id, "check", f->check, "severity",
	    cf_severity_name(f->severity), "resourceType", f->resource_type, "resourceId",
	    f->resource_id, "reasonCode", f->reason_code, "detail", f->detail);
}

/* The payload of docs/notifications.md: absent members omitted, never any key material. */
static int
payload_json(char **out, const cfd_notice *nt)
{
	unsigned char rnd[NOTICE_ID_BYTES];
	char id[2 * NOTICE_ID_BYTES + 1], t[32];
	json_t *o = NULL;
	size_t i;
	int r = CF_ERROR;

	if ((r = cf_random_bytes(rnd, sizeof(rnd))) != 0)
		return r;
	r = CF_ERROR;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	cf_time_format(t, sizeof(t), cf_time_now());
	if ((o = json_object()) == NULL || set_str(o, "id", id) != 0 ||
	    set_str(o, "kind", nt->kind) != 0 || set_str(o, "time", t) != 0 ||
	    set_str(o, "thing", nt->thing) != 0 || set_str(o, "jobId", nt->job_id) != 0 ||
	    set_str(o, "status", nt->status) != 0 ||
	    (nt->execution_number > 0 && json_object_set_new(o, "executionNumber",
	    json_integer((json_int_t)nt->execution_number)) != 0) ||
	    set_str(o, "reason", nt->reason) != 0 ||
	    set_str(o, "oldCertificateId", nt->old_cert) != 0 ||
	    set_str(o, "newCertificateId", nt->new_cert) != 0 ||
	    (nt->finding != NULL && json_object_set_new(o, "finding", finding_json(nt->finding)) != 0) ||
	    (*out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		cf_error_set("out of memory building a notification");
		goto out;
	}
	if (strlen(*out) > CF_NOTIFY_PAYLOAD_MAX) {
		cf_error_set("notification payload larger than %d bytes", CF_NOTIFY_PAYLOAD_MAX);
		free(*out);
		*out = NULL;
		r = CF_EINVAL;
		goto out;
	}
	r = 0;
out:
	json_decref(o);
	return r;
}

int
cfd_notify(cfd *d, const cfd_notice *nt)
{
	cfd_notifier *n = d->notify;
	cfd_notice cut;
	char *payload = NULL, reason[1024];
	int s, r;

	if (n == NULL)
		return 0;
	if (nt == NULL || nt->kind == NULL) {
		cf_error_set("a notification needs a kind");
		return CF_EINVAL;
	}
	/* Only a very long reason makes the payload too large: cut it rather than lose the notice. */
	if ((r = payload_json(&payload, nt)) == CF_EINVAL && nt->reason != NULL) {
		cut = *nt;
		snprintf(reason, sizeof(reason), "%s", nt->reason);
		cut.reason = reason;
		r = payload_json(&payload, &cut);
	}
	if (r != 0)
		return r;
	for (s = 0; s < SINK__COUNT && r == 0; s++)
		if (n->sink_on[s])
			r = cf_store_notify_enqueue(cf_ca_store(d->ca), NULL, sink_names[s], nt->kind,
			    payload);
	free(payload);
	return r;
}
