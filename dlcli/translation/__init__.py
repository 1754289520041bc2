"""Translation with an encoder-decoder Transformer.

`dlcli train-transformer --task translate` trains on a parallel TSV,
`dlcli translate RUN` translates, `dlcli evaluate RUN` scores BLEU:

    config.py     TrainTranslateConfig (what train.py and run.py both read)
    data.py       read and check the TSV, hold out pairs, tokenizers (shared or separate BPE), length buckets
    train.py      the stage on the shared loop: teacher forcing, label smoothing, BLEU during training, DDP
    search.py     greedy and batched beam search over the decoder's key/value cache
    bleu.py       corpus BLEU with sacrebleu on detokenised text
    run.py        open a run; translate sentences; BLEU of a run on its held-out pairs (`evaluate_run`)
    attention.py  heatmaps of encoder self-attention and decoder cross-attention

Imports go one way: config <- run <- train, attention.
"""

from dlcli.translation.bleu import bleu, detokenize
from dlcli.translation.config import TrainTranslateConfig
from dlcli.translation.data import ParallelData, bucket_batches, read_pairs
from dlcli.translation.run import evaluate_run, held_out_bleu, open_translation_run, translate_lines
from dlcli.translation.train import train

__all__ = ["ParallelData", "TrainTranslateConfig", "bleu", "bucket_batches", "detokenize", "evaluate_run",
           "held_out_bleu", "open_translation_run", "read_pairs", "train", "translate_lines"]
