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

// A pool of memory that several units share (only pools of two or more
// devices: a lone member's pool is folded into its own capacity).
struct SharedPool {
  std::vector<int> units;  // pooled devices never collapse: one device each
  std::uint64_t usable = 0;  // floor((1 - headroom) * capacity)
};

class CostTables {
 public:
  CostTables(const Problem& problem, std::vector<std::vector<int>> groups,
             const std::vector<int>& previous);

  [[nodiscard]] int layers() const noexcept { return layers_; }
  [[nodiscard]] int units() const noexcept { return static_cast<int>(groups_.size()); }
  [[nodiscard]] const std::vector<int>& members(int unit) const { return groups_[unit]; }
  [[nodiscard]] int count(int unit) const { return static_cast<int>(groups_[unit].size()); }

  // Time of a stage of layers j..k-1 on unit u: the layers' roofline times
  // (a prefix difference), the unit's stage overhead and, when the stage
  // offloads, its excess bytes read from disk. Monotone in j and k.
  [[nodiscard]] double stage_time(int u, int j, int k) const noexcept {
    double time = prefix_time_[idx(u, k)] - prefix_time_[idx(u, j)] + overhead_[u];
    if (offload_[u]) {
      const std::uint64_t m = stage_memory(j, k);
      if (m > cap_[u]) time += static_cast<double>(m - cap_[u]) * disk_seconds_per_byte_[u];
    }
    return time;
  }
  // The layers' roofline times alone (no overhead, no disk).
  [[nodiscard]] double layer_time(int u, int j, int k) const noexcept {
    return prefix_time_[idx(u, k)] - prefix_time_[idx(u, j)];
  }
  [[nodiscard]] double prefix_time(int u, int k) const noexcept { return prefix_time_[idx(u, k)]; }
  [[nodiscard]] double overhead(int u) const noexcept { return overhead_[u]; }
  [[nodiscard]] std::uint64_t stage_memory(int j, int k) const noexcept {
    return prefix_memory_[k] - prefix_memory_[j];
  }
  [[nodiscard]] std::uint64_t prefix_memory(int k) const noexcept { return prefix_memory_[k]; }
  // KV cache bytes of layers j..k-1 (never offloaded).
  [[nodiscard]] std::uint64_t stage_kv(int j, int k) const noexcept { return prefix_kv_[k] - prefix_kv_[j]; }
  // Whether layers j..k-1 may be a stage on u: they fit its cap, or it
  // offloads and their KV cache fits.
  [[nodiscard]] bool allowed(int u, int j, int k) const noexcept {
    return stage_memory(j, k) <= cap_[u] || (offload_[u] && stage_kv(j, k) <= cap_[u]);
  }
  [[nodiscard]] double memory_ratio(int u, int j, int k) const noexcept {
    return static_cast<double>(stage_memory(j, k)) / memory_[u];
  }
  // Smallest j such that layers j..k-1 are allowed on unit u (k when none
  // is): they fit its cap, or, when it offloads, their KV cache does.
  [[nodiscard]] int lowest_fitting_start(int u, int k) const noexcept { return lo_memory_[idx(u, k)]; }
  // Smallest j such that layers j..k-1 fit u's cap without offload; starts
  // in [lowest_fitting_start, fit_start) offload.
  [[nodiscard]] int fit_start(int u, int k) const noexcept { return fit_memory_[idx(u, k)]; }
  // Largest j such that layers j..k-1 hold at least u's floor of bytes (k - 1
  // without a floor; -1 when no stage ending at k does). Only the pool
  // search sets floors.
  [[nodiscard]] int highest_start(int u, int k) const noexcept { return hi_memory_[idx(u, k)]; }
  [[nodiscard]] bool offloads(int u) const noexcept { return offload_[u] != 0; }
  [[nodiscard]] double disk_seconds_per_byte(int u) const noexcept { return disk_seconds_per_byte_[u]; }
  // Bytes of layers j..k-1 that stay in u's memory.
  [[nodiscard]] std::uint64_t resident(int u, int j, int k) const noexcept {
    const std::uint64_t m = stage_memory(j, k);
    return offload_[u] && m > cap_[u] ? cap_[u] : m;
  }
  // Hop from unit a to unit b when the next stage starts at layer j (1..L-1).
  // The same arithmetic as hop_time(), so that evaluate() agrees bit for bit.
  [[nodiscard]] double hop(int a, int b, int j) const noexcept {
    const std::size_t ab = static_cast<std::size_t>(a) * units() + b;
    return link_latency_[ab] + activation_[j] / link_bandwidth_[ab];
  }
  [[nodiscard]] double ring_latency(int a, int b) const noexcept {
    return ring_latency_[static_cast<std::size_t>(a) * units() + b];
  }
  // With endpoints: the hop into the first stage on u and out of the last
  // stage on u (0 without endpoints).
  [[nodiscard]] double entry_hop(int u) const noexcept { return entry_[u]; }
  [[nodiscard]] double exit_hop(int u) const noexcept { return exit_[u]; }
  // Layers in 0..k-1 that the previous placement did not hold on unit u.
  [[nodiscard]] int prefix_not_previous(int u, int k) const noexcept {
    return not_previous_[idx(u, k)];
  }
  // Bytes a stage on u may hold in memory now (its own usable memory, its
  // pool's when smaller, or a cap the pool search set).
  [[nodiscard]] double capacity(int u) const noexcept { return static_cast<double>(cap_[u]); }
  [[nodiscard]] std::uint64_t cap(int u) const noexcept { return cap_[u]; }
  [[nodiscard]] double memory(int u) const noexcept { return memory_[u]; }
  [[nodiscard]] std::uint64_t total_memory() const noexcept { return prefix_memory_[layers_]; }

  // Pools of two or more devices, and each unit's (index into them, or -1).
  [[nodiscard]] const std::vector<SharedPool>& shared_pools() const noexcept { return pools_; }
  [[nodiscard]] int pool_of(int u) const noexcept { return pool_of_[u]; }
  // The pool search's branching step, O(layers): a stage on u holds at most
  // `cap` bytes (below its own cap, offload is off) and at least `floor`;
  // restore() gives u back its own cap, offload and no floor.
  void set_bounds(int u, std::uint64_t cap, std::uint64_t floor);
  void restore(int u);
  [[nodiscard]] std::uint64_t own_cap(int u) const noexcept { return own_cap_[u]; }
  [[nodiscard]] bool own_offloads(int u) const noexcept { return own_offload_[u] != 0; }
  [[nodiscard]] std::uint64_t floor(int u) const noexcept { return floor_[u]; }

 private:
  [[nodiscard]] std::size_t idx(int u, int k) const noexcept {
    return static_cast<std::size_t>(u) * (layers_ + 1) + k;
  }
  void build_windows(int u);
  int layers_;
  std::vector<std::vector<int>> groups_;
  std::vector<std::uint64_t> prefix_memory_;
  std::vector<std::uint64_t> prefix_kv_;
  std::vector<double> prefix_time_;
  std::vector<double> memory_;
  std::vector<std::uint64_t> cap_;
  std::vector<std::uint64_t> own_cap_;
  std::vector<char> offload_;
  std::vector<char> own_offload_;
  std::vector<std::uint64_t> floor_;
  std::vector<int> hi_memory_;
  std::vector<double> overhead_;
  std::vector<double> disk_seconds_per_byte_;
  std::vector<int> lo_memory_;
  std::vector<int> fit_memory_;
  std::vector<double> activation_;  // batch * activation bytes of layer j-1, at j
  std::vector<double> link_latency_;
  std::vector<double> link_bandwidth_;
  std::vector<double> ring_latency_;
  std::vector<double> entry_;
  std::vector<double> exit_;
  std::vector<int> not_previous_;
  std::vector<SharedPool> pools_;
  std::vector<int> pool_of_;
};

// floor((1 - headroom) * bytes): the whole bytes a memory of `bytes` may
// hold (docs/placement.md).
[[nodiscard]] std::uint64_t usable_bytes(const Problem& problem, std::uint64_t bytes);
// The hop into the first stage on device d and out of the last, with
// endpoints (0 without).
[[nodiscard]] double entry_hop_time(const Problem& problem, int device);
[[nodiscard]] double exit_hop_time(const Problem& problem, int device);
// KV bytes of layer l: batch * context * kv_bytes_per_token.
[[nodiscard]] std::uint64_t kv_bytes(const Problem& problem, int layer);

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
