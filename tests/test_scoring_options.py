"""One scoring options object (memlib.memorization.ScoringOptions) for SSLMem, LayerMem and UnitMem: ``options=``
gives the same scores as the keywords it holds, the keywords keep working, and a setting given twice or to a
metric without it is refused."""

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from memlib.data.augment import GaussianNoise
from memlib.memorization import (
    ScoringOptions,
    alignment_loss,
    layer_alignment,
    layermem,
    sslmem,
    unit_means,
    unitmem,
)
from memlib.models import build_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    f, g = build_encoder("resnet_narrow", 1, 28).eval(), build_encoder("resnet_narrow", 1, 28).eval()
    images = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    return f, g, images, GaussianNoise(0.1)


KW = dict(views=3, ids=np.arange(100, 112), batch_size=8, seed=4, device="cpu", amp=False, progress=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_options_score_as_the_keywords_do(setup):
    f, g, x, aug = setup
    opts = ScoringOptions(mode="clean", **KW)
    assert np.array_equal(sslmem(f, g, x, aug, options=opts).raw, sslmem(f, g, x, aug, mode="clean", **KW).raw)
    a = layermem(f, g, x, aug, options=opts).raw
    assert np.array_equal(a, layermem(f, g, x, aug, mode="clean", **KW).raw)
    assert np.array_equal(alignment_loss(f, x, aug, options=opts), alignment_loss(f, x, aug, mode="clean", **KW))
    assert np.array_equal(
        layer_alignment(f, x, aug, options=opts)[1], layer_alignment(f, x, aug, mode="clean", **KW)[1]
    )
    u = unitmem(f, x, aug, options=ScoringOptions(**KW))
    assert _same(u.unitmem, unitmem(f, x, aug, **KW).unitmem)
    assert _same(unit_means(f, x, aug, options=ScoringOptions(**KW)), unit_means(f, x, aug, **KW))


def test_none_keeps_each_metrics_default_and_other_keywords_combine(setup):
    f, g, x, aug = setup
    assert sslmem(f, g, x, aug, options=ScoringOptions()).views == 5  # SSLMem's default K
    assert unitmem(f, x, aug, options=ScoringOptions(batch_size=6)).views == 10  # UnitMem's
    # A setting outside the options object (UnitMem's reduce) and one not set in it (ids) still pass as keywords.
    r = unitmem(f, x, aug, reduce="median", ids=KW["ids"], options=ScoringOptions(views=2, seed=1))
    assert _same(r.unitmem, unitmem(f, x, aug, reduce="median", ids=KW["ids"], views=2, seed=1).unitmem)


def test_a_setting_given_twice_or_foreign_is_refused(setup):
    f, g, x, aug = setup
    with pytest.raises(TypeError, match=r"\['views'\] both in options= and as keywords"):
        sslmem(f, g, x, aug, views=3, options=ScoringOptions(views=3))
    with pytest.raises(TypeError, match=r"unitmem\(\) has no setting \['mode'\]"):
        unitmem(f, x, aug, options=ScoringOptions(mode="pairwise"))
    with pytest.raises(TypeError, match="must be a memlib.memorization.ScoringOptions"):
        sslmem(f, g, x, aug, options={"views": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        ScoringOptions().views = 3


def test_signatures_keep_their_keywords_and_show_options():
    for fn in (alignment_loss, sslmem, layer_alignment, layermem, unit_means, unitmem):
        params = inspect.signature(fn).parameters
        assert params["options"].default is None and params["options"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["amp"].default is False and params["seed"].default == 0, fn.__name__
    assert inspect.signature(unitmem).parameters["views"].default == 10
    assert [f.name for f in dataclasses.fields(ScoringOptions)] == [
        "views", "mode", "ids", "batch_size", "seed", "device", "amp", "progress"
    ]  # fmt: skip


def test_run_context_scoring_is_the_options_of_the_run():
    from memlib.experiments.context import scoring_options
    from memlib.experiments.presets import get_preset

    p = get_preset("smoke")
    opts = scoring_options(p, 3, torch.device("cpu"), progress=True)
    assert opts.given() == dict(
        views=p.views, mode=p.mode, batch_size=p.score_batch_size, seed=3, device=torch.device("cpu"), progress=True
    )
