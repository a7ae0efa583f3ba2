# Every third-party dependency, found once. tools/setup.sh installs them from Debian.
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(OpenMP REQUIRED)
find_package(GTest REQUIRED)
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS CXX)  # data parallelism on the cpu backend; bootstrap elsewhere

# OpenBLAS: Debian ships one build per threading flavour. The OpenMP one shares our ops' OpenMP
# thread pool; the pthreads one keeps its own pool spinning beside OpenMP's (measured: ~6% of a
# GPT-2 124M CPU step in sched_yield). Prefer OpenMP, then any CMake package, then pkg-config.
find_package(OpenBLAS CONFIG QUIET NO_DEFAULT_PATH
             PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp/cmake/openblas)
if(NOT OpenBLAS_FOUND)
  find_package(OpenBLAS CONFIG QUIET)
endif()
message(STATUS "OpenBLAS: ${OpenBLAS_LIBRARIES}")
add_library(ouro_blas INTERFACE)
if(OpenBLAS_FOUND)
  target_include_directories(ouro_blas INTERFACE ${OpenBLAS_INCLUDE_DIRS})
  target_link_libraries(ouro_blas INTERFACE ${OpenBLAS_LIBRARIES})
else()
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
  target_link_libraries(ouro_blas INTERFACE PkgConfig::OPENBLAS)
endif()
add_library(ouro::blas ALIAS ouro_blas)

# The tokenizer's libraries (PCRE2), its test fixtures' (liblzma) and its fuzz target (clang).
include(OuroTokenizer)
include(OuroFuzz)  # the readers of untrusted files: llm.c .bin, config.json, TOML, state.json, metrics.jsonl
