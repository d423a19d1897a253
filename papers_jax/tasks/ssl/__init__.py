"""Self-supervised pre-training (`config.task = "ssl"`): SimCLR, MoCo v1/v2/v3, BYOL, SimSiam,
SwAV, DINO, InstDisc and CMC, and the pretext tasks rotation, jigsaw, relative position and
colourisation (tasks/ssl/pretext.py) on one backbone (any registered model built with num_classes=0), one
view pipeline and one k-NN monitor, so the methods compare on equal terms.

| method   | views              | online                            | target / state                    | loss                         |
|----------|--------------------|-----------------------------------|-----------------------------------|------------------------------|
| simclr   | 2                  | backbone → projector              | —                                 | NT-Xent, global batch        |
| moco_v1  | 2                  | backbone → projector              | momentum encoder, queue           | InfoNCE vs queue             |
| moco_v2  | 2                  | backbone → MLP projector          | momentum encoder, queue           | InfoNCE vs queue             |
| moco_v3  | 2                  | backbone → projector → predictor  | momentum encoder (cosine m)       | symmetric in-batch InfoNCE   |
| byol     | 2 (asym.)          | backbone → projector → predictor  | momentum encoder (cosine m)       | symmetric normalised MSE     |
| simsiam  | 2                  | backbone → projector → predictor  | stop-gradient of the online       | symmetric −cos               |
| swav     | 2 global + N local | backbone → MLP → L2 → prototypes  | optional queue of projections     | swapped prediction, Sinkhorn |
| dino     | 2 global + N local | backbone → DINO head (K outputs)  | EMA teacher (cosine m), centre    | centred, sharpened CE        |
| instdisc | 1                  | backbone → linear 128 → L2        | memory bank (N × 128), NCE Z      | NCE vs m bank draws          |
| cmc      | L / ab (or 2 crops)| 2 encoders → linear 128 → L2      | 2 memory banks, 2 NCE Z           | NCE across views' banks      |
| rotation | 1, × 4 rotations   | backbone → MLP → 4                | —                                 | CE of the rotation           |
| jigsaw   | 1 → 9 tiles        | backbone per tile → concat → MLP  | permutation set (constant)        | CE of the permutation        |
| rel. pos.| 1 → 2 tiles        | backbone per tile → concat → MLP  | —                                 | CE of the eight positions    |
| colorize | 1 (L → ab)         | backbone tokens → linear → Q bins | class-rebalancing weights (const.)| rebalanced soft-target CE    |

Views are made on device (data/views.py) from uint8 images. The momentum encoder's weights are
`EMA` variables in the model state, initialised equal to the online weights and updated after
each optimizer step (`post_update`, with `optax.incremental_update`: θ_t ← m·θ_t + (1 − m)·θ);
MoCo's and SwAV's queues, DINO's centre, the memory banks, the NCE normalisers and the step
counter are model state too, so all of it is sharded, checkpointed and restored like any other
state. Only weights are averaged: the target's BatchNorm runs on batch statistics (train mode)
and its running statistics come from its own forward passes, as in the official MoCo, BYOL and
DINO code (their momentum updates zip `parameters()` / `params` only). Targets are built without
dropout / stochastic depth (DINO's teacher has no drop-path).

MoCo v1/v2 compute queries of view 1 and keys of view 2 only (no online pass on view 2), and use
shuffle-BN: the key encoder sees the global batch permuted (`shuffled_keys`), so with per-GPU
BatchNorm (`ssl.bn_group_size`, 32 in the paper) a key's group holds other images than its
query's; the keys are unshuffled before the loss.

Multi-crop (SwAV, DINO): crops of one size go through the backbone in one call (BatchNorm
statistics per resolution, as the references), the head runs once on all crops. A ViT built for
the global size sees the local crops through a weight-sharing view of itself with resampled
position embeddings (DINO's `interpolate_pos_encoding`); ResNets pool globally and take any size.

SwAV's prototypes and DINO's last layer are `WeightNormDense`: the columns are normalised at use
(weight normalisation with the gain fixed to 1). The SwAV paper renormalises the prototype
weights after every update instead; here `post_update` may only write model state, not params,
so the normalisation happens at use: the scores always see unit prototypes, and the update
differs from the paper's only in the gradient being projected onto the sphere (first order the
same step). The raw prototypes start at unit norm, the paper's state after its first
normalisation. Both are frozen (no gradient) for `freeze_last_layer_steps` steps.

InstDisc / CMC read each example's dataset index (`batch["index"]`, from data/pipeline.py) and
keep a bank row per training example, scattered at those indices after the loss used the old
rows (lemniscate / CMC's order). The bank is replicated over the mesh (N × 128 floats: 655 MB for
ImageNet); the scatter works on global arrays, so it is correct for any batch size and mesh.

`after_eval` runs the k-NN monitor (k-NN of the online backbone's features, train → evaluated split;
CMC: both encoders' features concatenated, as its linear evaluation) and reports the
per-dimension standard deviation of the L2-normalised projections (`embedding_std` in the train
metrics) and of the backbone's features (`eval/feature_std`), with a warning when the latter
falls under a tenth of its first value (a collapsing representation). DINO also logs the
teacher's entropy, the teacher→student KL and the centre's norm: collapse to one dimension drives
both entropy and KL to 0, collapse to the uniform distribution drives the entropy to log K.
The same frozen features (`features`) serve the linear probes of `config.evals` (core/evals.py):
the digits demos add `eval/linear_probe/linear_probe_top1` after the last step.

Layout: `common.py` holds what every method shares (the `config.ssl` fields, `SSLModel`,
multi-crop encoding, the momentum update's helpers), `task.py` the trainer's interface (`SSLTask`),
`recipe.py` the configs' builder, and one module per paper its loss: `simclr.py`, `moco.py` (v1/v2
with shuffle-BN, v3), `byol.py`, `simsiam.py`, `swav.py`, `dino.py`, `instdisc.py`, `cmc.py`; the
four pretext tasks share `pretext.py`. The heads
are models (models/ssl_heads.py).
"""

from papers_jax.tasks.ssl.common import METHODS, RANGES, VIEWS, SSLModel, default_config, encode_crops  # noqa: F401
from papers_jax.tasks.ssl.moco import shuffle_key, shuffled_keys  # noqa: F401
from papers_jax.tasks.ssl.recipe import recipe  # noqa: F401
from papers_jax.tasks.ssl.task import SSLTask  # noqa: F401
