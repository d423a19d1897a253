"""Two-Stream ConvNets' test protocol and fusion (Simonyan & Zisserman 2014, §5 "Testing", §2 and §6
"Two-stream ConvNets"): 25 positions evenly spaced over a clip, 10 crops of each (4 corners + centre, and their
mirrors), the softmax scores averaged over the 250 views; the two streams fused by averaging their clip scores,
or by "a multi-class linear SVM [6] on stacked L2-normalised softmax scores" (§2; [6] is Crammer & Singer's
multi-class SVM, sklearn's `LinearSVC(multi_class="crammer_singer")`; one-vs-rest with `multi_class="ovr"`).

A mirrored crop of a motion clip shows the mirrored motion (data/flow_clips.py), so its scores are mapped
back to the original classes (`unflip`) before averaging.
"""

import numpy as np

from papers_jax.data import flow_clips

NUM_POSITIONS, NUM_CROPS = 25, 10


def clip_views(clip: np.ndarray, stream: str, length: int, crop: int, count: int = NUM_POSITIONS) -> np.ndarray:
  """One clip's frames (T, H, W, 3) or uint8 flow (T−1, H, W, 2) → its views (count·10, crop, crop, C),
  position-major: views[10·p + c] is crop c (0-4 unmirrored, 5-9 mirrored) of position p."""
  frames = len(clip) + (stream == "temporal")  # a clip of T frames has T − 1 flow fields
  positions = flow_clips.evenly_spaced(count, flow_clips.num_positions(stream, frames, length))
  return np.concatenate([flow_clips.ten_crops(flow_clips.input_at(clip, stream, int(p), length), crop, stream)
                         for p in positions])


def unflip(scores: np.ndarray, flip_label: np.ndarray = flow_clips.FLIP_LABEL) -> np.ndarray:
  """Scores (..., K) of a mirrored input → scores of the original's classes: class k of the original is
  class flip_label[k] of the mirror."""
  return scores[..., flip_label]


def clip_scores(view_probs: np.ndarray, flip_label: np.ndarray = flow_clips.FLIP_LABEL) -> np.ndarray:
  """Softmax scores of a clip's views (count·10, K), ordered as `clip_views` → the clip's score (K,)."""
  probs = view_probs.reshape(-1, NUM_CROPS, view_probs.shape[-1]).copy()
  probs[:, 5:] = unflip(probs[:, 5:], flip_label)
  return probs.mean(axis=(0, 1))


def l2_normalise(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fuse_average(spatial: np.ndarray, temporal: np.ndarray) -> np.ndarray:
  return (spatial + temporal) / 2


def svm_features(spatial: np.ndarray, temporal: np.ndarray) -> np.ndarray:
  """The SVM's input: each stream's softmax scores L2-normalised, then stacked (N, 2K)."""
  return np.concatenate([l2_normalise(spatial), l2_normalise(temporal)], axis=-1)


def fuse_svm(train_spatial, train_temporal, train_labels, spatial, temporal, *, c: float = 1.0,
             multi_class: str = "crammer_singer") -> np.ndarray:
  """Decision values (N, K) of a multi-class linear SVM fitted on the training clips' scores (`multi_class`:
  "crammer_singer", the paper's [6], or "ovr", one-vs-rest)."""
  from sklearn.svm import LinearSVC  # an optional dependency, only for this fusion
  svm = LinearSVC(C=c, multi_class=multi_class, max_iter=20000)
  svm.fit(svm_features(train_spatial, train_temporal), train_labels)
  return svm.decision_function(svm_features(spatial, temporal))


def fuse_svm_crossfit(spatial, temporal, labels, *, c: float = 1.0, folds: int = 2,
                      multi_class: str = "crammer_singer") -> np.ndarray:
  """SVM decision values of each clip from an SVM fitted on the other folds (the j-th clip of each class is in
  fold j mod `folds`): fusion weights learnt on held-out scores, not on the training clips' over-confident ones."""
  out = np.zeros(spatial.shape[:1] + (int(labels.max()) + 1,))
  fold = np.zeros(len(labels), np.int64)
  for k in np.unique(labels):
    fold[labels == k] = np.arange(np.sum(labels == k)) % folds
  for f in range(folds):
    out[fold == f] = fuse_svm(spatial[fold != f], temporal[fold != f], labels[fold != f], spatial[fold == f],
                              temporal[fold == f], c=c, multi_class=multi_class)
  return out


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(np.argmax(scores, axis=-1) == labels))
