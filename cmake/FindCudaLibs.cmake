# cuDNN and NCCL ship no CMake config: find them and wrap them in imported targets
# nbsgd::cudnn and nbsgd::nccl. Also used by the installed config.
#
# Looked for beside the CUDA toolkit first, then in the Python wheels PyTorch
# installs (nvidia-cudnn-cu13, nvidia-nccl-cu13: python3 is asked where
# nvidia.cudnn and nvidia.nccl live; each has include/ and lib/), then in the
# folders of the environment variable NBSGD_CUDA_LIBS. A GPU container often has
# them only as wheels.
set(_nbsgd_cuda_hints ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_INCLUDE_DIRS})
find_program(_nbsgd_python3 python3)
if(_nbsgd_python3)
  foreach(mod cudnn nccl)
    execute_process(
      COMMAND ${_nbsgd_python3} -c
        "import os, nvidia.${mod} as m; p = list(getattr(m, '__path__', [])) or [os.path.dirname(m.__file__)]; print(p[0])"
      OUTPUT_VARIABLE _dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
    if(_rc EQUAL 0 AND IS_DIRECTORY "${_dir}")
      list(APPEND _nbsgd_cuda_hints "${_dir}/lib" "${_dir}/include")
    endif()
  endforeach()
endif()
if(DEFINED ENV{NBSGD_CUDA_LIBS})
  string(REPLACE ":" ";" _env_dirs "$ENV{NBSGD_CUDA_LIBS}")
  foreach(d ${_env_dirs})
    list(APPEND _nbsgd_cuda_hints "${d}" "${d}/../include")
  endforeach()
endif()
find_path(NBSGD_CUDNN_INCLUDE_DIR cudnn.h HINTS ${_nbsgd_cuda_hints} PATH_SUFFIXES include)
# The wheels carry only the versioned file (libcudnn.so.9), no development symlink.
find_library(NBSGD_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${_nbsgd_cuda_hints} PATH_SUFFIXES lib64 lib)
find_path(NBSGD_NCCL_INCLUDE_DIR nccl.h HINTS ${_nbsgd_cuda_hints} PATH_SUFFIXES include)
find_library(NBSGD_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${_nbsgd_cuda_hints} PATH_SUFFIXES lib64 lib)
foreach(v NBSGD_CUDNN_INCLUDE_DIR NBSGD_CUDNN_LIBRARY NBSGD_NCCL_INCLUDE_DIR NBSGD_NCCL_LIBRARY)
  if(NOT ${v})
    message(FATAL_ERROR "nbsgd: ${v} not found: cuDNN and NCCL are looked for beside the CUDA toolkit, in the "
                        "python3 wheels nvidia-cudnn-cu13 / nvidia-nccl-cu13, and in NBSGD_CUDA_LIBS; or use the "
                        "release bundle (scripts/bundle.sh), which needs no build there")
  endif()
endforeach()
if(NOT TARGET nbsgd::cudnn)
  add_library(nbsgd::cudnn UNKNOWN IMPORTED)
  set_target_properties(nbsgd::cudnn PROPERTIES
    IMPORTED_LOCATION ${NBSGD_CUDNN_LIBRARY} INTERFACE_INCLUDE_DIRECTORIES ${NBSGD_CUDNN_INCLUDE_DIR})
endif()
if(NOT TARGET nbsgd::nccl)
  add_library(nbsgd::nccl UNKNOWN IMPORTED)
  set_target_properties(nbsgd::nccl PROPERTIES
    IMPORTED_LOCATION ${NBSGD_NCCL_LIBRARY} INTERFACE_INCLUDE_DIRECTORIES ${NBSGD_NCCL_INCLUDE_DIR})
endif()
