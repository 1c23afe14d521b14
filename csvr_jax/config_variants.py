"""Config-file variants: `--config=configs/FILE.py:a,b` -> the set {'a', 'b'}, checked against what FILE offers.

One parser for every config file (big_vision's `parse_arg` idea, for plain names): an unknown or duplicate
variant, or two variants of a group that exclude each other, is a one-line error naming the file and listing
the choices; without it a typo (`:smokee`) would silently run the full recipe.
"""


def parse(arg, config_file, *groups):
  """The variant names of `arg` ('' / None = none).

  Args:
    arg: the text after ':' in --config=FILE:ARG.
    config_file: e.g. 'configs/k400.py', for messages.
    groups: tuples of names; at most one name of each group may be given.
  Returns:
    frozenset of the names given.
  """
  names = [n.strip() for n in (arg or '').split(',') if n.strip()]
  known = [n for group in groups for n in group]
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f'{config_file}:{arg}: unknown variant {unknown[0]!r}; choose from {", ".join(known)} '
                     '(comma-separated, or none)')
  if len(set(names)) != len(names):
    raise ValueError(f'{config_file}:{arg}: a variant is given twice')
  for group in groups:
    chosen = [n for n in names if n in group]
    if len(chosen) > 1:
      raise ValueError(f'{config_file}:{arg}: {" and ".join(chosen)} exclude each other')
  return frozenset(names)


def require_one(variants, group, config_file):
  """The one name of `group` in `variants` (a one-line error when none is given)."""
  chosen = [n for n in group if n in variants]
  if len(chosen) != 1:
    raise ValueError(f'{config_file}: name one of {", ".join(group)} (e.g. --config={config_file}:{group[0]})')
  return chosen[0]
