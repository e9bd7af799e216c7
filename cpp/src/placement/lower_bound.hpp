// A lower bound for when the exact search cannot finish: the same dynamic
// program with the distinct-device rule dropped (a device may hold several
// stages, each within its memory), a relaxation whose optimum is never worse.
#pragma once

#include "exogpu/placement.hpp"
#include "placement/cost_tables.hpp"

namespace exogpu::placement::detail {

[[nodiscard]] double relaxed_lower_bound(const CostTables& tables, Objective objective);

}  // namespace exogpu::placement::detail
