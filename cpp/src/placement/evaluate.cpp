// Prices a given placement under the contract's cost model, term by term in
// pipeline order (stage, hop, stage, ..., ring hop), the way a reader of the
// contract would.
#include <string>

#include "placement/cost_tables.hpp"
#include "placement/format.hpp"

namespace exogpu::placement {

Placement evaluate(const Problem& problem, Objective objective, const std::vector<StageSpec>& specs) {
  detail::validate(problem, Options{});
  const int L = static_cast<int>(problem.layers.size());
  const int D = static_cast<int>(problem.devices.size());
  if (specs.empty()) throw InvalidArgument("placement: at least one stage is required");
  std::vector<bool> used(static_cast<std::size_t>(D), false);
  int next = 0;
  for (const StageSpec& s : specs) {
    if (s.device < 0 || s.device >= D) throw InvalidArgument("placement: device index out of range");
    if (used[static_cast<std::size_t>(s.device)]) {
      throw InvalidArgument("placement: device " + problem.devices[static_cast<std::size_t>(s.device)].id +
                            " holds more than one stage");
    }
    used[static_cast<std::size_t>(s.device)] = true;
    if (s.first_layer != next || s.last_layer < s.first_layer || s.last_layer >= L) {
      throw InvalidArgument("placement: stages must be contiguous, non-empty and cover layers 0.." +
                            std::to_string(L - 1));
    }
    next = s.last_layer + 1;
  }
  if (next != L) throw InvalidArgument("placement: stages must cover every layer");

  Placement out;
  out.objective = objective;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const StageSpec& s = specs[i];
    const Device& dev = problem.devices[static_cast<std::size_t>(s.device)];
    Stage stage{s.device, s.first_layer, s.last_layer, 0.0, 0};
    for (int l = s.first_layer; l <= s.last_layer; ++l) {
      stage.time += detail::layer_time(problem, l, s.device);
      stage.memory_bytes += detail::resident_bytes(problem, l);
    }
    const double capacity = (1.0 - problem.memory_headroom) * static_cast<double>(dev.memory_bytes);
    if (static_cast<double>(stage.memory_bytes) > capacity && out.feasible) {
      out.feasible = false;
      out.infeasible_reason = "the stage on " + dev.id + " (layers " + std::to_string(s.first_layer) +
                              ".." + std::to_string(s.last_layer) + ") needs " +
                              detail::format_bytes(stage.memory_bytes) + ", more than the " +
                              detail::format_bytes(capacity) + " it can hold";
    }
    const double fraction = static_cast<double>(stage.memory_bytes) / static_cast<double>(dev.memory_bytes);
    if (fraction > out.max_memory_fraction) out.max_memory_fraction = fraction;
    out.latency += stage.time;
    if (stage.time > out.bottleneck) out.bottleneck = stage.time;
    out.stages.push_back(stage);
    Hop hop;
    if (i + 1 < specs.size()) {
      hop = Hop{s.device, specs[i + 1].device, s.last_layer,
                detail::hop_time(problem, s.device, specs[i + 1].device, s.last_layer)};
    } else if (problem.ring && specs.size() >= 2) {
      const int first = specs.front().device;
      hop = Hop{s.device, first, s.last_layer,
                problem.links[static_cast<std::size_t>(s.device) * D + first].latency};
    } else {
      continue;
    }
    out.latency += hop.time;
    if (hop.time > out.bottleneck) out.bottleneck = hop.time;
    out.hops.push_back(hop);
  }
  switch (objective) {
    case Objective::latency: out.value = out.latency; break;
    case Objective::throughput: out.value = out.bottleneck; break;
    case Objective::memory: out.value = out.max_memory_fraction; break;
  }
  return out;
}

}  // namespace exogpu::placement
