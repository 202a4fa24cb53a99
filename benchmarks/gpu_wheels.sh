#!/usr/bin/env bash
# Wheels for the project's lent GPU machine, which reaches no package registry: its image has torch,
# numpy, pyarrow, pandas, scipy, pyyaml, safetensors, tqdm, matplotlib, seaborn and transformers for
# Python 3.12, but not pydantic. This downloads pydantic and what it needs, at the versions installed
# here, into .whl/ (git-ignored, 2.5 MB). Then one device call runs every GPU figure:
#
#   bash benchmarks/gpu_wheels.sh            # here, once
#   # device run, carry [".whl"], timeout_s 600:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
#     PYTHONPATH=/tmp/site:$PWD/src bash benchmarks/gpu_check.sh --out $OUT/gpu_check.json
set -euo pipefail

cd "$(dirname "$0")/.."
pins=$(python3 - <<'PY'
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in
               ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")))
PY
)
rm -rf .whl
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $pins
ls .whl
