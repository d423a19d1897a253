"""The ViT paper's data claim on the bundled digits: ViT against ResNet on 10%, 25%, 50% and 100% of
the training split (docs/scaling_vit_vs_resnet.md).

  python tools/sweep.py run configs/sweeps/vit_vs_resnet_data.py --workdir runs/sweep_vit_vs_resnet
  python tools/sweep.py collect runs/sweep_vit_vs_resnet

Dosovitskiy et al. (2021, §4.3 and Fig. 3-4): with little pre-training data ResNets beat ViTs, whose
lack of convolutional inductive bias costs them; with more data ViT catches up and overtakes. Here:
ViT (configs/vit/digits.py: width 64, depth 4, 0.14M parameters) against ResNet-20
(configs/resnet/digits.py, 0.27M parameters), each on `data.train_fraction` of the 1,437 training
digits (a fixed subset, the smaller ones inside the larger, data/sources.py: Subset), tested on the
same 360 held-out digits.

Matched budgets: both see 38,400 training examples (ViT 150 steps of 256, ResNet 300 steps of 128, the
ResNet paper's CIFAR batch), whatever the fraction, so a smaller fraction is more epochs of fewer
images, as in the paper's subset study (same steps and hyper-parameters for every subset). Both get the
same random affine warps (configs/vit/digits.py's); each keeps its own optimizer recipe (ViT: AdamW
4e-3, cosine, label smoothing 0.1, drop path 0.1; ResNet: SGD 0.1 momentum 0.9, lr ÷10 at 50% and 75%).
Departures from the paper: the data (thousands of 8×8 digits, not ImageNet/JFT pre-training followed
by transfer), trained from scratch and tested on the same task, and the model sizes that follow.
"""

from papers_jax.sweep import Sweep, product

FRACTIONS = [0.1, 0.25, 0.5, 1.0]
SEEDS = [0]  # one seed: what a CPU shared with other jobs finished
MODELS = [
    {"config": "configs/vit/digits.py", "num_steps": 150, "batch_size": 256},
    {"config": "configs/resnet/digits.py", "num_steps": 300, "batch_size": 128, "data.augment": "affine"},
]


def get_sweep():
  order = [1.0, 0.1, 0.5, 0.25]  # the ends first: what a sweep cut short still shows
  points = [{**model, "data.train_fraction": fraction, "seed": seed}
            for seed in SEEDS for fraction in sorted(FRACTIONS, key=order.index) for model in MODELS]
  return Sweep(config="configs/vit/digits.py", points=points,
               fixed={"eval_every": 0, "log_every": 50, "checkpoint_every": 100})
