"""`dlcli anomaly score`: time-series anomaly detection scored as the Numenta Anomaly Benchmark scores it.
`dlcli anomaly images`: anomaly scores and maps of images from a CLIP model (dlcli/anomaly/images.py).

(`dlcli anomaly detect`, the streaming detector, plugs in beside it: see dlcli/anomaly/detect.py.)"""

from __future__ import annotations

import json
from typing import Annotated

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Anomaly detection: time series (scored as the Numenta Anomaly Benchmark scores them) and images "
          "(CLIP-family models, zero-shot or few-shot).")


def score_config() -> type:
    from dlcli.anomaly.config import ScoreConfig

    return ScoreConfig


@app.command("score")
@command(score_config, switches=("as_json",))
def score(
    results: Annotated[str, o.arg("Score CSVs (timestamp, anomaly_score): a folder <category>/<file>.csv[.gz], as "
                                  "NAB's results, or one CSV.")],
    labels: Annotated[str | None, o.opt("--labels", help="NAB's combined_windows.json (default: each CSV's "
                                        "0/1 'label' column; its runs of 1 are the windows).")] = None,
    data: Annotated[str | None, o.opt("--data", "-d", help="The series the scores were made from (a folder "
                                      "<category>/<file>.csv or one CSV): check that each score file has its "
                                      "rows.")] = None,
    profiles: Annotated[list[str] | None, o.opt("--profile", help="standard, reward_low_FP_rate or "
                                                "reward_low_FN_rate (repeatable; default all three).")] = None,
    profiles_file: Annotated[str | None, o.opt("--profiles", help="A NAB profiles.json with other cost "
                                               "matrices.")] = None,
    probation: Annotated[float | None, o.opt("--probation", help="Leading share of each file not scored (NAB's "
                                             "probationary period, at most 5000 x this rows).")] = None,
    as_json: Annotated[bool, o.opt("--json", help="Print the full result as JSON (every profile, every file) "
                                   "instead of the table.")] = False,
    *, job: Job,
) -> None:
    """Score a detector's anomaly scores against labelled windows, as NAB does.

    The threshold is optimised over all files together; the score is normalised so that NAB's null
    detector gets 0 and a perfect one 100.

    Prints a table on stdout, one row per profile: the NAB score, its raw total, the threshold, the
    windows found, the false positives (flagged rows outside every window) and event-wise precision,
    recall and F1 at that threshold (each window counts once; no point adjustment).

    Example: dlcli anomaly score results/numenta --labels labels/combined_windows.json
    """
    from dlcli.anomaly.score import COLUMNS, report, rows
    from dlcli.anomaly.score import score as run

    s = job.run(run, report, result=None)
    if as_json:
        c.result(json.dumps(s, indent=2))
        return
    c.table(f"NAB scores of {s['results']} ({s['labels']})", COLUMNS, rows(s), to_stdout=True, headings=HEADINGS,
            right=COLUMNS[1:])


def detect_config() -> type:
    from dlcli.anomaly.config import DetectConfig

    return DetectConfig


@app.command("detect")
@command(detect_config, options={"seed": o.Seed, "workers": o.Workers})
def detect(
    input: Annotated[str, o.arg("A series CSV (timestamp,value) or a folder of them, <category>/<file>.csv[.gz] "
                                "(NAB's tree).")],
    output: Annotated[str | None, o.opt("--output", "-o", help="Output: a CSV for one series, a folder "
                                        "mirroring INPUT for a folder.")] = None,
    detector: Annotated[str | None, o.opt("--detector", help="forecast (a small neural forecaster learning "
                                          "online, its errors through an anomaly likelihood) or gaussian "
                                          "(windowed z-score baseline).")] = None,
    column: Annotated[str | None, o.opt("--column", help="Value column (default: value).")] = None,
    probation: Annotated[float | None, o.opt("--probation", help="Leading share of each series only learnt "
                                             "from (NAB's probationary period, at most 5000 x this rows).")] = None,
    labels: Annotated[str | None, o.opt("--labels", help="NAB's combined_windows.json: draw the windows in "
                                        "the plots and score the output as 'dlcli anomaly score' does.")] = None,
    threshold: Annotated[float | None, o.opt("--threshold", help="Flag rows scoring at least this (default: "
                                             "the detector's, tuned on NAB's shared files).")] = None,
    plots: Annotated[bool | None, o.opt("--plots/--no-plots", help="A PNG beside each output CSV.")] = None,
    *, job: Job,
) -> None:
    """Score each row of one series or a folder of them for anomaly, streaming: a row's score uses the
    rows up to it only.

    Writes timestamp,value,anomaly_score,flag (score in [0, 1], one row per input row) and a plot per
    series; prints the output path. Nothing is written when any series is bad.

    Example: dlcli anomaly detect data/nab -o scored --labels labels/combined_windows.json
    """
    from dlcli.anomaly.detect import detect as run
    from dlcli.anomaly.detect import report

    job.run(run, report, result="output")


def images_config() -> type:
    from dlcli.anomaly.images_config import ImagesConfig

    return ImagesConfig


def _load_clip(folder: str) -> tuple:
    """The CLIP model of a folder, a function from prompts to token ids, its preprocessing."""
    from dlcli.hf.clip import load_clip
    from dlcli.models.clip import tokenize

    model, tok, prep = load_clip(folder)
    return model, lambda texts: tokenize(tok, texts, model.config), prep


@app.command("images")
@command(images_config, options={"device": o.Device, "precision": o.Precision})
def images(
    input: Annotated[str, o.arg("A folder of images (searched recursively), or one in the MVTec AD layout "
                                "(test/<defect>/, ground_truth/<defect>/<stem>_mask.png).")],
    clip: Annotated[str | None, o.opt("--clip", help="A CLIP model folder: Hugging Face CLIP or OpenCLIP, "
                                      "safetensors (see docs/commands/anomaly.md).")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="The output folder.")] = None,
    object: Annotated[str | None, o.opt("--object", help="The object's name in the prompts (default: the "
                                        "input folder's name).")] = None,
    reference: Annotated[str | None, o.opt("--reference", help="A folder of normal images: few-shot "
                                           "(default: zero-shot).")] = None,
    shots: Annotated[int | None, o.opt("--shots", help="Reference images used, the first K sorted (0 = all); "
                                       "in the MVTec layout without --reference, K from train/good.")] = None,
    scales: Annotated[list[int] | None, o.opt("--scale", help="Window side in patches (repeatable; default "
                                              "2 and 3).")] = None,
    smooth: Annotated[float | None, o.opt("--smooth", help="Gaussian blur of the map, sigma in patches (0.25: "
                                          "WinCLIP's 4 px at 16 px patches; 0 = none).")] = None,
    text_weight: Annotated[float | None, o.opt("--text-weight", help="Few-shot: share of the language score "
                                               "in the score and the map (the rest: nearest normal patch).")] = None,
    threshold: Annotated[float | None, o.opt("--threshold", help="Flag images scoring at least this.")] = None,
    batch_size: Annotated[int | None, o.opt("--batch-size", "-b", help="Windows per forward pass.")] = None,
    max_fpr: Annotated[float | None, o.opt("--max-fpr", help="PRO is integrated up to this false positive "
                                           "rate.")] = None,
    overlays: Annotated[bool | None, o.opt("--overlays/--no-overlays", help="One PNG per image: the anomaly "
                                           "map on the image.")] = None,
    *, job: Job,
) -> None:
    """Score images for anomalies with a CLIP model, WinCLIP-style: zero-shot from prompts (normal and
    damaged states of the object), few-shot with normal reference images.

    Writes OUT/scores.csv (image, score, flag), OUT/overlays/, OUT/summary.json (images/s, seconds per
    phase) and, for an MVTec AD folder, OUT/metrics.json (image and pixel AUROC, PRO, F1-max, per defect);
    prints OUT. Nothing is written when any input is bad.

    Example: dlcli anomaly images mvtec/bottle --clip clip-vit-base-patch16 --shots 4 -o bottle-scores
    """
    import functools

    from dlcli.anomaly.images import images as run
    from dlcli.anomaly.images import report

    job.run(functools.partial(run, load=_load_clip), report, result="output")


HEADINGS = ("profile", "NAB score", "raw", "threshold", "windows found", "false positives", "event P", "event R",
            "event F1")
