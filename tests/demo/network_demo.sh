#!/usr/bin/env bash
# network_demo.sh — `make demo`: the double-spend problem played by three tallyd processes on
# loopback, each with its own data directory, driven with the tally command.
#
# A deposit of 100 to A; a partition cuts replica 1 off from replicas 2 and 3; replicas 1 and 2
# both try to spend A's 100; one succeeds, the other is refused for lack of rights; the partition
# heals; A is credited again, replica 2 asks for rights, gets them, and spends; every replica
# converges; the servers are stopped cleanly.
set -euo pipefail
build=${1:-build}
tallyd=$build/tallyd
tally=$build/tally
work=$(mktemp -d /tmp/tally-demo-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Three servers on free ports: each prints "ready: sync port P, control port C" when up.
declare -a sync control
for i in 1 2 3; do
    "$tallyd" --data "$work/r$i" --listen 127.0.0.1:0 --control 127.0.0.1:0 \
        --anti-entropy-ms 200 2> "$work/r$i.log" &
    pids+=($!)
done
for i in 1 2 3; do
    for _ in $(seq 100); do grep -q "ready:" "$work/r$i.log" && break; sleep 0.05; done
    line=$(grep "ready:" "$work/r$i.log")
    sync[$i]=$(sed -E 's/.*sync port ([0-9]+).*/\1/' <<< "$line")
    control[$i]=$(sed -E 's/.*control port ([0-9]+).*/\1/' <<< "$line")
done
t() { local i=$1; shift; "$tally" --server "127.0.0.1:${control[$i]}" "$@"; }
field() { t "$1" --json balance "$2" | sed -E "s/.*\"$3\":\"?([0-9]+)\"?.*/\1/"; }
peer() { t "$1" peer "$2" "127.0.0.1:${sync[$3]}" > /dev/null; }
converged() {
    local d1 d2 d3
    for _ in $(seq 100); do
        d1=$(t 1 --json status | sed -E 's/.*"digest":"([0-9a-f]+)".*/\1/')
        d2=$(t 2 --json status | sed -E 's/.*"digest":"([0-9a-f]+)".*/\1/')
        d3=$(t 3 --json status | sed -E 's/.*"digest":"([0-9a-f]+)".*/\1/')
        [ "$d1" = "$d2" ] && [ "$d2" = "$d3" ] && { echo "$d1"; return 0; }
        sleep 0.1
    done
    echo "did not converge" >&2
    return 1
}
show() {
    echo
    echo "-- $1"
    printf "   %-10s %12s %12s %10s %10s\n" "" "A balance" "A rights" "B" "C"
    for i in 1 2 3; do
        local cp dp rights b c
        cp=$(field "$i" 0xA credits_posted); dp=$(field "$i" 0xA debits_posted)
        rights=$(field "$i" 0xA rights_here)
        b=$(field "$i" 0xB credits_posted); c=$(field "$i" 0xC credits_posted)
        printf "   replica %-2s %12s %12s %10s %10s\n" "$i" "$((cp - dp))" "$rights" "$b" "$c"
    done
}

echo "tally: the double-spend problem, three tallyd processes on loopback"
for i in 1 2 3; do for k in 1 2 3; do [ $i != $k ] && peer $i add $k; done; done
t 1 account create 1 --ledger 1 > /dev/null           # the bank: the outside world, unbounded
for a in 0xA 0xB 0xC; do
    t 1 account create $a --ledger 1 --flags debits_must_not_exceed_credits > /dev/null
done
t 1 transfer 100 --debit 1 --credit 0xA --amount 100 --ledger 1 --code 1 > /dev/null
converged > /dev/null
show "replica 1 deposits 100 into A; it holds A's rights"

echo
echo "   The network splits: {replica 1} | {replica 2, replica 3}."
for k in 2 3; do peer 1 remove $k; peer $k remove 1; done
r1=$(t 1 transfer 101 --debit 0xA --credit 0xB --amount 100 --ledger 1 --code 1 || true)
r2=$(t 2 transfer 102 --debit 0xA --credit 0xC --amount 100 --ledger 1 --code 1 || true)
echo "   replica 1: spend A's 100 -> B : $r1"
echo "   replica 2: spend A's 100 -> C : $r2   (A has the money; replica 2 holds no rights on it)"
show "both sides acted alone; nothing was overdrawn"

for k in 2 3; do peer 1 add $k; peer $k add 1; done
converged > /dev/null
show "the partition heals; every replica sees A spent exactly once"

t 1 transfer 103 --debit 1 --credit 0xA --amount 100 --ledger 1 --code 1 > /dev/null
converged > /dev/null
echo
echo "   replica 1 credits A with 100 more; replica 2 asks for rights:"
echo "   $(t 2 rights request 0xA --amount 100)"
r2=$(t 2 transfer 104 --debit 0xA --credit 0xC --amount 100 --ledger 1 --code 1)
echo "   replica 2: spend A's 100 -> C : $r2"
digest=$(converged)
show "replica 2 spent with the rights it was granted; all replicas converge"
echo
echo "   every replica's digest: $digest"
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p"; done
pids=()
echo "   the three servers stopped cleanly (journals synced, directories unlocked)"
[ "$r1" = "OK" ] && [ "$r2" = "OK" ]
