# The CUDA and HIP loader suite, and the real shared libraries it loads in
# place of vendor runtimes that are not installed here.
function(exogpu_fake_vendor_library name source)
  add_library(${name} SHARED ${source})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src)
  # The stubs take the driver's parameters and use none of them.
  target_compile_options(${name} PRIVATE $<$<NOT:$<CXX_COMPILER_ID:MSVC>>:-Wno-unused-parameter>)
  target_compile_definitions(${name} PRIVATE ${ARGN})
endfunction()
exogpu_fake_vendor_library(fake_libcuda_no_device fake_libcuda.cpp)
exogpu_fake_vendor_library(fake_libcuda_old fake_libcuda.cpp EXOGPU_FAKE_OMIT_MEM_ALLOC)
exogpu_fake_vendor_library(fake_libamdhip64_old fake_libamdhip64.cpp)

add_executable(exogpu_cuda_hip_tests cuda_hip_test.cpp)
target_link_libraries(exogpu_cuda_hip_tests PRIVATE exogpu_core GTest::gtest_main)
target_include_directories(exogpu_cuda_hip_tests PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src)
add_dependencies(exogpu_cuda_hip_tests fake_libcuda_no_device fake_libcuda_old fake_libamdhip64_old)
target_compile_definitions(exogpu_cuda_hip_tests PRIVATE
  EXOGPU_FAKE_LIBCUDA_NO_DEVICE="$<TARGET_FILE:fake_libcuda_no_device>"
  EXOGPU_FAKE_LIBCUDA_OLD="$<TARGET_FILE:fake_libcuda_old>"
  EXOGPU_FAKE_LIBAMDHIP64_OLD="$<TARGET_FILE:fake_libamdhip64_old>"
  EXOGPU_FMA_PTX_FILE="${PROJECT_SOURCE_DIR}/cpp/src/backends/cuda/fma_kernel.ptx")
gtest_discover_tests(exogpu_cuda_hip_tests DISCOVERY_TIMEOUT 120)

# The hand-written FMA kernel must assemble for current GPUs; checked where
# the CUDA toolkit's ptxas is installed (the driver JIT-compiles the same text).
find_program(EXOGPU_PTXAS ptxas HINTS /usr/local/cuda/bin)
if(EXOGPU_PTXAS)
  foreach(arch sm_75 sm_90)
    add_test(NAME cuda_fma_ptx_assembles_${arch}
      COMMAND ${EXOGPU_PTXAS} -arch=${arch} -o ${CMAKE_CURRENT_BINARY_DIR}/fma_${arch}.cubin
              ${PROJECT_SOURCE_DIR}/cpp/src/backends/cuda/fma_kernel.ptx)
  endforeach()
endif()

# A simulated GPU machine under the CUDA and HIP ABIs (sim_gpu/): the
# conformance and probe suites run on its cuda:N and hip:N devices beside
# cpu:0, so every line of the two backends runs here, under the sanitizers.
foreach(api cuda hip)
  add_library(sim_${api} SHARED sim_gpu/sim_${api}.cpp sim_gpu/sim_gpu.cpp)
  target_include_directories(sim_${api} PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src)
  target_link_libraries(sim_${api} PRIVATE Threads::Threads)
  add_dependencies(exogpu_tests sim_${api})
  add_dependencies(exogpu_cuda_hip_tests sim_${api})
endforeach()
target_sources(exogpu_cuda_hip_tests PRIVATE sim_gpu_test.cpp)
target_compile_definitions(exogpu_cuda_hip_tests PRIVATE
  EXOGPU_SIM_CUDA="$<TARGET_FILE:sim_cuda>" EXOGPU_SIM_HIP="$<TARGET_FILE:sim_hip>")
add_test(NAME conformance_on_simulated_cuda
  COMMAND exogpu_tests --gtest_filter=EveryDevice/*:AllDevices/*)
set_tests_properties(conformance_on_simulated_cuda PROPERTIES ENVIRONMENT
  "EXOGPU_BACKENDS=cpu,cuda;EXOGPU_CUDA_LIBRARY=$<TARGET_FILE:sim_cuda>")
add_test(NAME conformance_on_simulated_hip
  COMMAND exogpu_tests --gtest_filter=EveryDevice/*:AllDevices/*)
set_tests_properties(conformance_on_simulated_hip PROPERTIES ENVIRONMENT
  "EXOGPU_BACKENDS=cpu,hip;EXOGPU_HIP_LIBRARY=$<TARGET_FILE:sim_hip>")
