// GCC's Objective-C runtime (libobjc), which the Metal backend's GNUstep
// build brings into every test binary, allocates its class and method tables
// at load time and never frees them. LeakSanitizer would call that a leak at
// exit in every binary; these are not exogpu's, so they are suppressed here
// (LeakSanitizer looks this function up in the binary, so it must be exported).
extern "C" const char* __lsan_default_suppressions();
extern "C" __attribute__((visibility("default"))) const char* __lsan_default_suppressions() {
  return "leak:libobjc.so\nleak:libgnustep-base.so\n";
}
