# The Metal backend's toolchain, included from the top-level CMakeLists.txt
# (Objective-C++ must be enabled where every target using it can see it).
#
# macOS: Objective-C++ on Apple's runtime, linked against Foundation; Metal
# itself is opened at run time, so no framework beyond Foundation is linked.
#
# Elsewhere there is no Metal, but the backend still builds, for the tests
# against the simulated Metal (tests/cpp/sim_metal): clang's Objective-C++
# on GCC's Objective-C runtime, GNUstep-base for Foundation and
# libBlocksRuntime for blocks (Debian: clang libgnustep-base-dev
# libobjc-12-dev libblocksruntime-dev). Python wheels leave it out off Apple
# platforms (pyproject.toml), since the module would then need GNUstep.
#
# Sets EXOGPU_METAL_BUILT and EXOGPU_METAL_UNAVAILABLE (why not, in words
# for `exogpu backends`), and the interface target exogpu_objc_runtime.
option(EXOGPU_METAL "Build the Metal backend (off Apple platforms: for the simulated Metal)" ON)
set(EXOGPU_METAL_BUILT OFF)
set(EXOGPU_METAL_UNAVAILABLE "")

if(NOT EXOGPU_METAL)
  if(APPLE)
    set(EXOGPU_METAL_UNAVAILABLE "this build has no Metal backend (built with EXOGPU_METAL=OFF)")
  else()
    set(EXOGPU_METAL_UNAVAILABLE
      "Metal is Apple's and this is not macOS: this build has no Metal backend (off Apple platforms it is built only for tests against the simulated Metal)")
  endif()
  message(STATUS "exogpu: Metal backend off (EXOGPU_METAL=OFF)")
  return()
endif()

if(APPLE)
  enable_language(OBJCXX)
  find_library(EXOGPU_FOUNDATION Foundation REQUIRED)
  add_library(exogpu_objc_runtime INTERFACE)
  target_compile_options(exogpu_objc_runtime INTERFACE
    $<$<COMPILE_LANGUAGE:OBJCXX>:-fno-objc-arc -fobjc-exceptions>)
  target_link_libraries(exogpu_objc_runtime INTERFACE ${EXOGPU_FOUNDATION})
  set(EXOGPU_METAL_BUILT ON)
  message(STATUS "exogpu: Metal backend on (Apple runtime, ${EXOGPU_FOUNDATION})")
  return()
endif()

# GNUstep on GCC's Objective-C runtime.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  set(_objcxx ${CMAKE_CXX_COMPILER})
else()
  find_program(_objcxx NAMES clang++ clang++-16 clang++-15 clang++-14)
endif()
file(GLOB _gcc_include_dirs /usr/lib/gcc/*/*/include)
find_path(EXOGPU_OBJC_INCLUDE_DIR objc/objc.h PATHS ${_gcc_include_dirs} NO_DEFAULT_PATH)
file(GLOB _gcc_lib_dirs /usr/lib/gcc/*/*)
find_library(EXOGPU_OBJC_LIBRARY objc PATHS ${_gcc_lib_dirs})
find_path(EXOGPU_GNUSTEP_INCLUDE_DIR Foundation/Foundation.h PATH_SUFFIXES GNUstep)
find_library(EXOGPU_GNUSTEP_BASE_LIBRARY gnustep-base)
find_path(EXOGPU_BLOCKS_INCLUDE_DIR Block.h)
find_library(EXOGPU_BLOCKS_LIBRARY BlocksRuntime)
set(_missing "")
foreach(_part _objcxx EXOGPU_OBJC_INCLUDE_DIR EXOGPU_OBJC_LIBRARY EXOGPU_GNUSTEP_INCLUDE_DIR
        EXOGPU_GNUSTEP_BASE_LIBRARY EXOGPU_BLOCKS_INCLUDE_DIR EXOGPU_BLOCKS_LIBRARY)
  if(NOT ${_part})
    string(REPLACE "_objcxx" "clang++" _name ${_part})
    string(REPLACE "EXOGPU_" "" _name ${_name})
    string(APPEND _missing " ${_name}")
  endif()
endforeach()
if(_missing)
  set(EXOGPU_METAL_UNAVAILABLE
    "Metal is Apple's and this is not macOS: this build has no Metal backend (the GNUstep toolchain for the simulated Metal was not found, missing:${_missing})")
  message(STATUS "exogpu: Metal backend skipped, GNUstep toolchain incomplete, missing:${_missing} "
                 "(Debian: clang libgnustep-base-dev libobjc-12-dev libblocksruntime-dev)")
  return()
endif()

if(NOT CMAKE_OBJCXX_COMPILER)
  set(CMAKE_OBJCXX_COMPILER ${_objcxx})
endif()
enable_language(OBJCXX)
add_library(exogpu_objc_runtime INTERFACE)
target_compile_options(exogpu_objc_runtime INTERFACE
  $<$<COMPILE_LANGUAGE:OBJCXX>:-fobjc-runtime=gcc -fblocks -fobjc-exceptions -fconstant-string-class=NSConstantString>)
target_compile_definitions(exogpu_objc_runtime INTERFACE
  $<$<COMPILE_LANGUAGE:OBJCXX>:GNUSTEP GNUSTEP_BASE_LIBRARY=1 GNU_RUNTIME=1>)
# GNUstep-base's headers include libobjc2's objc/blocks_runtime.h; a shim
# points it at <Block.h>.
target_include_directories(exogpu_objc_runtime SYSTEM INTERFACE
  $<$<COMPILE_LANGUAGE:OBJCXX>:${PROJECT_SOURCE_DIR}/tests/cpp/sim_metal/gnustep>
  $<$<COMPILE_LANGUAGE:OBJCXX>:${EXOGPU_OBJC_INCLUDE_DIR}>
  $<$<COMPILE_LANGUAGE:OBJCXX>:${EXOGPU_GNUSTEP_INCLUDE_DIR}>
  $<$<COMPILE_LANGUAGE:OBJCXX>:${EXOGPU_BLOCKS_INCLUDE_DIR}>)
target_link_libraries(exogpu_objc_runtime INTERFACE
  ${EXOGPU_GNUSTEP_BASE_LIBRARY} ${EXOGPU_OBJC_LIBRARY} ${EXOGPU_BLOCKS_LIBRARY})
set(EXOGPU_METAL_BUILT ON)
message(STATUS "exogpu: Metal backend on, for the simulated Metal (${CMAKE_OBJCXX_COMPILER}, "
               "${EXOGPU_GNUSTEP_BASE_LIBRARY}, ${EXOGPU_OBJC_LIBRARY})")
