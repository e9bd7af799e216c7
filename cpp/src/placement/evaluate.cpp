// Prices a given placement under the contract's cost model, term by term in
// pipeline order (stage, hop, stage, ..., ring hop), the way a reader of the
// contract would.
#include <string>
#include <utility>
#include <vector>

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
  const auto flag = [&](std::string reason) {
    if (!out.feasible) return;
    out.feasible = false;
    out.infeasible_reason = std::move(reason);
  };
  const auto add_hop = [&](const Hop& hop) {
    out.latency += hop.time;
    if (hop.time > out.bottleneck) out.bottleneck = hop.time;
    out.hops.push_back(hop);
  };
  const bool endpoints = !problem.endpoints.empty();
  if (endpoints) {
    const int first = specs.front().device;
    add_hop(Hop{-1, first, -1, detail::entry_hop_time(problem, first), HopKind::entry});
  }
  std::vector<std::uint64_t> pool_held(problem.memory_pools.size(), 0);
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const StageSpec& s = specs[i];
    const Device& dev = problem.devices[static_cast<std::size_t>(s.device)];
    Stage stage{s.device, s.first_layer, s.last_layer, 0.0, 0, 0};
    std::uint64_t kv = 0;
    for (int l = s.first_layer; l <= s.last_layer; ++l) {
      stage.time += detail::layer_time(problem, l, s.device);
      stage.memory_bytes += detail::resident_bytes(problem, l);
      kv += detail::kv_bytes(problem, l);
    }
    stage.time += dev.stage_overhead;
    const std::uint64_t usable = detail::usable_bytes(problem, dev.memory_bytes);
    const bool may_offload = problem.allow_disk_offload && dev.disk_read_bandwidth > 0.0;
    const std::string layers = "(layers " + std::to_string(s.first_layer) + ".." + std::to_string(s.last_layer) + ")";
    if (stage.memory_bytes > usable) {
      if (!may_offload) {
        flag("the stage on " + dev.id + " " + layers + " needs " + detail::format_bytes(stage.memory_bytes) +
             ", more than the " + detail::format_bytes(usable) + " it can hold");
      } else if (kv > usable) {
        flag("the stage on " + dev.id + " " + layers + " has a KV cache of " + detail::format_bytes(kv) +
             ", more than the " + detail::format_bytes(usable) + " it can hold (the KV cache is never offloaded)");
      } else {
        stage.offloaded_bytes = stage.memory_bytes - usable;
        stage.time += static_cast<double>(stage.offloaded_bytes) / dev.disk_read_bandwidth;
      }
    }
    if (dev.memory_pool >= 0) {
      pool_held[static_cast<std::size_t>(dev.memory_pool)] += stage.memory_bytes - stage.offloaded_bytes;
    }
    const double fraction = static_cast<double>(stage.memory_bytes) / static_cast<double>(dev.memory_bytes);
    if (fraction > out.max_memory_fraction) out.max_memory_fraction = fraction;
    out.latency += stage.time;
    if (stage.time > out.bottleneck) out.bottleneck = stage.time;
    out.stages.push_back(stage);
    if (i + 1 < specs.size()) {
      add_hop(Hop{s.device, specs[i + 1].device, s.last_layer,
                  detail::hop_time(problem, s.device, specs[i + 1].device, s.last_layer), HopKind::stage});
    } else if (problem.ring && specs.size() >= 2) {
      const int first = specs.front().device;
      add_hop(Hop{s.device, first, s.last_layer, problem.links[static_cast<std::size_t>(s.device) * D + first].latency,
                  HopKind::ring});
    }
  }
  if (endpoints) {
    const int last = specs.back().device;
    add_hop(Hop{last, -1, L - 1, detail::exit_hop_time(problem, last), HopKind::exit});
  }
  for (std::size_t i = 0; i < problem.memory_pools.size(); ++i) {
    const MemoryPool& pool = problem.memory_pools[i];
    const std::uint64_t usable = detail::usable_bytes(problem, pool.capacity_bytes);
    if (pool_held[i] > usable) {
      flag("the stages sharing memory pool " + pool.name + " hold " + detail::format_bytes(pool_held[i]) +
           " in memory, more than the " + detail::format_bytes(usable) + " it can hold");
    }
  }
  switch (objective) {
    case Objective::latency: out.value = out.latency; break;
    case Objective::throughput: out.value = out.bottleneck; break;
    case Objective::memory: out.value = out.max_memory_fraction; break;
  }
  return out;
}

}  // namespace exogpu::placement
