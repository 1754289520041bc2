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
from torch import nn

from dlcli.errors import ConfigError


def init_embedding(embedding: nn.Embedding, tokenizer: Any, vectors: Mapping[str, np.ndarray]) -> dict[str, Any]:
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
