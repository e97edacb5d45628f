# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install whenever the dependency list changes.
INSTALLED := $(VENV)/.installed
# The demo screens with the committed starter bundle when there is one, else with a small
# bundle trained on sample_data right here (about two minutes on 2 CPU cores).
STARTER := engines/starter
SAMPLE_BUNDLE := engines/sample
DEMO_BUNDLE := $(if $(wildcard $(STARTER)/manifest.json),$(STARTER),$(SAMPLE_BUNDLE))

.PHONY: demo test test-all test-gpu clean sample-data sample-bundle starter-bundle browser

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,dev,distributed]'
	touch $@

demo: $(INSTALLED) $(DEMO_BUNDLE)/manifest.json
	rm -f results.csv.journal  # a fresh demo every time, not a resume
	rm -rf report_files
	$(VENV)/bin/screen folder sample_data/images --meta sample_data/patients.csv \
		--out results.csv --bundle $(DEMO_BUNDLE) --keep-columns --report report.html
	@echo "Open the review report: xdg-open report.html (or open it in any browser)"

# The report's browser tests drive Debian's Chromium and its chromedriver (Selenium's own
# browser downloads cannot work offline). Installed when apt-get can; else those tests skip
# and say why.
CHROMEDRIVER := /usr/bin/chromedriver
browser:
	@test -x $(CHROMEDRIVER) || { nice -n 19 apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
		|| { nice -n 19 apt-get update -q >/dev/null 2>&1 && nice -n 19 apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } \
		|| echo "note: could not install chromium + chromium-driver: the report's browser tests will skip"; }

test: $(INSTALLED) browser
	$(PY) -m pytest -q -m "not slow"

test-all: $(INSTALLED) browser
	$(PY) -m pytest -q

# On a GPU machine: install the GPU extra (pycuda compiles: CUDA toolkit headers and a C++
# compiler needed, see docs/tensorrt.md) and run the gpu-marked tests. Any skip fails the run,
# so a missing GPU, TensorRT or pycuda can never pass for a green GPU check.
test-gpu: $(INSTALLED)
	$(PY) -m pip install -q -e '.[gpu]'
	$(PY) -m pytest -q -m gpu --fail-on-skip -p no:cacheprovider

sample-data: $(INSTALLED)
	$(PY) sample_data/generate.py

sample-bundle: $(SAMPLE_BUNDLE)/manifest.json

$(SAMPLE_BUNDLE)/manifest.json: $(INSTALLED) configs/sample.yaml sample_data/labels.csv
	$(PY) -m training prepare --source sample_data/labels.csv \
		--classes configs/classes/sample4.yaml --out runs/sample/index.csv
	$(PY) -m training segmenter --config configs/sample.yaml
	$(PY) -m training classifier --config configs/sample.yaml
	$(PY) -m training evaluate --config configs/sample.yaml
	$(PY) -m training export --config configs/sample.yaml

# Retrain the shipped starter bundle (starter@2.3.0, docs/results.md) from ../shared/data: HAM10000
# plus the other clinics of isic_extra, three sources held out whole for the external test; then
# the report on the test and external splits. starter@2.3.0 is the ensemble of two classifiers
# trained independently on the same segmenter and masks, joined into one bundle by `training join`
# (temperature and operating points refitted on validation): member a is the four-stage chain
# (starter@2.2.0's recipe), member b three short warm-restart cycles from ImageNet weights (rc5's).
# About 8 hours on 2 CPU cores (segmenter 19 min, mask cache 8, chain stage 1 about 75, stages 2, 3
# and 4 about 80-100 each, member b about 65, joining 3). Interrupted? Run it again: every stage
# resumes from its last epoch. starter@1.1.0 (HAM10000 only) came from configs/starter_ham10000.yaml.
SHARED_DATA := ../shared/data
STARTER_CONFIG := configs/starter_v2.yaml
# Member a: the second, third and fourth fine-tuning stages each start from the previous stage's
# last weights; the fourth (source-balanced sampling) is exported as runs/starter2/bundle-2.2.0.
STARTER_STAGE2 := configs/starter_v2_stage2.yaml
STARTER_STAGE3 := configs/starter_v2_stage3.yaml
STARTER_STAGE4 := configs/starter_v2_stage4.yaml
# Member b: three cosine cycles, each from the previous one's last weights.
STARTER_B1 := configs/experiments/starter_v2_wr1.yaml
STARTER_B2 := configs/experiments/starter_v2_wr2.yaml
STARTER_B3 := configs/experiments/starter_v2_wr3.yaml
STARTER_VERSION := 2.3.0
STARTER_CHANGELOG := 2.3.0: the mean of two independently trained classifiers' probabilities (2.2.0 and a second model of three short warm-restart cycles with a light mask branch), joined into one classifier graph; temperature and operating points refitted on validation. Held-out sources: malignant AUC 0.822 -> 0.834, melanoma vs nevus 0.764 -> 0.792; test: malignant AUC 0.895 -> 0.901, macro AUC 0.914 -> 0.921 (docs/results.md).
STARTER_SOURCES := $(SHARED_DATA)/ham10000_dev/labels.csv $(wildcard $(SHARED_DATA)/isic_extra/*/labels.csv)
# engines/starter is a release: exported from a clean commit, so its manifest names exactly the code
# and configs that made it. Checked first (not after hours of training); to experiment on a
# modified tree, run `make starter-bundle STARTER_RELEASE=` (the manifest then lists what differs).
STARTER_RELEASE ?= --release
# A mistyped value stops make while it reads this file: before installing or running anything.
ifneq ($(filter starter-bundle,$(MAKECMDGOALS)),)
ifneq ($(strip $(STARTER_RELEASE)),)
ifneq ($(strip $(STARTER_RELEASE)),--release)
$(error STARTER_RELEASE is --release or empty, not "$(STARTER_RELEASE)")
endif
endif
endif
starter-bundle: $(INSTALLED)
	test -z "$(STARTER_RELEASE)" || $(PY) -m training export --config $(STARTER_STAGE4) --check-release \
		|| { echo "(to build from a modified tree anyway: make starter-bundle STARTER_RELEASE=)" >&2; exit 1; }
	$(PY) -m training prepare $(addprefix --source ,$(STARTER_SOURCES)) --classes ham7 \
		--val-fraction 0.1 --test-fraction 0.15 --holdout-source isic_archive_uda1 \
		--holdout-source isic2017_256px --holdout-source isic2017_fullres_800px \
		--seed 0 --out runs/starter2/index.csv
	$(PY) -m training segmenter --config $(STARTER_CONFIG) --resume
	$(PY) -m training classifier --config $(STARTER_CONFIG) --resume
	$(PY) -m training classifier --config $(STARTER_STAGE2) --resume
	$(PY) -m training classifier --config $(STARTER_STAGE3) --resume
	$(PY) -m training classifier --config $(STARTER_STAGE4) --resume
	$(PY) -m training evaluate --config $(STARTER_STAGE4)
	$(PY) -m training export --config $(STARTER_STAGE4) --force --set export.out_dir=runs/starter2/bundle-2.2.0
	$(PY) -m training classifier --config $(STARTER_B1) --resume
	$(PY) -m training classifier --config $(STARTER_B2) --resume
	$(PY) -m training classifier --config $(STARTER_B3) --resume
	$(PY) -m training evaluate --config $(STARTER_B3)
	$(PY) -m training export --config $(STARTER_B3) --force --set export.parity_atol=0.0005
	$(PY) -m training join runs/starter2/bundle-2.2.0 runs/starter2/bundle-2.3.0rc5-wr --segmenter-from 0 \
		--index runs/starter2/index.csv --out $(STARTER) --version $(STARTER_VERSION) \
		--changelog "$(STARTER_CHANGELOG)" --force $(STARTER_RELEASE)  # replaces engines/starter on purpose
	$(PY) bench/starter_report.py --index runs/starter2/index.csv --bundle $(STARTER) --out runs/starter2/report

$(STARTER)/manifest.json:
	@echo "engines/starter is committed with the repository; run git checkout -- engines/starter" >&2
	@exit 1

clean:
	rm -rf $(VENV) .pytest_cache runs results.csv results.summary.json results.csv.journal $(SAMPLE_BUNDLE) \
		report.html report_files
