"""Put the system C++ and OpenMP runtimes first in the process, before any extension's own copy.

usearch's wheels link a static libstdc++ and export its GNU-unique `std::` locale symbols
(numkong's carry their own libgomp). Whichever copy the process loads first is the one every
later library binds to. When usearch's comes first, llama.cpp (built against the system
libstdc++) meets locale facets that are not its own: loading any BPE vocabulary (Llama 3,
Qwen, Mistral, Phi, SmolLM2...) fails with `std::bad_cast` on a CPU build, and a CUDA build
was seen to crash at model load. Loading the system runtimes with RTLD_GLOBAL first makes
usearch resolve its `std::` symbols to them; loading them afterwards does not help.

`ikv_local` runs `preload()` on import, and the installed package adds `ikv-preload.pth`,
which runs the same code when Python starts, so any import order in a user's script holds.
"""

from __future__ import annotations

LIBRARIES = ("libstdc++.so.6", "libgomp.so.1")

CODE = (
    "import sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    import ctypes\n"
    f"    for _name in {LIBRARIES!r}:\n"
    "        try:\n"
    "            ctypes.CDLL(_name, mode=ctypes.RTLD_GLOBAL)\n"
    "        except OSError:\n"
    "            pass\n"
)

# a .pth line runs only when it starts with "import"
PTH_LINE = f"import sys; exec({CODE!r}, {{}})\n"


def preload() -> None:
    exec(CODE, {})


def loaded_in_wrong_order() -> bool:
    """True when a library with its own C++ runtime was loaded before the system libstdc++."""
    import ctypes

    class _Info(ctypes.Structure):
        _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_char_p)]

    names: list[str] = []
    callback = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(_Info), ctypes.c_size_t, ctypes.c_void_p
    )

    def visit(info: ctypes._Pointer, _size: int, _data: ctypes.c_void_p) -> int:  # type: ignore[type-arg]
        names.append((info.contents.name or b"").decode(errors="replace"))
        return 0

    try:
        ctypes.CDLL(None).dl_iterate_phdr(callback(visit), None)
    except (OSError, AttributeError):
        return False
    runtime = next((i for i, n in enumerate(names) if "libstdc++.so" in n), len(names))
    return any("usearch" in n or "numkong" in n for n in names[:runtime])
