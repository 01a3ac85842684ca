#!/usr/bin/env bash
# `facenet embed` over several images runs one worker per core (or
# $FACENET_THREADS): the output must be the one-worker output byte for byte,
# in input order, and an unreadable image in the middle must fail alone
# (exit 4, its message on stderr) while the others are still written.
. "$(dirname "$0")/lib/common.sh"
require_demo
require_models

imgs=()
for i in 3 1 2 5; do imgs+=("$demo/sample$i.jpg"); done
head -c 3000 "$demo/sample4.jpg" > "$tmp/broken.jpg"
list=("${imgs[0]}" "${imgs[1]}" "$tmp/broken.jpg" "${imgs[2]}" "${imgs[3]}")

FACENET_THREADS=1 "$bin" embed --all-faces --format csv -o "$tmp/one.csv" "${list[@]}" \
  2> "$tmp/one.err"
check "one worker: broken image gives exit 4" 4 $?
for n in 2 3; do
  FACENET_THREADS=$n "$bin" embed --all-faces --format csv -o "$tmp/many$n.csv" "${list[@]}" \
    2> "$tmp/many$n.err"
  check "$n workers: broken image gives exit 4" 4 $?
  expect "$n workers: same rows, same order, same bytes" cmp -s "$tmp/one.csv" "$tmp/many$n.csv"
  expect "$n workers: same messages" cmp -s "$tmp/one.err" "$tmp/many$n.err"
done
expect "the broken image is named on stderr" grep -q "broken.jpg" "$tmp/one.err"
expect "rows of all four good photos, in input order" \
  test "$(tail -n +2 "$tmp/one.csv" | cut -d, -f1 | uniq | tr -d '"' | xargs -n1 basename | tr '\n' ' ')" \
  = "sample3.jpg sample1.jpg sample2.jpg sample5.jpg "

# every worker embeds with the options asked for (each worker loads its own
# embedder): jittered embeddings from 2 workers equal 1 worker's, and differ
# from the plain ones
two=("${imgs[1]}" "${imgs[2]}")
FACENET_THREADS=1 "$bin" embed --jitter 2 --format csv -o "$tmp/j1.csv" "${two[@]}" 2>/dev/null
check "jitter, one worker" 0 $?
FACENET_THREADS=2 "$bin" embed --jitter 2 --format csv -o "$tmp/j2.csv" "${two[@]}" 2>/dev/null
check "jitter, two workers" 0 $?
expect "jitter: 2 workers give 1 worker's bytes" cmp -s "$tmp/j1.csv" "$tmp/j2.csv"
FACENET_THREADS=1 "$bin" embed --format csv -o "$tmp/plain.csv" "${two[@]}" 2>/dev/null
expect "jittered embeddings are not the plain ones" bash -c "! cmp -s '$tmp/j1.csv' '$tmp/plain.csv'"

for j in 0 abc 101; do
  "$bin" embed --jitter "$j" "${two[0]}" >/dev/null 2>"$tmp/jerr"
  check "--jitter $j is a usage error" 2 $?
  expect "--jitter $j: says the range" grep -q -- "--jitter must be 1..100" "$tmp/jerr"
done

echo "embed_workers: $passed passed, $failed failed"
[ "$failed" = 0 ]
