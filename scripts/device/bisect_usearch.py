"""After bisect_load.py found that importing usearch before a model load crashes a CUDA build:
which part, and which order or preload avoids it; with `info`, whether system info or the
session import before the load crashes. One child process per variant."""
import os
import subprocess
import sys

MODEL = os.path.abspath(os.environ.get("IKV_TINY_MODEL", ".dev/tiny.gguf"))
LOAD = """
import llama_cpp
llama_cpp.llama_backend_init()
p = llama_cpp.llama_model_default_params()
p.n_gpu_layers = 99
m = llama_cpp.llama_model_load_from_file({model!r}.encode(), p)
print("loaded", bool(m), flush=True)
"""
USEARCH = {
    "numkong_then_load": "import numkong\n" + LOAD,
    "usearch_compiled_then_load": "import usearch.compiled\n" + LOAD,
    "load_then_usearch_then_load": LOAD + "import usearch.index\n" + LOAD,
    "llama_import_then_usearch_then_load": "import llama_cpp\nllama_cpp.llama_backend_init()\nimport usearch.index\n" + LOAD,
    "preload_libstdcxx_global": "import ctypes\nctypes.CDLL('libstdc++.so.6', mode=ctypes.RTLD_GLOBAL)\nimport usearch.index\n" + LOAD,
    "preload_llama_global": "import ctypes, llama_cpp, os\nimport usearch.index\n" + LOAD,
    "usearch_then_load_ngl0": "import usearch.index\n" + LOAD.replace("= 99", "= 0"),
    "usearch_then_llama_class": "import usearch.index, llama_cpp\nl = llama_cpp.Llama({model!r}, n_gpu_layers=99, verbose=False)\nprint('ok')",
    "locale_C_then_usearch": "import locale; locale.setlocale(locale.LC_ALL, 'C')\nimport usearch.index\n" + LOAD,
}
INFO = {
    "info_then_load": "import llama_cpp; llama_cpp.llama_print_system_info()\n" + LOAD,
    "init_info_then_load": "import llama_cpp; llama_cpp.llama_backend_init(); llama_cpp.llama_print_system_info()\n" + LOAD,
    "ikv_doctor_then_engine": "from ikv_local.doctor import backends; print(backends())\nfrom ikv_local.engine import Engine, EngineConfig\ne = Engine({model!r}, EngineConfig(n_ctx=512, n_gpu_layers=99)); print('loaded', e.facts.n_layer)",
    "ikv_session_import_then_engine": "import ikv_local.session\nfrom ikv_local.engine import Engine, EngineConfig\ne = Engine({model!r}, EngineConfig(n_ctx=512, n_gpu_layers=99)); print('loaded', e.facts.n_layer)",
}
VARIANTS = INFO if sys.argv[1:] == ["info"] else USEARCH
for name, code in VARIANTS.items():
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code.format(model=MODEL)],
                       capture_output=True, text=True, timeout=120)
    tail = " | ".join(ln for ln in (r.stdout + r.stderr).strip().splitlines() if "loaded" in ln or "ok" == ln.strip() or "Fatal" in ln)
    print(f"{name}: rc={r.returncode} {tail[:300]}", flush=True)
print("ldd usearch:", flush=True)
import glob
for so in glob.glob("/tmp/site/usearch/*.so") + glob.glob("/tmp/site/numkong/*.so") + glob.glob("/tmp/site/usearch.libs/*") + glob.glob("/tmp/site/numkong.libs/*"):
    print(so, subprocess.run(["ldd", so], capture_output=True, text=True).stdout.replace("\n", "; ")[:600])
