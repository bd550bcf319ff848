# cuDNN and NCCL ship no CMake config: find them next to the toolkit and wrap them in
# imported targets nbsgd::cudnn and nbsgd::nccl. Also used by the installed config.
find_path(NBSGD_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
find_library(NBSGD_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib64 lib)
find_path(NBSGD_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
find_library(NBSGD_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib64 lib)
foreach(v NBSGD_CUDNN_INCLUDE_DIR NBSGD_CUDNN_LIBRARY NBSGD_NCCL_INCLUDE_DIR NBSGD_NCCL_LIBRARY)
  if(NOT ${v})
    message(FATAL_ERROR "nbsgd: ${v} not found (cuDNN and NCCL are expected beside the CUDA toolkit)")
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
