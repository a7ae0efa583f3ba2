# The Docker image's checks that need no Docker engine (label "docker"): CI cannot build the
# image, so it lints it and checks it against the repository it builds from.
#   dockerfile_lint             hadolint on docker/Dockerfile (skips when hadolint is absent)
#   dockerfile_check            tools/check_dockerfile.py: copied/run paths, cmake -D options and
#                               values, CUDA architectures, pinned base images and digests, no apt
#                               version pins, the profile target, entrypoints, the docs' commands
#   dockerfile_check_selftest   the same checker on broken variants of the Dockerfile and the docs:
#                               each must fail
#   docker_runtime_packages     docker/runtime-packages.sh (the runtime stage's package list) on this
#                               build's ouro and mpirun: names only, --base, --check
#   profile_sh_image_paths_dry_run (bench_all_tests.cmake) tools/profile.sh in the image's layout
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
  # tests/docker_runtime_packages.sh: names only (no pinned versions), Open MPI's packages listed,
  # --base leaves out what a base image has installed, --check passes here and fails on a missing
  # library.
  add_test(NAME docker_runtime_packages
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/docker_runtime_packages.sh
                   ${CMAKE_SOURCE_DIR}/docker/runtime-packages.sh $<TARGET_FILE:ouro> ${MPIEXEC_EXECUTABLE})
  set_tests_properties(docker_runtime_packages PROPERTIES LABELS docker TIMEOUT 120)
endif()
