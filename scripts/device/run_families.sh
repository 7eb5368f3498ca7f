#!/bin/sh
# On the device (no network), with .dev carried (scripts/device/prepare.sh): a venv as a user
# would have it, llama-cpp-python built with CUDA, ikv installed from this tree (so its
# ikv-preload.pth is in place), then every tiny family through the CLI at -ngl 99 and 0.
# Receipts land in $OUT (or receipts/).
set -x
OUT=${OUT:-receipts}
nvidia-smi -L
python3 -m venv /tmp/v && . /tmp/v/bin/activate
pip install -q --no-index --find-links .dev/wheels numpy usearch typer rich textual platformdirs gguf \
  scikit-build-core
mkdir -p /tmp/b && tar xzf .dev/lcp.tar.gz -C /tmp/b
t0=$(date +%s)
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=off -DGGML_NATIVE=off -DGGML_CUDA_FA=off -DGGML_CUDA_NCCL=off}" \
  CMAKE_BUILD_PARALLEL_LEVEL=16 pip install -q --no-deps --no-build-isolation /tmp/b/llama_cpp_python-0.3.36 2>&1 | tail -5
echo "build seconds: $(( $(date +%s) - t0 ))"
pip install -q --no-deps --no-build-isolation .
cd /tmp && python -c "import usearch.index; from ikv_local.cli import main; main()" doctor; cd - >/dev/null
for ngl in 99 0; do
  timeout 600 python -X faulthandler scripts/device/families.py \
    --vocab-from .dev/vocabs/spm.gguf .dev/vocabs/bpe.gguf --ngl $ngl --out "$OUT"
done
