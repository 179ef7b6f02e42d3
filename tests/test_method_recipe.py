"""Methods own their recipe (issue 30): the architecture and training augmentation an experiment gives a method
come from the method class, and the cache keys of the encoders they give are those computed before the move."""

import pytest

from memlib.experiments.encoders import EncoderSpec, method_setup
from memlib.experiments.presets import PRESETS
from memlib.experiments.setups_run import SETUPS, setup_preset
from memlib.methods import METHODS

#: (arch, augmentation, EncoderSpec key) per preset architecture and method or Table 1 setup, computed with
#: the code before the recipe moved onto the method classes (encoders.method_setup's `if method == "mae"`).
BEFORE = {
    ("resnet_narrow", "simclr"): ("resnet_narrow", "simclr", "b3d29044b895570c"),
    ("resnet_narrow", "dino"): ("resnet_narrow", "simclr", "9b797115d46326ee"),
    ("resnet_narrow", "mae"): ("vit_micro", "crop_flip", "221af68d2e07ef96"),
    ("resnet_narrow", "vicreg"): ("resnet_narrow", "simclr", "f2370d4fc580592a"),
    ("resnet_narrow", "supervised"): ("resnet_narrow", "simclr", "0e286a5f5ce1506d"),
    ("resnet_narrow", "DINO-ViT"): ("vit_micro", "simclr", "296f2202dd304695"),
    ("resnet_narrow", "MAE-ViT"): ("vit_micro", "crop_flip", "221af68d2e07ef96"),
    ("resnet_narrow", "Supervised-ResNet"): ("resnet_narrow", "simclr", "0e286a5f5ce1506d"),
    ("resnet18", "simclr"): ("resnet18", "simclr", "3a35126d5aab4ad3"),
    ("resnet18", "mae"): ("vit_tiny", "crop_flip", "f043926665fef083"),
    ("resnet18", "DINO-ResNet"): ("resnet18", "simclr", "58d89894776bd0d9"),
    ("resnet18", "DINO-ViT"): ("vit_tiny", "simclr", "ebf1c5f84e497966"),
    ("resnet18", "MAE-ViT"): ("vit_tiny", "crop_flip", "f043926665fef083"),
    ("vit_micro", "simclr"): ("vit_micro", "simclr", "11f9d90a867b75ae"),
    ("vit_micro", "mae"): ("vit_micro", "crop_flip", "221af68d2e07ef96"),
    ("vit_micro", "VICReg-ResNet"): ("vit_micro", "simclr", "c2b2ecdca6c80dae"),
}


def _preset(arch):
    # Every field a key covers is given here, so the keys depend on the recipe alone (and CACHE_SCHEMA).
    return PRESETS["smoke"].replace(
        dataset="fashion_mnist",
        arch=arch,
        method="simclr",
        augmentation="simclr",
        epochs=2,
        batch_size=16,
        lr=1e-3,
        warmup_epochs=0,
        eval_every=0,
        method_kwargs={},
    )


@pytest.mark.parametrize("arch, what", sorted(BEFORE))
def test_recipe_keeps_cache_keys(arch, what):
    p = _preset(arch)
    if what in SETUPS:
        sp = setup_preset(p, {"kwargs": {}}, what)
        got = (sp.arch, sp.augmentation, EncoderSpec.from_preset(sp, range(8), 3).key())
    else:
        a, g = method_setup(p, what)
        got = (a, g, EncoderSpec.from_preset(p, range(8), 3, method=what, arch=a, augmentation=g).key())
    assert got == BEFORE[(arch, what)]


def test_the_method_decides_its_recipe():
    mae = METHODS["mae"]
    assert mae.recipe("resnet_narrow", "simclr") == ("vit_micro", "crop_flip")
    assert mae.recipe("resnet50", "noise") == ("vit_tiny", "crop_flip")
    assert all(mae.arch_for(a) in mae.archs for a in ("resnet_narrow", "resnet18", "vit_micro", "vit_tiny"))
    for name, cls in METHODS.items():
        arch, aug = cls.recipe("resnet_narrow", "simclr")
        assert cls.archs is None or arch in cls.archs, name  # a restricted method picks an arch it can train
        assert aug == (cls.default_augmentation or "simclr"), name
    with pytest.raises(ValueError, match="method='nope' is unknown"):
        method_setup(_preset("resnet_narrow"), "nope")
