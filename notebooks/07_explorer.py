# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Point explorer
#
# Every point that chapter 01's study scored, one row each: its image, class,
# subset (S_C seen by f only, S_S by both, S_E by neither, S_I by g only), its
# memorisation score (the **calibrated** SSLMem averaged over the study's
# encoder pairs) with the standard error over pairs, its rank in its split
# (1 = most memorised) and, where the run has one, its atypicality. The data
# come from `memlib.experiments.explorer.load_points`, which reads the study
# the way chapter 01 does (from the evidence store), so the numbers are the
# chapter's. Feldman's supervised score, Déjà Vu and chapter 06's setups score
# other candidates under other designs; they join this table once the evidence
# store keys them by point.
#
# Everything on this page works offline: the table's JavaScript (DataTables,
# through `itables`) is stored in the page, and plotly's is copied into the
# built site.

# %% tags=["parameters", "remove-cell"]
device = "cpu"  # "cpu", "cuda" or "auto"
preset = "smoke"  # smoke | cpu | gpu | paper
seed = 0  # added to every split seed (0: the preset's seeds)
seeds = None  # split seeds, e.g. (0, 1, 2); None = preset default, as in chapter 01
epochs = None  # training epochs; None = preset default, as in chapter 01
models_per_family = None  # encoders per family (f and g); None = preset default, as in chapter 01
progress = False  # progress bars (off for papermill runs)

# %% tags=["remove-input"]
import html

from IPython.display import HTML, Markdown, display
from itables import init_notebook_mode, show

from memlib.experiments.explorer import gallery, load_points
from memlib.experiments.notebooks import refuse_unknown_parameters
from memlib.experiments.page import smoke_banner
from memlib.experiments.presets import get_preset

refuse_unknown_parameters()  # papermill only warns about a misspelt -p name
smoke_banner(get_preset(preset))
# Read only: the page never trains. Every point comes from the evidence store that chapter 01 was run
# from (MEMLIB_RESULTS, else results/), with chapter 01's parameters; a missing row is an error.
points = load_points(
    preset,
    device=device,
    seed=seed,
    seeds=seeds,
    epochs=epochs,
    models_per_family=models_per_family,
    progress=progress,
    # Real presets only read the store (a missing row is an error, never a silent retraining);
    # at smoke (CI, meaningless numbers) an empty store gets chapter 01's smoke rows first.
    train=preset == "smoke",
)
init_notebook_mode(connected=False)  # the DataTables bundle goes into the page: no CDN

# %% [markdown]
# ## Every scored point
#
# Click a column's header to sort by it; the search box filters on any
# column (try a class name or `S_C`).

# %% tags=["remove-input"]
# "pairs" (the same for every point of a split) is said under the gallery, so that the table fits the column.
shown = points.drop(columns="pairs").assign(
    image=[f'<img src="{u}" width="28" height="28" alt="">' for u in points["image"]]
)
show(
    shown.round({"score": 4, "se": 4, "normalised": 4, "atypicality": 3}),
    allow_html=True,
    showIndex=False,
    pageLength=10,
    lengthMenu=[10, 25, 100, -1],
    order=[[shown.columns.get_loc("score"), "desc"]],
    classes="display compact memlib-explorer-table",
    maxBytes=0,  # every point, never a downsampled table
    text_in_header_can_be_selected=False,  # a click on a header sorts by it
)

# %% [markdown]
# ## Two scores against each other
#
# Choose the axes with the menus above the plot; hover over a point to see its
# image.

# %% tags=["remove-input"]
import plotly.graph_objects as go

axes = [c for c in ("score", "normalised", "atypicality", "rank", "se") if points[c].notna().any()]
x0 = "atypicality" if "atypicality" in axes else "normalised"
groups = [(s, g) for s, g in points.groupby("subset", sort=True)]
fig = go.Figure()
for s, g in groups:
    fig.add_trace(
        go.Scatter(
            x=g[x0],
            y=g["score"],
            mode="markers",
            name=s,
            marker={"size": 6, "opacity": 0.75},
            customdata=g[["image", "class", "split", "point", "rank", "se"]].to_numpy(),
            hovertemplate="%{customdata[1]} · split %{customdata[2]} · point %{customdata[3]}<br>"
            "x %{x:.4f}, y %{y:.4f}<br>rank %{customdata[4]}, se %{customdata[5]:.4f}<extra>%{fullData.name}</extra>",
        )
    )


def menu(axis, at):
    return {
        "buttons": [
            {
                "label": f"{axis}: {c}",
                "method": "update",
                "args": [{axis: [g[c].tolist() for _, g in groups]}, {f"{axis}axis.title.text": c}],
            }
            for c in axes
        ],
        "active": axes.index(x0 if axis == "x" else "score"),
        "x": at,
        "y": 1.16,
        "xanchor": "left",
        "direction": "down",
    }


fig.update_layout(
    height=460,
    margin={"l": 50, "r": 10, "t": 60, "b": 40},
    template="plotly_white",
    xaxis_title=x0,
    yaxis_title="score",
    updatemenus=[menu("x", 0.0), menu("y", 0.32)],
    legend_title="subset",
)
plot = fig.to_html(
    include_plotlyjs=False, full_html=False, div_id="memlib-scatter", config={"displaylogo": False, "responsive": True}
)
top = points.sort_values("score", ascending=False).iloc[0]
display(
    HTML(f"""<div class="memlib-scatter-box">{plot}
<figure class="memlib-hover"><img id="memlib-hover-img" alt="" width="84" height="84" src="{top.image}">
<figcaption id="memlib-hover-text">{html.escape(top["class"])}, rank 1; hover over a point</figcaption></figure></div>
<script>
(function hook() {{
  const gd = document.getElementById('memlib-scatter');
  if (!gd || !gd.on) {{ return setTimeout(hook, 100); }}
  gd.on('plotly_hover', e => {{
    const p = e.points[0], d = p.customdata;
    document.getElementById('memlib-hover-img').src = d[0];
    document.getElementById('memlib-hover-text').textContent = `${{d[1]}}, split ${{d[2]}}, point ${{d[3]}}: rank ${{d[4]}}`;
  }});
}})();
</script>""")
)

# %% [markdown]
# ## Most and least memorised candidates per class
#
# Per class, the four candidates (S_C) with the highest score and the four
# with the lowest, over every split; the number under an image is its score.

# %% tags=["remove-input"]
rows = []
for cls, g in gallery(points, k=4).groupby("class", sort=True):
    cells = []
    for end in ("most", "least"):
        cells.append(f'<span class="memlib-gallery-end">{end}</span>')
        cells += [
            f'<figure><img src="{r.image}" width="56" height="56" alt="{html.escape(cls)}">'
            f"<figcaption>{r.score:+.3f}</figcaption></figure>"
            for r in g[g["end"] == end].itertuples()
        ]
    rows.append(
        f'<div class="memlib-gallery-row"><span class="memlib-gallery-class">{html.escape(cls)}</span>'
        + "".join(cells)
        + "</div>"
    )
display(HTML('<div class="memlib-gallery">' + "".join(rows) + "</div>"))
display(
    Markdown(
        f"{len(points):,} points over {points['split'].nunique()} split(s), "
        f"{int(points['pairs'].max())} encoder pair(s) per split, preset `{preset}`."
    )
)

# %% [markdown]
# ## Provenance

# %% tags=["remove-input"]
from myst_nb import glue

from memlib.provenance import provenance, provenance_markdown

glue("explorer_points", len(points), display=False)
display(Markdown(provenance_markdown(provenance({"preset": preset, "seed": seed}, device))))
display(
    Markdown(
        "Every point above is read from chapter 01's runs in the evidence store; chapter 01's provenance block "
        "lists the encoders, their training and the store batches behind them."
    )
)
