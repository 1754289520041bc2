"""Bad input and faults that used to crash through the catch-all or pass silently (issue 17): non-finite config
values, negative budgets, impossible .bin headers, read-only folders and full disks, -k 0, scene images linked
out of their folder, a number column with a typo, and preprocess workers outliving a killed parent."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from dlcli.core import io
from dlcli.core.config import build_config, from_dict
from dlcli.errors import ConfigError, DlcliWarning, InputError, OutputError

REPO = Path(__file__).resolve().parent.parent
DLCLI = [sys.executable, "-m", "dlcli"]


# ---------------------------------------------------------------- config values must be finite (7)

@pytest.mark.parametrize("raw", [".nan", "nan", "inf", "-.inf", "1e999"])
def test_a_non_finite_float_is_one_config_error_naming_the_key(raw):
    from dlcli.lm.config import TrainTransformerConfig

    with pytest.raises(ConfigError) as e:
        build_config(TrainTransformerConfig, None, [f"optim.lr={raw}", "data.train=x.ids", "max_steps=1"])
    assert str(e.value).startswith("optim.lr: must be a finite number, not ")


def test_non_finite_floats_are_refused_from_yaml_and_dicts_too(tmp_path):
    from dlcli.lm.config import TrainRNNConfig

    (tmp_path / "c.yaml").write_text("data:\n  val_fraction: .inf\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: data\.val_fraction: must be a finite number, not inf"):
        build_config(TrainRNNConfig, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="optim.lr: must be a finite number, not nan"):
        from_dict(TrainRNNConfig, {"optim": {"lr": float("nan")}})


def test_nan_lr_on_the_command_line(cli, tmp_path):
    r = cli("train-rnn", "-d", "x.ids", "-o", "runs/x", "--max-steps", "2", "--set", "optim.lr=.nan")
    assert r.exit_code == 2
    assert r.stderr.strip() == "error: optim.lr: must be a finite number, not nan"
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- negative budgets (11)

def _training_configs() -> list[tuple[type, list[str]]]:
    from dlcli.embed.train import EmbedConfig
    from dlcli.forecast.config import TimeSeriesConfig
    from dlcli.gan.config import GanConfig
    from dlcli.lm.config import TrainRNNConfig, TrainTransformerConfig
    from dlcli.nerf.config import NerfConfig
    from dlcli.rlhf.config import DPOConfig, PPOConfig, RewardConfig, SFTConfig
    from dlcli.translation.config import TrainTranslateConfig

    rlhf = ["data=x.jsonl", "output=o"]
    return [(TrainRNNConfig, ["data.train=x.ids"]), (TrainTransformerConfig, ["data.train=x.ids"]), (GanConfig, []),
            (SFTConfig, rlhf), (RewardConfig, rlhf), (PPOConfig, rlhf), (DPOConfig, rlhf),
            (TrainTranslateConfig, ["data.tsv=x.tsv"]), (NerfConfig, ["data=scene"]),
            (TimeSeriesConfig, ["data=x.csv"]), (EmbedConfig, ["data=x.tok"])]


@pytest.mark.parametrize("key", ["max_steps", "epochs"])
@pytest.mark.parametrize("extra", [[], ["max_time=1m"]])
def test_every_training_config_refuses_a_negative_budget(key, extra):
    checked = 0
    for cls, required in _training_configs():
        if key not in cls.__dataclass_fields__:
            continue
        build_config(cls, None, required)  # the base is valid ...
        with pytest.raises(ConfigError, match=key):  # ... and a negative budget is not, with time or without
            build_config(cls, None, [*required, f"{key}=-5", *extra])
        checked += 1
    assert checked >= 8


def test_nerf_max_steps_minus_5_with_a_time_budget(cli):
    r = cli("nerf", "train", "scene", "-o", "runs/n", "--max-steps", "-5", "--max-time", "10s")
    assert r.exit_code == 2 and r.stderr.strip() == "error: max_steps and val_interval must be >= 0"


# ---------------------------------------------------------------- word2vec .bin headers (9)

def test_a_bin_header_beyond_the_file_size_is_refused_before_allocating(tmp_path, monkeypatch):
    from dlcli.embed import vecfile

    p = tmp_path / "huge.bin"
    p.write_bytes(b"999999999999 99999999\nthe abcd\n")
    monkeypatch.setattr(vecfile.np, "empty", None)  # nothing is allocated before the bytes are found
    with pytest.raises(InputError, match=r"huge\.bin: binary vectors end early at word 1 of 999999999999 "
                                         r"\(truncated file, or a header that claims too much\?\)"):
        vecfile.read(p)


def test_a_bin_file_one_vector_short_is_refused(tmp_path):
    from dlcli.embed.vecfile import read, write_binary

    with open(tmp_path / "v.bin", "wb") as f:
        write_binary(f, ["a", "b"], np.ones((2, 3), np.float32))
    data = (tmp_path / "v.bin").read_bytes()
    assert read(tmp_path / "v.bin")[0] == ["a", "b"]
    (tmp_path / "v.bin").write_bytes(b"3" + data[1:])
    with pytest.raises(InputError, match="end early at word 3 of 3"):
        read(tmp_path / "v.bin")


# ---------------------------------------------------------------- read-only folders and full disks (10)

def test_a_full_disk_while_writing_names_the_output_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("precious\n")
    with pytest.raises(OutputError) as e, io.atomic_write(out, force=True) as f:
        f.write(b"new")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(e.value) == f"cannot write {out}: no space left on device"
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_full_disk_in_a_group_names_the_file_being_written(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write .*b\.txt: no space left on device"), \
            io.AtomicGroup() as group:
        group.open(tmp_path / "a.txt").close()
        group.open(tmp_path / "b.txt")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_on_the_command_line_is_one_line(cli, tmp_path, monkeypatch):
    import dlcli.text.preprocess

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "in.txt").write_text("some text\n")
    monkeypatch.setattr(dlcli.text.preprocess, "to_stream", full)
    r = cli("preprocess", "in.txt", "-o", "out.tok", "-j", "1")
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: cannot write out.tok: no space left on device"
    assert [p.name for p in tmp_path.iterdir()] == ["in.txt"]


@pytest.mark.parametrize(("err", "line"), [
    (PermissionError(errno.EACCES, "Permission denied", "ro/.out.tok.123-0bbfd16a-abcd1234.dlcli-tmp"),
     "cannot write ro/out.tok: permission denied"),
    (PermissionError(errno.EACCES, "Permission denied", "ro/run"), "cannot write ro/run: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/x"), "cannot write /mnt/x: read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device"), "cannot write the output: no space left on device"),
    (OSError(errno.EIO, "Input/output error", "x"), None),
])
def test_os_errors_a_user_can_act_on_are_one_line(err, line):
    assert io.os_error_line(err) == line


def test_the_catch_all_maps_a_permission_error_to_one_line(cli, monkeypatch):
    import dlcli.text.preprocess

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", "runs/x")

    monkeypatch.setattr(dlcli.text.preprocess, "run", denied)
    r = cli("preprocess", "-")
    assert r.exit_code == 1 and r.stderr.strip() == "error: cannot write runs/x: permission denied"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="permissions do not bite root")
def test_a_read_only_output_folder(cli, tmp_path):
    (tmp_path / "in.txt").write_text("some text\n")
    (tmp_path / "ro").mkdir(mode=0o500)
    try:
        r = cli("preprocess", "in.txt", "-o", "ro/out.tok")
        assert r.exit_code == 1 and r.stderr.strip() == "error: cannot write ro/out.tok: permission denied"
        r = cli("train-rnn", "-d", "in.txt", "-o", "ro/run", "--max-steps", "1")
        assert r.exit_code != 0 and "unexpected" not in r.stderr
    finally:
        (tmp_path / "ro").chmod(0o700)


# ---------------------------------------------------------------- embed -k (12)

@pytest.fixture
def vec(tmp_path):
    (tmp_path / "v.vec").write_text("3 2\nking 1 0\nqueen 0.9 0.1\nman 0 1\n")
    return tmp_path / "v.vec"


@pytest.mark.parametrize("k", ["0", "-2"])
def test_neighbors_and_analogy_refuse_k_below_1(cli, vec, k):
    for args in (["neighbors", vec, "king"], ["analogy", vec, "man", "king", "queen"]):
        r = cli("embed", *args, "-k", k)
        assert r.exit_code == 2 and r.stdout == ""
        assert r.stderr.strip() == f"error: -k/--top: must be at least 1, not {k}"
    r = cli("embed", "neighbors", vec, "king", "-k", "1")
    assert r.exit_code == 0 and r.stdout == "king\tqueen\t0.9939\n"


def test_query_functions_refuse_k_below_1(vec):
    from dlcli.embed.query import Vectors, analogy, neighbors

    v = Vectors.load(vec)
    with pytest.raises(ConfigError, match="at least 1, not 0"):
        neighbors(v, "king", 0)
    with pytest.raises(ConfigError, match="at least 1, not -1"):
        analogy(v, "man", "king", "queen", -1)


# ---------------------------------------------------------------- NeRF images linked out of the scene (13)

@pytest.fixture
def scene(tmp_path):
    from dlcli.nerf.synth import SynthConfig, synth

    synth(SynthConfig(output=str(tmp_path / "scene"), size=8, n_train=4, n_val=1, n_test=2))
    return tmp_path / "scene"


def test_a_scene_image_linked_out_of_the_folder_is_refused(scene, tmp_path):
    from dlcli.nerf import data as nd

    image = scene / "train" / "r_0.png"
    (tmp_path / "secret.png").write_bytes(image.read_bytes())
    image.unlink()
    image.symlink_to(tmp_path / "secret.png")
    with pytest.raises(InputError, match=r"frame 0 \(\./train/r_0\): image path '\./train/r_0' links to "
                                         r".*secret\.png, outside the dataset folder .*scene \(refused\)"):
        nd.load(scene, "train")


def test_links_inside_the_scene_and_a_linked_scene_folder_are_fine(scene, tmp_path):
    from dlcli.nerf import data as nd

    image = scene / "train" / "r_0.png"
    (scene / "store").mkdir()
    image.rename(scene / "store" / "r_0.png")
    image.symlink_to(scene / "store" / "r_0.png")
    (tmp_path / "alias").symlink_to(scene)
    assert len(nd.load(tmp_path / "alias", "train").names) == 4


def test_a_linked_image_on_the_command_line(cli, scene, tmp_path):
    image = scene / "train" / "r_1.png"
    image.rename(tmp_path / "out.png")
    image.symlink_to(tmp_path / "out.png")
    r = cli("nerf", "train", scene, "-o", "runs/n", "--max-steps", "1")
    assert r.exit_code == 1 and "outside the dataset folder" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- a number column with a typo (14)

def _fit(tmp_path, text):
    from dlcli.tabular.fit import fit
    from dlcli.tabular.spec import FeatureSpec

    (tmp_path / "t.csv").write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = fit(tmp_path / "t.csv", FeatureSpec())
    return enc, [str(w.message) for w in caught if issubclass(w.category, DlcliWarning)]


def test_a_number_column_with_one_word_warns_with_the_row_and_value(tmp_path):
    rows = "".join(f"{20 + i},{'ab'[i % 2]}\n" for i in range(30))
    enc, said = _fit(tmp_path, "age,kind\n" + rows.replace("25,", "abc,", 1))
    assert [c.kind for c in enc.columns] == ["categorical", "binary"]
    assert said == [(f"{tmp_path / 't.csv'}: column 'age' is encoded as categorical, not numeric: row 7 has "
                     "'abc', the only value that is not a number among 29 numbers; fix it, or declare the column "
                     "with --numeric or --categorical")]


def test_text_and_number_columns_do_not_warn(tmp_path):
    enc, said = _fit(tmp_path, "age,city\n" + "".join(f"{i},{c}\n" for i, c in enumerate(["Oslo", "Rome", "Lima"] * 50)))
    assert [c.kind for c in enc.columns] == ["numeric", "categorical"] and said == []


def test_the_warning_on_the_command_line(cli, tmp_path):
    (tmp_path / "p.csv").write_text("age,x\n1,a\n2,b\nn/a,c\n4,d\n")
    r = cli("tabular", "encode", "p.csv", "-o", "f.npy")
    assert r.exit_code == 0
    assert "warning: p.csv: column 'age' is encoded as categorical, not numeric: row 4 has 'n/a'" in r.stderr


# ---------------------------------------------------------------- workers die with their parent (15)

def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_preprocess_takes_its_workers_and_the_next_run_cleans_up(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"the quick brown fox jumps over the lazy dog\n" * 1_500_000)  # 66 MB: two ranges
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([*DLCLI, "preprocess", "big.txt", "-l", "char", "-o", "out.tok", "-j", "2", "-q"],
                         cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    workers: list[int] = []
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        parts = list(tmp_path.glob(".dlcli-parts-*/part-*"))
        workers = _children(p.pid)
        if len(parts) == 2 and len(workers) >= 2 and all(f.stat().st_size for f in parts):
            break
        time.sleep(0.02)
    assert p.poll() is None and len(workers) >= 2, "preprocess finished before its workers could be seen"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    deadline = time.time() + 2
    while time.time() < deadline and any(_running(w) for w in workers):
        time.sleep(0.05)
    assert not any(_running(w) for w in workers), "workers outlived their parent"
    left = sorted(f.name for f in tmp_path.iterdir() if f.name.startswith("."))
    assert len(left) == 2 and left[0].startswith(".dlcli-parts-") and left[1].endswith(".dlcli-tmp")
    assert str(p.pid) in left[0] and str(p.pid) in left[1]
    (tmp_path / "small.txt").write_text("a line\n")
    r = subprocess.run([*DLCLI, "preprocess", "small.txt", "-o", "small.tok", "-j", "2", "-q"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["big.txt", "small.tok", "small.tok.json", "small.txt"]


def test_only_a_dead_process_s_files_of_this_host_are_removed(tmp_path):
    from dlcli.core import parallel

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine, host = io.owner_tag().split("-")
    names = [f".dlcli-parts-{dead.pid}-{host}-a", f".dlcli-parts-{mine}-{host}-b", f".dlcli-parts-{dead.pid}-00000000-c",
             ".dlcli-parts-abcdefgh"]
    for n in names:
        (tmp_path / n).mkdir()
    (tmp_path / names[0] / "part-0").write_text("x")
    new = parallel.parts_dir(tmp_path)
    assert Path(new).name.startswith(f".dlcli-parts-{mine}-{host}-")
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([*names[1:], Path(new).name])


def test_a_worker_whose_parent_died_stops_between_chunks(monkeypatch):
    from dlcli.core import parallel

    monkeypatch.setattr(parallel, "_PARENT", os.getppid() + 1)
    exits = []
    monkeypatch.setattr(parallel.os, "_exit", exits.append)
    parallel.report_bytes(10)
    assert exits == [1]


def test_pools_still_map_in_order_with_the_parent_checks():
    from dlcli.core import parallel

    assert list(parallel.imap_ordered(abs, range(-50, 50), workers=2)) == [abs(i) for i in range(-50, 50)]
    assert parallel.run_jobs(abs, list(range(-5, 5)), workers=2) == [abs(i) for i in range(-5, 5)]


def test_replace_folder_puts_the_new_one_in_and_drops_the_old_file_or_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for old in ("folder", "file"):
        if old == "folder":
            out.mkdir()
            (out / "stale.txt").write_text("old")
        else:
            out.write_text("old")
        new = tmp_path / f"new-{old}"
        new.mkdir()
        (new / "fresh.txt").write_text("new")
        io.replace_folder(new, out)
        assert [p.name for p in out.iterdir()] == ["fresh.txt"] and not new.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left aside
        shutil.rmtree(out)
