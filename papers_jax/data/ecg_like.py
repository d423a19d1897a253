"""A generated ECG-like classification set with its patient → trial → sample hierarchy explicit, for COMET
(`data.name = "ecg_like"`).

sktime's bundled `mitdb` holds one MIT-BIH record (7,500 steps of one lead with per-step anomaly flags) and
no patient or record identity, so COMET's hierarchy cannot come from it; this set is generated instead, with
a fixed seed. `generate_ecg_like()` draws `patients` patients, half of them with a myocardial-infarction-like
label (1), each with `trials` recordings of `samples` heartbeats, each beat `length` steps of 3 leads:

  beat      the sum of five Gaussian waves (P, Q, R, S, T) at the patient's positions, widths and amplitudes,
            seen by each lead with the patient's lead gains (a heart axis);
  patient   heart axis, wave amplitudes (R ~ N(1, 0.2²)), widths and timing (heart-rate-like stretch);
  label 1   an ST-segment elevation of 0.08–0.2 (in R units) between S and T, in leads picked per patient,
            a deeper Q wave, and in half of the patients an inverted T wave: effects of the size of the
            differences between patients, so a classifier must separate them from patient identity;
  trial     a baseline wander (a slow sine of random phase), a gain drift of each lead, a noise level;
  sample    beat-to-beat timing jitter (±3 steps), 5% amplitude variation, white noise.

Splits are inter-patient (COMET's patient-independent setting): the first `train_patients` patients of a
fixed shuffle, labels balanced, train; the others test. Each channel is standardised with the train split's
mean and deviation. `source[i]` = {"series": (T, 3) float32, "label", "patient", "trial"} (int32; trial ids
are unique across patients).
"""

import functools

import numpy as np

from papers_jax.errors import DataError

ECG_LIKE = dict(patients=48, train_patients=32, trials=3, samples=6, length=96, seed=0)
# wave: (centre as a fraction of the beat, width in steps, amplitude)
WAVES = {"P": (0.2, 4.0, 0.15), "Q": (0.36, 1.5, -0.1), "R": (0.4, 1.8, 1.0), "S": (0.44, 1.8, -0.25),
         "T": (0.68, 7.0, 0.3)}


@functools.cache
def generate_ecg_like(patients: int = ECG_LIKE["patients"], trials: int = ECG_LIKE["trials"],
                      samples: int = ECG_LIKE["samples"], length: int = ECG_LIKE["length"],
                      seed: int = ECG_LIKE["seed"]):
  """(series (N, length, 3) float32, labels, patient ids, trial ids), N = patients · trials · samples, in
  patient-major order."""
  rng = np.random.default_rng(seed)
  t = np.arange(length, dtype=np.float64)
  labels = np.arange(patients) % 2
  series, ys, pids, tids = [], [], [], []
  for p in range(patients):
    axis = rng.uniform(-0.5, 1.2)  # heart axis (radians): each lead sees the waves with its own gain
    gains = np.array([np.cos(axis), np.cos(axis - np.pi / 3), np.cos(axis - 2 * np.pi / 3)]) + rng.normal(0, .1, 3)
    stretch = rng.uniform(0.85, 1.15)
    waves = {k: (c * stretch + rng.normal(0, 0.01), w * stretch * rng.uniform(0.8, 1.2), a * rng.normal(1, 0.2))
             for k, (c, w, a) in WAVES.items()}
    st_height = np.zeros(3)
    if labels[p]:
      leads = rng.random(3) < 0.6
      leads[rng.integers(3)] = True
      st_height = leads * rng.uniform(0.08, 0.2) * waves["R"][2]
      waves["Q"] = (waves["Q"][0], waves["Q"][1] * 1.5, waves["Q"][2] * rng.uniform(2.0, 3.0))
      if rng.random() < 0.5:
        waves["T"] = (waves["T"][0], waves["T"][1], -0.6 * waves["T"][2])
    for r in range(trials):
      wander_amp, wander_phase = rng.uniform(0.02, 0.15), rng.uniform(0, 2 * np.pi)
      lead_gain, noise = rng.normal(1, 0.08, 3), rng.uniform(0.01, 0.05)
      for _ in range(samples):
        shift = rng.integers(-3, 4)
        beat = np.zeros(length)
        for c, w, a in waves.values():
          beat += a * rng.normal(1, 0.05) * np.exp(-0.5 * ((t - c * length - shift) / w) ** 2)
        st_start, st_end = (waves["S"][0] * length + shift + 2, waves["T"][0] * length + shift - 4)
        st = 1 / (1 + np.exp(-(t - st_start))) * 1 / (1 + np.exp(t - st_end))  # a smooth plateau
        x = gains[None] * beat[:, None] + st[:, None] * st_height[None]
        x = x * lead_gain[None] + wander_amp * np.sin(2 * np.pi * t / (3 * length) + wander_phase)[:, None]
        series.append(x + rng.normal(0, noise, x.shape))
        ys.append(labels[p])
        pids.append(p)
        tids.append(p * trials + r)
  return (np.asarray(series, np.float32), np.asarray(ys, np.int32), np.asarray(pids, np.int32),
          np.asarray(tids, np.int32))


def split_patients(patients: int = ECG_LIKE["patients"], train_patients: int = ECG_LIKE["train_patients"],
                   seed: int = ECG_LIKE["seed"]) -> dict[str, np.ndarray]:
  """The patients of each split: a fixed shuffle of each label's patients (labels alternate by patient),
  half of the train patients of each label."""
  rng = np.random.default_rng(seed + 1)
  train = []
  for label in (0, 1):
    members = rng.permutation(np.arange(label, patients, 2))
    train.extend(members[:train_patients // 2])
  train = np.sort(np.asarray(train))
  return {"train": train, "test": np.setdiff1d(np.arange(patients), train)}


class ECGLikeSource:
  """A split of `generate_ecg_like()` (module docstring)."""

  def __init__(self, data_config, split: str):
    if data_config.name != "ecg_like":
      raise DataError(f"data.name={data_config.name!r}: this source reads 'ecg_like'")
    if split not in ("train", "test"):
      raise DataError(f"the ECG-like set has the splits 'train' and 'test', not {split!r}")
    x, labels, patients, trials = generate_ecg_like()
    members = split_patients()
    train_rows = np.isin(patients, members["train"])
    rows = np.isin(patients, members[split])
    mean, std = x[train_rows].reshape(-1, x.shape[2]).mean(0), x[train_rows].reshape(-1, x.shape[2]).std(0)
    self.series = ((x[rows] - mean) / std).astype(np.float32)
    self.labels, self.patients, self.trials = labels[rows], patients[rows], trials[rows]
    self.classes, self.padded_at_ends = ("normal", "mi_like"), False

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  @property
  def num_channels(self) -> int:
    return self.series.shape[2]

  @property
  def length(self) -> int:
    return self.series.shape[1]

  def __len__(self) -> int:
    return len(self.series)

  def __getitem__(self, i) -> dict:
    return {"series": self.series[i], "label": self.labels[i], "patient": self.patients[i],
            "trial": self.trials[i]}
