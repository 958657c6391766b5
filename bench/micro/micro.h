// bench/micro: microbenchmarks (Google Benchmark), each paired with its ceiling.
//
// Every benchmark is named "<group>/<case>/<side>"; main.cc pairs an "ours" benchmark with
// its ceiling and prints the fraction ours/ceiling after the run (bench/README.md,
// "Microbenchmarks").
#pragma once

#include <benchmark/benchmark.h>

namespace micro {

// Storage through durable::testing::Env against raw SQLite (storage_bench.cc).
void registerStorage();
void shutdownStorage();
// Stub fetches between objects against bare boost::asio posts (dispatch_bench.cc).
void registerDispatch();
void shutdownDispatch();
// RPC calls against fetch calls of the same increment (rpc_bench.cc).
void registerRpc();
void shutdownRpc();
// Value::encode / Value::decode against memcpy and Boost.JSON (codec_bench.cc).
void registerCodec();

}  // namespace micro
