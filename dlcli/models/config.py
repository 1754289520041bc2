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
    positions: str = "learned"  # learned | sinusoidal
    tie_weights: bool = True
    causal: bool = True  # False: every position sees every other (an encoder, for masked-LM pretraining)


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
