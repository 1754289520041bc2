"""Camera paths for rendering new views: an orbit or a spiral around the scene's centre.

The path is built from the training cameras: their mean up vector is "up", their mean distance from the
centre the radius and their mean elevation above the horizontal plane the orbit's elevation. When the training
cameras leave a wide gap in azimuth (a hand-held capture from one side of an object on a wall or a table), the
path sweeps across the arc they cover and back (a little higher) instead of going round behind the scene, where nothing
was seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dlcli.nerf.synth import look_at

PATHS = ("orbit", "spiral", "test")


def camera_path(train_poses: torch.Tensor, kind: str, n: int, radius_scale: float = 1.0) -> torch.Tensor:
    """n camera-to-world matrices (n, 4, 4) looking at the origin of the (normalised) scene."""
    poses = train_poses.double().numpy()
    up = poses[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    pos = poses[:, :3, 3]
    radius = float(np.linalg.norm(pos, axis=-1).mean()) * radius_scale
    elevation = float(np.mean(np.arcsin(np.clip(pos @ up / np.linalg.norm(pos, axis=-1), -1, 1))))
    # A basis of the horizontal plane, starting at the first training camera's azimuth.
    a = pos[0] - (pos[0] @ up) * up
    a = a / np.linalg.norm(a) if np.linalg.norm(a) > 1e-9 else np.cross(up, [1.0, 0.0, 0.0])
    b = np.cross(up, a)
    start, span = covered_arc(np.arctan2(pos @ b, pos @ a))
    out = []
    for i in range(n):
        phase = 2 * math.pi * i / n
        el, r = elevation, radius
        if span is None:
            theta = phase
        else:  # an ellipse over the covered arc: across it 10 degrees up, back 10 degrees down
            theta = start + span * 0.5 * (1.0 - math.cos(phase))
            el = elevation + math.radians(10) * math.sin(phase)
        if kind == "spiral":  # bob up and down and in and out while going round twice
            theta = theta * 2 if span is None else theta
            el = elevation + math.radians(15) * math.sin(phase)
            r = radius * (1.0 + 0.15 * math.cos(phase))
        p = r * (math.cos(el) * (math.cos(theta) * a + math.sin(theta) * b) + math.sin(el) * up)
        out.append(look_at(p, np.zeros(3), up))
    return torch.from_numpy(np.stack(out)).float()


def covered_arc(azimuths: np.ndarray, max_gap: float = math.radians(120)) -> tuple[float, float | None]:
    """(start, span) of the azimuth arc the cameras cover, or (0, None) when no gap between neighbouring
    cameras exceeds `max_gap` (cameras all round: a full orbit)."""
    az = np.sort(np.mod(azimuths, 2 * math.pi))
    gaps = np.diff(np.concatenate([az, az[:1] + 2 * math.pi]))
    i = int(np.argmax(gaps))
    if gaps[i] <= max_gap:
        return 0.0, None
    start = float(az[(i + 1) % len(az)])  # the arc runs from after the widest gap round to before it
    return start, float(2 * math.pi - gaps[i])
