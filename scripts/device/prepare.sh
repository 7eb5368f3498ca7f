#!/bin/sh
# Here, in the README's venv (with the package registry): everything a device run needs, into
# .dev (git-ignored), under 64 MiB so it can be carried: dependency wheels, llama-cpp-python's
# sdist without its git pack, models, docs and web UI, and the two tokenizers for the tiny
# models. The device brings cmake and the CUDA toolkit.
#     sh scripts/device/prepare.sh     then, on the device:    sh scripts/device/run_families.sh
set -eu
rm -rf .dev && mkdir -p .dev/wheels .dev/sd
pip download -q --only-binary :all: -d .dev/wheels "numpy>=2.0" "usearch>=2.26" "typer>=0.12" \
  "rich>=13" "textual>=0.80" "platformdirs>=4" "gguf>=0.17" scikit-build-core
pip download -q --no-deps --no-binary :all: -d .dev/sd llama-cpp-python==0.3.36
tar xzf .dev/sd/llama_cpp_python-0.3.36.tar.gz -C .dev/sd
v=.dev/sd/llama_cpp_python-0.3.36/vendor/llama.cpp
rm -rf "$v/.git" .dev/sd/llama_cpp_python-0.3.36/.git "$v/models" "$v/docs" "$v/benches" "$v/tests" \
  "$v/media" "$v/examples" "$v/tools/ui" "$v/tools/server/public" \
  .dev/sd/llama_cpp_python-0.3.36/examples
find .dev/sd -name "*.mp4" -o -name "*.webp" -o -name "*.png" -o -name "*.jpg" | xargs rm -f
tar czf .dev/lcp.tar.gz -C .dev/sd llama_cpp_python-0.3.36 && rm -rf .dev/sd
python scripts/device/families.py --vocabs-only .dev/vocabs
du -sh .dev
