#!/usr/bin/env bash
# Wheels of the Python packages a lent GPU machine lacks, for its Python 3.12 on x86-64, into
# .whl/ (git-ignored; add "/.whl/" to .git/info/exclude), where benchmarks/gpu_checks.sh installs
# them from. The machine's image already has torch, triton, numpy, scipy, pandas, matplotlib,
# seaborn, h5py, pyyaml, tqdm, pytest, hypothesis and more (the device tool's KINDS.md lists
# them); a second version of one of those would make the offline install fail, so they are
# dropped after the download.
#
#   bash benchmarks/gpu_wheels.sh               # papermill (profile parameters), scikit-fem (simulation)
#   bash benchmarks/gpu_wheels.sh --notebooks   # + the Jupyter kernel, to run notebooks there
set -euo pipefail
dest=.whl
packages=(papermill scikit-fem)
if [[ "${1:-}" == "--notebooks" ]]; then
    packages+=(ipykernel)
fi
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
mkdir -p "$dest"
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$dest" "${packages[@]}"
# already on the machine (KINDS.md, 2026-11-17): keep its versions
present=(attrs certifi charset_normalizer click contourpy cycler fonttools h5py idna jinja2
         kiwisolver markupsafe matplotlib numpy packaging pandas pillow psutil pygments pyparsing
         python_dateutil pyyaml PyYAML requests scipy seaborn six tqdm typing_extensions
         urllib3 wheel setuptools)
for name in "${present[@]}"; do
    rm -f "$dest/$name"-[0-9]*.whl
done
du -sh "$dest"
ls "$dest"
