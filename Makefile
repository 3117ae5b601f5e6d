# make test runs everything CI runs: formatting, vet, staticcheck, the whole
# test suite under the race detector, then the allocation and memory guards
# (which the race detector would distort) without it.

GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test fmt vet lint race guards bench fuzz run

test: fmt vet lint race guards

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(STATICCHECK) ./...

race:
	$(GO) test -race -shuffle=on -timeout 15m ./...

guards:
	$(GO) test -count=1 -run 'ZeroAllocs|IdleMemory' ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./codec/ ./engine/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecoder -fuzztime 60s ./codec/

run:
	$(GO) run ./cmd/wsd
