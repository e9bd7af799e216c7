// Exact placement under shared memory pools, by branch and bound over byte
// bounds on the stages of the pools' members, around any exact search that
// honours per-unit caps and floors (CostTables::set_bounds).
//
// A node bounds each member u of a pool: its stage holds at most cap(u)
// bytes in memory and, when u is used, at least floor(u). A member with a
// floor is taken to be used, so every other member j of its pool can hold
// no more than usable(P) minus the floors of the rest: the node's caps carry
// that. The root solves with every member allowed its own memory (a
// relaxation: the pools are ignored). When the answer's resident bytes R on
// the used members of a pool P sum past usable(P), it branches on one member
// i with floor(i) < R_i, at some x in [floor(i), R_i - 1]:
//   A: cap(i) = x (so offload off on i): excludes the answer;
//   B: floor(i) = x + 1, the others' caps tightened: the answer is excluded
//      when some other member now has too little room, and x is chosen so
//      whenever it can be (with two members it always can).
// Every plan that fits the pools and respects a node's bounds (its floored
// members used) respects those of A or of B, and A and B share only plans
// that leave i unused. Children are solved best first; one whose parent's
// value is no better than the best plan that fits is pruned. Each branch
// lowers a cap or raises a floor, both within a member's finitely many stage
// sizes, so the search ends, with the lexicographic optimum (value, then the
// objective's tie-breaks) of the plans that fit every pool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "placement/cost_tables.hpp"
#include "placement/deadline.hpp"

namespace exogpu::placement::detail {

struct UnitSpan {
  int unit = 0;
  int begin = 0;  // first layer
  int end = 0;    // one past the last layer
};

// Byte bounds of every unit in one node of the pool search.
struct PoolBounds {
  std::vector<std::uint64_t> cap;
  std::vector<std::uint64_t> floor;

  // Tightens each member's cap to what its pool leaves after the other
  // members' floors; false when the floors alone overfill a pool or a
  // floored member has no room left (the node holds no plan).
  [[nodiscard]] bool propagate(const CostTables& t) {
    for (const SharedPool& pool : t.shared_pools()) {
      std::uint64_t floors = 0;
      for (int u : pool.units) floors += floor[static_cast<std::size_t>(u)];
      if (floors > pool.usable) return false;
      for (int u : pool.units) {
        const auto i = static_cast<std::size_t>(u);
        cap[i] = std::min(cap[i], pool.usable - (floors - floor[i]));
        if (floor[i] > cap[i]) return false;
      }
    }
    return true;
  }
};

// A capacity relaxation: without offload every byte of the model is held
// somewhere, so the units' caps, each pool counted once, must add up to the
// model. False proves the node holds no plan (true proves nothing).
[[nodiscard]] inline bool may_hold_the_model(const CostTables& t, const PoolBounds& b) {
  double room = 0.0;
  for (int u = 0; u < t.units(); ++u) {
    if (t.pool_of(u) >= 0) continue;
    if (t.offloads(u)) return true;
    room += t.capacity(u) * t.count(u);
  }
  for (const SharedPool& pool : t.shared_pools()) {
    double members = 0.0;
    for (int u : pool.units) {
      const auto i = static_cast<std::size_t>(u);
      if (b.cap[i] >= t.own_cap(u) && t.own_offloads(u)) return true;  // offload: no bound here
      members += static_cast<double>(b.cap[i]);
    }
    room += std::min(members, static_cast<double>(pool.usable));
  }
  return room >= static_cast<double>(t.total_memory());
}

struct PoolBranch {
  int unit = -1;
  std::uint64_t at = 0;  // x: A caps the unit at x, B floors it at x + 1
};

// How to branch on `stages` under t's current bounds; unit -1 when every
// pool holds its members' resident bytes.
[[nodiscard]] inline PoolBranch pool_branch(const CostTables& t, const std::vector<UnitSpan>& stages) {
  using u128 = unsigned __int128;
  const auto& pools = t.shared_pools();
  std::vector<std::uint64_t> held(pools.size(), 0);
  for (const UnitSpan& s : stages) {
    const int pool = t.pool_of(s.unit);
    if (pool >= 0) held[static_cast<std::size_t>(pool)] += t.resident(s.unit, s.begin, s.end);
  }
  // The most overfilled pool, relative to its size.
  int worst = -1;
  double worst_ratio = 0.0;
  for (std::size_t i = 0; i < pools.size(); ++i) {
    if (held[i] <= pools[i].usable) continue;
    const double ratio = static_cast<double>(held[i]) / std::max(1.0, static_cast<double>(pools[i].usable));
    if (worst < 0 || ratio > worst_ratio) {
      worst = static_cast<int>(i);
      worst_ratio = ratio;
    }
  }
  if (worst < 0) return {};
  const SharedPool& pool = pools[static_cast<std::size_t>(worst)];
  const auto P = static_cast<std::int64_t>(pool.usable);
  const std::uint64_t total = held[static_cast<std::size_t>(worst)];
  std::int64_t floors = 0;
  for (int u : pool.units) floors += static_cast<std::int64_t>(t.floor(u));
  struct Used {
    int unit;
    std::int64_t resident;
  };
  std::vector<Used> used;
  for (const UnitSpan& s : stages) {
    if (t.pool_of(s.unit) == worst) used.push_back({s.unit, static_cast<std::int64_t>(t.resident(s.unit, s.begin, s.end))});
  }
  // The member with the most bytes above its floor (one exists: were every
  // member at its floor, the caps would not have let the answer overfill).
  PoolBranch best;
  std::int64_t slack = 0;
  for (const Used& m : used) {
    const std::int64_t s = m.resident - static_cast<std::int64_t>(t.floor(m.unit));
    if (s > slack) {
      slack = s;
      best.unit = m.unit;
    }
  }
  if (best.unit < 0) return {};
  const Used& i = *std::find_if(used.begin(), used.end(), [&](const Used& m) { return m.unit == best.unit; });
  const auto floor_i = static_cast<std::int64_t>(t.floor(i.unit));
  // The proportional share of the pool, raised to the least x for which B
  // leaves some other used member j too little room:
  // R_j > P - (x + 1) - (floors of the members other than i and j).
  std::int64_t x = static_cast<std::int64_t>(static_cast<u128>(i.resident) * pool.usable / total);
  std::int64_t exclude = i.resident;  // none found: no x below R_i excludes in B
  for (const Used& j : used) {
    if (j.unit == i.unit) continue;
    const std::int64_t others = floors - floor_i - static_cast<std::int64_t>(t.floor(j.unit));
    exclude = std::min(exclude, P - others - j.resident);
  }
  x = std::max(x, exclude);
  x = std::clamp(x, floor_i, i.resident - 1);
  best.at = static_cast<std::uint64_t>(x);
  return best;
}

// solve(t) -> std::optional<Result>: the exact optimum under t's bounds.
// less(a, b): a is strictly better. stages(r) -> std::vector<UnitSpan>.
// on_fit(r): called with every plan found that fits the pools, better than
// the one before (so that a deadline loses nothing found). `t` is left with
// its own bounds. Throws TimeUp from solve() or the deadline.
template <class Result, class Solve, class Less, class Stages, class OnFit>
[[nodiscard]] std::optional<Result> branch_on_pools(CostTables& t, const Deadline& deadline, Solve&& solve,
                                                    Less&& less, Stages&& stages, OnFit&& on_fit,
                                                    std::uint64_t* nodes_solved = nullptr) {
  struct Node {
    PoolBounds bounds;
    std::optional<Result> bound;  // the parent's optimum: no plan here is better
  };
  struct Restore {
    CostTables& t;
    ~Restore() {
      for (int u = 0; u < t.units(); ++u) t.restore(u);
    }
  } restore{t};
  const int U = t.units();
  Node root;
  for (int u = 0; u < U; ++u) {
    root.bounds.cap.push_back(t.own_cap(u));
    root.bounds.floor.push_back(0);
  }
  std::vector<Node> open;
  if (may_hold_the_model(t, root.bounds)) open.push_back(std::move(root));
  std::optional<Result> best;
  while (!open.empty()) {
    deadline.check();
    // Best first: the open node with the smallest bound (the root has none).
    std::size_t pick = 0;
    for (std::size_t i = 1; i < open.size() && open[pick].bound; ++i) {
      if (!open[i].bound || less(*open[i].bound, *open[pick].bound)) pick = i;
    }
    Node node = std::move(open[pick]);
    open[pick] = std::move(open.back());
    open.pop_back();
    if (best && node.bound && !less(*node.bound, *best)) break;  // nothing open can do better
    for (int u = 0; u < U; ++u) {
      const auto i = static_cast<std::size_t>(u);
      if (t.pool_of(u) >= 0) t.set_bounds(u, node.bounds.cap[i], node.bounds.floor[i]);
    }
    std::optional<Result> r = solve(t);
    if (nodes_solved != nullptr) ++*nodes_solved;
    if (!r || (best && !less(*r, *best))) continue;
    const PoolBranch branch = pool_branch(t, stages(*r));
    if (branch.unit < 0) {
      best = r;
      on_fit(*best);
      continue;
    }
    const auto i = static_cast<std::size_t>(branch.unit);
    Node a{node.bounds, r};
    a.bounds.cap[i] = std::min(a.bounds.cap[i], branch.at);
    if (a.bounds.propagate(t) && may_hold_the_model(t, a.bounds)) open.push_back(std::move(a));
    Node b{std::move(node.bounds), r};
    b.bounds.floor[i] = branch.at + 1;
    if (b.bounds.propagate(t) && may_hold_the_model(t, b.bounds)) open.push_back(std::move(b));
  }
  return best;
}

}  // namespace exogpu::placement::detail
