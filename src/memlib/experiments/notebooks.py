"""Execute the notebooks with papermill, then (optionally) build the book.

``memlib-run-notebooks --preset smoke --build`` is the project's main job:
every notebook in ``notebooks/`` runs at the chosen preset into a temporary
folder; only if all succeed are the executed copies moved into
``book/chapters/`` (so the book is never built from half-executed notebooks),
and ``--build`` then runs ``jupyter-book build book/``. A failing notebook
stops the job with the notebook and the cell named.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..device import resolve_device
from .presets import PRESETS
from .validate import check_seed


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def repo_root() -> Path:
    """The repository holding ``notebooks/`` and ``book/`` (searched upward from the CWD)."""
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "notebooks").is_dir() and (d / "book").is_dir():
            return d
    raise FileNotFoundError("run this from the memlib repository (no notebooks/ and book/ folders found upward)")


def list_notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def execute(notebook: Path, output: Path, parameters: dict, cwd: Path, timeout: int | None = None) -> float:
    """Run one notebook with papermill; raise :class:`NotebookFailed` naming the failing cell."""
    import papermill as pm

    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                            progress_bar=False, execution_timeout=timeout)
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(
            f"{notebook.name} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
            f"the partial output is in {output}"
        ) from e
    return time.perf_counter() - t0


def run_all(preset: str = "smoke", device: str = "cpu", seed: int = 0, only: list[str] | None = None,
            out_dir: Path | None = None, build: bool = False) -> dict[str, float]:
    """Execute the notebooks (all, or those whose name contains one of ``only``)."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
    # Refuse a bad device or seed now, not in the first cell of every notebook.
    resolve_device(device)
    check_seed(seed)
    root = repo_root()
    out_dir = out_dir or root / "book" / "chapters"
    notebooks = [nb for nb in list_notebooks(root) if not only or any(o in nb.stem for o in only)]
    if not notebooks:
        raise FileNotFoundError(f"no notebooks match {only} in {root / 'notebooks'}")
    times = {}
    # Not a TemporaryDirectory: when a notebook fails, its partial output stays there for reading.
    tmp = tempfile.mkdtemp(prefix="memlib-nb-")
    for nb in notebooks:
        print(f"[memlib] executing {nb.name} at preset={preset} device={device} seed={seed}", flush=True)
        times[nb.name] = execute(nb, Path(tmp) / nb.name, {"preset": preset, "device": device, "seed": seed},
                                 cwd=root / "notebooks")
        print(f"[memlib]   done in {times[nb.name]:.0f} s", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.move(Path(tmp) / nb.name, out_dir / nb.name)
    shutil.rmtree(tmp, ignore_errors=True)
    if build:
        subprocess.run(["jupyter-book", "build", "book/"], cwd=root, check=True)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    ap.add_argument("--out-dir", type=Path, default=None, help="where executed notebooks go (default book/chapters)")
    ap.add_argument("--build", action="store_true", help="then run `jupyter-book build book/`")
    args = ap.parse_args(argv)
    try:
        run_all(args.preset, args.device, args.seed, args.only, args.out_dir, args.build)
    except (NotebookFailed, ValueError) as e:
        print(f"[memlib] FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
