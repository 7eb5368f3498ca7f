import pytest

from ikv_local.errors import IkvError
from ikv_local.prompt import ChatFormat, Message, format_chat

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


def _conversation(fmt, system, turns):
    return fmt.system(system) + "".join(fmt.user(u) + a + fmt.assistant_after for u, a in turns)


@pytest.mark.parametrize("template", ["chatml", "llama3", "phi3", "zephyr"])
def test_chat_format_turn_by_turn_matches_the_whole_rendering(template):
    fmt = ChatFormat.from_template(template)
    whole = format_chat(CHAT[:3], template, add_generation_prompt=False)
    assert _conversation(fmt, "Be brief.", [("Hi", "Hello!")]) == whole
    # the next user turn ends with the cue for the assistant
    cued = format_chat(CHAT, template)
    assert whole + fmt.user("What is 2+2?") == cued


def test_chat_format_folds_the_system_prompt_into_a_user_turn_without_a_system_role():
    fmt = ChatFormat.from_template("gemma")
    assert fmt.system("Be brief.") == "<start_of_turn>user\nBe brief.<end_of_turn>\n"
    assert fmt.user("Hi") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert fmt.assistant_after == "<end_of_turn>\n"


def test_plain_chat_format():
    fmt = ChatFormat.plain()
    text = _conversation(fmt, "Be brief.", [("Hi", " Hello!")]) + fmt.user("What is 2+2?")
    assert text == "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: What is 2+2?\nAssistant:"
    assert fmt.system("  ") == "" and fmt.stops == ("\nUser:",)
