"""`dlcli train-rnn`, `dlcli train-transformer`, `dlcli generate`, `dlcli evaluate`."""

from __future__ import annotations

import json
import sys
from types import ModuleType
from typing import Annotated, Any

from dlcli.cli import common as c
from dlcli.cli import forecast, translate
from dlcli.cli import options as o
from dlcli.cli.command import Job, command


def _lm() -> ModuleType:
    """The language-model configs (torch-free), imported when a command runs or shows its help."""
    import dlcli.lm.config

    return dlcli.lm.config


def _model(*names: str, help: str) -> Any:
    return o.opt(*names, help=help, panel=o.MODEL)


def _train(*names: str, help: str) -> Any:
    return o.opt(*names, help=help, panel=o.TRAIN)


# The options both language-model trainers have (keys of lm.config.LMArgs).
LM: dict[str, Any] = {
    "data__val": Annotated[str | None, o.opt("--val", help="Validation id file (default: the last 10% of --data).")],
    "output": Annotated[str | None, o.opt("--output", "-o", help="Run directory.")],
    "model__dropout": Annotated[float | None, _model("--dropout", help="Dropout.")],
    "optim__lr": o.Lr,
    "init_embeddings": Annotated[str | None, _model("--init-embeddings", help="Initialise the input embedding from "
                                                    "word vectors: a 'dlcli embed' run or a .vec/.bin file (rows "
                                                    "matched by token; coverage is reported).")],
    **o.training(),
}
# The old mode switches' flags under the keys of the forecasting and translation configs.
AS_FORECAST = {"data.train": "data", "model.cell": "model", "model.n_hidden": "hidden", "model.n_layer": "layers",
               "optim.lr": "lr"}
AS_TRANSLATION = {"data.train": "data.tsv", "model.block_size": "model.max_len"}


def _lm_line(s: dict[str, Any]) -> str:
    cov = s.get("init_embeddings")
    if cov:
        c.info(f"initialised {cov['covered']:,} of {cov['total']:,} embedding rows ({100 * cov['coverage']:.1f}%) "
               f"from {cov['path']}", False)
    params = f", {s['params']:,} parameters" if "params" in s else ""
    if s.get("trainable", s.get("params")) != s.get("params"):  # LoRA
        params += f", {s['trainable']:,} of them trained"
    return (f"{s['steps']:,} steps ({s['epochs']:.2f} epochs{params}) in {c.spent(s)}; validation loss "
            f"{s['val_loss']:.4f}, perplexity {s['val_ppl']:.3f}; {s['precision']}")


def _task(task: str, other: str) -> str:
    if task not in ("lm", other):
        raise c.fail(f"--task: '{task}' is not one of lm, {other}", 2)
    return task


@command(lambda: _lm().TrainRNNConfig, options=LM | forecast.SERIES, resume=True, switches=("task",))
def train_rnn(
    data__train: Annotated[str | None, o.opt("--data", "-d", help="Id file to train on (from 'dlcli vocab encode'); "
                                             "a CSV with --task forecast.")] = None,
    task: Annotated[str, o.opt("--task", help="lm (language model, default) or forecast (time series, as 'dlcli "
                               "forecast train').")] = "lm",
    model__cell: Annotated[str | None, _model("--cell", help="rnn, gru or lstm (default lstm); for forecasts also "
                                              "the baselines linear and mlp (default mlp).")] = None,
    model__n_layer: Annotated[int | None, _model("--layers", help="Stacked layers.")] = None,
    model__n_hidden: Annotated[int | None, _model("--hidden", help="Hidden size.")] = None,
    model__n_embd: Annotated[int | None, _model("--embd", help="Embedding size; 0 = one-hot inputs.")] = None,
    batch_size: Annotated[int | None, _train("--batch-size", "-b", help="Sequences per batch.")] = None,
    seq_len: Annotated[int | None, _train("--seq-len", help="Truncated BPTT length.")] = None,
    sampling: Annotated[str | None, _train("--sampling", help="sequential (state carried) or random.")] = None,
    *, job: Job,
) -> None:
    """Train an RNN, GRU or LSTM language model on an id file (or a forecaster on a CSV).

    Writes a run directory: config.yaml, tokenizer.json, model.safetensors,
    checkpoint, metrics.jsonl and perplexity.png. Runs unchanged under
    torchrun (DDP, gloo on CPU, nccl on GPU).

    Example: dlcli train-rnn -d ts.ids -o runs/ts --cell lstm --hidden 256 --max-time 10m

    Example: dlcli train-rnn --task forecast -d sample_data/sine.csv --cell gru --tau 4 -o runs/sine
    """
    if _task(task, "forecast") == "forecast":
        flags = job.flags
        if flags.get("epochs") is not None:
            flags["epochs"] = int(flags["epochs"])
        return forecast.train_forecaster(job.renamed(AS_FORECAST, forecast.config))
    from dlcli.lm.train import train_rnn

    job.run(train_rnn, _lm_line)


@command(lambda: _lm().GenerateConfig, aliases={"-t": "temperature"})
def generate(
    run: Annotated[str, o.arg("A language-model run directory.")],
    prompt: Annotated[str | None, o.opt("--prompt", "-p", help="Prompt text (default: read stdin).")] = None,
    max_new_tokens: Annotated[int | None, o.opt("--max-new-tokens", "-n", help="Tokens to generate.")] = None,
    temperature: Annotated[float | None, o.opt("--temperature", help="Sampling temperature; 0 = greedy.")] = None,
    top_k: Annotated[int | None, o.opt("--top-k", help="Sample from the k most likely tokens only.")] = None,
    top_p: Annotated[float | None, o.opt("--top-p", help="Sample from the smallest set with this much probability "
                                         "(nucleus).")] = None,
    num_samples: Annotated[int | None, o.opt("--num-samples", help="Independent samples.")] = None,
    seed: Annotated[int | None, o.opt("--seed", help="Random seed: same seed, same text.")] = None,
    strict: Annotated[bool, o.opt("--strict", help="Refuse prompt characters the vocabulary lacks (default: warn "
                                  "and map them to <unk>).")] = False,
    device: Annotated[str | None, o.opt("--device", help="auto, cpu, cuda or mps.")] = None,
    *, job: Job,
) -> None:
    """Generate text from a language-model run, streamed to stdout as it is produced.

    Example: dlcli generate runs/ts --prompt "ROMEO:" -n 300 --temperature 0.8 --seed 1
    """
    from dlcli.lm.generate import generate

    if prompt is None and not job.print_config:
        prompt = sys.stdin.read()
        prompt = prompt.removesuffix("\n")  # `echo text |` adds one
    cfg = job.resolve(prompt=prompt)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    generate(cfg, write, warn=lambda m: c.err.print(f"warning: {m}", markup=False, highlight=False))


@command(lambda: _lm().EvaluateConfig)
def evaluate(
    run: Annotated[str, o.arg("A language-model run directory.")],
    ids: Annotated[str | None, o.opt("--ids", help="Id file made with the run's tokenizer.")] = None,
    text: Annotated[str | None, o.opt("--text", help="Raw text file, encoded with the run's tokenizer.")] = None,
    batch_size: Annotated[int | None, o.opt("--batch-size", "-b", help="Streams (default: the run's).")] = None,
    beam: Annotated[int | None, o.opt("--beam", help="Translation runs: beam size for the beam BLEU (1 = greedy "
                                      "only).")] = None,
    device: Annotated[str | None, o.opt("--device", help="auto, cpu, cuda or mps.")] = None,
    *, job: Job,
) -> None:
    """Evaluate a language-model or translation run on held-out data.

    Prints JSON on stdout: mean loss (nats/token), perplexity, bits per
    character (char-level runs) and the token count; for masked-LM runs the
    masked-token accuracy beside the majority baseline; for translation runs
    greedy and beam BLEU on the held-out pairs, cased (bleu_greedy, bleu_beam)
    with case-insensitive beside it (bleu_greedy_lowercase, ...; sacrebleu,
    both signatures included).

    Example: dlcli evaluate runs/ts --text held_out.txt
    """
    from dlcli.core import rundir
    from dlcli.lm.evaluate import evaluate as run_evaluate

    cfg = job.resolve()
    if rundir.read_meta(cfg.run).get("stage") == "translate":  # BLEU on the run's held-out pairs
        from dlcli.translation.run import evaluate_run

        with c.progress(job.quiet) as on_progress:
            out = evaluate_run(cfg.run, beam=cfg.beam, device=cfg.device, on_progress=on_progress)
        print(json.dumps({"run": cfg.run, **out}, indent=2))
        return
    with c.progress(job.quiet) as on_progress:
        out = run_evaluate(cfg, on_progress)
    print(json.dumps(out, indent=2))


@command(lambda: _lm().TrainTransformerConfig, options=LM | o.LORA, resume=True, switches=("task",))
def train_transformer(
    data__train: Annotated[str | None, o.opt("--data", "-d", help="Id file to train on (from 'dlcli vocab encode'); "
                                             "a parallel TSV with --task translate.")] = None,
    task: Annotated[str, o.opt("--task", help="lm (language model, default; --objective picks clm or mlm) or "
                               "translate (encoder-decoder on a source<TAB>target file, as 'dlcli translate "
                               "train').")] = "lm",
    model__n_layer: Annotated[int | None, _model("--layers", help="Transformer blocks.")] = None,
    model__n_head: Annotated[int | None, _model("--heads", help="Attention heads.")] = None,
    model__n_embd: Annotated[int | None, _model("--embd", help="Model width.")] = None,
    model__block_size: Annotated[int | None, _model("--block-size", help="Context length.")] = None,
    objective: Annotated[str | None, _model("--objective", help="clm (next token) or mlm (masked tokens, BERT-style; "
                                            "needs a <mask> token).")] = None,
    batch_size: Annotated[int | None, _train("--batch-size", "-b", help="Sequences per micro-batch.")] = None,
    grad_accum: Annotated[int | None, _train("--grad-accum", help="Micro-batches per step.")] = None,
    compile: Annotated[bool | None, _train("--compile/--no-compile", help="torch.compile the model.")] = None,
    init: Annotated[str | None, _model("--init", help="Start from a GPT run (trained here, an earlier stage or "
                                       "imported): its weights, model shape and tokenizer, which the id file must "
                                       "be encoded with; with --lora-rank only adapters train.")] = None,
    *, job: Job,
) -> None:
    """Train a GPT-style Transformer language model on an id file.

    Pre-LayerNorm blocks, causal multi-head self-attention (fused
    scaled_dot_product_attention), AdamW with warmup and cosine decay. Writes
    the same run directory as train-rnn; generate and evaluate work on it.

    Example: dlcli train-transformer --config configs/transformer-shakespeare-cpu.yaml -d ts.ids -o runs/gpt
    """
    if _task(task, "translate") == "translate":
        return translate.train_translator(job.renamed(AS_TRANSLATION, translate.config))
    from dlcli.lm.train import train_transformer

    job.run(train_transformer, _lm_line)
