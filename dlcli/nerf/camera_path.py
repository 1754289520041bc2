"""Camera paths for rendering new views: an orbit or a spiral around the scene's centre.

The path is built from the training cameras: their mean up vector is "up", their mean distance from the
centre the radius and their mean elevation above the horizontal plane the orbit's elevation.
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
    out = []
    for i in range(n):
        theta = 2 * math.pi * i / n
        el = elevation
        r = radius
        if kind == "spiral":  # bob up and down and in and out while going round twice
            theta *= 2
            el = elevation + math.radians(15) * math.sin(2 * math.pi * i / n)
            r = radius * (1.0 + 0.15 * math.cos(2 * math.pi * i / n))
        p = r * (math.cos(el) * (math.cos(theta) * a + math.sin(theta) * b) + math.sin(el) * up)
        out.append(look_at(p, np.zeros(3), up))
    return torch.from_numpy(np.stack(out)).float()
