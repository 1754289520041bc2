"""`dlcli anomaly score`: NAB's scoring (dlcli/anomaly/nab.py) against NAB's own published figures, a plain
loop written from NAB's rules, hand-made cases of each rule, and every bad input."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from dlcli.anomaly import labels as lab
from dlcli.anomaly import nab
from dlcli.anomaly.config import ScoreConfig
from dlcli.anomaly.score import score
from dlcli.anomaly.series import read_scores, read_series, write_scores
from dlcli.errors import ConfigError, InputError

# NAB's own scorer on the 24 shared files (../shared/data/README.md): standard, low FP, low FN
PUBLISHED = {"windowedGaussian": (28.16, 22.38, 31.59), "numenta": (64.85, 59.12, 69.85)}
NAMES = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]


def _s(p: float) -> float:
    """NAB's scaled sigmoid, written out."""
    return -1.0 if p > 3 else 2 / (1 + math.exp(5 * p)) - 1


# ---- parity with NAB on the shared files ----

@pytest.mark.parametrize("detector", sorted(PUBLISHED))
def test_scores_agree_with_nabs_published_figures(data, detector):
    nabdir = data / "nab"
    s = score(ScoreConfig(results=str(nabdir / "results" / detector),
                          labels=str(nabdir / "labels" / "combined_windows.json"), data=str(nabdir / "data")))
    assert s["files"] == 24 and s["windows"] == 39 and s["rows"] == 123_523 and not s["left_out"]
    got = {p["profile"]: p for p in s["profiles"]}
    for name, want in zip(NAMES, PUBLISHED[detector], strict=True):
        assert got[name]["score"] == pytest.approx(want, abs=0.05), (detector, name)
        assert got[name]["null"] == -39.0 * nab.PROFILES[name].fn and got[name]["perfect"] == 39.0
        per_file = sum(f["raw"] for f in got[name]["files"].values())
        assert per_file == pytest.approx(got[name]["raw"], abs=1e-9)  # each file at the corpus threshold


def test_the_numenta_figures_in_detail(data):
    """Counts at the chosen thresholds, computed here and checked by hand against the rules: event-wise
    P = found / (found + false positives), R = found / windows."""
    nabdir = data / "nab"
    s = score(ScoreConfig(results=str(nabdir / "results" / "numenta"), profiles=["standard"],
                          labels=str(nabdir / "labels" / "combined_windows.json")))
    p = s["profiles"][0]
    assert p["threshold"] == pytest.approx(0.544449877418)
    assert (p["detected"], p["windows"], p["false_positives"]) == (31, 39, 58)
    assert p["event_precision"] == pytest.approx(31 / 89) and p["event_recall"] == pytest.approx(31 / 39)
    assert p["event_f1"] == pytest.approx(2 * 31 / (89 + 39))


def test_built_in_profiles_are_nabs(data):
    assert lab.read_profiles(data / "nab" / "profiles.json") == nab.PROFILES


def test_cli_scores_a_nab_results_tree(cli, data):
    nabdir = data / "nab"
    r = cli("anomaly", "score", str(nabdir / "results" / "windowedGaussian"), "--labels",
            str(nabdir / "labels" / "combined_windows.json"), "--profile", "standard", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [p["profile"] for p in out["profiles"]] == ["standard"]
    assert out["profiles"][0]["score"] == pytest.approx(28.16, abs=0.05)
    assert "NAB standard 28.16" in r.stderr


# ---- the vectorised sweep against a plain loop over NAB's rules ----

def _reference(files: list[tuple[np.ndarray, list[tuple[int, int]]]], p: nab.Profile, t: float) -> float:
    """The raw NAB total at threshold t, one row at a time."""
    total = 0.0
    for scores, windows in files:
        n = len(scores)
        skip = nab.probation_rows(n)
        best = {w: None for w in windows if w[1] >= skip}
        for i in range(skip, n):
            if scores[i] < t:
                continue
            inside = [w for w in windows if w[0] <= i <= w[1]]
            if inside:
                a, b = inside[0]
                v = p.tp * _s(-(b - i + 1) / (b - a + 1)) / _s(-1)
                best[inside[0]] = v if best[inside[0]] is None else max(best[inside[0]], v)
            else:
                before = [w for w in windows if w[1] < i]
                if before:
                    a, b = before[-1]
                    total += p.fp * _s((i - b) / max(b - a, 1))
                else:
                    total -= p.fp
        total += sum(-p.fn if v is None else v for v in best.values())
    return total


def _random_files(rng: random.Random, k: int) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    files = []
    for _ in range(k):
        n = rng.randint(8, 120)
        cuts = sorted(rng.sample(range(n), 2 * rng.randint(0, 3)))
        windows = [(cuts[j], cuts[j + 1]) for j in range(0, len(cuts), 2)]
        scores = np.array([round(rng.random() ** 3, 1) for _ in range(n)])  # few distinct values: ties
        files.append((scores, windows))
    return files


@pytest.mark.parametrize("seed", range(5))
def test_sweep_matches_a_plain_loop_at_every_threshold(seed):
    files = _random_files(random.Random(seed), 12)
    prepared = [nab.prepare(str(j), s, np.array(w).reshape(-1, 2)) for j, (s, w) in enumerate(files)]
    for p in nab.PROFILES.values():
        sw = nab.sweep(prepared, p)
        assert list(sw.thresholds[1:]) == sorted({x for f in prepared for x in f.scores}, reverse=True)
        for t, total in zip(sw.thresholds, sw.totals, strict=True):
            assert total == pytest.approx(_reference(files, p, t), abs=1e-9)
            assert sum(nab.count(f, p, t).raw for f in prepared) == pytest.approx(total, abs=1e-9)


# ---- each rule by hand ----

def test_scaled_sigmoid():
    assert nab.scaled_sigmoid(np.array([-1.0, -0.5, 0.0, 1.0])) == pytest.approx([0.98661, 0.84828, 0.0, -0.98661],
                                                                                   abs=1e-5)
    assert nab.scaled_sigmoid(np.array([3.0, 3.01, 1e6])).tolist() == [pytest.approx(_s(3.0)), -1.0, -1.0]


def test_probation_is_fifteen_percent_at_most_750_rows():
    assert [nab.probation_rows(n) for n in (10, 100, 5000, 5001, 100_000)] == [1, 15, 750, 750, 750]
    assert nab.probation_rows(100, 0.0) == 0


def _one(scores: list[float], windows: list[tuple[int, int]], profile: str = "standard") -> nab.Counts:
    f = nab.prepare("f", np.array(scores, dtype=float), np.array(windows).reshape(-1, 2), probation=0.0)
    return nab.count(f, nab.PROFILES[profile], 0.5)


def test_a_window_is_worth_its_first_detection_only():
    # a window of rows 2..5 (width 4) in 10 rows
    first = _one([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], [(2, 5)])
    assert first.raw == pytest.approx(1.0)  # on its first row: exactly tp
    late = _one([0, 0, 0, 0, 0, 1, 0, 0, 0, 0], [(2, 5)])
    assert late.raw == pytest.approx(_s(-1 / 4) / _s(-1))
    both = _one([0, 0, 0, 1, 1, 1, 0, 0, 0, 0], [(2, 5)])
    assert both.raw == pytest.approx(_s(-3 / 4) / _s(-1)) and both.detected == 1 and both.tp_rows == 3
    assert _one([0] * 10, [(2, 5)], "reward_low_FN_rate").raw == -2.0  # a missed window costs fn


def test_false_positives_are_weighed_by_their_distance_past_the_window_before():
    before = _one([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [(2, 5)])  # no window before it: -fp
    assert before.raw == pytest.approx(-0.11 - 1.0) and before.false_positives == 1
    just_after = _one([0, 0, 0, 0, 0, 0, 1, 0, 0, 0], [(2, 5)])  # (6 - 5) / (4 - 1) past the window
    assert just_after.raw == pytest.approx(0.11 * _s(1 / 3) - 1.0)
    far = _one([0] * 19 + [1], [(2, 5)], "reward_low_FP_rate")  # (19 - 5) / 3 > 3: the full -fp
    assert far.raw == pytest.approx(-0.22 - 1.0)
    each = _one([0, 0, 0, 0, 0, 0, 1, 1, 0, 0], [(2, 5)])  # every false positive counts
    assert each.raw == pytest.approx(0.11 * (_s(1 / 3) + _s(2 / 3)) - 1.0) and each.false_positives == 2


def test_the_probationary_period_is_not_scored():
    # 20 rows: the first 3 are probation; a detection there costs nothing
    f = nab.prepare("f", np.r_[1.0, np.zeros(19)], np.zeros((0, 2)))
    assert f.skipped == 3 and nab.count(f, nab.PROFILES["standard"], 0.5).raw == 0.0
    # a window inside the probationary period is neither found nor missed, but counts for perfect
    g = nab.prepare("g", np.zeros(20), np.array([[0, 1], [10, 12]]))
    c = nab.count(g, nab.PROFILES["standard"], 0.5)
    assert (c.windows, c.raw) == (1, -1.0)
    r = nab.score([g], nab.PROFILES["standard"])  # null: the better of nothing and everything detected
    assert r.perfect == 2.0 and r.null == pytest.approx(max(-1.0, nab.count(g, nab.PROFILES["standard"], 0.0).raw))
    assert r.null > -1.0


def test_the_threshold_is_the_best_over_all_files_and_the_highest_on_ties():
    a = nab.prepare("a", np.array([0, 0, 0, 0, 0.9, 0.7, 0, 0, 0, 0.8]), np.array([[4, 6]]), probation=0.0)
    b = nab.prepare("b", np.array([0, 0.7, 0, 0, 0, 0, 0, 0, 0, 0]), np.array([[1, 3]]), probation=0.0)
    p = nab.PROFILES["standard"]
    t, raw = nab.sweep([a, b], p).best()
    # 0.9 finds a's window; 0.8 adds a false positive far past it; 0.7 finds b's window too
    assert t == 0.7 and raw == pytest.approx(2.0 + 0.11 * _s(3 / 2))
    tied = nab.prepare("c", np.array([0.0, 0.6, 0.5, 0.0]), np.zeros((0, 2)), probation=0.0)
    tied.s[:] = 0.0  # false positives that cost nothing: every threshold ties
    assert nab.sweep([tied], p).best()[0] == 1.1


def test_normalisation_puts_null_at_0_and_perfect_at_100():
    f = nab.prepare("f", np.zeros(100), np.array([[50, 59]]))
    p = nab.PROFILES["standard"]
    perfect = f.scores.copy()
    perfect[50 - f.skipped] = 1.0
    assert nab.score([f], p).score == 0.0
    f.scores = perfect
    assert nab.score([f], p).score == pytest.approx(100.0)
    empty = nab.score([nab.prepare("e", np.zeros(10), np.zeros((0, 2)))], p)
    assert empty.score is None and empty.total.event_prf() == {"precision": None, "recall": None, "f1": None}


def test_event_precision_recall_f1():
    c = nab.Counts(windows=4, detected=3, false_positives=3)
    assert c.event_prf() == {"precision": 0.5, "recall": 0.75, "f1": pytest.approx(0.6)}
    assert nab.Counts(windows=2, detected=0, false_positives=0).event_prf() == {"precision": None, "recall": 0.0,
                                                                                "f1": None}


def test_windows_of_a_label_column_are_its_runs_of_1():
    assert lab.label_runs(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1])).tolist() == [[0, 1], [4, 4], [6, 8]]
    assert lab.label_runs(np.zeros(4)).shape == (0, 2)


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _stamps(n: int) -> list[str]:
    return [f"2020-01-01 {h:02d}:{m:02d}:00" for h, m in ((i // 60, i % 60) for i in range(n))]


def test_a_single_labelled_csv(cli, tmp_path):
    # 20 rows, probation 3; the window is rows 10..13; detections at 11 (0.9) and 17 (0.8)
    scores = [0.0] * 20
    scores[11], scores[17] = 0.9, 0.8
    label = [1 if 10 <= i <= 13 else 0 for i in range(20)]
    f = _csv(tmp_path / "one.csv", "timestamp,value,anomaly_score,label",
             [f"{t},1.0,{a},{y}" for t, a, y in zip(_stamps(20), scores, label, strict=True)])
    r = cli("anomaly", "score", str(f), "--profile", "standard", "--json")
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["profiles"][0]
    tp = _s(-3 / 4) / _s(-1)
    assert p["threshold"] == 0.9 and p["raw"] == pytest.approx(tp)  # 0.8 would add 0.11 * S(4/3) < 0
    # the null detector finds the window on its first scored row and pays for every other row
    null = max(-1.0, 1.0 - 0.11 * 7 + 0.11 * sum(_s((i - 13) / 3) for i in range(14, 20)))
    assert p["null"] == pytest.approx(null) and p["score"] == pytest.approx(100 * (tp - null) / (1 - null))
    assert (p["detected"], p["windows"], p["false_positives"], p["event_f1"]) == (1, 1, 0, 1.0)
    r = cli("anomaly", "score", str(f), "--profile", "standard")
    assert r.exit_code == 0 and r.stdout.splitlines()[1].split()[:2] == ["profile", "score"]
    assert r.stdout.splitlines()[2].split()[:2] == ["standard", f"{100 * (tp - null) / (1 - null):.2f}"]


def test_scores_written_for_the_detector_are_read_back_and_checked_against_their_series(tmp_path):
    data = _csv(tmp_path / "data" / "cat" / "s.csv", "timestamp,value", [f"{t},{i}" for i, t in
                                                                           enumerate(_stamps(40))])
    series = read_series(data)
    a = np.linspace(0, 1, 40)
    write_scores(tmp_path / "out" / "cat" / "s.csv", series, a, a > 0.5)
    back = read_scores(tmp_path / "out" / "cat" / "s.csv")
    assert back.scores.tolist() == a.tolist() and (back.timestamps == series.timestamps).all()
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps({"cat/s.csv": [[_stamps(40)[30], _stamps(40)[35]]]}))
    s = score(ScoreConfig(results=str(tmp_path / "out"), labels=str(windows), data=str(tmp_path / "data")))
    assert s["files"] == 1 and s["windows"] == 1 and s["profiles"][0]["detected"] == 1


def test_nabs_results_layout_and_gzip_are_matched_to_their_keys(tmp_path):
    rows = [f"{t},{0.0}" for t in _stamps(30)]
    _csv(tmp_path / "res" / "cat" / "det_a.csv", "timestamp,anomaly_score", rows)
    with gzip.open(tmp_path / "res" / "cat" / "b.csv.gz", "wt") as f:
        f.write("timestamp,anomaly_score\n" + "\n".join(rows) + "\n")
    _csv(tmp_path / "res" / "cat" / "c.csv", "timestamp,anomaly_score", rows)
    (tmp_path / "w.json").write_text(json.dumps({"cat/a.csv": [[_stamps(30)[10], _stamps(30)[12]]], "cat/b.csv": []}))
    with pytest.warns(UserWarning, match="1 score file with no key in .* left out: cat/c.csv"):
        s = score(ScoreConfig(results=str(tmp_path / "res"), labels=str(tmp_path / "w.json")))
    assert sorted(s["profiles"][0]["files"]) == ["cat/a.csv", "cat/b.csv"] and s["windows"] == 1
    _csv(tmp_path / "res" / "cat" / "a.csv", "timestamp,anomaly_score", rows)
    with pytest.raises(InputError, match="two score files for 'cat/a.csv' of .*: cat/a.csv and cat/det_a.csv"):
        score(ScoreConfig(results=str(tmp_path / "res"), labels=str(tmp_path / "w.json")))


def test_timestamps_may_slip_back_as_real_clocks_do(tmp_path):
    """NAB's own files repeat a timestamp or step back a daylight-saving hour; rows keep their order."""
    t = _stamps(300)
    t[100] = t[99]
    t[150] = "2020-01-01 01:45:00"  # 45 minutes back
    f = _csv(tmp_path / "s.csv", "timestamp,value", [f"{x},1" for x in t])
    assert len(read_series(f).values) == 300
    ts = read_series(f).timestamps
    assert lab.window_rows(ts, [(ts[99], ts[99])], "w").tolist() == [[99, 99]]  # the first of a repeated stamp


# ---- bad input: one line naming the file and line ----

@pytest.mark.parametrize(("rows", "message"), [
    (["2020-01-01 00:00:00,1", "yesterday,2"], "line 3: cannot read timestamp 'yesterday'"),
    (["2020-01-01 00:00:00,1", ",2"], "line 3: missing timestamp"),
    (["2020-01-02 00:00:00,1", "2020-01-01 00:00:00,2"], "line 3: timestamp 2020-01-01 00:00:00 is not after"),
    (["2020-01-01 00:00:00,1", "2020-01-01 00:01:00,x"], "line 3: value 'x' is not a number"),
    (["2020-01-01 00:00:00,1", "2020-01-01 00:01:00,"], "line 3: value missing"),
    (["2020-01-01 00:00:00,nan", "2020-01-01 00:01:00,1"], "line 2: value 'nan' is not a number"),
    (["2020-01-01 00:00:00,1", "2020-01-01 00:01:00"], "line 3: 1 fields, the header has 2"),
    ([], "no rows after the header"),
])
def test_bad_series(tmp_path, rows, message):
    f = _csv(tmp_path / "s.csv", "timestamp,value", rows)
    with pytest.raises(InputError, match=message) as e:
        read_series(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_too_many_repeated_timestamps_is_an_error(tmp_path):
    t = _stamps(50)
    t[20:25] = [t[20]] * 5
    f = _csv(tmp_path / "s.csv", "timestamp,value", [f"{x},1" for x in t])
    with pytest.raises(InputError, match=r"line 23: .* \(4 of 49 steps do not increase\)"):
        read_series(f)


@pytest.mark.parametrize(("header", "rows", "message"), [
    ("timestamp,anomaly_score", ["2020-01-01 00:00:00,0.1", "2020-01-01 00:01:00,high"],
     "line 3: anomaly_score 'high' is not a number"),
    ("timestamp,value", ["2020-01-01 00:00:00,0.1"], "no 'anomaly_score' column"),
    ("timestamp,anomaly_score,label", ["2020-01-01 00:00:00,0.1,2"], "line 2: label '2' is not 0 or 1"),
])
def test_bad_score_files(tmp_path, header, rows, message):
    with pytest.raises(InputError, match=message):
        read_scores(_csv(tmp_path / "a.csv", header, rows))


def test_a_score_file_whose_rows_are_not_its_series(cli, tmp_path):
    t = _stamps(30)
    _csv(tmp_path / "data" / "c" / "s.csv", "timestamp,value", [f"{x},1" for x in t])
    _csv(tmp_path / "out" / "c" / "s.csv", "timestamp,anomaly_score,label", [f"{x},0,0" for x in t[:29]])
    r = cli("anomaly", "score", str(tmp_path / "out"), "--data", str(tmp_path / "data"))
    assert r.exit_code == 1 and r.stderr.strip() == (f"error: {tmp_path}/out/c/s.csv: 29 rows, but its series "
                                                     f"{tmp_path}/data/c/s.csv has 30")
    _csv(tmp_path / "out" / "c" / "s.csv", "timestamp,anomaly_score,label",
         [f"{x},0,0" for x in [*t[:5], "2020-01-01 00:05:30", *t[6:]]])
    r = cli("anomaly", "score", str(tmp_path / "out"), "--data", str(tmp_path / "data"))
    assert r.exit_code == 1 and "out/c/s.csv line 7: timestamp 2020-01-01 00:05:30, but row 6 of its series" in r.stderr
    assert r.stderr.rstrip().endswith("is 2020-01-01 00:05:00")
    r = cli("anomaly", "score", str(tmp_path / "out"), "--data", str(tmp_path / "nowhere"))
    assert r.exit_code == 1 and "nowhere/c/s.csv: no such file" in r.stderr


def test_labels_that_match_no_file(cli, tmp_path):
    _csv(tmp_path / "out" / "c" / "s.csv", "timestamp,anomaly_score", [f"{x},0" for x in _stamps(10)])
    (tmp_path / "w.json").write_text(json.dumps({"other/x.csv": []}))
    r = cli("anomaly", "score", str(tmp_path / "out"), "--labels", str(tmp_path / "w.json"))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "w.json: no key matches a score file under" in r.stderr and "'other/x.csv'" in r.stderr


def test_bad_labels_and_missing_windows(cli, tmp_path):
    out = tmp_path / "out"
    _csv(out / "c" / "s.csv", "timestamp,anomaly_score", [f"{x},0" for x in _stamps(10)])
    r = cli("anomaly", "score", str(out))
    assert r.exit_code == 1 and "s.csv: no 'label' column; give the windows with --labels" in r.stderr
    bad = {"not json": "not valid JSON", "[1, 2]": "expected an object",
           '{"c/s.csv": [["2020-01-01 00:01:00"]]}': "expected a list of \\[start, end\\] windows",
           '{"c/s.csv": [["soon", "later"]]}': "cannot read the window",
           '{"c/s.csv": [["2020-01-01 00:05:00", "2020-01-01 00:01:00"]]}': "ends before it starts",
           '{"c/s.csv": [["2021-01-01 00:00:00", "2021-01-02 00:00:00"]]}': "holds no row of the file",
           '{"c/s.csv": [["2020-01-01 00:01:00", "2020-01-01 00:04:00"], ["2020-01-01 00:03:00", '
           '"2020-01-01 00:06:00"]]}': "overlap"}
    for text, message in bad.items():
        (tmp_path / "w.json").write_text(text)
        with pytest.raises(InputError, match=message):
            score(ScoreConfig(results=str(out), labels=str(tmp_path / "w.json")))
    r = cli("anomaly", "score", str(tmp_path / "none"))
    assert r.exit_code == 1 and "none: no such file or folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("anomaly", "score", str(tmp_path / "empty"))
    assert r.exit_code == 1 and "no score CSVs in its sub-folders" in r.stderr


def test_bad_options(cli, tmp_path):
    f = _csv(tmp_path / "a.csv", "timestamp,anomaly_score,label", [f"{x},0,0" for x in _stamps(10)])
    r = cli("anomaly", "score", str(f), "--profile", "strict")
    assert r.exit_code == 2 and "no profile 'strict'" in r.stderr
    r = cli("anomaly", "score", str(f), "--probation", "1")
    assert r.exit_code == 2 and "probation: must be in [0, 1)" in r.stderr
    (tmp_path / "p.json").write_text('{"mine": {"CostMatrix": {"tpWeight": 1}}}')
    with pytest.raises(InputError, match="not a NAB profiles file"):
        lab.read_profiles(tmp_path / "p.json")
    with pytest.raises(ConfigError):
        ScoreConfig(results="x", profiles=[]).validate()
