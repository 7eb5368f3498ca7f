from dataclasses import replace

import pytest

from ikv_local.errors import IkvError
from ikv_local.facts import LayerFacts, ModelFacts, RopeFacts
from ikv_local.support import check, verdict, why_not

BASE = ModelFacts(
    path="m.gguf",
    arch="llama",
    name="m",
    description="",
    file_bytes=1,
    n_params=1,
    n_layer=1,
    n_embd=64,
    n_head=1,
    n_vocab=10,
    n_ctx_train=4096,
    rope_type="norm",
    rope_scaling="linear",
    n_swa=0,
    can_shift=True,
    recurrent=False,
    hybrid=False,
    has_chat_template=False,
    layers=(LayerFacts(0, 1, 64, 64, False, 10000.0, 1.0, 64),),
)


def test_a_shifting_roped_model_keeps_memory_and_says_how():
    assert why_not(BASE) is None
    check(BASE)
    assert verdict(BASE) == "yes: keys de-roped (norm rope), the KV cache shifts"
    llama3 = replace(
        BASE, rope=RopeFacts(freq_factors=(1.0,) * 32, factors_from="rope_freqs.weight")
    )
    assert "with rope_freqs" in verdict(llama3)
    assert "YaRN" in verdict(replace(BASE, rope_scaling="yarn", rope=RopeFacts(ext_factor=1.0)))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"recurrent": True}, "recurrent"),
        ({"hybrid": True}, "recurrent"),
        (
            {"rope_type": "mrope", "can_shift": False},
            "'mrope'",
        ),  # the rope says more than the shift
        ({"can_shift": False}, "cannot shift"),
        ({"rope_type": "none"}, "no rotary"),
        ({"rope_scaling": "su"}, "scaling 'su'"),
    ],
)
def test_what_ikv_cannot_keep_memory_for_is_one_line(change, reason):
    facts = replace(BASE, **change)
    assert reason in why_not(facts)
    assert verdict(facts).startswith("no: ")
    with pytest.raises(IkvError, match="ikv cannot keep memory for m: ") as exc:
        check(facts)
    assert "\n" not in str(exc.value)
