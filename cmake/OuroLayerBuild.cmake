# Builds the engine's layers from the table in cmake/OuroLayers.cmake: an include view and a
# static library per layer. Included by the top-level CMakeLists.txt.

set(OURO_LAYERS "")
# ouro_layer(<name> DIRS ... [HEADERS ...] [USES ...] [EXPORTS]): records one row of the table.
macro(ouro_layer name)
  cmake_parse_arguments(_ol "EXPORTS" "" "DIRS;HEADERS;USES" ${ARGN})
  list(APPEND OURO_LAYERS ${name})
  set(OURO_LAYER_${name}_DIRS ${_ol_DIRS})
  set(OURO_LAYER_${name}_HEADERS ${_ol_HEADERS})
  set(OURO_LAYER_${name}_USES ${_ol_USES})
  set(OURO_LAYER_${name}_EXPORTS ${_ol_EXPORTS})
endmacro()
include(OuroLayers)

# The layers `name` uses, directly or through the layers it uses.
function(ouro_layer_closure name out_var)
  set(seen "")
  set(todo ${OURO_LAYER_${name}_USES})
  while(todo)
    list(POP_FRONT todo u)
    if(NOT u IN_LIST seen)
      list(APPEND seen ${u})
      list(APPEND todo ${OURO_LAYER_${u}_USES})
    endif()
  endwhile()
  set(${out_var} ${seen} PARENT_SCOPE)
endfunction()

# <build>/layers/<name>/: links to what the layer may include, and nothing else. The layer's
# libraries compile with it as their only project include directory.
function(ouro_layer_view name out_var)
  set(view ${CMAKE_BINARY_DIR}/layers/${name})
  file(REMOVE_RECURSE ${view})
  file(MAKE_DIRECTORY ${view}/ouro)
  ouro_layer_closure(${name} uses)
  set(dirs ${OURO_LAYER_${name}_DIRS})
  set(headers ${OURO_LAYER_${name}_HEADERS})
  foreach(u IN LISTS uses)
    list(APPEND headers ${OURO_LAYER_${u}_HEADERS})
    if(OURO_LAYER_${u}_EXPORTS)
      list(APPEND dirs ${OURO_LAYER_${u}_DIRS})
    endif()
  endforeach()
  foreach(d IN LISTS dirs)
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/src/${d} ${view}/${d} SYMBOLIC)
  endforeach()
  foreach(h IN LISTS headers)
    file(CREATE_LINK ${CMAKE_SOURCE_DIR}/include/ouro/${h} ${view}/ouro/${h} SYMBOLIC)
  endforeach()
  set(${out_var} ${view} PARENT_SCOPE)
endfunction()

# NVTX v3 (header-only) from the CUDA toolkit, when present: ranges for Nsight (src/common/trace.h).
# A CUDA build without it would profile with no ranges and no word why: OURO_CUDA=ON requires it.
if(NOT CUDAToolkit_FOUND)
  find_package(CUDAToolkit QUIET)
endif()
find_path(OURO_NVTX3_INCLUDE_DIR nvtx3/nvToolsExt.h HINTS ${CUDAToolkit_INCLUDE_DIRS}
          DOC "Directory holding nvtx3/nvToolsExt.h (NVTX v3, in the CUDA toolkit's include/)")
set(OURO_NVTX_INCLUDES "")
if(OURO_NVTX3_INCLUDE_DIR AND EXISTS "${OURO_NVTX3_INCLUDE_DIR}/nvtx3/nvToolsExt.h")
  set(OURO_NVTX_INCLUDES ${CUDAToolkit_INCLUDE_DIRS} ${OURO_NVTX3_INCLUDE_DIR})
elseif(OURO_CUDA STREQUAL "ON")
  message(FATAL_ERROR "OURO_CUDA=ON but the NVTX v3 header nvtx3/nvToolsExt.h is not in "
                      "'${OURO_NVTX3_INCLUDE_DIR}' nor the toolkit's '${CUDAToolkit_INCLUDE_DIRS}' (the "
                      "cuda-nvtx component): without it the Nsight ranges would be compiled out. Install "
                      "it, or set OURO_NVTX3_INCLUDE_DIR to the directory holding nvtx3/.")
elseif(CUDAToolkit_FOUND)
  set(OURO_NVTX_INCLUDES ${CUDAToolkit_INCLUDE_DIRS})
  message(STATUS "NVTX: nvtx3/nvToolsExt.h not found (OURO_NVTX3_INCLUDE_DIR): this build has Nsight "
                 "ranges only where the compiler finds the header by itself (src/common/trace.h)")
endif()

# ouro_<name>: the layer's C++ sources (src/<dir>/*.cpp of its DIRS), compiled against its view
# and linking the libraries of the layers it uses directly (which bring their own).
function(ouro_layer_library name)
  ouro_layer_view(${name} view)
  set(srcs "")
  foreach(d IN LISTS OURO_LAYER_${name}_DIRS)
    file(GLOB _s CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/${d}/*.cpp)
    list(APPEND srcs ${_s})
  endforeach()
  list(FILTER srcs EXCLUDE REGEX ".*/src/cli/main\\.cpp$")  # the executables' entry point
  if(NOT srcs)
    return()  # a layer of device sources only (src/device: ouro_device_library)
  endif()
  add_library(ouro_${name} STATIC ${srcs})
  target_include_directories(ouro_${name} PRIVATE ${view} ${OURO_NVTX_INCLUDES})
  foreach(u IN LISTS OURO_LAYER_${name}_USES)
    if(TARGET ouro_${u})
      target_link_libraries(ouro_${name} PUBLIC ouro_${u})
    endif()
  endforeach()
endfunction()

# The layers the sanitizer builds need: the cpu reference (ops) that the kernel tests compare with.
if(OURO_SIMT_ONLY)
  set(_built common ops)
else()
  set(_built ${OURO_LAYERS})
endif()
foreach(layer IN LISTS _built)
  ouro_layer_library(${layer})
endforeach()

# Third-party libraries, each on the layer whose code calls it.
target_link_libraries(ouro_common PUBLIC spdlog::spdlog nlohmann_json::nlohmann_json OpenMP::OpenMP_CXX ouro::blas)
if(OURO_NVTX_INCLUDES)
  target_link_libraries(ouro_common PUBLIC ${CMAKE_DL_LIBS})  # NVTX loads the profiler's injection library
endif()
target_compile_definitions(ouro_common PUBLIC OURO_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
                                              OURO_VERSION="${PROJECT_VERSION}")
if(NOT OURO_SIMT_ONLY)
  target_link_libraries(ouro_config PUBLIC tomlplusplus::tomlplusplus)
  target_link_libraries(ouro_tokenizer PUBLIC PkgConfig::PCRE2)
  target_link_libraries(ouro_data PRIVATE ZLIB::ZLIB PkgConfig::ZSTD)
  target_link_libraries(ouro_dist PUBLIC MPI::MPI_CXX)
  target_link_libraries(ouro_cli PUBLIC CLI11::CLI11)
  # `ouro bench simt` runs this build's ouro_bench_simt.
  set_property(SOURCE ${CMAKE_SOURCE_DIR}/src/cli/cmd_bench_simt.cpp APPEND PROPERTY
               COMPILE_DEFINITIONS OURO_BINARY_DIR="${CMAKE_BINARY_DIR}")
endif()
