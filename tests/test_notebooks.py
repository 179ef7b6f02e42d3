"""Every notebook executes at the smoke preset, and its jupytext pair is in sync."""

import json
import os
import tempfile
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync_and_has_parameters(path):
    py = path.with_suffix(".py")
    assert py.exists(), f"{path.name} has no paired {py.name}"
    nb_ipynb, nb_py = nbformat.read(path, as_version=4), jupytext.read(py)
    assert _sources(nb_ipynb) == _sources(nb_py), f"run `jupytext --sync {py.name}`"
    tagged = [c for c in nb_py.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("device", "preset", "seed"):
        assert f"{name} =" in tagged[0].source


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_at_smoke(path, tmp_path):
    from memlib.experiments.notebooks import execute

    out = tmp_path / path.name
    # Through the runner's execute (as memlib-run-notebooks does): it keeps figures as PNG whatever MPLBACKEND says.
    execute(path, out, {"preset": "smoke", "device": "cpu", "seed": 0}, cwd=path.parent)
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    glued = [o for o in outputs if any(k.startswith("application/papermill.record") for k in o.get("data", {}))]
    assert glued, "the notebook glues no numbers"
    text = json.dumps(outputs)
    assert "meaningless" in text  # smoke pages are labelled as such
    assert "memlib commit" in text  # provenance block
    from memlib.experiments.glance import figure_stand_ins

    assert not figure_stand_ins(out), "figures stored as text stand-ins, without image/png"


@pytest.mark.notebook
def test_failing_notebook_names_cell_and_leaves_book_untouched(tmp_path, monkeypatch):
    from memlib.experiments.notebooks import NotebookFailed, run_all

    (tmp_path / "notebooks").mkdir()
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "00_ok.ipynb").write_text("previous")
    cells = [
        nbformat.v4.new_code_cell('preset = "smoke"\ndevice = "cpu"\nseed = 0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise RuntimeError('planted failure')"),
    ]
    ok = nbformat.v4.new_notebook(cells=cells[:2])
    bad = nbformat.v4.new_notebook(cells=cells)
    for nb in (ok, bad):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(ok, tmp_path / "notebooks" / "00_ok.ipynb")
    nbformat.write(bad, tmp_path / "notebooks" / "01_bad.ipynb")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the kept partial output lands in tmp_path
    with pytest.raises(NotebookFailed, match=r"01_bad\.ipynb failed in cell \d+ \(RuntimeError: planted failure\)"):
        run_all("smoke")
    assert (chapters / "00_ok.ipynb").read_text() == "previous"  # no half-executed book
    assert not (chapters / "01_bad.ipynb").exists()


def test_misspelt_parameter_is_refused_by_the_notebook(tmp_path):
    """papermill itself only warns about ``-p epohcs 3``; the notebook stops before any compute."""
    import papermill as pm

    path = ROOT / "notebooks" / "02_removal.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match=r"'epohcs' \(did you mean 'epochs'\?\)"):
        pm.execute_notebook(
            str(path),
            str(tmp_path / "out.ipynb"),
            parameters={"epohcs": 3},
            cwd=str(path.parent),
            kernel_name="python3",
            progress_bar=False,
        )


def test_misspelt_parameter_is_refused_by_the_runner_and_the_check():
    from memlib.experiments.notebooks import check_parameters, refuse_unknown_parameters

    with pytest.raises(ValueError, match=r"'epohcs' \(did you mean 'epochs'\?\) for 01_sslmem.ipynb"):
        check_parameters(ROOT / "notebooks" / "01_sslmem.ipynb", {"preset": "smoke", "epohcs": 3})
    check_parameters(ROOT / "notebooks" / "01_sslmem.ipynb", {"preset": "smoke", "epochs": 3})
    history = ["", 'preset = "smoke"\nepochs = None', "# Parameters\nepochs = 3\n", "x = 1"]
    refuse_unknown_parameters(history)  # known names pass
    with pytest.raises(ValueError, match=r"'sede'"):
        refuse_unknown_parameters(["", 'preset = "smoke"', "# Parameters\nsede = 3\n"])
    refuse_unknown_parameters(["", "x = 1"])  # not run by papermill: nothing to check


def test_ctrl_c_prints_one_line_and_names_the_folder(tmp_path, monkeypatch, capsys):
    from memlib.experiments import notebooks as nbrun

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(nbrun, "execute", interrupt)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    chapters = sorted((ROOT / "book" / "chapters").glob("*.ipynb"))
    before = [p.read_bytes() for p in chapters]
    assert nbrun.main(["--preset", "smoke", "--only", "01"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0]
    folder = next(tmp_path.glob("memlib-nb-*"))
    assert str(folder) in err[0] and folder.is_dir()
    assert [p.read_bytes() for p in chapters] == before


def _tiny_repo(tmp_path, monkeypatch, code="x = 1"):
    """A repository with one notebook, the book's config files and a committed chapter."""
    (tmp_path / "notebooks").mkdir()
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    (chapters / "00_nb.ipynb").write_text("committed")
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text("")
    cells = [
        nbformat.v4.new_code_cell('preset = "smoke"\ndevice = "cpu"\nseed = 0', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(code),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "00_nb.ipynb")
    monkeypatch.chdir(tmp_path)
    return chapters


@pytest.mark.notebook
def test_smoke_run_leaves_the_committed_chapters_alone(tmp_path, monkeypatch):
    from memlib.experiments.notebooks import run_all

    chapters = _tiny_repo(tmp_path, monkeypatch)
    run_all("smoke")
    assert (chapters / "00_nb.ipynb").read_text() == "committed"
    assert nbformat.read(tmp_path / "_build" / "scratch" / "smoke" / "book" / "chapters" / "00_nb.ipynb", 4).cells
    with pytest.raises(ValueError, match=r"replace_chapters with preset='smoke' would put meaningless numbers"):
        run_all("smoke", replace_chapters=True)
    assert (chapters / "00_nb.ipynb").read_text() == "committed"


@pytest.mark.notebook
def test_figures_are_stored_as_png_whatever_mplbackend_says(tmp_path, monkeypatch):
    from memlib.experiments.notebooks import run_all

    _tiny_repo(tmp_path, monkeypatch, "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1])")
    monkeypatch.setenv("MPLBACKEND", "agg")  # what .ci/run sets: a kernel under it stores only "<Figure size …>"
    run_all("smoke", out_dir=tmp_path / "out")
    outputs = nbformat.read(tmp_path / "out" / "00_nb.ipynb", 4).cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs
    assert os.environ["MPLBACKEND"] == "agg"  # restored for the caller
