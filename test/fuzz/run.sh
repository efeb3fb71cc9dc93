#!/bin/sh
# Fuzz the native shim's reply reader with libFuzzer + AddressSanitizer + UBSan. Not part of CI
# (npm test replays the corpus instead: test/fuzz/fuzz-replay.test.ts).
#   test/fuzz/run.sh [SECONDS]      (default 300; needs clang: apt-get install clang; and a build)
# Builds into $TMPDIR, fuzzes from a copy of the seed corpus, and ends with libFuzzer's stats
# (number_of_executed_units, average_exec_per_sec). A crash leaves its input as crash-* there.
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:-300}
work=$(mktemp -d "${TMPDIR:-/tmp}/kb-fuzz-XXXXXX")
node scripts/native-header.mjs > "$work/kb-generated.h"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I "$work" -I src/shim/native -o "$work/framed-reply-fuzz" \
  test/fuzz/framed-reply-fuzz.c src/shim/native/framed-reply.c src/shim/native/utf8.c
cp -R test/fuzz/corpus "$work/corpus"
echo "fuzzing for ${seconds}s in $work"
cd "$work"
./framed-reply-fuzz -max_total_time="$seconds" -max_len=65536 -dict="$OLDPWD/test/fuzz/frame.dict" \
  -print_final_stats=1 -artifact_prefix="$work/" corpus
