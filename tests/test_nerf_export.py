"""`dlcli nerf export`: binary PLY, marching cubes on a field of known shape (a sphere), depth points."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlcli.errors import ConfigError, InputError
from dlcli.nerf import export as ex
from dlcli.nerf.fields import HashField
from dlcli.nerf.models import HashNerf, VanillaNerf
from dlcli.nerf.occupancy import OccupancyGrid
from dlcli.nerf.ply import write_ply
from dlcli.nerf.rays import Intrinsics

CENTER, RADIUS, COLOR = torch.tensor([0.3, -0.2, 0.1]), 0.5, (0.2, 0.6, 0.4)
TINY = ["--set", "log2_table=8", "--set", "levels=4", "--set", "max_res=32", "--set", "hidden=16",
        "--set", "n_samples=64", "--set", "grid_resolution=8", "-b", "64", "--quiet"]


def read_ply(path: Path | bytes) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Header lines, vertices and faces of a binary little-endian PLY as this module writes it, parsed the way
    a viewer does: the header names the elements, their counts and properties; the body is packed records."""
    data = path if isinstance(path, bytes) else path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    head = data[:end].decode("ascii").splitlines()
    assert head[:2] == ["ply", "format binary_little_endian 1.0"]
    kinds = {"float": "<f4", "uchar": "u1", "int": "<i4"}
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in head:
        w = line.split()
        if w[0] == "element":
            elements.append((w[1], int(w[2]), []))
        elif w[0] == "property" and w[1] != "list":
            elements[-1][2].append((w[2], kinds[w[1]]))
        elif w[0] == "property":
            assert w[1:] == ["list", "uchar", "int", "vertex_indices"]
            elements[-1][2].extend([("n", "u1"), ("vertex_indices", "<i4", (3,))])  # type: ignore[list-item]
    out, pos = {}, end
    for name, count, props in elements:
        a = np.frombuffer(data, np.dtype(props), count, pos)
        out[name], pos = a, pos + a.nbytes
    assert pos == len(data), "trailing bytes after the last element"
    return head, out["vertex"], out.get("face")


class Sphere(nn.Module):
    """A field of known shape: a sphere whose density is the export's default level on its surface, rising
    (exponentially, up to 1e4) inside and falling outside, zero from 0.2 out; colour COLOR, except that red
    measures how squarely the sphere is seen: dot(-d, outward normal)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # so that the model has a device

    def density(self, x: torch.Tensor) -> torch.Tensor:
        inside = RADIUS - (x - CENTER).norm(dim=-1)
        sigma = (ex.default_threshold(1.5) * torch.exp(40.0 * inside)).clamp(max=1e4)
        return torch.where(inside < -0.2, torch.zeros_like(sigma), sigma)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = (x - CENTER) / (x - CENTER).norm(dim=-1, keepdim=True)
        rgb = torch.tensor(COLOR).expand(len(x), 3).clone()
        rgb[:, 0] = (-d * out).sum(-1).clamp(0, 1)
        return self.density(x), rgb


def sphere_model() -> HashNerf:
    m = HashNerf(1.5, 0.05, n_samples=256, levels=2, log2_table=8, max_res=32, hidden=8, grid_resolution=8)
    m.field = Sphere()
    return m.eval()


def look_at(eye: list[float]) -> torch.Tensor:
    """Camera-to-world (OpenGL) at `eye` looking at the sphere's centre."""
    e = torch.tensor(eye)
    back = (e - CENTER) / (e - CENTER).norm()
    right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]), back)
    right = right / right.norm()
    m = torch.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, torch.linalg.cross(back, right), back, e
    return m


def test_ply_is_binary_with_the_declared_elements():
    buf = io.BytesIO()
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.5]], np.float32)
    col = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    write_ply(buf, pts, col, np.array([[0, 1, 2]]), comment="a triangle")
    head, v, f = read_ply(buf.getvalue())
    assert head == ["ply", "format binary_little_endian 1.0", "comment a triangle", "element vertex 3",
                    "property float x", "property float y", "property float z", "property uchar red",
                    "property uchar green", "property uchar blue", "element face 1",
                    "property list uchar int vertex_indices", "end_header"]
    assert np.array_equal(np.stack([v["x"], v["y"], v["z"]], 1), pts)
    assert np.array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), col)
    assert f["n"].tolist() == [3] and f["vertex_indices"].tolist() == [[0, 1, 2]]
    buf = io.BytesIO()
    write_ply(buf, pts, col)  # a point cloud: no face element at all
    head, v, f = read_ply(buf.getvalue())
    assert f is None and len(v) == 3 and not any(line.startswith("element face") for line in head)


def test_mesh_of_a_sphere_has_its_bounding_box_and_faces_the_viewer():
    pytest.importorskip("skimage")
    m = ex.mesh(sphere_model(), resolution=64)
    v, f = m["vertices"], m["faces"]
    h = 3.0 / 63  # grid spacing
    assert np.abs(v.min(0) - (CENTER.numpy() - RADIUS)).max() < h
    assert np.abs(v.max(0) - (CENTER.numpy() + RADIUS)).max() < h
    assert np.abs(np.linalg.norm(v - CENTER.numpy(), axis=1) - RADIUS).max() < h / 2
    assert f.shape[1] == 3 and f.min() == 0 and f.max() == len(v) - 1
    assert len(f) > 1000
    # counter-clockwise seen from outside: each face's right-hand normal points away from the centre
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert (np.einsum("ij,ij->i", cross, v[f].mean(1) - CENTER.numpy()) > 0).all()
    assert m["threshold"] == pytest.approx(math.log(2) / 0.03)
    # coloured by the field looking along -normal: squarely (red = 1; marching cubes' normals are estimates
    # from the grid, a few degrees off), the rest as the field says
    assert m["colors"][:, 0].mean() >= 250 and m["colors"][:, 0].min() >= 200
    assert np.abs(m["colors"][:, 1:].astype(int) - [153, 102]).max() <= 1


def test_mesh_of_the_original_model_uses_its_fine_network():
    pytest.importorskip("skimage")
    model = VanillaNerf(1.5, 0.05, width=8, depth=2, pos_freqs=2, dir_freqs=1)
    model.fine = Sphere()
    v = ex.mesh(model.eval(), resolution=32)["vertices"]
    assert np.abs(v.max(0) - (CENTER.numpy() + RADIUS)).max() < 3.0 / 31


def test_mesh_leaves_out_what_the_occupancy_grid_skips():
    pytest.importorskip("skimage")
    model = sphere_model()
    r = model.grid.resolution
    model.grid.density.fill_(1e3)
    model.grid.density[r // 2:] = 0.0  # cells with x >= 0 measured empty: the renderer sees nothing there
    v = ex.mesh(model, resolution=64)["vertices"]
    assert v[:, 0].min() == pytest.approx(CENTER[0].item() - RADIUS, abs=0.05)
    assert v[:, 0].max() < 0.05


def test_mesh_threshold_out_of_range_and_missing_scikit_image_are_one_line(monkeypatch):
    pytest.importorskip("skimage")
    with pytest.raises(InputError, match=r"no surface at density 1e\+06: the field's density on the grid spans 0 "
                                         r"to 1e\+04; choose a --threshold inside that range"):
        ex.mesh(sphere_model(), resolution=16, threshold=1e6)
    with pytest.raises(ConfigError, match="threshold: -1.0 must be a positive density"):
        ex.mesh(sphere_model(), resolution=16, threshold=-1.0)
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ConfigError, match=r"--mesh: marching cubes needs scikit-image; install it with "
                                          r"pip install 'dlcli\[mesh\]'"):
        ex.mesh(sphere_model(), resolution=16)


def test_points_lie_on_the_surface_with_the_background_removed():
    model = sphere_model()
    poses = torch.stack([look_at([0.3, -4.2, 1.1]), look_at([4.0, 0.5, 0.6])])
    k = Intrinsics(60.0, 60.0, 8.0, 8.0, 16, 16)
    p = ex.points(model, poses, k, torch.ones(3), max_points=60)
    x, c = p["vertices"], p["colors"]
    assert len(x) == 60  # 30 from each view: each sees more than 30 opaque pixels
    dist = np.linalg.norm(x - CENTER.numpy(), axis=1)
    # on the surface; a little outside at worst, where rays graze the sphere's soft outer edge
    assert (dist > RADIUS - 0.01).all() and (dist < RADIUS + 0.06).all() and np.median(dist) < RADIUS + 0.02
    assert np.abs(c[:, 1:].astype(int) - [153, 102]).max() <= 2  # not lightened by the white background
    # more points than a view has opaque pixels: each view gives all it has
    assert len(ex.points(model, poses[:1], k, torch.ones(3), max_points=10_000)["vertices"]) < 16 * 16


@pytest.fixture
def run(cli, tmp_path):
    r = cli("nerf", "synth", "-o", "scene", "--size", "8", "--train", "3", "--val", "1", "--test", "1", "-q")
    assert r.exit_code == 0, r.output
    r = cli("nerf", "train", "scene", "-o", "run", "--max-steps", "2", "--val-interval", "0", *TINY)
    assert r.exit_code == 0, r.output
    return tmp_path / "run"


def test_export_cli_writes_mesh_and_points(cli, run, tmp_path, monkeypatch):
    """The whole command on a real run directory whose field is swapped for the sphere, so that the geometry
    is known; the trained cameras, intrinsics and box come from the run."""
    pytest.importorskip("skimage")
    sphere = Sphere()
    monkeypatch.setattr(HashField, "density", lambda self, x: sphere.density(x))
    monkeypatch.setattr(HashField, "forward", lambda self, x, d: sphere(x, d))
    monkeypatch.setattr(OccupancyGrid, "occupied", lambda self, x, t: torch.ones(x.shape[:-1], dtype=torch.bool))
    r = cli("nerf", "export", "run", "--mesh", "m.ply", "--points", "p.ply", "--resolution", "48",
            "--max-points", "20")
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["m.ply", "p.ply"]
    assert "mesh:" in r.stderr and "faces at density 23.1" in r.stderr and "points: 20 from 3 views" in r.stderr
    head, v, f = read_ply(tmp_path / "m.ply")
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    assert np.abs(xyz.min(0) - (CENTER.numpy() - RADIUS)).max() < 3.0 / 47
    assert np.abs(xyz.max(0) - (CENTER.numpy() + RADIUS)).max() < 3.0 / 47
    assert f is not None and len(f) > 100 and int(f["vertex_indices"].max()) == len(v) - 1
    assert f"element vertex {len(v)}" in head and f"element face {len(f)}" in head
    head, v, f = read_ply(tmp_path / "p.ply")
    assert f is None and len(v) == 20 and "element vertex 20" in head
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    dist = np.linalg.norm(xyz - CENTER.numpy(), axis=1)
    assert (dist > RADIUS - 0.02).all() and (dist < RADIUS + 0.07).all()  # 64 bins of 0.08 along each ray

    r = cli("nerf", "export", "run", "--points", "p.ply")
    assert r.exit_code != 0 and r.stderr.strip() == "error: p.ply: already exists (use --force to overwrite)"
    r = cli("nerf", "export", "run", "--points", "p.ply", "--max-points", "7", "--force", "-q")
    assert r.exit_code == 0, r.output
    assert len(read_ply(tmp_path / "p.ply")[1]) == 7
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".ply") or "tmp" in p.name) == \
        ["m.ply", "p.ply"]  # no temp files left


def test_export_of_an_instant_ngp_run_is_in_the_data_set_frame():
    info = {"center": [1.0, 2.0, 3.0], "scale": 0.5}
    x = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]], np.float32)
    assert ex.to_data_frame(x, info).tolist() == [[1.0, 2.0, 3.0], [3.0, 0.0, 4.0]]


def test_export_errors_are_one_line(cli, tmp_path):
    (tmp_path / "notrun").mkdir()
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "meta.json").write_text(json.dumps({"stage": "lm"}))
    for args, msg in [
        (["notrun", "--points", "p.ply"], "error: notrun: not a dlcli run directory (no meta.json)"),
        (["lm", "--points", "p.ply"], "error: lm: not a NeRF run (its stage is 'lm')"),
        (["lm"], "error: nothing to export: give --mesh OUT.ply and/or --points OUT.ply"),
        (["lm", "--mesh", "a.ply", "--points", "a.ply"], "error: a.ply: --mesh and --points name the same file"),
        (["lm", "--points", "nodir/p.ply"], "error: nodir: output directory does not exist"),
    ]:
        r = cli("nerf", "export", *args)
        assert r.exit_code != 0 and r.stderr.strip() == msg, (args, r.output)
    assert not (tmp_path / "p.ply").exists()
