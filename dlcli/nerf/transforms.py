"""COLMAP cameras -> an Instant-NGP `transforms.json`.

COLMAP gives each image the world-to-camera rotation R and translation t, with OpenCV camera axes (x right,
y down, z forward). NeRF wants camera-to-world matrices with OpenGL axes (x right, y up, z backward): invert
[R | t] (the camera centre is -R^T t) and negate the camera's y and z axes.

COLMAP's world frame is arbitrary: its origin, scale and up direction come from the first image pair. As
Instant-NGP's colmap2nerf does, the scene is turned so that the cameras' mean up vector is +z, moved so
that the point the cameras look at is the origin, and scaled so that the cameras are 4 units from it on
average (`dlcli nerf train` renormalises on load; other tools expect this frame).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlcli.nerf.colmap import Camera

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])
MEAN_DISTANCE = 4.0


def c2w_from_colmap(rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """(N, 3, 3) world-to-camera rotations and (N, 3) translations -> (N, 4, 4) camera-to-world, OpenGL."""
    n = len(rotations)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    rt = np.transpose(rotations, (0, 2, 1))
    c2w[:, :3, :3] = rt @ OPENCV_TO_OPENGL
    c2w[:, :3, 3] = -(rt @ translations[:, :, None])[:, :, 0]
    return c2w


def colmap_from_c2w(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `c2w_from_colmap`."""
    r = np.transpose(c2w[:, :3, :3] @ OPENCV_TO_OPENGL, (0, 2, 1))
    return r, -(r @ c2w[:, :3, 3:])[:, :, 0]


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector a to unit vector b (Rodrigues)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any axis normal to a
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def normalise(c2w: np.ndarray) -> np.ndarray:
    """Up to +z, the looked-at point to the origin, the cameras at mean distance 4 (see the module doc)."""
    from dlcli.nerf.data import focus_point

    up = c2w[:, :3, 1].mean(0)  # OpenGL: a camera's y axis points up in its image
    turn = np.eye(4)
    if np.linalg.norm(up) > 1e-9:
        turn[:3, :3] = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    out = turn @ c2w
    center = focus_point(out) if len(out) > 1 else out[0, :3, 3]
    out[:, :3, 3] -= center
    dist = float(np.linalg.norm(out[:, :3, 3], axis=-1).mean())
    if dist > 1e-12:
        out[:, :3, 3] *= MEAN_DISTANCE / dist
    return out


def transforms_doc(camera: Camera, files: list[str], c2w: np.ndarray, aabb_scale: int) -> dict[str, Any]:
    """The Instant-NGP transforms.json document: one shared camera, frames in file name order."""
    k = camera
    return {
        "camera_model": "OPENCV",
        "fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy, "w": k.width, "h": k.height,
        "k1": k.k1, "k2": k.k2, "p1": k.p1, "p2": k.p2,
        "camera_angle_x": 2 * math.atan(k.width / (2 * k.fx)), "camera_angle_y": 2 * math.atan(k.height / (2 * k.fy)),
        "aabb_scale": aabb_scale,
        "frames": [{"file_path": f, "transform_matrix": m.tolist()} for f, m in zip(files, c2w, strict=True)],
    }


def scaled(camera: Camera, width: int, height: int) -> Camera:
    """The camera for its images resized to width x height (distortion is unchanged)."""
    sx, sy = width / camera.width, height / camera.height
    return Camera(camera.model, width, height, camera.fx * sx, camera.fy * sy, camera.cx * sx, camera.cy * sy,
                  camera.k1, camera.k2, camera.p1, camera.p2)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R and translation t minimising sum |s R src_i + t - dst_i|^2 over (N, 3) point sets
    (Umeyama 1991: the SVD of the cross-covariance, with the reflection removed)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    fix = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[2, 2] = -1
    r = u @ fix @ vt
    s = float(np.trace(np.diag(d) @ fix) / (a**2).sum(1).mean())
    return s, r, mu_d - s * r @ mu_s


def pose_errors(est: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Camera-to-world poses `est` against `ref` (same cameras, same order) after aligning the camera centres
    with a similarity: the mean rotation error in degrees, and the mean and max centre errors as a percentage
    of the scene radius (the reference cameras' mean distance from their centroid)."""
    s, r, t = similarity(est[:, :3, 3], ref[:, :3, 3])
    centres = s * est[:, :3, 3] @ r.T + t
    radius = float(np.linalg.norm(ref[:, :3, 3] - ref[:, :3, 3].mean(0), axis=-1).mean())
    dc = np.linalg.norm(centres - ref[:, :3, 3], axis=-1) / radius * 100
    rel = np.transpose(ref[:, :3, :3], (0, 2, 1)) @ (r @ est[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    deg = np.degrees(np.arccos(cos))
    return {"rotation_deg": float(deg.mean()), "rotation_max_deg": float(deg.max()), "centre_pct": float(dc.mean()),
            "centre_max_pct": float(dc.max()), "scale": s}
