# install(): the library, its headers and a package config, so that another project
# can do find_package(nbsgd) and link nbsgd::nbsgd.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS nbsgd nbsgd_host_deps EXPORT nbsgdTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(NBSGD_HAVE_CUDA)
  install(TARGETS nbsgd_cuda_deps EXPORT nbsgdTargets)
  install(FILES cmake/FindCudaLibs.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/nbsgd)
endif()
install(TARGETS nbsgd_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS scripts/plot.py DESTINATION ${CMAKE_INSTALL_DATADIR}/nbsgd)
install(DIRECTORY kernels runtime nets DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nbsgd
        FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh" PATTERN "*.inl")
install(EXPORT nbsgdTargets NAMESPACE nbsgd:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/nbsgd)
configure_package_config_file(cmake/nbsgdConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/nbsgdConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/nbsgd)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/nbsgdConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/nbsgdConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/nbsgdConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/nbsgd)
