"""SynthActions figures: class-specific motions of an articulated COCO-18 stick figure, and its drawing.

Angles are image-plane angles in degrees: 0 = pointing down, +90 = pointing to +x. The figure mostly faces the
camera: its right side is image-left (`R = -1`), its left side image-right (`L = +1`); `facing` (+1 / -1) only
sets which way "forward" motions (walking, punching, kicking, bowing) swing, like a three-quarter view. The hip
height follows from the legs so that the lower ankle stands on the ground (plus a lift for jumps and runs).
"""
import numpy as np
from PIL import ImageDraw

R, L = -1.0, 1.0
# Segment lengths in units of the figure height H.
THIGH, SHIN, TORSO, UPPER_ARM, FOREARM = 0.24, 0.24, 0.30, 0.16, 0.15
SHOULDER_HALF, HIP_HALF, HEAD_UP, HEAD_RADIUS = 0.09, 0.055, 0.11, 0.075


def _standing(f):
  del f
  return dict(lean=0.0, lift=0.0, dx=0.0, ra=R * 8, re=R * 8, la=L * 8, le=L * 8,
              rt=R * 4, rs=R * 4, lt=L * 4, ls=L * 4)


def walk(p, f, t, speed):
  """Each motion: phase p (rad), facing f, time t (s), speed -> joint angles (see the module docstring)."""
  a = np.sin(p)
  return dict(lean=3 * f, lift=0.02 * abs(np.cos(p)), dx=0.30 * speed * t * f,
              ra=-f * 22 * a, re=-f * 22 * a + f * 18, la=f * 22 * a, le=f * 22 * a + f * 18,
              rt=f * 25 * a, rs=f * 25 * a - f * (12 + 12 * np.cos(p)),
              lt=-f * 25 * a, ls=-f * 25 * a - f * (12 - 12 * np.cos(p)))


def run(p, f, t, speed):
  a = np.sin(p)
  return dict(lean=14 * f, lift=0.07 * abs(a), dx=0.75 * speed * t * f,
              ra=-f * 40 * a, re=-f * 40 * a + f * 95, la=f * 40 * a, le=f * 40 * a + f * 95,
              rt=f * 45 * a, rs=f * 45 * a - f * (25 + 45 * (1 - a) / 2),
              lt=-f * 45 * a, ls=-f * 45 * a - f * (25 + 45 * (1 + a) / 2))


def jump(p, f, t, speed):
  del t, speed
  air, crouch = max(0.0, np.sin(p)), max(0.0, -np.sin(p))
  arms = 20 + 140 * air
  return dict(lean=10 * f * crouch, lift=0.35 * air, dx=0.0, ra=R * arms, re=R * arms, la=L * arms, le=L * arms,
              rt=R * 6 + f * 60 * crouch, rs=R * 6 - f * 50 * crouch,
              lt=L * 6 + f * 60 * crouch, ls=L * 6 - f * 50 * crouch)


def _raised_arm(side, p):
  upper = side * 125
  return upper, side * (165 + 28 * np.sin(2 * p))  # forearm up, swinging sideways


def wave_one_hand(p, f, t, speed, hand=R):
  del t, speed
  d = _standing(f)
  key = 'r' if hand == R else 'l'
  d[key + 'a'], d[key + 'e'] = _raised_arm(hand, p)
  return d


def wave_both_hands(p, f, t, speed):
  del t, speed
  d = _standing(f)
  d['ra'], d['re'] = _raised_arm(R, p)
  d['la'], d['le'] = _raised_arm(L, p)
  return d


def squat(p, f, t, speed):
  del t, speed
  c = (1 - np.cos(p)) / 2
  return dict(lean=30 * f * c, lift=0.0, dx=0.0, ra=f * 85 * c + R * 8 * (1 - c), re=f * 85 * c + R * 8 * (1 - c),
              la=f * 85 * c + L * 8 * (1 - c), le=f * 85 * c + L * 8 * (1 - c),
              rt=R * 8 + f * 85 * c, rs=R * 8 - f * 35 * c, lt=L * 8 + f * 85 * c, ls=L * 8 - f * 35 * c)


def punch(p, f, t, speed):
  del t, speed
  er, el = max(0.0, np.sin(p)) ** 0.7, max(0.0, -np.sin(p)) ** 0.7
  arm = lambda e: (f * (25 + 65 * e), f * (150 - 60 * e))  # guard -> straight forward
  (ra, re), (la, le) = arm(er), arm(el)
  return dict(lean=6 * f, lift=0.0, dx=0.0, ra=ra, re=re, la=la, le=le,
              rt=R * 14, rs=R * 14, lt=L * 14 - f * 5, ls=L * 14 - f * 5)


def kick(p, f, t, speed, leg=R):
  del t, speed
  k = max(0.0, np.sin(p)) ** 1.2
  d = dict(lean=-12 * f * k, lift=0.0, dx=0.0, ra=R * 70, re=R * 80, la=L * 70, le=L * 80,
           rt=R * 4, rs=R * 4, lt=L * 4, ls=L * 4)
  key = 'r' if leg == R else 'l'
  d[key + 't'] = f * 85 * k + leg * 4 * (1 - k)
  d[key + 's'] = d[key + 't'] - f * 70 * np.sin(np.pi * k) * (1 - k)  # knee bends on the way, then snaps
  return d


def clap(p, f, t, speed):
  del t, speed
  o = (1 + np.cos(2 * p)) / 2  # 1 = hands apart, 0 = together
  d = _standing(f)
  d['ra'], d['la'] = R * (25 + 30 * o), L * (25 + 30 * o)
  d['re'], d['le'] = R * (25 + 30 * o) - R * (140 - 60 * o), L * (25 + 30 * o) - L * (140 - 60 * o)
  return d


def bow(p, f, t, speed):
  del t, speed
  b = (1 - np.cos(p)) / 2
  d = _standing(f)
  d['lean'] = 75 * f * b
  d['ra'] = d['re'] = R * 6 + f * 20 * b
  d['la'] = d['le'] = L * 6 + f * 20 * b
  d['rt'], d['lt'] = R * 4 - f * 8 * b, L * 4 - f * 8 * b
  d['rs'], d['ls'] = d['rt'], d['lt']
  return d


def jumping_jack(p, f, t, speed):
  del t, speed
  s = (1 - np.cos(p)) / 2
  return dict(lean=0.0, lift=0.08 * abs(np.sin(p)), dx=0.0, ra=R * (10 + 150 * s), re=R * (10 + 160 * s),
              la=L * (10 + 150 * s), le=L * (10 + 160 * s), rt=R * (4 + 22 * s), rs=R * (4 + 22 * s),
              lt=L * (4 + 22 * s), ls=L * (4 + 22 * s))


def arm_circles(p, f, t, speed):
  del t, speed
  d = _standing(f)
  a = np.degrees(p) % 360
  d['ra'] = d['re'] = R * a
  d['la'] = d['le'] = L * a
  return d


def side_step(p, f, t, speed):
  del t, speed
  s = (1 - np.cos(2 * p)) / 2
  d = _standing(f)
  d['dx'] = 0.25 * np.sin(p)
  d['rt'] = d['rs'] = R * (4 + 20 * s)
  d['lt'] = d['ls'] = L * (4 + 20 * s)
  d['ra'], d['la'] = R * (10 + 30 * s), L * (10 + 30 * s)
  d['re'], d['le'] = d['ra'], d['la']
  return d


def march(p, f, t, speed):
  del t, speed
  a, b = max(0.0, np.sin(p)), max(0.0, -np.sin(p))  # high knees in turn; shins hang straight down
  return dict(lean=0.0, lift=0.0, dx=0.0, ra=-f * 35 * np.sin(p), re=-f * 35 * np.sin(p) + f * 90,
              la=f * 35 * np.sin(p), le=f * 35 * np.sin(p) + f * 90,
              rt=R * 4 + f * 90 * a, rs=R * 4, lt=L * 4 + f * 90 * b, ls=L * 4)


# name -> (motion, cycles per second at speed 1). Order = class order (class k uses MOTIONS[k]).
MOTIONS = {
    'Walk': (walk, 1.0), 'Run': (run, 1.6), 'Jump': (jump, 1.1), 'WaveOneHand': (wave_one_hand, 1.3),
    'WaveBothHands': (wave_both_hands, 1.3), 'Squat': (squat, 0.7), 'Punch': (punch, 1.2), 'Kick': (kick, 0.8),
    'Clap': (clap, 0.9), 'Bow': (bow, 0.5), 'JumpingJack': (jumping_jack, 1.0), 'ArmCircles': (arm_circles, 0.9),
    'SideStep': (side_step, 0.6), 'March': (march, 1.0),
}


def _direction(angle_deg):
  a = np.radians(angle_deg)
  return np.array([np.sin(a), np.cos(a)])


def skeleton(angles, height, base_x, ground_y, width_factor, facing):
  """Joint angles -> (18, 2) COCO-18 pixel coordinates (x right, y down)."""
  h = height
  # Legs hang from the hip; the lower ankle stands on the ground, then the lift raises everything.
  leg_r = THIGH * _direction(angles['rt']) + SHIN * _direction(angles['rs'])
  leg_l = THIGH * _direction(angles['lt']) + SHIN * _direction(angles['ls'])
  hip_y = ground_y - h * (max(leg_r[1], leg_l[1]) + angles['lift'])
  hip = np.array([base_x + h * angles['dx'], hip_y])
  up = np.array([np.sin(np.radians(angles['lean'])), -np.cos(np.radians(angles['lean']))])
  side = np.array([-up[1], up[0]])  # perpendicular to the torso, pointing to +x when upright
  neck = hip + h * TORSO * up
  j = np.zeros((18, 2))
  j[1] = neck
  j[2], j[5] = neck + R * h * SHOULDER_HALF * width_factor * side, neck + L * h * SHOULDER_HALF * width_factor * side
  j[8], j[11] = hip + R * h * HIP_HALF * width_factor * side, hip + L * h * HIP_HALF * width_factor * side
  for sh, el, wr, a, e in ((2, 3, 4, 'ra', 're'), (5, 6, 7, 'la', 'le')):
    j[el] = j[sh] + h * UPPER_ARM * _direction(angles[a])
    j[wr] = j[el] + h * FOREARM * _direction(angles[e])
  for hp, kn, an, th, sn in ((8, 9, 10, 'rt', 'rs'), (11, 12, 13, 'lt', 'ls')):
    j[kn] = j[hp] + h * THIGH * _direction(angles[th])
    j[an] = j[kn] + h * SHIN * _direction(angles[sn])
  head = neck + h * HEAD_UP * up
  turn = facing * (1 - width_factor)  # side views put the face towards the facing direction
  j[0] = head + h * np.array([0.045 * turn, 0.01])
  j[14], j[15] = head + h * np.array([-0.025 + 0.03 * turn, -0.015]), head + h * np.array([0.025 + 0.03 * turn, -0.015])
  j[16], j[17] = head + h * np.array([-0.05 * width_factor, 0.0]), head + h * np.array([0.05 * width_factor, 0.0])
  return j


_BONES_BACK = ((11, 12, 'pants'), (12, 13, 'pants'), (5, 6, 'shirt'), (6, 7, 'skin'))
_BONES_FRONT = ((8, 11, 'pants'), (8, 9, 'pants'), (9, 10, 'pants'), (2, 3, 'shirt'), (3, 4, 'skin'))


def draw_figure(image, joints, height, colours):
  """Draws the figure on a PIL image in place: thick limbs, filled torso and head. colours: dict of RGB."""
  draw = ImageDraw.Draw(image)
  width = max(2, int(round(0.065 * height)))
  shade = {k: tuple(int(c * 0.75) for c in v) for k, v in colours.items()}  # far-side limbs darker
  pt = lambda i: (float(joints[i, 0]), float(joints[i, 1]))

  def bone(a, b, colour):
    draw.line([pt(a), pt(b)], fill=colour, width=width)
    r = width / 2
    for i in (a, b):
      draw.ellipse([joints[i, 0] - r, joints[i, 1] - r, joints[i, 0] + r, joints[i, 1] + r], fill=colour)

  for a, b, part in _BONES_BACK:
    bone(a, b, shade[part])
  draw.polygon([pt(2), pt(5), pt(11), pt(8)], fill=colours['shirt'])
  bone(2, 5, colours['shirt'])
  for a, b, part in _BONES_FRONT:
    bone(a, b, colours[part])
  head = (joints[14] + joints[15]) / 2 + np.array([0.0, 0.015 * height])
  r = HEAD_RADIUS * height
  draw.ellipse([head[0] - r, head[1] - r, head[0] + r, head[1] + r], fill=colours['skin'])
  hair_r = r * 0.9
  draw.chord([head[0] - hair_r, head[1] - r, head[0] + hair_r, head[1] + r * 0.2], 180, 360, fill=colours['hair'])
