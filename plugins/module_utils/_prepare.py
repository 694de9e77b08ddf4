# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Pure logic of prepare after the plan: what creating, storing and verifying each new key did to
the plan. The phase of a user follows what is recorded in its IAM tags (_rotation.PHASES):
key_created, key_stored, then key_verified and distributing. Results of the tasks come in as plain
dicts (never a secret: the caller passes key ids only). No AWS call, no boto3 import."""


def created(created_result):
    """The update of a user after CreateAccessKey (and storing): its new key id, or back at planned
    when no key was created. created_result: failed, created, access_key_id."""
    made = not created_result.get("failed") and created_result.get("created")
    new_id = created_result.get("access_key_id") if made else None
    return {"new_key_id": new_id, "target_key_id": new_id, "phase": "key_created" if new_id else "planned"}


def stored():
    return {"phase": "key_stored"}


def new_key_lost(p):
    """The update of a user whose new key could not be stored or recorded, and was deleted."""
    return {"new_key_id": None, "target_key_id": None, "deleted_key_id": p["new_key_id"], "phase": "rolled_back"}


def create_problem(user, created_result, recorded_result, stored_result):
    """Why no key could be created and stored for a user, or None. Each result: failed, msg (and for
    created_result: created, access_key_id); recorded and stored are None when skipped."""
    if created_result.get("failed"):
        problem = created_result.get("msg", "access_key failed")
    elif not created_result.get("created"):
        problem = ("an Active key younger than the old one appeared (%s): another run may be rotating %s"
                   % (created_result.get("access_key_id"), user))
    elif recorded_result and recorded_result.get("failed"):
        problem = "recording the new key %s failed: %s" % (created_result["access_key_id"],
                                                           recorded_result.get("msg", "rotation_state failed"))
    elif stored_result and stored_result.get("failed"):
        problem = stored_result.get("msg", "key_store failed")
    else:
        return None
    return "IAM user %s: %s" % (user, problem)


def store_mismatch(verify_results, users, verifying):
    """A message when the store holds other keys than the ones this run verifies (another run may be
    writing to it), else None. verify_results: access_key_verify's results (access_key_id each)."""
    held = [r["access_key_id"] for r in verify_results]
    expected = [users[u]["new_key_id"] for u in verifying]
    if sorted(held) == sorted(expected):
        return None
    return ("The secret store holds %s but this run created %s: another run may be writing to it."
            % (", ".join(held), ", ".join(expected)))


def verified(users, verifying, verify_results):
    """{user: update} for the users whose new key authenticated: key_verified, with how long it took."""
    out = {}
    for r in verify_results:
        for u in verifying:
            if users[u]["new_key_id"] == r["access_key_id"]:
                out[u] = {"phase": "key_verified", "verify_seconds": r["seconds"], "verify_attempts": r["attempts"]}
    return out


def distributing(verifying):
    """{user: update} once the rollout of their new keys is recorded."""
    return dict((u, {"phase": "distributing"}) for u in verifying)
