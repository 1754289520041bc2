"""Language models: `dlcli train-rnn`, `train-transformer`, `generate`, `evaluate`.

    config.py      TrainRNNConfig, TrainTransformerConfig on LMArgs (on train.args.TrainArgs), the data
                   section, GenerateConfig, EvaluateConfig; torch-free (`--help` reads it)
    data.py        id files checked against their tokenizer, minibatches (sequential, random)
    train.py       one update of either model, on the shared loop (train/loop.py)
    metrics.py     held-out loss over a token stream; masked-token accuracy
    mlm.py         BERT-style masking
    embeddings.py  input embedding rows from word vectors (an embed run or a .vec/.bin file)
    run.py         open a finished run: its stage names the model kind (rnn, gpt)
    generate.py    sampling, with the RNN's state or the Transformer's key/value cache
    evaluate.py    `dlcli evaluate` on a language-model run
"""
