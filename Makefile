# agglo: two commands for a newcomer.
#   make run    set up .venv on first use and run the main job (Oaxaca, GeoNames towns)
#   make test   set up .venv on first use and pass the tests
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all bench lint clean studies study-oaxaca study-ural study-national study-cbsa study-calibration study-roads study-parts

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,maps,counties]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/agglo run experiment=oaxaca $(ARGS) --figures results/figures

test: $(STAMP)
	$(BIN)/ruff check agglo tests benchmarks experiments
	$(BIN)/ruff format --check agglo tests benchmarks experiments
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_kernels.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_explore.py

# The studies of experiments/ (each also runs alone: make study-ural, ...).
studies: study-oaxaca study-ural study-national study-cbsa study-calibration study-roads study-parts

study-oaxaca: $(STAMP)
	$(BIN)/python experiments/oaxaca/run.py

study-ural: $(STAMP)
	$(BIN)/python experiments/ural/run.py

study-national: $(STAMP)
	$(BIN)/python experiments/national/run.py

study-cbsa: $(STAMP)
	$(BIN)/python experiments/cbsa/run.py

lint: $(STAMP)
	$(BIN)/ruff check agglo tests benchmarks experiments

clean:
	rm -rf $(VENV) results outputs .pytest_cache .hypothesis

study-calibration: $(STAMP)
	$(BIN)/python experiments/calibration/run.py
	$(BIN)/python experiments/calibration/tail.py

study-parts: $(STAMP)
	$(BIN)/python experiments/parts/run.py

study-roads: $(STAMP)
	$(BIN)/python experiments/roads/run.py
