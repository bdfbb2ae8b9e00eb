# Everyday commands. `make` builds the release tree in build/, `make test` builds the
# sanitized tree in build/sanitize and runs every test (unit, simulation, fuzz corpora,
# integration against real servers).
JOBS        ?= 2
BUILD       := build
SAN_BUILD   := build/sanitize
FUZZ_SECONDS ?= 60

.PHONY: all deps build test test-build run bench bench-core fuzz clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test-build: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	    -DBAL_SANITIZE=ON -DBAL_FUZZ=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)

test: test-build
	@cd $(SAN_BUILD) && ctest --output-on-failure --timeout 1800

run: build
	@if [ -x $(BUILD)/balanced ]; then exec $(BUILD)/balanced $(ARGS); \
	 else echo "balanced: the server is not built yet (only the ledger core exists); see README.md" >&2; exit 1; fi

bench-core: build
	@$(BUILD)/bench/bench_core

bench: bench-core

fuzz: test-build
	@scripts/fuzz.sh $(SAN_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
