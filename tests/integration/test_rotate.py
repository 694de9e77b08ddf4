"""The rotation (role rekey.aws.rotate, playbooks/rotate.yml) for real: ansible-playbook against
three SSH hosts of the test fleet whose demo apps call STS through the strict endpoint, with the
prober polling every app. IAM state is read out of band; hosts are read inside their namespaces."""
from __future__ import annotations

import configparser
import json
import os
from pathlib import Path

import pytest

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, demo_consumer, everywhere, sts_check_consumer
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts, sshd"),
]

REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = "/etc/demoapp/credentials"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("rotate"), 3) as made:
        yield made


@pytest.fixture
def clean(lab):
    lab.ep.clear_faults()
    lab.ep.reset_counts()
    yield lab
    lab.ep.clear_faults()


def host_secret(lab, host, path=CREDENTIALS, profile="default"):
    parser = configparser.ConfigParser()
    parser.read_string(lab.fleet.exec(host, f"cat {path}").stdout)
    return parser.get(profile, "aws_secret_access_key")


def leftovers_of(lab, run_report):
    """Backups of this run still on any host."""
    run_id = run_report["run_id"]
    return [f for host in lab.hosts for f in lab.files(host, f"/var/lib/rekey-aws/backups/{run_id}-*")]


def host_files(lab, host):
    """The credentials file's digest and mtime (to the nanosecond) and the backups on a host."""
    seen = lab.fleet.exec(host, f"sha256sum {CREDENTIALS} && stat -c %y {CREDENTIALS}").stdout
    return seen, lab.files(host, "/var/lib/rekey-aws/backups/*")


def explain(run):
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-8000:]}\nSTDERR:\n{run.stderr[-3000:]}"


# --- the happy path, then the re-run --------------------------------------------------------

@pytest.fixture(scope="module")
def rotated(lab):
    """One user rotated end to end on every host, with the prober running throughout."""
    lab.ep.clear_faults()
    user, old = lab.seed()
    prober = Prober(lab.fleet.app_urls, timeline=lab.dir / "e2e-timeline.jsonl", interval=PROBE_INTERVAL_S).start()
    try:
        run = lab.run(everywhere(lab, demo_consumer(user)), rotate_force=True)
    finally:
        totals = prober.stop()
    return user, old, run, totals


def test_rotation_end_to_end(lab, rotated):
    user, old, run, totals = rotated
    assert run.rc == 0, explain(run)
    report = run.report
    assert report["ok"] is True and report["message"] == "ok"
    [entry] = report["users"]
    new_id = entry["new_key_id"]
    assert entry["user_name"] == user and entry["old_key_id"] == old["AccessKeyId"]
    assert entry["result"] == "rotated" and entry["phase_reached"] == "old_retired"
    assert entry["hosts_updated"] == lab.hosts and not entry["hosts_failed"]

    # IAM, out of band: exactly the new key, Active; the old one is gone.
    assert lab.keys(user) == {new_id: "Active"}
    # Every app runs on the new key, from a 0600 file owned by the app's user; no backup is left.
    for host in lab.hosts:
        assert lab.app_key_id(host) == new_id
        assert lab.file_key_id(host) == new_id
        assert lab.stat(host, CREDENTIALS) == "600 rekeyapp"
    assert leftovers_of(lab, report) == []
    # Zero downtime: the apps restarted (connection gaps), but no probe was ever refused.
    assert totals["overall"]["auth_failures"] == 0, totals
    assert totals["overall"]["ok"] > 0
    # The secrets never reach the output; the store is a 0600 vault file.
    new_secret = host_secret(lab, lab.hosts[0])
    for secret in (old["SecretAccessKey"], new_secret):
        assert secret not in run.stdout and secret not in run.stderr
        assert secret not in json.dumps(run.results)
        assert secret not in json.dumps(report)
    store_file = lab.store_dir / f"{user}.vault"
    assert oct(store_file.stat().st_mode & 0o777) == "0o600"
    assert store_file.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert new_secret not in store_file.read_text()
    # set_stats for AWX and the printed summary.
    summary = run.task("rekey.aws.rotate : Summary")["result"]["msg"]
    assert any(user in line and "rotated" in line for line in summary)
    assert any(line.startswith("report: ") for line in summary)


def test_rerun_changes_nothing_and_makes_no_iam_write(lab, rotated):
    user, first = rotated[0], rotated[2]
    assert first.rc == 0, explain(first)
    lab.ep.reset_counts()
    run = lab.run(everywhere(lab, demo_consumer(user)))
    assert run.rc == 0, explain(run)
    assert run.changed == [], [r["task"] for r in run.changed]
    assert lab.ep.write_counts() == {}
    [entry] = run.report["users"]
    assert entry["result"] == "not_due" and "under rotate_max_age_days 90" in entry["reason"]
    # The only AWS calls read the user's keys.
    assert all(action.startswith(("iam:List", "iam:Get")) for action in lab.ep.counts()), lab.ep.counts()


# --- failures -------------------------------------------------------------------------------

def test_canary_failure_rolls_back_and_touches_no_other_host(clean):
    lab = clean
    user, old = lab.seed()
    canary, others = lab.hosts[0], lab.hosts[1:]
    lab.pin(canary, old["AccessKeyId"])  # the canary's app refuses any other key
    before = {h: lab.fleet.exec(h, f"cat {CREDENTIALS}; stat -c %Y {CREDENTIALS}").stdout for h in others}
    prober = Prober(lab.fleet.app_urls, interval=PROBE_INTERVAL_S).start()
    try:
        run = lab.run(everywhere(lab, demo_consumer(user, health_timeout_s=3)), rotate_force=True)
    finally:
        totals = prober.stop()
        lab.unpin(canary)

    assert run.rc != 0
    failure = run.task("rekey.aws.rotate : Fail when the rotation did not complete")["result"]["msg"]
    assert canary in failure and "health check GET http://127.0.0.1:8080/health" in failure
    assert "PinnedKeyMismatch" in failure
    report = run.report
    [entry] = report["users"]
    assert entry["result"] == "rolled_back"
    assert entry["hosts_rolled_back"] == [canary] and entry["hosts_not_reached"] == others
    assert entry["new_key_final_state"] == "deleted"
    # The canary is back on the old key and healthy; the others were never touched.
    assert lab.app_key_id(canary) == old["AccessKeyId"]
    assert lab.file_key_id(canary) == old["AccessKeyId"]
    assert lab.stat(canary, CREDENTIALS) == "600 rekeyapp"
    for host in others:
        assert lab.fleet.exec(host, f"cat {CREDENTIALS}; stat -c %Y {CREDENTIALS}").stdout == before[host]
        assert totals["hosts"][host]["gaps"] == 0 and totals["hosts"][host]["auth_failures"] == 0
    # The old key is still the only key, Active; the new key and its stored secret are gone.
    assert lab.keys(user) == {old["AccessKeyId"]: "Active"}
    assert not (lab.store_dir / f"{user}.vault").exists()
    assert leftovers_of(lab, report) == []


def test_unhealthy_only_after_deactivation_reactivates_the_old_key(clean):
    lab = clean
    user, old = lab.seed()
    stuck = lab.hosts[2]
    # This consumer's app never picks up the new file (apply: none) and its check does not look
    # at the key id: it passes during the rollout and only fails once the old key is deactivated.
    consumers = everywhere(lab, demo_consumer(user))
    consumers[stuck] = [demo_consumer(user, apply="none", health_expect_key_id=False, health_timeout_s=3)]
    prober = Prober(lab.fleet.app_urls, interval=PROBE_INTERVAL_S).start()
    try:
        # The app keeps using the old key, which the idle check would catch first: turned off
        # here to reach the re-check after deactivation (as when IAM reports last use late).
        run = lab.run(consumers, rotate_force=True, rotate_idle_check=False, rotate_serial="100%")
    finally:
        totals = prober.stop()

    assert run.rc != 0
    [entry] = run.report["users"]
    new_id = entry["new_key_id"]
    assert entry["result"] == "failed_after_deactivation", entry
    assert stuck in entry["message"] and "was reactivated" in entry["message"]
    failure = run.task("rekey.aws.rotate : Fail when the rotation did not complete")["result"]["msg"]
    assert stuck in failure and "health check GET" in failure
    # The old key is Active again, the new one stays for the hosts that use it.
    assert lab.keys(user) == {old["AccessKeyId"]: "Active", new_id: "Active"}
    assert lab.app_key_id(stuck) == old["AccessKeyId"]
    for host in lab.hosts[:2]:
        assert lab.app_key_id(host) == new_id
    # Auth failures happened only on the stuck consumer, only while the old key was off.
    assert totals["overall"]["hosts_with_auth_failures"] == [stuck], totals


def test_old_key_used_after_the_cutover_is_not_deactivated(clean):
    lab = clean
    user, old = lab.seed()
    stuck = lab.hosts[2]
    consumers = everywhere(lab, demo_consumer(user))
    consumers[stuck] = [demo_consumer(user, apply="none", health_expect_key_id=False)]
    prober = Prober(lab.fleet.app_urls, interval=PROBE_INTERVAL_S).start()  # the stuck app keeps calling STS with the old key
    try:
        run = lab.run(consumers, rotate_force=True, rotate_serial="100%", rotate_idle_window_s=2)
    finally:
        totals = prober.stop()
    assert run.rc != 0
    [entry] = run.report["users"]
    assert entry["result"] == "old_key_in_use", entry
    assert f"the old key {old['AccessKeyId']} was used at" in entry["message"]
    assert "by sts in us-east-1" in entry["message"]
    # Nothing was deactivated: both keys Active, no refusal anywhere.
    assert lab.keys(user) == {old["AccessKeyId"]: "Active", entry["new_key_id"]: "Active"}
    assert totals["overall"]["auth_failures"] == 0, totals
    assert leftovers_of(lab, run.report) == []


def test_two_active_keys_with_one_named_to_retire(clean):
    lab = clean
    user, old = lab.seed()
    spare = lab.ep.iam().create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    lab.ep.reset_counts()
    run = lab.run(everywhere(lab, demo_consumer(user)), rotate_retire_key_ids=[spare], rotate_deactivate_settle_s=1)
    assert run.rc == 0, explain(run)
    [entry] = run.report["users"]
    assert entry["action"] == "retire" and entry["result"] == "retired"
    assert entry["old_key_id"] == spare and entry["kept_key_id"] == old["AccessKeyId"]
    # No key was created; the named one was deactivated, the fleet re-checked, then deleted.
    assert lab.ep.write_counts() == {"iam:UpdateAccessKey": 1, "iam:DeleteAccessKey": 1}
    assert lab.keys(user) == {old["AccessKeyId"]: "Active"}
    assert all(lab.app_key_id(h) == old["AccessKeyId"] for h in lab.hosts)


def test_new_key_that_never_authenticates_is_deleted(clean):
    lab = clean
    user, old = lab.seed()
    lab.ep.set_faults(propagation_delay_s=120)  # every new key is refused for two minutes
    run = lab.run(everywhere(lab, demo_consumer(user)), rotate_force=True, rotate_verify_timeout_s=4)
    assert run.rc != 0
    failure = run.task("rekey.aws.rotate : Fail when the rotation did not complete")["result"]["msg"]
    assert "prepare failed" in failure and "InvalidClientTokenId" in failure
    [entry] = run.report["users"]
    assert entry["result"] == "rolled_back" and entry["new_key_final_state"] == "deleted"
    assert entry["hosts_updated"] == [] and entry["hosts_not_reached"] == lab.hosts
    # Only the old key is left; no host was touched; the stored secret is gone.
    assert lab.keys(user) == {old["AccessKeyId"]: "Active"}
    assert all(lab.file_key_id(h) == old["AccessKeyId"] for h in lab.hosts)
    assert not (lab.store_dir / f"{user}.vault").exists()


def test_two_active_keys_stop_before_any_write(clean):
    lab = clean
    user, old = lab.seed()
    second = lab.ep.iam().create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    lab.ep.reset_counts()
    run = lab.run(everywhere(lab, demo_consumer(user)), rotate_force=True)
    assert run.rc != 0
    failure = run.task("rekey.aws.rotate : Plan every user before any write")["result"]["msg"]
    assert f"IAM user {user} has two Active access keys" in failure
    assert old["AccessKeyId"] in failure and second in failure and "rotate_retire_key_ids" in failure
    assert lab.ep.write_counts() == {}
    assert lab.keys(user) == {old["AccessKeyId"]: "Active", second: "Active"}
    assert all(lab.app_key_id(h) == old["AccessKeyId"] for h in lab.hosts)
    assert not any(r["changed"] for r in run.results)


def test_malformed_consumer_is_refused_before_any_write(clean):
    lab = clean
    user, old = lab.seed()
    consumers = everywhere(lab, demo_consumer(user))
    consumers[lab.hosts[1]] = [demo_consumer(user, path="etc/demoapp/credentials", mode="0644", format="ini")]
    run = lab.run(consumers, rotate_force=True)
    assert run.rc != 0
    failure = run.task("rekey.aws.rotate : Check the variables and every consumer before any write")["result"]["msg"]
    host = lab.hosts[1]
    assert f"host {host}" in failure
    assert "etc/demoapp/credentials" in failure and "not an absolute path" in failure
    assert '"0644"' in failure and "at most \"0600\"" in failure
    assert "ini" in failure and "credentials, env, template" in failure
    assert lab.ep.write_counts() == {}
    assert lab.keys(user) == {old["AccessKeyId"]: "Active"}


# --- shapes of fleets -----------------------------------------------------------------------

def test_two_users_one_host_holds_both_shared_key_reloaded_without_gaps(clean):
    """User `shared`: the demo app on every host, reloaded (SIGHUP) instead of restarted. User
    `solo`: only on the first host, in an env file (other lines kept) and in a file rendered from
    the operator's template. Its key lives in Secrets Manager instead of a vault file."""
    lab = clean
    shared, shared_old = lab.seed(prefix="shared")
    solo = lab.ep.new_user("solo")
    solo_old = lab.ep.iam().create_access_key(UserName=solo)["AccessKey"]
    holder = lab.hosts[0]
    env_path, tpl_path = "/etc/demoapp/solo.env", "/etc/demoapp/solo-rendered"
    lab.write(holder, env_path, f"# solo job\nJOB_REGION=us-east-1\nAWS_ACCESS_KEY_ID={solo_old['AccessKeyId']}\n"
                                f"AWS_SECRET_ACCESS_KEY={solo_old['SecretAccessKey']}\n")
    lab.fleet.exec(holder, f"rm -f {tpl_path}")
    template = lab.dir / "solo.j2"
    template.write_text("# rendered by rekey.aws\n[default]\naws_access_key_id = {{ rotate_access_key_id }}\n"
                        "aws_secret_access_key = {{ rotate_secret_access_key }}\n")
    reload = "{{ fleet_supervisorctl }} signal HUP {{ fleet_app_program }}"
    consumers = everywhere(lab, demo_consumer(shared, apply_command=reload))
    consumers[holder] = consumers[holder] + [
        sts_check_consumer(solo, "solo-env", env_path, file_format="env"),
        sts_check_consumer(solo, "solo-template", tpl_path, format="template", template=str(template)),
    ]
    prober = Prober(lab.fleet.app_urls, interval=PROBE_INTERVAL_S).start()
    try:
        run = lab.run(consumers, rotate_force=True, rotate_serial="100%", rotate_store_backend="secretsmanager",
                      rotate_store_secret_prefix="rekey-test/")
    finally:
        totals = prober.stop()

    assert run.rc == 0, explain(run)
    by_user = {u["user_name"]: u for u in run.report["users"]}
    assert by_user[shared]["result"] == "rotated" and by_user[shared]["hosts_updated"] == lab.hosts
    assert by_user[solo]["result"] == "rotated" and by_user[solo]["hosts_updated"] == [holder]
    shared_new, solo_new = by_user[shared]["new_key_id"], by_user[solo]["new_key_id"]
    assert lab.keys(shared) == {shared_new: "Active"} and lab.keys(solo) == {solo_new: "Active"}
    assert all(lab.app_key_id(h) == shared_new for h in lab.hosts)
    env = lab.read(holder, env_path)
    assert f"AWS_ACCESS_KEY_ID={solo_new}\n" in env and "# solo job\nJOB_REGION=us-east-1\n" in env
    assert solo_old["SecretAccessKey"] not in env
    assert lab.read(holder, tpl_path).startswith(f"# rendered by rekey.aws\n[default]\naws_access_key_id = {solo_new}\n")
    assert lab.stat(holder, env_path) == "600 rekeyapp" and lab.stat(holder, tpl_path) == "600 rekeyapp"
    # The store holds each user's current key, in Secrets Manager.
    for user, key_id in ((shared, shared_new), (solo, solo_new)):
        stored = json.loads(lab.ep.secretsmanager().get_secret_value(SecretId=f"rekey-test/{user}")["SecretString"])
        assert stored["access_key_id"] == key_id
    # A reload instead of a restart: not a single connection gap, not a single refusal.
    assert totals["overall"]["gaps"] == 0 and totals["overall"]["auth_failures"] == 0, totals


def test_unused_inactive_second_key_is_pruned(clean):
    lab = clean
    user, old = lab.seed()
    spare = lab.ep.iam().create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    lab.ep.iam().update_access_key(UserName=user, AccessKeyId=spare, Status="Inactive")
    consumers = everywhere(lab, demo_consumer(user))

    # Created today: with the default rotate_prune_unused_days (30) it may still be wanted.
    refused = lab.run(consumers, rotate_force=True)
    assert refused.rc != 0
    assert spare in refused.task("rekey.aws.rotate : Plan every user before any write")["result"]["msg"]
    assert lab.keys(user) == {old["AccessKeyId"]: "Active", spare: "Inactive"}

    run = lab.run(consumers, rotate_force=True, rotate_prune_unused_days=0, rotate_serial="100%")
    assert run.rc == 0, explain(run)
    [entry] = run.report["users"]
    assert entry["pruned_key_ids"] == [spare]
    assert lab.keys(user) == {entry["new_key_id"]: "Active"}
    assert all(lab.app_key_id(h) == entry["new_key_id"] for h in lab.hosts)


def test_audit_reports_key_ages_without_writing(clean):
    lab = clean
    user, old = lab.seed()
    report = lab.dir / "audit.json"
    from tests.support.ansible_run import run_playbook
    lab.ep.reset_counts()
    run = run_playbook(REPO / "playbooks" / "audit.yml", inventory=str(lab.fleet.inventory_path),
                       args=["-i", str(lab.inventory(everywhere(lab, demo_consumer(user))))],
                       extra_vars={"rotate_aws": lab.extra_vars()["rotate_aws"], "rotate_users": [user],
                                   "rotate_max_age_days": 0, "audit_report_path": str(report)})
    assert run.rc == 0, explain(run)
    assert run.changed == [] and lab.ep.write_counts() == {}
    [key] = json.loads(report.read_text())["access_keys"]
    assert key["access_key_id"] == old["AccessKeyId"] and key["status"] == "Active"
    assert key["due"] is True and key["held_by"] == lab.hosts
    shown = run.task("Show the keys")["result"]["msg"]
    assert any(old["AccessKeyId"] in line and "DUE" in line for line in shown)
    assert oct(report.stat().st_mode & 0o777) == "0o600"


def test_check_mode_shows_the_plan_and_writes_nothing(clean):
    lab = clean
    user, old = lab.seed()
    other = lab.ep.new_user("other")  # referenced by a consumer, but left out with rotate_users
    consumers = everywhere(lab, demo_consumer(user))
    consumers[lab.hosts[0]] = consumers[lab.hosts[0]] + [sts_check_consumer(other, "other", "/etc/demoapp/other")]
    untouched = {h: host_files(lab, h) for h in lab.hosts}
    # As an AWX survey's text field gives it: a comma-separated string.
    run = lab.run(consumers, check=True, diff=True, rotate_force=True, rotate_users=f"{user}, ", rotate_serial="100%")
    assert run.rc == 0, explain(run)
    assert lab.ep.write_counts() == {}
    assert lab.keys(user) == {old["AccessKeyId"]: "Active"}
    plan = run.task("rekey.aws.rotate : Show the plan")["result"]["msg"]
    assert plan == [f"{user}: rotate: forced (rotate_force)"]
    summary = run.task("rekey.aws.rotate : Summary")["result"]["msg"]
    assert "check mode: a dry run, nothing changed" in summary[0] and f"ok     {user}: planned" in summary[1]
    assert all(lab.app_key_id(h) == old["AccessKeyId"] for h in lab.hosts)
    # The dry run reached every host: the health check before any write (each host in the precheck
    # play), then a preview per host naming the file, the key and what would be restarted; with
    # --diff a diff, secrets masked.
    for host in lab.hosts:
        prechecked = run.task("rekey.aws.rotate : Check the health of this host's consumers before any write", host)
        assert prechecked["result"]["health_failures"] == [], prechecked
        shown = run.task("rekey.aws.rotate : Show what a rotation would do on this host (check mode)", host)
        line = shown["result"]["msg"][0]
        assert line.startswith(
            f"{host} demoapp (IAM user {user}, key {old['AccessKeyId']} -> new key (not created in check mode)): "
            f"{CREDENTIALS} would change (content); run supervisorctl ") and line.endswith(" restart demoapp"), line
        preview = run.task("rekey.aws.rotate : Give this host its new keys", host)["result"]["preview"]
        assert [(c["consumer"], c["file"]) for c in preview["consumers"]] == [("demoapp", "change")]
    assert f"-aws_access_key_id = {old['AccessKeyId']}" in run.stdout
    assert "+aws_access_key_id = new key (not created in check mode)" in run.stdout
    assert " aws_secret_access_key = ********" in run.stdout  # the same on both sides
    everything = run.stdout + run.stderr + json.dumps(run.results)
    assert old["SecretAccessKey"] not in everything
    # Nothing changed on the hosts: same bytes, same mtime, no backup, the app on the old key.
    assert {h: host_files(lab, h) for h in lab.hosts} == untouched

    unknown = lab.run(consumers, check=True, rotate_users=["nobody-holds-this"])
    assert unknown.rc != 0
    failure = unknown.task("rekey.aws.rotate : Check the variables and every consumer before any write")["result"]["msg"]
    assert 'rotate_users names "nobody-holds-this" but no consumer' in failure and user in failure

    # A Limit that leaves out localhost (an AWX job template's Limit, say) fails at once: never a
    # green run that did nothing.
    limited = lab.run(consumers, args=["--limit", lab.hosts[0]], rotate_force=True)
    assert limited.rc != 0
    failure = limited.task("Stop when --limit leaves out localhost")["result"]["msg"]
    assert f"--limit {lab.hosts[0]} leaves out localhost" in failure, failure
    assert lab.ep.write_counts() == {} and lab.keys(user) == {old["AccessKeyId"]: "Active"}
