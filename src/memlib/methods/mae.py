"""MAE (He et al. 2022): masked autoencoder on a ViT encoder.

The encoder sees only a random subset of the patches; a light transformer
decoder reconstructs the hidden ones from the visible tokens and mask tokens.
After training, ``self.encoder`` is the plain, unmasked
:class:`~memlib.models.vit.ViTEncoder`: its ``forward`` stays the full token
representation that SSLMem scores.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ..data.augment import CropFlip
from ..losses.mae import masked_patch_mse, patchify
from ..models import ENCODERS, vit_counterpart
from ..models.vit import ViTEncoder
from . import register
from .base import SSLMethod


@register("mae")
class MAE(SSLMethod):
    """Masked autoencoder; ViT encoders only.

    Parameters
    ----------
    encoder
        A :class:`~memlib.models.vit.ViTEncoder` (``vit_micro``, ``vit_tiny``).
    mask_ratio
        Fraction of patches hidden from the encoder, in (0, 1) (MAE: 0.75).
        ``int(N · (1 − mask_ratio))`` of the N patches stay visible, as in MAE.
    decoder_dim, decoder_depth, decoder_heads
        Size of the decoder (timm transformer blocks; MAE: 512, 8, 16).
    norm_pix
        Normalise each target patch by its mean and variance (MAE's ``norm_pix_loss``).
    augmentation
        Draws the single view that is masked and reconstructed; ``None``:
        :class:`~memlib.data.augment.CropFlip` (MAE's crop + flip). Any
        augmentation (e.g. the experiments' ``SimCLRAugment``) is used as given.
    """

    name = "mae"
    archs = tuple(n for n in ENCODERS if n.startswith("vit"))
    default_augmentation = "crop_flip"  # MAE (and ViP) train with crop + flip only

    @classmethod
    def arch_for(cls, arch: str) -> str:
        """A ViT: ``arch`` if it is one, else the ViT trained beside it (:func:`~memlib.models.vit_counterpart`)."""
        return vit_counterpart(arch)

    def __init__(
        self,
        encoder,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix: bool = True,
        augmentation=None,
    ):
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(
                f"MAE needs a ViT encoder (memlib.models.ViTEncoder, e.g. arch='vit_micro' or 'vit_tiny'), "
                f"got {type(encoder).__name__}"
            )
        n = encoder.num_patches
        if not 0 < mask_ratio < 1 or not 1 <= int(n * (1 - mask_ratio)) < n:
            raise ValueError(
                f"MAE: mask_ratio={mask_ratio!r} must be in (0, 1) and leave between 1 and {n - 1} of the "
                f"{n} patches visible (e.g. 0.75)"
            )
        if decoder_dim % decoder_heads:
            raise ValueError(f"MAE: decoder_dim={decoder_dim} must be divisible by decoder_heads={decoder_heads}")
        super().__init__(encoder)
        self.mask_ratio, self.norm_pix = mask_ratio, norm_pix
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.n_keep = int(n * (1 - mask_ratio))
        self.decoder_embed = nn.Linear(encoder.pooled_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, 1 + n, decoder_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos, std=0.02)
        self.decoder = nn.Sequential(
            *[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * encoder.in_chans)
        self.augmentation = augmentation or CropFlip(size=encoder.img_size)

    def random_masking(self, batch: int, device, generator: torch.Generator | None = None):
        """Draw which patches each image keeps.

        Returns
        -------
        keep_idx : torch.Tensor
            (B, n_keep) indices of the visible patches.
        mask : torch.Tensor
            (B, N) float, 1 for masked patches, 0 for visible ones.
        restore : torch.Tensor
            (B, N) permutation putting ``[visible, masked]`` tokens back in patch order.
        """
        n = self.encoder.num_patches
        shuffle = torch.rand(batch, n, generator=generator, device=device).argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        mask = torch.ones(batch, n, device=device)
        mask[:, : self.n_keep] = 0
        return shuffle[:, : self.n_keep], torch.gather(mask, 1, restore), restore

    def decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch, (B, N, p·p·C), from the visible tokens (B, 1 + n_keep, D)."""
        x = self.decoder_embed(latent)
        b, n = restore.shape
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(b, n - self.n_keep, -1).to(x.dtype)], dim=1)
        tokens = torch.gather(tokens, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos
        return self.decoder_pred(self.decoder_norm(self.decoder(x)))[:, 1:]

    def per_sample_loss(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction loss of each image, (B,), under a fresh random mask.

        Each sample's loss depends on that sample alone (a ViT has no
        BatchNorm), as DP-SGD's per-sample gradients need.

        Parameters
        ----------
        images
            Float images in [0, 1], (B, C, H, W) (already augmented).
        generator
            Draws the masks.
        """
        keep_idx, mask, restore = self.random_masking(images.shape[0], images.device, generator)
        pred = self.decode(self.encoder.forward_masked(images, keep_idx), restore)
        return masked_patch_mse(pred, patchify(images, self.patch_size), mask, self.norm_pix)

    def training_step(self, images, indices, labels, generator=None):
        return {"loss": self.per_sample_loss(self.augmentation(images, generator), generator).mean()}
