/*
 * Fuzz target: the rotation/jobs protocol codec (cf_proto) fed with what a
 * device controls, a topic and a payload. Input: topic bytes, '\n', payload
 * bytes (no '\n': everything is the payload, under a fixed topic).
 *
 * Besides "no crash", it checks invariants:
 *  - a topic that parses formats back to the same bytes;
 *  - every payload a decoder accepts re-encodes, and the encoding decodes
 *    to the same message and encodes to the same bytes again (a fixpoint).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_base64.h"
#include "cf_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_topic(const char *topic, size_t len)
{
	char back[CF_PROTO_TOPIC_MAX + 1];
	char msg[CF_PROTO_CUSTODY_MAX];
	cf_proto_topic t;

	if (cf_proto_topic_parse(&t, "cf/", topic, len) != 0)
		return;
	if (cf_proto_topic_format(back, sizeof(back), "cf/", &t) != 0 || strlen(back) != len ||
	    memcmp(back, topic, len) != 0)
		abort();
	if (t.kind == CF_PROTO_UPDATE &&
	    cf_proto_custody_create_msg(msg, t.job_id, t.thing, topic, len) != 0)
		abort();
}

/*
 * Decode, encode, decode, encode: the two encodings must be identical.
 * clear is the message's _clear function or a no-op.
 */
#define ROUND_TRIP(type, decode, encode, clear) do {                                    \
		type a_, b_;                                                           \
		char *e1_ = NULL, *e2_ = NULL;                                         \
		memset(&a_, 0, sizeof(a_));                                            \
		memset(&b_, 0, sizeof(b_));                                            \
		if (decode(&a_, payload, len, &why) == 0) {                            \
			if (encode(&e1_, &a_) != 0)                                     \
				abort();                                                \
			if (decode(&b_, e1_, strlen(e1_), &why) != 0)                   \
				abort();                                                \
			if (encode(&e2_, &b_) != 0 || strcmp(e1_, e2_) != 0)            \
				abort();                                                \
		} else if (why != CF_PROTO_INVALID_JSON && why != CF_PROTO_INVALID_REQUEST) { \
			abort();                                                        \
		}                                                                      \
		clear(&a_);                                                            \
		clear(&b_);                                                            \
		free(e1_);                                                             \
		free(e2_);                                                             \
	} while (0)

#define NO_CLEAR(p) ((void)(p))

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	const char *topic = "cf/things/fuzz/certificate/create";
	size_t topic_len = strlen(topic), len = size;
	const void *payload = data;
	cf_proto_code why = CF_PROTO_CODE__COUNT;
	unsigned char *raw = NULL;
	size_t raw_len;
	char *copy;

	if (nl != NULL) {
		topic = (const char *)data;
		topic_len = (size_t)(nl - data);
		payload = nl + 1;
		len = size - topic_len - 1;
	}
	check_topic(topic, topic_len);

	ROUND_TRIP(cf_proto_next_get, cf_proto_decode_next_get, cf_proto_encode_next_get, NO_CLEAR);
	ROUND_TRIP(cf_proto_update, cf_proto_decode_update, cf_proto_encode_update,
	    cf_proto_update_clear);
	ROUND_TRIP(cf_proto_create, cf_proto_decode_create, cf_proto_encode_create,
	    cf_proto_create_clear);
	ROUND_TRIP(cf_proto_commit, cf_proto_decode_commit, cf_proto_encode_commit,
	    cf_proto_commit_clear);
	ROUND_TRIP(cf_proto_execution, cf_proto_decode_execution, cf_proto_encode_execution,
	    NO_CLEAR);
	ROUND_TRIP(cf_proto_update_accepted, cf_proto_decode_update_accepted,
	    cf_proto_encode_update_accepted, NO_CLEAR);
	ROUND_TRIP(cf_proto_create_accepted, cf_proto_decode_create_accepted,
	    cf_proto_encode_create_accepted, cf_proto_create_accepted_clear);
	ROUND_TRIP(cf_proto_commit_accepted, cf_proto_decode_commit_accepted,
	    cf_proto_encode_commit_accepted, NO_CLEAR);
	ROUND_TRIP(cf_proto_rejection, cf_proto_decode_rejection, cf_proto_encode_rejection,
	    NO_CLEAR);

	/* The payload as base64 text: what decodes re-encodes to the same text. */
	if (len < 8192 && cf_base64_decode(&raw, &raw_len, payload, len) == 0) {
		if (cf_base64_encode(&copy, raw, raw_len) != 0 || strlen(copy) != len ||
		    memcmp(copy, payload, len) != 0)
			abort();
		free(copy);
		free(raw);
	}
	return 0;
}
