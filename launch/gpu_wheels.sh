#!/usr/bin/env bash
# Wheels (CPython 3.12, x86-64) of what csvr_jax needs and the lent GPU machines lack, into .whl/ (ignored by git),
# for launch/gpu_study.sh to install there with --no-deps (~45 MB: a device call carries 64 MiB in all).
# The machines have JAX, flax, optax, orbax-checkpoint, chex, absl, etils, numpy, protobuf, psutil, pyarrow,
# requests, tqdm, wrapt, six, cloudpickle, OpenCV, scikit-learn, matplotlib and Pillow (device tool, KINDS.md).
# Versions are pyproject.toml's pins and what they resolved to in the project's venv.
set -eu
cd "$(dirname "$0")/.."
DEST=${DEST:-.whl}
mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do PLATFORMS+=(--platform "$p"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d "$DEST" grain==0.2.18 array_record==0.8.6 av==18.1.0 tensorflow-datasets==4.9.10 ml_collections==1.1.0 \
  simplejpeg==1.9.0 tensorboardX==2.6.5 dm-tree==0.1.10 immutabledict==4.3.1 simple-parsing==0.1.9 \
  docstring_parser==0.18.0 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 termcolor==3.3.0 \
  toml==0.10.2 portpicker==1.6.0
# promise (a TFDS dependency) is published as a source archive only: build its pure-Python wheel here.
python3 -m pip wheel -q --no-deps -w "$DEST" promise==2.3
du -sh "$DEST"
