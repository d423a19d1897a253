# `make demo` and `make test` create .venv from nothing when needed, then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-full test-fast clean

# Where the environment sets PYTHONDONTWRITEBYTECODE (this CI does), every test process would compile jax, torch
# and the rest from source again: let the first one cache the bytecode (docs/testing.md, "Bytecode").
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# constraints.txt pins every package (CPU torch included), so pip never pulls CUDA wheels.
	# No bytecode at install (pip would compile every file of torch and transformers, one at a time): Python
	# compiles and caches what is imported, about a quarter of site-packages (see `unexport` below).
	$(PY) -m pip install --quiet --no-compile -c constraints.txt -e '.[test,torch]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/vit_digits
	$(PY) -m papers_jax.main --config configs/vit/digits.py --workdir runs/vit_digits
	@cat runs/vit_digits/summary.json

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# `test` plus the full-size parity checks (Swin-S/B/L and Mixer-L logits against timm, MAE-B through the
# converter CLI against HF). Run it before resolving a model issue; record the result in docs/testing.md.
test-full: $(STAMP)
	PAPERS_JAX_FULL_PARITY=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 -rs

clean:
	rm -rf $(VENV) runs .pytest_cache
