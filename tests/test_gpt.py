"""The GPT model and `train-transformer`, on tiny sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlcli.models.config import GPTConfig
from dlcli.models.gpt import GPT, attend_reference


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{"vocab_size": 13, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 8, **kw})).eval()


def test_reference_attention_equals_fused_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4) for _ in range(3))
    ref, weights = attend_reference(q, k, v, causal=True)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(ref, fused, atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3, 7))
    assert (weights.triu(1) == 0).all()  # no weight on the future


def test_model_reference_path_equals_fast_path():
    m = tiny()
    idx = torch.randint(0, 13, (2, 10))
    fast, _, _ = m(idx)
    slow, _, _ = m(idx, reference=True)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert len(m.attention_weights(idx)) == 2


def test_scores_are_scaled_by_sqrt_dk():
    q = torch.ones(1, 1, 2, 64)
    k = torch.ones(1, 1, 2, 64)
    v = torch.eye(2)[None, None]
    _, w = attend_reference(q, k * torch.tensor([[0.0], [8.0 / 64]]), v, causal=False)
    # scores 0 and 8/8 = 1 after dividing by sqrt(64) = 8: softmax([0, 1])
    assert torch.allclose(w[0, 0, 0], torch.softmax(torch.tensor([0.0, 1.0]), 0))


def test_causal_past_logits_ignore_future_tokens():
    m = tiny()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[1, 2, 3, 9, 9, 9]])
    la, _, _ = m(a)
    lb, _, _ = m(b)
    assert torch.allclose(la[:, :3], lb[:, :3], atol=1e-6)
    assert not torch.allclose(la[:, 3:], lb[:, 3:], atol=1e-4)


LLAMA = {"positions": "rope", "norm": "rms", "mlp": "swiglu", "bias": False, "n_kv_head": 1, "n_inner": 12,
         "rope_scaling": "llama3", "rope_factor": 4.0, "rope_original_max": 8}  # the options import-hf uses


@pytest.mark.parametrize("options", [{}, LLAMA, {**LLAMA, "qkv_bias": True, "rope_scaling": "linear", "n_kv_head": 2},
                                     {"mlp": "gelu_tanh", "n_inner": 20, "tie_weights": False}],
                         ids=["gpt", "llama", "qwen2", "gpt2"])
def test_family_options_fast_path_equals_reference(options):
    m = tiny(**options)
    idx = torch.randint(0, 13, (2, 10))
    fast, _, _ = m(idx)
    slow, _, _ = m(idx, reference=True)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert all(w.shape == (2, 2, 10, 10) for w in m.attention_weights(idx))


def test_rope_attention_depends_on_relative_position_only():
    m = tiny(**LLAMA)
    from dlcli.models.gpt import rotate

    x = torch.randn(1, 1, 6, 4)
    a = m.blocks[0].attn
    rope = m._embed(torch.zeros(1, 6, dtype=torch.long), 0)[1]
    later = m._embed(torch.zeros(1, 6, dtype=torch.long), 5)[1]
    q, k = x, x.flip(2)
    scores = rotate(q, rope) @ rotate(k, rope).transpose(-2, -1)
    shifted = rotate(q, later) @ rotate(k, later).transpose(-2, -1)
    assert torch.allclose(scores, shifted, atol=1e-5)  # q_m . k_n depends on m - n alone
    assert a.n_kv_head == 1 and a.qkv.out_features == (2 + 2 * 1) * 4


def test_old_configs_build_the_same_model():
    """Every new option defaults to dlcli's own GPT: same parameter names and shapes, same function."""
    from dlcli.core.config import from_dict

    old = {"vocab_size": 13, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 8, "dropout": 0.0, "bias": True,
           "positions": "learned", "tie_weights": True, "causal": True}  # a config.yaml from before the options
    m = GPT(from_dict(GPTConfig, old))
    assert sorted(m.state_dict()) == sorted(tiny().state_dict())
    assert not any("gate" in n for n in m.state_dict())


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_kv_cache_gives_the_same_logits(positions):
    m = tiny(positions=positions, **({"n_kv_head": 1} if positions == "rope" else {}))
    idx = torch.randint(0, 13, (1, 12))
    full, _, _ = m(idx)
    logits, _, cache = m(idx[:, :5])
    steps = [logits[:, -1]]
    for t in range(5, 12):
        logits, _, cache = m(idx[:, t:t + 1], cache)
        steps.append(logits[:, -1])
    assert torch.allclose(torch.stack(steps[:-1], 1), full[:, 4:11], atol=1e-5)


def test_weight_tying_and_block_size_limit():
    m = tiny()
    assert m.head.weight is m.tok_emb.weight
    with pytest.raises(ValueError, match="longer than block_size"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_train_generate_evaluate_resume(cli, tm_ids):
    from dlcli.core.rundir import load_tensors

    args = ["-d", tm_ids, "--layers", "2", "--heads", "2", "--embd", "32", "--block-size", "32", "--lr", "3e-3",
            "--max-steps", "120", "--device", "cpu", "--set", "eval_interval=0", "--set", "optim.warmup_steps=10",
            "--set", "checkpoint_interval=60", "-q"]
    r = cli("train-transformer", *args, "-o", "full")
    assert r.exit_code == 0, r.stderr
    import json

    rows = [json.loads(x) for x in Path("full/metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in rows if "loss" in x]
    assert losses[0] > 3.0 and losses[-1] < 2.6  # it learns
    g1 = cli("generate", "full", "-p", "the time", "-n", "80", "--seed", "3")  # beyond block_size: window slides
    g2 = cli("generate", "full", "-p", "the time", "-n", "80", "--seed", "3")
    assert g1.exit_code == 0, g1.stderr
    assert g1.stdout == g2.stdout and len(g1.stdout) == len("the time") + 80 + 1
    ev = json.loads(cli("evaluate", "full", "--ids", tm_ids).stdout)
    assert ev["bits_per_char"] > 0 and ev["tokens"] > 170_000
    # gradient accumulation: 2 x 6 sequences per step trains like 12 at once (same data order, same result)

    def stop(tick):
        if tick.done >= 60:
            raise KeyboardInterrupt

    from dlcli.core.config import build_config
    from dlcli.errors import Interrupted
    from dlcli.lm.config import TrainTransformerConfig
    from dlcli.lm.train import train_transformer

    sets = [f"data.train={tm_ids}", "output=cut", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
            "model.block_size=32", "optim.lr=3e-3", "max_steps=120", "device=cpu", "eval_interval=0",
            "optim.warmup_steps=10", "checkpoint_interval=60"]
    with pytest.raises(Interrupted):
        train_transformer(build_config(TrainTransformerConfig, None, sets), on_progress=stop)
    train_transformer(build_config(TrainTransformerConfig, None, sets), resume=True)
    a, b = load_tensors("full/model.safetensors"), load_tensors("cut/model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_heads_must_divide_width(cli):
    r = cli("train-transformer", "-d", "x.ids", "--heads", "3", "--embd", "32")
    assert r.exit_code == 2 and "model.n_head: 3 heads do not divide model.n_embd 32" in r.stderr


def test_mask_tokens_80_10_10():
    from dlcli.lm.mlm import IGNORE, mask_tokens

    g = torch.Generator().manual_seed(0)
    x = torch.randint(2, 50, (200, 100))
    inp, tgt = mask_tokens(x, mask_id=1, vocab_size=50, generator=g)
    chosen = tgt != IGNORE
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    assert (tgt[chosen] == x[chosen]).all()
    masked = (inp == 1) & chosen
    kept = (inp == x) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.02
    assert 0.08 < kept.sum().item() / chosen.sum().item() < 0.13  # 10% kept, plus random picks that hit x
    assert (inp[~chosen] == x[~chosen]).all()


def test_encoder_is_bidirectional():
    m = tiny(causal=False)
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[1, 2, 3, 9, 9, 9]])
    assert not torch.allclose(m(a)[0][:, :3], m(b)[0][:, :3], atol=1e-4)  # early positions see later tokens
    fast, _, _ = m(a)
    slow, _, _ = m(a, reference=True)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_masked_lm_beats_the_majority_baseline(cli, tm_ids):
    import json

    tm_tok = tm_ids.parent / "tm.tok"  # the d2l-normalised characters, as one string
    assert cli("vocab", "build", tm_tok, "-o", "tok.json", "-s", "<unk>", "-s", "<mask>", "-q").exit_code == 0
    assert cli("vocab", "encode", tm_tok, "-t", "tok.json", "-o", "tm.ids", "-q").exit_code == 0
    r = cli("train-transformer", "-d", "tm.ids", "-o", "mlm", "--objective", "mlm", "--layers", "2", "--heads", "2",
            "--embd", "32", "--block-size", "32", "--batch-size", "16", "--lr", "5e-3", "--max-steps", "200",
            "--device", "cpu", "--set", "eval_interval=0", "-q")
    assert r.exit_code == 0, r.stderr
    ev = json.loads(cli("evaluate", "mlm", "--ids", "tm.ids").stdout)
    assert ev["objective"] == "mlm" and ev["masked_tokens"] > 20_000
    assert ev["masked_accuracy"] > ev["majority_accuracy"] + 0.03  # context tells it which letter is missing
    g = cli("generate", "mlm", "-p", "the")
    assert g.exit_code != 0 and "masked-LM run" in g.stderr
    # without a <mask> token in the vocabulary (tm_ids has <unk> alone), MLM is refused with a clear message
    r = cli("train-transformer", "-d", tm_ids, "-o", "x", "--objective", "mlm", "--max-steps", "1", "-q")
    assert r.exit_code != 0 and "needs a <mask> token" in r.stderr


@pytest.mark.parametrize("tie", [True, False])
def test_generation_head_gives_the_same_logits(tie):
    from dlcli.lm.generate import RowMajorHead, for_generation

    m = tiny(tie_weights=tie)
    idx = torch.randint(0, 13, (1, 9))
    with torch.no_grad():
        want, _, _ = m(idx)
        for_generation(m, torch.device("cpu"))
        got, _, _ = m(idx)
    assert isinstance(m.head, RowMajorHead) and m.head.weight_t.shape == (8, 13)
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("tie", [True, False])
def test_a_tied_head_is_copied_for_generation_only_under_the_memory_limit(tie, monkeypatch):
    from dlcli.lm import generate

    monkeypatch.setattr(generate, "HEAD_COPY_LIMIT", 8 * 13 * 4 - 1)  # one byte short of the head's copy
    m = tiny(tie_weights=tie)
    generate.for_generation(m, torch.device("cpu"))
    # untied: the copy replaces the head (no memory added); tied: the embedding stays the only copy
    assert isinstance(m.head, generate.RowMajorHead) is not tie


@pytest.mark.parametrize(("prompt", "ends"), [("the time traveller ", "r "), ("The Time,  ", "e "),
                                              ("the time traveller", "er"), ("  the", "he")])
def test_a_prompts_trailing_space_survives_a_stripping_normaliser(prompt, ends):
    """d2l's normaliser strips each line; a prompt that ends between words must still end with the space."""
    from types import SimpleNamespace

    from dlcli.lm.generate import encode_prompt
    from dlcli.text.vocabulary import word_level

    tok = word_level([" ", *"abcdefghijklmnopqrstuvwxyz"], None, "char", ["d2l"])
    ids = encode_prompt(SimpleNamespace(tokenizer=tok), prompt, strict=True, warn=print)
    assert "".join(tok.id_to_token(i) for i in ids)[-2:] == ends
