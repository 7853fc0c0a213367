#!/usr/bin/env bash
# Build utptrack_ros's ROS interfaces (msg/, srv/) with colcon against the ROS 2 kilted PyPI
# wheels installed in a venv, and make them importable from that venv with no sourcing:
#
#   bash scripts/build_interfaces.sh .venv
#   .venv/bin/python -c "from utptrack_ros.msg import TrackedTarget; from utptrack_ros.srv import InitTarget"
#
# What it does (each step idempotent; a second run with nothing changed takes ~1 s):
#  1. rewrites the wheels' baked-in /opt/python/cpXY-cpXY include paths in
#     <venv>/share/*/cmake/*rosidl_generator_pyExport.cmake to this venv's Python/numpy includes;
#  2. runs `colcon build` on this package with AMENT_PREFIX_PATH/CMAKE_PREFIX_PATH = the venv
#     and -DUTPTRACK_VENV_BUILD=ON (no copy of the Python sources, $ORIGIN RPATHs); its install
#     step also exports the CPU presets' onnxruntime graphs (runtime/prebuilt.py);
#  3. writes <site-packages>/utptrack_ros.pkg naming install/.../site-packages/utptrack_ros:
#     utptrack_ros/__init__.py calls pkgutil.extend_path, which reads such .pkg files, so
#     utptrack_ros.msg / .srv resolve there while every other module still comes from the
#     (editable) sources. (A .pth adding install/.../site-packages to sys.path would instead
#     let that half-package shadow the editable install when run outside the repo.)
#     It also symlinks install/lib/libutptrack_ros__*.so into <venv>/lib, which the wheels'
#     bootstrap puts on LD_LIBRARY_PATH: the typesupport dispatch finds the per-middleware
#     libraries by searching LD_LIBRARY_PATH at run time;
#  4. checks the import and a serialisation round trip in a clean environment.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_ARG="${1:-.venv}"
case "$VENV_ARG" in /*) VENV="$VENV_ARG" ;; *) VENV="$REPO/$VENV_ARG" ;; esac
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "build_interfaces: no python at $PY (run make setup)" >&2; exit 1; }

BUILD="$REPO/build"
INSTALL="$REPO/install"
LOG="$REPO/log"
log() { echo "build_interfaces: $*"; }

read -r PYVER SITE PYINC NPINC < <("$PY" - <<'EOF'
import sys, sysconfig
import numpy
print(f"{sys.version_info.major}.{sys.version_info.minor}", sysconfig.get_paths()["purelib"],
      sysconfig.get_paths()["include"], numpy.get_include())
EOF
)
[ -f "$PYINC/Python.h" ] || { echo "build_interfaces: Python.h not found in $PYINC (install the python dev headers)" >&2; exit 1; }

# -- 1. the wheels' baked-in include paths ------------------------------------------------
shopt -s nullglob
exports=("$VENV"/share/*/cmake/*rosidl_generator_pyExport.cmake)
shopt -u nullglob
[ ${#exports[@]} -gt 0 ] || { echo "build_interfaces: no rosidl_generator_py exports under $VENV/share (ROS wheels missing?)" >&2; exit 1; }
stale=$(grep -l '/opt/python/' "${exports[@]}" || true)
if [ -n "$stale" ]; then
  log "rewriting /opt/python include paths in $(echo "$stale" | wc -l) cmake export files"
  # shellcheck disable=SC2086
  sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NPINC}#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PYINC}#g" \
    $stale
  if grep -l '/opt/python/' "${exports[@]}"; then
    echo "build_interfaces: unexpected /opt/python paths left in the files above" >&2; exit 1
  fi
fi

# -- 2. colcon build, skipped when its inputs are unchanged ---------------------------------
INPUT_HASH=$(
  {
    echo "$VENV $PYVER $PYINC $NPINC"
    cd "$REPO" && cat CMakeLists.txt package.xml scripts/build_interfaces.sh msg/*.msg srv/*.srv launch/* config/*
    sha256sum utptrack_ros/weights/*.safetensors     # the prebuilt graphs (share/utptrack_ros/onnx) follow them
    ls "$SITE" | grep -E '^(ros_.*|torch-.*|onnx.*)\.dist-info$' || true   # ROS wheels, exporter versions
  } | sha256sum | cut -d' ' -f1
)
HASH_FILE="$INSTALL/.utptrack_interfaces.sha256"
PKG_SITE="$INSTALL/lib/python$PYVER/site-packages"

check_import() {
  # A clean environment, from outside the repo: no sourcing, no LD_LIBRARY_PATH.
  (cd / && env -i HOME="${HOME:-/root}" PATH=/usr/bin:/bin "$PY" - <<'EOF'
from utptrack_ros.msg import TrackedTarget
from utptrack_ros.srv import InitTarget
from rclpy.serialization import serialize_message, deserialize_message
m = TrackedTarget(target_id="x", state=TrackedTarget.STATE_LOST, center_x=1.5)
back = deserialize_message(serialize_message(m), TrackedTarget)
assert back.target_id == "x" and back.state == 2 and back.center_x == 1.5, back
req = InitTarget.Request(size_x=3.0)
assert deserialize_message(serialize_message(req), InitTarget.Request).size_x == 3.0
EOF
  )
}

if [ -f "$HASH_FILE" ] && [ "$(cat "$HASH_FILE")" = "$INPUT_HASH" ] && [ -f "$SITE/utptrack_ros.pkg" ] \
   && check_import 2>/dev/null; then
  log "interfaces up to date ($INSTALL)"
  exit 0
fi

log "colcon build of utptrack_ros (install: $INSTALL; log: log/build_interfaces.log;"
log "  includes exporting the CPU presets' onnxruntime graphs into share/utptrack_ros/onnx: ~20-100 s)"
mkdir -p "$LOG"
rm -f "$HASH_FILE"
# The venv lives inside the repo, and CMake refuses to export include directories (the venv's
# numpy headers) that lie inside the source tree; so colcon builds a staged copy of what the
# venv build needs (cp -a keeps mtimes, so unchanged files do not rebuild).
STAGE="$BUILD/_source/utptrack_ros"
rm -rf "$STAGE" && mkdir -p "$STAGE"
for item in CMakeLists.txt package.xml msg srv launch config; do
  [ -e "$REPO/$item" ] && cp -a "$REPO/$item" "$STAGE/"
done
CACHE="$BUILD/utptrack_ros/CMakeCache.txt"
if [ -f "$CACHE" ] && ! { grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$STAGE" "$CACHE" \
                          && grep -qx "CMAKE_INSTALL_PREFIX:PATH=$INSTALL" "$CACHE"; }; then
  rm -rf "$BUILD/utptrack_ros"   # configured elsewhere (e.g. by a colcon run by hand)
fi
if [ -f "$INSTALL/.colcon_install_layout" ] && [ "$(cat "$INSTALL/.colcon_install_layout")" != merged ]; then
  rm -rf "$INSTALL"              # an isolated-layout install from a colcon run by hand
fi
(
  cd "$REPO"
  export AMENT_PREFIX_PATH="$VENV"
  export CMAKE_PREFIX_PATH="$VENV"
  export PATH="$VENV/bin:$PATH"
  unset COLCON_PREFIX_PATH
  "$VENV/bin/colcon" --log-base "$LOG" build \
    --paths "$STAGE" \
    --build-base "$BUILD" --install-base "$INSTALL" --merge-install \
    --event-handlers console_cohesion+ status- summary- \
    --cmake-args \
      -DUTPTRACK_VENV_BUILD=ON \
      "-DUTPTRACK_VENV_LIBDIR=$VENV/lib" \
      "-DPython3_EXECUTABLE=$PY" \
      -DBUILD_TESTING=OFF \
      -DCMAKE_BUILD_TYPE=Release
) > "$REPO/log/build_interfaces.log" 2>&1 || {
  echo "build_interfaces: colcon build failed; last lines of log/build_interfaces.log:" >&2
  tail -40 "$REPO/log/build_interfaces.log" >&2
  exit 1
}

# -- 3. make utptrack_ros.msg/.srv importable from the venv --------------------------------
[ -d "$PKG_SITE/utptrack_ros/msg" ] || { echo "build_interfaces: $PKG_SITE/utptrack_ros/msg missing after the build" >&2; exit 1; }
# rosidl writes an empty utptrack_ros/__init__.py there; the sources' __init__ is the real one.
printf '%s\n' "$PKG_SITE/utptrack_ros" > "$SITE/utptrack_ros.pkg"

# The typesupport dispatch (rosidl_typesupport_c/cpp) looks the per-middleware libraries up by
# name on LD_LIBRARY_PATH at run time (RPATHs do not help there). The wheels' bootstrap .pth
# puts <venv>/lib on LD_LIBRARY_PATH for every venv python, so link our libraries there.
find "$VENV/lib" -maxdepth 1 -type l -name 'libutptrack_ros__*.so' -delete
for lib in "$INSTALL"/lib/libutptrack_ros__*.so; do
  ln -sf "$lib" "$VENV/lib/$(basename "$lib")"
done

# -- 4. verify ---------------------------------------------------------------------------
if ! check_import; then
  echo "build_interfaces: built, but 'from utptrack_ros.msg import TrackedTarget' fails in $VENV" >&2
  exit 1
fi
echo "$INPUT_HASH" > "$HASH_FILE"
log "built and importable: utptrack_ros.msg.TrackedTarget, utptrack_ros.srv.InitTarget"
