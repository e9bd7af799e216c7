// Names and sample statistics shared by the probes.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <utility>

#include "exogpu/error.hpp"
#include "exogpu/probe.hpp"

namespace exogpu::probe {
namespace {

constexpr std::array<std::pair<CopyKind, std::string_view>, 7> kCopyKindNames{{
    {CopyKind::h2d_pinned, "h2d_pinned"},
    {CopyKind::d2h_pinned, "d2h_pinned"},
    {CopyKind::h2d_pageable, "h2d_pageable"},
    {CopyKind::d2h_pageable, "d2h_pageable"},
    {CopyKind::d2d, "d2d"},
    {CopyKind::peer, "peer"},
    {CopyKind::bidirectional, "bidirectional"},
}};

}  // namespace

std::string_view to_string(Timing timing) noexcept {
  return timing == Timing::device_events ? "device_events" : "host_clock";
}

std::string_view to_string(CopyKind kind) noexcept {
  for (const auto& [k, name] : kCopyKindNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

CopyKind copy_kind_from_string(std::string_view name) {
  for (const auto& [kind, known] : kCopyKindNames) {
    if (known == name) return kind;
  }
  std::string names;
  for (const auto& [kind, known] : kCopyKindNames) {
    names += names.empty() ? "" : ", ";
    names += known;
  }
  throw InvalidArgument("unknown copy kind '" + std::string(name) + "' (known: " + names + ")");
}

const std::vector<CopyKind>& all_copy_kinds() {
  static const std::vector<CopyKind> kinds = [] {
    std::vector<CopyKind> all;
    for (const auto& entry : kCopyKindNames) all.push_back(entry.first);
    return all;
  }();
  return kinds;
}

SampleStats summarize(std::vector<double> seconds) {
  SampleStats stats;
  stats.samples = seconds.size();
  if (seconds.empty()) return stats;
  std::sort(seconds.begin(), seconds.end());
  const std::size_t mid = seconds.size() / 2;
  stats.median = seconds.size() % 2 == 1 ? seconds[mid] : (seconds[mid - 1] + seconds[mid]) / 2;
  stats.min = seconds.front();
  stats.max = seconds.back();
  return stats;
}

}  // namespace exogpu::probe
