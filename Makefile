# Two entry points for a newcomer: `make run` and `make test`.
# torch is pinned first so pip never pulls a multi-GB CUDA build.
PY ?= python3
EXTRAS ?= dev,language

.PHONY: install run test test-all

install:
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"

run: install
	$(PY) -m gtl_verify.cli theory
	$(PY) -m gtl_verify.cli markov

# hypothesis's `dev` profile (30 examples per property) unless HYPOTHESIS_PROFILE is set;
# CI depth (200 examples): HYPOTHESIS_PROFILE=ci make test
test: install
	@echo "hypothesis profile: $${HYPOTHESIS_PROFILE:-dev} (CI depth: HYPOTHESIS_PROFILE=ci make test)"
	$(PY) -m pytest -q -p no:cacheprovider

test-all: install
	$(PY) -m pytest -q -p no:cacheprovider --runslow
