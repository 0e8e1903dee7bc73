#!/usr/bin/env bash
# Build and run tests/consumers/consumer.cpp the way a downstream user would consume ctrec.
#
#   check.sh MODE SRCROOT [SCRATCH]
#
#   MODE      subproject | pkgconfig | cmake | plain
#   SRCROOT   the ctrec source tree (repository root)
#   SCRATCH   directory for temporary files; the script works in SCRATCH/consumer-MODE,
#             which it wipes first. Default: a fresh mktemp -d, removed on exit.
set -euo pipefail

usage() { echo "usage: $0 subproject|pkgconfig|cmake|plain SRCROOT [SCRATCH]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
mode=$1
case "$mode" in subproject|pkgconfig|cmake|plain) ;; *) usage ;; esac
src=$(cd "$2" && pwd)
here="$src/tests/consumers"
cxx=${CXX:-g++}

if [[ $# -eq 3 ]]; then
  mkdir -p "$3"
  work="$(cd "$3" && pwd)/consumer-$mode"
  rm -rf "$work"
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
echo "== ctrec consumer check: mode=$mode src=$src work=$work"

# Configure, build and install ctrec (no tests) into $work/prefix.
install_ctrec() {
  meson setup "$work/ctrec-build" "$src" -Dtests=false -Dbench=false -Dexamples=false --prefix="$work/prefix"
  meson install -C "$work/ctrec-build" --quiet
}

case "$mode" in
  subproject)
    cp -r "$here/meson_parent" "$work/parent"
    cp "$here/consumer.cpp" "$work/parent/"
    mkdir -p "$work/parent/subprojects"
    ln -s "$src" "$work/parent/subprojects/ctrec"
    # Force the subproject even if a ctrec.pc happens to be installed on the system.
    meson setup "$work/build" "$work/parent" --force-fallback-for=ctrec
    meson compile -C "$work/build"
    "$work/build/consumer"
    ;;
  pkgconfig)
    install_ctrec
    pcdir="$work/prefix/share/pkgconfig"
    cflags=$(PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" pkg-config --cflags ctrec)
    echo "pkg-config --cflags ctrec: $cflags"
    # shellcheck disable=SC2086  # cflags must be word-split
    "$cxx" -O2 $cflags "$here/consumer.cpp" -o "$work/consumer"
    "$work/consumer"
    ;;
  cmake)
    install_ctrec
    cmake -S "$here/cmake" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$(command -v "$cxx")"
    cmake --build "$work/build"
    "$work/build/app"
    ;;
  plain)
    "$cxx" -std=c++20 -O2 -I "$src/include" -I "$src/kernels" "$here/consumer.cpp" -o "$work/consumer"
    "$work/consumer"
    ;;
esac
echo "== ctrec consumer check: mode=$mode OK"
