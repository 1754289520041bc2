"""CLIP (models/clip.py, hf/clip.py): parity with transformers' CLIPModel built with random weights, read
from a Hugging Face folder and from an OpenCLIP-layout one; windows of patch tokens; preprocessing;
`dlcli clip classify`; bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcli.errors import InputError
from dlcli.hf.clip import load_clip
from dlcli.models.clip import Preprocess, logits, to_pixels, tokenize

transformers = pytest.importorskip("transformers")

WORDS = ["a", "photo", "of", "cat", "dog", "car", "the", "red", "blue", "scratch"]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TINY = {"text": {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 16},
        "vision": {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32,
                       "patch_size": 8},
        "projection_dim": 24}
B16 = {"text": {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                    "num_attention_heads": 8, "max_position_embeddings": 77},
       "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "image_size": 224, "patch_size": 16},
       "projection_dim": 512}
CAPTIONS = ["a photo of a cat", "a photo of a dog", "the red car", "a blue scratch"]


def make_tokenizer(vocab_size: int):
    """A word-level stand-in for CLIP's BPE: the same start and end tokens, the end token the largest id."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[unk]": 0} | {w: i + 1 for i, w in enumerate(WORDS)}
    vocab |= {f"w{i}": i for i in range(len(vocab), 60)}
    vocab |= {BOS: vocab_size - 2, EOS: vocab_size - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[unk]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A {EOS}", special_tokens=[
        (BOS, vocab_size - 2), (EOS, vocab_size - 1)])
    return tok


def make_hf(folder: Path, shape: dict, act: str = "quick_gelu", eos_token_id: int | None = None, seed: int = 0):
    """A random CLIPModel saved as a Hugging Face folder with a tokenizer.json; returns the model."""
    v = shape["text"]["vocab_size"]
    cfg = transformers.CLIPConfig(
        text_config=shape["text"] | {"hidden_act": act, "eos_token_id": v - 1 if eos_token_id is None else eos_token_id,
                                     "bos_token_id": v - 2, "pad_token_id": 0},
        vision_config=shape["vision"] | {"hidden_act": act}, projection_dim=shape["projection_dim"])
    torch.manual_seed(seed)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # random LayerNorms and positions too, so a swapped tensor shows
        for name, p in model.named_parameters():
            if "norm" in name or "position" in name or "class_embedding" in name:
                p.add_(torch.randn_like(p) * 0.1)
        model.logit_scale.fill_(2.0)
    model.save_pretrained(folder)
    make_tokenizer(v).save(str(folder / "tokenizer.json"))
    return model


def their_features(model, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(input_ids=ids, attention_mask=(ids > 0).long())
    img = getattr(img, "pooler_output", img)  # transformers 5 returns an output object, 4 the tensor
    txt = getattr(txt, "pooler_output", txt)
    return img, txt


def check_parity(folder: Path, model, n_images: int = 3) -> tuple[float, float]:
    ours, tok, _prep = load_clip(folder)
    s = ours.config.image_size
    torch.manual_seed(1)
    pixels = torch.randn(n_images, 3, s, s)
    ids = tokenize(tok, CAPTIONS, ours.config)
    assert ids[0, 0].item() == ours.config.vocab_size - 2 and (ids == ours.config.vocab_size - 1).sum() == len(CAPTIONS)
    img, txt = their_features(model, pixels, ids)
    with torch.no_grad():
        my_img, my_txt = ours.encode_image(pixels), ours.encode_text(ids)
        mine = logits(ours, my_img, my_txt)
        theirs = model(input_ids=ids, pixel_values=pixels, attention_mask=(ids > 0).long()).logits_per_image
    torch.testing.assert_close(my_img, img, atol=1e-4, rtol=0)
    torch.testing.assert_close(my_txt, txt, atol=1e-4, rtol=0)
    torch.testing.assert_close(mine, theirs, atol=1e-3, rtol=0)
    assert torch.equal(mine.argmax(-1), theirs.argmax(-1))
    return float((my_img - img).abs().max()), float((my_txt - txt).abs().max())


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_parity_with_transformers_tiny(tmp_path: Path, act: str) -> None:
    model = make_hf(tmp_path, TINY, act=act)
    check_parity(tmp_path, model)


def test_parity_legacy_eos_reads_the_largest_id(tmp_path: Path) -> None:
    model = make_hf(tmp_path, TINY, eos_token_id=2)  # configs older than transformers #24773
    ours, _, _ = load_clip(tmp_path)
    assert ours.config.eos_id == -1
    check_parity(tmp_path, model)


@pytest.mark.slow
def test_parity_with_transformers_vit_b16(tmp_path: Path) -> None:
    model = make_hf(tmp_path, B16)
    img, txt = check_parity(tmp_path, model, n_images=2)
    print(f"ViT-B/16 shape: image max |diff| {img:.2e}, text {txt:.2e}")


# OpenCLIP's names (open_clip/model.py, transformer.py), written here from its source independently of
# hf/clip.py's table: HF CLIPModel tensors -> an OpenCLIP state dict.
def to_openclip(sd: dict[str, torch.Tensor], n_vision: int, n_text: int) -> dict[str, torch.Tensor]:
    out = {}
    for tower, theirs, n in (("vision_model.", "visual.transformer.resblocks.", n_vision),
                             ("text_model.", "transformer.resblocks.", n_text)):
        for i in range(n):
            h, o = f"{tower}encoder.layers.{i}.", f"{theirs}{i}."
            out[o + "attn.in_proj_weight"] = torch.cat([sd[f"{h}self_attn.{x}_proj.weight"] for x in "qkv"])
            out[o + "attn.in_proj_bias"] = torch.cat([sd[f"{h}self_attn.{x}_proj.bias"] for x in "qkv"])
            for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                for w in ("weight", "bias"):
                    out[f"{o}{a}.{w}"] = sd[f"{h}{b}.{w}"]
    v, t = "vision_model.", "text_model."
    out |= {"visual.conv1.weight": sd[v + "embeddings.patch_embedding.weight"],
            "visual.class_embedding": sd[v + "embeddings.class_embedding"],
            "visual.positional_embedding": sd[v + "embeddings.position_embedding.weight"],
            "visual.proj": sd["visual_projection.weight"].t().contiguous(),
            "token_embedding.weight": sd[t + "embeddings.token_embedding.weight"],
            "positional_embedding": sd[t + "embeddings.position_embedding.weight"],
            "text_projection": sd["text_projection.weight"].t().contiguous(),
            "logit_scale": sd["logit_scale"]}
    for a, b in (("visual.ln_pre", v + "pre_layrnorm"), ("visual.ln_post", v + "post_layernorm"),
                 ("ln_final", t + "final_layer_norm")):
        for w in ("weight", "bias"):
            out[f"{a}.{w}"] = sd[f"{b}.{w}"]
    return {k: x.contiguous() for k, x in out.items()}


def make_openclip(folder: Path, model, wrapped: bool = True) -> None:
    from safetensors.torch import save_file

    c = model.config
    v, t = c.vision_config, c.text_config
    model_cfg = {"embed_dim": c.projection_dim, "quick_gelu": v.hidden_act == "quick_gelu",
                 "vision_cfg": {"image_size": v.image_size, "layers": v.num_hidden_layers, "width": v.hidden_size,
                                "head_width": v.hidden_size // v.num_attention_heads, "patch_size": v.patch_size,
                                "mlp_ratio": v.intermediate_size / v.hidden_size},
                 "text_cfg": {"context_length": t.max_position_embeddings, "vocab_size": t.vocab_size,
                              "width": t.hidden_size, "heads": t.num_attention_heads, "layers": t.num_hidden_layers,
                              "mlp_ratio": t.intermediate_size / t.hidden_size}}
    data = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    folder.mkdir(exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(data if wrapped else model_cfg))
    sd = to_openclip(model.state_dict(), v.num_hidden_layers, t.num_hidden_layers)
    save_file(sd | {"attn_mask": torch.zeros(2, 2)}, str(folder / "open_clip_model.safetensors"))
    make_tokenizer(t.vocab_size).save(str(folder / "tokenizer.json"))


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_openclip_layout_round_trip(tmp_path: Path, act: str) -> None:
    model = make_hf(tmp_path / "hf", TINY, act=act)
    make_openclip(tmp_path / "oc", model)
    check_parity(tmp_path / "oc", model)
    _, _, prep = load_clip(tmp_path / "oc")
    assert prep == Preprocess(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_openclip_bare_config(tmp_path: Path) -> None:
    model = make_hf(tmp_path / "hf", TINY)
    make_openclip(tmp_path / "oc", model, wrapped=False)
    ours, _, prep = load_clip(tmp_path / "oc")
    assert ours.config.vision.act == "quick_gelu" and ours.config.eos_id == -1 and prep.image_size == 32


# --- windows of patch tokens ------------------------------------------------------------------------------


def test_tokens_and_windows(tmp_path: Path) -> None:
    make_hf(tmp_path, TINY)
    ours, _, _ = load_clip(tmp_path)
    torch.manual_seed(2)
    pixels = torch.randn(2, 3, 32, 32)
    g = ours.config.grid
    with torch.no_grad():
        cls, patches = ours.image_tokens(pixels)
        assert cls.shape == (2, 48) and patches.shape == (2, g * g, 48)
        torch.testing.assert_close(ours.project_image(cls), ours.encode_image(pixels))
        everything = torch.arange(g * g).unsqueeze(0)  # one window of all the patches = the whole image
        torch.testing.assert_close(ours.encode_image_windows(pixels, everything)[:, 0], ours.encode_image(pixels))
        # a 2x2 window at the top left: the class token and patches 0, 1, g, g+1, each at its own position
        win = torch.tensor([[0, 1, g, g + 1], [g + 2, g + 3, 2 * g + 2, 2 * g + 3]])
        got = ours.encode_image_windows(pixels, win, chunk=1)
        assert got.shape == (2, 2, 24)
        tokens = ours.visual.embed(pixels)
        keep = torch.cat([torch.zeros(1, dtype=torch.long), win[1] + 1])
        want = ours.project_image(ours.visual.run(tokens[:, keep])[:, 0])
        torch.testing.assert_close(got[:, 1], want)
        assert not torch.allclose(got[:, 0], got[:, 1])


def test_to_pixels_resizes_the_short_side_and_crops_the_centre() -> None:
    from PIL import Image

    a = np.zeros((40, 80, 3), np.uint8)
    a[:, 20:60] = 255  # a white centre square 40 wide: the crop keeps exactly it
    x = to_pixels([Image.fromarray(a)], Preprocess(20, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    assert x.shape == (1, 3, 20, 20)
    assert x[0, :, :, 2:-2].min().item() > 0.95  # (1 - 0.5) / 0.5 = 1 inside
    grey = to_pixels([Image.new("L", (10, 30), 128)], Preprocess(8))  # grey -> RGB, tall image
    assert grey.shape == (1, 3, 8, 8)
    torch.testing.assert_close(grey[0, :, 0, 0], (128 / 255 - torch.tensor(Preprocess().mean)) /
                               torch.tensor(Preprocess().std))


def test_tokenize_truncates_keeping_the_end_token(tmp_path: Path) -> None:
    make_hf(tmp_path, TINY)
    ours, tok, _ = load_clip(tmp_path)
    ids = tokenize(tok, ["a " * 40, "cat"], ours.config)
    assert ids.shape == (2, 16) and ids[0, -1].item() == 63 and ids[1].tolist()[:3] == [62, 4, 63]
    assert ids[1, 3:].eq(0).all()


def test_bpe_tokenizer_from_the_merges_file(tmp_path: Path) -> None:
    """OpenAI's vocabulary layout: 256 byte symbols, the same with </w>, one per merge, then the two specials.
    (Checked against open_clip 3.3's own tokenizer with the real merges file: identical ids.)"""
    import gzip

    from dlcli.hf.clip import BPE_VOCAB, load_tokenizer
    from dlcli.models.clip import CLIPConfig

    (tmp_path / BPE_VOCAB).write_bytes(gzip.compress(b"#version: 0.2\nc a\nca t</w>\n"))
    tok = load_tokenizer(tmp_path / "tokenizer.json", CLIPConfig(vocab_size=516))  # no tokenizer.json: built
    # "a" is byte symbol 64 ("!" is 0), "a</w>" 256 + 64 = 320 as in CLIP; "cat</w>" the second merge, 513
    assert tok.encode("a cat").ids == [514, 320, 513, 515]
    assert tok.encode("  A\tCAT!").ids == [514, 320, 513, 256, 515]  # whitespace runs, lowercase, "!</w>"
    assert tok.encode("cab").ids == [514, 512, 256 + ord("b") - ord("!"), 515]  # "ca" merged, then "b</w>"
    with pytest.raises(InputError, match="516 tokens, but the model has 64"):
        load_tokenizer(tmp_path / "tokenizer.json", CLIPConfig(vocab_size=64))
    (tmp_path / BPE_VOCAB).write_bytes(b"plain text")
    with pytest.raises(InputError, match="not a gzipped BPE merges file"):
        load_tokenizer(tmp_path / "tokenizer.json", CLIPConfig())


# --- bad input ---------------------------------------------------------------------------------------------


def test_bad_folders_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        load_clip(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a CLIP folder"):
        load_clip(tmp_path / "empty")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(InputError, match="GPT2LMHeadModel is not a CLIP model"):
        load_clip(gpt)
    hf = tmp_path / "hf"
    make_hf(hf, TINY)
    (hf / "tokenizer.json").unlink()
    with pytest.raises(InputError, match=r"tokenizer.json: not found"):
        load_clip(hf)
    (hf / "model.safetensors").rename(hf / "pytorch_model.bin")
    with pytest.raises(InputError, match="pickled weights are not read"):
        load_clip(hf)
    (hf / "pytorch_model.bin").unlink()
    with pytest.raises(InputError, match="no model.safetensors"):
        load_clip(hf)


def test_other_architecture_tensors_and_options_are_one_line(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model = make_hf(tmp_path / "hf", TINY)
    oc = tmp_path / "oc"
    make_openclip(oc, model)
    sd = load_file(str(oc / "open_clip_model.safetensors"))
    save_file(sd | {"logit_bias": torch.zeros(())}, str(oc / "open_clip_model.safetensors"))  # SigLIP's
    with pytest.raises(InputError, match="tensor logit_bias has no place"):
        load_clip(oc)
    save_file({k: v for k, v in sd.items() if k != "ln_final.bias"}, str(oc / "open_clip_model.safetensors"))
    with pytest.raises(InputError, match="tensor ln_final.bias is missing"):
        load_clip(oc)
    cfg = json.loads((oc / "open_clip_config.json").read_text())
    cfg["model_cfg"]["vision_cfg"]["timm_model_name"] = "eva02"
    (oc / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="timm_model_name is not supported"):
        load_clip(oc)
    cfg["model_cfg"]["vision_cfg"].pop("timm_model_name")
    cfg["model_cfg"]["vision_cfg"]["width"] = 96
    (oc / "open_clip_config.json").write_text(json.dumps(cfg))
    save_file(sd, str(oc / "open_clip_model.safetensors"))
    with pytest.raises(InputError, match=r"visual.patch.weight has shape \(48, 3, 8, 8\), the config implies \(96, 3, 8, 8\)"):
        load_clip(oc)
    (oc / "open_clip_model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(InputError, match="damaged or not a safetensors file"):
        load_clip(oc)


# --- dlcli clip classify -----------------------------------------------------------------------------------


def _images(folder: Path) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i, size in enumerate([(40, 32), (32, 50), (64, 64)]):
        p = folder / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_classify_table_and_json(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    model = make_hf(tmp_path / "m", TINY)
    monkeypatch.chdir(tmp_path)  # short names, so the table's columns fit
    paths = [p.relative_to(tmp_path) for p in _images(tmp_path)]
    labels = ["a photo of a cat", "a photo of a dog", "the red car"]
    r = cli("clip", "classify", *paths, "-m", "m", "--labels", *labels, "--json")
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["image"] for row in rows] == [str(p) for p in paths]
    ours, tok, prep = load_clip(tmp_path / "m")
    ids = tokenize(tok, labels, ours.config)
    pixels = to_pixels([Image.open(p) for p in paths], prep)
    with torch.no_grad():  # transformers' own probabilities for the same pixels and ids
        want = model(input_ids=ids, pixel_values=pixels).logits_per_image.softmax(-1)
    for row, w in zip(rows, want, strict=True):
        got = [row["probabilities"][lab] for lab in labels]
        assert got == pytest.approx(w.tolist(), abs=1e-4)
        assert row["label"] == labels[int(w.argmax())] and row["probability"] == pytest.approx(float(w.max()), abs=1e-4)
    table = cli("clip", "classify", *paths, "-m", "m", "--labels", *labels, "--batch-size", "2")
    assert table.exit_code == 0, table.stderr
    for p, row in zip(paths, rows, strict=True):
        line = next(x for x in table.stdout.splitlines() if p.name in x)
        assert row["label"] in line and f"{row['probability']:.3f}" in line
    assert "3 images, 3 labels" in table.stdout


def test_classify_bad_input_is_one_line(cli, tmp_path: Path) -> None:
    make_hf(tmp_path / "m", TINY)
    good = _images(tmp_path)[0]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cases = [((good, "-m", tmp_path / "m", "--labels", "a cat"), "two or more captions"),
             ((tmp_path / "broken.jpg", "-m", tmp_path / "m", "--labels", "a cat", "a dog"), "broken.jpg: not an image"),
             ((tmp_path / "gone.png", "-m", tmp_path / "m", "--labels", "a cat", "a dog"), "gone.png: not found"),
             ((good, "-m", tmp_path, "--labels", "a cat", "a dog"), "not a CLIP folder")]
    for args, msg in cases:
        r = cli("clip", "classify", *args)
        assert r.exit_code != 0 and msg in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
