"""SAM's box prompt takes the single-mask output (the reference answers a box with `multimask_output=False`; a
point is ambiguous and takes the 3-mask output, the best of the 3): in training, a box's first round gives a
gradient to the single-mask token's hypernetwork only. (Points: the scenes smoke run and the demo, docs/sam.md.)"""

import os

import jax
import numpy as np
from flax import nnx

from papers_jax.core import config as config_lib
from papers_jax.tasks import promptable_segmentation as task_lib

TINY = dict(img_size=64, patch_size=8, embed_dim=16, depth=1, num_heads=1, global_attn_indexes=(0,), window_size=8,
            mlp_ratio=1.0, prompt_dim=16, mask_in_chans=4, decoder_depth=1, decoder_heads=1, decoder_mlp_dim=16,
            iou_head_hidden_dim=8)


def test_a_box_trains_the_single_mask_output():
  config = config_lib.load(os.path.join(os.path.dirname(__file__), "..", "configs", "sam", "scenes.py") + ":smoke=True")
  config.unlock()
  config.model.update(TINY)
  config.promptable_segmentation.update(rounds=1, mask_only_rounds=0, box_prob=1.0)
  task = task_lib.PromptableSegmentationTask(config)
  graphdef, params, rest = nnx.split(task.build_model(nnx.Rngs(0)), nnx.Param, ...)
  source = task.source("test")
  examples = [task.preprocess(train=False)(source[i], None) for i in range(2)]
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  grads = jax.jit(jax.grad(lambda p: task.make_loss_fn(graphdef)(p, rest, batch, jax.random.key(0))[0]))(params)
  hyper = nnx.State(grads)["mask_decoder"]["hypernetworks"]
  touched = [i for i in range(4) if any(np.abs(np.asarray(x)).max() > 0 for x in jax.tree.leaves(hyper[i]))]
  assert touched == [0]  # the 3-mask output's tokens get none
