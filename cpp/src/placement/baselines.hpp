// The splits today's systems use, priced under the same cost model so that a
// user sees what the optimum buys. Both keep the devices in the given order
// and skip a device whose share rounds to no layer.
#pragma once

#include <vector>

#include "exogpu/placement.hpp"

namespace exogpu::placement::detail {

// exo: layer boundaries at floor(L * cumulative memory / total memory).
[[nodiscard]] std::vector<StageSpec> exo_memory_weighted(const Problem& problem);

// llama.cpp: layer l goes to the first device whose cumulative share of free
// memory exceeds l / L (boundaries at ceil(L * cumulative / total)). Free
// memory is Device::free_memory_bytes, or memory_bytes when that is 0.
[[nodiscard]] std::vector<StageSpec> free_memory_proportional(const Problem& problem);

}  // namespace exogpu::placement::detail
