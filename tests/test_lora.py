"""LoRA: the layer (models/lora.py), LoRA runs (lm/lora.py) on `rlhf sft|reward|dpo` and `train-transformer --init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_rlhf_cli import CHARS, FAST, make_base, same_weights, stage_run, write_jsonl

from dlcli.core.rundir import load_tensors
from dlcli.errors import ConfigError, InputError, Interrupted
from dlcli.lm.config import LoRAConfig
from dlcli.models import lora
from dlcli.models.config import GPTConfig
from dlcli.models.gpt import GPT
from dlcli.rlhf import toytask

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture
def toy(tmp_path: Path) -> dict[str, str]:
    return {"base": make_base(tmp_path, CHARS),
            "sft": write_jsonl(tmp_path / "sft.jsonl", toytask.sft_pairs(40)),
            "prefs": write_jsonl(tmp_path / "prefs.jsonl", toytask.preference_pairs(40)),
            "prompts": write_jsonl(tmp_path / "prompts.jsonl", toytask.prompts(20))}


# ------------------------------------------------------------------------------------------------ the layer


def test_lora_linear_starts_as_the_base_layer_and_merges_to_the_same_function() -> None:
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 7)
    x = torch.randn(3, 5, 12)
    want = base(x)
    layer = lora.LoRALinear(base, rank=4, alpha=8)
    assert torch.equal(layer(x), want)  # B = 0: exactly the base layer
    assert layer.weight is base.weight and not layer.weight.requires_grad and layer.lora_A.requires_grad
    with torch.no_grad():
        layer.lora_B.normal_()
    h = layer(x)
    by_hand = x @ base.weight.T + base.bias + (8 / 4) * (x @ layer.lora_A.T) @ layer.lora_B.T  # W x + b + (a/r) B A x
    assert torch.allclose(h, by_hand, atol=1e-5) and not torch.allclose(h, want, atol=1e-3)
    merged = layer.merged()
    assert type(merged) is torch.nn.Linear
    assert (merged(x) - h).abs().max() < 1e-5


def test_inject_freezes_all_but_the_adapters_and_only_they_get_gradients_and_optimizer_state() -> None:
    from dlcli.train.config import OptimConfig
    from dlcli.train.optim import build_optimizer

    torch.manual_seed(0)
    model = GPT(TINY)
    keys = set(model.state_dict())
    names = lora.inject(model, ["attn", "mlp"], rank=2, alpha=4)
    assert names == [f"blocks.{i}.{m}" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]
    adapters = lora.adapter_names(model)
    assert adapters == [f"{n}.lora_{ab}" for n in names for ab in "AB"]
    assert set(model.state_dict()) == keys | set(adapters)  # the base keys unchanged
    opt = build_optimizer(model, OptimConfig(), torch.device("cpu"))
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for n, p in model.named_parameters() if n in adapters}
    ids = torch.randint(0, 11, (2, 8))
    _, loss, _ = model(ids, targets=ids)
    loss.backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == set(adapters)
    nonzero = {n for n in adapters if model.get_parameter(n).grad.abs().sum() > 0}
    assert nonzero == {n for n in adapters if n.endswith("lora_B")}  # A's gradient is B^T (...) = 0 while B = 0
    trainable, total = lora.count(model)
    assert trainable == sum(2 * (i + o) for i, o in [(16, 48), (16, 16), (16, 64), (64, 16)]) * 2 and total > trainable


def test_targets_are_whole_dotted_name_parts_and_nothing_matched_is_one_line() -> None:
    from dlcli.lm.lora import adapt

    assert lora.inject(GPT(TINY), ["mlp.proj"], 2, 4) == ["blocks.0.mlp.proj", "blocks.1.mlp.proj"]
    assert lora.inject(GPT(TINY), ["proj"], 2, 4) == [f"blocks.{i}.{m}.proj" for i in range(2) for m in ("attn", "mlp")]
    assert lora.inject(GPT(TINY), ["q"], 2, 4) == []  # not "qkv": whole parts only
    with pytest.raises(ConfigError, match=r"lora.targets: gate,up match none of the model's linear layers "
                                          r"\(blocks.0.attn.qkv, blocks.0.attn.proj"):
        adapt(GPT(TINY), LoRAConfig(rank=2, targets=["gate", "up"]))


def test_merge_gives_the_plain_model_back_with_the_same_logits() -> None:
    torch.manual_seed(0)
    model = GPT(TINY)
    lora.inject(model, ["attn", "mlp"], 4, 8)
    for n, p in model.named_parameters():
        if n.endswith("lora_B"):
            p.data.normal_(0, 0.1)
    ids = torch.randint(0, 11, (2, 16))
    before = model(ids)[0]
    lora.merge(model)
    assert not any(isinstance(m, lora.LoRALinear) for m in model.modules())
    plain = GPT(TINY)
    plain.load_state_dict(model.state_dict())  # the keys of a plain GPT
    assert (plain(ids)[0] - before).abs().max() < 1e-5


def test_without_adapters_is_the_base_model() -> None:
    torch.manual_seed(0)
    model = GPT(TINY)
    ids = torch.randint(0, 11, (2, 16))
    want = model(ids)[0]
    lora.inject(model, ["attn", "mlp"], 4, 8)
    for n, p in model.named_parameters():
        if n.endswith("lora_B"):
            p.data.normal_(0, 0.1)
    assert torch.equal(lora.without_adapters(model)(ids)[0], want)
    assert not torch.allclose(model(ids)[0], want, atol=1e-3)  # and on again after it


def test_lora_dpo_reference_is_the_base_without_a_copy(toy) -> None:
    """DPO's reference log-probs with LoRA (the policy, adapters off) are those of a copy of the base."""
    from dlcli.train import checkpoint

    for out, kw in (("full", {}), ("lo", {"lora": LoRAConfig(rank=4)})):
        run, cfg = stage_run("dpo", toy, out, max_steps=1, **kw)
        run(cfg)
    a, b = (load_tensors(Path(d) / checkpoint.TENSORS)["extra.reference_logprobs"] for d in ("full", "lo"))
    assert torch.allclose(a, b, atol=1e-5)


def test_config_checks_and_old_configs_load_without_lora() -> None:
    from dlcli.core.config import build_config, from_dict
    from dlcli.lm.config import TrainTransformerConfig
    from dlcli.rlhf.config import DPOConfig, SFTConfig

    assert from_dict(SFTConfig, {"base": "b"}).lora.rank == 0
    cfg = build_config(DPOConfig, sets=["lora.rank=8", "lora.targets=attn.qkv,mlp.fc", "data=p.jsonl"])
    assert cfg.lora.rank == 8 and cfg.lora.targets == ["attn.qkv", "mlp.fc"] and cfg.lora.alpha == 16
    for bad, msg in [({"rank": -1}, "lora.rank"), ({"rank": 4, "alpha": 0}, "lora.alpha"),
                     ({"rank": 4, "dropout": 1.0}, "lora.dropout"), ({"rank": 4, "targets": []}, "lora.targets")]:
        with pytest.raises(ConfigError, match=msg):
            from_dict(LoRAConfig, bad).validate()
    t = TrainTransformerConfig(lora=LoRAConfig(rank=4))
    t.data.train = "x.ids"
    with pytest.raises(ConfigError, match="--init RUN"):
        t.validate()


# ------------------------------------------------------------------------------------------------- LoRA runs


def _adapter_run(toy: dict[str, str], out: str = "sft", **kw):
    from dlcli.rlhf.sft import run

    _, cfg = stage_run("sft", toy, out, **{"lora": LoRAConfig(rank=4), **kw})
    return run(cfg)


def test_sft_with_lora_saves_only_the_adapter_and_loads_back_on_its_base(toy) -> None:
    from dlcli.lm.run import open_run

    s = _adapter_run(toy, "sft", max_steps=3)
    run = Path("sft")
    assert (run / "adapter.safetensors").is_file() and not (run / "model.safetensors").exists()
    adapter = load_tensors(run / "adapter.safetensors")
    assert adapter and all(k.endswith(("lora_A", "lora_B")) for k in adapter)
    assert (run / "adapter.safetensors").stat().st_size < (Path(toy["base"]) / "model.safetensors").stat().st_size / 3
    meta = json.loads((run / "meta.json").read_text())
    assert meta["lora_base"]["path"] == str(Path(toy["base"]).resolve())
    loaded, base = open_run("sft", "cpu"), open_run(toy["base"], "cpu")
    assert not any(isinstance(m, lora.LoRALinear) for m in loaded.model.modules())
    by_hand = open_run(toy["base"], "cpu").model  # the base with the saved adapter, merged by hand
    lora.inject(by_hand, ["attn", "mlp"], 4, 16)
    lora.load_adapter_state(by_hand, adapter)
    ids = torch.randint(1, 20, (2, 12))
    assert torch.allclose(loaded.model(ids)[0], by_hand(ids)[0], atol=1e-5)
    assert not torch.allclose(loaded.model(ids)[0], base.model(ids)[0], atol=1e-4)  # it did learn something
    assert s["steps"] == 3


def test_a_lora_run_needs_its_own_base(toy, tmp_path: Path) -> None:
    import shutil

    from dlcli.lm.run import open_run

    _adapter_run(toy, "sft", max_steps=1)
    shutil.move(toy["base"], tmp_path / "moved")
    with pytest.raises(InputError, match="its base run .* is gone"):
        open_run("sft", "cpu")
    make_base(tmp_path, CHARS)  # another run in the base's place
    meta = json.loads((Path(toy["base"]) / "meta.json").read_text())
    meta["created"] = "2000-01-01T00:00:00+00:00"
    (Path(toy["base"]) / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="was replaced after the adapter was trained"):
        open_run("sft", "cpu")


def test_lora_sft_on_a_pretrained_base_lowers_the_held_out_completion_loss(tmp_path: Path) -> None:
    """The base learns the toy language first (a random base's frozen tied head, 0.02-sized embeddings behind
    a LayerNorm, leaves an adapter almost nothing to move); then LoRA SFT alone lowers the completion loss."""
    from conftest import _char_ids

    from dlcli.lm.config import TrainTransformerConfig
    from dlcli.lm.train import train_transformer
    from dlcli.train.config import OptimConfig

    pairs = toytask.sft_pairs(40)
    (tmp_path / "c.txt").write_text(toytask.corpus(400) + "".join(x["prompt"] + x["completion"] for x in pairs))
    cfg = TrainTransformerConfig(output="base", model=GPTConfig(block_size=96, n_layer=1, n_head=2, n_embd=32),
                                 batch_size=8, max_steps=80, eval_interval=0, device="cpu",
                                 optim=OptimConfig(lr=3e-3, warmup_steps=5))
    cfg.data.train = str(_char_ids(tmp_path / "c.txt", tmp_path, "c", []))
    train_transformer(cfg)
    toy = {"base": "base", "sft": write_jsonl(tmp_path / "sft.jsonl", pairs)}
    s = _adapter_run(toy, "sft", max_steps=30, batch_size=16, eval_interval=0, optim=OptimConfig(lr=1e-2),
                     lora=LoRAConfig(rank=8))
    assert s["val_loss"] < 0.9 * s["val_loss_before"]


@pytest.mark.parametrize("stage", ["sft", "reward", "dpo", "ppo"])
def test_lora_resume_continues_exactly(toy, tmp_path: Path, stage: str) -> None:
    """Ctrl-C at step 3 of 4 (adapter dropout on, so the random state must come back), then --resume: the
    adapter an uninterrupted run saves, bit for bit; the checkpoint holds the trainable tensors only."""
    from dlcli.train import checkpoint

    kw = {"max_steps": 4, "eval_interval": 2, "lora": LoRAConfig(rank=4, dropout=0.1)}
    if stage == "ppo":
        run, cfg = stage_run("reward", toy, "rm", max_steps=1)
        run(cfg)
        toy = {**toy, "rm": "rm"}
    run, cfg = stage_run(stage, toy, "whole", **kw)
    run(cfg)

    def stop_at_3(tick) -> None:
        if tick.done == 3:
            raise KeyboardInterrupt

    run, cfg = stage_run(stage, toy, "cut", **kw)
    with pytest.raises(Interrupted, match="interrupted at step 3"):
        run(cfg, on_progress=stop_at_3)
    model_keys = [k for k in load_tensors(Path("cut") / checkpoint.TENSORS) if k.startswith("model.")]
    assert model_keys
    assert all(k.endswith(("lora_A", "lora_B")) or k.startswith(("model.head.", "model.value."))
               for k in model_keys)
    assert any(k.startswith("model.head.") for k in model_keys) == (stage == "reward")  # the head trains too
    assert any(k.startswith("model.value.") for k in model_keys) == (stage == "ppo")  # and PPO's value head
    run, cfg = stage_run(stage, toy, "cut", **kw)
    assert run(cfg, resume=True)["steps"] == 4
    same_weights("whole/adapter.safetensors", "cut/adapter.safetensors")
    if stage == "ppo":  # the reference is the policy with its adapters off: no KL before the first update
        first = next(r for r in map(json.loads, Path("whole/metrics.jsonl").read_text().splitlines()) if "kl" in r)
        assert first["step"] == 1 and first["kl"] == 0.0 and not Path("whole/model.safetensors").exists()


def test_merge_flag_writes_full_weights_that_need_no_base(cli, toy, tmp_path: Path) -> None:
    import shutil

    from dlcli.lm.run import open_run

    r = cli("rlhf", "sft", toy["base"], toy["sft"], "-o", "sft", "--max-steps", "2", "--lora-rank", "4", "--merge",
            *FAST)
    assert r.exit_code == 0, r.output
    ids = torch.randint(1, 20, (2, 12))
    adapted = open_run("sft", "cpu").model(ids)[0]
    (Path("sft") / "adapter.safetensors").unlink()
    shutil.rmtree(toy["base"])  # the merged run stands alone
    assert torch.allclose(open_run("sft", "cpu").model(ids)[0], adapted, atol=1e-5)


def test_cli_lora_on_sft_reward_dpo_then_ppo_generate_and_score(cli, toy) -> None:
    lo = ["--lora-rank", "4", "--lora-alpha", "8", "--max-steps", "2", *FAST]
    r = cli("rlhf", "sft", toy["base"], toy["sft"], "-o", "sft", "--lora-targets", "attn.qkv,mlp.fc",
            *[a for a in lo if a != "-q"])
    assert r.exit_code == 0, r.output
    assert "LoRA rank 4: 576 of " in r.stderr  # A and B of qkv (16 + 48) x 4 and of fc (16 + 64) x 4
    assert sorted({k.split(".", 2)[2] for k in load_tensors("sft/adapter.safetensors")}) == [
        "attn.qkv.lora_A", "attn.qkv.lora_B", "mlp.fc.lora_A", "mlp.fc.lora_B"]
    r = cli("rlhf", "dpo", "sft", toy["prefs"], "-o", "dpo", *lo)  # on the LoRA SFT run: its base is that run
    assert r.exit_code == 0, r.output
    assert json.loads(Path("dpo/meta.json").read_text())["lora_base"]["path"] == str(Path("sft").resolve())
    r = cli("rlhf", "reward", toy["base"], toy["prefs"], "-o", "rm", *lo)
    assert r.exit_code == 0, r.output
    assert {"head.weight", "head.bias"} <= set(load_tensors("rm/adapter.safetensors"))
    assert not Path("rm/model.safetensors").exists()
    r = cli("rlhf", "score", "rm", toy["sft"])
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 40
    r = cli("rlhf", "ppo", "dpo", "rm", "--prompts", toy["prompts"], "-o", "ppo", "--max-new-tokens", "4",
            *[a for a in lo if a != "-q"])
    assert r.exit_code == 0, r.output
    assert "LoRA rank 4: " in r.stderr and Path("ppo/adapter.safetensors").is_file()
    assert not Path("ppo/model.safetensors").exists()
    r = cli("generate", "ppo", "-p", "about cats:", "-n", "5", "--seed", "1", "--device", "cpu")
    assert r.exit_code == 0 and r.stdout.startswith("about cats:"), r.output
    r = cli("generate", "dpo", "-p", "about cats:", "-n", "5", "--seed", "1", "--device", "cpu")
    assert r.exit_code == 0 and r.stdout.startswith("about cats:"), r.output
    cfg = cli("rlhf", "dpo", "sft", toy["prefs"], "--lora-rank", "8", "--set", "lora.dropout=0.05", "--print-config")
    assert "lora:\n  rank: 8\n  alpha: 16.0\n  dropout: 0.05\n  targets:\n  - attn\n  - mlp\n  merge: false" in cfg.stdout


def test_train_transformer_init_with_lora(cli, tmp_path: Path) -> None:
    from conftest import _char_ids

    text = tmp_path / "t.txt"
    text.write_text(toytask.corpus(300), encoding="utf-8")
    ids = _char_ids(text, tmp_path, "t", [])
    tiny = ["--layers", "1", "--heads", "2", "--embd", "16", "--block-size", "16", "-b", "4", "--device", "cpu", "-q"]
    assert cli("train-transformer", "-d", ids, "-o", "base", "--max-steps", "2", *tiny).exit_code == 0
    r = cli("train-transformer", "-d", ids, "-o", "ft", "--init", "base", "--lora-rank", "2", "--max-steps", "3",
            "-b", "4", "--device", "cpu", "--set", "eval_interval=0")
    assert r.exit_code == 0, r.output
    assert "parameters, 512 of them trained" in r.stderr  # rank 2 x (in + out): qkv 64, proj 32, fc 80, mlp.proj 80
    assert Path("ft/adapter.safetensors").is_file() and not Path("ft/model.safetensors").exists()
    r = cli("evaluate", "ft", "--ids", ids, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["loss"] > 0
    r = cli("train-transformer", "-d", ids, "-o", "ft", "--init", "base", "--lora-rank", "2", "--max-steps", "5",
            "-b", "4", "--device", "cpu", "-q", "--set", "eval_interval=0", "--resume")
    assert r.exit_code == 0, r.output
    assert json.loads(Path("ft/metrics.jsonl").read_text().splitlines()[-1])["step"] == 5
    other = tmp_path / "o.txt"
    other.write_text("xyz " * 100, encoding="utf-8")
    (tmp_path / "o").mkdir()
    oids = _char_ids(other, tmp_path / "o", "o", [])
    r = cli("train-transformer", "-d", oids, "-o", "bad", "--init", "base", "--lora-rank", "2", "--device", "cpu")
    assert r.exit_code != 0 and "tokenizer differs from the one of base" in r.stderr and not Path("bad").exists()


def test_train_transformer_init_starts_from_the_run_and_refuses_what_does_not_fit(cli, tmp_path: Path) -> None:
    from conftest import _char_ids

    text = tmp_path / "t.txt"
    text.write_text(toytask.corpus(200), encoding="utf-8")
    ids = _char_ids(text, tmp_path, "t", [])
    tiny = ["-b", "4", "--device", "cpu", "-q", "--set", "eval_interval=0"]
    assert cli("train-transformer", "-d", ids, "-o", "base", "--max-steps", "2", "--layers", "1", "--heads", "2",
               "--embd", "16", "--block-size", "16", *tiny).exit_code == 0
    # a step of lr 1e-9: the weights stay the run's (the model flags are the run's too: --layers 3 is overridden)
    r = cli("train-transformer", "-d", ids, "-o", "same", "--init", "base", "--lr", "1e-9", "--max-steps", "1",
            "--layers", "3", *tiny)
    assert r.exit_code == 0, r.output
    assert "warning: model.n_layer: ignored; the model's shape is base's (--init)" in r.stderr
    # ids encoded with the run directory as the tokenizer (`vocab encode -t base`) train too
    Path("t.tok").write_text(toytask.corpus(200), encoding="utf-8")
    assert cli("vocab", "encode", "t.tok", "-t", "base", "-o", "t2.ids", "-q").exit_code == 0
    r = cli("train-transformer", "-d", "t2.ids", "-o", "dir", "--init", "base", "--max-steps", "1", *tiny)
    assert r.exit_code == 0, r.output
    a, b = load_tensors("base/model.safetensors"), load_tensors("same/model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    assert "model:\n  vocab_size: " in Path("same/config.yaml").read_text() and "n_layer: 1" in Path(
        "same/config.yaml").read_text()
    r = cli("train-transformer", "-d", ids, "-o", "m", "--init", "base", "--objective", "mlm", *tiny)
    assert r.exit_code != 0 and "objective: mlm does not fit base, a causal language model" in r.stderr
    assert cli("train-rnn", "-d", ids, "-o", "rnn", "--max-steps", "1", "--hidden", "8", "--layers", "1",
               "--seq-len", "8", *tiny).exit_code == 0
    r = cli("train-transformer", "-d", ids, "-o", "x", "--init", "rnn", *tiny)
    assert r.exit_code != 0 and "rnn: --init needs a Transformer run" in r.stderr and not Path("x").exists()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_lora_sft_on_an_imported_model_lowers_the_held_out_loss(cli, tmp_path: Path, family: str) -> None:
    """A random GPT-2 / Llama-style model built by `transformers` (weights of std 0.3, so it has something to
    say), imported with `dlcli import-hf`, fine-tuned with LoRA on every attention and MLP projection (Llama's
    gate/up/down included): the held-out completion loss drops; generate and DPO take the LoRA run."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("dlcli.hf")  # import-hf (issue 19, items 1-4)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from dlcli.rlhf.config import SFTConfig
    from dlcli.rlhf.sft import run
    from dlcli.train.config import OptimConfig

    lines = ["the keeper of the light walked up the stairs", "a ship came in at night and the sea was calm",
             "she wrote the numbers down one by one", "light and dark, night and day, the tide comes and goes"]
    folder = tmp_path / "hf"
    folder.mkdir()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(folder / "tokenizer.json"))
    v = tok.get_vocab_size()
    torch.manual_seed(0)
    if family == "gpt2":
        m = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=v,
                                                                 n_positions=64, bos_token_id=0, eos_token_id=0,
                                                                 initializer_range=0.3))
    else:
        m = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            vocab_size=v, max_position_embeddings=64, bos_token_id=0, eos_token_id=0, initializer_range=0.3,
            tie_word_embeddings=True))
    m.save_pretrained(folder)
    r = cli("import-hf", folder, "-o", "base", "-q")
    assert r.exit_code == 0, r.output
    pairs = [{"prompt": a[:k], "completion": a[k:]} for a in lines for k in range(8, 28, 2)]
    write_jsonl(tmp_path / "sft.jsonl", pairs)
    s = run(SFTConfig(base="base", data=str(tmp_path / "sft.jsonl"), output="sft", max_steps=30, batch_size=8,
                      eval_interval=0, device="cpu", val_fraction=0.2, optim=OptimConfig(lr=1e-2),
                      lora=LoRAConfig(rank=8)))
    assert s["val_loss"] < 0.8 * s["val_loss_before"] and s["trainable"] < s["params"] / 5
    assert not Path("sft/model.safetensors").exists()
    if family == "llama":
        adapted = {k.split(".", 2)[2].rsplit(".", 1)[0] for k in load_tensors("sft/adapter.safetensors")}
        assert adapted == {"attn.qkv", "attn.proj", "mlp.gate", "mlp.fc", "mlp.proj"}
    r = cli("generate", "sft", "-p", "the keeper", "-n", "4", "--seed", "1", "--device", "cpu")
    assert r.exit_code == 0 and r.stdout.startswith("the keeper"), r.output
    r = cli("export-hf", "sft", "-o", "out", "-q")  # the adapter merged: transformers gives dlcli's logits
    assert r.exit_code == 0, r.output
    from dlcli.lm.run import open_run

    back = transformers.AutoModelForCausalLM.from_pretrained("out").eval()
    ids = torch.tensor([tok.encode("the keeper of the light").ids])
    with torch.no_grad():
        assert (back(ids).logits - open_run("sft", "cpu").model(ids)[0]).abs().max() < 1e-4
    prefs = [{"prompt": a[:10], "chosen": a[10:], "rejected": b[10:]} for a, b in zip(lines, lines[1:] + lines[:1])]
    write_jsonl(tmp_path / "prefs.jsonl", prefs * 3)
    r = cli("rlhf", "dpo", "sft", tmp_path / "prefs.jsonl", "-o", "dpo", "--lora-rank", "4", "--max-steps", "2", *FAST)
    assert r.exit_code == 0, r.output


def test_train_transformer_lora_resume_gives_the_losses_and_adapter_of_one_run(cli, tmp_path: Path) -> None:
    from conftest import _char_ids

    from dlcli.lm.config import TrainTransformerConfig
    from dlcli.lm.train import train_transformer

    text = tmp_path / "t.txt"
    text.write_text(toytask.corpus(200), encoding="utf-8")
    ids = _char_ids(text, tmp_path, "t", [])
    assert cli("train-transformer", "-d", ids, "-o", "base", "--max-steps", "2", "--layers", "1", "--heads", "2",
               "--embd", "16", "--block-size", "16", "-b", "4", "--device", "cpu", "-q").exit_code == 0

    def cfg(out: str) -> TrainTransformerConfig:
        c = TrainTransformerConfig(output=out, init="base", batch_size=4, max_steps=5, eval_interval=2,
                                   log_interval=1, device="cpu", lora=LoRAConfig(rank=2, dropout=0.1))
        c.data.train = str(ids)
        return c

    def stop_at_3(tick) -> None:
        if tick.done == 3:
            raise KeyboardInterrupt

    train_transformer(cfg("whole"))
    with pytest.raises(Interrupted, match="interrupted at step 3"):
        train_transformer(cfg("cut"), on_progress=stop_at_3)
    train_transformer(cfg("cut"), resume=True)
    same_weights("whole/adapter.safetensors", "cut/adapter.safetensors")
    losses = [[r["loss"] for r in map(json.loads, Path(d, "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for d in ("whole", "cut")]
    assert len(losses[0]) == 5 and losses[0] == losses[1]


def test_lora_merge_writes_the_full_weights_of_an_lm_run_and_a_reward_model(cli, toy) -> None:
    import shutil

    from dlcli.lm.run import open_run
    from dlcli.rlhf.reward import open_rm

    lo = ["--lora-rank", "4", "--max-steps", "2", *FAST]
    assert cli("rlhf", "sft", toy["base"], toy["sft"], "-o", "sft", *lo).exit_code == 0
    assert cli("rlhf", "reward", toy["base"], toy["prefs"], "-o", "rm", *lo).exit_code == 0
    ids = torch.randint(1, 20, (2, 12))
    lengths = torch.tensor([12, 7])
    want = open_run("sft", "cpu").model(ids)[0], open_rm("rm", "cpu").model(ids, lengths)
    for run in ("sft", "rm"):
        r = cli("lora", "merge", run)
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == f"{run}/model.safetensors" and "merged the adapter of" in r.stderr
    shutil.rmtree(toy["base"])  # the merged runs stand alone
    assert torch.allclose(open_run("sft", "cpu").model(ids)[0], want[0], atol=1e-5)
    assert torch.allclose(open_rm("rm", "cpu").model(ids, lengths), want[1], atol=1e-5)
    r = cli("lora", "merge", "sft")
    assert r.exit_code != 0 and "sft: already merged (it has model.safetensors)" in r.stderr
    r = cli("lora", "merge", toy["sft"].rsplit("/", 1)[0])
    assert r.exit_code != 0 and "not a LoRA run (no adapter.safetensors)" in r.stderr
