"""SwinIR (Liang et al., ICCVW 2021, "SwinIR: Image Restoration Using Swin Transformer"), the baseline of
the super-resolution table: a 3×3 conv (shallow features), residual Swin transformer blocks (RSTB: `depth`
Swin blocks alternating W-MSA and SW-MSA, then a conv, plus the block's input), LayerNorm, a conv plus the
shallow features, and the pixel-shuffle reconstruction (models/sr_common.py).

The Swin blocks are models/swin.py's `SwinBlock` (relative-position bias, shifted-window mask, LayerNorm
eps 1e-5, exact GELU, DropPath rising linearly to `drop_path_rate` = 0.1), built for the `img_size` × `img_size`
LR grid. As SwinIR's code, a side no longer than the window is one unshifted window.

Variants (SwinIR's Tables; `upscale` is the task's scale):
  swinir_light      embed 60, depths (6, 6, 6, 6), heads 6, window 8, MLP ratio 2, "pixelshuffledirect"
                    (the paper's lightweight SR model: 878K parameters at ×2)
  swinir_classical  embed 180, depths (6,)·6, heads 6, window 8, MLP ratio 2, "pixelshuffle" (classical SR)

Departures from the paper's code: the model is built for one LR size (`img_size`; SwinIR's code rebuilds
its masks for any input size and pads the input to a multiple of the window at test time), and its
absolute position embedding option (off in every SwinIR config) is left out.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from papers_jax.models import sr_common
from papers_jax.models.registry import register
from papers_jax.models.swin import NORM_EPS, SwinBlock
from papers_jax.nn import LayerNorm

VARIANTS = {
    "swinir_light": dict(embed_dim=60, depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6), window_size=8, mlp_ratio=2.0,
                         upsampler="pixelshuffledirect", resi_connection="1conv"),
    "swinir_classical": dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6, window_size=8, mlp_ratio=2.0,
                             upsampler="pixelshuffle", resi_connection="1conv"),
}


class RSTB(nnx.Module):
  """Residual Swin transformer block: Swin blocks, then a conv on the map, plus the input."""

  def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int, *,
               mlp_ratio: float, drop_path: list[float], resi_connection: str, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.blocks = nnx.List([
        SwinBlock(dim, num_heads, resolution, (window, window), shifted=i % 2 == 1, mlp_ratio=mlp_ratio,
                  drop_path=drop_path[i], **kw) for i in range(depth)])
    self.conv = sr_common.ResidualConv(dim, resi_connection, **kw)

  def __call__(self, x, *, deterministic=None, rngs=None):
    y = x
    for block in self.blocks:
      y = block(y, deterministic=deterministic, rngs=rngs)
    return self.conv(y) + x


class SwinIR(nnx.Module):
  """SwinIR for super-resolution (module docstring): (B, h, w, C) normalised LR → (B, h·s, w·s, C)."""

  def __init__(self, *, img_size: int = 64, in_chans: int = 3, upscale: int = 2, embed_dim: int = 60,
               depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6), window_size: int = 8, mlp_ratio: float = 2.0,
               drop_path_rate: float = 0.1, upsampler: str = "pixelshuffledirect", resi_connection: str = "1conv",
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.img_size, self.in_chans, self.upscale = img_size, in_chans, upscale
    self.conv_first = sr_common.conv(in_chans, embed_dim, **kw)
    self.patch_norm = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
    starts = np.cumsum((0,) + tuple(depths)).tolist()
    self.layers = nnx.List([
        RSTB(embed_dim, (img_size, img_size), d, h, window_size, mlp_ratio=mlp_ratio,
             drop_path=rates[starts[i]:starts[i + 1]], resi_connection=resi_connection, **kw)
        for i, (d, h) in enumerate(zip(depths, num_heads))])
    self.norm = LayerNorm(embed_dim, eps=NORM_EPS, **kw)
    self.conv_after_body = sr_common.ResidualConv(embed_dim, resi_connection, **kw)
    self.upsample = sr_common.Upsampler(embed_dim, in_chans, upscale, upsampler, **kw)

  def forward_features(self, x, *, train: bool = False, rngs=None):
    x = self.patch_norm(x)
    for layer in self.layers:
      x = layer(x, deterministic=not train, rngs=rngs)
    return self.norm(x)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    x = self.conv_first(x)
    x = self.conv_after_body(self.forward_features(x, train=train, rngs=rngs)) + x
    return self.upsample(x).astype(jnp.float32)


def forward_flops(model: SwinIR, **kw) -> float:
  return sr_common.sr_flops(model, **kw)


for _name, _cfg in VARIANTS.items():
  register(_name, SwinIR, preprocessing=sr_common.SR_PREPROCESSING, **_cfg)

EMBEDDINGS = ()
