// Orchestrates the search: the exact dynamic program when it fits in memory
// and time, else an anytime search over device orders (each order solved
// exactly as a fixed-order problem) with a relaxation lower bound.
#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>
#include <string>

#include "placement/baselines.hpp"
#include "placement/cost_tables.hpp"
#include "placement/format.hpp"
#include "placement/lower_bound.hpp"
#include "placement/search_engine.hpp"

namespace exogpu::placement {
namespace detail {
namespace {

using Clock = std::chrono::steady_clock;

// The exact free-order table may take this many (node, unit, layer) cells;
// past it (about 200 MB of keys) the anytime search takes over.
constexpr std::uint64_t kMaxExactCells = 12'000'000;

struct Outcome {
  double primary = kInf;  // the objective's value as the search computes it
  SumResult best;
  std::uint64_t explored = 0;
};

SumOrder tie_order(Objective objective) {
  switch (objective) {
    case Objective::latency: return SumOrder::latency_moved_stages;
    case Objective::throughput: return SumOrder::moved_stages_latency;
    case Objective::memory: return SumOrder::moved_latency_stages;
  }
  return SumOrder::latency_moved_stages;
}

// Solves one topology family exactly: make(first) builds the topology whose
// paths start on unit `first` (-1: anywhere). With a ring every first unit is
// tried, since the ring hop depends on it.
template <class Make>
std::optional<Outcome> solve_family(const CostTables& t, const Problem& p, Objective objective,
                                    const Deadline& deadline, Make&& make, bool value_only = false) {
  Outcome out;
  std::vector<int> firsts;
  if (p.ring) {
    for (int u = 0; u < t.units(); ++u) firsts.push_back(u);
  } else {
    firsts.push_back(-1);
  }
  Caps caps;
  if (objective == Objective::throughput) {
    for (int f : firsts) {
      auto topo = make(f);
      Search search(t, topo, deadline);
      out.primary = std::min(out.primary, search.min_max(false));
      out.explored += search.explored();
    }
    if (p.ring) {  // one stage has no ring hop
      for (int u = 0; u < t.units(); ++u) {
        if (t.lowest_fitting_start(u, t.layers()) == 0) {
          out.primary = std::min(out.primary, t.stage_time(u, 0, t.layers()));
        }
      }
    }
    caps.cost = out.primary;
  } else if (objective == Objective::memory) {
    auto topo = make(-1);
    Search search(t, topo, deadline);
    out.primary = search.min_max(true);
    out.explored += search.explored();
    caps.memory_ratio = out.primary;
  }
  if (objective != Objective::latency && out.primary == kInf) return std::nullopt;
  if (value_only && objective != Objective::latency) return out;
  bool any = false;
  for (int f : firsts) {
    auto topo = make(f);
    Search search(t, topo, deadline);
    auto result = search.min_sum(tie_order(objective), caps);
    out.explored += search.explored();
    if (result && (!any || key_less(result->key, out.best.key, tie_order(objective)))) {
      out.best = *result;
      any = true;
    }
  }
  if (!any) return std::nullopt;
  if (objective == Objective::latency) out.primary = out.best.key.latency;
  return out;
}

std::vector<StageSpec> to_devices(const CostTables& t, const std::vector<UnitStage>& stages) {
  std::vector<int> next(static_cast<std::size_t>(t.units()), 0);
  std::vector<StageSpec> out;
  for (const UnitStage& s : stages) {
    const int member = next[static_cast<std::size_t>(s.unit)]++;
    out.push_back(StageSpec{t.members(s.unit)[static_cast<std::size_t>(member)], s.begin, s.end - 1});
  }
  return out;
}

[[noreturn]] void throw_infeasible(const Problem& p, bool proven) {
  std::uint64_t needed = 0;
  std::uint64_t largest_layer = 0;
  for (int l = 0; l < static_cast<int>(p.layers.size()); ++l) {
    const std::uint64_t m = resident_bytes(p, l);
    needed += m;
    largest_layer = std::max(largest_layer, m);
  }
  double capacity = 0.0;
  double largest_device = 0.0;
  for (const Device& d : p.devices) {
    const double c = (1.0 - p.memory_headroom) * static_cast<double>(d.memory_bytes);
    capacity += c;
    largest_device = std::max(largest_device, c);
  }
  std::string message = proven ? "no placement fits: " : "no feasible placement found within the time budget: ";
  message += "the model needs " + format_bytes(needed) + " (batch " + std::to_string(p.batch) + ", context " +
             std::to_string(p.context_tokens) + " tokens; largest layer " + format_bytes(largest_layer) +
             "); the " + std::to_string(p.devices.size()) + " device(s) can hold " + format_bytes(capacity) +
             " in all after " + std::to_string(static_cast<int>(p.memory_headroom * 100.0 + 0.5)) +
             "% headroom (largest device " + format_bytes(largest_device) + ")";
  if (p.fixed_order) message += ", with the devices in the given order";
  throw Infeasible(message, needed, capacity);
}

double primary_of(const Placement& placement) { return placement.value; }

// Anytime search for problems too large to prove: each device order is solved
// exactly as a fixed-order problem; orders are improved by moving one device
// at a time until the deadline.
std::optional<Outcome> search_orders(const CostTables& t, const Problem& p, Objective objective,
                                     const Deadline& deadline) {
  const int U = t.units();
  const auto far = Deadline(Clock::now() + std::chrono::hours(24));
  std::vector<std::vector<int>> seeds;
  std::vector<int> identity(static_cast<std::size_t>(U));
  std::iota(identity.begin(), identity.end(), 0);
  seeds.push_back(identity);
  auto sorted_by = [&](auto key) {
    std::vector<int> order = identity;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
    seeds.push_back(order);
  };
  const int L = t.layers();
  sorted_by([&](int u) { return -t.stage_time(u, 0, L); });  // fastest first
  sorted_by([&](int u) { return t.capacity(u); });            // largest first
  std::optional<Outcome> best;
  std::vector<int> best_order;
  auto score = [&](const std::vector<int>& order, const Deadline& d, bool value_only) {
    return solve_family(t, p, objective, d, [&](int f) { return FixedOrder(order, f); }, value_only);
  };
  for (const auto& order : seeds) {
    auto o = score(order, far, true);
    if (o && (!best || o->primary < best->primary)) {
      best = o;
      best_order = order;
    }
  }
  if (best) {
    std::mt19937 rng(12345);
    int stale = 0;
    while (!deadline.passed() && stale < 50 * U * U) {
      std::vector<int> order = best_order;
      const int a = static_cast<int>(rng() % static_cast<unsigned>(U));
      const int b = static_cast<int>(rng() % static_cast<unsigned>(U));
      if (a == b) continue;
      if (rng() % 2 == 0) {
        std::swap(order[static_cast<std::size_t>(a)], order[static_cast<std::size_t>(b)]);
      } else {
        const int moved = order[static_cast<std::size_t>(a)];
        order.erase(order.begin() + a);
        order.insert(order.begin() + b, moved);
      }
      try {
        auto o = score(order, deadline, true);
        if (o && o->primary < best->primary) {
          best = o;
          best_order = order;
          stale = 0;
        } else {
          ++stale;
        }
      } catch (const TimeUp&) {
        break;
      }
    }
    best = score(best_order, far, false);
  }
  return best;
}

}  // namespace
}  // namespace detail

Placement solve(const Problem& problem, const Options& options) {
  using namespace detail;
  const auto started = Clock::now();
  validate(problem, options);
  const auto seconds_since = [&] {
    return std::chrono::duration<double>(Clock::now() - started).count();
  };
  const CostTables singles(problem, device_groups(problem, false), options.previous);

  Placement result;
  if (options.strategy != Strategy::optimal) {
    const auto stages = options.strategy == Strategy::exo_memory_weighted ? exo_memory_weighted(problem)
                                                                           : free_memory_proportional(problem);
    result = evaluate(problem, options.objective, stages);
    result.optimal = false;
    const double bound = relaxed_lower_bound(singles, options.objective);
    result.lower_bound = bound == kInf ? 0.0 : std::min(bound, result.value);
  } else {
    const auto budget = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::min(options.time_budget_seconds, 1.0e6)));
    const Deadline deadline(started + budget);
    std::optional<Outcome> outcome;
    bool proven = false;
    const CostTables* tables = &singles;
    std::optional<CostTables> grouped;
    if (problem.fixed_order) {
      // Cheap (D^2 * L states): always run to the end.
      const Deadline far(Clock::now() + std::chrono::hours(24));
      std::vector<int> order(problem.devices.size());
      std::iota(order.begin(), order.end(), 0);
      outcome = solve_family(singles, problem, options.objective, far,
                             [&](int f) { return FixedOrder(order, f); });
      proven = true;
    } else {
      grouped.emplace(problem, device_groups(problem, options.previous.empty()), options.previous);
      const FreeOrder probe(*grouped, -1);
      const std::uint64_t cells =
          probe.nodes() * static_cast<std::uint64_t>(grouped->units()) * (problem.layers.size() + 1);
      if (probe.nodes() < (std::uint64_t{1} << 40) && cells <= kMaxExactCells) {
        try {
          outcome = solve_family(*grouped, problem, options.objective, deadline,
                                 [&](int f) { return FreeOrder(*grouped, f); });
          proven = true;
          tables = &*grouped;
        } catch (const TimeUp&) {
          outcome.reset();
        }
      }
      if (!proven) outcome = search_orders(singles, problem, options.objective, deadline);
    }
    double bound = proven ? 0.0 : relaxed_lower_bound(singles, options.objective);
    if (!outcome) throw_infeasible(problem, proven || bound == kInf);
    result = evaluate(problem, options.objective, to_devices(*tables, outcome->best.stages));
    if (!proven) bound = counting_lower_bound(singles, options.objective, bound, result.value);
    result.states_explored = outcome->explored;
    if (proven || primary_of(result) <= bound) {
      result.optimal = true;
      result.lower_bound = result.value;
    } else {
      result.optimal = false;
      result.lower_bound = std::min(bound, result.value);
    }
  }
  result.strategy = options.strategy;
  if (!options.previous.empty()) {
    for (const Stage& s : result.stages) {
      for (int l = s.first_layer; l <= s.last_layer; ++l) {
        if (options.previous[static_cast<std::size_t>(l)] != s.device) result.moved_layers.push_back(l);
      }
    }
  }
  result.solve_seconds = seconds_since();
  return result;
}

}  // namespace exogpu::placement
