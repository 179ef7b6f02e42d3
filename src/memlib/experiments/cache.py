"""The artifact cache: where every experiment writes, what it holds, and how to clear it.

Every experiment writes its artifacts (checkpoints, scores, splits, probe
results) to ``<cache>/<kind>/<key>/``, where ``kind`` is the artifact's sort
(``encoders``, ``sslmem``, …, declared once in :data:`~memlib.experiments.artifacts.KINDS`)
and ``key`` a hash of the configuration that produced it (:func:`~memlib.training.loop.fingerprint`);
a later run with the same configuration finds the folder and reuses it. The
cache folder is :func:`~memlib.experiments.artifacts.default_cache_dir` (``$MEMLIB_CACHE``, else
``~/.cache/memlib/runs``).

A run's results folder is finished when it holds the ``COMPLETE`` marker
(:func:`~memlib.atomic.mark_complete`, written last); one without it was
interrupted or is being written, and is listed as ``incomplete``. An encoder
folder is ``complete`` when its checkpoint reached its last epoch, else
``partial`` (training resumes from it).

Command line (``memlib-cache``)::

    memlib-cache path                         # where the cache is
    memlib-cache list                         # one line per artifact: kind, key, size, status, created, provenance
    memlib-cache clear --kind sslmem --yes    # delete one kind (or, without --kind, everything)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..atomic import is_complete
from .artifacts import (  # noqa: F401  (public here too)
    DP,
    DP_ENCODERS,
    DYNAMICS,
    ENCODERS,
    KINDS,
    LOCALIZATION,
    REGULARIZATION,
    REMOVAL,
    SETUPS,
    SSLMEM,
    ArtifactKind,
    check_cache_dir,
    default_cache_dir,
)


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
    status: str = "complete"  # complete, incomplete, partial <epoch>/<epochs> (training), unreadable


_KEY = re.compile(r"[0-9a-f]{16}")  # fingerprint(): 16 hex digits


def _foreign(kind: ArtifactKind, cache: Path) -> Path | None:
    """The first entry of ``kind``'s folder that memlib does not write there (None if all are its own).

    Such a folder (say ``$MEMLIB_CACHE`` names a folder holding other
    things) is neither listed nor deleted.
    """
    d = kind.root(cache)
    for sub in kind.nested:
        odd = next((c for c in d.iterdir() if c.name != sub or not c.is_dir()), None)
        if odd is not None:
            return odd
        d = d / sub
        if not d.is_dir():
            return None
    return next((c for c in d.iterdir() if not (c.is_dir() and _KEY.fullmatch(c.name))), None)


def _present(cache: Path) -> list[ArtifactKind]:
    """The kinds whose folder exists in ``cache`` and holds only what memlib writes."""
    return [k for k in KINDS.values() if k.root(cache).is_dir() and _foreign(k, cache) is None]


def skipped_kinds(cache_dir: str | Path | None = None) -> dict[str, Path]:
    """Kind folders of the cache left alone because they hold something memlib did not write there."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not root.is_dir():
        return {}
    out = {}
    for k in KINDS.values():
        if k.root(root).is_dir():
            odd = _foreign(k, root)
            if odd is not None:
                out[k.name] = odd
    return out


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"kind={kind!r} is not in the cache: memlib writes no such kind{hint}; known kinds: {', '.join(KINDS)}"
        )


def _files(folder: Path) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file()]


def _from_provenance(prov: dict) -> dict:
    cfg = prov.get("config") or {}
    return {
        "preset": cfg.get("preset", cfg.get("name")),
        "seed": cfg.get("seed"),
        "commit": prov.get("commit"),
        "date": prov.get("date_utc"),
    }


def _read_checkpoint(ckpt: Path) -> dict | None:
    """The checkpoint's dict with its tensors memory-mapped (not read), or None if it cannot be loaded."""
    try:
        d = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # a corrupt checkpoint is listed, not fatal to the listing
        return None
    return d if isinstance(d, dict) else None


def _json_provenance(folder: Path) -> dict | None:
    for f in sorted(folder.glob("*.json"), key=lambda f: f.name != "provenance.json"):
        try:
            d = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # a half-written or foreign file says nothing about provenance
        if isinstance(d, dict) and f.name == "provenance.json" and "commit" in d:
            return _from_provenance(d)
        if isinstance(d, dict) and isinstance(d.get("provenance"), dict):
            return _from_provenance(d["provenance"])
    return None


def _checkpoint_provenance(ck: dict | None) -> dict:
    empty = {"preset": None, "seed": None, "commit": None, "date": None}
    if ck is None:
        return empty
    commits = ck.get("commits") or [None]
    return {**empty, "seed": (ck.get("run_config") or {}).get("model_seed"), "commit": commits[-1]}


def read_provenance(folder: str | Path) -> dict:
    """The preset, seed, commit and date recorded in an artifact folder (``None`` where none is recorded).

    Looks, in order, at ``provenance.json``, at the ``"provenance"`` entry of
    any other JSON file (e.g. ``summary.json``), and at ``checkpoint.pt``
    (the commits that trained it and its model seed; checkpoints carry no preset).
    """
    folder = Path(folder)
    prov = _json_provenance(folder)
    if prov is not None:
        return prov
    ckpt = folder / "checkpoint.pt"
    return _checkpoint_provenance(_read_checkpoint(ckpt) if ckpt.is_file() else None)


def _training_status(ck: dict | None) -> str:
    """``complete`` if the checkpoint reached its last epoch, else ``partial <epoch>/<epochs>``."""
    if ck is None:
        return "unreadable"
    epoch, epochs = ck.get("epoch"), (ck.get("train_config") or {}).get("epochs")
    if epoch is None or epochs is None:
        return "unknown"
    return "complete" if epoch >= epochs and not ck.get("epoch_step") else f"partial {epoch}/{epochs}"


def _describe(kind: ArtifactKind, folder: Path) -> tuple[dict, str]:
    """The provenance and status of one artifact folder (the checkpoint is read once)."""
    prov = _json_provenance(folder)
    if kind.results:
        empty = {"preset": None, "seed": None, "commit": None, "date": None}
        return prov or empty, "complete" if is_complete(folder) else "incomplete"
    ckpt = folder / "checkpoint.pt"
    if not ckpt.is_file():  # training never reached its first checkpoint
        return prov or _checkpoint_provenance(None), "incomplete"
    ck = _read_checkpoint(ckpt)
    return prov or _checkpoint_provenance(ck), _training_status(ck)


def _check_root(root: Path) -> None:
    """Raise, naming ``root`` and the fix, unless it is an existing folder."""
    fix = (
        "Fix: pass --cache-dir (cache_dir=) or set MEMLIB_CACHE to the folder the runs wrote to "
        "(their cache_dir=, else $MEMLIB_CACHE, else ~/.cache/memlib/runs)"
    )
    if root.is_dir():
        return
    if os.path.lexists(root):
        raise NotADirectoryError(f"the cache folder {root} is a file, not a folder. {fix}")
    raise FileNotFoundError(f"the cache folder {root} does not exist. {fix}")


def list_artifacts(cache_dir: str | Path | None = None, kind: str | None = None) -> list[Artifact]:
    """Every artifact folder under the cache, sorted by kind then creation time.

    Parameters
    ----------
    cache_dir
        The cache folder (default :func:`~memlib.experiments.artifacts.default_cache_dir`).
    kind
        Only this kind of artifact (a name of :data:`~memlib.experiments.artifacts.KINDS`).

    Returns
    -------
    list of Artifact
        Empty if the cache folder does not exist. Kind folders holding
        anything memlib does not write there are left out (:func:`skipped_kinds`).

    Raises
    ------
    ValueError
        If ``kind`` is not a kind memlib writes.
    """
    _check_kind(kind)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not root.is_dir():
        return []
    out = []
    for k in _present(root):
        if kind is not None and k.name != kind:
            continue
        keys_dir = k.keys_dir(root)
        for folder in sorted(d for d in keys_dir.iterdir() if d.is_dir()) if keys_dir.is_dir() else []:
            files = _files(folder)
            stats = [f.stat() for f in files]
            prov, status = _describe(k, folder)
            # Linux keeps no creation time: the provenance's date, else the oldest file's modification.
            oldest = min((s.st_mtime for s in stats), default=folder.stat().st_mtime)
            created = prov.pop("date") or _dt.datetime.fromtimestamp(oldest, _dt.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"
            )
            out.append(
                Artifact(k.name, folder.name, folder, sum(s.st_size for s in stats), created, **prov, status=status)
            )
    return sorted(out, key=lambda a: (a.kind, a.created, a.key))


def artifact_table(cache_dir: str | Path | None = None, kind: str | None = None):
    """:func:`list_artifacts` as a DataFrame (one row per artifact)."""
    import pandas as pd

    cols = ["kind", "key", "size_bytes", "status", "created", "preset", "seed", "commit", "path"]
    return pd.DataFrame([asdict(a) for a in list_artifacts(cache_dir, kind)], columns=cols)


def kinds(cache_dir: str | Path | None = None) -> list[str]:
    """The kinds of artifact present in the cache (their folders exist and hold only what memlib writes)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return sorted(k.name for k in _present(root)) if root.is_dir() else []


def _check_deletable(root: Path, doomed: list[Path]) -> None:
    """Refuse, before deleting anything, if a folder to delete from is read-only for this user."""
    fix = f"make it writable (chmod -R u+w {root}) or clear the cache as the user who owns it"
    for d in [root, *(Path(w) for t in doomed for w, _, _ in os.walk(t))]:
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError(f"{d} is read-only for this user; nothing deleted. Fix: {fix}")


def clear_cache(cache_dir: str | Path | None = None, kind: str | None = None) -> list[Path]:
    """Delete every artifact of the cache, or of one kind; return the folders deleted.

    Only the kind folders of :data:`~memlib.experiments.artifacts.KINDS` inside the cache are deleted,
    never the cache folder itself, files lying next to them, or kind folders
    holding anything memlib does not write there.

    Raises
    ------
    ValueError
        If ``kind`` is not a kind memlib writes, or the cache holds none of it.
    FileNotFoundError, NotADirectoryError
        If the cache folder does not exist or is a file.
    PermissionError
        If a folder to delete from is read-only (checked before anything is deleted).
    """
    _check_kind(kind)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    _check_root(root)
    present = kinds(root)
    if kind is not None and kind not in present:
        raise ValueError(f"kind={kind!r} is not in the cache {root}; present kinds: {present or 'none'}")
    doomed = [KINDS[k].root(root) for k in present if kind is None or k == kind]
    _check_deletable(root, doomed)
    for d in doomed:
        try:
            shutil.rmtree(d)
        except OSError as e:
            raise OSError(
                f"deleting {d} failed part-way ({e}); what is left is listed by memlib-cache list. "
                f"Fix: remove the cause and clear again"
            ) from e
    return doomed


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _note_skipped(root: Path) -> None:
    for name, odd in skipped_kinds(root).items():
        print(
            f"memlib-cache: note: {KINDS[name].root(root)} is left alone (not listed, never deleted): it holds "
            f"{odd.name!r}, which memlib does not write there",
            file=sys.stderr,
        )


def _list(root: Path, kind: str | None) -> int:
    _check_root(root)
    arts = list_artifacts(root, kind)
    _note_skipped(root)
    if not arts:
        print(f"no artifacts in {root}" + (f" of kind {kind!r}" if kind else ""))
        return 0
    print(f"{'kind':<14} {'key':<16} {'size':>10}  {'status':<12} {'created':<20} {'preset':<8} {'seed':>6}  commit")
    for a in arts:
        print(
            f"{a.kind:<14} {a.key:<16} {_human(a.size_bytes):>10}  {a.status:<12} {a.created:<20} "
            f"{a.preset or '-':<8} {'-' if a.seed is None else a.seed:>6}  {a.commit or '-'}"
        )
    bad = sum(a.status != "complete" for a in arts)
    print(
        f"{len(arts)} artifact(s), {_human(sum(a.size_bytes for a in arts))} in {root}"
        + (f"; {bad} not complete (interrupted or still being written: rerun, or clear)" if bad else "")
    )
    return 0


def _clear(root: Path, kind: str | None, yes: bool) -> int:
    _check_kind(kind)
    _check_root(root)
    present = kinds(root)
    if kind is not None and kind not in present:
        raise ValueError(f"--kind {kind!r} is not in the cache {root}; present kinds: {present or 'none'}")
    arts = list_artifacts(root, kind)
    what = (
        f"{len(arts)} artifact(s), {_human(sum(a.size_bytes for a in arts))}, "
        f"of kind(s) {[kind] if kind else present} in {root}"
    )
    if not yes:
        print(f"memlib-cache: would delete {what}; nothing deleted. Rerun with --yes to delete.", file=sys.stderr)
        return 1
    clear_cache(root, kind)
    print(f"deleted {what}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``memlib-cache``; returns the exit status (2 on an error, with one line saying the fix)."""
    known = ", ".join(KINDS)
    epilog = "kinds of artifact:\n" + "\n".join(f"  {k.name:<15} {k.description}" for k in KINDS.values())
    parser = argparse.ArgumentParser(
        prog="memlib-cache",
        description="List or clear memlib's artifact cache. The cache holds weights (trained encoders and run "
        "folders); the evidence store (memlib-evidence, results/) holds the results chapters analyse.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="cache folder (default: $MEMLIB_CACHE, else ~/.cache/memlib/runs)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("path", help="print the cache folder")
    ls = sub.add_parser("list", help="one line per artifact: kind, key, size, status, created, preset, seed, commit")
    ls.add_argument("--kind", help=f"only this kind ({known})")
    clear = sub.add_parser("clear", help="delete cached artifacts (refuses without --yes)")
    clear.add_argument("--kind", help=f"only this kind ({known}); default: everything")
    clear.add_argument("--yes", action="store_true", help="really delete")
    args = parser.parse_args(argv)
    root = args.cache_dir if args.cache_dir is not None else default_cache_dir()

    if args.command == "path":
        print(root)
        return 0
    try:
        return _list(root, args.kind) if args.command == "list" else _clear(root, args.kind, args.yes)
    except (ValueError, OSError) as e:
        print(f"memlib-cache: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
