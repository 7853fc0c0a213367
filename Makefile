# utptrack_ros — the commands everyone relies on.
#   make setup   idempotent: .venv with pinned deps, package installed editable, ROS interfaces built
#   make demo    the main job: replay the bundled multimodal bag through the node and evaluate
#   make test    the whole pytest suite (what .ci/run calls)
#   make bench   benchmarks that print pruned/unpruned and node/model ratios
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEPS_STAMP := $(VENV)/.deps-stamp
PKG_STAMP := $(VENV)/.pkg-stamp
IFACE_STAMP := install/.interfaces-stamp
INTERFACES := $(wildcard msg/*.msg srv/*.srv)
# Several torch processes share the CPU in tests and the demo (node + player + offline rows):
# OpenMP threads that spin while waiting starve each other on a 2-core machine.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test bench clean-interfaces

setup: $(DEPS_STAMP) $(PKG_STAMP) $(IFACE_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.txt requirements-nodeps.txt constraints.txt | $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt -c constraints.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	touch $@

$(PKG_STAMP): setup.py $(DEPS_STAMP)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

# install/: interfaces, utptrack_node, launch/config, and the presets' prebuilt onnxruntime graphs
$(IFACE_STAMP): $(INTERFACES) CMakeLists.txt package.xml scripts/build_interfaces.sh $(DEPS_STAMP) \
		$(wildcard launch/* config/* utptrack_ros/weights/*.safetensors)
	bash scripts/build_interfaces.sh $(VENV)
	touch $@

demo: setup
	$(VENV)/bin/utptrack demo

test: setup
	$(PY) -m pytest -q test

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-interfaces:
	rm -rf build install log
