#!/usr/bin/env bash
# tools/profile.sh laid out as the Docker image's profile stage lays it out (docker/Dockerfile):
# /opt/ouro/bin/ouro-profile next to /opt/ouro/bin/ouro on PATH, run from /workspace with the
# shipped configs. Its dry run must pick the ouro on PATH (there is no build/ouro beside it) and
# write under the working directory's runs/; in a checkout with build/ouro, that one wins; with
# neither, it stops with a message. No profiler, GPU or Docker needed.
#   tests/profile_sh_image.sh REPO_ROOT
set -euo pipefail
repo=$(cd "$1" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$t/opt/ouro/bin" "$t/workspace/configs"
cp "$repo/tools/profile.sh" "$t/opt/ouro/bin/ouro-profile"
printf '#!/bin/sh\nexit 0\n' >"$t/opt/ouro/bin/ouro"
chmod +x "$t/opt/ouro/bin/ouro"
cp "$repo/configs/tiny.toml" "$t/workspace/configs/"

cd "$t/workspace"
out=$(PATH="$t/opt/ouro/bin:/usr/bin:/bin" ouro-profile nsys configs/tiny.toml --device cuda --dry-run)
echo "$out"
want="^nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop --trace=cuda,nvtx,osrt .*--output runs/profile/tiny-nsys-[0-9]{8}T[0-9]{6}Z/profile $t/opt/ouro/bin/ouro train -c configs/tiny.toml --profile-steps 10:13 --stop-at 13 --set run.out_dir=runs/profile/tiny-nsys-[0-9]{8}T[0-9]{6}Z/run --device cuda \$"
[[ $out =~ $want ]] || fail "nsys dry run in the image layout: expected /opt/ouro/bin/ouro from PATH and runs/profile under /workspace"

out=$(PATH="$t/opt/ouro/bin:/usr/bin:/bin" ouro-profile ncu configs/tiny.toml --steps 4:6 --dry-run)
echo "$out"
[[ $out =~ ^ncu\ .*--export\ runs/profile/tiny-ncu-[0-9TZ]+/profile\ $t/opt/ouro/bin/ouro\ train\ -c\ configs/tiny.toml\ --profile-steps\ 4:6 ]] ||
  fail "ncu dry run in the image layout"

# A source checkout's build/ouro wins over the one on PATH.
mkdir -p "$t/checkout/tools" "$t/checkout/build"
cp "$repo/tools/profile.sh" "$t/checkout/tools/profile.sh"
cp "$t/opt/ouro/bin/ouro" "$t/checkout/build/ouro"
out=$(PATH="$t/opt/ouro/bin:/usr/bin:/bin" "$t/checkout/tools/profile.sh" nsys configs/tiny.toml --dry-run)
[[ $out == *" $t/checkout/build/ouro train "* ]] || fail "in a checkout, build/ouro should be used: $out"

# Neither: a clear error, not a command with an empty binary.
rm "$t/opt/ouro/bin/ouro"
if err=$(PATH="$t/opt/ouro/bin:/usr/bin:/bin" ouro-profile nsys configs/tiny.toml --dry-run 2>&1); then
  fail "no ouro anywhere, yet the dry run succeeded: $err"
fi
[[ $err == *"no ouro binary"* ]] || fail "no ouro anywhere: unexpected message: $err"
echo "profile_sh_image: ok"
