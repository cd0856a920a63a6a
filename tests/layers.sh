#!/bin/sh
# tests/layers.sh — the layering of the source tree, read from the includes and the calls.
#
#   layers.sh SOURCE_DIR LIBRARY.a...
#
# 1. crdt/ includes nothing from ledger/ or net/; ledger/ nothing from net/.
# 2. net/'s library files include from ledger/ only ledger/sync.h, its seam; the programs in
#    net/cmd/ include nothing from ledger/ (they use the public API).
# 3. No loop between the files of each library: for every object file, the files whose functions
#    it calls (read with nm) form an order, so that no file depends, directly or through calls,
#    on one that depends on it.
# Prints each violation and exits 1 if there is one.
set -u
src=$1
shift
status=0

fail() {
    echo "layers: $*"
    status=1
}

# includes FILES... prints "file: included path" for each quoted include
includes() {
    grep -H -o '^#include "[^"]*"' "$@" 2>/dev/null | sed 's/:#include "/: /; s/"$//'
}

cd "$src" || exit 1
for line in $(includes crdt/*.c crdt/*.h | grep -E ': (ledger|net)/' | tr ' ' '@'); do
    fail "a lower layer includes a higher one: $(echo "$line" | tr '@' ' ')"
done
for line in $(includes ledger/*.c ledger/*.h | grep -E ': net/' | tr ' ' '@'); do
    fail "a lower layer includes a higher one: $(echo "$line" | tr '@' ' ')"
done
for line in $(includes net/*.c net/*.h | grep -E ': ledger/' | grep -v ': ledger/sync.h$' |
              tr ' ' '@'); do
    fail "net/ reaches past its seam (ledger/sync.h): $(echo "$line" | tr '@' ' ')"
done
for line in $(includes net/cmd/*.c net/cmd/*.h | grep -E ': ledger/' | tr ' ' '@'); do
    fail "a program includes the library's insides: $(echo "$line" | tr '@' ' ')"
done

for lib in "$@"; do
    # "caller callee" for each call from one object file into another
    pairs=$(nm -A "$lib" | awk '
        { split($1, p, ":"); f = p[2]; sub(/\.o$/, "", f) }
        NF == 3 && $2 == "U" { n++; user[n] = f; sym[n] = $3 }
        NF == 3 && $2 ~ /^[TDBRC]$/ { def[$3] = f }
        END { for (i = 1; i <= n; i++)
                  if ((sym[i] in def) && def[sym[i]] != user[i]) print user[i], def[sym[i]] }' |
        sort -u)
    if [ -z "$pairs" ]; then
        fail "$lib: no calls between its files were found (is nm working?)"
        continue
    fi
    loops=$(echo "$pairs" | tsort 2>&1 >/dev/null)
    if [ -n "$loops" ]; then
        fail "$(basename "$lib"): files that depend on each other through calls:"
        echo "$loops" | sed 's/^/    /'
    fi
done
[ $status -eq 0 ] && echo "layers: no layer reaches up, and no loop between files"
exit $status
