// Lower bounds for when the exact search cannot finish.
#pragma once

#include "exogpu/placement.hpp"
#include "placement/cost_tables.hpp"
#include "placement/deadline.hpp"

namespace exogpu::placement::detail {

// O(units * layers), always affordable: every layer runs on some device at
// its fastest (latency: the sum of those times; throughput: the largest), and
// the memory fraction is at least the model over all the devices' memory.
[[nodiscard]] double trivial_lower_bound(const CostTables& tables, Objective objective);

// The exact dynamic program with the distinct-device rule dropped (a device
// may hold several stages, each within its memory), a relaxation whose
// optimum is never worse. O(units^2 * layers) for latency (a sliding-window
// minimum over stage starts); the bottleneck objectives scan starts and stop
// early. Throws TimeUp past the deadline.
[[nodiscard]] double relaxed_lower_bound(const CostTables& tables, Objective objective,
                                         const Deadline& deadline);

// For the bottleneck objectives (throughput, memory): a value V is out of
// reach when the longest run of layers each device could hold at cost <= V,
// summed over the devices, is short of L (every device holds one stage).
// Bisects between `known_low` and `known_high` (a value reached) and returns
// the largest value shown out of reach, or known_low; stops at the deadline
// with the best shown so far.
[[nodiscard]] double counting_lower_bound(const CostTables& tables, Objective objective,
                                          double known_low, double known_high,
                                          const Deadline& deadline);

}  // namespace exogpu::placement::detail
