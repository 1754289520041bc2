"""The `dlcli preprocess --table` stage: fit (or load) an encoding, encode the CSV, write the outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlcli.core.io import STDIO
from dlcli.errors import ConfigError
from dlcli.tabular.encoding import FeatureEncoding
from dlcli.tabular.fit import fit_transform
from dlcli.tabular.spec import FeatureSpec
from dlcli.tabular.writers import write_features


@dataclass
class TableConfig(FeatureSpec):
    """Options of `dlcli preprocess --table`: the FeatureSpec, plus where the table comes from and
    where the features go."""

    inputs: list[str] = field(default_factory=lambda: ["-"])
    output: str = "features.npy"
    csv: str | None = None  # also write the features as CSV here
    encoding: str | None = None  # apply this saved encoding instead of fitting
    save_encoding: str | None = None  # default: <output>.encoding.json when fitting

    def validate(self) -> None:
        if len(self.inputs) != 1:
            raise ConfigError("--table takes exactly one CSV input (or - for stdin)")
        self.check()


def run(cfg: TableConfig, force: bool = False) -> dict[str, Any]:
    """Fit (or load) an encoding, encode the CSV, write the outputs together."""
    cfg.validate()
    src = cfg.inputs[0]
    if cfg.encoding:
        enc = FeatureEncoding.load(cfg.encoding)
        x = enc.transform(src, unknown=cfg.unknown if cfg.unknown != "error" else None)
        enc_path = cfg.save_encoding
    else:
        enc, x = fit_transform(src, cfg)
        enc_path = cfg.save_encoding or (f"{cfg.output}.encoding.json" if cfg.output != STDIO else None)
    written = write_features(x, enc.feature_names, cfg.output, cfg.csv, force,
                             encoding=enc if enc_path else None, encoding_path=enc_path)
    return {"rows": int(x.shape[0]), "dim": enc.dim, "written": [p for p in written if p != STDIO]}
