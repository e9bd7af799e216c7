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
#include "placement/greedy.hpp"
#include "placement/lower_bound.hpp"
#include "placement/pool_search.hpp"
#include "placement/search_engine.hpp"
#include "placement/deadline.hpp"

namespace exogpu::placement {
namespace detail {
namespace {

using Clock = Deadline::Clock;

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

bool outcome_less(const Outcome& a, const Outcome& b, Objective objective) {
  if (a.primary != b.primary) return a.primary < b.primary;
  return key_less(a.best.key, b.best.key, tie_order(objective));
}

// solve_family, exact under shared memory pools too (pool_search.hpp):
// on_fit sees every plan found that fits the pools, better than the last.
// The pool search caps units of `t` while it runs and gives them back.
template <class Make, class OnFit>
std::optional<Outcome> solve_exact(CostTables& t, const Problem& p, Objective objective,
                                   const Deadline& deadline, Make&& make, OnFit&& on_fit) {
  if (t.shared_pools().empty()) {
    auto out = solve_family(t, p, objective, deadline, make);
    if (out) on_fit(*out);
    return out;
  }
  std::uint64_t explored = 0;
  auto out = branch_on_pools<Outcome>(
      t, deadline,
      [&](const CostTables& caps) {
        auto o = solve_family(caps, p, objective, deadline, make);
        if (o) explored += o->explored;
        return o;
      },
      [&](const Outcome& a, const Outcome& b) { return outcome_less(a, b, objective); },
      [](const Outcome& o) {
        std::vector<UnitSpan> spans;
        for (const UnitStage& s : o.best.stages) spans.push_back(UnitSpan{s.unit, s.begin, s.end});
        return spans;
      },
      on_fit);
  if (out) out->explored = explored;
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
  // Shared memory counts once: a pool's members hold at most the pool.
  double capacity = 0.0;
  double largest_device = 0.0;
  std::vector<double> pooled(p.memory_pools.size(), 0.0);
  for (const Device& d : p.devices) {
    const auto c = static_cast<double>(usable_bytes(p, d.memory_bytes));
    if (d.memory_pool >= 0) {
      pooled[static_cast<std::size_t>(d.memory_pool)] += c;
    } else {
      capacity += c;
    }
    largest_device = std::max(largest_device, c);
  }
  for (std::size_t i = 0; i < pooled.size(); ++i) {
    capacity += std::min(pooled[i], static_cast<double>(usable_bytes(p, p.memory_pools[i].capacity_bytes)));
  }
  std::string message = proven ? "no placement fits: " : "no feasible placement found within the time budget: ";
  message += "the model needs " + format_bytes(needed) + " (batch " + std::to_string(p.batch) + ", context " +
             std::to_string(p.context_tokens) + " tokens; largest layer " + format_bytes(largest_layer) +
             "); the " + std::to_string(p.devices.size()) + " device(s) can hold " + format_bytes(capacity) +
             " in all after " + std::to_string(static_cast<int>(p.memory_headroom * 100.0 + 0.5)) +
             "% headroom (largest device " + format_bytes(largest_device) + ")";
  if (p.fixed_order) message += ", with the devices in the given order";
  if (!p.memory_pools.empty()) message += ", devices that share a memory pool counted once";
  if (p.allow_disk_offload) message += "; disk offload keeps every KV cache in memory";
  throw Infeasible(message, needed, capacity);
}

// The best placement offered so far, priced by evaluate(); ties on the
// objective go to fewer stages, then the smaller latency.
class Incumbent {
 public:
  Incumbent(const Problem& p, Objective objective) : p_(p), objective_(objective) {}
  void offer(const std::vector<StageSpec>& stages) {
    if (stages.empty()) return;
    Placement candidate = evaluate(p_, objective_, stages);
    if (!candidate.feasible) return;
    if (!best_ || better(candidate, *best_)) best_ = std::move(candidate);
  }
  void reset() { best_.reset(); }
  [[nodiscard]] bool has() const noexcept { return best_.has_value(); }
  [[nodiscard]] double value() const noexcept { return best_ ? best_->value : kInf; }
  [[nodiscard]] Placement take() { return std::move(*best_); }

 private:
  static bool better(const Placement& a, const Placement& b) {
    if (a.value != b.value) return a.value < b.value;
    if (a.stages.size() != b.stages.size()) return a.stages.size() < b.stages.size();
    return a.latency < b.latency;
  }
  const Problem& p_;
  Objective objective_;
  std::optional<Placement> best_;
};

// Anytime search for problems too large to prove: each device order is solved
// exactly as a fixed-order problem; orders are improved by moving one device
// at a time until the deadline. Every improvement is offered as soon as it is
// found, so a deadline (TimeUp, which this lets through) loses nothing found.
void search_orders(CostTables& t, const Problem& p, Objective objective, const Deadline& deadline,
                   Incumbent& incumbent) {
  const int U = t.units();
  std::vector<std::vector<int>> seeds;
  std::vector<int> identity(static_cast<std::size_t>(U));
  std::iota(identity.begin(), identity.end(), 0);
  seeds.push_back(identity);
  const int L = t.layers();
  auto sorted_by = [&](auto key) {
    std::vector<int> order = identity;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
    seeds.push_back(order);
  };
  sorted_by([&](int u) { return -t.stage_time(u, 0, L); });  // fastest first
  sorted_by([&](int u) { return t.capacity(u); });            // largest first
  double best = kInf;
  std::vector<int> best_order;
  // Value first (cheap for the bottleneck objectives), the placement only
  // when it improves.
  const bool pools = !t.shared_pools().empty();
  auto try_order = [&](const std::vector<int>& order) {
    auto make = [&](int f) { return FixedOrder(order, f); };
    // With pools the value alone is a relaxation's: solve in full.
    auto o = pools ? solve_exact(t, p, objective, deadline, make, [](const Outcome&) {})
                   : solve_family(t, p, objective, deadline, make, true);
    if (!o || !(o->primary < best)) return false;
    if (objective != Objective::latency && !pools) o = solve_family(t, p, objective, deadline, make, false);
    if (!o) return false;
    best = o->primary;
    best_order = order;
    incumbent.offer(to_devices(t, o->best.stages));
    return true;
  };
  for (const auto& order : seeds) (void)try_order(order);
  if (best_order.empty()) return;
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
    stale = try_order(order) ? 0 : stale + 1;
  }
}

// The linear-time search: for the bottleneck objectives, a bisection on the
// cap with a greedy fill per device order (seeds, then one device moved at a
// time); for latency, the fastest devices filled first. Cheap enough for the
// contract's largest problems, where even one exact fixed-order pass is not.
void greedy_search(const CostTables& t, const Problem& p, Objective objective, const Deadline& deadline,
                   Incumbent& incumbent, double low) {
  std::vector<int> given(static_cast<std::size_t>(t.units()));
  std::iota(given.begin(), given.end(), 0);
  if (objective == Objective::latency || p.fixed_order) {
    if (!p.fixed_order) incumbent.offer(greedy_fill(t, speed_order(t)));
    if (objective == Objective::latency) return;
  }
  const int U = t.units();
  std::vector<std::vector<int>> seeds;
  if (p.fixed_order) {
    seeds.push_back(given);
  } else {
    seeds = {capacity_order(t), speed_order(t), given};
  }
  std::vector<int> best_order;
  double best = kInf;
  auto try_order = [&](const std::vector<int>& order) {
    if (!incumbent.has()) return false;
    auto stages = greedy_bottleneck(t, p, objective, order, low, incumbent.value(), deadline);
    if (stages.empty()) return false;
    const double before = incumbent.value();
    incumbent.offer(stages);
    if (incumbent.value() < before || best_order.empty()) {
      best = incumbent.value();
      best_order = order;
      return true;
    }
    return false;
  };
  for (const auto& order : seeds) (void)try_order(order);
  if (best_order.empty() || p.fixed_order || U < 2) return;
  (void)best;
  std::mt19937 rng(777);
  int stale = 0;
  while (!deadline.passed() && stale < 20 * U * U) {
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
    stale = try_order(order) ? 0 : stale + 1;
  }
}

// The best lower bound affordable before the deadline: the relaxation when
// it finishes, else the trivial bound (kInf: shown infeasible).
double bound_within(const CostTables& t, Objective objective, const Deadline& deadline) {
  const double trivial = trivial_lower_bound(t, objective);
  try {
    return std::max(trivial, relaxed_lower_bound(t, objective, deadline));
  } catch (const TimeUp&) {
    return trivial;
  }
}

Deadline::Clock::time_point fraction_of(Deadline::Clock::time_point started, Deadline::Clock::duration budget,
                                        double fraction) {
  return started + std::chrono::duration_cast<Deadline::Clock::duration>(budget * fraction);
}

}  // namespace
}  // namespace detail

// Where the budget goes. The linear work (validation, cost tables, a greedy
// placement, the trivial bound, pricing the answer) always runs; it is the
// documented slack. Of the budget, the exact search may take 85%; when it
// cannot prove, the anytime search runs to 70% (from the start) and the
// bounds to 95%, so the answer is priced before the deadline.
Placement solve(const Problem& problem, const Options& options) {
  using namespace detail;
  const auto started = Clock::now();
  validate(problem, options);
  const auto seconds_since = [&] {
    return std::chrono::duration<double>(Clock::now() - started).count();
  };
  const auto budget = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::min(options.time_budget_seconds, 1.0e6)));
  const Deadline deadline(started + budget, &options.interrupt);
  CostTables singles(problem, device_groups(problem, false), options.previous);

  Placement result;
  if (options.strategy != Strategy::optimal) {
    const auto stages = options.strategy == Strategy::exo_memory_weighted ? exo_memory_weighted(problem)
                                                                           : free_memory_proportional(problem);
    result = evaluate(problem, options.objective, stages);
    result.optimal = false;
    const double bound = bound_within(singles, options.objective, deadline);
    result.lower_bound = bound == kInf ? 0.0 : std::min(bound, result.value);
  } else {
    Incumbent incumbent(problem, options.objective);
    std::vector<int> given(problem.devices.size());
    std::iota(given.begin(), given.end(), 0);
    incumbent.offer(greedy_fill(singles, problem.fixed_order ? given : capacity_order(singles)));
    const double trivial = trivial_lower_bound(singles, options.objective);
    // One exact fixed-order pass costs about units^2 * layers steps; past
    // this many the order search cannot finish a pass in a useful time.
    const bool exact_orders_affordable =
        static_cast<double>(singles.units()) * singles.units() * singles.layers() <= 2.0e7;
    const auto run_greedy = [&](double until) {
      try {
        greedy_search(singles, problem, options.objective, deadline.sooner(fraction_of(started, budget, until)),
                      incumbent, trivial);
      } catch (const TimeUp&) {
      }
    };

    std::optional<Outcome> exact;
    bool proven = false;
    std::uint64_t explored = 0;
    if (problem.fixed_order) {
      try {
        exact = solve_exact(singles, problem, options.objective, deadline.sooner(fraction_of(started, budget, 0.85)),
                            [&](int f) { return FixedOrder(given, f); },
                            [&](const Outcome& o) { incumbent.offer(to_devices(singles, o.best.stages)); });
        proven = true;
        if (exact) {
          incumbent.reset();  // the exact answer, with the contract's tie-breaks
          incumbent.offer(to_devices(singles, exact->best.stages));
        }
      } catch (const TimeUp&) {
        run_greedy(0.9);
      }
    } else {
      auto groups = device_groups(problem, options.previous.empty());
      std::uint64_t nodes = 1;
      for (const auto& g : groups) {
        nodes *= static_cast<std::uint64_t>(g.size() + 1);
        if (nodes > (std::uint64_t{1} << 40)) break;
      }
      const std::uint64_t cells = nodes * groups.size() * (problem.layers.size() + 1);
      if (nodes < (std::uint64_t{1} << 40) && cells <= kMaxExactCells) {
        try {
          CostTables grouped(problem, std::move(groups), options.previous);
          exact = solve_exact(grouped, problem, options.objective,
                              deadline.sooner(fraction_of(started, budget, 0.85)),
                              [&](int f) { return FreeOrder(grouped, f); },
                              [&](const Outcome& o) { incumbent.offer(to_devices(grouped, o.best.stages)); });
          proven = true;
          if (exact) {
            // The exact answer, ties broken as the contract says: it replaces
            // the greedy one even at equal value.
            incumbent.reset();
            incumbent.offer(to_devices(grouped, exact->best.stages));
          }
        } catch (const TimeUp&) {
        }
      }
      if (!proven) {
        run_greedy(exact_orders_affordable ? 0.3 : 0.7);
      }
      if (!proven && exact_orders_affordable) {
        try {
          search_orders(singles, problem, options.objective, deadline.sooner(fraction_of(started, budget, 0.7)),
                        incumbent);
        } catch (const TimeUp&) {
        }
      }
    }
    if (exact) explored = exact->explored;
    if (proven && !exact) throw_infeasible(problem, true);
    double bound = proven ? 0.0 : bound_within(singles, options.objective,
                                               deadline.sooner(fraction_of(started, budget, 0.95)));
    if (!incumbent.has()) throw_infeasible(problem, bound == kInf);
    result = incumbent.take();
    if (!proven) bound = counting_lower_bound(singles, options.objective, bound, result.value, deadline);
    result.states_explored = explored;
    if (proven || result.value <= bound) {
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
