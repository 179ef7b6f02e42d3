"""The evidence store on disk: append-only Parquet tables with provenance and checksums.

Layout of a store folder::

    SCHEMA                      the schema version (one line)
    <table>/<batch>.parquet     the rows one append (batch) added to <table>, zstd-compressed
    provenance/<batch>.parquet  that batch's provenance, with the SHA-256 of each of its files; written last

An append writes each table's new rows to a new file (atomically, through
:mod:`memlib.atomic`) and the batch's provenance row last: a batch without
a provenance row (an append killed half-way) is not read, and ``verify``
names it. Files are never rewritten, so git keeps each batch once and a
reader can trace every row to the run that made it. Appends from several
processes are serialised by a lock file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import write_bytes, write_text
from .schema import F32, F64, I64, SCHEMA_VERSION, STR, TABLES, Table

#: Relative tolerance within which a re-appended float value counts as the same value (re-scoring the same
#: encoder on other hardware moves alignments by ~1e-12; anything beyond this is a different result).
VALUE_RTOL = 1e-6
#: Float columns that may hold NaN (a quantity the run did not measure); every other float must be finite.
NULLABLE = {("encoders", "lam"), ("encoders", "train_wall_s"), ("encoders", "final_loss")}

_PA = {STR: pa.string(), I64: pa.int64(), F64: pa.float64(), F32: pa.float32()}


class StoreError(ValueError):
    """The store, or rows offered to it, break its schema; the message names the rows and the fix."""


class StoreConflict(StoreError):
    """A row's key is already stored with other values; the message names both provenances."""


def default_store_path(preset: str | None = None) -> Path:
    """Where results go: ``$MEMLIB_RESULTS`` if set; else, for ``smoke`` (numbers that mean nothing), a
    folder in the user's cache; else the ``results/`` folder of a source checkout of memlib, or the cache."""
    env = os.environ.get("MEMLIB_RESULTS")
    if env:
        return Path(env)
    cache = Path.home() / ".cache" / "memlib"
    if preset == "smoke":
        return cache / "evidence-smoke"
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").exists() and (repo / "src" / "memlib").is_dir():
        return repo / "results"
    return cache / "results"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _table(name: str) -> Table:
    if name not in TABLES:
        raise StoreError(f"table={name!r} is not a table of the evidence store; choose one of {sorted(TABLES)}")
    return TABLES[name]


def _coerce(t: Table, df: pd.DataFrame, where: str) -> pd.DataFrame:
    """``df`` with exactly ``t``'s columns in order and dtypes, checked for missing, extra and non-finite values."""
    cols = t.columns
    missing = [c for c in cols if c not in df.columns]
    extra = [c for c in df.columns if c not in cols]
    if missing or extra:
        raise StoreError(
            f"{where}: table {t.name!r} needs columns {list(cols)}; missing {missing}, unexpected {extra}. "
            f"Fix: give exactly the schema's columns (memlib.evidence.schema.TABLES[{t.name!r}])"
        )
    out = pd.DataFrame(index=range(len(df)))
    for c, dtype in cols.items():
        col = df[c].reset_index(drop=True)
        try:
            if dtype == STR:
                if col.isna().any():
                    raise ValueError("missing strings")
                out[c] = col.astype(str)
            elif dtype == I64:
                out[c] = col.astype(np.int64)
            else:
                out[c] = col.astype(np.float64 if dtype == F64 else np.float32)
        except (ValueError, TypeError) as e:
            raise StoreError(f"{where}: column {c!r} of table {t.name!r} cannot be read as {dtype} ({e})") from None
        if dtype in (F64, F32) and (t.name, c) not in NULLABLE:
            bad = ~np.isfinite(out[c].to_numpy())
            if bad.any():
                rows = out.loc[bad, list(t.keys)].head(5).to_dict(orient="records")
                raise StoreError(
                    f"{where}: table {t.name!r} column {c!r} has {int(bad.sum())} non-finite values "
                    f"(NaN or inf), e.g. at keys {rows}; results are stored only when finite"
                )
    return out


def _same(t: Table, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Row-wise: whether the value columns of ``a`` and ``b`` (aligned rows) hold the same values."""
    ok = np.ones(len(a), dtype=bool)
    for c, dtype in t.values.items():
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if dtype in (F64, F32):
            both_nan = np.isnan(x.astype(float)) & np.isnan(y.astype(float))
            ok &= both_nan | np.isclose(x.astype(float), y.astype(float), rtol=VALUE_RTOL, atol=0.0)
        else:
            ok &= x == y
    return ok


class EvidenceStore:
    """An evidence store folder (see the module docstring); :meth:`load` reads a table, :meth:`append` adds rows.

    Examples
    --------
    >>> store = EvidenceStore("results")  # doctest: +SKIP
    >>> store.load("alignments").groupby("encoder").alignment.mean()  # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cache: dict[str, tuple[tuple, pd.DataFrame]] = {}

    def __repr__(self) -> str:
        return f"EvidenceStore({str(self.path)!r})"

    # ----- reading -----------------------------------------------------------------------------------------
    def _check_version(self) -> None:
        f = self.path / "SCHEMA"
        if f.exists():
            v = f.read_text().strip()
            if v != str(SCHEMA_VERSION):
                raise StoreError(
                    f"the evidence store {self.path} has schema version {v}, this memlib reads version "
                    f"{SCHEMA_VERSION}; use the memlib version that wrote it, or a store of this version"
                )

    def _files(self, table: str) -> list[Path]:
        folder = self.path / table
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def _read_file(self, t: Table, f: Path) -> pd.DataFrame:
        try:
            df = pq.read_table(f).to_pandas()
        except Exception as e:  # truncated, not Parquet, …
            raise StoreError(
                f"{f} cannot be read as Parquet ({type(e).__name__}: {e}); restore it from git (git checkout -- {f})"
            ) from None
        df = _coerce(t, df, str(f))
        if len(df) and not (df["batch"] == f.stem).all():
            raise StoreError(f"{f}: its rows name another batch than the file's ({f.stem}); restore it from git")
        return df

    def batches(self) -> pd.DataFrame:
        """The provenance table: one row per finished append."""
        return self.load("provenance")

    def load(self, table: str) -> pd.DataFrame:
        """Every stored row of ``table`` from finished appends, checked against the schema (dtypes, finite
        values, one value per key)."""
        t = _table(table)
        self._check_version()
        files = self._files(table)
        stamp = tuple((f.name, f.stat().st_mtime_ns) for f in files)
        if table != "provenance":
            stamp += (tuple(self.batches()["batch"]),)
        hit = self._cache.get(table)
        if hit is not None and hit[0] == stamp:
            return hit[1].copy()
        frames = [self._read_file(t, f) for f in files]
        df = pd.concat(frames, ignore_index=True) if frames else _coerce(t, pd.DataFrame(columns=list(t.columns)), "")
        if table != "provenance":
            df = df[df["batch"].isin(set(stamp[-1]))].reset_index(drop=True)  # finished appends only
        df = self._unique(t, df, f"{self.path}/{table}")
        self._cache[table] = (stamp, df)
        return df.copy()

    def _unique(self, t: Table, df: pd.DataFrame, where: str) -> pd.DataFrame:
        """Drop repeated rows of one key with the same values; a key with different values is an error."""
        keys = list(t.keys)
        dup = df.duplicated(keys, keep=False)
        if not dup.any():
            return df
        d = df[dup].reset_index(drop=True)
        first = d.groupby(keys, sort=False)[[*t.values, "batch"]].transform("first")
        same = _same(t, d, first)
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            bad = pd.concat([first.iloc[[i]].assign(**{k: d.at[i, k] for k in keys}), d.iloc[[i]]])
            raise StoreConflict(f"{where}: one key, two values: {self._describe(t, bad)}")
        return df.drop_duplicates(keys).reset_index(drop=True)

    def _describe(self, t: Table, rows: pd.DataFrame) -> str:
        prov = self.batches().set_index("batch") if (self.path / "provenance").is_dir() else pd.DataFrame()
        parts = []
        for _, r in rows.iterrows():
            key = {k: r[k] for k in t.keys}
            p = prov.loc[r["batch"]] if r["batch"] in prov.index else None
            where = (
                f"batch {r['batch']} (commit {p['commit']}, {p['preset']}, {p['hardware']}, {p['date_utc']})"
                if p is not None
                else f"batch {r['batch']}"
            )
            parts.append(f"key {key} holds { ({c: r[c] for c in t.values}) } from {where}")
        return "; ".join(parts)

    # ----- writing -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self):
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def new_rows(self, table: str, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``rows`` whose key is not stored yet (``batch`` ignored); raises :class:`StoreConflict`
        for a stored key with other values, naming both provenances."""
        t = _table(table)
        rows = _coerce(t, rows.assign(batch="(new)") if "batch" not in rows else rows, f"rows for {table!r}")
        rows = self._unique(t, rows, f"rows offered to {table!r}")
        old = self.load(table)
        if not len(old) or not len(rows):
            return rows
        keys = list(t.keys)
        m = rows.merge(old, on=keys, how="left", suffixes=("", "_old"), indicator=True)
        stored = (m["_merge"] == "both").to_numpy()
        if stored.any():
            mine = m.loc[stored, list(t.columns)].reset_index(drop=True)
            theirs = m.loc[stored, keys + [f"{c}_old" for c in (*t.values, "batch")]].reset_index(drop=True)
            theirs.columns = keys + [*t.values, "batch"]
            same = _same(t, mine, theirs)
            if not same.all():
                i = int(np.flatnonzero(~same)[0])
                raise StoreConflict(
                    f"table {table!r}: a stored key would get other values. New: "
                    f"{self._describe(t, mine.iloc[[i]])}. Stored: {self._describe(t, theirs.iloc[[i]])}. "
                    f"Rows are never rewritten: find why the run differs (code, data, hardware), or write to "
                    f"another store (MEMLIB_RESULTS)"
                )
        return rows[~stored].reset_index(drop=True)

    def append(self, rows: dict[str, pd.DataFrame], provenance: dict) -> dict[str, int]:
        """Append ``rows`` (table name → DataFrame without ``batch``) as one batch; return rows added per table.

        Keys already stored with the same values are skipped; with other values nothing is written and
        :class:`StoreConflict` names both provenances. ``provenance`` holds the provenance table's value
        columns except ``schema`` and ``checksums`` (see :func:`memlib.evidence.batch_provenance`).
        """
        for name in rows:
            if name == "provenance":
                raise StoreError("rows: 'provenance' is written by append itself; pass it as provenance=")
            _table(name)
        with self._lock():
            self._check_version()
            fresh = {name: self.new_rows(name, df) for name, df in rows.items()}
            fresh = {k: v for k, v in fresh.items() if len(v)}
            if not fresh:
                return {name: 0 for name in rows}
            if not (self.path / "SCHEMA").exists():
                write_text(self.path / "SCHEMA", f"{SCHEMA_VERSION}\n")
            batch = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
            sums = {}
            for name, df in fresh.items():
                sums[name] = _sha256(
                    self._write(TABLES[name], df.assign(batch=batch), self.path / name / f"{batch}.parquet")
                )
            prov = {
                **provenance,
                "batch": batch,
                "schema": SCHEMA_VERSION,
                "checksums": json.dumps(sums, sort_keys=True),
            }
            self._write(TABLES["provenance"], pd.DataFrame([prov]), self.path / "provenance" / f"{batch}.parquet")
            self._cache.clear()
        return {name: len(fresh.get(name, ())) for name in rows}

    def _write(self, t: Table, df: pd.DataFrame, path: Path) -> bytes:
        df = _coerce(t, df, f"rows for {t.name!r}")
        schema = pa.schema([(c, _PA[d]) for c, d in t.columns.items()])
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        write_bytes(path, data)
        return data

    # ----- checking ----------------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Every problem of the store, one line each (empty: the store is sound): unreadable or mis-typed files,
        checksum mismatches, non-finite values, keys with two values, and files of unfinished appends."""
        problems: list[str] = []
        try:
            self._check_version()
            prov = self.batches()
        except StoreError as e:
            return [str(e)]
        sums = {b: json.loads(c) for b, c in zip(prov["batch"], prov["checksums"])}
        for name, t in TABLES.items():
            if name == "provenance":
                continue
            for f in self._files(name):
                b = f.stem
                if b not in sums:
                    problems.append(f"{f}: no provenance row for batch {b} (an append that did not finish); delete it")
                    continue
                want = sums[b].get(name)
                got = _sha256(f.read_bytes())
                if want != got:
                    problems.append(f"{f}: SHA-256 {got[:12]}… differs from its provenance's {str(want)[:12]}…")
                    continue
                try:
                    self._read_file(t, f)
                except StoreError as e:
                    problems.append(str(e))
            for b, s in sums.items():
                if name in s and not (self.path / name / f"{b}.parquet").exists():
                    problems.append(
                        f"{self.path / name / (b + '.parquet')}: listed by batch {b}'s provenance but missing"
                    )
            if not any(name in p for p in problems):
                try:
                    self.load(name)
                except StoreError as e:
                    problems.append(str(e))
        return problems

    def size_bytes(self) -> int:
        """Bytes of the store's Parquet files."""
        return sum(f.stat().st_size for f in self.path.rglob("*.parquet"))
