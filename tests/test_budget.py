"""`--kv-budget` on the real model: the plan, its errors, and sessions that keep their types."""

from __future__ import annotations

import json

import pytest

from ikv_local.budget import SessionShape, plan_for, plan_session
from ikv_local.kvcost import bytes_per_token
from ikv_local.plan import BudgetTooSmall
from tests.conftest import assert_one_line_error

MIB = 2**20


def test_a_budget_that_f16_fills_up_to_the_trained_context_needs_no_measurement(engine, ikv_cache):
    plan = plan_for(engine, 4096 * MIB)
    assert (plan.chosen.type_k, plan.chosen.n_ctx) == ("f16", engine.facts.n_ctx_train)
    assert plan.damage == {}


@pytest.mark.slow
def test_the_plan_fits_the_budget_and_the_quality_bound(engine):
    per_cell = bytes_per_token(engine.facts.layers)
    plan = plan_for(engine, 24 * MIB, max_kl=0.02)
    c = plan.chosen
    assert c.kv_bytes <= 24 * MIB and c.n_ctx > 24 * MIB // per_cell  # more than f16 gets
    assert plan.damage[c.type_k, c.type_v].kl_mean <= 0.02
    strict = plan_for(engine, 24 * MIB, max_kl=0.0)
    assert strict.chosen.type_k == "f16" and strict.chosen.n_ctx == 24 * MIB // per_cell // 256 * 256
    with pytest.raises(BudgetTooSmall, match="raise --kv-budget"):
        plan_for(engine, 2 * MIB)


@pytest.mark.slow
def test_kv_budget_from_the_command_line(demo_path, tmp_path, ikv):
    doc = tmp_path / "doc.txt"
    doc.write_text("The lighthouse keeper counted ships every night. " * 40)
    assert_one_line_error(ikv("plan", "--kv-budget", "2MiB"), 3, "raise --kv-budget")
    assert_one_line_error(ikv("ingest", str(doc), "-s", "b", "--kv-budget", "lots"), 2, "not a size")
    run = ikv("ingest", str(doc), "-s", "b", "--kv-budget", "12MiB", "--json")
    assert run.returncode == 0, run.stderr
    assert "plan for 12.0 MiB" in run.stderr
    show = json.loads(ikv("sessions", "show", "b", "--json").stdout)
    assert show["kv"] != {"type_k": "f16", "type_v": "f16"} and show["n_ctx"] > 682
    # the session keeps its plan; a smaller budget is refused before anything is read
    assert_one_line_error(ikv("ask", "Who counted ships?", "-s", "b", "--kv-budget", "4MiB"), 3,
                          "keeps the window it was made with")
    run = ikv("ask", "Who counted ships?", "-s", "b", "--kv-budget", "12MiB", "-n", "4", "--json")
    assert run.returncode == 0, run.stderr


@pytest.mark.slow
def test_a_new_chat_is_planned_from_the_budget(demo_path, ikv):
    proc = ikv("chat", "--session", "c", "--kv-budget", "12MiB", "--json", "-n", "4", "--temp", "0",
               input="Hello there.\n")
    assert proc.returncode == 0, proc.stderr
    assert "plan for 12.0 MiB" in proc.stderr
    turn = json.loads(proc.stdout.splitlines()[0])
    assert turn["turn"] == 1 and turn["session"] == "c"


@pytest.mark.slow
def test_only_a_new_session_with_a_budget_is_planned(demo_path, ikv_cache):
    from ikv_local.session import OpenOptions, Session

    assert plan_session("fresh", None, None) == SessionShape(2048)
    assert plan_session("fresh", None, None, n_ctx=1024) == SessionShape(1024)
    with Session("old", OpenOptions(create=True, n_ctx=512)):
        pass
    # an existing session keeps the window and types it was made with: nothing is measured
    assert plan_session("old", None, 12 * MIB, n_ctx=1024) == SessionShape(1024)
    shape = plan_session("fresh", None, 12 * MIB)
    assert shape.plan is not None and shape.plan.budget == 12 * MIB
    chosen = shape.plan.chosen
    assert (shape.n_ctx, shape.type_k, shape.type_v) == (chosen.n_ctx, chosen.type_k, chosen.type_v)
    assert shape.type_k != "f16" and shape.n_ctx > 682  # the same plan `ikv ingest` prints
    capped = plan_session("fresh", None, 12 * MIB, n_ctx=1024)
    assert capped.n_ctx == 1024 and capped.plan is not None

