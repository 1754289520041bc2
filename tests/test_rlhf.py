"""RLHF library: data readers, the losses against hand computation, GAE, and tiny runs of each stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dlcli.errors import InputError
from dlcli.rlhf import data, toytask

HH = [
    {"chosen": "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: about cats?\n\nAssistant: cats are nice.",
     "rejected": "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: about cats?\n\nAssistant: cats are bad."},
    {"chosen": "\n\nHuman: about tea?\n\nAssistant: tea is good.",
     "rejected": "\n\nHuman: about tea?\n\nAssistant: no."},
    {"chosen": "\n\nHuman: rain?\n\nAssistant: rain is fun.",
     "rejected": "\n\nHuman: rain?\n\nAssistant: rain is sad."},
]


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_hh_prompt_is_longest_shared_prefix_ending_in_an_assistant_turn(tmp_path: Path) -> None:
    recs = data.read(write_jsonl(tmp_path / "hh.jsonl", HH), "prefs")
    first = recs.rows[0]
    assert first["prompt"] == "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: about cats?\n\nAssistant:"
    assert (first["chosen"], first["rejected"]) == (" cats are nice.", " cats are bad.")
    # the responses share " rain is " but the prompt stops at the marker
    assert recs.rows[2]["prompt"] == "\n\nHuman: rain?\n\nAssistant:" and recs.rows[2]["chosen"] == " rain is fun."


def test_chat_template_splits_on_the_last_assistant_turn(tmp_path: Path) -> None:
    msgs = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "about cats?"},
            {"role": "assistant", "content": "cats are nice."}]
    recs = data.read(write_jsonl(tmp_path / "chat.jsonl", [{"messages": msgs}]), "sft")
    assert recs.rows[0] == {"prompt": "be kind\n\nHuman: about cats?\n\nAssistant:", "completion": " cats are nice."}


@pytest.mark.parametrize("line, problem", [
    ('{"prompt": "a", "chosen": "b"}', 'line 2: missing key "rejected"'),
    ('{"prompt": "a", "chosen": 3, "rejected": "c"}', 'line 2: "chosen" must be a string, not int'),
    ('{"prompt": "a", "chosen": "b", "rejected": "b"}', "line 2: chosen is identical to rejected"),
    ("{nope", "line 2: not valid JSON"),
    ('["a"]', "line 2: expected a JSON object"),
])
def test_bad_lines_name_the_line_and_skip_bad_leaves_them_out(tmp_path: Path, line: str, problem: str) -> None:
    good = {"prompt": "a", "chosen": "b", "rejected": "c"}
    path = write_jsonl(tmp_path / "p.jsonl", [good, line, good])
    with pytest.raises(InputError, match=problem):
        data.read(path, "prefs")
    recs = data.read(path, "prefs", skip_bad=True)
    assert len(recs.rows) == 2 and recs.lines == [1, 3] and recs.skipped[0][0] == 2


def test_bradley_terry_and_dpo_losses_match_hand_computation() -> None:
    from dlcli.rlhf.dpo import dpo_loss
    from dlcli.rlhf.reward import bradley_terry

    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -log sigmoid(1) = log(1 + e^-1); -log sigmoid(-1) = log(1 + e)
    assert float(bradley_terry(rc, rr)) == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2)
    # beta 0.5: r_c = 0.5 (-3 - -4) = 0.5, r_r = 0.5 (-5 - -4) = -0.5, loss = -log sigmoid(1)
    loss, r_c, r_r = dpo_loss(torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.0]),
                              0.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)))
    assert (float(r_c), float(r_r)) == pytest.approx((0.5, -0.5))


def test_gae_matches_a_hand_computed_example() -> None:
    from dlcli.rlhf.advantage import gae

    # one prompt position (masked out), then three response tokens
    rewards = torch.tensor([[0.0, 0.1, -0.2, 1.0]])
    values = torch.tensor([[9.0, 0.5, 0.4, 0.3]])
    mask = torch.tensor([[False, True, True, True]])
    g, lam = 0.9, 0.5
    d3 = 1.0 - 0.3  # the last token: V after it is 0
    d2 = -0.2 + g * 0.3 - 0.4
    d1 = 0.1 + g * 0.4 - 0.5
    a3, a2 = d3, d2 + g * lam * d3
    a1 = d1 + g * lam * a2
    adv, ret = gae(rewards, values, mask, g, lam)
    assert adv.tolist()[0] == pytest.approx([0.0, a1, a2, a3])
    assert ret.tolist()[0] == pytest.approx([0.0, a1 + 0.5, a2 + 0.4, a3 + 0.3])


def test_toy_rule_scores() -> None:
    assert toytask.score("about cats:", " cats are nice.") == 1.0
    assert toytask.score("about cats:", " dogs are nice.") == 0.5
    assert toytask.score("tell me about cats:", " cats are bad.") == 0.5
    assert toytask.score("about cats:", " cats and dogs are nice, bad.") == 0.0
    pairs = toytask.preference_pairs(50)
    assert all(toytask.score(p["prompt"], p["chosen"]) > toytask.score(p["prompt"], p["rejected"]) for p in pairs)


def test_a_held_ctrl_c_waits_for_the_loop_and_a_second_one_stops_at_once() -> None:
    import os
    import signal

    from dlcli.train.loop import held_interrupts

    reached = []
    with pytest.raises(KeyboardInterrupt), held_interrupts() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        reached.append(stop.pending)  # held: the loop carries on to the end of its step
        os.kill(os.getpid(), signal.SIGINT)  # the second one stops at once
        reached.append("past")
    assert reached == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def two_processes(work):
    """`work(rank, total)` run by two threads that stand for 2 DDP processes: `total` sums a tensor over
    both, as all_reduce does. Returns their results by rank."""
    import threading

    slots: list[torch.Tensor] = [torch.empty(0)] * 2
    meet = threading.Barrier(2)
    results: dict[int, torch.Tensor] = {}

    def total_for(rank: int):
        def total(t: torch.Tensor) -> torch.Tensor:
            slots[rank] = t.clone()
            meet.wait()
            out = slots[0] + slots[1]
            meet.wait()  # both have read before the next call writes
            return out
        return total

    threads = [threading.Thread(target=lambda r=r: results.update({r: work(r, total_for(r))})) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_whitening_over_two_processes_uses_the_statistics_of_the_whole_batch() -> None:
    """Each half of a batch whitened with the statistics summed over 2 processes is the whole batch
    whitened in one process: advantages (masked) and reward-model scores."""
    from dlcli.rlhf.advantage import whiten

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g) * 3 + torch.arange(6.0)[:, None]  # the halves differ in mean
    mask = torch.rand(6, 5, generator=g) > 0.3
    halves = two_processes(lambda r, total: whiten(x[3 * r: 3 * r + 3], mask[3 * r: 3 * r + 3], total=total))
    whole = whiten(x, mask)
    assert torch.allclose(torch.cat([halves[0], halves[1]]), whole, atol=1e-6)
    assert not torch.allclose(whiten(x[:3], mask[:3]), whole[:3], atol=1e-2)  # local statistics would differ
    scores = torch.randn(8, generator=g)
    halves = two_processes(lambda r, total: whiten(scores[4 * r: 4 * r + 4], total=total))
    assert torch.allclose(torch.cat([halves[0], halves[1]]), whiten(scores), atol=1e-6)


def _char_tokenizer(chars: str):
    from dlcli.text.vocabulary import word_level

    return word_level(["<unk>", "<eos>"] + sorted(set(chars)), "<unk>", "char", [])


def test_a_line_longer_than_the_context_is_refused_or_cut_keeping_its_end(tmp_path: Path) -> None:
    from dlcli.rlhf import tokens

    tok = _char_tokenizer("abcdefghijklmnopqrstuvwxyz .:")
    prompt = "".join(chr(97 + i % 26) for i in range(200)) + ":"  # 201 tokens, longer than the context of 64
    rows = [{"prompt": prompt, "chosen": " yes.", "rejected": " no."}, {"prompt": "q:", "chosen": " a", "rejected": " b"}]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    with pytest.raises(InputError, match=r"line 1: 207 tokens are longer than the context of 64; "
                                         r"--truncate keep-end cuts such lines to fit"):
        tokens.encode_records(path, data.read(path, "prefs"), tok, 64, ("chosen", "rejected"), False)
    recs = data.read(path, "prefs")
    enc = tokens.encode_records(path, recs, tok, 64, ("chosen", "rejected"), False, truncate="keep-end")
    assert recs.truncated == [1] and recs.skipped == []
    end = tok.token_to_id("<eos>")
    assert tok.decode(enc[0]["prompt"]).replace(" ", "") == prompt[-58:].replace(" ", "")  # the oldest tokens went
    assert enc[0]["chosen"] == tokens.encode(tok, " yes.") + [end]  # the response is whole
    assert len(enc[0]["prompt"]) + len(enc[0]["chosen"]) == 64
    assert enc[1]["prompt"] == tokens.encode(tok, "q:")  # a line that fits is untouched


def test_keep_end_gives_the_prompt_half_the_context_before_cutting_responses() -> None:
    from dlcli.rlhf.tokens import fit

    long, short = list(range(100)), list(range(10))
    cut = fit({"prompt": long, "completion": list(range(100, 200))}, ("completion",), 64)
    assert cut == {"prompt": long[-32:], "completion": list(range(100, 132))}  # both long: half each
    cut = fit({"prompt": short, "completion": list(range(100, 200))}, ("completion",), 64)
    assert cut == {"prompt": short, "completion": list(range(100, 154))}  # a short prompt stays whole
    assert fit({"prompt": long}, (), 64, room=24) == {"prompt": long[-40:]}  # PPO: room for 24 new tokens
    assert fit({"prompt": long}, (), 24, room=24) is None  # no prompt token would be left
    assert fit({"prompt": long, "completion": short}, ("completion",), 6) is None  # < MIN_ROOM response tokens


def test_truncate_takes_none_or_keep_end_and_old_configs_load_without_it() -> None:
    from dlcli.errors import ConfigError
    from dlcli.rlhf.config import RewardConfig

    assert RewardConfig().truncate == "none"
    with pytest.raises(ConfigError, match="truncate: 'keep-start' is not one of none, keep-end"):
        RewardConfig(data="p.jsonl", output="rm", truncate="keep-start").validate()
