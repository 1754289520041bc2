"""Benchmark: preprocess + vocab build + encode, dlcli against two peers.

The corpus is Tiny Shakespeare repeated to the requested size. Each method
runs as its own process tree; wall time includes process start-up, and peak
RSS is the largest sum of RSS over the tree (sampled every 50 ms), so worker
processes count.

    peer (a)  plain Python in the d2l style: re.sub + split + Counter, then a
              list of ints (two passes over the file, one process)
    peer (b)  Hugging Face tokenizers called directly: WordLevel with a d2l
              normaliser, trained then encoding 64 KB chunks
    dlcli     the three commands, token stream and id file on disk

Usage: python bench/text_pipeline.py [--mb 100] [--only dlcli] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"

PLAIN_PYTHON = r"""
import re, sys, collections
path = sys.argv[1]
counter = collections.Counter()
with open(path, encoding="utf-8") as f:
    for line in f:
        counter.update(re.sub("[^A-Za-z]+", " ", line).strip().lower().split())
vocab = {t: i for i, (t, _) in enumerate(counter.most_common(), 1)}  # 0 = <unk>
corpus = []
with open(path, encoding="utf-8") as f:
    for line in f:
        corpus.extend(vocab.get(t, 0) for t in re.sub("[^A-Za-z]+", " ", line).strip().lower().split())
print(len(vocab) + 1, len(corpus))
"""

HF_DIRECT = r"""
import sys
import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
path = sys.argv[1]
def chunks():
    with open(path, encoding="utf-8") as f:
        while True:
            block = f.read(1 << 16)
            if not block:
                return
            yield block + f.readline()
tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex("[^A-Za-z]+"), " "), normalizers.Lowercase()])
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok.train_from_iterator(chunks(), trainers.WordLevelTrainer(special_tokens=["<unk>"], show_progress=False))
n = 0
parts = []
batch = []
for c in chunks():
    batch.append(c)
    if len(batch) == 64:
        parts += [np.asarray(e.ids, dtype=np.uint16) for e in tok.encode_batch_fast(batch)]
        batch = []
parts += [np.asarray(e.ids, dtype=np.uint16) for e in tok.encode_batch_fast(batch)]
print(tok.get_vocab_size(), sum(p.size for p in parts))
"""


def tree_rss_kb(pid: int) -> int:
    """RSS (kB) of a process and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


def measure(cmd: list[str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, peak tree RSS (MB), stdout of one command."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while p.poll() is None:
        peak = max(peak, tree_rss_kb(p.pid))
        time.sleep(0.05)
    out, err = p.communicate()
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return dt, peak // 1024, out


def make_corpus(path: Path, mb: int) -> int:
    src = (DATA / "tinyshakespeare.txt").read_bytes()
    with open(path, "wb") as f:
        n = 0
        while n < mb * 1_000_000:
            f.write(src)
            n += len(src)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=100, help="corpus size in MB (default 100)")
    ap.add_argument("--only", choices=["dlcli", "all"], default="all")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="dlcli-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    size = make_corpus(corpus, args.mb)
    mb = size / 1e6
    py = sys.executable
    dlcli = [py, "-m", "dlcli"]
    print(f"corpus: {mb:.1f} MB (Tiny Shakespeare repeated), {os.cpu_count()} CPUs, word level, d2l normalisation")
    rows = []
    if args.only == "all":
        t, rss, out = measure([py, "-c", PLAIN_PYTHON, str(corpus)], work)
        rows.append(("plain Python (d2l style)", t, rss, out.split()))
        t, rss, out = measure([py, "-c", HF_DIRECT, str(corpus)], work)
        rows.append(("HF tokenizers direct", t, rss, out.split()))
    steps = [
        [*dlcli, "preprocess", "corpus.txt", "-n", "d2l", "-l", "word", "-o", "corpus.tok", "-q", "--force"],
        [*dlcli, "vocab", "build", "corpus.tok", "-o", "tok.json", "-q", "--force"],
        [*dlcli, "vocab", "encode", "corpus.tok", "-t", "tok.json", "-o", "corpus.ids", "-q", "--force"],
    ]
    total_t, peak = 0.0, 0
    for cmd in steps:
        t, rss, _ = measure(cmd, work)
        print(f"  dlcli {cmd[3]:<10} {cmd[4] if cmd[3] == 'vocab' else '':<6} {t:6.2f} s  {rss:5d} MB peak RSS")
        total_t += t
        peak = max(peak, rss)
    import json

    meta = json.loads((work / "corpus.ids.json").read_text())
    rows.append(("dlcli (3 commands)", total_t, peak, [meta["vocab_size"], meta["count"]]))

    print(f"\n{'method':<26} {'seconds':>8} {'MB/s':>7} {'peak RSS':>9} {'vocab':>7} {'tokens':>11} {'speed-up':>9}")
    base = rows[0][1] if args.only == "all" else None
    for name, t, rss, (v, n) in rows:
        ratio = f"{base / t:8.2f}x" if base else ""
        print(f"{name:<26} {t:8.2f} {mb / t:7.1f} {rss:6d} MB {int(v):7d} {int(n):11,d} {ratio:>9}")
    if base:
        print(f"\ndlcli vs plain Python: {base / total_t:.2f}x (target >= 3x); "
              f"vs HF tokenizers direct: {rows[1][1] / total_t:.2f}x")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
