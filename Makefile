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
MODULES     := $(basename $(notdir $(wildcard plugins/modules/*.py)))

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export LC_ALL := C.UTF-8

.PHONY: test deps venv venv-2.18 unit unit-2.18 integration molecule sanity sanity-2.18 docs lint demo bench clean

## test: everything CI runs; pytest's summary is the last thing printed
test: deps venv venv-2.18 sanity sanity-2.18 lint docs unit-2.18 molecule
	$(BIN)/pytest tests/unit tests/integration

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
	$(BIN)/pytest tests/integration

# molecule runs the role's scenario on a lab of fleet hosts (tools/lab.py); it needs the venv on PATH.
molecule: deps venv
	mkdir -p .build && cd roles/rotate && PATH="$(BIN):$$PATH" $(BIN)/molecule test > $(CURDIR)/.build/molecule.log 2>&1 \
	  || { cat $(CURDIR)/.build/molecule.log; exit 1; }
	@echo "molecule (roles/rotate, scenario default): passed"

## bench: IAM calls and wall time of a rotation on 1, 5 and 10 hosts (results in demo-out/bench.json)
bench: deps venv
	$(BIN)/python bench/bench_rotation.py

sanity: venv
	mkdir -p .build && tools/sanity.sh $(VENV) > .build/sanity.log 2>&1 || { cat .build/sanity.log; exit 1; }
	@grep -E '^(ERROR|Running sanity)' .build/sanity.log | sed 's/^/  /'; echo "sanity (ansible-core $$($(BIN)/python -c 'import ansible; print(ansible.__version__)')): passed"

sanity-2.18: venv-2.18
	mkdir -p .build && tools/sanity.sh $(VENV_218) > .build/sanity-2.18.log 2>&1 || { cat .build/sanity-2.18.log; exit 1; }
	@echo "sanity (ansible-core 2.18): passed"

docs: venv
	@for m in $(MODULES); do $(BIN)/ansible-doc rekey.aws.$$m > /dev/null; done; echo "ansible-doc renders: $(MODULES)"

## demo: a real rotation on HOSTS (default 5) local hosts against the strict endpoint
HOSTS ?= 5
demo: deps venv
	$(BIN)/python tools/demo.py --hosts $(HOSTS)

lint: venv
	$(BIN)/ansible-lint --nocolor -q

clean:
	rm -rf $(VENV) $(VENV_218) .build demo-out tests/output .pytest_cache
