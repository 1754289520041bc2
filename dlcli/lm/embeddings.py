"""Initialise a model's embedding rows from pretrained vectors, aligned by token string.

The language models keep their input embedding as an `nn.Embedding` whose row
i belongs to the tokenizer's token i, so vectors trained elsewhere (by
`dlcli embed`, or any word2vec `.vec` file) can be copied in by token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from dlcli.errors import ConfigError
from dlcli.models.gpt import GPT
from dlcli.models.rnn import RNNLM


def init_embedding(embedding: nn.Embedding, tokenizer: Tokenizer, vectors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Copy `vectors[token]` into the row of each token the tokenizer knows.

    Returns the coverage: how many of the model's tokens got a vector.
    """
    dim = embedding.embedding_dim
    found = 0
    missing = []
    with torch.no_grad():
        for token, idx in tokenizer.get_vocab(with_added_tokens=True).items():
            v = vectors.get(token)
            if v is None:
                missing.append(token)
                continue
            if len(v) != dim:
                raise ConfigError(f"pretrained vectors have {len(v)} dimensions but the model's embedding has {dim}")
            embedding.weight[idx] = torch.as_tensor(np.asarray(v, dtype=np.float32))
            found += 1
    total = embedding.num_embeddings
    return {"covered": found, "total": total, "coverage": found / max(1, total), "missing_examples": missing[:10]}


def load_pretrained(model: RNNLM | GPT, tokenizer: Tokenizer, path: str) -> dict[str, Any]:
    """Initialise `model.input_embedding` from an embed run or a .vec/.bin file; returns the coverage."""
    from dlcli.embed.vecfile import load_vectors

    table = model.input_embedding
    if table is None:
        raise ConfigError("init_embeddings: this model has no embedding table (a one-hot RNN); set model.n_embd")
    words, matrix = load_vectors(path)
    if matrix.shape[1] != table.embedding_dim:
        raise ConfigError(f"init_embeddings: {path} has {matrix.shape[1]}-dimensional vectors but the model's "
                          f"embedding has {table.embedding_dim} (set model.n_embd to {matrix.shape[1]})")
    cov = init_embedding(table, tokenizer, dict(zip(words, matrix)))
    return {**cov, "path": str(path)}
