"""NeRF building blocks: rays, sampling, volume rendering, encodings, metrics, data loading, synth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dlcli.errors import ConfigError, InputError
from dlcli.nerf import data as nd
from dlcli.nerf.encodings import PRIMES, HashEncoding, PositionalEncoding, level_resolutions
from dlcli.nerf.metrics import psnr, ssim
from dlcli.nerf.rays import Intrinsics, generate_rays, intersect_box
from dlcli.nerf.render import composite, surface_depth, weights
from dlcli.nerf.sampling import importance, stratified
from dlcli.nerf.synth import SynthConfig, look_at, synth


@pytest.fixture
def scene(tmp_path):
    synth(SynthConfig(output=str(tmp_path / "scene"), size=8, n_train=4, n_val=1, n_test=2))
    return tmp_path / "scene"


def test_rays_from_a_known_camera_hit_known_pixels():
    # A camera at (0, 0, 5) looking at the origin, fx = fy = 10, principal point at the image centre.
    k = Intrinsics(10.0, 10.0, 4.0, 3.0, 8, 6)
    c2w = torch.from_numpy(look_at(np.array([0.0, 0.0, 5.0]), up=np.array([0.0, 1.0, 0.0]))).float()
    o, d = generate_rays(c2w[None], k)
    assert o.shape == d.shape == (1, 6, 8, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, 6, 8))
    # World point (1, 0.5, 0) projects to u = cx + fx * 1/5 = 6, v = cy - fy * 0.5/5 = 2: pixel (row 2, col 6)'s
    # corner is at (6, 2), so the ray through the pixel centre (6.5, 2.5) must pass at (1.25, 0.25, 0).
    t = 5.0 / -d[0, 2, 6, 2]
    hit = o[0, 2, 6] + t * d[0, 2, 6]
    assert torch.allclose(hit, torch.tensor([1.25, 0.25, 0.0]), atol=1e-5)


def test_distortion_is_inverted():
    from dlcli.nerf.rays import undistort

    k = Intrinsics(1, 1, 0, 0, 1, 1, k1=0.06, k2=-0.08, p1=-0.001, p2=0.0002)
    x, y = torch.tensor([0.3, -0.2]), torch.tensor([-0.1, 0.25])
    r2 = x * x + y * y
    radial = 1 + k.k1 * r2 + k.k2 * r2 * r2
    xd = x * radial + 2 * k.p1 * x * y + k.p2 * (r2 + 2 * x * x)
    yd = y * radial + k.p1 * (r2 + 2 * y * y) + 2 * k.p2 * x * y
    xu, yu = undistort(xd, yd, k)
    assert torch.allclose(xu, x, atol=1e-6) and torch.allclose(yu, y, atol=1e-6)


def test_box_intersection():
    o = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [3.0, 3.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    t0, t1, hit = intersect_box(o, d, 1.0)
    assert hit.tolist() == [True, True, False]
    assert torch.allclose(t0[:2], torch.tensor([4.0, 0.0])) and torch.allclose(t1[:2], torch.tensor([6.0, 1.0]))


def test_volume_rendering_of_constant_density_gives_analytic_transmittance():
    sigma, length, n = 0.7, 3.0, 64
    edges = torch.linspace(0.0, length, n + 1)[None]
    dens = torch.full((1, n), sigma)
    w, trans = weights(dens, edges[:, 1:] - edges[:, :-1])
    # T(t) = exp(-sigma t) at every bin's start; the weights sum to 1 - exp(-sigma L).
    assert torch.allclose(trans[0], torch.exp(-sigma * edges[0, :-1]), atol=1e-6)
    out = composite(dens, torch.full((1, n, 3), 0.2), edges, torch.ones(3))
    acc = 1 - math.exp(-sigma * length)
    assert out["acc"].item() == pytest.approx(acc, abs=1e-6)
    assert out["rgb"][0, 0].item() == pytest.approx(0.2 * acc + (1 - acc), abs=1e-6)
    # Expected depth: integral of t sigma exp(-sigma t) dt over [0, L], here with midpoints (O(delta^2) error).
    depth = (1 - math.exp(-sigma * length) * (1 + sigma * length)) / sigma
    assert out["depth"].item() == pytest.approx(depth, rel=1e-3)


def test_an_opaque_wall_hides_what_is_behind():
    edges = torch.linspace(0.0, 4.0, 5)[None]
    dens = torch.tensor([[0.0, 1e4, 0.0, 1e4]])
    rgb = torch.tensor([[[0.0] * 3, [1.0, 0.0, 0.0], [0.0] * 3, [0.0, 1.0, 0.0]]])
    out = composite(dens, rgb, edges, torch.zeros(3))
    assert torch.allclose(out["rgb"][0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    assert out["depth"].item() == pytest.approx(1.5, abs=1e-4)


def test_surface_depth_is_where_the_ray_is_half_blocked():
    edges = torch.linspace(0.0, 4.0, 9)[None].expand(3, 9)
    dens = torch.zeros(3, 8)
    dens[0] = 0.7  # fog: T(t) = exp(-0.7 t) = 1/2 at t = ln 2 / 0.7, inside a bin, solved exactly
    dens[1, 2], dens[1, 6] = 0.8, 1e3  # a thin, 33%-opaque layer at 1.0..1.5 in front of a wall at 3.0
    dens[2, 3] = 0.5  # 22% opaque: never half blocked
    out = composite(dens, torch.zeros(3, 8, 3), edges, torch.ones(3))
    surface = surface_depth(dens, edges)
    assert surface[0].item() == pytest.approx(math.log(2.0) / 0.7, abs=1e-5)
    assert surface[1].item() == pytest.approx(3.0, abs=1e-3)  # on the wall ...
    assert out["depth"][1].item() / out["acc"][1].item() < 2.7  # ... where the expected depth falls short of it
    assert surface[2].item() == 0.0 and out["acc"][2].item() < 0.5


def test_stratified_samples_stay_in_their_strata():
    t0, t1 = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    e = stratified(t0, t1, 8, perturb=True, generator=torch.Generator().manual_seed(0))
    assert e.shape == (2, 9)
    assert torch.all(e[:, 1:] >= e[:, :-1]) and torch.allclose(e[:, 0], t0) and torch.allclose(e[:, -1], t1)
    assert torch.allclose(stratified(t0, t1, 4, perturb=False)[0], torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))


def test_importance_sampling_follows_the_weights():
    edges = torch.linspace(0.0, 1.0, 11)[None]
    w = torch.zeros(1, 10)
    w[0, 7] = 1.0  # all the weight in [0.7, 0.8]
    new = importance(edges, w, 64, perturb=True, generator=torch.Generator().manual_seed(0))
    assert new.shape == (1, 11 + 64)
    assert torch.all(new[:, 1:] >= new[:, :-1])
    added = new[0][~torch.isin(new[0], edges[0])]
    assert ((added >= 0.7 - 1e-4) & (added <= 0.8 + 1e-4)).float().mean() > 0.9


def test_positional_encoding():
    pe = PositionalEncoding(3)
    x = torch.tensor([[0.25, -0.5, 1.0]])
    y = pe(x)
    assert y.shape == (1, pe.out_dim) == (1, 21)
    assert torch.allclose(y[0, :3], x[0])
    assert y[0, 3 + 1].item() == pytest.approx(math.sin(2 * math.pi * 0.25), abs=1e-6)  # sin(2^1 pi x): x's 2nd


def test_hash_encoding_matches_a_direct_computation():
    torch.manual_seed(0)
    enc = HashEncoding(levels=3, features=2, log2_table=6, base_res=2, max_res=8)
    with torch.no_grad():
        enc.table.normal_()
    res = level_resolutions(3, 2, 8)
    assert res == [2, 4, 8]
    x = torch.rand(5, 3)
    got = enc(x)
    t = enc.table.detach()
    for b in range(5):
        for lvl, r in enumerate(res):
            side = 1 << r.bit_length()  # power of two >= r + 1
            dense = side**3 <= 64
            p = x[b].double() * r
            base = [min(int(math.floor(v)), r - 1) for v in p]
            f = [float(p[i]) - base[i] for i in range(3)]
            want = torch.zeros(2, dtype=torch.float64)
            for corner in range(8):
                c = [base[0] + (corner >> 2 & 1), base[1] + (corner >> 1 & 1), base[2] + (corner & 1)]
                if dense:
                    idx = c[0] + c[1] * side + c[2] * side * side
                else:
                    idx = (c[0] * PRIMES[0]) ^ (c[1] * PRIMES[1]) ^ (c[2] * PRIMES[2])
                idx %= 64
                w = 1.0
                for i, bit in enumerate((corner >> 2 & 1, corner >> 1 & 1, corner & 1)):
                    w *= f[i] if bit else 1 - f[i]
                want += w * t[lvl, idx].double()
            assert torch.allclose(got[b, 2 * lvl:2 * lvl + 2].double(), want, atol=1e-5), (b, lvl)
    assert enc.dense == [True, False, False]  # 4^3 = 64 fits; 8^3 and 16^3 do not


def test_hash_table_gradient_matches_autograd_indexing():
    from dlcli.nerf.encodings import _Gather

    table = torch.randn(10, 2, requires_grad=True)
    index = torch.randint(10, (4, 3, 8))
    up = torch.randn(4, 3, 8, 2)
    (_Gather.apply(table, index) * up).sum().backward()
    fast = table.grad.clone()
    table.grad = None
    (table[index] * up).sum().backward()  # autograd's own scatter-add
    assert torch.allclose(fast, table.grad, atol=1e-5)


def test_compiled_hash_encoding_matches_the_reference():
    torch.manual_seed(0)
    enc = HashEncoding(levels=4, features=2, log2_table=8, base_res=2, max_res=24)  # dense and hashed levels
    assert enc.compiled and enc.dense[0] and not enc.dense[-1]
    with torch.no_grad():
        enc.table.normal_()
    x = torch.cat([torch.rand(200, 3), torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 1.0, 0.0]])])
    up = torch.randn(x.shape[0], enc.out_dim)
    fast = enc(x)
    (g_fast,) = torch.autograd.grad((fast * up).sum(), enc.table)
    ref = enc.forward_reference(x)
    (g_ref,) = torch.autograd.grad((ref * up).sum(), enc.table)
    assert torch.allclose(fast, ref, atol=1e-6)
    assert torch.allclose(g_fast, g_ref, atol=1e-5) and g_ref.abs().sum() > 0


def test_early_ray_termination_skips_only_what_is_hidden():
    from dlcli.nerf.models import HashNerf

    class Wall(torch.nn.Module):  # opaque red from z < 0.5 on, seen by rays coming down from z = 2
        def forward(self, x, d):
            return (x[:, 2] < 0.5).float() * 1e3, torch.tensor([1.0, 0.0, 0.0]).expand(len(x), 3)

    model = HashNerf(bound=1.0, n_samples=64, levels=2, log2_table=6, max_res=16, hidden=8, grid_resolution=4)
    model.field = Wall()
    o = torch.tensor([[0.0, 0.0, 2.0], [0.3, -0.2, 2.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    full = model(o, d, torch.ones(3))  # with gradients enabled: one segment, every sample evaluated
    with torch.no_grad():
        fast = model(o, d, torch.ones(3))
    assert full["samples"] == 2 * 64
    assert fast["samples"] <= 2 * 32  # the 3rd and 4th segments lie behind the wall
    assert torch.allclose(fast["rgb"], full["rgb"], atol=1e-4)
    assert torch.allclose(fast["rgb"], torch.tensor([[1.0, 0.0, 0.0]] * 2), atol=1e-4)


def test_metrics():
    a = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, (a + 0.1).clamp(0, 1)) < psnr(a, (a + 0.01).clamp(0, 1))
    noisy = (a + 0.2 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(a, noisy) < 0.9
    assert psnr(torch.zeros(2, 2, 3), torch.full((2, 2, 3), 0.1)) == pytest.approx(20.0)


def test_ssim_of_a_constant_shift_follows_the_formula():
    # Equal variances, zero covariance change: SSIM reduces to the luminance term (2 mu_x mu_y + c1) / (...).
    a = torch.full((11, 11, 1), 0.5)
    b = torch.full((11, 11, 1), 0.7)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.7 + c1) / (0.25 + 0.49 + c1), abs=1e-6)


def test_synth_and_load_blender_layout(scene):
    s = nd.load(scene, "train")
    assert s.images.shape == (4, 8, 8, 3) and s.layout == "blender"
    assert s.images.min() >= 0 and s.images.max() <= 1
    assert s.images[:, 0, 0].allclose(torch.ones(3))  # the corners are background, composited on white
    assert nd.load(scene, "train", background="black").images[:, 0, 0].allclose(torch.zeros(3))
    assert nd.load(scene, "test").images.shape[0] == 2
    assert nd.load(scene, "train", downscale=2).images.shape == (4, 4, 4, 3)
    assert nd.load(scene, "train", downscale=2).intrinsics.fx == pytest.approx(s.intrinsics.fx / 2)


def _ngp(tmp_path, scene, **extra):
    """An Instant-NGP layout made from the synthetic scene's images and poses."""
    frames = []
    for split in ("train", "test"):
        doc = json.loads((scene / f"transforms_{split}.json").read_text())
        frames += [{"file_path": f["file_path"].lstrip("./") + ".png", "transform_matrix": f["transform_matrix"]}
                   for f in doc["frames"]]
    fx = 0.5 * 8 / math.tan(0.5 * doc["camera_angle_x"])
    root = scene
    (root / "transforms.json").write_text(json.dumps({"fl_x": fx, "fl_y": fx, "cx": 4, "cy": 4, "w": 8, "h": 8,
                                                      "aabb_scale": 4, "frames": frames, **extra}))
    for f in root.glob("transforms_*.json"):
        f.unlink()
    return root


def test_instant_ngp_layout_with_holdout(tmp_path, scene):
    root = _ngp(tmp_path, scene)
    train = nd.load(root, "train", holdout=3)
    test = nd.load(root, "test", holdout=3)
    assert train.layout == "instant-ngp" and len(train.names) + len(test.names) == 6 and len(test.names) == 2
    assert train.bound == pytest.approx(1.5)
    # Normalised: the cameras are at distance 1 from the point they look at, on average.
    assert train.poses[:, :3, 3].norm(dim=-1).mean().item() == pytest.approx(1.0, abs=1e-4)
    assert test.center == train.center and test.scale == train.scale
    with pytest.raises(ConfigError, match="no hold-out"):
        nd.load(root, "test", holdout=0)


def _edit(scene, split="train", **change):
    p = scene / f"transforms_{split}.json"
    doc = json.loads(p.read_text())
    for k, v in change.items():
        if k == "frame0":
            doc["frames"][0].update(v)
        else:
            doc[k] = v
    p.write_text(json.dumps(doc))


@pytest.mark.parametrize("change,message", [
    ({"frame0": {"file_path": "../../etc/passwd"}}, "leaves the dataset folder"),
    ({"frame0": {"file_path": "/etc/passwd"}}, "leaves the dataset folder"),
    ({"frame0": {"file_path": "./train/missing"}}, "not found"),
    ({"frame0": {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]}}, "not invertible"),
    ({"frame0": {"transform_matrix": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}}, "not rigid"),
    ({"frame0": {"transform_matrix": [[1, 0, 0], [0, 1, 0]]}}, "not a 4x4"),
    ({"frame0": {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]]}}, "last row"),
    ({"frames": []}, "non-empty 'frames'"),
    ({"camera_angle_x": "wide"}, "camera_angle_x"),
])
def test_bad_transforms_are_one_clear_error(scene, change, message):
    _edit(scene, **change)
    with pytest.raises(InputError, match=message) as e:
        nd.load(scene, "train")
    assert "transforms_train.json" in str(e.value)


def test_missing_or_malformed_transforms(tmp_path, scene):
    (scene / "transforms_train.json").write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        nd.load(scene, "train")
    with pytest.raises(InputError, match=r"no transforms_train.json \(Blender layout\) or transforms.json "
                                         r"\(Instant-NGP layout\)$"):
        nd.load(tmp_path, "train")
    # photos or a video: the hint names the command that gives them poses
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.JPG", "b.png", "notes.txt"):
        (photos / name).write_bytes(b"x")
    with pytest.raises(InputError, match=r"photos: no transforms_train.json .*; it holds 2 images but no camera poses: "
                                         r"estimate the poses first with 'dlcli nerf process .*photos -o SCENE'$"):
        nd.load(photos, "train")
    (tmp_path / "walk.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match=r"walk.mp4: not a folder .*; it is a video: estimate the poses first"):
        nd.load(tmp_path / "walk.mp4", "train")


def test_images_of_different_sizes(scene):
    from PIL import Image

    Image.new("RGBA", (9, 8)).save(scene / "train" / "r_1.png")
    with pytest.raises(InputError, match="r_1.png: image is 9x8 but r_0.png is 8x8"):
        nd.load(scene, "train")


def test_resolution_too_large_for_memory_suggests_downscale(scene):
    with pytest.raises(InputError, match=r"need about .* GB of memory .*use --downscale 4 or more"):
        nd.load(scene, "train", max_memory_gb=4 * 8 * 8 * nd.BYTES_PER_PIXEL / 1e9 / 10)


def test_synth_refuses_to_overwrite(scene):
    from dlcli.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        synth(SynthConfig(output=str(scene), size=8, n_train=1, n_val=0, n_test=1))


def test_orbit_looks_at_the_centre_from_the_training_distance():
    from dlcli.nerf.camera_path import camera_path
    from dlcli.nerf.synth import sphere_position

    angles = (0.1, 0.1 + math.pi / 2, 0.1 + math.pi, 0.1 + 1.5 * math.pi)
    train = torch.tensor(np.stack([look_at(sphere_position(a, 0.5)) for a in angles])).float()
    path = camera_path(train, "orbit", 6)
    pos = path[:, :3, 3]
    assert torch.allclose(pos.norm(dim=-1), torch.full((6,), 4.0), atol=1e-4)
    assert torch.allclose(-path[:, :3, 2], -pos / pos.norm(dim=-1, keepdim=True), atol=1e-5)  # looks at 0
    assert torch.allclose(pos[:, 2], torch.full((6,), 4.0 * math.sin(0.5)), atol=1e-3)  # the same elevation
    assert camera_path(train, "spiral", 5).shape == (5, 4, 4)


def test_orbit_of_a_one_sided_capture_stays_on_the_seen_side():
    from dlcli.nerf.camera_path import camera_path
    from dlcli.nerf.synth import sphere_position

    angles = np.linspace(0.2, 1.2, 6)  # cameras over one radian of azimuth only
    train = torch.tensor(np.stack([look_at(sphere_position(a, 0.3)) for a in angles])).float()
    path = camera_path(train, "orbit", 16)
    az = np.arctan2(path[:, 1, 3].numpy(), path[:, 0, 3].numpy())
    assert az.min() >= 0.2 - 1e-3 and az.max() <= 1.2 + 1e-3
    assert az.max() - az.min() > 0.9  # and it does sweep the arc


def test_occupancy_grid_marks_only_dense_cells():
    from dlcli.nerf.occupancy import OccupancyGrid

    grid = OccupancyGrid(bound=1.0, resolution=4)
    x = torch.tensor([[0.1, 0.1, 0.1], [-0.9, -0.9, -0.9]])
    assert grid.occupied(x, 1.0).all()  # never measured: everything counts as occupied
    grid.update(lambda p: (p.abs() < 0.5).all(dim=-1).float() * 10, torch.Generator().manual_seed(0))
    assert grid.occupied(x, 1.0).tolist() == [True, False]
    assert grid.fraction_occupied(1.0) == pytest.approx(8 / 64)  # the 8 cells around the centre
    # A threshold above the mean density (10 * 8 / 64) prunes at the mean instead, as Instant-NGP.
    assert grid.effective_threshold(100.0) == pytest.approx(1.25)
    assert grid.occupied(x, 100.0).tolist() == [True, False]
