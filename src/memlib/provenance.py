"""Provenance of a run: configuration, code version, libraries, hardware, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

_LIBS = ("memlib", "torch", "torchvision", "timm", "numpy", "scipy", "statsmodels")


def git_commit(path: str | Path | None = None) -> str:
    """Commit of the repository holding ``path`` (default: memlib's source), ``-dirty`` if
    it has uncommitted changes, or ``"unknown"`` outside a git checkout."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware(device: str | torch.device = "cpu") -> str:
    """One line describing the machine and, for CUDA, the GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        desc += f"; GPU {torch.cuda.get_device_name(torch.device(device))}"
    return desc


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def provenance(
    config: dict | None = None,
    device: str | torch.device = "cpu",
    wall_time_s: float | None = None,
    commit: str | None = None,
    trained_at: list[str] | None = None,
) -> dict:
    """Everything needed to trace a result back to the run that made it.

    ``commit`` is the memlib commit the run started at (taken now if not
    given); ``trained_at`` lists the commits that trained the encoders it
    used, which differ when cached encoders were reused.
    """
    return {
        "config": config or {},
        "commit": commit or git_commit(),
        "trained_at": sorted(set(trained_at)) if trained_at else None,
        "versions": versions(),
        "hardware": hardware(device),
        "device": str(device),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 1),
    }


#: The address ``_config.yml`` holds until the book has a real home: nothing links to it.
PLACEHOLDER_REPOSITORY = "https://github.com/memlib/memlib"


def repository_url(start: str | Path | None = None) -> str | None:
    """The book's ``repository: url`` from the ``_config.yml`` at or above ``start`` (default: the working
    folder), or ``None`` when there is none or it is :data:`PLACEHOLDER_REPOSITORY`: commits in provenance
    blocks link there, and stay plain code until the address is real."""
    try:
        import yaml
    except ImportError:  # a plain install (no [dev] extras) has no book to link to
        return None

    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        cfg = folder / "_config.yml"
        if cfg.is_file():
            try:
                url = (yaml.safe_load(cfg.read_text()) or {}).get("repository", {}).get("url")
            except (yaml.YAMLError, AttributeError):
                return None
            url = str(url).rstrip("/") if url else None
            return None if url == PLACEHOLDER_REPOSITORY else url
    return None


def commit_link(commit: str, url: str | None) -> str:
    """``commit`` as inline code, linked to its page under the repository ``url`` when there is one (a
    ``-dirty`` commit links to the commit it was based on); plain code for the placeholder address."""
    if not url or url.rstrip("/") == PLACEHOLDER_REPOSITORY or not commit or commit == "unknown":
        return f"`{commit}`"
    return f"[`{commit}`]({url}/commit/{commit.removesuffix('-dirty')})"


def provenance_markdown(prov: dict, repository: str | None = None) -> str:
    """A compact markdown table of a provenance dict, for the end of a chapter; commits link to ``repository``
    (default: :func:`repository_url`)."""
    cfg = prov.get("config", {})
    url = repository or repository_url()
    rows = [
        ("preset", f"`{cfg.get('preset', cfg.get('name', '?'))}`"),
        ("seed", str(cfg.get("seed", "?"))),
        ("memlib commit", commit_link(prov["commit"], url)),
        ("encoders trained at", ", ".join(commit_link(c, url) for c in prov.get("trained_at") or []) or "—"),
        ("date", prov["date_utc"]),
        ("hardware", prov["hardware"]),
        ("device", prov["device"]),
        ("wall time", "?" if prov.get("wall_time_s") is None else f"{prov['wall_time_s'] / 60:.1f} min"),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items())),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
