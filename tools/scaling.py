"""Scaling-law fits and plots from a sweep's results (papers_jax/scaling.py).

  python tools/scaling.py fit runs/sweep/results.jsonl --out docs/scaling_vit_digits [--loss eval/loss]
  python tools/scaling.py plot runs/sweep/results.jsonl --x data.train_fraction --y eval/accuracy \
      --group config --out docs/scaling_vit_vs_resnet/accuracy.png

Reads `results.jsonl` (tools/sweep.py collect) or any JSON-lines / CSV table with the same columns:
parameters N (`--params`), training examples or tokens D (`--data`), training FLOPs C (`--compute`,
default 6·N·D when absent) and the loss. Fits L(C) = E + A·C^(−α) and L(N, D) = E + A/N^α + B/D^β,
with bootstrap intervals on every parameter, and the compute-optimal frontier N*(C), D*(C) under
C = k·N·D with k the table's median C/(N·D) (6 for a language model's tokens). Writes
`fit.json` and three PNGs to `--out`: loss against compute per model size with both fits and the
frontier, IsoFLOP curves (loss against N at fixed compute), and the L(N, D) fit's residuals.

plot: one metric against one swept value, a line per value of another (`--group`), as a PNG and, next
to it (same name, .md), the Markdown table of the metric with a row per group and a column per x
(a sweep's values come from its points' names: tools/sweep.py collect).
"""

import argparse
import csv
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from papers_jax import scaling  # noqa: E402


def read_table(path: str) -> list[dict]:
  if path.endswith(".csv"):
    with open(path) as f:
      return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _number(text):
  try:
    return float(text)
  except (TypeError, ValueError):
    return text


def columns(rows, params: str, data: str, compute: str, loss: str):
  missing = [k for k in (params, data, loss) if any(k not in r for r in rows)]
  if missing:
    raise SystemExit(f"error: rows lack the columns {missing}; name them with --params/--data/--loss")
  N = np.array([r[params] for r in rows], np.float64)
  D = np.array([r[data] for r in rows], np.float64)
  C = np.array([r.get(compute, 6 * n * d) for r, n, d in zip(rows, N, D)], np.float64)
  L = np.array([r[loss] for r in rows], np.float64)
  return N, D, C, L


def plots(out: str, N, D, C, L, power, chin):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  grid = np.logspace(np.log10(C.min()) - 0.3, np.log10(C.max()) + 0.3, 100)
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for n in np.unique(N):
    sel = N == n
    order = np.argsort(C[sel])
    ax.plot(C[sel][order], L[sel][order], "o-", label=f"N = {n:.3g}")
  ax.plot(grid, power(grid), "k--", label=f"L(C) = {power.E:.3g} + {power.A:.3g}·C^-{power.alpha:.3f}")
  k = float(np.median(C / (N * D)))  # C = k·N·D: 6 for a language model's tokens, more for a ViT's examples
  n_opt, d_opt = scaling.frontier(chin, grid, flops_per_param_token=k)
  ax.plot(grid, chin(n_opt, d_opt), "r-", label="compute-optimal L(N*, D*)")
  ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="loss")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "loss_vs_compute.png"), dpi=120)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(6, 4.5))
  n_grid = np.logspace(np.log10(N.min()) - 0.5, np.log10(N.max()) + 0.5, 100)
  for c in np.logspace(np.log10(C.min()), np.log10(C.max()), 5):
    ax.plot(n_grid, chin(n_grid, c / (k * n_grid)), label=f"C = {c:.2g}")
  ax.set(xscale="log", xlabel="parameters N", ylabel="predicted loss", title="IsoFLOP curves of the L(N, D) fit")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "isoflop.png"), dpi=120)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(6, 4.5))
  ax.scatter(C, np.log(L) - np.log(chin(N, D)), c=np.log10(N))
  ax.axhline(0, color="k", lw=0.5)
  ax.set(xscale="log", xlabel="training FLOPs C", ylabel="log L − log L̂(N, D)", title="residuals (colour: log10 N)")
  fig.tight_layout()
  fig.savefig(os.path.join(out, "residuals.png"), dpi=120)
  plt.close(fig)


def fit(args) -> dict:
  rows = read_table(args.table)
  N, D, C, L = columns(rows, args.params, args.data, args.compute, args.loss)
  power = scaling.power_law(C, L)
  chin = scaling.chinchilla(N, D, L)
  result = {
      "points": len(rows),
      "power_law": power.params(),
      "power_law_intervals": scaling.bootstrap(scaling.power_law, (C, L), start=power, samples=args.bootstrap),
      "chinchilla": chin.params(),
      "chinchilla_intervals": scaling.bootstrap(scaling.chinchilla, (N, D, L), start=chin, samples=args.bootstrap),
      "frontier_exponents": {"N*": chin.beta / (chin.alpha + chin.beta), "D*": chin.alpha / (chin.alpha + chin.beta)},
      "flops_per_param_and_example": float(np.median(C / (N * D))),  # k of C = k·N·D, the frontier's
  }
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "fit.json"), "w") as f:
    json.dump(result, f, indent=2)
  plots(args.out, N, D, C, L, power, chin)
  return result


def plot_metric(args) -> str:
  """Writes the PNG and the Markdown table of `args.y` over `args.x` × `args.group`; returns the table."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = read_table(args.table)
  missing = [k for k in (args.x, args.y, args.group) if k and not any(k in r for r in rows)]
  if missing:
    columns = sorted(rows[0]) if rows else []
    raise SystemExit(f"error: no row has the columns {missing}; the table's columns are {columns}")
  rows = [r for r in rows if args.x in r and args.y in r]
  group = lambda r: r.get(args.group, "") if args.group else ""  # noqa: E731
  xs = sorted({r[args.x] for r in rows})
  numeric = lambda v: isinstance(v, (int, float))  # noqa: E731
  groups = sorted({group(r) for r in rows}, key=lambda g: (not numeric(g), g if numeric(g) else str(g)))
  cell = {}
  for r in rows:
    cell.setdefault((group(r), r[args.x]), []).append(float(r[args.y]))
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for g in groups:
    points = [(x, np.mean(cell[g, x])) for x in xs if (g, x) in cell]
    label = f"{args.group} = {g}" if args.group else None
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
  ax.set(xlabel=args.x, ylabel=args.y, xscale="log" if args.logx else "linear")
  ax.grid(alpha=0.3)
  if args.group:
    ax.legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=120)
  plt.close(fig)

  def fmt(values):
    if not values:
      return "—"
    return f"{np.mean(values):.4g}" + (f" ± {np.std(values):.2g} ({len(values)})" if len(values) > 1 else "")

  lines = [f"| {args.group or ''} \\ {args.x} | " + " | ".join(str(x) for x in xs) + " |",
           "|---" * (len(xs) + 1) + "|"]
  lines += [f"| {g} | " + " | ".join(fmt(cell.get((g, x))) for x in xs) + " |" for g in groups]
  table = f"{args.y}" + (" (mean ± std (runs) where a cell has several)" if any(len(v) > 1 for v in cell.values())
                         else "") + ":\n\n" + "\n".join(lines) + "\n"
  with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
    f.write(table)
  return table


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.split("\n")[1:]))
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("fit")
  p.add_argument("table")
  p.add_argument("--out", required=True)
  p.add_argument("--params", default="params")
  p.add_argument("--data", default="examples_seen")
  p.add_argument("--compute", default="train_flops")
  p.add_argument("--loss", default="train/loss")
  p.add_argument("--bootstrap", type=int, default=200)
  p = sub.add_parser("plot")
  p.add_argument("table")
  p.add_argument("--x", required=True, help="the column on the x axis, e.g. data.train_fraction")
  p.add_argument("--y", required=True, help="the metric, e.g. eval/accuracy")
  p.add_argument("--group", default="", help="a line (and a table row) per value of this column")
  p.add_argument("--logx", action="store_true")
  p.add_argument("--out", required=True, help="the PNG; the Markdown table goes next to it as .md")
  args = parser.parse_args(argv)
  if args.command == "plot":
    print(plot_metric(args))
    return 0
  print(json.dumps(fit(args), indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
