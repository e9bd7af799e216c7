// The DirectML backend beyond the conformance suite: GEMM results against a
// reference computed here in double precision, float16 included; bad input;
// the loader's reasons for a missing or too old DirectML.dll; the error
// mapping; identity and memory figures. Runs on Windows, and under Wine here
// (tools/test-directml.sh).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backends/directml/dml_backend.hpp"
#include "backends/directml/dml_error.hpp"
#include "backends/directml/dml_gemm.hpp"
#include "exogpu/error.hpp"
#include "exogpu/registry.hpp"

namespace exogpu::test {
namespace {

using directml::GemmShape;
using directml::GemmType;

std::shared_ptr<Device> directml_device() {
  for (const auto& status : Registry::instance().backends()) {
    if (status.name == "directml" && !status.available) {
      ADD_FAILURE() << "the DirectML backend is unavailable: " << status.reason;
      return nullptr;
    }
  }
  return Registry::instance().device("directml:0");
}

// IEEE binary16 from and to float, written out here so that the reference
// does not rely on the code under test (round to nearest even; finite values).
std::uint16_t to_half(float value) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &value, 4);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  std::uint32_t mantissa = bits & 0x7fffffu;
  if (exponent <= 0) {  // subnormal or zero in half precision
    if (exponent < -10) return static_cast<std::uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = (static_cast<std::uint32_t>(exponent) << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent
  return static_cast<std::uint16_t>(sign | half);
}

double from_half(std::uint16_t h) {
  const int sign = (h & 0x8000u) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

struct Problem {
  GemmShape shape;
  std::vector<double> a;  // exactly representable in the GEMM's type
  std::vector<double> b;
};

// C = A x B in double: the reference, and the sum of |a||b| terms per output
// (the scale of the rounding error a float sum can make).
void reference(const Problem& p, std::vector<double>& c, std::vector<double>& magnitude) {
  const auto [m, k, n, type] = p.shape;
  c.assign(std::size_t{m} * n, 0.0);
  magnitude.assign(std::size_t{m} * n, 0.0);
  for (std::uint32_t i = 0; i < m; ++i) {
    for (std::uint32_t j = 0; j < n; ++j) {
      double sum = 0;
      double size = 0;
      for (std::uint32_t l = 0; l < k; ++l) {
        const double term = p.a[std::size_t{i} * k + l] * p.b[std::size_t{l} * n + j];
        sum += term;
        size += std::fabs(term);
      }
      c[std::size_t{i} * n + j] = sum;
      magnitude[std::size_t{i} * n + j] = size;
    }
  }
}

std::vector<std::uint8_t> encode(const std::vector<double>& values, GemmType type) {
  std::vector<std::uint8_t> bytes(values.size() * (type == GemmType::float32 ? 4 : 2));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (type == GemmType::float32) {
      const float f = static_cast<float>(values[i]);
      std::memcpy(bytes.data() + 4 * i, &f, 4);
    } else {
      const std::uint16_t h = to_half(static_cast<float>(values[i]));
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

std::vector<double> decode(const std::vector<std::uint8_t>& bytes, GemmType type) {
  std::vector<double> values(bytes.size() / (type == GemmType::float32 ? 4 : 2));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (type == GemmType::float32) {
      float f = 0;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      values[i] = f;
    } else {
      std::uint16_t h = 0;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      values[i] = from_half(h);
    }
  }
  return values;
}

// Inputs rounded to the GEMM's type: small integers (every product and sum
// exact in either type, so the result must match exactly) or uniform in
// [-1, 1).
Problem make_problem(GemmShape shape, bool integers, std::uint32_t seed) {
  Problem p{shape, {}, {}};
  std::mt19937 rng(seed);
  auto value = [&]() -> double {
    if (integers) return static_cast<double>(static_cast<int>(rng() % 5) - 2);
    const float f = std::uniform_real_distribution<float>(-1.0F, 1.0F)(rng);
    return shape.type == GemmType::float32 ? f : from_half(to_half(f));
  };
  p.a.resize(std::size_t{shape.m} * shape.k);
  p.b.resize(std::size_t{shape.k} * shape.n);
  for (double& x : p.a) x = value();
  for (double& x : p.b) x = value();
  return p;
}

// Runs the GEMM with A, B and the output at 16-byte-aligned offsets inside
// one buffer (a second, larger one for the output) and returns the output.
std::vector<double> run_gemm(Device& device, const Problem& p, std::uint32_t repeats = 1) {
  const auto a = encode(p.a, p.shape.type);
  const auto b = encode(p.b, p.shape.type);
  const std::size_t b_offset = (a.size() + 48 + 15) / 16 * 16;
  const std::size_t out_bytes =
      std::size_t{p.shape.m} * p.shape.n * (p.shape.type == GemmType::float32 ? 4 : 2);
  Buffer inputs = device.allocate(b_offset + b.size());
  Buffer output = device.allocate(out_bytes + 32);
  write(inputs, 0, a.data(), a.size());
  write(inputs, b_offset, b.data(), b.size());
  const std::vector<std::uint8_t> guard(out_bytes + 32, 0xcd);
  write(output, 0, guard.data(), guard.size());
  auto stream = device.create_stream();
  const double flops =
      directml::enqueue_gemm(*stream, p.shape, inputs, 0, inputs, b_offset, output, 16, repeats);
  EXPECT_DOUBLE_EQ(flops, 2.0 * p.shape.m * p.shape.n * p.shape.k * repeats);
  stream->synchronize();
  std::vector<std::uint8_t> out(output.size());
  read(out.data(), output, 0, out.size());
  // Nothing outside the output's range changed.
  for (std::size_t i = 0; i < 16; ++i) EXPECT_EQ(out[i], 0xcd) << "byte " << i;
  for (std::size_t i = 16 + out_bytes; i < out.size(); ++i) EXPECT_EQ(out[i], 0xcd) << "byte " << i;
  return decode(std::vector<std::uint8_t>(out.begin() + 16, out.begin() + 16 + static_cast<std::ptrdiff_t>(out_bytes)),
                p.shape.type);
}

void expect_matches(const Problem& p, const std::vector<double>& got, double relative) {
  std::vector<double> want;
  std::vector<double> magnitude;
  reference(p, want, magnitude);
  ASSERT_EQ(got.size(), want.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double tolerance = relative * magnitude[i];
    if (!(std::fabs(got[i] - want[i]) <= tolerance)) {
      if (++bad <= 5) {
        ADD_FAILURE() << "C[" << i / p.shape.n << "][" << i % p.shape.n << "] = " << got[i]
                      << ", want " << want[i] << " (tolerance " << tolerance << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0u) << "of " << want.size() << " outputs";
}

class DirectmlGemm : public ::testing::TestWithParam<GemmType> {};

TEST_P(DirectmlGemm, SmallIntegersGiveExactProducts) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  // Odd sizes, so that rows and columns cannot be confused unnoticed.
  const Problem p = make_problem({37, 29, 23, GetParam()}, true, 1);
  expect_matches(p, run_gemm(*device, p), 0.0);
}

TEST_P(DirectmlGemm, RandomValuesMatchTheReferenceWithinRounding) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  // The same odd shape as above: each shape is a shader compile, the slowest
  // step under Wine.
  const Problem p = make_problem({37, 29, 23, GetParam()}, false, 2);
  // float32 sums round at 2^-24 per term; a float16 output rounds once more
  // at 2^-11 of the result (bounded by the sum of magnitudes).
  expect_matches(p, run_gemm(*device, p), GetParam() == GemmType::float32 ? 1e-5 : 2e-3);
}

INSTANTIATE_TEST_SUITE_P(Types, DirectmlGemm,
                         ::testing::Values(GemmType::float32, GemmType::float16),
                         [](const auto& info) {
                           return info.param == GemmType::float32 ? "float32" : "float16";
                         });

TEST(DirectmlGemmRepeats, RepeatsCountEveryDispatchAndKeepTheResult) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  const Problem p = make_problem({37, 29, 23, GemmType::float32}, true, 3);
  expect_matches(p, run_gemm(*device, p, 3), 0.0);
}

TEST(DirectmlGemmInput, BadOperandsAreRejectedAndNothingRuns) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  auto stream = device->create_stream();
  const GemmShape shape{8, 8, 8, GemmType::float32};
  Buffer buffer = device->allocate(3 * 256 + 64);
  const std::vector<std::uint8_t> marks(buffer.size(), 0x5a);
  write(buffer, 0, marks.data(), marks.size());
  auto rejects = [&](const std::string& word, auto&& call) {
    try {
      call();
      ADD_FAILURE() << "accepted: " << word;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  rejects("not a multiple of 16", [&] {
    (void)directml::enqueue_gemm(*stream, shape, buffer, 8, buffer, 256, buffer, 512);
  });
  rejects("past the end", [&] {
    (void)directml::enqueue_gemm(*stream, shape, buffer, 0, buffer, 256, buffer, 640);
  });
  rejects("must be positive", [&] {
    (void)directml::enqueue_gemm(*stream, {0, 8, 8, GemmType::float32}, buffer, 0, buffer, 256,
                                 buffer, 512);
  });
  Buffer freed;
  rejects("empty or was freed", [&] {
    (void)directml::enqueue_gemm(*stream, shape, freed, 0, buffer, 256, buffer, 512);
  });
  auto cpu = Registry::instance().device("cpu:0");
  Buffer host = cpu->allocate(1024);
  rejects("lives on cpu:0", [&] {
    (void)directml::enqueue_gemm(*stream, shape, buffer, 0, host, 0, buffer, 512);
  });
  auto cpu_stream = cpu->create_stream();
  rejects("not to a DirectML device", [&] {
    (void)directml::enqueue_gemm(*cpu_stream, shape, buffer, 0, buffer, 256, buffer, 512);
  });
  stream->synchronize();
  std::vector<std::uint8_t> after(buffer.size());
  read(after.data(), buffer, 0, after.size());
  EXPECT_EQ(after, marks);
}

TEST(DirectmlLoader, MissingLibrarySaysWhatToInstall) {
  directml::BackendOptions options;
  options.directml_library_names = {"Z:\\nowhere\\DirectML.dll"};
  auto backend = directml::make_backend(options);
  const BackendStatus status = backend->open();
  EXPECT_FALSE(status.available);
  EXPECT_NE(status.reason.find("Z:\\nowhere\\DirectML.dll not found"), std::string::npos)
      << status.reason;
  EXPECT_NE(status.reason.find("EXOGPU_DIRECTML_LIBRARY"), std::string::npos) << status.reason;
  EXPECT_TRUE(backend->devices().empty());
}

TEST(DirectmlLoader, LibraryWithoutDmlCreateDevice1IsTooOld) {
  // Built beside this test: a DirectML.dll exporting only DMLCreateDevice,
  // as DirectML 1.0 did.
  directml::BackendOptions options;
  options.directml_library_names = {"fake_directml_old\\DirectML.dll"};
  const BackendStatus status = directml::make_backend(options)->open();
  EXPECT_FALSE(status.available);
  EXPECT_NE(status.reason.find("too old"), std::string::npos) << status.reason;
  EXPECT_NE(status.reason.find("DMLCreateDevice1"), std::string::npos) << status.reason;
}

TEST(DirectmlErrors, HresultsBecomeTypedErrors) {
  EXPECT_THROW(directml::check_hresult(E_OUTOFMEMORY, "CreateCommittedResource", "directml:0"),
               OutOfMemory);
  try {
    directml::check_hresult(DXGI_ERROR_DEVICE_REMOVED, "ExecuteCommandLists", "directml:0");
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("directml:0: ExecuteCommandLists failed: "
                                         "DXGI_ERROR_DEVICE_REMOVED (0x887a0005)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(directml::check_hresult(S_OK, "anything", "directml:0"));
  EXPECT_NE(directml::describe_hresult(static_cast<HRESULT>(0x80070005)).find("0x80070005"),
            std::string::npos);
}

TEST(DirectmlDevice, AllocationBeyondTheAdapterIsOutOfMemoryNamingIt) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  try {
    (void)device->allocate(device->info().memory_total + 1);
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("directml:0: cannot allocate"), std::string::npos)
        << e.what();
  }
}

TEST(DirectmlDevice, IdentityAndMemoryFigures) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  const DeviceInfo& info = device->info();
  ASSERT_EQ(info.luid.size(), 17u) << info.luid;
  EXPECT_EQ(info.luid[8], '-');
  EXPECT_NE(info.pci_vendor_id, 0u);
  EXPECT_EQ(info.kind == DeviceKind::integrated, info.unified_memory);
  const MemoryInfo memory = device->memory_info();
  EXPECT_EQ(memory.source, MemorySource::budget);
  EXPECT_GT(memory.free, 0u);
  // Allocations count against the budget the OS gives this process.
  Buffer held = device->allocate(std::size_t{64} << 20);
  EXPECT_LE(device->memory_info().free, memory.free);
}

TEST(DirectmlDevice, HostVisibleBuffersAreTheDeviceMemoryItself) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  Buffer buffer = device->allocate(4096);
  if (buffer.host_ptr() == nullptr) GTEST_SKIP() << "buffers here are device-local (staged copies)";
  auto* bytes = static_cast<std::uint8_t*>(buffer.host_ptr());
  for (int i = 0; i < 4096; ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  // A copy on the GPU reads what the host wrote in place, and the host sees
  // what the GPU wrote.
  Buffer other = device->allocate(4096);
  copy(other, 0, buffer, 0, 4096);
  std::vector<std::uint8_t> out(4096);
  std::memcpy(out.data(), other.host_ptr(), out.size());
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(out[i], static_cast<std::uint8_t>(i * 7)) << i;
}

TEST(DirectmlEvents, TimesComeFromOneQueuesClockOnly) {
  auto device = directml_device();
  ASSERT_TRUE(device);
  auto first = device->create_stream();
  auto second = device->create_stream();
  auto a = first->record();
  auto b = second->record();
  first->synchronize();
  second->synchronize();
  EXPECT_THROW((void)a->elapsed_ms(*b), InvalidArgument);
  auto c = first->record();
  c->synchronize();
  EXPECT_GE(a->elapsed_ms(*c), 0.0);
}

}  // namespace
}  // namespace exogpu::test
