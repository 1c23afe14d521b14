"""Video decoding, resizing, JPEG encoding, fixed-GOP re-encoding and codec I-frame positions (PyAV).

Every function opens the file itself and decodes on one thread: the builder parallelises over processes.
"""
import contextlib
import io
import os

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import simplejpeg

I_FRAME = 1  # av 18: `frame.pict_type` is an int; 1 = AV_PICTURE_TYPE_I


class VideoError(Exception):
  """A video that cannot be used (corrupt, no video stream, too few frames); the message is the reason."""


class VideoNotFound(VideoError):
  """The listed file is not there."""


class VideoTooShort(VideoError):
  """The video decodes but has fewer frames than the build keeps."""


@contextlib.contextmanager
def _decoder_log():
  """Collects FFmpeg's own error messages (e.g. 'moov atom not found') of this thread during the block, for the
  reason of a VideoError; FFmpeg's log level is restored after (PyAV keeps logging off by default)."""
  old, old_skip = av.logging.get_level(), av.logging.get_skip_repeated()
  av.logging.set_level(av.logging.ERROR)
  av.logging.set_skip_repeated(False)  # the same message for the next bad file too
  try:
    with av.logging.Capture() as logs:
      yield logs
  finally:
    av.logging.set_level(old)
    av.logging.set_skip_repeated(old_skip)


def _decode_error(path, error, logs):
  """A VideoError whose reason holds PyAV's error and the last few distinct messages FFmpeg logged for it."""
  message = str(error).split('; last error log:')[0]  # PyAV's last log line may be another file's
  said = list(dict.fromkeys(text.strip() for _, _, text in logs if text.strip()))[-3:]
  detail = f' [{"; ".join(said)}]' if said else ''
  return VideoError(f'{path}: cannot decode ({type(error).__name__}: {message}){detail}')


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


def check_file(path):
  """Raises VideoNotFound / VideoError for a path that is not there or is empty (before any decoder sees it)."""
  if not os.path.isfile(path):
    raise VideoNotFound(f'{path}: file not found')
  if os.path.getsize(path) == 0:
    raise VideoError(f'{path}: empty file')


def _metadata_frame_count(container, stream, fps):
  """Frames per the container (nb_frames; else duration x frame rate, e.g. WebM); 0 when it says nothing."""
  if stream.frames:
    return int(stream.frames)
  if stream.duration and stream.time_base:
    seconds = float(stream.duration * stream.time_base)
  else:
    seconds = (container.duration or 0) / av.time_base
  return int(round(seconds * fps))


def _decodes_near_end(container, stream):
  """Seeks to the last key frame before the end and decodes one frame: False if none comes (True when the
  container gives no duration to seek by: the first frame is all that can be checked cheaply)."""
  if stream.duration:
    container.seek((stream.start_time or 0) + max(int(stream.duration) - 1, 0), stream=stream)
  elif container.duration:
    container.seek(max(int(container.duration) - 1, 0))
  else:
    return True
  return next(container.decode(stream), None) is not None


def probe_video(path, min_frames=2):
  """Cheap health check of one video (data_prep.check): open the container and its video stream, take the frame
  count from the metadata, decode the first frame and one frame at the last key frame (a file cut before its
  last key frame fails there; one cut inside its last GOP is not caught: that would take decoding it).

  Returns dict(num_frames (from the metadata), fps, width, height, codec). Raises VideoNotFound, VideoError
  (cannot open or decode, no video stream) or VideoTooShort (fewer than `min_frames` frames per the metadata).
  """
  check_file(path)
  logs = []
  try:
    with _decoder_log() as logs, av.open(_source(path)) as container:
      stream = _open_video_stream(container, path)
      fps = _fps(stream)
      num_frames = _metadata_frame_count(container, stream, fps)
      first = next(container.decode(stream), None)
      if first is None:
        raise VideoError(f'{path}: no decodable frames')
      if num_frames > 1 and not _decodes_near_end(container, stream):
        raise VideoError(f'{path}: no frame decodes at the last key frame (truncated?)')
      info = dict(num_frames=num_frames, fps=fps, width=first.width, height=first.height,
                  codec=stream.codec_context.name)
  except VideoError:
    raise
  except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as e:
    raise _decode_error(path, e, logs) from None
  if num_frames and num_frames < min_frames:
    raise VideoTooShort(f'{path}: {num_frames} frame(s) per the container, need at least {min_frames}')
  return info


def decoder_versions():
  """{'av': PyAV version, 'ffmpeg': FFmpeg version, 'libavcodec': 'x.y.z', 'libswscale': 'x.y.z'}."""
  libs = av.library_versions
  return dict(av=av.__version__, ffmpeg=str(av.ffmpeg_version_info),
              libavcodec='.'.join(map(str, libs['libavcodec'])), libswscale='.'.join(map(str, libs['libswscale'])))


def scaled_size(width, height, short_side):
  """(w, h) with the short side = `short_side` and the aspect ratio kept; both even (yuv420p encoders)."""
  scale = short_side / min(width, height)
  w, h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
  return w, h


def decode_video(path, short_side):
  """Decodes all frames, resized to short side `short_side` and kept in the codec's YUV 4:2:0.

  Returns dict(frames=(F, 3h/2, w) uint8 full-range YUV 4:2:0 (yuvj420p: the Y plane, then U, then V, as PyAV
  packs them), size=(w, h), keyframe_indices, fps, width, height) where width and height are the ORIGINAL
  size (pixel pose coordinates are normalised by it). Scaling in YUV with one reused swscale context and
  JPEG-encoding the planes (JFIF is full-range YCbCr) skips two colour conversions: ~2x faster than going
  through RGB. A resolution change mid-stream is scaled to the first size. Raises VideoError.
  """
  logs = []
  try:
    with _decoder_log() as logs, av.open(_source(path)) as container:
      stream = _open_video_stream(container, path)
      fps = _fps(stream)
      reformatter = VideoReformatter()
      frames, keyframes, size, width, height = [], [], None, 0, 0
      for i, frame in enumerate(container.decode(stream)):
        if size is None:
          width, height = frame.width, frame.height
          size = scaled_size(width, height, short_side)
        small = reformatter.reformat(frame, width=size[0], height=size[1], format='yuvj420p', interpolation='AREA')
        frames.append(small.to_ndarray())
        if int(frame.pict_type) == I_FRAME:
          keyframes.append(i)
  except VideoError:
    raise
  except (av.error.FFmpegError, ValueError, OSError, UnicodeDecodeError) as e:
    raise _decode_error(path, e, logs) from None
  if not frames:
    raise VideoError(f'{path}: no decodable frames')
  if fps <= 0:
    fps = 25.0  # no rate in the container: assume the common default, the record still says which fps
  return dict(frames=np.stack(frames), size=size, keyframe_indices=keyframes, fps=fps, width=width,
              height=height)


def yuv_to_rgb(frames):
  """(F, 3h/2, w) yuvj420p -> (F, h, w, 3) uint8 RGB (for inspection and tests)."""
  return np.stack([av.VideoFrame.from_ndarray(f, format='yuvj420p').to_ndarray(format='rgb24') for f in frames])


def encode_video(frames, fps, codec='libx264', gop=12, fixed_gop=True, options=None, pix_fmt='rgb24'):
  """(F, H, W, 3) uint8 RGB (or (F, 3H/2, W) with pix_fmt='yuvj420p') -> bytes of an mp4 (H, W even).

  fixed_gop: an I-frame exactly every `gop` frames (keyint_min = gop, scene-cut detection off; mpeg4 needs
  sc_threshold=1e9), as CoViAR's mpeg4 re-encoding does. Otherwise the encoder may add scene-cut I-frames.
  """
  buf = io.BytesIO()
  rate = max(1, round(fps))  # encoders want an integer-ish rate; the record keeps the source fps
  with av.open(buf, mode='w', format='mp4') as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width = frames.shape[2]
    stream.height = frames.shape[1] if pix_fmt == 'rgb24' else frames.shape[1] * 2 // 3
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
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=pix_fmt)):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return buf.getvalue()


def encode_jpegs(frames, quality):
  """(F, 3h/2, w) yuvj420p -> list of F JPEG byte strings (4:2:0, the planes as they are)."""
  h, w = frames.shape[1] * 2 // 3, frames.shape[2]
  out = []
  for f in frames:
    flat = f.reshape(-1)  # PyAV packs the planes back to back: Y (h*w), U, V (h*w/4 each)
    y, u, v = np.split(flat, [h * w, h * w + h * w // 4])
    out.append(simplejpeg.encode_jpeg_yuv_planes(y.reshape(h, w), u.reshape(h // 2, w // 2),
                                                 v.reshape(h // 2, w // 2), quality=quality))
  return out


def prepare_video(path, short_side=128, jpeg_quality=90, reencode_gop=0, min_frames=2):
  """One video file -> the video part of a record (see csvr_jax/data/records.py).

  reencode_gop > 0: the resized frames are re-encoded with mpeg4 at that fixed GOP and decoded again, so the
  stored frames and keyframe_indices come from the re-encoded video (what CoViAR-style models see).
  Returns dict(frames=list of JPEG bytes, keyframe_indices, num_frames, fps, gop, width, height).
  """
  video = decode_video(path, short_side)
  frames, keyframes = video['frames'], video['keyframe_indices']
  if len(frames) < min_frames:
    raise VideoTooShort(f'{path}: {len(frames)} frame(s), need at least {min_frames}')
  if reencode_gop:
    data = encode_video(frames, video['fps'], codec='mpeg4', gop=reencode_gop, pix_fmt='yuvj420p')
    again = decode_video(io.BytesIO(data), short_side)
    frames, keyframes = again['frames'], again['keyframe_indices']
  return dict(frames=encode_jpegs(frames, jpeg_quality), keyframe_indices=keyframes, num_frames=len(frames),
              fps=video['fps'], gop=reencode_gop, width=video['width'], height=video['height'])
