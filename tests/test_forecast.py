from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcli.core import rundir
from dlcli.core.config import build_config
from dlcli.errors import ConfigError, InputError, Interrupted, OutputExistsError, TrainingDiverged
from dlcli.forecast.config import TimeSeriesConfig
from dlcli.forecast.predict import predict
from dlcli.forecast.series import make_sine_series, read_series, write_sine_csv
from dlcli.forecast.train import train
from dlcli.forecast.windows import forecast, multistep_features, scores, windows
from dlcli.models.forecast import MLPAR, LinearAR, RNNForecaster, build

REPO = Path(__file__).resolve().parent.parent
SINE = REPO / "sample_data" / "sine.csv"


def _cfg(data: Path | str, output: Path | str, **kw) -> TimeSeriesConfig:
    return TimeSeriesConfig(data=str(data), output=str(output), device="cpu", **kw)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory) -> tuple[Path, dict]:
    """LinearAR trained on the committed sine series, as in the curriculum."""
    run = tmp_path_factory.mktemp("ts") / "run"
    return run, train(_cfg(SINE, run, model="linear"))


# --------------------------------------------------------------------------
# The series


def test_make_sine_series_statistics_and_seed():
    x = make_sine_series(1000, seed=0)
    noise = x - np.sin(0.01 * np.arange(1, 1001))
    assert x.shape == (1000,)
    assert abs(noise.mean()) < 0.03
    assert abs(noise.std() - 0.2) < 0.02
    assert np.array_equal(x, make_sine_series(1000, seed=0))
    assert not np.array_equal(x, make_sine_series(1000, seed=1))


def test_committed_sample_is_the_generator_output(tmp_path):
    out = write_sine_csv(tmp_path / "sine.csv")
    assert out.read_bytes() == SINE.read_bytes()
    lines = SINE.read_text().splitlines()
    assert lines[0] == "time,x" and len(lines) == 1001
    assert lines[1].startswith("1,") and len(lines[1].split(",")[1].split(".")[1]) == 6


# --------------------------------------------------------------------------
# Features and forecasts


def _loop_reference(x: list[float], tau: int, max_k: int, step, rows: int) -> list[list[float]]:
    out = []
    for j in range(rows):
        row = list(x[j:j + tau])
        for _ in range(max_k):
            row.append(step(row[-tau:]))
        out.append(row)
    return out


def test_multistep_features_match_a_python_loop():
    x = torch.tensor([0.3, -1.2, 0.5, 2.0, 0.1, -0.7, 1.1, 0.9, -0.2, 0.4, 1.5], dtype=torch.float64)
    tau, max_k = 3, 4
    w = [0.5, -0.25, 0.8]

    def one(window: list[float]) -> float:
        return sum(a * b for a, b in zip(w, window)) + 0.1

    def batch(windows: torch.Tensor) -> torch.Tensor:
        return windows @ torch.tensor(w, dtype=torch.float64) + 0.1

    got = multistep_features(x, tau, max_k, batch)
    assert got.shape == (len(x) - tau - max_k + 1, tau + max_k)
    ref = _loop_reference(x.tolist(), tau, max_k, one, got.shape[0])
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64))
    full = multistep_features(x, tau, max_k, batch, full=True)
    assert full.shape == (len(x) - tau + 1, tau + max_k)
    ref = _loop_reference(x.tolist(), tau, max_k, one, full.shape[0])
    assert torch.allclose(full, torch.tensor(ref, dtype=torch.float64))


def test_forecast_aligns_k_step_predictions_with_their_targets():
    # a model that repeats the last value: the k-step prediction of x_t is x_{t-k}
    tau, horizons = 3, [1, 2, 5]
    model = LinearAR(tau)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.0, 0.0, 1.0]]))
        model.linear.bias.zero_()
    x = np.arange(20, dtype=np.float64) ** 1.5
    p = forecast(model, x, tau, horizons)
    assert np.isnan(p["one_step"][:tau]).all()
    np.testing.assert_allclose(p["one_step"][tau:], x[tau - 1:-1], rtol=1e-6)
    for k in horizons:
        assert np.isnan(p["k"][k][:tau + k - 1]).all()
        np.testing.assert_allclose(p["k"][k][tau + k - 1:], x[tau - 1:len(x) - k], rtol=1e-6)
    np.testing.assert_allclose(p["future"], np.full(5, x[-1]), rtol=1e-6)
    s = scores(x, p, 10, 20)
    assert s["points"] == {"1": 10, "2": 10, "5": 10}
    assert s["mse"]["1"] == pytest.approx(np.mean((x[10:] - x[9:-1]) ** 2), rel=1e-5)


def test_windows_pair_each_window_with_the_next_value():
    X, y = windows(torch.arange(6.0), 3)
    assert X.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]] and y.tolist() == [3, 4, 5]


def test_models_map_windows_to_next_values():
    w = torch.randn(7, 4)
    for m in (LinearAR(4), MLPAR(4, 10), RNNForecaster(4, 8, 2, "gru"), RNNForecaster(4, 8, 1, "lstm")):
        assert m(w).shape == (7,)
    assert [type(build(n, 4, 8, 1)).__name__ for n in ("linear", "mlp", "gru", "lstm")] == \
        ["LinearAR", "MLPAR", "RNNForecaster", "RNNForecaster"]
    assert isinstance(build("lstm", 4, 8, 1).rnn, torch.nn.LSTM)


# --------------------------------------------------------------------------
# Training: the curriculum's lesson


def test_linear_ar_one_step_near_noise_and_error_grows_with_horizon(linear_run):
    _, summary = linear_run
    test = summary["test"]
    assert summary["model"] == "linear" and summary["n_train"] == 600 and summary["points"] == 1000
    assert test["mse_1step"] < 0.06
    assert test["mse"]["1"] == pytest.approx(test["mse_1step"])
    assert test["mse"]["64"] > 3 * test["mse"]["1"]
    assert test["mse"]["16"] > test["mse"]["1"]
    assert test["points"] == {"1": 400, "4": 400, "16": 400, "64": 400}


def test_gru_forecaster_loss_falls(tmp_path):
    data = _write(tmp_path / "s.csv", "x\n" + "\n".join(f"{v:.6f}" for v in make_sine_series(160)) + "\n")
    ticks = []
    summary = train(_cfg(data, tmp_path / "run", model="gru", hidden=8, epochs=4, n_train=120,
                            horizons=[1, 8], standardize=True), on_progress=ticks.append)
    losses = [m["loss"] for m in rundir.read_metrics(tmp_path / "run")]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0]
    assert [t.done for t in ticks] == [0, 1, 2, 3, 4] and ticks[-1].unit == "epoch"
    assert ticks[-1].metrics["loss"] == losses[-1]
    assert summary["column"] == "x" and np.isfinite(summary["test"]["mse"]["8"])


# --------------------------------------------------------------------------
# The run directory and predict()


def test_run_directory_contents(linear_run):
    run, summary = linear_run
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "model.safetensors", "forecast.json",
                 "predictions.csv", "forecast.png"):
        assert (run / name).is_file(), name
    assert rundir.read_meta(run)["stage"] == "timeseries"
    assert [m["epoch"] for m in rundir.read_metrics(run)] == [1, 2, 3, 4, 5]
    report = json.loads((run / "forecast.json").read_text())
    assert report["model"] == "linear" and report["tau"] == 4 and report["horizons"] == [1, 4, 16, 64]
    assert report["test"]["mse"] == summary["test"]["mse"] and report["train"]["mse"]["64"] is not None
    assert (run / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = rundir.load_tensors(run / "model.safetensors")
    assert set(weights) == {"linear.weight", "linear.bias", "norm.mean", "norm.std"}

    rows = list(csv.reader((run / "predictions.csv").open()))
    assert rows[0] == ["t", "truth", "pred_1step", "pred_k1", "pred_k4", "pred_k16", "pred_k64"]
    assert len(rows) == 1001
    assert rows[1][:2] == ["1", "0.035146"] and rows[1][2:] == ["", "", "", "", ""]
    assert rows[5][2] != "" and rows[5][4] == "" and rows[68][6] != "" and rows[67][6] == ""
    assert rows[5][2] == rows[5][3]  # 1-step ahead == horizon 1


def test_predict_reproduces_the_run(linear_run, tmp_path):
    run, summary = linear_run
    before = sorted(p.name for p in run.iterdir())
    got = predict(run, device="cpu")
    assert sorted(p.name for p in run.iterdir()) == before and got["written"] == []
    assert got["test"]["mse_1step"] == pytest.approx(summary["test"]["mse_1step"], rel=1e-9)
    for k in ("1", "4", "16", "64"):
        assert got["test"]["mse"][k] == pytest.approx(summary["test"]["mse"][k], rel=1e-9)
        assert got["train"]["mse"][k] == pytest.approx(summary["train"]["mse"][k], rel=1e-9)
    assert len(got["future"]) == 64

    other = _write(tmp_path / "other.csv", "time,y\n" + "".join(f"{t},{np.sin(0.01 * t):.6f}\n"
                                                              for t in range(1, 101)))
    out = predict(run, other, horizons=[2], output=tmp_path / "p.csv", column="y", device="cpu")
    assert "test" not in out and out["all"]["points"] == {"2": 95} and out["all"]["mse"]["2"] < 0.01
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "t,truth,pred_1step,pred_k2"
    with pytest.raises(OutputExistsError):
        predict(run, other, horizons=[2], output=tmp_path / "p.csv", column="y", device="cpu")
    with pytest.raises(InputError, match="not a dlcli run directory"):
        predict(tmp_path, device="cpu")


def test_resume_continues_exactly_and_existing_runs_are_kept(tmp_path):
    data = _write(tmp_path / "s.csv", "x\n" + "\n".join(f"{v:.6f}" for v in make_sine_series(120)) + "\n")
    whole = train(_cfg(data, tmp_path / "a", model="mlp", epochs=4, n_train=80, horizons=[1, 4]))
    train(_cfg(data, tmp_path / "b", model="mlp", epochs=2, n_train=80, horizons=[1, 4]))
    with pytest.raises(OutputExistsError):
        train(_cfg(data, tmp_path / "b", model="mlp", epochs=4, n_train=80, horizons=[1, 4]))
    with pytest.raises(ConfigError, match="tau"):
        train(_cfg(data, tmp_path / "b", model="mlp", epochs=4, tau=3, n_train=80, horizons=[1, 4]), resume=True)
    resumed = train(_cfg(data, tmp_path / "b", model="mlp", epochs=4, n_train=80, horizons=[1, 4]), resume=True)
    assert resumed["resumed_from_epoch"] == 2
    assert [m["epoch"] for m in rundir.read_metrics(tmp_path / "b")] == [1, 2, 3, 4]
    assert resumed["test"] == whole["test"] and resumed["loss"] == whole["loss"]


def test_ctrl_c_keeps_the_last_epoch_for_resume(tmp_path):
    data = _write(tmp_path / "s.csv", "x\n" + "\n".join(f"{v:.6f}" for v in make_sine_series(60)) + "\n")
    cfg = _cfg(data, tmp_path / "run", model="linear", epochs=3, n_train=40, horizons=[1, 4])

    def stop_after_first(tick) -> None:
        if tick.done == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted at epoch 1; checkpoint saved in .*--resume"):
        train(cfg, on_progress=stop_after_first)
    assert not (tmp_path / "run" / "forecast.json").exists()
    assert train(cfg, resume=True)["resumed_from_epoch"] == 1


def test_divergence_is_one_clear_error(tmp_path):
    data = _write(tmp_path / "s.csv", "x\n" + "\n".join(f"{v:.6f}" for v in make_sine_series(60)) + "\n")
    with pytest.raises(TrainingDiverged, match="epoch 1; no checkpoint had been saved yet; try a lower lr"):
        train(_cfg(data, tmp_path / "run", model="linear", lr=1e30, n_train=40, horizons=[1, 4]))
    assert not (tmp_path / "run" / "model.safetensors").exists()


# --------------------------------------------------------------------------
# Bad input and config


def test_non_numeric_cell_names_file_row_and_column(tmp_path):
    p = _write(tmp_path / "bad.csv", "time,x\n1,0.5\n2,abc\n3,0.1\n")
    with pytest.raises(InputError, match=r"bad\.csv: row 3, column 'x': 'abc' is not a number"):
        read_series(p)


def test_missing_value_names_row_and_column(tmp_path):
    p = _write(tmp_path / "gap.csv", "time,x,y\n1,0.5,1\n2,0.2,2\n3,,3\n")
    with pytest.raises(InputError, match=r"gap\.csv: row 4, column 'x': missing value"):
        read_series(p)
    assert read_series(p, "y").values.tolist() == [1.0, 2.0, 3.0]


def test_default_column_skips_time_and_text(tmp_path):
    p = _write(tmp_path / "t.csv", "time,name,v\n10,a,1.5\n11,b,2.5\n")
    s = read_series(p)
    assert s.column == "v" and s.time == ["10", "11"] and s.values.tolist() == [1.5, 2.5]


def test_series_too_short_for_window_and_horizon(tmp_path):
    p = _write(tmp_path / "short.csv", "x\n" + "\n".join(str(i) for i in range(30)) + "\n")
    with pytest.raises(InputError, match=r"short\.csv: column 'x' has 30 values, too short for tau=4 and horizon 64"):
        train(_cfg(p, tmp_path / "run", train_fraction=0.5))
    with pytest.raises(InputError, match="n_train=600 leaves nothing"):
        train(_cfg(p, tmp_path / "run", horizons=[1, 4]))
    assert not (tmp_path / "run").exists()


def test_unknown_column_suggests_the_closest(tmp_path):
    p = _write(tmp_path / "c.csv", "time,value\n1,2\n")
    with pytest.raises(ConfigError, match=r"c\.csv: no column 'valeu' \(did you mean 'value'\?\)"):
        read_series(p, "valeu")


def test_config_validation():
    with pytest.raises(ConfigError, match="not both"):
        build_config(TimeSeriesConfig, flags={"data": "x.csv", "n_train": 10, "train_fraction": 0.5})
    with pytest.raises(ConfigError, match="model"):
        build_config(TimeSeriesConfig, flags={"data": "x.csv", "model": "rnn"})
    with pytest.raises(ConfigError, match="horizons"):
        build_config(TimeSeriesConfig, sets=["data=x.csv", "horizons=[0,4]"])
    cfg = build_config(TimeSeriesConfig, sets=["data=x.csv", "model=gru", "horizons=16,1"]).resolved()
    assert (cfg.hidden, cfg.epochs, cfg.horizons) == (32, 20, [1, 16])


# --------------------------------------------------------------------------
# The naive baseline and the command's output


def test_predict_scores_mae_and_the_last_value_baseline_on_the_same_targets(linear_run):
    run, _ = linear_run
    got = predict(run, device="cpu")
    x = read_series(SINE, "x").values
    n = got["n_train"]
    for k in (1, 4, 64):
        d = x[n:] - x[n - k:len(x) - k]  # held-out targets all have a k-step prediction
        naive = got["test"]["last_value"]
        assert naive["mse"][str(k)] == pytest.approx(float(np.mean(d * d)), rel=1e-12)
        assert naive["mae"][str(k)] == pytest.approx(float(np.mean(np.abs(d))), rel=1e-12)
        assert naive["points"][str(k)] == got["test"]["points"][str(k)] == 400
    assert got["test"]["last_value"]["mse_1step"] == got["test"]["last_value"]["mse"]["1"]
    # on every point the baseline skips the first tau + k - 1 targets, as the model does
    assert got["all"]["last_value"]["points"] == got["all"]["points"] == {"1": 996, "4": 993, "16": 981, "64": 933}
    m = got["test"]
    assert 0 < m["mae"]["4"] < m["mae"]["64"] and m["mae_1step"] == m["mae"]["1"]
    assert m["mse"]["1"] < m["last_value"]["mse"]["1"]  # the model beats the naive forecast one step ahead


def _table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    assert lines[1].split() == ["horizon", "points", "mse", "mae", "last_value_mse", "last_value_mae"], lines
    return {r.split()[0]: r.split()[1:] for r in lines[2:] if not r.startswith("wrote ")}


def test_cli_predict_prints_a_table_and_json_on_request(cli, linear_run, tmp_path):
    run, _ = linear_run
    r = cli("forecast", run, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "{" not in r.stdout and "written" not in r.stdout and "wrote" not in r.stdout
    assert r.stdout.splitlines()[0] == (f"linear forecaster (tau 4) on {SINE}, column x: held-out points "
                                        "601-1000")
    rows = _table(r.stdout)
    assert list(rows) == ["1", "4", "16", "64"]

    out = json.loads(cli("forecast", run, "--device", "cpu", "--json").stdout)
    t = out["test"]
    for k, (points, mse, mae, naive_mse, naive_mae) in rows.items():
        assert int(points) == t["points"][k] == 400
        assert [float(mse), float(mae)] == [float(format(t["mse"][k], ".4g")), float(format(t["mae"][k], ".4g"))]
        assert [float(naive_mse), float(naive_mae)] == [float(format(t["last_value"][m][k], ".4g"))
                                                        for m in ("mse", "mae")]
    assert out["written"] == [] and len(out["future"]) == 64

    other = _write(tmp_path / "other.csv", "y\n" + "".join(f"{np.sin(0.01 * t):.6f}\n" for t in range(1, 101)))
    r = cli("forecast", "predict", run, other, "--column", "y", "--horizons", "2", "-o", tmp_path / "p.csv",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].endswith("column y: all 100 points")
    rows = _table(r.stdout)
    assert list(rows) == ["1", "2"] and rows["1"][0] == "96" and rows["2"][0] == "95"
    assert r.stdout.splitlines()[-1] == f"wrote {tmp_path / 'p.csv'}"


def test_cli_train_summary_lists_the_horizons_plainly(cli, tmp_path):
    r = cli("forecast", "train", "-d", SINE, "-m", "linear", "--epochs", "1", "--horizons", "1,4,16",
            "--device", "cpu", "-o", tmp_path / "run")
    assert r.exit_code == 0, r.output
    summary = [line for line in r.stderr.splitlines() if line.startswith("held-out MSE")]
    assert len(summary) == 1 and ";" not in summary[0] and ", ," not in summary[0], r.stderr
    assert [p.split()[0] for p in summary[0].split(", ")[1:]] == ["1-step", "4-step", "16-step"], summary
    assert r.stdout.strip() == str(tmp_path / "run")
