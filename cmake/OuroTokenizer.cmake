# The tokenizer's build pieces, kept in one file:
#  - PCRE2 (8-bit, with JIT) for the split patterns: Unicode properties and lookahead, which
#    std::regex lacks; linked into ouro_tokenizer (cmake/OuroLayerBuild.cmake, with zlib and
#    libzstd for ouro_data);
#  - liblzma for the tokenizer test, whose fixtures are committed xz-compressed;
#  - a libFuzzer target (decode(encode(x)) == x on arbitrary bytes) built with clang when
#    clang and its fuzzer runtime are installed, run for a bounded time as a ctest.
# The tests are defined after this file is included (from OuroDependencies), so the target
# wiring is deferred to the end of the top-level CMakeLists.txt.
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
find_package(LibLZMA REQUIRED)
# `ouro prepare` reads .gz (zlib) and .zst (libzstd) inputs.
find_package(ZLIB REQUIRED)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)

set(OURO_FUZZ_SECONDS 20 CACHE STRING "How long the tokenizer fuzz test runs (ctest)")

# libFuzzer needs clang (-fsanitize=fuzzer) while the project builds with g++: probe once
# whether a clang++ here can link a fuzzer.
find_program(OURO_CLANGXX NAMES clang++ clang++-19 clang++-16 clang++-15 clang++-14)
set(OURO_HAVE_FUZZER OFF)
if(OURO_CLANGXX)
  set(_probe_dir ${CMAKE_BINARY_DIR}/fuzz_probe)
  file(WRITE ${_probe_dir}/probe.cpp
       "#include <cstdint>\n#include <cstddef>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(COMMAND ${OURO_CLANGXX} -fsanitize=fuzzer ${_probe_dir}/probe.cpp -o ${_probe_dir}/probe
                  RESULT_VARIABLE _probe_rc OUTPUT_QUIET ERROR_QUIET)
  if(_probe_rc EQUAL 0)
    set(OURO_HAVE_FUZZER ON)
  endif()
endif()
message(STATUS "Tokenizer fuzz target (clang + libFuzzer): ${OURO_HAVE_FUZZER}")

function(ouro_tokenizer_wire)
  if(TARGET ouro_test_tokenizer)
    target_link_libraries(ouro_test_tokenizer PRIVATE LibLZMA::LibLZMA)
  endif()
  if(NOT OURO_HAVE_FUZZER OR NOT TARGET ouro_tokenizer)
    return()
  endif()
  # clang compiles the tokenizer sources itself (with ASan + UBSan + libFuzzer), apart from the
  # g++ objects of ouro_tokenizer.
  file(GLOB _tok_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/tokenizer/*.cpp)
  set(_sources ${_tok_sources} ${CMAKE_SOURCE_DIR}/src/io/atomic_file.cpp
               ${CMAKE_SOURCE_DIR}/tests/fuzz_tokenizer.cpp)
  file(GLOB _headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/tokenizer/*.h
                                       ${CMAKE_SOURCE_DIR}/include/ouro/tokenizer.h)
  set(_out ${CMAKE_BINARY_DIR}/fuzz_tokenizer)
  add_custom_command(
    OUTPUT ${_out}
    COMMAND ${OURO_CLANGXX} -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -Wno-unknown-pragmas
            -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src
            ${_sources} -o ${_out} ${PCRE2_LINK_LIBRARIES} -lfmt
    DEPENDS ${_sources} ${_headers}
    COMMENT "Building the tokenizer fuzz target with clang (libFuzzer)"
    VERBATIM)
  add_custom_target(ouro_fuzz_tokenizer ALL DEPENDS ${_out})
  add_test(NAME tokenizer_fuzz
           COMMAND ${_out} -max_total_time=${OURO_FUZZ_SECONDS} -seed=1 -max_len=4096
                   -print_final_stats=1)
  set_tests_properties(tokenizer_fuzz PROPERTIES TIMEOUT 600 LABELS fuzz)
endfunction()
cmake_language(DEFER CALL ouro_tokenizer_wire)
