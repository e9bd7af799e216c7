#include "placement/baselines.hpp"

namespace exogpu::placement::detail {
namespace {

using u128 = unsigned __int128;

std::vector<StageSpec> split_at(const std::vector<std::uint64_t>& weights, int layers, bool round_up) {
  u128 total = 0;
  for (std::uint64_t w : weights) total += w;
  std::vector<StageSpec> out;
  u128 cumulative = 0;
  int begin = 0;
  for (std::size_t d = 0; d < weights.size(); ++d) {
    cumulative += weights[d];
    const u128 scaled = cumulative * static_cast<u128>(layers);
    int end = static_cast<int>(scaled / total);
    if (round_up && scaled % total != 0) ++end;
    if (d + 1 == weights.size()) end = layers;
    if (end > begin) {
      out.push_back(StageSpec{static_cast<int>(d), begin, end - 1});
      begin = end;
    }
  }
  return out;
}

}  // namespace

std::vector<StageSpec> exo_memory_weighted(const Problem& p) {
  std::vector<std::uint64_t> weights;
  for (const Device& d : p.devices) weights.push_back(d.memory_bytes);
  return split_at(weights, static_cast<int>(p.layers.size()), false);
}

std::vector<StageSpec> free_memory_proportional(const Problem& p) {
  std::vector<std::uint64_t> weights;
  for (const Device& d : p.devices) weights.push_back(d.free_memory_bytes ? d.free_memory_bytes : d.memory_bytes);
  return split_at(weights, static_cast<int>(p.layers.size()), true);
}

}  // namespace exogpu::placement::detail
