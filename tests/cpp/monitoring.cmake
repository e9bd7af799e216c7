# The vendor monitoring readers (NVML, rocm-smi), and the real shared
# libraries they load in place of vendor libraries not installed here
# (exogpu_fake_vendor_library comes from cuda_hip.cmake).
exogpu_fake_vendor_library(fake_libnvidia_ml fake_libnvidia_ml.cpp)
exogpu_fake_vendor_library(fake_libnvidia_ml_init_fails fake_libnvidia_ml.cpp
  EXOGPU_FAKE_NVML_INIT_FAILS)
exogpu_fake_vendor_library(fake_libnvidia_ml_no_device fake_libnvidia_ml.cpp
  EXOGPU_FAKE_NVML_NO_DEVICE)
exogpu_fake_vendor_library(fake_librocm_smi fake_librocm_smi.cpp)
exogpu_fake_vendor_library(fake_librocm_smi_v6 fake_librocm_smi.cpp EXOGPU_FAKE_ROCM_SMI_V6)
exogpu_fake_vendor_library(fake_librocm_smi_no_device fake_librocm_smi.cpp
  EXOGPU_FAKE_ROCM_SMI_NO_DEVICE)

add_executable(exogpu_monitoring_tests monitoring_test.cpp)
target_link_libraries(exogpu_monitoring_tests PRIVATE exogpu_core GTest::gtest_main)
target_include_directories(exogpu_monitoring_tests PRIVATE ${PROJECT_SOURCE_DIR}/cpp/src)
add_dependencies(exogpu_monitoring_tests fake_libnvidia_ml fake_libnvidia_ml_init_fails
  fake_libnvidia_ml_no_device fake_librocm_smi fake_librocm_smi_v6 fake_librocm_smi_no_device)
target_compile_definitions(exogpu_monitoring_tests PRIVATE
  EXOGPU_FAKE_LIBNVIDIA_ML="$<TARGET_FILE:fake_libnvidia_ml>"
  EXOGPU_FAKE_LIBNVIDIA_ML_INIT_FAILS="$<TARGET_FILE:fake_libnvidia_ml_init_fails>"
  EXOGPU_FAKE_LIBNVIDIA_ML_NO_DEVICE="$<TARGET_FILE:fake_libnvidia_ml_no_device>"
  EXOGPU_FAKE_LIBROCM_SMI="$<TARGET_FILE:fake_librocm_smi>"
  EXOGPU_FAKE_LIBROCM_SMI_V6="$<TARGET_FILE:fake_librocm_smi_v6>"
  EXOGPU_FAKE_LIBROCM_SMI_NO_DEVICE="$<TARGET_FILE:fake_librocm_smi_no_device>")
gtest_discover_tests(exogpu_monitoring_tests DISCOVERY_TIMEOUT 120)
