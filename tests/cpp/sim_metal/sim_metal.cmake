# The simulated Metal machine (libsim_metal.so) and what runs on it: the
# conformance and probe suites on metal:0 (unified memory) and metal:1
# (discrete, private memory), the Metal backend's own suite, and the misuse
# tests that show the simulation's checks fire. Built wherever the Metal
# backend is built on GNUstep; on macOS the real Metal is there instead.
if(NOT EXOGPU_METAL_BUILT OR APPLE)
  return()
endif()

foreach(_suite exogpu_tests exogpu_cuda_hip_tests exogpu_monitoring_tests)
  target_sources(${_suite} PRIVATE sim_metal/objc_runtime_leaks.cpp)
endforeach()

add_library(sim_metal SHARED sim_metal/sim_metal.mm)
target_include_directories(sim_metal PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/sim_metal)
target_link_libraries(sim_metal PRIVATE exogpu_objc_runtime Threads::Threads)
# Linked by the C++ compiler, so a sanitized build uses one sanitizer runtime
# (GCC's) in every binary, whichever compiler built the objects.
set_target_properties(sim_metal PROPERTIES OBJCXX_STANDARD 20 LINKER_LANGUAGE CXX)
add_dependencies(exogpu_tests sim_metal)

add_test(NAME conformance_on_simulated_metal
  COMMAND exogpu_tests --gtest_filter=EveryDevice/*:AllDevices/*)
set_tests_properties(conformance_on_simulated_metal PROPERTIES ENVIRONMENT
  "EXOGPU_BACKENDS=cpu,metal;EXOGPU_METAL_LIBRARY=$<TARGET_FILE:sim_metal>")

add_executable(exogpu_metal_tests sim_metal/metal_backend_test.mm sim_metal/sim_misuse_test.mm
  sim_metal/objc_runtime_leaks.cpp)
target_include_directories(exogpu_metal_tests PRIVATE
  ${PROJECT_SOURCE_DIR}/cpp/src ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/sim_metal)
target_link_libraries(exogpu_metal_tests PRIVATE
  exogpu_core sim_metal exogpu_objc_runtime GTest::gtest_main)
set_target_properties(exogpu_metal_tests PROPERTIES OBJCXX_STANDARD 20 LINKER_LANGUAGE CXX)
target_compile_definitions(exogpu_metal_tests PRIVATE EXOGPU_SIM_METAL="$<TARGET_FILE:sim_metal>")
gtest_discover_tests(exogpu_metal_tests DISCOVERY_TIMEOUT 120)
