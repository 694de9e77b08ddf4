# rekey.aws: every target installs what it needs on a fresh machine (Python packages into .venv).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV        := .venv
VENV_218    := .venv-2.18
BIN         := $(CURDIR)/$(VENV)/bin
COLLECTIONS := $(CURDIR)/$(VENV)/collections
COLL_LINK   := $(COLLECTIONS)/ansible_collections/rekey/aws

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: test venv unit integration sanity lint demo bench clean

venv: $(VENV)/.installed $(COLL_LINK)

$(VENV)/.installed: requirements/test.txt requirements/constraints.txt
	rm -rf $(VENV)
	"$$(tools/find_python.sh)" -m venv $(VENV)
	$(BIN)/pip install -q -r requirements/test.txt -c requirements/constraints.txt
	touch $@

# ansible and ansible-test find the collection only under an ansible_collections/rekey/aws path.
$(COLL_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

test: venv
	$(BIN)/pytest tests/unit tests/integration

clean:
	rm -rf $(VENV) $(VENV_218) .build demo-out tests/output .pytest_cache
