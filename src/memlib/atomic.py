"""Writing files so that a crash, a full disk or a second process never leaves half a file.

Every writer goes through :func:`atomic_open`: the data go to a temporary
file with a unique name in the target's folder (``.<name>.<pid>.<random>.tmp``),
are flushed and fsync'ed, and the file is renamed over the target
(:func:`os.replace`, atomic on POSIX), after which the folder is fsync'ed so
the rename itself survives a power cut. Readers therefore see the old file or
the new one, never a mix; on any error the temporary file is removed and the
target is left as it was. Two processes writing the same file at once each
write their own temporary file, and the last rename wins.

A run folder is marked finished by :func:`mark_complete`, written last;
:func:`start_run` (called when a run starts) removes that marker and the
temporary files crashed processes left behind (:func:`clean_stale_temps`),
and :func:`check_writable_dir` says, before any compute, why a folder
cannot be written.

Helpers: :func:`write_bytes`, :func:`write_text`, :func:`save_json`,
:func:`write_csv`, :func:`save_torch`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

__all__ = [
    "COMPLETE",
    "CorruptFileError",
    "atomic_open",
    "check_writable_dir",
    "clean_stale_temps",
    "is_complete",
    "mark_complete",
    "save_json",
    "save_torch",
    "start_run",
    "write_bytes",
    "write_csv",
    "write_text",
]

#: Name of the marker file :func:`mark_complete` writes last into a finished run folder.
COMPLETE = "COMPLETE"

_IMPORTED = time.time()


class CorruptFileError(RuntimeError):
    """A file on disk is truncated or corrupt; the message names it and the fix."""


def _umask() -> int:
    # mkstemp creates files 0600; give results the permissions a plain open() would (0666 & ~umask).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


_FILE_MODE = 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename in it is on disk (not possible on every OS or file system)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", encoding: str | None = None, newline: str | None = None
) -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file that replaces it on success.

    Parameters
    ----------
    path
        The file to write; its folder is created if missing.
    mode
        ``"wb"`` (bytes) or ``"w"`` (text).
    encoding, newline
        As for ``open``, text mode only (``encoding`` defaults to UTF-8).

    Yields
    ------
    file object
        Write to it; when the ``with`` block ends without an error the data
        are fsync'ed and the file renamed over ``path``. On any exception the
        temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode={mode!r} must be 'w' or 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    # The pid in the name lets clean_stale_temps tell a live writer's file from a crashed one's.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), _FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); return ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`); return ``path``."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


def save_json(obj, path: str | Path, **kwargs) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; ``kwargs`` go to :func:`json.dumps` (e.g. ``indent=1``).

    The object is serialised before anything is written, so an object JSON
    cannot hold leaves no file at all.
    """
    return write_text(path, json.dumps(obj, **kwargs))


def write_csv(df, path: str | Path, **kwargs) -> Path:
    """Write the DataFrame ``df`` as CSV to ``path`` atomically; ``kwargs`` go to ``df.to_csv`` (``index=False``)."""
    with atomic_open(path, "w", newline="") as f:  # newline="": pandas writes its own line ends
        df.to_csv(f, **kwargs)
    return Path(path)


def save_torch(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_open`); return ``path``."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


# --------------------------------------------------------------------------- #
# Leftovers of crashed writers

# .<name>.<pid>.<random>.tmp (atomic_open), .<name>.<random>.tmp (older mkstemp writers),
# <name>.tmp<pid> (training.loop.atomic_save) and <name>.tmp (older fixed-name writers).
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$|^.+\.tmp(?P<pid2>\d+)$|^.+\.tmp$")


def _process_start() -> float:
    """When this process started (seconds since the epoch), from /proc; else when this module was imported."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5); fields after the command name start at field 3
        btime = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OSError, OverflowError):
        return False
    return True


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files that crashed writers left in ``folder``; return those deleted.

    A file is deleted when its name is one of the temporary names memlib's
    writers use (``.<name>.<pid>.<random>.tmp``, ``.<name>.<random>.tmp``,
    ``<name>.tmp<pid>``, ``<name>.tmp``) and either the process named in it
    no longer runs, or it names none and was last modified before this
    process started; so a file another live process is writing is kept.
    Sub-folders are not searched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    started = _process_start()
    removed = []
    for f in folder.iterdir():
        m = _TEMP.match(f.name)
        if not m or not f.is_file():
            continue
        pid = m.group("pid") or m.group("pid2")
        try:
            old = f.stat().st_mtime < started
        except FileNotFoundError:  # its writer just renamed or removed it
            continue
        # A named writer that no longer runs cannot be writing; an unnamed file must predate this process.
        if (pid and not _alive(int(pid))) or (not pid and old):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                removed.append(f)
    return removed


# --------------------------------------------------------------------------- #
# Folders: can they be written, and is a run in them finished?


def check_writable_dir(path: str | Path, name: str, fix: str) -> Path:
    """Check that ``path`` is a folder this process can write in, or can be created as one; create nothing.

    Parameters
    ----------
    path
        The folder.
    name
        What the folder is, for the message (e.g. ``"cache_dir"``, ``"data_root"``).
    fix
        The fix, for the message (e.g. ``"pass cache_dir= a writable folder"``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``path``, or a folder above it, is a file.
    PermissionError
        If the folder (or the nearest one above it that exists) is not writable by this user.
    """
    path = Path(path).expanduser()
    existing = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
    if existing is None:  # nothing exists, not even the root of a relative path
        return path
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise ValueError(f"{name}={str(path)!r} {where}, not a folder. Fix: {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is" if existing == path else f"would be created in {existing}, which is"
        raise PermissionError(f"{name}={str(path)!r} {where} not writable by this user. Fix: {fix}")
    return path


def start_run(
    folder: str | Path, name: str = "cache_dir", fix: str = "pass cache_dir= a writable folder or set MEMLIB_CACHE"
) -> Path:
    """Make ``folder`` ready for a run that is about to write its results there.

    Checks it can be written (:func:`check_writable_dir`), creates it, removes
    the temporary files crashed runs left (:func:`clean_stale_temps`) and the
    :data:`COMPLETE` marker of an earlier run: until the new run calls
    :func:`mark_complete`, the folder reads as incomplete.
    """
    folder = check_writable_dir(folder, name, fix)
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder)
    with contextlib.suppress(FileNotFoundError):
        (folder / COMPLETE).unlink()
    return folder


def _result_files(folder: Path) -> dict[str, int]:
    """Size of every file of ``folder`` (sub-folders included), but the marker and temporary files."""
    out = {}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if f.is_file() and rel != COMPLETE and not _TEMP.match(f.name):
            out[rel] = f.stat().st_size
    return out


def mark_complete(folder: str | Path) -> Path:
    """Write the :data:`COMPLETE` marker into ``folder``, after every result is written; return its path.

    The marker lists each file with its size, so :func:`is_complete` also
    notices a file that changed or vanished afterwards.
    """
    folder = Path(folder)
    info = {
        "files": _result_files(folder),
        "pid": os.getpid(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    return save_json(info, folder / COMPLETE, indent=1)


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` holds a :data:`COMPLETE` marker whose files are all there, with their sizes."""
    folder = Path(folder)
    try:
        files = json.loads((folder / COMPLETE).read_text())["files"]
        return all((folder / rel).stat().st_size == size for rel, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
