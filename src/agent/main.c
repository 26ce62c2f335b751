/*
 * certfleet-agent — the Linux device daemon (docs/agent.md, DESIGN §6, §10).
 *
 * A thin shell over cf_agent: it loads agent.conf, opens the file key store
 * on the bundle directory, and drives one libmosquitto client (MQTT v5 over
 * mutual TLS) in a simple loop, feeding connect, disconnect, message and
 * timer events into cf_agent. It never parses a payload itself. To connect
 * with a switched pair it destroys and recreates the mosquitto handle, so
 * that TLS loads the bundle files (which name the active pair) again.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "agent.h"
#include "cf_acl.h"
#include "cf_agent.h"
#include "cf_config.h"
#include "cf_error.h"
#include "cf_keystore.h"
#include "cf_log.h"
#include "cf_memtrim.h"
#include "cf_p11.h"
#include "cf_pki.h"
#include "cf_util.h"

#define AG_PATH_MAX 4096
#define AG_TOPIC_MAX 512
#define N_SUBS 5

static volatile sig_atomic_t stop_signal;

static const char *const known_keys[] = {
	"thing", "broker_host", "broker_port", "ca_file", "cert_file", "key_file",
	"key_algorithm", "signing_algorithm", "state_dir", "topic_prefix", "hook",
	"hook_timeout_s", "connect_timeout_s", "response_timeout_s", "max_attempts",
	"reconnect_max_s", "key_store", "pkcs11_module", "pkcs11_token", "pkcs11_pin_file",
	"pkcs11_object", "provision_template", "provision_name_pattern", "provision_params",
	"keep_claim", "trim_memory", "trim_memory_after_s", "keepalive_s", NULL,
};

typedef struct {
	/* configuration */
	const char *thing;
	const char *host;
	long port;
	const char *prefix;
	const char *hook;
	long hook_timeout_s;
	long connect_timeout_s;
	long reconnect_max_s;
	long keepalive_s;
	char ca_file[AG_PATH_MAX];
	char cert_file[AG_PATH_MAX];
	char key_file[AG_PATH_MAX];
	char bundle_dir[AG_PATH_MAX];
	char state_dir[AG_PATH_MAX];
	char subs[N_SUBS][AG_TOPIC_MAX];
	int pkcs11;                  /* key_store = pkcs11: the key lives in a token */
	char p11_module[AG_PATH_MAX];
	char p11_pin_file[AG_PATH_MAX];
	const char *p11_token;
	const char *p11_object;
	int trim;                    /* trim_memory: drop start-up pages once idle (docs/agent.md) */
	long trim_after_s;

	/* runtime */
	cf_keystore *ks;
	void *tls_ctx;               /* pkcs11: the TLS context of the current handle (ours too) */
	cf_agent *agent;
	struct mosquitto *m;
	int session_up;       /* CONNACK + SUBACK seen: cf_agent was told connected */
	int lost;             /* the broker went away (set in callbacks) */
	int want_reconnect;   /* cf_agent asked for a new connection */
	int fatal;            /* cf_agent could not write its journal */
	int dropping;         /* drop() is closing the handle itself */
	int64_t attempt_deadline; /* an attempt in progress must be up by then, 0 if none */
	int64_t next_attempt;
	long backoff_s;
	pid_t hook_pid;
	int64_t hook_deadline;
	int64_t idle_since;   /* connected and IDLE since then, 0 if not */
	int trimmed;          /* trimmed in this idle period */

	/* provisioning by claim (docs/provisioning.md): set when agent.conf names a template */
	const char *prov_template;
	cf_prov_params prov_params;
	char prov_thing[CF_NAME_MAX + 1];
	const char *prov_pattern;
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
	int keep_claim;
	long response_s;
} agentd;

static void
on_signal(int sig)
{
	stop_signal = sig;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: certfleet-agent --config FILE [--param NAME=VALUE]... [--check] "
	    "[--log-level LEVEL] [--log-file FILE]\n");
}

/* path resolved against dir when relative. */
static int
resolve(char *out, size_t len, const char *dir, const char *path)
{
	if (path[0] == '/')
		return cf_strfmt(out, len, "%s", path);
	return cf_strfmt(out, len, "%s/%s", dir, path);
}

static int
dir_of(char *out, size_t len, const char *path)
{
	const char *slash = strrchr(path, '/');
	int r;

	if (slash == NULL)
		return cf_strfmt(out, len, ".");
	if (slash == path)
		return cf_strfmt(out, len, "/");
	if ((size_t)(slash - path) >= len) {
		cf_error_set("path too long: %s", path);
		return CF_EINVAL;
	}
	r = cf_strfmt(out, len, "%.*s", (int)(slash - path), path);
	return r;
}

static const char *
base_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash == NULL ? path : slash + 1;
}

static int
require(const char **out, const cf_config *cfg, const char *key)
{
	const char *v = cf_config_get(cfg, key);

	if (v == NULL || v[0] == '\0') {
		cf_error_set("%s: missing required key '%s'", cf_config_path(cfg), key);
		return CF_EINVAL;
	}
	*out = v;
	return 0;
}

/* A file that must exist and be readable. */
static int
check_readable(const char *key, const char *path)
{
	int e;

	if (access(path, R_OK) != 0) {
		e = errno;
		cf_error_set("%s %s: %s", key, path, strerror(e));
		return e == ENOENT ? CF_ENOTFOUND : CF_ERROR;
	}
	return 0;
}

/* The key file: present, a regular file (through the bundle links), 0600 at most. */
static int
check_key_file(const char *path)
{
	struct stat st;
	int e;

	if (stat(path, &st) != 0) {
		e = errno;
		cf_error_set("key_file %s: %s", path, strerror(e));
		return e == ENOENT ? CF_ENOTFOUND : CF_ERROR;
	}
	if (!S_ISREG(st.st_mode)) {
		cf_error_set("key_file %s: not a regular file", path);
		return CF_EINVAL;
	}
	if ((st.st_mode & 077) != 0) {
		cf_error_set("key_file %s has mode %04o: certfleet-agent never holds a key in a file "
		    "readable by others (chmod 600 it)", path, (unsigned)(st.st_mode & 07777));
		return CF_EINVAL;
	}
	return 0;
}

/* key_store and its pkcs11_* keys (docs/config.md): which are needed, which are not allowed. */
static int
load_key_store(agentd *g, const cf_config *cfg)
{
	static const char *const p11_keys[] = {
		"pkcs11_module", "pkcs11_token", "pkcs11_pin_file", "pkcs11_object",
	};
	const char *ks = cf_config_get_str(cfg, "key_store", "file"), *v;
	size_t i;
	int r;

	if (strcmp(ks, "file") == 0) {
		for (i = 0; i < sizeof(p11_keys) / sizeof(p11_keys[0]); i++)
			if (cf_config_get(cfg, p11_keys[i]) != NULL) {
				cf_error_set("%s: '%s' needs key_store = pkcs11 (key_store is file)",
				    cf_config_path(cfg), p11_keys[i]);
				return CF_EINVAL;
			}
		return 0;
	}
	if (strcmp(ks, "pkcs11") != 0) {
		cf_error_set("%s: key_store '%s' is neither file nor pkcs11", cf_config_path(cfg), ks);
		return CF_EINVAL;
	}
	g->pkcs11 = 1;
	if ((r = require(&v, cfg, "pkcs11_module")) != 0 ||
	    (r = require(&g->p11_token, cfg, "pkcs11_token")) != 0 ||
	    (r = require(&v, cfg, "pkcs11_pin_file")) != 0)
		return r;
	if (strlen(g->p11_token) > 32) {
		cf_error_set("%s: pkcs11_token '%s' is longer than a token label (32 bytes)",
		    cf_config_path(cfg), g->p11_token);
		return CF_EINVAL;
	}
	g->p11_object = cf_config_get_str(cfg, "pkcs11_object", "certfleet");
	for (v = g->p11_object; *v != '\0'; v++)
		if (!((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9') ||
		    *v == '-' || *v == '_' || *v == '.') || v - g->p11_object >= 64) {
			cf_error_set("%s: pkcs11_object '%s': use at most 64 of [A-Za-z0-9._-]",
			    cf_config_path(cfg), g->p11_object);
			return CF_EINVAL;
		}
	return 0;
}

/* The module exists and the PIN file is private (read to check it, then wiped). */
static int
check_pkcs11(const agentd *g)
{
	char *pin = NULL;
	int r;

	if ((r = check_readable("pkcs11_module", g->p11_module)) != 0)
		return r;
	if ((r = cf_p11_pin_read(&pin, g->p11_pin_file)) != 0)
		return r;
	cf_secret_free(pin, 0);
	return 0;
}

/*
 * A claim bundle's agent.conf names provision_template and
 * provision_name_pattern instead of thing: the thing is the name the
 * pattern gives from the parameters (provision_params = N=V,... and
 * --param, which wins), or the one a finished provisioning recorded.
 */
static int
load_provisioning(agentd *g, const cf_config *cfg)
{
	const char *pattern, *list, *keep;
	char item[CF_PROV_PARAM_NAME_MAX + CF_PROV_VALUE_MAX + 2], dir[AG_PATH_MAX];
	const char *state = cf_config_get(cfg, "state_dir");
	size_t i, n;
	cf_prov_params cli = g->prov_params;
	int r;

	g->prov_template = cf_config_get(cfg, "provision_template");
	if (g->prov_template == NULL || g->prov_template[0] == '\0') {
		g->prov_template = NULL;
		return 0;
	}
	if (cf_config_get(cfg, "thing") != NULL) {
		cf_error_set("%s: thing and provision_template exclude each other", cf_config_path(cfg));
		return CF_EINVAL;
	}
	if ((r = require(&pattern, cfg, "provision_name_pattern")) != 0)
		return r;
	g->prov_pattern = pattern;
	memset(&g->prov_params, 0, sizeof(g->prov_params));
	list = cf_config_get_str(cfg, "provision_params", "");
	while (*list != '\0') {
		n = strcspn(list, ",");
		if (n >= sizeof(item)) {
			cf_error_set("%s: provision_params: an entry is too long", cf_config_path(cfg));
			return CF_EINVAL;
		}
		memcpy(item, list, n);
		item[n] = '\0';
		if (n > 0 && (r = cf_prov_params_set_kv(&g->prov_params, item)) != 0)
			return r;
		list += n + (list[n] == ',');
	}
	for (i = 0; i < cli.n; i++)
		if ((r = cf_prov_params_set(&g->prov_params, cli.name[i], cli.value[i])) != 0)
			return r;
	keep = cf_config_get_str(cfg, "keep_claim", "no");
	g->keep_claim = strcmp(keep, "yes") == 0;
	if (!g->keep_claim && strcmp(keep, "no") != 0) {
		cf_error_set("%s: keep_claim is yes or no", cf_config_path(cfg));
		return CF_EINVAL;
	}
	/* Provisioned already: the recorded name (the parameters are no longer needed). */
	if (state != NULL && dir_of(dir, sizeof(dir), cf_config_path(cfg)) == 0 &&
	    resolve(item, sizeof(item), dir, state) == 0 &&
	    cf_prov_agent_done_thing(g->prov_thing, item) == 0) {
		g->thing = g->prov_thing;
		return 0;
	}
	if ((r = cf_prov_name_expand(g->prov_thing, sizeof(g->prov_thing), pattern,
	    &g->prov_params)) != 0) {
		cf_error_prefix("%s: provision_name_pattern (give --param NAME=VALUE)",
		    cf_config_path(cfg));
		return CF_EINVAL;
	}
	g->thing = g->prov_thing;
	return 0;
}

static int
load_config(agentd *g, cf_agent_opts *o, const cf_config *cfg)
{
	const char *key_alg, *sig_alg, *ca, *cert, *key, *state, *v;
	char cfg_dir[AG_PATH_MAX], key_dir[AG_PATH_MAX], cert_dir[AG_PATH_MAX];
	cf_key_alg ka;
	cf_sig_alg sa;
	long response_s, max_attempts;
	int r, i;

	if ((r = cf_config_check_keys(cfg, known_keys)) != 0)
		return r;
	if ((r = load_key_store(g, cfg)) != 0)
		return r;
	key = cf_config_get(cfg, "key_file");
	if ((r = load_provisioning(g, cfg)) != 0)
		return r;
	if ((g->thing == NULL && (r = require(&g->thing, cfg, "thing")) != 0) ||
	    (r = require(&g->host, cfg, "broker_host")) != 0 ||
	    (r = require(&ca, cfg, "ca_file")) != 0 ||
	    (r = require(&cert, cfg, "cert_file")) != 0 ||
	    (!g->pkcs11 && (r = require(&key, cfg, "key_file")) != 0) ||
	    (r = require(&key_alg, cfg, "key_algorithm")) != 0 ||
	    (r = require(&state, cfg, "state_dir")) != 0)
		return r;
	sig_alg = cf_config_get(cfg, "signing_algorithm");
	if ((r = cf_alg_validate(&ka, &sa, key_alg, sig_alg)) != 0) {
		cf_error_prefix("%s", cf_config_path(cfg));
		return r;
	}
	g->key_alg = ka;
	g->sig_alg = sa;
	if (!cf_name_valid("thing", g->thing))
		return CF_EINVAL;
	g->prefix = cf_config_get_str(cfg, "topic_prefix", "cf/");
	if ((r = cf_acl_prefix_check(g->prefix)) != 0)
		return r;
	g->hook = cf_config_get(cfg, "hook");
	if (g->hook != NULL && g->hook[0] == '\0')
		g->hook = NULL;
	if ((r = cf_config_get_int(&g->port, cfg, "broker_port", 1, 65535, 8883)) != 0 ||
	    (r = cf_config_get_int(&g->hook_timeout_s, cfg, "hook_timeout_s", 1, 3600, 30)) != 0 ||
	    (r = cf_config_get_int(&g->connect_timeout_s, cfg, "connect_timeout_s", 1, 3600, 30)) != 0 ||
	    (r = cf_config_get_int(&g->reconnect_max_s, cfg, "reconnect_max_s", 1, 3600, 60)) != 0 ||
	    (r = cf_config_get_int(&response_s, cfg, "response_timeout_s", 0, 86400, 0)) != 0 ||
	    (r = cf_config_get_int(&g->response_s, cfg, "response_timeout_s", 0, 86400, 0)) != 0 ||
	    (r = cf_config_get_int(&max_attempts, cfg, "max_attempts", 0, 100, 0)) != 0 ||
	    (r = cf_config_get_int(&g->trim_after_s, cfg, "trim_memory_after_s", 1, 3600, 10)) != 0 ||
	    (r = cf_config_get_int(&g->keepalive_s, cfg, "keepalive_s", 5, 3600, 60)) != 0)
		return r;
	v = cf_config_get_str(cfg, "trim_memory", "yes");
	g->trim = strcmp(v, "yes") == 0;
	if (!g->trim && strcmp(v, "no") != 0) {
		cf_error_set("%s: trim_memory is yes or no", cf_config_path(cfg));
		return CF_EINVAL;
	}

	if ((r = dir_of(cfg_dir, sizeof(cfg_dir), cf_config_path(cfg))) != 0 ||
	    (r = resolve(g->ca_file, sizeof(g->ca_file), cfg_dir, ca)) != 0 ||
	    (r = resolve(g->cert_file, sizeof(g->cert_file), cfg_dir, cert)) != 0 ||
	    (r = dir_of(cert_dir, sizeof(cert_dir), g->cert_file)) != 0)
		return r;
	/* pkcs11 without key_file: the bundle's device.key beside device.crt (imported on first start). */
	if (key != NULL && key[0] != '\0')
		r = resolve(g->key_file, sizeof(g->key_file), cfg_dir, key);
	else
		r = cf_strfmt(g->key_file, sizeof(g->key_file), "%s/device.key", cert_dir);
	if (r != 0)
		return r;
	if (g->pkcs11 &&
	    ((r = resolve(g->p11_module, sizeof(g->p11_module), cfg_dir,
	    cf_config_get(cfg, "pkcs11_module"))) != 0 ||
	    (r = resolve(g->p11_pin_file, sizeof(g->p11_pin_file), cfg_dir,
	    cf_config_get(cfg, "pkcs11_pin_file"))) != 0))
		return r;
	if ((r = resolve(g->state_dir, sizeof(g->state_dir), cfg_dir, state)) != 0 ||
	    (r = dir_of(key_dir, sizeof(key_dir), g->key_file)) != 0)
		return r;
	/* The file key store lives in the bundle directory: DIR/device.key, DIR/device.crt. */
	if (strcmp(base_of(g->key_file), "device.key") != 0 ||
	    strcmp(base_of(g->cert_file), "device.crt") != 0 || strcmp(key_dir, cert_dir) != 0) {
		cf_error_set("%s: key_file and cert_file must be device.key and device.crt of one "
		    "bundle directory (got %s and %s)", cf_config_path(cfg), key ? key : g->key_file,
		    cert);
		return CF_EINVAL;
	}
	if ((r = cf_strfmt(g->bundle_dir, sizeof(g->bundle_dir), "%s", key_dir)) != 0 ||
	    (r = check_readable("ca_file", g->ca_file)) != 0 ||
	    (!g->pkcs11 && (r = check_key_file(g->key_file)) != 0) ||
	    (r = check_readable("cert_file", g->cert_file)) != 0)
		return r;
	if (g->pkcs11 && (r = check_pkcs11(g)) != 0)
		return r;

	for (i = 0; i < N_SUBS; i++) {
		static const char *const tail[N_SUBS] = {
			"jobs/notify-next", "jobs/$next/get/+", "jobs/+/update/+",
			"certificate/create/+", "certificate/commit/+",
		};
		if ((r = cf_strfmt(g->subs[i], AG_TOPIC_MAX, "%sthings/%s/%s", g->prefix, g->thing,
		    tail[i])) != 0)
			return r;
	}

	memset(o, 0, sizeof(*o));
	o->thing = g->thing;
	o->prefix = g->prefix;
	o->state_dir = g->state_dir;
	o->max_attempts = (int)max_attempts;
	if (response_s > 0) {
		o->timeout_s[CF_AGENT_IN_PROGRESS_SENT] = (int)response_s;
		o->timeout_s[CF_AGENT_CREATE_SENT] = (int)response_s;
		o->timeout_s[CF_AGENT_VERIFYING] = (int)response_s;
		o->timeout_s[CF_AGENT_COMMIT_SENT] = (int)response_s;
		o->timeout_s[CF_AGENT_CLEANUP] = (int)response_s;
		o->timeout_s[CF_AGENT_REPORTING_FAILURE] = (int)response_s;
	}
	if (cf_config_get(cfg, "connect_timeout_s") != NULL) {
		o->timeout_s[CF_AGENT_RECONNECTING_NEW] = (int)g->connect_timeout_s;
		o->timeout_s[CF_AGENT_ROLLING_BACK] = (int)g->connect_timeout_s;
	}
	return 0;
}

/* ---- the hook --------------------------------------------------------------- */

static void
hook_reap(agentd *g, int64_t now, int wait_all)
{
	int status;
	pid_t p;

	if (g->hook_pid <= 0)
		return;
	if (!wait_all && now >= g->hook_deadline) {
		cf_log(CF_LOG_WARN, "hook timed out, killing it", "pid=%d timeout_s=%ld",
		    (int)g->hook_pid, g->hook_timeout_s);
		(void)kill(-g->hook_pid, SIGKILL);
		wait_all = 1;
	}
	p = waitpid(g->hook_pid, &status, wait_all ? 0 : WNOHANG);
	if (p == 0 || (p < 0 && errno == EINTR))
		return;
	if (p > 0 && WIFEXITED(status))
		cf_log(WEXITSTATUS(status) == 0 ? CF_LOG_INFO : CF_LOG_WARN, "hook finished",
		    "pid=%d status=%d", (int)g->hook_pid, WEXITSTATUS(status));
	else if (p > 0 && WIFSIGNALED(status))
		cf_log(CF_LOG_WARN, "hook killed", "pid=%d signal=%d", (int)g->hook_pid,
		    WTERMSIG(status));
	g->hook_pid = 0;
}

/* Waits for a running hook, at most until its deadline (then it is killed). */
static void
hook_wait(agentd *g)
{
	while (g->hook_pid > 0) {
		hook_reap(g, cf_time_now(), 0);
		if (g->hook_pid > 0)
			(void)poll(NULL, 0, 50);
	}
}

static int64_t
t_now(void *arg)
{
	(void)arg;
	return cf_time_now();
}

static void
t_switched(void *arg, unsigned generation)
{
	agentd *g = arg;
	char gen[32];
	pid_t p;

	cf_log(CF_LOG_INFO, "active key pair changed", "generation=%u", generation);
	if (g->hook == NULL)
		return;
	hook_wait(g); /* one hook at a time */
	snprintf(gen, sizeof(gen), "%u", generation);
	if ((p = fork()) < 0) {
		cf_log(CF_LOG_ERROR, "hook not started", "error=%s", strerror(errno));
		return;
	}
	if (p == 0) {
		char *argv[] = { "sh", "-c", (char *)g->hook, NULL };

		(void)setpgid(0, 0);
		(void)signal(SIGPIPE, SIG_DFL);
		(void)setenv("CF_THING", g->thing, 1);
		(void)setenv("CF_GENERATION", gen, 1);
		(void)setenv("CF_BUNDLE_DIR", g->bundle_dir, 1);
		execv("/bin/sh", argv);
		_exit(127);
	}
	(void)setpgid(p, p);
	g->hook_pid = p;
	g->hook_deadline = cf_time_now() + g->hook_timeout_s;
	cf_log(CF_LOG_INFO, "hook started", "pid=%d generation=%u", (int)p, generation);
}

/* ---- transport -------------------------------------------------------------- */

static int
t_publish(void *arg, const char *topic, const char *payload)
{
	agentd *g = arg;
	int rc;

	if (g->m == NULL || !g->session_up) {
		cf_error_set("not connected");
		return CF_ESTATE;
	}
	rc = mosquitto_publish_v5(g->m, NULL, topic, (int)strlen(payload), payload, 1, false, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		cf_error_set("publish %s: %s", topic, mosquitto_strerror(rc));
		return CF_ERROR;
	}
	cf_log(CF_LOG_DEBUG, "published", "topic=%s", topic);
	return 0;
}

static int
t_reconnect(void *arg)
{
	agentd *g = arg;

	g->want_reconnect = 1; /* done by the loop, outside any libmosquitto callback */
	return 0;
}

/*
 * cf_agent's journal hook: the failpoint "agent.<state>" (the state's name in
 * lower case, e.g. agent.create_sent) right after each durable journal
 * write, for the crash-matrix tests (docs/testing.md). kill and sleep act
 * there; drop means nothing here (a journal write cannot be skipped).
 */
static int
journal_failpoint(void *arg, cf_agent_state state)
{
	char name[64];
	const char *s = cf_agent_state_name(state);
	size_t i;

	(void)arg;
	for (i = 0; s[i] != '\0' && i + sizeof("agent.") < sizeof(name); i++)
		name[sizeof("agent.") - 1 + i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
	memcpy(name, "agent.", sizeof("agent.") - 1);
	name[sizeof("agent.") - 1 + i] = '\0';
	(void)cf_failpoint(name);
	return 0;
}

static void
agent_result(agentd *g, int r, const char *event)
{
	if (r != 0 && !g->fatal) {
		cf_log(CF_LOG_ERROR, "agent journal failed", "event=%s error=%s", event,
		    cf_error_last());
		g->fatal = 1;
	}
}

/* ---- libmosquitto callbacks ------------------------------------------------- */

static void
on_connect(struct mosquitto *m, void *arg, int rc, int flags, const mosquitto_property *props)
{
	agentd *g = arg;
	char *subs[N_SUBS];
	int i, r;

	(void)flags;
	(void)props;
	if (rc != 0) {
		cf_log(CF_LOG_WARN, "mqtt connection refused", "reason=%s",
		    mosquitto_reason_string(rc));
		g->lost = 1;
		return;
	}
	for (i = 0; i < N_SUBS; i++)
		subs[i] = g->subs[i];
	r = mosquitto_subscribe_multiple(m, NULL, N_SUBS, subs, 1, 0, NULL);
	if (r != MOSQ_ERR_SUCCESS) {
		cf_log(CF_LOG_WARN, "mqtt subscribe failed", "error=%s", mosquitto_strerror(r));
		g->lost = 1;
	}
}

static void
on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted,
    const mosquitto_property *props)
{
	agentd *g = arg;
	int i;

	(void)m;
	(void)mid;
	(void)props;
	for (i = 0; i < n; i++)
		if (granted[i] >= 0x80) {
			cf_log(CF_LOG_WARN, "mqtt subscription refused", "topic=%s",
			    i < N_SUBS ? g->subs[i] : "");
			g->lost = 1;
			return;
		}
	if (g->session_up)
		return;
	g->session_up = 1;
	g->attempt_deadline = 0;
	g->backoff_s = 1;
	cf_log(CF_LOG_INFO, "mqtt connected", "host=%s port=%ld thing=%s", g->host, g->port,
	    g->thing);
	agent_result(g, cf_agent_connected(g->agent, cf_time_now()), "connected");
}

static void
on_disconnect(struct mosquitto *m, void *arg, int rc, const mosquitto_property *props)
{
	agentd *g = arg;

	(void)m;
	(void)props;
	if (!stop_signal && !g->dropping)
		cf_log(CF_LOG_WARN, "mqtt disconnected", "reason=%d", rc);
	g->lost = 1;
}

static void
on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
    const mosquitto_property *props)
{
	agentd *g = arg;

	(void)m;
	(void)props;
	if (!g->session_up || msg->topic == NULL)
		return;
	cf_log(CF_LOG_DEBUG, "message", "topic=%s bytes=%d", msg->topic, msg->payloadlen);
	agent_result(g, cf_agent_message(g->agent, msg->topic, msg->payload,
	    msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0, cf_time_now()), "message");
}

/* ---- the connection --------------------------------------------------------- */

static void
drop(agentd *g, int clean)
{
	if (g->m != NULL) {
		g->dropping = 1;
		if (clean && g->session_up &&
		    mosquitto_disconnect_v5(g->m, 0, NULL) == MOSQ_ERR_SUCCESS)
			(void)mosquitto_loop_write(g->m, 1);
		mosquitto_destroy(g->m);
		g->m = NULL;
		cf_p11_tls_ctx_free(g->tls_ctx);
		g->tls_ctx = NULL;
		g->dropping = 0;
	}
	g->session_up = 0;
	g->lost = 0;
	g->attempt_deadline = 0;
	g->idle_since = 0;
	g->trimmed = 0;
}

/* The session or the attempt ended: tell the agent, try again after the backoff. */
static void
lost(agentd *g, int64_t now)
{
	drop(g, 0);
	agent_result(g, cf_agent_disconnected(g->agent, now), "disconnected");
	g->next_attempt = now + g->backoff_s;
	cf_log(CF_LOG_INFO, "mqtt reconnecting", "in_s=%ld", g->backoff_s);
	g->backoff_s = g->backoff_s * 2 > g->reconnect_max_s ? g->reconnect_max_s : g->backoff_s * 2;
}

/* The RFC 7512 URI of the active generation's key (the PKCS#11 key store). */
static int
active_key_uri(agentd *g, char *out, size_t len)
{
	cf_keystore_status s;
	char cert[AG_PATH_MAX];
	int r;

	if ((r = g->ks->ops->status(g->ks->st, &s)) != 0)
		return r;
	return g->ks->ops->locate(g->ks->st, out, len, cert, sizeof(cert), s.active);
}

static int
attempt(agentd *g, int64_t now)
{
	char key_uri[CF_P11_URI_MAX];
	int rc;

	if ((g->m = mosquitto_new(g->thing, true, g)) == NULL) {
		cf_log(CF_LOG_ERROR, "mosquitto_new failed", "error=%s", strerror(errno));
		return CF_ERROR;
	}
	mosquitto_int_option(g->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(g->m, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(g->m, on_connect);
	mosquitto_disconnect_v5_callback_set(g->m, on_disconnect);
	mosquitto_subscribe_v5_callback_set(g->m, on_subscribe);
	mosquitto_message_v5_callback_set(g->m, on_message);
	if (g->pkcs11) {
		/*
		 * The token key through libp11's engine, by the active generation's
		 * URI, in a TLS context made here: libmosquitto 2.0.11's own engine
		 * route (MOSQ_OPT_TLS_ENGINE/KEYFORM) fails in mosquitto_tls_set(),
		 * which fopen()s the key URI as a file (docs/pkcs11.md).
		 */
		if (active_key_uri(g, key_uri, sizeof(key_uri)) != 0 ||
		    cf_p11_tls_ctx(&g->tls_ctx, cf_keystore_pkcs11_token(g->ks), key_uri, g->ca_file,
		    g->cert_file, g->host) != 0) {
			cf_log(CF_LOG_WARN, "mqtt tls setup with the token key failed", "error=%s",
			    cf_error_last());
			return CF_ERROR;
		}
		/* Ours as it is: libmosquitto 2.0 would otherwise add its defaults (and want a cafile). */
		if ((rc = mosquitto_int_option(g->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0)) !=
		    MOSQ_ERR_SUCCESS ||
		    (rc = mosquitto_void_option(g->m, MOSQ_OPT_SSL_CTX, g->tls_ctx)) !=
		    MOSQ_ERR_SUCCESS) {
			cf_log(CF_LOG_WARN, "mqtt tls setup failed", "error=%s", mosquitto_strerror(rc));
			return CF_ERROR;
		}
	} else if ((rc = mosquitto_tls_set(g->m, g->ca_file, NULL, g->cert_file, g->key_file,
	    NULL)) != MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_tls_opts_set(g->m, 1 /* SSL_VERIFY_PEER */, NULL, NULL)) !=
	    MOSQ_ERR_SUCCESS ||
	    (rc = mosquitto_tls_insecure_set(g->m, false)) != MOSQ_ERR_SUCCESS) {
		cf_log(CF_LOG_WARN, "mqtt tls setup failed", "error=%s", mosquitto_strerror(rc));
		return CF_ERROR;
	}
	g->attempt_deadline = now + g->connect_timeout_s;
	rc = mosquitto_connect_bind_v5(g->m, g->host, (int)g->port, (int)g->keepalive_s, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		cf_log(CF_LOG_WARN, "mqtt connect failed", "host=%s port=%ld error=%s", g->host,
		    g->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return CF_ERROR;
	}
	return 0;
}

/*
 * Once connected and IDLE for trim_after_s: give back what start-up, the
 * TLS handshake or a rotation faulted in and the idle loop does not use
 * (cf_memtrim: clean read-only library pages, free heap). Called from the
 * loop, with no libmosquitto call in progress and no other thread.
 */
static void
maybe_trim(agentd *g, int64_t now)
{
	cf_memtrim_stats st;

	if (!g->trim || !g->session_up || g->fatal ||
	    cf_agent_state_get(g->agent) != CF_AGENT_IDLE) {
		g->idle_since = 0;
		g->trimmed = 0;
		return;
	}
	if (g->idle_since == 0)
		g->idle_since = now;
	if (g->trimmed || now < g->idle_since + g->trim_after_s)
		return;
	g->trimmed = 1;
	/*
	 * Logged before: formatting a line after the trim would fault the
	 * printf and time code (~400 KiB of libc with fault-around) back in
	 * for nothing. The result is a debug line (skipped at info level).
	 */
	cf_log(CF_LOG_INFO, "trimming memory", "idle_s=%ld", (long)(now - g->idle_since));
	if (cf_memtrim(&st) != 0) {
		cf_log(CF_LOG_WARN, "memory not trimmed", "error=%s", cf_error_last());
		return;
	}
	cf_log(CF_LOG_DEBUG, "memory trimmed", "rss_before_kib=%ld rss_after_kib=%ld "
	    "mappings=%zu skipped=%zu dropped_kib=%zu", st.rss_before_kib, st.rss_after_kib,
	    st.mappings, st.skipped, st.dropped_kib);
}

static int
run(agentd *g)
{
	int64_t now, dl;
	int rc, wait_ms;

	g->backoff_s = 1;
	g->next_attempt = cf_time_now();
	while (!stop_signal && !g->fatal) {
		now = cf_time_now();
		if (g->want_reconnect) {
			g->want_reconnect = 0;
			cf_log(CF_LOG_INFO, "mqtt reconnecting with the active pair", "state=%s",
			    cf_agent_state_name(cf_agent_state_get(g->agent)));
			drop(g, 1);
			g->backoff_s = 1;
			g->next_attempt = now;
		}
		if (g->m == NULL && now >= g->next_attempt && attempt(g, now) != 0)
			lost(g, now);
		wait_ms = 1000;
		if (g->m != NULL) {
			rc = mosquitto_loop(g->m, wait_ms, 1);
			now = cf_time_now();
			if (rc != MOSQ_ERR_SUCCESS || g->lost ||
			    (!g->session_up && g->attempt_deadline != 0 && now >= g->attempt_deadline)) {
				if (!g->session_up && !g->lost && rc == MOSQ_ERR_SUCCESS)
					cf_log(CF_LOG_WARN, "mqtt connect timed out", "timeout_s=%ld",
					    g->connect_timeout_s);
				if (!stop_signal)
					lost(g, now);
			}
		} else if (!stop_signal) {
			(void)poll(NULL, 0, wait_ms);
			now = cf_time_now();
		}
		dl = cf_agent_deadline(g->agent);
		if (dl != 0 && now >= dl && !g->fatal)
			agent_result(g, cf_agent_timer(g->agent, now), "timer");
		hook_reap(g, now, 0);
		maybe_trim(g, now);
	}
	if (stop_signal)
		cf_log(CF_LOG_INFO, "stopping", "signal=%d", (int)stop_signal);
	drop(g, 1);
	return g->fatal ? CF_ERROR : 0;
}

/* ---- provisioning ----------------------------------------------------------- */

static int
run_provisioning(agentd *g, cf_keystore *ks, cf_key_alg ka, cf_sig_alg sa)
{
	agent_prov_conn c = {
		.host = g->host, .port = g->port, .ca_file = g->ca_file, .cert_file = g->cert_file,
		.key_file = g->key_file, .connect_timeout_s = g->connect_timeout_s,
		.response_timeout_s = g->response_s > 0 ? g->response_s : 10, .max_attempts = 5,
	};
	cf_prov_agent_opts po;

	memset(&po, 0, sizeof(po));
	po.template_name = g->prov_template;
	po.prefix = g->prefix;
	po.state_dir = g->state_dir;
	po.params = &g->prov_params;
	po.key_alg = ka;
	po.sig_alg = sa;
	po.keep_claim = g->keep_claim;
	po.pattern = g->prov_pattern;
	return agent_provision(&c, ks, &po, &stop_signal);
}

/* ---- main ------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	const char *config = NULL, *level = NULL, *log_file = NULL;
	int check = 0, i, r = 0, ret = 1, mosq_init = 0;
	cf_config *cfg = NULL;
	cf_keystore *ks = NULL;
	cf_agent_opts o;
	cf_agent_transport t;
	cf_log_level lvl;
	char *ca_pem = NULL;
	size_t ca_len;
	agentd g;
	struct sigaction sa;

	memset(&g, 0, sizeof(g));
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc)
			level = argv[++i];
		else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc)
			log_file = argv[++i];
		else if (strcmp(argv[i], "--check") == 0)
			check = 1;
		else if (strcmp(argv[i], "--param") == 0 && i + 1 < argc) {
			if (cf_prov_params_set_kv(&g.prov_params, argv[++i]) != 0) {
				fprintf(stderr, "certfleet-agent: --param: %s\n", cf_error_last());
				ret = 2;
				goto out;
			}
		}
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			ret = 0;
			goto out;
		} else {
			fprintf(stderr, "certfleet-agent: unknown or incomplete argument '%s'\n", argv[i]);
			usage(stderr);
			ret = 2;
			goto out;
		}
	}
	if (config == NULL) {
		usage(stderr);
		ret = 2;
		goto out;
	}
	if (level != NULL) {
		if ((r = cf_log_level_parse(&lvl, level)) != 0)
			goto out;
		cf_log_set_level(lvl);
	}
	if (log_file != NULL && (r = cf_log_open(log_file)) != 0)
		goto out;
	umask(077);
	if ((r = cf_config_load(&cfg, config)) != 0 || (r = load_config(&g, &o, cfg)) != 0)
		goto out;
	if (check && g.pkcs11) {
		/* The token answers to the PIN: open it (nothing is adopted or changed). */
		cf_p11 *p11 = NULL;
		char *pin = NULL;

		if ((r = cf_p11_pin_read(&pin, g.p11_pin_file)) == 0)
			r = cf_p11_open(&p11, g.p11_module, g.p11_token, pin);
		cf_secret_free(pin, 0);
		cf_p11_free(p11);
		if (r != 0)
			goto out;
	}
	if (check) {
		printf("%s: ok (thing %s, bundle %s, key store %s)\n", config, g.thing, g.bundle_dir,
		    g.pkcs11 ? "pkcs11" : "file");
		ret = 0;
		goto out;
	}
	if ((r = cf_file_read(&ca_pem, &ca_len, g.ca_file, 1 << 20)) != 0)
		goto out;
	o.ca_chain_pem = ca_pem;
	o.journal_hook = journal_failpoint;
	if ((r = cf_mkdir_p(g.state_dir, 0700)) != 0)
		goto out;
	if (chmod(g.state_dir, 0700) != 0) {
		cf_error_set("chmod %s: %s", g.state_dir, strerror(errno));
		r = CF_ERROR;
		goto out;
	}
	if (g.pkcs11) {
		cf_keystore_pkcs11_opts po = { g.p11_module, g.p11_token, g.p11_pin_file, g.p11_object };

		if ((r = cf_keystore_pkcs11_open(&ks, g.bundle_dir, &po)) != 0) {
			cf_error_prefix("PKCS#11 key store %s (token %s)", g.bundle_dir, g.p11_token);
			goto out;
		}
	} else {
		if ((r = cf_keystore_file_open(&ks, g.bundle_dir)) != 0) {
			cf_error_prefix("key store %s", g.bundle_dir);
			goto out;
		}
		if ((r = check_key_file(g.key_file)) != 0)
			goto out;
	}
	g.ks = ks;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* First boot with a claim bundle: become the thing, then carry on as it. */
	if (g.prov_template != NULL) {
		mosquitto_lib_init();
		mosq_init = 1;
		if ((r = run_provisioning(&g, ks, g.key_alg, g.sig_alg)) != 0)
			goto out;
	}
	memset(&t, 0, sizeof(t));
	t.publish = t_publish;
	t.reconnect = t_reconnect;
	t.switched = t_switched;
	t.now = t_now;
	t.arg = &g;
	if ((r = cf_agent_start(&g.agent, &o, ks, &t, cf_time_now())) != 0) {
		cf_error_prefix("agent start (journal in %s)", g.state_dir);
		goto out;
	}
	cf_log(CF_LOG_INFO, "certfleet-agent started", "thing=%s state=%s bundle=%s", g.thing,
	    cf_agent_state_name(cf_agent_state_get(g.agent)), g.bundle_dir);
	if (!mosq_init)
		mosquitto_lib_init();
	mosq_init = 1;
	if ((r = run(&g)) != 0)
		goto out;
	hook_wait(&g);
	cf_log(CF_LOG_INFO, "certfleet-agent stopped", "state=%s",
	    cf_agent_state_name(cf_agent_state_get(g.agent)));
	ret = 0;
out:
	if (r != 0) {
		if (g.agent != NULL || mosq_init)
			cf_log(CF_LOG_ERROR, "certfleet-agent failed", "error=%s", cf_error_last());
		else
			fprintf(stderr, "certfleet-agent: %s\n", cf_error_last());
	}
	cf_agent_free(g.agent);
	cf_keystore_free(ks);
	if (mosq_init)
		mosquitto_lib_cleanup();
	free(ca_pem);
	cf_config_free(cfg);
	cf_log_close();
	return ret;
}
