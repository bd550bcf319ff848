# Host libraries (Debian packages, installed by scripts/setup.sh) and, when the CUDA
# backend is on, the CUDA toolkit's libraries. Both are gathered into two INTERFACE
# targets, nbsgd::host_deps and nbsgd::cuda_deps, that the library links publicly.
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(OpenBLAS CONFIG REQUIRED)
find_package(dnnl CONFIG REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 CONFIG REQUIRED)

if(NOT TARGET nbsgd_openblas)
  add_library(nbsgd_openblas INTERFACE IMPORTED)
  target_include_directories(nbsgd_openblas INTERFACE ${OpenBLAS_INCLUDE_DIRS})
  target_link_libraries(nbsgd_openblas INTERFACE ${OpenBLAS_LIBRARIES})
endif()

# MPI (Debian's libopenmpi-dev): only the launch across processes uses it.
set(NBSGD_HAVE_MPI OFF)
if(NOT NBSGD_MPI STREQUAL "OFF")
  find_package(MPI COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(NBSGD_HAVE_MPI ON)
  elseif(NBSGD_MPI STREQUAL "ON")
    message(FATAL_ERROR "NBSGD_MPI=ON but no MPI with C++ support was found (install libopenmpi-dev, or use NBSGD_MPI=AUTO/OFF)")
  endif()
endif()
message(STATUS "nbsgd: MPI ${NBSGD_HAVE_MPI} (NBSGD_MPI=${NBSGD_MPI})")

add_library(nbsgd_host_deps INTERFACE)
target_link_libraries(nbsgd_host_deps INTERFACE
  Threads::Threads OpenMP::OpenMP_CXX nbsgd_openblas DNNL::dnnl Eigen3::Eigen ZLIB::ZLIB
  nlohmann_json::nlohmann_json tomlplusplus::tomlplusplus fmt::fmt spdlog::spdlog)
if(NBSGD_HAVE_MPI)
  target_link_libraries(nbsgd_host_deps INTERFACE $<LINK_ONLY:MPI::MPI_CXX>)
endif()
add_library(nbsgd::host_deps ALIAS nbsgd_host_deps)

if(NBSGD_HAVE_CUDA)
  find_package(CUDAToolkit REQUIRED)
  find_package(CCCL CONFIG REQUIRED HINTS ${CUDAToolkit_LIBRARY_DIR}/cmake/cccl)
  include(cmake/FindCudaLibs.cmake)
  add_library(nbsgd_cuda_deps INTERFACE)
  target_link_libraries(nbsgd_cuda_deps INTERFACE
    CUDA::cudart CUDA::cublas CUDA::nvtx3 nbsgd::cudnn nbsgd::nccl CCCL::CCCL)
  add_library(nbsgd::cuda_deps ALIAS nbsgd_cuda_deps)
endif()
