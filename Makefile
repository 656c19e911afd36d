# Two commands on a fresh machine: `make engines` (build the main recipe) and `make test`.
# Each target reuses .venv and creates it first when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are pinned to the builds this project is tested with (they install from local files here).
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PYTRITON ?= nvidia-pytriton==0.7.0
define UNPACK_TRITON
import glob, os, sys, zipfile
venv = sys.argv[1]
wheel = zipfile.ZipFile(sorted(glob.glob(f"{venv}/wheels/nvidia_pytriton-*.whl"))[-1])
for info in wheel.infolist():
    if info.filename.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
        path = wheel.extract(info, f"{venv}/tritonserver")
        os.chmod(path, ((info.external_attr >> 16) & 0o755) or 0o644)
endef
export UNPACK_TRITON

.PHONY: install engines test lint bench clean-cache readme

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	# compat: a plain path entry instead of setuptools' import finder (16 ms off every start).
	$(PY) -m pip install --quiet -e '.[all]' --config-settings editable_mode=compat
	# The build leaves pipeline.egg-info here, on sys.path beside the real metadata: a stale copy
	# would shadow newer entry points, so only site-packages keeps the metadata.
	rm -rf pipeline.egg-info
	# PYTHONDONTWRITEBYTECODE may be set: compile once so every start reads .pyc.
	$(PY) -m compileall -q pipeline stages
	# A real Triton server for the packaging tests (its core checks every config of a repository before it
	# looks for a backend): the tritonserver nvidia-pytriton bundles, unpacked, not installed (it pins numpy<2).
	$(PY) -m pip download --quiet --no-deps --dest $(VENV)/wheels $(PYTRITON) \
		&& $(PY) -c "$$UNPACK_TRITON" $(VENV) || echo "no Triton server: the tests that load a repository skip"
	touch $(STAMP)

engines: $(STAMP)
	$(VENV)/bin/pipeline run recipes/resnet50_int8.yaml --skip-unavailable
	$(VENV)/bin/pipeline run recipes/digits_int8.yaml
	$(VENV)/bin/pipeline run recipes/digits_transformer_search.yaml
	$(VENV)/bin/pipeline run recipes/digits_segment_int8.yaml
	$(VENV)/bin/pipeline run recipes/digits_serve.yaml
	$(VENV)/bin/pipeline run recipes/digits_keras.yaml
	$(VENV)/bin/pipeline run recipes/digits_sparse.yaml

test: $(STAMP) lint
	$(PY) -m pytest -q

# The habits CI keeps: lint, formatting and types (configured in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/cached_rerun.py
	$(PY) benchmarks/cold_overhead.py
	$(PY) benchmarks/int8_build.py
	$(PY) benchmarks/openvino_int8.py
	$(PY) benchmarks/remote_cache.py
	$(PY) benchmarks/ray_backend.py
	$(PY) benchmarks/discovered_inputs.py --recipe recipes/digits_int8.yaml
	$(PY) benchmarks/quantize_search.py
	$(PY) benchmarks/serve_packaging.py
	$(PY) benchmarks/sparsity.py

clean-cache:
	rm -rf artifacts/objects artifacts/records artifacts/refs artifacts/runs artifacts/tmp artifacts/locks artifacts/remote-index artifacts/failures artifacts/trials artifacts/state.db

readme: $(STAMP)
	$(PY) -c "import pathlib, tests.test_readme as t; p = pathlib.Path('README.md'); p.write_text(t.readme_with_reference(p.read_text()))"
