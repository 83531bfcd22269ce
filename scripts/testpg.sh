#!/usr/bin/env bash
# Throwaway PostgreSQL for tests.
#
#   eval "$(scripts/testpg.sh start)"   # exports TICKRELAY_TEST_PG and TICKRELAY_TEST_PGDIR
#   scripts/testpg.sh stop [DIR]         # DIR defaults to $TICKRELAY_TEST_PGDIR
#   scripts/testpg.sh bindir             # prints the server bindir, exit 1 if none
#
# Every instance lives entirely in its own temp dir (data, socket, log) on its
# own port, so instances never collide with each other or with a distro
# cluster. Only the export lines go to stdout; everything else goes to stderr
# so that eval "$(... start)" stays safe.
set -euo pipefail

readonly MARKER=.tickrelay-testpg   # proves a dir is ours before rm -rf
readonly DBNAME=tickrelay_test
readonly PGUSER_NAME=postgres
# Max age of a still-running leaked instance before start reaps it (seconds).
readonly MAX_AGE=${TICKRELAY_TEST_PG_MAX_AGE:-21600}

log() { printf 'testpg: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# find_bindir prints the first directory holding initdb, pg_ctl and postgres.
# pg_config alone is not enough: Debian's libpq-dev ships a pg_config that
# points at a bindir even when no server is installed.
find_bindir() {
	local cands=() d
	if [[ -n ${PG_BINDIR:-} ]]; then cands+=("$PG_BINDIR"); fi
	if command -v pg_config >/dev/null 2>&1; then
		cands+=("$(pg_config --bindir 2>/dev/null || true)")
	fi
	# Newest major version first.
	while IFS= read -r d; do cands+=("$d"); done < <(
		ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -rn || true)
	if command -v initdb >/dev/null 2>&1; then
		cands+=("$(dirname "$(readlink -f "$(command -v initdb)")")")
	fi
	for d in "${cands[@]}"; do
		[[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] || continue
		printf '%s\n' "$d"
		return 0
	done
	return 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# as_pg runs a command as the postgres OS user when we are root, because
# initdb/pg_ctl/postgres refuse to run as root. cd first: pg_ctl fails if it
# cannot read the caller's cwd.
as_pg() {
	local dir=$1; shift
	if is_root; then
		(cd "$dir" && runuser -u "$PGUSER_NAME" -- "$@")
	else
		(cd "$dir" && "$@")
	fi
}

ensure_pg_user() {
	is_root || return 0
	id -u "$PGUSER_NAME" >/dev/null 2>&1 && return 0
	log "creating OS user $PGUSER_NAME"
	useradd --system --user-group --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin "$PGUSER_NAME" >&2
}

# postmaster_alive reports whether the instance in DIR has a live postmaster.
postmaster_alive() {
	local pidfile=$1/data/postmaster.pid pid
	[[ -f $pidfile ]] || return 1
	pid=$(head -n1 "$pidfile" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# stop_dir shuts down (immediate: the data is disposable) and deletes DIR.
stop_dir() {
	local dir=$1 bindir pid
	[[ -d $dir ]] || return 0
	[[ -f $dir/$MARKER ]] || die "$dir is not a testpg dir (no $MARKER); refusing to delete"
	if postmaster_alive "$dir"; then
		bindir=$(cat "$dir/$MARKER")
		if [[ -x $bindir/pg_ctl ]]; then
			as_pg "$dir" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
		fi
		# Fallback if pg_ctl is gone (e.g. postgres upgraded) or timed out.
		if postmaster_alive "$dir"; then
			pid=$(head -n1 "$dir/data/postmaster.pid")
			kill -QUIT "$pid" 2>/dev/null || true
			for _ in $(seq 50); do postmaster_alive "$dir" || break; sleep 0.1; done
			postmaster_alive "$dir" && kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf -- "$dir"
}

# reap_stale cleans up after runs that never called stop. Dead instances are
# removed once a few minutes old (a younger one may be mid-initdb in another
# shell); live ones only once older than MAX_AGE, since they may belong to a
# test run still in progress elsewhere.
reap_stale() {
	local base=$1 d now age
	now=$(date +%s)
	for d in "$base"/tickrelay-pg.*; do
		[[ -f $d/$MARKER ]] || continue
		age=$((now - $(stat -c %Y "$d/$MARKER" 2>/dev/null || echo "$now")))
		if postmaster_alive "$d"; then
			((age > MAX_AGE)) || continue
			log "stopping leaked instance $d (older than ${MAX_AGE}s)"
		else
			((age > 300)) || continue
		fi
		(stop_dir "$d") || log "could not clean $d"
	done
}

# port_busy: a successful TCP connect means someone is listening there.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port avoids 5432 and the Linux ephemeral range (32768+) that tests
# binding :0 draw from. The real guarantee is the bind retry in cmd_start.
pick_port() {
	local port
	for _ in $(seq 100); do
		port=$((15433 + RANDOM % 17000))
		port_busy "$port" || { echo "$port"; return 0; }
	done
	die "no free port found"
}

# tmp_base chooses where instances live. As root the postgres user must be
# able to traverse it, which a private $TMPDIR (e.g. under /root) is not.
tmp_base() {
	local base=${TMPDIR:-/tmp}
	base=${base%/}
	if is_root && ! runuser -u "$PGUSER_NAME" -- test -x "$base" 2>/dev/null; then
		base=/tmp
	fi
	echo "$base"
}

dir=  # the instance being started; global so the EXIT trap can see it

cmd_start() {
	local bindir base port sockdir attempt started=
	bindir=$(find_bindir) || die "no PostgreSQL server binaries found (run scripts/install-deps.sh)"
	ensure_pg_user
	base=$(tmp_base)
	reap_stale "$base"

	dir=$(mktemp -d "$base/tickrelay-pg.XXXXXX")
	# Unix socket paths are limited to 107 bytes.
	sockdir=$dir/s
	((${#sockdir} < 80)) || { rm -rf -- "$dir"; die "temp path too long for a unix socket: $sockdir"; }
	echo "$bindir" >"$dir/$MARKER"
	mkdir "$sockdir"
	# Remove the half-made instance if anything below fails.
	trap 'stop_dir "$dir" 2>/dev/null || true' EXIT
	if is_root; then
		chown -R "$PGUSER_NAME:" "$dir"
		chmod 700 "$dir"
	fi

	as_pg "$dir" "$bindir/initdb" -D "$dir/data" -U "$PGUSER_NAME" -A trust \
		-E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; die "initdb failed"; }

	cat >>"$dir/data/postgresql.conf" <<EOF

# tickrelay test instance: disposable, so durability is off.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
logging_collector = off
EOF

	# Retry on a new port if another process grabbed ours in the meantime.
	for attempt in 1 2 3 4 5; do
		port=$(pick_port)
		if as_pg "$dir" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" \
			-o "-p $port" -w -t 60 start >/dev/null 2>&1; then
			started=1
			break
		fi
		if grep -q 'could not bind\|already in use' "$dir/postgres.log" 2>/dev/null; then
			log "port $port taken (attempt $attempt), retrying"
			: >"$dir/postgres.log"
			continue
		fi
		tail -n 30 "$dir/postgres.log" >&2 2>/dev/null || true
		die "postgres failed to start"
	done
	[[ -n $started ]] || die "postgres failed to start after $attempt attempts"

	# pg_ctl -w checks the socket; also wait for TCP, which is what tests use.
	for _ in $(seq 100); do
		"$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && break
		sleep 0.1
	done
	"$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" \
		-U "$PGUSER_NAME" -d postgres -c "CREATE DATABASE $DBNAME" >&2 ||
		die "could not create database $DBNAME"

	trap - EXIT
	log "postgres $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, dir $dir"
	printf "export TICKRELAY_TEST_PG='postgres://%s@127.0.0.1:%s/%s?sslmode=disable'\n" \
		"$PGUSER_NAME" "$port" "$DBNAME"
	printf "export TICKRELAY_TEST_PGDIR='%s'\n" "$dir"
}

cmd_stop() {
	local dir=${1:-${TICKRELAY_TEST_PGDIR:-}}
	[[ -n $dir ]] || die "stop: TICKRELAY_TEST_PGDIR not set and no dir given"
	stop_dir "$dir"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop "${2:-}" ;;
bindir) find_bindir ;;
*)
	echo "usage: $0 start|stop [DIR]|bindir" >&2
	exit 2
	;;
esac
