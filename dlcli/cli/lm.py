"""`dlcli train-rnn`, `dlcli generate`, `dlcli evaluate`."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from dlcli.cli import common as c

MODEL = c.MODEL
TRAIN = c.TRAIN


FORECAST = "Time series (--task forecast)"


InitEmbeddingsOpt = Annotated[Optional[str], typer.Option(
    "--init-embeddings", help="Initialise the input embedding from word vectors: a 'dlcli embed' run or a .vec/.bin "
    "file (rows matched by token; coverage is reported).", rich_help_panel=MODEL, show_default=False)]


def _coverage(summary: dict, quiet: bool) -> None:
    cov = summary.get("init_embeddings")
    if cov:
        c.info(f"initialised {cov['covered']:,} of {cov['total']:,} embedding rows ({100 * cov['coverage']:.1f}%) "
               f"from {cov['path']}", quiet)


def train_rnn(
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Id file to train on (from 'dlcli vocab "
                                                "encode'); a CSV with --task forecast.", show_default=False)] = None,
    task: Annotated[str, typer.Option("--task", help="lm (language model) or forecast (time series).")] = "lm",
    val: Annotated[Optional[str], typer.Option("--val", help="Validation id file (default: the last 10% of "
                                               "--data).", show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory (default runs/rnn).",
                                                  show_default=False)] = None,
    cell: Annotated[Optional[str], typer.Option("--cell", help="rnn, gru or lstm (default lstm); for forecasts "
                                                "also the baselines linear and mlp (default mlp).",
                                                rich_help_panel=MODEL, show_default=False)] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Stacked layers (default 2).",
                                                  rich_help_panel=MODEL, show_default=False)] = None,
    hidden: Annotated[Optional[int], typer.Option("--hidden", help="Hidden size (default 256).",
                                                  rich_help_panel=MODEL, show_default=False)] = None,
    embd: Annotated[Optional[int], typer.Option("--embd", help="Embedding size; 0 = one-hot inputs (default 0).",
                                                rich_help_panel=MODEL, show_default=False)] = None,
    dropout: Annotated[Optional[float], typer.Option("--dropout", help="Dropout (default 0).",
                                                     rich_help_panel=MODEL, show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Sequences per batch "
                                                      "(default 32).", rich_help_panel=TRAIN,
                                                      show_default=False)] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="Truncated BPTT length (default 64).",
                                                   rich_help_panel=TRAIN, show_default=False)] = None,
    sampling: Annotated[Optional[str], typer.Option("--sampling", help="sequential (state carried) or random "
                                                    "(default sequential).", rich_help_panel=TRAIN,
                                                    show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default 2e-3).",
                                                rich_help_panel=TRAIN, show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Step budget (default 2000; 0 = none).",
                                                     rich_help_panel=TRAIN, show_default=False)] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Epoch budget.", rich_help_panel=TRAIN,
                                                    show_default=False)] = None,
    max_time: c.MaxTimeOpt = None,
    precision: c.PrecisionOpt = None,
    init_embeddings: InitEmbeddingsOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 1337).",
                                                rich_help_panel=TRAIN, show_default=False)] = None,
    device: c.DeviceOpt = None,
    column: Annotated[Optional[str], typer.Option("--column", help="Series to forecast (default: the first "
                                                  "numeric column).", rich_help_panel=FORECAST,
                                                  show_default=False)] = None,
    tau: Annotated[Optional[int], typer.Option("--tau", help="Window: predict x_t from the tau values before "
                                               "it (default 4).", rich_help_panel=FORECAST,
                                               show_default=False)] = None,
    n_train: Annotated[Optional[int], typer.Option("--n-train", help="Points used for training (default 600).",
                                                   rich_help_panel=FORECAST, show_default=False)] = None,
    horizons: Annotated[Optional[str], typer.Option("--horizons", help="k-step horizons, e.g. 1,4,16,64.",
                                                    rich_help_panel=FORECAST, show_default=False)] = None,
    resume: c.ResumeOpt = False,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Train an RNN, GRU or LSTM language model on an id file (or a forecaster on a CSV).

    Writes a run directory: config.yaml, tokenizer.json, model.safetensors,
    checkpoint, metrics.jsonl and perplexity.png. Runs unchanged under
    torchrun (DDP, gloo on CPU, nccl on GPU).

    Example: dlcli train-rnn -d ts.ids -o runs/ts --cell lstm --hidden 256 --max-time 10m

    Example: dlcli train-rnn --task forecast -d sample_data/sine.csv --cell gru --tau 4 -o runs/sine
    """
    with c.errors(debug):
        if task == "forecast":
            from dlcli.forecast.config import TimeSeriesConfig
            from dlcli.forecast.train import train as train_forecast

            ts_flags = {"data": data, "output": output, "model": cell, "hidden": hidden, "layers": layers,
                        "epochs": int(epochs) if epochs is not None else None, "batch_size": batch_size, "lr": lr,
                        "seed": seed, "device": device, "column": column, "tau": tau, "n_train": n_train,
                        "horizons": horizons}
            tcfg = c.resolve(TimeSeriesConfig, config, set_, ts_flags, print_config)
            with c.progress(quiet) as on_progress:
                s = train_forecast(tcfg, force=force, resume=resume, on_progress=on_progress)
            mse = s["test"]["mse"]
            c.info(f"held-out MSE, 1-step {s['test']['mse_1step']:.4f}; "
                   + "".join(f", {k}-step {v:.4f}" for k, v in mse.items() if str(k) != "1"), quiet)
            c.result(s["run"])
            return
        if task != "lm":
            raise c.fail(f"--task: '{task}' is not one of lm, forecast", 2)
        from dlcli.lm.config import TrainRNNConfig
        from dlcli.lm.train import train_rnn

        flags = {"data.train": data, "data.val": val, "output": output, "model.cell": cell,
                 "model.n_layer": layers, "model.n_hidden": hidden, "model.n_embd": embd, "model.dropout": dropout,
                 "batch_size": batch_size, "seq_len": seq_len, "sampling": sampling, "optim.lr": lr,
                 "max_steps": max_steps, "epochs": epochs, "max_time": max_time, "seed": seed, "device": device,
                 "init_embeddings": init_embeddings, "precision": precision}
        cfg = c.resolve(TrainRNNConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = train_rnn(cfg, force=force, resume=resume, on_progress=on_progress)
        _coverage(s, quiet)
        c.info(f"{s['steps']:,} steps ({s['epochs']:.2f} epochs) in {s['elapsed']:.0f} s; validation loss "
               f"{s['val_loss']:.4f}, perplexity {s['val_ppl']:.3f}; {s['precision']}", quiet)
        c.result(s["run"])


def generate(
    run: Annotated[str, typer.Argument(help="A language-model run directory.")],
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="Prompt text (default: read stdin).",
                                                  show_default=False)] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", "-n", help="Tokens to generate "
                                                          "(default 200).", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", "-t", help="Sampling temperature; 0 = "
                                                         "greedy (default 1).", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Sample from the k most likely tokens only.",
                                                 show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Sample from the smallest set with this much "
                                                   "probability (nucleus).", show_default=False)] = None,
    num_samples: Annotated[Optional[int], typer.Option("--num-samples", help="Independent samples (default 1).",
                                                       show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed: same seed, same text.",
                                                show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse prompt characters the vocabulary lacks "
                                         "(default: warn and map them to <unk>).")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps.",
                                                  show_default=False)] = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Generate text from a language-model run, streamed to stdout as it is produced.

    Example: dlcli generate runs/ts --prompt "ROMEO:" -n 300 --temperature 0.8 --seed 1
    """
    with c.errors(debug):
        from dlcli.lm.generate import GenerateConfig
        from dlcli.lm.generate import generate as run_generate

        if prompt is None and not print_config:
            prompt = sys.stdin.read()
            prompt = prompt[:-1] if prompt.endswith("\n") else prompt  # `echo text |` adds one
        flags = {"run": run, "prompt": prompt, "max_new_tokens": max_new_tokens, "temperature": temperature,
                 "top_k": top_k, "top_p": top_p, "num_samples": num_samples, "seed": seed,
                 "strict": strict or None, "device": device}
        cfg = c.resolve(GenerateConfig, config, set_, flags, print_config)

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        run_generate(cfg, write, warn=lambda m: c.err.print(f"warning: {m}", markup=False, highlight=False))


def evaluate(
    run: Annotated[str, typer.Argument(help="A language-model run directory.")],
    ids: Annotated[Optional[str], typer.Option("--ids", help="Id file made with the run's tokenizer.",
                                               show_default=False)] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="Raw text file, encoded with the run's tokenizer.",
                                                show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Streams (default: the run's).",
                                                      show_default=False)] = None,
    beam: Annotated[Optional[int], typer.Option("--beam", help="Translation runs: beam size for the beam BLEU "
                                                "(default 4; 1 = greedy only).", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps.",
                                                  show_default=False)] = None,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Evaluate a language-model or translation run on held-out data.

    Prints JSON on stdout: mean loss (nats/token), perplexity, bits per
    character (char-level runs) and the token count; for masked-LM runs the
    masked-token accuracy beside the majority baseline; for translation runs
    greedy and beam BLEU on the held-out pairs (sacrebleu, signature included).

    Example: dlcli evaluate runs/ts --text held_out.txt
    """
    with c.errors(debug):
        from dlcli.core import rundir
        from dlcli.lm.evaluate import EvaluateConfig
        from dlcli.lm.evaluate import evaluate as run_evaluate

        flags = {"run": run, "ids": ids, "text": text, "batch_size": batch_size, "beam": beam, "device": device}
        cfg = c.resolve(EvaluateConfig, config, set_, flags, print_config)
        if rundir.read_meta(cfg.run).get("stage") == "translate":  # BLEU on the run's held-out pairs
            from dlcli.translation import evaluate_run

            print(json.dumps({"run": cfg.run, **evaluate_run(cfg.run, beam=cfg.beam, device=cfg.device)}, indent=2))
            return
        print(json.dumps(run_evaluate(cfg), indent=2))


def forecast(
    run: Annotated[str, typer.Argument(help="A run from 'dlcli train-rnn --task forecast'.")],
    data: Annotated[Optional[str], typer.Argument(help="CSV to forecast (default: the one it was trained on).",
                                                  show_default=False)] = None,
    horizons: Annotated[Optional[str], typer.Option("--horizons", help="k-step horizons, e.g. 1,4,16,64.",
                                                    show_default=False)] = None,
    column: Annotated[Optional[str], typer.Option("--column", help="Series column (default: the run's).",
                                                  show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Write the predictions CSV here.",
                                                  show_default=False)] = None,
    device: c.UseDeviceOpt = "auto",
    force: c.ForceOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Forecast a series with a trained time-series run: 1-step and k-step-ahead.

    Prints JSON on stdout: the MSE per horizon (and the forecast past the end).

    Example: dlcli forecast runs/sine --horizons 1,4,16,64 -o predictions.csv
    """
    with c.errors(debug):
        from dlcli.forecast.predict import predict

        ks = None
        if horizons:
            try:
                ks = [int(k) for k in horizons.split(",") if k.strip()]
            except ValueError:
                raise c.fail(f"--horizons: '{horizons}' is not a comma-separated list of integers", 2) from None
        out = predict(run, data, ks, output=output, force=force, column=column, device=device)
        print(json.dumps(out, indent=2, default=str))


def train_transformer(
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Id file to train on (from 'dlcli vocab "
                                                "encode'); a parallel TSV with --task translate.",
                                                show_default=False)] = None,
    task: Annotated[str, typer.Option("--task", help="lm (language model; --objective picks clm or mlm) or "
                                      "translate (encoder-decoder on a source<TAB>target file).")] = "lm",
    val: Annotated[Optional[str], typer.Option("--val", help="Validation id file (default: the last 10% of "
                                               "--data).", show_default=False)] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Run directory (default runs/gpt).",
                                                  show_default=False)] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Transformer blocks (default 4).",
                                                  rich_help_panel=MODEL, show_default=False)] = None,
    heads: Annotated[Optional[int], typer.Option("--heads", help="Attention heads (default 4).",
                                                 rich_help_panel=MODEL, show_default=False)] = None,
    embd: Annotated[Optional[int], typer.Option("--embd", help="Model width (default 128).", rich_help_panel=MODEL,
                                                show_default=False)] = None,
    block_size: Annotated[Optional[int], typer.Option("--block-size", help="Context length (default 64).",
                                                      rich_help_panel=MODEL, show_default=False)] = None,
    dropout: Annotated[Optional[float], typer.Option("--dropout", help="Dropout (default 0).",
                                                     rich_help_panel=MODEL, show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Sequences per micro-batch "
                                                      "(default 12).", rich_help_panel=TRAIN,
                                                      show_default=False)] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Micro-batches per step (default 1).",
                                                      rich_help_panel=TRAIN, show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default 1e-3).",
                                                rich_help_panel=TRAIN, show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Step budget (default 2000; 0 = none).",
                                                     rich_help_panel=TRAIN, show_default=False)] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Epoch budget.", rich_help_panel=TRAIN,
                                                    show_default=False)] = None,
    max_time: c.MaxTimeOpt = None,
    precision: c.PrecisionOpt = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the model.",
                                                    rich_help_panel=TRAIN, show_default=False)] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="clm (next token, default) or mlm "
                                                     "(masked tokens, BERT-style; needs a <mask> token).",
                                                     rich_help_panel=MODEL, show_default=False)] = None,
    init_embeddings: InitEmbeddingsOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 1337).",
                                                rich_help_panel=TRAIN, show_default=False)] = None,
    device: c.DeviceOpt = None,
    resume: c.ResumeOpt = False,
    config: c.ConfigOpt = None,
    set_: c.SetOpt = None,
    print_config: c.PrintConfigOpt = False,
    force: c.ForceOpt = False,
    quiet: c.QuietOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Train a GPT-style Transformer language model on an id file.

    Pre-LayerNorm blocks, causal multi-head self-attention (fused
    scaled_dot_product_attention), AdamW with warmup and cosine decay. Writes
    the same run directory as train-rnn; generate and evaluate work on it.

    Example: dlcli train-transformer --config configs/transformer-shakespeare-cpu.yaml -d ts.ids -o runs/gpt
    """
    with c.errors(debug):
        if task == "translate":
            from dlcli import translation as tr

            tflags = {"data.tsv": data, "output": output, "model.n_layer": layers, "model.n_head": heads,
                      "model.n_embd": embd, "model.max_len": block_size, "model.dropout": dropout,
                      "batch_size": batch_size, "optim.lr": lr, "max_steps": max_steps, "epochs": epochs,
                      "max_time": max_time, "seed": seed, "device": device, "precision": precision}
            tcfg = c.resolve(tr.TrainTranslateConfig, config, set_, tflags, print_config)
            with c.progress(quiet) as on_progress:
                s = tr.train(tcfg, force=force, resume=resume, on_progress=on_progress)
            if not s:  # a DDP process other than the main one: the main one reports
                return
            if s["truncated"]:
                c.err.print(f"warning: {s['truncated']:,} training sentences were longer than model.max_len and "
                            "were truncated", markup=False, highlight=False)
            c.info(f"{s['steps']:,} steps in {s['elapsed']:.0f} s; held-out BLEU (greedy) {s['bleu_greedy']:.2f} "
                   f"on {s['held_out']:,} pairs [{s['signature']}]; {s['precision']}", quiet)
            c.result(s["run"])
            return
        if task != "lm":
            raise c.fail(f"--task: '{task}' is not one of lm, translate", 2)
        from dlcli.lm.config import TrainTransformerConfig
        from dlcli.lm.train import train_transformer

        flags = {"data.train": data, "data.val": val, "output": output, "model.n_layer": layers,
                 "model.n_head": heads, "model.n_embd": embd, "model.block_size": block_size,
                 "model.dropout": dropout, "batch_size": batch_size, "grad_accum": grad_accum, "optim.lr": lr,
                 "max_steps": max_steps, "epochs": epochs, "max_time": max_time, "precision": precision,
                 "compile": compile, "objective": objective, "seed": seed, "device": device,
                 "init_embeddings": init_embeddings}
        cfg = c.resolve(TrainTransformerConfig, config, set_, flags, print_config)
        with c.progress(quiet) as on_progress:
            s = train_transformer(cfg, force=force, resume=resume, on_progress=on_progress)
        _coverage(s, quiet)
        c.info(f"{s['steps']:,} steps ({s['epochs']:.2f} epochs, {s['params']:,} parameters) in {s['elapsed']:.0f} s;"
               f" validation loss {s['val_loss']:.4f}, perplexity {s['val_ppl']:.3f}; {s['precision']}", quiet)
        c.result(s["run"])


def translate(
    run: Annotated[str, typer.Argument(help="A run from 'dlcli train-transformer --task translate'.")],
    input: Annotated[str, typer.Argument(help="Sentences, one per line, or - for stdin.")] = "-",
    output: Annotated[str, typer.Option("--output", "-o", help="Where translations go (default stdout).")] = "-",
    beam: Annotated[int, typer.Option("--beam", help="Beam size; 1 = greedy.")] = 1,
    length_penalty: Annotated[float, typer.Option("--length-penalty", help="GNMT length penalty alpha for beam "
                                                  "search.")] = 0.6,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse sentences longer than the model's maximum "
                                         "(default: truncate with a warning).")] = False,
    plot_attention: Annotated[Optional[str], typer.Option("--plot-attention", help="Also draw encoder "
                                                          "self-attention and decoder cross-attention heatmaps of "
                                                          "the first 8 sentences into this folder.",
                                                          show_default=False)] = None,
    device: c.UseDeviceOpt = "auto",
    force: c.ForceOpt = False,
    debug: c.DebugOpt = False,
) -> None:
    """Translate sentences with a translation run, one output line per input line.

    Example: echo "I am cold." | dlcli translate runs/fra
    """
    with c.errors(debug):
        from dlcli.core import io
        from dlcli.translation import translate_lines

        if input == "-":
            text = sys.stdin.read()
        else:
            io.check_text_file(input)
            text = "".join(io.TextChecker(input).decode(ch) for ch in io.read_chunks(input))
        lines = text.splitlines()
        out, cut = translate_lines(run, lines, beam, length_penalty, device, strict)
        if cut:
            c.err.print(f"warning: {cut} input sentences were longer than the model's maximum and were truncated",
                        markup=False, highlight=False)
        with io.open_output(output, force) as f:
            f.write(("\n".join(out) + ("\n" if out else "")).encode("utf-8"))
        if plot_attention:
            from dlcli.translation.attention import plot_attention as draw

            for path in draw(run, lines[:8], plot_attention, device, force):
                c.err.print(f"wrote {path}", markup=False, highlight=False)
