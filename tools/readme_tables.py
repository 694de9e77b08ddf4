"""Render README.md's role-variable and consumer tables from roles/rotate/meta/argument_specs.yml.

    python tools/readme_tables.py          rewrite the tables in README.md in place
    python tools/readme_tables.py --check  exit 1 when README.md's tables are out of date

The tables stand between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "roles" / "rotate" / "meta" / "argument_specs.yml"
README = REPO / "README.md"
# Play-level variables of playbooks/rotate.yml, which no role entry point reads.
PLAYBOOK_VARS = {
    "rotate_serial": {
        "description": "The distribute play's C(serial): one canary host, then batches of a quarter of the hosts.",
        "default": [1, "25%"], "type": "raw", "entry": "playbook",
    },
}


def _text(description) -> str:
    text = " ".join(description) if isinstance(description, list) else str(description)
    text = re.sub(r"\b[CVOM]\(([^)]*)\)", r"`\1`", text)
    return text.replace("|", "\\|").replace("\n", " ")


def _default(spec: dict) -> str:
    if "default" not in spec:
        return "(required)" if spec.get("required") else ""
    return f"`{yaml.safe_dump(spec['default'], default_flow_style=True).strip().removesuffix('...').strip()}`"


def role_vars() -> dict[str, dict]:
    specs = yaml.safe_load(SPECS.read_text())["argument_specs"]
    merged: dict[str, dict] = {}
    for entry, spec in specs.items():
        for name, option in spec.get("options", {}).items():
            if name == "rotate_consumers":
                continue
            merged.setdefault(name, dict(option, entries=[]))["entries"].append(entry)
    for name, option in PLAYBOOK_VARS.items():
        merged[name] = dict(option, entries=[option["entry"]])
    return merged


def role_vars_table() -> str:
    rows = ["| Variable | Default | Used by | What it does |", "|---|---|---|---|"]
    for name, spec in role_vars().items():
        rows.append(f"| `{name}` | {_default(spec)} | {', '.join(spec['entries'])} | {_text(spec['description'])} |")
    return "\n".join(rows)


def consumer_table() -> str:
    specs = yaml.safe_load(SPECS.read_text())["argument_specs"]
    fields = specs["distribute"]["options"]["rotate_consumers"]["options"]
    rows = ["| Field | Default | What it is |", "|---|---|---|"]
    for name, spec in fields.items():
        choices = f" One of {', '.join(f'`{c}`' for c in spec['choices'])}." if spec.get("choices") else ""
        rows.append(f"| `{name}` | {_default(spec)} | {_text(spec['description'])}{choices} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    for marker, table in (("role-vars", role_vars_table()), ("consumer-fields", consumer_table())):
        pattern = re.compile(rf"(<!-- {marker}:start -->).*?(<!-- {marker}:end -->)", re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md has no <!-- {marker}:start --> ... <!-- {marker}:end --> markers")
        readme = pattern.sub(lambda m, t=table: f"{m.group(1)}\n{t}\n{m.group(2)}", readme)
    return readme


def main() -> int:
    current = README.read_text()
    wanted = render(current)
    if "--check" in sys.argv[1:]:
        if wanted != current:
            print("README.md's tables are out of date: run python tools/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
