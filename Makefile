# The two commands: `make run` and `make test`. Both install what is missing first.
BUILD   ?= build
LISTEN  ?= 127.0.0.1:8787
# Empty: the config's name picks the state directory (.durable/durable-seed for the demo).
PERSIST ?=
CONFIG  ?= examples/seed/wrangler.toml
# Cluster mode (docs/cluster.md): PostgreSQL's URL and this node's name.
CLUSTER ?=
NODE    ?=
JOBS    ?= $(shell nproc)

.PHONY: deps deps-test build build-server run test bench bench-attack clean crash-test test-asan test-tsan fuzz cluster cluster-stop

deps:
	@bash scripts/deps.sh

deps-test:
	@bash scripts/deps.sh --test

# `make run` builds the server alone; the tests are configured in when GoogleTest is there.
build-server: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target durable_bin

build: deps-test
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DDURABLE_BUILD_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build-server
	./$(BUILD)/durable serve --config $(CONFIG) --listen $(LISTEN) $(if $(PERSIST),--persist-to $(PERSIST)) \
	  $(if $(CLUSTER),--cluster "$(CLUSTER)" $(if $(NODE),--node $(NODE)))

# A local PostgreSQL (.durable/pg) and three nodes on 127.0.0.1:8787-8789 serving the demo app.
cluster: build-server
	@bash scripts/deps.sh --cluster
	@BUILD=$(BUILD) CONFIG=$(CONFIG) bash scripts/cluster.sh start

cluster-stop:
	@bash scripts/cluster.sh stop

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

# The long crash proof: 100 rounds of kill -9 under load, every acknowledged write checked.
crash-test: build
	./$(BUILD)/crash_harness --rounds 100

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, and under ThreadSanitizer.
test-asan: deps-test
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDURABLE_SANITIZE=address -DDURABLE_BUILD_TESTS=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest --output-on-failure -j 2 --timeout 900

test-tsan: deps-test
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDURABLE_SANITIZE=thread -DDURABLE_BUILD_TESTS=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/sanitizers/tsan.supp ctest --output-on-failure -j 2 --timeout 900

# libFuzzer (clang) over the ID, value and config parsers, the router and the live HTTP and
# WebSocket server; FUZZ_SECONDS per target (fuzz/README.md). Each target runs on a copy of
# its corpus in build-fuzz/corpus (which keeps what it finds between runs); a crash leaves its
# input in build-fuzz/artifacts/<target>/ and fails the target.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= id_codec value_decode value_encode router config http_server websocket websocket_frames
fuzz:
	@bash scripts/deps.sh --fuzz
	@CC=clang CXX=clang++ cmake -S fuzz -B build-fuzz >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t build-fuzz/artifacts/$$t; \
	  cp -n fuzz/corpus/$$t/* build-fuzz/corpus/$$t/; \
	  dict=""; [ -f fuzz/$$t.dict ] && dict="-dict=fuzz/$$t.dict"; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s (log: build-fuzz/$$t.log)"; \
	  if nice -n 10 ./build-fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict \
	       -artifact_prefix=build-fuzz/artifacts/$$t/ build-fuzz/corpus/$$t >build-fuzz/$$t.log 2>&1; then \
	    grep -E '^#[0-9]+[[:space:]]+DONE' build-fuzz/$$t.log | tail -1; \
	  else \
	    failed="$$failed $$t"; tail -40 build-fuzz/$$t.log; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed (inputs in build-fuzz/artifacts/)"; exit 1; fi; \
	echo "fuzz: no crash in $(FUZZ_TARGETS)"

# wrk against durable alone (bench/run.sh), then durable against workerd on the seed app
# (bench/compare/run.sh: installs the pinned workerd from npm into bench/compare/node_modules).
bench: build
	@bash scripts/deps.sh --bench
	bash bench/run.sh
	bash bench/compare/run.sh
	bash bench/micro/run.sh

# Server memory under the hostile-input attacks of issue 18 (bench/attack.sh, bench/README.md).
bench-attack:
	@bash scripts/deps.sh --bench
	bash bench/attack.sh

clean:
	rm -rf $(BUILD)
