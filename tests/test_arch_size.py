"""The architecture-size study (S14): its config refuses bad input, parameters grow along the ladder, and a
store that holds only some declared architectures gives an interim statistic and no verdict."""

import pytest

from memlib.experiments.arch_size import parameter_count, size_config, size_designs
from memlib.experiments.registry import run_experiment


def test_the_width_ladder_grows_in_parameters_about_fourfold_per_step():
    n = [parameter_count(a) for a in ("resnet_narrow", "resnet_narrow_x2", "resnet_narrow_x4", "resnet_narrow_x8")]
    assert all(3.5 < b / a < 4.5 for a, b in zip(n, n[1:]))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"archs": ("resnet_narrow",)}, "at least two"),
        ({"archs": ("resnet_narrow", "resnet_narrow")}, "at least two different"),
        ({"archs": ("resnet_narrow", "vit_micro")}, "not a ResNet"),
        ({"archs": ("resnet_narrow", "resnet_wide")}, "resnet_wide"),
    ],
)
def test_bad_config_is_refused_naming_the_parameter(params, match):
    with pytest.raises(ValueError, match=match):
        size_config("smoke", **params)


def test_a_misspelt_parameter_is_refused_with_the_closest_name():
    with pytest.raises(TypeError, match="did you mean 'models_per_family'"):
        size_config("smoke", model_per_family=3)


def test_each_architecture_is_one_design_named_by_it_on_a_split_of_its_own():
    cfg = size_config("cpu")
    designs = size_designs(cfg)
    assert [d.preset.arch for d in designs] == list(cfg.archs)
    assert len({d.name for d in designs}) == len(designs) and all(d.seed == 7 for d in designs)
    assert size_config("cpu", seed=3).seed == 10  # seed shifts the split, as for every experiment
    keys = [set(d.keys()) for d in designs]
    assert all(not (a & b) for i, a in enumerate(keys) for b in keys[i + 1 :])


@pytest.mark.notebook
def test_a_partly_filled_store_gives_an_interim_statistic_and_no_verdict(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLIB_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "store"
    full = run_experiment("arch-size", "smoke", store=store, progress=False)
    assert full.absent == [] and "interim" not in full.claims().iloc[0].statistic
    archs = ("resnet_narrow", "resnet_narrow_x2", "resnet_narrow_x4")
    part = run_experiment("arch-size", "smoke", store=store, progress=False, train=False, archs=archs)
    row = part.claims().iloc[0]
    assert part.absent == ["resnet_narrow_x4"]
    assert row.status.startswith("not reproduced yet") or row.status.startswith("inconclusive")
    assert "interim, 2 of the 3 declared architectures" in row.statistic
    assert list(part.table().index) == ["resnet_narrow", "resnet_narrow_x2"]


def test_on_the_cpu_only_the_declared_cheap_widths_train_the_rest_is_read_from_the_store(tmp_path, monkeypatch):
    from memlib.experiments import encoders

    def no_fit(*a, **k):
        raise AssertionError("a width outside cpu_trains was trained on the CPU")

    monkeypatch.setattr(encoders, "fit", no_fit)
    with pytest.raises(LookupError, match="lacks 2 of the 2 architecture runs"):
        run_experiment("arch-size", "smoke", store=tmp_path / "store", progress=False, cpu_trains=())
    assert size_config("cpu").cpu_trains == ("resnet_narrow", "resnet_narrow_x2")
