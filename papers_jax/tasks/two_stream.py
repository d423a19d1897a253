"""One stream of Two-Stream ConvNets (Simonyan & Zisserman 2014) on the moving-shapes clips:
`config.task = "two_stream"`, `config.two_stream.stream` "spatial" (an RGB frame) or "temporal" (a stack
of 2L TV-L1 flow channels, data/flow_clips.py). Each stream is trained alone as the paper's (§5); fusion
is done on their scores afterwards (tools/two_stream_eval.py).

Classification's loss, evaluation and model building (tasks/classification.py); only the inputs are this
task's. Training (§5 "Training"): a random frame (spatial) or flow-stack start (temporal) of a clip, a
random `crop`² crop and a random horizontal flip, which here mirrors the label (data/flow_clips.FLIP_LABEL:
moving left becomes moving right). The evaluation during training is one view a clip (the middle
position's centre crop); the paper's 25 positions × 10 crops are tools/two_stream_eval.py's.

Config section `two_stream`: stream, flow_length (L), num_frames (of a clip), crop, train_shots and
test_shots (clips of each class in the train / test split; their flow is cached on first use).
"""

import numpy as np

from papers_jax.data import flow_clips
from papers_jax.errors import ConfigError
from papers_jax.tasks.classification import ClassificationTask

RANGES = (("flow_length", "[1, inf)"), ("num_frames", "[2, inf)"), ("crop", "[8, inf)"), ("*_shots", "[0, inf)"))


class TwoStreamTask(ClassificationTask):

  def __init__(self, config):
    super().__init__(config)
    t = config.two_stream
    if t.stream not in flow_clips.STREAMS:
      raise ConfigError(f"two_stream.stream={t.stream!r}; choose one of {flow_clips.STREAMS}")
    self.stream, self.length, self.crop = t.stream, int(t.flow_length), int(t.crop)
    chans = 3 if self.stream == "spatial" else 2 * self.length
    if config.model.get("in_chans") != chans:
      raise ConfigError(f"the {self.stream} stream takes {chans} channels; "
                        f"model.in_chans={config.model.get('in_chans')}")
    if flow_clips.num_positions(self.stream, int(t.num_frames), self.length) < 1:
      raise ConfigError(f"{t.num_frames} frames hold no stack of {self.length} flow fields")

  def source(self, split: str):
    t = self.config.two_stream
    shots = t.train_shots if split == self.config.data.train_split else t.test_shots
    return flow_clips.TwoStreamSource(split, stream=self.stream, num_frames=t.num_frames,
                                      size=self.config.data.image_size, shots=shots, seed=t.seed)

  def preprocess(self, train: bool):
    stream, length, crop = self.stream, self.length, self.crop
    frames = int(self.config.two_stream.num_frames)
    positions = flow_clips.num_positions(stream, frames, length)

    def fn(example, rng):
      clip, label = example["image"], int(example["label"])
      h, w = clip.shape[1:3]
      if not train:  # the middle position's centre crop
        image = flow_clips.input_at(clip, stream, positions // 2, length)
        y, x = (h - crop) // 2, (w - crop) // 2
        return {"image": image[y:y + crop, x:x + crop], "label": np.int32(label)}
      image = flow_clips.input_at(clip, stream, int(rng.integers(positions)), length)
      y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
      image = image[y:y + crop, x:x + crop]
      if rng.random() < 0.5:
        image, label = flow_clips.hflip(image, stream), int(flow_clips.FLIP_LABEL[label])
      return {"image": np.ascontiguousarray(image), "label": np.int32(label)}

    return fn
