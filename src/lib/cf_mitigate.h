/*
 * cf_mitigate — mitigation actions on audit findings (DESIGN §8): the same
 * calls for `certfleet mitigate` and certfleetd's automatic rules.
 *
 * Every action is idempotent (doing it twice is a "noop" the second time)
 * and every execution is recorded in mitigation_actions with its outcome.
 * A suppressed finding is never mitigated: CF_ESTATE, nothing done, nothing
 * recorded. notify queues the finding in the notification outbox (certfleetd
 * delivers it). rotate needs certfleetd (a rotation job through POST
 * /v1/jobs): the caller performs it and records it with cf_mitigate_record.
 */
#ifndef CF_MITIGATE_H
#define CF_MITIGATE_H

#include "cf_ca.h"
#include "cf_store.h"

#define CF_MITIGATE_QUARANTINE_GROUP "quarantine" /* default; config key quarantine_group */

typedef enum {
	CF_MITIGATE_DEACTIVATE,    /* the finding's device certificate -> INACTIVE */
	CF_MITIGATE_REVOKE,        /* ... -> REVOKED, CRL rewritten (the plugin then kicks it) */
	CF_MITIGATE_DEACTIVATE_CA, /* the finding's CA -> INACTIVE */
	CF_MITIGATE_QUARANTINE,    /* the finding's thing -> the quarantine group */
	CF_MITIGATE_ROTATE,        /* a rotation job for the thing (certfleetd) */
	CF_MITIGATE_NOTIFY,        /* a notification in the outbox (certfleetd delivers it) */
	CF_MITIGATE__COUNT
} cf_mitigate_action;

/* "deactivate", "revoke", "deactivate-ca", "quarantine", "rotate", "notify"; "unknown". */
const char *cf_mitigate_action_name(cf_mitigate_action a);
int cf_mitigate_action_parse(cf_mitigate_action *out, const char *name) CF_MUST_CHECK;

/*
 * Loads finding id into out and refuses (CF_ESTATE, "suppressed") a
 * finding stored as suppressed or covered by a live suppression now.
 * CF_ENOTFOUND for an unknown finding.
 */
int cf_mitigate_finding(cf_store *st, cf_finding_rec *out, int64_t id) CF_MUST_CHECK;

/*
 * What a finding is about: its device certificate (full id, "" if none),
 * CA id ("" if none) and thing ("" if none). A THING or CLIENT_ID finding
 * names the thing; a DEVICE_CERTIFICATE one its certificate and that
 * certificate's thing (not its CA: a CA is deactivated only on a
 * CA_CERTIFICATE finding). CF_EINVAL for a POLICY finding and the like.
 */
int cf_mitigate_target(cf_store *st, char cert[CF_ID_LEN + 1], char ca[CF_ID_LEN + 1],
    char thing[CF_NAME_MAX + 1], const cf_finding_rec *f) CF_MUST_CHECK;

/*
 * Runs a local action (deactivate, revoke, deactivate-ca, quarantine,
 * notify) on finding id and records it (out, may be NULL, gets the record). 0 when it
 * succeeded or was already done ("noop"); otherwise the action's error,
 * recorded as "failed" (except for a suppressed or unknown finding, and an
 * action that needs certfleetd: CF_EINVAL, not recorded).
 */
int cf_mitigate_apply(cf_ca *ca, cf_mitigation_rec *out, int64_t id, cf_mitigate_action a,
    const char *quarantine_group) CF_MUST_CHECK;

/* Records an action the caller performed: status "succeeded", "noop" or "failed". */
int cf_mitigate_record(cf_store *st, cf_mitigation_rec *out, int64_t id, cf_mitigate_action a,
    const char *status, const char *detail) CF_MUST_CHECK;

#endif
