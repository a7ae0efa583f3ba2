# libFuzzer targets for the readers of untrusted files (issue 21), built with clang like the
# tokenizer's (cmake/OuroTokenizer.cmake: OURO_CLANGXX, OURO_HAVE_FUZZER) and run for a bounded
# time as ctests labelled "fuzz":
#   fuzz_llmc_bin            llm.c model .bin (load_llmc_bin, load_model_config)
#   fuzz_model_config_json   a model directory's config.json (gpt2_config_from_hf)
#   fuzz_config_toml         the TOML run config and --set overrides (parse_config_text, validate)
#   fuzz_checkpoint_state    a checkpoint's state.json as --resume reads it
#   fuzz_metrics_resume      the run's metrics.jsonl as --resume truncates it
# Each compiles only the sources its reader needs (tests/<name>.cpp plus those listed), with
# ASan + UBSan, apart from the g++ objects.
set(OURO_FUZZ_READERS_SECONDS 15 CACHE STRING "How long each reader fuzz test runs (ctest)")

function(ouro_fuzz_target name max_len)
  set(_out ${CMAKE_BINARY_DIR}/${name})
  set(_sources ${ARGN} ${CMAKE_SOURCE_DIR}/tests/${name}.cpp)
  file(GLOB _headers CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/ouro/*.h ${CMAKE_SOURCE_DIR}/src/io/*.h
       ${CMAKE_SOURCE_DIR}/src/train/*.h)
  add_custom_command(
    OUTPUT ${_out}
    COMMAND ${OURO_CLANGXX} -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined
            -fno-sanitize-recover=undefined -Wno-unknown-pragmas
            # toml++'s internal debug assertions (e.g. on "[*") are off in the g++ release build,
            # where the parser then reports the error itself: fuzz what ships, not those asserts.
            "-DTOML_ASSERT(expr)=((void)0)"
            -I${CMAKE_SOURCE_DIR}/include -I${CMAKE_SOURCE_DIR}/src
            ${_sources} -o ${_out} -lfmt
    DEPENDS ${_sources} ${_headers}
    COMMENT "Building the ${name} fuzz target with clang (libFuzzer)"
    VERBATIM)
  add_custom_target(ouro_${name} ALL DEPENDS ${_out})
  add_test(NAME ${name}
           COMMAND ${_out} -max_total_time=${OURO_FUZZ_READERS_SECONDS} -seed=1 -max_len=${max_len}
                   -print_final_stats=1)
  set_tests_properties(${name} PROPERTIES TIMEOUT 600 LABELS fuzz)
endfunction()

function(ouro_fuzz_readers_wire)
  if(NOT OURO_HAVE_FUZZER OR OURO_SIMT_ONLY)
    return()
  endif()
  set(_src ${CMAKE_SOURCE_DIR}/src)
  ouro_fuzz_target(fuzz_llmc_bin 8192 ${_src}/io/llmc_bin.cpp ${_src}/io/checkpoint.cpp ${_src}/io/hf_gpt2.cpp
                   ${_src}/io/safetensors.cpp ${_src}/io/atomic_file.cpp ${_src}/model_shape/param_layout.cpp)
  ouro_fuzz_target(fuzz_model_config_json 8192 ${_src}/io/hf_gpt2.cpp ${_src}/io/safetensors.cpp
                   ${_src}/io/atomic_file.cpp ${_src}/model_shape/param_layout.cpp)
  ouro_fuzz_target(fuzz_config_toml 8192 ${_src}/config/config.cpp ${_src}/config/config_dist.cpp
                   ${_src}/model_shape/param_layout.cpp)
  ouro_fuzz_target(fuzz_checkpoint_state 4096 ${_src}/train/checkpoint_state.cpp ${_src}/data/loader_position.cpp)
  ouro_fuzz_target(fuzz_metrics_resume 4096 ${_src}/train/metrics_records.cpp)
endfunction()
cmake_language(DEFER CALL ouro_fuzz_readers_wire)
