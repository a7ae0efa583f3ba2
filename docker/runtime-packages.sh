#!/usr/bin/env bash
# The distribution packages that programs need at run time, derived from the programs themselves.
#
#   docker/runtime-packages.sh PROGRAM...          one "package=version" a line on stdout: the package
#                                                  owning each program and each shared library it loads
#   docker/runtime-packages.sh --check PROGRAM...  exit 1 naming every shared library that does not
#                                                  resolve here (run in the image's runtime stage)
#
# Why: the Dockerfile's build stage installs everything through tools/setup.sh, the one package list.
# Its runtime stage must not keep a second, hand-written list of the same libraries (whose names
# differ between Debian and Ubuntu, e.g. Ubuntu 24.04's *t64 renames), so it installs exactly the
# packages, at exactly the versions, that the build stage linked `ouro` against.
#
# Not listed (the image's base and the host provide them):
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
owner_of() {
  local path="$1" real candidates=() c out
  real="$(readlink -f "$path")"
  for c in "$path" "$real"; do
    candidates+=("$c")
    case "$c" in
      /usr/*) candidates+=("${c#/usr}") ;;
      *) candidates+=("/usr$c") ;;
    esac
  done
  for c in "${candidates[@]}"; do
    # "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1" -> libfoo1
    if out="$(dpkg-query -S "$c" 2>/dev/null)"; then
      out="${out%%: *}"
      out="${out%%,*}"
      echo "${out%%:*}"
      return 0
    fi
  done
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

check=0
if [ "${1:-}" = "--check" ]; then
  check=1
  shift
fi
if [ $# -eq 0 ]; then
  echo "usage: $0 [--check] PROGRAM..." >&2
  exit 2
fi

status=0
packages=()
for program in "$@"; do
  if [ ! -x "$program" ]; then
    echo "runtime-packages: $program: no such executable" >&2
    exit 1
  fi
  libs="$(libraries_of "$program")" || exit 1
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

# Pinned to the versions installed here: what the build stage linked against.
printf '%s\n' "${packages[@]}" | sort -u | while IFS= read -r pkg; do
  echo "$pkg=$(dpkg-query -W -f='${Version}' "$pkg")"
done
