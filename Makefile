# Everyday commands. `make` builds the release tree in build/, `make test` builds the
# sanitized tree in build/sanitize and runs every test (unit, simulation, fuzz corpora,
# integration against real servers).
JOBS        ?= 2
BUILD       := build
SAN_BUILD   := build/sanitize
FUZZ_SECONDS ?= 60

.PHONY: all deps build test test-build run bench bench-core bench-http fuzz clean

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

# The embedded node on 127.0.0.1:8080 with ./data (flags: make run ARGS="--shards 4").
run: build
	@exec $(BUILD)/balanced $(ARGS)

bench-core: build
	@scripts/bench_core.sh

bench-http: build
	@scripts/bench_http.sh

bench: bench-core bench-http

fuzz: test-build
	@scripts/fuzz.sh $(SAN_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD)
