import subprocess
import sys
import sysconfig
from pathlib import Path

from ikv_local import cxx_runtime


def test_the_runtimes_are_loaded_before_usearch_in_this_process():
    import usearch.index  # noqa: F401  (after ikv_local, as conftest's imports make it)

    assert not cxx_runtime.loaded_in_wrong_order()


def test_the_wrong_order_is_seen():
    code = (
        "import usearch.compiled\nfrom ikv_local import cxx_runtime\n"
        "print(cxx_runtime.loaded_in_wrong_order())"
    )
    run = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"  # -S: no .pth ran, usearch came first


def test_the_installed_package_runs_the_preload_at_start_up():
    pth = Path(sysconfig.get_paths()["purelib"]) / "ikv-preload.pth"
    assert pth.is_file(), "the README's install puts ikv-preload.pth into site-packages"
    assert pth.read_text() == cxx_runtime.PTH_LINE
    ns: dict[str, object] = {}
    exec(cxx_runtime.PTH_LINE.removeprefix("import sys; "), ns)  # runs without error
