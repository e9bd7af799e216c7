// A lower bound for when the exact search cannot finish: the same dynamic
// program with the distinct-device rule dropped (a device may hold several
// stages, each within its memory), a relaxation whose optimum is never worse.
#pragma once

#include "exogpu/placement.hpp"
#include "placement/cost_tables.hpp"

namespace exogpu::placement::detail {

[[nodiscard]] double relaxed_lower_bound(const CostTables& tables, Objective objective);

// For the bottleneck objectives (throughput, memory): a value V is out of
// reach when the longest run of layers each device could hold at cost <= V,
// summed over the devices, is short of L (every device holds one stage).
// Bisects between `known_low` and `known_high` (a value reached) and returns
// the largest value shown out of reach, or known_low.
[[nodiscard]] double counting_lower_bound(const CostTables& tables, Objective objective,
                                          double known_low, double known_high);

}  // namespace exogpu::placement::detail
