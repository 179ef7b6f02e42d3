"""memlib's Sphinx extension for the book (``sphinx.local_extensions`` in ``_config.yml``).

- **Honest links.** ``repository: url`` in ``_config.yml`` drives the repository button, the launch buttons
  and the commit links of the chapters' provenance blocks. While it is the placeholder
  (:data:`memlib.provenance.PLACEHOLDER_REPOSITORY`), the build says so, and every link to a commit under the
  placeholder is shown as the plain commit code; once the address is real, such links (already executed
  chapters keep the address they were run with) point to it instead.
- **Plotly offline.** Pages that draw a plotly figure get ``plotly.min.js`` from the installed plotly package,
  copied into the site's ``_static``: the explorer's figures draw from ``file://`` with no network.
- **Each script once.** sphinx-thebe and sphinx-togglebutton register their inline configuration scripts
  twice under jupyter-book (as file ``None`` and as file ``""``), so every page declared ``const THEBE_JS_URL`` twice
  and the browser console showed a SyntaxError; a page keeps the first copy of each script.
- **Parameters cells.** A notebook that hides its ``parameters`` cell (tag ``remove-cell``) also hides the
  cell papermill injects after it (tag ``injected-parameters``), which papermill cannot tag itself.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.console import bold, red

PLACEHOLDER = "https://github.com/memlib/memlib"
COMMIT_LINK = re.compile(re.escape(PLACEHOLDER) + r"/commit/([0-9a-f]{7,40})$")
RAW_COMMIT_LINK = re.compile(r'<a href="' + re.escape(PLACEHOLDER) + r'/commit/([0-9a-f]{7,40})">(.*?)</a>', re.S)
PLOTLY_JS = "plotly.min.js"
logger = logging.getLogger(__name__)


def repository(app) -> str | None:
    """The configured repository address, or ``None`` while it is missing or the placeholder."""
    url = str((app.config.html_theme_options or {}).get("repository_url") or "").rstrip("/")
    return None if url in ("", PLACEHOLDER) else url


class CommitLinks(SphinxPostTransform):
    """Links to a commit under the placeholder address: plain code, or the real address once configured."""

    default_priority = 900

    def run(self, **kwargs) -> None:
        url = repository(self.app)
        for ref in list(self.document.findall(nodes.reference)):
            m = COMMIT_LINK.match(ref.get("refuri", ""))
            if not m:
                continue
            if url:
                ref["refuri"] = f"{url}/commit/{m.group(1)}"
            else:
                ref.replace_self(ref.children or [nodes.literal(text=m.group(1))])
        for raw in list(self.document.findall(nodes.raw)):
            if "html" in raw.get("format", "") and PLACEHOLDER + "/commit/" in raw.astext():
                text = RAW_COMMIT_LINK.sub(
                    (lambda m: f'<a href="{url}/commit/{m.group(1)}">{m.group(2)}</a>') if url else r"\2",
                    raw.astext(),
                )
                raw.replace_self(nodes.raw("", text, format=raw["format"]))


class InjectedParameters(SphinxPostTransform):
    """Remove papermill's injected-parameters cell from a page whose own parameters cell is removed."""

    default_priority = 900

    def run(self, **kwargs) -> None:
        def tagged(tag):
            return [n for n in self.document.findall(nodes.container) if f"tag_{tag}" in n.get("classes", [])]

        if not tagged("parameters"):
            for cell in tagged("injected-parameters"):
                cell.parent.remove(cell)


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of scripts that are the same file or the same inline body (an inline script is registered
    once with filename ``None`` and once with ``""``, so Sphinx keeps both)."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, keep = set(), []
    for js in scripts:
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((getattr(js, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            keep.append(js)
    scripts[:] = keep


def warn_placeholder(app) -> None:
    if repository(app) is None:
        # Said at info level in red: -W would turn a warning into a failed build, and the placeholder is
        # a known state of the book, not an error.
        logger.info(
            bold(red("memlib: _config.yml's repository.url is the placeholder " + PLACEHOLDER + ": "))
            + "commits in provenance blocks show as plain code, and the repository and launch buttons lead "
            "nowhere until it names the book's real repository."
        )


def add_plotly(app, pagename, templatename, context, doctree) -> None:
    if doctree is not None and any("Plotly.newPlot" in n.astext() for n in doctree.findall(nodes.raw)):
        app.add_js_file(PLOTLY_JS)


def copy_plotly(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    try:
        import plotly
    except ImportError:
        logger.warning("memlib: plotly is not installed, so the explorer's figures cannot draw")
        return
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / PLOTLY_JS, static / PLOTLY_JS)


def setup(app):
    app.add_post_transform(CommitLinks)
    app.add_post_transform(InjectedParameters)
    app.connect("builder-inited", warn_placeholder)
    app.connect("html-page-context", add_plotly)
    app.connect("html-page-context", unique_scripts, priority=900)
    app.connect("build-finished", copy_plotly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
