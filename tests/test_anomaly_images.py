"""dlcli anomaly images: the MVTec metrics against scikit-learn and a hand-computed case, the synthetic set,
WinCLIP's windows and means, and the command end to end with a small random-weight CLIP."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from dlcli.anomaly import metrics_images as mi
from dlcli.anomaly.synthetic_images import make_dataset

# --- metrics ---------------------------------------------------------------------------------------------


def test_auroc_and_f1_max_match_sklearn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(300) < 0.3
        s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding makes ties
        assert mi.auroc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        p, r, _ = metrics.precision_recall_curve(y, s)
        f1 = np.max(np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0))
        assert mi.f1_max(y, s) == pytest.approx(f1, abs=1e-12)


def test_metrics_by_hand() -> None:
    # scores 0.1 0.4 0.35 0.8 with labels 0 0 1 1: of the 4 (pos, neg) pairs, 3 are ordered right.
    assert mi.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert mi.auroc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts half
    assert np.isnan(mi.auroc([1, 1], [0.1, 0.2]))
    # threshold 0.35: tp 2, fp 1, fn 0 -> F1 = 4 / 5; threshold 0.8: 2 / 3
    assert mi.f1_max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8)


def test_pro_by_hand() -> None:
    # One 1x4 image: regions {0} and {2, 3} (pixel 1 normal, and pixel 4). Scores make the order 0, 1, 2, 3.
    mask = np.array([[1, 0, 1, 1, 0]], bool)
    amap = np.array([[0.9, 0.8, 0.7, 0.6, 0.1]])
    fpr, pro = mi.pro_curve([mask], [amap])
    # after pixel 0: region A covered (1) + B (0) -> 0.5; pixel 1 normal: fpr 1/2; pixels 2, 3: B grows
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(pro, [0, 0.5, 0.5, 0.75, 1.0, 1.0])
    # area up to fpr 0.5: the step at fpr 0 goes to 0.5, then flat at 0.5 until the vertical rise at 0.5
    assert mi.pro_auc([mask], [amap], max_fpr=0.5) == pytest.approx(0.5)
    # up to 1: 0.5 * 0.5 + (1 + 1) / 2 * 0.5 = 0.75
    assert mi.pro_auc([mask], [amap], max_fpr=1.0) == pytest.approx(0.75)


def test_pro_matches_a_threshold_loop() -> None:
    """The exact curve against the definition: a loop over thresholds, labels from scipy when it is there."""
    rng = np.random.default_rng(1)
    masks, maps = [], []
    for _ in range(3):
        m = np.zeros((24, 24), bool)
        m[3:8, 4:9] = True
        m[15:18, 10:20] = True
        m[20, 2] = True
        masks.append(m)
        maps.append(np.round(rng.random((24, 24)) + m * 0.5, 2))
    fpr, pro = mi.pro_curve(masks, maps)
    regions = [(mi.label_regions(m)[0], m) for m in masks]
    normal = np.concatenate([~m.ravel() for m in masks])
    scores = np.concatenate([a.ravel() for a in maps])
    for t in np.unique(scores)[::7]:
        overlaps = [((a >= t) & (lab == k)).sum() / (lab == k).sum()
                    for (lab, m), a in zip(regions, maps) for k in range(1, lab.max() + 1)]
        f = ((scores >= t) & normal).sum() / normal.sum()
        i = np.flatnonzero(np.isclose(fpr, f))
        assert np.isclose(pro[i], np.mean(overlaps)).any()
    ndimage = pytest.importorskip("scipy.ndimage")
    for m in masks:
        ours, n = mi._flood_fill(m)
        theirs, n2 = ndimage.label(m, structure=np.ones((3, 3)))
        assert n == n2 == 3
        assert np.array_equal(ours > 0, theirs > 0)
        for k in range(1, n + 1):  # the same partition, whatever the numbering
            assert len(np.unique(theirs[ours == k])) == 1


def test_labelling_without_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy fails
    m = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0]], bool)
    lab, n = mi.label_regions(m)
    assert n == 3  # the diagonal pair is one region (8-connected)
    assert lab[0, 0] == lab[1, 1] != lab[0, 3] == lab[1, 3] and lab[3, 0] == lab[3, 1] not in (0, lab[0, 0])


def test_report_per_defect() -> None:
    kinds = ["good", "good", "scratch", "hole"]
    masks = [np.zeros((4, 4), bool) for _ in kinds]
    masks[2][1, 1] = masks[3][2, 2] = True
    maps = [np.zeros((4, 4)) for _ in kinds]
    maps[2][1, 1] = 1.0  # the scratch found, the hole missed
    r = mi.report(kinds, np.array([0.1, 0.2, 0.9, 0.15]), masks, maps)
    assert r["per_defect"]["scratch"]["image_auroc"] == 1.0
    assert r["per_defect"]["hole"]["image_auroc"] == 0.5
    assert r["overall"]["images"] == 4 and r["per_defect"]["hole"]["images"] == 3
    assert r["per_defect"]["scratch"]["pro"] == 1.0
    assert r["per_defect"]["hole"]["pixel_auroc"] == 0.5


# --- the synthetic set and WinCLIP's pieces ---------------------------------------------------------------


def test_synthetic_set_has_the_mvtec_layout(tmp_path: Path) -> None:
    from PIL import Image

    root = make_dataset(tmp_path / "weave", n_train=2, n_good=1, n_defect=2, size=32)
    assert len(list((root / "train" / "good").glob("*.png"))) == 2
    for kind in ("scratch", "hole", "stain"):
        for img in (root / "test" / kind).glob("*.png"):
            mask = np.asarray(Image.open(root / "ground_truth" / kind / f"{img.stem}_mask.png"))
            assert mask.shape == (32, 32) and 0 < (mask > 0).sum() < 32 * 32 / 4
            assert set(np.unique(mask)) == {0, 255}


def test_windows_and_harmonic_mean() -> None:
    import torch

    from dlcli.anomaly import winclip

    w = winclip.windows(3, 2)
    assert w.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert winclip.windows(3, 5).shape == (1, 9)  # a window larger than the grid is the whole grid
    vals = torch.tensor([[0.5, 0.25, 1.0, 1.0]])
    patches = winclip._to_patches(vals, w, 9, harmonic=True)
    assert patches[0, 0] == 0.5  # covered by window 0 only
    assert patches[0, 4] == pytest.approx(4 / (2 + 4 + 1 + 1))  # the centre: by all four
    assert winclip._to_patches(vals, w, 9, harmonic=False)[0, 4] == pytest.approx(0.6875)


def test_upsample_and_smoothing() -> None:
    import torch

    from dlcli.anomaly.images import upsample

    flat = upsample(torch.full((1, 4, 4), 0.3), 32, sigma=4.0)
    np.testing.assert_allclose(flat, 0.3, rtol=1e-5)  # normalised kernel, reflected borders
    spike = torch.zeros(1, 8, 8)
    spike[0, 4, 4] = 1.0
    sharp, blurred = upsample(spike, 64), upsample(spike, 64, sigma=3.0)
    assert blurred.sum() == pytest.approx(sharp.sum(), rel=1e-3)  # mass kept (far from the borders)
    assert blurred.max() < sharp.max() and np.unravel_index(blurred.argmax(), (64, 64)) == \
        np.unravel_index(sharp.argmax(), (64, 64))


def test_undefined_metrics_are_none() -> None:
    masks = [np.zeros((4, 4), bool)] * 2
    r = mi.report(["good", "good"], np.array([0.1, 0.2]), masks, [np.zeros((4, 4))] * 2)
    assert r["overall"]["image_auroc"] is None and r["overall"]["pro"] is None and r["per_defect"] == {}
    json.dumps(r, allow_nan=False)


# --- end to end with a small random-weight CLIP -----------------------------------------------------------


def _tiny_clip(image_size: int = 32, patch: int = 4, width: int = 32, seed: int = 0):
    import torch

    from dlcli.models.clip import CLIP, CLIPConfig, Preprocess, TowerConfig

    torch.manual_seed(seed)
    cfg = CLIPConfig(embed_dim=32, image_size=image_size, patch_size=patch, vocab_size=512, context_length=32,
                     vision=TowerConfig(width=width, layers=2, heads=4, mlp=4 * width),
                     text=TowerConfig(width=32, layers=1, heads=4, mlp=64))
    model = CLIP(cfg)
    with torch.no_grad():  # a random tower; positions and the class token random too, as after init
        model.visual.pos.normal_(0, 0.02)
        model.visual.cls.normal_(0, 0.02)
        model.text.pos.normal_(0, 0.01)

    def tokenize(texts: list[str]) -> torch.Tensor:
        rows = [[zlib.crc32(w.encode()) % 500 + 1 for w in t.split()] + [511] for t in texts]
        n = max(map(len, rows))
        return torch.tensor([r + [0] * (n - len(r)) for r in rows])

    return model, tokenize, Preprocess(image_size=image_size)


def _load(folder: str):
    assert folder == "tiny"
    return _tiny_clip()


def _run(tmp_path: Path, data: Path, **kw):
    from dlcli.anomaly.images import images
    from dlcli.anomaly.images_config import ImagesConfig

    cfg = ImagesConfig(input=str(data), output=str(tmp_path / kw.pop("out", "out")), clip="tiny", device="cpu", **kw)
    cfg.validate()
    return images(cfg, _load)


@pytest.fixture(scope="module")
def weave(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("set") / "weave", n_train=4, n_good=6, n_defect=4, size=64)


def test_zero_shot_end_to_end(tmp_path: Path, weave: Path) -> None:
    s = _run(tmp_path, weave)
    out = tmp_path / "out"
    assert s["mode"] == "zero-shot" and s["images"] == 18 and s["object"] == "weave"
    rows = list(csv.DictReader((out / "scores.csv").read_text().splitlines()))
    assert [r["image"] for r in rows][:2] == ["good/000.png", "good/001.png"] and len(rows) == 18
    assert all(0 <= float(r["score"]) <= 1 and r["flag"] == str(int(float(r["score"]) >= 0.5)) for r in rows)
    assert len(list((out / "overlays").rglob("*.png"))) == 18
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["per_defect"]) == {"scratch", "hole", "stain"}
    for k in ("image_auroc", "pixel_auroc", "pro", "image_f1_max", "pixel_f1_max"):
        assert 0 <= m["overall"][k] <= 1
    assert set(s["seconds"]) >= {"load", "text", "read", "image_tower", "windows", "score", "metrics", "overlays"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_metrics_json_agrees_with_sklearn(tmp_path: Path, weave: Path) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    _run(tmp_path, weave, overlays=False)
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").read_text().splitlines()))
    y = [not r["image"].startswith("good/") for r in rows]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["overall"]["image_auroc"] == pytest.approx(metrics.roc_auc_score(y, [float(r["score"]) for r in rows]),
                                                        abs=1e-6)


def test_few_shot_random_tower_finds_the_drawn_defects(tmp_path: Path, weave: Path) -> None:
    """Random weights know no language, but the patch projection keeps local pixels: the nearest normal
    patch is far from a scratch, a hole or a stain."""
    s = _run(tmp_path, weave, shots=4, text_weight=0.0)
    assert s["mode"] == "few-shot (4 references)"
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["overall"]["image_auroc"] >= 0.9, m["overall"]
    assert m["overall"]["pixel_auroc"] >= 0.8, m["overall"]
    # with the default mix, the random language score is noise on top: still well above chance
    s = _run(tmp_path, weave, shots=4, out="mixed")
    assert s["metrics"]["image_auroc"] >= 0.75, s["metrics"]


def test_bf16_autocast_keeps_the_few_shot_maps(tmp_path: Path, weave: Path) -> None:
    import contextlib

    from dlcli.core.precision import cpu_bf16
    from dlcli.errors import DlcliWarning

    # where bf16 is emulated (AVX2) the run says so in one warning, and still trains
    expect = contextlib.nullcontext() if cpu_bf16()[0] else pytest.warns(DlcliWarning, match="bf16 is emulated")
    with expect:
        s = _run(tmp_path, weave, shots=4, text_weight=0.0, precision="bf16")
    assert s["precision"]["used"] == "bf16"
    assert s["metrics"]["image_auroc"] >= 0.9, s["metrics"]
    assert _run(tmp_path, weave, out="auto")["precision"]["used"] == "fp32"  # width 32: bf16 does not pay


# --- bad input: one line, nothing left behind -------------------------------------------------------------


def _fails(tmp_path: Path, data: Path, match: str, **kw) -> None:
    from dlcli.errors import InputError

    with pytest.raises(InputError, match=match) as e:
        _run(tmp_path, data, **kw)
    assert "\n" not in str(e.value)
    assert not (tmp_path / kw.get("out", "out")).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_plain_folder_of_odd_sizes(tmp_path: Path) -> None:
    from PIL import Image

    d = tmp_path / "parts"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(np.full((20, 48, 3), 120, np.uint8)).save(d / "wide.png")
    Image.fromarray(np.full((40, 30), 90, np.uint8)).save(d / "sub" / "grey.jpg")  # grey, JPEG, in a sub-folder
    s = _run(tmp_path, d)
    assert s["images"] == 2 and s["object"] == "parts"
    assert Image.open(tmp_path / "out" / "overlays" / "wide.png").size == (48, 20)
    assert Image.open(tmp_path / "out" / "overlays" / "sub" / "grey.png").size == (30, 40)


def test_existing_output_needs_force(tmp_path: Path, weave: Path) -> None:
    from dlcli.anomaly.images import images
    from dlcli.anomaly.images_config import ImagesConfig
    from dlcli.errors import OutputExistsError

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    cfg = ImagesConfig(input=str(weave / "test" / "good"), output=str(out), clip="tiny", device="cpu")
    with pytest.raises(OutputExistsError, match="already exists"):
        images(cfg, _load)
    assert (out / "old.txt").is_file()
    images(cfg, _load, force=True)
    assert (out / "scores.csv").is_file() and not (out / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    _fails(tmp_path, tmp_path / "empty", "no images")


def test_undecodable_image(tmp_path: Path) -> None:
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "a.png")
    (d / "b.png").write_bytes(b"not a png at all")
    _fails(tmp_path, d, r"b\.png: cannot be decoded")


def test_mask_missing_or_not_matching(tmp_path: Path) -> None:
    from PIL import Image

    root = make_dataset(tmp_path / "w", n_train=1, n_good=1, n_defect=1, size=32, defects=("hole",))
    mask = root / "ground_truth" / "hole" / "000_mask.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mask)
    _fails(tmp_path, root, r"000_mask\.png: mask of 16x16 pixels does not match")
    mask.unlink()
    _fails(tmp_path, root, "its mask .* is missing")


def test_plain_folder_and_reference_errors(tmp_path: Path, weave: Path) -> None:
    s = _run(tmp_path, weave / "test" / "hole", reference=str(weave / "train" / "good"), shots=2)
    assert s["mode"] == "few-shot (2 references)" and s["images"] == 4 and "metrics" not in s
    assert not (tmp_path / "out" / "metrics.json").exists()
    _fails(tmp_path, weave, "fewer than --shots 9", shots=9, out="o2")


# --- the command, with a CLIP folder as Hugging Face saves it ---------------------------------------------


def test_cli_end_to_end_and_bad_model_folders(tmp_path: Path, weave: Path, cli) -> None:
    pytest.importorskip("transformers")
    from test_clip import TINY, make_hf  # a random transformers CLIPModel saved with a tokenizer.json

    model = tmp_path / "clip"
    make_hf(model, TINY)
    out = tmp_path / "out"
    r = cli("anomaly", "images", weave, "--clip", model, "-o", out, "--shots", "2", "--scale", "2", "--quiet")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    s = json.loads((out / "summary.json").read_text())
    assert s["mode"] == "few-shot (2 references)" and s["scales"] == [2] and s["grid"] == 4
    assert (out / "metrics.json").is_file() and len(list((out / "overlays").rglob("*.png"))) == 18

    def fails(clip: Path, match: str) -> None:
        r = cli("anomaly", "images", weave, "--clip", clip, "-o", tmp_path / "bad")
        assert r.exit_code != 0 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
        assert match in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    (tmp_path / "notclip").mkdir()
    fails(tmp_path / "notclip", "not a CLIP folder")
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    fails(model, "pickled weights are not read")
