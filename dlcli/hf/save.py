"""`dlcli export-hf`: a dlcli GPT run -> a folder `transformers.AutoModelForCausalLM.from_pretrained`
and `tokenizers` load, computing the same logits.

    OUT/config.json              GPT2LMHeadModel, LlamaForCausalLM or Qwen2ForCausalLM (families.py)
    OUT/model.safetensors        the run's tensors under their Hugging Face names, in the run's dtype
    OUT/tokenizer.json           the run's tokenizer
    OUT/tokenizer_config.json    and, for an imported run, its other settings as they came

A GPT with no transformers equivalent (bias off, a masked-LM encoder) is one error. Sinusoidal
positions become GPT-2's learned table, holding the same values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dlcli.core import io, rundir
from dlcli.core.config import from_dict, load_yaml
from dlcli.core.progress import Tick
from dlcli.errors import ConfigError, InputError, OutputExistsError
from dlcli.hf import families
from dlcli.hf.config import ExportConfig
from dlcli.hf.load import KEPT, read_json
from dlcli.lm.run import KIND, open_run
from dlcli.models.config import GPTConfig

_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id")


def tensors(family: str, cfg: Any, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The run's tensors under the Hugging Face names of `family`; a tied head is written once."""
    from dlcli.models.gpt import sinusoidal

    if cfg.positions == "sinusoidal":
        ours = {**ours, "pos_emb.weight": sinusoidal(cfg.block_size, cfg.n_embd).to(ours["tok_emb.weight"].dtype)}
    out: dict[str, torch.Tensor] = {}
    for p in families.pairs(family, cfg):
        if p.ours == "head.weight" and cfg.tie_weights:
            continue
        if p.ours not in ours:
            raise InputError(f"model.safetensors: no tensor {p.ours}")
        t = ours[p.ours].t() if p.transpose else ours[p.ours]
        sizes = [cfg.n_head * (cfg.head_dim or cfg.n_embd // cfg.n_head)] + 2 * [
            (cfg.n_kv_head or cfg.n_head) * (cfg.head_dim or cfg.n_embd // cfg.n_head)]
        parts = t.split(sizes, dim=0) if len(p.theirs) == 3 else (t,)
        out.update({name: part.contiguous() for name, part in zip(p.theirs, parts, strict=True)})
    return out


def run(cfg: ExportConfig, force: bool = False, on_progress: Callable[[Tick], None] | None = None
        ) -> dict[str, Any]:
    """Export the run cfg.run into the folder cfg.output (written beside it, then renamed)."""
    cfg.validate()
    src = Path(cfg.run)
    if not src.is_dir():
        raise InputError(f"{src}: no such run directory")
    stage = rundir.read_meta(src).get("stage")
    if KIND.get(stage) != "gpt":
        raise InputError(f"{src}: a '{stage}' run is not a GPT language model (export-hf writes GPT runs)")
    try:
        model_cfg = from_dict(GPTConfig, load_yaml(src / "config.yaml").get("model", {}))
    except ConfigError as e:
        raise InputError(f"{src / 'config.yaml'}: {e}") from None
    family = families.family_for(model_cfg, src / "config.yaml")
    if (src / "model.safetensors").is_file():
        ours = rundir.load_tensors(src / "model.safetensors")
    else:  # a LoRA run saved as its adapter: its base with the adapter merged in
        ours = {k: v.detach() for k, v in open_run(src, "cpu").model.state_dict().items()}
    theirs = tensors(family, model_cfg, ours)
    dtype = str(ours["tok_emb.weight"].dtype).removeprefix("torch.")
    hf = families.to_hf_config(family, model_cfg, dtype)
    if (src / "hf_config.json").is_file():  # an imported run: its special tokens as they came
        old = read_json(src / "hf_config.json")
        hf |= {k: old[k] for k in _TOKENS if k in old}
    out = Path(cfg.output)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not force:
            raise OutputExistsError(f"{out}: already exists (use --force to replace it)")
        if not (out / "config.json").is_file():  # --force replaces a model folder, nothing else
            raise OutputExistsError(f"{out}: exists and is not a model folder (no config.json); not replaced")
    tmp = out.with_name(f".{out.name}.{io.owner_tag()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rundir.save_tensors(theirs, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        original = src / "hf_tokenizer.json"  # an import whose tokenizer was padded to the embedding's rows
        shutil.copyfile(original if original.is_file() else src / "tokenizer.json", tmp / "tokenizer.json")
        for name in KEPT[1:]:
            if (src / f"hf_{name}").is_file():
                shutil.copyfile(src / f"hf_{name}", tmp / name)
        if not (tmp / "tokenizer_config.json").is_file():
            conf = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_cfg.block_size}
            (tmp / "tokenizer_config.json").write_text(json.dumps(conf, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"run": str(out), "family": family, "tensors": len(theirs), "dtype": dtype}
