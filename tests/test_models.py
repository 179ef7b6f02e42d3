import pytest
import torch

from memlib.models import ENCODERS, build_encoder, extract_taps


@pytest.mark.parametrize("name", ["resnet_narrow", "resnet18", "vit_micro"])
@pytest.mark.parametrize("chans,size", [(1, 28), (3, 32)])
def test_shapes(name, chans, size):
    enc = build_encoder(name, chans, size).eval()
    x = torch.rand(2, chans, size, size)
    feats = enc.forward_features(x)
    assert enc(x).shape == (2, feats[0].numel())
    assert enc.pooled(x).shape == (2, enc.pooled_dim)


def test_vit_representation_is_all_tokens_after_norm():
    enc = build_encoder("vit_micro", 1, 28).eval()
    x = torch.rand(2, 1, 28, 28)
    taps = extract_taps(enc, x, ["vit.norm"])
    assert enc.forward_features(x).shape == (2, 1 + 49, 64)
    torch.testing.assert_close(enc(x), taps["vit.norm"].flatten(1))


def test_resnet_block_tap_includes_residual_addition():
    enc = build_encoder("resnet_narrow", 1, 28).eval()
    x = torch.rand(2, 1, 28, 28)
    taps = extract_taps(enc, x, ["stem", "layer1.0", "layer2.0"])
    block = enc.layer1[0]
    with torch.no_grad():
        # the block's own forward (residual added, then ReLU) on its real input
        torch.testing.assert_close(taps["layer1.0"], block(taps["stem"]))
        # re-chaining the block's children drops the residual: that must differ
        chained = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(taps["stem"])))))
    assert not torch.allclose(taps["layer1.0"], chained)
    assert taps["layer2.0"].shape == (2, 32, 14, 14)


def test_tap_names_resolve():
    for name in ENCODERS:
        if name in ("resnet50", "vit_tiny"):
            continue
        enc = build_encoder(name, 1, 28)
        taps = extract_taps(enc.eval(), torch.rand(1, 1, 28, 28), enc.tap_names)
        assert set(taps) == set(enc.tap_names)


def test_bad_input_and_names():
    enc = build_encoder("resnet_narrow", 1, 28)
    with pytest.raises(TypeError, match="float images"):
        enc(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        enc(torch.rand(1, 3, 28, 28))
    with pytest.raises(ValueError, match="arch='resnet9' is unknown"):
        build_encoder("resnet9", 1, 28)
    with pytest.raises(ValueError, match="unknown tap"):
        extract_taps(enc, torch.rand(1, 1, 28, 28), ["layer9"])
