"""`dlcli import-hf` / `export-hf`: small random models built by `transformers` itself (no network), imported with
logit parity, greedy generation identical, exported back bit for bit; dlcli-trained runs loaded by `transformers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest

LINES = ["the keeper of the light walked up the stairs", "a ship came in at night and the sea was calm",
         "she wrote the numbers down one by one", "light and dark, night and day, the tide comes and goes"]
STORY = Path(__file__).resolve().parents[1] / "sample_data" / "story.txt"


def byte_bpe(folder: Path) -> int:
    """A small byte-level BPE tokenizer.json, as GPT-2's and Llama 3's are; returns its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(LINES * 4, trainer)
    tok.save(str(folder / "tokenizer.json"))
    return tok.get_vocab_size()


def hf_model(family: str, folder: Path, shard: bool = False, extra_rows: int = 0):
    """A random 2-layer, width-64 model of `family` saved like a `huggingface-cli download` folder. Norms and
    biases are random too, and weights large (std 0.3, activations of order 1), so a mixed-up one shows
    (GPT-2's tanh GELU against the exact one moves logits by about 1e-2). llama: GQA 4:2, llama3 RoPE scaling, tied head;
    qwen2: GQA 4:2, linear RoPE scaling, q/k/v biases, untied head."""
    folder.mkdir(parents=True, exist_ok=True)
    v = byte_bpe(folder) + extra_rows  # extra_rows: an embedding table padded past the tokenizer, as Qwen2's
    torch.manual_seed(0)
    gqa = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "intermediate_size": 96, "vocab_size": v, "max_position_embeddings": 128, "bos_token_id": 0,
           "eos_token_id": 0, "initializer_range": 0.3}
    if family == "gpt2":
        m = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=v,
                                                                 n_positions=128, bos_token_id=0, eos_token_id=0,
                                                                 initializer_range=0.3))
    elif family == "llama":
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 32}
        m = transformers.LlamaForCausalLM(transformers.LlamaConfig(**gqa, rope_scaling=scaling, rope_theta=500000.0,
                                                                   tie_word_embeddings=True))
    else:
        m = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**gqa, rope_scaling={"rope_type": "linear",
                                                                                        "factor": 2.0},
                                                                   tie_word_embeddings=False))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias") or "norm" in n or ".ln_" in n:
                p.normal_(0, 0.1).add_(1.0 if n.endswith("weight") else 0.0)
    m.save_pretrained(folder, max_shard_size="40KB" if shard else "5GB")
    return m.eval()


def imported(family: str, tmp_path: Path, shard: bool = False):
    from dlcli.hf import load
    from dlcli.hf.config import ImportConfig
    from dlcli.lm.run import open_run

    m = hf_model(family, tmp_path / family, shard)
    s = load.run(ImportConfig(source=str(tmp_path / family), output=str(tmp_path / f"run-{family}")))
    assert s["family"] == family
    return m, open_run(tmp_path / f"run-{family}", "cpu")


def greedy(model, prompt: list[int], n: int) -> list[int]:
    """dlcli's generation step (the KV cache), greedy."""
    from dlcli.lm.generate import forward_next

    ids = list(prompt)
    logits, state = forward_next(model, ids, None, torch.device("cpu"))
    for _ in range(n):
        ids.append(int(logits[0, -1].argmax()))
        logits, state = forward_next(model, ids, state, torch.device("cpu"))
    return ids[len(prompt):]


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_import_gives_the_logits_and_greedy_text_of_transformers(family, tmp_path):
    m, run = imported(family, tmp_path, shard=family == "llama")  # llama: sharded, read through the index
    if family == "llama":
        assert (tmp_path / "llama" / "model.safetensors.index.json").is_file()
    ids = torch.randint(0, run.model.cfg.vocab_size, (2, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = m(ids).logits
        fast, _, _ = run.model(ids)
        reference, _, _ = run.model(ids, reference=True)  # the textbook steps
    assert (fast - want).abs().max() <= 1e-4
    assert (reference - want).abs().max() <= 1e-4
    with torch.no_grad():
        hf = m.generate(ids[:1, :8], do_sample=False, max_new_tokens=40, eos_token_id=None, pad_token_id=0)
    assert greedy(run.model, ids[0, :8].tolist(), 40) == hf[0, 8:].tolist()


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_export_of_an_imported_run_is_bit_for_bit(family, tmp_path):
    from safetensors.torch import load_file

    from dlcli.hf import save
    from dlcli.hf.config import ExportConfig

    m, _ = imported(family, tmp_path)
    save.run(ExportConfig(run=str(tmp_path / f"run-{family}"), output=str(tmp_path / "out")))
    a, b = load_file(tmp_path / family / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(back) is type(m)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["eos_token_id"] == 0  # kept from the source
    ids = torch.randint(0, 300, (1, 30))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, m(ids).logits)


def _trained(cli, tmp_path: Path, level: str, *sets: str) -> Path:
    """A tiny train-transformer run on sample_data/story.txt with a char, word or BPE tokenizer."""
    d = tmp_path / level
    d.mkdir()
    if level == "bpe":
        assert cli("vocab", "train", STORY, "-m", "bpe", "-v", "200", "-o", d / "tok.json", "-q").exit_code == 0
        assert cli("vocab", "encode", STORY, "--raw", "-t", d / "tok.json", "-o", d / "x.ids", "-q").exit_code == 0
    else:
        extra = ["--whole"] if level == "char" else []
        assert cli("preprocess", STORY, "-l", level, *extra, "-o", d / "x.tok", "-q").exit_code == 0
        assert cli("vocab", "build", d / "x.tok", "-o", d / "tok.json", "-q").exit_code == 0
        assert cli("vocab", "encode", d / "x.tok", "-t", d / "tok.json", "-o", d / "x.ids", "-q").exit_code == 0
    r = cli("train-transformer", "-d", d / "x.ids", "-o", d / "run", "--layers", "1", "--heads", "2", "--embd", "16",
            "--block-size", "16", "--max-steps", "3", "--device", "cpu", "--set", "eval_interval=0", "-q",
            *[a for s in sets for a in ("--set", s)])
    assert r.exit_code == 0, r.stderr
    return d / "run"


@pytest.mark.parametrize("level, sets", [("char", []), ("word", ["model.positions=sinusoidal"]),
                                         ("bpe", ["model.tie_weights=false"])])
def test_a_dlcli_trained_run_loads_in_transformers(cli, tmp_path, level, sets):
    from tokenizers import Tokenizer

    from dlcli.lm.run import open_run

    run = _trained(cli, tmp_path, level, *sets)
    r = cli("export-hf", run, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.stderr
    m = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert isinstance(m, transformers.GPT2LMHeadModel)
    tok = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    ids = torch.tensor([tok.encode("the keeper of the light").ids[:16]])
    assert ids.size(1) >= 4
    with torch.no_grad():
        ours, _, _ = open_run(run, "cpu").model(ids)
        assert (m(ids).logits - ours).abs().max() <= 1e-4


def test_export_refuses_what_transformers_has_not(cli, tmp_path):
    run = _trained(cli, tmp_path, "char", "model.bias=false")
    r = cli("export-hf", run, "-o", tmp_path / "out")
    assert r.exit_code != 0 and "bias off has no transformers equivalent" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_generate_evaluate_and_sft_take_an_imported_run(cli, tmp_path):
    m, run = imported("llama", tmp_path)
    prompt = "the keeper"
    r = cli("generate", run.path, "-p", prompt, "-n", "12", "--temperature", "0")
    assert r.exit_code == 0, r.stderr
    ids = torch.tensor([run.tokenizer.encode(prompt).ids])
    with torch.no_grad():
        want = m.generate(ids, do_sample=False, max_new_tokens=12, pad_token_id=0)[0].tolist()
    want = want[: want.index(0, ids.size(1))] if 0 in want[ids.size(1):] else want  # dlcli stops before the end token
    assert r.stdout == run.tokenizer.decode(want) + "\n"
    (tmp_path / "held.txt").write_text("\n".join(LINES) + "\n")
    ev = cli("evaluate", run.path, "--text", tmp_path / "held.txt")
    assert ev.exit_code == 0, ev.stderr
    loss = json.loads(ev.stdout)["loss"]
    assert 5 < loss < 12  # a random model over 300 tokens: ln 300 = 5.7, more for its large random weights
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps({"prompt": a[:10], "completion": a[10:]}) + "\n"
                                                for a in LINES))
    r = cli("rlhf", "sft", run.path, tmp_path / "sft.jsonl", "-o", tmp_path / "sft", "--max-steps", "2", "-b", "2",
            "--device", "cpu", "-q")
    assert r.exit_code == 0, r.stderr
    assert cli("generate", tmp_path / "sft", "-p", prompt, "-n", "4", "--seed", "1").exit_code == 0


def _gpt2_folder(tmp_path: Path) -> Path:
    hf_model("gpt2", tmp_path / "gpt2")
    return tmp_path / "gpt2"


def test_bad_folders_are_one_line_and_leave_no_run(cli, tmp_path):
    from safetensors.torch import load_file, save_file

    src = _gpt2_folder(tmp_path)

    def refused(folder: Path, words: str) -> None:
        r = cli("import-hf", folder, "-o", tmp_path / "run")
        assert r.exit_code != 0 and words in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()

    weights = load_file(src / "model.safetensors")
    del weights["transformer.h.1.mlp.c_fc.bias"]
    save_file(weights, src / "model.safetensors")
    refused(src, "tensor transformer.h.1.mlp.c_fc.bias is missing")
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    refused(src, "pytorch_model.bin: pickled weights are not read")
    hf = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**hf, "architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    refused(src, "architectures BertForMaskedLM is not supported")
    refused(tmp_path / "nowhere", "no such folder")
    r = cli("import-hf", src, "-o", tmp_path / "run", "--set", "model.n_layer=1")
    assert r.exit_code != 0 and "model: comes from the source's config.json and cannot be set" in r.stderr
    assert not (tmp_path / "run").exists()


def test_force_replaces_an_import_and_block_size_cuts_the_context(cli, tmp_path):
    src = _gpt2_folder(tmp_path)
    assert cli("import-hf", src, "-o", "run", "-q").exit_code == 0
    r = cli("import-hf", src, "-o", "run", "-q")
    assert r.exit_code != 0 and "--force" in r.stderr
    r = cli("import-hf", src, "-o", "run", "--block-size", "32", "--force")
    assert r.exit_code == 0, r.stderr
    assert "imported a gpt2 model" in r.stderr and "context 32 tokens" in r.stderr
    from dlcli.lm.run import open_run

    assert open_run("run", "cpu").model.pos_emb.weight.shape == (32, 64)
    assert cli("export-hf", "run", "-o", "out", "-q").exit_code == 0
    r = cli("export-hf", "run", "-o", "out", "-q")
    assert r.exit_code != 0 and "--force" in r.stderr
    assert cli("export-hf", "run", "-o", "out", "-q", "--force").exit_code == 0
    Path("notes").mkdir()
    (Path("notes") / "mine.txt").write_text("x")
    r = cli("export-hf", "run", "-o", "notes", "--force")
    assert r.exit_code != 0 and "not a model folder" in r.stderr and (Path("notes") / "mine.txt").is_file()


def test_a_bf16_model_keeps_its_dtype_through_import_and_export(cli, tmp_path):
    from safetensors.torch import load_file

    from dlcli.lm.run import open_run

    m = hf_model("llama", tmp_path / "llama")
    m.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    (tmp_path / "bf16" / "tokenizer.json").write_bytes((tmp_path / "llama" / "tokenizer.json").read_bytes())
    assert cli("import-hf", tmp_path / "bf16", "-o", "run", "-q").exit_code == 0
    assert load_file("run/model.safetensors")["tok_emb.weight"].dtype == torch.bfloat16
    ids = torch.randint(0, 300, (1, 20))
    fp32 = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype=torch.float32).eval()
    with torch.no_grad():  # dlcli computes in fp32 from the bf16 weights, as transformers does when asked to
        want = fp32(ids).logits
        assert (open_run("run", "cpu").model(ids)[0] - want).abs().max() <= 1e-4
    assert cli("export-hf", "run", "-o", "out", "-q").exit_code == 0
    a, b = load_file(tmp_path / "bf16" / "model.safetensors"), load_file("out/model.safetensors")
    assert sorted(a) == sorted(b) and all(b[k].dtype == torch.bfloat16 and torch.equal(a[k], b[k]) for k in a)


def test_an_embedding_padded_past_the_tokenizer_imports_and_never_samples_the_padding(cli, tmp_path):
    from tokenizers import Tokenizer

    from dlcli.lm.run import open_run

    m = hf_model("qwen2", tmp_path / "qwen2", extra_rows=7)
    assert cli("import-hf", tmp_path / "qwen2", "-o", "run", "-q").exit_code == 0
    run = open_run("run", "cpu")
    assert run.tokenizer.get_vocab_size() == m.config.vocab_size == 307
    assert run.tokenizer.token_to_id("<|dlcli_unused_306|>") == 306
    ids = torch.tensor([run.tokenizer.encode("the keeper").ids])
    with torch.no_grad():  # make a padding row the likeliest next token: generate must pass it by
        top = int(m(ids).logits[0, -1].argmax())
        m.lm_head.weight[303] = m.lm_head.weight[top] * 10
        assert int(m(ids).logits[0, -1].argmax()) == 303
    m.save_pretrained(tmp_path / "qwen2")
    assert cli("import-hf", tmp_path / "qwen2", "-o", "run", "-q", "--force").exit_code == 0
    r = cli("generate", "run", "-p", "the keeper", "-n", "8", "--temperature", "0")
    assert r.exit_code == 0 and "dlcli_unused" not in r.stdout
    assert cli("export-hf", "run", "-o", "out", "-q").exit_code == 0
    original = Tokenizer.from_file(str(tmp_path / "qwen2" / "tokenizer.json"))
    assert Tokenizer.from_file("out/tokenizer.json").get_vocab_size() == original.get_vocab_size() == 300


def test_gpt2_weights_as_the_hub_has_them_import(cli, tmp_path):
    """openai-community/gpt2's model.safetensors: GPT2Model's names (no `transformer.` prefix), no lm_head,
    and the old causal-mask buffers `h.N.attn.bias` beside the weights."""
    from safetensors.torch import load_file, save_file

    from dlcli.lm.run import open_run

    m = hf_model("gpt2", tmp_path / "gpt2")
    w = {k.removeprefix("transformer."): v for k, v in load_file(tmp_path / "gpt2" / "model.safetensors").items()
         if k != "lm_head.weight"}
    w |= {f"h.{i}.attn.bias": torch.ones(1, 1, 128, 128).tril() for i in range(2)}
    save_file(w, tmp_path / "gpt2" / "model.safetensors")
    assert cli("import-hf", tmp_path / "gpt2", "-o", "run", "-q").exit_code == 0
    ids = torch.randint(0, 300, (1, 40))
    with torch.no_grad():
        assert (open_run("run", "cpu").model(ids)[0] - m(ids).logits).abs().max() <= 1e-4
