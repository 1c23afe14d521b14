"""Augmentation: poses follow crop + flip, left/right swap, deterministic eval views, device colour ops."""
import cv2
import jax
import ml_collections
import numpy as np

from configs import base
from csvr_jax.data import augment
from csvr_jax.data import records

H, W, S = 128, 171, 112


def _jpeg(img):
  ok, buf = cv2.imencode('.jpg', cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
  assert ok
  return buf.tobytes()


def test_decode_roundtrip():
  img = np.zeros((H, W, 3), np.uint8)
  img[..., 0] = 200
  out = augment.decode_jpeg(_jpeg(img))
  assert out.shape == (H, W, 3) and abs(int(out[..., 0].mean()) - 200) <= 2 and out[..., 2].mean() < 5


def test_dot_at_joint_stays_on_the_pose_after_crop_and_flip():
  rng = np.random.default_rng(0)
  r_wrist = records.COCO18_JOINTS.index('r_wrist')
  l_wrist = records.COCO18_JOINTS.index('l_wrist')
  checked = 0
  for trial in range(40):
    x, y = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
    img = np.zeros((H, W, 3), np.uint8)
    cv2.circle(img, (int(x * W), int(y * H)), 3, (255, 255, 255), -1)
    xy = np.full((1, 18, 2), 0.5, np.float32)
    xy[0, r_wrist] = ((int(x * W) + 0.5) / W, (int(y * H) + 0.5) / H)  # the dot's pixel centre
    conf = np.zeros((1, 18), np.float32)
    conf[0, r_wrist] = 1
    box = augment.random_crop_box(H, W, (0.3, 1.0), (3 / 4, 4 / 3), rng)
    flip = bool(trial % 2)
    out = augment.render_views([_jpeg(img)], [(0, box, flip)], S)
    new_xy, new_conf = augment.transform_poses(xy, conf, box, (H, W), flip)
    joint = l_wrist if flip else r_wrist  # a flip turns the right wrist into the image's left wrist
    if new_conf[0, joint] == 0:  # the dot was cropped out (or lies on the border)
      continue
    assert new_conf[0].sum() == 1
    grey = out[0].astype(np.float32).sum(-1)
    cy, cx = np.argwhere(grey > 0.5 * grey.max()).mean(0)
    assert abs(cx + 0.5 - new_xy[0, joint, 0] * S) < 3, (trial, cx, new_xy[0, joint])
    assert abs(cy + 0.5 - new_xy[0, joint, 1] * S) < 3, (trial, cy, new_xy[0, joint])
    checked += 1
  assert checked >= 20


def test_flip_swaps_left_and_right_joints():
  rng = np.random.default_rng(1)
  xy = rng.uniform(0, 1, (3, 18, 2)).astype(np.float32)
  conf = np.ones((3, 18), np.float32)
  box = (0, 0, H, W)
  same_xy, _ = augment.transform_poses(xy, conf, box, (H, W), flip=False)
  np.testing.assert_allclose(same_xy, xy, atol=1e-6)
  new_xy, new_conf = augment.transform_poses(xy, conf, box, (H, W), flip=True)
  perm = records.COCO18_FLIP_PERMUTATION
  names = records.COCO18_JOINTS
  for j, name in enumerate(names):
    mirror = name.replace('l_', 'x_').replace('r_', 'l_').replace('x_', 'r_')
    assert names[perm[j]] == mirror
    np.testing.assert_allclose(new_xy[:, j, 0], 1 - xy[:, perm[j], 0], atol=1e-6)
    np.testing.assert_allclose(new_xy[:, j, 1], xy[:, perm[j], 1], atol=1e-6)
  assert new_conf.sum() == conf.sum()


def test_transform_poses_is_bitwise_the_per_coordinate_formula():
  # transform_poses maps x and y in one array expression; its values must stay bit for bit those of the
  # per-coordinate formula (x * W - x0) / w, (y * H - y0) / h, 1 - x on a flip, 0 outside the crop or where
  # conf = 0, for the pipeline's float32 poses and for float64 ones, joints on the crop border included.
  rng = np.random.default_rng(5)
  perm = list(records.COCO18_FLIP_PERMUTATION)
  for trial in range(60):
    dtype = (np.float32, np.float64)[trial % 2]
    height, width = int(rng.integers(16, 300)), int(rng.integers(16, 300))
    box = augment.random_crop_box(height, width, (0.08, 1.0), (3 / 4, 4 / 3), rng)
    y0, x0, h, w = box
    xy = rng.uniform(-0.2, 1.2, (7, 18, 2)).astype(dtype)
    xy[0, :2] = ((x0 + w) / width, (y0 + h) / height)  # on the border (up to rounding)
    conf = (rng.uniform(0, 1, (7, 18)) * (rng.uniform(0, 1, (7, 18)) > 0.3)).astype(dtype)
    flip = bool(trial % 3)
    got_xy, got_conf = augment.transform_poses(xy, conf, box, (height, width), flip)
    if flip:
      xy, conf = xy[:, perm], conf[:, perm]
    x, y = (xy[..., 0] * width - x0) / w, (xy[..., 1] * height - y0) / h
    inside = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    keep = inside & (conf > 0)
    x = 1.0 - x if flip else x
    assert got_xy.dtype == got_conf.dtype == np.float32 and 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(got_xy[..., 0], np.where(keep, x, 0.0).astype(np.float32))
    np.testing.assert_array_equal(got_xy[..., 1], np.where(keep, y, 0.0).astype(np.float32))
    np.testing.assert_array_equal(got_conf, np.where(inside, conf, 0.0).astype(np.float32))


def test_joints_outside_the_crop_get_zero_confidence():
  xy = np.array([[[0.05, 0.5], [0.5, 0.5]] + [[0.5, 0.5]] * 16], np.float32)
  conf = np.ones((1, 18), np.float32)
  new_xy, new_conf = augment.transform_poses(xy, conf, (0, 40, H, 100), (H, W), flip=False)
  assert new_conf[0, 0] == 0 and new_conf[0, 1] == 1
  assert (new_xy[0, 0] == 0).all()


def test_random_crop_box_in_range():
  rng = np.random.default_rng(0)
  for _ in range(200):
    y0, x0, h, w = augment.random_crop_box(H, W, (0.2, 1.0), (3 / 4, 4 / 3), rng)
    assert 0 <= y0 and y0 + h <= H and 0 <= x0 and x0 + w <= W and h > 0 and w > 0


def test_render_views_matches_decoding_each_view_alone():
  # Views in request order, a frame shared by several views, frames of three sizes (the decode buffer is reused
  # while frames fit and re-sized for a larger one), runs of flipped views: the same pixels as decoding each
  # view's frame and cropping it on its own.
  rng = np.random.default_rng(3)
  sizes = [(H, W), (H, W), (W, H), (H, W), (H + 16, W + 8)]
  jpegs = [_jpeg(cv2.GaussianBlur(rng.integers(0, 256, hw + (3,), dtype=np.uint8), (0, 0), 2)) for hw in sizes]
  views = [(1, (2, 3, 20, 25), False), (0, (0, 0, H, W), True), (1, (5, 1, 16, 16), True),
           (2, (4, 4, 30, 20), False), (3, (1, 2, 18, 30), True), (1, (2, 3, 20, 25), True),
           (4, (H, W, 16, 8), True), (4, (0, 0, H + 16, W + 8), False), (3, (1, 2, 18, 30), False)]
  out = augment.render_views(jpegs, views, S)
  assert out.shape == (len(views), S, S, 3) and out.dtype == np.uint8
  into = np.zeros((len(views) + 1, S, S, 3), np.uint8)
  assert augment.render_views(jpegs, views, S, out=into[1:]).base is into  # renders into the given array
  np.testing.assert_array_equal(into[1:], out)
  assert not into[0].any()
  for k, (i, box, flip) in enumerate(views):
    want = augment.crop_resize(augment.decode_jpeg(jpegs[i]), box, S)
    np.testing.assert_array_equal(out[k], want[:, ::-1] if flip else want, err_msg=str(k))
  assert augment.jpeg_size(jpegs[2]) == (W, H)


def test_eval_view_is_deterministic_centre_crop():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
  box = augment.center_crop_box(H, W, 128, S)
  assert box == ((H - S) // 2, (W - S) // 2, S, S)
  views = [augment.render_views([_jpeg(img)], [(0, box, False)] * 2, S) for _ in range(2)]
  np.testing.assert_array_equal(views[0], views[1])
  assert views[0].shape == (2, S, S, 3) and views[0].dtype == np.uint8
  # A frame stored at another size is resized to the same view of the scene.
  assert augment.center_crop_box(256, 342, 128, S) == ((256 - 224) // 2, (342 - 224) // 2, 224, 224)


def _data_config(**overrides):
  c = base.get_config().data
  c = ml_collections.ConfigDict(c.to_dict())
  c.update(overrides)
  return c


def test_device_augment_without_ops_is_normalize():
  c = _data_config(jitter_prob=0.0, blur_prob=0.0)
  x = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
  out = jax.jit(lambda x, k: augment.device_augment(x, k, c))(x, jax.random.key(0))
  np.testing.assert_allclose(out, augment.normalize(x, c.mean, c.std), atol=1e-5)
  assert out.dtype == np.float32


def test_device_augment_consistent_per_clip_independent_per_iframe():
  c = _data_config(jitter_prob=1.0, blur_prob=1.0)
  frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  clips = np.broadcast_to(frame, (4, 3, 16, 16, 3))
  out = np.asarray(jax.jit(lambda x, k: augment.device_augment(x, k, c))(clips, jax.random.key(1)))
  np.testing.assert_allclose(out[:, 0], out[:, 2], atol=1e-5)  # same params over a clip's frames
  assert np.abs(out[0, 0] - out[1, 0]).mean() > 1e-3  # different clips, different params
  iframes = np.broadcast_to(frame, (2, 3, 16, 16, 3))
  out = np.asarray(jax.jit(lambda x, k: augment.device_augment(x, k, c, shared_axes=0))(iframes, jax.random.key(1)))
  assert np.abs(out[0, 0] - out[0, 1]).mean() > 1e-3


def test_blur_smooths_and_preserves_constants():
  x = np.zeros((1, 1, 15, 15, 3), np.float32)
  x[..., 7, 7, :] = 1.0
  blur = jax.jit(augment.gaussian_blur, static_argnums=2)
  out = np.asarray(blur(x, np.full((1, 1, 1, 1, 1), 1.0, np.float32), 3))
  assert abs(out.sum() - 3.0) < 1e-4 and out[0, 0, 7, 7, 0] < 0.2 and out[0, 0, 7, 8, 0] > 0.05
  const = np.full((1, 15, 15, 3), 0.3, np.float32)
  np.testing.assert_allclose(blur(const, np.full((1, 1, 1, 1), 2.0, np.float32), 6), 0.3,
                             atol=1e-5)
