"""Translation with an encoder-decoder Transformer: `dlcli train-transformer
--task translate` trains on a parallel TSV, `dlcli translate RUN` translates.

setup (read and check the TSV, hold out pairs, train a shared BPE tokenizer,
encode) -> the loop (length-bucketed batches, teacher forcing, label
smoothing) -> BLEU on the held-out pairs (sacrebleu) -> save.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.core import io, rundir
from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import ConfigError, InputError
from dlcli.models.seq2seq import Seq2SeqConfig
from dlcli.text import normalize as norm
from dlcli.training.optim import OptimConfig

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]  # <pad> is id 0
_SPACE_PUNCT = re.compile(r" ([,.!?])")


@dataclass
class ParallelData:
    tsv: str = ""  # source<TAB>target[<TAB>anything else]
    normalize: list[str] = field(default_factory=lambda: ["nmt", "lower"])
    held_out: int = 1000  # random pairs kept for BLEU
    vocab_size: int = 8000  # shared byte-level BPE
    limit: int = 0  # use only the first N pairs (0 = all)


def _optim() -> OptimConfig:
    return OptimConfig(lr=1e-3, weight_decay=0.01, beta1=0.9, beta2=0.98, warmup_steps=400, min_lr_ratio=0.05)


@dataclass
class TrainTranslateConfig:
    output: str = "runs/translate"
    data: ParallelData = field(default_factory=ParallelData)
    model: Seq2SeqConfig = field(default_factory=lambda: Seq2SeqConfig(share_embeddings=True))
    optim: OptimConfig = field(default_factory=_optim)
    batch_size: int = 128  # sentence pairs per batch
    label_smoothing: float = 0.1
    max_steps: int = 0
    epochs: float = 0.0
    max_time: str = "20m"
    log_interval: int = 20
    seed: int = 1337
    device: str = "auto"
    strict: bool = False  # sentences longer than model.max_len: error instead of truncating

    def validate(self) -> None:
        if not self.data.tsv:
            raise ConfigError("data.tsv: give a parallel TSV file (source<TAB>target per line)")
        norm.check_steps(self.data.normalize)
        if self.model.n_embd % self.model.n_head:
            raise ConfigError(f"model.n_head: {self.model.n_head} heads do not divide model.n_embd "
                              f"{self.model.n_embd}")
        if not (self.max_steps or self.epochs or self.max_time):
            raise ConfigError("no budget: set max_steps, epochs or max_time")
        self.optim.validate()


def read_pairs(path: str, steps: list[str], limit: int = 0) -> list[tuple[str, str]]:
    """Normalised (source, target) pairs; a line without a tab or with an
    empty side is an error that names the line."""
    io.check_text_file(path, "TSV")
    checker = io.TextChecker(path)
    text = "".join(checker.decode(c) for c in io.read_chunks(path))
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise InputError(f"{path}: line {n} has no tab (expected source<TAB>target)")
        src, tgt = norm.normalize(cols[0], steps).strip(), norm.normalize(cols[1], steps).strip()
        if not src or not tgt:
            raise InputError(f"{path}: line {n} has an empty {'source' if not src else 'target'}")
        pairs.append((src, tgt))
        if limit and len(pairs) >= limit:
            break
    if len(pairs) < 2:
        raise InputError(f"{path}: needs at least 2 sentence pairs, found {len(pairs)}")
    return pairs


def encode_sentences(tok: Any, sents: list[str], max_len: int, strict: bool, what: str) -> tuple[list[list[int]], int]:
    """Token ids (without bos/eos), cut to max_len - 1; returns how many were cut."""
    ids = [e.ids for e in tok.encode_batch(sents, add_special_tokens=False)]
    cut = sum(len(x) > max_len - 1 for x in ids)
    if cut and strict:
        first = next(i for i, x in enumerate(ids) if len(x) > max_len - 1)
        raise InputError(f"{what} sentence {first + 1} has {len(ids[first])} tokens, more than model.max_len - 1 = "
                         f"{max_len - 1} (drop --strict to truncate)")
    return [x[: max_len - 1] for x in ids], cut


def bucket_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), in random order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(rows: list[list[int]], pad: int = 0) -> Any:
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def translate_ids(model: Any, src: list[list[int]], device: Any, batch_size: int = 64, beam: int = 1,
                  length_penalty: float = 0.6) -> list[list[int]]:
    """Greedy (beam = 1) or beam-search translations, batched by length."""
    import torch

    bos, eos = SPECIALS.index("<bos>"), SPECIALS.index("<eos>")
    out: list[list[int] | None] = [None] * len(src)
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    model.eval()
    with torch.no_grad():
        for i in range(0, len(order), batch_size):
            idx = order[i: i + batch_size]
            batch = _pad([src[j] + [eos] for j in idx]).to(device)
            if beam <= 1:
                res = model.greedy(batch, bos, eos)
            else:
                res = [beam_search(model, batch[k: k + 1], bos, eos, beam, length_penalty) for k in range(len(idx))]
            for j, r in zip(idx, res):
                out[j] = r
    return [r or [] for r in out]


def beam_search(model: Any, src: Any, bos: int, eos: int, beam: int, alpha: float) -> list[int]:
    """Beam search for one sentence with the GNMT length penalty ((5 + len) / 6) ** alpha."""
    import torch

    memory, pad = model.encode(src)
    beams: list[tuple[list[int], float]] = [([bos], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(model.cfg.max_len - 1):
        seqs = torch.tensor([b for b, _ in beams], device=src.device)
        logits, _ = model.decode(seqs, memory.expand(len(beams), -1, -1), pad.expand(len(beams), -1))
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
        scores = torch.tensor([s for _, s in beams], device=src.device)[:, None] + logp
        top = torch.topk(scores.view(-1), min(beam, scores.numel()))
        v = logp.size(-1)
        beams = []
        for s, flat in zip(top.values.tolist(), top.indices.tolist()):
            prev, tok = flat // v, flat % v
            seq = seqs[prev].tolist() + [tok]
            (finished if tok == eos else beams).append((seq, s))
        if not beams or len(finished) >= beam:
            break
    pool = finished or beams
    best = max(pool, key=lambda bs: bs[1] / (((5 + len(bs[0])) / 6) ** alpha))
    return [t for t in best[0][1:] if t != eos]


def detokenize(s: str) -> str:
    """Undo the nmt normaliser's space before punctuation, for BLEU on plain text."""
    return _SPACE_PUNCT.sub(r"\1", s)


def bleu(hyps: list[str], refs: list[str]) -> tuple[float, str]:
    """Corpus BLEU (sacrebleu, 13a tokenisation) of detokenised text, and sacrebleu's signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="13a")
    score = metric.corpus_score([detokenize(h) for h in hyps], [[detokenize(r) for r in refs]])
    return float(score.score), str(metric.get_signature())


def train(cfg: TrainTranslateConfig, force: bool = False, resume: bool = False,
          on_progress: OnProgress = nothing) -> dict[str, Any]:
    import torch

    from dlcli.core.runtime import parse_duration, resolve_device, seed_everything
    from dlcli.models.seq2seq import Seq2Seq
    from dlcli.text import vocabulary
    from dlcli.training.optim import build_optimizer, lr_at, set_lr
    from dlcli.training.plots import plot_curves

    cfg.validate()
    if resume:
        raise ConfigError("--resume is not supported for translation runs yet")
    device = resolve_device(cfg.device)
    pairs = read_pairs(cfg.data.tsv, cfg.data.normalize, cfg.data.limit)
    rng = random.Random(cfg.seed)
    held = set(rng.sample(range(len(pairs)), min(cfg.data.held_out, len(pairs) // 2)))
    train_pairs = [p for i, p in enumerate(pairs) if i not in held]
    test_pairs = [p for i, p in enumerate(pairs) if i in held]
    run = rundir.create(cfg.output, cfg, "translate", [cfg.data.tsv], force=force)
    texts = iter([s for p in train_pairs for s in p])
    tok = vocabulary.train_subword(texts, "bpe", cfg.data.vocab_size, SPECIALS, [], min_freq=2)
    (run / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    cfg.model.src_vocab_size = cfg.model.tgt_vocab_size = tok.get_vocab_size()
    cfg.model.pad_id = 0
    rundir.create(run, cfg, "translate", [cfg.data.tsv], resume=True)  # record the filled-in sizes
    with open(run / "heldout.tsv", "w", encoding="utf-8") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in test_pairs)
    ml = cfg.model.max_len
    src_ids, cut_s = encode_sentences(tok, [s for s, _ in train_pairs], ml, cfg.strict, "source")
    tgt_ids, cut_t = encode_sentences(tok, [t for _, t in train_pairs], ml, cfg.strict, "target")
    bos, eos = SPECIALS.index("<bos>"), SPECIALS.index("<eos>")

    seed_everything(cfg.seed)
    model = Seq2Seq(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    max_time = parse_duration(cfg.max_time) if cfg.max_time else 0.0
    steps_per_epoch = math.ceil(len(src_ids) / cfg.batch_size)
    budget = min(s for s in (cfg.max_steps, int(cfg.epochs * steps_per_epoch)) if s) if (
        cfg.max_steps or cfg.epochs) else 0
    metrics = rundir.MetricsLog(run)
    history: list[dict[str, Any]] = []
    step, epoch, t0 = 0, 0, time.perf_counter()
    window, wsum, wt = 0, 0.0, t0
    model.train()
    done = False
    while not done:
        for batch in bucket_batches([len(x) for x in src_ids], cfg.batch_size, random.Random(cfg.seed + epoch)):
            elapsed = time.perf_counter() - t0
            if (budget and step >= budget) or (max_time and elapsed >= max_time):
                done = True
                break
            progress = step / budget if budget else (elapsed / max_time if max_time else None)
            set_lr(optimizer, lr := lr_at(step, cfg.optim, progress))
            src = _pad([src_ids[i] + [eos] for i in batch]).to(device)
            tgt_in = _pad([[bos] + tgt_ids[i] for i in batch]).to(device)  # teacher forcing: shifted right
            tgt_out = _pad([tgt_ids[i] + [eos] for i in batch]).to(device)
            _, loss = model(src, tgt_in, tgt_out, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            window += 1
            wsum += float(loss.detach())
            if step % cfg.log_interval == 0:
                mean = wsum / window
                if not math.isfinite(mean):
                    from dlcli.errors import TrainingDiverged

                    raise TrainingDiverged(f"loss became {mean} at step {step}; try a lower optim.lr")
                now = time.perf_counter()
                rec = {"step": step, "epoch": epoch, "lr": lr, "loss": mean, "sentences_per_s":
                       window * cfg.batch_size / (now - wt), "elapsed": now - t0}
                metrics.log(**rec)
                history.append(rec)
                total = budget or (int(step * max_time / max(now - t0, 1e-9)) if max_time else None)
                on_progress(Tick("train", step, total, unit="step", metrics={"loss": mean, "sent/s": int(
                    rec["sentences_per_s"])}))
                window, wsum, wt = 0, 0.0, now
        epoch += 1
    rundir.save_tensors(model.state_dict(), run / "model.safetensors")
    plot_curves(history, run / "loss.png", {"loss": "train (label-smoothed)"}, "loss", "translation")
    result = evaluate_run(run, device=str(device))
    metrics.log(step=step, **{k: v for k, v in result.items() if isinstance(v, (int, float))})
    metrics.close()
    result.update({"run": str(run), "steps": step, "epochs": epoch, "pairs": len(train_pairs),
                   "truncated": cut_s + cut_t, "elapsed": time.perf_counter() - t0})
    (run / "bleu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def open_translation_run(path: str | Path, device: str = "auto") -> tuple[Any, Any, Any, Any]:
    """(model, tokenizer, config, device) of a translation run."""
    from dlcli.core.runtime import resolve_device
    from dlcli.lmrun import read_config
    from dlcli.models.seq2seq import Seq2Seq
    from dlcli.text import vocabulary

    run = Path(path)
    meta = rundir.read_meta(run)
    if meta.get("stage") != "translate":
        raise InputError(f"{run}: a '{meta.get('stage')}' run is not a translation model")
    cfg = read_config(run, TrainTranslateConfig)
    tok = vocabulary.load(run / "tokenizer.json")
    dev = resolve_device(device)
    model = Seq2Seq(cfg.model)
    rundir.load_weights(model, run / "model.safetensors")
    return model.to(dev).eval(), tok, cfg, dev


def translate_lines(run: str | Path | tuple, lines: list[str], beam: int = 1, length_penalty: float = 0.6,
                    device: str = "auto", strict: bool = False) -> tuple[list[str], int]:
    """Translate raw sentences with a run (a path, or what `open_translation_run`
    returned); returns the translations and how many were truncated."""
    model, tok, cfg, dev = run if isinstance(run, tuple) else open_translation_run(run, device)
    sents = [norm.normalize(s, cfg.data.normalize).strip() for s in lines]
    ids, cut = encode_sentences(tok, sents, cfg.model.max_len, strict, "input")
    out = translate_ids(model, ids, dev, beam=beam, length_penalty=length_penalty)
    return [detokenize(tok.decode(o, skip_special_tokens=True).strip()) for o in out], cut


def evaluate_run(run: str | Path, beam: int = 1, device: str = "auto", limit: int = 0) -> dict[str, Any]:
    """BLEU of a translation run on its held-out pairs (greedy, and beam when asked)."""
    run = Path(run)
    rows = [ln.split("\t") for ln in (run / "heldout.tsv").read_text(encoding="utf-8").splitlines() if ln]
    rows = rows[:limit] if limit else rows
    src, ref = [r[0] for r in rows], [r[1] for r in rows]
    loaded = open_translation_run(run, device)
    t0 = time.perf_counter()
    hyp, _ = translate_lines(loaded, src, 1)
    dt = time.perf_counter() - t0
    score, sig = bleu(hyp, ref)
    out: dict[str, Any] = {"held_out": len(rows), "bleu_greedy": score, "sentences_per_s_greedy": len(rows) / dt,
                           "signature": sig}
    if beam > 1:
        t0 = time.perf_counter()
        hyp_b, _ = translate_lines(loaded, src, beam)
        out["bleu_beam"] = bleu(hyp_b, ref)[0]
        out["beam"] = beam
        out["sentences_per_s_beam"] = len(rows) / (time.perf_counter() - t0)
    return out


def plot_attention(run: str | Path, sentences: list[str], out_dir: str | Path, device: str = "auto",
                   force: bool = False) -> list[str]:
    """Heatmaps (PNG) of the last layer's encoder self-attention and decoder
    cross-attention, averaged over heads, for each sentence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from dlcli.core.io import atomic_write

    model, tok, cfg, dev = open_translation_run(run, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bos, eos = SPECIALS.index("<bos>"), SPECIALS.index("<eos>")
    written = []
    for n, sent in enumerate(sentences, 1):
        s = norm.normalize(sent, cfg.data.normalize).strip()
        (src_ids,), _ = encode_sentences(tok, [s], cfg.model.max_len, False, "input")
        src = torch.tensor([src_ids + [eos]], device=dev)
        hyp = model.greedy(src, bos, eos)[0]
        tgt_in = torch.tensor([[bos] + hyp], device=dev)
        enc, cross = model.attention_maps(src, tgt_in)
        label = [tok.decode([i]).strip() or "_" for i in src_ids] + ["</s>"]
        hyp_label = ["<s>"] + [tok.decode([i]).strip() or "_" for i in hyp]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=100)
        for ax, w, ys, title in ((axes[0], enc[-1], label, "encoder self-attention"),
                                 (axes[1], cross[-1], hyp_label, "decoder cross-attention")):
            m = w[0].mean(0).cpu().numpy()  # average over heads
            ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(float(m.max()), 1e-6))
            ax.set_xticks(range(len(label)), label, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(range(len(ys)), ys, fontsize=8)
            ax.set_title(title)
        fig.suptitle(f"{sent}  ->  {detokenize(tok.decode(hyp, skip_special_tokens=True).strip())}", fontsize=9)
        fig.tight_layout()
        path = out / f"attention-{n}.png"
        with atomic_write(path, force=force) as f:
            fig.savefig(f, format="png")
        plt.close(fig)
        written.append(str(path))
    return written
