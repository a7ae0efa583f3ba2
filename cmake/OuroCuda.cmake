# The CUDA build (option OURO_CUDA = AUTO | ON | OFF).
# AUTO enables it when nvcc is found (PATH, $CUDA_PATH, /usr/local/cuda); ON requires it.
# Defines OURO_HAVE_CUDA, and the targets ouro::cuda_libs (cudart, cuBLAS, cuBLASLt, cuDNN, NCCL)
# that every CUDA executable links. No GPU is needed to compile or link, only to run.
set(OURO_CUDA AUTO CACHE STRING "Build the CUDA kernels with nvcc: AUTO (when nvcc is found), ON, OFF")
set_property(CACHE OURO_CUDA PROPERTY STRINGS AUTO ON OFF)
# sm_80 (A100: mma.sync, ldmatrix, cp.async) and sm_90a (H100: adds wgmma and TMA, which only the
# arch-specific 'a' target may use).
set(OURO_CUDA_ARCHITECTURES "80;90a" CACHE STRING "GPU architectures the kernels are compiled for")

set(OURO_HAVE_CUDA OFF)
if(NOT OURO_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(OURO_NVCC nvcc HINTS ENV CUDA_PATH PATH_SUFFIXES bin PATHS /usr/local/cuda/bin)
    if(OURO_NVCC)
      set(CMAKE_CUDA_COMPILER "${OURO_NVCC}" CACHE FILEPATH "CUDA compiler" FORCE)
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    set(OURO_HAVE_CUDA ON)
  elseif(OURO_CUDA STREQUAL "ON")
    message(FATAL_ERROR "OURO_CUDA=ON but nvcc was not found (set CMAKE_CUDA_COMPILER or CUDA_PATH)")
  else()
    message(STATUS "CUDA: nvcc not found, the CUDA build is off (OURO_CUDA=AUTO)")
  endif()
endif()

if(OURO_HAVE_CUDA)
  set(CMAKE_CUDA_ARCHITECTURES "${OURO_CUDA_ARCHITECTURES}")
  enable_language(CUDA)
  # CMake 3.25 knows no C++20 flag for nvcc (it stops at C++17); nvcc 12+ takes -std=c++20.
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  find_package(CUDNN REQUIRED)
  find_package(NCCL REQUIRED)
  message(STATUS "CUDA: nvcc ${CMAKE_CUDA_COMPILER_VERSION} for ${CMAKE_CUDA_ARCHITECTURES}; "
                 "cuDNN ${CUDNN_VERSION}, NCCL ${NCCL_VERSION}")
  add_library(ouro_cuda_libs INTERFACE)
  target_link_libraries(ouro_cuda_libs INTERFACE
    CUDA::cudart CUDA::cublas CUDA::cublasLt CUDNN::cudnn NCCL::nccl)
  add_library(ouro::cuda_libs ALIAS ouro_cuda_libs)

  # The cuDNN frontend (header-only C++ graph API over cuDNN's backend) for model.attention =
  # cudnn (src/device/cudnn_attention.cu). tools/setup.sh installs it from PyPI
  # (nvidia-cudnn-frontend) into the repository's .venv; CUDNN_FRONTEND_INCLUDE_DIR may name
  # another copy. Without it the cuda build still configures and the alternate compiles to a
  # version that refuses "cudnn" with a message saying so.
  file(GLOB _ouro_venv_includes "${CMAKE_SOURCE_DIR}/.venv/lib/python3*/site-packages/include")
  find_path(CUDNN_FRONTEND_INCLUDE_DIR cudnn_frontend.h
            HINTS ${_ouro_venv_includes} ENV CUDNN_FRONTEND_INCLUDE_DIR
            PATHS ${CUDNN_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS}
            DOC "Directory holding cudnn_frontend.h (the cuDNN frontend headers)")
  if(CUDNN_FRONTEND_INCLUDE_DIR)
    file(STRINGS "${CUDNN_FRONTEND_INCLUDE_DIR}/cudnn_frontend_version.h" _fe_version
         REGEX "#define CUDNN_FRONTEND_(MAJOR|MINOR|PATCH)_VERSION [0-9]+")
    string(REGEX REPLACE "[^0-9;]*([0-9]+)" "\\1" _fe_version "${_fe_version}")
    string(REPLACE ";" "." _fe_version "${_fe_version}")
    message(STATUS "cuDNN frontend ${_fe_version}: ${CUDNN_FRONTEND_INCLUDE_DIR} (model.attention = cudnn is built)")
    # SYSTEM: the frontend's own warnings are not ours to fix.
    target_include_directories(ouro_cuda_libs SYSTEM INTERFACE "${CUDNN_FRONTEND_INCLUDE_DIR}")
    target_compile_definitions(ouro_cuda_libs INTERFACE OURO_HAVE_CUDNN_FRONTEND=1)
    # The frontend's header-only engines compile some kernels at run time (NVRTC).
    target_link_libraries(ouro_cuda_libs INTERFACE CUDA::nvrtc)
  else()
    message(STATUS "cuDNN frontend: cudnn_frontend.h NOT found (run tools/setup.sh, or set "
                   "CUDNN_FRONTEND_INCLUDE_DIR): model.attention = cudnn is NOT built and refuses")
  endif()
endif()
