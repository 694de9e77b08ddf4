"""rekey.aws.host_dmi_info reads what the host says, and says why a value is missing."""
import sys

from tests.support.ansible_run import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.rekey.aws.plugins.modules import host_dmi_info  # noqa: E402


def test_a_value_is_read_stripped_and_bounded(tmp_path):
    (tmp_path / "sys_vendor").write_text("Amazon EC2\n")
    (tmp_path / "long").write_text("x" * 10000)
    assert host_dmi_info.read(str(tmp_path / "sys_vendor")) == ("Amazon EC2", None)
    assert host_dmi_info.read(str(tmp_path / "long")) == ("x" * 256, None)


def test_a_missing_or_unreadable_value_says_why(tmp_path):
    assert host_dmi_info.read(str(tmp_path / "absent")) == (None, "missing")
    value, why = host_dmi_info.read(str(tmp_path))  # a directory: open() fails like an unreadable file
    assert value is None and why == "Is a directory"
