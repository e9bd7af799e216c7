// The exact dynamic program behind every objective.
//
// State: (node, last unit e, next layer k). A node is either the multiset of
// units used so far (free order: a mixed-radix counter, so twins collapse
// into counts) or the position of the last device used (fixed order). The
// value is the best partial placement of layers 0..k-1 ending on e.
//
// Two passes per objective:
//  * min_max: the smallest possible largest stage cost (stage time or hop for
//    throughput, M / memory for memory). A stage's cost grows as its start
//    moves left, so the scan over starts stops as soon as the stage alone is
//    worse than the best found.
//  * min_sum: among placements whose stage and hop costs stay under caps
//    (the optimum of min_max), the best by a lexicographic additive key
//    (moved layers, stages, latency in the order the objective asks). The
//    window of feasible starts slides monotonically, so a monotone deque
//    gives each state in O(1). With disk offload the window splits in two
//    at the first start that fits: starts before it pay disk time linear in
//    their stage's bytes, so each part is still a sliding window minimum.
// Endpoints add an entry hop where a path starts and an exit hop where it
// ends (CostTables::entry_hop / exit_hop).
// Placements are rebuilt by re-running the same arithmetic backwards, so
// equality tests on doubles are exact.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "placement/cost_tables.hpp"
#include "placement/deadline.hpp"

namespace exogpu::placement::detail {

// Free order: a node counts how many members of each unit group are used.
class FreeOrder {
 public:
  FreeOrder(const CostTables& t, int first) : units_(t.units()), first_(first) {
    stride_.resize(static_cast<std::size_t>(units_) + 1);
    stride_[0] = 1;
    for (int u = 0; u < units_; ++u) {
      const std::uint64_t next = stride_[u] * static_cast<std::uint64_t>(t.count(u) + 1);
      stride_[u + 1] = next > (std::uint64_t{1} << 40) ? (std::uint64_t{1} << 40) : next;
      radix_.push_back(t.count(u) + 1);
    }
  }
  [[nodiscard]] std::uint64_t nodes() const noexcept { return stride_[units_]; }
  // Table rows: one per (node, last unit).
  [[nodiscard]] std::size_t slots() const noexcept { return static_cast<std::size_t>(nodes()) * units_; }
  [[nodiscard]] std::size_t slot(std::uint64_t n, int e) const noexcept {
    return static_cast<std::size_t>(n) * units_ + static_cast<std::size_t>(e);
  }
  [[nodiscard]] int first() const noexcept { return first_; }
  [[nodiscard]] int used(std::uint64_t n, int u) const noexcept {
    return static_cast<int>((n / stride_[u]) % static_cast<std::uint64_t>(radix_[u]));
  }
  template <class F>
  void for_each_last(std::uint64_t n, F&& f) const {
    for (int e = 0; e < units_; ++e) {
      if (used(n, e) > 0) f(e);
    }
  }
  [[nodiscard]] bool start_allowed(std::uint64_t n, int e) const noexcept {
    return n == stride_[e] && (first_ < 0 || e == first_);
  }
  template <class F>
  void for_each_pred(std::uint64_t n, int e, F&& f) const {
    const std::uint64_t p = n - stride_[e];
    if (p == 0) return;
    for (int d = 0; d < units_; ++d) {
      if (used(p, d) > 0) f(p, d);
    }
  }

 private:
  int units_;
  int first_;
  std::vector<std::uint64_t> stride_;
  std::vector<int> radix_;
};

// Fixed order: node q (1..D) means "the last device used is order[q-1]";
// devices are used as a subsequence of the order.
class FixedOrder {
 public:
  FixedOrder(std::vector<int> order, int first) : order_(std::move(order)), first_(first) {}
  [[nodiscard]] std::uint64_t nodes() const noexcept { return order_.size() + 1; }
  // A node's last unit is fixed by the order: one table row per node.
  [[nodiscard]] std::size_t slots() const noexcept { return order_.size() + 1; }
  [[nodiscard]] std::size_t slot(std::uint64_t n, int) const noexcept { return static_cast<std::size_t>(n); }
  [[nodiscard]] int first() const noexcept { return first_; }
  template <class F>
  void for_each_last(std::uint64_t n, F&& f) const {
    f(order_[n - 1]);
  }
  [[nodiscard]] bool start_allowed(std::uint64_t, int e) const noexcept {
    return first_ < 0 || e == first_;
  }
  template <class F>
  void for_each_pred(std::uint64_t n, int, F&& f) const {
    for (std::uint64_t q = 1; q < n; ++q) f(q, order_[q - 1]);
  }

 private:
  std::vector<int> order_;
  int first_;
};

struct SumKey {
  double latency = kInf;
  int moved = 0;
  int stages = 0;
  [[nodiscard]] bool reachable() const noexcept { return latency < kInf; }
  [[nodiscard]] bool operator==(const SumKey&) const = default;
};

enum class SumOrder { latency_moved_stages, moved_stages_latency, moved_latency_stages };

[[nodiscard]] inline bool key_less(const SumKey& a, const SumKey& b, SumOrder order) noexcept {
  if (!b.reachable()) return a.reachable();
  if (!a.reachable()) return false;
  switch (order) {
    case SumOrder::latency_moved_stages:
      if (a.latency != b.latency) return a.latency < b.latency;
      if (a.moved != b.moved) return a.moved < b.moved;
      return a.stages < b.stages;
    case SumOrder::moved_stages_latency:
      if (a.moved != b.moved) return a.moved < b.moved;
      if (a.stages != b.stages) return a.stages < b.stages;
      return a.latency < b.latency;
    case SumOrder::moved_latency_stages:
      if (a.moved != b.moved) return a.moved < b.moved;
      if (a.latency != b.latency) return a.latency < b.latency;
      return a.stages < b.stages;
  }
  return false;
}

struct Caps {
  double cost = kInf;          // stage times, hops and the ring hop (throughput)
  double memory_ratio = kInf;  // M / memory_bytes of every stage (memory)
};

struct UnitStage {
  int unit = 0;
  int begin = 0;  // first layer
  int end = 0;    // one past the last layer
};

struct SumResult {
  SumKey key;  // ring hop included
  std::vector<UnitStage> stages;
};

template <class Topo>
class Search {
 public:
  Search(const CostTables& t, const Topo& topo, const Deadline& deadline)
      : t_(t), topo_(topo), deadline_(deadline), L_(t.layers()), U_(t.units()) {}

  [[nodiscard]] std::uint64_t explored() const noexcept { return explored_; }

  // Smallest achievable largest cost; kInf when nothing fits. For throughput
  // with a ring, paths start at topo.first() and the ring hop counts (also
  // for one-stage paths: the caller prices those separately).
  [[nodiscard]] double min_max(bool memory_mode) {
    const bool ring = !memory_mode && topo_.first() >= 0;
    deadline_.poll();  // before allocating the table
    f_.assign(cells(), kInf);
    std::vector<double> g(static_cast<std::size_t>(L_) + 1);
    double best = kInf;
    for (std::uint64_t n = 1; n < topo_.nodes(); ++n) {
      deadline_.check();
      topo_.for_each_last(n, [&](int e) {
        std::fill(g.begin(), g.end(), kInf);
        if (topo_.start_allowed(n, e)) g[0] = memory_mode ? 0.0 : t_.entry_hop(e);
        topo_.for_each_pred(n, e, [&](std::uint64_t p, int d) {
          deadline_.check(static_cast<std::uint64_t>(L_));
          const double* fp = &f_[at(p, d, 0)];
          for (int j = 1; j < L_; ++j) {
            if (fp[j] == kInf) continue;
            const double h = memory_mode ? 0.0 : t_.hop(d, e, j);
            const double v = fp[j] > h ? fp[j] : h;
            if (v < g[j]) g[j] = v;
          }
        });
        double* fe = &f_[at(n, e, 0)];
        for (int k = 1; k <= L_; ++k) {
          double b = kInf;
          const int lo = t_.lowest_fitting_start(e, k);
          deadline_.check(static_cast<std::uint64_t>(k - lo) + 1);  // the scan's length, at most
          for (int j = t_.highest_start(e, k); j >= lo; --j) {
            const double s = memory_mode ? t_.memory_ratio(e, j, k) : t_.stage_time(e, j, k);
            if (s >= b) break;  // starts further left only cost more
            if (g[j] == kInf) continue;
            const double v = g[j] > s ? g[j] : s;
            if (v < b) b = v;
          }
          fe[k] = b;
        }
        explored_ += static_cast<std::uint64_t>(L_);
        double v = fe[L_];
        if (!memory_mode && v < kInf && t_.exit_hop(e) > v) v = t_.exit_hop(e);
        if (ring && v < kInf) {
          const double r = t_.ring_latency(e, topo_.first());
          v = v > r ? v : r;
        }
        if (v < best) best = v;
      });
    }
    return best;
  }

  [[nodiscard]] std::optional<SumResult> min_sum(SumOrder order, Caps caps) {
    order_ = order;
    caps_ = caps;
    deadline_.poll();
    build_windows();
    keys_.assign(cells(), SumKey{});
    std::vector<SumKey> g(static_cast<std::size_t>(L_) + 1);
    std::deque<int> window;
    std::deque<int> offload_window;
    SumKey best;
    std::uint64_t best_n = 0;
    int best_e = -1;
    const bool ring = topo_.first() >= 0;
    for (std::uint64_t n = 1; n < topo_.nodes(); ++n) {
      deadline_.check();
      topo_.for_each_last(n, [&](int e) {
        arrivals(n, e, g);
        SumKey* fe = &keys_[at(n, e, 0)];
        window.clear();
        offload_window.clear();
        const bool offloads = t_.offloads(e);
        int next_fit = 0;
        int next_offload = 0;
        for (int k = 1; k <= L_; ++k) {
          deadline_.check();  // O(1) amortised per k
          // Starts up to highest_start (k - 1 without a floor) join in order.
          const int hi = t_.highest_start(e, k);
          for (; next_fit <= hi; ++next_fit) {
            if (!g[next_fit].reachable()) continue;
            const SumKey a = start_key(e, next_fit, g[next_fit]);
            while (!window.empty() && !key_less(start_key(e, window.back(), g[window.back()]), a, order_)) {
              window.pop_back();
            }
            window.push_back(next_fit);
          }
          const int lo = lo_[static_cast<std::size_t>(e) * (L_ + 1) + k];
          const int fits = fit_from(e, k);
          while (!window.empty() && window.front() < fits) window.pop_front();
          fe[k] = window.empty() ? SumKey{} : end_key(e, k, start_key(e, window.front(), g[window.front()]));
          if (!offloads) continue;
          // Starts in [lo, fits) offload; they join in order as `fits` moves.
          for (; next_offload < fits && next_offload <= hi; ++next_offload) {
            if (!g[next_offload].reachable()) continue;
            const SumKey a = offload_start_key(e, next_offload, g[next_offload]);
            while (!offload_window.empty() &&
                   !key_less(offload_start_key(e, offload_window.back(), g[offload_window.back()]), a, order_)) {
              offload_window.pop_back();
            }
            offload_window.push_back(next_offload);
          }
          while (!offload_window.empty() && offload_window.front() < lo) offload_window.pop_front();
          if (offload_window.empty()) continue;
          const int c = offload_window.front();
          const SumKey o = offload_end_key(e, k, offload_start_key(e, c, g[c]));
          if (key_less(o, fe[k], order_)) fe[k] = o;
        }
        explored_ += static_cast<std::uint64_t>(L_);
        SumKey v = fe[L_];
        if (!v.reachable()) return;
        if (t_.exit_hop(e) > caps_.cost) return;
        v.latency += t_.exit_hop(e);
        if (ring && v.stages >= 2) {
          const double r = t_.ring_latency(e, topo_.first());
          if (r > caps_.cost) return;
          v.latency += r;
        }
        if (key_less(v, best, order_)) {
          best = v;
          best_n = n;
          best_e = e;
        }
      });
    }
    if (best_e < 0) return std::nullopt;
    return SumResult{best, rebuild(best_n, best_e)};
  }

 private:
  [[nodiscard]] std::size_t cells() const { return topo_.slots() * (L_ + 1); }
  [[nodiscard]] std::size_t at(std::uint64_t n, int e, int k) const noexcept {
    return topo_.slot(n, e) * (L_ + 1) + k;
  }

  // Starts j allowed for a stage on e ending at k: j >= lo_[e][k], a bound
  // that only grows with k (memory, stage-time and memory-ratio caps).
  // A stage's time is a difference of prefix sums, which rounds: two stages
  // equally slow in truth can differ in their last bits, and the optimum's
  // bottleneck is one of them. The time cap admits a few ulps of the prefix
  // sums more, so that ties are seen as ties (the contract's tie-breaks).
  void build_windows() {
    lo_.assign(static_cast<std::size_t>(U_) * (L_ + 1), 0);
    for (int e = 0; e < U_; ++e) {
      int j = 0;
      deadline_.check(2 * static_cast<std::uint64_t>(L_));
      const double cap = caps_.cost + 8.0 * std::numeric_limits<double>::epsilon() *
                                          (t_.prefix_time(e, L_) + t_.overhead(e) + caps_.cost);
      for (int k = 1; k <= L_; ++k) {
        j = j > t_.lowest_fitting_start(e, k) ? j : t_.lowest_fitting_start(e, k);
        while (j < k && (t_.stage_time(e, j, k) > cap ||
                         t_.memory_ratio(e, j, k) > caps_.memory_ratio)) {
          ++j;
        }
        lo_[static_cast<std::size_t>(e) * (L_ + 1) + k] = j;
      }
    }
  }

  // The first start whose stage on e ending at k fits without offload (and
  // is within the caps): starts before it, down to lo_, offload.
  [[nodiscard]] int fit_from(int e, int k) const noexcept {
    const int lo = lo_[static_cast<std::size_t>(e) * (L_ + 1) + k];
    if (!t_.offloads(e)) return lo;
    const int fit = t_.fit_start(e, k);
    return fit > lo ? fit : lo;
  }

  // g[j]: best key arriving on unit e to start at layer j.
  void arrivals(std::uint64_t n, int e, std::vector<SumKey>& g) const {
    std::fill(g.begin(), g.end(), SumKey{});
    if (topo_.start_allowed(n, e) && t_.entry_hop(e) <= caps_.cost) g[0] = SumKey{t_.entry_hop(e), 0, 0};
    topo_.for_each_pred(n, e, [&](std::uint64_t p, int d) {
      deadline_.check(static_cast<std::uint64_t>(L_));
      const SumKey* fp = &keys_[at(p, d, 0)];
      for (int j = 1; j < L_; ++j) {
        if (!fp[j].reachable()) continue;
        const double h = t_.hop(d, e, j);
        if (h > caps_.cost) continue;
        const SumKey c{fp[j].latency + h, fp[j].moved, fp[j].stages};
        if (key_less(c, g[j], order_)) g[j] = c;
      }
    });
  }

  // The key of a stage on e from j split as start part + end part, so that
  // the window minimum over starts is one deque lookup.
  [[nodiscard]] SumKey start_key(int e, int j, const SumKey& g) const noexcept {
    return SumKey{g.latency - t_.prefix_time(e, j), g.moved - t_.prefix_not_previous(e, j), g.stages + 1};
  }
  [[nodiscard]] SumKey end_key(int e, int k, const SumKey& a) const noexcept {
    return SumKey{a.latency + t_.prefix_time(e, k) + t_.overhead(e), a.moved + t_.prefix_not_previous(e, k),
                  a.stages};
  }
  // The same for a stage that offloads: its disk time
  // (S(k) - S(j) - cap) * seconds per byte splits as -S(j) at the start and
  // S(k) - cap at the end.
  [[nodiscard]] SumKey offload_start_key(int e, int j, const SumKey& g) const noexcept {
    SumKey a = start_key(e, j, g);
    a.latency -= static_cast<double>(t_.prefix_memory(j)) * t_.disk_seconds_per_byte(e);
    return a;
  }
  [[nodiscard]] SumKey offload_end_key(int e, int k, const SumKey& a) const noexcept {
    SumKey out = end_key(e, k, a);
    out.latency += (static_cast<double>(t_.prefix_memory(k)) - static_cast<double>(t_.cap(e))) *
                   t_.disk_seconds_per_byte(e);
    return out;
  }
  [[nodiscard]] SumKey stage_key(int e, int j, int k, const SumKey& g) const noexcept {
    return j >= fit_from(e, k) ? end_key(e, k, start_key(e, j, g))
                               : offload_end_key(e, k, offload_start_key(e, j, g));
  }

  [[nodiscard]] std::vector<UnitStage> rebuild(std::uint64_t n, int e) const {
    std::vector<UnitStage> out;
    std::vector<SumKey> g(static_cast<std::size_t>(L_) + 1);
    int k = L_;
    while (true) {
      deadline_.check(static_cast<std::uint64_t>(L_));
      const SumKey target = keys_[at(n, e, k)];
      arrivals(n, e, g);
      const int lo = lo_[static_cast<std::size_t>(e) * (L_ + 1) + k];
      int j = -1;
      for (int c = t_.highest_start(e, k); c >= lo; --c) {
        if (g[c].reachable() && stage_key(e, c, k, g[c]) == target) {
          j = c;
          break;
        }
      }
      if (j < 0) throw std::logic_error("placement search: could not rebuild a stage");
      out.push_back(UnitStage{e, j, k});
      if (j == 0) break;
      bool found = false;
      topo_.for_each_pred(n, e, [&](std::uint64_t p, int d) {
        if (found) return;
        const SumKey& v = keys_[at(p, d, j)];
        if (!v.reachable()) return;
        const double h = t_.hop(d, e, j);
        if (h > caps_.cost) return;
        if (SumKey{v.latency + h, v.moved, v.stages} == g[j]) {
          n = p;
          e = d;
          found = true;
        }
      });
      if (!found) throw std::logic_error("placement search: could not rebuild a hop");
      k = j;
    }
    return {out.rbegin(), out.rend()};
  }

  const CostTables& t_;
  const Topo& topo_;
  const Deadline& deadline_;
  int L_;
  int U_;
  SumOrder order_ = SumOrder::latency_moved_stages;
  Caps caps_;
  std::vector<double> f_;
  std::vector<SumKey> keys_;
  std::vector<int> lo_;
  std::uint64_t explored_ = 0;
};

}  // namespace exogpu::placement::detail
