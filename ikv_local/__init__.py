"""ikv: a local LLM whose memory has no end."""

from ikv_local.cxx_runtime import preload as _preload

_preload()  # before anything imports usearch (see cxx_runtime)
