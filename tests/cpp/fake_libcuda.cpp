// A real shared library standing in for libcuda.so.1 on machines without an
// NVIDIA driver, built from the backend's own symbol table so that it has
// exactly the entry points exogpu resolves, minus the ones a test removes:
//   EXOGPU_FAKE_OMIT_MEM_ALLOC  leaves cuMemAlloc_v2 out (a driver too old);
// otherwise the library is complete and reports no device, as a driver
// does on a machine whose GPU is gone. It exports no cuGetProcAddress, so
// the loader's plain-symbol path is the one exercised.
#include "backends/cuda/cuda_api.hpp"

using namespace exogpu::cuda;

#define EXOGPU_FAKE_EXPORT extern "C" __attribute__((visibility("default")))

// Entry points with hand-written bodies below, and the omitted one, are
// generated under other names (macro arguments are expanded before use).
#define cuInit exogpu_fake_generated_cuInit
#define cuDriverGetVersion exogpu_fake_generated_cuDriverGetVersion
#define cuGetErrorName exogpu_fake_generated_cuGetErrorName
#define cuGetErrorString exogpu_fake_generated_cuGetErrorString
#ifdef EXOGPU_FAKE_OMIT_MEM_ALLOC
#define cuMemAlloc_v2 exogpu_fake_omitted_cuMemAlloc_v2
#endif

#define EXOGPU_FAKE_STUB(member, base, exported, ret, params) \
  EXOGPU_FAKE_EXPORT ret exported params { return CUDA_ERROR_NO_DEVICE; }
EXOGPU_CUDA_SYMBOLS(EXOGPU_FAKE_STUB)

#undef cuInit
#undef cuDriverGetVersion
#undef cuGetErrorName
#undef cuGetErrorString

EXOGPU_FAKE_EXPORT CUresult cuInit(unsigned int) { return CUDA_ERROR_NO_DEVICE; }

EXOGPU_FAKE_EXPORT CUresult cuDriverGetVersion(int* version) {
  *version = 12040;
  return CUDA_SUCCESS;
}

EXOGPU_FAKE_EXPORT CUresult cuGetErrorName(CUresult error, const char** name) {
  if (error != CUDA_ERROR_NO_DEVICE) return 1;  // CUDA_ERROR_INVALID_VALUE
  *name = "CUDA_ERROR_NO_DEVICE";
  return CUDA_SUCCESS;
}

EXOGPU_FAKE_EXPORT CUresult cuGetErrorString(CUresult error, const char** text) {
  if (error != CUDA_ERROR_NO_DEVICE) return 1;
  *text = "no CUDA-capable device is detected";
  return CUDA_SUCCESS;
}
