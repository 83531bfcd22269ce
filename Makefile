# tickrelay: `make demo` shows it running, `make test` proves it works.
GO       ?= go
PKGS     ?= ./...
BIN      := bin/tickrelay
FUZZTIME ?= 30s
# The hot paths: feed read -> ring -> relay write; child parse -> fan-out.
BENCH    ?= FeedDecode|RelayBatchEncode|BatchRead|TextFrame|ParseCommand|RingAppend|RingGet|SessionRead|RelayBatch$$|RelayDwell|ParseToText|FanoutLoop|LoopFlush|Next$$|GeneratorNext|JournalAppend$$|JournalAppendCommit|ServeMax|Write$$
BENCHPKGS ?= ./wire ./root ./child/... ./feed ./root/journal ./replay ./internal/uring
# One test binary at a time (-p 1): on a 2-core box, packages running side by
# side starve each other's timers and sockets. The run takes ~2 minutes.
TESTFLAGS ?= -count=1 -timeout 15m -p 1

.PHONY: all build test race lint bench fuzz demo perf clean install alerts-scale groups-scale

all: build

# The daemons, and the NATS peer of `make perf` (a binary of its own, so the
# daemons do not link a NATS server).
build:
	$(GO) build -o $(BIN) ./cmd/tickrelay
	$(GO) build -o bin/tickrelay-natspeer ./cmd/tickrelay-natspeer

# Starts a throwaway PostgreSQL (or uses $$TICKRELAY_TEST_PG) and runs every test.
test:
	scripts/test.sh $(TESTFLAGS) $(PKGS)

race:
	scripts/test.sh $(TESTFLAGS) -race $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Hot-path benchmarks with allocations; results land in bench.txt.
# BENCH=. BENCHPKGS=./... runs every benchmark.
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime 300ms $(BENCHPKGS) | tee bench.txt

# The alert end-to-end test at issue 17's scale: 1,000 identities x 100 alerts, 20 s of feed.
alerts-scale: build
	TICKRELAY_ALERTS_FULL=1 scripts/test.sh -run TestAlertsEndToEnd -count 1 -v ./cmd/tickrelay

# Queue groups at the scale of issue 16: 2 children, 6 + 4 members, 20 s at 20k msgs/s.
groups-scale: build
	TICKRELAY_GROUPS_FULL=1 scripts/test.sh -run 'TestQueueGroup$$' -count 1 -v ./cmd/tickrelay

# Runs every fuzz target for FUZZTIME each (go test -fuzz takes one target at a time).
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 500x $$pkg || exit 1; \
		done; \
	done

# As root: binary, systemd units, the tickrelay user, example configs.
install: build
	scripts/install.sh

demo: build
	scripts/demo.sh $(BIN)

# Every step (sweep, fan-out, write paths, seed shape, slow consumers; ~15 min).
perf: build
	scripts/install-deps.sh
	$(BIN) perf -update-readme README.md

clean:
	rm -rf bin perf-results demo-data bench.txt
