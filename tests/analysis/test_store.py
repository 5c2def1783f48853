"""The results store: atomic appends keyed by (config_hash, checkpoint), concurrency, versions, exports."""
import multiprocessing as mp
import sqlite3

import pytest

from theia_eval.analysis import store as store_mod
from theia_eval.analysis.store import COLUMNS, ResultsStore, load_results
from theia_eval.errors import InputError

from analysis_helpers import make_row


def test_append_read_and_no_double_counting(tmp_path):
    st = ResultsStore(tmp_path / "r.sqlite")
    rows = [make_row(seed=s, checkpoint=c, score=10.0 * s / 100) for s in (100, 200) for c in ("best", "last")]
    assert st.append(rows) == 4
    assert st.append(rows[:2]) == 0  # the same (config_hash, checkpoint) again: ignored
    assert len(st) == 4
    df = st.frame()
    assert list(df.columns) == list(COLUMNS)
    assert sorted(df["score"]) == [10.0, 10.0, 20.0, 20.0]
    assert st.finished() == {"enc|metaworld/a|conv|100", "enc|metaworld/a|conv|200"}
    st.append([make_row(seed=300, checkpoint="best")])
    assert "enc|metaworld/a|conv|300" not in st.finished()  # a cell needs both checkpoints
    assert st.checkpoints("enc|metaworld/a|conv|300") == {"best"}


def test_bad_rows_are_refused(tmp_path):
    st = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(InputError, match="unknown result columns"):
        st.append([{**make_row(), "acc": 1}])
    with pytest.raises(InputError, match="required"):
        st.append([{**make_row(), "task": None}])
    with pytest.raises(InputError, match="best or last"):
        st.append([make_row(checkpoint="final")])
    assert len(st) == 0  # nothing half-written


def _writer(path: str, worker: int, n: int) -> None:
    st = ResultsStore(path)
    for i in range(n):
        rows = [make_row(encoder=f"w{worker}", seed=i, checkpoint=c) for c in ("best", "last")]
        st.append(rows)
        st.append(rows[:1])  # a duplicate from a retried job


def test_concurrent_writers_lose_nothing_and_count_nothing_twice(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultsStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    df = ResultsStore(path).frame()
    assert len(df) == 4 * 15 * 2
    assert not df.duplicated(["config_hash", "checkpoint"]).any()


def test_other_versions_and_foreign_files(tmp_path, monkeypatch):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).append([make_row()])
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="newer theia-eval .*v99"):
        ResultsStore(path)

    foreign = tmp_path / "other.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="not a theia-eval results store"):
        ResultsStore(foreign)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database at all" * 100)
    with pytest.raises(InputError, match="not a theia-eval results store"):
        ResultsStore(junk)
    with pytest.raises(InputError, match="does not exist"):
        load_results(tmp_path / "missing.sqlite")


def test_older_file_is_migrated_in_place(tmp_path, monkeypatch):
    """A v1 file opened by a (simulated) v2 release gets the v2 column, keeps its rows, and says v2."""
    path = tmp_path / "r.sqlite"
    ResultsStore(path).append([make_row()])

    def add_gpu_column(con):
        con.execute(f"ALTER TABLE {store_mod.TABLE} ADD COLUMN gpu TEXT")

    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_mod, "MIGRATIONS", {1: add_gpu_column})
    monkeypatch.setitem(store_mod.COLUMNS, "gpu", "TEXT")
    st = ResultsStore(path)
    assert st.schema_version == 2
    df = st.frame()
    assert "gpu" in df.columns and len(df) == 1
    monkeypatch.setattr(store_mod, "MIGRATIONS", {})
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 3)
    with pytest.raises(InputError, match="cannot migrate"):
        ResultsStore(path)


def test_exports_round_trip_and_refuse_other_versions(tmp_path):
    st = ResultsStore(tmp_path / "r.sqlite")
    st.append([make_row(seed=s, checkpoint=c) for s in (1, 2) for c in ("best", "last")])
    pq = st.export(tmp_path / "r.parquet")
    back = load_results(pq)
    assert list(back.columns) == list(COLUMNS) and len(back) == 4
    assert back.sort_values(["seed", "checkpoint"])["seed"].tolist() == [1, 1, 2, 2]
    csv = st.export(tmp_path / "r.csv")
    text = csv.read_text().replace("\n1,", "\n7,")  # pretend another schema version wrote it
    csv.write_text(text)
    with pytest.raises(InputError, match="schema v7"):
        load_results(csv)
    with pytest.raises(InputError, match=".parquet or .csv"):
        st.export(tmp_path / "r.xlsx")
