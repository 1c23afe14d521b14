"""csvr_jax.data.fingerprint: reading a dataset's fingerprint and naming the preprocessing differences."""
import json

import pytest

from csvr_jax.data import fingerprint


def _fp(**preprocessing):
  base = dict(short_side=128, jpeg_quality=90, gop_policy='mpeg4 re-encode, fixed GOP 12 (CoViAR)',
              pose_source='openpose', frame_scaling='YUV', fps='as the source', decoder='FFmpeg 8.1.2')
  return dict(version=1, counts={'train': 3}, preprocessing=dict(base, **preprocessing))


def test_read_fingerprint(tmp_path):
  assert fingerprint.read_fingerprint(str(tmp_path)) is None  # a dataset built before fingerprints
  (tmp_path / 'fingerprint.json').write_text(json.dumps(_fp()))
  assert fingerprint.read_fingerprint(str(tmp_path)) == _fp()
  (tmp_path / 'fingerprint.json').write_text('{"version": 1,')
  with pytest.raises(ValueError, match='fingerprint.json: unreadable dataset fingerprint'):
    fingerprint.read_fingerprint(str(tmp_path))
  (tmp_path / 'fingerprint.json').write_text('[1]')
  with pytest.raises(ValueError, match='fingerprint.json: a dataset fingerprint is a JSON object'):
    fingerprint.read_fingerprint(str(tmp_path))


def test_old_dataset_without_fingerprint_still_reads(tmp_path):
  import pretrain_fixtures  # pylint: disable=g-import-not-at-top - TFDS, only here
  from csvr_jax.data import records  # pylint: disable=g-import-not-at-top
  d = pretrain_fixtures.write_toy_dataset(tmp_path)  # written without data_prep.build: no fingerprint
  assert fingerprint.read_fingerprint(d) is None and len(records.open_split(d, 'train')) == 8


def test_preprocessing_differences():
  a = _fp()
  assert fingerprint.preprocessing_differences(a, _fp()) == []
  assert fingerprint.preprocessing_differences(a, _fp(short_side=160)) == ['short side 128 vs 160']
  b = _fp(jpeg_quality=75, gop_policy="the codec's own key frames", decoder='FFmpeg 6.0')
  assert fingerprint.preprocessing_differences(a, b) == [
      'JPEG quality 90 vs 75', "GOP policy mpeg4 re-encode, fixed GOP 12 (CoViAR) vs the codec's own key frames",
      'decoder FFmpeg 8.1.2 vs FFmpeg 6.0']
  c = _fp(crop='centre')  # a field this version does not know: named after its key
  del c['preprocessing']['pose_source']
  assert fingerprint.preprocessing_differences(a, c) == ['pose source openpose vs (not recorded)',
                                                         'crop (not recorded) vs centre']
  assert fingerprint.preprocessing_differences(a, dict(a, counts={'train': 9})) == []  # counts are not preprocessing
  assert fingerprint.preprocessing_differences(None, a) == [] and fingerprint.preprocessing_differences(a, None) == []
