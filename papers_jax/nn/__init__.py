"""Reusable NNX layers. Every parameter carries logical axis names in its `axes` metadata."""

from papers_jax.nn.attention import Attention, KVCache, dot_product_attention
from papers_jax.nn.barrier import gradient_barrier
from papers_jax.nn.drop import DropPath, Dropout
from papers_jax.nn.embed import PatchEmbed, resample_pos_embed, sincos_pos_embed_2d
from papers_jax.nn.heads import pool_tokens
from papers_jax.nn.linear import Dense, param
from papers_jax.nn.mlp import Mlp
from papers_jax.nn.norms import LayerNorm
