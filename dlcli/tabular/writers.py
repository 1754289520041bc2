"""Writing a feature matrix: .npy and/or CSV (header = feature names), optionally with its encoding
JSON, all or nothing; '-' sends one of them to stdout."""

from __future__ import annotations

import csv
import io
import sys
from typing import Any

import numpy as np

from dlcli.core.io import STDIO, AtomicGroup, check_output
from dlcli.errors import ConfigError
from dlcli.tabular.encoding import FeatureEncoding
from dlcli.tabular.messages import short_list


def write_features(x: np.ndarray, names: list[str], npy_path: str | None, csv_path: str | None,
                   force: bool = False, *, encoding: FeatureEncoding | None = None,
                   encoding_path: str | None = None) -> list[str]:
    """Write the matrix as .npy and/or CSV (header = feature names), and
    optionally the encoding JSON, all-or-nothing. '-' writes one of them to
    stdout. Returns the paths written, in order."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"matrix shape {x.shape} does not match {len(names)} feature names")
    x = x.astype(np.float32, copy=False)
    if (encoding is None) != (encoding_path is None):
        raise ValueError("give both encoding and encoding_path, or neither")
    jobs: list[tuple[str, Any]] = []
    if npy_path is not None:
        jobs.append((npy_path, lambda f: np.save(f, x, allow_pickle=False)))
    if csv_path is not None:
        jobs.append((csv_path, lambda f: _write_csv(f, x, names)))
    if encoding_path is not None:
        assert encoding is not None
        data = encoding.to_bytes()
        jobs.append((encoding_path, lambda f: f.write(data)))
    if not jobs:
        raise ConfigError("no output given: name a .npy path, a CSV path, or both")
    paths = [p for p, _ in jobs]
    if paths.count(STDIO) > 1:
        raise ConfigError("only one output can go to stdout ('-')")
    if len(set(paths)) != len(paths):
        raise ConfigError(f"the same output path is given twice: {short_list(paths)}")
    for p in paths:
        if p != STDIO:
            check_output(p, force)
    with AtomicGroup(force) as group:
        for p, write in jobs:
            if p != STDIO:
                with group.open(p) as f:
                    write(f)
    for p, write in jobs:
        if p == STDIO:
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
    return paths


def _write_csv(f: Any, x: np.ndarray, names: list[str]) -> None:
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(names)
    f.write(head.getvalue().encode("utf-8"))
    if x.shape[0]:
        # %.9g round-trips float32 exactly; 0/1 print as "0"/"1".
        np.savetxt(f, x, fmt="%.9g", delimiter=",", encoding="utf-8")
