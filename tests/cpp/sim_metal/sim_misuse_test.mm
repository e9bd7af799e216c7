// The simulated Metal's checks fire: each misuse below aborts the process
// with a message naming it (so a suite passing on the simulation means the
// backend does none of them), and the same calls made correctly run.
#include <gtest/gtest.h>

#include "metal_subset.h"
#include "sim_metal.h"

#include <unistd.h>

#include <atomic>
#include <cstring>

namespace {

class SimMisuse : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }

  // A device and a queue for one death test, made inside the child process.
  struct Setup {
    id<MTLDevice> device;
    id<MTLCommandQueue> queue;
    id<MTLBuffer> a;
    id<MTLBuffer> b;
  };
  static Setup make(unsigned device_index) {
    NSArray* all = MTLCopyAllDevices();
    id<MTLDevice> device = [all objectAtIndex:device_index];
    [all release];
    const MTLResourceOptions mode =
        [device hasUnifiedMemory] ? MTLResourceStorageModeShared : MTLResourceStorageModePrivate;
    return {device, [device newCommandQueue], [device newBufferWithLength:64 options:mode],
            [device newBufferWithLength:64 options:mode]};
  }
  static void release(Setup& s) {
    [s.b release];
    [s.a release];
    [s.queue release];
  }
};

TEST_F(SimMisuse, CorrectUseRunsAndLeavesNothingBehind) {
  @autoreleasepool {
    Setup s = make(1);
    id<MTLCommandBuffer> buffer = [s.queue commandBuffer];
    id<MTLBlitCommandEncoder> blit = [buffer blitCommandEncoder];
    [blit fillBuffer:s.a range:NSMakeRange(0, 64) value:7];
    [blit copyFromBuffer:s.a sourceOffset:0 toBuffer:s.b destinationOffset:0 size:64];
    [blit endEncoding];
    std::atomic<int> handled{0};
    std::atomic<int>* counter = &handled;  // a block copies what it captures; atomics cannot be
    [buffer addCompletedHandler:^(id<MTLCommandBuffer>) { counter->fetch_add(1); }];
    [buffer commit];
    [buffer waitUntilCompleted];
    EXPECT_EQ([buffer status], MTLCommandBufferStatusCompleted);
    EXPECT_EQ([s.a contents], nullptr);  // private storage has no CPU view
    release(s);
    for (int i = 0; i < 1000 && handled.load() == 0; ++i) usleep(1000);
    EXPECT_EQ(handled.load(), 1);
  }
  EXPECT_EQ(MTLSimLiveObjects(), 0);
}

TEST_F(SimMisuse, CommitWithAnOpenEncoderAborts) {
  EXPECT_DEATH(
      {
        Setup s = make(0);
        id<MTLCommandBuffer> buffer = [s.queue commandBuffer];
        id<MTLBlitCommandEncoder> blit = [buffer blitCommandEncoder];
        [blit fillBuffer:s.a range:NSMakeRange(0, 8) value:1];
        [buffer commit];
      },
      "commit with an encoder still open");
}

TEST_F(SimMisuse, DoubleCommitAborts) {
  EXPECT_DEATH(
      {
        Setup s = make(0);
        id<MTLCommandBuffer> buffer = [s.queue commandBuffer];
        [buffer commit];
        [buffer commit];
      },
      "commit of a command buffer twice");
}

TEST_F(SimMisuse, HandlerAddedAfterCommitAborts) {
  EXPECT_DEATH(
      {
        Setup s = make(0);
        id<MTLCommandBuffer> buffer = [s.queue commandBuffer];
        [buffer commit];
        [buffer addCompletedHandler:^(id<MTLCommandBuffer>) {}];
      },
      "addCompletedHandler: on a command buffer already committed");
}

TEST_F(SimMisuse, OutOfBoundsCopyAborts) {
  EXPECT_DEATH(
      {
        Setup s = make(1);
        id<MTLCommandBuffer> buffer = [s.queue commandBuffer];
        id<MTLBlitCommandEncoder> blit = [buffer blitCommandEncoder];
        [blit copyFromBuffer:s.a sourceOffset:8 toBuffer:s.b destinationOffset:0 size:57];
      },
      "blit copy reads past the end of its source buffer");
  EXPECT_DEATH(
      {
        Setup s = make(1);
        id<MTLCommandBuffer> buffer = [s.queue commandBuffer];
        id<MTLBlitCommandEncoder> blit = [buffer blitCommandEncoder];
        [blit fillBuffer:s.b range:NSMakeRange(60, 5) value:0];
      },
      "fillBuffer range runs past the end of the buffer");
}

TEST_F(SimMisuse, UseOfAReleasedObjectAborts) {
  EXPECT_DEATH(
      {
        Setup s = make(0);
        [s.a release];
        (void)[s.a length];
      },
      "length sent to a released SimBuffer");
  EXPECT_DEATH(
      {
        Setup s = make(0);
        [s.queue release];
        (void)[s.queue commandBuffer];
      },
      "commandBuffer sent to a released SimQueue");
}

TEST_F(SimMisuse, BufferOfAnotherDeviceAborts) {
  EXPECT_DEATH(
      {
        Setup unified = make(0);
        Setup discrete = make(1);
        id<MTLCommandBuffer> buffer = [discrete.queue commandBuffer];
        id<MTLBlitCommandEncoder> blit = [buffer blitCommandEncoder];
        [blit copyFromBuffer:unified.a sourceOffset:0 toBuffer:discrete.b destinationOffset:0
                        size:8];
      },
      "the buffer belongs to another device");
}

TEST_F(SimMisuse, ObjectsAliveAtTeardownAbort) {
  EXPECT_DEATH(
      {
        Setup s = make(1);
        [s.queue release];
        [s.b release];
        MTLSimCheckTeardown();  // s.a is still alive
      },
      "objects still alive at teardown: 1 SimBuffer");
}

}  // namespace
