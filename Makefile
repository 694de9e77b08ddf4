# rekey.aws: every target installs what it needs on a fresh machine (Debian packages with apt-get,
# Python packages into .venv and .venv-2.18).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV        := .venv
VENV_218    := .venv-2.18
BIN         := $(abspath $(VENV))/bin
COLLECTIONS := $(abspath $(VENV))/collections
COLL_LINK   := $(COLLECTIONS)/ansible_collections/rekey/aws

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
# When make started: make test's last pytest run prints the wall time against tests/BUDGET.
STARTED     := $(shell date +%s)
# Integration and fleet tests side by side. worksteal gives each worker a contiguous share of the
# cases (so a worker runs a test file's cases one after another, on its own lab for that file) and
# moves cases to a worker that ran out. (loadgroup would keep cases that share one expensive run
# together, but pytest-xdist 3.8 cannot mark them with pytest 9.) The fleet tests are bound by
# CPU: on 2 cores, 4 workers keep both busy while runs wait on SSH, restarts and health checks.
WORKERS ?= 4
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export LC_ALL := C.UTF-8

# The Python both venvs are built on (tools/find_python.sh): the newest 3.12+, where .venv gets
# ansible-core 2.21 (requirements/test.txt); without one, a 3.11 such as Debian 12's python3, where
# it gets the newest ansible-core that still runs there (requirements/test-py311.txt) and make test
# and make demo say so in one line. CI's machine has 3.12+. REKEY_PYTHON_CANDIDATES overrides the
# search: REKEY_PYTHON_CANDIDATES=/usr/bin/python3.11 make VENV=/tmp/venv-311 unit
PYTHON      := $(shell tools/find_python.sh 2>/dev/null)
PY_MINOR    := $(if $(PYTHON),$(shell "$(PYTHON)" -c 'import sys; print("%d.%d" % sys.version_info[:2])'))
core_pin     = $(shell sed -n 's/^ansible-core==//p' $(1))
ifeq ($(PY_MINOR),3.11)
VENV_REQS   := requirements/test-py311.txt
VENV_CONS   := requirements/constraints-py311.txt
PY_NOTE     := echo "python: no Python 3.12+ found, so $(VENV) runs ansible-core $(call core_pin,$(VENV_REQS)) on $(PYTHON) (3.11; ansible-core 2.20+ need 3.12); CI tests $(call core_pin,requirements/test.txt) on 3.12+"
else
VENV_REQS   := requirements/test.txt
VENV_CONS   := requirements/constraints.txt
PY_NOTE     := :
endif
# A venv made by another Python than the one chosen now (pyenv's 3.13 removed, a 3.12 installed
# next to Debian's 3.11) is made again; with no Python found, an existing venv is kept.
venv_minor   = $(shell sed -n 's/^version *= *\([0-9]*\.[0-9]*\).*/\1/p' $(1)/pyvenv.cfg 2>/dev/null)
stale_venv   = $(if $(PY_MINOR),$(if $(filter-out $(PY_MINOR),$(call venv_minor,$(1))),FORCE))

.PHONY: FORCE test deps venv venv-2.18 unit unit-2.18 integration molecule sanity sanity-2.18 docs ee lint demo bench bench-200 clean

## test: everything CI runs, quickest checks first; then the integration and fleet tests side by
## side (molecule among them); make test's wall time and pytest's summary are the last lines
test: deps venv venv-2.18
	@$(PY_NOTE)
	$(MAKE) --no-print-directory -j2 --output-sync=target sanity sanity-2.18 lint docs ee
	$(MAKE) --no-print-directory unit unit-2.18
	REKEY_TEST_STARTED=$(STARTED) $(BIN)/pytest -n $(WORKERS) --dist worksteal tests/integration

deps:
	@if [ -x tools/install_system_deps.sh ]; then tools/install_system_deps.sh; fi

venv: $(VENV)/.installed $(COLL_LINK)

$(VENV)/.installed: $(VENV_REQS) $(VENV_CONS) $(call stale_venv,$(VENV))
	rm -rf $(VENV)
	tools/make_venv.sh "$(PYTHON)" $(VENV)
	$(BIN)/pip install -q -r $(VENV_REQS) -c $(VENV_CONS)
	touch $@

venv-2.18: $(VENV_218)/.installed

$(VENV_218)/.installed: requirements/core-2.18.txt $(call stale_venv,$(VENV_218))
	rm -rf $(VENV_218)
	tools/make_venv.sh "$(PYTHON)" $(VENV_218)
	$(VENV_218)/bin/pip install -q -r requirements/core-2.18.txt
	touch $@

FORCE:

# ansible and ansible-test find the collection only under an ansible_collections/rekey/aws path.
$(COLL_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

unit: venv
	$(BIN)/pytest tests/unit

unit-2.18: venv-2.18 venv
	ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) $(VENV_218)/bin/python -m pytest -q -p no:cacheprovider tests/unit

integration: deps venv
	$(BIN)/pytest -n $(WORKERS) --dist worksteal tests/integration

# molecule runs the role's scenario on a lab of fleet hosts (tools/lab.py); make test runs it
# as tests/integration/test_molecule.py, beside the other fleet tests.
molecule: deps venv
	$(BIN)/pytest tests/integration/test_molecule.py

## bench: a forced rotation against a bare push on 1, 10 and 50 hosts (forks 5 and 25), and 20 users
##        under an 8 s propagation delay: the table, the goals' verdicts, demo-out/bench.json and
##        the chart demo-out/bench.png; exits 1 when IAM calls per user exceed 12 or grow with the fleet
bench: deps venv $(VENV)/.bench-installed
	$(BIN)/python bench/bench_rotation.py

## bench-200: the same on 200 hosts (BENCH_200_FORKS=5,25 for both; about 23 minutes at forks 25
##            on 2 cores), merged with demo-out/bench.json into demo-out/bench-200.json and .png
BENCH_200_FORKS ?= 25
bench-200: deps venv $(VENV)/.bench-installed
	$(BIN)/python bench/bench_rotation.py --hosts 200 --forks $(BENCH_200_FORKS) --many-users 0 \
	  --merge demo-out/bench.json --out demo-out/bench-200.json

$(VENV)/.bench-installed: requirements/bench.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements/bench.txt
	touch $@

sanity: venv
	mkdir -p .build && tools/sanity.sh $(VENV) > .build/sanity.log 2>&1 || { cat .build/sanity.log; exit 1; }
	@grep -E '^(ERROR|Running sanity)' .build/sanity.log | sed 's/^/  /'; echo "sanity (ansible-core $$($(BIN)/python -c 'import ansible; print(ansible.__version__)')): passed"

sanity-2.18: venv-2.18
	mkdir -p .build && tools/sanity.sh $(VENV_218) > .build/sanity-2.18.log 2>&1 || { cat .build/sanity-2.18.log; exit 1; }
	@echo "sanity (ansible-core 2.18): passed"

# docs: the tarball as users get it (nothing build_ignore leaves out inside), installed into a clean
# collections path, and ansible-doc for every module, lookup and the role from there.
docs: venv
	tools/check_tarball.sh .build/tarball

# ee: ansible-builder create on docs/execution-environment.yml makes a context that installs boto3.
ee: venv
	tools/check_ee.sh .build/ee

## demo: a real rotation on HOSTS (default 5) local hosts against the strict endpoint
##       (SYSTEMD=1 make demo: on systemd hosts, the app reloaded through its unit)
HOSTS ?= 5
demo: deps venv
	@$(PY_NOTE)
	$(BIN)/python tools/demo.py --hosts $(HOSTS)

lint: venv
	$(BIN)/ansible-lint --nocolor -q

clean:
	rm -rf $(VENV) $(VENV_218) .build demo-out tests/output .pytest_cache
