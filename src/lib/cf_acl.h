/*
 * cf_acl — who a broker client is and which topics it may use, as pure
 * functions (the Mosquitto plugin is only the adapter; docs/broker.md).
 *
 * After authentication the plugin sets the client's username to
 * "<kind>:<certificate id>" (cf_acl_principal_format); every later decision
 * (ACL, stamping, kicking) parses it back (cf_acl_principal_parse), so the
 * plugin keeps no per-client table. Kinds:
 *
 *   device   a thing's certificate: only <prefix>things/<client id>/...
 *   claim    a provisioning claim certificate: only
 *            <prefix>provisioning/<template>/provision (publish) and its
 *            replies to its own client id, .../provision/<client id>/accepted
 *            and /rejected (subscribe, receive)
 *   service  certfleetd: everything
 *
 * Facts about a principal that are not in its certificate travel as flags
 * beside the kind (cf_acl_check_flags): CF_ACL_QUARANTINED narrows a device
 * to its rotation topics, <prefix>things/<client id>/jobs/... and
 * .../certificate/... (docs/audit.md, "Mitigation"). The plugin decides the
 * flag (group membership); the rule itself is data here.
 *
 * Topics and filters are compared literally: MQTT gives "..", "." or empty
 * levels no meaning, so "cf/things/a/../b" is simply a topic under
 * "cf/things/a/" and is allowed for client a (it cannot reach thing b's
 * subscribers, whose filters start with "cf/things/b/").
 */
#ifndef CF_ACL_H
#define CF_ACL_H

#include <stddef.h>

#include "cf_error.h"
#include "cf_pki.h"
#include "cf_store.h"

#define CF_ACL_TOPIC_MAX 1024 /* longer topics and filters are always denied */
#define CF_ACL_USERNAME_MAX (16 + CF_ID_LEN) /* "service:" + id, with room to spare */

typedef enum {
	CF_KIND_DEVICE,
	CF_KIND_CLAIM,
	CF_KIND_SERVICE,
	CF_KIND__COUNT
} cf_acl_kind;

/* Principal flags (a bit set). */
#define CF_ACL_QUARANTINED 0x1u /* a device in the quarantine group: rotation topics only */

typedef enum {
	CF_ACL_READ,      /* receive a message published on a topic */
	CF_ACL_PUBLISH,   /* publish to a topic */
	CF_ACL_SUBSCRIBE, /* subscribe to (or unsubscribe from) a filter */
} cf_acl_access;

typedef struct {
	cf_acl_kind kind;
	char id[CF_ID_LEN + 1]; /* certificate id: 64 lowercase hex characters */
} cf_principal;

/* "device", "claim", "service"; "unknown" for anything else. Static string. */
const char *cf_acl_kind_name(cf_acl_kind kind);

/*
 * Parses a username "<kind>:<64 lowercase hex>" into out. CF_EINVAL (with
 * a message) for anything else: NULL, an unknown kind, a wrong-length or
 * non-hex id, trailing bytes.
 */
int cf_acl_principal_parse(cf_principal *out, const char *username) CF_MUST_CHECK;

/* Formats p as "<kind>:<id>" into out. CF_EINVAL if p is not valid or out is too small. */
int cf_acl_principal_format(char *out, size_t out_len, const cf_principal *p) CF_MUST_CHECK;

/*
 * 0 if prefix is a usable topic prefix: "" or a string ending in '/' with
 * no '+', '#' or leading '$', at most 256 bytes. CF_EINVAL with a message
 * otherwise.
 */
int cf_acl_prefix_check(const char *prefix) CF_MUST_CHECK;

/*
 * Decides whether a client of this kind and client id may use topic (a
 * filter for CF_ACL_SUBSCRIBE) of topic_len bytes. 0 if allowed,
 * CF_EREJECTED (with a message naming the rule) if denied. Denied for
 * every kind: an empty topic, one longer than CF_ACL_TOPIC_MAX, one
 * containing NUL. For device and claim kinds also: a client id that is
 * empty or contains '/', '+', '#' or NUL (it could not be a thing name).
 */
int cf_acl_check_n(cf_acl_kind kind, const char *client_id, const char *prefix,
    const char *topic, size_t topic_len, cf_acl_access access) CF_MUST_CHECK;

/*
 * A set of thing names (the quarantine group's members) that an ACL check
 * can ask without a query: a hash index over a sorted copy. Built once per
 * change, read on every check (one hash and at most a few compares; an
 * empty set costs one test).
 */
typedef struct cf_acl_names cf_acl_names;

/* A set of copies of names[0..n) (NULL with n == 0: empty). *out is the caller's; CF_ERROR out of memory. */
int cf_acl_names_new(cf_acl_names **out, char *const *names, size_t n) CF_MUST_CHECK;
/* 1 if name is in set; 0 for a NULL set or name. */
int cf_acl_names_has(const cf_acl_names *set, const char *name);
/* How many names; 0 for NULL. */
size_t cf_acl_names_count(const cf_acl_names *set);
/* The i-th name in strcmp order (borrowed from set), i < count. */
const char *cf_acl_names_at(const cf_acl_names *set, size_t i);
/* Accepts NULL. */
void cf_acl_names_free(cf_acl_names *set);

/* A client-chosen string made safe for one log line: printable ASCII, at most 128 characters + "...". */
#define CF_ACL_PRINTABLE_MAX (128 + 4)
const char *cf_acl_printable(char out[CF_ACL_PRINTABLE_MAX], const char *s);

/*
 * Decides whether a TLS client certificate (by id) may connect as a device
 * with this client id, at time now (docs/broker.md, CONNECT steps 3-7): it
 * is registered, ACTIVE, within its validity, its issuing CA and every CA
 * above it are ACTIVE, and it is attached to the thing named client_id.
 * 0 if accepted; CF_EREJECTED with the reason in reason (client-chosen
 * strings sanitised); another negative code when the registry failed
 * (reason says so; the caller may reopen the store).
 */
int cf_acl_authenticate_device(cf_store *st, const char *cert_id, const char *client_id,
    int64_t now, char *reason, size_t reason_len) CF_MUST_CHECK;

/*
 * The broker's CONNECT decision (docs/broker.md): cf_acl_authenticate_device,
 * and also (docs/provisioning.md) a PENDING_ACTIVATION certificate of the
 * client id's thing (a provisioned device connecting for the first time:
 * certfleetd activates it) as a device, and an ACTIVE certificate attached
 * to no thing that is an ENABLED claim as a claim (a DISABLED one is
 * refused: "claim certificate <id> is DISABLED"). *out is the kind.
 */
int cf_acl_authenticate(cf_store *st, cf_acl_kind *out, const char *cert_id,
    const char *client_id, int64_t now, char *reason, size_t reason_len) CF_MUST_CHECK;

/* cf_acl_check_n for a NUL-terminated topic (NULL is denied). */
int cf_acl_check(cf_acl_kind kind, const char *client_id, const char *prefix,
    const char *topic, cf_acl_access access) CF_MUST_CHECK;

/*
 * cf_acl_check_n with principal flags (CF_ACL_*; 0 is cf_acl_check_n).
 * CF_ACL_QUARANTINED: a device may use only topics and filters below
 * <prefix>things/<client id>/jobs/ and <prefix>things/<client id>/certificate/
 * (wildcards only after those levels); it changes nothing for the other
 * kinds (they are not things). Unknown flag bits are denied.
 */
int cf_acl_check_flags_n(cf_acl_kind kind, unsigned flags, const char *client_id,
    const char *prefix, const char *topic, size_t topic_len, cf_acl_access access) CF_MUST_CHECK;

/* cf_acl_check_flags_n for a NUL-terminated topic (NULL is denied). */
int cf_acl_check_flags(cf_acl_kind kind, unsigned flags, const char *client_id,
    const char *prefix, const char *topic, cf_acl_access access) CF_MUST_CHECK;

#endif
