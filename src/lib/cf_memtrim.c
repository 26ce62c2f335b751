/*
 * cf_memtrim — drops the resident pages of clean read-only private file
 * mappings of this process and trims the malloc heap (cf_memtrim.h says
 * why that is safe). The smaps scan is a pure function over text so that
 * its decisions can be tested on listings written by hand; cf_memtrim
 * applies it to /proc/self/smaps.
 */
#include "cf_memtrim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The mapping being read: its header, then what its fields said. */
typedef struct {
	int open;            /* a header was seen */
	int candidate;       /* r--p / r-xp of a file */
	int seen_anon, seen_swap;
	size_t anon_kib, swap_kib, rss_kib;
	int locked;
	uintptr_t start, end;
} mapping;

/* "Name:   123 kB" -> 123. */
static int
field_kib(size_t *out, const char *v, size_t lineno)
{
	char *end;
	unsigned long long x;

	while (*v == ' ' || *v == '\t')
		v++;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (end == v || errno != 0 || (*end != '\0' && strcmp(end, " kB") != 0)) {
		cf_error_set("smaps line %zu: not a size in kB", lineno);
		return CF_ECORRUPT;
	}
	*out = (size_t)x;
	return 0;
}

/* VmFlags is a list of two-letter codes; "lo" is VM_LOCKED. */
static int
flags_locked(const char *v)
{
	size_t len;

	while (*v != '\0') {
		while (*v == ' ' || *v == '\t')
			v++;
		len = strcspn(v, " \t\n");
		if (len == 2 && v[0] == 'l' && v[1] == 'o')
			return 1;
		v += len;
	}
	return 0;
}

/* Appends m to the result if it is safe to drop, else counts it as skipped. */
static int
finish(cf_memtrim_range **list, size_t *n, size_t *cap, size_t *skipped, const mapping *m)
{
	cf_memtrim_range *grown;

	if (!m->open || !m->candidate)
		return 0;
	if (!m->seen_anon || !m->seen_swap || m->anon_kib != 0 || m->swap_kib != 0 || m->locked) {
		(*skipped)++;
		return 0;
	}
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		if ((grown = realloc(*list, *cap * sizeof(**list))) == NULL) {
			cf_error_set("out of memory");
			return CF_ERROR;
		}
		*list = grown;
	}
	(*list)[*n].start = m->start;
	(*list)[*n].end = m->end;
	(*list)[*n].rss_kib = m->rss_kib;
	(*n)++;
	return 0;
}

/* A mapping line: "start-end perms offset dev inode [path]". */
static int
parse_header(mapping *m, const char *line, size_t lineno)
{
	uintmax_t start, end, offset, inode;
	unsigned dev_major, dev_minor;
	char perms[5];
	int used = 0;
	const char *path;

	if (sscanf(line, "%jx-%jx %4s %jx %x:%x %ju%n", &start, &end, perms, &offset, &dev_major,
	    &dev_minor, &inode, &used) != 7 || used == 0 || end <= start || strlen(perms) != 4) {
		cf_error_set("smaps line %zu: not a mapping", lineno);
		return CF_ECORRUPT;
	}
	path = line + used;
	while (*path == ' ' || *path == '\t')
		path++;
	memset(m, 0, sizeof(*m));
	m->open = 1;
	m->start = (uintptr_t)start;
	m->end = (uintptr_t)end;
	m->candidate = perms[0] == 'r' && perms[1] == '-' && (perms[2] == '-' || perms[2] == 'x') &&
	    perms[3] == 'p' && inode != 0 && path[0] == '/';
	return 0;
}

int
cf_memtrim_scan(cf_memtrim_range **out, size_t *n, size_t *skipped, FILE *f)
{
	cf_memtrim_range *list = NULL;
	size_t count = 0, cap = 0, lineno = 0, skip = 0, len;
	char *line = NULL, *colon, *dash;
	size_t line_cap = 0;
	mapping m;
	int r = CF_ERROR;

	*out = NULL;
	*n = 0;
	*skipped = 0;
	memset(&m, 0, sizeof(m));
	while (getline(&line, &line_cap, f) > 0) {
		lineno++;
		len = strcspn(line, "\n");
		line[len] = '\0';
		if (len == 0)
			continue;
		/* A mapping line starts with its hex address; a field with "Name:". */
		colon = strchr(line, ':');
		dash = strchr(line, '-');
		if (dash != NULL && (colon == NULL || dash < colon)) {
			if ((r = finish(&list, &count, &cap, &skip, &m)) != 0 ||
			    (r = parse_header(&m, line, lineno)) != 0)
				goto out;
			continue;
		}
		if (!m.open) {
			cf_error_set("smaps line %zu: a field before any mapping", lineno);
			r = CF_ECORRUPT;
			goto out;
		}
		if (colon == NULL) {
			cf_error_set("smaps line %zu: neither a mapping nor a field", lineno);
			r = CF_ECORRUPT;
			goto out;
		}
		*colon = '\0';
		r = 0;
		if (strcmp(line, "Rss") == 0)
			r = field_kib(&m.rss_kib, colon + 1, lineno);
		else if (strcmp(line, "Anonymous") == 0) {
			r = field_kib(&m.anon_kib, colon + 1, lineno);
			m.seen_anon = 1;
		} else if (strcmp(line, "Swap") == 0) {
			r = field_kib(&m.swap_kib, colon + 1, lineno);
			m.seen_swap = 1;
		} else if (strcmp(line, "VmFlags") == 0)
			m.locked = flags_locked(colon + 1);
		if (r != 0)
			goto out;
	}
	if (ferror(f)) {
		cf_error_set("smaps: read error");
		r = CF_ERROR;
		goto out;
	}
	if ((r = finish(&list, &count, &cap, &skip, &m)) != 0)
		goto out;
	*out = list;
	list = NULL;
	*n = count;
	*skipped = skip;
	r = 0;
out:
	free(line);
	free(list);
	return r;
}

/*
 * VmRSS in KiB from /proc/self/statm (resident pages, its second field), or
 * -1. Plain system calls, no stdio: after the trim, code that the idle
 * process does not run is better left unfaulted.
 */
static long
rss_kib(void)
{
	char buf[128], *p, *end;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long resident;
	ssize_t len;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0 || page <= 0)
		return -1;
	buf[len] = '\0';
	if ((p = strchr(buf, ' ')) == NULL)
		return -1;
	resident = strtoul(p + 1, &end, 10);
	if (end == p + 1)
		return -1;
	return (long)(resident * (unsigned long)(page / 1024));
}

int
cf_memtrim(cf_memtrim_stats *out)
{
	cf_memtrim_range *ranges = NULL;
	size_t n = 0, i;
	FILE *f;
	int r;

	memset(out, 0, sizeof(*out));
	out->rss_before_kib = rss_kib();
	if ((f = fopen("/proc/self/smaps", "re")) == NULL) {
		cf_error_set("/proc/self/smaps: %s", strerror(errno));
		return CF_ERROR;
	}
	r = cf_memtrim_scan(&ranges, &n, &out->skipped, f);
	fclose(f);
	if (r != 0)
		goto out;
	/* The heap first: its code is then not faulted in again after the drop. */
	(void)malloc_trim(0);
	for (i = 0; i < n; i++) {
		if (madvise((void *)ranges[i].start, ranges[i].end - ranges[i].start,
		    MADV_DONTNEED) != 0) {
			out->skipped++;
			continue;
		}
		out->mappings++;
		out->dropped_kib += ranges[i].rss_kib;
	}
	out->rss_after_kib = rss_kib();
	r = 0;
out:
	free(ranges);
	return r;
}
