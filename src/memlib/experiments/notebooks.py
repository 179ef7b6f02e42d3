"""Execute the notebooks with papermill, then (optionally) build the book.

``memlib-run-notebooks --preset smoke --build`` is the project's main job:
every notebook in ``notebooks/`` runs at the chosen preset into a temporary
folder; only if all succeed are the executed copies moved on (so a book is
never built from half-executed notebooks), and ``--build`` then builds the
book. A failing notebook stops the job with the notebook and the cell named.

Where the executed notebooks go: by default into a scratch copy of the book,
``_build/scratch/<preset>/`` (git-ignored), which ``--build`` builds into
``_build/scratch/<preset>/_build/html``; the committed chapters in
``book/chapters/`` are left alone. ``--replace-chapters`` puts them into
``book/chapters/`` and builds the real book instead; it is refused for a
preset whose numbers mean nothing (``smoke``). Notebooks run with
matplotlib's inline backend whatever ``MPLBACKEND`` says, so every figure is
stored as a PNG.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..device import resolve_device
from .presets import PRESETS
from .validate import check_seed

#: The backend notebooks run with: under ``MPLBACKEND=agg`` a figure's output would be its text repr only.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


class Interrupted(Exception):
    """Ctrl-C during a run; holds the temporary folder with the notebooks executed so far."""

    def __init__(self, folder: str):
        super().__init__(folder)
        self.folder = folder


def repo_root() -> Path:
    """The repository holding ``notebooks/`` and ``book/`` (searched upward from the CWD)."""
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "notebooks").is_dir() and (d / "book").is_dir():
            return d
    raise FileNotFoundError("run this from the memlib repository (no notebooks/ and book/ folders found upward)")


def list_notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _unknown_message(unknown: list[str], known: list[str], where: str) -> str:
    hints = [
        f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, known, n=1)) else repr(u)
        for u in unknown
    ]
    return f"unknown parameter(s) {', '.join(hints)} for {where}; its parameters cell defines {sorted(known)}"


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Refuse a parameter that ``notebook``'s ``parameters`` cell does not define (papermill only warns)."""
    import nbformat

    try:
        cells = nbformat.read(str(notebook), as_version=4).cells
    except Exception:  # not a readable notebook: papermill reports that itself
        return
    known = sorted(
        set().union(*(_assigned(c.source) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])))
    )
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(_unknown_message(unknown, known, notebook.name))


def _assigned(source: str) -> set[str]:
    """Names assigned at the top level of a cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def refuse_unknown_parameters(history: list[str] | None = None) -> None:
    """Call in the cell after a notebook's ``parameters`` cell: raise if papermill injected an unknown name.

    Papermill (``papermill nb.ipynb out.ipynb -p epohcs 3``) only warns about
    a name the parameters cell does not define and runs on at the default.
    This reads the kernel's cell history: the injected cell (it starts with
    ``# Parameters``) and the cell before it, the notebook's own parameters
    cell. Outside papermill it does nothing.
    """
    if history is None:
        from IPython import get_ipython

        ip = get_ipython()
        history = list(ip.user_ns.get("In", [])) if ip is not None else []
    injected = [i for i, c in enumerate(history) if i > 0 and c.lstrip().startswith("# Parameters")]
    if not injected:
        return
    i = injected[-1]
    known = _assigned(history[i - 1])
    unknown = sorted(_assigned(history[i]) - known)
    if unknown:
        raise ValueError(_unknown_message(unknown, sorted(known), "this notebook"))


def execute(notebook: Path, output: Path, parameters: dict, cwd: Path, timeout: int | None = None) -> float:
    """Run one notebook with papermill; raise :class:`NotebookFailed` naming the failing cell."""
    import papermill as pm

    check_parameters(notebook, parameters)
    t0 = time.perf_counter()
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # the kernel inherits it: figures are stored as PNG, not as text
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(cwd),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(
            f"{notebook.name} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); the partial output is in {output}"
        ) from e
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    return time.perf_counter() - t0


def scratch_book(root: Path, preset: str) -> Path:
    """A fresh copy of the book's sources (``_config.yml``, ``_toc.yml``, ``book/``) in ``_build/scratch/<preset>``."""
    scratch = root / "_build" / "scratch" / preset
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, scratch / name)
    shutil.copytree(root / "book", scratch / "book", symlinks=True, ignore=shutil.ignore_patterns("_build"))
    if (root / "benchmarks" / "RESULTS.md").exists():  # included by book/benchmarks.md
        (scratch / "benchmarks").mkdir()
        shutil.copy2(root / "benchmarks" / "RESULTS.md", scratch / "benchmarks" / "RESULTS.md")
    return scratch


def run_all(
    preset: str = "smoke",
    device: str = "cpu",
    seed: int = 0,
    only: list[str] | None = None,
    out_dir: Path | None = None,
    build: bool = False,
    replace_chapters: bool = False,
) -> dict[str, float]:
    """Execute the notebooks (all, or those whose name contains one of ``only``).

    Executed notebooks go to ``out_dir`` if given, else to ``book/chapters``
    with ``replace_chapters=True`` (meaningful presets only), else to a
    scratch copy of the book (see the module docstring); ``build`` builds the
    book they went into.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
    if replace_chapters and not PRESETS[preset].meaningful:
        raise ValueError(
            f"replace_chapters with preset={preset!r} would put meaningless numbers into the committed "
            f"book; run without --replace-chapters (the book goes to _build/scratch/{preset}), or use "
            f"a meaningful preset such as 'cpu'"
        )
    # Refuse a bad device or seed now, not in the first cell of every notebook.
    resolve_device(device)
    check_seed(seed)
    root = repo_root()
    book_root = root if replace_chapters or out_dir is not None else None
    notebooks = [nb for nb in list_notebooks(root) if not only or any(o in nb.stem for o in only)]
    if not notebooks:
        raise FileNotFoundError(f"no notebooks match {only} in {root / 'notebooks'}")
    times = {}
    # Not a TemporaryDirectory: when a notebook fails, its partial output stays there for reading.
    tmp = tempfile.mkdtemp(prefix="memlib-nb-")
    try:
        for nb in notebooks:
            print(f"[memlib] executing {nb.name} at preset={preset} device={device} seed={seed}", flush=True)
            times[nb.name] = execute(
                nb, Path(tmp) / nb.name, {"preset": preset, "device": device, "seed": seed}, cwd=root / "notebooks"
            )
            print(f"[memlib]   done in {times[nb.name]:.0f} s", flush=True)
    except KeyboardInterrupt:
        raise Interrupted(tmp) from None
    if book_root is None:
        book_root = scratch_book(root, preset)
    out_dir = out_dir or book_root / "book" / "chapters"
    out_dir.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.move(Path(tmp) / nb.name, out_dir / nb.name)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"[memlib] executed notebooks are in {out_dir}", flush=True)
    if out_dir == book_root / "book" / "chapters":  # the landing page's results at a glance follow the chapters
        from .glance import write_glance
        from .scoreboard import write_scoreboard

        print(f"[memlib] results at a glance: {write_glance(book_root / 'book')}", flush=True)
        if (book_root / "book" / "_data" / "claims.yml").exists():  # the claims catalogue the scoreboard joins
            print(f"[memlib] scoreboard: {write_scoreboard(book_root / 'book')}", flush=True)
    if build:
        subprocess.run(["jupyter-book", "build", "book/"], cwd=book_root, check=True)
        print(f"[memlib] book: {book_root / '_build' / 'html' / 'index.html'}", flush=True)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke", choices=sorted(PRESETS))
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where executed notebooks go (default: a scratch copy of the book, _build/scratch/<preset>)",
    )
    ap.add_argument(
        "--replace-chapters",
        action="store_true",
        help="put them into book/chapters (the committed book) instead; refused for smoke",
    )
    ap.add_argument("--build", action="store_true", help="then build the book they went into")
    args = ap.parse_args(argv)
    try:
        run_all(args.preset, args.device, args.seed, args.only, args.out_dir, args.build, args.replace_chapters)
    except (NotebookFailed, ValueError) as e:
        print(f"[memlib] FAILED: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(
            f"[memlib] interrupted; book/chapters is unchanged, and the notebooks executed so far are in "
            f"{e.folder} (delete it when done)",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
