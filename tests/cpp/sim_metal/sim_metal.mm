// A simulated Metal machine for tests (libsim_metal.so), in Objective-C++
// with manual retain/release on GNUstep-base and GCC's Objective-C runtime.
//
// Two devices: metal:0 has unified memory (shared storage is host memory),
// metal:1 is discrete (private storage has no CPU view: contents is NULL).
// Each command queue runs its committed command buffers in order on a worker
// thread; blits, fills, shared-event signals and waits, and the exogpu_fma
// compute kernel execute there.
//
// It is stricter than Metal: misuse that Metal would leave undefined, or let
// pass until it crashed somewhere else, aborts here at once with a message
// (commit with an open encoder, double commit, a handler added after commit,
// out-of-bounds or overlapping copies, resources of another device, use of a
// released object, objects alive at teardown). Released objects are kept as
// zombies, so a later message to one is caught, not undefined.
#include "sim_metal.h"
#include "metal_subset.h"

#include <Block.h>
#include <objc/runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void sim_fail(const std::string& message) {
  std::fprintf(stderr, "simulated Metal: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

#define SIM_REQUIRE(condition, message)          \
  do {                                           \
    if (!(condition)) sim_fail(message);         \
  } while (0)

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Every live simulation object, and the released ones kept as zombies. Never
// destroyed: queue workers may still release objects during process exit.
struct Objects {
  std::mutex mutex;
  std::set<id> live;
  std::deque<id> zombies;
  std::atomic<int> committed{0};  // command buffers committed and not yet run
};
Objects& objects() {
  static Objects* const all = std::make_unique<Objects>().release();
  return *all;
}
// Zombies beyond this many are freed for real, oldest first.
constexpr std::size_t kMaxZombies = 1 << 16;

std::string class_name(id object) { return class_getName(object_getClass(object)); }

}  // namespace

// The base of every simulation object: its own reference count, so that the
// last release turns the object into a zombie instead of freeing it.
@interface SimObject : NSObject {
 @public
  std::atomic<long> refs_;
  std::atomic<bool> zombie_;
}
- (void)teardown;  // releases what the object holds; runs once, at the last release
- (void)check:(const char*)what;
- (void)freeForReal;
@end

@implementation SimObject
- (id)init {
  if ((self = [super init])) {
    refs_ = 1;
    zombie_ = false;
    std::lock_guard lock(objects().mutex);
    objects().live.insert(self);
  }
  return self;
}
- (void)check:(const char*)what {
  SIM_REQUIRE(!zombie_.load(), std::string(what) + " sent to a released " + class_name(self));
}
- (id)retain {
  [self check:"retain"];
  refs_.fetch_add(1);
  return self;
}
- (oneway void)release {
  [self check:"release"];
  if (refs_.fetch_sub(1) != 1) return;
  [self teardown];
  zombie_ = true;
  id freed = nil;
  {
    std::lock_guard lock(objects().mutex);
    objects().live.erase(self);
    objects().zombies.push_back(self);
    if (objects().zombies.size() > kMaxZombies) {
      freed = objects().zombies.front();
      objects().zombies.pop_front();
    }
  }
  if (freed != nil) [(SimObject*)freed freeForReal];
}
- (NSUInteger)retainCount {
  return static_cast<NSUInteger>(refs_.load());
}
- (void)teardown {
}
- (void)freeForReal {
  [super release];  // NSObject's own count is zero: this deallocates
}
@end

@class SimDevice;

@interface SimBuffer : SimObject <MTLBuffer> {
 @public
  SimDevice* device_;
  std::vector<unsigned char> bytes_;
  MTLStorageMode mode_;
}
@end

@interface SimDevice : NSObject <MTLDevice> {
 @public
  unsigned index_;
  BOOL unified_;
  uint64_t working_set_;
  std::atomic<std::uint64_t> allocated_;
  std::mutex fault_mutex_;
  std::string next_fault_;
}
@end

@implementation SimBuffer
- (void*)contents {
  [self check:"contents"];
  return mode_ == MTLStorageModePrivate ? nullptr : bytes_.data();
}
- (NSUInteger)length {
  [self check:"length"];
  return bytes_.size();
}
- (MTLStorageMode)storageMode {
  [self check:"storageMode"];
  return mode_;
}
- (void)teardown {
  device_->allocated_.fetch_sub(bytes_.size());
  std::vector<unsigned char>().swap(bytes_);
}
@end

@interface SimEvent : SimObject <MTLSharedEvent> {
 @public
  std::mutex mutex_;
  std::condition_variable signalled_;
  uint64_t value_;
}
@end

@implementation SimEvent
- (uint64_t)signaledValue {
  [self check:"signaledValue"];
  std::lock_guard lock(mutex_);
  return value_;
}
- (void)setSignaledValue:(uint64_t)value {
  [self check:"setSignaledValue:"];
  {
    std::lock_guard lock(mutex_);
    value_ = value;
  }
  signalled_.notify_all();
}
// On a queue's worker: blocks that queue until the event reaches `value`. A
// wait that is never satisfied would hang a GPU; here it fails.
- (void)waitFor:(uint64_t)value {
  std::unique_lock lock(mutex_);
  SIM_REQUIRE(signalled_.wait_for(lock, std::chrono::seconds(60), [&] { return value_ >= value; }),
              "a command buffer waited 60 s for a shared event value that was never signalled");
}
@end

@interface SimFunction : SimObject <MTLFunction> {
 @public
  std::string name_;
}
@end
@implementation SimFunction
- (NSString*)name {
  [self check:"name"];
  return [NSString stringWithUTF8String:name_.c_str()];
}
@end

@interface SimLibrary : SimObject <MTLLibrary> {
 @public
  std::vector<std::string> kernels_;
}
@end
@implementation SimLibrary
- (id<MTLFunction>)newFunctionWithName:(NSString*)functionName {
  [self check:"newFunctionWithName:"];
  const std::string name = [functionName UTF8String];
  if (std::find(kernels_.begin(), kernels_.end(), name) == kernels_.end()) return nil;
  SimFunction* function = [[SimFunction alloc] init];
  function->name_ = name;
  return function;
}
@end

@interface SimPipeline : SimObject <MTLComputePipelineState> {
 @public
  std::string kernel_;
}
@end
@implementation SimPipeline
- (NSUInteger)maxTotalThreadsPerThreadgroup {
  [self check:"maxTotalThreadsPerThreadgroup"];
  return 1024;
}
- (NSUInteger)threadExecutionWidth {
  [self check:"threadExecutionWidth"];
  return 32;
}
@end

@class SimCommandBuffer;

struct QueueState {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<SimCommandBuffer*> work;
  bool stopping = false;
};

@interface SimQueue : SimObject <MTLCommandQueue> {
 @public
  SimDevice* device_;
  std::shared_ptr<QueueState> state_;  // shared with the worker, which may outlive the queue
  std::thread worker_;
}
- (void)submit:(SimCommandBuffer*)buffer;
@end

@interface SimCommandBuffer : SimObject <MTLCommandBuffer> {
 @public
  SimQueue* queue_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::atomic<MTLCommandBufferStatus> status_;
  bool encoding_;
  std::vector<std::function<void()>> commands_;
  std::vector<id> resources_;  // retained until the buffer is released, as Metal does
  std::vector<MTLCommandBufferHandler> handlers_;
  CFTimeInterval start_, end_;
  std::string fault_;
  NSError* error_;
}
- (void)execute;
- (void)encoderEnded;
- (void)encode:(std::function<void()>)command;
- (void)use:(id)resource;
- (SimDevice*)device;
@end

@interface SimBlitEncoder : SimObject <MTLBlitCommandEncoder> {
 @public
  SimCommandBuffer* buffer_;
  bool ended_;
}
@end

@interface SimComputeEncoder : SimObject <MTLComputeCommandEncoder> {
 @public
  SimCommandBuffer* buffer_;
  bool ended_;
  SimPipeline* pipeline_;
  struct Slot {
    SimBuffer* buffer = nil;
    NSUInteger offset = 0;
    std::vector<unsigned char> bytes;
  };
  std::map<NSUInteger, Slot> slots_;
}
@end

namespace {

void require_buffer_of(SimCommandBuffer* command_buffer, id<MTLBuffer> resource, const char* what) {
  SIM_REQUIRE(resource != nil, std::string(what) + ": nil buffer");
  SimBuffer* buffer = (SimBuffer*)resource;
  [buffer check:what];
  SIM_REQUIRE(buffer->device_ == [command_buffer device],
              std::string(what) + ": the buffer belongs to another device");
}

// exogpu_fma, as the Metal Shading Language source in the backend states it:
// eight chains of fused multiply-adds per element, their sum written back.
void run_fma(float* data, std::uint32_t count, std::uint32_t iterations) {
  for (std::uint32_t i = 0; i < count; ++i) {
    const float x = data[i];
    float a[8];
    for (int c = 0; c < 8; ++c) a[c] = x + static_cast<float>(c);
    for (std::uint32_t k = 0; k < iterations; ++k) {
      for (float& v : a) v = std::fma(v, 0.9999F, 0.0001F);
    }
    data[i] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  }
}

}  // namespace

@implementation SimBlitEncoder
- (void)live:(const char*)what {
  [self check:what];
  SIM_REQUIRE(!ended_, std::string(what) + " on a blit encoder after endEncoding");
}
- (void)copyFromBuffer:(id<MTLBuffer>)source
          sourceOffset:(NSUInteger)sourceOffset
              toBuffer:(id<MTLBuffer>)destination
     destinationOffset:(NSUInteger)destinationOffset
                  size:(NSUInteger)size {
  [self live:"copyFromBuffer"];
  require_buffer_of(buffer_, source, "copyFromBuffer (source)");
  require_buffer_of(buffer_, destination, "copyFromBuffer (destination)");
  SimBuffer* src = (SimBuffer*)source;
  SimBuffer* dst = (SimBuffer*)destination;
  SIM_REQUIRE(sourceOffset <= src->bytes_.size() && size <= src->bytes_.size() - sourceOffset,
              "blit copy reads past the end of its source buffer");
  SIM_REQUIRE(destinationOffset <= dst->bytes_.size() &&
                  size <= dst->bytes_.size() - destinationOffset,
              "blit copy writes past the end of its destination buffer");
  SIM_REQUIRE(src != dst || sourceOffset + size <= destinationOffset ||
                  destinationOffset + size <= sourceOffset,
              "blit copy between overlapping ranges of one buffer (undefined in Metal)");
  [buffer_ use:src];
  [buffer_ use:dst];
  [buffer_ encode:[src, dst, sourceOffset, destinationOffset, size] {
    std::memcpy(dst->bytes_.data() + destinationOffset, src->bytes_.data() + sourceOffset, size);
  }];
}
- (void)fillBuffer:(id<MTLBuffer>)buffer range:(NSRange)range value:(uint8_t)value {
  [self live:"fillBuffer"];
  require_buffer_of(buffer_, buffer, "fillBuffer");
  SimBuffer* dst = (SimBuffer*)buffer;
  SIM_REQUIRE(range.location <= dst->bytes_.size() &&
                  range.length <= dst->bytes_.size() - range.location,
              "fillBuffer range runs past the end of the buffer");
  [buffer_ use:dst];
  const NSUInteger at = range.location;
  const NSUInteger n = range.length;
  [buffer_ encode:[dst, at, n, value] { std::memset(dst->bytes_.data() + at, value, n); }];
}
- (void)endEncoding {
  [self live:"endEncoding"];
  ended_ = true;
  [buffer_ encoderEnded];
}
- (void)teardown {
  [buffer_ release];
}
@end

@implementation SimComputeEncoder
- (void)live:(const char*)what {
  [self check:what];
  SIM_REQUIRE(!ended_, std::string(what) + " on a compute encoder after endEncoding");
}
- (void)setComputePipelineState:(id<MTLComputePipelineState>)state {
  [self live:"setComputePipelineState"];
  SIM_REQUIRE(state != nil, "setComputePipelineState: nil pipeline");
  [(SimPipeline*)state check:"setComputePipelineState"];
  [buffer_ use:state];
  pipeline_ = (SimPipeline*)state;
}
- (void)setBuffer:(id<MTLBuffer>)buffer offset:(NSUInteger)offset atIndex:(NSUInteger)index {
  [self live:"setBuffer"];
  require_buffer_of(buffer_, buffer, "setBuffer");
  SimBuffer* b = (SimBuffer*)buffer;
  SIM_REQUIRE(index < 31 && offset <= b->bytes_.size(), "setBuffer: bad index or offset");
  [buffer_ use:b];
  slots_[index] = Slot{b, offset, {}};
}
- (void)setBytes:(const void*)bytes length:(NSUInteger)length atIndex:(NSUInteger)index {
  [self live:"setBytes"];
  SIM_REQUIRE(index < 31 && length <= 4096, "setBytes: bad index, or more than 4 KiB");
  const auto* p = static_cast<const unsigned char*>(bytes);
  slots_[index] = Slot{nil, 0, std::vector<unsigned char>(p, p + length)};
}
- (void)dispatchThreadgroups:(MTLSize)groups threadsPerThreadgroup:(MTLSize)threads {
  [self live:"dispatchThreadgroups"];
  SIM_REQUIRE(pipeline_ != nil, "dispatch without a compute pipeline state");
  const NSUInteger per_group = threads.width * threads.height * threads.depth;
  SIM_REQUIRE(per_group > 0 && per_group <= [pipeline_ maxTotalThreadsPerThreadgroup],
              "dispatch: threads per threadgroup out of range");
  const std::uint64_t grid = std::uint64_t{groups.width} * groups.height * groups.depth * per_group;
  SIM_REQUIRE(pipeline_->kernel_ == "exogpu_fma", "dispatch of an unknown kernel");
  // exogpu_fma(device float* data [[buffer(0)]], constant uint& count [[buffer(1)]],
  //            constant uint& iterations [[buffer(2)]])
  auto data = slots_.find(0);
  auto count = slots_.find(1);
  auto iterations = slots_.find(2);
  SIM_REQUIRE(data != slots_.end() && data->second.buffer != nil,
              "exogpu_fma: no buffer bound at index 0");
  SIM_REQUIRE(count != slots_.end() && count->second.bytes.size() == 4 &&
                  iterations != slots_.end() && iterations->second.bytes.size() == 4,
              "exogpu_fma: count (index 1) and iterations (index 2) must be 4-byte constants");
  std::uint32_t n = 0;
  std::uint32_t rounds = 0;
  std::memcpy(&n, count->second.bytes.data(), 4);
  std::memcpy(&rounds, iterations->second.bytes.data(), 4);
  SimBuffer* target = data->second.buffer;
  const NSUInteger offset = data->second.offset;
  SIM_REQUIRE(grid >= n, "exogpu_fma: the grid covers fewer threads than elements");
  SIM_REQUIRE(offset + std::uint64_t{n} * sizeof(float) <= target->bytes_.size(),
              "exogpu_fma: elements run past the end of buffer(0) (out-of-bounds access)");
  [buffer_ encode:[target, offset, n, rounds] {
    run_fma(reinterpret_cast<float*>(target->bytes_.data() + offset), n, rounds);
  }];
}
- (void)endEncoding {
  [self live:"endEncoding"];
  ended_ = true;
  [buffer_ encoderEnded];
}
- (void)teardown {
  [buffer_ release];
  slots_.clear();
}
@end

@implementation SimCommandBuffer
- (id)initWithQueue:(SimQueue*)queue {
  if ((self = [super init])) {
    queue_ = [queue retain];
    status_ = MTLCommandBufferStatusNotEnqueued;
    encoding_ = false;
    start_ = end_ = 0;
    error_ = nil;
  }
  return self;
}
- (SimDevice*)device {
  return queue_->device_;
}
- (void)encodable:(const char*)what {
  [self check:what];
  SIM_REQUIRE(status_ == MTLCommandBufferStatusNotEnqueued,
              std::string(what) + " on a command buffer already committed");
  SIM_REQUIRE(!encoding_, std::string(what) + " while another encoder is still open");
}
- (void)encode:(std::function<void()>)command {
  commands_.push_back(std::move(command));
}
- (void)use:(id)resource {
  resources_.push_back([resource retain]);
}
- (void)encoderEnded {
  encoding_ = false;
}
- (id<MTLBlitCommandEncoder>)blitCommandEncoder {
  [self encodable:"blitCommandEncoder"];
  encoding_ = true;
  SimBlitEncoder* encoder = [[SimBlitEncoder alloc] init];
  encoder->buffer_ = [self retain];
  encoder->ended_ = false;
  return [encoder autorelease];
}
- (id<MTLComputeCommandEncoder>)computeCommandEncoder {
  [self encodable:"computeCommandEncoder"];
  encoding_ = true;
  SimComputeEncoder* encoder = [[SimComputeEncoder alloc] init];
  encoder->buffer_ = [self retain];
  encoder->ended_ = false;
  encoder->pipeline_ = nil;
  return [encoder autorelease];
}
- (void)encodeSignalEvent:(id<MTLEvent>)event value:(uint64_t)value {
  [self encodable:"encodeSignalEvent"];
  SIM_REQUIRE(event != nil, "encodeSignalEvent: nil event");
  SimEvent* e = (SimEvent*)event;
  [e check:"encodeSignalEvent"];
  [self use:e];
  [self encode:[e, value] { [e setSignaledValue:value]; }];
}
- (void)encodeWaitForEvent:(id<MTLEvent>)event value:(uint64_t)value {
  [self encodable:"encodeWaitForEvent"];
  SIM_REQUIRE(event != nil, "encodeWaitForEvent: nil event");
  SimEvent* e = (SimEvent*)event;
  [e check:"encodeWaitForEvent"];
  [self use:e];
  [self encode:[e, value] { [e waitFor:value]; }];
}
- (void)addCompletedHandler:(MTLCommandBufferHandler)block {
  [self check:"addCompletedHandler"];
  SIM_REQUIRE(status_ == MTLCommandBufferStatusNotEnqueued,
              "addCompletedHandler: on a command buffer already committed");
  handlers_.push_back(Block_copy(block));
}
- (void)commit {
  [self check:"commit"];
  SIM_REQUIRE(!encoding_, "commit with an encoder still open (endEncoding missing)");
  SIM_REQUIRE(status_ == MTLCommandBufferStatusNotEnqueued, "commit of a command buffer twice");
  {
    SimDevice* device = [self device];
    std::lock_guard lock(device->fault_mutex_);
    fault_.swap(device->next_fault_);
  }
  status_ = MTLCommandBufferStatusCommitted;
  [self retain];  // the queue holds it until it has run
  objects().committed.fetch_add(1);
  [queue_ submit:self];
}
- (void)execute {
  @autoreleasepool {
    status_ = MTLCommandBufferStatusScheduled;
    start_ = now_seconds();
    if (fault_.empty()) {
      for (auto& command : commands_) command();
    }
    end_ = now_seconds();
    {
      std::lock_guard lock(mutex_);
      if (!fault_.empty()) {
        NSDictionary* info =
            [NSDictionary dictionaryWithObject:[NSString stringWithUTF8String:fault_.c_str()]
                                        forKey:NSLocalizedDescriptionKey];
        error_ = [[NSError alloc] initWithDomain:@"MTLCommandBufferErrorDomain"
                                            code:1
                                        userInfo:info];
      }
      status_ = fault_.empty() ? MTLCommandBufferStatusCompleted : MTLCommandBufferStatusError;
    }
    done_.notify_all();
    for (MTLCommandBufferHandler handler : handlers_) handler(self);
  }
  objects().committed.fetch_sub(1);
  [self release];
}
- (void)waitUntilCompleted {
  [self check:"waitUntilCompleted"];
  SIM_REQUIRE(status_ != MTLCommandBufferStatusNotEnqueued,
              "waitUntilCompleted on a command buffer never committed (would wait forever)");
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return status_ >= MTLCommandBufferStatusCompleted; });
}
- (MTLCommandBufferStatus)status {
  [self check:"status"];
  return status_.load();
}
- (NSError*)error {
  [self check:"error"];
  std::lock_guard lock(mutex_);
  return error_;
}
- (CFTimeInterval)GPUStartTime {
  [self check:"GPUStartTime"];
  return status_ >= MTLCommandBufferStatusCompleted ? start_ : 0;
}
- (CFTimeInterval)GPUEndTime {
  [self check:"GPUEndTime"];
  return status_ >= MTLCommandBufferStatusCompleted ? end_ : 0;
}
- (void)teardown {
  for (MTLCommandBufferHandler handler : handlers_) Block_release(handler);
  handlers_.clear();
  commands_.clear();
  for (id resource : resources_) [resource release];
  resources_.clear();
  [error_ release];
  error_ = nil;
  [queue_ release];
}
@end

@implementation SimQueue
- (id)initWithDevice:(SimDevice*)device {
  if ((self = [super init])) {
    device_ = device;
    state_ = std::make_shared<QueueState>();
    worker_ = std::thread([state = state_] {
      for (;;) {
        SimCommandBuffer* buffer = nil;
        {
          std::unique_lock lock(state->mutex);
          state->wake.wait(lock, [&] { return state->stopping || !state->work.empty(); });
          if (state->work.empty()) return;
          buffer = state->work.front();
          state->work.pop_front();
        }
        [buffer execute];
      }
    });
  }
  return self;
}
- (void)submit:(SimCommandBuffer*)buffer {
  {
    std::lock_guard lock(state_->mutex);
    state_->work.push_back(buffer);
  }
  state_->wake.notify_one();
}
- (id<MTLCommandBuffer>)commandBuffer {
  [self check:"commandBuffer"];
  return [[[SimCommandBuffer alloc] initWithQueue:self] autorelease];
}
- (void)teardown {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
  }
  state_->wake.notify_one();
  // The last command buffer may release the queue from the worker itself.
  if (worker_.get_id() == std::this_thread::get_id()) {
    worker_.detach();
  } else {
    worker_.join();
  }
  state_.reset();
}
@end

@implementation SimDevice
- (NSString*)name {
  return unified_ ? @"Simulated Metal GPU (unified memory)"
                  : @"Simulated Metal GPU (discrete, private memory)";
}
- (uint64_t)registryID {
  return 0x1000 + index_;
}
- (MTLDeviceLocation)location {
  return unified_ ? MTLDeviceLocationBuiltIn : MTLDeviceLocationSlot;
}
- (NSUInteger)locationNumber {
  return index_;
}
- (BOOL)hasUnifiedMemory {
  return unified_;
}
- (uint64_t)recommendedMaxWorkingSetSize {
  return working_set_;
}
- (NSUInteger)currentAllocatedSize {
  return allocated_.load();
}
- (NSUInteger)maxBufferLength {
  return NSUInteger{1} << 30;
}
- (id<MTLBuffer>)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options {
  SIM_REQUIRE(length > 0, "newBufferWithLength: zero length (Metal returns nil or fails)");
  const auto mode = static_cast<MTLStorageMode>((options >> 4) & 0xF);
  SIM_REQUIRE(mode == MTLStorageModeShared || mode == MTLStorageModePrivate,
              "newBufferWithLength: only shared and private storage are simulated");
  SIM_REQUIRE(unified_ ? mode == MTLStorageModeShared : true,
              "newBufferWithLength: private storage on a unified-memory device (exogpu uses shared)");
  if (length > [self maxBufferLength] || allocated_.load() + length > working_set_) return nil;
  SimBuffer* buffer = [[SimBuffer alloc] init];
  buffer->device_ = self;
  buffer->mode_ = mode;
  buffer->bytes_.assign(length, 0xCD);  // garbage, as fresh device memory is
  allocated_.fetch_add(length);
  return buffer;
}
- (id<MTLCommandQueue>)newCommandQueue {
  return [[SimQueue alloc] initWithDevice:self];
}
- (id<MTLSharedEvent>)newSharedEvent {
  SimEvent* event = [[SimEvent alloc] init];
  event->value_ = 0;
  return event;
}
- (id<MTLLibrary>)newLibraryWithSource:(NSString*)source
                               options:(MTLCompileOptions*)options
                                 error:(NSError**)error {
  SIM_REQUIRE(options == nil, "newLibraryWithSource: compile options are not simulated");
  const std::string text = source != nil ? [source UTF8String] : "";
  // The one kernel the simulation can run, recognised by its signature.
  std::vector<std::string> kernels;
  const bool fma = text.find("#include <metal_stdlib>") != std::string::npos &&
                   text.find("kernel void exogpu_fma(device float* data [[buffer(0)]]") !=
                       std::string::npos &&
                   text.find("constant uint& count [[buffer(1)]]") != std::string::npos &&
                   text.find("constant uint& iterations [[buffer(2)]]") != std::string::npos &&
                   text.find("[[thread_position_in_grid]]") != std::string::npos;
  if (fma) kernels.emplace_back("exogpu_fma");
  if (kernels.empty()) {
    if (error != nullptr) {
      NSDictionary* info = [NSDictionary
          dictionaryWithObject:@"simulated Metal: no kernel it can run in this source"
                        forKey:NSLocalizedDescriptionKey];
      *error = [NSError errorWithDomain:@"MTLLibraryErrorDomain" code:3 userInfo:info];
    }
    return nil;
  }
  SimLibrary* library = [[SimLibrary alloc] init];
  library->kernels_ = std::move(kernels);
  return library;
}
- (id<MTLComputePipelineState>)newComputePipelineStateWithFunction:(id<MTLFunction>)function
                                                             error:(NSError**)error {
  (void)error;
  SIM_REQUIRE(function != nil, "newComputePipelineStateWithFunction: nil function");
  SimFunction* f = (SimFunction*)function;
  [f check:"newComputePipelineStateWithFunction"];
  SimPipeline* pipeline = [[SimPipeline alloc] init];
  pipeline->kernel_ = f->name_;
  return pipeline;
}
// Devices live for the whole process, like Metal's.
- (id)retain {
  return self;
}
- (oneway void)release {
}
@end

namespace {

const std::vector<SimDevice*>& devices() {
  static const std::vector<SimDevice*> all = [] {
    std::vector<SimDevice*> out;
    for (unsigned i = 0; i < 2; ++i) {
      SimDevice* device = [[SimDevice alloc] init];
      device->index_ = i;
      device->unified_ = i == 0 ? YES : NO;
      device->working_set_ = (i == 0 ? std::uint64_t{6} : std::uint64_t{4}) << 30;
      device->allocated_ = 0;
      out.push_back(device);
    }
    return out;
  }();
  return all;
}

}  // namespace

extern "C" NSArray* MTLCopyAllDevices(void) {
  const auto& all = devices();
  return [[NSArray alloc] initWithObjects:all[0], all[1], nil];
}

extern "C" id<MTLDevice> MTLCreateSystemDefaultDevice(void) { return devices()[0]; }

extern "C" long MTLSimLiveObjects(void) {
  for (int i = 0; i < 2000 && objects().committed.load() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::lock_guard lock(objects().mutex);
  return static_cast<long>(objects().live.size());
}

extern "C" void MTLSimCheckTeardown(void) {
  if (MTLSimLiveObjects() == 0) return;
  std::map<std::string, int> counts;
  {
    std::lock_guard lock(objects().mutex);
    for (id object : objects().live) ++counts[class_name(object)];
  }
  std::string list;
  for (const auto& [name, count] : counts) {
    list += (list.empty() ? "" : ", ") + std::to_string(count) + " " + name;
  }
  sim_fail("objects still alive at teardown: " + list);
}

extern "C" void MTLSimFailNextCommandBuffer(unsigned device, const char* message) {
  SIM_REQUIRE(device < devices().size(), "MTLSimFailNextCommandBuffer: no such device");
  SimDevice* d = devices()[device];
  std::lock_guard lock(d->fault_mutex_);
  d->next_fault_ = message != nullptr && *message != '\0' ? message : "simulated GPU fault";
}
