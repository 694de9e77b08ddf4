# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""An env file (NAME=value lines, as systemd's EnvironmentFile and docker --env-file read them)
with some variables set, edited in one piece so that the key id and its secret are replaced
together. Pure: text in, text out. Standard library only (runs on target hosts)."""

import re

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvFileError(Exception):
    """A value or name that cannot be written to an env file; the message names it."""


def check(name, value):
    if not NAME_RE.match(name):
        raise EnvFileError("env name %r is not a variable name; expected letters, digits and _" % (name,))
    if "\n" in value or "\r" in value:
        raise EnvFileError("the value of %s contains a line break; an env file holds one line per variable" % name)


def set_values(text, values):
    """text with every line NAME=... of a name in values (an ordered list of (name, value)) set to
    the value, and each name not present appended in order. Other lines are kept as they are; a
    missing final newline is added before appending."""
    for name, value in values:
        check(name, value)
    wanted = dict(values)
    lines = text.splitlines(True)
    seen = set()
    out = []
    for line in lines:
        name = line.split("=", 1)[0] if "=" in line else None
        if name in wanted:
            eol = line[len(line.rstrip("\r\n")):] or "\n"
            out.append("%s=%s%s" % (name, wanted[name], eol))
            seen.add(name)
        else:
            out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    for name, value in values:
        if name not in seen:
            out.append("%s=%s\n" % (name, value))
    return "".join(out)
