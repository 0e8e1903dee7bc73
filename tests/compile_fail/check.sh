#!/usr/bin/env bash
# Compile-fail check, used with Meson's should_fail: exits 1 (the expected
# "failure") only when the file fails to compile AND the compiler output holds
# every pattern listed in the file's "// expect: ..." lines. A file that
# compiles, or fails for another reason, exits 0 and so fails the test.
set -u
cxx=$1 src=$2 root=$3
# a shape error must stop the compiler quickly, with its message, without -fmax-errors:
# a cascade that runs away (the type core once reached 8.9 GB) hits this cap and fails the test
ulimit -v $((1536 * 1024))
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if "$cxx" -std=c++20 -fsyntax-only -I"$root/include" -I"$root/kernels" "$src" >"$log" 2>&1; then
  echo "unexpectedly compiled: $src"
  exit 0
fi
status=1
while IFS= read -r pat; do
  if ! grep -qF -- "$pat" "$log"; then
    echo "missing from the diagnostic: $pat"
    status=0
  fi
done < <(sed -n 's#^// expect: ##p' "$src")
[ "$status" = 1 ] && echo "failed to compile as expected, diagnostic names: $(sed -n 's#^// expect: ##p' "$src" | tr '\n' ' ')"
exit $status
