"""Binary PLY (Turk 1994, as MeshLab, Blender, CloudCompare and Open3D read it): coloured points, optionally
triangles.

    ply
    format binary_little_endian 1.0
    element vertex N          float x y z, uchar red green blue, packed per vertex
    element face F            (meshes only) uchar 3, then three int vertex indices, per face
    end_header
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
FACE = np.dtype([("n", "u1"), ("vertex_indices", "<i4", (3,))])


def header(vertices: int, faces: int | None, comment: str = "") -> bytes:
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comment.splitlines() if c]
    lines += [f"element vertex {vertices}"]
    lines += [f"property float {a}" for a in "xyz"] + [f"property uchar {c}" for c in ("red", "green", "blue")]
    if faces is not None:
        lines += [f"element face {faces}", "property list uchar int vertex_indices"]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(f: BinaryIO, points: np.ndarray, colors: np.ndarray, faces: np.ndarray | None = None,
              comment: str = "") -> None:
    """Points (N, 3) float, colours (N, 3) uint8 and optional triangles (F, 3) of vertex indices to `f`."""
    v = np.empty(len(points), VERTEX)
    for i, a in enumerate("xyz"):
        v[a] = points[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        v[c] = colors[:, i]
    f.write(header(len(v), None if faces is None else len(faces), comment))
    f.write(v.tobytes())
    if faces is not None:
        t = np.empty(len(faces), FACE)
        t["n"] = 3
        t["vertex_indices"] = faces
        f.write(t.tobytes())
