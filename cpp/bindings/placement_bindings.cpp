// Bindings of the placement search: plain structs in, a result struct out.
// Parsing and validation with field names happen in exogpu.placement.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>

#include "bindings.hpp"
#include "exogpu/placement.hpp"

namespace nb = nanobind;
namespace ep = exogpu::placement;

namespace exogpu::bindings {
namespace {

ep::Objective parse_objective(const std::string& name) {
  if (name == "latency") return ep::Objective::latency;
  if (name == "throughput") return ep::Objective::throughput;
  if (name == "memory") return ep::Objective::memory;
  throw InvalidArgument("objective must be latency, throughput or memory, got '" + name + "'");
}

ep::Strategy parse_strategy(const std::string& name) {
  if (name == "optimal") return ep::Strategy::optimal;
  if (name == "exo-memory-weighted") return ep::Strategy::exo_memory_weighted;
  if (name == "free-memory-proportional") return ep::Strategy::free_memory_proportional;
  throw InvalidArgument("strategy must be optimal, exo-memory-weighted or free-memory-proportional, got '" +
                        name + "'");
}

}  // namespace

void bind_placement(nb::module_& m) {
  // Infeasible problems raise PlacementInfeasible, a subclass of the core's
  // InvalidArgument (itself a ValueError) when that is bound.
  nb::handle base = PyExc_ValueError;
  if (nb::hasattr(m, "InvalidArgument")) base = m.attr("InvalidArgument");
  nb::exception<ep::Infeasible>(m, "PlacementInfeasible", base);

  nb::class_<ep::Layer>(m, "PlacementLayer")
      .def(nb::init<>())
      .def_rw("name", &ep::Layer::name)
      .def_rw("weight_bytes", &ep::Layer::weight_bytes)
      .def_rw("kv_bytes_per_token", &ep::Layer::kv_bytes_per_token)
      .def_rw("flops_per_token", &ep::Layer::flops_per_token)
      .def_rw("activation_bytes", &ep::Layer::activation_bytes)
      .def_rw("read_bytes_per_token", &ep::Layer::read_bytes_per_token);
  nb::class_<ep::Device>(m, "PlacementDevice")
      .def(nb::init<>())
      .def_rw("id", &ep::Device::id)
      .def_rw("node", &ep::Device::node)
      .def_rw("memory_bytes", &ep::Device::memory_bytes)
      .def_rw("free_memory_bytes", &ep::Device::free_memory_bytes)
      .def_rw("flops", &ep::Device::flops)
      .def_rw("memory_bandwidth", &ep::Device::memory_bandwidth)
      .def_rw("memory_pool", &ep::Device::memory_pool, "index into PlacementProblem.memory_pools, -1: none")
      .def_rw("stage_overhead", &ep::Device::stage_overhead)
      .def_rw("disk_read_bandwidth", &ep::Device::disk_read_bandwidth, "0: cannot offload to disk");
  nb::class_<ep::Link>(m, "PlacementLink")
      .def(nb::init<>())
      .def_rw("bandwidth", &ep::Link::bandwidth)
      .def_rw("latency", &ep::Link::latency);
  nb::class_<ep::MemoryPool>(m, "PlacementMemoryPool")
      .def(nb::init<>())
      .def_rw("name", &ep::MemoryPool::name)
      .def_rw("capacity_bytes", &ep::MemoryPool::capacity_bytes);
  nb::class_<ep::Endpoints>(m, "PlacementEndpoints")
      .def(nb::init<>())
      .def_rw("node", &ep::Endpoints::node)
      .def_rw("input_bytes", &ep::Endpoints::input_bytes)
      .def_rw("output_bytes", &ep::Endpoints::output_bytes)
      .def_rw("links", &ep::Endpoints::links, "one resolved link per device");
  nb::class_<ep::Problem>(m, "PlacementProblem")
      .def(nb::init<>())
      .def_rw("layers", &ep::Problem::layers)
      .def_rw("devices", &ep::Problem::devices)
      .def_rw("links", &ep::Problem::links, "row-major D x D matrix of resolved links")
      .def_rw("batch", &ep::Problem::batch)
      .def_rw("context_tokens", &ep::Problem::context_tokens)
      .def_rw("memory_headroom", &ep::Problem::memory_headroom)
      .def_rw("fixed_order", &ep::Problem::fixed_order)
      .def_rw("ring", &ep::Problem::ring)
      .def_rw("memory_pools", &ep::Problem::memory_pools)
      .def_rw("endpoints", &ep::Problem::endpoints, "empty, or one PlacementEndpoints")
      .def_rw("allow_disk_offload", &ep::Problem::allow_disk_offload)
      .def(
          "set_layers",
          [](ep::Problem& p, const std::vector<std::string>& names, const std::vector<std::uint64_t>& weight_bytes,
             const std::vector<std::uint64_t>& kv_bytes_per_token, const std::vector<double>& flops_per_token,
             const std::vector<std::uint64_t>& activation_bytes, const std::vector<std::uint64_t>& read_bytes) {
            const std::size_t n = names.size();
            if (weight_bytes.size() != n || kv_bytes_per_token.size() != n || flops_per_token.size() != n ||
                activation_bytes.size() != n || read_bytes.size() != n) {
              throw InvalidArgument("set_layers: every column needs one entry per layer");
            }
            p.layers.resize(n);
            for (std::size_t i = 0; i < n; ++i) {
              p.layers[i] = ep::Layer{names[i], weight_bytes[i], kv_bytes_per_token[i], flops_per_token[i],
                                      activation_bytes[i], read_bytes[i]};
            }
          },
          nb::arg("names"), nb::arg("weight_bytes"), nb::arg("kv_bytes_per_token"), nb::arg("flops_per_token"),
          nb::arg("activation_bytes"), nb::arg("read_bytes_per_token"),
          "Sets every layer from columns (one list per field): far faster than a list of PlacementLayer.");
  nb::class_<ep::Stage>(m, "PlacementStage")
      .def_ro("device", &ep::Stage::device)
      .def_ro("first_layer", &ep::Stage::first_layer)
      .def_ro("last_layer", &ep::Stage::last_layer)
      .def_ro("time", &ep::Stage::time)
      .def_ro("memory_bytes", &ep::Stage::memory_bytes)
      .def_ro("offloaded_bytes", &ep::Stage::offloaded_bytes);
  nb::class_<ep::Hop>(m, "PlacementHop")
      .def_ro("source", &ep::Hop::from)
      .def_ro("target", &ep::Hop::to)
      .def_ro("after_layer", &ep::Hop::after_layer)
      .def_ro("time", &ep::Hop::time)
      .def_prop_ro(
          "kind",
          [](const ep::Hop& h) -> std::string {
            switch (h.kind) {
              case ep::HopKind::stage: return "stage";
              case ep::HopKind::ring: return "ring";
              case ep::HopKind::entry: return "entry";
              case ep::HopKind::exit: return "exit";
            }
            return "stage";
          },
          "stage, ring, entry or exit (source/target -1: the endpoints)");
  nb::class_<ep::Placement>(m, "PlacementResult")
      .def_ro("value", &ep::Placement::value)
      .def_ro("stages", &ep::Placement::stages)
      .def_ro("hops", &ep::Placement::hops)
      .def_ro("latency", &ep::Placement::latency)
      .def_ro("bottleneck", &ep::Placement::bottleneck)
      .def_ro("max_memory_fraction", &ep::Placement::max_memory_fraction)
      .def_ro("optimal", &ep::Placement::optimal)
      .def_ro("lower_bound", &ep::Placement::lower_bound)
      .def_ro("solve_seconds", &ep::Placement::solve_seconds)
      .def_ro("feasible", &ep::Placement::feasible)
      .def_ro("infeasible_reason", &ep::Placement::infeasible_reason)
      .def_ro("moved_layers", &ep::Placement::moved_layers)
      .def_ro("states_explored", &ep::Placement::states_explored);

  m.def(
      "placement_solve",
      [](const ep::Problem& problem, const std::string& objective, const std::string& strategy,
         double time_budget, const std::vector<int>& previous) {
        ep::Options options;
        options.objective = parse_objective(objective);
        options.strategy = parse_strategy(strategy);
        options.time_budget_seconds = time_budget;
        options.previous = previous;
        // Ctrl-C: the search calls this about every 20 ms; it takes the GIL
        // back for a moment and lets a pending KeyboardInterrupt (or any
        // signal handler's exception) out of solve() as itself.
        options.interrupt = [] {
          nb::gil_scoped_acquire acquire;
          if (PyErr_CheckSignals() != 0) throw nb::python_error();
        };
        nb::gil_scoped_release release;
        return ep::solve(problem, options);
      },
      nb::arg("problem"), nb::arg("objective"), nb::arg("strategy"), nb::arg("time_budget"),
      nb::arg("previous"),
      "Solves a placement problem (docs/placement.md); the GIL is released meanwhile.");
  m.def(
      "placement_evaluate",
      [](const ep::Problem& problem, const std::string& objective, const std::vector<std::vector<int>>& stages) {
        std::vector<ep::StageSpec> specs;
        for (const auto& s : stages) {
          if (s.size() != 3) throw InvalidArgument("stages: each entry is (device, first_layer, last_layer)");
          specs.push_back(ep::StageSpec{s[0], s[1], s[2]});
        }
        const ep::Objective o = parse_objective(objective);
        nb::gil_scoped_release release;
        return ep::evaluate(problem, o, specs);
      },
      nb::arg("problem"), nb::arg("objective"), nb::arg("stages"),
      "Prices the given stages (device index, first layer, last layer) under the cost model.");
}

}  // namespace exogpu::bindings
