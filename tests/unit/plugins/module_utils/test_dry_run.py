"""The dry run (consumer_rollout in check mode): the masked texts and diff made on the host, the
file decision, and the per-host preview the controller makes of them."""
import os

import pytest

from rotation_fixtures import OLD, NEW

from ansible_collections.rekey.aws.plugins.module_utils import _dry_run as dry_run
from ansible_collections.rekey.aws.plugins.module_utils import _masked_diff as diff
from ansible_collections.rekey.aws.plugins.modules import consumer_files

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # 40 characters, as AWS makes them
ODD_SECRET = "short-secret"  # not shaped like an AWS secret: only its place in the file masks it
MASK = "********"
ENV = {"access_key_id": "AWS_ACCESS_KEY_ID", "secret_access_key": "AWS_SECRET_ACCESS_KEY"}


def consumer(fmt="credentials", **fields):
    c = {"host": "web1", "name": "app", "iam_user": "app", "path": "/etc/app/aws", "format": fmt,
         "profile": "default", "env_names": ENV, "mode": "0600", "apply": "restart", "service": "app",
         "apply_command": "", "health_url": "", "health_command": "true", "health_expect_key_id": False,
         "health_timeout_s": 5, "action": "rotate", "phase": "planned", "old_key_id": OLD, "new_key_id": None,
         "target_key_id": None}
    c.update(fields)
    return c


TEMPLATE = "# app\n{\"id\": \"%s\", \"secret\": \"%s\"}\nregion=eu\n"


@pytest.mark.parametrize("fmt, text, pattern, shown", [
    ("credentials", "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (OLD, ODD_SECRET), "",
     "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (OLD, MASK)),
    # another profile's secret and token in the same file are masked too
    ("credentials", "[other]\naws_secret_access_key=%s\naws_session_token = tok\n" % ODD_SECRET, "",
     "[other]\naws_secret_access_key=%s\naws_session_token = %s\n" % (MASK, MASK)),
    ("credentials", "not an ini file %s\n" % ODD_SECRET, "", diff.HIDDEN_LINE + "\n"),
    ("env", "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nDB_PASSWORD=pw\nA=1\n" % (OLD, ODD_SECRET), "",
     "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nDB_PASSWORD=%s\nA=1\n" % (OLD, MASK, MASK)),
    ("env", "export MY_SECRET = %s\n" % ODD_SECRET, "", "export MY_SECRET =%s\n" % MASK),
    # a secret under a name of no meaning is still masked when it is shaped like one
    ("env", "X=%s\n" % SECRET, "", "X=%s\n" % MASK),
    # template: a line is shown where the template makes it; the secret's place is masked
    ("template", TEMPLATE % (OLD, ODD_SECRET), TEMPLATE % (diff.KEY_ID_MARK, diff.SECRET_MARK),
     TEMPLATE % (OLD, MASK)),
    ("template", "stray %s\nregion=eu\n" % ODD_SECRET, TEMPLATE % (diff.KEY_ID_MARK, diff.SECRET_MARK),
     diff.HIDDEN_LINE + "\nregion=eu\n"),
    # the would-be content: the placeholders named, never a value
    ("template", TEMPLATE % (diff.KEY_ID_MARK, diff.SECRET_MARK), TEMPLATE % (diff.KEY_ID_MARK, diff.SECRET_MARK),
     TEMPLATE % (diff.NEW_KEY_TEXT, MASK)),
    ("env", "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (diff.KEY_ID_MARK, diff.SECRET_MARK), "",
     "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (diff.NEW_KEY_TEXT, MASK)),
])
def test_masked_shows_key_ids_and_never_a_secret(fmt, text, pattern, shown):
    got = diff.masked(consumer(fmt), text, pattern)
    assert got == shown
    assert ODD_SECRET not in got and SECRET not in got


def test_a_missing_file_stays_missing():
    assert diff.masked(consumer(), None) is None


@pytest.mark.parametrize("before, after, attributes, would, changes", [
    (None, "a\n", [], "create", ["created"]),
    ("a\n", "b\n", [], "change", ["content"]),
    ("a\n", "a\n", ["mode 0644 -> 0600"], "change", ["mode 0644 -> 0600"]),
    ("a\n", "a\n", [], "keep", []),
])
def test_file_preview_decides_create_change_or_keep(before, after, attributes, would, changes):
    p = diff.file_preview("app", "/etc/app/aws", before, after, attributes)
    assert (p["would"], p["changes"], p["changed"]) == (would, changes, would != "keep")


def test_diff_lines_are_a_unified_diff_of_the_masked_texts():
    lines = diff.diff_lines("/etc/app/aws", "id = %s\nsecret = %s\n" % (OLD, MASK), "id = new\nsecret = %s\n" % MASK)
    assert lines[:2] == ["--- /etc/app/aws", "+++ /etc/app/aws"]
    assert "-id = %s" % OLD in lines and "+id = new" in lines and " secret = %s" % MASK in lines
    assert diff.diff_lines("/x", None, "a\n")[:2] == ["--- /dev/null", "+++ /x"]


@pytest.mark.parametrize("current, wanted, changes", [
    (None, {"mode": "0600"}, []),
    ({"mode": "0600", "owner": "app", "group": "app"}, {"mode": "0600", "owner": "app", "group": None}, []),
    ({"mode": "0644", "owner": "root", "group": "root"}, {"mode": "0600", "owner": "app", "group": None},
     ["mode 0644 -> 0600", "owner root -> app"]),
])
def test_attribute_changes(current, wanted, changes):
    assert diff.attribute_changes(current, wanted) == changes


@pytest.mark.parametrize("fields, previewed", [
    ({}, True),
    ({"phase": "distributing", "new_key_id": NEW}, True),
    ({"phase": "distributed", "new_key_id": NEW}, False),
    ({"action": "retire"}, False),
    ({"action": "none"}, False),
])
def test_previewed_consumers_are_those_a_run_would_write(fields, previewed):
    assert dry_run.previewed([consumer(**fields)]) == ([consumer(**fields)] if previewed else [])


def test_placeholder_keys_never_hold_a_secret_and_invent_no_id():
    assert dry_run.placeholder_keys([consumer()]) == {"app": {"access_key_id": diff.KEY_ID_MARK,
                                                              "secret_access_key": diff.SECRET_MARK}}
    resumed = consumer(new_key_id=NEW, phase="distributing")
    assert dry_run.placeholder_keys([resumed])["app"]["access_key_id"] == NEW
    assert dry_run.key_change(consumer()) == "%s -> new key (not created in check mode)" % OLD


def found(*files, **extra):
    return dict({"files": [{"name": n, "changed": w != "keep", "preview": {
        "would": w, "changes": ["content"] if w == "change" else [], "diff_lines": ["-a", "+b"],
        "before": "a\n", "after": "b\n"}} for n, w in files], "problems": []}, **extra)


@pytest.mark.parametrize("consumers, result, settled, files, applies, problems", [
    # two consumers of one service: restarted once
    ([consumer(name="a"), consumer(name="b")], found(("a", "change"), ("b", "create")), [],
     ["change", "create"], ["restart service app"], []),
    ([consumer(apply="reload", service="nginx")], found(("app", "change")), [], ["change"], ["reload service nginx"], []),
    ([consumer(apply="command", apply_command="/bin/kick")], found(("app", "change")), [], ["change"], ["run /bin/kick"],
     []),
    ([consumer(apply="none")], found(("app", "change")), [], ["change"], [], []),
    # a resumed rotation whose app already runs on the new key: not restarted
    ([consumer(new_key_id=NEW)], found(("app", "keep")), ["app"], ["keep"], [], []),
    ([consumer()], {"unreachable": True, "msg": "ssh: no route"}, [], ["not previewed"], [],
     ["web1: unreachable: ssh: no route"]),
    ([consumer(name="a"), consumer(name="b")],
     found(("a", "change"), problems=["b /etc/b: owner 'x' is not a user on this host"]), [],
     ["change", "not previewed"], ["restart service app"], ["web1 b /etc/b: owner 'x' is not a user on this host"]),
])
def test_host_preview_names_file_and_service(consumers, result, settled, files, applies, problems):
    p = dry_run.host_preview("web1", consumers, result, settled)
    assert [e["file"] for e in p["consumers"]] == files
    assert p["applies"] == applies and p["problems"] == problems
    assert all(e["host"] == "web1" and e["path"] == "/etc/app/aws" for e in p["consumers"])


def test_preview_lines_say_per_consumer_file_key_and_apply():
    p = dry_run.host_preview("web1", [consumer(name="a"), consumer(name="b", apply="none")],
                             found(("a", "change"), ("b", "keep")), [])
    lines = dry_run.preview_lines(p)
    assert lines == [
        "web1 a (IAM user app, key %s -> new key (not created in check mode)): /etc/app/aws would change (content); "
        "restart service app" % OLD,
        "web1 b (IAM user app, key %s -> new key (not created in check mode)): /etc/app/aws would stay as it is; "
        "no restart (apply none)" % OLD,
        "web1: once each: restart service app",
    ]
    d = dry_run.ansible_diffs(p, found(("a", "change"), ("b", "keep")))[0]
    assert d["before"] == "a\n" and d["after"] == "b\n" and "/etc/app/aws" in d["before_header"]


# ---- consumer_files in check mode, on real files ----

class Module:
    def __init__(self, **params):
        self.params = dict({"keys": {}, "contents": {}}, **params)
        self.check_mode = True


@pytest.mark.parametrize("fmt, text, contents", [
    ("credentials", "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (OLD, SECRET), {}),
    ("env", "AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (OLD, ODD_SECRET), {}),
    ("template", TEMPLATE % (OLD, ODD_SECRET), {"app": TEMPLATE % (diff.KEY_ID_MARK, diff.SECRET_MARK)}),
])
def test_check_mode_previews_each_format_masked_and_touches_nothing(tmp_path, fmt, text, contents):
    path = tmp_path / "aws"
    path.write_text(text)
    os.chmod(path, 0o644)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    c = consumer(fmt, path=str(path), backup=str(tmp_path / "b" / "20261130T000000Z-1-web1-app.bak"))
    # Whatever keys a caller passes, check mode writes placeholders only.
    keys = {"app": {"access_key_id": diff.KEY_ID_MARK, "secret_access_key": "REAL-NEW-SECRET-never-shown"}}
    result = consumer_files.run(Module(state="written", consumers=[c], keys=keys, contents=contents))
    [f] = result["files"]
    p = f["preview"]
    assert p["would"] == "change" and p["changes"] == ["content", "mode 0644 -> 0600"], p
    assert any(line.startswith("-") and OLD in line for line in p["diff_lines"])
    assert any(line.startswith("+") and diff.NEW_KEY_TEXT in line for line in p["diff_lines"])
    for secret in (SECRET, ODD_SECRET, "REAL-NEW-SECRET", diff.SECRET_MARK, diff.KEY_ID_MARK):
        assert secret not in repr(result)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["aws"]  # no backup directory, no temporary file


def test_check_mode_keeps_a_file_that_already_holds_the_new_key_id(tmp_path):
    path = tmp_path / "aws"
    path.write_text("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n" % (NEW, ODD_SECRET))
    os.chmod(path, 0o600)
    c = consumer("env", path=str(path), backup=str(tmp_path / "b" / "x.bak"))
    keys = {"app": {"access_key_id": NEW, "secret_access_key": diff.SECRET_MARK}}
    [f] = consumer_files.run(Module(state="written", consumers=[c], keys=keys))["files"]
    assert (f["changed"], f["preview"]["would"], f["preview"]["diff_lines"]) == (False, "keep", [])
