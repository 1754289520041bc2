"""The model families dlcli reads and writes, as tables: a Hugging Face config.json <-> GPTConfig, and
each dlcli tensor <-> the Hugging Face tensors it is made of. Torch-free; load.py and save.py move
the tensors.

    gpt2   GPT-2: learned positions, LayerNorm, GELU (tanh), Conv1D weights stored (in, out)
    llama  Llama, SmolLM: rotary positions (theta, linear or llama3 scaling), RMSNorm, SwiGLU,
           grouped-query attention, an optional tied head
    qwen2  Qwen2: llama with biases on Q, K and V
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli.errors import InputError
from dlcli.models.config import GPTConfig

FAMILIES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
_ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "GPT2Model": "gpt2", "LlamaForCausalLM": "llama",
                  "Qwen2ForCausalLM": "qwen2"}
_GELU = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu"}
ROPE_SCALINGS = ("none", "linear", "llama3")


@dataclass(frozen=True)
class Pair:
    """One dlcli tensor and the Hugging Face tensors it is made of: one, transposed for GPT-2's
    Conv1D layout, or Q, K and V stacked into `qkv`."""

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False


def family_of(hf: dict[str, Any], where: Path) -> str:
    """The family of a config.json: its `architectures`, else its `model_type`."""
    archs = hf.get("architectures") or []
    for a in archs:
        if a in _ARCHITECTURES:
            return _ARCHITECTURES[a]
    kind = hf.get("model_type")
    if not archs and kind in FAMILIES:
        return str(kind)
    named = f"architectures {', '.join(archs)}" if archs else f"model_type '{kind}'"
    raise InputError(f"{where}: {named} is not supported (dlcli imports GPT-2, Llama and Qwen2 decoders: "
                     f"{', '.join(FAMILIES.values())})")


def _get(hf: dict[str, Any], key: str, where: Path, default: Any = None) -> Any:
    value = hf.get(key, default)
    if value is None:
        raise InputError(f"{where}: no '{key}'")
    return value


def to_gpt_config(family: str, hf: dict[str, Any], where: Path) -> GPTConfig:
    """config.json -> the GPTConfig that computes the same function; what dlcli cannot compute is
    one error naming the key."""
    if family == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in _GELU:
            raise InputError(f"{where}: activation_function '{act}' is not supported (gelu_new, gelu)")
        if hf.get("scale_attn_by_inverse_layer_idx") or hf.get("scale_attn_weights") is False:
            raise InputError(f"{where}: GPT-2 attention scaled other than by 1/sqrt(d_k) is not supported")
        if hf.get("add_cross_attention"):
            raise InputError(f"{where}: add_cross_attention is not supported (a decoder-only model is expected)")
        return GPTConfig(vocab_size=_get(hf, "vocab_size", where), block_size=_get(hf, "n_positions", where),
                         n_layer=_get(hf, "n_layer", where), n_head=_get(hf, "n_head", where),
                         n_embd=_get(hf, "n_embd", where), dropout=0.0, bias=True, positions="learned",
                         tie_weights=hf.get("tie_word_embeddings", True), norm="layer",
                         norm_eps=hf.get("layer_norm_epsilon", 1e-5), mlp=_GELU[act], n_inner=hf.get("n_inner") or 0)
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise InputError(f"{where}: hidden_act '{act}' is not supported (SwiGLU with silu)")
    if hf.get("attention_bias") and family == "llama" or hf.get("mlp_bias"):
        raise InputError(f"{where}: attention_bias or mlp_bias on a Llama model is not supported")
    if hf.get("use_sliding_window"):
        raise InputError(f"{where}: use_sliding_window is not supported")
    n_embd, n_head = _get(hf, "hidden_size", where), _get(hf, "num_attention_heads", where)
    head_dim = hf.get("head_dim") or 0
    cfg = GPTConfig(vocab_size=_get(hf, "vocab_size", where), block_size=_get(hf, "max_position_embeddings", where),
                    n_layer=_get(hf, "num_hidden_layers", where), n_head=n_head, n_embd=n_embd, dropout=0.0,
                    bias=False, positions="rope", tie_weights=hf.get("tie_word_embeddings", False), norm="rms",
                    norm_eps=hf.get("rms_norm_eps", 1e-6), mlp="swiglu",
                    n_inner=_get(hf, "intermediate_size", where),
                    n_kv_head=hf.get("num_key_value_heads") or 0,
                    head_dim=0 if head_dim * n_head == n_embd else head_dim, qkv_bias=family == "qwen2")
    if cfg.n_kv_head == n_head:
        cfg.n_kv_head = 0
    _rope(cfg, hf, where)
    return cfg


def _rope(cfg: GPTConfig, hf: dict[str, Any], where: Path) -> None:
    """RoPE's theta and scaling, from `rope_parameters` (transformers 5) or `rope_theta` and `rope_scaling`."""
    rp = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    cfg.rope_theta = float(rp.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = rp.get("rope_type", rp.get("type", "default"))
    if kind == "default":
        return
    if kind not in ROPE_SCALINGS:
        raise InputError(f"{where}: rope scaling '{kind}' is not supported (linear, llama3)")
    cfg.rope_scaling = kind
    cfg.rope_factor = float(_get(rp, "factor", where))
    if kind == "llama3":
        cfg.rope_low_freq_factor = float(_get(rp, "low_freq_factor", where))
        cfg.rope_high_freq_factor = float(_get(rp, "high_freq_factor", where))
        cfg.rope_original_max = int(_get(rp, "original_max_position_embeddings", where))


def family_for(cfg: GPTConfig, where: Path) -> str:
    """The family whose model computes what this GPT computes; a GPT with no equivalent is one error."""
    if not cfg.causal:
        raise InputError(f"{where}: a masked-LM run has no causal-LM equivalent in transformers")
    if cfg.positions in ("learned", "sinusoidal"):  # a sinusoidal table becomes GPT-2's learned one
        if cfg.norm != "layer" or cfg.mlp == "swiglu" or cfg.n_kv_head not in (0, cfg.n_head) or cfg.head_dim:
            raise InputError(f"{where}: this mix of options (positions {cfg.positions}, norm {cfg.norm}, mlp "
                             f"{cfg.mlp}) has no transformers equivalent")
        if not cfg.bias:
            raise InputError(f"{where}: a GPT with bias off has no transformers equivalent (GPT-2 has biases)")
        return "gpt2"
    if cfg.norm != "rms" or cfg.mlp != "swiglu" or cfg.bias:
        raise InputError(f"{where}: rotary positions with norm {cfg.norm}, mlp {cfg.mlp}, bias {cfg.bias} have "
                         "no transformers equivalent (Llama: rms, swiglu, no bias)")
    return "qwen2" if cfg.qkv_bias else "llama"


def to_hf_config(family: str, cfg: GPTConfig, dtype: str) -> dict[str, Any]:
    """GPTConfig -> config.json for `family`."""
    common = {"architectures": [FAMILIES[family]], "model_type": family, "vocab_size": cfg.vocab_size,
              "tie_word_embeddings": cfg.tie_weights, "torch_dtype": dtype, "use_cache": True}
    if family == "gpt2":
        return {**common, "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_embd": cfg.n_embd,
                "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": cfg.n_inner or None,
                "activation_function": "gelu_new" if cfg.mlp == "gelu_tanh" else "gelu",
                "layer_norm_epsilon": cfg.norm_eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                "reorder_and_upcast_attn": False}
    rope: dict[str, Any] = {"rope_type": "default" if cfg.rope_scaling == "none" else cfg.rope_scaling}
    if cfg.rope_scaling != "none":
        rope["factor"] = cfg.rope_factor
    if cfg.rope_scaling == "llama3":
        rope |= {"low_freq_factor": cfg.rope_low_freq_factor, "high_freq_factor": cfg.rope_high_freq_factor,
                 "original_max_position_embeddings": cfg.rope_original_max}
    out = {**common, "hidden_size": cfg.n_embd, "intermediate_size": cfg.n_inner or 4 * cfg.n_embd,
           "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
           "num_key_value_heads": cfg.n_kv_head or cfg.n_head, "head_dim": cfg.head_dim or cfg.n_embd // cfg.n_head,
           "max_position_embeddings": cfg.block_size, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
           # transformers 4 reads rope_theta and rope_scaling, 5 rope_parameters
           "rope_theta": cfg.rope_theta, "rope_scaling": rope if cfg.rope_scaling != "none" else None,
           "rope_parameters": {**rope, "rope_theta": cfg.rope_theta}}
    if family == "qwen2":
        out["use_sliding_window"] = False
    else:
        out |= {"attention_bias": False, "mlp_bias": False}
    return out


def pairs(family: str, cfg: GPTConfig) -> list[Pair]:
    """Every dlcli tensor of a model of `family` with its Hugging Face names (GPT2LMHeadModel's and
    LlamaForCausalLM's). A tied head is the embedding's tensor."""
    out = []
    if family == "gpt2":
        t = "transformer."
        out += [Pair("tok_emb.weight", (t + "wte.weight",)), Pair("pos_emb.weight", (t + "wpe.weight",))]
        for i in range(cfg.n_layer):
            h, b = f"{t}h.{i}.", f"blocks.{i}."
            for ours, theirs in (("ln1", "ln_1"), ("ln2", "ln_2")):
                out += [Pair(f"{b}{ours}.{w}", (f"{h}{theirs}.{w}",)) for w in ("weight", "bias")]
            for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"),
                                 ("mlp.proj", "mlp.c_proj")):
                out += [Pair(f"{b}{ours}.weight", (f"{h}{theirs}.weight",), transpose=True),
                        Pair(f"{b}{ours}.bias", (f"{h}{theirs}.bias",))]
        out += [Pair(f"ln_f.{w}", (f"{t}ln_f.{w}",)) for w in ("weight", "bias")]
        head = t + "wte.weight"
    else:
        m = "model."
        out.append(Pair("tok_emb.weight", (m + "embed_tokens.weight",)))
        for i in range(cfg.n_layer):
            h, b = f"{m}layers.{i}.", f"blocks.{i}."
            attn = h + "self_attn."
            out += [Pair(b + "ln1.weight", (h + "input_layernorm.weight",)),
                    Pair(b + "attn.qkv.weight", tuple(f"{attn}{x}_proj.weight" for x in "qkv")),
                    Pair(b + "attn.proj.weight", (attn + "o_proj.weight",)),
                    Pair(b + "ln2.weight", (h + "post_attention_layernorm.weight",)),
                    Pair(b + "mlp.gate.weight", (h + "mlp.gate_proj.weight",)),
                    Pair(b + "mlp.fc.weight", (h + "mlp.up_proj.weight",)),
                    Pair(b + "mlp.proj.weight", (h + "mlp.down_proj.weight",))]
            if cfg.qkv_bias:
                out.append(Pair(b + "attn.qkv.bias", tuple(f"{attn}{x}_proj.bias" for x in "qkv")))
        out.append(Pair("ln_f.weight", (m + "norm.weight",)))
        head = m + "embed_tokens.weight"
    out.append(Pair("head.weight", (head,) if cfg.tie_weights else ("lm_head.weight",)))
    return out
