// Objective-C++ on GCC's Objective-C runtime: clang gives every .mm function
// the runtime's personality routine, __gnu_objc_personality_v0, and GCC's
// routine does not understand C++ exceptions, so a C++ catch in a .mm file
// never matches and a DeviceError thrown through one ends the process.
// exogpu's Objective-C++ uses C++ exceptions only (no @try, no @throw), so
// its frames are served by the C++ personality instead: this definition is
// hidden, so it binds inside each binary and leaves libobjc's alone.
// Not built on Apple platforms, whose runtime's personality defers to C++.
#include <unwind.h>

extern "C" _Unwind_Reason_Code __gxx_personality_v0(int version, _Unwind_Action actions,
                                                    _Unwind_Exception_Class exception_class,
                                                    _Unwind_Exception* exception,
                                                    _Unwind_Context* context);

extern "C" __attribute__((visibility("hidden"))) _Unwind_Reason_Code __gnu_objc_personality_v0(
    int version, _Unwind_Action actions, _Unwind_Exception_Class exception_class,
    _Unwind_Exception* exception, _Unwind_Context* context) {
  return __gxx_personality_v0(version, actions, exception_class, exception, context);
}
