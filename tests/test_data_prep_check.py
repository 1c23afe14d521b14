"""data_prep.check: the same coverage as the build, from probes, with the build's flags."""
import json
import os
import subprocess
import sys

import pytest

import data_prep_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import mode)
from data_prep import builder
from data_prep import check
from data_prep import video_io


def _spec(tree, tmp_path, **kw):
  args = dict(a[2:].split('=', 1) for a in tree)
  return builder.BuildSpec(layout=args['layout'], videos_dir=args['videos_dir'], annotations=args['annotations'],
                           poses=args['poses'], out_dir=str(tmp_path / 'out'), name='x', **kw)


def test_check_reports_what_the_build_meets(tmp_path):
  tree = fx.ucf_tree(tmp_path)
  cut = tmp_path / 'videos' / 'Beta' / 'v_Beta_g16_c01.avi'  # index first, data cut: opens, fails at the end
  data = open(fx.write_faststart_mp4(str(cut)), 'rb').read()
  cut.write_bytes(data[:len(data) // 2])
  with open(tmp_path / 'lists' / 'trainlist01.txt', 'a') as f:
    f.write('Beta/v_Beta_g16_c01.avi 2\n')
  spec = _spec(tree, tmp_path, reencode_gop=0)
  report = check.check(spec, workers=1)
  summary = builder.build(spec)
  assert report['coverage'] == summary['coverage']
  assert report['coverage']['train'] == dict(listed=11, found=10, decodable=5, too_short=1, bad_poses=1, usable=3,
                                             missing_poses=3)
  problems = {p['video']: p for p in report['problems']}
  skipped = {s['video']: s for s in map(json.loads, open(builder.skipped_path(spec)))}
  assert {v for v, p in problems.items() if p['problem']} == set(skipped)
  for video, s in skipped.items():
    assert problems[video]['problem'] == s['problem'], video
  assert 'no frame decodes at the last key frame' in problems['Beta/v_Beta_g16_c01.avi']['reason']
  assert 'moov atom not found' in problems['Beta/v_Beta_g12_c01.avi']['reason']  # FFmpeg's own words
  assert 'file not found' in problems['Alpha/v_Alpha_g15_c01.avi']['reason']
  assert 'per the container' in problems['Beta/v_Beta_g14_c01.avi']['reason']
  assert 'malformed OpenPose JSON' in problems['Alpha/v_Alpha_g02_c01.avi']['reason']
  assert problems['Alpha/v_Alpha_g01_c01.avi']['poses'] == 'missing'  # usable, listed for its missing poses
  assert report['videos'] == 13 and report['seconds_per_1000_videos'] > 0
  assert check.check(spec, workers=2)['coverage'] == report['coverage']  # worker processes: the same


def test_cli_takes_the_build_flags(tmp_path):
  tree = fx.ucf_tree(tmp_path)
  args = tree + [f'--out_dir={tmp_path}/out', '--name=x', '--reencode_gop=12', '--short_side=64', '--min_frames=9']
  proc = subprocess.run([sys.executable, '-m', 'data_prep.check', *args], cwd=fx.REPO, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report['coverage']['train']['too_short'] == 1  # the 1-frame video
  assert report['coverage']['test']['too_short'] == 1  # 8 frames < --min_frames=9
  text = proc.stdout
  assert 'missing poses' in text and 'too short' in text and 's per 1000 videos' in text
  assert 'Beta/v_Beta_g13_c01.avi: ' in text and 'no video stream' in text
  assert not os.path.exists(tmp_path / 'out')  # a check writes nothing
  bad = subprocess.run([sys.executable, '-m', 'data_prep.check', '--layout=ucf101', f'--videos_dir={tmp_path}',
                        f'--annotations={tmp_path}/nowhere'], cwd=fx.REPO, capture_output=True, text=True,
                       timeout=60)
  assert bad.returncode == 1 and 'classInd.txt: annotation file not found' in bad.stderr


def test_probe_reads_the_metadata(tmp_path):
  path = fx.write_video(str(tmp_path / 'v.mp4'), num_frames=17)
  info = video_io.probe_video(path)
  assert info == dict(num_frames=17, fps=25.0, width=48, height=32, codec='h264')
  webm = fx.write_webm(str(tmp_path / 'w.webm'), num_frames=12)
  assert video_io.probe_video(webm)['num_frames'] == 12  # no frame count in WebM: duration x rate
  with pytest.raises(video_io.VideoTooShort, match='17 frame'):
    video_io.probe_video(path, min_frames=18)
