# abs — see README.md. Every target works on a fresh clone with Go installed.
GO       ?= go
BIN      := bin/abs
PKGS     := ./...
# The crash test and the other process-level tests build bin/abs themselves.
TESTFLAGS ?= -race -timeout 20m

.PHONY: all build test demo bench lint proto fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/abs

test:
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

# The main job on an embedded default config, in a temporary directory.
demo: build
	./$(BIN) demo

# Speed and memory figures, each next to a baseline measured in the same run.
bench: build
	$(GO) run ./bench

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Regenerates api/*.pb.go (committed, so a plain build needs no protoc).
# Needs protoc (Debian: protobuf-compiler); installs the Go plugins pinned here.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(CURDIR)/bin:$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative api/abs.proto

# A short run of every fuzz target (each is also run on its seed corpus by `make test`).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./statemachine -run XXX -fuzz FuzzDecodeEvents -fuzztime $(FUZZTIME)
	$(GO) test ./statemachine -run XXX -fuzz FuzzReplay -fuzztime $(FUZZTIME)
	$(GO) test ./journal -run XXX -fuzz FuzzDecodeRecord -fuzztime $(FUZZTIME)
	$(GO) test ./journal -run XXX -fuzz FuzzOpenTail -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run XXX -fuzz FuzzParse -fuzztime $(FUZZTIME)

clean:
	rm -rf bin
