"""One host's rollout: what the controller decides (_host_rollout), the health checks' verdicts
and budgets (_health_checks, with a fake clock), and the files as consumer_files changes them
(_consumer_files and the module's steps, on real files in a temporary directory)."""
import os
import stat

import pytest

from rotation_fixtures import OLD, NEW, KILLED_RUN

from ansible_collections.rekey.aws.plugins.module_utils import _consumer_files as files
from ansible_collections.rekey.aws.plugins.module_utils import _health_checks as health
from ansible_collections.rekey.aws.plugins.module_utils import _host_rollout as rollout
from ansible_collections.rekey.aws.plugins.modules import consumer_files

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET"


def entry(name="app", **fields):
    e = {"host": "web1", "name": name, "iam_user": "app", "path": "/etc/%s/aws.env" % name, "format": "env",
         "profile": "default", "mode": "0600", "apply": "restart", "service": name, "apply_command": "",
         "health_url": "http://127.0.0.1:8080/health", "health_status": 200, "health_expect_key_id": True,
         "health_command": "", "health_timeout_s": 30, "old_key_id": OLD, "target_key_id": NEW,
         "env_names": {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}}
    e.update(fields)
    return e


# ---- what the controller decides ----

def test_each_service_or_command_is_applied_once():
    consumers = [entry("a", service="app"), entry("b", service="app"), entry("c", apply="reload", service="app"),
                 entry("d", apply="command", service="", apply_command="/bin/kick"), entry("e", apply="none"),
                 entry("f", apply="command", service="", apply_command="/bin/kick")]
    assert rollout.applies(consumers) == [
        {"apply": "restart", "service": "app", "apply_command": ""},
        {"apply": "reload", "service": "app", "apply_command": ""},
        {"apply": "command", "service": "", "apply_command": "/bin/kick"}]


@pytest.mark.parametrize("result,problem", [
    ({"changed": True, "rc": 0}, None),
    ({"failed": True, "msg": "non-zero return code", "rc": 7, "stderr": " spawn error \n", "stdout": ""},
     "web1: /bin/kick: non-zero return code spawn error"),
    ({"unreachable": True, "failed": True, "msg": "ssh: connection refused"},
     "web1: /bin/kick: unreachable: ssh: connection refused"),
], ids=["ok", "failed", "unreachable"])
def test_apply_problem_names_host_and_command(result, problem):
    a = {"apply": "command", "service": "", "apply_command": "/bin/kick"}
    assert rollout.apply_problem("web1", a, result) == problem


def test_health_checks_expect_the_key_of_the_step():
    consumers = [entry("a"), entry("b", health_expect_key_id=False, health_command="/bin/ok", health_timeout_s="0")]
    assert rollout.health_checks(consumers, "target_key_id") == [
        {"name": "a", "url": "http://127.0.0.1:8080/health", "status": 200, "expect": NEW, "timeout_s": 30},
        {"name": "b", "url": "http://127.0.0.1:8080/health", "status": 200, "expect": "", "timeout_s": 1},
        {"name": "b", "command": "/bin/ok", "timeout_s": 1}]
    assert rollout.health_checks(consumers, "old_key_id")[0]["expect"] == OLD
    # Only a check that names the key can prove that an app already runs on it.
    assert [c["name"] for c in rollout.health_checks(consumers, "target_key_id", only_key_checks=True)] == ["a"]


def test_health_failures_name_host_consumer_and_user():
    results = [{"name": "a", "check": "GET u", "healthy": True, "got": "HTTP 200", "output": "a: ok"},
               {"name": "b", "check": "GET u", "healthy": False, "got": "HTTP 503 x", "output": "b: health ..."}]
    assert rollout.health_failures("web1", [entry("a"), entry("b", iam_user="other")], results) == [
        {"host": "web1", "consumer": "b", "iam_user": "other", "check": "GET u", "got": "HTTP 503 x",
         "output": "web1 b: health ..."}]
    [down] = rollout.unreachable_failures("web1", [entry("a")], " ssh gone ")
    assert down["output"] == "web1 a: host unreachable: ssh gone" and down["iam_user"] == "app"


def test_file_problems_are_prefixed_with_the_host():
    assert rollout.file_problems("web1", {"problems": ["app /etc/app/aws.env: cannot write"]}) == [
        "web1 app /etc/app/aws.env: cannot write"]
    assert rollout.file_problems("web1", {"unreachable": True, "msg": "gone"}) == ["web1: unreachable: gone"]
    assert rollout.file_problems("web1", {"failed": True, "msg": "MODULE FAILURE"}) == ["web1 MODULE FAILURE"]
    assert rollout.file_problems("web1", {"files": [], "problems": []}) == []


@pytest.mark.parametrize("phase,problems,status", [
    ("writing", [], "rolled_back"), ("started", [], "failed"), ("writing", ["web1: x"], "rollback_failed"),
    ("started", ["web1: x"], "rollback_failed"),
])
def test_status_of_a_failed_host_after_putting_it_back(phase, problems, status):
    outcome = rollout.rolled_back({"phase": phase, "status": "failed"}, problems, 12.0)
    assert (outcome["status"], outcome["rollback"], outcome["finished_epoch"]) == (status, problems, 12.0)


def test_outcome_from_start_to_update_and_failure():
    outcome = rollout.started([entry("a"), entry("b")], 1.0)
    assert outcome == {"status": "started", "phase": "started", "consumers": ["a", "b"], "existed": {},
                       "failure": {}, "started_epoch": 1.0}
    outcome = rollout.written(outcome, {"files": [{"name": "a", "existed": True, "changed": True}]})
    assert (outcome["phase"], outcome["existed"]) == ("writing", {"a": True})
    assert rollout.updated(outcome, 2.0)["status"] == "updated"
    failed = rollout.failed(outcome, "Apply", ["web1: app: boom", "web1: b: bang"])
    assert failed["failure"] == {"task": "Apply", "msg": "web1: app: boom; web1: b: bang"}
    # Only the files consumer_files reached are put back.
    assert rollout.restorable([entry("a"), entry("b")], {"a": True}) == [dict(entry("a"), existed=True)]


@pytest.mark.parametrize("resume,adopt", [
    ({"mode": "continue", "phase": "distributing", "run_id": KILLED_RUN}, KILLED_RUN),
    ({"mode": "continue", "phase": "key_stored", "run_id": KILLED_RUN}, None),
    ({"mode": "none"}, None), (None, None),
])
def test_only_a_rotation_resumed_while_distributing_takes_over_backups(resume, adopt):
    users = {"app": {"resume": resume}}
    assert rollout.with_adoption([entry()], users)[0]["adopt_run_id"] == adopt


@pytest.mark.parametrize("mode,earlier", [("continue", True), ("finish", True), ("done", True), ("none", False)])
def test_cleanup_removes_earlier_backups_of_resumed_rotations_only(mode, earlier):
    users = {"app": {"resume": {"mode": mode}}}
    assert rollout.with_cleanup([entry()], users)[0]["earlier"] is earlier


# ---- the health checks ----

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_a_check_is_retried_until_healthy_within_its_budget():
    clock = Clock()
    answers = iter([(False, "HTTP 503 starting"), (False, "HTTP 200 " + OLD), (True, "HTTP 200 " + NEW)])
    check = {"name": "app", "url": "http://h/health", "status": 200, "expect": NEW, "timeout_s": 10}
    r = health.run_check(check, clock(), 2, False, clock=clock, sleep=clock.sleep, try_=lambda c, left: next(answers))
    assert (r["healthy"], r["attempts"], clock.now) == (True, 3, 104.0)


def test_a_check_stops_when_its_budget_is_spent():
    clock = Clock()

    def slow(check, left):
        clock.now += 3
        return False, "no answer: timed out"

    check = {"name": "app", "url": "http://h/health", "status": 200, "expect": NEW, "timeout_s": 10}
    r = health.run_check(check, clock(), 2, False, clock=clock, sleep=clock.sleep, try_=slow)
    assert r["healthy"] is False and clock.now - 100 <= 10 + 3
    assert r["output"] == ("app: health check GET http://h/health expected HTTP 200 with %s, got no answer: timed out "
                           "(%d attempts)" % (NEW, r["attempts"]))


def test_once_tries_a_single_time():
    clock = Clock()
    check = {"name": "app", "command": "/bin/check", "timeout_s": 10}
    r = health.run_check(check, clock(), 2, True, clock=clock, sleep=clock.sleep, try_=lambda c, left: (False, "exit 1"))
    assert (r["attempts"], r["check"]) == (1, "command /bin/check")
    assert r["output"] == "app: health command /bin/check expected exit 0, got exit 1 (1 attempts)"


@pytest.mark.parametrize("status,body,error,verdict", [
    (200, "ok " + NEW, None, (True, "HTTP 200 ok " + NEW)),
    (200, "ok " + OLD, None, (False, "HTTP 200 ok " + OLD)),
    (503, " down ", None, (False, "HTTP 503 down")),
    (None, "", "timed out", (False, "no answer: timed out")),
])
def test_http_verdict(status, body, error, verdict):
    check = {"status": 200, "expect": NEW}
    assert health.http_verdict(check, status, body, error) == verdict


def test_real_command_checks_run_at_once_and_a_hung_one_is_stopped(tmp_path):
    checks = [{"name": "ok", "command": "true", "timeout_s": 5},
              {"name": "bad", "command": "false", "timeout_s": 1},
              {"name": "hung", "command": "sleep 30", "timeout_s": 1}]
    ok, bad, hung = health.run_all(checks, 0.2, False)
    assert ok["healthy"] and not bad["healthy"] and not hung["healthy"]
    assert hung["got"].startswith("exit timeout") and bad["got"].startswith("exit 1")


# ---- the files ----

@pytest.fixture
def host(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "backups").mkdir(mode=0o755)
    return tmp_path


def on(host, name="app", **fields):
    e = entry(name, path=str(host / "etc" / (name + ".env")),
              backup=str(host / "backups" / ("20261130T000000Z-000001-web1-%s.bak" % name)))
    e.update(fields)
    return e


KEYS = {"app": {"access_key_id": NEW, "secret_access_key": SECRET}}


def test_write_backs_up_0600_and_replaces_the_file_in_one_piece(host):
    c = on(host)
    with open(c["path"], "w") as f:
        f.write("A=1\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=old\n" % OLD)
    os.chmod(c["path"], 0o640)
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())  # nobody, when root
    os.chown(c["path"], *owner)
    done = consumer_files.write(c, KEYS, {}, False)
    assert done == {"name": "app", "existed": True, "changed": True}
    assert open(c["path"]).read() == "A=1\nAWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (NEW, SECRET)
    assert stat.S_IMODE(os.stat(c["path"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(c["backup"]).st_mode) == 0o600
    assert (os.stat(c["backup"]).st_uid, os.stat(c["backup"]).st_gid) == owner  # owned like the file it copies
    assert OLD in open(c["backup"]).read()
    assert sorted(os.listdir(host / "etc")) == ["app.env"]  # no temporary file left
    # Again: nothing to write, and its backup is made again from the file as it is.
    assert consumer_files.write(c, KEYS, {}, False)["changed"] is False


def test_write_of_a_missing_file_and_its_restore_removes_it(host):
    c = on(host, format="credentials", profile="app")
    assert consumer_files.write(c, KEYS, {}, False) == {"name": "app", "existed": False, "changed": True}
    assert "aws_secret_access_key = %s" % SECRET in open(c["path"]).read()
    assert not os.path.exists(c["backup"])
    assert consumer_files.restore(dict(c, existed=False), False) == {"name": "app", "changed": True}
    assert not os.path.exists(c["path"])


def test_restore_copies_the_backup_back_only_when_it_differs(host):
    c = on(host)
    with open(c["path"], "w") as f:
        f.write("AWS_ACCESS_KEY_ID=%s\n" % OLD)
    consumer_files.write(c, KEYS, {}, False)
    assert consumer_files.restore(dict(c, existed=True), True) == {"name": "app", "changed": True}  # check mode
    assert NEW in open(c["path"]).read()
    assert consumer_files.restore(dict(c, existed=True), False) == {"name": "app", "changed": True}
    assert open(c["path"]).read() == "AWS_ACCESS_KEY_ID=%s\n" % OLD
    assert consumer_files.restore(dict(c, existed=True), False)["changed"] is False
    os.unlink(c["backup"])
    with pytest.raises(files.FileProblem, match="the backup .* of .* is missing"):
        consumer_files.restore(dict(c, existed=True), False)


def test_template_content_is_written_as_rendered(host):
    c = on(host, format="template")
    consumer_files.write(c, KEYS, {"app": "key=%s\n" % NEW}, False)
    assert open(c["path"]).read() == "key=%s\n" % NEW


def test_a_resumed_rotation_takes_over_the_killed_runs_backup(host):
    """The killed run backed up the file with the old key and wrote the new one: this run's backup
    is the killed run's, so a rollback restores the old key; other runs' backups go."""
    c = on(host, adopt_run_id=KILLED_RUN)
    killed = str(host / "backups" / ("%s-web1-app.bak" % KILLED_RUN))
    stale = str(host / "backups" / "20200101T000000Z-000009-web1-app.bak")
    other = str(host / "backups" / "20200101T000000Z-000009-web1-another.bak")
    for path, text in ((killed, "AWS_ACCESS_KEY_ID=%s\n" % OLD), (stale, "x"), (other, "y")):
        with open(path, "w") as f:
            f.write(text)
    with open(c["path"], "w") as f:
        f.write("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (NEW, SECRET))
    os.chmod(c["path"], 0o600)
    assert consumer_files.write(c, KEYS, {}, False) == {"name": "app", "existed": True, "changed": False}
    assert open(c["backup"]).read() == "AWS_ACCESS_KEY_ID=%s\n" % OLD
    assert sorted(os.listdir(host / "backups")) == sorted(os.path.basename(p) for p in (c["backup"], other))


def test_clean_removes_this_runs_backup_and_with_earlier_those_left_before(host):
    c = on(host)
    stale = str(host / "backups" / "20200101T000000Z-000009-web1-app.bak")
    for path in (c["backup"], stale):
        open(path, "w").close()
    assert consumer_files.clean(c, False) == {"name": "app", "changed": True}
    assert os.path.exists(stale)
    assert consumer_files.clean(dict(c, earlier=True), False) == {"name": "app", "changed": True}
    assert os.listdir(host / "backups") == []
    assert consumer_files.clean(dict(c, earlier=True), False)["changed"] is False


def test_a_refused_write_says_why_and_leaves_no_backup_behind_of_a_missing_file(host):
    c = on(host, path=str(host / "missing" / "app.env"))
    with pytest.raises(files.FileProblem, match="cannot write .*app.env: creating a temporary file in .*missing failed"):
        consumer_files.write(c, KEYS, {}, False)
    assert os.listdir(host / "backups") == []


def test_backups_are_never_written_through_an_existing_file(host):
    target = host / "elsewhere"
    target.write_text("")
    os.symlink(target, host / "backups" / "link.bak")
    with pytest.raises(files.FileProblem, match="cannot back up"):
        files.back_up(b"secret", str(host / "backups" / "link.bak"))
    assert target.read_text() == ""


def test_new_content_refuses_what_a_format_cannot_hold():
    with pytest.raises(files.FileProblem, match="contains a line break"):
        files.new_content(entry(), "", NEW, "a\nb", None)
    with pytest.raises(files.FileProblem, match="format 'yaml' is not one of"):
        files.new_content(entry(format="yaml"), "", NEW, SECRET, None)


class Module:
    def __init__(self, check_mode=False, **params):
        self.params = dict({"keys": KEYS, "contents": {}}, **params)
        self.check_mode = check_mode


def test_writing_stops_at_the_first_file_that_fails_and_says_which(host):
    first, broken, last = on(host, "a"), on(host, "b", path=str(host / "missing" / "b.env")), on(host, "c")
    result = consumer_files.run(Module(state="written", consumers=[first, broken, last]))
    assert result["files"] == [{"name": "a", "existed": False, "changed": True}]
    [problem] = result["problems"]
    assert problem.startswith("b %s: cannot write" % broken["path"]) and SECRET not in problem
    assert not os.path.exists(last["path"])
    assert stat.S_IMODE(os.stat(host / "backups").st_mode) == 0o700


def test_check_mode_writes_nothing(host):
    c = on(host)
    result = consumer_files.run(Module(check_mode=True, state="written", consumers=[c]))
    [done] = result["files"]
    assert (done["name"], done["existed"], done["changed"], done["preview"]["would"]) == ("app", False, True, "create")
    assert result["problems"] == [] and SECRET not in repr(result)  # placeholders, whatever keys were passed
    assert os.listdir(host / "etc") == [] and os.listdir(host / "backups") == []


def test_the_check_before_any_write_accepts_any_key_and_refuses_naming_each_failure():
    assert rollout.health_checks([entry("a")], None)[0]["expect"] == ""
    assert rollout.precheck_refusal([]) is None
    refusal = rollout.precheck_refusal([{"output": "web1 a: health check GET u expected HTTP 200, got no answer"},
                                        {"output": "web2 a: host unreachable: gone"}])
    assert refusal.startswith("Nothing was changed. These health checks fail on the key in use now")
    assert "web1 a: health check GET u" in refusal and "web2 a: host unreachable: gone" in refusal


def test_a_check_whose_file_does_not_exist_yet_is_not_run(tmp_path):
    check = {"name": "app", "command": "false", "timeout_s": 5, "requires": str(tmp_path / "missing")}
    r = health.run_check(check, 0, 1, False, try_=lambda c, left: pytest.fail("the check ran"))
    assert (r["healthy"], r["attempts"]) == (True, 0) and "does not exist yet" in r["got"]
    present = tmp_path / "present"
    present.write_text("x")
    r = health.run_check(dict(check, requires=str(present)), 0, 1, True, clock=lambda: 0,
                         try_=lambda c, left: (False, "exit 1"))
    assert (r["healthy"], r["attempts"]) == (False, 1)
    assert [c.get("requires") for c in rollout.health_checks([entry("a")], None, existing_files_only=True)] == [
        "/etc/a/aws.env"]


def test_no_try_starts_once_the_budget_is_spent():
    clock = Clock()

    def fail(check, left):
        assert left > 0, "a try started with no budget left"
        clock.now += 1.5
        return False, "HTTP 503"

    check = {"name": "app", "url": "http://h/health", "status": 200, "expect": "", "timeout_s": 4}
    r = health.run_check(check, clock(), 1, False, clock=clock, sleep=clock.sleep, try_=fail)
    assert r["healthy"] is False and r["attempts"] == 2


# ---- a rotation whose lost key was being distributed: its files go back from the killed run's backups ----

@pytest.mark.parametrize("mode,reverted", [("revert", True), ("continue", False), ("discard", False), ("none", False)])
def test_only_a_rotation_to_revert_reverts(mode, reverted):
    users = {"app": {"resume": {"mode": mode, "run_id": KILLED_RUN, "discard_key_id": NEW}}}
    found = rollout.reverting([entry()], users)
    assert found == ([dict(entry(), revert_run_id=KILLED_RUN, lost_key_id=NEW)] if reverted else [])


def killed_run_wrote(host, name="app", before="AWS_ACCESS_KEY_ID=%s\n" % OLD):
    """A consumer's file as a killed run KILLED_RUN left it: written with the new key, the file it
    replaced in that run's backup (none when before is None: the run created the file)."""
    killed = on(host, name, backup=str(host / "backups" / ("%s-web1-%s.bak" % (KILLED_RUN, name))))
    if before is not None:
        with open(killed["path"], "w") as f:
            f.write(before)
    consumer_files.write(killed, KEYS, {}, False)
    return dict(on(host, name), revert_run_id=KILLED_RUN, lost_key_id=NEW)


def test_revert_puts_back_the_killed_runs_backup_and_removes_it(host):
    c = killed_run_wrote(host)
    assert consumer_files.revert(c, True) == {"name": "app", "changed": True, "holds_lost_key": False}  # check mode
    assert NEW in open(c["path"]).read()
    assert consumer_files.revert(c, False) == {"name": "app", "changed": True, "holds_lost_key": False}
    assert open(c["path"]).read() == "AWS_ACCESS_KEY_ID=%s\n" % OLD
    assert stat.S_IMODE(os.stat(c["path"]).st_mode) == 0o600
    assert os.listdir(host / "backups") == []
    # Again: nothing left to revert, and the file is the old one.
    assert consumer_files.revert(c, False) == {"name": "app", "changed": False, "holds_lost_key": False}


def test_revert_removes_a_file_the_killed_run_created(host):
    c = killed_run_wrote(host, before=None)
    assert consumer_files.revert(c, False) == {"name": "app", "changed": True, "holds_lost_key": False}
    assert not os.path.exists(c["path"])


def test_revert_leaves_a_file_the_killed_run_never_reached(host):
    c = dict(on(host), revert_run_id=KILLED_RUN, lost_key_id=NEW)
    with open(c["path"], "w") as f:
        f.write("AWS_ACCESS_KEY_ID=%s\n" % OLD)
    assert consumer_files.revert(c, False) == {"name": "app", "changed": False, "holds_lost_key": False}
    assert open(c["path"]).read() == "AWS_ACCESS_KEY_ID=%s\n" % OLD


def test_a_file_that_still_names_the_lost_key_is_a_problem(host):
    c = killed_run_wrote(host)
    os.unlink(str(host / "backups" / ("%s-web1-app.bak" % KILLED_RUN)))
    with open(c["path"], "a") as f:
        f.write("# edited by hand since\n")
    done = consumer_files.revert(c, False)
    assert done == {"name": "app", "changed": True, "holds_lost_key": False}  # no backup, names the key: created
    c = killed_run_wrote(host, name="other")
    with open(c["path"], "w") as f:
        f.write("AWS_ACCESS_KEY_ID=%s\n" % NEW)
    stuck = {"name": "other", "changed": False, "holds_lost_key": True}
    assert rollout.lost_key_problems("web1", [c], {"files": [stuck]}) == [
        "web1 other %s: still holds key %s, which the secret store lost, and no backup of run %s puts it back"
        % (c["path"], NEW, KILLED_RUN)]
    assert rollout.lost_key_problems("web1", [c], {"files": [dict(stuck, holds_lost_key=False)]}) == []
