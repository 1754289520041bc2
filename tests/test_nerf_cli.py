"""`dlcli nerf synth|train|render|eval` end to end on 8x8 images and a few steps."""

from __future__ import annotations

import json

import pytest

from dlcli.core import rundir

TINY = ["--set", "log2_table=8", "--set", "levels=4", "--set", "max_res=32", "--set", "hidden=16",
        "--set", "n_samples=16", "--set", "grid_resolution=8", "--set", "grid_warmup=4", "--set", "grid_interval=4",
        "--set", "log_interval=2", "--set", "checkpoint_interval=4", "-b", "64", "--quiet"]


@pytest.fixture
def scene(cli):
    r = cli("nerf", "synth", "-o", "scene", "--size", "8", "--train", "6", "--val", "1", "--test", "2", "-q")
    assert r.exit_code == 0, r.output
    return "scene"


def test_train_render_eval(cli, scene, tmp_path):
    r = cli("nerf", "train", scene, "-o", "run", "--max-steps", "12", "--val-interval", "6", *TINY)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "run"
    run = tmp_path / "run"
    for f in ("config.yaml", "nerf.json", "metrics.jsonl", "model.safetensors", "checkpoint.json", "psnr.png",
              "val/step_000006.png", "val/step_000012.png"):
        assert (run / f).is_file(), f
    m = rundir.read_metrics(run)
    assert [x["step"] for x in m if "psnr" in x] == [2, 4, 6, 8, 10, 12]
    assert all(x["val_psnr"] > 5 for x in m if "val_psnr" in x)

    r = cli("nerf", "render", "run", "-o", "orbit.gif", "-n", "3", "--depth", "-q")
    assert r.exit_code == 0, r.output
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "orbit.gif", index=None)
    assert frames.shape[:3] == (3, 8, 16)  # RGB | depth
    r = cli("nerf", "render", "run", "-o", "views", "--path", "test", "--width", "12", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == [
        "depth_0000.png", "depth_0001.png", "rgb_0000.png", "rgb_0001.png"]
    assert iio.imread(tmp_path / "views" / "rgb_0000.png").shape == (12, 12, 3)
    r = cli("nerf", "render", "run", "-o", "orbit.gif", "-q")
    assert r.exit_code != 0 and "exists" in r.stderr

    r = cli("nerf", "eval", "run", "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["results"]["num_views"] == 2 and len(doc["per_view"]) == 2
    assert doc["results"]["psnr"] == pytest.approx(sum(v["psnr"] for v in doc["per_view"]) / 2)
    assert -1 <= doc["results"]["ssim"] <= 1 and "Wang" in doc["implementation"]["ssim"]


def test_resume_continues_exactly(cli, scene, tmp_path):
    # A constant learning rate: the schedule otherwise depends on the budget, which differs between the runs.
    # batch_samples: the batch size follows the samples per ray so far, which the checkpoint must carry.
    args = ["--seed", "3", "--val-interval", "0", "--set", "lr_final=1", "--set", "batch_samples=512", *TINY]
    assert cli("nerf", "train", scene, "-o", "full", "--max-steps", "8", *args).exit_code == 0
    assert cli("nerf", "train", scene, "-o", "part", "--max-steps", "4", *args).exit_code == 0
    r = cli("nerf", "train", scene, "-o", "part", "--max-steps", "8", "--resume", *args)
    assert r.exit_code == 0, r.output
    a = rundir.load_tensors(tmp_path / "full" / "model.safetensors")
    b = rundir.load_tensors(tmp_path / "part" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    rays = [m["rays"] for m in rundir.read_metrics(tmp_path / "full") if "rays" in m]
    assert rays[0] < 64  # 512 samples / 16 samples per ray before the grid skips anything
    r = cli("nerf", "train", scene, "-o", "part", "--max-steps", "8", *args)
    assert r.exit_code != 0 and "--resume" in r.stderr


def test_original_nerf_model_trains(cli, scene, tmp_path):
    r = cli("nerf", "train", scene, "-o", "run", "--model", "nerf", "--max-steps", "4", "--val-interval", "0",
            "--set", "width=16", "--set", "depth=2", "--set", "n_coarse=8", "--set", "n_fine=8",
            "--set", "pos_freqs=4", "-b", "32", "-q")
    assert r.exit_code == 0, r.output
    assert any(k.startswith("fine.") for k in rundir.load_tensors(tmp_path / "run" / "model.safetensors"))
    assert json.loads(cli("nerf", "eval", "run", "-q").stdout)["model"] == "nerf"


def test_bad_input_is_one_line(cli, scene, tmp_path):
    p = tmp_path / scene / "transforms_train.json"
    doc = json.loads(p.read_text())
    doc["frames"][1]["file_path"] = "../../outside"
    p.write_text(json.dumps(doc))
    r = cli("nerf", "train", scene, "-o", "run", "--max-steps", "2", *TINY)
    assert r.exit_code != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "leaves the dataset folder" in lines[0] and "transforms_train.json" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written
    r = cli("nerf", "train", "nowhere", "-o", "run", "--max-steps", "2")
    assert r.exit_code != 0 and "nowhere" in r.stderr
    r = cli("nerf", "train", scene, "-o", "run", "--set", "modle=hash")
    assert r.exit_code != 0 and "model" in r.stderr


def test_print_config(cli):
    r = cli("nerf", "train", "x", "--print-config", "--max-steps", "7")
    assert r.exit_code == 0 and "max_steps: 7" in r.stdout and "data: x" in r.stdout
