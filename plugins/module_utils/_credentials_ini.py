# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.

"""Line-based editor for AWS shared credentials files.

configparser would drop comments and reorder keys on write, so this keeps the file as a list of
lines and edits only the lines it must. Parsing follows what botocore's reader (a strict
configparser.RawConfigParser) accepts, so a file this refuses is one botocore would refuse too.

Line endings: an untouched line keeps its own ending, byte for byte; a line this writes gets the
file's first line ending (CRLF files stay CRLF, new files get LF). A missing newline at the end
of the file is kept unless a line is written after it.

Errors never quote a line's text, only line numbers and key names: the text may be a secret.
"""

import re

MASK = "********"
# aws_security_token is the legacy name botocore still reads (in preference to aws_session_token).
SECRET_KEYS = ("aws_secret_access_key", "aws_session_token", "aws_security_token")

_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+")
_BOM = "\ufeff"


class CredentialsFileError(Exception):
    """The file cannot be parsed or the requested edit is impossible."""


class _Line(object):
    __slots__ = ("text", "eol", "kind", "name", "key", "prefix", "value", "indent")

    def __init__(self, text, eol, kind, name=None, key=None, prefix="", value="", indent=0):
        self.text = text      # the line without its ending
        self.eol = eol        # "\n", "\r\n" or "" (last line without newline)
        self.kind = kind      # blank | comment | section | key | continuation
        self.name = name      # section: the profile name
        self.key = key        # key and continuation: the lower-cased key name
        self.prefix = prefix  # key: everything before the value ("key = ")
        self.value = value    # key: the stripped value; continuation: the stripped text
        self.indent = indent


def _split_lines(text):
    for raw in _LINE_RE.findall(text):
        if raw.endswith("\r\n"):
            yield raw[:-2], "\r\n"
        elif raw.endswith("\n"):
            yield raw[:-1], "\n"
        else:
            yield raw, ""


def _classify(text, number, previous_key, section):
    stripped = text.strip()
    if not stripped:
        return _Line(text, "", "blank")
    if stripped[0] in "#;":
        return _Line(text, "", "comment")
    indent = len(text) - len(text.lstrip())
    if previous_key is not None and indent > previous_key.indent:
        return _Line(text, "", "continuation", key=previous_key.key, value=stripped, indent=indent)
    if stripped.startswith("[") and "]" in stripped:
        name = stripped[1:stripped.rindex("]")]
        if not name:
            raise CredentialsFileError("line %d: empty section header '[]'" % number)
        return _Line(text, "", "section", name=name)
    match = re.search(r"[=:]", text)
    if match is None:
        raise CredentialsFileError(
            "line %d is neither 'key = value', a comment nor a [profile] header" % number)
    key = text[:match.start()].strip().lower()
    if not key:
        raise CredentialsFileError("line %d has a value but no key name" % number)
    if section is None:
        raise CredentialsFileError(
            "line %d: key %r comes before any [profile] header" % (number, key))
    rest = text[match.end():]
    value = rest.strip()
    prefix = text[:len(text) - len(rest.lstrip())]
    return _Line(text, "", "key", key=key, prefix=prefix, value=value, indent=indent)


def _check_value(key, value):
    if not isinstance(value, str) or not value or value != value.strip() or any(
            ord(char) < 32 or ord(char) == 127 for char in value):
        raise CredentialsFileError(
            "value for %s must be a non-empty single line without surrounding spaces or control "
            "characters (value not shown)" % key)


def parse(text):
    """Parse the text of a credentials file into a CredentialsDocument."""
    bom = text.startswith(_BOM)
    if bom:
        text = text[len(_BOM):]
    lines = []
    sections = {}
    keys = set()
    section = None
    previous_key = None
    for number, (body, eol) in enumerate(_split_lines(text), 1):
        line = _classify(body, number, previous_key, section)
        line.eol = eol
        if line.kind == "section":
            if line.name in sections:
                raise CredentialsFileError(
                    "profile [%s] appears twice (lines %d and %d); merge or remove one"
                    % (line.name, sections[line.name], number))
            sections[line.name] = number
            section = line.name
            keys = set()
            previous_key = None
        elif line.kind == "key":
            if line.key in keys:
                raise CredentialsFileError(
                    "key %s appears twice in profile [%s] (second at line %d)"
                    % (line.key, section, number))
            keys.add(line.key)
            previous_key = line
        elif line.kind == "comment":
            # configparser ends a multi-line value at a comment, not at a blank line
            previous_key = None
        lines.append(line)
    return CredentialsDocument(lines, bom)


class CredentialsDocument(object):
    """A credentials file as lines; edits touch only the lines they must."""

    def __init__(self, lines, bom=False):
        self._lines = lines
        self._bom = bom

    @property
    def newline(self):
        for line in self._lines:
            if line.eol:
                return line.eol
        return "\n"

    def profiles(self):
        return [line.name for line in self._lines if line.kind == "section"]

    def has_profile(self, profile):
        return self._span(profile) is not None

    def get(self, profile, key):
        """The value of key in profile (continuation lines joined by newlines), or None."""
        span = self._span(profile)
        if span is None:
            return None
        index = self._key_index(span, key.lower())
        if index is None:
            return None
        parts = [self._lines[index].value]
        parts.extend(line.value for line in self._lines[index + 1:self._key_end(index)])
        return "\n".join(parts)

    def set_values(self, profile, values):
        """Set (value str) or remove (value None) keys of profile, creating it when needed.

        values is an ordered list of (key, value) pairs; new keys are added in that order after
        the profile's last key. Returns True when the document changed.
        """
        check_profile(profile)
        for key, value in values:
            if value is not None:
                _check_value(key, value)
        if self._span(profile) is None:
            present = [(key, value) for key, value in values if value is not None]
            if not present:
                return False
            self._append_section(profile, present)
            return True
        changed = False
        for key, value in values:
            key = key.lower()
            span = self._span(profile)
            index = self._key_index(span, key)
            if index is None:
                if value is not None:
                    self._insert(self._after_last_key(span), [self._key_line(key, value)])
                    changed = True
                continue
            end = self._key_end(index)
            if value is None:
                del self._lines[index:end]
                changed = True
            elif self._lines[index].value != value or end != index + 1:
                line = self._lines[index]
                line.text = line.prefix + value
                line.value = value
                del self._lines[index + 1:end]
                changed = True
        return changed

    def remove_profile(self, profile):
        """Remove the profile's header, keys and comments. True when removed.

        A block of comment lines directly above a header (no blank line between) describes that
        profile: it goes with it, and stays when the profile before it is removed. Comments at
        the very top of the file describe the file and always stay.
        """
        span = self._span(profile)
        if span is None:
            return False
        start, end = span
        above = start
        while above > 0 and self._lines[above - 1].kind == "comment":
            above -= 1
        if above > 0:
            start = above
        if end < len(self._lines):
            # comments right above the next header describe that profile: keep them
            while end - 1 > start and self._lines[end - 1].kind == "comment":
                end -= 1
        else:
            while start > 0 and self._lines[start - 1].kind == "blank":
                start -= 1
        del self._lines[start:end]
        return True

    def render(self, mask=False):
        """The file's text; with mask, every secret value replaced by MASK."""
        out = [_BOM] if self._bom else []
        masking = False
        for line in self._lines:
            text = line.text
            if line.kind == "key":
                masking = mask and line.key in SECRET_KEYS
                if masking and line.value:
                    text = line.prefix + MASK
            elif line.kind == "continuation":
                if masking:
                    text = text[:line.indent] + MASK
            elif line.kind != "blank":
                masking = False
            out.append(text)
            out.append(line.eol)
        return "".join(out)

    def _span(self, profile):
        """(header index, index after the profile's last line) or None."""
        start = None
        for index, line in enumerate(self._lines):
            if line.kind != "section":
                continue
            if start is not None:
                return start, index
            if line.name == profile:
                start = index
        return None if start is None else (start, len(self._lines))

    def _key_index(self, span, key):
        for index in range(span[0] + 1, span[1]):
            line = self._lines[index]
            if line.kind == "key" and line.key == key:
                return index
        return None

    def _key_end(self, index):
        """Index after the key line at index and its continuation lines (blank lines between
        continuation lines belong to the value, trailing ones do not)."""
        end = index + 1
        probe = end
        while probe < len(self._lines) and self._lines[probe].kind in ("continuation", "blank"):
            probe += 1
            if self._lines[probe - 1].kind == "continuation":
                end = probe
        return end

    def _after_last_key(self, span):
        position = span[0] + 1
        for index in range(span[0] + 1, span[1]):
            if self._lines[index].kind in ("key", "continuation"):
                position = index + 1
        return position

    def _key_line(self, key, value):
        return _Line(key + " = " + value, self.newline, "key", key=key, prefix=key + " = ",
                     value=value)

    def _insert(self, position, new_lines):
        newline = self.newline
        if position > 0 and not self._lines[position - 1].eol:
            self._lines[position - 1].eol = newline
        self._lines[position:position] = new_lines

    def _append_section(self, profile, values):
        new_lines = []
        if self._lines and self._lines[-1].kind != "blank":
            new_lines.append(_Line("", self.newline, "blank"))
        new_lines.append(_Line("[%s]" % profile, self.newline, "section", name=profile))
        new_lines.extend(self._key_line(key.lower(), value) for key, value in values)
        self._insert(len(self._lines), new_lines)


def check_profile(profile):
    """Raise CredentialsFileError unless profile can be written as a [profile] header."""
    if not isinstance(profile, str) or not profile or profile != profile.strip() or "]" in profile \
            or any(ord(char) < 32 or ord(char) == 127 for char in profile):
        raise CredentialsFileError(
            "profile %r is not a valid profile name: expected a non-empty name without ']', line "
            "breaks, control characters or surrounding spaces" % (profile,))
