/*
 * cf_proto — the device <-> certfleetd message family of DESIGN §5-7: the
 * jobs topics and the certificate rotation topics, their JSON payloads,
 * the stable error codes and the chain-of-custody signatures. The wire
 * format is docs/protocol.md; this module is its only implementation, used
 * by certfleetd (decode requests, encode replies) and the agent (the
 * reverse).
 *
 * Topics, below the configured prefix ("cf/"):
 *
 *   things/<thing>/jobs/notify-next                       server -> device
 *   things/<thing>/jobs/$next/get[/accepted|/rejected]
 *   things/<thing>/jobs/<jobId>/update[/accepted|/rejected]
 *   things/<thing>/certificate/create[/accepted|/rejected]
 *   things/<thing>/certificate/commit[/accepted|/rejected]
 *
 * Decoders are strict about what they use and ignore what they do not
 * know: the payload is at most CF_PROTO_PAYLOAD_MAX bytes of UTF-8 JSON
 * with an object at the top, no duplicate keys and no NUL in strings; every
 * required field is present with its JSON type and within its length;
 * unknown fields are ignored. A decoder that fails returns CF_EINVAL, sets
 * cf_error and, when why is not NULL, the errorCode to answer with
 * (CF_PROTO_INVALID_JSON or CF_PROTO_INVALID_REQUEST); on an allocation
 * failure it returns CF_ERROR with CF_PROTO_INTERNAL_ERROR. why is a second
 * output after the inputs (rather than a field of out) because out is only
 * written on success. On failure out is untouched.
 *
 * Encoders validate what they are given the same way (an encoder never
 * produces what its decoder would refuse) and return compact JSON in a
 * malloc()ed, NUL-terminated string (free()); CF_EINVAL on invalid input.
 *
 * Structs with heap members are released with their _clear() function,
 * which accepts a zeroed struct and leaves one behind.
 */
#ifndef CF_PROTO_H
#define CF_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cf_error.h"
#include "cf_pki.h"
#include "cf_util.h"

#define CF_PROTO_PAYLOAD_MAX 65536 /* bytes of JSON in one message */
#define CF_PROTO_TOKEN_MAX 64      /* clientToken characters */
#define CF_PROTO_JOB_ID_MAX 64     /* jobId: [A-Za-z0-9_-]{1,64} */
#define CF_PROTO_DETAILS_MAX 32    /* statusDetails entries */
#define CF_PROTO_DETAIL_KEY_MAX 128
#define CF_PROTO_DETAIL_VALUE_MAX 1024
#define CF_PROTO_MESSAGE_MAX 512   /* errorMessage characters (longer ones are cut on encode) */
#define CF_PROTO_SIG_MAX 2048      /* base64 characters of a custody signature */
#define CF_PROTO_CSR_MAX 16384     /* characters of a CSR PEM */
#define CF_PROTO_PEM_MAX 32768     /* characters of a certificate or chain PEM */
#define CF_PROTO_TOPIC_MAX 1024

/* ---- topics ----------------------------------------------------------- */

typedef enum {
	CF_PROTO_NOTIFY_NEXT, /* jobs/notify-next (server -> device, no replies) */
	CF_PROTO_NEXT_GET,    /* jobs/$next/get */
	CF_PROTO_UPDATE,      /* jobs/<jobId>/update */
	CF_PROTO_CREATE,      /* certificate/create */
	CF_PROTO_COMMIT,      /* certificate/commit */
	CF_PROTO__COUNT
} cf_proto_kind;

typedef enum {
	CF_PROTO_REQUEST,  /* the request itself */
	CF_PROTO_ACCEPTED, /* .../accepted */
	CF_PROTO_REJECTED, /* .../rejected */
} cf_proto_reply;

typedef struct {
	char thing[CF_NAME_MAX + 1];
	cf_proto_kind kind;
	char job_id[CF_PROTO_JOB_ID_MAX + 1]; /* CF_PROTO_UPDATE only, else "" */
	cf_proto_reply reply;
} cf_proto_topic;

/*
 * Parses topic (topic_len bytes, need not be NUL-terminated) below prefix
 * (as cf_acl_prefix_check accepts it). CF_EINVAL with a message for any
 * other topic: the errorCode is then InvalidTopic.
 */
int cf_proto_topic_parse(cf_proto_topic *out, const char *prefix, const char *topic,
    size_t topic_len) CF_MUST_CHECK;

/* Formats t below prefix into out. CF_EINVAL if t is not a valid topic or out is too small. */
int cf_proto_topic_format(char *out, size_t out_len, const char *prefix,
    const cf_proto_topic *t) CF_MUST_CHECK;

/* 1 if s is a valid job id ([A-Za-z0-9_-]{1,64}), else 0 with cf_error set. */
int cf_proto_job_id_valid(const char *s);

/* ---- error codes (one table: enum and stable strings) --------------------- */

typedef enum {
	/* DESIGN §7 */
	CF_PROTO_INVALID_TOPIC,
	CF_PROTO_INVALID_JSON,
	CF_PROTO_INVALID_REQUEST,
	CF_PROTO_INVALID_STATE_TRANSITION,
	CF_PROTO_RESOURCE_NOT_FOUND,
	CF_PROTO_VERSION_MISMATCH,
	CF_PROTO_TERMINAL_STATE_REACHED,
	CF_PROTO_REQUEST_THROTTLED,
	CF_PROTO_INTERNAL_ERROR,
	/* rotation chain of custody, DESIGN §6 (docs/protocol.md says when each is used) */
	CF_PROTO_NOT_IN_PROGRESS,
	CF_PROTO_NOT_A_ROTATION,
	CF_PROTO_CLIENT_ID_MISMATCH,
	CF_PROTO_PRINCIPAL_MISMATCH,
	CF_PROTO_BAD_SIGNATURE,
	CF_PROTO_CSR_INVALID,
	CF_PROTO_CSR_SUBJECT_MISMATCH,
	CF_PROTO_WEAK_KEY,
	CF_PROTO_CERTIFICATE_MISMATCH,
	CF_PROTO_REPLAY,
	CF_PROTO_CODE__COUNT
} cf_proto_code;

/* The stable errorCode string ("InvalidTopic" ...); "InternalError" for an unknown value. */
const char *cf_proto_code_name(cf_proto_code code);
/* Parses an errorCode string (exact, case-sensitive). CF_EINVAL for an unknown one. */
int cf_proto_code_parse(cf_proto_code *out, const char *name) CF_MUST_CHECK;

/* ---- execution states (the transition rules live in the jobs module) ---- */

typedef enum {
	CF_EXEC_QUEUED,
	CF_EXEC_IN_PROGRESS,
	CF_EXEC_SUCCEEDED,
	CF_EXEC_FAILED,
	CF_EXEC_TIMED_OUT,
	CF_EXEC_REJECTED,
	CF_EXEC_REMOVED,
	CF_EXEC_CANCELED,
	CF_EXEC__COUNT
} cf_exec_status;

/* "QUEUED" ...; "UNKNOWN" for an out-of-range value. Static string. */
const char *cf_proto_status_name(cf_exec_status status);
/* Parses an exact (upper-case) status name. CF_EINVAL listing the valid ones otherwise. */
int cf_proto_status_parse(cf_exec_status *out, const char *name) CF_MUST_CHECK;

/* ---- messages ----------------------------------------------------------- */

/* $next/get request: {"clientToken"?} */
typedef struct {
	char client_token[CF_PROTO_TOKEN_MAX + 1]; /* "" = absent */
} cf_proto_next_get;

typedef struct {
	char *key;   /* 1..CF_PROTO_DETAIL_KEY_MAX characters */
	char *value; /* 0..CF_PROTO_DETAIL_VALUE_MAX characters */
} cf_proto_detail;

/* jobs/<jobId>/update request: {"status", "statusDetails"?, "expectedVersion"?, "clientToken"?} */
typedef struct {
	cf_exec_status status;
	cf_proto_detail details[CF_PROTO_DETAILS_MAX];
	size_t n_details;
	int64_t expected_version; /* -1 = absent */
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_update;

/* Sets a statusDetails entry (replacing one with the same key). Copies both strings. */
int cf_proto_update_set_detail(cf_proto_update *u, const char *key, const char *value) CF_MUST_CHECK;
/* The value of a statusDetails entry, or NULL. Borrowed from u. */
const char *cf_proto_update_detail(const cf_proto_update *u, const char *key);
void cf_proto_update_clear(cf_proto_update *u);

/* certificate/create request: {"jobId", "csr", "signature", "clientToken"?} */
typedef struct {
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	char *csr;       /* PEM exactly as sent (the custody hash covers these bytes) */
	size_t csr_len;
	char *signature; /* base64, as sent; decodes */
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_create;
void cf_proto_create_clear(cf_proto_create *c);

/* certificate/commit request: {"jobId", "certificateId", "signature", "clientToken"?} */
typedef struct {
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	char certificate_id[CF_ID_LEN + 1]; /* 64 lowercase hex */
	char *signature;
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_commit;
void cf_proto_commit_clear(cf_proto_commit *c);

/* A rotation job document: {"operation": "ROTATE_CERTIFICATE", "keyAlgorithm", "signingAlgorithm"} */
typedef struct {
	cf_key_alg key_alg;
	cf_sig_alg sig_alg;
} cf_proto_job_doc;

/*
 * notify-next and $next/get/accepted:
 *   {"execution": {"jobId", "status", "jobDocument", "executionNumber", "versionNumber"},
 *    "clientToken"?}  or  {"clientToken"?} when nothing is pending.
 */
typedef struct {
	int present; /* 0: no pending execution ({}) */
	char job_id[CF_PROTO_JOB_ID_MAX + 1];
	cf_exec_status status;
	cf_proto_job_doc doc;
	int64_t execution_number; /* >= 1 */
	int64_t version_number;   /* >= 0 */
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_execution;

/* update/accepted: {"executionState": {"status", "versionNumber"}, "clientToken"?} */
typedef struct {
	cf_exec_status status;
	int64_t version_number;
} cf_proto_state;

typedef struct {
	cf_proto_state state;
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_update_accepted;

/* create/accepted: {"certificateId", "certificatePem", "chainPem", "clientToken"?} */
typedef struct {
	char certificate_id[CF_ID_LEN + 1];
	char *certificate_pem;
	char *chain_pem;
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_create_accepted;
void cf_proto_create_accepted_clear(cf_proto_create_accepted *a);

/* commit/accepted: {"certificateId", "clientToken"?} */
typedef struct {
	char certificate_id[CF_ID_LEN + 1];
	char client_token[CF_PROTO_TOKEN_MAX + 1];
} cf_proto_commit_accepted;

/*
 * Every .../rejected: {"errorCode", "errorMessage", "clientToken"?, "executionState"?}
 * (executionState: the current state, with VersionMismatch and friends).
 */
typedef struct {
	cf_proto_code code;
	char message[CF_PROTO_MESSAGE_MAX + 1];
	char client_token[CF_PROTO_TOKEN_MAX + 1];
	int has_state;
	cf_proto_state state;
} cf_proto_rejection;

/* Fills a rejection (message printf-style, cut to CF_PROTO_MESSAGE_MAX). client_token may be NULL. */
void cf_proto_rejection_set(cf_proto_rejection *out, cf_proto_code code, const char *client_token,
    const char *fmt, ...) CF_PRINTF(4, 5);

int cf_proto_decode_next_get(cf_proto_next_get *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_next_get(char **out, const cf_proto_next_get *m) CF_MUST_CHECK;

int cf_proto_decode_update(cf_proto_update *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_update(char **out, const cf_proto_update *m) CF_MUST_CHECK;

int cf_proto_decode_create(cf_proto_create *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_create(char **out, const cf_proto_create *m) CF_MUST_CHECK;

int cf_proto_decode_commit(cf_proto_commit *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_commit(char **out, const cf_proto_commit *m) CF_MUST_CHECK;

int cf_proto_decode_execution(cf_proto_execution *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_execution(char **out, const cf_proto_execution *m) CF_MUST_CHECK;

int cf_proto_decode_update_accepted(cf_proto_update_accepted *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_update_accepted(char **out, const cf_proto_update_accepted *m) CF_MUST_CHECK;

int cf_proto_decode_create_accepted(cf_proto_create_accepted *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_create_accepted(char **out, const cf_proto_create_accepted *m) CF_MUST_CHECK;

int cf_proto_decode_commit_accepted(cf_proto_commit_accepted *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_commit_accepted(char **out, const cf_proto_commit_accepted *m) CF_MUST_CHECK;

int cf_proto_decode_rejection(cf_proto_rejection *out, const void *payload, size_t len,
    cf_proto_code *why) CF_MUST_CHECK;
int cf_proto_encode_rejection(char **out, const cf_proto_rejection *m) CF_MUST_CHECK;

/* ---- chain of custody (DESIGN §6) ---------------------------------------- */

/* Longest custody message: jobId "|" thing "|" 64 hex, plus NUL. */
#define CF_PROTO_CUSTODY_MAX (CF_PROTO_JOB_ID_MAX + 1 + CF_NAME_MAX + 1 + CF_ID_LEN + 1)

/*
 * The exact bytes signed on create, made with the OLD key:
 *   jobId "|" thing "|" lowercase hex(SHA-256(csr bytes exactly as sent))
 * CF_EINVAL if job_id or thing is not valid.
 */
int cf_proto_custody_create_msg(char out[CF_PROTO_CUSTODY_MAX], const char *job_id,
    const char *thing, const void *csr, size_t csr_len) CF_MUST_CHECK;

/*
 * The exact bytes signed on commit, made with the NEW key:
 *   jobId "|" thing "|" certificateId (64 lowercase hex)
 */
int cf_proto_custody_commit_msg(char out[CF_PROTO_CUSTODY_MAX], const char *job_id,
    const char *thing, const char *certificate_id) CF_MUST_CHECK;

/*
 * Signs msg (its strlen bytes) with key using the key algorithm's default
 * signing algorithm (cf_sig_alg_default: SHA256WITHRSA for RSA, ECDSA with
 * SHA-256/384/512 for P-256/384/521, Ed25519), base64 into *out (free()).
 * CF_EINVAL if the key is none of the supported algorithms.
 */
int cf_proto_custody_sign(char **out, const cf_key *key, const char *msg) CF_MUST_CHECK;

/*
 * 0 if signature (base64) is key's signature over msg as cf_proto_custody_sign
 * makes it. CF_EREJECTED (with a message) if it is not base64, is too long,
 * or does not verify.
 */
int cf_proto_custody_verify(const cf_key *key, const char *msg, const char *signature) CF_MUST_CHECK;

#endif
