#!/usr/bin/env bash
# make demo: exchange simulator -> roots A and B -> two children (b on both
# roots, an A/B pair) -> subscribers, all on loopback with embedded defaults
# (no Postgres), for a few seconds; root A is stopped halfway and child b
# carries on from root B; the exchange starts a new epoch (a Sequence Reset)
# every 80k items. A queue group shares the items between two members on
# two children; an identity's price alerts fire and follow it to another
# child; a group member follows its child's drain to another child and
# keeps its place. Last, a cluster client on children b and c follows its
# child's drain to the other one. Then a short summary and a clean shutdown.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/tickrelay}
SECS=${DEMO_SECONDS:-6}
BASE=${DEMO_PORT:-19000}   # ports BASE .. BASE+41
DATA=demo-data
rm -rf "$DATA" && mkdir -p "$DATA"

pids=()
cleanup() {
	# SIGTERM drains each daemon; children first so the root can see them go.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

start() { # name, args...
	local name=$1; shift
	"$BIN" "$@" -log-level warn 2>"$DATA/$name.log" &
	pids+=($!)
}
wait_port() {
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
	echo "demo: nothing listening on 127.0.0.1:$1 (see $DATA/*.log)" >&2; exit 1
}

echo "== starting exchange simulator (20k msgs/s, 200 symbols, a Sequence Reset every 80k items), roots A and B, three children (b and c on both roots)"
start exchange exchange -addr 127.0.0.1:$BASE -rate 20000 -symbols 200 -seed 7 -admin 127.0.0.1:$((BASE + 1)) -reset-every 80000
wait_port $BASE
start root root -exchange 127.0.0.1:$BASE -addr 127.0.0.1:$((BASE + 10)) -admin 127.0.0.1:$((BASE + 11)) \
	-journal "$DATA/root.journal"
root_a=$!
start root-b root -exchange 127.0.0.1:$BASE -addr 127.0.0.1:$((BASE + 12)) -admin 127.0.0.1:$((BASE + 13)) -journal ""
wait_port $((BASE + 10))
wait_port $((BASE + 12))
declare -A child_args child_pid
child_args[a]="-root 127.0.0.1:$((BASE + 10)) -addr 127.0.0.1:$((BASE + 20)) -admin 127.0.0.1:$((BASE + 21)) -name a -max-pending 1048576"
child_args[b]="-root 127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 12)) -addr 127.0.0.1:$((BASE + 30)) -admin 127.0.0.1:$((BASE + 31)) -name b"
child_args[c]="-root 127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 12)) -addr 127.0.0.1:$((BASE + 40)) -admin 127.0.0.1:$((BASE + 41)) -name c -max-pending 1048576 -slow-policy conflate -writes auto"
start_child() { # name [log suffix]
	# shellcheck disable=SC2086 # the args are words
	start "child-$1${2:-}" child ${child_args[$1]}
	child_pid[$1]=$!
}
for n in a b c; do start_child $n; done
wait_port $((BASE + 20))
wait_port $((BASE + 30))
wait_port $((BASE + 40))

echo "== first frames of symbols 00001 and 00002 from child a: the image (SD, ...), OK SUB, then updates (t= stamps cut here)"
for sym in 00001 00002; do
	"$BIN" sub -addr 127.0.0.1:$((BASE + 20)) -sub $sym -count 12 | sed 's/ t=[0-9,]*$//; s/^/   /' |
		awk '/^   OK SUB/ { ok = 1; print; next } !ok || n++ < 3'
done

echo "== a client that stops reading: child a (-max-pending 1 MiB) cuts it, its last line says why"
"$BIN" sub -addr 127.0.0.1:$((BASE + 20)) -sub '*' -stall 1s -quiet 2>/dev/null | tail -1
curl -fsS "http://127.0.0.1:$((BASE + 21))/metrics" 2>/dev/null | grep -E '^tickrelay_child_slow_disconnects_total' || true

echo "== the same client on child c (-slow-policy conflate): not cut; once it reads again it gets ERR CONFLATED,"
echo "   every symbol's image and the live stream (child c has -writes auto: io_uring where the kernel allows it)"
"$BIN" sub -addr 127.0.0.1:$((BASE + 40)) -sub '*' -stall 1s -count 60000 -stats 2>&1 | grep -E '^final' | sed 's/^/   /'
curl -fsS "http://127.0.0.1:$((BASE + 41))/metrics" 2>/dev/null | grep -E '^tickrelay_child_(slow_(conflated|resynced)_total|write_path)' || true

echo "== the child directory: CHILDREN on child a lists every child (announced to the roots)"
children() { # port: the CHILDREN line from the child there
	exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'CHILDREN\n' >&3 && timeout 2 head -1 <&3; exec 3<&-
}
for _ in $(seq 30); do line=$(children $((BASE + 20))); [[ $line == *" a="*" b="*" c="* ]] && break; sleep 0.2; done
echo "$line"

echo "== root A's key figures (from its /metrics)"
curl -fsS "http://127.0.0.1:$((BASE + 11))/metrics" 2>/dev/null | awk '
	/^tickrelay_root_ring_head /      { head = $2 }
	/^tickrelay_root_items_received_total /    { items = $2 }
	/^tickrelay_root_children /       { kids = $2 }
	/^tickrelay_journal_last_seq /    { jlast = $2 }
	/^tickrelay_journal_durable_seq / { durable = $2 }
	END { printf "   head seq %d, items received %d, children %d, journal last seq %d (durable %d, %d behind the head)\n", head, items, kids, jlast, durable, head - durable }' || true

echo "== a queue group: two members of group 'demo' (SUB * GROUP demo), on children a and b, for 2 s:"
echo "   each item goes to one of them (by symbol); the root sequences their joins into the stream"
members=()
for port in $((BASE + 20)) $((BASE + 30)); do
	timeout --signal=INT 2 "$BIN" sub -addr 127.0.0.1:$port -sub '*' -group demo -quiet -stats -interval 1h 2>"$DATA/group-$port.log" &
	members+=($!)
done
for p in "${members[@]}"; do wait "$p" || true; done
for port in $((BASE + 20)) $((BASE + 30)); do
	grep -E "^final:" "$DATA/group-$port.log" | sed "s/^/   member on :$port: /; s/, epoch.*gaps/ ... gaps/" || true
done
for admin in $((BASE + 21)) $((BASE + 31)); do
	curl -fsS "http://127.0.0.1:$admin/metrics" 2>/dev/null | grep -E '^tickrelay_child_(group_deliveries_total|controls_applied_total)' | sed 's/^/   /' || true
done

echo "== a queue-group member keeps its place when it moves: workers w1 and w2 (cluster clients on every child,"
echo "   -group 'work ack', ACKing every 100 frames, named by -id); the child w1 is on drains: w1 moves to another"
echo "   child as the same member, keeps its symbols and gets again what it had not ACKed (the client drops what it had)"
all="127.0.0.1:$((BASE + 20)),127.0.0.1:$((BASE + 30)),127.0.0.1:$((BASE + 40))"
workers=()
for w in w1 w2; do
	"$BIN" sub -addr "$all" -sub '*' -group 'work ack' -id $w -move-window 200ms -stats -interval 1h >"$DATA/$w.out" 2>"$DATA/$w.log" &
	workers+=($!)
done
for _ in $(seq 50); do grep -q "cluster: on" "$DATA/w1.log" && break; sleep 0.1; done
port=$(sed -n 's/^cluster: on 127.0.0.1:\([0-9]*\).*/\1/p' "$DATA/w1.log")
drained=$(((port - BASE) / 10 - 2)) && drained=$(echo abc | cut -c$((drained + 1)))
sleep 1
echo "   w1 is on child $drained: $(curl -fsS -X POST "http://127.0.0.1:$((port + 1))/drain?grace=2s")"
for _ in $(seq 50); do grep -q "cluster: moved" "$DATA/w1.log" && break; sleep 0.1; done
sleep 1
kill -INT "${workers[@]}"
for p in "${workers[@]}"; do wait "$p" 2>/dev/null || true; done
for w in w1 w2; do
	grep -m1 "^OK GROUP" "$DATA/$w.out" | sed "s/^/   $w: /"
	grep -E "^cluster: (moved|moves)" "$DATA/$w.log" | sed "s/^/   $w: /"
done
# From a quarter second after the later join (its OK GROUP's seq, or a RESET after it) no symbol goes
# to both: the move kept w1's place. (Right at a join a record late on an A/B child gives a few twice.)
start=$(cat "$DATA/w1.out" "$DATA/w2.out" | awk '/^OK GROUP/ && $5 > s { s = $5 } END { print s + 5000 }')
awk -v start="$start" 'FNR == 1 { w++; reset = 0 } /^RESET/ { reset = 1 }
	$1 ~ /^[A-Z][A-Z]$/ && $3 ~ /^[0-9]+$/ && (reset || $2 > start) { seen[$3] = seen[$3] "," w }
	END { for (s in seen) { n++; if (seen[s] ~ /,1.*,2|,2.*,1/) both++ }
	      printf "   symbols: %d, to both workers (a place lost) since the joins settled: %d\n", n, both + 0 }' "$DATA/w1.out" "$DATA/w2.out"
for admin in $((BASE + 21)) $((BASE + 31)) $((BASE + 41)); do
	curl -fsS "http://127.0.0.1:$admin/metrics" 2>/dev/null | grep -E '^tickrelay_child_group_redeliver.*work' | sed 's/^/   /' || true
done
wait "${child_pid[$drained]}" 2>/dev/null || true
echo "   (child $drained drained and exited; started again)"
start_child "$drained" -again
wait_port $((port))

echo "== price alerts: identity 'demo' sets three on child a around 00001's last price; root A's engine matches"
echo "   every update and sequences each fire into the stream, so every child holds them and a comeback anywhere"
echo "   (HELLO demo 0 on child b) gets the fires it missed"
px=$("$BIN" sub -addr 127.0.0.1:$((BASE + 20)) -sub 00001 -count 20 | sed -n 's/^[NT][PR] [0-9]* 00001 .*px=\([0-9.]*\).*/\1/p' | tail -1)
if [[ -n $px ]]; then
	read -r up down <<<"$(awk -v p="$px" 'BEGIN { printf "%.3f %.3f", p * 1.003, p * 0.997 }')"
	echo "   last price of 00001: $px"
	exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 20))"
	printf 'HELLO demo\nALERT up 00001 last >= %s\nALERT down 00001 last <= %s\nALERT near 00001 bid >= %s repeat 0.01\n' "$up" "$down" "$px" >&3
	timeout 3 cat <&3 | sed 's/ t=[0-9]*//; s/^/   a: /' || true
	exec 3<&-
	exec 3<>"/dev/tcp/127.0.0.1/$((BASE + 30))"
	printf 'HELLO demo 0\nALERTS\n' >&3
	timeout 1 cat <&3 | sed 's/ t=[0-9]*//; s/^/   b: /' || true
	exec 3<&-
	curl -fsS "http://127.0.0.1:$((BASE + 11))/metrics" 2>/dev/null | grep -E '^tickrelay_root_(alerts_standing|alert_fires_total)' | sed 's/^/   /' || true
fi

echo "== every symbol from child b for ${SECS}s; root A is stopped halfway, child b goes on with root B;"
echo "   at the exchange's reset the client is told RESET <epoch> <seq> <prev epoch> <prev last>"
(sleep $((SECS / 2)) && kill -TERM "$root_a" 2>/dev/null && echo "   (root A stopped)") &
timeout --signal=INT "$SECS" "$BIN" sub -addr 127.0.0.1:$((BASE + 30)) -sub '*' -quiet -stats || true
wait $! 2>/dev/null || true

echo "== child a had root A alone: it keeps its clients and retries, saying so once (then once a minute)"
grep -E "cannot reach the root|still unreachable" "$DATA/child-a.log" | head -2 | sed 's/^/   /'
curl -fsS "http://127.0.0.1:$((BASE + 21))/metrics" 2>/dev/null | grep -E '^tickrelay_child_root_up' | sed 's/^/   /' || true
echo "== child b after the failover and the reset: no gap, nothing lost; the later copy of each seq was dropped"
curl -fsS "http://127.0.0.1:$((BASE + 31))/metrics" 2>/dev/null |
	grep -E '^tickrelay_child_(epoch|epoch_changes_total|last_seq|gaps_total|lost_items_total|duplicate_items_total|root_up|root_items_total)' || true
echo "== a cluster client on children b and c (sticky): the child it is on drains (POST /drain),"
echo "   it moves to the other and RESUMEs with no gap and no duplicate; the drained child then exits"
"$BIN" sub -addr 127.0.0.1:$((BASE + 30)),127.0.0.1:$((BASE + 40)) -sub '*' -quiet -stats -interval 1h \
	-move-window 200ms -id demo 2>"$DATA/cluster-sub.log" &
sub=$!
for _ in $(seq 50); do grep -q "cluster: on" "$DATA/cluster-sub.log" && break; sleep 0.1; done
port=$(sed -n 's/^cluster: on 127.0.0.1:\([0-9]*\).*/\1/p' "$DATA/cluster-sub.log")
sleep 1
curl -fsS -X POST "http://127.0.0.1:$((port + 1))/drain?grace=3s" | sed 's/^/   /'
for _ in $(seq 50); do grep -q "cluster: moved" "$DATA/cluster-sub.log" && break; sleep 0.1; done
sleep 1
kill -INT $sub; wait $sub 2>/dev/null || true
grep -E "^cluster:|^final:" "$DATA/cluster-sub.log" | sed 's/^/   /'
echo "== stopping (logs in $DATA/)"
