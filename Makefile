# fieldserve: the two commands are `make serve` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: serve test deploy-test lint typecheck install-serve install-dev gmsh-libs redis-server chromium models clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Serving needs no torch: the base install only.
install-serve: $(VENV)/bin/activate
	$(PIP) install -q -e .

install-dev: $(VENV)/bin/activate
	$(PIP) install -q -e '.[train,dev]'

# Readable logs in a terminal (FIELDSERVE_LOG_FORMAT=json for machines).
serve: install-serve
	FIELDSERVE_LOG_FORMAT=$${FIELDSERVE_LOG_FORMAT:-text} $(PY) -m app

# The cache tests run against a real redis-server (Debian's package).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq redis-server)

# The page's browser test (tests/test_page.py) drives Debian's chromium with Playwright, which
# cannot download browsers of its own here.
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

# gmsh's wheel (the elasticity meshes) links X11 and OpenGL libraries that a bare Debian lacks.
gmsh-libs: install-dev
	@$(PY) -c "import gmsh" 2>/dev/null || (apt-get update -qq && apt-get install -y -qq \
		libglu1-mesa libgl1 libxcursor1 libxft2 libxinerama1 libxrender1)

test: install-dev gmsh-libs redis-server chromium
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory deploy-test

# The real deployment (README, "Deploy"): as root, installs Debian's docker.io,
# docker-compose and debootstrap, starts a dockerd of its own, makes the base images offline,
# builds the three images and runs docker-compose's profiles and the Kubernetes pods' containers
# (tests/test_deploy_real.py; each step logged with its time). `make test` ends with it.
deploy-test: install-dev
	FIELDSERVE_DEPLOY_TEST=1 nice $(PY) -m pytest -q -s -m deploy tests/test_deploy_real.py

lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install-dev
	$(PY) -m mypy

# Retrain and export the shipped models (see README: "Training"; each manifest records its command).
# Each export is a candidate where the model already has a version: `python -m training promote
# models/<name>/<v>` makes it the served latest (README: "Promotion").
models: install-dev gmsh-libs
	$(PY) -m training generate acoustics --config configs/acoustics-room-2d.yaml
	$(PY) -m training train --config configs/acoustics-room-2d.yaml
	$(PY) -m training export --run runs/acoustics-room-2d
	$(PY) -m training generate acoustics --config configs/acoustics-room-3d.yaml
	$(PY) -m training train --config configs/acoustics-room-3d.yaml
	$(PY) -m training export --run runs/acoustics-room-3d
	$(PY) -m training pipeline --config configs/acoustics-furnished-3d.yaml
	$(PY) -m training generate airfoils --config configs/airfoil-enf2enf.yaml
	$(PY) -m training train --config configs/airfoil-enf2enf.yaml
	$(PY) -m training export --run runs/airfoil-enf2enf
	$(PY) -m training generate elasticity --config configs/elasticity-enf2enf.yaml
	$(PY) -m training train --config configs/elasticity-enf2enf.yaml --device cpu
	$(PY) -m training export --run runs/elasticity-enf2enf

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache build *.egg-info
