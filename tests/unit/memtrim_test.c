/*
 * Unit tests for cf_memtrim: which mappings the smaps scan lets go (and
 * which it must never: written pages of read-only private mappings, locked,
 * swapped, anonymous, shared, writable), and a live trim of this process
 * that drops a file mapping's pages without changing a byte anywhere.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "cf_memtrim.h"

#define FIELDS(rss, anon, swap, flags) \
	"Size:                 64 kB\n" \
	"Rss:                  " #rss " kB\n" \
	"Pss:                   1 kB\n" \
	"Anonymous:            " #anon " kB\n" \
	"Swap:                 " #swap " kB\n" \
	"VmFlags: " flags "\n"

static const char listing[] =
    /* 0: library code, clean: dropped */
    "7f0000000000-7f0000010000 r-xp 00001000 08:01 1234 /usr/lib/libcrypto.so.3\n"
    FIELDS(40, 0, 0, "rd ex mr mw me")
    /* RELRO: read-only now, but relocated (private written pages): never */
    "7f0000010000-7f0000020000 r--p 00020000 08:01 1234 /usr/lib/libcrypto.so.3\n"
    FIELDS(16, 16, 0, "rd mr mw me ac")
    /* 1: constants, clean, a path with spaces: dropped */
    "7f0000020000-7f0000030000 r--p 00030000 08:01 99 /opt/my lib/libx.so (deleted)\n"
    FIELDS(8, 0, 0, "rd mr mw me")
    /* .data: writable */
    "7f0000030000-7f0000040000 rw-p 00040000 08:01 1234 /usr/lib/libcrypto.so.3\n"
    FIELDS(12, 0, 0, "rd wr mr mw me ac")
    /* shared file mapping */
    "7f0000040000-7f0000050000 r--s 00000000 08:01 555 /var/cache/file\n"
    FIELDS(4, 0, 0, "rd sh mr mw me")
    /* anonymous read-only (an mprotect()ed buffer) */
    "7f0000050000-7f0000060000 r--p 00000000 00:00 0 \n"
    FIELDS(4, 4, 0, "rd mr mw me ac")
    /* vdso: no file */
    "7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]\n"
    FIELDS(8, 0, 0, "rd ex mr mw me de")
    /* a written page swapped out: never */
    "7f0000060000-7f0000070000 r--p 00000000 08:01 77 /usr/lib/liby.so\n"
    FIELDS(0, 0, 8, "rd mr mw me")
    /* locked: never */
    "7f0000070000-7f0000080000 r-xp 00000000 08:01 78 /usr/lib/libz.so\n"
    FIELDS(64, 0, 0, "rd ex mr mw me lo")
    /* no Anonymous line: not provably clean, never */
    "7f0000080000-7f0000090000 r-xp 00000000 08:01 79 /usr/lib/libw.so\n"
    "Rss:                   4 kB\n"
    "Swap:                  0 kB\n";

static void
test_memtrim__scan_keeps_only_clean_readonly_private_file_mappings(void **state)
{
	cf_memtrim_range *r = NULL;
	size_t n = 0, skipped = 0;
	FILE *f = fmemopen((void *)listing, sizeof(listing) - 1, "r");

	(void)state;
	assert_non_null(f);
	assert_int_equal(cf_memtrim_scan(&r, &n, &skipped, f), 0);
	fclose(f);
	assert_int_equal(n, 2);
	assert_true(r[0].start == (uintptr_t)0x7f0000000000);
	assert_true(r[0].end == (uintptr_t)0x7f0000010000);
	assert_int_equal(r[0].rss_kib, 40);
	assert_true(r[1].start == (uintptr_t)0x7f0000020000);
	assert_int_equal(r[1].rss_kib, 8);
	/* RELRO (written), swapped, locked, no Anonymous line */
	assert_int_equal(skipped, 4);
	free(r);
}

static void
scan_fails(const char *text, const char *what)
{
	cf_memtrim_range *r = (cf_memtrim_range *)1;
	size_t n = 7, skipped = 7;
	FILE *f = fmemopen((void *)text, strlen(text), "r");

	assert_non_null(f);
	assert_int_equal(cf_memtrim_scan(&r, &n, &skipped, f), CF_ECORRUPT);
	fclose(f);
	assert_null(r);
	assert_int_equal(n, 0);
	assert_non_null(strstr(cf_error_last(), what));
}

static void
test_memtrim__scan_refuses_what_is_not_smaps(void **state)
{
	(void)state;
	scan_fails("Rss: 4 kB\n", "line 1: a field before any mapping");
	scan_fails("7f00-7f10 r-xp 0 08:01\nRss: 4 kB\n", "line 1: not a mapping");
	scan_fails("7f10-7f00 r-xp 00000000 08:01 1 /l\n", "line 1: not a mapping");
	scan_fails("7f00-7f10 r-xp 00000000 08:01 1 /l\nAnonymous: none\n", "line 2: not a size");
	scan_fails("7f00-7f10 r-xp 00000000 08:01 1 /l\nAnonymous: 0 MB\n", "line 2: not a size");
	scan_fails("7f00-7f10 r-xp 00000000 08:01 1 /l\njunk\n", "line 2: neither");
}

static void
test_memtrim__scan_of_nothing_is_empty(void **state)
{
	cf_memtrim_range *r = NULL;
	size_t n = 1, skipped = 1;
	FILE *f = fmemopen((void *)"\n", 1, "r");

	(void)state;
	assert_int_equal(cf_memtrim_scan(&r, &n, &skipped, f), 0);
	fclose(f);
	assert_null(r);
	assert_int_equal(n, 0);
	assert_int_equal(skipped, 0);
}

/* Rss and Anonymous (kB) of the mapping that starts at addr, from /proc/self/smaps. */
static void
mapping_kib(const void *addr, long *rss, long *anon)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[4096], want[32];
	int in = 0;

	assert_non_null(f);
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)addr);
	*rss = *anon = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strchr(line, '-') != NULL && strchr(line, '-') < strchr(line, ':'))
			in = strncmp(line, want, strlen(want)) == 0;
		else if (in && strncmp(line, "Rss:", 4) == 0)
			*rss = strtol(line + 4, NULL, 10);
		else if (in && strncmp(line, "Anonymous:", 10) == 0)
			*anon = strtol(line + 10, NULL, 10);
	}
	fclose(f);
	assert_true(*rss >= 0 && *anon >= 0);
}

static void
test_memtrim__live_drops_clean_pages_and_changes_no_byte(void **state)
{
	char path[] = "/tmp/cf-memtrim-XXXXXX";
	long page = sysconf(_SC_PAGESIZE), rss, anon;
	size_t len = 4 * (size_t)page, i;
	unsigned char *file_buf, *clean, *relro, *anonro;
	volatile unsigned sum = 0;
	cf_memtrim_stats st;
	int fd;

	(void)state;
	file_buf = malloc(len);
	assert_non_null(file_buf);
	for (i = 0; i < len; i++)
		file_buf[i] = (unsigned char)(i * 7 + 3);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, file_buf, len), (ssize_t)len);
	assert_int_equal(fsync(fd), 0);

	/* Library code: read-only, private, every page faulted in. */
	clean = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(clean != MAP_FAILED);
	for (i = 0; i < len; i += (size_t)page)
		sum += clean[i];
	/* RELRO: private, written (copy-on-write), then made read-only. */
	relro = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(relro != MAP_FAILED);
	memset(relro + page, 0xAB, 16);
	assert_int_equal(mprotect(relro, len, PROT_READ), 0);
	/* An anonymous buffer made read-only. */
	anonro = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(anonro != MAP_FAILED);
	memset(anonro, 0x5C, len);
	assert_int_equal(mprotect(anonro, len, PROT_READ), 0);

	mapping_kib(clean, &rss, &anon);
	assert_int_equal(rss, len / 1024);
	assert_int_equal(anon, 0);
	mapping_kib(relro, &rss, &anon);
	assert_true(anon > 0);

	assert_int_equal(cf_memtrim(&st), 0);
	assert_true(st.mappings >= 1);
	assert_true(st.skipped >= 1);   /* at least relro (and this program's own RELRO) */
	assert_true(st.dropped_kib >= len / 1024);
	assert_true(st.rss_before_kib > 0 && st.rss_after_kib > 0);
	assert_true(st.rss_after_kib < st.rss_before_kib);

	/* The clean mapping's pages are gone from this process ... */
	mapping_kib(clean, &rss, &anon);
	assert_int_equal(rss, 0);
	/* ... and come back from the file unchanged. */
	assert_memory_equal(clean, file_buf, len);
	/* The written page of the read-only private mapping survived. */
	mapping_kib(relro, &rss, &anon);
	assert_true(anon > 0);
	for (i = 0; i < 16; i++)
		assert_int_equal(relro[page + (long)i], 0xAB);
	assert_memory_equal(relro, file_buf, (size_t)page);
	for (i = 0; i < len; i++)
		assert_int_equal(anonro[i], 0x5C);
	(void)sum;

	assert_int_equal(munmap(clean, len), 0);
	assert_int_equal(munmap(relro, len), 0);
	assert_int_equal(munmap(anonro, len), 0);
	close(fd);
	unlink(path);
	free(file_buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memtrim__scan_keeps_only_clean_readonly_private_file_mappings),
		cmocka_unit_test(test_memtrim__scan_refuses_what_is_not_smaps),
		cmocka_unit_test(test_memtrim__scan_of_nothing_is_empty),
		cmocka_unit_test(test_memtrim__live_drops_clean_pages_and_changes_no_byte),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
