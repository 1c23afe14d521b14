"""Pretraining input pipeline throughput vs the naive per-sample mp4 decode (`--what=pipeline`).

Generates its own input in a temp dir: a few 320x240 H.264 videos (textured, panning background and a
moving figure) and their records prepared as data_prep.build does (frames as JPEG q90 at short side 128, codec
I-frames; synthetic poses), each written COPIES times with data_prep.tfds_writer (grain's per-element shuffle
cost grows as 1 / num_records and would dominate a 4-record dataset; real datasets have thousands). Then:
  1. JPEG decoders on the stored frames: simplejpeg (the pipeline's), OpenCV, PIL;
  2. the Grain pretraining pipeline (clip + future + I-frames + poses, random resized crop + flip to 112),
     num_workers=0: samples per CPU-second of the whole process (its read threads included) = samples/s per
     worker core; then the wall-clock rate of one process and of min(8, cores) worker processes;
  3. the naive baseline: per sample, open the mp4 with PyAV (one codec thread), seek to the key frame before
     the window, decode up to the last needed frame (clip + future + I-frames), then the same crop + flip;
     samples per CPU-second of its (single) thread.
Colour jitter / blur run on the accelerator inside the step and are not part of either number.
"""
import io
import json
import os
import tempfile
import time

import av
import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import simplejpeg
from PIL import Image

from csvr_jax.benchmarks import common
from csvr_jax.data import augment
from csvr_jax.data import pipeline
from csvr_jax.data import records
from csvr_jax.data import sampling

NUM_VIDEOS, NUM_FRAMES, WIDTH, HEIGHT, FPS, GOP = 4, 180, 320, 240, 25, 12  # 7.2 s: UCF101's mean length
# Records per video. Grain's shuffled IndexSampler costs ~35 ms / num_records per element plus ~0.05 ms: 0.33
# ms at 128 records (4 % of a sample), 0.11 ms at 512, ~0.06 ms at UCF101's 9.5k training videos.
COPIES = 128
PIPELINE_SAMPLES, BASELINE_SAMPLES, BATCH = 384, 24, 8
WARMUP_BATCHES = 4


def _video_frames(seed):
  """(NUM_FRAMES, 240, 320, 3) uint8: panning smoothed-noise texture with a moving bright figure."""
  rng = np.random.default_rng(seed)
  texture = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8), (0, 0), 5)
  texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
  frames = np.empty((NUM_FRAMES, HEIGHT, WIDTH, 3), np.uint8)
  for t in range(NUM_FRAMES):
    dx, dy = int(t * 1.3) % WIDTH, int(t * 0.7) % HEIGHT
    f = texture[dy:dy + HEIGHT, dx:dx + WIDTH].copy()
    cx = int(WIDTH / 2 + 100 * np.sin(t / 20))
    cv2.rectangle(f, (cx - 15, 60), (cx + 15, 200), (240, 200, 180), -1)
    frames[t] = f
  return frames


def _write_mp4(path, frames):
  with av.open(path, 'w') as out:
    stream = out.add_stream('libx264', rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, 'yuv420p'
    stream.gop_size = GOP
    stream.options = {'keyint_min': str(GOP), 'sc_threshold': '0'}
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format='rgb24')):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)


def _record(path, index, short_side):
  """Record of an mp4, prepared as data_prep.build does (video_io.prepare_video), with synthetic poses."""
  from data_prep import video_io  # deferred like tfds_writer: data_prep is only needed to make the input
  video = video_io.prepare_video(path, short_side=short_side, jpeg_quality=90)
  n = video['num_frames']
  t = np.arange(n)[:, None]
  poses = np.zeros((n, records.NUM_JOINTS, 3), np.float16)
  poses[..., 0] = 0.5 + 0.3 * np.sin(t / 20) + 0.01 * np.arange(records.NUM_JOINTS)
  poses[..., 1] = np.linspace(0.25, 0.85, records.NUM_JOINTS)
  poses[..., 2] = 1
  return dict(video_id=os.path.basename(path), label=index % 2, num_frames=n, fps=float(video['fps']),
              frames=np.array(video['frames'], object), keyframe_indices=np.asarray(video['keyframe_indices'],
                                                                                   np.int32),
              poses=poses, pose_source='synthetic', gop=video['gop'])


def _cpu_rate(fn, count, clock=time.process_time):
  """Runs fn() (which processes `count` samples) and returns samples per CPU-second.

  clock: time.process_time counts every thread of this process (the pipeline's read threads included);
  time.thread_time only the calling thread (the baseline is single-threaded by construction).
  """
  start = clock()
  fn()
  return count / (clock() - start)


def _decoder_ms(jpegs):
  """CPU ms per frame for each decoder, best of 3 passes over `jpegs`."""
  decoders = {
      'simplejpeg': augment.decode_jpeg,
      'opencv': lambda b: cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR),
                                       cv2.COLOR_BGR2RGB),
      'pil': lambda b: np.asarray(Image.open(io.BytesIO(b)).convert('RGB')),
  }
  out = {}
  for name, dec in decoders.items():
    times = []
    for _ in range(3):
      start = time.process_time()
      for b in jpegs:
        dec(b)
      times.append(time.process_time() - start)
    out[name] = 1e3 * min(times) / len(jpegs)
  return out


def _baseline_sample(path, c, rng):
  """Naive loader: PyAV seek + decode of the window from the mp4, then crop + flip of every needed frame."""
  window = sampling.sample_window(NUM_FRAMES, c.clip_len + c.future_len, c.stride, c.short_video_policy, rng)
  clip_w, future_w = sampling.split_clip_future(window, c.clip_len)
  # I-frames: with a fixed GOP they are every GOP-th frame (what the baseline would know from the container).
  iframe_idx, iframe_mask = sampling.select_iframes(np.arange(0, NUM_FRAMES, GOP), clip_w.frames,
                                                    c.iframe_margin, c.max_iframes, rng)
  needed = set(window.frames.tolist()) | set(iframe_idx[iframe_mask].tolist())
  first, last = min(needed), max(needed)
  decoded = {}
  with av.open(path) as container:
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    ticks_per_frame = 1 / (FPS * stream.time_base)
    container.seek(int(first * ticks_per_frame), stream=stream, backward=True)
    for frame in container.decode(stream):
      i = int(round(frame.pts / ticks_per_frame))
      if i in needed:
        decoded[i] = frame.to_ndarray(format='rgb24')
      if i >= last:
        break
  box = augment.random_crop_box(HEIGHT, WIDTH, c.crop_scale, c.crop_ratio, rng)
  flip = bool(rng.random() < c.flip_prob)
  views = [augment.crop_resize(decoded[int(i)], box, c.crop_size) for i in window.frames]
  for i in iframe_idx[iframe_mask]:
    ibox = augment.random_crop_box(HEIGHT, WIDTH, c.crop_scale, c.crop_ratio, rng)
    views.append(augment.crop_resize(decoded[int(i)], ibox, c.crop_size))
  out = np.stack(views)
  return out[:, :, ::-1] if flip else out


def main():
  c = ml_collections.ConfigDict(common.recipe_config('base').data.to_dict())
  c.num_workers = 0
  from data_prep import tfds_writer  # deferred: imports TFDS
  with tempfile.TemporaryDirectory(prefix='csvr_pipeline_bench_') as tmp:
    paths, recs = [], []
    for i in range(NUM_VIDEOS):
      path = os.path.join(tmp, f'video{i}.mp4')
      _write_mp4(path, _video_frames(i))
      paths.append(path)
      recs.append(_record(path, i, c.short_side))
    copies = [dict(r, video_id=f"{r['video_id']}_{k}") for k in range(COPIES) for r in recs]
    dataset_dir = tfds_writer.write_dataset(os.path.join(tmp, 'tfds'), 'pipeline_bench', ['a', 'b'],
                                            {'train': copies})
    stored = list(recs[0]['frames'][:36])
    decoders = _decoder_ms(stored)

    loader = pipeline.pretrain_loader(c, dataset_dir, 'train', BATCH, seed=0, shard_index=0, shard_count=1)
    it = iter(loader)
    for _ in range(WARMUP_BATCHES):  # file handles, first reads, decode buffers, allocator pools
      batch = next(it)
    # CPU time and wall time over the same window (one process, no threads: the two agree on an idle machine).
    start = time.perf_counter()
    pipe_rate = _cpu_rate(lambda: [next(it) for _ in range(PIPELINE_SAMPLES // BATCH)], PIPELINE_SAMPLES)
    pipe_wall = PIPELINE_SAMPLES / (time.perf_counter() - start)

    workers = min(8, os.cpu_count())
    it = iter(pipeline.pretrain_loader(c, dataset_dir, 'train', BATCH, seed=0, shard_index=0, shard_count=1,
                                       num_workers=workers))
    for _ in range(2 * workers):  # warm-up: worker start-up and their first batches
      next(it)
    start = time.perf_counter()
    for _ in range(PIPELINE_SAMPLES // BATCH):
      next(it)
    workers_wall = PIPELINE_SAMPLES / (time.perf_counter() - start)
    del it

    rng = np.random.default_rng(0)
    _baseline_sample(paths[0], c, rng)  # warm-up
    base_rate = _cpu_rate(lambda: [_baseline_sample(paths[k % NUM_VIDEOS], c, rng)
                                   for k in range(BASELINE_SAMPLES)], BASELINE_SAMPLES,
                          clock=time.thread_time)

  result = {
      'jpeg_decode_ms_per_frame': {k: round(v, 3) for k, v in decoders.items()},
      'stored_jpeg_kb': round(float(np.mean([len(b) for b in stored])) / 1024, 1),
      'pipeline_samples_per_core_s': round(pipe_rate, 1),
      'pipeline_samples_per_s_wall_1proc': round(pipe_wall, 1),
      f'pipeline_samples_per_s_wall_{workers}workers': round(workers_wall, 1),
      'cpu_count': os.cpu_count(),
      'baseline_pyav_samples_per_core_s': round(base_rate, 1),
      'speedup_vs_baseline': round(pipe_rate / base_rate, 2),
      'sample': {k: list(v.shape[1:]) for k, v in batch.items()},
      'frames_per_sample': int(c.clip_len + c.future_len),
      'max_iframes': int(c.max_iframes),
  }
  print(f"JPEG decode, CPU ms/frame (128x171, {result['stored_jpeg_kb']} KB): " +
        ', '.join(f'{k} {v:.3f}' for k, v in result['jpeg_decode_ms_per_frame'].items()))
  print(f"pretraining pipeline: {pipe_rate:.1f} samples/s per core (target >= 100); "
        f"naive PyAV baseline: {base_rate:.1f} samples/s per core; speed-up {pipe_rate / base_rate:.1f}x "
        '(target >= 5x)')
  print(f'with {workers} worker processes: {workers_wall:.1f} samples/s (wall, {os.cpu_count()} cores)')
  if jax.default_backend() != 'cpu':
    result['device_augment_ms_per_batch'] = _device_augment_ms(c, batch)
    print(f"device colour jitter + blur + normalisation of that batch: {result['device_augment_ms_per_batch']} ms")
  print(json.dumps(result))


def _device_augment_ms(c, batch):
  """Accelerator time of device_augment on one pretraining batch (clip, future clip, I-frames)."""
  @jax.jit
  def step(clip, future, iframes, key):
    k1, k2 = jax.random.split(key)
    both = augment.device_augment(jnp.concatenate([clip, future], 1), k1, c)
    return both, augment.device_augment(iframes, k2, c, shared_axes=0)
  args = [jax.device_put(batch[k]) for k in ('clip', 'future_clip', 'iframes')]
  jax.block_until_ready(step(*args, jax.random.key(0)))
  start = time.perf_counter()
  for i in range(20):
    out = step(*args, jax.random.key(i))
  jax.block_until_ready(out)
  return round(1e3 * (time.perf_counter() - start) / 20, 2)
