"""Word embeddings, word2vec style (`dlcli embed`).

    corpus.py    token streams / id files -> word ids, min-count trimming, subsampling, noise weights
    kernels.py   numba skip-gram and CBOW negative-sampling SGD kernels (threads, Hogwild)
    train.py     EmbedConfig and train(): the training loop, checkpoints, run directory
    vecfile.py   word2vec .vec / .bin read and write, run directories, import, load_vectors
    query.py     nearest neighbours, analogies (3CosAdd, 3CosMul)
    evaluate.py  word-similarity Spearman rho, analogy accuracy (questions-words)
    plot.py      2-D PCA / t-SNE pictures
"""

from dlcli.embed.vecfile import load_vectors

__all__ = ["load_vectors"]
