# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""Role variables read the way the role reads them: extra vars given as key=value, and AWX survey
answers, arrive as strings, so numbers and booleans are converted once, as Ansible's int and bool
filters do, and a list may be given as a comma-separated string; values are quoted in messages as
its to_json filter quotes them."""

import json


def to_json(value):
    return json.dumps(value)


def whole(value):
    """A number as the int filter reads it: "42" and 42.9 are 42, anything else is 0."""
    try:
        if isinstance(value, str):
            return int(value, 10)
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0


def flag(value):
    """A boolean as the bool filter reads it: true, yes, on, 1 (any case) are True, anything else
    False."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.lower()
    return value in ("yes", "on", "1", "true", 1)


def names(value):
    """A list of names: a list as it is, a comma-separated string (an AWX survey's text field, or
    -e name=a,b) split and trimmed, nothing as []."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def truncate(text, length):
    """As Jinja's truncate filter: unchanged up to length + 5 characters, else cut at a word
    boundary before length - 3 and ended with '...'."""
    if len(text) <= length + 5:
        return text
    return text[:length - 3].rsplit(" ", 1)[0] + "..."
