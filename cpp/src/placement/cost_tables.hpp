// Precomputed cost tables of one placement problem, so that the search prices
// any stage or hop in O(1) (prefix sums of resident bytes and of per-device
// layer times; a hop from its link and the activation bytes of the cut).
// Every table is O(units * layers) or O(units^2): at the contract's largest
// size (64 devices, 100000 layers) a units^2 * layers table would take GBs.
//
// The search works on "units": a unit is one device, or a class of identical
// devices (same node, same figures, same links) collapsed into a count so that
// permutations of twins are not explored twice.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "exogpu/placement.hpp"

namespace exogpu::placement::detail {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// Checks shapes and ranges; throws InvalidArgument naming what is wrong.
void validate(const Problem& problem, const Options& options);

// Groups of interchangeable devices (indices into Problem::devices), in order
// of their first member. Without collapsing, one group per device.
[[nodiscard]] std::vector<std::vector<int>> device_groups(const Problem& problem, bool collapse);

class CostTables {
 public:
  CostTables(const Problem& problem, std::vector<std::vector<int>> groups,
             const std::vector<int>& previous);

  [[nodiscard]] int layers() const noexcept { return layers_; }
  [[nodiscard]] int units() const noexcept { return static_cast<int>(groups_.size()); }
  [[nodiscard]] const std::vector<int>& members(int unit) const { return groups_[unit]; }
  [[nodiscard]] int count(int unit) const { return static_cast<int>(groups_[unit].size()); }

  // Time of layers j..k-1 on unit u (prefix difference: monotone in j and k).
  [[nodiscard]] double stage_time(int u, int j, int k) const noexcept {
    return prefix_time_[idx(u, k)] - prefix_time_[idx(u, j)];
  }
  [[nodiscard]] double prefix_time(int u, int k) const noexcept { return prefix_time_[idx(u, k)]; }
  [[nodiscard]] std::uint64_t stage_memory(int j, int k) const noexcept {
    return prefix_memory_[k] - prefix_memory_[j];
  }
  [[nodiscard]] double memory_ratio(int u, int j, int k) const noexcept {
    return static_cast<double>(stage_memory(j, k)) / memory_[u];
  }
  // Smallest j such that layers j..k-1 fit on unit u (k when none does).
  [[nodiscard]] int lowest_fitting_start(int u, int k) const noexcept { return lo_memory_[idx(u, k)]; }
  // Hop from unit a to unit b when the next stage starts at layer j (1..L-1).
  // The same arithmetic as hop_time(), so that evaluate() agrees bit for bit.
  [[nodiscard]] double hop(int a, int b, int j) const noexcept {
    const std::size_t ab = static_cast<std::size_t>(a) * units() + b;
    return link_latency_[ab] + activation_[j] / link_bandwidth_[ab];
  }
  [[nodiscard]] double ring_latency(int a, int b) const noexcept {
    return ring_latency_[static_cast<std::size_t>(a) * units() + b];
  }
  // Layers in 0..k-1 that the previous placement did not hold on unit u.
  [[nodiscard]] int prefix_not_previous(int u, int k) const noexcept {
    return not_previous_[idx(u, k)];
  }
  [[nodiscard]] double capacity(int u) const noexcept { return capacity_[u]; }
  [[nodiscard]] double memory(int u) const noexcept { return memory_[u]; }
  [[nodiscard]] std::uint64_t total_memory() const noexcept { return prefix_memory_[layers_]; }

 private:
  [[nodiscard]] std::size_t idx(int u, int k) const noexcept {
    return static_cast<std::size_t>(u) * (layers_ + 1) + k;
  }
  int layers_;
  std::vector<std::vector<int>> groups_;
  std::vector<std::uint64_t> prefix_memory_;
  std::vector<double> prefix_time_;
  std::vector<double> memory_;
  std::vector<double> capacity_;
  std::vector<int> lo_memory_;
  std::vector<double> activation_;  // batch * activation bytes of layer j-1, at j
  std::vector<double> link_latency_;
  std::vector<double> link_bandwidth_;
  std::vector<double> ring_latency_;
  std::vector<int> not_previous_;
};

// Resident bytes of layer l: weight + batch * context * kv (overflow checked
// by validate()).
[[nodiscard]] std::uint64_t resident_bytes(const Problem& problem, int layer);
// Bytes layer l reads per decode step: its streamed weights + the KV cache.
[[nodiscard]] std::uint64_t read_bytes(const Problem& problem, int layer);
// Roofline time of layer l on device d (compute against read_bytes).
[[nodiscard]] double layer_time(const Problem& problem, int layer, int device);
// Hop time from device a to device b after layer `after` (activation of it).
[[nodiscard]] double hop_time(const Problem& problem, int a, int b, int after);

}  // namespace exogpu::placement::detail
