"""The built book as a reader gets it: a real headless Chromium opens the landing page, a chapter and the
scoreboard and checks that math rendered (no raw TeX), every image loaded, and no figure is a text stand-in.

The layout tests read pages at 1366 × 900 CSS pixels (a common laptop screen): no table may be wider than the
box that holds it, unless the page marks it as deliberately scrollable (class ``memlib-scroll`` on the table
or a block around it), no table cell may run to more than 3 lines, and the scoreboard's verdicts must be in view
without scrolling sideways. No page may raise a JavaScript error, and the explorer's table sorts on a reader's
click on a column header.

Skipped with the reason when Chromium, ChromeDriver or selenium is absent, or the book is not built
(`.ci/run` installs Chromium from Debian and builds the book before running this file again).
"""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("MEMLIB_BOOK_HTML", ROOT / "_build" / "html"))
#: Chapters 03–05 still hold figures stored as text (tests/test_book_chapters.py lists them); they join once
#: re-executed.
PAGES = [
    "index.html",
    "methods.html",
    "chapters/01_sslmem.html",
    "chapters/02_removal.html",
    "chapters/03_regularization.html",
    "chapters/04_dp.html",
    "chapters/05_localization.html",
    "chapters/06_sslmem_setups.html",
    "scoreboard.html",
    "chapters/07_explorer.html",
]
#: Every page of the book whose tables the layout test measures (the API pages have no tables).
LAYOUT_PAGES = [*PAGES, "reading.html", "architecture.html", "benchmarks.html", "adding_a_method.html"]
#: The reader's screen for the layout tests, in CSS pixels.
WIDTH, HEIGHT = 1366, 900

selenium = pytest.importorskip("selenium", reason="selenium missing: pip install -e '.[dev]'")
pytestmark = [
    pytest.mark.skipif(
        shutil.which("chromium") is None or shutil.which("chromedriver") is None,
        reason="Chromium missing: sudo apt-get install chromium chromium-driver",
    ),
    pytest.mark.skipif(
        not (HTML / "index.html").exists(), reason=f"no built book at {HTML}: run `jupyter-book build book/` first"
    ),
]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    # The network is closed: no background connections, no first-run or sync traffic.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page console, for the JavaScript errors test
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, page):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((HTML / page).as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    # MathJax 3 typesets asynchronously; wait for it where the page has math.
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done(true)).catch(() => done(false));
        } else { done(true); }
    """)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_math_images_and_figures(browser, page):
    _open(browser, page)
    text = browser.find_element("tag name", "body").text
    assert "<Figure size" not in text  # a figure stored as its text repr instead of a PNG
    raw_tex = [s for s in ("\\(", "\\)", "\\[", "$$") if s in text]
    assert raw_tex == [], f"unrendered math on {page}: {raw_tex}"
    broken = browser.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    assert broken == [], f"images that did not load on {page}: {broken}"


@pytest.mark.parametrize("page", PAGES)
def test_pages_raise_no_javascript_errors(browser, page):
    browser.get_log("browser")  # drop what earlier pages logged
    _open(browser, page)
    errors = [e["message"] for e in browser.get_log("browser") if "Uncaught" in e["message"]]
    assert errors == [], f"JavaScript errors on {page}: {errors}"  # e.g. a script declared twice


def test_math_is_typeset_by_the_bundled_mathjax(browser):
    _open(browser, "scoreboard.html")  # its claims are written with $…$
    assert browser.execute_script("return document.querySelectorAll('mjx-container').length") > 0
    srcs = browser.execute_script("return [...document.scripts].map(s => s.src).filter(s => s.includes('mathjax'))")
    assert srcs and all(s.startswith("file://") for s in srcs), srcs  # served with the site, not from a CDN


@pytest.mark.parametrize("page", ["index.html", "scoreboard.html"])
def test_results_at_a_glance_are_on_the_landing_page_and_the_scoreboard(browser, page):
    _open(browser, page)
    text = browser.find_element("tag name", "body").text
    assert "Results at a glance" in text and "reproduced" in text
    assert "reports no results" not in text


def test_chapter_tables_are_padded_and_show_no_nan(browser):
    _open(browser, "chapters/01_sslmem.html")
    pads = browser.execute_script(
        "return [...document.querySelectorAll('.cell_output table td')].slice(0, 50)"
        ".map(td => parseFloat(getComputedStyle(td).paddingLeft))"
    )
    assert pads and min(pads) >= 4, pads  # cells that run together read "1010.45" for "10" and "10.45"
    cells = browser.execute_script(
        "return [...document.querySelectorAll('.cell_output table td')].map(td => td.textContent.trim())"
    )
    assert "nan" not in {c.lower() for c in cells}


def _at_laptop_size(browser):
    metrics = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


#: Per table: how far it runs past the box that shows it (the nearest block that clips or scrolls it, else
#: the article), unless it or a block around it is marked deliberately scrollable.
_OVERFLOWS = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const out = [];
for (const t of document.querySelectorAll('article table')) {
    if (t.closest('.memlib-scroll') || !t.offsetParent) continue;
    let box = t.parentElement;
    while (box && box !== article && !['auto', 'scroll', 'hidden'].includes(getComputedStyle(box).overflowX)) {
        box = box.parentElement;
    }
    box = box || article;
    const over = Math.max(t.scrollWidth, t.getBoundingClientRect().width) - box.clientWidth;
    if (over > 1) {
        const head = [...t.querySelectorAll('th')].slice(0, 4).map(h => h.textContent.trim()).join(' | ');
        out.push(`${Math.round(over)} px too wide (table ${Math.round(t.getBoundingClientRect().width)} px, `
                 + `box ${box.clientWidth} px): ${head}`);
    }
}
return out;
"""


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_every_table_fits_its_column_at_1366_px(browser, page):
    _at_laptop_size(browser)
    _open(browser, page)
    overflows = browser.execute_script(_OVERFLOWS)
    assert overflows == [], f"{page} at {WIDTH} px: tables run past their column: {overflows}"


#: Per visible table cell with text: how many lines its text takes (the height of its line boxes over the
#: cell's line height), for cells of more than 3.
_TALL_CELLS = """
const out = [];
for (const t of document.querySelectorAll('article table')) {
    if (!t.offsetParent) continue;
    for (const c of t.querySelectorAll('td, th')) {
        if (!c.offsetParent || !c.textContent.trim()) continue;
        const range = document.createRange();
        range.selectNodeContents(c);
        const rects = [...range.getClientRects()].filter(r => r.width > 0 && r.height > 0);
        if (!rects.length) continue;
        const cs = getComputedStyle(c);
        const lh = cs.lineHeight === 'normal' ? 1.2 * parseFloat(cs.fontSize) : parseFloat(cs.lineHeight);
        const lines = Math.round((Math.max(...rects.map(r => r.bottom)) - Math.min(...rects.map(r => r.top))) / lh);
        if (lines > 3) {
            out.push(`${lines} lines at ${Math.round(c.getBoundingClientRect().width)} px: `
                     + c.textContent.trim().slice(0, 50));
        }
    }
}
return out;
"""
#: Pages whose tables hold long text in cells (the chapters' claims tables with their full statistics and tests,
#: stored in the executed notebooks; the benchmark record): known to break the 3-line rule until their tables
#: move that text out of the cells and the chapters are executed again.
TALL_CELLS_KNOWN = {*(p for p in PAGES if p.startswith("chapters/0") and "07_explorer" not in p), "benchmarks.html"}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(
            p, marks=pytest.mark.xfail(reason="stored outputs with long text in cells (TALL_CELLS_KNOWN)", strict=False)
        )
        if p in TALL_CELLS_KNOWN
        else p
        for p in LAYOUT_PAGES
    ],
)
def test_no_table_cell_wraps_to_more_than_three_lines_at_1366_px(browser, page):
    _at_laptop_size(browser)
    _open(browser, page)
    tall = browser.execute_script(_TALL_CELLS)
    assert tall == [], f"{page} at {WIDTH} px: cells of more than 3 lines: {tall}"


def test_the_scoreboard_shows_every_verdict_without_scrolling_sideways(browser):
    _at_laptop_size(browser)
    _open(browser, "scoreboard.html")
    cells = browser.execute_script("""
        const out = [];
        for (const t of document.querySelectorAll('article table')) {
            const heads = [...t.querySelectorAll('thead th')].map(h => h.textContent.trim().toLowerCase());
            const col = heads.findIndex(h => h === 'verdict' || h === 'status');
            if (col < 0) continue;
            for (const row of t.querySelectorAll('tbody tr')) {
                const cell = row.children[col];
                let box = t.parentElement;
                while (box && !['auto', 'scroll', 'hidden'].includes(getComputedStyle(box).overflowX)) {
                    box = box.parentElement;
                }
                const right = Math.min(window.innerWidth, box ? box.getBoundingClientRect().right : Infinity);
                const r = cell.getBoundingClientRect();
                out.push({id: row.children[0].textContent.trim(), text: cell.textContent.trim(),
                          visible: r.width > 0 && r.right <= right + 1});
            }
        }
        return out;
    """)
    assert len(cells) >= 30, f"the scoreboard shows {len(cells)} verdicts"
    hidden = [c["id"] for c in cells if not c["visible"]]
    assert hidden == [], f"verdicts off screen at {WIDTH} px: {hidden}"
    assert all(c["text"] for c in cells)


def test_the_explorer_table_sorts_and_its_plot_draws_offline(browser):
    from selenium.webdriver.support.ui import WebDriverWait

    _at_laptop_size(browser)
    _open(browser, "chapters/07_explorer.html")
    # DataTables (itables, bundled in the page) turns the table into a sortable one.
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('table.dataTable tbody tr').length") > 0
    )
    # Readers see no parameters cell (the notebook's own nor the one papermill injects).
    assert (
        browser.execute_script("return document.querySelectorAll('.tag_parameters, .tag_injected-parameters').length")
        == 0
    )
    # Every point is in the table: itables did not downsample it ("… of N entries (downsampled from M rows …)").
    info = browser.execute_script("return document.querySelector('.dt-info').textContent")
    assert "entries" in info and "downsampled" not in info, info
    column = browser.execute_script("""
        const heads = [...document.querySelectorAll('table.dataTable thead th')].map(h => h.textContent.trim());
        return heads.indexOf('point');""")  # a column the table is not sorted by at first
    assert column >= 0
    header = browser.find_elements("css selector", "table.dataTable thead th")[column]

    def values():
        return browser.execute_script(
            "return [...document.querySelectorAll('table.dataTable tbody tr')]"
            ".map(r => parseFloat(r.children[arguments[0]].textContent))",
            column,
        )

    # A reader's click on the header's text (a real mouse click, not a script's): ascending, then descending.
    header.click()
    WebDriverWait(browser, 10).until(lambda d: values() == sorted(values()) != sorted(values(), reverse=True))
    header.click()
    WebDriverWait(browser, 10).until(lambda d: values() == sorted(values(), reverse=True) != sorted(values()))
    # The scatter: plotly (copied into the site's _static, no CDN) drew its points.
    WebDriverWait(browser, 30).until(
        lambda d: (
            d.execute_script("return document.querySelectorAll('#memlib-scatter .scatterlayer .point').length") > 0
        )
    )
    srcs = browser.execute_script("return [...document.scripts].map(s => s.src).filter(s => s.includes('plotly'))")
    assert srcs and all(s.startswith("file://") for s in srcs), srcs
    # The gallery shows each class's most and least memorised candidates.
    assert browser.execute_script("return document.querySelectorAll('.memlib-gallery-row img').length") > 0
