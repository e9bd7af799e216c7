#!/usr/bin/env bash
# Prepares what the DirectML backend needs to run here, on Linux, for real:
# Windows binaries under Wine 8 (whose d3d12.dll is vkd3d on Vulkan), on the
# lavapipe of Mesa 25, with Microsoft's DirectML.dll 1.12.1.
#
#   source tools/directml-stack.sh DIR   # sets DML_STACK_OK, DML_STACK_REASON
#                                        # and exports what `wine` needs
#
# Everything lands in DIR (a cache: a second run reuses it). Nothing of the
# system changes: Mesa 25 is unpacked into DIR and chosen with
# VK_ICD_FILENAMES, so the system lavapipe that the Linux suites validate
# against stays as it is. Why these versions:
# - Mesa 22.3's lavapipe lacks VK_EXT_descriptor_indexing; vkd3d then drops
#   descriptor tables, and DirectML runs but computes nothing.
# - DirectML 1.13 and later ship only DXIL shaders, which the vkd3d 1.6 in
#   Wine 8 cannot compile; 1.12.1 still has DXBC ones. It comes from the
#   Windows wheel of onnxruntime-directml 1.16.3 and is never committed.
dml_stack_prepare() {
  local dir=$1
  DML_STACK_OK=0
  DML_STACK_REASON=""
  local missing=()
  command -v wine >/dev/null || missing+=(wine)
  command -v xvfb-run >/dev/null || missing+=(xvfb-run)
  command -v x86_64-w64-mingw32-g++-posix >/dev/null || missing+=(x86_64-w64-mingw32-g++-posix)
  if ((${#missing[@]})); then
    DML_STACK_REASON="${missing[*]} not installed (Debian: wine wine64 xvfb xauth g++-mingw-w64-x86-64; tools/install-deps.sh installs them)"
    return 0
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  # Mesa 25 lavapipe from bookworm-backports: the machine's own Debian entry
  # with the suite changed, in an apt state of its own under DIR.
  local mesa="$dir/mesa25"
  if [[ ! -f "$mesa/lvp_icd.json" ]]; then
    local apt="$dir/apt"
    rm -rf "$apt" "$mesa"
    mkdir -p "$apt/parts" "$apt/lists/partial" "$apt/archives/partial" "$apt/debs"
    local sources=/etc/apt/sources.list.d/debian.sources
    if [[ ! -f $sources ]]; then
      DML_STACK_REASON="$sources not found: cannot add bookworm-backports for Mesa 25"
      return 1
    fi
    # The first stanza is the main archive; keep its URIs and keyring.
    awk '/^$/{exit} {print}' "$sources" |
      sed 's/^Suites: .*/Suites: bookworm-backports/' >"$apt/parts/backports.sources"
    local opts=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$apt/parts"
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives"
      -o "Dir::Cache::pkgcache=$apt/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$apt/srcpkgcache.bin")
    apt-get "${opts[@]}" update -qq || { DML_STACK_REASON="apt-get update of bookworm-backports failed"; return 1; }
    (cd "$apt/debs" && apt-get "${opts[@]}" download -qq \
      mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports \
      libdrm-amdgpu1/bookworm-backports libdrm-common/bookworm-backports) 2>&1 |
      grep -v unsandboxed || true
    mkdir -p "$mesa"
    local deb
    for deb in "$apt"/debs/*.deb; do dpkg-deb -x "$deb" "$mesa"; done
    local lib="$mesa/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
    if [[ ! -f $lib ]]; then
      DML_STACK_REASON="mesa-vulkan-drivers from bookworm-backports has no libvulkan_lvp.so"
      return 1
    fi
    sed "s#\"library_path\": \"[^\"]*\"#\"library_path\": \"$lib\"#" \
      "$mesa/usr/share/vulkan/icd.d/lvp_icd.json" >"$mesa/lvp_icd.json"
    rm -rf "$apt"
  fi

  # DirectML.dll 1.12.1, from the Windows wheel of onnxruntime-directml 1.16.3.
  local dml="$dir/directml-1.12.1"
  if [[ ! -f "$dml/DirectML.dll" ]]; then
    local wheel="$dir/wheel"
    rm -rf "$wheel" && mkdir -p "$wheel" "$dml"
    python3 -m pip download -q --no-deps --only-binary=:all: --platform win_amd64 \
      --python-version 3.11 onnxruntime-directml==1.16.3 -d "$wheel" ||
      { DML_STACK_REASON="pip download of onnxruntime-directml 1.16.3 failed"; return 1; }
    unzip -q -j -o "$wheel"/*.whl '*/DirectML.dll' -d "$dml" ||
      { DML_STACK_REASON="the onnxruntime-directml wheel has no DirectML.dll"; return 1; }
    rm -rf "$wheel"
  fi

  export WINEPREFIX="$dir/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  export VK_ICD_FILENAMES="$mesa/lvp_icd.json"
  export DML_STACK_DIRECTML_DLL="$dml/DirectML.dll"
  if [[ ! -f "$WINEPREFIX/system.reg" ]]; then
    # No X needed to create the prefix; DISPLAY unset keeps it off any screen.
    env -u DISPLAY wine wineboot --init >/dev/null 2>&1 || true
    wineserver -w
  fi
  DML_STACK_OK=1
}
