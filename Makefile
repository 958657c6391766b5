# The two commands: `make run` and `make test`. Both install what is missing first.
BUILD   ?= build
LISTEN  ?= 127.0.0.1:8787
PERSIST ?= .durable/state
CONFIG  ?= examples/seed/wrangler.toml
JOBS    ?= $(shell nproc)

.PHONY: deps build run test bench clean crash-test test-asan test-tsan

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/durable serve --config $(CONFIG) --listen $(LISTEN) --persist-to $(PERSIST)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

# The long crash proof: 100 rounds of kill -9 under load, every acknowledged write checked.
crash-test: build
	./$(BUILD)/crash_harness --rounds 100

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, and under ThreadSanitizer.
test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDURABLE_SANITIZE=address >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j 2 --timeout 900

test-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDURABLE_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest --output-on-failure -j 2 --timeout 900

# wrk against durable alone (bench/run.sh), then durable against workerd on the seed app
# (bench/compare/run.sh: installs the pinned workerd from npm into bench/compare/node_modules).
bench: build
	@bash scripts/deps.sh --bench
	bash bench/run.sh
	bash bench/compare/run.sh

clean:
	rm -rf $(BUILD)
