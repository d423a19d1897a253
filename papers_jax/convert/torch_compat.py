"""Importing timm / transformers next to a torchvision wheel that does not match CPU torch.

The only torchvision build on the registry is a CUDA one: importing it on CPU torch fails while
registering fake kernels for `torchvision::nms` / `qnms`, ops its native library would have
defined. Defining the two schemas first lets the import finish; nothing here calls them.
"""

import importlib

_torchvision_lib = None  # keeps the op definitions alive for the life of the process


def _define_torchvision_ops():
  global _torchvision_lib
  if _torchvision_lib is not None:
    return
  import torch
  try:
    torch.ops.torchvision.nms  # noqa: B018  (a working torchvision already defined it)
    _torchvision_lib = False
    return
  except (AttributeError, RuntimeError):
    pass
  lib = torch.library.Library("torchvision", "DEF")
  lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
  lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
  _torchvision_lib = lib


def import_timm():
  """Returns the `timm` module; call it (or `_define_torchvision_ops`) before importing transformers too."""
  _define_torchvision_ops()
  return importlib.import_module("timm")
