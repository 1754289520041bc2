"""JSONL inputs of the RLHF stages, checked line by line.

Supervised pairs (`sft`):
    {"prompt": "...", "completion": "..."}
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   (the last one is the assistant's)
Preference pairs (`reward`, `dpo`):
    {"prompt": "...", "chosen": "...", "rejected": "..."}
    {"chosen": "<whole dialogue>", "rejected": "<whole dialogue>"}   (the Anthropic HH-RLHF layout)
Prompts (`ppo`):
    {"prompt": "..."}  (or {"messages": [...]} ending with a user turn)

The chat template is the HH-RLHF layout, so both forms meet in one text:
    a system message as it is, then "\\n\\nHuman: <user>" and "\\n\\nAssistant: <assistant>" turns.
A conversation's prompt is every turn before the last assistant one plus "\\n\\nAssistant:", its
completion " <content>". In an HH pair the prompt is the longest shared prefix of the two dialogues
that ends with an "\\n\\nAssistant:" marker; the rest of each is its response.

A bad line (not JSON, a missing key, a wrong type, chosen identical to rejected) is an `InputError`
naming the file and line, unless `skip_bad` is set: then it is counted and left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.core.io import check_text_file
from dlcli.errors import InputError

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
ROLES = {"user": HUMAN, "human": HUMAN, "assistant": ASSISTANT}


class BadLine(ValueError):
    """What is wrong with one line (the reader adds the file and line number)."""


@dataclass
class Records:
    rows: list[dict[str, str]]
    lines: list[int]  # the line number of each row
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, problem) of lines left out
    truncated: list[int] = field(default_factory=list)  # lines cut to the context (--truncate keep-end)


def _text(obj: dict[str, Any], key: str) -> str:
    if key not in obj:
        raise BadLine(f'missing key "{key}"')
    v = obj[key]
    if not isinstance(v, str):
        raise BadLine(f'"{key}" must be a string, not {type(v).__name__}')
    return v


def render_chat(messages: Any) -> str:
    """Messages -> text in the HH layout (the template above)."""
    if not isinstance(messages, list) or not messages:
        raise BadLine('"messages" must be a non-empty list')
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadLine(f'messages[{i}] must be {{"role": str, "content": str}}')
        role = m["role"].lower()
        if role == "system":
            if i:
                raise BadLine(f"messages[{i}]: a system message may only come first")
            parts.append(m["content"])
        elif role in ROLES:
            parts.append(f"{ROLES[role]} {m['content']}")
        else:
            raise BadLine(f"messages[{i}]: role '{m['role']}' is not one of system, user, assistant")
    return "".join(parts)


def split_chat(messages: Any) -> tuple[str, str]:
    """A conversation ending with the assistant -> (prompt, completion)."""
    text = render_chat(messages)
    if messages[-1]["role"].lower() != "assistant":
        raise BadLine("the last message must be the assistant's (it is the completion)")
    prompt = render_chat(messages[:-1]) + ASSISTANT if len(messages) > 1 else ASSISTANT
    return prompt, text[len(prompt):]


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Two whole HH dialogues -> (prompt, chosen response, rejected response)."""
    n = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n)  # the last marker wholly inside the shared prefix
    if cut < 0:
        raise BadLine('the two dialogues share no prefix ending in an "\\n\\nAssistant:" turn')
    cut += len(ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def parse_sft(obj: dict[str, Any]) -> dict[str, str]:
    if "messages" in obj:
        prompt, completion = split_chat(obj["messages"])
    else:
        prompt, completion = _text(obj, "prompt"), _text(obj, "completion")
    if not completion:
        raise BadLine("the completion is empty")
    return {"prompt": prompt, "completion": completion}


def parse_pref(obj: dict[str, Any]) -> dict[str, str]:
    chosen, rejected = _text(obj, "chosen"), _text(obj, "rejected")
    if chosen == rejected:
        raise BadLine("chosen is identical to rejected (the pair says nothing)")
    if "prompt" in obj:
        prompt = _text(obj, "prompt")
    else:
        prompt, chosen, rejected = split_hh(chosen, rejected)
    if not chosen or not rejected:
        raise BadLine("an empty chosen or rejected response")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def parse_prompt(obj: dict[str, Any]) -> dict[str, str]:
    if "messages" in obj:
        return {"prompt": render_chat(obj["messages"]) + ASSISTANT}
    return {"prompt": _text(obj, "prompt")}


PARSERS = {"sft": parse_sft, "prefs": parse_pref, "prompts": parse_prompt}


def read(path: str | Path, kind: str, skip_bad: bool = False) -> Records:
    """Read a JSONL file of `kind` (sft, prefs, prompts); one bad line is an error unless `skip_bad`."""
    parse = PARSERS[kind]
    check_text_file(path, "JSONL")
    rows, lines, skipped = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise BadLine(f"not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise BadLine(f"expected a JSON object, got {type(obj).__name__}")
                rows.append(parse(obj))
                lines.append(n)
            except BadLine as e:
                if not skip_bad:
                    raise InputError(f"{path}: line {n}: {e} (--skip-bad leaves such lines out)") from None
                skipped.append((n, str(e)))
    if not rows:
        raise InputError(f"{path}: no usable lines" + (f" ({len(skipped)} bad ones skipped)" if skipped else ""))
    return Records(rows, lines, skipped)


def bad_line(path: str | Path, line: int, problem: str) -> InputError:
    """The error for a line that parsed but cannot be used (too long, unknown characters)."""
    return InputError(f"{path}: line {line}: {problem} (--skip-bad leaves such lines out)")
