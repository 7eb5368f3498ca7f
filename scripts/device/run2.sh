#!/bin/sh
# Second device step: same install as run.sh, then the usearch bisect.
mkdir -p /tmp/site /tmp/b && tar xzf .dev/lcp.tar.gz -C /tmp/b
pip install -q --no-deps --target /tmp/site .dev/wheels/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD
[ -d /tmp/site/llama_cpp ] || CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=off -DGGML_NATIVE=off -DGGML_CUDA_FA=off -DGGML_CUDA_NCCL=off" \
  CMAKE_BUILD_PARALLEL_LEVEL=16 pip install -q --no-deps --no-build-isolation --target /tmp/site /tmp/b/lcp 2>&1 | tail -3
python3 scripts/device/bisect_usearch.py $STEP 2>&1 | tee $OUT/bisect.txt
[ -n "$CHECK" ] && timeout 150 python3 -X faulthandler scripts/device/gpu_check.py 2>&1 | tail -25
