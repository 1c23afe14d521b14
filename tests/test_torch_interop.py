"""torchvision <-> flax weights: exact round trips (always) and output parity with torchvision (needs torch)."""
import functools
import importlib.util

import jax
import numpy as np
import pytest

from csvr_jax import models
from csvr_jax.models import torch_interop

ARCHS = torch_interop.ARCHS
HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ('torch', 'torchvision'))
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason='torch/torchvision not importable: parity with '
                                 'torchvision not checked (pip install torch==2.14.1 torchvision==0.29.1)')


@functools.lru_cache(maxsize=None)
def random_flax_variables(name, seed=0):
  """Width-1 variables with random weights, BN statistics and counters (numpy; shapes from eval_shape)."""
  model = models.get_video_backbone(name)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, False), np.zeros((1, 8, 32, 32, 3)))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if path[-1].key == 'num_batches_tracked':
      return rng.integers(0, 1000, leaf.shape).astype(np.int32)
    return rng.standard_normal(leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize('name', ARCHS)
def test_flax_roundtrip_exact(name):
  variables = random_flax_variables(name)
  back = torch_interop.from_torchvision(name, torch_interop.to_torchvision(name, variables))
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  jax.tree.map(np.testing.assert_array_equal, back, variables)


def test_mismatched_state_dict_is_clear():
  sd = torch_interop.to_torchvision('r3d_18', random_flax_variables('r3d_18'))
  del sd['layer2.0.downsample.1.running_var']
  sd['layer9.weight'] = np.zeros(1)
  with pytest.raises(ValueError, match=r"missing \['layer2.0.downsample.1.running_var'\].*unexpected \['layer9"):
    torch_interop.from_torchvision('r3d_18', sd)


def test_cli_npz_to_export_and_back(tmp_path):
  sd = torch_interop.to_torchvision('s3d', random_flax_variables('s3d'))
  np.savez(tmp_path / 'in.npz', **sd)
  torch_interop.convert('orbax', str(tmp_path / 'in.npz'), str(tmp_path / 'export'), arch='s3d')
  out = torch_interop.convert('npz', str(tmp_path / 'export'), str(tmp_path / 'back'))
  with np.load(out) as back:
    assert list(back.files) == list(sd)
    for k, v in sd.items():
      assert back[k].dtype == v.dtype, k
      np.testing.assert_array_equal(back[k], v)


@pytest.mark.skipif(HAVE_TORCH, reason='torch is importable: the missing-torch message is not reachable')
def test_pth_without_torch_is_clear(tmp_path):
  with pytest.raises(SystemExit, match='needs PyTorch'):
    torch_interop.load_state_dict(str(tmp_path / 'x.pth'))


# ---------------------------------------------------------------- against torchvision (skipped without torch)

def _torch_model(name, seed=0):
  """torchvision model in eval mode with random weights AND random BatchNorm running statistics."""
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  model = getattr(torchvision.models.video, name)(weights=None)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm3d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
        m.num_batches_tracked.fill_(int(torch.randint(0, 10_000, ())))
  return model.eval()


def _torch_features(name, model, x):
  if name == 's3d':
    return model.features(x)
  x = model.stem(x)
  for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
    x = layer(x)
  return x


@needs_torch
@pytest.mark.parametrize('name', ARCHS)
def test_torchvision_state_dict_roundtrip_exact(name):
  sd = {k: v.numpy() for k, v in _torch_model(name).state_dict().items()}
  classifier = [k for k in sd if k.startswith(torch_interop.CLASSIFIER_PREFIXES[name])]
  assert len(classifier) == 2
  backbone_sd = {k: v for k, v in sd.items() if k not in classifier}
  back = torch_interop.to_torchvision(name, torch_interop.from_torchvision(name, sd))
  assert list(back) == list(backbone_sd)  # every key, in torchvision's order, num_batches_tracked included
  for k, v in backbone_sd.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
    np.testing.assert_array_equal(back[k], v)


@needs_torch
@pytest.mark.parametrize('name', ARCHS)
def test_parity_with_torchvision_eval(name):
  import torch  # pylint: disable=import-outside-toplevel
  model = _torch_model(name)
  frames = 8 if name == 's3d' else 4  # S3D needs 8 frames to survive its four temporal halvings
  x = torch.randn(2, 3, frames, 40, 56, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    ref_features = _torch_features(name, model, x)
    ref_pooled = ref_features.mean(dim=(2, 3, 4)).numpy()
    ref_features = ref_features.permute(0, 2, 3, 4, 1).numpy()
  variables = torch_interop.from_torchvision(name, model.state_dict())
  out = jax.jit(functools.partial(models.get_video_backbone(name).apply, train=False))(
      variables, x.permute(0, 2, 3, 4, 1).numpy())
  assert out['features'].shape == ref_features.shape
  rel_features = np.abs(out['features'] - ref_features).max() / np.abs(ref_features).max()
  rel_pooled = np.abs(out['pooled'] - ref_pooled).max() / np.abs(ref_pooled).max()
  print(f'{name}: relative error features {rel_features:.2e}, pooled {rel_pooled:.2e}')
  assert rel_features < 1e-4 and rel_pooled < 1e-4
  if name != 's3d':  # the classifier on our pooled feature reproduces torchvision's logits
    with torch.no_grad():
      logits = model.fc(torch.from_numpy(np.array(out['pooled']))).numpy()
      ref_logits = model(x).numpy()
    assert np.abs(logits - ref_logits).max() / np.abs(ref_logits).max() < 1e-4


@needs_torch
def test_cli_pth_roundtrip_loads_into_torchvision(tmp_path):
  import torch  # pylint: disable=import-outside-toplevel
  model = _torch_model('mc3_18')
  torch.save({'state_dict': model.state_dict()}, tmp_path / 'in.pth')  # wrapped, as training scripts save
  torch_interop.convert('orbax', str(tmp_path / 'in.pth'), str(tmp_path / 'export'), arch='mc3_18')
  out = torch_interop.convert('pth', str(tmp_path / 'export'), str(tmp_path / 'out.pth'))
  fresh = _torch_model('mc3_18', seed=1)
  result = fresh.load_state_dict(torch.load(out, weights_only=True), strict=False)
  assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight'] and not result.unexpected_keys
  for k, v in model.state_dict().items():
    if not k.startswith('fc.'):
      assert torch.equal(fresh.state_dict()[k], v), k
