"""Every shipped config runs end to end in `smoke` mode, offline and exactly as shipped.

Configs whose dataset must be prepared with TFDS (cifar10, imagenet2012, c4, ...) fall back in smoke
mode to generated images or bundled text by themselves, so the test needs no download and no
stand-in: the config, model, optimizer, precision and pipeline are the shipped ones.
"""

import glob
import json
import os

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from conftest import ROOT, load_config
from papers_jax import models, tasks
from papers_jax.core import config as config_lib, loop
from papers_jax.core import flops as flops_lib
from papers_jax.data import sources
from papers_jax.errors import ConfigError

CONFIGS = sorted(os.path.relpath(p, os.path.join(ROOT, "configs"))
                 for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
                 if not os.path.relpath(p, os.path.join(ROOT, "configs")).startswith("sweeps" + os.sep))  # sweep files


def make_image_folder(root, num_classes: int, size: int, channels: int = 3, per_class: int = 2):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for label in range(num_classes):
      os.makedirs(os.path.join(root, split, f"class_{label:03d}"), exist_ok=True)
      for i in range(per_class):
        pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, f"class_{label:03d}", f"{i}.png"))
  return root


def test_every_config_is_listed():
  assert {"vit/digits.py", "vit/cifar10.py", "vit/imagenet.py"} <= set(CONFIGS)


def test_load_takes_path_and_argument_and_names_a_bad_file(tmp_path):
  config = config_lib.load(os.path.join(ROOT, "configs", "vit", "imagenet.py") + ":variant=S/16")
  assert (config.model.name, config.data.image_size) == ("vit_small_patch16_224", 224)
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load(str(tmp_path / "missing.py"))
  (tmp_path / "empty.py").write_text("x = 1\n")
  with pytest.raises(ConfigError, match="no get_config"):
    config_lib.load(str(tmp_path / "empty.py"))


def test_smoke_configs_need_no_prepared_dataset():
  for name in CONFIGS:
    config = load_config(name, "smoke")
    assert not config.data.name.startswith("tfds:") and not config.data.data_dir, name


def test_folder_data_sets_the_number_of_classes(tmp_path):
  config = load_config("vit/imagenet.py", "smoke").unlock()
  config.data.name, config.data.data_dir = "folder", make_image_folder(str(tmp_path / "data"), num_classes=3, size=8)
  task = tasks.get_task(config.lock())
  assert task.num_classes == 3 and config.model.num_classes == 1000
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
  assert model.head.kernel.shape[-1] == 3


def check_smoke_run(config, summary, workdir):
  """What every shipped config's smoke run must show (test_clip.py's own run of clip/digits.py too)."""
  assert summary["steps"] == config.num_steps
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
  assert summary["eval/count"] > 0
  train = [r for r in rows if "loss" in r]
  assert train[0]["compile_s"] > 0 and summary["params"] > 0
  # The compute accounting of a scaling data point (core/flops.py).
  assert summary["examples_seen"] == summary["steps"] * config.batch_size and summary["wall_time_s"] > 0
  if config.task in ("lm", "text_finetune"):
    assert all(r["tokens_per_s"] > 0 for r in train)
    assert summary["tokens_seen"] > summary["examples_seen"]
  # Every family and task has a FLOP counter (tests/test_flops.py, tests/test_flops_families.py).
  assert summary["forward_flops_per_example"] > 0
  assert train[-1]["flops"] == pytest.approx(summary["train_flops"])
  assert summary["train_flops"] == pytest.approx(3 * summary["forward_flops_per_example"] * summary["examples_seen"])
  assert 0 < summary["non_embedding_params"] <= summary["params"]


# Configs whose smoke run, exactly as shipped, another test file makes and checks with check_smoke_run
# (and more): running them here too would train the same run twice.
RUN_ELSEWHERE = {"clip/digits.py": "tests/test_clip.py::test_digits_smoke_run_writes_its_outputs",
                 "detection/scenes_tiny.py": "tests/test_detection.py::test_detection_run_learns_and_sharded_equals_single_device",
                 "vilt/scenes_pretrain.py": "tests/test_vilt.py::test_pretrain_smoke_run_and_sharded_equals_single_device",
                 "yolo/scenes.py": "tests/test_yolo.py::test_yolo_run_evaluates_and_draws",
                 "deit/digits.py": "tests/test_deit.py::test_distillation_run_reads_and_keeps_the_teacher_frozen",
                 "albef/scenes_pretrain.py":
                 "tests/test_albef.py::test_pretrain_smoke_run_and_sharded_equals_single_device"}


# Configs whose smoke run only `make test-full` (PAPERS_JAX_FULL_PARITY=1) makes; docs/testing.md records its
# last result. In `make test` each still validates, reads its data offline and builds its model abstractly
# (test_heavy_config_builds), and what its smoke run would train is trained by another config:
# - the classic CNNs compile a full-depth network (Inception-v3's ~100 convolutions) for 50–90 s each on 2
#   cores; their forward is checked against torchvision and timm in tests/test_cnn_classics.py;
# - a paper's recipe whose model and task a bundled-data config of the same family smoke-trains (the value
#   is the one that does), or, for DETR and Cityscapes, whose models the parity tests run and whose task
#   another config trains;
# - five of the ten SSL methods, whose losses tests/test_ssl_objectives.py checks and whose task state
#   tests/test_ssl_task.py steps (the value: the method closest in machinery), and three more configs
#   whose model and task a sibling trains.
FULL_ONLY = {
    # Demo configs whose model has a parity test (timm / torchvision / HF) and whose task another config
    # smoke-trains (CI time; moved 2026-12-07 after their last default-suite pass at integ 80d8543).
    "mixer/digits.py": "vit/digits.py", "swin/digits.py": "vit/digits.py", "poolformer/digits.py": "vit/digits.py",
    "alexnet/digits.py": "resnet/digits.py", "fnet/python_docs.py": "bert/python_docs.py",
    "mae/finetune.py": "vit/digits.py", "mae/linprobe.py": "vit/digits.py",
    "googlenet/imagenet.py": "", "inception/digits.py": "", "inception/imagenet.py": "", "mixnet/imagenet.py": "",
    "alexnet/imagenet.py": "resnet/digits.py", "resnet/imagenet.py": "resnet/digits.py",
    "swin/imagenet.py": "vit/digits.py", "mixer/imagenet.py": "vit/digits.py", "mae/pretrain.py": "mae/digits.py",
    "clip/paper.py": "clip/digits.py", "gpt/gpt2.py": "gpt/python_docs.py", "bert/wikipedia.py": "bert/python_docs.py",
    "gpt/gpt3.py": "gpt/python_docs.py", "clip/scenes.py": "clip/digits.py",
    "word2vec/python_docs.py": "", "fasttext/python_docs.py": "",  # tests/test_word2vec.py: the task's losses
    "simcse/sentence_pairs.py": "",  # tests/test_simcse.py: the task's losses on the model's embeddings
    "elmo/python_docs.py": "",  # tests/test_elmo.py: the biLM's loss, layers and directions
    "groupvit/scenes.py": "", "lseg/scenes.py": "",  # tests/test_clip_family.py: models, losses, tasks' pieces
    "audioclip/sounds.py": "",  # tests/test_audioclip.py: loss, FBSP, pooling, parameter count, data
    "fnet/c4.py": "bert/python_docs.py", "transformer/wmt14.py": "transformer/numbers.py",
    "gan/dcgan_mnist.py": "gan/dcgan_digits.py", "gan/dcgan_cifar10.py": "gan/dcgan_digits.py",
    "vae/mnist.py": "vae/digits.py", "vae/cifar10.py": "vae/digits.py", "ddpm/cifar10.py": "",
    "patchtst/etth1.py": "patchtst/ett_like.py", "dlinear/etth1.py": "patchtst/ett_like.py",
    "wav2vec2/librispeech_base.py": "wav2vec2/spoken_digits_pretrain.py",
    "detr/coco.py": "detection/scenes_tiny.py", "deformable_detr/coco.py": "detection/scenes_tiny.py",
    "detr/scenes.py": "detection/scenes_tiny.py", "deformable_detr/scenes.py": "detection/scenes_tiny.py",
    "yolo/voc.py": "yolo/scenes.py",
    "danet/cityscapes.py": "",
    "setr/shapes.py": "", "dpt/shapes.py": "",  # tests/test_dense_prediction.py: models, loss with aux heads
    "ssl/moco_v1.py": "ssl/simclr.py", "ssl/moco_v2.py": "ssl/simclr.py", "vit/imagenet.py": "vit/digits.py", "ssl/byol.py": "ssl/simsiam.py", "ssl/instdisc.py": "ssl/simclr.py",
    "ssl/swav.py": "ssl/simsiam.py", "dlinear/ett_like.py": "patchtst/ett_like.py",
    "resnet/digits_cam.py": "resnet/digits.py", "resnet/cifar10.py": "resnet/digits.py",
    "vit/cifar10.py": "vit/digits.py", "vilt/scenes_vqa.py": "vilt/scenes_pretrain.py",
    "poolformer/imagenet.py": "vit/digits.py", "deit/imagenet.py": "",
    "ts2vec/finetune.py": "", "slots/ucr.py": "", "ts2vec/ucr.py": "",  # tests/test_ts2vec.py: losses, encoder
    "tfc/ucr.py": "", "comet/ucr.py": "", "comet/ecg_like.py": "",  # tests/test_tfc.py, tests/test_comet.py
    "timesurl/ucr.py": "", "timesurl/forecast.py": "",  # tests/test_timesurl.py: the losses, the task's loss
    "ts2vec/forecast.py": "",  # tests/test_ridge_forecast.py: the ridge protocol and its windows
    "ssl/dino.py": "ssl/simsiam.py", "ssl/cmc.py": "ssl/simclr.py", "ssl/moco_v3.py": "ssl/simclr.py",
    "danet/shapes.py": "",  # tests/test_danet.py: the attention modules and the model
    "ssl/rotation.py": "ssl/simclr.py", "ssl/jigsaw.py": "ssl/simclr.py",  # tests/test_pretext.py: the objectives
    "ssl/relative_position.py": "ssl/simclr.py", "ssl/colorization.py": "ssl/simclr.py",
    "video_clip/clip4clip.py": "", "video_clip/actionclip.py": "",  # tests/test_video_clip.py: losses, modules
    "two_stream/moving_shapes.py": "",  # tests/test_two_stream.py: counts, flow inputs, 10 crops, fusions
    "pointclip/shapes.py": "",  # tests/test_pointclip.py: projection, adapter, loss, zero-shot readout
    "bevformer/scenes.py": "",  # tests/test_bevformer.py: SCA, TSA, alignment, loss, mAP, simulator
    "vild/scenes.py": "",  # tests/test_vild.py: RoIAlign, the region heads, the losses, the task's targets
    "depthclip/scenes.py": "clip/digits.py",  # the clip task; tests/test_depthclip.py: readout, metrics, scenes
    "self_training/digits.py": "",  # tests/test_self_training.py: the split, the pseudo-labels, a saved teacher
    "sam/scenes.py": "", "sam/sa1b.py": "",  # SAM's forward: HF parity in tests/test_sam.py
    "informer/ett.py": "patchtst/ett_like.py", "informer/ett_like.py": "patchtst/ett_like.py",
    "crossformer/ett.py": "patchtst/ett_like.py", "crossformer/ett_like.py": "patchtst/ett_like.py",
    # vit/digits.py's model and task on the canvas data (tests/test_interpret.py checks the canvases);
    # BERT's classification fine-tuning (tests/test_text_finetune.py builds its Trainer, tracing its step).
    "vit/digits_canvas.py": "vit/digits.py", "bert/finetune_topics.py": "bert/finetune_numbers.py",
    # The linear protocol: tests/test_ssl_task.py steps this config's Trainer (init_from an SSL run, frozen encoder).
    "ssl/moco_linear.py": "vit/digits.py",
    "vqvae/prior_digits.py": "vqvae/digits.py",  # tests/test_code_prior.py: the prior's loss, causality, sampler
    "beit3/tokenizer.py": "vqvae/digits.py",  # the BEiT-3 configs: tests/test_beit3.py traces each task
    "beit3/scenes_pretrain.py": "", "beit3/nlvr.py": "", "beit3/nlvr_colours.py": "", "beit3/scenes_captioning.py": "",
    "beit3/nlvr_one_hop.py": "", "beit3/nlvr_mixed.py": "",  # its sources: test_beit3.py's mixed_templates test
    "blip/scenes_pretrain.py": "", "blip/scenes_vqa.py": "", "blip/scenes_capfilt.py": "",  # tests/test_blip.py
    "albef/paper.py": "albef/scenes_pretrain.py", "albef/scenes_retrieval.py": "albef/scenes_pretrain.py",
    # The MIM baselines: tests/test_mim.py traces each task's loss, tests/test_beit.py / test_igpt.py the models.
    "beit/digits.py": "", "igpt/digits.py": "", "mae/digits_dae.py": "mae/digits.py",
    # CI time (2026-12-07, sixth session): tests/test_ddpm.py checks the UNet against diffusers, the losses and
    # the samplers, tests/test_generative_eval.py the FID path; the CTC model against HF's Wav2Vec2ForCTC in
    # tests/test_speech_benchmark.py, its encoder through the loop in wav2vec2/spoken_digits_pretrain.py.
    "ddpm/digits.py": "", "wav2vec2/spoken_numbers_ctc.py": "wav2vec2/spoken_digits_pretrain.py",
    # tests/test_attention_resnets.py: the layers against numpy loops; vit/digits.py: the task and recipe.
    "sasa/digits.py": "vit/digits.py", "axial/digits.py": "vit/digits.py",
    # tests/test_super_resolution.py: the metrics, the data, the attentions, the task's eval step and loss trace.
    "super_resolution/photos.py": "", "super_resolution/div2k.py": "",
    # tests/test_dualvit.py: the semantic pathway and blocks against numpy, the counts, the FLOP counter and the
    # named features; vit/digits.py: the task and recipe this config loads.
    "dualvit/digits.py": "vit/digits.py",
    # tests/test_glip.py: the losses and X-MHA against numpy, the prompts, the task's loss traced on a smoke batch.
    "glip/scenes.py": "",
    # tests/test_unclip.py: the prior (against diffusers' PriorTransformer), the UNet's context attention, the
    # losses, guidance and samplers; its smoke run (both stages and tools/unclip_sample.py) in docs/testing.md.
    "unclip/scenes.py": "",
}
FULL = bool(os.environ.get("PAPERS_JAX_FULL_PARITY"))

# The smoke runs are split over two files (this one and tests/test_configs_more.py), so that the two test
# workers of `make test` (pytest-xdist, one file per worker) share them.
SMOKE = [c for c in CONFIGS if c not in RUN_ELSEWHERE]
SMOKE_HERE, SMOKE_THERE = SMOKE[0::2], SMOKE[1::2]


def run_smoke(name, tmp_path):
  if name in FULL_ONLY and not FULL:
    pytest.skip(f"make test-full trains it; {FULL_ONLY[name] or 'tests/test_cnn_classics.py'} covers its model "
                "and task, test_heavy_config_builds the rest")
  config = load_config(name, "smoke")
  summary = loop.train(config, str(tmp_path / "run"))
  check_smoke_run(config, summary, str(tmp_path / "run"))


@pytest.mark.parametrize("name", SMOKE_HERE)
def test_config_smoke_run(name, tmp_path):
  run_smoke(name, tmp_path)


def test_full_only_configs_name_a_config_whose_smoke_run_runs():
  for name, covered_by in FULL_ONLY.items():
    assert name in CONFIGS and (not covered_by or (covered_by in CONFIGS and covered_by not in FULL_ONLY)), name


@pytest.mark.parametrize("name", sorted(FULL_ONLY))
def test_heavy_config_builds(name):
  """The configs of FULL_ONLY as shipped, short of compiling: the config validates, its data source
  reads offline in smoke mode (through the task's own source where it has one) and its model builds
  (abstractly), with the FLOP counter where its family has one."""
  config = load_config(name, "smoke")
  _, task = loop.check_config(config)
  model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(params=0)))
  flops = flops_lib.forward_flops(model, task)
  assert flops is None or flops > 0
  split = config.data.train_split
  source = task.source(split) if hasattr(task, "source") else sources.get_source(config.data, split)
  assert len(source) > 0
