/*
 * cf_memtrim — gives a long-running, mostly idle process's start-up pages
 * back (Linux): the page-table entries of clean pages of read-only private
 * file mappings (shared libraries' code and constants, the program's own),
 * and the free memory at the top and inside the malloc heap.
 *
 * A page of a read-only private file mapping that was never written is an
 * exact copy of the file: the kernel may drop it at any moment under
 * memory pressure and fault it in again from the page cache or the file.
 * cf_memtrim does that for this process only (madvise MADV_DONTNEED): the
 * pages stay in the page cache, shared with every other process, and the
 * ones the process touches again come back with a minor fault. A mapping
 * that holds any private page (Anonymous or Swap non-zero in smaps:
 * relocated RELRO data, a debugger's breakpoint) or is locked is left
 * alone, because MADV_DONTNEED would discard what was written there.
 * Nothing writable, shared or anonymous is ever touched. docs/agent.md,
 * "Memory".
 */
#ifndef CF_MEMTRIM_H
#define CF_MEMTRIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cf_error.h"

/* One mapping whose resident pages may be dropped. */
typedef struct {
	uintptr_t start;
	uintptr_t end;
	size_t rss_kib;     /* resident when scanned */
} cf_memtrim_range;

/*
 * Reads a /proc/PID/smaps listing from f and returns in *out (malloc()ed,
 * free(); NULL when *n is 0) the mappings that are safe to drop: r--p or
 * r-xp, backed by a file (inode != 0, a path starting with '/'), with
 * Anonymous and Swap both 0 kB and not locked (VmFlags without "lo"). A
 * mapping whose Anonymous or Swap line is missing is not safe (fails
 * closed). *skipped counts the read-only private file mappings refused for
 * those reasons. CF_ECORRUPT for a listing that is not smaps (a field
 * before any mapping, an unparsable mapping line).
 */
int cf_memtrim_scan(cf_memtrim_range **out, size_t *n, size_t *skipped, FILE *f) CF_MUST_CHECK;

typedef struct {
	size_t mappings;      /* mappings whose pages were dropped */
	size_t skipped;       /* read-only private file mappings left alone (written pages, locked) */
	size_t dropped_kib;   /* their resident size when scanned */
	long rss_before_kib;  /* VmRSS before and after (statm) */
	long rss_after_kib;
} cf_memtrim_stats;

/*
 * Trims this process: scans /proc/self/smaps (cf_memtrim_scan), drops the
 * safe mappings' pages (MADV_DONTNEED; one the kernel refuses counts as
 * skipped), then returns free heap memory (malloc_trim(0)). Meant for a
 * single-threaded moment: another thread could write a mapping (through
 * mprotect) between the scan and the drop. 0 with *out filled in;
 * CF_ERROR when smaps cannot be read (nothing is dropped then).
 */
int cf_memtrim(cf_memtrim_stats *out) CF_MUST_CHECK;

#endif
