# The Docker image's checks that need no Docker engine (label "docker"): CI cannot build the
# image, so it lints it and checks it against the repository it builds from.
#   dockerfile_lint             hadolint on docker/Dockerfile (skips when hadolint is absent)
#   dockerfile_check            tools/check_dockerfile.py: copied/run paths, cmake -D options and
#                               values, CUDA architectures, pinned base images
#   dockerfile_check_selftest   the same checker on broken variants of the Dockerfile: each must fail
#   docker_runtime_packages     docker/runtime-packages.sh (the runtime stage's package list) on this
#                               build's ouro and mpirun: it must name their packages
find_package(Python3 COMPONENTS Interpreter QUIET)

add_test(NAME dockerfile_lint COMMAND ${CMAKE_SOURCE_DIR}/docker/lint.sh)
set_tests_properties(dockerfile_lint PROPERTIES LABELS docker TIMEOUT 120 SKIP_RETURN_CODE 77)

if(Python3_Interpreter_FOUND)
  add_test(NAME dockerfile_check
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tools/check_dockerfile.py --root ${CMAKE_SOURCE_DIR})
  add_test(NAME dockerfile_check_selftest
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/tools/check_dockerfile.py --root ${CMAKE_SOURCE_DIR}
                   --self-test)
  set_tests_properties(dockerfile_check dockerfile_check_selftest PROPERTIES LABELS docker TIMEOUT 120)
else()
  message(STATUS "Docker checks: no Python 3 interpreter, dockerfile_check is not run")
endif()

# The package list is read from dpkg (Debian/Ubuntu); elsewhere the image cannot be built anyway.
find_program(OURO_DPKG_QUERY dpkg-query)
if(TARGET ouro AND OURO_DPKG_QUERY AND MPIEXEC_EXECUTABLE)
  # Passes only when the script succeeds AND lists the package of mpirun (openmpi-bin) and of
  # libmpi: an empty or partial list would leave the image's runtime stage without Open MPI.
  add_test(NAME docker_runtime_packages
           COMMAND bash -c "set -o pipefail; out=$(\"$0\" \"$1\" \"$2\") || exit 1; echo \"$out\"; \
grep -q '^openmpi-bin=' <<<\"$out\" || { echo 'no openmpi-bin (mpirun) in the list'; exit 1; }; \
grep -q '^libopenmpi[0-9a-z]*=' <<<\"$out\" || { echo 'no libopenmpi (libmpi) in the list'; exit 1; }"
                   ${CMAKE_SOURCE_DIR}/docker/runtime-packages.sh $<TARGET_FILE:ouro> ${MPIEXEC_EXECUTABLE})
  set_tests_properties(docker_runtime_packages PROPERTIES LABELS docker TIMEOUT 120)
endif()
