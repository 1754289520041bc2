"""Translation with an encoder-decoder Transformer.

`dlcli train-transformer --task translate` trains on a parallel TSV,
`dlcli translate RUN` translates, `dlcli evaluate RUN` scores BLEU:

    config.py     TrainTranslateConfig and its data section (what data.py, train.py and run.py read)
    data.py       read and check the TSV, hold out pairs, tokenizers (shared or separate BPE), length buckets
    train.py      the stage on the shared loop: teacher forcing, label smoothing, BLEU during training, DDP
    search.py     greedy and batched beam search over the decoder's key/value cache
    bleu.py       corpus BLEU with sacrebleu, cased and case-insensitive; detokenising what `nmt` did
    run.py        open a run; translate sentences; BLEU of a run on its held-out pairs (`evaluate_run`)
    attention.py  heatmaps of encoder self-attention and decoder cross-attention

Imports go one way: config <- data <- run <- train, attention. This file imports none of them, so that
reading the config (`--help`) imports no torch.
"""
