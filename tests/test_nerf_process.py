"""`dlcli nerf process`: COLMAP <-> NeRF pose conversion, the sparse-model reader, the error paths, and poses
recovered from a few fox photos against the shipped ones (pycolmap tests skip without it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.errors import ConfigError, InputError
from dlcli.nerf import colmap
from dlcli.nerf.colmap import qvec_to_rotmat, read_model, rotmat_to_qvec
from dlcli.nerf.process import process
from dlcli.nerf.transforms import c2w_from_colmap, colmap_from_c2w, normalise, pose_errors, similarity

FOX = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nerf" / "fox"


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world, OpenGL axes: the camera looks down -z, y up."""
    z = eye - target
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    m[:3, 3] = eye
    return m


def ring(n: int = 8, target=(0.3, -0.2, 0.5), up=(0.0, 0.0, 1.0), radius: float = 3.0) -> np.ndarray:
    """n cameras on a tilted ring around `target`, all looking at it, with `up` as the world's up."""
    up = np.asarray(up, dtype=float) / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    t = np.asarray(target, dtype=float)
    angles = np.linspace(0, 1.5 * np.pi, n)
    return np.stack([look_at(t + radius * (np.cos(g) * a + np.sin(g) * b) + 1.2 * up, t, up) for g in angles])


def test_colmap_convention_round_trip():
    c2w = ring()
    r, t = colmap_from_c2w(c2w)
    # COLMAP's camera looks down +z: the target in front of every camera has positive depth, and the camera
    # centre is -R^T t
    target = np.array([0.3, -0.2, 0.5])
    depth = (r @ target + t)[:, 2]
    assert (depth > 0).all()
    np.testing.assert_allclose(-(np.transpose(r, (0, 2, 1)) @ t[:, :, None])[:, :, 0], c2w[:, :3, 3], atol=1e-12)
    # image y points down in COLMAP: the world's up is -y in each camera
    assert ((r @ np.array([0.0, 0, 1]))[:, 1] < 0).all()
    np.testing.assert_allclose(c2w_from_colmap(r, t), c2w, atol=1e-12)
    for m in r:
        np.testing.assert_allclose(qvec_to_rotmat(rotmat_to_qvec(m)), m, atol=1e-12)


def test_normalise_up_centre_scale():
    c2w = ring(up=(0.3, -0.5, 0.8), target=(5.0, 2.0, -1.0), radius=7.0)
    out = normalise(c2w)
    up = out[:, :3, 1].mean(0)
    assert up[2] / np.linalg.norm(up) == pytest.approx(1.0, abs=1e-9)
    assert np.linalg.norm(out[:, :3, 3], axis=-1).mean() == pytest.approx(4.0)
    from dlcli.nerf.data import focus_point

    np.testing.assert_allclose(focus_point(out), 0, atol=1e-9)
    # a similarity of the original: nothing else changed
    e = pose_errors(out, c2w)
    assert e["rotation_deg"] < 1e-4 and e["centre_pct"] < 1e-6


def test_similarity_and_pose_errors():
    rng = np.random.default_rng(0)
    c2w = ring(n=10)
    q = rng.normal(size=4)
    rot = qvec_to_rotmat(q)
    moved = c2w.copy()
    moved[:, :3, :3] = rot @ c2w[:, :3, :3]
    moved[:, :3, 3] = 2.5 * c2w[:, :3, 3] @ rot.T + [1.0, -3.0, 2.0]
    s, r, t = similarity(c2w[:, :3, 3], moved[:, :3, 3])
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, [1.0, -3.0, 2.0], atol=1e-9)
    e = pose_errors(c2w, moved)
    assert e["rotation_deg"] < 1e-6 and e["centre_pct"] < 1e-6
    # one camera turned by 3 degrees about its axis: the mean rotation error is 3 / 10 degrees
    turn = qvec_to_rotmat([np.cos(np.radians(1.5)), 0, 0, np.sin(np.radians(1.5))])
    bad = c2w.copy()
    bad[4, :3, :3] = bad[4, :3, :3] @ turn
    assert pose_errors(bad, moved)["rotation_deg"] == pytest.approx(0.3, rel=1e-6)


def write_text_model(d: Path, c2w: np.ndarray, names: list[str], cameras: str = "1 PINHOLE 32 24 30 31 16 12\n",
                     camera_ids: list[int] | None = None) -> None:
    """A COLMAP text model of these cameras: one point seen by two images, error 0.5, and one of error 1.5."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "cameras.txt").write_text("# Camera list\n" + cameras)
    r, t = colmap_from_c2w(c2w)
    lines = ["# Image list with two lines of data per image:"]
    for i, name in enumerate(names):
        q = rotmat_to_qvec(r[i])
        cam = camera_ids[i] if camera_ids else 1
        lines.append(f"{i + 1} {' '.join(repr(float(v)) for v in q)} {' '.join(repr(float(v)) for v in t[i])} {cam} {name}")
        lines.append(["1.0 2.0 1 3.0 4.0 2", "1.0 2.0 1 3.0 4.0 -1"][i] if i < 2 else "")
    (d / "images.txt").write_text("\n".join(lines) + "\n")
    (d / "points3D.txt").write_text("# 3D point list\n1 0.1 0.2 0.3 255 0 0 0.5 1 0 2 0\n2 0 0 0 1 2 3 1.5 1 1\n")


def write_images(d: Path, names: list[str], size=(32, 24)) -> None:
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(d / name)


NAMES = [f"img_{i:02d}.png" for i in range(6)]


def test_colmap_model_text(cli, tmp_path):
    c2w = ring(n=6)
    write_text_model(tmp_path / "sparse" / "0", c2w, NAMES[::-1])  # any order in the file
    write_images(tmp_path / "photos", NAMES)
    m = read_model(tmp_path / "sparse" / "0")
    assert m.names == NAMES and m.points == 2 and m.reprojection_error == pytest.approx(1.0)
    r = cli("nerf", "process", "photos", "-o", "scene", "--colmap-model", "sparse/0", "--downscale", "2", "-q")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(Path("scene") / "transforms.json")
    doc = json.loads((tmp_path / "scene" / "transforms.json").read_text())
    assert (doc["w"], doc["h"], doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"]) == (16, 12, 15, 15.5, 8, 6)
    assert doc["aabb_scale"] == 4 and doc["k1"] == 0
    assert [f["file_path"] for f in doc["frames"]] == [f"images/{n}" for n in NAMES]
    got = np.array([f["transform_matrix"] for f in doc["frames"]])
    e = pose_errors(got, c2w[::-1])  # the file listed them in reverse
    assert e["rotation_deg"] < 1e-6 and e["centre_pct"] < 1e-6
    from PIL import Image

    with Image.open(tmp_path / "scene" / "images" / NAMES[0]) as im:
        assert im.size == (16, 12)
    # nerf train's loader reads it
    from dlcli.nerf.data import load

    scene = load(tmp_path / "scene", "train", holdout=3)
    assert scene.images.shape == (4, 12, 16, 3) and scene.intrinsics.fx == 15


def test_colmap_model_binary_matches_text(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    write_text_model(tmp_path / "text", ring(n=6), NAMES, cameras="1 OPENCV 32 24 30 31 16 12 0.1 -0.02 0.001 0.002\n")
    rec = pycolmap.Reconstruction()
    rec.read_text(tmp_path / "text")
    (tmp_path / "bin").mkdir()
    rec.write_binary(tmp_path / "bin")
    a, b = read_model(tmp_path / "text"), read_model(tmp_path / "bin")
    assert a.names == b.names and a.camera_ids == b.camera_ids and a.points == b.points == 2
    assert a.cameras == b.cameras and b.cameras[1].k2 == -0.02 and b.cameras[1].p2 == 0.002
    np.testing.assert_allclose(a.rotations, b.rotations, atol=1e-12)
    np.testing.assert_allclose(a.translations, b.translations, atol=1e-12)
    assert b.reprojection_error == pytest.approx(1.0)


def test_colmap_model_errors(cli, tmp_path):
    write_images(tmp_path / "photos", NAMES)
    c2w = ring(n=6)
    cases = {
        "fisheye": ("1 OPENCV_FISHEYE 32 24 30 31 16 12 0 0 0 0\n", None, "OPENCV_FISHEYE is not supported"),
        "short": ("1 PINHOLE 32 24 30 31 16\n", None, "malformed PINHOLE camera"),
        "two": ("1 PINHOLE 32 24 30 31 16 12\n2 PINHOLE 32 24 40 41 16 12\n", [1, 2, 1, 2, 1, 2],
                "2 different cameras"),
        "unknown": ("1 PINHOLE 32 24 30 31 16 12\n", [1, 1, 1, 1, 1, 7], "uses camera 7"),
    }
    for name, (cams, ids, message) in cases.items():
        write_text_model(tmp_path / name, c2w, NAMES, cams, ids)
        r = cli("nerf", "process", "photos", "-o", f"out_{name}", "--colmap-model", name, "-q")
        assert r.exit_code != 0 and message in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    write_text_model(tmp_path / "missing", c2w, [*NAMES[:5], "nope.png"])
    r = cli("nerf", "process", "photos", "-o", "out_missing", "--colmap-model", "missing")
    assert r.exit_code != 0 and "nope.png: image not found" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("nerf", "process", "photos", "-o", "out_empty", "--colmap-model", "empty")
    assert r.exit_code != 0 and "no COLMAP model here" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cameras.bin").write_bytes(b"\x05\x00")
    (tmp_path / "bad" / "images.bin").write_bytes(b"")
    r = cli("nerf", "process", "photos", "-o", "out_bad", "--colmap-model", "bad")
    assert r.exit_code != 0 and "cameras.bin: truncated" in r.stderr


def test_input_errors(cli, tmp_path, monkeypatch):
    write_images(tmp_path / "two", NAMES[:2])
    write_text_model(tmp_path / "sparse", ring(n=6), NAMES)
    write_images(tmp_path / "photos", NAMES)
    monkeypatch.setattr(colmap, "pycolmap_module", lambda: None)
    r = cli("nerf", "process", "two", "-o", "out")
    assert r.exit_code != 0 and "2 images; structure from motion needs at least 3" in r.stderr
    r = cli("nerf", "process", "nothere", "-o", "out")
    assert r.exit_code != 0 and "nothere: no such folder or video" in r.stderr
    (tmp_path / "notes.txt").write_text("x")
    r = cli("nerf", "process", "notes.txt", "-o", "out")
    assert r.exit_code != 0 and "not a folder of images or a video" in r.stderr
    r = cli("nerf", "process", "photos", "-o", "out", "--matching", "fast")
    assert r.exit_code == 2 and "'fast' is not one of auto, exhaustive, sequential" in r.stderr
    r = cli("nerf", "process", "photos", "-o", "out", "--aabb-scale", "3")
    assert r.exit_code == 2 and "power of two" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = cli("nerf", "process", "photos", "-o", "full", "--colmap-model", "sparse")
    assert r.exit_code != 0 and "exists and is not empty (use --force)" in r.stderr
    r = cli("nerf", "process", "photos", "-o", "full", "--colmap-model", "sparse", "--force", "-q")
    assert r.exit_code == 0 and (tmp_path / "full" / "x").is_file()  # --force removes only its own outputs
    # the suggested way to look at a partial model, written over itself: refused before anything is removed
    write_text_model(tmp_path / "full" / "colmap" / "sparse" / "0", ring(n=6), NAMES)
    r = cli("nerf", "process", "photos", "-o", "full", "--colmap-model", "full/colmap/sparse/0", "--force")
    assert r.exit_code != 0 and "which this command rewrites" in r.stderr
    assert (tmp_path / "full" / "colmap" / "sparse" / "0" / "images.txt").is_file()
    r = cli("nerf", "process", "full/images", "-o", "full", "--colmap-model", "sparse", "--force")
    assert r.exit_code != 0 and "which this command rewrites" in r.stderr
    assert len(list((tmp_path / "full" / "images").iterdir())) == 6
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 10)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    r = cli("nerf", "process", "clip.mp4", "-o", "out")
    assert r.exit_code != 0 and "reading a video needs imageio-ffmpeg" in r.stderr


def test_pycolmap_missing(cli, tmp_path, monkeypatch):
    write_images(tmp_path / "photos", NAMES)
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    r = cli("nerf", "process", "photos", "-o", "out")
    assert r.exit_code != 0 and "pip install 'dlcli[colmap]'" in r.stderr
    assert not (tmp_path / "out").exists()  # refused before copying anything


def test_too_few_registered(tmp_path, monkeypatch):
    """Fewer than half the images in COLMAP's model: one error naming the counts and where the model is."""
    write_images(tmp_path / "photos", NAMES)
    monkeypatch.setattr(colmap, "pycolmap_module", lambda: None)

    def two_of_six(images, names, work, *args, **kwargs):
        write_text_model(work / "sparse" / "0", ring(n=2), names[:2])
        return {"extract": 0.0}

    monkeypatch.setattr(colmap, "run_sfm", two_of_six)
    with pytest.raises(InputError, match=r"registered only 2 of 6 images .* partial model is in"):
        process(tmp_path / "photos", tmp_path / "out")
    assert (tmp_path / "out" / "colmap" / "sparse" / "0" / "images.txt").is_file()  # kept to look at
    assert not (tmp_path / "out" / "transforms.json").exists()
    with pytest.raises(ConfigError, match="downscale"):
        process(tmp_path / "photos", tmp_path / "out2", downscale=0)


def test_failed_reconstruction(tmp_path):
    """Noise shares no features between images: COLMAP cannot start a model."""
    pytest.importorskip("pycolmap")
    from PIL import Image

    (tmp_path / "noise").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).convert("RGB").save(
            tmp_path / "noise" / f"{i}.png")
    with pytest.raises(InputError, match="could not reconstruct the scene from the 3 images"):
        process(tmp_path / "noise", tmp_path / "out", threads=2)
    assert not (tmp_path / "out").exists()  # nothing left behind: a rerun needs no --force


def test_unreadable_video(tmp_path, monkeypatch):
    pytest.importorskip("imageio_ffmpeg")
    monkeypatch.setattr(colmap, "pycolmap_module", lambda: None)
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="clip.mp4: not a readable video"):
        process(tmp_path / "clip.mp4", tmp_path / "out", force=True)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_fox_poses_from_a_few_photos(tmp_path):
    """Eight fox photos at 135x240: COLMAP's poses agree with the shipped ones within 2 degrees and 5% of the
    scene radius after a similarity alignment (the bench checks all 67)."""
    pytest.importorskip("pycolmap")
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox capture not found at {FOX}")
    ref = {Path(f["file_path"]).name: np.array(f["transform_matrix"])
           for f in json.loads((FOX / "transforms.json").read_text())["frames"]}
    (tmp_path / "photos").mkdir()
    names = sorted(ref)[0:33:4]
    for n in names:
        (tmp_path / "photos" / n).symlink_to(FOX / "images" / n)
    s = process(tmp_path / "photos", tmp_path / "scene", downscale=8, threads=2)
    assert s["registered"] == len(names) and s["matching"] == "exhaustive"
    assert 0 < s["reprojection_error"] < 1.5 and (s["width"], s["height"]) == (135, 240)
    doc = json.loads((tmp_path / "scene" / "transforms.json").read_text())
    got = np.array([f["transform_matrix"] for f in doc["frames"]])
    e = pose_errors(got, np.stack([ref[Path(f["file_path"]).name] for f in doc["frames"]]))
    assert e["rotation_deg"] <= 2 and e["centre_pct"] <= 5, e
    assert doc["fl_x"] * 8 == pytest.approx(1375.5, rel=0.05)  # the shipped focal length, full size
    assert (tmp_path / "scene" / "colmap" / "sparse" / "0" / "images.bin").is_file()


def test_fox_video(tmp_path):
    """A video of 17 fox photos (270x480 MP4), 9 frames sampled evenly at half size, matched sequentially:
    every frame registered and its pose within tolerance of the photo it came from."""
    pytest.importorskip("pycolmap")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox capture not found at {FOX}")
    from PIL import Image

    ref = {Path(f["file_path"]).name: np.array(f["transform_matrix"])
           for f in json.loads((FOX / "transforms.json").read_text())["frames"]}
    names = sorted(ref)[0:33:2]
    writer = imageio_ffmpeg.write_frames(str(tmp_path / "fox.mp4"), (270, 480), fps=5, quality=9, macro_block_size=2,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for n in names:
        with Image.open(FOX / "images" / n) as im:
            im.draft("RGB", (270, 480))
            writer.send(np.ascontiguousarray(np.asarray(im.convert("RGB").resize((270, 480)))))
    writer.close()
    s = process(tmp_path / "fox.mp4", tmp_path / "scene", downscale=2, frames=9, threads=2)
    assert (s["images"], s["registered"], s["matching"], s["width"], s["height"]) == (9, 9, "sequential", 135, 240)
    doc = json.loads((tmp_path / "scene" / "transforms.json").read_text())
    assert [f["file_path"] for f in doc["frames"]] == [f"images/frame_{i:05d}.jpg" for i in range(1, 10)]
    got = np.array([f["transform_matrix"] for f in doc["frames"]])
    e = pose_errors(got, np.stack([ref[n] for n in names[::2]]))  # frames 0, 2, ... 16 of the 17
    assert e["rotation_deg"] <= 2 and e["centre_pct"] <= 5, e
