# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: Contributors to the rekey.aws project
# SPDX-License-Identifier: GPL-3.0-or-later

# Internal to rekey.aws: not a public API, may change without notice.
"""What a check-mode run shows of a consumer's file: its text before and after with every secret
masked, and whether it would change. It runs on the host (in rekey.aws.consumer_files), so the
file's real secret never leaves it. The would-be content is made with placeholder values (no new
key exists in check mode): KEY_ID_MARK for the new key id, SECRET_MARK for its secret.
Pure: text in, text out. Standard library only (runs on target hosts)."""

import difflib
import re

from ansible_collections.rekey.aws.plugins.module_utils._credentials_ini import MASK, CredentialsFileError, parse

KEY_ID_MARK = "REKEYAWSNEWKEYIDMARK"
SECRET_MARK = "REKEYAWSNEWSECRETMARK"
NEW_KEY_TEXT = "new key (not created in check mode)"
HIDDEN_LINE = MASK + " (a line not shown: it may hold a secret)"

# Names whose value is a secret, whatever the consumer's own secret variable is called.
_SECRET_NAME_RE = re.compile(r"secret|token|password|passwd|private", re.IGNORECASE)
# A belt for every format: anything shaped like an AWS secret access key (40 characters of
# base64) is masked, wherever it is.
_SECRET_LIKE_RE = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_ENV_LINE_RE = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)(\s*=)(.*)$")
_KEY_ID_RE = r"[A-Z0-9]{16,128}"


def placeholder_key(key_id):
    """The key a check-mode preview writes: the new key's id when it exists (a resumed rotation),
    else KEY_ID_MARK; always SECRET_MARK for the secret."""
    return {"access_key_id": key_id or KEY_ID_MARK, "secret_access_key": SECRET_MARK}


def _belt(line):
    return _SECRET_LIKE_RE.sub(MASK, line)


def _shown(line):
    """A line as shown: the placeholders named, anything secret-like masked."""
    return _belt(line).replace(SECRET_MARK, MASK).replace(KEY_ID_MARK, NEW_KEY_TEXT)


def _env_line(line, secret_name):
    m = _ENV_LINE_RE.match(line)
    if m and m.group(4).strip() and (m.group(2) == secret_name or _SECRET_NAME_RE.search(m.group(2))):
        return m.group(1) + m.group(2) + m.group(3) + MASK
    return line


def _template_matchers(pattern_text):
    """(plain lines, [(regex, pieces)]) of a template rendered with the placeholders: the lines
    without one are literal; each line with one becomes a regex whose groups are the values."""
    plain, matchers = set(), []
    for line in pattern_text.splitlines():
        parts = re.split("(%s|%s)" % (KEY_ID_MARK, SECRET_MARK), line)
        if len(parts) == 1:
            plain.add(line)
            continue
        regex = "".join(re.escape(p) if i % 2 == 0 else ("(%s)" % _KEY_ID_RE if p == KEY_ID_MARK else "(.+?)")
                        for i, p in enumerate(parts))
        matchers.append((re.compile("^%s$" % regex), parts))
    return plain, matchers


def _template_line(line, plain, matchers):
    """A line of a file a template made: shown when the template makes it as it is, or makes it
    around a key id (shown) and secret (masked); any other line is hidden."""
    if line in plain:
        return line
    for regex, parts in matchers:
        m = regex.match(line)
        if not m:
            continue
        values = iter(m.groups())
        out = []
        for i, p in enumerate(parts):
            if i % 2 == 0:
                out.append(p)
            else:
                value = next(values)
                out.append(value if p == KEY_ID_MARK else MASK)
        return "".join(out)
    return HIDDEN_LINE


def masked(consumer, text, pattern_text=""):
    """The text of a consumer's file with every secret masked (None stays None). pattern_text,
    for format template, is the template rendered with the placeholders: a line of the file is
    shown only where the template would make it, with its secret masked."""
    if text is None:
        return None
    fmt = consumer["format"]
    if fmt == "credentials":
        try:
            lines = parse(text).render(mask=True).splitlines()
        except CredentialsFileError:
            lines = [HIDDEN_LINE] if text else []
    elif fmt == "env":
        secret_name = (consumer.get("env_names") or {}).get("secret_access_key")
        lines = [_env_line(line, secret_name) for line in text.splitlines()]
    else:
        plain, matchers = _template_matchers(pattern_text)
        lines = [_template_line(line, plain, matchers) for line in text.splitlines()]
    return "".join(_shown(line) + "\n" for line in lines)


def content_changes(before, after):
    """Whether the masked texts differ: a check-mode preview cannot compare the secret (none is
    read), so a file that already holds the key id differs at most in a masked secret."""
    return before != after


def diff_lines(path, before, after):
    """The unified diff of the masked texts, as lines (a missing file is /dev/null)."""
    return list(difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(),
                                     "/dev/null" if before is None else path, path, lineterm=""))


def attribute_changes(current, wanted):
    """What would change in a file's mode and owners: current and wanted are {mode, owner, group}
    (a wanted value of None is left as it is; current None: the file does not exist)."""
    if current is None:
        return []
    out = []
    for field in ("mode", "owner", "group"):
        if wanted.get(field) is not None and current.get(field) != wanted[field]:
            out.append("%s %s -> %s" % (field, current.get(field), wanted[field]))
    return out


def file_preview(name, path, before, after, attributes):
    """One file's preview: would (create, change, keep), what changes and the masked diff; before
    and after are masked() texts, attributes what attribute_changes() found."""
    if before is None:
        would, changes = "create", ["created"]
    else:
        changes = (["content"] if content_changes(before, after) else []) + list(attributes)
        would = "change" if changes else "keep"
    return {"name": name, "path": path, "would": would, "changes": changes, "changed": would != "keep",
            "diff_lines": diff_lines(path, before, after)}
