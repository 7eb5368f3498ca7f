"""The engine on the real demo model through the real llama.cpp."""

from __future__ import annotations

import gguf_read
import pytest

from ikv_local.engine import Engine, EngineConfig
from ikv_local.errors import EngineError
from ikv_local.info import STATE_BYTES_PER_CELL, measure_state_bytes_per_token
from ikv_local.kvcost import bytes_per_token
from ikv_local.sampling import SamplingParams

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Line one\nLine two\n\n\tindented — em dash, “quotes”, café, naïve, 日本語, emoji 🦊.",
    "Numbers 3.14159, 2,718 and -42; code: def f(x): return x**2",
    "   leading and trailing spaces   ",
]


@pytest.fixture
def fresh(engine):
    engine.clear()
    yield engine
    engine.clear()


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_detokenize_round_trip(engine, text):
    tokens = engine.tokenize(text)
    assert tokens and all(0 <= t < engine.facts.n_vocab for t in tokens)
    assert engine.detokenize(tokens) == text
    assert b"".join(engine.piece(t) for t in tokens).decode("utf-8") == text


def test_bos_is_added_on_request(engine):
    with_bos = engine.tokenize("hello", add_bos=True)
    assert with_bos[0] == engine.bos and with_bos[1:] == engine.tokenize("hello")


def _complete(eng: Engine, prompt: str, params: SamplingParams, n: int = 24) -> list[int]:
    eng.clear()
    return list(eng.generate(eng.tokenize(prompt, add_bos=True), 0, params, n))


@pytest.mark.slow
def test_greedy_completion_is_deterministic(engine, demo_path):
    prompt = "The three primary colours are"
    first = _complete(engine, prompt, SamplingParams.greedy())
    second = _complete(engine, prompt, SamplingParams.greedy())
    assert len(first) > 5 and first == second
    # and in another context, with another batch size
    with Engine(demo_path, EngineConfig(n_ctx=256, n_batch=32)) as other:
        assert _complete(other, prompt, SamplingParams.greedy()) == first


@pytest.mark.slow
def test_seeded_sampling_repeats_and_seeds_differ(engine):
    prompt = "Once upon a time"
    hot = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=7)
    a = _complete(engine, prompt, hot, 32)
    assert _complete(engine, prompt, hot, 32) == a
    others = [_complete(engine, prompt, SamplingParams(**{**hot.__dict__, "seed": s}), 32)
              for s in (8, 9, 10)]
    assert any(o != a for o in others)


def test_generation_stops_at_max_tokens_and_fills_positions(fresh):
    prompt = fresh.tokenize("Count: one, two, three,", add_bos=True)
    out = list(fresh.generate(prompt, 0, SamplingParams.greedy(), 10))
    assert len(out) == 10
    assert fresh.seq_pos_range(0) == (0, len(prompt) + len(out) - 1)


def test_positions_follow_llama_h(fresh):
    tokens = fresh.tokenize("alpha beta gamma delta epsilon zeta eta theta iota kappa", add_bos=True)
    n = len(tokens)
    assert fresh.seq_pos_range(0) == (-1, -1)  # empty sequence
    fresh.decode(tokens, 0)
    assert fresh.seq_pos_range(0) == (0, n - 1)
    # a new token must follow the last position (Y = X + 1)
    with pytest.raises(EngineError, match="position 50"):
        fresh.decode(tokens[:1], 50)
    # seq_rm removes [p0, p1); seq_add shifts [p0, p1) by delta
    assert fresh.seq_rm(0, 2, 5)
    assert fresh.seq_pos_range(0) == (0, n - 1)
    fresh.seq_add(0, 5, -1, -3)
    assert fresh.seq_pos_range(0) == (0, n - 4)
    fresh.decode(tokens[:2], n - 3)  # the next free position after the shift
    assert fresh.seq_pos_range(0) == (0, n - 2)
    # seq_rm with p1 = -1 drops the tail; an empty range removes nothing
    assert fresh.seq_rm(0, 4, -1)
    assert fresh.seq_pos_range(0) == (0, 3)
    # seq_cp tags the same cells with another sequence; removing it leaves the original
    fresh.seq_cp(0, 1)
    assert fresh.seq_pos_range(1) == (0, 3)
    assert fresh.seq_rm(1)
    assert fresh.seq_pos_range(1) == (-1, -1) and fresh.seq_pos_range(0) == (0, 3)


def test_state_size_counts_cells(fresh):
    tokens = fresh.tokenize("one two three four five six seven eight nine ten", add_bos=True)
    fresh.decode(tokens, 0)
    full = fresh.state_size(0)
    assert fresh.seq_rm(0, 3, 7)
    per_cell = bytes_per_token(fresh.facts.layers) + STATE_BYTES_PER_CELL * 2
    assert full - fresh.state_size(0) == 4 * per_cell


def test_state_round_trip_restores_the_sequence(fresh):
    tokens = fresh.tokenize("The secret word is marmalade. The secret word is", add_bos=True)
    fresh.decode(tokens, 0)
    expected = fresh.logits().argmax()
    saved = fresh.state_get(0)
    fresh.clear()
    fresh.state_set(saved, 0)
    assert fresh.seq_pos_range(0) == (0, len(tokens) - 1)
    fresh.decode([int(expected)], len(tokens))  # the restored cache accepts the next position


def test_out_of_range_sequence_is_an_error_not_an_abort(engine):
    with pytest.raises(EngineError, match="sequence 5 out of range"):
        engine.seq_cp(0, 5)
    with pytest.raises(EngineError):
        engine.state_size(2)


@pytest.mark.slow
def test_facts_match_the_gguf_metadata(engine, demo_path):
    reader = gguf_read.reader(demo_path)

    def field(key):
        return reader.fields[key].contents()

    f = engine.facts
    arch = field("general.architecture")
    assert f.arch == arch == "gemma3"
    assert f.n_layer == field(f"{arch}.block_count") == len(f.layers)
    assert f.n_embd == field(f"{arch}.embedding_length")
    assert f.n_head == field(f"{arch}.attention.head_count")
    assert f.n_ctx_train == field(f"{arch}.context_length")
    assert f.n_swa == field(f"{arch}.attention.sliding_window")
    assert f.n_vocab == len(field("tokenizer.ggml.tokens"))
    assert all(lay.n_head_kv == field(f"{arch}.attention.head_count_kv") for lay in f.layers)
    assert all(lay.head_dim_k == field(f"{arch}.attention.key_length") for lay in f.layers)
    assert all(lay.head_dim_v == field(f"{arch}.attention.value_length") for lay in f.layers)
    # K tensor width per layer in the weights equals the KV width llama.cpp reports
    k_weights = {t.name: t for t in reader.tensors if t.name.endswith("attn_k.weight")}
    for lay in f.layers:
        assert int(k_weights[f"blk.{lay.index}.attn_k.weight"].shape[1]) == lay.k_width
    assert {lay.rope_base for lay in f.layers if not lay.swa} == {field(f"{arch}.rope.freq_base")}
    # Gemma 3: every 6th layer is global, the rest slide; the chat template is absent
    assert f.global_layers == [5, 11, 17]
    assert f.rope_type == "neox" and f.can_shift and not f.has_chat_template


@pytest.mark.parametrize("cache_type", ["f16", "q8_0", "q4_0"])
def test_kv_bytes_per_token_match_llama_cpp_state_size(demo_path, engine, cache_type):
    computed = bytes_per_token(engine.facts.layers, cache_type, cache_type)
    assert measure_state_bytes_per_token(demo_path, cache_type, n_tokens=32) == computed


def test_facts_do_not_depend_on_what_was_imported_before(engine, demo_path):
    """usearch's extension silences llama.cpp's C++ stream output; facts must not change."""
    import json
    import subprocess
    import sys

    code = (
        "import usearch.index, json, sys; from ikv_local.engine import Engine, EngineConfig; "
        "e = Engine(sys.argv[1], EngineConfig(n_ctx=256)); print(json.dumps(e.facts.to_dict()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(demo_path)], capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == json.loads(json.dumps(engine.facts.to_dict()))


def test_engines_on_one_model_share_its_weights_and_each_closes_alone(demo_path):
    """A second Engine (a session, calibration, the TUI reopening) builds only a context."""
    from ikv_local import engine as engine_module

    key = engine_module._model_key(demo_path, 0)
    before = engine_module._MODELS[key].users if key in engine_module._MODELS else 0
    prompt = "The three primary colours are"
    with Engine(demo_path, EngineConfig(n_ctx=256)) as a:
        with Engine(demo_path, EngineConfig(n_ctx=512)) as b:
            assert a._model == b._model and b.n_ctx == 512
            assert engine_module._MODELS[key].users == before + 2
        alone = _complete(a, prompt, SamplingParams.greedy())
    assert engine_module._MODELS[key].users == before  # idle, still loaded
    with Engine(demo_path, EngineConfig(n_ctx=256)) as c:
        assert _complete(c, prompt, SamplingParams.greedy()) == alone
    engine_module.release_models()
    assert (key in engine_module._MODELS) == (before > 0)  # only idle models are freed


def test_logits_at_some_positions_are_those_rows_of_every_position(fresh):
    import numpy as np

    tokens = fresh.tokenize("The lighthouse keeper counted ships every night, one by one.", add_bos=True)
    fresh.decode(tokens, 0, logits_all=True)
    every = fresh.logits_rows(len(tokens))
    fresh.clear()
    at = np.zeros(len(tokens), bool)
    at[[2, 5, len(tokens) - 1]] = True
    fresh.decode(tokens, 0, logits_last=False, logits_at=at)
    some = fresh.logits_rows(3)
    assert np.allclose(some, every[at], atol=1e-3)
    assert not np.allclose(some[0], every[1], atol=1e-3)  # rows really differ by position


def test_ikv_threads_sets_the_default_thread_count_and_a_bad_one_is_one_error(monkeypatch):
    import os

    from ikv_local.engine import default_threads

    monkeypatch.delenv("IKV_THREADS", raising=False)
    assert default_threads() == os.cpu_count()
    monkeypatch.setenv("IKV_THREADS", "3")
    assert default_threads() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("IKV_THREADS", bad)
        with pytest.raises(EngineError, match="IKV_THREADS"):
            default_threads()


def test_numpy_blas_keeps_to_one_thread_once_llama_cpp_is_up(engine):
    """OpenBLAS's idle threads spin after each product and took the cores from decodes."""
    from threadpoolctl import threadpool_info

    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert blas and all(lib["num_threads"] == 1 for lib in blas), blas


def test_weights_stay_out_of_amx_buffers_in_a_build_with_amx():
    """llama.cpp 0.3.36's AMX kernels crash the first decode on Xeons with AMX (SIGSEGV at
    ldtilecfg); pip builds them in wherever it builds on such a CPU."""
    from ikv_local.engine import extra_buffers_safe

    amd = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | REPACK = 1 | "
    xeon = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | REPACK = 1 | "
    assert extra_buffers_safe(amd)
    assert not extra_buffers_safe(xeon)


def test_no_weight_is_loaded_into_an_amx_buffer(engine):
    assert not [line for line in engine._loaded.log if "AMX model buffer" in line]


def test_a_baseline_llama_loads_its_weights_as_the_engine_does(demo_path, monkeypatch):
    """The benchmarks' llama-cpp-python baselines (`Llama`, `llama_cpp.server`) must not crash
    an AMX build either."""
    import llama_cpp
    import llama_cpp.llama_cpp as raw

    from ikv_local import engine

    monkeypatch.setattr(raw, "llama_model_default_params", raw.llama_model_default_params)
    monkeypatch.setattr(engine, "extra_buffers_safe", lambda info: False)  # as in an AMX build
    engine.baseline_loads_as_the_engine()
    llm = llama_cpp.Llama(str(demo_path), n_ctx=64, n_threads=1, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False
    finally:
        llm.close()
