/*
 * Fuzz target: a job's targets and configuration JSON (cf_jobspec), which
 * certfleetd takes from API clients. The first byte picks the parser (even:
 * targets, odd: configuration), the rest is the JSON text. Besides "no
 * crash": whatever parses must print canonically, parse again, and print
 * the same text (parse(dump(x)) == x).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_jobspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
targets_check(const char *text)
{
	cf_jobspec_targets a, b;
	char *d1 = NULL, *d2 = NULL;

	if (cf_jobspec_targets_parse(&a, text) != 0)
		return;
	if (cf_jobspec_targets_dump(&d1, &a) != 0 || cf_jobspec_targets_parse(&b, d1) != 0 ||
	    cf_jobspec_targets_dump(&d2, &b) != 0 || strcmp(d1, d2) != 0)
		abort();
	free(d1);
	free(d2);
	cf_jobspec_targets_clear(&a);
	cf_jobspec_targets_clear(&b);
}

static void
config_check(const char *text)
{
	cf_jobspec_config a, b;
	char *d1 = NULL, *d2 = NULL;

	if (cf_jobspec_config_parse(&a, text) != 0)
		return;
	if (cf_jobspec_config_dump(&d1, &a) != 0 || cf_jobspec_config_parse(&b, d1) != 0 ||
	    cf_jobspec_config_dump(&d2, &b) != 0 || strcmp(d1, d2) != 0)
		abort();
	free(d1);
	free(d2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (size < 1 || (text = malloc(size)) == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	if (data[0] % 2 == 0)
		targets_check(text);
	else
		config_check(text);
	free(text);
	return 0;
}
