import pytest

from ikv_local.errors import IkvError
from ikv_local.prompt import Message, format_chat

CHAT = [
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello!"),
    Message("user", "What is 2+2?"),
]


def test_plain_prompt_when_the_model_has_no_template():
    text = format_chat(CHAT, None)
    assert text == "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: What is 2+2?\nAssistant:"
    assert not format_chat(CHAT, None, add_generation_prompt=False).endswith("Assistant:")


def test_llama_cpp_builtin_template():
    text = format_chat(CHAT, "chatml")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_jinja_fallback_for_templates_llama_cpp_does_not_know():
    template = (
        "{{ bos_token }}{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[ASSISTANT]{% endif %}"
    )
    text = format_chat(CHAT, template, bos="<s>")
    assert text.startswith("<s>[SYSTEM] Be brief.\n[USER] Hi\n")
    assert text.endswith("[ASSISTANT]")


def test_a_broken_template_is_one_clear_error():
    with pytest.raises(IkvError, match="chat template failed"):
        format_chat(CHAT, "{{ raise_exception('no system role') }}")
