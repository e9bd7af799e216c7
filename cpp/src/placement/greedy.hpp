// Fast placements for when the exact search cannot run: linear in the layers,
// so that even the contract's largest problem gets a good answer inside a
// short budget. None of them proves anything; the bounds do that.
#pragma once

#include <vector>

#include "exogpu/placement.hpp"
#include "placement/cost_tables.hpp"
#include "placement/deadline.hpp"

namespace exogpu::placement::detail {

// Fills the units in `order` one after the other, each with as many layers as
// fit its memory. Empty when the layers do not fit in that order.
[[nodiscard]] std::vector<StageSpec> greedy_fill(const CostTables& tables, const std::vector<int>& order);

// The units by capacity, largest first; by their time for the whole model,
// fastest first.
[[nodiscard]] std::vector<int> capacity_order(const CostTables& tables);
[[nodiscard]] std::vector<int> speed_order(const CostTables& tables);

// For the bottleneck objectives (throughput, memory): the smallest cap found
// by bisection for which filling `order` greedily (each unit takes layers
// while its stage, its memory and the hop into it stay within the cap;
// a unit that cannot is skipped) covers every layer. Empty when nothing in
// [low, high] works. O(layers) per bisection step; throws TimeUp.
[[nodiscard]] std::vector<StageSpec> greedy_bottleneck(const CostTables& tables, const Problem& problem,
                                                       Objective objective, const std::vector<int>& order,
                                                       double low, double high, const Deadline& deadline);

}  // namespace exogpu::placement::detail
