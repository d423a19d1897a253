"""Time series, offline: forecasting series and UCR/UEA classification sets.

Forecasting (`config.task = "forecast"`, `data.name`):
  "ett_like"            `generate_ett_like()`: 7 hourly channels with known structure (below), 20 months.
  "statsmodels:<name>"  a series bundled in statsmodels: co2 (weekly, 1 channel, the 59 missing weeks
                        filled by linear interpolation), elec_equip (monthly, 1), sunspots (yearly, 1),
                        macrodata (quarterly, its 12 numeric columns).
  "csv"                 the ETT / Weather / Electricity layout of the papers' benchmark files: a header,
                        then one row per time step, the first column the date, the others the channels
                        (`data.path`, e.g. ETTh1.csv).

Splits are chronological (`data.layout`):
  "ett_hour"    12 / 4 / 4 months of 30 days of hours (ETTh1, ETTh2), as Informer, DLinear and PatchTST
                split them; rows after the 20th month are not used, as in those codebases.
  "ett_minute"  the same months in 15-minute steps (ETTm1, ETTm2).
  "ratio"       70 % / 10 % / 20 % of the rows (Weather, Electricity, Traffic and every other series).
Each channel is standardised with the mean and standard deviation (ddof 0) of the train rows only. A
window is `past` = rows [t - L, t) and `future` = rows [t, t + H); a split holds every t (stride 1)
whose future lies inside the split's rows, and whose past may reach back into the split before it, as
the papers' loaders do (the first train window starts at t = L).

`generate_ett_like` builds, with a fixed seed, 14,400 hourly rows (20 × 30 × 24: the ett_hour split is
exactly 12/4/4 months) of 7 channels named after ETT's (HUFL, HULL, MUFL, MULL, LUFL, LULL, OT):
  - a common slow trend: a smoothed random walk (a one-week moving average of Gaussian steps) plus a
    yearly sine;
  - a daily cycle (period 24) and a weekly cycle (period 168, weekdays against weekends), each channel
    with its own amplitude and phase;
  - cross-channel lags: MUFL follows HUFL 3 hours later, LUFL follows HUFL 6 hours later, and OT (the
    oil temperature) is a 12-hour moving average of the mean of the three "useful load" channels
    delayed by 4 hours;
  - noise: AR(1) per channel (φ = 0.7) with channel-specific scale.
`ETT_LIKE_STRUCTURE` records these numbers (tests/test_timeseries.py checks the lags against the data).

Classification (UCR/UEA `.ts` files bundled in the sktime wheel, for the representation-learning
task): `read_ts(path)` parses the format (header lines, `@data`, one series per line, dimensions
separated by ':', the label last) into float32 (N, channels, length) arrays, unequal lengths padded
at the end with NaN; `ucr_uea(name, split)` reads <sktime>/datasets/data/<name>/<name>_<SPLIT>.ts.
"""

import csv
import functools
import importlib.util
import os

import numpy as np

from papers_jax.errors import DataError

LAYOUTS = ("ett_hour", "ett_minute", "ratio")
SPLITS = ("train", "val", "test")
ETT_NAMES = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
ETT_LIKE_STRUCTURE = dict(
    hours=20 * 30 * 24, seed=0, periods=(24, 168), lags={"MUFL": ("HUFL", 3), "LUFL": ("HUFL", 6)},
    ot=dict(sources=("HUFL", "MUFL", "LUFL"), delay=4, window=12), ar_phi=0.7)
STATSMODELS = {  # name: (csv file, the columns to read, the series' seasonal period)
    "co2": ("co2/co2.csv", ("co2",), 52),
    "elec_equip": ("elec_equip/elec_equip.csv", None, 12),
    "sunspots": ("sunspots/sunspots.csv", ("SUNACTIVITY",), 11),
    "macrodata": ("macrodata/macrodata.csv", ("realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi",
                                              "m1", "tbilrate", "unemp", "pop", "infl", "realint"), 4),
}
UCR_UEA = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels")


# ----------------------------------------------------------------------------- the generated set


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
  """Trailing mean over `window` rows (the first rows average what exists)."""
  c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), x]), axis=0)
  idx = np.arange(1, len(x) + 1)
  lo = np.maximum(idx - window, 0)
  return (c[idx] - c[lo]) / (idx - lo).reshape((-1,) + (1,) * (x.ndim - 1))


def _delay(x: np.ndarray, lag: int) -> np.ndarray:
  """x shifted `lag` rows later, the first rows repeating x[0]."""
  return np.concatenate([np.repeat(x[:1], lag, axis=0), x[:len(x) - lag]])


@functools.cache
def generate_ett_like(seed: int = 0, hours: int = ETT_LIKE_STRUCTURE["hours"]) -> np.ndarray:
  """float32 (hours, 7): the ETT-like series of the module docstring; the same array for the same seed."""
  rng = np.random.default_rng(seed)
  t = np.arange(hours, dtype=np.float64)
  trend = _moving_average(np.cumsum(rng.normal(0, 0.02, hours)), 168) + 0.8 * np.sin(2 * np.pi * t / (365 * 24))
  weekday = ((t // 24) % 7 < 5).astype(np.float64)
  channels = {}
  for name in ("HUFL", "HULL", "LULL", "MULL"):
    daily_amp, weekly_amp = rng.uniform(0.5, 2.0), rng.uniform(0.3, 1.0)
    phase = rng.uniform(0, 2 * np.pi)
    daily = np.sin(2 * np.pi * t / 24 + phase) + 0.3 * np.sin(4 * np.pi * t / 24 + 2 * phase)
    channels[name] = rng.uniform(0.5, 1.5) * trend + daily_amp * daily + weekly_amp * (weekday - 5 / 7)
  for name, (source, lag) in ETT_LIKE_STRUCTURE["lags"].items():
    channels[name] = rng.uniform(0.6, 1.2) * _delay(channels[source], lag)
  phi = ETT_LIKE_STRUCTURE["ar_phi"]
  for name in list(channels):
    eps = rng.normal(0, rng.uniform(0.1, 0.3), hours)
    noise = np.zeros(hours)
    for i in range(1, hours):  # AR(1)
      noise[i] = phi * noise[i - 1] + eps[i]
    channels[name] = channels[name] + noise
  ot = ETT_LIKE_STRUCTURE["ot"]
  load = np.mean([channels[s] for s in ot["sources"]], axis=0)
  channels["OT"] = 10 + 3 * _moving_average(_delay(load, ot["delay"]), ot["window"]) + rng.normal(0, 0.1, hours)
  return np.stack([channels[n] for n in ETT_NAMES], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- files


def _package_dir(package: str) -> str:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise DataError(f"the package {package!r} is not installed; install it (pip install {package}) for its "
                    "bundled data")
  return spec.submodule_search_locations[0]


def _interpolate_missing(values: np.ndarray) -> np.ndarray:
  """Linear interpolation of NaNs per channel (ends: the nearest value)."""
  out = values.copy()
  rows = np.arange(len(out))
  for c in range(out.shape[1]):
    bad = np.isnan(out[:, c])
    if bad.all():
      raise DataError(f"channel {c} holds no number")
    if bad.any():
      out[bad, c] = np.interp(rows[bad], rows[~bad], out[~bad, c])
  return out


def read_csv(path: str, columns=None) -> tuple[np.ndarray, tuple[str, ...]]:
  """(float64 (rows, channels), channel names) of a CSV whose first column is the date (ETT / Weather /
  Electricity layout); `columns` picks channels by name. Empty cells are NaN."""
  if not os.path.isfile(path):
    raise DataError(f"the series file {path} does not exist; set data.path to the CSV (the ETT / Weather / "
                    "Electricity layout: a header, the date in the first column, then the channels)")
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"cannot read the series file {path} ({e})") from e
  if len(rows) < 2 or len(rows[0]) < 2:
    raise DataError(f"{path} needs a header row and a date column followed by at least one channel")
  header = [h.strip() for h in rows[0][1:]]
  picked = list(range(len(header))) if columns is None else [header.index(c) for c in columns if c in header]
  if columns is not None and len(picked) != len(columns):
    raise DataError(f"{path} lacks the columns {sorted(set(columns) - set(header))}; it has {header}")
  try:
    values = np.array([[float(r[1 + j]) if r[1 + j].strip() else np.nan for j in picked] for r in rows[1:] if r],
                      np.float64)
  except (ValueError, IndexError) as e:
    raise DataError(f"{path}: every row after the header must hold a date and {len(header)} numbers ({e})") from e
  return values, tuple(header[j] for j in picked)


@functools.cache
def load_series(name: str, path: str | None = None) -> tuple[np.ndarray, tuple[str, ...], int]:
  """(float32 (rows, channels), channel names, seasonal period) of a forecasting `data.name`."""
  if name == "ett_like":
    return generate_ett_like(), ETT_NAMES, 24
  if name.startswith("statsmodels:"):
    key = name.split(":", 1)[1]
    if key not in STATSMODELS:
      raise DataError(f"unknown statsmodels series {key!r}; choose one of {sorted(STATSMODELS)}")
    file, columns, period = STATSMODELS[key]
    values, names = read_csv(os.path.join(_package_dir("statsmodels"), "datasets", file), columns)
    return _interpolate_missing(values).astype(np.float32), names, period
  if name == "csv":
    if not path:
      raise DataError('data.name="csv" needs data.path, the ETT / Weather / Electricity CSV file: give the config '
                      "argument path=<file> (configs/patchtst/etth1.py:path=/data/ETTh1.csv) or --config.data.path")
    values, names = read_csv(path)
    return _interpolate_missing(values).astype(np.float32), names, 24
  raise DataError(f"unknown forecasting data.name {name!r}; use 'ett_like', 'statsmodels:<{'|'.join(STATSMODELS)}>' "
                  "or 'csv' (with data.path)")


# ----------------------------------------------------------------------------- splits and windows


def split_borders(num_rows: int, layout: str) -> dict[str, tuple[int, int]]:
  """{split: (first row, end row)} of the chronological splits."""
  if layout in ("ett_hour", "ett_minute"):
    month = 30 * 24 * (4 if layout == "ett_minute" else 1)
    borders = {"train": (0, 12 * month), "val": (12 * month, 16 * month), "test": (16 * month, 20 * month)}
    if num_rows < 20 * month:
      raise DataError(f"layout {layout!r} needs 20 months ({20 * month} rows) but the series has {num_rows}; "
                      "use data.layout='ratio' for other series")
    return borders
  if layout == "ratio":
    train, test = int(num_rows * 0.7), int(num_rows * 0.2)
    return {"train": (0, train), "val": (train, num_rows - test), "test": (num_rows - test, num_rows)}
  raise DataError(f"unknown data.layout {layout!r}; choose one of {LAYOUTS}")


def standardize(values: np.ndarray, train_end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(standardised values, mean, std) with the statistics of rows [0, train_end) only."""
  mean = values[:train_end].mean(0, dtype=np.float64)
  std = values[:train_end].std(0, dtype=np.float64)
  std = np.where(std > 0, std, 1.0)  # a constant channel stays constant
  return ((values - mean) / std).astype(np.float32), mean, std


class WindowSource:
  """The (past, future) windows of one split: `source[i]` = {"past": (L, C), "future": (H, C)} float32,
  standardised; `starts[i]` is the window's first forecast row t."""

  def __init__(self, values: np.ndarray, lookback: int, horizon: int, first: int, end: int, *, name: str,
               split: str, channel_names=(), period: int = 1, mean=None, std=None):
    self.values, self.lookback, self.horizon = values, lookback, horizon
    self.name, self.split, self.channel_names, self.period = name, split, tuple(channel_names), period
    self.mean, self.std = mean, std
    self.starts = np.arange(max(first, lookback), end - horizon + 1)
    if len(self.starts) == 0:
      raise DataError(f"the {split!r} split of {name!r} (rows {first}..{end}) holds no window of look-back "
                      f"{lookback} and horizon {horizon}; use shorter ones (forecast.lookback, forecast.horizon)")

  @property
  def num_channels(self) -> int:
    return self.values.shape[1]

  def __len__(self) -> int:
    return len(self.starts)

  def __getitem__(self, i) -> dict:
    t = int(self.starts[i])
    return {"past": self.values[t - self.lookback:t], "future": self.values[t:t + self.horizon]}


def forecast_source(data_config, split: str, lookback: int, horizon: int) -> WindowSource:
  """The windows of `split` ("train", "val" or "test") of the config's series."""
  if split not in SPLITS:
    raise DataError(f"unknown forecasting split {split!r} (data.train_split / data.eval_split); use one of {SPLITS}")
  values, names, period = load_series(data_config.name, data_config.get("path") or None)
  borders = split_borders(len(values), data_config.get("layout", "ratio"))
  scaled, mean, std = standardize(values, borders["train"][1])
  first, end = borders[split]
  return WindowSource(scaled, lookback, horizon, first, end, name=data_config.name, split=split,
                      channel_names=names, period=period, mean=mean, std=std)


# ----------------------------------------------------------------------------- UCR / UEA classification


def read_ts(path: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """(float32 (N, channels, length) NaN-padded, int32 labels, class names) of a `.ts` file; labels
  index the `@classLabel` names in the file's order."""
  if not os.path.isfile(path):
    raise DataError(f"the .ts file {path} does not exist")
  classes, series, labels, in_data = None, [], [], False
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      if not in_data:
        if line.lower().startswith("@classlabel"):
          parts = line.split()
          classes = tuple(parts[2:]) if len(parts) > 2 and parts[1].lower() == "true" else None
        in_data = line.lower() == "@data"
        continue
      *dims, label = line.split(":")
      series.append([np.array([float(v) if v not in ("?", "NaN") else np.nan for v in d.split(",")], np.float32)
                     for d in dims])
      labels.append(label.strip())
  if not series or classes is None:
    raise DataError(f"{path} holds no labelled series (a @classLabel true ... header and @data rows)")
  length = max(len(d) for s in series for d in s)
  x = np.full((len(series), len(series[0]), length), np.nan, np.float32)
  for i, s in enumerate(series):
    for c, d in enumerate(s):
      x[i, c, :len(d)] = d
  index = {c: i for i, c in enumerate(classes)}
  return x, np.array([index[l] for l in labels], np.int32), classes


@functools.cache
def ucr_uea(name: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """A UCR/UEA set bundled in the sktime wheel: `read_ts` of its TRAIN or TEST file."""
  if split not in ("train", "test"):
    raise DataError(f"UCR/UEA sets have the splits 'train' and 'test', not {split!r}")
  path = os.path.join(_package_dir("sktime"), "datasets", "data", name, f"{name}_{split.upper()}.ts")
  if not os.path.isfile(path):
    raise DataError(f"the UCR/UEA set {name!r} is not bundled with sktime ({path} is missing); bundled ones "
                    f"include {UCR_UEA}")
  return read_ts(path)



def centre_series(x: np.ndarray) -> np.ndarray:
  """(T, C) with NaN padding: the observed steps shifted so that the padding is split evenly before and after
  them (TS2Vec's centerize_vary_length_series for one series)."""
  steps = np.flatnonzero(~np.isnan(x).all(-1))
  if len(steps) == 0:
    return x
  first, last = steps[0], steps[-1] + 1
  out = np.full_like(x, np.nan)
  start = (x.shape[0] - (last - first)) // 2
  out[start:start + last - first] = x[first:last]
  return out


class ClassificationSource:
  """A UCR/UEA split: `source[i]` = {"series": (T, C) float32 with NaN where missing, "label": int32}.

  `data.name` = "ucr_uea:<name>" reads the set bundled with sktime, or <data.path>/<name>_<SPLIT>.ts when
  `data.path` is a folder (any set of the archives in the `.ts` format). Each channel is standardised
  with the train split's mean and standard deviation over every observed step (ddof 0). Series of unequal
  length are padded with NaN at the end to the longest of either split; `padded_at_ends` says whether the
  train split has steps missing in every series' first or last position (TS2Vec then centres its training
  series: `centre_series`)."""

  def __init__(self, data_config, split: str):
    name = data_config.name
    if not name.startswith("ucr_uea:"):
      raise DataError(f"data.name={name!r}: the representation task reads UCR/UEA sets, 'ucr_uea:<name>' "
                      f"(bundled: {', '.join(UCR_UEA)})")
    self.set_name, self.split = name.split(":", 1)[1], split
    folder = data_config.get("path") or ""
    read = (lambda s: read_ts(os.path.join(folder, f"{self.set_name}_{s.upper()}.ts"))) if folder else (
        lambda s: ucr_uea(self.set_name, s))
    if split not in ("train", "test"):
      raise DataError(f"UCR/UEA sets have the splits 'train' and 'test', not {split!r}")
    (train, _, classes), (test, _, _) = read("train"), read("test")
    x, labels, _ = read(split)
    length = max(train.shape[2], test.shape[2])
    x = np.pad(x, ((0, 0), (0, 0), (0, length - x.shape[2])), constant_values=np.nan).transpose(0, 2, 1)
    flat = train.transpose(0, 2, 1).reshape(-1, train.shape[1])
    mean, std = np.nanmean(flat, 0), np.nanstd(flat, 0)
    x = (x - mean) / np.where(std > 0, std, 1.0)
    train_missing = np.isnan(np.pad(train, ((0, 0), (0, 0), (0, length - train.shape[2])),
                                    constant_values=np.nan)).all(1).any(0)
    self.padded_at_ends = bool(train_missing[0] or train_missing[-1])
    self.series, self.labels, self.classes = x.astype(np.float32), labels, classes

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
    return {"series": self.series[i], "label": self.labels[i]}
