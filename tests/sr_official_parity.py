"""Forward parity of our DAT and ATD with the official PyTorch modules (random weights, every parameter and
BatchNorm statistic perturbed), run by hand: the official code is not vendored here.

  mkdir -p /tmp/off && cp <zhengchen1999/DAT>/basicsr/archs/dat_arch.py \
      <LabShuHangGU/Adaptive-Token-Dictionary>/basicsr/archs/atd_arch.py /tmp/off/
  # plus stubs for their imports: basicsr.archs.arch_util (to_2tuple, trunc_normal_), basicsr.utils.registry
  # (ARCH_REGISTRY.register()), fairscale.nn.checkpoint_wrapper (identity)
  PYTHONPATH=$PWD:/tmp/off python tests/sr_official_parity.py

Last run (docs/super_resolution.md): DAT 1645c64 and ATD d25fd84, max |ours − official| 3.9e-3 on outputs of
scale 2e3 (DAT), 1e-4 / 69 (DAT-light layout), 1.1e-3 / 867 (ATD), 1.5e-5 / 21 (ATD-light layout), float32.
ATD's category sort is made stable on the torch side (our choice; torch's `sort(stable=False)` is unspecified).
"""
import re, sys, types, collections.abc
from itertools import repeat
import numpy as np, torch
timm = types.ModuleType("timm"); tm = types.ModuleType("timm.models"); tl = types.ModuleType("timm.models.layers")
tl.DropPath = lambda p: torch.nn.Identity(); tl.trunc_normal_ = lambda t, std=1.0: t
tl.to_2tuple = lambda x: x if isinstance(x, collections.abc.Iterable) else tuple(repeat(x, 2))
sys.modules.update({"timm": timm, "timm.models": tm, "timm.models.layers": tl})
import atd_arch, dat_arch
_sort = torch.sort
atd_arch.torch.sort = lambda x, dim=-1, stable=False: _sort(x, dim=dim, stable=True)  # our choice: a stable sort
import jax, jax.numpy as jnp
from flax import nnx
from papers_jax import models

torch.manual_seed(0)

def perturb(m):
  with torch.no_grad():
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
      if "relative_position_index" in name or "rpe_biases" in name or "attn_mask" in name: continue
      if "running_var" in name: t.copy_(torch.rand_like(t) + 0.5)
      elif t.dtype.is_floating_point: t.copy_(torch.randn_like(t) * 0.3)

def load(ours, sd, rules):
  flat = dict(nnx.to_flat_state(nnx.state(ours)))
  used = set()
  for key, t in sd.items():
    if "relative_position_index" in key or "rpe_biases" in key or "attn_mask" in key or "num_batches" in key: continue
    path = key
    for pat, rep in rules: path = re.sub(pat, rep, path)
    path = tuple(int(p) if p.isdigit() else p for p in path.split("."))
    assert path in flat, (key, path)
    a = t.detach().numpy()
    target = flat[path]
    if a.ndim == 4: a = a.transpose(2, 3, 1, 0)           # conv OIHW -> HWIO
    elif a.ndim == 2 and key.endswith(".weight"): a = a.T  # linear (out, in) -> (in, out)
    a = a.reshape(target.shape)
    target[...] = jnp.asarray(a); used.add(path)
  missing = set(flat) - used
  assert not missing, missing

def dat_rules(direct=False):
  return ([(r"^upsample\.0\.", "upsample.upsample.")] if direct else []) + [
    (r"^before_RG\.1\.", "before_rg."),
    (r"attns\.(\d)\.pos\.pos_proj", r"attns.\1.pos.pos_proj"),
    (r"pos\.pos([123])\.0\.weight", lambda m: f"pos.norms.{int(m[1]) - 1}.scale"),
    (r"pos\.pos([123])\.0\.bias", lambda m: f"pos.norms.{int(m[1]) - 1}.bias"),
    (r"pos\.pos([123])\.2\.", lambda m: f"pos.fcs.{int(m[1]) - 1}."),
    (r"dwconv\.0\.", "dwconv.conv."), (r"dwconv\.1\.", "dwconv.bn."),
    (r"channel_interaction\.1\.", "channel_interaction.conv1."),
    (r"channel_interaction\.2\.", "channel_interaction.bn."),
    (r"channel_interaction\.4\.", "channel_interaction.conv2."),
    (r"spatial_interaction\.0\.", "spatial_interaction.conv1."),
    (r"spatial_interaction\.1\.", "spatial_interaction.bn."),
    (r"spatial_interaction\.3\.", "spatial_interaction.conv2."),
    (r"^layers\.(\d+)\.conv\.([024])\.", lambda m: f"layers.{m[1]}.conv.conv{int(m[2]) // 2 + 1}."),
    (r"^conv_after_body\.([024])\.", lambda m: f"conv_after_body.conv{int(m[1]) // 2 + 1}."),
    (r"^layers\.(\d+)\.conv\.(weight|bias)", r"layers.\1.conv.conv.\2"),
    (r"^conv_after_body\.(weight|bias)", r"conv_after_body.conv.\1"),
    (r"^conv_before_upsample\.0\.", "upsample.conv_before_upsample."),
    (r"^upsample\.(\d+)\.", lambda m: f"upsample.upsample.{int(m[1]) // 2}."),
    (r"^conv_last\.", "upsample.conv_last."),
    (r"(norm\d?|before_rg|sg\.norm|\.norm)\.weight$", r"\1.scale"),
    (r"bn\.weight$", "bn.scale"), (r"running_mean$", "mean"), (r"running_var$", "var"),
    (r"\.weight$", ".kernel"),
  ]

def atd_rules(direct=False):
  return ([(r"^upsample\.0\.", "upsample.upsample.")] if direct else []) + [
    (r"^patch_embed\.norm\.", "patch_norm."),
    (r"residual_group\.layers", "layers"), (r"residual_group\.td$", "td"),
    (r"attn_win\.relative_position_bias_table", "relative_position_bias_table"), (r"attn_win\.proj\.", "proj_win."),
    (r"attn_atd\.scale$", "td_scale"), (r"attn_atd\.", ""), (r"attn_aca\.proj\.", "proj_aca."),
    (r"attn_aca\.logit_scale", "logit_scale"), (r"convffn\.dwconv\.depthwise_conv\.0\.", "dwconv."), (r"convffn\.", ""),
    (r"norm3\.weight$", "norm3_scale"), (r"norm3\.bias$", "norm3_bias"),
    (r"^layers\.(\d+)\.conv\.([024])\.", lambda m: f"layers.{m[1]}.conv.conv{int(m[2]) // 2 + 1}."),
    (r"^conv_after_body\.([024])\.", lambda m: f"conv_after_body.conv{int(m[1]) // 2 + 1}."),
    (r"^layers\.(\d+)\.conv\.(weight|bias)", r"layers.\1.conv.conv.\2"),
    (r"^conv_after_body\.(weight|bias)", r"conv_after_body.conv.\1"),
    (r"^conv_before_upsample\.0\.", "upsample.conv_before_upsample."),
    (r"^upsample\.(\d+)\.", lambda m: f"upsample.upsample.{int(m[1]) // 2}."),
    (r"^conv_last\.", "upsample.conv_last."),
    (r"(norm\d?|patch_norm)\.weight$", r"\1.scale"),
    (r"\.weight$", ".kernel"),
  ]

MEAN = np.array([0.4488, 0.4371, 0.4040], np.float32)
def compare(name, tmodel, ours, rules, size):
  perturb(tmodel); tmodel.eval()
  load(ours, tmodel.state_dict(), rules)
  x = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
  with torch.no_grad(): ref = tmodel(torch.tensor(x)).numpy().transpose(0, 2, 3, 1)
  got = np.asarray(ours(jnp.asarray(x.transpose(0, 2, 3, 1) - MEAN), train=False)) + MEAN
  print(name, got.shape, ref.shape, "max abs diff", np.abs(got - ref).max(), "ref scale", np.abs(ref).max())

with jax.default_matmul_precision("highest"):
  kw = dict(embed_dim=60, depths=(2, 2), num_heads=(2, 2), split_size=(4, 8), expansion_factor=2.0)
  t = dat_arch.DAT(upscale=2, img_size=16, embed_dim=60, depth=[2, 2], num_heads=[2, 2], split_size=[4, 8],
                   expansion_factor=2.0, resi_connection="1conv", upsampler="pixelshuffle")
  o = models.create("dat", img_size=16, upscale=2, rngs=nnx.Rngs(0), upsampler="pixelshuffle", resi_connection="1conv",
                    **kw)
  compare("dat 1conv pixelshuffle 16x16", t, o, dat_rules(), 16)
  t = dat_arch.DAT(upscale=2, img_size=16, embed_dim=60, depth=[4], num_heads=[2], split_size=[4, 8],
                   expansion_factor=2.0, resi_connection="3conv", upsampler="pixelshuffledirect")
  o = models.create("dat_light", img_size=12, upscale=2, rngs=nnx.Rngs(0), embed_dim=60, depths=(4,), num_heads=(2,),
                    split_size=(4, 8))
  compare("dat_light 3conv direct 12x12 (padded)", t, o, dat_rules(True), 12)
  akw = dict(embed_dim=24, depths=(2, 2), num_heads=(2, 2), window_size=8, category_size=32, num_tokens=8,
             reducted_dim=4, convffn_kernel_size=3, mlp_ratio=2.0)
  tkw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in akw.items()}
  t = atd_arch.ATD(upscale=2, img_size=16, upsampler="pixelshuffle", **tkw)
  o = models.create("atd", img_size=16, upscale=2, rngs=nnx.Rngs(0), **akw)
  compare("atd pixelshuffle 16x16", t, o, atd_rules(), 16)
  t = atd_arch.ATD(upscale=2, img_size=12, upsampler="pixelshuffledirect", **tkw)
  o = models.create("atd_light", img_size=12, upscale=2, rngs=nnx.Rngs(0), **akw)
  compare("atd_light direct 12x12 (mirror-padded to 16)", t, o, atd_rules(True), 12)
