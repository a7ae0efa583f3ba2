#!/usr/bin/env bash
# docker/runtime-packages.sh on this build's ouro and mpirun, as the image's build stage runs it:
#  - it succeeds and names the packages of mpirun (openmpi-bin) and libmpi (libopenmpi*): an empty
#    or partial list would leave the runtime stage without Open MPI;
#  - names only, one a line: a "pkg=version" pin breaks the image once Ubuntu updates that package;
#  - --base DIR leaves out what a base image's dpkg database has installed: here a database holding
#    this machine's libc6 and openmpi-bin entries (and libopenmpi's as "rc", removed: still listed);
#  - --check passes on the same programs, and fails naming a library that does not resolve.
#   tests/docker_runtime_packages.sh SCRIPT OURO MPIRUN
set -euo pipefail
script=$1 ouro=$2 mpirun=$3
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

list=$(bash "$script" "$ouro" "$mpirun")
echo "$list"
grep -qx 'openmpi-bin' <<<"$list" || fail "no openmpi-bin (mpirun) in the list"
libmpi=$(grep -x 'libopenmpi[0-9a-z]*' <<<"$list") || fail "no libopenmpi (libmpi) in the list"
grep -qx 'libc6' <<<"$list" || fail "no libc6 in the list (ouro links it)"
bad=$(grep -vE '^[a-z0-9][a-z0-9+.-]+$' <<<"$list" || true)
[ -z "$bad" ] || fail "not a bare package name: $bad"

# A base database: libc6 and openmpi-bin installed, libopenmpi removed with its config left ("rc").
mkdir -p "$t/base"
awk -v RS= -v ORS='\n\n' '/(^|\n)Package: (libc6|openmpi-bin)\n/' /var/lib/dpkg/status >"$t/base/status"
awk -v RS= -v ORS='\n\n' -v p="$libmpi" '$0 ~ "(^|\n)Package: " p "\n"' /var/lib/dpkg/status |
  sed 's/^Status: install ok installed$/Status: deinstall ok config-files/' >>"$t/base/status"
grep -q '^Package: libc6$' "$t/base/status" || fail "could not build the test's base database"
based=$(bash "$script" --base "$t/base" "$ouro" "$mpirun" 2>"$t/err")
cat "$t/err"
grep -qx 'libc6' <<<"$based" && fail "--base: libc6 is installed in the base, yet listed"
grep -qx 'openmpi-bin' <<<"$based" && fail "--base: openmpi-bin is installed in the base, yet listed"
grep -qx "$libmpi" <<<"$based" || fail "--base: $libmpi is only 'rc' (removed) in the base: it must stay listed"
grep -q 'libc6: in the base image already' "$t/err" || fail "--base: the skipped packages are not reported"
[ "$(wc -l <<<"$based")" -eq $(( $(wc -l <<<"$list") - 2 )) ] || fail "--base removed more than libc6 and openmpi-bin"

if bash "$script" --base "$t/nonexistent" "$ouro" 2>"$t/err"; then fail "--base with no database succeeded"; fi
grep -q 'no dpkg database' "$t/err" || fail "--base with no database: unexpected message: $(cat "$t/err")"

bash "$script" --check "$ouro" "$mpirun" || fail "--check failed on this machine's own programs"
# A program whose library does not resolve (linked against a library that is then not there).
printf 'int ouro_missing(void) { return 0; }\n' >"$t/lib.c"
printf 'int ouro_missing(void);\nint main(void) { return ouro_missing(); }\n' >"$t/main.c"
compiler=$(command -v cc || command -v gcc || command -v g++) || fail "no C compiler for the --check case"
"$compiler" -shared -fPIC -o "$t/libouro_missing.so" "$t/lib.c"
"$compiler" -o "$t/prog" "$t/main.c" -L"$t" -louro_missing
rm "$t/libouro_missing.so"
if bash "$script" --check "$t/prog" 2>"$t/err"; then fail "--check passed on a program with a missing library"; fi
grep -q 'shared libraries not found: libouro_missing.so' "$t/err" || fail "--check: unexpected message: $(cat "$t/err")"
echo "docker_runtime_packages: ok"
