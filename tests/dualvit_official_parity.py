"""Forward parity of our Dual-ViT with the official PyTorch model (YehLi/ImageNetModel, classification/dualvit.py)
on random weights, every parameter and BatchNorm statistic perturbed; run by hand, the official code is not
vendored here:

  mkdir -p /tmp/off && cp <YehLi/ImageNetModel>/classification/dualvit.py /tmp/off/
  PYTHONPATH=$PWD:/tmp/off python tests/dualvit_official_parity.py

It stubs the official file's timm imports (DropPath → identity, trunc_normal_ → no-op, register_model, _cfg), builds
dualvit_s with and without the token-labeling head at 224² and a narrow two-block-per-stage layout at 32² (a
2 × 2 pool, so 16 semantic tokens), copies the weights across by name and compares the logits in float32.
Last run: docs/vision_variants.md ("Dual-ViT").
"""
import collections.abc
import re
import sys
import types
from itertools import repeat

import numpy as np
import torch

timm = types.ModuleType("timm")
layers = types.ModuleType("timm.models.layers")
layers.DropPath = lambda p: torch.nn.Identity()
layers.trunc_normal_ = lambda t, std=1.0: t
layers.to_2tuple = lambda x: x if isinstance(x, collections.abc.Iterable) else tuple(repeat(x, 2))
registry = types.ModuleType("timm.models.registry")
registry.register_model = lambda f: f
vision_transformer = types.ModuleType("timm.models.vision_transformer")
vision_transformer._cfg = lambda **kw: {}
sys.modules.update({"timm": timm, "timm.models": types.ModuleType("timm.models"), "timm.models.layers": layers,
                    "timm.models.registry": registry, "timm.models.vision_transformer": vision_transformer})
import dualvit as official  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from papers_jax.models import dualvit  # noqa: E402

RULES = [
    (r"^patch_embed1\.conv\.([036])\.weight$", lambda m: f"stem_convs.{int(m[1]) // 3}.conv.kernel"),
    (r"^patch_embed1\.conv\.([147])\.", lambda m: f"stem_convs.{int(m[1]) // 3}.bn."),
    (r"^patch_embed(\d)\.proj\.", lambda m: f"embeds.{int(m[1]) - 1}.conv."),
    (r"^patch_embed(\d)\.norm\.", lambda m: f"embeds.{int(m[1]) - 1}.norm."),
    (r"^q$", "semantic_init.queries"), (r"^q_embed\.0\.", "semantic_init.query_norm."),
    (r"^q_embed\.1\.", "semantic_init.query_proj."), (r"^kv\.", "semantic_init.kv."),
    (r"^se\.0\.", "semantic_init.se_fc1."), (r"^se\.2\.", "semantic_init.se_fc2."),
    (r"^proxy_ln\.", "semantic_init.norm."),
    (r"^proxy_embed(\d)\.proj_proxy\.0\.", lambda m: f"semantic_embeds.{int(m[1]) - 2}.proj."),
    (r"^proxy_embed(\d)\.proj_proxy\.1\.", lambda m: f"semantic_embeds.{int(m[1]) - 2}.norm."),
    (r"^block(\d)\.", lambda m: f"stages.{int(m[1]) - 1}."),
    (r"\.attn\.q_proxy_ln\.", ".attn.q_proxy_norm."), (r"\.attn\.p_ln\.", ".attn.mlp_proxy_norm."),
    (r"\.attn\.mlp_proxy\.0\.", ".attn.mlp_proxy_fc1."), (r"\.attn\.mlp_proxy\.2\.", ".attn.mlp_proxy_fc2."),
    (r"\.attn\.proxy_ln\.", ".attn.proxy_norm."), (r"\.attn\.qkv_proxy\.0\.", ".attn.qkv_proxy_norm."),
    (r"\.attn\.qkv_proxy\.1\.", ".attn.qkv_proxy."), (r"\.attn\.(gamma\d)$", r".attn.\1.scale"),
    (r"^(stages\.[01]\.\d+)\.(gamma\d)$", r"\1.\2.scale"), (r"^(stages\.[23]\.\d+)\.(gamma\d)$", r"\1.\2.scale"),
    (r"^(stages\.[23]\.\d+)\.attn\.", r"\1."),
    (r"\.mlp\.fc_proxy\.0\.", ".mlp_proxy_fc1."), (r"\.mlp\.fc_proxy\.2\.", ".mlp_proxy_fc2."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^norm(\d)\.", lambda m: f"norms.{int(m[1]) - 1}."),
    (r"^norm_proxy(\d)\.", lambda m: f"semantic_norms.{int(m[1]) - 1}."),
    (r"^post_network\.0\.attn\.", "class_block."), (r"^post_network\.0\.mlp\.", "class_block."),
    (r"^post_network\.0\.", "class_block."),
    (r"running_mean$", "mean"), (r"running_var$", "var"), (r"\.weight$", ".kernel"),
]


def perturb(module):
  with torch.no_grad():
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
      if "running_var" in name:
        t.copy_(torch.rand_like(t) + 0.5)
      elif t.dtype.is_floating_point:
        t.copy_(torch.randn_like(t) * 0.3)


def load(ours, state_dict):
  flat = dict(nnx.to_flat_state(nnx.state(ours)))
  used = set()
  for key, t in state_dict.items():
    if key.endswith("num_batches_tracked"):
      continue
    path = key
    for pattern, replacement in RULES:
      path = re.sub(pattern, replacement, path)
    path = tuple(int(p) if p.isdigit() else p for p in path.split("."))
    if path not in flat and path[-1] == "kernel":
      path = path[:-1] + ("scale",)  # a LayerNorm's or BatchNorm's weight
    assert path in flat, (key, path)
    a = t.detach().numpy()
    if a.ndim == 4:
      a = a.transpose(2, 3, 1, 0)  # conv OIHW → HWIO
    elif a.ndim == 2 and key.endswith(".weight"):
      a = a.T  # linear (out, in) → (in, out)
    flat[path][...] = jnp.asarray(a.reshape(flat[path].shape))
    used.add(path)
  assert not set(flat) - used, set(flat) - used


def compare(name, theirs, ours, size):
  perturb(theirs)
  theirs.eval()
  load(ours, theirs.state_dict())
  x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    ref = theirs(torch.tensor(x)).numpy()
  got = np.asarray(ours(jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
  print(f"{name}: logits {got.shape}, max |ours - official| {np.abs(got - ref).max():.2e}, "
        f"max |official| {np.abs(ref).max():.2e}")


torch.manual_seed(0)
with jax.default_matmul_precision("highest"):
  for token_label in (False, True):
    compare(f"dualvit_s 224², token_label={token_label}", official.dualvit_s(token_label=token_label),
            dualvit.DualViT(**dualvit.VARIANTS["dualvit_s"], token_label=token_label, rngs=nnx.Rngs(0)), 224)
  narrow = dict(stem_hidden_dim=8, embed_dims=[16, 32, 48, 64], num_heads=[2, 2, 4, 4], mlp_ratios=[4, 4, 3, 2, 2],
                depths=[2, 2, 2, 2])
  theirs = official.DualViT(**narrow, num_classes=10, token_label=False)
  theirs.pool = torch.nn.AvgPool2d((2, 2), stride=2)
  theirs.q = torch.nn.Parameter(torch.empty(16, 16))
  ours = dualvit.DualViT(stem_width=8, dims=(16, 32, 48, 64), num_heads=(2, 2, 4, 4), mlp_ratios=(4, 4, 3, 2),
                         depths=(2, 2, 2, 2), class_mlp_ratio=2, num_classes=10, img_size=32, semantic_pool=2,
                         token_label=False, rngs=nnx.Rngs(0))
  compare("narrow, 32², 2×2 pool (16 semantic tokens)", theirs, ours, 32)
