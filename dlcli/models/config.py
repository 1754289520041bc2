"""The shapes of the models in models/, as dataclasses a stage config holds (its `model` section).

Torch-free, so that a command's `--help` can read the defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

CELLS = ("rnn", "gru", "lstm")
FORECASTERS = ("linear", "mlp", "gru", "lstm")  # models/forecast.py


@dataclass
class GPTConfig:
    vocab_size: int = 0  # filled in from the tokenizer
    block_size: int = 64  # the longest context
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    positions: str = "learned"  # learned | sinusoidal | rope (rotary, Llama)
    tie_weights: bool = True
    causal: bool = True  # False: every position sees every other (an encoder, for masked-LM pretraining)
    # The options of pretrained families (dlcli import-hf); each default is dlcli's own GPT.
    norm: str = "layer"  # layer (LayerNorm) | rms (RMSNorm, Llama)
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # gelu | gelu_tanh (GPT-2) | swiglu (Llama: down(silu(gate(x)) * up(x)))
    n_inner: int = 0  # the MLP's hidden width; 0 = 4 * n_embd
    n_kv_head: int = 0  # key/value heads, grouped-query attention; 0 = n_head
    head_dim: int = 0  # 0 = n_embd // n_head
    qkv_bias: bool = False  # biases on Q, K and V even with bias off (Qwen2)
    rope_theta: float = 10000.0  # positions: rope; the base of the rotation frequencies
    rope_scaling: str = "none"  # none | linear | llama3
    rope_factor: float = 1.0  # linear, llama3: how much longer the context became
    rope_low_freq_factor: float = 1.0  # llama3
    rope_high_freq_factor: float = 4.0  # llama3
    rope_original_max: int = 0  # llama3: the context length the model was first trained with


@dataclass
class RNNConfig:
    vocab_size: int = 0  # filled in from the tokenizer
    cell: str = "lstm"  # rnn (tanh) | gru | lstm
    n_layer: int = 2
    n_hidden: int = 256
    n_embd: int = 0  # 0: one-hot inputs (no embedding matrix)
    dropout: float = 0.0
    tie_weights: bool = False  # share the embedding and output matrices (needs n_embd == n_hidden)


@dataclass
class Seq2SeqConfig:
    src_vocab_size: int = 0
    tgt_vocab_size: int = 0
    max_len: int = 64  # longest sentence, in tokens, on either side
    n_layer: int = 3  # encoder layers and decoder layers each
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.1
    share_embeddings: bool = False  # one table for source and target (needs a shared vocabulary)
    pad_id: int = 0
