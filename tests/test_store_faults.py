"""Faults injected into results stores: random bytes over the header, a middle page and the
last page; output locations that cannot be written (/proc, /dev/null/x, a file in the way,
a read-only mount); a disk that fills up in the middle of a sweep."""

import hashlib
import os
import random
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from initlab.cli import main
from initlab.config import RunConfig
from initlab.errors import InitlabError
from initlab.store import StoreDamagedError, StoreLocationError, open_store
from initlab.sweep import engine, parse_spec, run_study
from initlab.sweep.engine import Outcome
from initlab.sweep.runner import SweepStopped
from initlab.train.result import RunResult

RUNS, EPOCHS, LAYERS = 60, 4, 3
TINY = ["--seeds", "1", "--epochs", "1", "--workers", "1"]
DAMAGE_LINE = r"results store .*initlab\.db is damaged \(.+\); run `initlab store repair .+`"


def config(seed: int) -> RunConfig:
    return RunConfig(dataset="digits", hidden=(16, 8), epochs=EPOCHS, seed=seed)


def result(cfg: RunConfig, fill: int = 0) -> RunResult:
    """A finished run; ``fill`` layer-stat rows more (to grow the file)."""
    epochs = [
        {"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.1 * e + cfg.seed * 1e-3}
        for e in range(1, cfg.epochs + 1)
    ]
    stats = [
        {"epoch": e, "step": s, "layer": f"blocks.{i}", "metric": "act_std", "value": 0.5 * e}
        for e in range(1, cfg.epochs + 1)
        for i in range(LAYERS)
        for s in range(1 + fill)
    ]
    accuracy = 0.5 + cfg.seed * 1e-3
    return RunResult(
        config=cfg, status="ok", epochs=epochs, test_accuracy=accuracy, layer_stats=stats
    )


def outcome(cfg: RunConfig) -> Outcome:
    return Outcome(result(cfg), 1_700_000_000.0, 1_700_000_001.0, "single", {"host": "h"})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A sound store of :data:`RUNS` finished runs in one study (a few dozen pages)."""
    directory = tmp_path_factory.mktemp("pristine")
    with open_store(directory, create=True) as store:
        ids = [config(s).key() for s in range(RUNS)]
        store.add_study("abcd" * 4, "faults", {"n": RUNS}, ["seed"], ids)
        for seed in range(RUNS):
            store.record(outcome(config(seed)))
    return directory


def damaged_copy(pristine: Path, tmp_path: Path, where: str) -> Path:
    """A copy of the store with 1 KiB of random bytes at the header, a middle or the last page."""
    directory = tmp_path / where
    directory.mkdir()
    data = bytearray((pristine / "initlab.db").read_bytes())
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    offset = {"header": 0, "middle": (pages // 2) * page, "last": (pages - 1) * page}
    if where == "runs-page":
        offset[where] = (runs_leaf(pristine / "initlab.db") - 1) * page
    noise = random.Random(where).randbytes(1024 if where != "header" else 100)
    data[offset[where] : offset[where] + len(noise)] = noise
    (directory / "initlab.db").write_bytes(bytes(data))
    return directory


def runs_leaf(db: Path) -> int:
    """The page number of a leaf page of the ``runs`` table, in the middle of them."""
    query = "SELECT pageno FROM dbstat WHERE name='runs' AND pagetype='leaf' ORDER BY pageno"
    try:
        with closing(sqlite3.connect(db)) as conn:
            pages = [p for (p,) in conn.execute(query)]
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table")
    return pages[len(pages) // 2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("where", ["header", "middle", "last"])
def test_commands_refuse_a_damaged_store_in_one_line_and_write_nothing(
    pristine, tmp_path, where, capsys
):
    directory = damaged_copy(pristine, tmp_path, where)
    db = directory / "initlab.db"
    before = digest(db)
    with pytest.raises(StoreDamagedError, match=DAMAGE_LINE):
        open_store(directory)
    with pytest.raises(StoreDamagedError, match=DAMAGE_LINE):
        open_store(directory, create=True)  # as a sweep or compare --out opens it
    capsys.readouterr()
    for argv in (
        ["results", str(directory)],
        ["report", str(directory), "--out", str(tmp_path / "report")],
        ["store", "check", str(directory)],
        ["compare", "--dataset", "digits", "--inits", "zeros", *TINY, "--out", str(directory)],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert f"run `initlab store repair {directory}`" in err
    assert digest(db) == before  # nothing was written to the damaged file


@pytest.mark.parametrize("where", ["header", "middle", "last", "runs-page"])
def test_repair_salvages_every_readable_finished_run(pristine, tmp_path, where, capsys):
    directory = damaged_copy(pristine, tmp_path, where)
    damaged_bytes = digest(directory / "initlab.db")
    assert main(["store", "repair", str(directory)]) == 0
    said = capsys.readouterr().out
    kept = list(directory.glob("initlab.db.damaged-*"))
    assert [digest(k) for k in kept if not k.name.endswith(("-wal", "-shm"))] == [damaged_bytes]
    with open_store(directory) as store:
        assert store.integrity_check() == "ok"
        runs = store.runs().set_index("run_id")
        epochs = store.epochs()
        studies = store.studies()
    recovered, lost = _counts(said)
    assert recovered == len(runs) and recovered + lost == RUNS
    assert recovered >= RUNS // 2, "1 KiB of noise destroys a page or two, not half the runs"
    if where == "header":
        assert recovered == RUNS  # a header is rebuilt; every page is still there
        assert list(studies["name"]) == ["faults"]
    if where == "runs-page":
        assert lost >= 1  # the runs on that page, and only those
        readable = readable_rowids(next(k for k in kept if not k.name.endswith(("-wal", "-shm"))))
        assert recovered == readable  # every row a one-by-one read gets back
    for run_id, row in runs.iterrows():  # recovered runs are the originals, not garbage
        seed = int(row["seed"])
        assert run_id == config(seed).key()
        assert row["test_accuracy"] == pytest.approx(0.5 + seed * 1e-3, abs=1e-12)
        assert row["status"] == "ok" and row["attempts"] == 1
    per_run = epochs.groupby("run_id")["epoch"].apply(sorted)
    assert all(e == list(range(1, EPOCHS + 1)) for e in per_run) and len(per_run) == recovered


def test_a_repair_that_cannot_write_leaves_the_damaged_store_where_it_was(
    pristine, tmp_path, monkeypatch, capsys
):
    """On a full disk the store was moved aside first and the new one never written: the
    study had no initlab.db at all, and a rerun would have trained every run again."""
    from initlab.store import repair as repair_module

    directory = damaged_copy(pristine, tmp_path, "middle")
    before = digest(directory / "initlab.db")

    def full(conn, table, rows):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(repair_module, "_insert", full)
    assert main(["store", "repair", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the repaired store beside" in err and "is left as it was" in err
    assert digest(directory / "initlab.db") == before
    assert sorted(p.name for p in directory.iterdir() if "repairing" in p.name) == []
    assert not list(directory.glob("initlab.db.damaged-*"))
    monkeypatch.undo()  # space again: the same command repairs it
    assert main(["store", "repair", str(directory)]) == 0


def readable_rowids(db: Path, table: str = "runs") -> int:
    """How many rows of ``table`` read back when asked for one rowid at a time."""
    count = 0
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for rowid in range(1, RUNS + 1):
            try:
                count += len(
                    conn.execute(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,)).fetchall()
                )
            except sqlite3.DatabaseError:
                continue
    return count


def test_repair_keeps_a_user_models_runs_after_its_file_changed(tmp_path, capsys):
    """A user model's run key hashes its source file as it is now: after an edit (or on
    another machine) no stored id matches a recomputed key, and repair lost every run."""
    factory = tmp_path / "mine.py"
    factory.write_text("from torch import nn\n\ndef build():\n    return nn.Linear(64, 10)\n")
    source = tmp_path / "source"
    configs = [RunConfig(dataset="digits", model=f"{factory}:build", seed=s) for s in range(6)]
    with open_store(source, create=True) as store:
        store.add_study("abcd" * 4, "mine", {"n": 6}, ["seed"], [c.key() for c in configs])
        for cfg in configs:
            store.record(outcome(cfg))
    directory = damaged_copy(source, tmp_path, "header")
    factory.write_text(factory.read_text() + "# edited\n")
    assert main(["store", "repair", str(directory)]) == 0
    assert _counts(capsys.readouterr().out) == (6, 0)


def test_a_file_that_is_no_database_or_empty_is_one_line(tmp_path, capsys):
    garbage, empty = tmp_path / "garbage.db", tmp_path / "empty.db"
    garbage.write_text("garbage\n")
    empty.write_bytes(b"")
    for argv, said in (
        (["store", "repair", str(garbage)], "is not an initlab results store"),
        (["store", "check", str(empty)], "is an empty file: no study has been stored"),
        (["store", "repair", str(empty)], "is an empty file: no study has been stored"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert said in err and "\n" not in err and "Traceback" not in err
    assert main(["results", str(empty)]) == 2  # reading it wrote a WAL header into it
    assert empty.read_bytes() == b"" and not list(tmp_path.glob("empty.db-*"))


def _counts(line: str) -> tuple[int, int]:
    words = line.replace(",", " ").split()
    return int(words[words.index("recovered") + 1]), int(words[words.index("lost") + 1])


def test_repairing_a_sound_store_changes_nothing(pristine, capsys):
    before = digest(pristine / "initlab.db")
    assert main(["store", "check", str(pristine)]) == 0
    assert capsys.readouterr().out.strip().endswith(": ok")
    assert main(["store", "repair", str(pristine)]) == 2
    assert "nothing to repair" in capsys.readouterr().err
    assert digest(pristine / "initlab.db") == before


# -- output locations that cannot be written ------------------------------------------------


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("/proc/initlab-x", "no such file or directory"),
        ("/dev/null/x", "/dev/null is a file, not a directory"),
    ],
)
def test_unwritable_out_paths_are_one_line_before_any_work(out, reason, monkeypatch, capsys):
    trained = _count_trainings(monkeypatch)
    with pytest.raises(StoreLocationError, match=f"cannot write the results store at .*{reason}"):
        open_store(out, create=True)
    options = ["--inits", "zeros", "--seeds", "1", "--epochs", "1", "--hidden", "8"]
    code = main(["compare", "--dataset", "digits", *options, "--workers", "1", "--out", out])
    err = capsys.readouterr().err.strip()
    said = ("error: cannot write the results store at", f"error: --out {out}: ")
    assert code == 2 and err.startswith(said)  # the store's check, or --out's before it
    assert "\n" not in err and reason in err and trained == []


def test_a_file_where_the_directory_should_be(tmp_path, pristine, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a directory")
    with pytest.raises(StoreLocationError, match=f"{blocker} is a file, not a directory"):
        open_store(blocker / "study", create=True)
    assert main(["results", str(pristine), "--export", "csv", "--out", "/proc/initlab-x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (  # checked before the export: --out's own line
        "error: --out /proc/initlab-x: nothing can be created in /proc: no such file or directory"
    )


def _mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def mounted(tmp_path):
    """Mounts a tmpfs (``mounted(options)``) and unmounts it after the test."""
    points = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(points)}"
        _mount_tmpfs(target, options)
        points.append(target)
        return target

    yield mount
    for target in points:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_read_only_mount_is_one_line(mounted):
    readonly = mounted("ro,size=1m")
    with pytest.raises(StoreLocationError, match=f"{readonly}.*: read-only file system"):
        open_store(readonly / "study", create=True)


def test_a_store_on_read_only_media_can_be_read_and_checked(mounted, tmp_path, capsys):
    """results and report said 'not an initlab results store (unable to open database
    file)', store check raised a traceback: WAL readers need to make a -shm file."""
    disk = mounted("size=2m")
    with open_store(disk / "study", create=True) as store:
        store.record(outcome(config(0)))
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with open_store(disk / "study") as store:
        assert len(store.runs()) == 1 and store.read_only
    capsys.readouterr()
    assert main(["results", str(disk / "study")]) == 0
    assert main(["store", "check", str(disk / "study")]) == 0
    assert main(["report", str(disk / "study"), "--out", str(tmp_path / "report")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def _count_trainings(monkeypatch, fill: int = 0) -> list:
    """Replace training by a cheap fake (``fill`` extra layer-stat rows per run)."""
    calls = []

    def fake(cfg, data=None, on_epoch=None, checkpoints=None):
        calls.append(cfg)
        return result(cfg, fill)

    monkeypatch.setattr(engine, "run_config", fake)
    return calls


def test_a_disk_that_fills_up_mid_sweep_stops_cleanly(mounted, monkeypatch):
    disk = mounted("size=640k")
    trained = _count_trainings(monkeypatch, fill=200)  # ~25 KB of layer stats per run
    spec = parse_spec(
        {
            "name": "full",
            "fixed": {"dataset": "digits", "hidden": [8], "epochs": 2},
            "seeds": 100,
            "sweep": {"init": ["zeros"]},
        }
    )
    with pytest.raises(SweepStopped) as stopped:
        run_study(spec, disk / "study", workers=1, engine="single")
    message = str(stopped.value)
    assert "database or disk is full" in message or "no space left" in message
    assert "\n" not in message and "run the same command again to resume" in message
    saved = stopped.value.report.ran
    assert 0 < saved < len(trained) <= 100  # it stopped part-way, after committing some
    with open_store(disk / "study") as store:  # everything committed is readable
        assert store.integrity_check() == "ok"
        runs = store.runs()
        assert len(runs) == saved and set(runs["status"]) == {"ok"}
        assert len(store.epochs()) == 2 * saved
    with closing(sqlite3.connect(disk / "study" / "initlab.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] <= 1
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize < 64 * 1024


def test_a_store_locked_past_the_timeout_stops_the_sweep_as_a_full_disk_does(tmp_path, monkeypatch):
    """Another process holding the store's lock for over 60 s raised a traceback (at the
    study's first write, or mid-sweep) and printed no resume command."""
    from initlab.store.sqlite import Store

    _count_trainings(monkeypatch)
    spec = parse_spec(
        {
            "name": "locked",
            "fixed": {"dataset": "digits", "hidden": [8], "epochs": 1},
            "seeds": 5,
            "sweep": {"init": ["zeros"]},
        }
    )
    record, calls = Store.record, []

    def locked_at_the_third(self, outcome):
        calls.append(outcome)
        if len(calls) == 3:
            raise sqlite3.OperationalError("database is locked")
        return record(self, outcome)

    monkeypatch.setattr(Store, "record", locked_at_the_third)
    with pytest.raises(SweepStopped) as stopped:
        run_study(spec, tmp_path / "study", workers=1, engine="single")
    message = str(stopped.value)
    assert "stayed locked by another process for 60 s: the sweep stopped" in message
    assert "run the same command again to resume" in message and "\n" not in message
    with open_store(tmp_path / "study") as store:
        assert len(store.runs()) == 2

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(Store, "add_study", locked)
    with pytest.raises(InitlabError, match="stayed locked by another process for 60 s; try"):
        run_study(spec, tmp_path / "other", workers=1, engine="single")


def test_the_cli_prints_one_line_and_the_resume_command_when_the_disk_fills(
    mounted, monkeypatch, tmp_path, capsys
):
    disk = mounted("size=640k")
    _count_trainings(monkeypatch, fill=200)
    spec = tmp_path / "full.toml"
    spec.write_text(
        'name = "full"\nseeds = 100\n[fixed]\ndataset = "digits"\nhidden = [8]\nepochs = 2\n'
        '[sweep]\ninit = ["zeros"]\n'
    )
    argv = ["sweep", str(spec), "--out", str(disk / "s"), "--workers", "1", "--engine", "single"]
    # as the `initlab` script starts it: the hint repeats how initlab was started (sys.argv[0]),
    # and `python -m pytest` leaves pytest's __main__.py there, read as `python -m initlab`
    monkeypatch.setattr("sys.argv", ["initlab", *argv])
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    stopped = [line for line in err if line.startswith("error:")]
    assert len(stopped) == 1 and "database or disk is full" in stopped[0]
    assert err[-1].strip().startswith(f"initlab sweep {spec} --out {disk / 's'}")
    assert main(["store", "check", str(disk / "s")]) == 0  # what was committed is sound


def test_opening_waits_for_a_lock_sqlite_does_not_wait_for(tmp_path, monkeypatch):
    # a store opened while another process held the exclusive lock (switching to WAL, WAL
    # recovery after a killed writer) failed at once with "database is locked", reported as
    # "not an initlab results store" (seen with 4 processes and a SIGKILL on a loaded CI)
    from initlab.store import opening

    open_store(tmp_path, create=True).close()
    real_setup, calls = opening._set_up, []

    def locked_twice(*args):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real_setup(*args)

    monkeypatch.setattr(opening, "_set_up", locked_twice)
    open_store(tmp_path, create=True).close()
    assert len(calls) == 3

    monkeypatch.setattr(opening, "BUSY_TIMEOUT", 0.2)
    calls.clear()
    monkeypatch.setattr(
        opening,
        "_set_up",
        lambda *args: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")),
    )
    with pytest.raises(InitlabError, match="stayed locked by another process"):
        open_store(tmp_path, create=True)


def test_a_reader_that_goes_away_loses_no_result_file(tmp_path, monkeypatch, capsys):
    """`initlab compare ... | head`: the pipe closes while the tables print; the CSVs and the
    plot are already written, and the command ends quietly (click: exit 1, no traceback)."""
    import errno

    from initlab.sweep import ui

    def reader_gone(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(ui, "print_results", reader_gone)
    options = ["--inits", "zeros", "--seeds", "1", "--epochs", "1", "--hidden", "8"]
    code = main(
        ["compare", "--dataset", "digits", *options, "--workers", "1", "--out", str(tmp_path)]
    )
    assert code == 1 and "Traceback" not in capsys.readouterr().err
    assert {"summary.csv", "epochs.csv", "curves.png"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("table", ["epochs", "studies", "layer_stats"])
def test_a_store_missing_a_table_is_damaged_not_a_traceback(pristine, tmp_path, table, capsys):
    """quick_check passes a store with a table dropped: 'store check' said ok, repair had
    nothing to do, and results/report died on 'no such table'."""
    directory = tmp_path / "store"
    directory.mkdir()
    (directory / "initlab.db").write_bytes((pristine / "initlab.db").read_bytes())
    with closing(sqlite3.connect(directory / "initlab.db")) as conn:
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
    for argv in (["results", str(directory)], ["store", "check", str(directory)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert f"is damaged (no {table} table); run `initlab store repair" in err
    assert main(["store", "repair", str(directory)]) == 0
    said = capsys.readouterr().out
    assert "recovered" in said
    # every run's row read back: the line says why they were lost (their curves), not just 0
    curves = f"lost {RUNS} ({RUNS} of them read back whole but for their per-epoch rows"
    assert (curves in said) == (table == "epochs"), said
    assert main(["results", str(directory)]) in (0, 1)  # readable again
    assert "Traceback" not in capsys.readouterr().err


def test_a_folder_named_like_the_store_file_is_one_line(tmp_path, capsys):
    (tmp_path / "initlab.db").mkdir()
    compare = ["compare", "--data", "digits", "--epochs", "1", "--out", str(tmp_path)]
    for argv in (["store", "check", str(tmp_path)], ["results", str(tmp_path)],
                 ["report", str(tmp_path), "--out", str(tmp_path / "r")], compare):  # fmt: skip
        assert main(argv) == 2, argv
        assert "initlab.db is a folder, not a results store file" in capsys.readouterr().err


def test_a_killed_writer_s_store_on_read_only_media_still_shows_its_runs(mounted, tmp_path, capsys):
    """A writer killed before merging its write-ahead log left runs in initlab.db-wal;
    read-only, the store opened immutable, which ignores the log: the runs in it were
    missing, or the store 'not an initlab results store' (durability journey)."""
    with open_store(tmp_path / "study", create=True) as store:
        store.record(outcome(config(0)))  # merged into initlab.db as the store closes
    writer = open_store(tmp_path / "study")
    writer.record(outcome(config(1)))
    assert (tmp_path / "study" / "initlab.db-wal").stat().st_size > 0  # run 1: the log only
    readonly = mounted("size=4m")
    shutil.copytree(tmp_path / "study", readonly / "study")  # the files as a kill leaves them
    writer.close()
    subprocess.run(["mount", "-o", "remount,ro", str(readonly)], check=True)
    with open_store(readonly / "study") as store:
        assert store.read_only and len(store.runs()) == 2
    capsys.readouterr()
    assert main(["results", str(readonly / "study")]) == 0
    assert "not an initlab results store" not in capsys.readouterr().err


def test_repair_salvages_a_truncated_store_whose_runs_lie_before_the_cut(tmp_path, capsys):
    """A partial copy cut the file inside the tables' root pages: repair refused it whole
    ('cannot be read as an SQLite file at all ... invalid rootpage') while store check sent
    the user to it, and the pages before the cut held every finished run."""
    with open_store(tmp_path, create=True) as store:
        for seed in range(3):
            store.record(outcome(config(seed)))
    db = tmp_path / "initlab.db"
    with closing(sqlite3.connect(db)) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0"))
    cut = (roots["layer_stats"] - 1) * page + page // 3  # inside a later table's root page
    assert roots["runs"] * page <= cut < max(roots.values()) * page  # the premise
    os.truncate(db, cut)
    assert main(["store", "repair", str(tmp_path)]) == 0
    assert _counts(capsys.readouterr().out) == (3, 0)
    with open_store(tmp_path) as store:
        assert sorted(store.runs()["seed"]) == [0, 1, 2] and store.integrity_check() == "ok"
