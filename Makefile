# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv when
# missing and reinstalls only when pyproject.toml changed (a stamp holds its hash).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# constraints.txt pins every distribution (the lock; `make lock` refreshes it): the same recipe
# then gives the same content_id on a fresh clone next month.
LOCK := constraints.txt
STAMP := $(VENV)/.stamp-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-16)
export MALLOC_MMAP_THRESHOLD_ := 16777216
export MALLOC_TRIM_THRESHOLD_ := 268435456
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1

.PHONY: demo test bench install lock wordnet chromium lint clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[test]'
	@rm -f $(VENV)/.stamp-* && touch $@

# After a dependency change in pyproject.toml: install it, then pin what .venv now holds.
lock: install
	@{ echo "# pip constraints: every distribution make install may install, pinned. Refresh: make lock"; \
	  $(PY) -m pip freeze --all --exclude-editable | grep -v -e '^#' -e '^pip=='; } > $(LOCK)

install: $(STAMP) wordnet

# WordNet for SynonymAug, offline: Debian's wordnet-base ships the 3.0 database files.
wordnet:
	@if [ -f /usr/share/wordnet/data.noun ] || [ -n "$$ROLEFORGE_WORDNET" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null) \
	  || echo "roleforge: could not install wordnet-base; SynonymAug recipes will fail at load with instructions"; \
	else echo "roleforge: WordNet missing; run 'sudo apt-get install wordnet-base' (or set ROLEFORGE_WORDNET=<dir>) for SynonymAug"; fi

# Debian's chromium, headless, for the browser test of `roleforge view`
# (tests/pipeline/view/test_browser.py skips with a message without it).
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	  || echo "roleforge: could not install chromium; the view's browser test will skip"; \
	else echo "roleforge: chromium missing; run 'sudo apt-get install chromium' for the view's browser test"; fi

# Two retrains of the from-scratch `scratch-small` model: the bundled corpus (v1, a first
# model that must be significantly better than the untrained base), then with the corpus's
# second part added (v2, continued from the promoted model and compared with it, paired, on
# v2's test split). Exit 4, "not promoted", is a decision, not a failure.
demo: install
	$(VENV)/bin/roleforge retrain examples/demo.yaml || [ $$? -eq 4 ]
	$(VENV)/bin/roleforge retrain examples/demo_more.yaml || [ $$? -eq 4 ]
	$(VENV)/bin/roleforge models demo-roleplay

test: install chromium
	$(PY) -m pytest -q tests

# `make bench BENCH_ARGS=--quick` for a run of a few minutes. Daft and Data-Juicer cannot
# share .venv (daft needs pyarrow<26; Data-Juicer pins older dill/multiprocess and installs
# packages at run time): run_all.py builds their venvs under
# benchmarks/_work on first use. Data-Juicer's audio ops need the system's FFmpeg libraries.
bench: install
	$(PY) -m pip install -q -c $(LOCK) -e '.[bench]'
	@if ldconfig -p 2>/dev/null | grep -q libavcodec; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null) \
	  || echo "roleforge: could not install ffmpeg; the Data-Juicer figure will say why it is missing"; \
	else echo "roleforge: FFmpeg libraries missing; the Data-Juicer figure will say why it is missing"; fi
	@# Byte-compiled sources, as a user's first run leaves them: where PYTHONDONTWRITEBYTECODE
	@# is set, every fresh process (the scaling jobs, each Ray worker) compiled the changed
	@# modules again (0.27 s of a 2,000-record job's driver, py-spy).
	$(PY) -m compileall -q pipeline augmenters trainers benchmarks/*.py
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) roleforge-store
