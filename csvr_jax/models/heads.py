"""Heads: the two-layer projection MLPs g^V, g^I of the context branch, and the finetuning classifier.

Usage:
  g_v = ProjectionHead(hidden=512, out=128)          # config.model.head_hidden, config.model.embed_dim
  emb = g_v.apply(g_v.init(key, pooled), pooled)     # pooled (B, C) -> (B, 128) float32 (not normalised;
                                                     # the losses L2-normalise)
  clf = Classifier(num_classes=101, dropout=0.3)
  logits = clf.apply(vars, pooled, train=True, rngs={'dropout': key})   # (B, 101) float32

Choice: g is Dense-ReLU-Dense without BatchNorm (the paper says "two-layer MLP"); a BN-free head also keeps
the contrastive loss independent of how the batch is split across devices.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class ProjectionHead(nn.Module):
  """(B, C) -> (B, out) float32: Dense(hidden) - ReLU - Dense(out)."""
  hidden: int = 512
  out: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    del train  # no dropout or BN; accepted for the uniform `module.apply(..., train=...)` convention
    h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x.astype(self.dtype)))
    return nn.Dense(self.out, dtype=self.dtype, name='fc2')(h).astype(jnp.float32)


class Classifier(nn.Module):
  """(B, C) -> (B, num_classes) float32 logits, with dropout before the linear layer when training."""
  num_classes: int
  dropout: float = 0.3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dropout(self.dropout, deterministic=not train)(x.astype(self.dtype))
    return nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(x).astype(jnp.float32)
