"""A toy task whose "human" is a program: the data of `make rlhf-demo` and the bench's true reward.

The rule. A prompt asks about a topic, e.g. ``about cats:`` or ``tell me about tea:``; an answer is a short
sentence such as `` cats are nice.``. A person prefers answers that

  * stay on topic: they name the prompt's topic and no other topic (+0.5), and
  * are positive: they use a positive word and no negative word (+0.5).

`score(prompt, answer)` is that sum, in {0, 0.5, 1}; the best achievable is 1.
The supervised answers are on topic half the time and positive half the time,
so a model fine-tuned on them scores about 0.5; the preference pairs are two
such answers to one prompt with different scores, the higher one chosen.
"""

from __future__ import annotations

import random
import re

TOPICS = ("cats", "dogs", "tea", "rain", "books", "music", "bikes", "trees")
POSITIVE = ("good", "nice", "great", "fun")
NEGATIVE = ("bad", "dull", "sad", "awful")
BEST = 1.0

_WORD = re.compile(r"[a-z]+")


TEMPLATES = ("about {}:", "tell me about {}:", "on {}:")  # training prompts
HELD_OUT_TEMPLATE = "what about {}:"  # evaluation prompts: a wording no training prompt uses


def prompt_for(topic: str, template: str = TEMPLATES[0]) -> str:
    return template.format(topic)


def topic_of(prompt: str) -> str | None:
    words = _WORD.findall(prompt.lower())
    return next((w for w in words if w in TOPICS), None)


def score(prompt: str, answer: str) -> float:
    """The true reward of `answer` to `prompt` under the rule above."""
    topic = topic_of(prompt)
    words = set(_WORD.findall(answer.lower()))
    on_topic = topic is not None and topic in words and not (words & (set(TOPICS) - {topic}))
    positive = bool(words & set(POSITIVE)) and not words & set(NEGATIVE)
    return 0.5 * on_topic + 0.5 * positive


def answer(rng: random.Random, topic: str, p_on_topic: float, p_positive: float) -> str:
    subject = topic if rng.random() < p_on_topic else rng.choice([t for t in TOPICS if t != topic])
    adj = rng.choice(POSITIVE if rng.random() < p_positive else NEGATIVE)
    return f" {subject} are {adj}."


def corpus(n: int, seed: int = 0) -> str:
    """Pretraining text: prompts followed by random answers (the language, not the preferences)."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        lines.append(prompt_for(t, rng.choice(TEMPLATES + (HELD_OUT_TEMPLATE,))) + answer(rng, t, 1 / len(TOPICS), 0.5))
    return "\n".join(lines) + "\n"


def sft_pairs(n: int, seed: int = 1) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        out.append({"prompt": prompt_for(t, rng.choice(TEMPLATES)), "completion": answer(rng, t, 0.5, 0.5)})
    return out


def preference_pairs(n: int, seed: int = 2) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    while len(out) < n:
        t = rng.choice(TOPICS)
        p = prompt_for(t, rng.choice(TEMPLATES))
        a, b = answer(rng, t, 0.5, 0.5), answer(rng, t, 0.5, 0.5)
        if score(p, a) != score(p, b):
            chosen, rejected = (a, b) if score(p, a) > score(p, b) else (b, a)
            out.append({"prompt": p, "chosen": chosen, "rejected": rejected})
    return out


def prompts(n: int, seed: int = 3) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"prompt": prompt_for(rng.choice(TOPICS), rng.choice(TEMPLATES))} for _ in range(n)]


def held_out_prompts() -> list[dict[str, str]]:
    """Every topic in the held-out wording: the bench's evaluation prompts."""
    return [{"prompt": prompt_for(t, HELD_OUT_TEMPLATE)} for t in TOPICS]
