# rekey.aws: every target installs what it needs on a fresh machine (Debian packages with apt-get,
# Python packages into .venv and .venv-2.18).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV        := .venv
VENV_218    := .venv-2.18
BIN         := $(CURDIR)/$(VENV)/bin
COLLECTIONS := $(CURDIR)/$(VENV)/collections
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

.PHONY: test deps venv venv-2.18 unit unit-2.18 integration molecule sanity sanity-2.18 docs ee lint demo bench clean

## test: everything CI runs, quickest checks first; then the integration and fleet tests side by
## side (molecule among them); make test's wall time and pytest's summary are the last lines
test: deps venv venv-2.18
	$(MAKE) --no-print-directory -j2 --output-sync=target sanity sanity-2.18 lint docs ee
	$(MAKE) --no-print-directory unit unit-2.18
	REKEY_TEST_STARTED=$(STARTED) $(BIN)/pytest -n $(WORKERS) --dist worksteal tests/integration

deps:
	@if [ -x tools/install_system_deps.sh ]; then tools/install_system_deps.sh; fi

venv: $(VENV)/.installed $(COLL_LINK)

$(VENV)/.installed: requirements/test.txt requirements/constraints.txt
	rm -rf $(VENV)
	"$$(tools/find_python.sh)" -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/test.txt -c requirements/constraints.txt
	touch $@

venv-2.18: $(VENV_218)/.installed

$(VENV_218)/.installed: requirements/core-2.18.txt
	rm -rf $(VENV_218)
	"$$(tools/find_python.sh)" -m venv $(VENV_218)
	$(VENV_218)/bin/pip install -q -r requirements/core-2.18.txt
	touch $@

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

## bench: IAM calls and wall time of a rotation on 1, 5 and 10 hosts (results in demo-out/bench.json)
bench: deps venv
	$(BIN)/python bench/bench_rotation.py

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
HOSTS ?= 5
demo: deps venv
	$(BIN)/python tools/demo.py --hosts $(HOSTS)

lint: venv
	$(BIN)/ansible-lint --nocolor -q

clean:
	rm -rf $(VENV) $(VENV_218) .build demo-out tests/output .pytest_cache
