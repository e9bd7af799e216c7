#include "placement/cost_tables.hpp"

#include <cmath>
#include <set>
#include <string>

namespace exogpu::placement::detail {
namespace {

// Sums of bytes stay below 2^53 so that every byte count is exact as a double
// (and compares the same way as Python's int/float comparison).
constexpr std::uint64_t kMaxExactBytes = std::uint64_t{1} << 53;

bool positive_finite(double x) { return std::isfinite(x) && x > 0.0; }
bool nonnegative_finite(double x) { return std::isfinite(x) && x >= 0.0; }

// `what` builds the field's name only when the check fails: validate() runs
// on every solve and evaluate, over up to 100000 layers.
template <class What>
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, What&& what) {
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out) || out >= kMaxExactBytes) {
    throw InvalidArgument(what() + " exceeds 2^53 bytes");
  }
  return out;
}

bool same_link(const Link& x, const Link& y) {
  return x.bandwidth == y.bandwidth && x.latency == y.latency;
}

}  // namespace

void validate(const Problem& p, const Options& options) {
  const std::size_t L = p.layers.size();
  const std::size_t D = p.devices.size();
  if (L == 0) throw InvalidArgument("layers: at least one layer is required");
  if (D == 0) throw InvalidArgument("devices: at least one device is required");
  if (L > 100000) throw InvalidArgument("layers: at most 100000 layers are supported");
  if (D > 64) throw InvalidArgument("devices: at most 64 devices are supported");
  if (p.links.size() != D * D) {
    throw InvalidArgument("links: expected a " + std::to_string(D) + "x" + std::to_string(D) +
                          " matrix, got " + std::to_string(p.links.size()) + " entries");
  }
  if (p.batch == 0) throw InvalidArgument("workload.batch must be at least 1");
  if (!(p.memory_headroom >= 0.0 && p.memory_headroom < 1.0)) {
    throw InvalidArgument("constraints.memory_headroom must be in [0, 1)");
  }
  if (!positive_finite(options.time_budget_seconds)) {
    throw InvalidArgument("time_budget must be a positive, finite number of seconds");
  }
  for (std::size_t i = 0; i < p.memory_pools.size(); ++i) {
    const std::uint64_t c = p.memory_pools[i].capacity_bytes;
    if (c == 0 || c >= kMaxExactBytes) {
      throw InvalidArgument("memory_pools." + p.memory_pools[i].name + " must be positive and below 2^53");
    }
  }
  if (p.endpoints.size() > 1) throw InvalidArgument("endpoints: at most one set of endpoints");
  if (!p.endpoints.empty()) {
    const Endpoints& e = p.endpoints.front();
    if (p.ring) throw InvalidArgument("endpoints and constraints.ring cannot be used together");
    if (e.links.size() != D) {
      throw InvalidArgument("endpoints.links: expected one resolved link per device (" + std::to_string(D) +
                            "), got " + std::to_string(e.links.size()));
    }
    (void)checked_mul(p.batch, e.input_bytes, [] { return std::string("workload.batch * endpoints.input_bytes"); });
    (void)checked_mul(p.batch, e.output_bytes, [] { return std::string("workload.batch * endpoints.output_bytes"); });
    for (std::size_t d = 0; d < D; ++d) {
      if (!positive_finite(e.links[d].bandwidth) || !nonnegative_finite(e.links[d].latency)) {
        throw InvalidArgument("endpoints: the link to " + p.devices[d].id +
                              " needs a positive, finite bandwidth and a non-negative, finite latency");
      }
    }
  }
  std::set<std::string> ids;
  for (std::size_t d = 0; d < D; ++d) {
    const Device& dev = p.devices[d];
    const std::string at = "devices[" + std::to_string(d) + "]";
    if (!ids.insert(dev.id).second) throw InvalidArgument(at + ".id '" + dev.id + "' is not unique");
    if (dev.memory_bytes == 0) throw InvalidArgument(at + ".memory_bytes must be positive");
    if (dev.memory_bytes >= kMaxExactBytes) throw InvalidArgument(at + ".memory_bytes must be below 2^53");
    if (!positive_finite(dev.flops)) throw InvalidArgument(at + ".flops must be positive and finite");
    if (!positive_finite(dev.memory_bandwidth)) {
      throw InvalidArgument(at + ".memory_bandwidth must be positive and finite");
    }
    if (dev.memory_pool < -1 || dev.memory_pool >= static_cast<int>(p.memory_pools.size())) {
      throw InvalidArgument(at + ".memory_pool: no such pool");
    }
    if (!nonnegative_finite(dev.stage_overhead)) {
      throw InvalidArgument(at + ".stage_overhead must be non-negative and finite");
    }
    if (!nonnegative_finite(dev.disk_read_bandwidth)) {
      throw InvalidArgument(at + ".disk_read_bandwidth must be positive and finite (0: none)");
    }
    for (std::size_t e = 0; e < D; ++e) {
      if (e == d) continue;
      const Link& link = p.links[d * D + e];
      const auto lat = [&] { return "link " + dev.id + " <-> " + p.devices[e].id; };
      if (!positive_finite(link.bandwidth)) throw InvalidArgument(lat() + ": bandwidth must be positive and finite");
      if (!nonnegative_finite(link.latency)) throw InvalidArgument(lat() + ": latency must be non-negative and finite");
      if (!same_link(link, p.links[e * D + d])) throw InvalidArgument(lat() + ": the matrix is not symmetric");
    }
  }
  std::uint64_t total = 0;
  const std::uint64_t tokens =
      checked_mul(p.batch, p.context_tokens, [] { return std::string("workload.batch * context_tokens"); });
  for (std::size_t l = 0; l < L; ++l) {
    const Layer& layer = p.layers[l];
    const auto at = [l] { return "layers[" + std::to_string(l) + "]"; };
    if (!nonnegative_finite(layer.flops_per_token)) {
      throw InvalidArgument(at() + ".flops_per_token must be non-negative and finite");
    }
    const std::uint64_t kv = checked_mul(tokens, layer.kv_bytes_per_token, [&] { return at() + " KV cache"; });
    (void)checked_mul(p.batch, layer.activation_bytes, [&] { return at() + " activations"; });
    if (layer.weight_bytes >= kMaxExactBytes) throw InvalidArgument(at() + ".weight_bytes exceeds 2^53");
    if (layer.read_bytes_per_token != kReadAllWeights &&
        layer.read_bytes_per_token + kv >= kMaxExactBytes) {  // each term < 2^53: no wrap
      throw InvalidArgument(at() + ".read_bytes_per_token (with the KV cache) exceeds 2^53");
    }
    total += layer.weight_bytes + kv;  // each term < 2^53 and total < 2^53: no wrap
    if (total >= kMaxExactBytes) throw InvalidArgument("the model's resident bytes exceed 2^53");
  }
  if (!options.previous.empty()) {
    if (options.previous.size() != L) {
      throw InvalidArgument("previous: expected one device per layer (" + std::to_string(L) +
                            "), got " + std::to_string(options.previous.size()));
    }
    for (int d : options.previous) {
      if (d < -1 || d >= static_cast<int>(D)) throw InvalidArgument("previous: device index out of range");
    }
  }
}

std::uint64_t resident_bytes(const Problem& p, int layer) {
  const Layer& l = p.layers[static_cast<std::size_t>(layer)];
  return l.weight_bytes + p.batch * p.context_tokens * l.kv_bytes_per_token;
}

std::uint64_t kv_bytes(const Problem& p, int layer) {
  return p.batch * p.context_tokens * p.layers[static_cast<std::size_t>(layer)].kv_bytes_per_token;
}

std::uint64_t usable_bytes(const Problem& p, std::uint64_t bytes) {
  return static_cast<std::uint64_t>(std::floor((1.0 - p.memory_headroom) * static_cast<double>(bytes)));
}

double entry_hop_time(const Problem& p, int device) {
  if (p.endpoints.empty()) return 0.0;
  const Endpoints& e = p.endpoints.front();
  const Link& link = e.links[static_cast<std::size_t>(device)];
  return link.latency + static_cast<double>(p.batch * e.input_bytes) / link.bandwidth;
}

double exit_hop_time(const Problem& p, int device) {
  if (p.endpoints.empty()) return 0.0;
  const Endpoints& e = p.endpoints.front();
  const Link& link = e.links[static_cast<std::size_t>(device)];
  return link.latency + static_cast<double>(p.batch * e.output_bytes) / link.bandwidth;
}

std::uint64_t read_bytes(const Problem& p, int layer) {
  const Layer& l = p.layers[static_cast<std::size_t>(layer)];
  const std::uint64_t weights = l.read_bytes_per_token == kReadAllWeights ? l.weight_bytes : l.read_bytes_per_token;
  return weights + p.batch * p.context_tokens * l.kv_bytes_per_token;
}

double layer_time(const Problem& p, int layer, int device) {
  const Layer& l = p.layers[static_cast<std::size_t>(layer)];
  const Device& d = p.devices[static_cast<std::size_t>(device)];
  const double compute = static_cast<double>(p.batch) * l.flops_per_token / d.flops;
  const double memory = static_cast<double>(read_bytes(p, layer)) / d.memory_bandwidth;
  return compute > memory ? compute : memory;
}

double hop_time(const Problem& p, int a, int b, int after) {
  const Link& link = p.links[static_cast<std::size_t>(a) * p.devices.size() + static_cast<std::size_t>(b)];
  const auto bytes = static_cast<double>(p.batch * p.layers[static_cast<std::size_t>(after)].activation_bytes);
  return link.latency + bytes / link.bandwidth;
}

std::vector<std::vector<int>> device_groups(const Problem& p, bool collapse) {
  const int D = static_cast<int>(p.devices.size());
  auto link = [&](int a, int b) -> const Link& { return p.links[static_cast<std::size_t>(a) * D + b]; };
  std::vector<std::vector<int>> groups;
  for (int d = 0; d < D; ++d) {
    bool placed = false;
    for (auto& group : groups) {
      if (!collapse) break;
      const int r = group.front();
      const Device& x = p.devices[static_cast<std::size_t>(r)];
      const Device& y = p.devices[static_cast<std::size_t>(d)];
      // A pooled device shares its memory: the pool search caps each member
      // on its own, so members never collapse.
      if (x.node != y.node || x.memory_bytes != y.memory_bytes || x.flops != y.flops ||
          x.memory_bandwidth != y.memory_bandwidth || x.memory_pool >= 0 || y.memory_pool >= 0 ||
          x.stage_overhead != y.stage_overhead || x.disk_read_bandwidth != y.disk_read_bandwidth) {
        continue;
      }
      if (!p.endpoints.empty() && !same_link(p.endpoints.front().links[static_cast<std::size_t>(r)],
                                             p.endpoints.front().links[static_cast<std::size_t>(d)])) {
        continue;
      }
      // Interchangeable only if every link looks the same from both, and the
      // link between twins is one and the same for every pair in the group.
      bool same = true;
      for (int o = 0; o < D && same; ++o) {
        if (o == r || o == d) continue;
        same = same_link(link(r, o), link(d, o));
      }
      if (same && group.size() >= 2) same = same_link(link(group[0], group[1]), link(r, d));
      if (!same) continue;
      group.push_back(d);
      placed = true;
      break;
    }
    if (!placed) groups.push_back({d});
  }
  return groups;
}

CostTables::CostTables(const Problem& p, std::vector<std::vector<int>> groups,
                       const std::vector<int>& previous)
    : layers_(static_cast<int>(p.layers.size())), groups_(std::move(groups)) {
  const int L = layers_;
  const int U = units();
  prefix_memory_.assign(static_cast<std::size_t>(L) + 1, 0);
  prefix_kv_.assign(static_cast<std::size_t>(L) + 1, 0);
  for (int l = 0; l < L; ++l) {
    prefix_memory_[l + 1] = prefix_memory_[l] + resident_bytes(p, l);
    prefix_kv_[l + 1] = prefix_kv_[l] + kv_bytes(p, l);
  }

  const std::size_t cells = static_cast<std::size_t>(U) * (L + 1);
  prefix_time_.assign(cells, 0.0);
  lo_memory_.assign(cells, 0);
  fit_memory_.assign(cells, 0);
  hi_memory_.assign(cells, 0);
  floor_.assign(U, 0);
  not_previous_.assign(cells, 0);
  memory_.resize(U);
  cap_.resize(U);
  offload_.resize(U);
  overhead_.resize(U);
  disk_seconds_per_byte_.assign(U, 0.0);
  entry_.resize(U);
  exit_.resize(U);
  pool_of_.assign(U, -1);
  // Pools of two or more members need the pool search; a lone member's pool
  // only lowers its cap.
  std::vector<int> pool_members(p.memory_pools.size(), 0);
  for (const Device& d : p.devices) {
    if (d.memory_pool >= 0) ++pool_members[static_cast<std::size_t>(d.memory_pool)];
  }
  std::vector<int> shared_index(p.memory_pools.size(), -1);
  for (int u = 0; u < U; ++u) {
    const int r = groups_[u].front();
    const Device& dev = p.devices[static_cast<std::size_t>(r)];
    memory_[u] = static_cast<double>(dev.memory_bytes);
    std::uint64_t cap = usable_bytes(p, dev.memory_bytes);
    bool offload = p.allow_disk_offload && dev.disk_read_bandwidth > 0.0;
    if (dev.memory_pool >= 0) {
      const auto pool = static_cast<std::size_t>(dev.memory_pool);
      const std::uint64_t pool_cap = usable_bytes(p, p.memory_pools[pool].capacity_bytes);
      // An offloading stage keeps its device's usable bytes resident, which
      // must fit the pool: a device larger than its pool cannot offload.
      if (pool_cap < cap) {
        cap = pool_cap;
        offload = false;
      }
      if (pool_members[pool] >= 2) {
        if (shared_index[pool] < 0) {
          shared_index[pool] = static_cast<int>(pools_.size());
          pools_.push_back(SharedPool{{}, pool_cap});
        }
        pool_of_[u] = shared_index[pool];
        pools_[static_cast<std::size_t>(shared_index[pool])].units.push_back(u);
      }
    }
    cap_[u] = cap;
    offload_[u] = offload ? 1 : 0;
    overhead_[u] = dev.stage_overhead;
    if (offload) disk_seconds_per_byte_[u] = 1.0 / dev.disk_read_bandwidth;
    entry_[u] = entry_hop_time(p, r);
    exit_[u] = exit_hop_time(p, r);
    for (int l = 0; l < L; ++l) {
      prefix_time_[idx(u, l + 1)] = prefix_time_[idx(u, l)] + detail::layer_time(p, l, r);
      const bool held = !previous.empty() && groups_[u].size() == 1 && previous[l] == r;
      not_previous_[idx(u, l + 1)] = not_previous_[idx(u, l)] + (held ? 0 : 1);
    }
    build_windows(u);
  }
  own_cap_ = cap_;
  own_offload_ = offload_;

  activation_.assign(static_cast<std::size_t>(L) + 1, 0.0);
  for (int j = 1; j < L; ++j) {
    activation_[static_cast<std::size_t>(j)] =
        static_cast<double>(p.batch * p.layers[static_cast<std::size_t>(j) - 1].activation_bytes);
  }
  const std::size_t pairs = static_cast<std::size_t>(U) * U;
  link_latency_.assign(pairs, 0.0);
  link_bandwidth_.assign(pairs, 1.0);
  ring_latency_.assign(pairs, 0.0);
  const auto D = p.devices.size();
  for (int a = 0; a < U; ++a) {
    for (int b = 0; b < U; ++b) {
      // Between twins of one group, the link of its first two members.
      int x = groups_[a][0];
      int y = groups_[b][0];
      if (a == b) {
        if (groups_[a].size() < 2) continue;
        y = groups_[a][1];
      }
      const Link& link = p.links[static_cast<std::size_t>(x) * D + y];
      const std::size_t ab = static_cast<std::size_t>(a) * U + b;
      ring_latency_[ab] = link.latency;
      link_latency_[ab] = link.latency;
      link_bandwidth_[ab] = link.bandwidth;
    }
  }
}

// lo: the first start whose stage is allowed (fits, or offloads with its KV
// cache in memory); fit: the first start whose stage fits without offload.
// hi: the last start whose stage holds at least the floor.
void CostTables::build_windows(int u) {
  const int L = layers_;
  int fit = 0;
  int lo = 0;
  int hi = -1;
  for (int k = 1; k <= L; ++k) {
    while (fit < k && stage_memory(fit, k) > cap_[u]) ++fit;
    if (offload_[u]) {
      while (lo < k && prefix_kv_[k] - prefix_kv_[lo] > cap_[u]) ++lo;
    } else {
      lo = fit;
    }
    while (hi + 1 < k && stage_memory(hi + 1, k) >= floor_[u]) ++hi;
    fit_memory_[idx(u, k)] = fit;
    lo_memory_[idx(u, k)] = lo;
    hi_memory_[idx(u, k)] = hi;
  }
}

void CostTables::set_bounds(int u, std::uint64_t cap, std::uint64_t floor) {
  const bool own = cap >= own_cap_[u];
  if ((own ? cap_[u] == own_cap_[u] && offload_[u] == own_offload_[u] : cap_[u] == cap && offload_[u] == 0) &&
      floor_[u] == floor) {
    return;  // unchanged: the windows stand
  }
  if (cap < own_cap_[u]) {
    cap_[u] = cap;
    offload_[u] = 0;
  } else {
    cap_[u] = own_cap_[u];
    offload_[u] = own_offload_[u];
  }
  floor_[u] = floor;
  build_windows(u);
}

void CostTables::restore(int u) {
  if (cap_[u] == own_cap_[u] && offload_[u] == own_offload_[u] && floor_[u] == 0) return;
  set_bounds(u, own_cap_[u], 0);
}

}  // namespace exogpu::placement::detail
