"""Turn chat messages into the text a model expects.

With a chat template in the GGUF we use llama.cpp's built-in renderer (it recognises the
common templates), falling back to rendering the Jinja template itself. Without one (the demo
model has none) we write a plain completion prompt that base models continue naturally.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp

from ikv_local.errors import IkvError


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


PLAIN_NAMES = {"system": "", "user": "User", "assistant": "Assistant"}


def plain_prompt(messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """System text first, then `User: ...` / `Assistant: ...` lines."""
    parts: list[str] = []
    for m in messages:
        if m.role == "system":
            parts.append(m.content.strip() + "\n")
        else:
            parts.append(f"{PLAIN_NAMES.get(m.role, m.role.title())}: {m.content.strip()}")
    if add_generation_prompt:
        parts.append("Assistant:")
    return "\n".join(parts)


def _builtin(template: str, messages: Sequence[Message], add_generation_prompt: bool) -> str | None:
    keep = [(m.role.encode(), m.content.encode()) for m in messages]
    chat = (llama_cpp.llama_chat_message * len(keep))()
    for item, (role, content) in zip(chat, keep):
        item.role, item.content = role, content
    size = sum(len(c) + 64 for _, c in keep) + 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(
            template.encode(), chat, len(keep), add_generation_prompt, buf, size
        )
        if n < 0:
            return None  # llama.cpp does not know this template
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n + 1
    return None


def _jinja(template: str, messages: Sequence[Message], add_generation_prompt: bool,
           bos: str, eos: str) -> str:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos,
                                    add_generation_prompt=add_generation_prompt)
    try:
        result = formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
    except Exception as exc:  # a template is code from the model file: any failure is its own
        raise IkvError(f"the model's chat template failed: {exc}") from exc
    return result.prompt


def format_chat(
    messages: Sequence[Message],
    template: str | None,
    *,
    add_generation_prompt: bool = True,
    bos: str = "",
    eos: str = "",
) -> str:
    if not template:
        return plain_prompt(messages, add_generation_prompt)
    text = _builtin(template, messages, add_generation_prompt)
    if text is None:
        text = _jinja(template, messages, add_generation_prompt, bos, eos)
    return text


_SYS, _USER, _ASSISTANT = "IKVSYSTEMMARK", "IKVUSERMARK", "IKVASSISTANTMARK"


@dataclass(frozen=True)
class ChatFormat:
    """A conversation's text one turn at a time, so each turn is appended to the window as
    the whole conversation would have been rendered."""

    system_before: str
    system_after: str
    user_before: str
    user_after: str  # through the cue for the assistant
    assistant_after: str  # closes the assistant's turn
    stops: tuple[str, ...]  # where an answer ends besides end-of-generation

    def system(self, text: str) -> str:
        return f"{self.system_before}{text.strip()}{self.system_after}" if text.strip() else ""

    def user(self, text: str) -> str:
        return f"{self.user_before}{text.strip()}{self.user_after}"

    @classmethod
    def plain(cls) -> ChatFormat:
        return cls("", "\n", "\nUser: ", "\nAssistant:", "", ("\nUser:",))

    @classmethod
    def from_template(cls, template: str | None, *, bos: str = "", eos: str = "") -> ChatFormat:
        """Cut the template's renderings of marker messages into the pieces around a turn."""
        if not template:
            return cls.plain()

        def render(messages: list[Message], gen: bool) -> str:
            text = format_chat(messages, template, add_generation_prompt=gen, bos=bos, eos=eos)
            return text[len(bos):] if bos and text.startswith(bos) else text

        user_before, user_end = render([Message("user", _USER)], False).split(_USER, 1)
        cued = render([Message("user", _USER)], True).split(_USER, 1)[1]
        both = render([Message("user", _USER), Message("assistant", _ASSISTANT)], False)
        assistant_after = both.split(_ASSISTANT, 1)[1]
        system = render([Message("system", _SYS)], False)
        if _SYS in system:
            system_before, system_after = system.split(_SYS, 1)
        else:  # templates without a system role fold it into a user turn
            system_before, system_after = user_before, user_end
        return cls(system_before, system_after, user_before, cued, assistant_after, ())
