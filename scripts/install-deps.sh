#!/usr/bin/env bash
# Installs what building, testing and benchmarking tickrelay needs on a fresh
# Debian machine: the PostgreSQL server binaries (for the throwaway test
# server), redis-server (a peer of `make perf`) and the Go modules.
# Idempotent: does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'install-deps: %s\n' "$*" >&2; }

command -v go >/dev/null 2>&1 || { log "error: go is not on PATH (need Go 1.26+)"; exit 1; }

if ! scripts/testpg.sh bindir >/dev/null 2>&1; then
	log "PostgreSQL server binaries missing: installing Debian's postgresql package"
	sudo=
	[[ $(id -u) -eq 0 ]] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	# The package's postinst creates a default cluster; tests never use it,
	# so stop it again to keep port 5432 and memory free.
	$sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	$sudo service postgresql stop >/dev/null 2>&1 || true
	scripts/testpg.sh bindir >/dev/null || { log "error: postgresql installed but no server binaries found"; exit 1; }
fi

if ! command -v redis-server >/dev/null 2>&1; then
	log "redis-server missing (make perf compares against it): installing Debian's redis-server package"
	sudo=
	[[ $(id -u) -eq 0 ]] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	# The tests do not need it: a failure here is a warning, not a stop.
	if $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null 2>&1 ||
		{ $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }; then
		$sudo service redis-server stop >/dev/null 2>&1 || true # perf starts its own on loopback
	else
		log "warning: could not install redis-server; make perf will skip the Redis peer"
	fi
fi

log "downloading Go modules"
go mod download
