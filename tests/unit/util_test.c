/* Unit tests for cf_util: crash-safe files, staging directories, names, passphrases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_util.h"

static char tmp[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/cf-util-XXXXXX");
	return mkdtemp(tmp) ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	return cf_rmtree(tmp);
}

static void
test_util__atomic_write_sets_mode_and_replaces(void **state)
{
	char path[128], *data = NULL;
	size_t len;
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/f", tmp);
	umask(022);
	assert_int_equal(cf_file_write_atomic(path, "one", 3, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(cf_file_write_atomic(path, "second", 6, 0644), 0);
	assert_int_equal(cf_file_read(&data, &len, path, 100), 0);
	assert_int_equal(len, 6);
	assert_string_equal(data, "second");
	free(data);
}

static void
test_util__create_new_refuses_existing(void **state)
{
	char path[128], *data = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%s/g", tmp);
	assert_int_equal(cf_file_create_new(path, "a", 1, 0600), 0);
	assert_int_equal(cf_file_create_new(path, "b", 1, 0600), CF_EEXISTS);
	assert_int_equal(cf_file_read(&data, NULL, path, 100), 0);
	assert_string_equal(data, "a");
	free(data);
}

static void
test_util__read_limits(void **state)
{
	char path[128], *data = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%s/missing", tmp);
	assert_int_equal(cf_file_read(&data, NULL, path, 100), CF_ENOTFOUND);
	snprintf(path, sizeof(path), "%s/big", tmp);
	assert_int_equal(cf_file_write_atomic(path, "0123456789", 10, 0600), 0);
	assert_int_equal(cf_file_read(&data, NULL, path, 9), CF_EINVAL);
	assert_null(data);
	assert_int_equal(cf_file_read(&data, NULL, tmp, 100), CF_ERROR); /* a directory */
}

static void
test_util__staging_commit_onto_empty_dir_only(void **state)
{
	char target[128], staging[256], file[300];

	(void)state;
	snprintf(target, sizeof(target), "%s/target", tmp);
	assert_int_equal(mkdir(target, 0700), 0);
	assert_int_equal(cf_dir_missing_or_empty(target), 1);
	assert_int_equal(cf_staging_dir(staging, sizeof(staging), target), 0);
	snprintf(file, sizeof(file), "%s/x", staging);
	assert_int_equal(cf_file_write_atomic(file, "x", 1, 0600), 0);
	assert_int_equal(cf_staging_commit(staging, target), 0);
	snprintf(file, sizeof(file), "%s/x", target);
	assert_int_equal(access(file, F_OK), 0);
	/* Now target is not empty: a second commit onto it fails and leaves it alone. */
	assert_int_equal(cf_dir_missing_or_empty(target), 0);
	assert_int_equal(cf_staging_dir(staging, sizeof(staging), target), 0);
	assert_int_not_equal(cf_staging_commit(staging, target), 0);
	assert_int_equal(access(file, F_OK), 0);
	assert_int_equal(cf_rmtree(staging), 0);
	assert_int_equal(access(staging, F_OK), -1);
}

static void
test_util__names(void **state)
{
	char longname[CF_NAME_MAX + 2];

	(void)state;
	assert_true(cf_name_valid("thing", "sensor-1_a:b.c"));
	assert_false(cf_name_valid("thing", ""));
	assert_false(cf_name_valid("thing", "a b"));
	assert_non_null(strstr(cf_error_last(), "position 2"));
	assert_false(cf_name_valid("thing", "a/b"));
	assert_false(cf_name_valid("thing", "+"));
	assert_false(cf_name_valid("thing", "#"));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(cf_name_valid("thing", longname));
	longname[CF_NAME_MAX] = '\0';
	assert_true(cf_name_valid("thing", longname));
}

static void
test_util__passphrase_from_file(void **state)
{
	char path[128], *pass = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%s/pass", tmp);
	assert_int_equal(cf_file_write_atomic(path, "s3cret phrase\nignored\n", 22, 0600), 0);
	assert_int_equal(cf_passphrase_read(&pass, path, NULL, 0, 1), 0);
	assert_string_equal(pass, "s3cret phrase");
	cf_secret_free(pass, 0);
	assert_int_equal(cf_passphrase_read(&pass, path, NULL, 0, 20), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "too short"));
	assert_int_equal(cf_file_write_atomic(path, "\n", 1, 0600), 0);
	assert_int_equal(cf_passphrase_read(&pass, path, NULL, 0, 1), CF_EINVAL);
	assert_non_null(strstr(cf_error_last(), "empty"));
	snprintf(path, sizeof(path), "%s/nopass", tmp);
	assert_int_equal(cf_passphrase_read(&pass, path, NULL, 0, 1), CF_ENOTFOUND);
}

static void
test_util__time_format(void **state)
{
	char buf[32];

	(void)state;
	cf_time_format(buf, sizeof(buf), 0);
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	cf_time_format(buf, sizeof(buf), 1795420800);
	assert_string_equal(buf, "2026-11-23T08:00:00Z");
	assert_int_equal(cf_strfmt(buf, 4, "%s", "abcd"), CF_EINVAL);
	assert_int_equal(cf_strfmt(buf, 5, "%s", "abcd"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_util__atomic_write_sets_mode_and_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_util__create_new_refuses_existing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_util__read_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_util__staging_commit_onto_empty_dir_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_util__names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_util__passphrase_from_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_util__time_format, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
