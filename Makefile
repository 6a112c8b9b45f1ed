# plcwatch — make test is the one test command.
#
#   make demo         a simulated plant under attack, watched by the daemon (DEMO_SECONDS=60)
#   make build        static binary in bin/ (CGO_ENABLED=0)
#   make build-all    cross-builds for linux/amd64, linux/arm64, linux/arm/v7
#   make test         the whole test suite (CI runs this)
#   make lint         gofmt, go vet, staticcheck
#   make bench        Go benchmarks with allocations
#   make bench-data   the synthetic 1,000,000-packet capture for replay benchmarks
#   make bench-replay replay vs a bare gopacket loop vs tshark on that capture
#   make bench-opcua  both OPC UA benchmarks below
#   make bench-opcua-wire  replay of a synthetic 1,000,000-packet OPC UA capture at GOMAXPROCS=1
#   make bench-opcua-poll  the daemon monitoring 10,000 changing OPC UA variables (node-opcua): CPU, RSS, events/s
#   make bench-poll   the daemon polling 100 simulated devices × 100 tags: CPU, RSS, requests
#   make bench-live   (root) live capture on a veth pair at tcpreplay's top speed and fixed rates: drops, events, CPU
#   make fuzz         run every fuzz target for FUZZTIME each
#   make node-opcua   install node-opcua (the OPC UA test peer) into tools/node-opcua
#   make package      deb and rpm for amd64, arm64, armv7 in dist/ with SHA256SUMS (nfpm)
#   make package-check  build the packages twice: byte-identical; lintian on the amd64 deb
#   make package-test install, upgrade, remove and purge the amd64 deb (root)
#   make image        OCI archive of the container image in dist/ (buildah, root)
#   make image-test   build the image and run its binary from the archive
#   make check-service  systemd-analyze security of deploy/plcwatch.service (<= 2.0)
#   make test-arm     unit tests and replay under qemu for arm64 and armv7

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 10m
BENCH_PCAP  ?= .bench/poll-1m.pcap
OPCUA_PCAP  ?= .bench/opcua-1m.pcap

.PHONY: all demo build build-all test test-race lint bench bench-data bench-replay bench-opcua bench-opcua-wire bench-opcua-poll bench-poll bench-live fuzz clean node-opcua \
	package package-check package-test image image-test check-service sandbox-test test-arm

all: lint test build

demo: build
	bash sim/demo.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/plcwatch ./cmd/plcwatch

build-all:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/plcwatch-linux-amd64 ./cmd/plcwatch
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/plcwatch-linux-arm64 ./cmd/plcwatch
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/plcwatch-linux-armv7 ./cmd/plcwatch

# node-opcua, an independent OPC UA server and client, is the OPC UA tests'
# peer: pinned in tools/node-opcua/package-lock.json, installed once (about
# 20 s) into tools/node-opcua/node_modules (gitignored) and reused.
NODE_OPCUA := tools/node-opcua/node_modules/.installed

node-opcua: $(NODE_OPCUA)

$(NODE_OPCUA): tools/node-opcua/package.json tools/node-opcua/package-lock.json
	@if command -v npm >/dev/null; then \
		echo "installing node-opcua into tools/node-opcua"; \
		cd tools/node-opcua && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the node-opcua interop tests skip (in CI they fail)"; fi

# Tests that need root (live capture) or a peer that is missing skip with a
# one-line reason; CI runs as root with every peer installed, and there a
# missing peer fails the test.
test: node-opcua
	$(GO) test -count=1 ./...

# The race detector needs cgo.
test-race:
	CGO_ENABLED=1 $(GO) test -count=1 -race ./...

lint:
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-data: $(BENCH_PCAP)

$(BENCH_PCAP):
	@mkdir -p $(dir $@)
	$(GO) run ./cmd/plcwatch sim pcap -o $@ -packets 1000000

# Replay at GOMAXPROCS=1 (summary line and peak RSS), the same file through a
# bare gopacket Ethernet/IP/TCP loop, and through tshark.
bench-replay: build $(BENCH_PCAP)
	@echo "== plcwatch replay (GOMAXPROCS=1)"
	@GOMAXPROCS=1 /usr/bin/time -f 'peak RSS %M KB, %e s' bin/plcwatch replay --pcap $(BENCH_PCAP)
	@GOMAXPROCS=1 /usr/bin/time -f 'peak RSS %M KB, %e s (with --events to /dev/null)' bin/plcwatch replay --events --pcap $(BENCH_PCAP) >/dev/null
	@echo "== engine and bare gopacket loop on the same file (Go benchmarks, -cpu 1)"
	@PLCWATCH_BENCH_PCAP=$(abspath $(BENCH_PCAP)) $(GO) test -run '^$$' -bench 'ReplayFile|BareGopacketFile' -benchtime 3x -cpu 1 ./collectors/capture/
	@echo "== tshark -r FILE -Y modbus -T fields -e modbus.func_code"
	@if command -v tshark >/dev/null; then \
		/usr/bin/time -f 'tshark: %e s, peak RSS %M KB' tshark -r $(BENCH_PCAP) -Y modbus -T fields -e modbus.func_code >/dev/null; \
	else echo "tshark not installed (apt-get install -y tshark)"; fi

$(OPCUA_PCAP):
	@mkdir -p $(dir $@)
	$(GO) run ./cmd/plcwatch sim pcap -protocol opcua -o $@ -packets 1000000

# OPC UA replay at GOMAXPROCS=1 (wall and CPU time: messages/s is the
# service messages of the capture over them), then the engine benchmark:
# read-publish (hand-read services only: 0 allocs/op) and the mix.
bench-opcua: bench-opcua-wire bench-opcua-poll

bench-opcua-wire: build $(OPCUA_PCAP)
	@echo "== plcwatch replay $(OPCUA_PCAP) (GOMAXPROCS=1)"
	@GOMAXPROCS=1 /usr/bin/time -f 'peak RSS %M KB, %e s wall, %U s user, %S s sys' bin/plcwatch replay --pcap $(OPCUA_PCAP)
	@echo "== engine per packet (Go benchmark, -cpu 1)"
	@$(GO) test -run '^$$' -bench 'EngineOPCUA' -benchmem -benchtime 400000x -cpu 1 ./collectors/capture/

bench-poll: build
	bash sim/bench-poll.sh

# Root: two network namespaces joined by a veth pair (created and deleted
# by the script; the host's interfaces are never touched), tcpreplay into
# one end, the daemon capturing on the other. RATES, FANOUT, RING_BLOCKS.
bench-live: build $(BENCH_PCAP)
	PCAP=$(BENCH_PCAP) bash sim/bench-live.sh

bench-opcua-poll: build node-opcua
	bash sim/bench-opcua-poll.sh

fuzz:
	$(GO) test ./collectors/capture/reassembly/ -run '^$$' -fuzz '^FuzzReassembler$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/modbustcp/ -run '^$$' -fuzz '^FuzzDissector$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/modbustcp/ -run '^$$' -fuzz '^FuzzDecodePDU$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	TMPDIR=$${TMPDIR:-/dev/shm} $(GO) test ./agent/spool/ -run '^$$' -fuzz '^FuzzSpoolDamage$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./agent/alertsub/ -run '^$$' -fuzz '^FuzzSummary$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/opcua/ -run '^$$' -fuzz '^FuzzConn$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/opcua/ -run '^$$' -fuzz '^FuzzService$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/opcua/ -run '^$$' -fuzz '^FuzzFastAgreesWithGopcua$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./agent/ -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/ -run '^$$' -fuzz '^FuzzReadPcap$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/capture/ -run '^$$' -fuzz '^FuzzReadPcapng$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./inventory/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0
	$(GO) test ./collectors/opcua/ -run '^$$' -fuzz '^FuzzParseNodeID$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s -timeout 0

# Packages, image, service and ARM (deploy/README.md). The packages' and
# image's version is VERSION; their timestamps the last commit's.
MAX_EXPOSURE ?= 2.0

package:
	VERSION=$(VERSION) bash deploy/package/build.sh

package-check:
	VERSION=$(VERSION) bash deploy/package/check.sh

package-test: package
	bash deploy/package/test-install.sh

image:
	VERSION=$(VERSION) bash deploy/container/build.sh

image-test: image
	bash deploy/container/test.sh

# The exposure score systemd gives the unit's sandbox (0 best, 10 worst).
check-service:
	@bash deploy/check-devices.sh deploy/plcwatch.service
	@command -v systemd-analyze >/dev/null || { echo "check-service: systemd-analyze not installed (apt-get install systemd)"; exit 1; }
	@score=$$(systemd-analyze security --offline=true --no-pager deploy/plcwatch.service 2>&1 | \
		sed -n 's/.*Overall exposure level for plcwatch.service: \([0-9.]*\).*/\1/p'); \
	if [ -z "$$score" ]; then systemd-analyze security --offline=true --no-pager deploy/plcwatch.service; exit 1; fi; \
	echo "deploy/plcwatch.service: exposure $$score (at most $(MAX_EXPOSURE))"; \
	awk -v s="$$score" -v m="$(MAX_EXPOSURE)" 'BEGIN { exit !(s <= m) }' || \
		{ systemd-analyze security --offline=true --no-pager deploy/plcwatch.service | grep '✗'; exit 1; }

# The sandbox's user, capability and folders with the real product (root).
sandbox-test: build
	bash deploy/sandbox-test.sh

test-arm:
	bash deploy/arm-test.sh

clean:
	rm -rf bin .bench dist .bin
