"""The one place that owns a llama.cpp model and context.

A thin, typed layer over llama-cpp-python's raw ctypes API. We do not use `Llama`: it
ignores context fields it does not know (`n_seq_max`, `kv_unified`) and its `eval()` drops
every cell past its own token counter, which fights any code that edits the KV cache.
Sequence 0 holds the conversation; sequence 1 is scratch space for reading cells out.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

import llama_cpp
import numpy as np

from ikv_local import llama_log
from ikv_local.cxx_runtime import loaded_in_wrong_order
from ikv_local.errors import ContextTooLarge, EngineError, IkvError, ModelError, NoRoom
from ikv_local.facts import (
    ROPE_TYPES,
    LayerFacts,
    ModelFacts,
    RopeFacts,
    parse_cache_layers,
    parse_context,
    parse_print_info,
    parse_rotation,
    per_layer,
)
from ikv_local.kvcost import bytes_per_token, cache_type
from ikv_local.model_file import check_gguf, rope_factor_tensors
from ikv_local.prompt import ChatFormat, Message, format_chat
from ikv_local.sampling import SamplingParams, build_sampler

T = TypeVar("T")

_backend_ready = False
YARN_KEY_ARCHS = ("grok", "mistral3")  # the rest keep llama.cpp's YaRN defaults


@dataclass(frozen=True)
class EngineConfig:
    n_ctx: int = 2048
    n_batch: int = 512
    n_seq_max: int = 2
    n_threads: int | None = None
    n_gpu_layers: int = 0
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool | None = None  # None: llama.cpp decides


def default_threads() -> int:
    """`IKV_THREADS`, else every core: parallel test workers each take one thread, since two
    llama.cpp processes spinning two threads each on two cores run 3-4 times slower."""
    env = os.environ.get("IKV_THREADS", "").strip()
    if not env:
        return max(1, os.cpu_count() or 1)
    if not env.isdigit() or int(env) < 1:
        raise EngineError(f"IKV_THREADS={env!r} is not a thread count; unset it or give a number")
    return int(env)


def _meta(model: ctypes.c_void_p, key: str) -> str:
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return ""
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", "replace")


def _available_ram() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def backend_init() -> None:
    """Once per process, before any other llama.cpp call (system info included)."""
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        blas_on_one_thread()
        _backend_ready = True


def blas_on_one_thread() -> None:
    """llama.cpp's threads own the cores. numpy's products here (sketches, a batch of keys
    at a time) are small, and OpenBLAS's idle threads spin after each one, taking the cores
    from the decode that follows: ingest ran 5% slower on 2 cores, and two test workers
    lost a tenth of their CPU time to it."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def extra_buffers_safe(system_info: str) -> bool:
    """Whether llama.cpp may keep weights in its CPU backend's extra buffer types.

    Not in a build with AMX kernels: pip builds llama-cpp-python for the CPU it is built on,
    and on an Intel Xeon with AMX the first product of weights in the AMX buffer crashes the
    process (SIGSEGV at `ldtilecfg` in `ggml_backend_amx_mul_mat`, llama.cpp issue 20824;
    llama-cpp-python 0.3.36). In plain CPU buffers the AVX-512 kernels run them."""
    return "AMX_INT8 = 1" not in system_info


def model_params(n_gpu_layers: int) -> llama_cpp.llama_model_params:
    backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    params.use_extra_bufts = extra_buffers_safe(
        llama_cpp.llama_print_system_info().decode("utf-8", "replace"))
    return params


def baseline_loads_as_the_engine() -> None:
    """Makes llama-cpp-python's own `Llama` and `llama_cpp.server` (benchmarks' baselines)
    load weights with `model_params` (they set their own layer count after). `Llama` reads its
    defaults from the raw module `llama_cpp.llama_cpp`: replacing the package's re-export of the
    function changes nothing."""
    import llama_cpp.llama_cpp as raw

    raw.llama_model_default_params = functools.partial(model_params, 0)


def _load_model(path: Path, n_gpu_layers: int) -> tuple[ctypes.c_void_p, list[str]]:
    params = model_params(n_gpu_layers)
    with llama_log.capture() as log:
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if model:
        return model, llama_log.joined(log)
    error = llama_log.first_error(log)
    lowered = error.lower()
    if "unknown model architecture" in lowered:
        arch = error.split("architecture:", 1)[-1].strip().strip("'")
        raise ModelError(
            f"unknown model architecture '{arch}': llama-cpp-python "
            f"{llama_cpp.__version__} cannot run {path}"
        )
    if "bad_cast" in lowered and loaded_in_wrong_order():
        raise ModelError(
            f"llama.cpp could not load {path}: usearch was imported before ikv_local, and its own "
            "C++ runtime breaks llama.cpp's tokenizer; import ikv_local first (docs/engine.md)"
        )
    if "file bounds" in lowered or "incomplete" in lowered or "failed to read" in lowered:
        raise ModelError(f"truncated or corrupt GGUF file: {path}")
    raise ModelError(f"llama.cpp could not load {path}: {error or 'no reason given'}")


@dataclass
class _Loaded:
    model: ctypes.c_void_p
    log: list[str]
    users: int = 0
    shared: dict[str, object] = field(default_factory=dict)  # per-model results (fingerprint)


_MODELS: dict[tuple[str, int, int, int], _Loaded] = {}
IDLE_MODELS = 1  # loaded models kept for the next Engine after their last one closes


def _model_key(path: Path, n_gpu_layers: int) -> tuple[str, int, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, n_gpu_layers


def _acquire(path: Path, n_gpu_layers: int) -> _Loaded:
    """The model, loaded once per process: sessions, calibration and tests that open it
    again get the same weights and only build a new context."""
    key = _model_key(path, n_gpu_layers)
    loaded = _MODELS.pop(key, None)
    if loaded is None:
        model, log = _load_model(path, n_gpu_layers)
        loaded = _Loaded(model, log)
    loaded.users += 1
    _MODELS[key] = loaded  # most recently used last
    return loaded


def _release(loaded: _Loaded) -> None:
    loaded.users -= 1
    idle = [k for k, v in _MODELS.items() if v.users == 0]
    for key in idle[: max(0, len(idle) - IDLE_MODELS)]:
        llama_cpp.llama_model_free(_MODELS.pop(key).model)


def release_models() -> None:
    """Free every model no engine is using (the idle ones kept for reuse)."""
    for key in [k for k, v in _MODELS.items() if v.users == 0]:
        llama_cpp.llama_model_free(_MODELS.pop(key).model)


class Engine:
    """A context on a loaded model; close() (or `with`) frees the context and lets the
    model go (the last `IDLE_MODELS` idle models stay loaded for the next Engine)."""

    def __init__(self, model_path: str | os.PathLike[str], config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.path = check_gguf(Path(model_path))
        self._model: ctypes.c_void_p | None = None
        self._ctx: ctypes.c_void_p | None = None
        self._batch: llama_cpp.llama_batch | None = None
        self._loaded: _Loaded | None = None
        self._loaded = _acquire(self.path, self.config.n_gpu_layers)
        self._model, model_log = self._loaded.model, self._loaded.log
        self.shared = self._loaded.shared
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            info = parse_print_info(model_log)
            shape = self._kv_shape(info, llama_cpp.llama_model_n_layer(self._model))
            self._check_fits(shape)
            ctx_log = self._create_context()
            self.facts = self._read_facts(info, shape, ctx_log)
            head_dim = self.facts.layers[0].head_dim_k if self.facts.layers else 0
            self.k_rotation, self.v_rotation = parse_rotation(ctx_log, head_dim)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------

    def _check_fits(self, shape: tuple[list[int], list[int], list[int]]) -> None:
        cfg = self.config
        if cfg.n_ctx <= 0:
            raise IkvError(f"context size must be a positive number of tokens, got {cfg.n_ctx}")
        _, k, v = shape
        widths = [LayerFacts(i, 1, k[i], v[i], False, 0.0, 0.0, 0) for i in range(len(k))]
        need = cfg.n_ctx * bytes_per_token(widths, cfg.type_k, cfg.type_v)
        ram = _available_ram()
        if cfg.n_gpu_layers == 0 and ram is not None and need > ram:
            raise ContextTooLarge(
                f"a context of {cfg.n_ctx:,} tokens needs {need / 2**30:.1f} GiB of KV cache, "
                f"only {ram / 2**30:.1f} GiB of memory is available; use a smaller -c"
            )

    def _create_context(self) -> list[str]:
        cfg = self.config
        p = llama_cpp.llama_context_default_params()
        p.n_ctx = cfg.n_ctx
        p.n_batch = p.n_ubatch = min(cfg.n_batch, cfg.n_ctx)
        p.n_seq_max = cfg.n_seq_max
        threads = cfg.n_threads or default_threads()
        p.n_threads = p.n_threads_batch = threads
        p.type_k = int(cache_type(cfg.type_k))
        p.type_v = int(cache_type(cfg.type_v))
        if cfg.flash_attn is not None:
            p.flash_attn_type = 1 if cfg.flash_attn else 0
        p.swa_full = True  # a trimmed SWA cache cannot shift
        p.kv_unified = True  # seq_cp then tags cells instead of copying them
        p.no_perf = True
        with llama_log.capture() as log:
            self._ctx = llama_cpp.llama_init_from_model(self._model, p)
        lines = llama_log.joined(log)
        if not self._ctx:
            error = llama_log.first_error(log)
            if "alloc" in error.lower() or "memory" in error.lower():
                raise ContextTooLarge(
                    f"llama.cpp could not allocate a context of {cfg.n_ctx:,} tokens ({error}); "
                    "use a smaller -c"
                )
            raise EngineError(f"llama.cpp could not create a context: {error or 'no reason given'}")
        got = llama_cpp.llama_n_seq_max(self._ctx)
        if got < cfg.n_seq_max:
            raise EngineError(f"context has {got} sequences, {cfg.n_seq_max} were asked for")
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(p.n_batch, 0, cfg.n_seq_max)
        self.n_batch = p.n_batch
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx)
        return lines

    def _kv_shape(self, info: dict[str, str], n_layer: int) -> tuple[list[int], list[int], list[int]]:
        """Per layer: KV heads, K width, V width.

        From llama.cpp's print_info report; it formats these with a C++ stringstream, which
        prints nothing once some other extension (usearch was seen doing it) has changed the
        process's C++ stream state. Then fall back to the GGUF's scalar keys, as llama.cpp
        reads them (key_length defaults to n_embd / n_head).
        """
        keys = ("n_head_kv", "n_embd_k_gqa", "n_embd_v_gqa")
        if all(info.get(k) for k in keys):
            heads, k, v = (per_layer(info[key], n_layer) for key in keys)
            return heads, k, v
        m = self._model
        arch = _meta(m, "general.architecture")
        n_head = llama_cpp.llama_model_n_head(m)
        heads = llama_cpp.llama_model_n_head_kv(m)
        default = llama_cpp.llama_model_n_embd(m) // max(n_head, 1)
        dim_k = int(_meta(m, f"{arch}.attention.key_length") or default)
        dim_v = int(_meta(m, f"{arch}.attention.value_length") or default)
        return [heads] * n_layer, [heads * dim_k] * n_layer, [heads * dim_v] * n_layer

    def _read_facts(
        self, info: dict[str, str], shape: tuple[list[int], list[int], list[int]], ctx_log: list[str]
    ) -> ModelFacts:
        m = self._model
        n_head_kv, k_gqa, v_gqa = shape
        n_layer = len(k_gqa)
        _, swa_layers = parse_cache_layers(ctx_log)
        ctx = parse_context(ctx_log)
        base = float(ctx.get("freq_base") or info.get("freq_base_train", "0"))
        scale = float(ctx.get("freq_scale") or info.get("freq_scale_train", "1"))
        base_swa = float(info.get("freq_base_swa", base))
        scale_swa = float(info.get("freq_scale_swa", scale))
        n_rot = int(info.get("n_rot", "0"))
        n_rot_swa = int(info.get("n_rot_swa", n_rot))
        arch = _meta(m, "general.architecture")
        # every 4th layer has no rope (llama.cpp's n_no_rope_layer_step; Llama 4 only when chunked)
        chunked_llama4 = arch == "llama4" and llama_cpp.llama_model_n_swa(m) > 0
        nope = 4 if arch == "smollm3" or chunked_llama4 else 0
        layers = tuple(
            LayerFacts(
                index=i,
                n_head_kv=n_head_kv[i],
                head_dim_k=k_gqa[i] // max(n_head_kv[i], 1),
                head_dim_v=v_gqa[i] // max(n_head_kv[i], 1),
                swa=i in swa_layers,
                rope_base=base_swa if i in swa_layers else base,
                rope_scale=scale_swa if i in swa_layers else scale,
                n_rot=n_rot_swa if i in swa_layers else n_rot,
                rope=not (nope and (i + 1) % nope == 0),
            )
            for i in range(n_layer)
        )
        desc = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(m, desc, len(desc))
        return ModelFacts(
            path=str(self.path),
            arch=arch,
            name=_meta(m, "general.name"),
            description=desc.value.decode("utf-8", "replace"),
            file_bytes=self.path.stat().st_size,
            n_params=llama_cpp.llama_model_n_params(m),
            n_layer=n_layer,
            n_embd=llama_cpp.llama_model_n_embd(m),
            n_head=llama_cpp.llama_model_n_head(m),
            n_vocab=llama_cpp.llama_vocab_n_tokens(self._vocab),
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(m),
            rope_type=ROPE_TYPES.get(llama_cpp.llama_model_rope_type(m), "unknown"),
            rope_scaling=info.get("rope scaling", "none"),
            n_swa=llama_cpp.llama_model_n_swa(m),
            can_shift=bool(llama_cpp.llama_memory_can_shift(self._mem)),
            recurrent=bool(llama_cpp.llama_model_is_recurrent(m)),
            hybrid=bool(llama_cpp.llama_model_is_hybrid(m)),
            has_chat_template=self.chat_template() is not None,
            layers=layers,
            rope=self._rope_facts(arch, info, ctx),
        )

    def _rope_facts(self, arch: str, info: dict[str, str], ctx: dict[str, str]) -> RopeFacts:
        """What the context rotates keys with beyond base and scale (llama-context.cpp cparams)."""
        m = self._model
        scaling = info.get("rope scaling", "none")

        def key(name: str, default: float) -> float:
            # llama.cpp reads the YaRN keys only for the architectures that set them
            value = _meta(m, f"{arch}.rope.scaling.{name}") if arch in YARN_KEY_ARCHS else ""
            return float(value) if value else default

        ext = key("yarn_ext_factor", -1.0) if arch == "grok" else -1.0
        n_ctx_orig = int(info.get("n_ctx_orig_yarn") or llama_cpp.llama_model_n_ctx_train(m))
        n_ctx_seq = int(ctx.get("n_ctx_seq") or self.n_ctx)
        # ggml's reader walks a 262k vocabulary on the way: once per loaded model
        tensors = self.per_model("rope_factor_tensors", lambda: rope_factor_tensors(self.path))
        if "rope_freqs.weight" in tensors:
            name = "rope_freqs.weight"
        elif n_ctx_seq > n_ctx_orig:
            name = "rope_factors_long.weight"
        else:
            name = "rope_factors_short.weight"
        return RopeFacts(
            ext_factor=ext if ext >= 0 else (1.0 if scaling == "yarn" else 0.0),
            beta_fast=key("yarn_beta_fast", 8.0 if arch == "grok" else 32.0),
            beta_slow=key("yarn_beta_slow", 1.0),
            n_ctx_orig=n_ctx_orig,
            freq_factors=tensors.get(name),
            factors_from=name if name in tensors else "",
        )

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        self._model = None
        if self._loaded is not None:
            _release(self._loaded)
            self._loaded = None

    def per_model(self, key: str, make: Callable[[], T]) -> T:
        """`make()`, once per loaded model: the engines that share its weights share this."""
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]  # type: ignore[return-value]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- vocabulary --------------------------------------------------------------

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def format_chat(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """Messages as prompt text: the GGUF's chat template, or a plain completion prompt."""
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        return format_chat(
            messages,
            self.chat_template(),
            add_generation_prompt=add_generation_prompt,
            bos=self.piece(self.bos).decode("utf-8", "replace"),
            eos=self.piece(eos).decode("utf-8", "replace"),
        )

    def chat_format(self) -> ChatFormat:
        """How a conversation is written turn by turn (plain User/Assistant lines without a template)."""
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        return ChatFormat.from_template(self.chat_template(),
                                        bos=self.piece(self.bos).decode("utf-8", "replace"),
                                        eos=self.piece(eos).decode("utf-8", "replace"))

    @property
    def bos(self) -> int:
        return llama_cpp.llama_vocab_bos(self._vocab)

    @property
    def add_bos(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        raw = text.encode("utf-8")
        cap = len(raw) + 2
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_bos, special)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_bos, special)
        if n < 0:
            raise EngineError(f"tokenization failed ({n})")
        return list(buf[:n])

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return self.detokenize_bytes(tokens, special=special).decode("utf-8", "replace")

    def detokenize_bytes(self, tokens: Sequence[int], *, special: bool = False) -> bytes:
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        cap = max(64, len(tokens) * 8)
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            n = llama_cpp.llama_detokenize(
                self._vocab, arr, len(tokens), buf, cap, not special, special
            )
            if n >= 0:
                return buf.raw[:n]
            cap = -n + 1
        raise EngineError("detokenization failed")

    def piece(self, token: int) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    # -- decoding ----------------------------------------------------------------

    def decode(
        self, tokens: Sequence[int], pos0: int, *, seq: int = 0, logits_last: bool = True,
        logits_all: bool = False, logits_at: np.ndarray | None = None,
    ) -> None:
        """Decode tokens at positions pos0, pos0+1, ... on `seq`, in batches of n_batch.

        llama.cpp requires pos0 to follow the sequence's last cell (pos_max + 1).
        `logits_all` asks for every token's logits (`logits_rows`), `logits_at` (a bool per
        token) for some; either at most n_batch tokens. The output layer is most of a small
        model's work, so logits nobody reads are worth not asking for.
        """
        if (logits_all or logits_at is not None) and len(tokens) > self.n_batch:
            raise EngineError(f"logits for {len(tokens)} tokens at once; the batch holds {self.n_batch}")
        batch = self._batch
        assert batch is not None
        n_total = len(tokens)
        tok = np.asarray(tokens, dtype=np.int32)
        for start in range(0, n_total, self.n_batch):
            n = min(self.n_batch, n_total - start)
            np.ctypeslib.as_array(batch.token, shape=(n,))[:] = tok[start : start + n]
            np.ctypeslib.as_array(batch.pos, shape=(n,))[:] = np.arange(
                pos0 + start, pos0 + start + n, dtype=np.int32
            )
            np.ctypeslib.as_array(batch.n_seq_id, shape=(n,))[:] = 1
            logits = np.ctypeslib.as_array(batch.logits, shape=(n,))
            logits[:] = 1 if logits_all else 0
            if logits_at is not None:
                logits[:] = logits_at[start : start + n]
            if logits_last and start + n == n_total:
                logits[n - 1] = 1
            for i in range(n):
                batch.seq_id[i][0] = seq
            batch.n_tokens = n
            with llama_log.capture() as log:
                rc = llama_cpp.llama_decode(self._ctx, batch)
            if rc != 0:
                where = f"decode of {n} tokens at position {pos0 + start} on sequence {seq} failed"
                if rc == 1:
                    raise NoRoom(f"{where}: no room in the KV cache of {self.n_ctx} cells")
                raise EngineError(f"{where}: {llama_log.first_error(log) or f'llama_decode returned {rc}'}")

    def logits(self) -> np.ndarray:
        """Logits of the last decoded token that asked for them (a copy)."""
        ptr = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()

    def logits_rows(self, n: int) -> np.ndarray:
        """Logits of the last `logits_all` decode of n tokens, [n, vocab] (a copy)."""
        ptr = llama_cpp.llama_get_logits(self._ctx)
        n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        return np.ctypeslib.as_array(ptr, shape=(n, n_vocab)).copy()

    @contextmanager
    def sampler(self, params: SamplingParams, history: Sequence[int] = ()) -> Iterator[Callable[[], int]]:
        """A function that samples the next token from the last logits (and remembers it)."""
        chain = build_sampler(params, self.facts.n_vocab, history)
        try:
            yield lambda: int(llama_cpp.llama_sampler_sample(chain, self._ctx, -1))
        finally:
            llama_cpp.llama_sampler_free(chain)

    def generate(
        self,
        prompt: Sequence[int],
        pos0: int,
        params: SamplingParams,
        max_tokens: int,
        *,
        seq: int = 0,
    ) -> Iterator[int]:
        """Decode the prompt at pos0, then sample and decode up to max_tokens, stopping at EOG.

        Each yielded token is already in the KV cache, at the position after the previous one.
        """
        with self.sampler(params, prompt) as sample:
            self.decode(prompt, pos0, seq=seq)
            pos = pos0 + len(prompt)
            for _ in range(max_tokens):
                token = sample()
                if self.is_eog(token):
                    return
                yield token
                self.decode([token], pos, seq=seq)
                pos += 1

    # -- sequences (llama.h's llama_memory_* calls, positions [p0, p1), -1 = open end) ----

    def _check_seq(self, *seqs: int) -> None:
        # llama.cpp aborts the whole process on a sequence id it does not have
        for s in seqs:
            if not 0 <= s < self.config.n_seq_max and s != -1:
                raise EngineError(f"sequence {s} out of range 0..{self.config.n_seq_max - 1}")

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        self._check_seq(seq)
        return bool(llama_cpp.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def seq_add(self, seq: int, p0: int, p1: int, delta: int) -> None:
        self._check_seq(seq)
        if delta and not self.facts.can_shift:
            raise EngineError(f"{self.facts.arch} models cannot shift their KV cache")
        llama_cpp.llama_memory_seq_add(self._mem, seq, p0, p1, delta)

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        self._check_seq(src, dst)
        llama_cpp.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def seq_pos_range(self, seq: int) -> tuple[int, int]:
        """(min, max) position held by `seq`; (-1, -1) when empty."""
        self._check_seq(seq)
        return (
            llama_cpp.llama_memory_seq_pos_min(self._mem, seq),
            llama_cpp.llama_memory_seq_pos_max(self._mem, seq),
        )

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self._mem, True)

    # -- state -------------------------------------------------------------------

    def state_size(self, seq: int = 0) -> int:
        self._check_seq(seq)
        return llama_cpp.llama_state_seq_get_size(self._ctx, seq)

    def state_get(self, seq: int = 0) -> bytes:
        self._check_seq(seq)
        size = llama_cpp.llama_state_seq_get_size(self._ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_seq_get_data(self._ctx, buf, size, seq)
        if n != size:
            raise EngineError(f"state of sequence {seq}: {n} bytes written, {size} expected")
        return bytes(buf)

    def state_set(self, data: bytes, seq: int = 0) -> None:
        self._check_seq(seq)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(self._ctx, buf, len(data), seq) == 0:
            raise EngineError(f"llama.cpp refused the saved state for sequence {seq}")
