/*
 * Unit tests for cf_proto (and cf_base64): topics, error codes, every
 * message's decoder and encoder (round trips and adversarial payloads) and
 * the chain-of-custody signatures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cf_base64.h"
#include "cf_pki.h"
#include "cf_proto.h"

#define CERT_ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CSR_PEM "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
#define CERT_PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
#define SIG "MEUCIQD/"

/* ---- helpers ---- */

/* Runs a decoder on a string payload that must fail with CF_EINVAL and code want. */
#define DECODE_FAILS(fn, type, json, want) do {                                        \
		type m_;                                                               \
		cf_proto_code why_ = CF_PROTO_CODE__COUNT;                             \
		memset(&m_, 0, sizeof(m_));                                            \
		assert_int_equal(fn(&m_, json, strlen(json), &why_), CF_EINVAL);      \
		assert_int_equal(why_, want);                                          \
		assert_true(strlen(cf_error_last()) > 0);                              \
	} while (0)

#define DECODE_OK(fn, m, json) do {                                                    \
		cf_proto_code why_ = CF_PROTO_CODE__COUNT;                             \
		if (fn(m, json, strlen(json), &why_) != 0)                             \
			fail_msg("decode %s: %s", json, cf_error_last());              \
	} while (0)

static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Field by field (structs have padding). */
static void
assert_execution_equal(const cf_proto_execution *a, const cf_proto_execution *b)
{
	assert_int_equal(a->present, b->present);
	assert_string_equal(a->job_id, b->job_id);
	assert_int_equal(a->status, b->status);
	assert_int_equal(a->doc.key_alg, b->doc.key_alg);
	assert_int_equal(a->doc.sig_alg, b->doc.sig_alg);
	assert_int_equal(a->execution_number, b->execution_number);
	assert_int_equal(a->version_number, b->version_number);
	assert_string_equal(a->client_token, b->client_token);
}

static void
assert_rejection_equal(const cf_proto_rejection *a, const cf_proto_rejection *b)
{
	assert_int_equal(a->code, b->code);
	assert_string_equal(a->message, b->message);
	assert_string_equal(a->client_token, b->client_token);
	assert_int_equal(a->has_state, b->has_state);
	if (a->has_state) {
		assert_int_equal(a->state.status, b->state.status);
		assert_int_equal(a->state.version_number, b->state.version_number);
	}
}

/* ---- topics ---- */

static void
test_proto__topic_every_kind_round_trips(void **state)
{
	static const struct {
		const char *topic;
		cf_proto_kind kind;
		const char *job;
		cf_proto_reply reply;
	} cases[] = {
		{ "cf/things/sensor-1/jobs/notify-next", CF_PROTO_NOTIFY_NEXT, "", CF_PROTO_REQUEST },
		{ "cf/things/sensor-1/jobs/$next/get", CF_PROTO_NEXT_GET, "", CF_PROTO_REQUEST },
		{ "cf/things/sensor-1/jobs/$next/get/accepted", CF_PROTO_NEXT_GET, "", CF_PROTO_ACCEPTED },
		{ "cf/things/sensor-1/jobs/$next/get/rejected", CF_PROTO_NEXT_GET, "", CF_PROTO_REJECTED },
		{ "cf/things/sensor-1/jobs/job_1-a/update", CF_PROTO_UPDATE, "job_1-a", CF_PROTO_REQUEST },
		{ "cf/things/sensor-1/jobs/J/update/accepted", CF_PROTO_UPDATE, "J", CF_PROTO_ACCEPTED },
		{ "cf/things/sensor-1/jobs/J/update/rejected", CF_PROTO_UPDATE, "J", CF_PROTO_REJECTED },
		{ "cf/things/a.b:c/certificate/create", CF_PROTO_CREATE, "", CF_PROTO_REQUEST },
		{ "cf/things/x/certificate/create/accepted", CF_PROTO_CREATE, "", CF_PROTO_ACCEPTED },
		{ "cf/things/x/certificate/create/rejected", CF_PROTO_CREATE, "", CF_PROTO_REJECTED },
		{ "cf/things/x/certificate/commit", CF_PROTO_COMMIT, "", CF_PROTO_REQUEST },
		{ "cf/things/x/certificate/commit/accepted", CF_PROTO_COMMIT, "", CF_PROTO_ACCEPTED },
		{ "cf/things/x/certificate/commit/rejected", CF_PROTO_COMMIT, "", CF_PROTO_REJECTED },
	};
	cf_proto_topic t;
	char buf[CF_PROTO_TOPIC_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cf_proto_topic_parse(&t, "cf/", cases[i].topic, strlen(cases[i].topic)) != 0)
			fail_msg("%s: %s", cases[i].topic, cf_error_last());
		assert_int_equal(t.kind, cases[i].kind);
		assert_string_equal(t.job_id, cases[i].job);
		assert_int_equal(t.reply, cases[i].reply);
		assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), 0);
		assert_string_equal(buf, cases[i].topic);
	}
	/* Another prefix, and none. */
	assert_int_equal(cf_proto_topic_parse(&t, "fleet/eu/", "fleet/eu/things/t/jobs/notify-next",
	    strlen("fleet/eu/things/t/jobs/notify-next")), 0);
	assert_string_equal(t.thing, "t");
	assert_int_equal(cf_proto_topic_parse(&t, "", "things/t/certificate/commit",
	    strlen("things/t/certificate/commit")), 0);
	/* Not NUL-terminated: only topic_len bytes count. */
	assert_int_equal(cf_proto_topic_parse(&t, "cf/", "cf/things/t/certificate/commitXYZ",
	    strlen("cf/things/t/certificate/commit")), 0);
	assert_int_equal(t.kind, CF_PROTO_COMMIT);
}

static void
test_proto__topic_malformed_is_invalid(void **state)
{
	static const char *const bad[] = {
		"",
		"cf/",
		"cf/things/",
		"cf/things/t",
		"cf/things/t/",
		"cf/things//jobs/notify-next",
		"cf/things/t/jobs",
		"cf/things/t/jobs/",
		"cf/things/t/jobs/notify-next/",
		"cf/things/t/jobs/notify-next/accepted",
		"cf/things/t/jobs/notify-nextx",
		"cf/things/t/jobs/$next",
		"cf/things/t/jobs/$next/get/",
		"cf/things/t/jobs/$next/get/accepted/",
		"cf/things/t/jobs/$next/get/acceptedx",
		"cf/things/t/jobs/$next/get/other",
		"cf/things/t/jobs/$next/update",
		"cf/things/t/jobs/J",
		"cf/things/t/jobs/J/",
		"cf/things/t/jobs/J/updatex",
		"cf/things/t/jobs/J/update/",
		"cf/things/t/jobs/J/update/accepted/rejected",
		"cf/things/t/jobs//update",
		"cf/things/t/jobs/j.b/update",
		"cf/things/t/jobs/j+/update",
		"cf/things/t/jobs/#/update",
		"cf/things/t/jobs/notify-next/update",
		"cf/things/t/jobs/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/update",
		"cf/things/t/certificate",
		"cf/things/t/certificate/",
		"cf/things/t/certificate/revoke",
		"cf/things/t/certificate/create/",
		"cf/things/t/certificate/create/accepted/x",
		"cf/things/t/certificate/Create",
		"cf/things/t/Jobs/notify-next",
		"cf/things/+/jobs/notify-next",
		"cf/things/#",
		"cf/things/a b/jobs/notify-next",
		"cf/things/t/x/jobs/notify-next",
		"cf/thing/t/jobs/notify-next",
		"xf/things/t/jobs/notify-next",
		"cf//things/t/jobs/notify-next",
		"/cf/things/t/jobs/notify-next",
		"cf/provisioning/tmpl/provision",
		"$cf/broker/connection",
		"cf/things/t/certificate/create/accepted\n",
	};
	cf_proto_topic t;
	char *longname, *longtopic;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (cf_proto_topic_parse(&t, "cf/", bad[i], strlen(bad[i])) != CF_EINVAL)
			fail_msg("accepted '%s'", bad[i]);
	}
	/* A NUL inside the topic. */
	assert_int_equal(cf_proto_topic_parse(&t, "cf/", "cf/things/t\0/jobs/notify-next", 29),
	    CF_EINVAL);
	assert_int_equal(cf_proto_topic_parse(&t, "cf/", "cf/things/t/certificate/create\0", 31),
	    CF_EINVAL);
	/* Thing name of 129 characters; a topic over the limit. */
	longname = repeat('a', CF_NAME_MAX + 1);
	longtopic = malloc(CF_NAME_MAX + 64);
	assert_non_null(longtopic);
	snprintf(longtopic, CF_NAME_MAX + 64, "cf/things/%s/jobs/notify-next", longname);
	assert_int_equal(cf_proto_topic_parse(&t, "cf/", longtopic, strlen(longtopic)), CF_EINVAL);
	longname[CF_NAME_MAX] = '\0';
	snprintf(longtopic, CF_NAME_MAX + 64, "cf/things/%s/jobs/notify-next", longname);
	assert_int_equal(cf_proto_topic_parse(&t, "cf/", longtopic, strlen(longtopic)), 0);
	free(longname);
	free(longtopic);
	longtopic = repeat('a', CF_PROTO_TOPIC_MAX + 1);
	assert_int_equal(cf_proto_topic_parse(&t, "cf/", longtopic, strlen(longtopic)), CF_EINVAL);
	free(longtopic);
	assert_int_equal(cf_proto_topic_parse(&t, NULL, "x", 1), CF_EINVAL);
}

static void
test_proto__topic_format_refuses_invalid(void **state)
{
	cf_proto_topic t = { .thing = "t", .kind = CF_PROTO_NOTIFY_NEXT, .reply = CF_PROTO_ACCEPTED };
	char buf[256], small[10];

	(void)state;
	assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), CF_EINVAL);
	t.reply = CF_PROTO_REQUEST;
	assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), 0);
	assert_int_equal(cf_proto_topic_format(small, sizeof(small), "cf/", &t), CF_EINVAL);
	t.kind = CF_PROTO_UPDATE;
	assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), CF_EINVAL); /* no job */
	strcpy(t.job_id, "a/b");
	assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), CF_EINVAL);
	strcpy(t.job_id, "ok");
	strcpy(t.thing, "a/b");
	assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), CF_EINVAL);
	strcpy(t.thing, "t");
	t.kind = CF_PROTO__COUNT;
	assert_int_equal(cf_proto_topic_format(buf, sizeof(buf), "cf/", &t), CF_EINVAL);
}

static void
test_proto__job_id_rules(void **state)
{
	char *s;

	(void)state;
	assert_true(cf_proto_job_id_valid("rotate-2026_11"));
	assert_false(cf_proto_job_id_valid(""));
	assert_false(cf_proto_job_id_valid(NULL));
	assert_false(cf_proto_job_id_valid("a.b"));
	assert_false(cf_proto_job_id_valid("a b"));
	assert_false(cf_proto_job_id_valid("a|b"));
	assert_false(cf_proto_job_id_valid("$next"));
	assert_false(cf_proto_job_id_valid("notify-next"));
	assert_false(cf_proto_job_id_valid("\xc3\xa9"));
	s = repeat('j', CF_PROTO_JOB_ID_MAX);
	assert_true(cf_proto_job_id_valid(s));
	free(s);
	s = repeat('j', CF_PROTO_JOB_ID_MAX + 1);
	assert_false(cf_proto_job_id_valid(s));
	free(s);
}

/* ---- tables ---- */

static void
test_proto__error_codes_are_one_stable_table(void **state)
{
	static const char *const expect[] = { "InvalidTopic", "InvalidJson", "InvalidRequest",
		"InvalidStateTransition", "ResourceNotFound", "VersionMismatch", "TerminalStateReached",
		"RequestThrottled", "InternalError", "NotInProgress", "NotARotation", "ClientIdMismatch",
		"PrincipalMismatch", "BadSignature", "CsrInvalid", "CsrSubjectMismatch", "WeakKey",
		"CertificateMismatch", "Replay" };
	cf_proto_code c;
	int i, j;

	(void)state;
	assert_int_equal(sizeof(expect) / sizeof(expect[0]), CF_PROTO_CODE__COUNT);
	for (i = 0; i < CF_PROTO_CODE__COUNT; i++) {
		assert_string_equal(cf_proto_code_name((cf_proto_code)i), expect[i]);
		assert_int_equal(cf_proto_code_parse(&c, expect[i]), 0);
		assert_int_equal(c, i);
		for (j = 0; j < i; j++)
			assert_string_not_equal(expect[i], expect[j]);
	}
	assert_string_equal(cf_proto_code_name(CF_PROTO_CODE__COUNT), "InternalError");
	assert_string_equal(cf_proto_code_name((cf_proto_code)-1), "InternalError");
	assert_int_equal(cf_proto_code_parse(&c, "invalidtopic"), CF_EINVAL);
	assert_int_equal(cf_proto_code_parse(&c, ""), CF_EINVAL);
	assert_int_equal(cf_proto_code_parse(&c, NULL), CF_EINVAL);
}

static void
test_proto__status_names(void **state)
{
	static const char *const names[] = { "QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED",
		"TIMED_OUT", "REJECTED", "REMOVED", "CANCELED" };
	cf_exec_status s;
	int i;

	(void)state;
	for (i = 0; i < CF_EXEC__COUNT; i++) {
		assert_string_equal(cf_proto_status_name((cf_exec_status)i), names[i]);
		assert_int_equal(cf_proto_status_parse(&s, names[i]), 0);
		assert_int_equal(s, i);
	}
	assert_string_equal(cf_proto_status_name(CF_EXEC__COUNT), "UNKNOWN");
	assert_int_equal(cf_proto_status_parse(&s, "in_progress"), CF_EINVAL);
	assert_int_equal(cf_proto_status_parse(&s, "CANCELLED"), CF_EINVAL);
	assert_int_equal(cf_proto_status_parse(&s, ""), CF_EINVAL);
}

/* ---- base64 ---- */

static void
test_proto__base64_vectors_and_strictness(void **state)
{
	static const char *const vec[][2] = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" } };
	static const char *const bad[] = { "Zg=", "Zg", "Z===", "====", "Zh==", "Zm9=", "Zm 9v",
		"Zm9v\n", "Zm-v", "Zm_v", "Zg==Zm9v", "Z=g=", "=Zg=", "Zm9v====" };
	unsigned char *b;
	size_t i, n;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		assert_int_equal(cf_base64_encode(&s, vec[i][0], strlen(vec[i][0])), 0);
		assert_string_equal(s, vec[i][1]);
		free(s);
		assert_int_equal(cf_base64_decode(&b, &n, vec[i][1], strlen(vec[i][1])), 0);
		assert_int_equal(n, strlen(vec[i][0]));
		assert_memory_equal(b, vec[i][0], n);
		free(b);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (cf_base64_decode(&b, &n, bad[i], strlen(bad[i])) != CF_EINVAL)
			fail_msg("accepted '%s'", bad[i]);
	}
	/* Every byte value round trips. */
	{
		unsigned char all[256];
		for (i = 0; i < sizeof(all); i++)
			all[i] = (unsigned char)i;
		assert_int_equal(cf_base64_encode(&s, all, sizeof(all)), 0);
		assert_int_equal(cf_base64_decode(&b, &n, s, strlen(s)), 0);
		assert_int_equal(n, sizeof(all));
		assert_memory_equal(b, all, n);
		free(b);
		free(s);
	}
}

/* ---- JSON adversarial input, through every decoder ---- */

static void
test_proto__json_garbage_is_invalid_json(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"{\"clientToken\":",
		"{\"clientToken\":\"a\"",
		"{\"clientToken\":\"a\"}x",
		"{'clientToken':'a'}",
		"{\"a\":1,}",
		"{\"a\":\"\\u0000\"}",       /* NUL inside a string */
		"{\"a\\u0000b\":\"x\"}",     /* NUL inside a key */
		"{\"a\":\"\xff\xfe\"}",      /* invalid UTF-8 */
		"{\"a\":\"\xc3\"}",          /* truncated UTF-8 */
		"{\"a\":\"\xed\xa0\x80\"}",  /* a UTF-16 surrogate in UTF-8 */
		"{\"a\":\"\\ud800\"}",       /* lone surrogate escape */
		"{\"a\":1,\"a\":2}",         /* duplicate keys */
		"{\"clientToken\":\"x\",\"clientToken\":\"y\"}",
		"{\"expectedVersion\":99999999999999999999999}", /* integer overflow */
		"{\"a\":1e999}",
		"{\"a\":\"\x01\"}",          /* raw control character */
		"{\"a\":NaN}",
	};
	cf_proto_next_get ng;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("payload %zu\n", i);
		DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, bad[i], CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_update, cf_proto_update, bad[i], CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_create, cf_proto_create, bad[i], CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_commit, cf_proto_commit, bad[i], CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_execution, cf_proto_execution, bad[i],
		    CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_update_accepted, cf_proto_update_accepted, bad[i],
		    CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_create_accepted, cf_proto_create_accepted, bad[i],
		    CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_commit_accepted, cf_proto_commit_accepted, bad[i],
		    CF_PROTO_INVALID_JSON);
		DECODE_FAILS(cf_proto_decode_rejection, cf_proto_rejection, bad[i],
		    CF_PROTO_INVALID_JSON);
	}
	/* A raw NUL byte in the payload. */
	{
		cf_proto_code why = CF_PROTO_CODE__COUNT;
		assert_int_equal(cf_proto_decode_next_get(&ng, "{\"a\":\"\0\"}", 9, &why), CF_EINVAL);
		assert_int_equal(why, CF_PROTO_INVALID_JSON);
		assert_int_equal(cf_proto_decode_next_get(&ng, "{}\0", 3, &why), CF_EINVAL);
		assert_int_equal(cf_proto_decode_next_get(&ng, NULL, 0, &why), CF_EINVAL);
		assert_int_equal(why, CF_PROTO_INVALID_JSON);
		/* why may be NULL. */
		assert_int_equal(cf_proto_decode_next_get(&ng, "{", 1, NULL), CF_EINVAL);
	}
	/* Valid JSON that is not an object. */
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, "[]", CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_update, cf_proto_update, "[{\"status\":\"FAILED\"}]",
	    CF_PROTO_INVALID_REQUEST);
}

static void
test_proto__oversize_and_deep_payloads(void **state)
{
	char *big, *deep;
	size_t n = CF_PROTO_PAYLOAD_MAX + 1, i, d = 10000;

	(void)state;
	/* One byte over the limit, although it is valid JSON. */
	big = repeat(' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, big, CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_create, cf_proto_create, big, CF_PROTO_INVALID_REQUEST);
	big[n - 2] = '}';
	big[n - 1] = '\0';
	{
		cf_proto_next_get m;
		DECODE_OK(cf_proto_decode_next_get, &m, big); /* exactly the limit */
	}
	free(big);
	/* Deep nesting in an ignored field: refused or ignored, never a crash. */
	deep = malloc(2 * d + 32);
	assert_non_null(deep);
	strcpy(deep, "{\"x\":");
	for (i = 0; i < d; i++)
		strcat(deep + 5 + i, "[");
	for (i = 0; i < d; i++)
		deep[5 + d + i] = ']';
	strcpy(deep + 5 + 2 * d, "}");
	{
		cf_proto_next_get m;
		cf_proto_code why;
		assert_int_equal(cf_proto_decode_next_get(&m, deep, strlen(deep), &why), CF_EINVAL);
		assert_int_equal(why, CF_PROTO_INVALID_JSON);
	}
	free(deep);
}

/* ---- $next/get ---- */

static void
test_proto__next_get(void **state)
{
	cf_proto_next_get m = { "tok-1" }, back;
	char *s, *tok;

	(void)state;
	assert_int_equal(cf_proto_encode_next_get(&s, &m), 0);
	assert_string_equal(s, "{\"clientToken\":\"tok-1\"}");
	DECODE_OK(cf_proto_decode_next_get, &back, s);
	assert_string_equal(back.client_token, "tok-1");
	free(s);
	m.client_token[0] = '\0';
	assert_int_equal(cf_proto_encode_next_get(&s, &m), 0);
	assert_string_equal(s, "{}");
	free(s);
	DECODE_OK(cf_proto_decode_next_get, &back, "{\"unknown\":[1,{\"x\":null}],\"clientToken\":\"\"}");
	assert_string_equal(back.client_token, "");
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, "{\"clientToken\":5}",
	    CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, "{\"clientToken\":null}",
	    CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, "{\"clientToken\":[\"a\"]}",
	    CF_PROTO_INVALID_REQUEST);
	/* 64 characters pass, 65 do not (UTF-8 counts bytes). */
	tok = malloc(100);
	assert_non_null(tok);
	snprintf(tok, 100, "{\"clientToken\":\"%064d\"}", 7);
	DECODE_OK(cf_proto_decode_next_get, &back, tok);
	snprintf(tok, 100, "{\"clientToken\":\"%065d\"}", 7);
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, tok, CF_PROTO_INVALID_REQUEST);
	snprintf(tok, 100, "{\"clientToken\":\"%s\"}",
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\xc3\xa9");
	DECODE_FAILS(cf_proto_decode_next_get, cf_proto_next_get, tok, CF_PROTO_INVALID_REQUEST);
	free(tok);
}

/* ---- update ---- */

static void
test_proto__update_round_trip(void **state)
{
	cf_proto_update m, back;
	char *s;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.status = CF_EXEC_FAILED;
	m.expected_version = 3;
	strcpy(m.client_token, "c1");
	assert_int_equal(cf_proto_update_set_detail(&m, "reason", "commit timed out"), 0);
	assert_int_equal(cf_proto_update_set_detail(&m, "step", "commit"), 0);
	assert_int_equal(cf_proto_update_set_detail(&m, "reason", "commit rejected: Replay"), 0);
	assert_int_equal(m.n_details, 2);
	assert_int_equal(cf_proto_encode_update(&s, &m), 0);
	assert_string_equal(s, "{\"status\":\"FAILED\",\"statusDetails\":{\"reason\":\"commit "
	    "rejected: Replay\",\"step\":\"commit\"},\"expectedVersion\":3,\"clientToken\":\"c1\"}");
	DECODE_OK(cf_proto_decode_update, &back, s);
	free(s);
	assert_int_equal(back.status, CF_EXEC_FAILED);
	assert_int_equal(back.expected_version, 3);
	assert_string_equal(back.client_token, "c1");
	assert_int_equal(back.n_details, 2);
	assert_string_equal(cf_proto_update_detail(&back, "reason"), "commit rejected: Replay");
	assert_string_equal(cf_proto_update_detail(&back, "step"), "commit");
	assert_null(cf_proto_update_detail(&back, "other"));
	cf_proto_update_clear(&back);
	cf_proto_update_clear(&m);
	assert_int_equal(m.expected_version, -1);

	/* Minimal: only status; expectedVersion absent stays -1 and is not encoded. */
	DECODE_OK(cf_proto_decode_update, &back, "{\"status\":\"IN_PROGRESS\",\"x\":{}}");
	assert_int_equal(back.status, CF_EXEC_IN_PROGRESS);
	assert_int_equal(back.expected_version, -1);
	assert_int_equal(back.n_details, 0);
	assert_int_equal(cf_proto_encode_update(&s, &back), 0);
	assert_string_equal(s, "{\"status\":\"IN_PROGRESS\"}");
	free(s);
	cf_proto_update_clear(&back);
	DECODE_OK(cf_proto_decode_update, &back, "{\"status\":\"SUCCEEDED\",\"expectedVersion\":0,"
	    "\"statusDetails\":{}}");
	assert_int_equal(back.expected_version, 0);
	cf_proto_update_clear(&back);
	/* The largest integer. */
	DECODE_OK(cf_proto_decode_update, &back, "{\"status\":\"SUCCEEDED\","
	    "\"expectedVersion\":9223372036854775807}");
	assert_int_equal(back.expected_version, INT64_MAX);
	cf_proto_update_clear(&back);
	cf_proto_update_clear(NULL);
}

static void
test_proto__update_rejects_bad_fields(void **state)
{
	static const char *const bad[] = {
		"{}",
		"{\"statusDetails\":{}}",
		"{\"status\":null}",
		"{\"status\":1}",
		"{\"status\":\"in_progress\"}",
		"{\"status\":\"DONE\"}",
		"{\"status\":\"FAILED\",\"expectedVersion\":-1}",
		"{\"status\":\"FAILED\",\"expectedVersion\":-9223372036854775808}",
		"{\"status\":\"FAILED\",\"expectedVersion\":1.0}",
		"{\"status\":\"FAILED\",\"expectedVersion\":1e3}",
		"{\"status\":\"FAILED\",\"expectedVersion\":\"1\"}",
		"{\"status\":\"FAILED\",\"expectedVersion\":true}",
		"{\"status\":\"FAILED\",\"expectedVersion\":null}",
		"{\"status\":\"FAILED\",\"statusDetails\":[]}",
		"{\"status\":\"FAILED\",\"statusDetails\":\"reason\"}",
		"{\"status\":\"FAILED\",\"statusDetails\":null}",
		"{\"status\":\"FAILED\",\"statusDetails\":{\"a\":1}}",
		"{\"status\":\"FAILED\",\"statusDetails\":{\"a\":null}}",
		"{\"status\":\"FAILED\",\"statusDetails\":{\"a\":{\"b\":\"c\"}}}",
		"{\"status\":\"FAILED\",\"statusDetails\":{\"\":\"empty key\"}}",
		"{\"status\":\"FAILED\",\"clientToken\":7}",
	};
	char *s, *v;
	size_t i, o;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i]);
		DECODE_FAILS(cf_proto_decode_update, cf_proto_update, bad[i], CF_PROTO_INVALID_REQUEST);
	}
	/* 33 entries. */
	s = malloc(4096);
	assert_non_null(s);
	o = (size_t)sprintf(s, "{\"status\":\"FAILED\",\"statusDetails\":{");
	for (i = 0; i < CF_PROTO_DETAILS_MAX + 1; i++)
		o += (size_t)sprintf(s + o, "%s\"k%zu\":\"v\"", i ? "," : "", i);
	strcpy(s + o, "}}");
	DECODE_FAILS(cf_proto_decode_update, cf_proto_update, s, CF_PROTO_INVALID_REQUEST);
	/* 32 pass. */
	o = (size_t)sprintf(s, "{\"status\":\"FAILED\",\"statusDetails\":{");
	for (i = 0; i < CF_PROTO_DETAILS_MAX; i++)
		o += (size_t)sprintf(s + o, "%s\"k%zu\":\"v\"", i ? "," : "", i);
	strcpy(s + o, "}}");
	{
		cf_proto_update m;
		DECODE_OK(cf_proto_decode_update, &m, s);
		assert_int_equal(m.n_details, CF_PROTO_DETAILS_MAX);
		/* A 33rd cannot be added either. */
		assert_int_equal(cf_proto_update_set_detail(&m, "more", "x"), CF_EINVAL);
		cf_proto_update_clear(&m);
	}
	free(s);
	/* A value one byte too long, a key one byte too long. */
	v = repeat('v', CF_PROTO_DETAIL_VALUE_MAX + 1);
	s = malloc(CF_PROTO_DETAIL_VALUE_MAX + 100);
	assert_non_null(s);
	sprintf(s, "{\"status\":\"FAILED\",\"statusDetails\":{\"reason\":\"%s\"}}", v);
	DECODE_FAILS(cf_proto_decode_update, cf_proto_update, s, CF_PROTO_INVALID_REQUEST);
	v[CF_PROTO_DETAIL_KEY_MAX + 1] = '\0';
	sprintf(s, "{\"status\":\"FAILED\",\"statusDetails\":{\"%s\":\"x\"}}", v);
	DECODE_FAILS(cf_proto_decode_update, cf_proto_update, s, CF_PROTO_INVALID_REQUEST);
	free(s);
	free(v);
}

static void
test_proto__update_encoder_refuses_invalid(void **state)
{
	cf_proto_update m;
	char *s = NULL;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.expected_version = -1;
	m.status = CF_EXEC__COUNT;
	assert_int_equal(cf_proto_encode_update(&s, &m), CF_EINVAL);
	m.status = CF_EXEC_FAILED;
	assert_int_equal(cf_proto_update_set_detail(&m, "", "x"), CF_EINVAL);
	assert_int_equal(cf_proto_update_set_detail(&m, "reason", "\xff bad utf-8"), 0);
	assert_int_equal(cf_proto_encode_update(&s, &m), CF_EINVAL);
	assert_null(s);
	cf_proto_update_clear(&m);
	strcpy(m.client_token, "x");
	m.status = CF_EXEC_FAILED;
	assert_int_equal(cf_proto_encode_update(&s, &m), 0);
	free(s);
}

/* ---- create ---- */

static void
test_proto__create_round_trip(void **state)
{
	cf_proto_create m = { .job_id = "job-1", .csr = CSR_PEM, .csr_len = strlen(CSR_PEM),
		.signature = SIG }, back;
	char *s;

	(void)state;
	assert_int_equal(cf_proto_encode_create(&s, &m), 0);
	assert_string_equal(s, "{\"jobId\":\"job-1\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----"
	    "\\nMIIB\\n-----END CERTIFICATE REQUEST-----\\n\",\"signature\":\"" SIG "\"}");
	DECODE_OK(cf_proto_decode_create, &back, s);
	free(s);
	assert_string_equal(back.job_id, "job-1");
	assert_string_equal(back.csr, CSR_PEM);
	assert_int_equal(back.csr_len, strlen(CSR_PEM));
	assert_string_equal(back.signature, SIG);
	assert_string_equal(back.client_token, "");
	cf_proto_create_clear(&back);
	cf_proto_create_clear(NULL);
}

static void
test_proto__create_rejects_bad_fields(void **state)
{
	static const char *const bad[] = {
		"{}",
		"{\"csr\":\"" "-----BEGIN CERTIFICATE REQUEST-----" "\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\"}",
		"{\"jobId\":5,\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"a/b\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"csr\":[],\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"csr\":\"\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"csr\":\"MIIB\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE-----\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"not base64!\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"MEU\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"ME-_\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"MEU=\\n\"}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":42}",
		"{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"" SIG
		    "\",\"clientToken\":{}}",
	};
	char *s, *long_csr, *long_sig;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i]);
		DECODE_FAILS(cf_proto_decode_create, cf_proto_create, bad[i], CF_PROTO_INVALID_REQUEST);
	}
	/* A CSR one byte over its limit; a signature over its limit. */
	long_csr = repeat('A', CF_PROTO_CSR_MAX + 1);
	memcpy(long_csr, "-----BEGIN CERTIFICATE REQUEST-----", 35);
	s = malloc(CF_PROTO_CSR_MAX + 200);
	assert_non_null(s);
	sprintf(s, "{\"jobId\":\"j\",\"csr\":\"%s\",\"signature\":\"" SIG "\"}", long_csr);
	DECODE_FAILS(cf_proto_decode_create, cf_proto_create, s, CF_PROTO_INVALID_REQUEST);
	long_csr[CF_PROTO_CSR_MAX] = '\0';
	sprintf(s, "{\"jobId\":\"j\",\"csr\":\"%s\",\"signature\":\"" SIG "\"}", long_csr);
	{
		cf_proto_create m;
		DECODE_OK(cf_proto_decode_create, &m, s);
		assert_int_equal(m.csr_len, CF_PROTO_CSR_MAX);
		cf_proto_create_clear(&m);
	}
	free(s);
	free(long_csr);
	long_sig = repeat('A', CF_PROTO_SIG_MAX + 4);
	s = malloc(CF_PROTO_SIG_MAX + 200);
	assert_non_null(s);
	sprintf(s, "{\"jobId\":\"j\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\",\"signature\":\"%s\"}",
	    long_sig);
	DECODE_FAILS(cf_proto_decode_create, cf_proto_create, s, CF_PROTO_INVALID_REQUEST);
	free(s);
	free(long_sig);
}

/* ---- commit ---- */

static void
test_proto__commit_round_trip_and_bad_fields(void **state)
{
	static const char *const bad[] = {
		"{\"jobId\":\"j\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"" CERT_ID "\"}",
		"{\"certificateId\":\"" CERT_ID "\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"0123\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"" CERT_ID "0\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"0123456789ABCDEF0123456789abcdef0123456789abcdef"
		    "0123456789abcdef\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"g123456789abcdef0123456789abcdef0123456789abcdef"
		    "0123456789abcdef\",\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":1,\"signature\":\"" SIG "\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"" CERT_ID "\",\"signature\":\"%%%%\"}",
		"{\"jobId\":\"j\",\"certificateId\":\"" CERT_ID "\",\"signature\":null}",
	};
	cf_proto_commit m = { .job_id = "job-1", .certificate_id = CERT_ID, .signature = SIG,
		.client_token = "t" }, back;
	char *s;
	size_t i;

	(void)state;
	assert_int_equal(cf_proto_encode_commit(&s, &m), 0);
	assert_string_equal(s, "{\"jobId\":\"job-1\",\"certificateId\":\"" CERT_ID
	    "\",\"signature\":\"" SIG "\",\"clientToken\":\"t\"}");
	DECODE_OK(cf_proto_decode_commit, &back, s);
	free(s);
	assert_string_equal(back.job_id, "job-1");
	assert_string_equal(back.certificate_id, CERT_ID);
	assert_string_equal(back.signature, SIG);
	assert_string_equal(back.client_token, "t");
	cf_proto_commit_clear(&back);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i]);
		DECODE_FAILS(cf_proto_decode_commit, cf_proto_commit, bad[i], CF_PROTO_INVALID_REQUEST);
	}
	/* The encoder refuses what the decoder would. */
	strcpy(m.certificate_id, "ABC");
	assert_int_equal(cf_proto_encode_commit(&s, &m), CF_EINVAL);
	strcpy(m.certificate_id, CERT_ID);
	m.signature = "***";
	assert_int_equal(cf_proto_encode_commit(&s, &m), CF_EINVAL);
	m.signature = SIG;
	strcpy(m.job_id, "x y");
	assert_int_equal(cf_proto_encode_commit(&s, &m), CF_EINVAL);
	cf_proto_commit_clear(NULL);
}

/* ---- execution (notify-next, $next/get/accepted) ---- */

static void
test_proto__execution_round_trip(void **state)
{
	cf_proto_execution m, back;
	char *s;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.present = 1;
	strcpy(m.job_id, "rot-1");
	m.status = CF_EXEC_QUEUED;
	m.doc.key_alg = CF_KEY_P256;
	m.doc.sig_alg = CF_SIG_ECDSA_SHA256;
	m.execution_number = 1;
	m.version_number = 0;
	strcpy(m.client_token, "n");
	assert_int_equal(cf_proto_encode_execution(&s, &m), 0);
	assert_string_equal(s, "{\"execution\":{\"jobId\":\"rot-1\",\"status\":\"QUEUED\","
	    "\"jobDocument\":{\"operation\":\"ROTATE_CERTIFICATE\",\"keyAlgorithm\":\"ECDSA-P256\","
	    "\"signingAlgorithm\":\"ECDSA-WITH-SHA256\"},\"executionNumber\":1,\"versionNumber\":0},"
	    "\"clientToken\":\"n\"}");
	DECODE_OK(cf_proto_decode_execution, &back, s);
	free(s);
	assert_execution_equal(&back, &m);

	/* Nothing pending. */
	memset(&m, 0, sizeof(m));
	assert_int_equal(cf_proto_encode_execution(&s, &m), 0);
	assert_string_equal(s, "{}");
	DECODE_OK(cf_proto_decode_execution, &back, s);
	assert_int_equal(back.present, 0);
	free(s);

	/* Aliases and a default signing algorithm are accepted on decode. */
	DECODE_OK(cf_proto_decode_execution, &back, "{\"execution\":{\"jobId\":\"j\",\"status\":"
	    "\"IN_PROGRESS\",\"jobDocument\":{\"operation\":\"ROTATE_CERTIFICATE\",\"keyAlgorithm\":"
	    "\"rsa-3072\"},\"executionNumber\":2,\"versionNumber\":5,\"extra\":1}}");
	assert_int_equal(back.doc.key_alg, CF_KEY_RSA3072);
	assert_int_equal(back.doc.sig_alg, cf_sig_alg_default(CF_KEY_RSA3072));
	assert_int_equal(back.version_number, 5);

	/* Every key/signing pair the PKI accepts round trips. */
	{
		int k, g;
		for (k = 0; k < CF_KEY__COUNT; k++) {
			for (g = 0; g < CF_SIG__COUNT; g++) {
				cf_key_alg ka;
				cf_sig_alg sa;
				int ok = cf_alg_validate(&ka, &sa, cf_key_alg_name((cf_key_alg)k),
				    cf_sig_alg_name((cf_sig_alg)g)) == 0;
				memset(&m, 0, sizeof(m));
				m.present = 1;
				strcpy(m.job_id, "j");
				m.execution_number = 1;
				m.doc.key_alg = (cf_key_alg)k;
				m.doc.sig_alg = (cf_sig_alg)g;
				s = NULL;
				assert_int_equal(cf_proto_encode_execution(&s, &m), ok ? 0 : CF_EINVAL);
				if (!ok)
					continue;
				DECODE_OK(cf_proto_decode_execution, &back, s);
				assert_execution_equal(&back, &m);
				free(s);
			}
		}
	}
}

static void
test_proto__execution_rejects_bad_fields(void **state)
{
#define EXEC(job, st, doc, en, vn) "{\"execution\":{\"jobId\":" job ",\"status\":" st \
	",\"jobDocument\":" doc ",\"executionNumber\":" en ",\"versionNumber\":" vn "}}"
#define DOC "{\"operation\":\"ROTATE_CERTIFICATE\",\"keyAlgorithm\":\"ECDSA-P256\"}"
	static const char *const bad[] = {
		"{\"execution\":null}",
		"{\"execution\":[]}",
		"{\"execution\":{}}",
		EXEC("\"j\"", "\"QUEUED\"", DOC, "1", "-1"),
		EXEC("\"j\"", "\"QUEUED\"", DOC, "0", "0"),
		EXEC("\"j\"", "\"QUEUED\"", DOC, "1", "0.5"),
		EXEC("\"j\"", "\"QUEUED\"", DOC, "\"1\"", "0"),
		EXEC("\"j j\"", "\"QUEUED\"", DOC, "1", "0"),
		EXEC("7", "\"QUEUED\"", DOC, "1", "0"),
		EXEC("\"j\"", "\"queued\"", DOC, "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "null", "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "\"ROTATE_CERTIFICATE\"", "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "{\"operation\":\"REBOOT\",\"keyAlgorithm\":\"ECDSA-P256\"}",
		    "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "{\"keyAlgorithm\":\"ECDSA-P256\"}", "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "{\"operation\":\"ROTATE_CERTIFICATE\"}", "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "{\"operation\":\"ROTATE_CERTIFICATE\",\"keyAlgorithm\":"
		    "\"RSA-1024\"}", "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "{\"operation\":\"ROTATE_CERTIFICATE\",\"keyAlgorithm\":"
		    "\"RSA-2048\",\"signingAlgorithm\":\"ECDSA-WITH-SHA256\"}", "1", "0"),
		EXEC("\"j\"", "\"QUEUED\"", "{\"operation\":\"ROTATE_CERTIFICATE\",\"keyAlgorithm\":"
		    "\"ED25519\",\"signingAlgorithm\":5}", "1", "0"),
		"{\"execution\":{\"jobId\":\"j\",\"status\":\"QUEUED\",\"jobDocument\":" DOC
		    ",\"executionNumber\":1}}",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i]);
		DECODE_FAILS(cf_proto_decode_execution, cf_proto_execution, bad[i],
		    CF_PROTO_INVALID_REQUEST);
	}
#undef EXEC
#undef DOC
}

/* ---- replies ---- */

static void
test_proto__replies_round_trip(void **state)
{
	cf_proto_update_accepted ua = { { CF_EXEC_IN_PROGRESS, 2 }, "t" }, ua2;
	cf_proto_create_accepted ca = { CERT_ID, CERT_PEM, CERT_PEM CERT_PEM, "" }, ca2;
	cf_proto_commit_accepted ka = { CERT_ID, "tok" }, ka2;
	char *s;

	(void)state;
	assert_int_equal(cf_proto_encode_update_accepted(&s, &ua), 0);
	assert_string_equal(s, "{\"executionState\":{\"status\":\"IN_PROGRESS\",\"versionNumber\":2},"
	    "\"clientToken\":\"t\"}");
	DECODE_OK(cf_proto_decode_update_accepted, &ua2, s);
	assert_int_equal(ua2.state.status, ua.state.status);
	assert_int_equal(ua2.state.version_number, ua.state.version_number);
	assert_string_equal(ua2.client_token, ua.client_token);
	free(s);

	assert_int_equal(cf_proto_encode_create_accepted(&s, &ca), 0);
	DECODE_OK(cf_proto_decode_create_accepted, &ca2, s);
	free(s);
	assert_string_equal(ca2.certificate_id, CERT_ID);
	assert_string_equal(ca2.certificate_pem, CERT_PEM);
	assert_string_equal(ca2.chain_pem, CERT_PEM CERT_PEM);
	cf_proto_create_accepted_clear(&ca2);
	cf_proto_create_accepted_clear(NULL);

	assert_int_equal(cf_proto_encode_commit_accepted(&s, &ka), 0);
	assert_string_equal(s, "{\"certificateId\":\"" CERT_ID "\",\"clientToken\":\"tok\"}");
	DECODE_OK(cf_proto_decode_commit_accepted, &ka2, s);
	assert_string_equal(ka.certificate_id, ka2.certificate_id);
	assert_string_equal(ka.client_token, ka2.client_token);
	free(s);

	/* Bad replies. */
	DECODE_FAILS(cf_proto_decode_update_accepted, cf_proto_update_accepted, "{}",
	    CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_update_accepted, cf_proto_update_accepted,
	    "{\"executionState\":{\"status\":\"QUEUED\",\"versionNumber\":-2}}", CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_update_accepted, cf_proto_update_accepted,
	    "{\"executionState\":{\"status\":\"QUEUED\"}}", CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_create_accepted, cf_proto_create_accepted,
	    "{\"certificateId\":\"" CERT_ID "\",\"certificatePem\":\"x\",\"chainPem\":\"x\"}",
	    CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_create_accepted, cf_proto_create_accepted,
	    "{\"certificateId\":\"" CERT_ID "\",\"certificatePem\":\"-----BEGIN CERTIFICATE-----\"}",
	    CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_commit_accepted, cf_proto_commit_accepted, "{}",
	    CF_PROTO_INVALID_REQUEST);
	ca.chain_pem = NULL;
	assert_int_equal(cf_proto_encode_create_accepted(&s, &ca), CF_EINVAL);
	/* Too large to send: two PEMs at their limits plus the rest exceed the payload limit. */
	{
		char *big = repeat('A', CF_PROTO_PEM_MAX);
		memcpy(big, "-----BEGIN CERTIFICATE-----", 27);
		ca.certificate_pem = big;
		ca.chain_pem = big;
		assert_int_equal(cf_proto_encode_create_accepted(&s, &ca), CF_EINVAL);
		free(big);
	}
}

static void
test_proto__rejection_round_trip(void **state)
{
	cf_proto_rejection m, back;
	char *s;
	int i;

	(void)state;
	cf_proto_rejection_set(&m, CF_PROTO_VERSION_MISMATCH, "tok", "expected version %d, is %d", 3, 4);
	m.has_state = 1;
	m.state.status = CF_EXEC_IN_PROGRESS;
	m.state.version_number = 4;
	assert_int_equal(cf_proto_encode_rejection(&s, &m), 0);
	assert_string_equal(s, "{\"errorCode\":\"VersionMismatch\",\"errorMessage\":\"expected version "
	    "3, is 4\",\"clientToken\":\"tok\",\"executionState\":{\"status\":\"IN_PROGRESS\","
	    "\"versionNumber\":4}}");
	DECODE_OK(cf_proto_decode_rejection, &back, s);
	assert_rejection_equal(&back, &m);
	free(s);
	/* Every code round trips. */
	for (i = 0; i < CF_PROTO_CODE__COUNT; i++) {
		cf_proto_rejection_set(&m, (cf_proto_code)i, NULL, "why %d", i);
		assert_int_equal(cf_proto_encode_rejection(&s, &m), 0);
		DECODE_OK(cf_proto_decode_rejection, &back, s);
		assert_rejection_equal(&back, &m);
		free(s);
	}
	/* Messages are made printable and cut, so that the reply always encodes. */
	{
		char *longmsg = repeat('m', 2000);
		cf_proto_rejection_set(&m, CF_PROTO_CSR_INVALID, "t", "bad \xff\n%s", longmsg);
		free(longmsg);
		assert_int_equal(strlen(m.message), CF_PROTO_MESSAGE_MAX);
		assert_memory_equal(m.message, "bad ??mmm", 9);
		assert_int_equal(cf_proto_encode_rejection(&s, &m), 0);
		free(s);
	}
	/* A token that is too long is dropped rather than sent. */
	cf_proto_rejection_set(&m, CF_PROTO_REPLAY, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "x");
	assert_string_equal(m.client_token, "");
	m.code = CF_PROTO_CODE__COUNT;
	assert_int_equal(cf_proto_encode_rejection(&s, &m), CF_EINVAL);
	/* Decoding refuses unknown codes and wrong types. */
	DECODE_FAILS(cf_proto_decode_rejection, cf_proto_rejection,
	    "{\"errorCode\":\"Nope\",\"errorMessage\":\"\"}", CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_rejection, cf_proto_rejection,
	    "{\"errorCode\":\"Replay\"}", CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_rejection, cf_proto_rejection,
	    "{\"errorCode\":1,\"errorMessage\":\"\"}", CF_PROTO_INVALID_REQUEST);
	DECODE_FAILS(cf_proto_decode_rejection, cf_proto_rejection,
	    "{\"errorCode\":\"Replay\",\"errorMessage\":\"\",\"executionState\":5}",
	    CF_PROTO_INVALID_REQUEST);
}

/* ---- chain of custody ---- */

static void
test_proto__custody_messages_are_exact(void **state)
{
	char msg[CF_PROTO_CUSTODY_MAX], hash[CF_ID_LEN + 1], want[256];

	(void)state;
	assert_int_equal(cf_proto_custody_create_msg(msg, "job-1", "sensor-1", "abc", 3), 0);
	/* SHA-256("abc"), FIPS 180-2. */
	assert_string_equal(msg, "job-1|sensor-1|"
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	cf_sha256_hex(hash, CSR_PEM, strlen(CSR_PEM));
	assert_int_equal(cf_proto_custody_create_msg(msg, "j", "t", CSR_PEM, strlen(CSR_PEM)), 0);
	snprintf(want, sizeof(want), "j|t|%s", hash);
	assert_string_equal(msg, want);
	assert_int_equal(cf_proto_custody_commit_msg(msg, "job-1", "sensor-1", CERT_ID), 0);
	assert_string_equal(msg, "job-1|sensor-1|" CERT_ID);
	/* Separators cannot be smuggled in. */
	assert_int_equal(cf_proto_custody_create_msg(msg, "a|b", "t", "x", 1), CF_EINVAL);
	assert_int_equal(cf_proto_custody_create_msg(msg, "a", "t|x", "x", 1), CF_EINVAL);
	assert_int_equal(cf_proto_custody_create_msg(msg, "a", "t", NULL, 0), CF_EINVAL);
	assert_int_equal(cf_proto_custody_commit_msg(msg, "a", "t", "ABC"), CF_EINVAL);
	assert_int_equal(cf_proto_custody_commit_msg(msg, "", "t", CERT_ID), CF_EINVAL);
}

static void
custody_for(cf_key_alg alg)
{
	cf_key *key = NULL, *other = NULL;
	char msg[CF_PROTO_CUSTODY_MAX], wrong[CF_PROTO_CUSTODY_MAX], *sig = NULL, *csr = NULL;
	char *tampered;
	unsigned char *raw;
	size_t raw_len;

	print_message("%s\n", cf_key_alg_name(alg));
	assert_int_equal(cf_key_generate(&key, alg), 0);
	assert_int_equal(cf_key_generate(&other, alg), 0);
	assert_int_equal(cf_csr_create(&csr, key, cf_sig_alg_default(alg), "sensor-1"), 0);

	/* create: signed with the old key over jobId|thing|sha256(csr). */
	assert_int_equal(cf_proto_custody_create_msg(msg, "job-1", "sensor-1", csr, strlen(csr)), 0);
	assert_int_equal(cf_proto_custody_sign(&sig, key, msg), 0);
	assert_int_equal(cf_proto_custody_verify(key, msg, sig), 0);
	/* Over another jobId, thing or CSR: rejected. */
	assert_int_equal(cf_proto_custody_create_msg(wrong, "job-2", "sensor-1", csr, strlen(csr)), 0);
	assert_int_equal(cf_proto_custody_verify(key, wrong, sig), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_create_msg(wrong, "job-1", "sensor-2", csr, strlen(csr)), 0);
	assert_int_equal(cf_proto_custody_verify(key, wrong, sig), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_create_msg(wrong, "job-1", "sensor-1", csr, strlen(csr) - 1),
	    0);
	assert_int_equal(cf_proto_custody_verify(key, wrong, sig), CF_EREJECTED);
	/* By another key: rejected. */
	assert_int_equal(cf_proto_custody_verify(other, msg, sig), CF_EREJECTED);
	/* Tampered signature bytes: rejected. */
	assert_int_equal(cf_base64_decode(&raw, &raw_len, sig, strlen(sig)), 0);
	raw[raw_len / 2] ^= 1;
	assert_int_equal(cf_base64_encode(&tampered, raw, raw_len), 0);
	assert_int_equal(cf_proto_custody_verify(key, msg, tampered), CF_EREJECTED);
	free(tampered);
	free(raw);
	/* Not base64, empty, too long, truncated: rejected. */
	assert_int_equal(cf_proto_custody_verify(key, msg, "not base64!"), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_verify(key, msg, ""), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_verify(key, msg, "AAAA"), CF_EREJECTED);
	sig[strlen(sig) - 4] = '\0';
	assert_int_equal(cf_proto_custody_verify(key, msg, sig), CF_EREJECTED);
	free(sig);
	sig = NULL;

	/* commit: signed with the new key over jobId|thing|certificateId. */
	assert_int_equal(cf_proto_custody_commit_msg(msg, "job-1", "sensor-1", CERT_ID), 0);
	assert_int_equal(cf_proto_custody_sign(&sig, other, msg), 0);
	assert_int_equal(cf_proto_custody_verify(other, msg, sig), 0);
	assert_int_equal(cf_proto_custody_verify(key, msg, sig), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_commit_msg(wrong, "job-0", "sensor-1", CERT_ID), 0);
	assert_int_equal(cf_proto_custody_verify(other, wrong, sig), CF_EREJECTED);
	free(sig);
	free(csr);
	cf_key_free(key);
	cf_key_free(other);
}

static void
test_proto__custody_sign_verify_every_key(void **state)
{
	int k;

	(void)state;
	for (k = 0; k < CF_KEY__COUNT; k++) {
		if (k == CF_KEY_RSA3072)
			continue; /* slow to generate, same code path as RSA-2048 */
		custody_for((cf_key_alg)k);
	}
}

/* A create message built by a device goes through the wire and verifies on the server. */
static void
test_proto__custody_end_to_end_through_the_codec(void **state)
{
	cf_proto_create req, got;
	cf_key *old_key = NULL, *new_key = NULL;
	char msg[CF_PROTO_CUSTODY_MAX], *csr = NULL, *sig = NULL, *wire = NULL;

	(void)state;
	assert_int_equal(cf_key_generate(&old_key, CF_KEY_P256), 0);
	assert_int_equal(cf_key_generate(&new_key, CF_KEY_ED25519), 0);
	assert_int_equal(cf_csr_create(&csr, new_key, CF_SIG_ED25519, "sensor-1"), 0);
	assert_int_equal(cf_proto_custody_create_msg(msg, "job-7", "sensor-1", csr, strlen(csr)), 0);
	assert_int_equal(cf_proto_custody_sign(&sig, old_key, msg), 0);
	memset(&req, 0, sizeof(req));
	strcpy(req.job_id, "job-7");
	req.csr = csr;
	req.csr_len = strlen(csr);
	req.signature = sig;
	assert_int_equal(cf_proto_encode_create(&wire, &req), 0);
	DECODE_OK(cf_proto_decode_create, &got, wire);
	/* Server side: rebuild the message from what arrived and the topic's thing. */
	assert_int_equal(cf_proto_custody_create_msg(msg, got.job_id, "sensor-1", got.csr, got.csr_len),
	    0);
	assert_int_equal(cf_proto_custody_verify(old_key, msg, got.signature), 0);
	/* The same request replayed for another thing, or verified with the new key, fails. */
	assert_int_equal(cf_proto_custody_create_msg(msg, got.job_id, "sensor-2", got.csr, got.csr_len),
	    0);
	assert_int_equal(cf_proto_custody_verify(old_key, msg, got.signature), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_create_msg(msg, got.job_id, "sensor-1", got.csr, got.csr_len),
	    0);
	assert_int_equal(cf_proto_custody_verify(new_key, msg, got.signature), CF_EREJECTED);
	cf_proto_create_clear(&got);
	free(wire);
	free(sig);
	free(csr);
	cf_key_free(old_key);
	cf_key_free(new_key);
}

/* The worked example of docs/protocol.md, byte for byte (Ed25519 is deterministic). */
static void
test_proto__custody_docs_worked_example(void **state)
{
	static const char old_pem[] = "-----BEGIN PRIVATE KEY-----\n"
	    "MC4CAQAwBQYDK2VwBCIEIAyge1vRRSdCjt17i/J0RbrmfwPYeeSjrIgfSRCLpR76\n"
	    "-----END PRIVATE KEY-----\n";
	static const char new_pem[] = "-----BEGIN PRIVATE KEY-----\n"
	    "MC4CAQAwBQYDK2VwBCIEICAagnDLgm0t+81sXxUy9d1ZZR+W7Zzz5MdXzHF5K/xU\n"
	    "-----END PRIVATE KEY-----\n";
	static const char csr[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
	    "MIHNMIGAAgEAMBMxETAPBgNVBAMMCHNlbnNvci0xMCowBQYDK2VwAyEAsLYqa9cr\n"
	    "TPIHV5OQ1lm3IxJ7mqGTRXwThupRJ1I7Ic6gOjA4BgkqhkiG9w0BCQ4xKzApMCcG\n"
	    "A1UdEQQgMB6GHHVybjpjZXJ0ZmxlZXQ6dGhpbmc6c2Vuc29yLTEwBQYDK2VwA0EA\n"
	    "tRrE4gibOoRMol1sJ5vCJmOy7HfYRgm4l6P5bRKQYqy0kYkwRpiFaFNXK9kldHrq\n"
	    "vOYWv8r2Q8qKrCmdCSMBDg==\n"
	    "-----END CERTIFICATE REQUEST-----\n";
	static const char create_sig[] = "MqseRAP6aaKozSLTDmw++BIuqoYDquTqtICv2QhlrEYuQkTkMt+ABL6dGDChz"
	    "c9OZZfOe0GBfxbMyECKJv/NBQ==";
	static const char commit_sig[] = "owP21CjiIzWdYnImuAm52COdr3wVIXUaHXgRUycIsx0I9qMzvxHyyDZ/PoqTy"
	    "8sa+zbpOIXOlEM+k29XPanlCA==";
	static const char cert_id[] = "5f1c0d3e0a4b8e7f9a2c6d1b3e5f7a9c0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d0f";
	cf_key *old_key = NULL, *new_key = NULL;
	char msg[CF_PROTO_CUSTODY_MAX], *sig = NULL;

	(void)state;
	assert_int_equal(strlen(csr), 355);
	assert_int_equal(cf_key_from_pem(&old_key, old_pem, strlen(old_pem), NULL), 0);
	assert_int_equal(cf_key_from_pem(&new_key, new_pem, strlen(new_pem), NULL), 0);
	assert_int_equal(cf_proto_custody_create_msg(msg, "rot-2026-11", "sensor-1", csr, strlen(csr)),
	    0);
	assert_string_equal(msg, "rot-2026-11|sensor-1|"
	    "7b852a189e4ed3000414ee3b376025c15e143d9dc194eee958d772dc47874554");
	assert_int_equal(cf_proto_custody_sign(&sig, old_key, msg), 0);
	assert_string_equal(sig, create_sig);
	free(sig);
	assert_int_equal(cf_proto_custody_verify(old_key, msg, create_sig), 0);
	assert_int_equal(cf_proto_custody_verify(new_key, msg, create_sig), CF_EREJECTED);
	assert_int_equal(cf_proto_custody_commit_msg(msg, "rot-2026-11", "sensor-1", cert_id), 0);
	assert_int_equal(cf_proto_custody_sign(&sig, new_key, msg), 0);
	assert_string_equal(sig, commit_sig);
	free(sig);
	assert_int_equal(cf_proto_custody_verify(new_key, msg, commit_sig), 0);
	cf_key_free(old_key);
	cf_key_free(new_key);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proto__topic_every_kind_round_trips),
		cmocka_unit_test(test_proto__topic_malformed_is_invalid),
		cmocka_unit_test(test_proto__topic_format_refuses_invalid),
		cmocka_unit_test(test_proto__job_id_rules),
		cmocka_unit_test(test_proto__error_codes_are_one_stable_table),
		cmocka_unit_test(test_proto__status_names),
		cmocka_unit_test(test_proto__base64_vectors_and_strictness),
		cmocka_unit_test(test_proto__json_garbage_is_invalid_json),
		cmocka_unit_test(test_proto__oversize_and_deep_payloads),
		cmocka_unit_test(test_proto__next_get),
		cmocka_unit_test(test_proto__update_round_trip),
		cmocka_unit_test(test_proto__update_rejects_bad_fields),
		cmocka_unit_test(test_proto__update_encoder_refuses_invalid),
		cmocka_unit_test(test_proto__create_round_trip),
		cmocka_unit_test(test_proto__create_rejects_bad_fields),
		cmocka_unit_test(test_proto__commit_round_trip_and_bad_fields),
		cmocka_unit_test(test_proto__execution_round_trip),
		cmocka_unit_test(test_proto__execution_rejects_bad_fields),
		cmocka_unit_test(test_proto__replies_round_trip),
		cmocka_unit_test(test_proto__rejection_round_trip),
		cmocka_unit_test(test_proto__custody_messages_are_exact),
		cmocka_unit_test(test_proto__custody_sign_verify_every_key),
		cmocka_unit_test(test_proto__custody_end_to_end_through_the_codec),
		cmocka_unit_test(test_proto__custody_docs_worked_example),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
