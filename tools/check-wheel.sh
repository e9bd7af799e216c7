#!/usr/bin/env bash
# Builds the wheel and checks that auditwheel finds it manylinux-compliant and
# that the core needs no shared library beyond the C runtime (libc, libm, libdl):
# vendor runtimes are opened at run time, never linked.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf build/wheel-check && mkdir -p build/wheel-check
python3 -m pip wheel -q --no-deps --no-build-isolation -w build/wheel-check .
wheel=$(ls build/wheel-check/exogpu-*.whl)
report=$(auditwheel show "$wheel")
echo "$report" | tr '\n' ' ' | grep -Eo 'consistent with the following platform tag: "manylinux_[0-9_a-z]+"' \
  || { echo "$report"; echo "check-wheel: not manylinux-compliant"; exit 1; }
python3 - "$wheel" <<'PY'
import sys, zipfile, tempfile, subprocess, pathlib
allowed = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "ld-linux-x86-64.so.2"}
wheel = zipfile.ZipFile(sys.argv[1])
shipped = set(wheel.namelist())
for needed in ("exogpu/py.typed", "exogpu/_core.pyi", "exogpu/models/catalog.json"):
    if needed not in shipped:
        sys.exit(f"check-wheel: the wheel lacks {needed}")
with tempfile.TemporaryDirectory() as tmp:
    wheel.extractall(tmp)
    for so in pathlib.Path(tmp).rglob("_core*.so"):
        dyn = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
        needed = {line.split("[")[1].split("]")[0] for line in dyn.splitlines() if "(NEEDED)" in line}
        extra = needed - allowed
        print(f"{so.name} needs: {', '.join(sorted(needed))}")
        if extra:
            sys.exit(f"check-wheel: {so.name} links {', '.join(sorted(extra))}")
PY
