"""GAN losses (Goodfellow et al., 2014) on the discriminator's logits, D(x) = sigmoid(logit).

The value function V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))] (Eq. 1): D ascends it, G descends it.
  discriminator_loss  −V averaged over the batch: −log D(x) − log(1 − D(G(z))).
  generator_loss_minimax  the minimax generator's objective, log(1 − D(G(z))); its gradient vanishes while D
      rejects the samples confidently (early in training).
  generator_loss_non_saturating  −log D(G(z)), the paper's practical alternative (§3): the same fixed point
      and strong gradients early on. DCGAN trains with it.
All in float32 via softplus: log D = −softplus(−l), log(1 − D) = −softplus(l), stable for large |l|.
`optimal_discriminator` is Proposition 1's D*(x) = p_data(x) / (p_data(x) + p_g(x)).
"""

import jax
import jax.numpy as jnp


def discriminator_loss(real_logits, fake_logits):
  """Mean over the batch of −log D(x) − log(1 − D(G(z)))."""
  real, fake = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)
  return jax.nn.softplus(-real).mean() + jax.nn.softplus(fake).mean()


def generator_loss_minimax(fake_logits):
  """Mean of log(1 − D(G(z))), which the generator minimises (Eq. 1)."""
  return -jax.nn.softplus(fake_logits.astype(jnp.float32)).mean()


def generator_loss_non_saturating(fake_logits):
  """Mean of −log D(G(z)) (§3: maximise log D(G(z)) instead)."""
  return jax.nn.softplus(-fake_logits.astype(jnp.float32)).mean()


GENERATOR_LOSSES = {"non_saturating": generator_loss_non_saturating, "minimax": generator_loss_minimax}


def optimal_discriminator(p_data, p_g):
  """D*(x) = p_data / (p_data + p_g) (Proposition 1); ½ where the two densities are equal."""
  return p_data / (p_data + p_g)
