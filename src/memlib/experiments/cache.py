"""The artifact cache: list what it holds, and clear it.

Every experiment writes its artifacts (checkpoints, scores, splits, probe
results) to ``<cache>/<kind>/<key>/``, where ``kind`` is the artifact's sort
(``encoders``, ``sslmem``, …) and ``key`` a hash of the configuration that
produced it (:func:`~memlib.training.loop.fingerprint`); a later run with
the same configuration finds the folder and reuses it. The cache folder is
:func:`~memlib.experiments.sslmem_run.default_cache_dir` (``$MEMLIB_CACHE``,
else ``~/.cache/memlib/runs``).

Command line (``memlib-cache``)::

    memlib-cache path                         # where the cache is
    memlib-cache list                         # one line per artifact: kind, key, size, created, provenance
    memlib-cache clear --kind sslmem --yes    # delete one kind (or, without --kind, everything)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .sslmem_run import default_cache_dir


@dataclass
class Artifact:
    """One artifact folder of the cache, ``<cache>/<kind>/<key>/``."""

    kind: str
    key: str
    path: Path
    size_bytes: int
    created: str  # UTC date of its provenance, else of the oldest file in the folder
    preset: str | None = None
    seed: int | None = None
    commit: str | None = None


_KEY = re.compile(r"[0-9a-f]{16}")  # fingerprint(): 16 hex digits


def _is_kind_dir(d: Path) -> bool:
    """A folder all of whose entries are artifact folders named by a key.

    Anything else under the cache folder (say ``$MEMLIB_CACHE`` was set to a
    folder holding other things) is neither listed nor deleted.
    """
    return d.is_dir() and all(c.is_dir() and _KEY.fullmatch(c.name) for c in d.iterdir())


def _files(folder: Path) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file()]


def _from_provenance(prov: dict) -> dict:
    cfg = prov.get("config") or {}
    return {"preset": cfg.get("preset", cfg.get("name")), "seed": cfg.get("seed"), "commit": prov.get("commit"),
            "date": prov.get("date_utc")}


def read_provenance(folder: str | Path) -> dict:
    """The preset, seed, commit and date recorded in an artifact folder (``None`` where none is recorded).

    Looks, in order, at ``provenance.json``, at the ``"provenance"`` entry of
    any other JSON file (e.g. ``summary.json``), and at ``checkpoint.pt``
    (the commits that trained it and its model seed; checkpoints carry no preset).
    """
    folder = Path(folder)
    empty = {"preset": None, "seed": None, "commit": None, "date": None}
    jsons = sorted(folder.glob("*.json"), key=lambda f: f.name != "provenance.json")
    for f in jsons:
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # a half-written or foreign file says nothing about provenance
        if isinstance(d, dict) and f.name == "provenance.json" and "commit" in d:
            return _from_provenance(d)
        if isinstance(d, dict) and isinstance(d.get("provenance"), dict):
            return _from_provenance(d["provenance"])
    ckpt = folder / "checkpoint.pt"
    if ckpt.is_file():
        try:
            # mmap: read the small metadata without loading the weights into memory.
            d = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
        except Exception:  # a corrupt checkpoint is listed, not fatal to the listing
            return empty
        if isinstance(d, dict):
            commits = d.get("commits") or [None]
            return {**empty, "seed": (d.get("run_config") or {}).get("model_seed"), "commit": commits[-1]}
    return empty


def list_artifacts(cache_dir: str | Path | None = None, kind: str | None = None) -> list[Artifact]:
    """Every artifact folder under the cache, sorted by kind then creation time.

    Parameters
    ----------
    cache_dir
        The cache folder (default :func:`~memlib.experiments.sslmem_run.default_cache_dir`).
    kind
        Only this kind of artifact.

    Returns
    -------
    list of Artifact
        Empty if the cache folder does not exist.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not root.is_dir():
        return []
    out = []
    for kind_dir in sorted(d for d in root.iterdir() if _is_kind_dir(d)):
        if kind is not None and kind_dir.name != kind:
            continue
        for folder in sorted(d for d in kind_dir.iterdir() if d.is_dir()):
            files = _files(folder)
            stats = [f.stat() for f in files]
            prov = read_provenance(folder)
            # Linux keeps no creation time: the provenance's date, else the oldest file's modification.
            oldest = min((s.st_mtime for s in stats), default=folder.stat().st_mtime)
            created = prov.pop("date") or _dt.datetime.fromtimestamp(oldest, _dt.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC")
            out.append(Artifact(kind_dir.name, folder.name, folder, sum(s.st_size for s in stats), created, **prov))
    return sorted(out, key=lambda a: (a.kind, a.created, a.key))


def artifact_table(cache_dir: str | Path | None = None, kind: str | None = None):
    """:func:`list_artifacts` as a DataFrame (one row per artifact)."""
    import pandas as pd

    cols = ["kind", "key", "size_bytes", "created", "preset", "seed", "commit", "path"]
    return pd.DataFrame([asdict(a) for a in list_artifacts(cache_dir, kind)], columns=cols)


def kinds(cache_dir: str | Path | None = None) -> list[str]:
    """The kinds of artifact present in the cache (its subfolders)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return sorted(d.name for d in root.iterdir() if _is_kind_dir(d)) if root.is_dir() else []


def clear_cache(cache_dir: str | Path | None = None, kind: str | None = None) -> list[Path]:
    """Delete every artifact of the cache, or of one kind; return the folders deleted.

    Only the kind folders inside the cache are deleted, never the cache
    folder itself, files lying next to them, or folders that do not hold
    artifact folders named by a configuration key.

    Raises
    ------
    ValueError
        If ``kind`` is given but the cache holds no artifacts of that kind.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    present = kinds(root)
    if kind is not None and kind not in present:
        raise ValueError(f"kind={kind!r} is not in the cache {root}; present kinds: {present or 'none'}")
    doomed = [root / k for k in present if kind is None or k == kind]
    for d in doomed:
        shutil.rmtree(d)
    return doomed


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``memlib-cache``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="memlib-cache", description="List or clear memlib's artifact cache.")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache folder (default: $MEMLIB_CACHE, else ~/.cache/memlib/runs)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("path", help="print the cache folder")
    ls = sub.add_parser("list", help="one line per artifact: kind, key, size, created, preset, seed, commit")
    ls.add_argument("--kind", help="only this kind (e.g. encoders, sslmem)")
    clear = sub.add_parser("clear", help="delete cached artifacts (refuses without --yes)")
    clear.add_argument("--kind", help="only this kind (e.g. encoders, sslmem); default: everything")
    clear.add_argument("--yes", action="store_true", help="really delete")
    args = parser.parse_args(argv)
    root = args.cache_dir if args.cache_dir is not None else default_cache_dir()

    if args.command == "path":
        print(root)
        return 0
    if args.command == "list":
        arts = list_artifacts(root, args.kind)
        if not arts:
            print(f"no artifacts in {root}" + (f" of kind {args.kind!r}" if args.kind else ""))
            return 0
        print(f"{'kind':<10} {'key':<16} {'size':>10}  {'created':<20} {'preset':<8} {'seed':>6}  commit")
        for a in arts:
            print(f"{a.kind:<10} {a.key:<16} {_human(a.size_bytes):>10}  {a.created:<20} {a.preset or '-':<8} "
                  f"{'-' if a.seed is None else a.seed:>6}  {a.commit or '-'}")
        print(f"{len(arts)} artifact(s), {_human(sum(a.size_bytes for a in arts))} in {root}")
        return 0
    # clear
    present = kinds(root)
    if args.kind is not None and args.kind not in present:
        print(f"memlib-cache: error: --kind {args.kind!r} is not in the cache {root}; present kinds: "
              f"{present or 'none'}", file=sys.stderr)
        return 2
    arts = list_artifacts(root, args.kind)
    what = f"{len(arts)} artifact(s), {_human(sum(a.size_bytes for a in arts))}, " \
           f"of kind(s) {[args.kind] if args.kind else present} in {root}"
    if not args.yes:
        print(f"memlib-cache: would delete {what}; nothing deleted. Rerun with --yes to delete.", file=sys.stderr)
        return 1
    clear_cache(root, args.kind)
    print(f"deleted {what}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
