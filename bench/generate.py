"""Benchmark: `dlcli generate` against transformers' own `generate` on one GPT-2-shaped model, in one process.

transformers builds GPT-2 small (12 layers, 12 heads, width 768, 1,024 positions, vocabulary 50,257, tied
head; 124M parameters) with random weights (speed does not depend on what they hold) and saves it with a
WordLevel tokenizer of 50,257 words into a temp folder; `dlcli import-hf` imports it. Both then decode
greedily, fp32, from the same --prompt-tokens prompt, --new tokens each:

    transformers   model.generate(ids, do_sample=False, max_new_tokens=N) (no end token)
    dlcli          lm.generate.generate (what `dlcli generate --temperature 0` runs: the KV cache,
                   the text decoded and streamed as it comes), timed from its first write (the
                   prompt, once the run is loaded) to its return

After one untimed round each, they alternate --repeats times; the medians give tokens/s and the ratio
dlcli / transformers. The generated ids are compared too (greedy on the same weights: the same text).

    flock /tmp/cpu.lock python bench/generate.py                  # 128 new tokens, 3 rounds
    python bench/generate.py --new 32 --repeats 1                 # quicker
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_kind


def build(folder: Path) -> object:
    """GPT-2 small with random weights and a 50,257-word tokenizer, saved as a model folder."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg = transformers.GPT2Config(bos_token_id=None, eos_token_id=None)  # no end token: all N tokens come
    words = {f"w{i}": i for i in range(cfg.vocab_size)}
    tok = Tokenizer(models.WordLevel(words, unk_token="<unk>"))  # every prompt word is known: no <unk> needed
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(folder)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new", type=int, default=128, help="tokens to generate")
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from dlcli.hf import load
    from dlcli.hf.config import ImportConfig
    from dlcli.lm.config import GenerateConfig
    from dlcli.lm.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        folder, run = Path(tmp) / "gpt2", Path(tmp) / "run"
        folder.mkdir()
        model = build(folder)
        load.run(ImportConfig(source=str(folder), output=str(run)))
        ids = torch.randint(1, 50257, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(1))
        prompt = " ".join(f"w{i}" for i in ids[0].tolist())
        n = args.new

        def theirs() -> tuple[float, list[int]]:
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                                     eos_token_id=None, pad_token_id=0)
            return time.perf_counter() - t0, out[0, ids.size(1):].tolist()

        def ours() -> tuple[float, list[int]]:
            start: list[float] = []
            cfg = GenerateConfig(run=str(run), prompt=prompt, max_new_tokens=n, temperature=0.0, device="cpu")
            text = generate(cfg, lambda s: start.append(time.perf_counter()) if not start else None)[0]
            return time.perf_counter() - start[0], [int(w[1:]) for w in text.split()[ids.size(1):]]

        _, want = theirs()
        _, got = ours()
        times: dict[str, list[float]] = {"transformers": [], "dlcli": []}
        for _ in range(args.repeats):
            times["transformers"].append(theirs()[0])
            times["dlcli"].append(ours()[0])
        import transformers

        print(f"CPU: {cpu_kind()}; torch {torch.__version__}, transformers {transformers.__version__}")
        print(f"GPT-2 small shape, random weights, fp32, greedy, {args.prompt_tokens}-token prompt, {n} new tokens, "
              f"median of {args.repeats}")
        rate = {k: n / statistics.median(v) for k, v in times.items()}
        for k, v in rate.items():
            print(f"  {k:<13} {v:7.1f} tokens/s   ({', '.join(f'{t:.2f}' for t in times[k])} s)")
        print(f"  dlcli / transformers: {rate['dlcli'] / rate['transformers']:.2f}x; same ids: {got == want}")


if __name__ == "__main__":
    main()
