# The two commands: `make run` and `make test`. Both install what is missing first.
BUILD   ?= build
LISTEN  ?= 127.0.0.1:8787
PERSIST ?= .durable/state
CONFIG  ?= examples/seed/wrangler.toml
JOBS    ?= $(shell nproc)

.PHONY: deps build run test bench clean

deps:
	@bash scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/durable serve --config $(CONFIG) --listen $(LISTEN) --persist-to $(PERSIST)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

bench: build
	@bash scripts/deps.sh --bench
	bash bench/run.sh

clean:
	rm -rf $(BUILD)
