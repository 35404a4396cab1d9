# `make test` and `make report` each create/refresh the virtual environment and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= sample
DATA_DIR ?=
DRY_RUN ?=
SET ?=
SEEDS ?=
NOTEBOOKS ?=
LAB_ARGS ?=
PDF_PACKAGES := texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The virtual environment and the PDF tools install side by side (pip unpacks wheels, apt downloads packages).
MAKEFLAGS += --jobs=2

.PHONY: test report venv pdf-tools benchmarks gpu-check clean-results

# Two pytest workers (pytest-xdist), a file each at a time, one thread each: on a 2-core CPU the suite takes 115 s
# instead of 189 s in one process (docs/benchmarks.md); two workers of two threads each took 319 s.
test: $(STAMP) pdf-tools
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile

# make report [PROFILE=full DATA_DIR=DIR] [DRY_RUN=1] [SET="simplenet.epochs=20 attack.epsilon=8"] [NOTEBOOKS="00 03"]
#   [SEEDS=3]   (training seeds per compared experiment; default: the profile's, 1 for sample, 3 for full)
report: $(STAMP) pdf-tools
	$(PY) -m lib report --profile $(PROFILE) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	  $(if $(filter 1 yes true,$(DRY_RUN)),--dry-run) $(foreach item,$(SET),--set $(item)) $(if $(SEEDS),--seeds $(SEEDS)) \
	  $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

.PHONY: lab
# Jupyter Lab on the project's environment; its "Python 3" kernel is this .venv (installed by $(STAMP)).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) $(if $(SUDO),,--allow-root) $(LAB_ARGS) notebooks/

benchmarks: $(STAMP)
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks.conv
	$(PY) -m benchmarks.attacks
	$(PY) -m benchmarks.apgd

# On a CUDA machine, within 7 minutes (a hard budget of 400 s) on one H100-class GPU (docs/gpu.md): versions, CUDA
# tests, the custom convolution's agreement, every experiment's training step, SimpleNet under torch.compile, the
# input pipeline, a sanity run, the estimate.
# `make gpu-check PY=python3` runs it with that interpreter as it is (no venv: nothing installed, offline).
GPU_CHECK_OUT ?= results/gpu-check
gpu-check: $(if $(filter command line,$(origin PY)),,$(STAMP))
	$(PY) -m benchmarks.gpu_check --out $(GPU_CHECK_OUT)

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -e .
	# torchattacks 3.5.1 declares requests~=2.25.1, which would downgrade requests and urllib3 under the Jupyter
	# stack; it never imports requests, and what it does import (torch, torchvision, scipy, tqdm, numpy) is pinned
	# in requirements.txt, so it is installed without its declared dependencies.
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# nbconvert's PDF route needs XeLaTeX and pandoc (Debian/Ubuntu packages).
pdf-tools:
	@command -v xelatex >/dev/null && command -v pandoc >/dev/null || \
	  { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(PDF_PACKAGES); }

clean-results:
	rm -rf results figures
