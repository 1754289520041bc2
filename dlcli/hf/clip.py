"""CLIP weights from a local folder -> dlcli's CLIP (models/clip.py), its tokenizer and its preprocessing.

Two layouts are read, safetensors only (memory-mapped; pickles are refused, loading one runs code):

    Hugging Face (e.g. `huggingface-cli download openai/clip-vit-base-patch16`):
        config.json              model_type "clip" (CLIPModel): text_config, vision_config, projection_dim
        model.safetensors        CLIPModel's tensors (or shards named by model.safetensors.index.json)
        tokenizer.json           the fast tokenizer (CLIP's byte-level BPE)
        preprocessor_config.json image_mean, image_std (optional; OpenAI's values otherwise)

    OpenCLIP (e.g. `huggingface-cli download timm/vit_base_patch16_plus_240.laion400m_e31`):
        open_clip_config.json    {"model_cfg": {...}, "preprocess_cfg": {...}}, or the bare model config
                                 (open_clip's model_configs/<name>.json: embed_dim, vision_cfg, text_cfg)
        open_clip_model.safetensors (or model.safetensors)
        tokenizer.json           OpenCLIP folders ship none: copy openai/clip-vit-base-patch16's (OpenCLIP's
                                 default tokenizer is the same BPE vocabulary, 49408 tokens), or put
                                 bpe_simple_vocab_16e6.txt.gz (in open_clip's package) there instead

Only the ViT image tower with a class token and the causal text tower read at the end token are
computed; any other option (a timm or Hugging Face tower, attention pooling, layer scale, ...) or a
tensor the model has no place for is one error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlcli.errors import InputError
from dlcli.hf.load import Weights, read_json, tensor_names, weight_files
from dlcli.models.clip import ACTIVATIONS, CLIP, OPENAI_MEAN, OPENAI_STD, CLIPConfig, Preprocess, TowerConfig

OPENCLIP_CONFIG = "open_clip_config.json"
OPENCLIP_WEIGHTS = "open_clip_model.safetensors"
_HF_ACT = {"quick_gelu": "quick_gelu", "gelu": "gelu"}
BPE_VOCAB = "bpe_simple_vocab_16e6.txt.gz"  # the merges OpenAI's CLIP and OpenCLIP ship (open_clip/ in its package)
_IGNORED = ("position_ids", "attn_mask")  # buffers some files carry; recomputed, never read


@dataclass(frozen=True)
class Pair:
    """One dlcli tensor and the tensors it is made of: one, transposed (OpenCLIP's projections are stored
    (in, out) and applied as x @ P), or q, k and v stacked into `qkv`."""

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False


def load_clip(folder: str | Path, dtype: torch.dtype = torch.float32) -> tuple[CLIP, Any, Preprocess]:
    """A CLIP folder -> (the model in eval mode, its tokenizers.Tokenizer, its Preprocess)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (give a CLIP model folder: Hugging Face or OpenCLIP, "
                         "with safetensors weights)")
    if (folder / "config.json").is_file():
        cfg, prep = hf_config(read_json(folder / "config.json"), folder)
        files = weight_files(folder)
        pairs = hf_pairs(cfg)
    elif (folder / OPENCLIP_CONFIG).is_file():
        cfg, prep = openclip_config(read_json(folder / OPENCLIP_CONFIG), folder / OPENCLIP_CONFIG)
        files = _openclip_files(folder)
        pairs = openclip_pairs(cfg)
    else:
        raise InputError(f"{folder}: not a CLIP folder (no config.json of a Hugging Face CLIPModel, no "
                         f"{OPENCLIP_CONFIG} of an OpenCLIP model)")
    tokenizer = load_tokenizer(folder / "tokenizer.json", cfg)
    model = build(cfg, read_tensors(files, pairs), folder, dtype)
    return model, tokenizer, prep


def hf_config(hf: dict[str, Any], folder: Path) -> tuple[CLIPConfig, Preprocess]:
    """A Hugging Face CLIPModel config.json (missing keys take transformers' defaults) -> CLIPConfig."""
    where = folder / "config.json"
    archs = hf.get("architectures") or []
    if hf.get("model_type") != "clip" or any(a != "CLIPModel" for a in archs):
        named = f"architectures {', '.join(archs)}" if archs else f"model_type '{hf.get('model_type')}'"
        raise InputError(f"{where}: {named} is not a CLIP model (dlcli reads CLIPModel, model_type clip)")
    t, v = hf.get("text_config") or {}, hf.get("vision_config") or {}

    def tower(c: dict[str, Any], width: int, layers: int, heads: int, mlp: int) -> TowerConfig:
        act = c.get("hidden_act", "quick_gelu")
        if act not in _HF_ACT:
            raise InputError(f"{where}: hidden_act '{act}' is not supported ({', '.join(_HF_ACT)})")
        return TowerConfig(width=c.get("hidden_size", width), layers=c.get("num_hidden_layers", layers),
                           heads=c.get("num_attention_heads", heads), mlp=c.get("intermediate_size", mlp),
                           act=_HF_ACT[act], eps=float(c.get("layer_norm_eps", 1e-5)))

    if v.get("num_channels", 3) != 3:
        raise InputError(f"{where}: vision_config.num_channels {v['num_channels']} (CLIP reads RGB, 3)")
    eos = t.get("eos_token_id", 49407)
    cfg = CLIPConfig(embed_dim=hf.get("projection_dim", 512), image_size=v.get("image_size", 224),
                     patch_size=v.get("patch_size", 32), vocab_size=t.get("vocab_size", 49408),
                     context_length=t.get("max_position_embeddings", 77),
                     eos_id=-1 if eos == 2 else eos,  # 2: configs older than transformers #24773 read the largest id
                     vision=tower(v, 768, 12, 12, 3072), text=tower(t, 512, 12, 8, 2048))
    prep = Preprocess(image_size=cfg.image_size, mean=OPENAI_MEAN, std=OPENAI_STD)
    pp = folder / "preprocessor_config.json"
    if pp.is_file():
        p = read_json(pp)
        prep = Preprocess(cfg.image_size, _triple(p.get("image_mean", OPENAI_MEAN), pp, "image_mean"),
                          _triple(p.get("image_std", OPENAI_STD), pp, "image_std"))
    return _checked(cfg, where), prep


def openclip_config(data: dict[str, Any], where: Path) -> tuple[CLIPConfig, Preprocess]:
    """An OpenCLIP model config (bare, or under "model_cfg" with "preprocess_cfg" beside) -> CLIPConfig."""
    m = data.get("model_cfg", data)
    if not isinstance(m, dict) or "embed_dim" not in m or not isinstance(m.get("vision_cfg"), dict) \
            or not isinstance(m.get("text_cfg"), dict):
        raise InputError(f"{where}: not an OpenCLIP model config (expected embed_dim, vision_cfg, text_cfg)")
    v, t = m["vision_cfg"], m["text_cfg"]
    for key in ("timm_model_name", "attentional_pool", "global_average_pool", "ls_init_value", "no_ln_pre",
                "final_ln_after_pool", "output_tokens", "act_kwargs", "norm_kwargs"):
        if v.get(key):
            raise InputError(f"{where}: vision_cfg.{key} is not supported (dlcli reads the plain ViT tower)")
    for key in ("hf_model_name", "embed_cls", "no_causal_mask", "ls_init_value", "proj_bias", "act_kwargs",
                "norm_kwargs"):
        if t.get(key):
            raise InputError(f"{where}: text_cfg.{key} is not supported (dlcli reads the plain causal text tower)")
    if v.get("pool_type", "tok") != "tok" or t.get("pool_type", "argmax") != "argmax" \
            or t.get("proj_type", "linear") not in ("linear", None):
        raise InputError(f"{where}: pooling other than the class token (image) and the end token (text) is not "
                         "supported")
    if not isinstance(v.get("layers", 12), int):
        raise InputError(f"{where}: vision_cfg.layers is a list: a ResNet image tower, not supported (ViT only)")
    size = v.get("image_size", 224)
    if isinstance(size, list | tuple):
        if len(size) != 2 or size[0] != size[1]:
            raise InputError(f"{where}: vision_cfg.image_size {size} is not square")
        size = size[0]
    act = "quick_gelu" if m.get("quick_gelu") else "gelu"
    vw, tw = v.get("width", 768), t.get("width", 512)
    cfg = CLIPConfig(
        embed_dim=m["embed_dim"], image_size=size, patch_size=v.get("patch_size", 16),
        vocab_size=t.get("vocab_size", 49408), context_length=t.get("context_length", 77), eos_id=-1,
        vision=TowerConfig(width=vw, layers=v.get("layers", 12), heads=vw // v.get("head_width", 64),
                           mlp=int(vw * v.get("mlp_ratio", 4.0)), act=act),
        text=TowerConfig(width=tw, layers=t.get("layers", 12), heads=t.get("heads", 8),
                         mlp=int(tw * t.get("mlp_ratio", 4.0)), act=act))
    p = data.get("preprocess_cfg") or {}
    prep = Preprocess(cfg.image_size, _triple(p.get("mean", OPENAI_MEAN), where, "mean"),
                      _triple(p.get("std", OPENAI_STD), where, "std"))
    return _checked(cfg, where), prep


def _triple(x: Any, where: Path, key: str) -> tuple[float, float, float]:
    if not isinstance(x, list | tuple) or len(x) != 3:
        raise InputError(f"{where}: {key} should be three numbers (one per channel)")
    return (float(x[0]), float(x[1]), float(x[2]))


def _checked(cfg: CLIPConfig, where: Path) -> CLIPConfig:
    for name, tower in (("vision", cfg.vision), ("text", cfg.text)):
        if tower.act not in ACTIVATIONS or tower.heads < 1 or tower.width % tower.heads:
            raise InputError(f"{where}: {name} tower width {tower.width} does not split into {tower.heads} heads")
    if cfg.patch_size < 1 or cfg.image_size % cfg.patch_size:
        raise InputError(f"{where}: image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
    return cfg


def _openclip_files(folder: Path) -> dict[str, Path]:
    path = folder / OPENCLIP_WEIGHTS
    if not path.is_file():
        return weight_files(folder)  # model.safetensors, or a pickle refused, or one line: none found
    return tensor_names(path)


def _blocks(ours: str, theirs: str, n: int, hf: bool) -> list[Pair]:
    out = []
    for i in range(n):
        b, h = f"{ours}.blocks.{i}.", f"{theirs}.{i}."
        if hf:
            a = h + "self_attn."
            names = {"ln1": h + "layer_norm1", "ln2": h + "layer_norm2", "attn.proj": a + "out_proj",
                     "fc": h + "mlp.fc1", "proj": h + "mlp.fc2"}
            out += [Pair(f"{b}attn.qkv.{w}", tuple(f"{a}{x}_proj.{w}" for x in "qkv")) for w in ("weight", "bias")]
        else:
            names = {"ln1": h + "ln_1", "ln2": h + "ln_2", "attn.proj": h + "attn.out_proj",
                     "fc": h + "mlp.c_fc", "proj": h + "mlp.c_proj"}
            out += [Pair(f"{b}attn.qkv.weight", (h + "attn.in_proj_weight",)),
                    Pair(f"{b}attn.qkv.bias", (h + "attn.in_proj_bias",))]
        out += [Pair(f"{b}{k}.{w}", (f"{v}.{w}",)) for k, v in names.items() for w in ("weight", "bias")]
    return out


def _norm(ours: str, theirs: str) -> list[Pair]:
    return [Pair(f"{ours}.{w}", (f"{theirs}.{w}",)) for w in ("weight", "bias")]


def hf_pairs(cfg: CLIPConfig) -> list[Pair]:
    """Every dlcli tensor with its name in Hugging Face's CLIPModel."""
    v, t = "vision_model.", "text_model."
    return [Pair("visual.patch.weight", (v + "embeddings.patch_embedding.weight",)),
            Pair("visual.cls", (v + "embeddings.class_embedding",)),
            Pair("visual.pos", (v + "embeddings.position_embedding.weight",)),
            *_norm("visual.ln_pre", v + "pre_layrnorm"),  # sic: transformers' spelling
            *_blocks("visual", v + "encoder.layers", cfg.vision.layers, hf=True),
            *_norm("visual.ln_post", v + "post_layernorm"),
            Pair("visual.proj.weight", ("visual_projection.weight",)),
            Pair("text.tok.weight", (t + "embeddings.token_embedding.weight",)),
            Pair("text.pos", (t + "embeddings.position_embedding.weight",)),
            *_blocks("text", t + "encoder.layers", cfg.text.layers, hf=True),
            *_norm("text.ln_final", t + "final_layer_norm"),
            Pair("text.proj.weight", ("text_projection.weight",)),
            Pair("logit_scale", ("logit_scale",))]


def openclip_pairs(cfg: CLIPConfig) -> list[Pair]:
    """Every dlcli tensor with its name in OpenCLIP's CLIP (open_clip/model.py, transformer.py)."""
    return [Pair("visual.patch.weight", ("visual.conv1.weight",)),
            Pair("visual.cls", ("visual.class_embedding",)),
            Pair("visual.pos", ("visual.positional_embedding",)),
            *_norm("visual.ln_pre", "visual.ln_pre"),
            *_blocks("visual", "visual.transformer.resblocks", cfg.vision.layers, hf=False),
            *_norm("visual.ln_post", "visual.ln_post"),
            Pair("visual.proj.weight", ("visual.proj",), transpose=True),
            Pair("text.tok.weight", ("token_embedding.weight",)),
            Pair("text.pos", ("positional_embedding",)),
            *_blocks("text", "transformer.resblocks", cfg.text.layers, hf=False),
            *_norm("text.ln_final", "ln_final"),
            Pair("text.proj.weight", ("text_projection",), transpose=True),
            Pair("logit_scale", ("logit_scale",))]


def read_tensors(files: dict[str, Path], pairs: list[Pair]) -> dict[str, torch.Tensor]:
    """dlcli's state dict from the memory-mapped files; a tensor missing, or one no dlcli tensor reads
    (another architecture), is one error naming it."""
    used = {n for p in pairs for n in p.theirs}
    extra = sorted(n for n in files if n not in used and not n.endswith(_IGNORED))
    if extra:
        raise InputError(f"{files[extra[0]]}: tensor {extra[0]} has no place in a CLIP model dlcli reads "
                         f"({len(extra)} such; another architecture?)")
    weights = Weights(files)
    out = {}
    for p in pairs:
        parts = [weights.get(n) for n in p.theirs]
        x = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        out[p.ours] = x.t().contiguous() if p.transpose else x
    return out


def build(cfg: CLIPConfig, sd: dict[str, torch.Tensor], folder: Path, dtype: torch.dtype) -> CLIP:
    """The model with these tensors; a shape other than the config implies is one error naming it."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = CLIP(cfg)
    want = model.state_dict()
    for k, v in sd.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise InputError(f"{folder}: tensor for {k} has shape {tuple(v.shape)}, the config implies "
                             f"{tuple(want[k].shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, assign=True)
    return model.eval()


def load_tokenizer(path: Path, cfg: CLIPConfig) -> Any:
    """tokenizer.json (or, beside it, OpenAI's and OpenCLIP's BPE_VOCAB) -> a tokenizers.Tokenizer that adds
    the start and end tokens and neither pads nor truncates (models.clip.tokenize does both)."""
    from tokenizers import Tokenizer

    if not path.is_file() and (path.parent / BPE_VOCAB).is_file():
        tok = bpe_tokenizer(path.parent / BPE_VOCAB)
    elif not path.is_file():
        raise InputError(f"{path}: not found (CLIP's tokenizer.json; for an OpenCLIP model copy the one of "
                         f"openai/clip-vit-base-patch16, or open_clip's {BPE_VOCAB})")
    else:
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 (tokenizers raises plain Exceptions)
            raise InputError(f"{path}: not a tokenizers file ({str(e).splitlines()[0]})") from None
    n = tok.get_vocab_size(with_added_tokens=True)
    if n > cfg.vocab_size:
        raise InputError(f"{path}: {n} tokens, but the model has {cfg.vocab_size} token embeddings")
    tok.no_padding()
    tok.no_truncation()
    return tok


def read_image(path: str | Path) -> Any:
    """An image file -> a PIL image (decoded now, so a broken file is one error naming it)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not an image") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{path}: not an image PIL can decode ({str(e).splitlines()[0]})") from None


def _byte_symbols() -> list[str]:
    """The 256 bytes as printable characters, in the order byte-level BPE numbers them: the printable
    ranges keep their own character and come first; the rest map to 256, 257, ... in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def bpe_tokenizer(path: Path) -> Any:
    """OpenAI's CLIP tokenizer from its merges file: the vocabulary is the 256 byte symbols, the same with
    the end-of-word mark `</w>`, one token per merge (the first 48,894 merges, as CLIP uses), then
    <|startoftext|> and <|endoftext|>. Text is NFC-normalised, whitespace runs become one space, lowercased,
    split into letter runs, single digits and punctuation runs, as CLIP's own tokenizer does."""
    import gzip

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a gzipped BPE merges file ({e})") from None
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1] if m.strip()]
    if any(len(m) != 2 for m in merges):
        raise InputError(f"{path}: not a BPE merges file (a line is not two symbols)")
    symbols = _byte_symbols()
    names = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges), "<|startoftext|>",
             "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(names)}
    tok = Tokenizer(models.BPE(vocab, merges, end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    words = Regex(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(words, behavior="removed", invert=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("<|endoftext|>", len(names) - 1),
                                                      ("<|startoftext|>", len(names) - 2),
                                                      add_prefix_space=False, trim_offsets=False)
    return tok
