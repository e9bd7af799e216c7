#ifdef EXOGPU_HAVE_VULKAN
#include <gtest/gtest.h>
TEST(Vulkan, Placeholder) {}
#endif
