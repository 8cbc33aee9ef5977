#!/bin/sh
# wordfreq: count words read from stdin or from files, most frequent first.
#   wordfreq [-n N] [FILE...]
set -eu
top=0
if [ "${1:-}" = "-n" ]; then
    [ $# -ge 2 ] || { echo "wordfreq: -n needs a number" >&2; exit 2; }
    top=$2
    shift 2
fi
for f in "$@"; do
    [ -r "$f" ] || { echo "wordfreq: cannot read $f" >&2; exit 1; }
done
cat "$@" | tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | grep -v '^$' |
    sort | uniq -c | sort -k1,1nr -k2 |
    awk -v top="$top" 'top == 0 || NR <= top { printf "%s %d\n", $2, $1 }'
