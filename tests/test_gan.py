"""dlcli.gan: metrics on hand-made samples, losses, networks, data, a tiny run and exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcli.core import rundir
from dlcli.errors import ConfigError, InputError, OutputExistsError, TrainingDiverged
from dlcli.gan import data as gdata
from dlcli.gan import losses, metrics, models
from dlcli.gan.build import noise
from dlcli.gan.config import GanConfig
from dlcli.gan.sample import evaluate, load_run, sample
from dlcli.gan.train import train

TINY = dict(hidden=16, layers=2, z_dim=4, batch_size=32, log_interval=5, device="cpu")


def _ring8() -> tuple[torch.Tensor, float]:
    mm = gdata.mixture_modes("ring8")
    assert mm is not None
    return mm


# --------------------------------------------------------------------------
# The VEEGAN metric on hand-made sample sets


def test_metric_real_samples_cover_every_mode():
    torch.manual_seed(0)
    centres, sigma = _ring8()
    m = metrics.mode_coverage(gdata.sample_builtin("ring8", 2500), centres, sigma)
    assert m["modes"] == 8 and m["n_modes"] == 8
    assert abs(m["high_quality"] - (1 - math.exp(-4.5))) < 0.01  # P(r <= 3 sigma) of a 2-D Gaussian
    assert m["reverse_kl"] < 0.01
    g = gdata.mixture_modes("grid25")
    assert g is not None
    m25 = metrics.mode_coverage(gdata.sample_builtin("grid25", 2500), *g)
    assert m25["modes"] == 25 and m25["high_quality"] > 0.98


def test_metric_one_mode_is_one_mode_and_kl_log_k():
    centres, sigma = _ring8()
    x = centres[3] + 0.01 * torch.randn(2500, 2, generator=torch.Generator().manual_seed(1))
    m = metrics.mode_coverage(x, centres, sigma)
    assert m["modes"] == 1 and m["high_quality"] == 1.0
    assert m["mode_counts"][3] == 2500
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_metric_off_mode_noise_is_not_high_quality():
    centres, sigma = _ring8()
    x = torch.zeros(2500, 2) + torch.tensor([0.0, 1.0])  # between modes: 1 unit from the (0, 2) mode
    m = metrics.mode_coverage(x, centres, sigma)
    assert m["modes"] == 0 and m["high_quality"] == 0.0
    # uniform noise over the square: a few land near modes by chance, most do not
    u = torch.rand(2500, 2, generator=torch.Generator().manual_seed(2)) * 5 - 2.5
    mu = metrics.mode_coverage(u, centres, sigma)
    assert mu["high_quality"] < 0.01


def test_metric_threshold_counts_high_quality_samples():
    centres, sigma = _ring8()
    x = torch.cat([centres[:1].repeat(5, 1), centres[1:2], torch.tensor([[0.0, 0.0]])])
    assert metrics.mode_coverage(x, centres, sigma, threshold=1)["modes"] == 2
    assert metrics.mode_coverage(x, centres, sigma, threshold=2)["modes"] == 1
    exactly = centres[2:3] + torch.tensor([[3 * sigma - 1e-6, 0.0]])  # on the 3-sigma boundary
    assert metrics.mode_coverage(exactly, centres, sigma)["high_quality"] == 1.0


# --------------------------------------------------------------------------
# Losses against their textbook formulas


def test_losses_match_their_formulas():
    r, f = torch.randn(64), torch.randn(64)
    sig = torch.sigmoid
    ref_d = -(sig(r).log().mean() + (1 - sig(f)).log().mean())
    assert torch.allclose(losses.d_loss("minimax", r, f), ref_d, atol=1e-5)
    assert torch.allclose(losses.d_loss("ns", r, f), ref_d, atol=1e-5)
    assert torch.allclose(losses.g_loss("minimax", f), (1 - sig(f)).log().mean(), atol=1e-5)
    assert torch.allclose(losses.g_loss("ns", f), -sig(f).log().mean(), atol=1e-5)
    assert torch.allclose(losses.d_loss("hinge", r, f), (1 - r).clamp(min=0).mean() + (1 + f).clamp(min=0).mean())
    assert torch.allclose(losses.d_loss("wgan-gp", r, f), f.mean() - r.mean())
    assert torch.allclose(losses.g_loss("hinge", f), -f.mean())


def test_gradient_penalty_zero_for_unit_gradient_and_known_otherwise():
    D = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        D.weight.copy_(torch.tensor([[0.6, 0.8, 0.0]]))  # ||grad|| = 1 everywhere
    real, fake = torch.randn(16, 3), torch.randn(16, 3)
    assert losses.gradient_penalty(D, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        D.weight.mul_(3.0)  # ||grad|| = 3: penalty (3 - 1)^2
    assert losses.gradient_penalty(D, real, fake).item() == pytest.approx(4.0, rel=1e-5)


def test_r1_penalty_is_the_squared_gradient_norm_at_real_examples():
    real = torch.randn(16, 3).requires_grad_(True)
    w = torch.nn.Parameter(torch.tensor(2.0))
    r = w * real.pow(2).sum(1) / 2  # D(x) = w ||x||^2 / 2: grad_x D = w x
    penalty = losses.r1_penalty(r, real)
    assert penalty.item() == pytest.approx(4.0 * real.detach().pow(2).sum(1).mean().item(), rel=1e-5)
    penalty.backward()  # it trains D: d/dw (w^2 E||x||^2) = 2 w E||x||^2
    assert w.grad.item() == pytest.approx(4.0 * real.detach().pow(2).sum(1).mean().item(), rel=1e-5)


def test_r1_is_applied_every_r1_interval_steps(tmp_path, monkeypatch):
    import dlcli.gan.train as gtrain

    calls = []

    def counting(r, real):
        calls.append(real.shape)
        return losses.r1_penalty(r, real)

    monkeypatch.setattr(gtrain, "r1_penalty", counting)
    base = dict(data="ring8", max_steps=12, eval_interval=0, snapshot_interval=0, checkpoint_interval=0, pack=2,
                **TINY)
    train(GanConfig(output=str(tmp_path / "r1"), r1_weight=10.0, r1_interval=4, **base))
    assert calls == [torch.Size([16, 4])] * 3  # steps 0, 4 and 8; D sees packed pairs
    train(GanConfig(output=str(tmp_path / "plain"), **base))
    assert len(calls) == 3
    a = rundir.load_tensors(tmp_path / "r1" / "checkpoint.safetensors")
    b = rundir.load_tensors(tmp_path / "plain" / "checkpoint.safetensors")
    assert not torch.equal(a["model.D.net.0.weight"], b["model.D.net.0.weight"])  # the penalty changed D
    for bad, message in ((dict(r1_weight=-1.0), "r1_weight"), (dict(r1_interval=0), "r1_interval")):
        with pytest.raises(ConfigError, match=message):
            GanConfig(**bad).validate()


# --------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_dcgan_shapes(size):
    nets = models.build("auto", "image", (3, size, size), 10, 0, 0, 4, "relu", spectral=False, d_norm=True)
    x = nets.G(torch.randn(2, 10))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert nets.D(x).shape == (2,)


def test_spectral_norm_bounds_d_and_ema_tracks_g():
    nets = models.build("mlp", "vector", (2,), 4, 32, 2, 0, "relu", spectral=True, d_norm=True)
    nets.D.train()
    for _ in range(20):  # power iterations converge
        nets.D(torch.randn(8, 2))
    nets.D.eval()
    w = nets.D.net[0].weight
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, rel=0.05)
    G, E = models.MLPGenerator(4, 2, 8, 1), models.MLPGenerator(4, 2, 8, 1)
    models.ema_update(E, G, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(E.parameters(), G.parameters()))
    before = [p.clone() for p in E.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    models.ema_update(E, G, 0.9)
    assert all(torch.allclose(e, b + 0.1) for e, b in zip(E.parameters(), before))


def test_truncated_noise_stays_inside():
    cfg = GanConfig(z_dim=8)
    z = noise(cfg, 500, truncation=0.5, generator=torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2


# --------------------------------------------------------------------------
# Data


def test_builtins_and_arrays(tmp_path):
    for name in gdata.MIXTURES:
        d = gdata.load(name)
        assert d.kind == "vector" and d.sample(100).shape == (100, 2)
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(200, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    d = gdata.load(str(tmp_path / "x.npy"))
    assert d.shape == (3,) and abs(float(d.x.mean())) < 1e-5 and abs(float(d.x.std()) - 1) < 0.01
    assert torch.allclose(d.to_data(d.x), torch.from_numpy(x), atol=1e-4)
    (tmp_path / "v.csv").write_text("a,b\n1,2\n3,4\n5,7\n")
    assert gdata.load(str(tmp_path / "v.csv")).shape == (2,)
    np.savez(tmp_path / "im.npz", x=np.zeros((4, 16, 16, 3), np.uint8))
    assert gdata.load(str(tmp_path / "im.npz")).shape == (3, 16, 16)


@pytest.mark.parametrize("array, message", [
    (np.zeros(10), "shape (10,)"),
    (np.zeros((2, 2, 2, 2, 2)), "shape (2, 2, 2, 2, 2)"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (np.zeros((4, 12, 12)), "12x12"),
])
def test_bad_arrays_are_one_clear_error(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gdata.load(str(tmp_path / "bad.npy"))


def _pngs(folder: Path, sizes: list[tuple[int, int]], rgb: bool = False) -> None:
    import imageio.v3 as iio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        iio.imwrite(folder / f"im{i}.png", rng.integers(0, 256, (h, w, 3) if rgb else (h, w), dtype=np.uint8))


def test_image_folders(tmp_path):
    with pytest.raises(InputError, match="no PNG or JPEG"):
        gdata.load(str(tmp_path))
    _pngs(tmp_path / "mixed", [(8, 8), (10, 12)], rgb=True)
    with pytest.raises(InputError, match="im1.png: is 12x10 pixels but im0.png is 8x8; set image_size"):
        gdata.load(str(tmp_path / "mixed"))
    d = gdata.load(str(tmp_path / "mixed"), image_size=16, color="gray")
    assert d.x is not None and d.x.shape == (2, 1, 16, 16) and d.x.min() >= -1 and d.x.max() <= 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "broken" / "b.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="a.png: cannot read the image"):
        gdata.load(str(tmp_path / "broken"))


# --------------------------------------------------------------------------
# A tiny ring8 run: files, metrics, exact resume


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("gan") / "ring"
    cfg = GanConfig(data="ring8", output=str(run), max_steps=30, eval_interval=10, snapshot_interval=10,
                    checkpoint_interval=10, eval_samples=500, **TINY)
    return run, train(cfg)


def test_tiny_run_writes_its_files(ring_run):
    run, s = ring_run
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "generator.safetensors", "checkpoint.safetensors",
                 "checkpoint.json", "samples.png", "training.gif", "losses.png", "gan.json"):
        assert (run / name).is_file(), name
    frames = sorted(p.name for p in (run / "snapshots").glob("*.png"))
    assert frames == ["step-0000000.png", "step-0000010.png", "step-0000020.png", "step-0000030.png"]
    import imageio.v3 as iio

    assert iio.imread(run / "training.gif", index=None).shape[0] == 4  # one frame per snapshot
    recs = rundir.read_metrics(run)
    losses_ = [r for r in recs if "loss_d" in r]
    assert [r["step"] for r in losses_] == [5, 10, 15, 20, 25, 30]
    assert all(0 <= r["d_real"] <= 1 and 0 <= r["d_fake"] <= 1 for r in losses_)
    evals = [r for r in recs if "modes" in r]
    assert [r["step"] for r in evals] == [10, 20, 30] and evals[-1]["samples"] == 500
    assert s["steps"] == 30 and json.loads((run / "gan.json").read_text())["eval"]["n_modes"] == 8


def test_resume_continues_exactly(tmp_path, ring_run):
    run, _ = ring_run
    half = tmp_path / "half"
    base = dict(data="ring8", output=str(half), eval_interval=10, snapshot_interval=10, checkpoint_interval=10,
                eval_samples=500, **TINY)
    train(GanConfig(max_steps=15, **base))
    with pytest.raises(OutputExistsError, match="--resume"):
        train(GanConfig(max_steps=30, **base))
    with pytest.raises(ConfigError, match="lr_g"):
        train(GanConfig(max_steps=30, **{**base, "lr_g": 1e-3}), resume=True)
    train(GanConfig(max_steps=30, **base), resume=True)
    a = rundir.load_tensors(run / "checkpoint.safetensors")
    b = rundir.load_tensors(half / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert json.loads((half / "checkpoint.json").read_text())["state"]["step"] == 30


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = GanConfig(data="ring8", output=str(tmp_path / "nan"), max_steps=40, checkpoint_interval=5, eval_interval=0,
                    snapshot_interval=0, **TINY)
    calls = {"n": 0}
    real_d_loss = losses.d_loss

    def poisoned(kind, r, f):
        calls["n"] += 1
        out = real_d_loss(kind, r, f)
        return out * float("nan") if calls["n"] > 12 else out

    import dlcli.gan.train as gtrain

    gtrain.d_loss, saved = poisoned, gtrain.d_loss
    try:
        with pytest.raises(TrainingDiverged, match=r"last good checkpoint \(step 10\) is kept"):
            train(cfg)
    finally:
        gtrain.d_loss = saved
    assert json.loads((tmp_path / "nan" / "checkpoint.json").read_text())["state"]["step"] == 10


# --------------------------------------------------------------------------
# Sampling and evaluation


def test_sample_and_eval_a_vector_run(tmp_path, ring_run):
    run, _ = ring_run
    sample(run, 100, tmp_path / "s.npy", seed=3)
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (100, 2) and x.dtype == np.float32
    sample(run, 100, tmp_path / "again.npy", seed=3)
    assert np.array_equal(x, np.load(tmp_path / "again.npy"))
    sample(run, 10, tmp_path / "s.csv")
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 10
    with pytest.raises(OutputExistsError):
        sample(run, 10, tmp_path / "s.npy")
    with pytest.raises(ConfigError, match=r"\.npy or \.csv"):
        sample(run, 10, tmp_path / "s.png")
    ev = evaluate(run, n=2500)
    assert ev["n_modes"] == 8 and ev["samples"] == 2500 and 0 <= ev["high_quality"] <= 1
    gr = load_run(run)
    assert gr.data.modes is not None and not gr.G.training


def test_image_folder_run_and_image_samples(tmp_path):
    _pngs(tmp_path / "imgs", [(8, 8)] * 6)
    cfg = GanConfig(data=str(tmp_path / "imgs"), output=str(tmp_path / "run"), max_steps=3, width=4, z_dim=4,
                    batch_size=4, snapshot_interval=0, eval_interval=0, device="cpu")
    s = train(cfg)
    assert s["eval"] == {}
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "run" / "samples.png").shape == (8 * 64 + 9 * 8, 8 * 64 + 9 * 8)  # 8x8 grid, x8
    sample(tmp_path / "run", 5, tmp_path / "g.npy")
    a = np.load(tmp_path / "g.npy")
    assert a.shape == (5, 8, 8) and a.dtype == np.uint8
    sample(tmp_path / "run", 3, tmp_path / "pngs", folder=True)
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"sample-0000{i}.png" for i in range(3)]
    sample(tmp_path / "run", 4, tmp_path / "grid.png")
    assert iio.imread(tmp_path / "grid.png").ndim == 2
    with pytest.raises(InputError, match="no coverage metric"):
        evaluate(tmp_path / "run")


def test_digits_classifier_covers_real_digits():
    pytest.importorskip("sklearn")
    images, labels = gdata.load_digits()
    x = torch.from_numpy(images)[:, None] / 8.0 - 1.0
    clf, acc = metrics.train_digits_classifier(x, torch.from_numpy(labels), steps=150)
    assert acc > 0.9
    cov = metrics.class_coverage(x, clf)
    assert cov["classes"] == 10 and cov["mean_confidence"] > 0.8
    ones = metrics.class_coverage(x[labels == 1], clf, threshold=20)
    assert ones["classes"] == 1 and ones["class_counts"][1] > 150
    assert F.softmax(clf(x[:2]), 1).shape == (2, 10)
