#!/bin/sh
# On the device (no network): install from .dev (wheels, trimmed sdist, tiny model), build
# llama-cpp-python with CUDA, then bisect the model-load crash and run the GPU checks.
# Needs .dev carried: wheels/, lcp.tar.gz, tiny.gguf (see scripts/device/tiny_model.py).
set -x
python3 --version; nvidia-smi -L; which cmake nvcc
mkdir -p /tmp/site /tmp/b && tar xzf .dev/lcp.tar.gz -C /tmp/b
pip install -q --no-deps --target /tmp/site .dev/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD
t0=$(date +%s)
CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=off -DGGML_NATIVE=off -DGGML_CUDA_FA=off -DGGML_CUDA_NCCL=off" \
  CMAKE_BUILD_PARALLEL_LEVEL=16 pip install -q --no-deps --no-build-isolation --target /tmp/site /tmp/b/lcp 2>&1 | tail -5
echo "build seconds: $(( $(date +%s) - t0 ))"
python3 scripts/device/bisect_load.py 2>&1 | tee $OUT/bisect.txt
timeout 200 python3 -X faulthandler scripts/device/gpu_check.py 2>&1 | tail -40
