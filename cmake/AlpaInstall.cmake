# The C++ package: `cmake --install` puts the module libraries, their headers, the `alpa`
# command and a CMake package into a prefix, and a program outside this tree uses them with
#
#   find_package(alpa REQUIRED)                    # -DCMAKE_PREFIX_PATH=<prefix>
#   target_link_libraries(app PRIVATE alpa::alpa)  # compile, runtime, models and below
#
# Each module is also exported alone as alpa::<module> (alpa::support ... alpa::cli). The
# headers install as <prefix>/include/alpa/<module>/*.h, the paths the sources use. The
# libraries are static; alpaConfig.cmake finds the Debian packages they link.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The modules, in definition order, from the file src/CMakeLists.txt writes as it defines them.
file(STRINGS ${PROJECT_BINARY_DIR}/module_deps.txt alpa_module_lines)
set(ALPA_MODULES "")
foreach(line ${alpa_module_lines})
  string(REGEX REPLACE ":.*" "" name "${line}")
  list(APPEND ALPA_MODULES ${name})
endforeach()

set(ALPA_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/alpa)
set(alpa_install_targets "")
foreach(m ${ALPA_MODULES})
  set_target_properties(alpa_${m} PROPERTIES EXPORT_NAME ${m})
  target_include_directories(alpa_${m} INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  # The Python module is a shared object that links these archives.
  if(ALPA_PYTHON)
    set_target_properties(alpa_${m} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  list(APPEND alpa_install_targets alpa_${m})
endforeach()
target_compile_features(alpa_support INTERFACE cxx_std_20)

# alpa::alpa: what a program that compiles and trains a model needs.
add_library(alpa_package INTERFACE)
set_target_properties(alpa_package PROPERTIES EXPORT_NAME alpa)
target_link_libraries(alpa_package INTERFACE alpa_compile alpa_runtime alpa_models)

install(TARGETS ${alpa_install_targets} alpa_package EXPORT alpaTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS alpa RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/alpa/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/alpa
        FILES_MATCHING PATTERN "*.h" PATTERN "*.def")
install(EXPORT alpaTargets NAMESPACE alpa:: DESTINATION ${ALPA_CMAKE_INSTALL_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/alpaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/package/alpaConfig.cmake INSTALL_DESTINATION ${ALPA_CMAKE_INSTALL_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/package/alpaConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/package/alpaConfig.cmake
              ${PROJECT_BINARY_DIR}/package/alpaConfigVersion.cmake
        DESTINATION ${ALPA_CMAKE_INSTALL_DIR})
