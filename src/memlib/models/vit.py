"""Vision Transformers from timm, sized for 28–32 px images.

The patch size is 4 (28 px → 7×7 = 49 patches, 32 px → 64), plus the CLS
token. The full representation is every token after the final norm,
flattened (the book's Methods page); the pooled one is the CLS token. Taps: each block
(``blocks.i``), and separately its attention (``blocks.i.attn``) and MLP
(``blocks.i.mlp``) sub-layers — the sub-layer outputs before their residual
addition — and the final ``norm``; then the MLP hidden units after their GELU
(``blocks.i.mlp.act``), the units of UnitMem.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer

from .encoder import Encoder


class ViTEncoder(Encoder):
    """A timm ``VisionTransformer`` behind memlib's encoder interface.

    Parameters
    ----------
    embed_dim, depth, num_heads
        Transformer size (ViT-tiny: 192, 12, 3).
    patch_size
        Patch side in pixels; must divide ``img_size``.
    """

    def __init__(
        self, embed_dim=192, depth=12, num_heads=3, patch_size=4, in_chans=3, img_size=32, mean=None, std=None
    ):
        super().__init__(in_chans, img_size, mean, std)
        if img_size % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide img_size={img_size}")
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=4.0,
        )
        self.pooled_dim = embed_dim
        self.tap_names = (
            tuple(f"vit.blocks.{i}{part}" for i in range(depth) for part in ("", ".attn", ".mlp"))
            + ("vit.norm",)
            + tuple(f"vit.blocks.{i}.mlp.act" for i in range(depth))
        )

    @property
    def patch_embed(self):
        return self.vit.patch_embed

    def forward_features(self, x):
        self.check_input(x)
        return self.vit.forward_features(self.normalize(x))  # (B, 1 + patches, D), after final norm

    def pool(self, feats):
        return feats[:, 0]

    @property
    def num_patches(self) -> int:
        """Number of patch tokens (without the CLS token)."""
        return self.vit.patch_embed.num_patches

    def forward_masked(self, x: torch.Tensor, keep_idx: torch.Tensor) -> torch.Tensor:
        """Tokens of the visible patches only, after the final norm (MAE's encoder pass).

        Position embeddings are added before the masked patches are dropped,
        so each kept token knows where it came from.

        Parameters
        ----------
        x
            Float images in [0, 1], (B, C, H, W).
        keep_idx
            (B, K) long indices of the patches to keep, in ``[0, num_patches)``.

        Returns
        -------
        torch.Tensor
            (B, 1 + K, D): the CLS token followed by the K kept patch tokens.
        """
        self.check_input(x)
        v = self.vit
        tokens = v._pos_embed(v.patch_embed(self.normalize(x)))  # (B, prefix + N, D)
        prefix = v.num_prefix_tokens
        patches = tokens[:, prefix:]
        kept = torch.gather(patches, 1, keep_idx.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        return v.norm(v.blocks(v.norm_pre(torch.cat([tokens[:, :prefix], kept], dim=1))))


def vit_tiny(**kw) -> ViTEncoder:
    return ViTEncoder(embed_dim=192, depth=12, num_heads=3, **kw)


def vit_micro(**kw) -> ViTEncoder:
    """A 4-block, 64-wide ViT for the CPU presets and tests."""
    return ViTEncoder(embed_dim=64, depth=4, num_heads=4, **kw)
