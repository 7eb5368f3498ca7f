"""Third step: does llama_print_system_info before llama_backend_init crash the next load?"""
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
VARIANTS = {
    "info_then_load": "import llama_cpp; llama_cpp.llama_print_system_info()\n" + LOAD,
    "init_info_then_load": "import llama_cpp; llama_cpp.llama_backend_init(); llama_cpp.llama_print_system_info()\n" + LOAD,
    "ikv_doctor_then_engine": "from ikv_local.doctor import backends; print(backends())\nfrom ikv_local.engine import Engine, EngineConfig\ne = Engine({model!r}, EngineConfig(n_ctx=512, n_gpu_layers=99)); print('loaded', e.facts.n_layer)",
    "ikv_session_import_then_engine": "import ikv_local.session\nfrom ikv_local.engine import Engine, EngineConfig\ne = Engine({model!r}, EngineConfig(n_ctx=512, n_gpu_layers=99)); print('loaded', e.facts.n_layer)",
}
for name, code in VARIANTS.items():
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code.format(model=MODEL)],
                       capture_output=True, text=True, timeout=120)
    tail = " | ".join(ln for ln in (r.stdout + r.stderr).strip().splitlines() if "loaded" in ln or "Fatal" in ln or "CUDA" in ln)
    print(f"{name}: rc={r.returncode} {tail[:300]}", flush=True)
