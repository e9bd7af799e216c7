// DirectML's GEMM operator: compiled and initialised once per shape and
// device, then dispatched with a binding table of its own per enqueue, so
// that streams never share mutable binding state.
#include "backends/directml/dml_gemm.hpp"

#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "backends/directml/dml_allocation.hpp"
#include "backends/directml/dml_stream.hpp"
#include "exogpu/error.hpp"

namespace exogpu::directml {

namespace {

constexpr std::size_t kTensorAlignment = 16;  // DML_MINIMUM_BUFFER_TENSOR_ALIGNMENT

std::uint64_t element_bytes(GemmType type) { return type == GemmType::float32 ? 4 : 2; }

api::DML_TENSOR_DATA_TYPE data_type(GemmType type) {
  return type == GemmType::float32 ? api::DML_TENSOR_DATA_TYPE_FLOAT32
                                   : api::DML_TENSOR_DATA_TYPE_FLOAT16;
}

// DirectML's size of a packed tensor: its bytes rounded up to 4.
std::uint64_t tensor_bytes(std::uint64_t rows, std::uint64_t columns, GemmType type) {
  return (rows * columns * element_bytes(type) + 3) / 4 * 4;
}

// A packed rows x columns matrix as a 4-D DirectML buffer tensor.
struct Tensor {
  UINT sizes[4];
  api::DML_BUFFER_TENSOR_DESC buffer{};
  api::DML_TENSOR_DESC desc{};
  Tensor(std::uint32_t rows, std::uint32_t columns, GemmType type)
      : sizes{1, 1, rows, columns} {
    buffer.DataType = data_type(type);
    buffer.Flags = api::DML_TENSOR_FLAG_NONE;
    buffer.DimensionCount = 4;
    buffer.Sizes = sizes;
    buffer.Strides = nullptr;
    buffer.TotalTensorSizeInBytes = tensor_bytes(rows, columns, type);
    desc = {api::DML_TENSOR_TYPE_BUFFER, &buffer};
  }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
};

// A compiled GEMM with its persistent resource initialised.
struct CompiledGemm {
  ComPtr<api::IDMLCompiledOperator> op;
  ComPtr<ID3D12Resource> persistent;
  api::DML_BINDING_PROPERTIES properties{};
};

api::DML_BINDING_DESC buffer_binding(const api::DML_BUFFER_BINDING& binding) {
  return {api::DML_BINDING_TYPE_BUFFER, &binding};
}

// A shader-visible descriptor heap and a binding table over it for `dispatchable`.
struct Bindings {
  ComPtr<ID3D12DescriptorHeap> heap;
  ComPtr<api::IDMLBindingTable> table;
};

Bindings make_bindings(const Context& context, api::IDMLDispatchable* dispatchable,
                       UINT descriptors) {
  Bindings b;
  D3D12_DESCRIPTOR_HEAP_DESC heap_desc{};
  heap_desc.Type = D3D12_DESCRIPTOR_HEAP_TYPE_CBV_SRV_UAV;
  heap_desc.NumDescriptors = descriptors == 0 ? 1 : descriptors;
  heap_desc.Flags = D3D12_DESCRIPTOR_HEAP_FLAG_SHADER_VISIBLE;
  context.check(context.device()->CreateDescriptorHeap(&heap_desc, IID_PPV_ARGS(&b.heap)),
                "CreateDescriptorHeap");
  api::DML_BINDING_TABLE_DESC table_desc{};
  table_desc.Dispatchable = dispatchable;
  table_desc.CPUDescriptorHandle = b.heap->GetCPUDescriptorHandleForHeapStart();
  table_desc.GPUDescriptorHandle = b.heap->GetGPUDescriptorHandleForHeapStart();
  table_desc.SizeInDescriptors = heap_desc.NumDescriptors;
  context.check(context.dml()->CreateBindingTable(&table_desc, api::kIID_IDMLBindingTable,
                                                  reinterpret_cast<void**>(b.table.GetAddressOf())),
                "IDMLDevice::CreateBindingTable");
  return b;
}

std::shared_ptr<CompiledGemm> compile(const Context& context, const GemmShape& shape) {
  Tensor a(shape.m, shape.k, shape.type);
  Tensor b(shape.k, shape.n, shape.type);
  Tensor out(shape.m, shape.n, shape.type);
  api::DML_GEMM_OPERATOR_DESC gemm{};
  gemm.ATensor = &a.desc;
  gemm.BTensor = &b.desc;
  gemm.CTensor = nullptr;
  gemm.OutputTensor = &out.desc;
  gemm.TransA = api::DML_MATRIX_TRANSFORM_NONE;
  gemm.TransB = api::DML_MATRIX_TRANSFORM_NONE;
  gemm.Alpha = 1.0F;
  gemm.Beta = 0.0F;
  gemm.FusedActivation = nullptr;
  const api::DML_OPERATOR_DESC desc{api::DML_OPERATOR_GEMM, &gemm};

  api::IDMLDevice* dml = context.dml();
  ComPtr<api::IDMLOperator> op;
  context.check(dml->CreateOperator(&desc, api::kIID_IDMLOperator,
                                    reinterpret_cast<void**>(op.GetAddressOf())),
                "IDMLDevice::CreateOperator (GEMM)");
  auto compiled = std::make_shared<CompiledGemm>();
  context.check(dml->CompileOperator(op.Get(), api::DML_EXECUTION_FLAG_NONE,
                                     api::kIID_IDMLCompiledOperator,
                                     reinterpret_cast<void**>(compiled->op.GetAddressOf())),
                "IDMLDevice::CompileOperator (GEMM)");
  compiled->properties = api::binding_properties(*compiled->op.Get());
  if (compiled->properties.PersistentResourceSize > 0) {
    compiled->persistent =
        context.create_buffer(compiled->properties.PersistentResourceSize, HeapKind::device);
  }

  // The initializer fills the persistent resource (weights layouts and the
  // like); it runs once, here, on a queue of its own.
  ComPtr<api::IDMLOperatorInitializer> initializer;
  api::IDMLCompiledOperator* ops[] = {compiled->op.Get()};
  context.check(dml->CreateOperatorInitializer(
                    1, ops, api::kIID_IDMLOperatorInitializer,
                    reinterpret_cast<void**>(initializer.GetAddressOf())),
                "IDMLDevice::CreateOperatorInitializer");
  const api::DML_BINDING_PROPERTIES init_properties = api::binding_properties(*initializer.Get());
  Bindings bindings =
      make_bindings(context, initializer.Get(), init_properties.RequiredDescriptorCount);
  ComPtr<ID3D12Resource> temporary;
  api::DML_BUFFER_BINDING temporary_binding{};
  if (init_properties.TemporaryResourceSize > 0) {
    temporary = context.create_buffer(init_properties.TemporaryResourceSize, HeapKind::device);
    temporary_binding = {temporary.Get(), 0, init_properties.TemporaryResourceSize};
    const api::DML_BINDING_DESC d = buffer_binding(temporary_binding);
    bindings.table->BindTemporaryResource(&d);
  }
  api::DML_BUFFER_BINDING persistent_binding{};
  if (compiled->persistent) {
    persistent_binding = {compiled->persistent.Get(), 0,
                          compiled->properties.PersistentResourceSize};
    const api::DML_BINDING_DESC d = buffer_binding(persistent_binding);
    bindings.table->BindOutputs(1, &d);
  }
  ComPtr<ID3D12CommandQueue> queue = context.create_queue(D3D12_COMMAND_LIST_TYPE_COMPUTE);
  ComPtr<ID3D12CommandAllocator> allocator;
  ComPtr<ID3D12GraphicsCommandList> list;
  context.check(context.device()->CreateCommandAllocator(D3D12_COMMAND_LIST_TYPE_COMPUTE,
                                                         IID_PPV_ARGS(&allocator)),
                "CreateCommandAllocator");
  context.check(context.device()->CreateCommandList(0, D3D12_COMMAND_LIST_TYPE_COMPUTE,
                                                    allocator.Get(), nullptr,
                                                    IID_PPV_ARGS(&list)),
                "CreateCommandList");
  ID3D12DescriptorHeap* heaps[] = {bindings.heap.Get()};
  list->SetDescriptorHeaps(1, heaps);
  {
    auto recorder_lock = context.lock_recorder();
    context.recorder()->RecordDispatch(list.Get(), initializer.Get(), bindings.table.Get());
  }
  context.check_not_removed("IDMLCommandRecorder::RecordDispatch (GEMM initializer)");
  context.check(list->Close(), "ID3D12GraphicsCommandList::Close");
  ID3D12CommandList* lists[] = {list.Get()};
  queue->ExecuteCommandLists(1, lists);
  ComPtr<ID3D12Fence> fence = context.create_fence();
  context.check(queue->Signal(fence.Get(), 1), "ID3D12CommandQueue::Signal");
  wait_for_fence(context, fence.Get(), 1);
  context.check_not_removed("the GEMM initializer");
  return compiled;
}

// Compiled GEMMs of every device, by device and shape. Compiling takes long
// (shaders are built for the shape), so each is kept for the process's life.
class GemmCache {
 public:
  std::shared_ptr<CompiledGemm> get(const Context& context, const GemmShape& shape) {
    const Key key{context.device(), shape.m, shape.k, shape.n, static_cast<int>(shape.type)};
    std::lock_guard lock(mutex_);
    auto it = compiled_.find(key);
    if (it != compiled_.end()) return it->second;
    std::shared_ptr<CompiledGemm> made = compile(context, shape);
    compiled_.emplace(key, made);
    return made;
  }

 private:
  using Key = std::tuple<ID3D12Device*, std::uint32_t, std::uint32_t, std::uint32_t, int>;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<CompiledGemm>> compiled_;
};

GemmCache& cache() {
  // Never destroyed: at exit the driver may be gone before a static would be.
  static GemmCache* const instance = std::make_unique<GemmCache>().release();
  return *instance;
}

void check_operand(const Stream& stream, const Buffer& buffer, std::size_t offset,
                   std::uint64_t bytes, const char* name) {
  if (!buffer.valid()) throw InvalidArgument(std::string("GEMM: ") + name + " is empty or was freed");
  if (&buffer.device() != &stream.device()) {
    throw InvalidArgument(std::string("GEMM: ") + name + " lives on " + buffer.device().id() +
                          ", not on the stream's device " + stream.device().id());
  }
  if (offset % kTensorAlignment != 0) {
    throw InvalidArgument(std::string("GEMM: ") + name + " offset " + std::to_string(offset) +
                          " is not a multiple of " + std::to_string(kTensorAlignment));
  }
  if (offset > buffer.size() || bytes > buffer.size() - offset) {
    throw InvalidArgument(std::string("GEMM: ") + name + " needs " + std::to_string(bytes) +
                          " bytes at offset " + std::to_string(offset) + ", past the end of its " +
                          std::to_string(buffer.size()) + "-byte buffer on " +
                          buffer.device().id());
  }
}

}  // namespace

double enqueue_gemm(Stream& stream, const GemmShape& shape, const Buffer& a, std::size_t a_offset,
                    const Buffer& b, std::size_t b_offset, const Buffer& out,
                    std::size_t out_offset, std::uint32_t repeats) {
  auto* dml_stream = dynamic_cast<DmlStream*>(&stream);
  if (dml_stream == nullptr) {
    throw InvalidArgument("GEMM: the stream belongs to " + stream.device().id() +
                          ", not to a DirectML device");
  }
  if (shape.m == 0 || shape.k == 0 || shape.n == 0) {
    throw InvalidArgument("GEMM: every dimension must be positive (m=" + std::to_string(shape.m) +
                          ", k=" + std::to_string(shape.k) + ", n=" + std::to_string(shape.n) +
                          ")");
  }
  const std::uint64_t size = element_bytes(shape.type);
  check_operand(stream, a, a_offset, std::uint64_t{shape.m} * shape.k * size, "A");
  check_operand(stream, b, b_offset, std::uint64_t{shape.k} * shape.n * size, "B");
  check_operand(stream, out, out_offset, std::uint64_t{shape.m} * shape.n * size, "the output");
  Timeline& timeline = dml_stream->timeline();
  const Context& context = timeline.context();
  if (shape.type == GemmType::float16 && !context.features().float16) {
    throw InvalidArgument("GEMM: " + stream.device().id() + " has no float16 tensors");
  }
  if (repeats == 0) return 0.0;

  std::shared_ptr<CompiledGemm> compiled = cache().get(context, shape);
  Bindings bindings =
      make_bindings(context, compiled->op.Get(), compiled->properties.RequiredDescriptorCount);
  const api::DML_BUFFER_BINDING a_binding{resource_of(a.allocation()), a_offset,
                                          tensor_bytes(shape.m, shape.k, shape.type)};
  const api::DML_BUFFER_BINDING b_binding{resource_of(b.allocation()), b_offset,
                                          tensor_bytes(shape.k, shape.n, shape.type)};
  const api::DML_BUFFER_BINDING out_binding{resource_of(out.allocation()), out_offset,
                                            tensor_bytes(shape.m, shape.n, shape.type)};
  // The operator's optional C input is bound to nothing.
  const api::DML_BINDING_DESC inputs[] = {buffer_binding(a_binding), buffer_binding(b_binding),
                                          {api::DML_BINDING_TYPE_NONE, nullptr}};
  bindings.table->BindInputs(3, inputs);
  const api::DML_BINDING_DESC output = buffer_binding(out_binding);
  bindings.table->BindOutputs(1, &output);
  ComPtr<ID3D12Resource> temporary;
  api::DML_BUFFER_BINDING temporary_binding{};
  if (compiled->properties.TemporaryResourceSize > 0) {
    temporary = context.create_buffer(compiled->properties.TemporaryResourceSize,
                                      HeapKind::device);
    temporary_binding = {temporary.Get(), 0, compiled->properties.TemporaryResourceSize};
    const api::DML_BINDING_DESC d = buffer_binding(temporary_binding);
    bindings.table->BindTemporaryResource(&d);
  }
  api::DML_BUFFER_BINDING persistent_binding{};
  if (compiled->persistent) {
    persistent_binding = {compiled->persistent.Get(), 0,
                          compiled->properties.PersistentResourceSize};
    const api::DML_BINDING_DESC d = buffer_binding(persistent_binding);
    bindings.table->BindPersistentResource(&d);
  }

  auto lock = timeline.lock();
  Work work = timeline.begin(lock, Lane::compute);
  ID3D12GraphicsCommandList* list = work.commands.list.Get();
  ID3D12DescriptorHeap* heaps[] = {bindings.heap.Get()};
  list->SetDescriptorHeaps(1, heaps);
  D3D12_RESOURCE_BARRIER between{};
  between.Type = D3D12_RESOURCE_BARRIER_TYPE_UAV;
  between.UAV.pResource = nullptr;  // every UAV write lands before the next dispatch
  {
    auto recorder_lock = context.lock_recorder();
    for (std::uint32_t i = 0; i < repeats; ++i) {
      if (i > 0) list->ResourceBarrier(1, &between);
      context.recorder()->RecordDispatch(list, compiled->op.Get(), bindings.table.Get());
    }
  }
  context.check_not_removed("IDMLCommandRecorder::RecordDispatch (GEMM)");
  work.allocations = {a.allocation(), b.allocation(), out.allocation()};
  work.objects = {bindings.heap, bindings.table, compiled->op};
  if (temporary) work.objects.push_back(temporary);
  timeline.submit(lock, std::move(work));
  return 2.0 * shape.m * shape.n * static_cast<double>(shape.k) * repeats;
}

}  // namespace exogpu::directml
