#!/usr/bin/env bash
# Runs the test suite against a throwaway PostgreSQL: the server in
# $TICKRELAY_TEST_PG when set, else one started here from the local binaries
# and removed on exit. Extra arguments go to `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Thousands of client sockets in the end-to-end tests.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ -z ${TICKRELAY_TEST_PG:-} ]]; then
	eval "$(scripts/testpg.sh start)"
	trap 'scripts/testpg.sh stop "$TICKRELAY_TEST_PGDIR"' EXIT
fi
export TICKRELAY_TEST_PG

go test "$@"
