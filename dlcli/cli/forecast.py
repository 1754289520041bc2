"""`dlcli forecast train|predict`: time-series forecasting (also `dlcli train-rnn --task forecast`).

`dlcli forecast RUN` still means `dlcli forecast predict RUN`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from dlcli.cli import common as c
from dlcli.cli import options as o
from dlcli.cli.command import App, Job, command

app = App("Time-series forecasting: train a forecaster on a CSV column, predict 1-step and k-step ahead.",
          default="predict")

PANEL = "Time series"


def _opt(name: str, help: str) -> Any:
    return o.opt(name, help=help, panel=PANEL)


# Options only a forecaster has, shared with `dlcli train-rnn --task forecast`.
SERIES: dict[str, Any] = {
    "column": Annotated[str | None, _opt("--column", "Series to forecast (default: the first numeric column).")],
    "tau": Annotated[int | None, _opt("--tau", "Window: predict x_t from the tau values before it.")],
    "n_train": Annotated[int | None, _opt("--n-train", "Points used for training (default 600).")],
    "horizons": Annotated[str | None, _opt("--horizons", "k-step horizons, e.g. 1,4,16,64.")],
}


def config() -> type:
    from dlcli.forecast.config import TimeSeriesConfig

    return TimeSeriesConfig


def train_forecaster(job: Job) -> None:
    """Train and score a forecaster: the body of `forecast train` and of `train-rnn --task forecast`."""
    from dlcli.forecast.train import train

    def report(s: dict[str, Any]) -> str:
        mse = s["test"]["mse"]
        return f"held-out MSE, 1-step {s['test']['mse_1step']:.4f}" + "".join(
            f", {k}-step {v:.4f}" for k, v in mse.items() if str(k) != "1")

    job.run(train, report)


@app.command("train")
@command(config, options=SERIES | {"seed": o.Seed, "device": o.Device}, resume=True)
def train(
    data: Annotated[str | None, o.opt("--data", "-d", help="CSV with a header row.")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Run directory.")] = None,
    model: Annotated[str | None, o.opt("--model", "-m", help="linear, mlp, gru or lstm.", panel=o.MODEL)] = None,
    hidden: Annotated[int | None, o.opt("--hidden", help="Hidden size (default 10 for mlp, 32 for gru/lstm).",
                                        panel=o.MODEL)] = None,
    layers: Annotated[int | None, o.opt("--layers", help="Stacked GRU/LSTM layers.", panel=o.MODEL)] = None,
    epochs: Annotated[int | None, o.opt("--epochs", help="Passes over the training windows (default 5 for "
                                        "linear/mlp, 20 for gru/lstm).", panel=o.TRAIN)] = None,
    batch_size: o.BatchSize = None,
    lr: o.Lr = None,
    *, job: Job,
) -> None:
    """Train a forecaster (linear, MLP, GRU or LSTM) on a CSV series and score it 1-step and k-step ahead.

    Example: dlcli forecast train -d sample_data/sine.csv -m gru --tau 4 -o runs/sine
    """
    train_forecaster(job)


@app.command("predict")
@command(options={"force": o.Force})
def predict(
    run: Annotated[str, o.arg("A run from 'dlcli forecast train' (or 'dlcli train-rnn --task forecast').")],
    data: Annotated[str | None, o.arg("CSV to forecast (default: the one it was trained on).")] = None,
    horizons: Annotated[str | None, o.opt("--horizons", help="k-step horizons, e.g. 1,4,16,64.")] = None,
    column: Annotated[str | None, o.opt("--column", help="Series column (default: the run's).")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="Write the predictions CSV here.")] = None,
    device: o.UseDevice = "auto",
    anomalies: Annotated[bool, o.opt("--anomalies", help="Also flag anomalies as 'dlcli forecast anomalies' "
                                      "does with its defaults (anomalies.csv and anomalies.png).")] = False,
    as_json: Annotated[bool, o.opt("--json", help="Print the full result as JSON instead of the table (the "
                                   "stable machine-readable form: every part, the forecast past the end).")] = False,
    *, job: Job,
) -> None:
    """Forecast a series with a trained time-series run: 1-step and k-step-ahead.

    Prints a table: per horizon, the MSE and MAE of the model and of the
    naive last-value forecast, on the held-out part (another CSV: all of it).
    --json prints the full result instead (also the forecast past the end).

    'dlcli forecast RUN ...' is short for 'dlcli forecast predict RUN ...'.

    Example: dlcli forecast predict runs/sine --horizons 1,4,16,64 -o predictions.csv
    """
    from dlcli.forecast.predict import predict

    ks = None
    if horizons:
        try:
            ks = [int(k) for k in horizons.split(",") if k.strip()]
        except ValueError:
            raise c.fail(f"--horizons: '{horizons}' is not a comma-separated list of integers", 2) from None
    out = predict(run, data, ks, output=output, force=job.force, column=column, device=device)
    if anomalies:  # before the JSON: an error here leaves no half output on stdout
        from dlcli.core.config import build_config
        from dlcli.forecast.anomalies import detect, report
        from dlcli.forecast.config import AnomalyConfig

        found = detect(build_config(AnomalyConfig, flags={"run": run, "data": data, "column": column,
                                                          "device": device}), force=job.force)
        job.info(f"{report(found)}\nwrote {', '.join(found['written'])}")
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    title, rows = score_rows(out)
    c.table(title, COLUMNS, rows, to_stdout=True, headings=HEADINGS, right=COLUMNS)
    if out["written"]:
        print(f"wrote {', '.join(out['written'])}")


COLUMNS = ("horizon", "points", "mse", "mae", "last_value_mse", "last_value_mae")
HEADINGS = ("horizon", "points", "MSE", "MAE", "last-value MSE", "last-value MAE")


def _num(v: float | None) -> str:
    return "-" if v is None else format(v, ".4g")


def score_rows(out: dict[str, Any]) -> tuple[str, list[tuple[str, ...]]]:
    """The title and one row per horizon (the cells of COLUMNS) of a `predict` result: its held-out part
    when it has one, else every point."""
    held_out = "test" in out
    s = out["test" if held_out else "all"]
    n = s["last_value"]
    where = (f"held-out points {out['n_train'] + 1}-{out['points']}" if held_out
             else f"all {out['points']} points")
    title = f"{out['model']} forecaster (tau {out['tau']}) on {out['data']}, column {out['column']}: {where}"
    rows = [("1", str(s["points_1step"]), _num(s["mse_1step"]), _num(s["mae_1step"]), _num(n["mse_1step"]),
             _num(n["mae_1step"]))]
    rows += [(k, str(s["points"][k]), _num(s["mse"][k]), _num(s["mae"][k]), _num(n["mse"][k]), _num(n["mae"][k]))
             for k in map(str, out["horizons"]) if k != "1"]  # horizon 1 is the 1-step row
    return title, rows




def anomaly_config() -> type:
    from dlcli.forecast.config import AnomalyConfig

    return AnomalyConfig


@app.command("anomalies")
@command(anomaly_config)
def anomalies(
    run: Annotated[str, o.arg("A run from 'dlcli forecast train' (or 'dlcli train-rnn --task forecast').")],
    data: Annotated[str | None, o.arg("CSV to score (default: the one the run was trained on).")] = None,
    column: Annotated[str | None, o.opt("--column", help="Series column (default: the run's).")] = None,
    label: Annotated[str | None, o.opt("--label", help="0/1 column to score against (default: 'label' when the "
                                       "CSV has one).")] = None,
    threshold: Annotated[float | None, o.opt("--threshold", help="Flag a point whose 1-step residual lies this many "
                                             "robust standard deviations (1.4826 x MAD) from the trailing "
                                             "median.")] = None,
    window: Annotated[int | None, o.opt("--window", help="Trailing points of the robust scale and of the z-score "
                                        "baseline.")] = None,
    z_threshold: Annotated[float | None, o.opt("--z-threshold", help="The z-score baseline's threshold, in standard "
                                               "deviations of the trailing raw values.")] = None,
    output: Annotated[str | None, o.opt("--output", "-o", help="The anomalies CSV; the plot is written beside it "
                                        "as .png.")] = None,
    device: Annotated[str | None, o.opt("--device", help="auto, cpu, cuda or mps.")] = None,
    *, job: Job,
) -> None:
    """Flag anomalies in a series: each point's 1-step forecast residual against a robust trailing scale.

    Writes anomalies.csv (t, value, forecast, residual, score, flag, the z-score baseline's zscore and
    zflag, label) and anomalies.png. With a 0/1 label column, prints precision, recall and F1 of both.
    Streaming: the score of row t uses rows up to t only.

    Example: dlcli forecast anomalies runs/sine sample_data/sine_anomalies.csv -o anomalies.csv
    """
    from dlcli.forecast.anomalies import detect, report

    job.run(detect, report, result="written")
