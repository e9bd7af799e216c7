// Test hooks of the simulated Metal (libsim_metal.so), beside the Metal API
// it implements (metal_subset.h). Tests find them with dlsym in the library
// the backend opened, so one process sees one simulation.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// Simulation objects alive now (devices excluded), once committed work has
// drained (waits up to two seconds for it).
long MTLSimLiveObjects(void);
// Aborts, naming each one, when any simulation object is still alive: call it
// once everything the code under test made should be gone.
void MTLSimCheckTeardown(void);
// The next command buffer committed on device `device` (0 or 1) ends with
// status MTLCommandBufferStatusError and an NSError whose description is
// `message`, as a GPU fault would.
void MTLSimFailNextCommandBuffer(unsigned device, const char* message);

#ifdef __cplusplus
}
#endif
