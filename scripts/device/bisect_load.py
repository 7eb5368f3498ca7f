"""Which difference from `llama_cpp.Llama` makes ikv's model load crash on a CUDA build?

Each variant loads the tiny model in its own child process (a crash only ends the child).
Prints one line per variant: its exit status and the last lines of its stderr.
"""
import os
import subprocess
import sys

MODEL = os.path.abspath(os.environ.get("IKV_TINY_MODEL", ".dev/tiny.gguf"))
RAW = """
import llama_cpp
llama_cpp.llama_backend_init()
p = llama_cpp.llama_model_default_params()
p.n_gpu_layers = {ngl}
{extra}
m = llama_cpp.llama_model_load_from_file({model!r}.encode(), p)
print("loaded", bool(m))
"""
VARIANTS = {
    "llama_class": "import llama_cpp; l = llama_cpp.Llama({model!r}, n_gpu_layers={ngl}, verbose=False); print('ok')",
    "raw_default": RAW.format(ngl="{ngl}", extra="", model="{model}"),
    "raw_mmap": RAW.format(ngl="{ngl}", extra="p.use_mmap = True", model="{model}"),
    "raw_ikv_log": "import ikv_local.llama_log\n" + RAW.format(ngl="{ngl}", extra="", model="{model}"),
    "raw_usearch": "import usearch.index\n" + RAW.format(ngl="{ngl}", extra="", model="{model}"),
    "raw_check_gguf": "from ikv_local.model_file import check_gguf; from pathlib import Path; check_gguf(Path({model!r}))\n"
                      + RAW.format(ngl="{ngl}", extra="", model="{model}"),
    "ikv_load_model": "from ikv_local.engine import _load_model; from pathlib import Path; m, _ = _load_model(Path({model!r}), {ngl}); print('ok', bool(m))",
    "ikv_engine": "from ikv_local.engine import Engine, EngineConfig; e = Engine({model!r}, EngineConfig(n_ctx=512, n_gpu_layers={ngl})); print('ok', e.facts.n_layer)",
}
for ngl in (99, 0):
    for name, code in VARIANTS.items():
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code.format(model=MODEL, ngl=ngl)],
                           capture_output=True, text=True, timeout=120)
        tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-4:])
        print(f"ngl={ngl} {name}: rc={r.returncode} {tail[:600]}", flush=True)
