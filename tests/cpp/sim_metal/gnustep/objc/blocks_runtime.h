// GNUstep-base's headers include libobjc2's blocks header; with GCC's
// Objective-C runtime (Debian's libobjc) the blocks runtime is
// libBlocksRuntime, whose header is <Block.h>.
#pragma once
#include <Block.h>
