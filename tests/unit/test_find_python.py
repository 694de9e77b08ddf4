"""Which Python the venvs are built on, and which ansible-core goes with it: tools/find_python.sh
prefers 3.12+ (ansible-core 2.21) and falls back to a 3.11 such as Debian 12's python3
(ansible-core 2.19), and the Makefile installs the matching requirements and says so once."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIND_PYTHON = REPO / "tools" / "find_python.sh"
REQUIREMENTS = REPO / "requirements"
NOTE = "python: no Python 3.12+ found"


def fake_python(directory, name, version):
    """An interpreter that answers find_python's and the Makefile's version question."""
    path = directory / name
    path.write_text('#!/bin/sh\n[ "$1" = -c ] || exit 2\necho %s\n' % version)
    path.chmod(0o755)
    return str(path)


def find_python(candidates):
    env = dict(os.environ, REKEY_PYTHON_CANDIDATES=" ".join(candidates))
    return subprocess.run([str(FIND_PYTHON)], env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def pythons(tmp_path):
    versions = {"py310": "3.10", "py311": "3.11", "py311b": "3.11", "py312": "3.12", "py313": "3.13",
                "py320": "3.20"}
    made = {name: fake_python(tmp_path, name, version) for name, version in versions.items()}
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    made["broken"] = str(broken)
    made["missing"] = str(tmp_path / "no-such-python")
    return made


@pytest.mark.parametrize("candidates, chosen", [
    (["py313", "py312", "py311"], "py313"),
    (["py311", "py312"], "py312"),        # any 3.12+ beats a 3.11 listed before it
    (["py311", "py320"], "py320"),        # 3.20 is newer than 3.12, not older
    (["py311"], "py311"),                 # Debian 12: only its python3
    (["py310", "py311", "py311b"], "py311"),
    (["missing", "broken", "py311"], "py311"),
])
def test_the_first_312_else_the_first_311(pythons, candidates, chosen):
    result = find_python([pythons[c] for c in candidates])
    assert result.returncode == 0, result.stderr
    assert result.stdout == pythons[chosen] + "\n"


def test_no_python_311_is_a_clear_error(pythons):
    result = find_python([pythons["missing"], pythons["py310"], pythons["broken"]])
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no Python >= 3.11 found" in result.stderr and pythons["py310"] in result.stderr


def test_a_real_interpreter_is_chosen_by_its_version():
    result = find_python([sys.executable])
    if sys.version_info >= (3, 11):
        assert result.returncode == 0, result.stderr
        assert os.path.samefile(result.stdout.strip(), sys.executable)
    else:
        assert result.returncode == 1


def make_dry_run(candidates, targets, tmp_path):
    """make -n with its own venv paths: prints the recipes it would run, builds nothing."""
    env = dict(os.environ, REKEY_PYTHON_CANDIDATES=" ".join(candidates))
    env.pop("MAKEFLAGS", None)
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "VENV=%s" % (tmp_path / "venv"),
         "VENV_218=%s" % (tmp_path / "venv-2.18")] + targets,
        cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def pin(path, name):
    for line in path.read_text().splitlines():
        if line.startswith(name + "=="):
            return line.split("==", 1)[1]
    raise AssertionError("%s pins no %s" % (path, name))


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_on_python_311_the_makefile_installs_the_311_pins_and_says_so_once(pythons, tmp_path):
    out = make_dry_run([pythons["py311"]], ["test", "demo"], tmp_path)
    assert "-r requirements/test-py311.txt -c requirements/constraints-py311.txt" in out
    assert "requirements/test.txt" not in out
    notes = [line for line in out.splitlines() if NOTE in line]
    assert len(notes) == 2, notes  # one for test, one for demo
    core_311 = pin(REQUIREMENTS / "test-py311.txt", "ansible-core")
    core_ci = pin(REQUIREMENTS / "test.txt", "ansible-core")
    assert "ansible-core %s on %s" % (core_311, pythons["py311"]) in notes[0]
    assert "CI tests %s" % core_ci in notes[0]


@needs_make
def test_on_python_312_and_newer_nothing_changes(pythons, tmp_path):
    out = make_dry_run([pythons["py311"], pythons["py313"]], ["test", "demo"], tmp_path)
    assert "-r requirements/test.txt -c requirements/constraints.txt" in out
    assert "py311" not in out and NOTE not in out
    assert 'tools/make_venv.sh "%s"' % pythons["py313"] in out


@needs_make
def test_a_venv_made_by_another_python_is_made_again(pythons, tmp_path):
    for venv in ("venv", "venv-2.18"):
        (tmp_path / venv).mkdir()
        (tmp_path / venv / ".installed").touch()
        (tmp_path / venv / "pyvenv.cfg").write_text("home = /x\nversion = 3.13.0\n")
    (tmp_path / "venv" / "collections" / "ansible_collections" / "rekey").mkdir(parents=True)
    (tmp_path / "venv" / "collections" / "ansible_collections" / "rekey" / "aws").symlink_to(REPO)
    current = make_dry_run([pythons["py313"]], ["venv", "venv-2.18"], tmp_path)
    assert "rm -rf" not in current
    switched = make_dry_run([pythons["py311"]], ["venv", "venv-2.18"], tmp_path)
    assert "rm -rf %s\n" % (tmp_path / "venv") in switched
    assert "rm -rf %s\n" % (tmp_path / "venv-2.18") in switched
    none_found = make_dry_run([pythons["py310"]], ["venv", "venv-2.18"], tmp_path)
    assert "rm -rf" not in none_found  # kept: find_python failing is no reason to delete a venv


def pins(path):
    return dict(line.split("==", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#"))


def test_the_311_pins_differ_from_the_ci_pins_only_where_311_needs_it():
    core_311 = pins(REQUIREMENTS / "test-py311.txt").pop("ansible-core")
    assert core_311.startswith("2.19.")
    test, test_311 = pins(REQUIREMENTS / "test.txt"), pins(REQUIREMENTS / "test-py311.txt")
    assert test.pop("ansible-core") != core_311
    test_311.pop("ansible-core")
    assert test_311 == test
    full, full_311 = pins(REQUIREMENTS / "constraints.txt"), pins(REQUIREMENTS / "constraints-py311.txt")
    assert full_311["ansible-core"] == core_311
    changed = sorted(name for name in full if full_311.get(name) != full[name])
    assert changed == ["ansible-core", "networkx"]  # networkx 3.7 needs Python 3.12
    assert sorted(full_311) == sorted(full)
