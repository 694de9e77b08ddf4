# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

import pytest

from plugins.module_utils._env_file import EnvFileError, set_values

ID, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
BOTH = [(ID, "AKIANEW"), (SECRET, "s3cr3t")]


@pytest.mark.parametrize("text, expected", [
    ("", "AWS_ACCESS_KEY_ID=AKIANEW\nAWS_SECRET_ACCESS_KEY=s3cr3t\n"),
    ("A=1\n", "A=1\nAWS_ACCESS_KEY_ID=AKIANEW\nAWS_SECRET_ACCESS_KEY=s3cr3t\n"),
    ("A=1", "A=1\nAWS_ACCESS_KEY_ID=AKIANEW\nAWS_SECRET_ACCESS_KEY=s3cr3t\n"),
    ("AWS_SECRET_ACCESS_KEY=old\n# c\nAWS_ACCESS_KEY_ID=AKIAOLD\nB=2\n",
     "AWS_SECRET_ACCESS_KEY=s3cr3t\n# c\nAWS_ACCESS_KEY_ID=AKIANEW\nB=2\n"),
    ("AWS_ACCESS_KEY_ID=AKIAOLD\r\nX=1\r\n", "AWS_ACCESS_KEY_ID=AKIANEW\r\nX=1\r\nAWS_SECRET_ACCESS_KEY=s3cr3t\n"),
    # every line of the name is set: an app reading the first or the last gets the same key
    ("AWS_ACCESS_KEY_ID=a\nAWS_ACCESS_KEY_ID=b\n", "AWS_ACCESS_KEY_ID=AKIANEW\nAWS_ACCESS_KEY_ID=AKIANEW\n"
     "AWS_SECRET_ACCESS_KEY=s3cr3t\n"),
    # a name that only starts like ours is not ours
    ("AWS_ACCESS_KEY_ID_OLD=x\n", "AWS_ACCESS_KEY_ID_OLD=x\nAWS_ACCESS_KEY_ID=AKIANEW\nAWS_SECRET_ACCESS_KEY=s3cr3t\n"),
], ids=["empty", "other-var", "no-final-newline", "both-present", "crlf-kept", "duplicates", "prefix-name"])
def test_set_values(text, expected):
    assert set_values(text, BOTH) == expected


def test_set_values_is_idempotent():
    once = set_values("A=1\n", BOTH)
    assert set_values(once, BOTH) == once


@pytest.mark.parametrize("name, value, message", [
    ("1BAD", "x", "env name '1BAD' is not a variable name"),
    ("A-B", "x", "env name 'A-B' is not a variable name"),
    ("GOOD", "x\ny", "the value of GOOD contains a line break"),
])
def test_bad_names_and_values_are_refused(name, value, message):
    with pytest.raises(EnvFileError, match=message):
        set_values("", [(name, value)])
