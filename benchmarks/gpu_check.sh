#!/usr/bin/env bash
# Issue #12's GPU checks as one prepared run for a lent GPU machine (the `device` tool).
#
#   bash benchmarks/gpu_check.sh prepare   # here, once per session: .whl/ and .data/
#   device run, carry [".whl", ".data"], timeout_s 560:
#       bash benchmarks/gpu_check.sh run
#
# `prepare` (on this machine) downloads the pure-Python wheels the GPU image lacks
# (platformdirs, mnist1d: nothing can be fetched there) into .whl/, copies Fashion-MNIST
# (Debian's dataset-fashion-mnist, 30 MB) into .data/fashion-mnist/, and has git ignore both
# (.git/info/exclude), so that they travel only when `carry` names them.
#
# `run` (on the GPU machine) uses the image's own CUDA build of torch and initlab from src/
# (no install), and writes under $OUT:
#   env.txt    the GPU, torch and CUDA versions
#   tests.log  tests/test_gpu.py and every other test that needs CUDA
#   bench.log  benchmarks/bench_engine.py --device cuda --many 64 (the GPU table)
# Each step has its own time limit, so the tests' log comes back even if the benchmark
# runs long. Record the results in benchmarks/README.md with the GPU they ran on.
set -u -o pipefail
cd "$(dirname "$0")/.."

prepare() {
    mkdir -p .whl .data
    python3 -m pip download -q --no-deps --only-binary=:all: -d .whl platformdirs mnist1d
    cp -r /usr/share/datasets/fashion-mnist .data/
    grep -qxs '/.whl/' .git/info/exclude || echo '/.whl/' >>.git/info/exclude
    grep -qxs '/.data/' .git/info/exclude || echo '/.data/' >>.git/info/exclude
    du -sh .whl .data
}

run() {
    local out="${OUT:-/tmp/gpu-check}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD/src:/tmp/site" INITLAB_DATA="$PWD/.data" PYTHONUNBUFFERED=1
    python3 - <<'EOF' 2>&1 | tee "$out/env.txt"
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
print("GPU", torch.cuda.get_device_name(), "available:", torch.cuda.is_available())
EOF
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$out/env.txt" 2>&1
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py \
        tests/test_engine_inputs.py tests/test_cli_user_model.py -k "gpu or cuda or device" \
        2>&1 | tee "$out/tests.log"
    (cd benchmarks && timeout 280 python3 bench_engine.py --device cuda --many 64 \
        --repeats 3) 2>&1 | tee "$out/bench.log"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: bash benchmarks/gpu_check.sh prepare|run" >&2 && exit 2 ;;
esac
