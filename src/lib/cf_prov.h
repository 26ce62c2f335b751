/*
 * cf_prov — provisioning by claim (DESIGN §9, docs/provisioning.md) as pure
 * functions: the template (its JSON form, kept opaque by the store), the
 * thing-name pattern, device parameters, the allow-list, the stable
 * rejection codes, the provisioning topics and the wire messages of
 * cf/provisioning/<template>/provision and its replies, encode and decode
 * side by side. No store, no network: certfleetd, the CLI and the agent
 * share these.
 */
#ifndef CF_PROV_H
#define CF_PROV_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"
#include "cf_proto.h"
#include "cf_util.h"

#define CF_PROV_PATTERN_MAX 128   /* bytes of a name pattern */
#define CF_PROV_PARAMS_MAX 16     /* parameters in one request */
#define CF_PROV_PARAM_NAME_MAX 32 /* [A-Za-z][A-Za-z0-9_]* */
#define CF_PROV_VALUE_MAX 64      /* [A-Za-z0-9._:-]+ */
#define CF_PROV_HOOK_MAX 1024
#define CF_PROV_HOOK_TIMEOUT_MAX 10 /* seconds: certfleetd waits for the hook */
#define CF_PROV_ALLOW_MAX 100000  /* entries of an allow-list */

/* ---- stable rejection codes (docs/protocol.md "Provisioning") ------------- */

typedef enum {
	CF_PROV_INVALID_REQUEST,          /* not JSON, missing or malformed field */
	CF_PROV_TEMPLATE_UNKNOWN,         /* no such template */
	CF_PROV_TEMPLATE_MISMATCH,        /* the claim belongs to another template */
	CF_PROV_CLAIM_DISABLED,           /* the claim certificate is DISABLED */
	CF_PROV_PARAMETER_MISSING,        /* a parameter the name pattern needs is absent */
	CF_PROV_PARAMETER_NOT_ALLOWED,    /* unknown parameter, not on the allow-list, hook said no */
	CF_PROV_SERIAL_ALREADY_PROVISIONED,
	CF_PROV_THING_EXISTS,             /* the name is a thing this serial was not provisioned as */
	CF_PROV_LIMIT_REACHED,            /* the template's maximum count */
	CF_PROV_RATE_EXCEEDED,            /* more requests per minute than the template allows */
	CF_PROV_OUTSIDE_WINDOW,           /* before windowStart or after windowEnd */
	CF_PROV_CONCURRENT_USE,           /* the claim is connected from too many clients */
	CF_PROV_REQUEST_REPLAYED,         /* the CSR's key was already provisioned elsewhere */
	CF_PROV_CSR_INVALID,
	CF_PROV_CSR_SUBJECT_MISMATCH,     /* CN is not the thing name the pattern gives */
	CF_PROV_WEAK_KEY,
	CF_PROV_INTERNAL_ERROR,
	CF_PROV__CODE_COUNT
} cf_prov_code;

/* "TemplateUnknown" ...; "InternalError" out of range. Static string. */
const char *cf_prov_code_name(cf_prov_code code);
int cf_prov_code_parse(cf_prov_code *out, const char *name) CF_MUST_CHECK;
/* 1 if this rejection is misuse: the claim is disabled at once (docs/provisioning.md). */
int cf_prov_code_is_misuse(cf_prov_code code);

/* ---- parameters ------------------------------------------------------------ */

typedef struct {
	size_t n;
	char name[CF_PROV_PARAMS_MAX][CF_PROV_PARAM_NAME_MAX + 1];
	char value[CF_PROV_PARAMS_MAX][CF_PROV_VALUE_MAX + 1];
} cf_prov_params;

int cf_prov_param_name_valid(const char *name);   /* 1 or 0 with cf_error */
int cf_prov_param_value_valid(const char *value); /* 1 or 0 with cf_error */
/* Adds or replaces name=value. CF_EINVAL for a bad name or value, or too many. */
int cf_prov_params_set(cf_prov_params *p, const char *name, const char *value) CF_MUST_CHECK;
/* "Name=value" (the CLI and agent.conf form). */
int cf_prov_params_set_kv(cf_prov_params *p, const char *kv) CF_MUST_CHECK;
/* Borrowed value, NULL if absent. */
const char *cf_prov_params_get(const cf_prov_params *p, const char *name);

/* ---- the name pattern --------------------------------------------------------- */

/*
 * A pattern is literal thing-name characters and {Name} placeholders, at
 * least one (e.g. "sensor-{SerialNumber}"). The first placeholder names
 * the serial parameter: the one a serial is provisioned once by.
 * 0, or CF_EINVAL with a message.
 */
int cf_prov_pattern_check(const char *pattern) CF_MUST_CHECK;
/* The first placeholder's name into out. CF_EINVAL if pattern is bad. */
int cf_prov_pattern_serial(char out[CF_PROV_PARAM_NAME_MAX + 1], const char *pattern) CF_MUST_CHECK;
/* 1 if name is a placeholder of pattern. */
int cf_prov_pattern_uses(const char *pattern, const char *name);
/*
 * The thing name: pattern with each placeholder replaced by its
 * parameter. CF_ENOTFOUND naming a missing parameter; CF_EINVAL if the
 * result is not a valid thing name or does not fit.
 */
int cf_prov_name_expand(char *out, size_t out_len, const char *pattern,
    const cf_prov_params *p) CF_MUST_CHECK;

/* ---- templates -------------------------------------------------------------- */

typedef struct {
	char name[CF_NAME_MAX + 1];
	char pattern[CF_PROV_PATTERN_MAX + 1];
	char serial_param[CF_PROV_PARAM_NAME_MAX + 1]; /* derived from the pattern */
	char **groups;
	size_t n_groups;
	char *attributes;          /* JSON object of strings, "{}" when none */
	int has_allow;             /* an allow-list is configured (may be empty: nothing allowed) */
	char **allow;              /* allowed values of the serial parameter */
	size_t n_allow;
	char *hook;                /* NULL: none */
	int hook_timeout_s;        /* 1..CF_PROV_HOOK_TIMEOUT_MAX */
	int rate_per_minute;       /* 0: no limit */
	int64_t window_start;      /* 0: none */
	int64_t window_end;        /* 0: none */
	int max_count;             /* 0: no limit */
	int max_denials;           /* 0: no threshold */
	int max_concurrent;        /* clients connected with one claim at once; >= 1 */
	int allow_reprovision;
	int pending_s;             /* a PENDING_ACTIVATION certificate unused this long is deleted */
} cf_prov_template;

/*
 * Parses and validates a template's JSON spec (docs/provisioning.md):
 * {"namePattern", "groups", "attributes", "allowList", "hook": {"command",
 * "timeoutSeconds"}, "ratePerMinute", "windowStart", "windowEnd",
 * "maxCount", "maxDenials", "maxConcurrent", "allowReprovision",
 * "pendingSeconds"}. Unknown keys are refused. CF_EINVAL with a message.
 * Clear out with cf_prov_template_clear (also on failure).
 */
int cf_prov_template_parse(cf_prov_template *out, const char *name, const char *spec) CF_MUST_CHECK;
/* The spec JSON of t (compact, sorted keys); caller frees. */
int cf_prov_template_spec(char **out, const cf_prov_template *t) CF_MUST_CHECK;
void cf_prov_template_clear(cf_prov_template *t);

/* An allow-list file: one value per line; blank lines and lines starting with '#' ignored. */
int cf_prov_allow_parse(char ***out, size_t *out_n, const char *text) CF_MUST_CHECK;
/* 1 if value is on t's allow-list (or no allow-list is configured). */
int cf_prov_allowed(const cf_prov_template *t, const char *value);
/* 0 if now is within t's window; CF_EREJECTED with a message otherwise. */
int cf_prov_window_check(const cf_prov_template *t, int64_t now) CF_MUST_CHECK;

/* ---- topics ------------------------------------------------------------------- */

/*
 * Requests: <prefix>provisioning/<template>/provision. Replies go to the
 * requesting client only: <prefix>provisioning/<template>/provision/<client
 * id>/accepted | rejected (the broker lets a claim client subscribe to its
 * own client id's replies and nothing else).
 */
int cf_prov_topic_format(char *out, size_t out_len, const char *prefix, const char *template_name,
    const char *client_id, cf_proto_reply reply) CF_MUST_CHECK;
/* The template of a request topic. CF_EINVAL if topic is not one. */
int cf_prov_topic_parse(char out[CF_NAME_MAX + 1], const char *prefix, const char *topic) CF_MUST_CHECK;

/* ---- messages ----------------------------------------------------------------- */

/* Request: {"csr", "parameters": {name: value}, "clientToken"?} */
typedef struct {
	char *csr;
	size_t csr_len;
	cf_prov_params params;
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_prov_request;

int cf_prov_decode_request(cf_prov_request *out, const void *payload, size_t len) CF_MUST_CHECK;
int cf_prov_encode_request(char **out, const cf_prov_request *m) CF_MUST_CHECK;
void cf_prov_request_clear(cf_prov_request *m);

/* accepted: {"thingName", "certificateId", "certificatePem", "chainPem", "clientToken"?} */
typedef struct {
	char thing[CF_NAME_MAX + 1];
	char certificate_id[CF_ID_LEN + 1];
	char *certificate_pem;
	char *chain_pem;
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_prov_accepted;

int cf_prov_decode_accepted(cf_prov_accepted *out, const void *payload, size_t len) CF_MUST_CHECK;
int cf_prov_encode_accepted(char **out, const cf_prov_accepted *m) CF_MUST_CHECK;
void cf_prov_accepted_clear(cf_prov_accepted *m);

/* rejected: {"errorCode", "errorMessage", "clientToken"?} */
typedef struct {
	cf_prov_code code;
	char message[CF_PROTO_MESSAGE_MAX + 1];
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_prov_rejection;

int cf_prov_decode_rejection(cf_prov_rejection *out, const void *payload, size_t len) CF_MUST_CHECK;
int cf_prov_encode_rejection(char **out, const cf_prov_rejection *m) CF_MUST_CHECK;

#endif
