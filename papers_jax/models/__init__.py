"""Model registry: `create(name, **overrides)` with timm / HF names, `list_models()`.

Each family module registers its variants when imported; importing this package imports them all.

Compute accounting, the one place every caller (the trainer's logs and summary.json, tools/benchmark.py,
tools/sweep.py) goes through:
  forward_flops(model, **lengths)  analytic FLOPs of one forward pass per example, 2 per multiply-add,
                                   from the family's `forward_flops` next to its variant table (picked
                                   by the model's class); a sequence model takes its lengths as keyword
                                   arguments (default: the model's own maximum), which the task passes.
  embedding_params(model)          the parameters of the family's `EMBEDDINGS`: token, position and
                                   segment tables for the language models (Kaplan et al., 2020 leave
                                   them out of N), patch projection, position embedding and class /
                                   mask tokens for the vision models, none for a convnet; the rest are
                                   the non-embedding parameters of a scaling study.
Both are None for a model without a counter (the SSL wrappers: their task counts the traced step,
tasks/ssl/task.py). Each counter is tested against XLA's cost analysis in tests/test_flops.py and
tests/test_flops_families.py.
"""

import math

import jax
from flax import nnx

from papers_jax.models.registry import (Preprocessing, create, list_models, model_config, preprocessing,  # noqa: F401
                                       register)
from papers_jax.models import vit, vit_hybrid  # noqa: F401  (register their variants)
from papers_jax.models import mae  # noqa: F401  (registers its variants)
from papers_jax.models import mixer  # noqa: F401  (registers its variants)
from papers_jax.models import swin  # noqa: F401  (registers its variants)
from papers_jax.models import resnet  # noqa: F401  (registers its variants)
from papers_jax.models import gpt  # noqa: F401  (registers its variants)
from papers_jax.models import bert, fnet  # noqa: F401  (register their variants)
from papers_jax.models import clip  # noqa: F401  (registers its variants)
from papers_jax.models import video_clip  # noqa: F401  (registers its variants)
from papers_jax.models import transformer  # noqa: F401  (registers its variants)
from papers_jax.models import alexnet, inception, mixnet  # noqa: F401  (register their variants)
from papers_jax.models import whisper  # noqa: F401  (registers its variants)
from papers_jax.models import dcgan, vae  # noqa: F401  (register their variants)
from papers_jax.models import deformable_detr, detr  # noqa: F401  (register their variants)
from papers_jax.models import dlinear, patchtst  # noqa: F401  (register their variants)
from papers_jax.models import crossformer, informer  # noqa: F401  (register their variants)
from papers_jax.models import query_detector  # noqa: F401  (registers its variant)
from papers_jax.models import bevformer  # noqa: F401  (registers its variants)
from papers_jax.models import yolo  # noqa: F401  (registers its variants)
from papers_jax.models import danet, pkinet  # noqa: F401  (register their variants)
from papers_jax.models import cpc, wav2vec2  # noqa: F401  (register their variants)
from papers_jax.models import ddpm_unet, vqvae  # noqa: F401  (register their variants)
from papers_jax.models import ts2vec  # noqa: F401  (registers its encoder)
from papers_jax.models import comet, tfc  # noqa: F401  (register their encoders)
from papers_jax.models import timesurl  # noqa: F401  (registers its network)
from papers_jax.models import sam  # noqa: F401  (registers its variants)
from papers_jax.models import vilt  # noqa: F401  (registers its variant)
from papers_jax.models import deit, poolformer, vit_mpp  # noqa: F401  (register their variants)
from papers_jax.models import beit3  # noqa: F401  (registers its variants)
from papers_jax.models import blip  # noqa: F401  (registers its variants)
from papers_jax.models import albef  # noqa: F401  (registers its variants)
from papers_jax.models import word2vec  # noqa: F401  (registers word2vec, fasttext)
from papers_jax.models import elmo  # noqa: F401  (registers elmo_original)
from papers_jax.models import beit, igpt  # noqa: F401  (register their variants)
from papers_jax.models import groupvit, lseg  # noqa: F401  (register their variants)
from papers_jax.models import pointclip  # noqa: E402
from papers_jax.models import audioclip  # noqa: E402
from papers_jax.models import axial, sasa  # noqa: F401  (register their variants)
from papers_jax.models import dpt, setr  # noqa: F401  (register their variants)
from papers_jax.models import atd, dat, swinir  # noqa: F401  (super-resolution: register their variants)
from papers_jax.models import dualvit  # noqa: F401  (registers its variants)
from papers_jax.models import glip  # noqa: F401  (registers its variants)
from papers_jax.models import vild  # noqa: F401  (registers its detector)
from papers_jax.models import two_stream  # noqa: E402  (registers its variants)
from papers_jax.models import glide, unclip  # noqa: E402

# model class → its family module (with `forward_flops` and `EMBEDDINGS`).
FAMILIES = {
    vit.VisionTransformer: vit, vit_hybrid.HybridVisionTransformer: vit_hybrid, swin.SwinTransformer: swin,
    mixer.MlpMixer: mixer, mae.MaskedAutoencoderViT: mae, clip.CLIP: clip, resnet.ResNet: resnet, gpt.GPT: gpt,
    bert.BertModel: bert, bert.BertForPreTraining: bert, bert.BertForSequenceClassification: bert,
    bert.BertForTokenClassification: bert, bert.BertForQuestionAnswering: bert,
    fnet.FNetForPreTraining: fnet, fnet.FNetForSequenceClassification: fnet,
    transformer.Transformer: transformer, alexnet.AlexNet: alexnet, inception.GoogLeNet: inception,
    inception.InceptionV3: inception, mixnet.MixNet: mixnet, whisper.Whisper: whisper,
    patchtst.PatchTST: patchtst, patchtst.PatchTSTForPretraining: patchtst, dlinear.DLinear: dlinear,
    dlinear.NLinear: dlinear, danet.DANet: danet, pkinet.PKINet: pkinet,
    ts2vec.TS2VecEncoder: ts2vec, ts2vec.TS2VecClassifier: ts2vec,
    tfc.TFC: tfc, comet.COMETEncoder: comet,
    timesurl.TimesURL: timesurl,
    dcgan.GAN: dcgan, vae.VAE: vae, detr.DETR: detr, deformable_detr.DeformableDETR: deformable_detr,
    query_detector.QueryDetector: query_detector, ddpm_unet.DDPMUNet: ddpm_unet, vqvae.VQVAE: vqvae,
    wav2vec2.Wav2Vec2: wav2vec2, cpc.CPC: cpc,
    sam.SAM: sam,
    vilt.ViLT: vilt,
    beit3.BEiT3: beit3,
    blip.BLIP: blip,
    albef.ALBEF: albef,
    yolo.YOLOv1: yolo,
    informer.Informer: informer, crossformer.Crossformer: crossformer,
    poolformer.PoolFormer: poolformer, deit.DistilledVisionTransformer: deit,
    vit_mpp.MaskedPatchPredictionViT: vit_mpp,
    word2vec.Word2Vec: word2vec, elmo.ELMo: elmo,
    beit.BEiT: beit, igpt.ImageGPT: igpt,
    groupvit.GroupViT: groupvit, lseg.LSeg: lseg, dpt.DPT: dpt, setr.SETR: setr,
    video_clip.VideoCLIP: video_clip,
    pointclip.PointCLIP: pointclip,
    audioclip.AudioCLIP: audioclip,
    sasa.SAResNet: sasa, axial.AxialResNet: axial,
    swinir.SwinIR: swinir, dat.DAT: dat, atd.ATD: atd,
    dualvit.DualViT: dualvit,
    glip.GLIP: glip,
    vild.ViLDDetector: vild,
    two_stream.TwoStreamConvNet: two_stream,
    unclip.DiffusionPrior: unclip, glide.UnCLIPDecoder: glide, glide.ADMUNet: glide,
    bevformer.BEVFormer: bevformer,
}
FLOP_COUNTERS = {cls: family.forward_flops for cls, family in FAMILIES.items()}


def forward_flops(model, **lengths) -> float | None:
  """FLOPs of one forward pass per example (2 per multiply-add), or None for a model without a counter.
  `lengths`: the counter's keyword arguments (seq_len, predictions, source_len, target_len, count_padding)."""
  counter = FLOP_COUNTERS.get(type(model))
  return float(counter(model, **lengths)) if counter else None


def _size(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def embedding_params(model) -> int | None:
  """Parameters in the family's `EMBEDDINGS` (attribute paths; absent ones are skipped), or None for a
  model of no known family. A wrapper that names its backbones in `BACKBONES` (the SSL methods' model)
  counts theirs. Works on an abstract model."""
  family = FAMILIES.get(type(model))
  if family is None:
    backbones = [getattr(model, name, None) for name in getattr(type(model), "BACKBONES", ())]
    counts = [embedding_params(b) for b in backbones if b is not None]
    return sum(counts) if counts and None not in counts else None
  total = 0
  for path in family.EMBEDDINGS:
    node = model
    for name in path.split("."):
      node = getattr(node, name, None)
    if isinstance(node, nnx.Param):
      total += math.prod(node.shape)
    elif node is not None:  # a module: its parameters
      total += _size(nnx.state(node, nnx.Param))
  return total


def param_counts(model) -> dict:
  """{"params": every parameter, "non_embedding_params": less `embedding_params` (None without a family)}."""
  params = _size(nnx.state(model, nnx.Param))
  embedding = embedding_params(model)
  return {"params": params, "non_embedding_params": None if embedding is None else params - embedding}
