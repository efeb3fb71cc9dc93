#!/bin/sh
# Fuzz the native shim's reply parser with libFuzzer + AddressSanitizer + UBSan. Not part of CI.
#   test/fuzz/run.sh [SECONDS]      (default 300; needs clang: apt-get install clang)
# Builds into $TMPDIR, fuzzes from a copy of the seed corpus, and ends with libFuzzer's stats
# (number_of_executed_units, average_exec_per_sec). A crash leaves its input as crash-* there.
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:-300}
work=$(mktemp -d "${TMPDIR:-/tmp}/kb-fuzz-XXXXXX")
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I src/shim/native -o "$work/reply-parser-fuzz" \
  test/fuzz/reply-parser-fuzz.c src/shim/native/reply-parser.c src/shim/native/utf8.c
cp -R test/fuzz/corpus "$work/corpus"
echo "fuzzing for ${seconds}s in $work"
cd "$work"
./reply-parser-fuzz -max_total_time="$seconds" -max_len=16384 -dict="$OLDPWD/test/fuzz/reply.dict" \
  -print_final_stats=1 -artifact_prefix="$work/" corpus
