#!/usr/bin/env bash
# The distribution packages that programs need at run time, derived from the programs themselves.
#
#   docker/runtime-packages.sh [--base DIR] PROGRAM...
#        one package NAME a line on stdout (sorted, no versions): the package owning each program
#        and each shared library it loads, less the packages installed in the dpkg database DIR
#        (a copy of the runtime base image's /var/lib/dpkg: DIR/status is all that is read)
#   docker/runtime-packages.sh --check PROGRAM...
#        exit 1 naming every shared library that does not resolve here (run in the image's
#        runtime stage, after the install)
#
# Why: the Dockerfile's build stage installs everything through tools/setup.sh, the one package list.
# Its runtime stage must not keep a second, hand-written list of the same libraries (whose names
# differ between Debian and Ubuntu, e.g. Ubuntu 24.04's *t64 renames), so it installs the packages
# that the build stage linked `ouro` against, by name.
#
# Names, never versions: the runtime stage runs its own `apt-get update`, and the archive drops a
# package's old version as soon as an update replaces it (libc6, libstdc++6, zlib1g: weeks), so a
# pinned `libfoo=1.2-3` stops the build with "Version ... was not found". Ubuntu keeps the
# libraries' sonames stable within a release, so the name is what matters.
# Less the runtime base's packages: they are there already (libc6, libstdc++6, and NVIDIA's
# libcudnn9-cuda-13 and libnccl2, which the base image holds at its own versions); asking for them
# again would at best upgrade the base under ouro and at worst fail on "Held packages were changed".
#
# Never listed (the image's base and the host provide them, whatever --base says):
#   /usr/local/cuda*           the CUDA libraries of the nvidia/cuda runtime image
#   libcuda.so*, libnvidia-*   the driver, mounted into the container by the NVIDIA container toolkit
set -euo pipefail

provided_elsewhere() {
  case "$1" in
    /usr/local/cuda*|*/libcuda.so*|*/libnvidia-*) return 0 ;;
    libcuda.so*|libnvidia-*) return 0 ;;
  esac
  return 1
}

# The package owning a file. dpkg records a path as the package shipped it, and with the merged
# /usr (/lib -> usr/lib) the path the loader reports may be the other spelling: try both, for the
# path as given and for the file it resolves to.
spellings() {
  local path="$1" real c
  real="$(readlink -f "$path")"
  for c in "$path" "$real"; do
    echo "$c"
    case "$c" in
      /usr/*) echo "${c#/usr}" ;;
      *) echo "/usr$c" ;;
    esac
  done
}

# One dpkg-query for every spelling of every file (a call reads the whole database: per file it
# would cost seconds): fills owner[path] = package.
declare -A owner=()
find_owners() {
  local paths=() f line pkgs path
  for f in "$@"; do
    mapfile -t -O "${#paths[@]}" paths < <(spellings "$f")
  done
  # "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1" (or "a, b: path" when shared); paths
  # that no package owns are reported on stderr and left out.
  while IFS= read -r line; do
    [[ "$line" == diversion* ]] && continue
    pkgs="${line%%: /*}"
    path="/${line#*: /}"
    pkgs="${pkgs%%,*}"
    owner["$path"]="${pkgs%%:*}"
  done < <(dpkg-query -S "${paths[@]}" 2>/dev/null || true)
}

owner_of() {
  local c
  while IFS= read -r c; do
    if [ -n "${owner[$c]:-}" ]; then
      echo "${owner[$c]}"
      return 0
    fi
  done < <(spellings "$1")
  return 1
}

# "libfoo.so.1 => /usr/lib/x86_64-linux-gnu/libfoo.so.1 (0x...)" -> the path; the loader's own
# line ("/lib64/ld-linux-x86-64.so.2 (0x...)") is its path; "libfoo.so.1 => not found" -> the
# marker "NOTFOUND:libfoo.so.1"; the vDSO has no file.
libraries_of() {
  local out
  if ! out="$(ldd "$1" 2>&1)"; then
    echo "runtime-packages: ldd $1 failed: $out" >&2
    return 1
  fi
  awk '$2 == "=>" && $3 == "not" { print "NOTFOUND:" $1; next }
       $2 == "=>" && $3 ~ /^\// { print $3; next }
       $1 ~ /^\// { print $1 }' <<<"$out"
}

usage() {
  echo "usage: $0 [--base DPKG_DIR] PROGRAM...   |   $0 --check PROGRAM..." >&2
  exit 2
}

check=0 base=""
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1; shift ;;
    --base)
      [ $# -ge 2 ] || usage
      base="$2"; shift 2
      if [ ! -f "$base/status" ]; then
        echo "runtime-packages: --base $base: no dpkg database there ($base/status is missing)" >&2
        exit 2
      fi ;;
    --) shift; break ;;
    -*) echo "runtime-packages: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage
if [ "$check" = 1 ] && [ -n "$base" ]; then
  echo "runtime-packages: --check and --base do not go together" >&2
  exit 2
fi

status=0
packages=()
declare -A libs_of=()
for program in "$@"; do
  if [ ! -x "$program" ]; then
    echo "runtime-packages: $program: no such executable" >&2
    exit 1
  fi
  libs_of["$program"]="$(libraries_of "$program")" || exit 1
done
if [ "$check" = 0 ]; then
  mapfile -t files < <(printf '%s\n' "$@"; printf '%s\n' "${libs_of[@]}" | grep '^/' | sort -u)
  find_owners "${files[@]}"
fi
for program in "$@"; do
  libs="${libs_of[$program]}"
  missing=()
  while IFS= read -r lib; do
    [ -n "$lib" ] || continue
    if [[ "$lib" == NOTFOUND:* ]]; then
      provided_elsewhere "${lib#NOTFOUND:}" || missing+=("${lib#NOTFOUND:}")
    elif [ "$check" = 0 ] && ! provided_elsewhere "$lib"; then
      if ! pkg="$(owner_of "$lib")"; then
        echo "runtime-packages: $program loads $lib, which no installed package owns" >&2
        status=1
        continue
      fi
      packages+=("$pkg")
    fi
  done <<<"$libs"
  if [ ${#missing[@]} -gt 0 ]; then
    echo "runtime-packages: $program: shared libraries not found: ${missing[*]}" >&2
    status=1
  fi
  if [ "$check" = 0 ]; then
    if ! pkg="$(owner_of "$program")"; then
      echo "runtime-packages: $program comes from no package: only its libraries are listed" >&2
    else
      packages+=("$pkg")
    fi
  fi
done
[ "$status" = 0 ] || exit "$status"
[ "$check" = 1 ] && exit 0
[ ${#packages[@]} -gt 0 ] || exit 0

# What the base has installed ("ii"); "rc" (removed, config left) is not installed.
in_base() { return 1; }
if [ -n "$base" ]; then
  declare -A base_has=()
  while read -r state name; do
    [ "$state" = ii ] && base_has["$name"]=1
  done < <(dpkg-query --admindir="$base" -W -f='${db:Status-Abbrev} ${Package}\n')
  in_base() { [ -n "${base_has[$1]:-}" ]; }
fi
printf '%s\n' "${packages[@]}" | sort -u | while IFS= read -r pkg; do
  if in_base "$pkg"; then
    echo "runtime-packages: $pkg: in the base image already, not listed" >&2
  else
    echo "$pkg"
  fi
done
