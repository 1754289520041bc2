"""COLMAP: structure from motion through pycolmap, and a reader for its sparse models.

A sparse model (`sparse/0`) is three files, as text (`cameras.txt`, `images.txt`, `points3D.txt`) or binary
(`.bin`, COLMAP's own little-endian layout). The reader here needs no pycolmap, so `--colmap-model` works
without it. Poses are COLMAP's: world-to-camera, OpenCV axes (x right, y down, z forward); `transforms.py`
turns them into NeRF's camera-to-world OpenGL matrices.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dlcli.core.progress import OnProgress, Tick, nothing
from dlcli.errors import DlcliError, InputError

# model id -> (name, number of parameters); the pinhole models NeRF's rays can follow
MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8)}
MODEL_IDS = {name: i for i, (name, _) in MODELS.items()}
INSTALL = "pip install 'dlcli[colmap]' (or pip install pycolmap)"


@dataclass
class Camera:
    """One COLMAP camera as NeRF needs it: pinhole intrinsics in pixels and OpenCV distortion."""

    model: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @classmethod
    def from_params(cls, model: str, width: int, height: int, p: list[float]) -> Camera:
        if model == "SIMPLE_PINHOLE":
            return cls(model, width, height, p[0], p[0], p[1], p[2])
        if model == "PINHOLE":
            return cls(model, width, height, *p[:4])
        if model == "SIMPLE_RADIAL":
            return cls(model, width, height, p[0], p[0], p[1], p[2], p[3])
        if model == "RADIAL":
            return cls(model, width, height, p[0], p[0], p[1], p[2], p[3], p[4])
        return cls(model, width, height, *p[:8])  # OPENCV: fx fy cx cy k1 k2 p1 p2

    def key(self) -> tuple[float, ...]:
        return (self.width, self.height, self.fx, self.fy, self.cx, self.cy, self.k1, self.k2, self.p1, self.p2)


@dataclass
class Model:
    """A registered image set: per image its name, camera and world-to-camera rotation and translation."""

    cameras: dict[int, Camera]
    names: list[str]
    camera_ids: list[int]
    rotations: np.ndarray  # (N, 3, 3) world-to-camera
    translations: np.ndarray  # (N, 3)
    reprojection_error: float  # pixels, the mean of the points' errors (nan without points)
    points: int


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """A unit quaternion (w, x, y, z), COLMAP's order, as a 3x3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(r: np.ndarray) -> np.ndarray:
    """The inverse of `qvec_to_rotmat` (w >= 0), for writing models; from the largest of w, x, y, z so that
    no division is by a small number (Shepperd's method)."""
    tr = r[0, 0] + r[1, 1] + r[2, 2]
    if tr > max(r[0, 0], r[1, 1], r[2, 2]):
        w = np.sqrt(1 + tr) / 2
        q = [w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)]
    elif r[0, 0] >= r[1, 1] and r[0, 0] >= r[2, 2]:
        x = np.sqrt(1 + r[0, 0] - r[1, 1] - r[2, 2]) / 2
        q = [(r[2, 1] - r[1, 2]) / (4 * x), x, (r[0, 1] + r[1, 0]) / (4 * x), (r[0, 2] + r[2, 0]) / (4 * x)]
    elif r[1, 1] >= r[2, 2]:
        y = np.sqrt(1 - r[0, 0] + r[1, 1] - r[2, 2]) / 2
        q = [(r[0, 2] - r[2, 0]) / (4 * y), (r[0, 1] + r[1, 0]) / (4 * y), y, (r[1, 2] + r[2, 1]) / (4 * y)]
    else:
        z = np.sqrt(1 - r[0, 0] - r[1, 1] + r[2, 2]) / 2
        q = [(r[1, 0] - r[0, 1]) / (4 * z), (r[0, 2] + r[2, 0]) / (4 * z), (r[1, 2] + r[2, 1]) / (4 * z), z]
    q = np.array(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


# ---------------------------------------------------------------- reading a sparse model

def read_model(path: str | Path) -> Model:
    """Read a sparse model folder (text or binary); every problem is one InputError naming the file."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected a COLMAP sparse model: cameras, images, points3D)")
    for ext, reader in ((".bin", _BinaryReader), (".txt", _TextReader)):
        if (root / f"cameras{ext}").is_file() and (root / f"images{ext}").is_file():
            return reader(root, ext).model()
    if (root / "sparse" / "0").is_dir():
        raise InputError(f"{root}: no cameras/images files here; the model is probably in {root / 'sparse' / '0'}")
    raise InputError(f"{root}: no COLMAP model here (expected cameras.bin and images.bin, or cameras.txt and "
                     "images.txt)")


class _Reader(ABC):
    """A COLMAP model folder in one of its two formats (text or binary)."""

    def __init__(self, root: Path, ext: str) -> None:
        self.root, self.ext = root, ext

    def model(self) -> Model:
        cameras = self.cameras(self.root / f"cameras{self.ext}")
        images = self.images(self.root / f"images{self.ext}")
        if not images:
            raise InputError(f"{self.root / f'images{self.ext}'}: no registered images")
        for name, cam, _, _ in images:
            if cam not in cameras:
                raise InputError(f"{self.root / f'images{self.ext}'}: image {name} uses camera {cam}, which is "
                                 f"not in cameras{self.ext}")
        images.sort(key=lambda i: i[0])
        err, n = float("nan"), 0
        points = self.root / f"points3D{self.ext}"
        if points.is_file():
            errors = self.points(points)
            n = len(errors)
            if n:
                err = float(errors.mean())  # the mean over points, as COLMAP reports it
        return Model(cameras, [i[0] for i in images], [i[1] for i in images],
                     np.stack([qvec_to_rotmat(i[2]) for i in images]), np.stack([i[3] for i in images]), err, n)

    def camera(self, path: Path, model: str, width: int, height: int, params: list[float]) -> Camera:
        if model not in MODEL_IDS:
            raise InputError(f"{path}: camera model {model} is not supported (NeRF needs a pinhole camera: "
                             f"{', '.join(MODEL_IDS)}); undistort the images first (colmap image_undistorter)")
        want = MODELS[MODEL_IDS[model]][1]
        if len(params) != want or width < 1 or height < 1 or not all(np.isfinite(params)):
            raise InputError(f"{path}: malformed {model} camera ({len(params)} parameters, {want} expected, "
                             f"size {width}x{height})")
        return Camera.from_params(model, width, height, params)

    @abstractmethod
    def cameras(self, path: Path) -> dict[int, Camera]:
        """Each camera by its id."""

    @abstractmethod
    def images(self, path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        """Each registered image: (name, camera id, quaternion, translation)."""

    @abstractmethod
    def points(self, path: Path) -> np.ndarray:
        """Each 3-D point's mean reprojection error."""


class _TextReader(_Reader):
    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read: {e}") from None
        return [line.strip() for line in text.splitlines() if not line.startswith("#")]

    def cameras(self, path: Path) -> dict[int, Camera]:
        out = {}
        for i, line in enumerate(self._lines(path)):
            if not line:
                continue
            f = line.split()
            try:
                out[int(f[0])] = self.camera(path, f[1], int(f[2]), int(f[3]), [float(v) for v in f[4:]])
            except (ValueError, IndexError):
                raise InputError(f"{path}: malformed camera line {i + 1}: '{line[:60]}'") from None
        return out

    def images(self, path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        lines = self._lines(path)
        while lines and not lines[-1]:
            lines.pop()
        out = []
        for i in range(0, len(lines), 2):  # an image line, then its 2-D points (possibly an empty line)
            f = lines[i].split(maxsplit=9)
            try:
                out.append((f[9], int(f[8]), np.array([float(v) for v in f[1:5]]),
                            np.array([float(v) for v in f[5:8]])))
            except (ValueError, IndexError):
                raise InputError(f"{path}: malformed image line '{lines[i][:60]}' (expected IMAGE_ID QW QX QY QZ "
                                 "TX TY TZ CAMERA_ID NAME, then a line of 2-D points)") from None
        return out

    def points(self, path: Path) -> np.ndarray:
        errors = []
        for line in self._lines(path):
            f = line.split()
            if not f:
                continue
            try:
                errors.append(float(f[7]))
            except (ValueError, IndexError):
                raise InputError(f"{path}: malformed point line '{line[:60]}'") from None
        return np.array(errors)


class _BinaryReader(_Reader):
    @staticmethod
    def _read(f: BinaryIO, path: Path, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        data = f.read(size)
        if len(data) != size:
            raise InputError(f"{path}: truncated (not a COLMAP binary model file?)")
        return struct.unpack(fmt, data)

    def _open(self, path: Path) -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e}") from None

    def cameras(self, path: Path) -> dict[int, Camera]:
        out = {}
        with self._open(path) as f:
            (n,) = self._read(f, path, "<Q")
            for _ in range(n):
                cam_id, model_id, width, height = self._read(f, path, "<iiQQ")
                if model_id not in MODELS:
                    raise InputError(f"{path}: camera {cam_id} has model id {model_id}, not supported (NeRF needs "
                                     f"a pinhole camera: {', '.join(MODEL_IDS)}); undistort the images first")
                name, count = MODELS[model_id]
                out[cam_id] = self.camera(path, name, width, height, list(self._read(f, path, f"<{count}d")))
        return out

    def images(self, path: Path) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        out = []
        with self._open(path) as f:
            (n,) = self._read(f, path, "<Q")
            for _ in range(n):
                v = self._read(f, path, "<i7di")
                name = bytearray()
                while (c := f.read(1)) not in (b"\x00", b""):
                    name += c
                (n2d,) = self._read(f, path, "<Q")
                f.seek(24 * n2d, 1)  # x, y (double) and point3D_id (int64) per 2-D point
                try:
                    out.append((name.decode("utf-8"), v[8], np.array(v[1:5]), np.array(v[5:8])))
                except UnicodeDecodeError:
                    raise InputError(f"{path}: an image name is not UTF-8") from None
        return out

    def points(self, path: Path) -> np.ndarray:
        errors = []
        with self._open(path) as f:
            (n,) = self._read(f, path, "<Q")
            for _ in range(n):
                v = self._read(f, path, "<Q3d3BdQ")  # id, xyz, rgb, error, track length
                errors.append(v[7])
                f.seek(8 * v[8], 1)  # image_id, point2D_idx (int32 each) per observation
        return np.array(errors)


# ---------------------------------------------------------------- running structure from motion

def pycolmap_module() -> Any:
    try:
        import pycolmap
    except ImportError:
        raise DlcliError(f"computing camera poses needs pycolmap: {INSTALL}; or pass --colmap-model with a "
                         "model made by COLMAP") from None
    return pycolmap


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_sfm(images: Path, names: list[str], work: Path, matching: str, camera_model: str,
            on_progress: OnProgress = nothing, threads: int = -1) -> dict[str, float]:
    """SIFT features, matching and incremental mapping on `images`; the largest model is written (binary) to
    work/sparse/0. Returns the seconds per phase. Raises InputError when nothing could be reconstructed."""
    pycolmap = pycolmap_module()
    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 1  # COLMAP's warnings and errors; its info lines would bury the progress
    try:
        return _sfm(pycolmap, images, names, work, matching, camera_model, on_progress, threads)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"{images}: COLMAP failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
                         ) from None
    finally:
        pycolmap.logging.minloglevel = level


def _sfm(pycolmap: Any, images: Path, names: list[str], work: Path, matching: str, camera_model: str,
         on_progress: OnProgress, threads: int) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    db.unlink(missing_ok=True)
    times: dict[str, float] = {}
    cpu = pycolmap.Device.cpu if not pycolmap.has_cuda else pycolmap.Device.auto
    n = len(names)

    def phase(name: str, run: Callable[[], Any]) -> Any:
        on_progress(Tick(name, 0, n, unit="image"))
        t = time.perf_counter()
        result = run()
        times[name] = time.perf_counter() - t
        return result

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    # one shared camera (all images come from one device at one size); features in batches for progress
    pycolmap.Database.open(db).close()  # import_images wants the file to exist
    pycolmap.import_images(db, images, pycolmap.CameraMode.SINGLE, names, reader)
    extract = pycolmap.FeatureExtractionOptions()
    # a thread count spelled out: -1 (all) makes COLMAP warn about memory on every batch
    extract.num_threads = threads if threads > 0 else _cpus()

    def features() -> None:
        batch = max(1, min(16, n // 10))
        for i in range(0, n, batch):
            pycolmap.extract_features(db, images, names[i:i + batch], pycolmap.CameraMode.SINGLE, reader, extract,
                                      device=cpu)
            on_progress(Tick("extract", min(n, i + batch), n, unit="image"))

    phase("extract", features)
    if matching == "sequential":
        pairs = pycolmap.SequentialPairingOptions()
        pairs.overlap = 10
        phase("match", lambda: pycolmap.match_sequential(db, pairing_options=pairs, device=cpu))
    else:
        phase("match", lambda: pycolmap.match_exhaustive(db, device=cpu))
    on_progress(Tick("match", n, n, unit="image"))
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    registered = [0]

    def next_image() -> None:
        registered[0] += 1
        on_progress(Tick("map", min(n, registered[0] + 1), n, unit="image"))

    sparse = work / "sparse"
    sparse.mkdir(exist_ok=True)
    models = phase("map", lambda: pycolmap.incremental_mapping(db, images, sparse, options,
                                                               next_image_callback=next_image))
    if not models:
        raise InputError(f"{images}: COLMAP could not reconstruct the scene from the {n} images (no pair with "
                         "enough matched features to start from): take more overlapping, sharper views")
    best = max(models.values(), key=lambda r: r.num_reg_images())
    out = sparse / "0"
    # incremental_mapping writes each model to sparse/<i>; keep only the largest, as sparse/0
    for d in sparse.iterdir():
        if d.is_dir() and d.name != "0":
            shutil.rmtree(d)
    out.mkdir(exist_ok=True)
    best.write(out)
    on_progress(Tick("map", n, n, unit="image"))
    return times
