"""Linear probe on extracted (frozen) features, sized for small data sets and demos.

The features are standardised with the training set's mean and variance (what MAE's
BatchNorm-without-affine head computes at evaluation), then a softmax regression is fitted
full-batch with Adam and a small L2 penalty inside one `lax.scan`. The paper-scale protocol
(LARS, batch 16384, 90 epochs, augmented crops through the frozen encoder) is the classification
task with configs/mae/linprobe.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from papers_jax.objectives import classification


def standardize(train_features, *others, eps: float = 1e-6):
  mean = train_features.mean(0, keepdims=True)
  std = np.sqrt(train_features.var(0, keepdims=True) + eps)
  return [(x - mean) / std for x in (train_features, *others)]


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x, y, *, num_classes: int, steps: int, lr: float, l2: float):
  w = jnp.zeros((x.shape[1], num_classes), jnp.float32)
  b = jnp.zeros((num_classes,), jnp.float32)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  targets = jax.nn.one_hot(y, num_classes)

  def loss_fn(params):
    w, b = params
    return classification.softmax_cross_entropy(x @ w + b, targets).mean() + 0.5 * l2 * jnp.sum(w * w)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, ((w, b), tx.init((w, b))), None, length=steps)
  return params, losses[-1]


def fit_and_evaluate(train_features, train_labels, test_features, test_labels, *, num_classes: int | None = None,
                     steps: int = 500, lr: float = 0.01, l2: float = 1e-4) -> dict:
  """{"linear_probe_top1": test accuracy, "linear_probe_train_top1": train accuracy}."""
  train_labels = np.asarray(train_labels, np.int32)
  test_labels = np.asarray(test_labels, np.int32)
  num_classes = int(num_classes or max(train_labels.max(), test_labels.max()) + 1)
  xtr, xte = standardize(np.asarray(train_features, np.float64), np.asarray(test_features, np.float64))
  (w, b), _ = _fit(jnp.asarray(xtr, jnp.float32), jnp.asarray(train_labels), num_classes=num_classes, steps=steps,
                   lr=lr, l2=l2)
  acc = lambda x, y: float((np.asarray(jnp.asarray(x, jnp.float32) @ w + b).argmax(-1) == y).mean())  # noqa: E731
  return {"linear_probe_top1": acc(xte, test_labels), "linear_probe_train_top1": acc(xtr, train_labels)}
