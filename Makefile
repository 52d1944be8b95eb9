# Starry Guide — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_COMPILE_BYTECODE := 1
export NO_MKDOCS_2_WARNING := 1
# uv from PATH, else the one `make` installs with pip (`python3 -m uv` finds it wherever pip put it)
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --frozen

.PHONY: help uv-bootstrap system-deps install repro test unit nbval docs-check lint notebooks lab mlflow-ui docs-serve plots vendor bench bench-fits bench-serving profile-serving bench-app bench-feed bench-store bench-push bench-metar serve production-snapshot clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

uv-bootstrap:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user --quiet uv

install: uv-bootstrap ## install everything from uv.lock into .venv/
	$(UV) sync --frozen

repro: install ## run the whole pipeline (dvc repro), register the champion in this machine's MLflow store, print a summary
	$(RUN) dvc repro
	@# a fresh clone skips select when its inputs did not change, so its MLflow registry is
	@# still empty: one forced select (same outputs) registers the tracked champion
	@$(RUN) starry champion show > /dev/null 2>&1; status=$$?; \
	if [ $$status -eq 1 ]; then $(RUN) dvc repro --force --single-item select; \
	elif [ $$status -ne 0 ]; then $(RUN) starry champion show; fi
	$(RUN) starry summary

system-deps: ## Debian packages the tests need (Chromium, PostgreSQL 15, nginx, iproute2), installed when missing
	bash scripts/system-deps.sh

test: install system-deps lint ## everything CI runs: ruff, import-linter contracts, unit + e2e tests, nbval over notebooks/, mkdocs build --strict
	$(RUN) pytest tests
	$(MAKE) --no-print-directory docs-check

lint: ## ruff, and the import-linter contracts (the dependency rule of the wings)
	$(RUN) ruff check src tests benchmarks
	$(RUN) lint-imports

unit: ## the fast unit tests only
	$(RUN) pytest tests -m "not notebooks and not e2e"

nbval: ## re-run notebooks/ in a temporary copy and compare with their stored outputs (NB=02_train: that one alone)
	NB=$(NB) $(RUN) pytest tests/notebooks $(if $(NB),-k one_notebook)

docs-check: ## build the docs site strictly into a temporary folder
	tmp=$$(mktemp -d) && $(RUN) mkdocs build --strict --quiet --site-dir $$tmp && rm -rf $$tmp

notebooks: install ## refresh the stored outputs of notebooks/ (what nbval compares against)
	$(RUN) starry notebooks

lab: install ## JupyterLab on the project's environment (also as root)
	$(RUN) jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

mlflow-ui: install ## the MLflow UI on http://127.0.0.1:5000
	$(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

docs-serve: install ## serve the docs site on http://127.0.0.1:8001 (make serve has 8000), with this machine's MLflow dates
	STARRY_DOCS_DATES=1 $(RUN) mkdocs serve --dev-addr 127.0.0.1:8001

plots: install ## dvc plots show -> dvc_plots/index.html (offline: Vega served from docs/assets/vendor/)
	$(RUN) dvc plots show

vendor: ## re-fetch the vendored JavaScript (mermaid, vega) pinned by vendor/package-lock.json (needs npm)
	bash scripts/vendor.sh

bench: install ## time a full and a no-op dvc repro, per stage, kernel start vs compute (benchmarks/)
	$(RUN) python benchmarks/repro_time.py

bench-fits: install ## the pipeline's model fits run one at a time, in 2 processes, in 2 threads (needs make repro)
	$(RUN) python benchmarks/parallel_fits.py

bench-serving: install ## API (nowcasts, cached reads), batch, night-planner and Dask benchmarks (needs make repro)
	$(RUN) python benchmarks/serving.py

profile-serving: install ## py-spy profile of POST /v1/nowcast on one worker at 10 clients: top frames (needs make repro)
	$(RUN) python benchmarks/profile_nowcast.py

bench-app: install ## first load of the web app in Chromium: bytes and time (needs make repro)
	$(RUN) python benchmarks/app_load.py

bench-store: install system-deps ## store capacity: prediction rows/s one PostgreSQL sustains through the store's own writes, against a bare commit
	$(RUN) python benchmarks/store_capacity.py

bench-feed: install ## observation feed: ingestion rate and its cost to nowcast latency (needs make repro)
	$(RUN) python benchmarks/feed.py

bench-push: install ## Web Push: 10,000 due subscriptions on 100 stations via a loopback push service (needs make repro)
	$(RUN) python benchmarks/push.py

bench-metar: install ## METAR conversion: reports/s through the contract vs python-metar alone, LCD files
	$(RUN) python benchmarks/metar_convert.py

serve: install ## the real-time API and the web app on http://127.0.0.1:8000 (the champion in models/champion/)
	$(RUN) starry serve --bundle models/champion/bundle

production-snapshot: install ## replay 16 weeks of two real stations (one with a stuck cloud sensor) and feed two real METAR stations (Atlanta, Lincoln) into a fresh server, snapshot into data/production
	$(RUN) python scripts/production_snapshot.py

clean: ## remove pipeline outputs (not the MLflow store)
	rm -rf .staging site data/processed models/champion reports/failed
