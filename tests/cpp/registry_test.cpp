// Backend selection and the merging of one physical device's several views.
#include <gtest/gtest.h>

#include "core/identity.hpp"
#include "exogpu/error.hpp"
#include "exogpu/registry.hpp"

namespace exogpu::test {
namespace {

TEST(BackendSelection, IncludesExcludesAndRejectsUnknownNames) {
  auto only = BackendSelection::parse("cpu, vulkan");
  EXPECT_TRUE(only.selects("cpu"));
  EXPECT_TRUE(only.selects("vulkan"));
  EXPECT_FALSE(only.selects("cuda"));
  auto without = BackendSelection::parse("-cuda,-hip");
  EXPECT_TRUE(without.selects("cpu"));
  EXPECT_FALSE(without.selects("cuda"));
  EXPECT_FALSE(without.selects("hip"));
  EXPECT_TRUE(BackendSelection::parse("").selects("cpu"));
  try {
    (void)BackendSelection::parse("cpu,cdua");
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("'cdua'"), std::string::npos) << e.what();
  }
}

TEST(Registry, ExcludedBackendsSayWhyAndGiveNoDevices) {
  Registry registry(BackendSelection::parse("-cpu"));
  for (const auto& status : registry.backends()) {
    if (status.name == "cpu") {
      EXPECT_FALSE(status.available);
      EXPECT_EQ(status.reason, "excluded by EXOGPU_BACKENDS");
    }
  }
  for (const auto& device : registry.all_devices()) EXPECT_NE(device->info().backend, "cpu");
}

TEST(Registry, EveryKnownBackendIsListedWithAReasonWhenUnavailable) {
  Registry registry(BackendSelection{});
  ASSERT_EQ(registry.backends().size(), Registry::known_backends().size());
  for (const auto& status : registry.backends()) {
    if (!status.available) {
      EXPECT_FALSE(status.reason.empty()) << status.name;
    }
  }
  EXPECT_THROW((void)registry.device("cuda:99"), InvalidArgument);
  EXPECT_EQ(registry.device("cpu:0")->id(), "cpu:0");
}

DeviceInfo view(std::string backend, int index, std::string uuid, std::string pci,
                bool emulated = false) {
  DeviceInfo info;
  info.backend = std::move(backend);
  info.index = index;
  info.id = info.backend + ":" + std::to_string(index);
  info.uuid = std::move(uuid);
  info.pci_bus_id = std::move(pci);
  info.emulated_on_host = emulated;
  return info;
}

TEST(GroupPhysicalDevices, MergesByUuidThenPciAndFoldsCpuEmulationIntoTheCpu) {
  const std::vector<DeviceInfo> devices = {
      view("cuda", 0, "aaaa", "0000:01:00.0"),
      view("hip", 0, "", "0000:03:00.0"),
      view("cpu", 0, "", ""),
      view("vulkan", 0, "bbbb", "0000:03:00.0"),  // the HIP GPU, by PCI bus id
      view("vulkan", 1, "aaaa", ""),              // the CUDA GPU, by UUID
      view("vulkan", 2, "cccc", "", true),        // lavapipe
      view("vulkan", 3, "dddd", "0000:09:00.0"),  // only seen through Vulkan
  };
  const auto groups = group_physical_devices(devices);
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0], (std::vector<std::size_t>{0, 4}));  // cuda:0 preferred over vulkan:1
  EXPECT_EQ(groups[1], (std::vector<std::size_t>{1, 3}));  // hip:0 preferred over vulkan:0
  EXPECT_EQ(groups[2], (std::vector<std::size_t>{2, 5}));  // cpu:0 with lavapipe
  EXPECT_EQ(groups[3], (std::vector<std::size_t>{6}));
}

DeviceInfo with_luid(DeviceInfo info, std::string luid, std::uint32_t vendor) {
  info.luid = std::move(luid);
  info.pci_vendor_id = vendor;
  return info;
}

TEST(GroupPhysicalDevices, MergesByAdapterLuidUnlessTheVendorsDisagree) {
  const std::vector<DeviceInfo> devices = {
      with_luid(view("vulkan", 0, "", ""), "00000000-0000b81b", 0x1002),
      with_luid(view("directml", 0, "", ""), "00000000-0000b81b", 0x1002),  // same AMD GPU
      with_luid(view("cuda", 0, "", ""), "00000000-0000c0de", 0),  // CUDA gives no vendor id
      with_luid(view("directml", 1, "", ""), "00000000-0000c0de", 0x10de),
      with_luid(view("directml", 2, "", ""), "", 0x8086),  // no LUID: alone
  };
  auto groups = group_physical_devices(devices);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0], (std::vector<std::size_t>{1, 0}));  // directml:0 preferred over vulkan:0
  EXPECT_EQ(groups[1], (std::vector<std::size_t>{2, 3}));  // cuda:0 preferred over directml:1
  EXPECT_EQ(groups[2], (std::vector<std::size_t>{4}));

  // A LUID that two views give to two vendors' adapters is not trusted: no
  // view merges by it.
  auto conflicting = devices;
  conflicting.push_back(with_luid(view("vulkan", 1, "", ""), "00000000-0000c0de", 0x8086));
  groups = group_physical_devices(conflicting);
  ASSERT_EQ(groups.size(), 5u);
  EXPECT_EQ(groups[0], (std::vector<std::size_t>{1, 0}));
  EXPECT_EQ(groups[1], (std::vector<std::size_t>{2}));
  EXPECT_EQ(groups[2], (std::vector<std::size_t>{3}));
}

TEST(DeviceIdentity, LuidIsHighPartThenLowPartFromTheDriversBytes) {
  // The LUID struct's memory, as cuDeviceGetLuid, deviceLUID and AdapterLuid
  // give it: LowPart 0x0001b81b, then HighPart 0x00000002, little-endian.
  const std::uint8_t bytes[8] = {0x1b, 0xb8, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00};
  EXPECT_EQ(format_luid(bytes), "00000002-0001b81b");
  const std::uint8_t zero[8] = {};
  EXPECT_EQ(format_luid(zero), "");  // no adapter has the zero LUID
}

TEST(Registry, DirectmlSaysWhyItIsNotHere) {
  Registry registry(BackendSelection{});
  for (const auto& status : registry.backends()) {
    if (status.name != "directml") continue;
#if defined(_WIN32)
    if (!status.available) {
      EXPECT_EQ(status.reason.find("Windows API"), std::string::npos) << status.reason;
    }
#else
    EXPECT_FALSE(status.available);
    EXPECT_NE(status.reason.find("DirectML is a Windows API"), std::string::npos) << status.reason;
    EXPECT_EQ(status.reason.find("built"), std::string::npos) << status.reason;
#endif
  }
}

TEST(GroupPhysicalDevices, EmulatedDeviceStandsAloneWithoutTheCpuBackend) {
  const auto groups = group_physical_devices({view("vulkan", 0, "cccc", "", true)});
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0], (std::vector<std::size_t>{0}));
}

TEST(DeviceIdentity, PciBusIdIsNormalisedFromEveryDriverSpelling) {
  EXPECT_EQ(normalise_pci_bus_id("0000:65:00.0"), "0000:65:00.0");
  EXPECT_EQ(normalise_pci_bus_id("00000000:0A:1F.7"), "0000:0a:1f.7");  // NVML's 8-digit domain
  EXPECT_EQ(normalise_pci_bus_id("0001:C1:00.1"), "0001:c1:00.1");
  EXPECT_EQ(normalise_pci_bus_id("10000:01:00.0"), "10000:01:00.0");  // VMD domains exceed 16 bits
  EXPECT_EQ(normalise_pci_bus_id("0000:65:00"), "");
  EXPECT_EQ(normalise_pci_bus_id("0000:65:00.0 trailing"), "");
  EXPECT_EQ(normalise_pci_bus_id("0000:165:00.0"), "");
  EXPECT_EQ(normalise_pci_bus_id("garbage"), "");
  EXPECT_EQ(normalise_pci_bus_id("c3:00.0"), "");  // no domain
  EXPECT_EQ(format_pci_bus_id(0, 0x65, 0, 1), "0000:65:00.1");
}

TEST(DeviceIdentity, UuidIsLowerCaseEightFourFourFourTwelve) {
  const std::uint8_t bytes[16] = {0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x23, 0x45, 0x67,
                                  0x89, 0xAB, 0xCD, 0xEF, 0x00, 0x11, 0x22, 0xFF};
  EXPECT_EQ(format_uuid(bytes), "deadbeef-0123-4567-89ab-cdef001122ff");
}

TEST(Registry, AliasesAreSymmetric) {
  const Registry& registry = Registry::instance();
  for (const auto& device : registry.all_devices()) {
    for (const auto& alias : device->info().aliases) {
      const auto& other = registry.device(alias)->info().aliases;
      EXPECT_NE(std::find(other.begin(), other.end(), device->id()), other.end())
          << device->id() << " <-> " << alias;
    }
  }
  for (const auto& physical : registry.devices()) {
    for (const auto& alias : physical->info().aliases) {
      for (const auto& other : registry.devices()) EXPECT_NE(other->id(), alias);
    }
  }
}

}  // namespace
}  // namespace exogpu::test

// The host's RAM is one pool: the CPU, a CPU driver of a GPU API, integrated
// and unified-memory GPUs draw from it; a discrete GPU has memory of its own.
TEST(MemoryPools, DevicesOnHostMemoryShareTheHostPool) {
  const auto info = [](std::string id, std::string backend, exogpu::DeviceKind kind, bool unified,
                       bool emulated) {
    exogpu::DeviceInfo i;
    i.id = std::move(id);
    i.backend = std::move(backend);
    i.kind = kind;
    i.unified_memory = unified;
    i.emulated_on_host = emulated;
    return i;
  };
  using K = exogpu::DeviceKind;
  std::vector<exogpu::DeviceInfo> devices = {
      info("cpu:0", "cpu", K::cpu, true, false),          info("vulkan:0", "vulkan", K::cpu, true, true),
      info("vulkan:1", "vulkan", K::integrated, true, false), info("metal:0", "metal", K::integrated, true, false),
      info("cuda:0", "cuda", K::discrete, false, false),   info("cuda:1", "cuda", K::integrated, true, false),
      info("metal:1", "metal", K::discrete, false, false)};
  exogpu::assign_memory_pools(devices, 68719476736ull);
  for (const auto& d : devices) {
    const bool host = d.unified_memory;
    EXPECT_EQ(d.memory_pool, host ? std::string("host") : std::string()) << d.id;
    EXPECT_EQ(d.memory_pool_bytes, host ? 68719476736ull : 0ull) << d.id;
  }
}

TEST(MemoryPools, TheRegistryPutsTheCpuInTheHostPoolOfPhysicalMemory) {
  const auto& registry = exogpu::Registry::instance();
  const std::uint64_t host = exogpu::host_physical_memory();
  ASSERT_GT(host, 0u);
  bool cpu = false;
  for (const auto& device : registry.all_devices()) {
    const auto& i = device->info();
    if (i.unified_memory) {
      EXPECT_EQ(i.memory_pool, "host") << i.id;
      EXPECT_EQ(i.memory_pool_bytes, host) << i.id;
    } else {
      EXPECT_TRUE(i.memory_pool.empty()) << i.id;
    }
    if (i.backend == "cpu") {
      cpu = true;
      EXPECT_EQ(i.memory_total, host);  // the same RAM, one figure
    }
  }
  EXPECT_TRUE(cpu);
}
