"""The results store: one tidy SQLite table with a row per evaluation, safe with concurrent writers.

A row is one (cell, checkpoint) evaluation: a cell is one trained policy (encoder x task x head x seed
under one resolved config), `config_hash` is the hash of that config and `checkpoint` is best or last.
(config_hash, checkpoint) is the table's primary key, so a cell appended twice is counted once.

Concurrency: the database runs in WAL journal mode (readers never block the writer) and every append
is one `BEGIN IMMEDIATE` transaction that waits up to `timeout` seconds for the write lock. WAL needs
shared memory, so it does not work on network filesystems (NFS): pass journal="delete" there (slower,
still safe where the filesystem's POSIX locks work).

Versions: the file records its schema version. An older file is migrated in place by the functions in
MIGRATIONS (one step per version); a newer or foreign file is refused with a message that says why.
`export(path)` writes the table as Parquet or CSV for pandas/R users.
"""
from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from theia_eval.errors import InputError

SCHEMA_VERSION = 1
TABLE = "evaluations"

# column -> SQLite type; every row carries all of them (None where not applicable)
COLUMNS: dict[str, str] = {
    "config_hash": "TEXT NOT NULL",  # identity of the cell: hash of its resolved config
    "checkpoint": "TEXT NOT NULL",  # best (max over evaluations, the protocol's number) | last
    "sweep": "TEXT",
    "encoder": "TEXT NOT NULL",  # the label shown on leaderboards
    "encoder_name": "TEXT",  # registry name
    "weights": "TEXT",  # the weights asked for (null = the registry entry's default)
    "weights_id": "TEXT",  # what the encoder reports it loaded
    "weights_hash": "TEXT",  # hash of the weight files (or of the id when there are none)
    "suite": "TEXT NOT NULL",  # task family: metaworld, dmc, adroit
    "task": "TEXT NOT NULL",
    "head": "TEXT NOT NULL",
    "head_input": "TEXT",  # tokens (spatial) | summary (CLS / pooled)
    "seed": "INTEGER NOT NULL",
    "epoch": "INTEGER",
    "metric": "TEXT",  # success (%) | normalized_score
    "score": "REAL",  # 0-100: success rate x 100, or the suite's normalized score
    "score_lo": "REAL",  # 95 % interval over evaluation episodes
    "score_hi": "REAL",
    "success_rate": "REAL",
    "mean_return": "REAL",
    "episodes": "INTEGER",
    "params_m": "REAL",
    "gflops": "REAL",
    "ms_per_img": "REAL",  # encoder time per image measured during evaluation (batch = parallel envs)
    "protocol": "TEXT",  # cortexbench | reduced
    "deviations": "TEXT",  # how a reduced protocol differs from CortexBench ("" when it does not)
    "device": "TEXT",
    "run_dir": "TEXT",
    "code_version": "TEXT",
    "started_at": "TEXT",
    "finished_at": "TEXT",
    "recorded_at": "TEXT",
}
KEY = ("config_hash", "checkpoint")
REQUIRED = tuple(c for c, t in COLUMNS.items() if "NOT NULL" in t)

# from-version -> function(connection) that brings a file to from-version + 1
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}
JOURNALS = ("wal", "delete")


def now() -> str:
    """UTC timestamp (ISO 8601, seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _create_sql() -> str:
    cols = ",\n  ".join(f"{c} {t}" for c, t in COLUMNS.items())
    return f"CREATE TABLE {TABLE} (\n  {cols},\n  PRIMARY KEY ({', '.join(KEY)})\n)"


class ResultsStore:
    """A results file (SQLite). `append(rows)` is atomic; `frame()` reads everything as a DataFrame."""

    def __init__(self, path: str | Path, journal: str = "wal", timeout: float = 120.0, create: bool = True):
        if journal not in JOURNALS:
            raise InputError(f"store journal must be one of {JOURNALS}, got '{journal}'.")
        self.path, self.journal, self.timeout = Path(path), journal, float(timeout)
        if not self.path.is_file():
            if not create:
                raise InputError(f"no results store at {self.path}: run a sweep (`theia-eval sweep sweep=NAME`) "
                                 "or pass results=PATH.")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            self._prepare(con)

    # --- connection and schema -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            con.execute(f"PRAGMA journal_mode = {self.journal}")
        except sqlite3.DatabaseError as exc:
            con.close()
            raise InputError(f"{self.path} is not a theia-eval results store (SQLite said: {exc}). "
                             "Pass results=PATH of a store written by `theia-eval sweep`.") from exc
        return _Closing(con)

    def _prepare(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                con.execute(_create_sql())
                con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
                con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created_at', ?)",
                            (str(SCHEMA_VERSION), now()))
            elif "meta" not in tables or TABLE not in tables:
                raise InputError(f"{self.path} is an SQLite file but not a theia-eval results store (tables: "
                                 f"{', '.join(sorted(tables))}). Pass another results=PATH.")
            else:
                self._upgrade(con, self._version(con))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _version(self, con: sqlite3.Connection) -> int:
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise InputError(f"{self.path} has no schema_version: it was not written by theia-eval.")
        return int(row[0])

    def _upgrade(self, con: sqlite3.Connection, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise InputError(f"{self.path} was written by a newer theia-eval (results schema v{version}; this "
                             f"version reads up to v{SCHEMA_VERSION}). Upgrade theia-eval, or write to a new "
                             "store with store=PATH.")
        while version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise InputError(f"{self.path} uses results schema v{version}, which this theia-eval cannot "
                                 f"migrate to v{SCHEMA_VERSION}. Re-run the sweep into a new store (store=PATH).")
            MIGRATIONS[version](con)
            version += 1
            con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    @property
    def schema_version(self) -> int:
        with self._connect() as con:
            return self._version(con)

    # --- writing ---------------------------------------------------------------------------------
    def append(self, rows: Iterable[Mapping]) -> int:
        """Insert rows in one transaction; rows whose (config_hash, checkpoint) exist are ignored.

        Returns the number of rows actually inserted.
        """
        rows = [check_row(r) for r in rows]
        if not rows:
            return 0
        cols = list(COLUMNS)
        sql = (f"INSERT OR IGNORE INTO {TABLE} ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' for _ in cols)})")
        stamp = now()
        values = [tuple(({**r, "recorded_at": r.get("recorded_at") or stamp}).get(c) for c in cols) for r in rows]
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                before = con.total_changes
                con.executemany(sql, values)
                inserted = con.total_changes - before
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return inserted

    # --- reading ---------------------------------------------------------------------------------
    def checkpoints(self, config_hash: str) -> set[str]:
        """Checkpoints recorded for a cell (empty when the cell has not finished)."""
        with self._connect() as con:
            rows = con.execute(f"SELECT checkpoint FROM {TABLE} WHERE config_hash=?", (config_hash,))
            return {r[0] for r in rows}

    def finished(self) -> set[str]:
        """config_hash of every cell that has both a best and a last row."""
        with self._connect() as con:
            rows = con.execute(f"SELECT config_hash FROM {TABLE} GROUP BY config_hash "
                               "HAVING COUNT(DISTINCT checkpoint) >= 2")
            return {r[0] for r in rows}

    def __len__(self) -> int:
        with self._connect() as con:
            return int(con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def frame(self):
        """All rows as a pandas DataFrame (columns in COLUMNS order)."""
        import pandas as pd

        with self._connect() as con:
            return pd.read_sql_query(f"SELECT * FROM {TABLE} ORDER BY encoder, suite, task, head, seed, checkpoint",
                                     con.raw)

    def export(self, path: str | Path) -> Path:
        """Write the table as .parquet or .csv (atomically); the schema version goes in a column."""
        return export_frame(self.frame(), path)


def export_frame(df, path: str | Path) -> Path:
    """Write result rows as .parquet or .csv (atomically), the schema version in a column: what load_results reads."""
    path = Path(path)
    df = df.drop(columns=["schema_version"], errors="ignore")
    df.insert(0, "schema_version", SCHEMA_VERSION)
    writers = {".parquet": lambda p: df.to_parquet(p, index=False), ".csv": lambda p: df.to_csv(p, index=False)}
    if path.suffix not in writers:
        raise InputError(f"export to .parquet or .csv, got '{path.suffix}'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writers[path.suffix](tmp)
    os.replace(tmp, path)
    return path


class _Closing:
    """A connection used as a context manager that closes it (sqlite3's own only ends transactions)."""

    def __init__(self, con: sqlite3.Connection):
        self.raw = con

    def __getattr__(self, name: str):
        return getattr(self.raw, name)

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()


def check_row(row: Mapping) -> dict:
    """A row with only known columns and every required one present."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise InputError(f"unknown result columns {sorted(unknown)}; known: {', '.join(COLUMNS)}.")
    missing = [c for c in REQUIRED if row.get(c) is None]
    if missing:
        raise InputError(f"result row lacks required columns {missing}: {dict(row)}")
    if row["checkpoint"] not in ("best", "last"):
        raise InputError(f"checkpoint must be best or last, got '{row['checkpoint']}'.")
    return dict(row)


def load_results(path: str | Path):
    """A DataFrame of results from a store (.sqlite/.db) or one of its exports (.parquet/.csv)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"results file {path} does not exist: run `theia-eval sweep sweep=NAME` first, or pass "
                         "results=PATH.")
    if path.suffix in (".parquet", ".csv"):
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return check_export(df, path)
    return ResultsStore(path, create=False).frame()


def result_paths(results) -> list[Path]:
    """`results=` as a list of paths: one path, or a list of them (several stores read together)."""
    items = [results] if isinstance(results, (str, Path)) else list(results or [])
    if not items:
        raise InputError("pass results=PATH (a results store) or results=[PATH, PATH, ...] (several, read together).")
    paths = [Path(str(p)) for p in items]
    if len(set(paths)) < len(paths):
        raise InputError(f"results names a file twice: {[str(p) for p in paths]}.")
    return paths


def load_many(results):
    """The rows of one or several results files together (the same cell in two stores is one row after the
    leaderboard's de-duplication, which keeps the newest)."""
    import pandas as pd

    frames = [load_results(p) for p in result_paths(results)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def check_export(df, path: Path):
    """Accept an exported table of this schema version; refuse others with the reason."""
    version = int(df["schema_version"].iloc[0]) if "schema_version" in df and len(df) else None
    if version is None and len(df):
        raise InputError(f"{path} has no schema_version column: it is not a theia-eval results export.")
    if version is not None and version != SCHEMA_VERSION:
        raise InputError(f"{path} is a results export of schema v{version}; this theia-eval reads v{SCHEMA_VERSION}. "
                         "Load the SQLite store it came from instead (it is migrated on open), or re-export it.")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path} lacks result columns {missing}; re-export it with this theia-eval.")
    return df.drop(columns=["schema_version"], errors="ignore")
