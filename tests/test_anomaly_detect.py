"""`dlcli anomaly detect`: the streaming detectors (a prefix scores as the start of the whole), the
likelihood and the baseline against plain loops, the output tree, and every bad input (one line, no output)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dlcli.anomaly import forecaster as fc
from dlcli.anomaly import likelihood as lk
from dlcli.anomaly.config import DetectConfig
from dlcli.anomaly.detect import DETECTORS, detect
from dlcli.anomaly.gaussian import gaussian
from dlcli.anomaly.series import read_scores
from dlcli.errors import ConfigError, InputError, OutputExistsError

START = np.datetime64("2020-01-06T00:00:00", "s")  # a Monday


def _series(n: int = 400, spike: int | None = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five-minute rows of a wave (period 50 rows) with noise, one spike."""
    rng = np.random.default_rng(seed)
    t = START + np.arange(n) * np.timedelta64(300, "s")
    v = 10 + 3 * np.sin(2 * np.pi * np.arange(n) / 50) + rng.normal(0, 0.1, n)
    if spike is not None:
        v[spike] += 8
    return t.astype("datetime64[us]"), v


def _write(path: Path, t: np.ndarray, v: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = [str(x).replace("T", " ")[:19] for x in t]
    path.write_text("timestamp,value\n" + "".join(f"{s},{x!r}\n" for s, x in zip(stamps, v.tolist(), strict=True)))
    return path


def _csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,value\n" + "".join(r + "\n" for r in rows))
    return path


# ---- streaming ----

@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_prefix_scores_as_the_start_of_the_whole_series(name):
    det = DETECTORS[name]
    t, v = _series(400)
    p = 60
    whole = det(t, v, p, seed=3)
    assert whole.shape == (400,) and np.all((whole >= 0) & (whole <= 1)) and np.all(whole[:p] == 0)
    for m in (p + 1, 250, 301):
        np.testing.assert_array_equal(det(t[:m], v[:m], p, seed=3), whole[:m])
    assert np.argmax(whole) == 200  # the spike


def test_the_forecast_detector_is_seeded():
    t, v = _series(300)
    det = DETECTORS["forecast"]
    np.testing.assert_array_equal(det(t, v, 60, seed=1), det(t, v, 60, seed=1))
    assert not np.array_equal(fc.errors(t, v, 60, seed=1), fc.errors(t, v, 60, seed=2))


def test_forecast_errors_use_the_past_only():
    """Changing row k changes no error before it (the kernel predicts a row before it learns from it)."""
    t, v = _series(300, spike=None)
    e = fc.errors(t, v, 60)
    w = v.copy()
    w[200] += 5
    f = fc.errors(t, w, 60)
    np.testing.assert_array_equal(e[:200], f[:200])
    assert abs(f[200] - e[200]) > 1


def test_time_features_and_seasonal_offsets():
    t = np.array(["2020-01-06T06:00", "2020-01-07T18:00"], dtype="datetime64[us]")  # Mon 06:00, Tue 18:00
    f = fc.time_features(t)
    np.testing.assert_allclose(f[0, :2], [1, 0], atol=1e-12)  # a quarter of the day
    np.testing.assert_allclose(f[1, :2], [-1, 0], atol=1e-12)
    np.testing.assert_allclose(f[0, 2:], [math.sin(2 * math.pi * 0.25 / 7), math.cos(2 * math.pi * 0.25 / 7)])
    ts, _ = _series(2000)
    assert fc.seasonal_offsets(ts, 750, (1.0, 7.0)).tolist() == [288, 287, 288, 287]  # a week: too far back
    assert fc.seasonal_offsets(ts, 100, (1.0,)).tolist() == []  # a day is more than half the probation


# ---- the likelihood and the baseline, against plain loops ----

def test_likelihood_against_a_loop():
    rng = np.random.default_rng(0)
    raw = np.abs(rng.normal(0, 1, 300))
    raw[250] = 30
    s = lk.LikelihoodSettings(short=5, long=100, min_history=20, floor=0.1, floor_abs=1e-3)
    got = lk.likelihood(raw, 80, start=4, settings=s)
    m = np.array([raw[max(4, t - 4):t + 1].mean() if t >= 4 else 0 for t in range(300)])
    q = []
    for t in range(80, 300):
        h = m[max(8, t - 100):t]
        sd = max(h.std(), 0.1 * abs(h.mean()), 1e-3)
        q.append(0.5 * math.erfc((m[t] - h.mean()) / sd / math.sqrt(2)))
    q = np.array(q)
    red = q <= lk.RED
    q[red & np.r_[False, red[:-1]]] = lk.YELLOW
    want = np.r_[np.zeros(80), np.clip(np.log(q + lk.EPS) / math.log(lk.EPS), 0, 1)]
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got[250] > 0.5 and got[251] == pytest.approx(math.log(lk.YELLOW + lk.EPS) / math.log(lk.EPS))


def test_beyond_range():
    v = np.array([0, 10, 5, 10.6, 10.7, -0.6, -1.3, 3])  # range 10, then 10.6, then 11.2: margins 0.5, 0.53, 0.56
    assert lk.beyond_range(v, 2, 0.05).tolist() == [False, False, False, True, False, True, True, False]


def test_gaussian_against_a_loop():
    rng = np.random.default_rng(1)
    v = rng.normal(5, 2, 200)
    got = gaussian(v, 30, window=50)
    for t in (30, 31, 79, 80, 199):
        h = v[max(0, t - 50):t]
        assert got[t] == pytest.approx(math.erf(abs(v[t] - h.mean()) / h.std() / math.sqrt(2)), abs=1e-9)
    assert np.all(got[:30] == 0)


# ---- the command ----

def test_a_folder_is_scored_into_a_mirrored_tree(cli, tmp_path):
    t, v = _series(400)
    _write(tmp_path / "in" / "a" / "one.csv", t, v)
    _write(tmp_path / "in" / "b" / "two.csv", *_series(300, spike=None, seed=1))
    (tmp_path / "w.json").write_text(json.dumps({"a/one.csv": [["2020-01-07 00:30:00", "2020-01-07 01:30:00"]],
                                                 "b/two.csv": []}))
    r = cli("anomaly", "detect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--labels",
            str(tmp_path / "w.json"), "--workers", "2")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(tmp_path / "out")
    assert "forecast: scored 2 series (700 rows)" in r.stderr and "NAB standard" in r.stderr
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.*")) == [
        "a/one.csv", "a/one.png", "b/two.csv", "b/two.png"]
    lines = (tmp_path / "out" / "a" / "one.csv").read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,flag" and len(lines) == 401
    assert lines[1].startswith("2020-01-06 00:00:00,")
    s = read_scores(tmp_path / "out" / "a" / "one.csv")
    np.testing.assert_array_equal(s.timestamps, t)
    flags = np.array([int(x.rsplit(",", 1)[1]) for x in lines[1:]])
    assert flags[200] == 1 and np.all(flags[:60] == 0)
    np.testing.assert_array_equal(flags, s.scores >= DETECTORS["forecast"].threshold)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_one_csv_gives_one_csv_and_its_plot(cli, tmp_path):
    src = _write(tmp_path / "s.csv", *_series(300))
    r = cli("anomaly", "detect", str(src), "-o", str(tmp_path / "scored.csv"), "--detector", "gaussian",
            "--threshold", "0.5")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "scored.png").stat().st_size > 1000
    s = read_scores(tmp_path / "scored.csv")
    np.testing.assert_allclose(s.scores, gaussian(_series(300)[1], 45), atol=1e-12)
    r = cli("anomaly", "detect", str(src), "-o", str(tmp_path / "scored.csv"))
    assert r.exit_code == 1 and "scored.csv: already exists (use --force" in r.stderr
    r = cli("anomaly", "detect", str(src), "-o", str(tmp_path / "scored.csv"), "--force", "--no-plots")
    assert r.exit_code == 0, r.output


def test_force_replaces_an_output_folder(tmp_path):
    _write(tmp_path / "in" / "a" / "one.csv", *_series(300))
    (tmp_path / "out" / "old").mkdir(parents=True)
    cfg = DetectConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), plots=False, workers=1)
    with pytest.raises(OutputExistsError, match="already exists"):
        detect(cfg)
    s = detect(cfg, force=True)
    assert s["files"] == 1 and s["rows"] == 300 and not (tmp_path / "out" / "old").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("rows", "message"), [
    (["2020-01-01 00:00:00,1", "yesterday,2"], "line 3: cannot read timestamp 'yesterday'"),
    (["2020-01-02 00:00:00,1", "2020-01-01 00:00:00,2"], "line 3: timestamp 2020-01-01 00:00:00 is not after"),
    (["2020-01-01 00:00:00,1", "2020-01-01 00:01:00,x"], "line 3: value 'x' is not a number"),
    (["2020-01-01 00:00:00,1", "2020-01-01 00:01:00,"], "line 3: value missing"),
])
def test_bad_input_is_one_line_and_no_output(cli, tmp_path, rows, message):
    _write(tmp_path / "in" / "a" / "good.csv", *_series(300))
    _csv(tmp_path / "in" / "b" / "bad.csv", [*[f"2019-12-31 {h:02d}:00:00,1" for h in range(20)], *rows])
    r = cli("anomaly", "detect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "2")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
    line = message.replace("line 3", f"line {20 + 3}")
    assert f"bad.csv {line}" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing written, no temp left


def test_a_series_shorter_than_the_probationary_period(cli, tmp_path):
    src = _write(tmp_path / "s.csv", *_series(100, spike=None))
    r = cli("anomaly", "detect", str(src), "-o", str(tmp_path / "o.csv"))
    need = DETECTORS["forecast"].min_probation
    assert r.exit_code == 1 and r.stderr.strip() == (
        f"error: {src}: 100 rows: its probationary period (15 rows, 0.15 of the series) is shorter than the "
        f"{need} rows the forecast detector learns from; give a longer series or a larger --probation")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]
    r = cli("anomaly", "detect", str(src), "-o", str(tmp_path / "o.csv"), "--probation", "0.5", "--no-plots")
    assert r.exit_code == 0, r.output


def test_labels_that_match_no_input_file(cli, tmp_path):
    _write(tmp_path / "in" / "a" / "one.csv", *_series(300))
    (tmp_path / "w.json").write_text(json.dumps({"other/x.csv": []}))
    r = cli("anomaly", "detect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--labels",
            str(tmp_path / "w.json"))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "w.json: no key matches" in r.stderr
    assert not (tmp_path / "out").exists()


def test_bad_options(tmp_path):
    for kw, message in [({"detector": "htm"}, "detector: must be one of forecast, gaussian"),
                        ({"probation": 1.0}, "probation: must be in"), ({"threshold": 2.0}, "threshold: must be"),
                        ({"output": ""}, "output: no output")]:
        cfg = DetectConfig(**{"input": "x", "output": "y", **kw})
        with pytest.raises(ConfigError, match=message):
            cfg.validate()
    with pytest.raises(InputError, match="no such file or folder"):
        detect(DetectConfig(input=str(tmp_path / "nowhere"), output=str(tmp_path / "o")))


def test_the_kernel_is_the_forecast_stages_mlp_with_a_linear_path_and_sgd():
    """One step of the numba loop = MLPAR (models/forecast.py) + a linear path + the last value, and its
    update = one torch SGD step on err^2 / 2."""
    import torch

    from dlcli.models.forecast import MLPAR

    rng = np.random.default_rng(0)
    lags, hidden, n = 4, 5, 40
    x = rng.normal(0, 1, n)
    feats = rng.normal(0, 1, (n, 4))
    offsets = np.array([10, 9], dtype=np.int64)
    d = lags + len(offsets) + 4
    W, b, V, w, c = fc.initial_weights(d, hidden, 7)
    b[:] = rng.normal(0, 0.1, hidden)
    w[:] = rng.normal(0, 0.1, d)
    c[:] = 0.2
    t, lr = 30, 0.05
    u = np.r_[x[t - lags:t], x[t - offsets], feats[t]]
    mlp = MLPAR(d, hidden).double()
    lin = torch.nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        mlp.net[0].weight.copy_(torch.from_numpy(W))
        mlp.net[0].bias.copy_(torch.from_numpy(b))
        mlp.net[2].weight.copy_(torch.from_numpy(V)[None])
        mlp.net[2].bias.copy_(torch.from_numpy(c))
        lin.weight.copy_(torch.from_numpy(w)[None])
    ut = torch.from_numpy(u)[None]
    pred = x[t - 1] + lin(ut).squeeze(-1) + mlp(ut)
    loss = 0.5 * (x[t] - pred).pow(2).sum()
    loss.backward()
    err = fc._step(x, feats, offsets, t, lags, lr, 100.0, True, W, b, V, w, c, np.zeros(d), np.zeros(hidden))
    assert err == pytest.approx(x[t] - pred.item(), abs=1e-12)
    for got, p in [(W, mlp.net[0].weight), (b, mlp.net[0].bias), (V[None], mlp.net[2].weight), (c, mlp.net[2].bias),
                   (w[None], lin.weight)]:
        np.testing.assert_allclose(got, (p - lr * p.grad).detach().numpy(), atol=1e-12)
