"""Consumers whose key is held in AWS (issue 12, item 3), on two supervisord hosts and the strict
endpoint: every host's demo app reads its key at start from one SSM SecureString parameter
(format ssm_parameter), and a job on every host reads its key from one Secrets Manager secret with
its own field names (format secretsmanager_secret; its health command reads the secret and calls
STS). One rotation of both users: each parameter and secret written once, whatever the hosts,
apps healthy on the new keys, no auth failure. Then a rollback: the second host's app refuses the
new key after the write; the parameter and the secret hold the old keys again (the failed host
put them back, and the canary, which had passed, is applied again on them), the old keys Active."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.fleet_lab import fleet_lab
from tests.integration.rotate_support import PROBE_INTERVAL_S, VENV_PYTHON, demo_consumer
from tools.prober import Prober

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root: network namespaces, mounts"),
]

READER_FILE = "/etc/demoapp/credentials"  # on the hosts: only the key that reads the parameter and secret
KEY_SOURCE = "/etc/demoapp/key_source"
SUPPORT = Path(__file__).resolve().parent / "rotate_support.py"
READ_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["ssm:GetParameter", "secretsmanager:GetSecretValue"], "Resource": "*"}]})


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with fleet_lab(tmp_path_factory.mktemp("awsconsumers"), 2) as made:
        yield made


def value(key: dict, id_field: str = "aws_access_key_id", secret_field: str = "aws_secret_access_key") -> str:
    return json.dumps({id_field: key["AccessKeyId"], secret_field: key["SecretAccessKey"]})


def held(lab, parameter: str, secret_id: str) -> tuple[str, str]:
    """(key id in the parameter, key id in the secret), read out of band."""
    p = json.loads(lab.ep.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"])
    s = json.loads(lab.ep.secretsmanager().get_secret_value(SecretId=secret_id)["SecretString"])
    return p["aws_access_key_id"], s["AccessKeyId"]


def seed(lab, name: str):
    """Users app (in the parameter) and job (in the secret), each with a first key; a reader user
    whose key is each host's credentials file; every app started on the parameter's key."""
    iam = lab.ep.iam()
    reader = lab.ep.new_user(f"{name}rd")
    iam.put_user_policy(UserName=reader, PolicyName="read", PolicyDocument=READ_POLICY)
    reader_key = iam.create_access_key(UserName=reader)["AccessKey"]
    app, job = lab.ep.new_user(f"{name}app"), lab.ep.new_user(f"{name}job")
    app_key = iam.create_access_key(UserName=app)["AccessKey"]
    job_key = iam.create_access_key(UserName=job)["AccessKey"]
    parameter, secret_id = f"/rekey-test/{app}/aws-key", f"rekey-test/{job}"
    lab.ep.client("ssm").put_parameter(Name=parameter, Value=value(app_key), Type="SecureString")
    lab.ep.secretsmanager().create_secret(Name=secret_id, SecretString=value(job_key, "AccessKeyId", "SecretAccessKey"))
    for host in lab.hosts:
        lab.unpin(host)
        lab.write_credentials(host, READER_FILE, reader_key["AccessKeyId"], reader_key["SecretAccessKey"])
        lab.write(host, KEY_SOURCE, json.dumps({"service": "ssm", "name": parameter}))
        lab.fleet.exec(host, lab.fleet.app_restart_command)
    for host in lab.hosts:
        lab.wait_health(host, app_key["AccessKeyId"])
    consumers = [
        demo_consumer(app, format="ssm_parameter", parameter=parameter, kms_key_id="alias/aws/ssm", path=None,
                      owner=None, group=None),
        {"name": "job", "iam_user": job, "format": "secretsmanager_secret", "secret_id": secret_id,
         "access_key_id_field": "AccessKeyId", "secret_access_key_field": "SecretAccessKey", "apply": "none",
         "health_command": f"{VENV_PYTHON} {SUPPORT} sts-check --file {READER_FILE} --secret-id {secret_id} "
                           "--id-field AccessKeyId --secret-field SecretAccessKey "
                           "--endpoint-url {{ fleet_endpoint_url }} --region {{ fleet_region }}",
         "health_timeout_s": 10},
    ]
    for c in consumers:
        for k in [k for k, v in c.items() if v is None]:
            del c[k]
    return {"app": app, "job": job, "app_key": app_key, "job_key": job_key, "parameter": parameter,
            "secret_id": secret_id, "consumers": {host: consumers for host in lab.hosts}}


def explain(run) -> str:
    return f"rc={run.rc}\nSTDOUT:\n{run.stdout[-8000:]}\nSTDERR:\n{run.stderr[-3000:]}"


def by_user(run) -> dict:
    return dict((u["user_name"], u) for u in run.report["users"])


def aws_writes(counts: dict) -> dict:
    return {a: n for a, n in counts.items() if a in ("ssm:PutParameter", "secretsmanager:PutSecretValue")}


def test_both_formats_written_once_for_every_host(lab):
    s = seed(lab, "aw")
    old_app, old_job = s["app_key"]["AccessKeyId"], s["job_key"]["AccessKeyId"]

    lab.ep.reset_counts()
    check = lab.run(s["consumers"], check=True, diff=True, rotate_force=True)
    assert check.rc == 0, explain(check)
    assert "ssm_parameter %s written once from the controller" % s["parameter"] in check.stdout
    assert s["app_key"]["SecretAccessKey"] not in check.stdout + check.stderr
    assert aws_writes(lab.ep.counts()) == {}
    assert held(lab, s["parameter"], s["secret_id"]) == (old_app, old_job)

    lab.ep.reset_counts()
    prober = Prober(lab.fleet.app_urls, timeline=lab.dir / "aws-timeline.jsonl", interval=PROBE_INTERVAL_S).start()
    try:
        run = lab.run(s["consumers"], rotate_force=True)
    finally:
        totals = prober.stop()
    counts = lab.ep.counts()
    assert run.rc == 0, explain(run)
    users = by_user(run)
    assert users[s["app"]]["result"] == users[s["job"]]["result"] == "rotated", users
    new_app, new_job = users[s["app"]]["new_key_id"], users[s["job"]]["new_key_id"]
    assert held(lab, s["parameter"], s["secret_id"]) == (new_app, new_job)
    assert lab.keys(s["app"]) == {new_app: "Active"} and lab.keys(s["job"]) == {new_job: "Active"}
    assert {h: lab.app_key_id(h) for h in lab.hosts} == {h: new_app for h in lab.hosts}
    assert totals["overall"]["auth_failures"] == 0, totals
    # One write per parameter and secret for the two hosts; the controller's reads: one each (the
    # parameter's other reads are the apps starting, one per host).
    assert aws_writes(counts) == {"ssm:PutParameter": 1, "secretsmanager:PutSecretValue": 1}, counts
    assert counts["ssm:GetParameter"] == 1 + len(lab.hosts), counts
    for secret in (s["app_key"]["SecretAccessKey"], s["job_key"]["SecretAccessKey"]):
        assert secret not in run.stdout + run.stderr + json.dumps(run.report)

    lab.ep.reset_counts()
    again = lab.run(s["consumers"])
    assert again.rc == 0, explain(again)
    assert aws_writes(lab.ep.counts()) == {} and lab.ep.write_counts() == {}
    assert held(lab, s["parameter"], s["secret_id"]) == (new_app, new_job)


def test_rollback_puts_the_old_keys_back(lab):
    s = seed(lab, "ab")
    old_app, old_job = s["app_key"]["AccessKeyId"], s["job_key"]["AccessKeyId"]
    canary, second = lab.hosts
    lab.pin(second, old_app)  # the second host's app refuses any other key: fails after the write

    lab.ep.reset_counts()
    run = lab.run(s["consumers"], rotate_force=True)
    counts = lab.ep.counts()
    assert run.rc != 0, explain(run)
    users = by_user(run)
    assert users[s["app"]]["result"] == users[s["job"]]["result"] == "rolled_back", users
    assert held(lab, s["parameter"], s["secret_id"]) == (old_app, old_job)
    assert lab.keys(s["app"]) == {old_app: "Active"} and lab.keys(s["job"]) == {old_job: "Active"}
    assert {h: lab.app_key_id(h) for h in lab.hosts} == {canary: old_app, second: old_app}
    # Written once, put back once (by the failed host); the rollback's pass found them put back.
    assert aws_writes(counts) == {"ssm:PutParameter": 2, "secretsmanager:PutSecretValue": 2}, counts
