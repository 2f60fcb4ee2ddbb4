# kerasxfer — every target that needs Python depends on the virtual
# environment, so `make test` or `make scratch` on a fresh clone does it all.
#
#   make demo                         # the whole study offline: scratch, ImageNet EfficientNet-Lite0, control, report
#   make demo-regnet                  # the RegNet path offline: self-pretrained RegNetX002 and its control
#   make scratch                      # scratch CNN on the built-in digits
#   make finetune                     # frozen then unfrozen RegNetX002, ImageNet weights
#   make finetune WEIGHTS=none        # the same from a random backbone
#   make study DATASET=~/photos       # the whole study on your images: scratch, transfer, control, report
#   make sweep                        # learning curves by data size (SWEEP=data) or unfreeze depth (SWEEP=depth)
#   make lr-find                      # the learning-rate range test of one phase (RECIPE, RUN, PHASE)
#   make test                         # the test suite
#   make lint                         # ruff check + ruff format --check + mypy (TensorFlow-free modules)
#   make bench / make bench-data      # throughput numbers (benchmarks, not tests)
#
# Variables (each passed to the matching flag only when set):
#   DATASET IMAGE_SIZE BATCH_SIZE SEED VAL_FRACTION TEST_FRACTION SPLIT_SEED RESIZE EPOCHS LR OUT
#   BACKBONE WEIGHTS FROZEN_HEAD FROZEN_EPOCHS FINETUNE_EPOCHS FINETUNE_LR FINETUNE_WARMUP UNFREEZE
#   TF=cpu|gpu  (which TensorFlow build `make install` puts in .venv)
#   PORT        (make tensorboard, default 6006)   PYTEST_ARGS TEST_WORKERS (make test, default 2 processes)
#   RUN IMAGES TOP_K OUTPUT EXPORT ENGINE VERBOSE   (make predict)
#   RUNS REPORT                      (make compare)
#   SWEEP FRACTIONS DEPTHS DEPTH_FRACTION SEEDS BUDGET MIN_STEPS SCRATCH_IMAGE_SIZE   (make sweep)
#   CONTROL=false FOLDS=K|auto       (make study: skip the control; K-fold cross-validation)
#   EXHAUSTIVE=1                     (make study: none of the shortcuts; the reference they are checked against)
#   EXECUTOR=ray RAY_ADDRESS CPUS_PER_RUN GPUS_PER_RUN   (make study, make sweep: the runs as tasks on a Ray cluster)
#   MINUTES=N                        (make study: a time limit; folds and minimum steps planned to fit)
#   FINAL=auto|none|ARM              (make study: the model to deploy, final/; which arm, or none)
#   MIN_STEPS CLASS_WEIGHT           (study, scratch, finetune: enough optimizer steps; balanced class weights)
#   TRAIN_FRACTION                   (scratch, finetune: train on a stratified share of the training split)
#   AUGMENT MIXUP CUTMIX ON_BAD_IMAGE CACHE_DIR TFDS_DATA_DIR MAX_IMAGE_PIXELS   (scratch, finetune)
#   OPTIMIZER WEIGHT_DECAY SCHEDULE WARMUP_EPOCHS LR_STAGE_DECAY LABEL_SMOOTHING GRAD_CLIP BN EMA EARLY_STOPPING
#                                    (how every phase trains: scratch, finetune, pretrain, sweep, study, lr-find)
#   RECIPE RUN PHASE MIN_LR MAX_LR STEPS   (make lr-find)
#   BENCH_FLAGS                      (make bench, make bench-data: e.g. --sizes=64 --steps=20)

PYTHON ?= python3
VENV ?= .venv
TF ?= cpu
PORT ?= 6006
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.kerasxfer-installed-$(TF)

# Every flag of a command has a make variable of the same name in capitals, passed only when set
# (OVERWRITE=1 -> --overwrite=1); tests/test_makefile.py checks each one against `make -n`.
flag = $(if $(strip $($(1))),--$(2)=$($(1)))
flags = $(foreach f,$(1),$(call flag,$(shell echo $(f) | tr a-z A-Z),$(f)))
COMMON_ARGS = $(call flags,dataset image_size batch_size seed val_fraction test_fraction split_seed resize lr \
  out_dir train_fraction augment mixup cutmix on_bad_image cache_dir tfds_data_dir tfds_download max_image_pixels \
  dropout deterministic precision strategy jit_compile overwrite verbose) $(call flag,OUT,out_dir) $(RECIPE_ARGS)
# How every phase trains (scratch, finetune, pretrain, sweep, study, lr-find).
RECIPE_ARGS = $(call flags,optimizer weight_decay schedule warmup_epochs lr_stage_decay label_smoothing grad_clip \
  bn ema early_stopping class_weight)
SCRATCH_ONLY = $(call flags,epochs widths convs_per_block)
MIN_STEPS_ARGS = $(call flags,min_steps)
FINETUNE_ONLY = $(call flags,backbone weights frozen_epochs finetune_epochs finetune_lr unfreeze_stages \
  cache_features frozen_head finetune_warmup) $(call flag,UNFREEZE,unfreeze_stages)
SCRATCH_ARGS = $(COMMON_ARGS) $(SCRATCH_ONLY) $(MIN_STEPS_ARGS)
FINETUNE_ARGS = $(COMMON_ARGS) $(FINETUNE_ONLY) $(MIN_STEPS_ARGS)
SWEEP_ARGS = $(COMMON_ARGS) $(SCRATCH_ONLY) $(FINETUNE_ONLY) \
  $(call flags,sweep fractions depths depth_fraction seeds budget min_steps scratch_image_size executor ray_address \
  cpus_per_run gpus_per_run)
STUDY_ARGS = $(SWEEP_ARGS) $(call flags,control folds backbones exhaustive minutes final)
LR_FIND_ARGS = $(COMMON_ARGS) $(SCRATCH_ONLY) $(FINETUNE_ONLY) $(call flags,recipe run phase min_lr max_lr steps)
PRETRAIN_ARGS = $(COMMON_ARGS) $(call flags,backbone epochs synthetic_train synthetic_val synthetic_test)
REPEAT_ARGS = $(call flags,run out_dir overwrite verbose) $(call flag,OUT,out_dir)
PREDICT_ARGS = $(call flags,run model class_names images top_k batch_size output export overwrite verbose engine)
COMPARE_ARGS = $(call flags,runs out_dir overwrite) $(call flag,REPORT,out_dir)
BENCH_ARGS = $(call flags,sections sizes steps batch_size backbone image_size num_images jpeg_size data_dir output inference_backbones readings \
  study_sets study_scans study_exhaustive study_flags) \
  $(BENCH_FLAGS)
PRETRAINED := runs/pretrain/backbone.weights.h5

.PHONY: install lint mypy docs options-reference demo-quote test test-all test-ci-slow repeat scratch finetune pretrain compare sweep study demo demo-regnet predict lr-find tensorboard \
  bench bench-data clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# Switching TF=cpu <-> TF=gpu: remove the other TensorFlow first, so the venv never holds two.
	if ls $(VENV)/.kerasxfer-installed-* >/dev/null 2>&1 && ! test -e $(STAMP); then \
	  $(PY) -m pip uninstall --quiet --yes tensorflow tensorflow-cpu || true; fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF),dev,onnx,ray]"
	# Test oracle only, outside site-packages (see setup.cfg): pip check stays clean, no second TensorFlow.
	$(PY) -m pip uninstall --quiet --yes tf-keras 2>/dev/null || true
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/oracle "tf-keras==2.21.*"
	rm -f $(VENV)/.kerasxfer-installed-*
	touch $@

# pytest exits 5 when it collected no test: that must fail, not pass quietly.  The test files run
# on TEST_WORKERS processes (pytest-xdist; a file's tests stay on one, so its fixtures are built once):
# many tests wait on a subprocess or on graph tracing, and two workers halve the wall time on 2 cores.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing." >&2; exit 1; fi; exit $$rc

test-all: PYTEST_ARGS += -m ""
test-all: test

# The slow tests CI runs after make test (.ci/run): the acceptance runs that a fast test cannot show.
CI_SLOW_TESTS = tests/test_study_command.py::test_five_fold_study_tests_every_image_once_and_resumes_in_the_fold_it_was_killed_in \
  tests/test_signals.py tests/test_activation_cache.py tests/test_ray.py tests/test_forks.py tests/test_tensorboard.py \
  tests/test_study.py::test_exported_backbone_round_trips_into_finetune \
  tests/test_planning.py::test_calibration_times_the_studys_own_models \
  tests/test_planning.py::test_a_study_planned_by_minutes_continues_under_its_plan_on_disk \
  tests/test_hostile.py::test_hostile_inputs_and_faults tests/test_hostile.py::test_a_truncated_cache_file_is_rebuilt \
  tests/test_lr_find.py::test_lr_find_on_the_digits_suggests_near_the_scratch_default \
  tests/test_reliability.py::test_same_experiment_twice_writes_identical_history_bytes \
  tests/test_scale.py::test_multi_worker_two_processes_only_the_chief_writes \
  tests/test_hostile.py::test_random_labels_on_near_duplicated_images_name_no_winner \
  tests/test_stale.py tests/test_wheel.py tests/test_final.py \
  tests/test_small_data.py::test_two_fold_study_in_process_tests_every_image_once \
  tests/test_optim.py::test_ema_schedule_and_early_stopping_resume_exactly \
  tests/test_optim.py::test_ema_zero_evaluates_like_no_ema \
  tests/test_optim.py::test_recipe_is_recorded_reported_and_the_saved_model_loads_with_plain_keras \
  tests/test_optim.py::test_bn_mode_of_the_unfrozen_phase \
  tests/test_reliability.py::test_sigkill_during_phase_2_then_rerun_equals_the_uninterrupted_run \
  tests/test_small_data.py::test_a_study_on_labels_independent_of_the_pixels_flags_the_arms_that_did_not_learn \
  tests/test_scale.py::test_cached_features_train_the_head_exactly_like_the_whole_model \
  tests/test_sweep.py::test_data_sweep_writes_ordinary_runs_and_a_csv_its_sentence_agrees_with \
  tests/test_sweep.py::test_rerun_trains_nothing_and_writes_the_same_csv \
  tests/test_solved_head.py
test-ci-slow: install
	$(PY) -m pytest -m slow $(CI_SLOW_TESTS)

# The TensorFlow-free modules mypy checks (the reports, the configs, the options, the records, the study plan).
MYPY_FILES = kerasxfer/errors.py kerasxfer/fsio.py kerasxfer/rundir.py kerasxfer/families.py kerasxfer/optim_config.py \
  kerasxfer/options.py kerasxfer/commands.py kerasxfer/config.py kerasxfer/datasets.py kerasxfer/phases.py \
  kerasxfer/planning.py kerasxfer/progress.py kerasxfer/recipes.py kerasxfer/run_files.py kerasxfer/studies.py \
  kerasxfer/sweep.py kerasxfer/version.py kerasxfer/probe.py kerasxfer/final.py kerasxfer/notebook.py kerasxfer/records kerasxfer/reporting kerasxfer/models/regnet_specs.py \
  kerasxfer/models/efficientnet_lite_specs.py kerasxfer/models/keras_apps_specs.py

# ruff with the rules in pyproject.toml (pyflakes, pycodestyle, import order, bugbear), ruff format's style
# (`ruff format kerasxfer experiments tests` applies it) and mypy over MYPY_FILES (settings in pyproject.toml);
# .ci/run runs it first. .pre-commit-config.yaml runs the same three before a commit.
lint: install
	$(BIN)/ruff check kerasxfer experiments tests
	$(BIN)/ruff format --check kerasxfer experiments tests
	$(BIN)/mypy $(MYPY_FILES)

# mypy alone (pre-commit's hook): no install step, the .venv must exist.
mypy:
	$(BIN)/mypy $(MYPY_FILES)

# The manual as a site (mkdocs.yml, docs/) into site/: --strict fails on a dead link or anchor; .ci/run runs it.
docs: install
	$(BIN)/mkdocs build --strict -q

# docs/options.md from the flags every command defines (tests/test_docs.py fails while it is out of date).
options-reference: install
	$(PY) -m experiments.options_reference

# README.md and docs/demo.md quote the demo from its summary.json (docs/demo-summary.json keeps it): run after make demo.
demo-quote: install
	$(PY) -m experiments.demo_quote --summary=$(DEMO)/report/summary.json

# One entry point each: `make X` runs `python -m experiments.X` with the variables of X_ARGS (above).
# sweep: learning curves (SWEEP=data: scratch, frozen and fine-tuned on nested shares of the training split) or
#   the unfreeze-depth sweep (SWEEP=depth) into runs/sweep/<sweep>/; rerunning trains only what has not finished.
# study: the whole study on DATASET (default digits) into runs/study/<dataset name>/: the scratch CNN,
#   EfficientNet-Lite0 from its published ImageNet weights (installed with the package: no download) frozen then
#   fine-tuned, the same from a random backbone (the control), the report; SEEDS, SWEEP, CONTROL.
ENTRY_POINTS := scratch finetune pretrain compare sweep study
$(ENTRY_POINTS): install
	$(PY) -m experiments.$@ $($(shell echo $@ | tr a-z A-Z)_ARGS)

# The main job, offline: the study on the built-in digits, into runs/demo/.
DEMO := runs/demo
demo: install
	$(PY) -m experiments.study --dataset=digits --out_dir=$(DEMO)

# The RegNet path offline: RegNetX002 self-pretrained on the synthetic source task
# (kept if it exists), fine-tuned from it and from a random backbone, reported
# next to the demo's scratch CNN (run make demo first, or it is trained here).
demo-regnet: install
	@if [ -f $(PRETRAINED) ]; then echo "[demo] $(PRETRAINED) exists: pretraining skipped (delete runs/pretrain to redo it)"; \
	  else $(PY) -m experiments.pretrain --out_dir=runs/pretrain --synthetic_train=9600 --epochs=6; fi
	$(PY) -m experiments.scratch --split_seed=0 --out_dir=$(DEMO)/scratch
	$(PY) -m experiments.finetune --weights=$(PRETRAINED) --out_dir=$(DEMO)/regnet-pretrained
	$(PY) -m experiments.finetune --weights=none --out_dir=$(DEMO)/regnet-random
	$(PY) -m experiments.compare --runs=$(DEMO)/scratch,$(DEMO)/regnet-pretrained,$(DEMO)/regnet-random \
	  --out_dir=$(DEMO)/report-regnet
	@echo "[demo] report: $(DEMO)/report-regnet/report.html"

# Train a run again from its config.json (RUN=<run dir>, OUT default RUN-repeat).
repeat: install
	$(PY) -m experiments.repeat $(REPEAT_ARGS)

predict: install
	$(PY) -m experiments.predict $(PREDICT_ARGS)

# The learning-rate range test for one phase (RECIPE=scratch|finetune, or RUN=<run dir>; PHASE) into runs/lr_find/.
lr-find: install
	$(PY) -m experiments.lr_find $(LR_FIND_ARGS)

# Benchmarks print numbers (one JSON line per case, then a table); tests never time anything.
bench: install
	$(PY) -m experiments.bench $(BENCH_ARGS)

bench-data: install
	$(PY) -m experiments.bench --sections=data $(BENCH_ARGS)

tensorboard: install
	$(BIN)/tensorboard --logdir runs --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
