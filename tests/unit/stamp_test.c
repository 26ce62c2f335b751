/* Unit tests for cf_stamp: message stamps round trip, tampering, keys and key files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cf_stamp.h"
#include "cf_util.h"

#define PRINCIPAL "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char tmp[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/cf-stamp-XXXXXX");
	return mkdtemp(tmp) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	return cf_rmtree(tmp);
}

static void
key_fixed(cf_stamp_key *k, unsigned char fill)
{
	memset(k->key, fill, sizeof(k->key));
}

static void
test_stamp__round_trip(void **state)
{
	char s[CF_STAMP_HEX_LEN + 1];
	cf_stamp_key k;

	(void)state;
	key_fixed(&k, 7);
	assert_int_equal(cf_stamp_compute(s, &k, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    "hello", 5), 0);
	assert_int_equal(strlen(s), CF_STAMP_HEX_LEN);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    "hello", 5), 0);
	/* Empty and NULL payloads are the same message. */
	assert_int_equal(cf_stamp_compute(s, &k, PRINCIPAL, "sensor-1", "t", NULL, 0), 0);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "t", "", 0), 0);
}

static void
test_stamp__tampering_rejected(void **state)
{
	char s[CF_STAMP_HEX_LEN + 1];
	cf_stamp_key k;
	const unsigned char payload[] = { 'a', 0, 'b' }; /* binary, with a NUL */

	(void)state;
	key_fixed(&k, 7);
	assert_int_equal(cf_stamp_compute(s, &k, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    payload, sizeof(payload)), 0);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    payload, sizeof(payload)), 0);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    payload, 2), CF_EREJECTED);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    "a\0c", 3), CF_EREJECTED);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "cf/things/sensor-1/u",
	    payload, sizeof(payload)), CF_EREJECTED);
	assert_int_equal(cf_stamp_verify(&k, s,
	    "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "sensor-1",
	    "cf/things/sensor-1/t", payload, sizeof(payload)), CF_EREJECTED);
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-2", "cf/things/sensor-1/t",
	    payload, sizeof(payload)), CF_EREJECTED);
	/* Field boundaries are part of the MAC: moving a newline does not keep the stamp. */
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1\ncf/things/sensor-1", "t",
	    payload, sizeof(payload)), CF_EREJECTED);
	s[0] = s[0] == '0' ? '1' : '0';
	assert_int_equal(cf_stamp_verify(&k, s, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    payload, sizeof(payload)), CF_EREJECTED);
	assert_int_equal(cf_stamp_verify(&k, NULL, PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    payload, sizeof(payload)), CF_EREJECTED);
	assert_int_equal(cf_stamp_verify(&k, "abc", PRINCIPAL, "sensor-1", "cf/things/sensor-1/t",
	    payload, sizeof(payload)), CF_EREJECTED);
}

static void
test_stamp__wrong_key_rejected(void **state)
{
	char s[CF_STAMP_HEX_LEN + 1];
	cf_stamp_key k, other;

	(void)state;
	key_fixed(&k, 7);
	key_fixed(&other, 7);
	other.key[CF_STAMP_KEY_LEN - 1] ^= 1;
	assert_int_equal(cf_stamp_compute(s, &k, PRINCIPAL, "c", "t", "p", 1), 0);
	assert_int_equal(cf_stamp_verify(&other, s, PRINCIPAL, "c", "t", "p", 1), CF_EREJECTED);
}

static void
test_stamp__key_file_created_0600_and_never_overwritten(void **state)
{
	char path[128], s1[CF_STAMP_HEX_LEN + 1], s2[CF_STAMP_HEX_LEN + 1], *before = NULL,
	    *after = NULL;
	cf_stamp_key k1, k2;
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/stamp.key", tmp);
	umask(0);
	assert_int_equal(cf_stamp_key_create(path), 0);
	umask(022);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(cf_file_read(&before, NULL, path, 4096), 0);
	assert_int_equal(cf_stamp_key_create(path), CF_EEXISTS);
	assert_int_equal(cf_file_read(&after, NULL, path, 4096), 0);
	assert_string_equal(before, after);
	assert_int_equal(cf_stamp_key_load(&k1, path), 0);
	assert_int_equal(cf_stamp_key_load(&k2, path), 0);
	assert_memory_equal(k1.key, k2.key, CF_STAMP_KEY_LEN);
	assert_int_equal(cf_stamp_compute(s1, &k1, PRINCIPAL, "c", "t", "p", 1), 0);
	assert_int_equal(cf_stamp_compute(s2, &k2, PRINCIPAL, "c", "t", "p", 1), 0);
	assert_string_equal(s1, s2);
	cf_stamp_key_wipe(&k1);
	assert_int_equal(k1.key[0] | k1.key[15] | k1.key[31], 0);
	free(before);
	free(after);
}

static void
test_stamp__two_keys_differ(void **state)
{
	char p1[128], p2[128];
	cf_stamp_key k1, k2;

	(void)state;
	snprintf(p1, sizeof(p1), "%s/k1", tmp);
	snprintf(p2, sizeof(p2), "%s/k2", tmp);
	assert_int_equal(cf_stamp_key_create(p1), 0);
	assert_int_equal(cf_stamp_key_create(p2), 0);
	assert_int_equal(cf_stamp_key_load(&k1, p1), 0);
	assert_int_equal(cf_stamp_key_load(&k2, p2), 0);
	assert_memory_not_equal(k1.key, k2.key, CF_STAMP_KEY_LEN);
}

static void
test_stamp__bad_key_files_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"\n",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",  /* 63 */
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0\n", /* 65 */
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg\n",
		"0123456789abcdef0123456789abcdef 123456789abcdef0123456789abcdef\n",
		" 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nextra\n",
	};
	char path[128];
	cf_stamp_key k;
	size_t i;

	(void)state;
	snprintf(path, sizeof(path), "%s/bad.key", tmp);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(cf_file_write_atomic(path, bad[i], strlen(bad[i]), 0600), 0);
		if (cf_stamp_key_load(&k, path) != CF_EINVAL)
			fail_msg("key file %zu was accepted", i);
	}
	/* Upper case hex and CRLF are fine. */
	assert_int_equal(cf_file_write_atomic(path,
	    "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 66, 0600), 0);
	assert_int_equal(cf_stamp_key_load(&k, path), 0);
	assert_int_equal(k.key[0], 0x01);
	assert_int_equal(k.key[7], 0xef);
	snprintf(path, sizeof(path), "%s/missing.key", tmp);
	assert_int_equal(cf_stamp_key_load(&k, path), CF_ENOTFOUND);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stamp__round_trip),
		cmocka_unit_test(test_stamp__tampering_rejected),
		cmocka_unit_test(test_stamp__wrong_key_rejected),
		cmocka_unit_test(test_stamp__key_file_created_0600_and_never_overwritten),
		cmocka_unit_test(test_stamp__two_keys_differ),
		cmocka_unit_test(test_stamp__bad_key_files_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
