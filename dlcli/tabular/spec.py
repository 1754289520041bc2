"""FeatureSpec: the encoding a user asks for; columns it does not name get inferred kinds."""

from __future__ import annotations

from dataclasses import dataclass, field

from dlcli.errors import ConfigError
from dlcli.tabular.messages import q

KINDS = ("numeric", "binary", "categorical")
MISSING_POLICIES = ("error", "mean")
UNKNOWN_POLICIES = ("error", "zeros")


@dataclass
class FeatureSpec:
    """The requested encoding; columns not named here have inferred kinds."""

    numeric: list[str] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    # column -> category list file; or COLUMN=FILE items, as `--categories` gives them
    categories: dict[str, str] | list[str] = field(default_factory=dict)
    positive: dict[str, str] = field(default_factory=dict)  # binary column -> value encoded as 1
    standardize: bool = False
    missing: str = "error"  # or "mean": fill empty numeric cells with the fitted mean
    unknown: str = "error"  # or "zeros": unseen categories become an all-zero block

    def check(self) -> None:
        """The policies are known ones and the category lists are COLUMN=FILE."""
        if self.missing not in MISSING_POLICIES:
            raise ConfigError(f"missing must be one of {', '.join(MISSING_POLICIES)}, not {q(self.missing)}")
        if self.unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, not {q(self.unknown)}")
        self.category_files()

    def category_files(self) -> dict[str, str]:
        """Column -> category list file."""
        if isinstance(self.categories, dict):
            return dict(self.categories)
        for item in self.categories:
            if "=" not in item:
                raise ConfigError(f"categories: {q(item)} should be COLUMN=FILE")
        return dict(item.split("=", 1) for item in self.categories)

    def declared_kinds(self) -> dict[str, str]:
        """Column -> kind ("numeric", "binary", "categorical" or "drop"), checked."""
        self.check()
        kinds: dict[str, str] = {}
        for kind, names in (("numeric", self.numeric), ("binary", self.binary),
                            ("categorical", self.categorical), ("drop", self.drop)):
            for n in names:
                if kinds.get(n, kind) != kind:
                    raise ConfigError(f"column {q(n)} is listed as both {kinds[n]} and {kind}")
                kinds[n] = kind
        for implied, names in (("categorical", self.category_files()), ("binary", self.positive)):
            what = "a category list" if implied == "categorical" else "a positive value"
            for n in names:
                if kinds.get(n, implied) != implied:
                    raise ConfigError(f"column {q(n)} has {what} but is listed as {kinds[n]}")
                kinds[n] = implied
        return kinds
