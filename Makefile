# make test runs everything CI runs: formatting, vet, staticcheck, the whole
# test suite under the race detector, then the allocation and memory guards
# (which the race detector would distort) without it, then the benchmark
# module's tests and its quick run (every server completes every scenario
# without loss, over ws and over wss).

GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test fmt vet lint race guards abuse bench-smoke bench fuzz run

# The Node.js and Chromium suites fail without their tools; a developer who
# opts out (WSD_SKIP_NODE=1, WSD_SKIP_BROWSER=1) gets them skipped, and test
# says so last, where it cannot be missed.
test: fmt vet lint race guards abuse bench-smoke
	@skipped=""; \
	if [ "$$WSD_SKIP_NODE" = 1 ]; then skipped="$$skipped\n***   the Node.js interop tests (internal/interop), WSD_SKIP_NODE=1"; fi; \
	if [ "$$WSD_SKIP_BROWSER" = 1 ]; then skipped="$$skipped\n***   the Chromium browser tests (internal/browser), WSD_SKIP_BROWSER=1"; fi; \
	if [ -n "$$skipped" ]; then \
		printf '\n%s\n*** NOT RUN, so not tested:%b\n%s\n' \
			'****************************************************************' "$$skipped" \
			'****************************************************************'; \
	fi

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(STATICCHECK) ./...

# internal/abuse measures the daemon's memory and latency under a flood: it
# runs alone (target abuse), not beside the other packages.
race:
	$(GO) test -race -shuffle=on -timeout 15m $$($(GO) list ./... | grep -v /internal/abuse$$)

# The guards are the tests named ...Allocs or ...IdleMemory: every test that
# measures allocations or memory must be (engine/guards_test.go checks).
guards:
	$(GO) test -count=1 -run 'Allocs|IdleMemory' ./...

# The tests that assert latency under abuse, without the race detector and
# one package at a time (under -race they check everything but the timing).
abuse:
	$(GO) test -count=1 -p 1 -timeout 5m -run 'Slowloris|Flood' ./engine/ ./internal/abuse/

BENCH_OUT ?= $(or $(WSD_ARTIFACTS),/tmp)/bench-quick

bench-smoke:
	cd bench && $(GO) vet ./... && $(STATICCHECK) ./... && $(GO) test -count=1 ./...
	cd bench && $(GO) run ./cmd/wsbench run -quick -tls -out $(BENCH_OUT)
	cd bench && $(GO) run ./cmd/wsbench run -scenarios soak -soak-quick -out $(BENCH_OUT)-soak

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./codec/ ./engine/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecoder -fuzztime 60s ./codec/

run:
	$(GO) run ./cmd/wsd
