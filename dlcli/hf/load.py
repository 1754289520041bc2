"""`dlcli import-hf`: a Hugging Face model folder -> a dlcli GPT run directory.

    FOLDER/config.json                       the family and the shape (families.py)
    FOLDER/model.safetensors                 the weights, read memory-mapped; or the shards
    FOLDER/model.safetensors.index.json      named by the index's weight_map
    FOLDER/tokenizer.json                    the tokenizer, copied as is

The run holds config.yaml (stage import-hf; the model section is a GPTConfig), meta.json,
tokenizer.json, model.safetensors (dlcli names, the file's own dtype) and the source's config and
tokenizer settings as hf_*.json (export-hf writes them back). Pickles (pytorch_model.bin, *.pt) are
refused: loading one runs code.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from dlcli.core import rundir
from dlcli.core.progress import Tick
from dlcli.errors import InputError
from dlcli.hf import families
from dlcli.hf.config import ImportConfig
from dlcli.text import vocabulary

STAGE = "import-hf"
KEPT = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json")
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin", "tf_model.h5",
            "flax_model.msgpack")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (a Hugging Face model folder has config.json, *.safetensors "
                         "and tokenizer.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def tensor_names(path: Path) -> dict[str, Path]:
    """Each tensor name in one safetensors file -> the file (only its header is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict.fromkeys(f.keys(), path)
    except Exception as e:  # noqa: BLE001 (safetensors raises its own error types)
        raise InputError(f"{path}: damaged or not a safetensors file ({str(e).splitlines()[0]})") from None


def weight_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it: model.safetensors, or the shards of
    model.safetensors.index.json. Pickled weights are refused, never opened."""
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.is_file():
        wmap = read_json(index).get("weight_map")
        if not isinstance(wmap, dict) or not wmap:
            raise InputError(f"{index}: no weight_map")
        out = {}
        for name, file in wmap.items():
            p = folder / str(file)
            if Path(str(file)).name != str(file) or not p.is_file():
                raise InputError(f"{index}: shard {file} (of {name}) is missing")
            out[name] = p
        return out
    if single.is_file():
        return tensor_names(single)
    pickles = [p.name for p in sorted(folder.iterdir()) if p.name in _PICKLES or p.suffix in (".bin", ".pt", ".pth")]
    if pickles:
        raise InputError(f"{folder / pickles[0]}: pickled weights are not read (loading a pickle runs code); "
                         "download the model's .safetensors files")
    raise InputError(f"{folder}: no model.safetensors or model.safetensors.index.json")


class Weights:
    """The folder's tensors by name, each read when asked for, from memory-mapped files. GPT-2 files
    written by GPT2Model have no `transformer.` prefix; both spellings are found."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self._open: dict[Path, Any] = {}

    def name(self, wanted: str) -> str | None:
        for n in (wanted, wanted.removeprefix("transformer.")):
            if n in self.files:
                return n
        return None

    def get(self, wanted: str) -> torch.Tensor:
        from safetensors import safe_open

        n = self.name(wanted)
        if n is None:
            where = min(self.files.values())
            raise InputError(f"{where.parent}: tensor {wanted} is missing from the weights")
        path = self.files[n]
        if path not in self._open:
            self._open[path] = safe_open(str(path), framework="pt")
        return self._open[path].get_tensor(n)


def state_dict(family: str, cfg: Any, weights: Weights) -> dict[str, torch.Tensor]:
    """The dlcli state dict: each tensor from its Hugging Face ones (families.pairs)."""
    out: dict[str, torch.Tensor] = {}
    for p in families.pairs(family, cfg):
        parts = [weights.get(n) for n in p.theirs]
        t = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        out[p.ours] = t.t().contiguous() if p.transpose else t
    return out


UNUSED = "<|dlcli_unused_{}|>"  # the names of embedding rows no token of the source tokenizer has


def pad_tokenizer(tok: Tokenizer, vocab_size: int, where: Path) -> int:
    """A dlcli run has one token per embedding row. Models whose table is padded past the tokenizer (Qwen2:
    151,936 rows, 151,665 tokens) get special tokens named UNUSED for the rows beyond, which generation
    never samples. Returns how many were added."""
    n = tok.get_vocab_size(with_added_tokens=True)
    ids = tok.get_vocab(with_added_tokens=True).values()
    if n > vocab_size or (n < vocab_size and max(ids) != n - 1):
        raise InputError(f"{where}: {n} entries (ids up to {max(ids)}), but the model's vocab_size is {vocab_size}")
    if n < vocab_size:
        tok.add_special_tokens([UNUSED.format(i) for i in range(n, vocab_size)])
        if tok.get_vocab_size(with_added_tokens=True) != vocab_size:
            raise InputError(f"{where}: cannot name the {vocab_size - n} embedding rows past its {n} tokens")
    return vocab_size - n


def check_shapes(model: torch.nn.Module, sd: dict[str, torch.Tensor], where: Path) -> None:
    """Each tensor has the shape config.json implies, else one error naming it."""
    want = model.state_dict()
    for k, v in sd.items():
        if tuple(v.shape) != tuple(want[k].shape):
            raise InputError(f"{where}: tensor for {k} has shape {tuple(v.shape)}, config.json implies "
                             f"{tuple(want[k].shape)}")


@rundir.removed_on_failure
def run(cfg: ImportConfig, force: bool = False, on_progress: Callable[[Tick], None] | None = None
        ) -> dict[str, Any]:
    """Import cfg.source into the run directory cfg.output."""
    from dlcli.models.gpt import GPT

    cfg.validate()
    folder = Path(cfg.source)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (give a Hugging Face model folder, e.g. from "
                         "'huggingface-cli download')")
    hf = read_json(folder / "config.json")
    family = families.family_of(hf, folder / "config.json")
    model_cfg = families.to_gpt_config(family, hf, folder / "config.json")
    tok_path = folder / "tokenizer.json"
    if not tok_path.is_file():
        raise InputError(f"{tok_path}: not found (dlcli reads the fast tokenizer's tokenizer.json)")
    tok = vocabulary.load(tok_path)
    padded = pad_tokenizer(tok, model_cfg.vocab_size, tok_path)
    weights = Weights(weight_files(folder))
    sd = state_dict(family, model_cfg, weights)
    if cfg.block_size:
        if model_cfg.positions == "learned" and cfg.block_size > model_cfg.block_size:
            raise InputError(f"block_size: {cfg.block_size} is longer than the {model_cfg.block_size} positions "
                             f"{folder.name} learned")
        if model_cfg.positions == "learned":
            sd["pos_emb.weight"] = sd["pos_emb.weight"][: cfg.block_size]
        model_cfg.block_size = cfg.block_size
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        check_shapes(GPT(model_cfg), sd, folder)
    cfg = dataclasses.replace(cfg, model=model_cfg)
    out = rundir.create(cfg.output, cfg, STAGE, [str(folder / "config.json")], force=force, family=family)
    if padded:
        tok.save(str(out / "tokenizer.json"))
        shutil.copyfile(tok_path, out / "hf_tokenizer.json")  # export-hf writes the original back
    else:
        shutil.copyfile(tok_path, out / "tokenizer.json")
    for name in KEPT:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / f"hf_{name}")
    rundir.save_tensors(sd, out / "model.safetensors")  # last: the run is complete once it is there
    params = sum(v.numel() for k, v in sd.items() if not (k == "head.weight" and model_cfg.tie_weights))
    return {"run": str(out), "family": family, "params": params, "dtype": str(sd["tok_emb.weight"].dtype)
            .removeprefix("torch."), "block_size": model_cfg.block_size}
