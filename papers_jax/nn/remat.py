"""Activation rematerialisation by name: the shared layers tag the activations worth keeping, and
the policies below choose what a rematerialised block stores for its backward pass.

Tags (`jax.ad_checkpoint.checkpoint_name`; an identity that compiles to nothing):
  qkv         the fused q/k/v projection's output (nn.Attention)
  attn_out    attention's output before its projection (nn.Attention)
  mlp_hidden  the MLP's hidden activation, after the nonlinearity (nn.Mlp)
  block_out   each block's output, the residual stream (models.vit.apply_block and the blocks using it)

A model's `remat=` names one of `REMAT_POLICIES` (the harness's `--remat` too); "" keeps everything.
"""

import jax
from jax.ad_checkpoint import checkpoint_name  # noqa: F401  (re-exported for the layers)

from papers_jax.errors import ConfigError

QKV, ATTN_OUT, MLP_HIDDEN, BLOCK_OUT = "qkv", "attn_out", "mlp_hidden", "block_out"

_save = jax.checkpoint_policies.save_only_these_names
REMAT_POLICIES = {
    "full": None,                                                               # keep nothing: recompute the block
    "dots": jax.checkpoint_policies.dots_saveable,                              # keep every matmul output
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep the weight matmuls' outputs
    "save_qkv_attn": _save(QKV, ATTN_OUT),             # keep attention's projections; recompute softmax and MLP
    "save_mlp_hidden": _save(MLP_HIDDEN),              # keep the MLP's (widest) activation; recompute attention
    "save_qkv_attn_mlp": _save(QKV, ATTN_OUT, MLP_HIDDEN),  # keep all three; recompute norms, softmax, GELU inputs
}


def check_remat(remat: str):
  if remat and remat not in REMAT_POLICIES:
    raise ConfigError(f"remat must be '' or one of {sorted(REMAT_POLICIES)}, got {remat!r}")
