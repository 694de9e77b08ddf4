"""README.md stays true: its tables come from the role's argument specs, and it names every module
and every public role variable."""
from pathlib import Path

import yaml

from tools import readme_tables

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_tables_match_the_argument_specs():
    assert readme_tables.render(README) == README, "run: python tools/readme_tables.py"


def test_every_module_is_named():
    modules = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
    missing = [m for m in modules if f"`rekey.aws.{m}`" not in README]
    assert modules and not missing


def test_every_role_default_is_documented():
    defaults = yaml.safe_load((REPO / "roles" / "rotate" / "defaults" / "main.yml").read_text())
    documented = set(readme_tables.role_vars())
    assert defaults and sorted(set(defaults) - documented) == []


def test_the_two_commands_come_first():
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
