"""Video decoding, resizing, JPEG encoding, fixed-GOP re-encoding and codec I-frame positions (PyAV).

Every function opens the file itself and decodes on one thread: the builder parallelises over processes.
"""
import io

import av
import numpy as np
import simplejpeg

I_FRAME = 1  # av 18: `frame.pict_type` is an int; 1 = AV_PICTURE_TYPE_I


class VideoError(Exception):
  """A video that cannot be used (corrupt, no video stream, too few frames); the message is the reason."""


def _source(path):
  return path if hasattr(path, 'read') else str(path)


def _open_video_stream(container, path):
  streams = container.streams.video
  if not streams:
    raise VideoError(f'{path}: no video stream')
  stream = streams[0]
  stream.thread_type = 'SLICE'  # no frame threading: one core per worker process, output order kept
  stream.codec_context.thread_count = 1
  return stream


def _fps(stream):
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  return float(rate) if rate else 0.0


def keyframe_indices(path):
  """Display-order indices of the frames the codec decoded as I-frames (from `frame.pict_type`).

  Frames leave the decoder in display order, so the n-th decoded frame has display index n whatever the
  decode order (B-frames) was. Works for any codec FFmpeg decodes; no motion-vector extension needed.
  """
  with av.open(_source(path)) as container:
    stream = _open_video_stream(container, path)
    return [i for i, frame in enumerate(container.decode(stream)) if int(frame.pict_type) == I_FRAME]


def scaled_size(width, height, short_side):
  """(w, h) with the short side = `short_side` and the aspect ratio kept; both even (yuv420p encoders)."""
  scale = short_side / min(width, height)
  w, h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
  return w, h


def decode_video(path, short_side):
  """Decodes all frames resized to short side `short_side`.

  Returns dict(frames=(F, h, w, 3) uint8, keyframe_indices=list[int], fps=float, width, height) where width
  and height are the ORIGINAL size (pose coordinates in pixels are normalised by it). Raises VideoError.
  """
  try:
    with av.open(_source(path)) as container:
      stream = _open_video_stream(container, path)
      fps, width, height = _fps(stream), stream.codec_context.width, stream.codec_context.height
      frames, keyframes = [], []
      for i, frame in enumerate(container.decode(stream)):
        if not width:
          width, height = frame.width, frame.height
        w, h = scaled_size(frame.width, frame.height, short_side)
        frames.append(frame.to_ndarray(width=w, height=h, format='rgb24', interpolation='AREA'))
        if int(frame.pict_type) == I_FRAME:
          keyframes.append(i)
  except VideoError:
    raise
  except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as e:
    raise VideoError(f'{path}: cannot decode ({type(e).__name__}: {e})') from None
  if not frames:
    raise VideoError(f'{path}: no decodable frames')
  if len({f.shape for f in frames}) > 1:  # resolution change mid-stream: keep the first size
    frames = [f if f.shape == frames[0].shape else _resize(f, frames[0].shape[1::-1]) for f in frames]
  if fps <= 0:
    fps = 25.0  # no rate in the container: assume the common default, the record still says which fps
  return dict(frames=np.stack(frames), keyframe_indices=keyframes, fps=fps, width=width, height=height)


def _resize(image, size):
  frame = av.VideoFrame.from_ndarray(image, format='rgb24')
  return frame.to_ndarray(width=size[0], height=size[1], format='rgb24')


def encode_video(frames, fps, codec='libx264', gop=12, fixed_gop=True, options=None):
  """(F, H, W, 3) uint8 -> bytes of an mp4 (H, W even).

  fixed_gop: an I-frame exactly every `gop` frames (keyint_min = gop, scene-cut detection off; mpeg4 needs
  sc_threshold=1e9), as CoViAR's mpeg4 re-encoding does. Otherwise the encoder may add scene-cut I-frames.
  """
  buf = io.BytesIO()
  rate = max(1, round(fps))  # encoders want an integer-ish rate; the record keeps the source fps
  with av.open(buf, mode='w', format='mp4') as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = 'yuv420p'
    stream.codec_context.gop_size = gop
    stream.codec_context.thread_count = 1
    opts = dict(options or {})
    if fixed_gop:
      opts.update(keyint_min=str(gop), sc_threshold='1000000000' if codec == 'mpeg4' else '0')
    if codec == 'mpeg4':  # constant quantiser 3 (ffmpeg -q:v 3): high quality, the frames are re-read
      stream.codec_context.qscale = 3
    stream.options = opts
    for image in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return buf.getvalue()


def encode_jpegs(frames, quality):
  """(F, H, W, 3) uint8 -> list of F JPEG byte strings (4:2:0, like the source video)."""
  return [simplejpeg.encode_jpeg(np.ascontiguousarray(f), quality=quality, colorspace='RGB',
                                 colorsubsampling='420') for f in frames]


def prepare_video(path, short_side=128, jpeg_quality=90, reencode_gop=0, min_frames=2):
  """One video file -> the video part of a record (see csvr_jax/data/records.py).

  reencode_gop > 0: the resized frames are re-encoded with mpeg4 at that fixed GOP and decoded again, so the
  stored frames and keyframe_indices come from the re-encoded video (what CoViAR-style models see).
  Returns dict(frames=list of JPEG bytes, keyframe_indices, num_frames, fps, gop, width, height).
  """
  video = decode_video(path, short_side)
  frames, keyframes = video['frames'], video['keyframe_indices']
  if len(frames) < min_frames:
    raise VideoError(f'{path}: {len(frames)} frame(s), need at least {min_frames}')
  if reencode_gop:
    data = encode_video(frames, video['fps'], codec='mpeg4', gop=reencode_gop)
    again = decode_video(io.BytesIO(data), short_side)
    frames, keyframes = again['frames'], again['keyframe_indices']
  return dict(frames=encode_jpegs(frames, jpeg_quality), keyframe_indices=keyframes, num_frames=len(frames),
              fps=video['fps'], gop=reencode_gop, width=video['width'], height=video['height'])
