# Windows builds (tools/test-directml.sh cross-compiles them with mingw-w64
# and runs them under Wine): the conformance and probe suites on every
# device, the registry and pool suites, and the DirectML suite. Debian's
# GoogleTest is a Linux library, so its sources are built here when
# EXOGPU_GTEST_SOURCE_DIR names them (/usr/src/googletest).
if(EXOGPU_GTEST_SOURCE_DIR)
  set(gtest_force_shared_crt ON CACHE BOOL "" FORCE)
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
  add_subdirectory(${EXOGPU_GTEST_SOURCE_DIR} ${CMAKE_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
  set(_exogpu_gtest_main gtest_main)
else()
  find_package(GTest REQUIRED)
  set(_exogpu_gtest_main GTest::gtest_main)
endif()

add_executable(exogpu_tests
  conformance_test.cpp
  probe_test.cpp
  pool_test.cpp
  registry_test.cpp
  directml_test.cpp)
target_link_libraries(exogpu_tests PRIVATE exogpu_core ${_exogpu_gtest_main})
target_include_directories(exogpu_tests PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src)

# A DirectML.dll too old to use (no DMLCreateDevice1), for the loader's
# "too old" reason.
add_library(fake_directml_old SHARED fake_directml_old.cpp)
set_target_properties(fake_directml_old PROPERTIES PREFIX "" OUTPUT_NAME DirectML
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fake_directml_old)
add_dependencies(exogpu_tests fake_directml_old)
