# libFuzzer targets for the readers --resume trusts: a checkpoint's state.json and the run's
# metrics.jsonl (issue 21). Built with clang like the tokenizer's (cmake/OuroTokenizer.cmake,
# which probes for clang + libFuzzer), each from the few sources it needs, with ASan + UBSan;
# ctest runs each for OURO_FUZZ_SECONDS (label fuzz).

function(ouro_fuzz_resume_target name)
  set(_sources ${ARGN})
  set(_out ${CMAKE_BINARY_DIR}/${name})
  file(GLOB _headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/train/*.h ${CMAKE_SOURCE_DIR}/include/ouro/*.h)
  add_custom_command(
    OUTPUT ${_out}
    COMMAND ${OURO_CLANGXX} -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -Wno-unknown-pragmas
            -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src
            ${_sources} -o ${_out} -lfmt
    DEPENDS ${_sources} ${_headers}
    COMMENT "Building the ${name} fuzz target with clang (libFuzzer)"
    VERBATIM)
  add_custom_target(ouro_${name} ALL DEPENDS ${_out})
  add_test(NAME ${name}
           COMMAND ${_out} -max_total_time=${OURO_FUZZ_SECONDS} -seed=1 -max_len=4096
                   -print_final_stats=1)
  set_tests_properties(${name} PROPERTIES TIMEOUT 600 LABELS fuzz)
endfunction()

function(ouro_fuzz_resume_wire)
  if(NOT OURO_HAVE_FUZZER OR NOT TARGET ouro_core)
    return()
  endif()
  ouro_fuzz_resume_target(fuzz_checkpoint_state
    ${CMAKE_SOURCE_DIR}/tests/fuzz_checkpoint_state.cpp
    ${CMAKE_SOURCE_DIR}/src/train/checkpoint_state.cpp
    ${CMAKE_SOURCE_DIR}/src/data/loader_position.cpp)
  ouro_fuzz_resume_target(fuzz_metrics_resume
    ${CMAKE_SOURCE_DIR}/tests/fuzz_metrics_resume.cpp
    ${CMAKE_SOURCE_DIR}/src/train/metrics_records.cpp)
endfunction()
cmake_language(DEFER CALL ouro_fuzz_resume_wire)
