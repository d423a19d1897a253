"""Does a pre-trained ViLT use the image? Its eval metrics (MLM accuracy, ITM) on the vqa_scenes test
captions with each caption's own image, then with another scene's image (scene i + 7).

  PYTHONPATH=$PWD python tools/vilt_mlm_image_probe.py runs/vilt_pretrain/checkpoints/500/state

Equal MLM accuracy both ways means the masked words are predicted from the text alone.
"""

import sys

from papers_jax.core import config as config_lib, loop


class OtherImages:
  """`source` with example i's image replaced by example (i + shift)'s."""

  def __init__(self, source, shift: int):
    self.source, self.shift = source, shift

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    example = dict(self.source[i])
    example["image"] = self.source[(i + self.shift) % len(self.source)]["image"]
    return example


def main(checkpoint: str, config_path: str = "configs/vilt/scenes_pretrain.py"):
  config = config_lib.load(config_path).unlock()
  config.init_from, config.init_skip = checkpoint, ()
  config.vl.retrieval_images = 0
  trainer = loop.Trainer(config, "/nonexistent-workdir-unused")
  source = trainer.task.source(config.data.eval_split)
  for name, src in (("own image", source), ("another scene's image", OtherImages(source, 7))):
    metrics = trainer.eval_step_metrics(trainer.state, src)
    print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
  main(*sys.argv[1:])
