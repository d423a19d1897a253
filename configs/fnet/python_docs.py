"""FNet pretraining (masked LM + next-sentence prediction) on Python's documentation text, offline.

  python -m papers_jax.main --config configs/fnet/python_docs.py --workdir runs/fnet_python_docs

Exactly configs/bert/python_docs.py (data, vocabulary, sizes, optimizer, steps) with every self-attention
sublayer replaced by the real part of a 2-D Fourier transform (Lee-Thorp et al. 2022), so the two rows
of the README's language-model table compare the token mixers alone. FNet's embeddings add a dense
projection and its FFN uses GELU's tanh approximation, as in the paper's code.

Departures from the paper: those of configs/bert/python_docs.py (an offline demo at
hidden 128, 4 layers, with its optimizer, schedule and clipping), which this config inherits.
"""

import importlib.util
import os

from papers_jax.core.config import parse_arg
from papers_jax.tasks import lm


def _bert_config_module():
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bert", "python_docs.py")
  spec = importlib.util.spec_from_file_location("bert_python_docs", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  args = parse_arg(arg, smoke=False)
  bert = _bert_config_module()
  c = bert.get_config().unlock()
  c.model = dict(name="fnet-base", vocab_size=0, hidden_size=128, num_layers=4, intermediate_size=512,
                 max_position_embeddings=128)
  if args.smoke:
    lm.smoke(c)
  return c.lock()
