"""Tests for dlcli.tabular: tabular feature encoding."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from dlcli.errors import ConfigError, InputError, OutputExistsError
from dlcli.tabular import encoding
from dlcli.tabular import fit as fitting
from dlcli.tabular.encoding import FeatureEncoding
from dlcli.tabular.fit import fit, fit_transform
from dlcli.tabular.spec import FeatureSpec
from dlcli.tabular.writers import write_features

# The seed example: age (numeric), gender (binary), nationality (one of 197).
COUNTRIES = ["Zimbabwe", "France", "Japan", "Brazil", "Korea, Republic of"] + [f"Country{i:03d}" for i in range(192)]
ROWS = [
    ("1", "31", "male", "France"),
    ("2", "25", "female", "Japan"),
    ("3", "47", "female", "Brazil"),
    ("4", "52", "male", "Japan"),
    ("5", "19", "female", "Korea, Republic of"),
]


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def write_rows(path: Path, header: list[str], rows) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def people(tmp_path: Path) -> str:
    return write_rows(tmp_path / "people.csv", ["id", "age", "gender", "nationality"], ROWS)


@pytest.fixture
def countries(tmp_path: Path) -> str:
    return write(tmp_path / "countries.txt", "\n".join(COUNTRIES) + "\n")


def raises(exc: type[Exception], text: str):
    """pytest.raises matching `text` literally."""
    return pytest.raises(exc, match=re.escape(text))


# ---------------------------------------------------------------- seed example


def test_seed_example_is_199_dimensional(people: str, countries: str) -> None:
    assert len(COUNTRIES) == 197
    enc, x = fit_transform(people, FeatureSpec(drop=["id"], categories={"nationality": countries}))
    assert enc.dim == 199
    assert x.shape == (5, 199) and x.dtype == np.float32
    assert enc.feature_names[:2] == ["age", "gender=male"]
    # user-given list keeps its file order (Zimbabwe first), not sorted order
    assert enc.feature_names[2:] == [f"nationality={c}" for c in COUNTRIES]
    np.testing.assert_array_equal(x[:, 0], [31, 25, 47, 52, 19])  # age passes through
    np.testing.assert_array_equal(x[:, 1], [1, 0, 0, 1, 0])  # female < male: female 0, male 1
    onehot = x[:, 2:]
    np.testing.assert_array_equal(onehot.sum(axis=1), np.ones(5))
    for r, (_, _, _, nat) in enumerate(ROWS):
        assert onehot[r, COUNTRIES.index(nat)] == 1.0
    assert onehot[:, COUNTRIES.index("Zimbabwe")].sum() == 0  # absent from data, still a feature


def test_seed_example_standardized(people: str, countries: str) -> None:
    enc, x = fit_transform(people, FeatureSpec(drop=["id"], categories={"nationality": countries},
                                               standardize=True))
    age = x[:, 0].astype(np.float64)
    assert abs(age.mean()) < 1e-6
    assert abs(age.std() - 1.0) < 1e-6  # population std
    raw = np.array([31, 25, 47, 52, 19], dtype=np.float64)
    np.testing.assert_allclose(age, (raw - raw.mean()) / raw.std(), rtol=1e-6)
    col = enc.columns[0]
    assert col.mean == pytest.approx(raw.mean()) and col.std == pytest.approx(raw.std())
    # only numeric columns are standardised
    np.testing.assert_array_equal(x[:, 1], [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(x[:, 2:].sum(axis=1), np.ones(5))


def test_constant_numeric_column_is_only_centred(tmp_path: Path) -> None:
    p = write(tmp_path / "c.csv", "a,b\n5,1\n5,2\n5,3\n")
    enc, x = fit_transform(p, FeatureSpec(standardize=True))
    assert enc.columns[0].std == 0.0
    np.testing.assert_array_equal(x[:, 0], [0, 0, 0])
    assert np.isfinite(x).all()


# ---------------------------------------------------------------- kinds


def test_kind_inference(tmp_path: Path) -> None:
    p = write(tmp_path / "k.csv",
              "num,flag,yes,colour,zero_one\n"
              "1.5,a,yes,red,0\n"
              "-2,b,no,green,1\n"
              "3e2,a,yes,blue,1\n")
    enc = fit(p, FeatureSpec())
    assert {c.name: c.kind for c in enc.columns} == {
        "num": "numeric", "flag": "binary", "yes": "binary", "colour": "categorical",
        "zero_one": "numeric"}  # all values parse as numbers -> numeric, even with 2 distinct
    assert enc.feature_names == ["num", "flag=b", "yes=yes", "colour=blue", "colour=green", "colour=red",
                                 "zero_one"]
    x = enc.transform(p)
    np.testing.assert_array_equal(x, [[1.5, 0, 1, 0, 0, 1, 0],
                                      [-2, 1, 0, 0, 1, 0, 1],
                                      [300, 0, 1, 1, 0, 0, 1]])


def test_kind_overrides_and_positive_value(tmp_path: Path) -> None:
    p = write(tmp_path / "k.csv", "zip,size,sex\n10,1,m\n2,2,f\n10,3,m\n")
    enc, x = fit_transform(p, FeatureSpec(categorical=["zip", "size"], positive={"sex": "f"}))
    # categories sort as strings (code points): "10" < "2"
    assert enc.feature_names == ["zip=10", "zip=2", "size=1", "size=2", "size=3", "sex=f"]
    np.testing.assert_array_equal(x[:, 5], [0, 1, 0])
    np.testing.assert_array_equal(x[:, :2], [[1, 0], [0, 1], [1, 0]])


def test_declared_numeric_rejects_text(tmp_path: Path) -> None:
    p = write(tmp_path / "data.csv", "name,age\nann,30\nbob,abc\n")
    with raises(InputError, "data.csv: row 3, column 'age': 'abc' is not a number"):
        fit(p, FeatureSpec(numeric=["age"]))


def test_declared_binary_with_three_values(tmp_path: Path) -> None:
    p = write(tmp_path / "data.csv", "g\na\nb\nc\n")
    with raises(InputError, "row 4, column 'g': third distinct value 'c'"):
        fit(p, FeatureSpec(binary=["g"]))


def test_spec_errors(people: str) -> None:
    with raises(ConfigError, "column 'age' is listed as both numeric and drop"):
        fit(people, FeatureSpec(numeric=["age"], drop=["age"]))
    with raises(ConfigError, "no column 'gendre' (did you mean 'gender'?)"):
        fit(people, FeatureSpec(drop=["gendre"]))
    with raises(ConfigError, "missing must be one of"):
        fit(people, FeatureSpec(missing="median"))
    with raises(ConfigError, "positive value 'x' is not one of its values 'female', 'male'"):
        fit(people, FeatureSpec(positive={"gender": "x"}))


def test_inferred_id_like_column_is_refused(tmp_path: Path) -> None:
    rows = [(f"user{i}", i) for i in range(fitting.INFER_MAX_CATEGORIES + 1)]
    p = write_rows(tmp_path / "ids.csv", ["user", "n"], rows)
    with raises(InputError, "ids.csv: column 'user' is not numeric"):
        fit(p, FeatureSpec())
    assert fit(p, FeatureSpec(drop=["user"])).feature_names == ["n"]


# ---------------------------------------------------------------- JSON round trip


def test_json_save_load_transform_identical(tmp_path: Path, people: str, countries: str) -> None:
    enc, x = fit_transform(people, FeatureSpec(drop=["id"], categories={"nationality": countries},
                                               standardize=True))
    path = tmp_path / "enc.json"
    enc.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "dlcli-feature-encoding" and data["version"] == 1
    assert data["feature_names"] == enc.feature_names and data["dropped"] == ["id"]
    assert [c["name"] for c in data["columns"]] == ["age", "gender", "nationality"]
    loaded = FeatureEncoding.load(path)
    assert loaded.feature_names == enc.feature_names
    y = loaded.transform(people)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    with raises(OutputExistsError, "already exists"):
        enc.save(path)
    enc.save(path, force=True)


def test_load_rejects_bad_files(tmp_path: Path, people: str) -> None:
    enc = fit(people, FeatureSpec(drop=["id"]))
    good = enc.to_json()
    p = tmp_path / "e.json"
    p.write_text(json.dumps({**good, "format": "something-else"}))
    with raises(InputError, f"{p}: not a dlcli feature encoding"):
        FeatureEncoding.load(p)
    p.write_text(json.dumps({**good, "version": 2}))
    with raises(InputError, "version 2 is newer"):
        FeatureEncoding.load(p)
    p.write_text(json.dumps({**good, "feature_names": ["x"]}))
    with raises(InputError, "'feature_names' do not match"):
        FeatureEncoding.load(p)
    p.write_text("{not json")
    with raises(InputError, f"{p}: not valid JSON"):
        FeatureEncoding.load(p)


# ---------------------------------------------------------------- applying


def test_unseen_category_error_vs_zeros(tmp_path: Path, people: str) -> None:
    enc = fit(people, FeatureSpec(drop=["id"]))
    new = write_rows(tmp_path / "new.csv", ["nationality", "gender", "age", "extra"],
                     [("Japan", "male", "40", "ignored"), ("Atlantis", "female", "20", "x")])
    with raises(InputError, "new.csv: row 3, column 'nationality': unseen category 'Atlantis'"):
        enc.transform(new)
    x = enc.transform(new, unknown="zeros")
    names = enc.feature_names
    block = [i for i, n in enumerate(names) if n.startswith("nationality=")]
    assert x[0, names.index("nationality=Japan")] == 1
    np.testing.assert_array_equal(x[1, block], np.zeros(len(block)))
    np.testing.assert_array_equal(x[:, names.index("age")], [40, 20])  # columns found by name, not position
    # the policy chosen at fit time is saved and used by default
    zeros = fit(people, FeatureSpec(drop=["id"], unknown="zeros"))
    np.testing.assert_array_equal(zeros.transform(new), x)


def test_unseen_binary_value_is_always_an_error(tmp_path: Path, people: str) -> None:
    enc = fit(people, FeatureSpec(drop=["id"], unknown="zeros"))
    new = write_rows(tmp_path / "new.csv", ["age", "gender", "nationality"], [("40", "other", "Japan")])
    with raises(InputError, "new.csv: row 2, column 'gender': unseen value 'other'"):
        enc.transform(new)


def test_missing_column_on_apply(tmp_path: Path, people: str) -> None:
    enc = fit(people, FeatureSpec(drop=["id"]))
    new = write_rows(tmp_path / "new.csv", ["age", "nationality"], [("40", "Japan")])
    with raises(InputError, "new.csv: missing column 'gender' needed by the feature encoding"):
        enc.transform(new)


def test_data_value_not_in_category_list(tmp_path: Path, people: str) -> None:
    short = write(tmp_path / "short.txt", "France\nJapan\n")
    with raises(InputError, "people.csv: row 4, column 'nationality': 'Brazil' is not in the category list"):
        fit(people, FeatureSpec(drop=["id"], categories={"nationality": short}))


def test_category_list_duplicates(tmp_path: Path, people: str) -> None:
    dup = write(tmp_path / "dup.txt", "France\nJapan\nFrance\n")
    with raises(InputError, "dup.txt: line 3: duplicate category 'France'"):
        fit(people, FeatureSpec(categories={"nationality": dup}))


# ---------------------------------------------------------------- missing values


def test_missing_value_errors_by_default(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "age,city\n30,Paris\n,Rome\n50,Oslo\n")
    with raises(InputError, "m.csv: row 3, column 'age': missing value (empty cell)"):
        fit(p, FeatureSpec())


def test_missing_mean_fills_numeric(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "age,city\n30,Paris\n,Rome\n50,Oslo\n")
    enc, x = fit_transform(p, FeatureSpec(missing="mean"))
    assert enc.columns[0].mean == 40.0
    np.testing.assert_array_equal(x[:, 0], [30, 40, 50])
    _, z = fit_transform(p, FeatureSpec(missing="mean", standardize=True))
    assert z[1, 0] == 0.0
    q = write(tmp_path / "q.csv", "age,city\n30,Paris\n40,\n50,Oslo\n")
    with raises(InputError, "q.csv: row 3, column 'city': missing value"):
        fit(q, FeatureSpec(missing="mean"))


# ---------------------------------------------------------------- bad input


def test_ragged_row_names_the_row(tmp_path: Path) -> None:
    p = write(tmp_path / "data.csv", "a,b,c\n1,2,3\n4,5,6\n7,8,9\n1,2,3,4\n")
    with raises(InputError, "data.csv: row 5 has 4 fields, header has 3"):
        fit(p, FeatureSpec())
    enc = fit(write(tmp_path / "ok.csv", "a,b,c\n1,2,3\n4,5,6\n"), FeatureSpec())
    with raises(InputError, "data.csv: row 5 has 4 fields, header has 3"):
        enc.transform(p)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.csv", "")
    with raises(InputError, "empty.csv: CSV file is empty"):
        fit(empty, FeatureSpec())
    head = write(tmp_path / "head.csv", "a,b\n")
    with raises(InputError, "head.csv: has a header but no data rows"):
        fit(head, FeatureSpec())
    blank = write(tmp_path / "blank.csv", "\n\n")
    with raises(InputError, "blank.csv: no header row"):
        fit(blank, FeatureSpec())
    with raises(InputError, "nope.csv: no such file"):
        fit(str(tmp_path / "nope.csv"), FeatureSpec())
    enc = fit(write(tmp_path / "ok.csv", "a,b\n1,2\n"), FeatureSpec())
    with raises(InputError, "head.csv: has a header but no data rows"):
        enc.transform(head)


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes("name,age\nJos\xe9,30\n".encode("latin-1"))
    with raises(InputError, f"{p}: invalid UTF-8"):
        fit(str(p), FeatureSpec())


def test_duplicate_header_names(tmp_path: Path) -> None:
    p = write(tmp_path / "dup.csv", "a,b,a\n1,2,3\n")
    with raises(InputError, "dup.csv: duplicate column name 'a' in header (columns 1 and 3)"):
        fit(p, FeatureSpec())


def test_bom_blank_lines_and_quoted_fields(tmp_path: Path) -> None:
    p = tmp_path / "q.csv"
    p.write_bytes(b'\xef\xbb\xbfage,city\r\n30,"Paris, France"\r\n\r\n40,Rome\r\n50,"multi\nline"\r\n60,x,y\r\n')
    with raises(InputError, "row 6 has 3 fields"):  # record 6: blank line counted, quoted newline is not
        fit(str(p), FeatureSpec())
    p.write_bytes(b'\xef\xbb\xbfage,city\r\n30,"Paris, France"\r\n\r\n40,Rome\r\n50, Oslo \r\n')
    enc, x = fit_transform(str(p), FeatureSpec())
    # BOM stripped from 'age', cells stripped of spaces, categories sorted by code point
    assert enc.feature_names == ["age", "city=Oslo", "city=Paris, France", "city=Rome"]
    np.testing.assert_array_equal(x, [[30, 0, 1, 0], [40, 0, 0, 1], [50, 1, 0, 0]])


# ---------------------------------------------------------------- streaming


def test_blocks_match_a_numpy_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (fitting, encoding):
        monkeypatch.setattr(module, "BLOCK_ROWS", 7)  # many blocks, ragged last block
    rng = np.random.default_rng(0)
    n = 100
    vals = rng.normal(1000.0, 3.0, n)
    cats = rng.choice(["a", "b", "c", "d"], n)
    p = write_rows(tmp_path / "big.csv", ["v", "c"], [(repr(float(v)), c) for v, c in zip(vals, cats)])
    enc, x = fit_transform(p, FeatureSpec(standardize=True))
    assert enc.columns[0].mean == pytest.approx(vals.mean(), rel=1e-12)
    assert enc.columns[0].std == pytest.approx(vals.std(), rel=1e-9)
    np.testing.assert_allclose(x[:, 0], (vals - vals.mean()) / vals.std(), rtol=1e-5, atol=1e-5)
    expect = (cats[:, None] == np.array(["a", "b", "c", "d"])[None, :]).astype(np.float32)
    np.testing.assert_array_equal(x[:, 1:], expect)
    np.testing.assert_array_equal(enc.transform(p), x)


def test_stdin(monkeypatch: pytest.MonkeyPatch, people: str) -> None:
    data = Path(people).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    enc, x = fit_transform("-", FeatureSpec(drop=["id"]))
    np.testing.assert_array_equal(x, fit_transform(people, FeatureSpec(drop=["id"]))[1])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    np.testing.assert_array_equal(enc.transform("-"), x)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with raises(InputError, "<stdin>: input is empty"):
        fit("-", FeatureSpec())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a,b\n1,2\n3\n")))
    with raises(InputError, "<stdin>: row 3 has 1 field, header has 2"):
        fit("-", FeatureSpec())


# ---------------------------------------------------------------- writing


def test_write_npy_and_csv(tmp_path: Path, people: str, countries: str) -> None:
    enc, x = fit_transform(people, FeatureSpec(drop=["id"], categories={"nationality": countries},
                                               standardize=True))
    npy, out_csv, js = tmp_path / "x.npy", tmp_path / "x.csv", tmp_path / "enc.json"
    written = write_features(x, enc.feature_names, str(npy), str(out_csv), force=False,
                             encoding=enc, encoding_path=str(js))
    assert written == [str(npy), str(out_csv), str(js)]
    y = np.load(npy)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    with open(out_csv, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == enc.feature_names  # includes the quoted 'nationality=Korea, Republic of'
    assert len(rows) == 1 + x.shape[0]
    np.testing.assert_array_equal(np.array(rows[1:], dtype=np.float32), x)  # %.9g round-trips float32
    assert FeatureEncoding.load(js).feature_names == enc.feature_names
    assert not list(tmp_path.glob("*.dlcli-tmp"))


def test_write_refuses_existing_outputs_atomically(tmp_path: Path) -> None:
    x = np.eye(2, dtype=np.float32)
    npy, out_csv = tmp_path / "x.npy", tmp_path / "x.csv"
    out_csv.write_text("keep me")
    with raises(OutputExistsError, "x.csv: already exists"):
        write_features(x, ["a", "b"], str(npy), str(out_csv), force=False)
    assert not npy.exists() and out_csv.read_text() == "keep me"  # all or nothing
    write_features(x, ["a", "b"], str(npy), str(out_csv), force=True)
    assert out_csv.read_text().splitlines() == ["a,b", "1,0", "0,1"]
    with pytest.raises(ValueError):
        write_features(x, ["a"], str(npy), None, force=True)
