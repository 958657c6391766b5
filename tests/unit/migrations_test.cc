#include "config/migrations.h"

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace durable::config {
namespace {

namespace fs = std::filesystem;

class MigrationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("durable-migrations-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)) / "persist";
    fs::remove_all(dir_.parent_path());
  }
  void TearDown() override { fs::remove_all(dir_.parent_path()); }

  static Config parse(const std::string& toml) { return parseConfig(toml, "wrangler.toml"); }

  // Expects `f` to throw ConfigError starting with `prefix` and containing `fragment`.
  template <typename F>
  static void expectConfigError(F&& f, const std::string& prefix, const std::string& fragment) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(prefix, 0), 0u) << "want prefix \"" << prefix << "\", got: " << msg;
      EXPECT_NE(msg.find(fragment), std::string::npos) << "want \"" << fragment << "\" in: " << msg;
    }
  }

  static const ClassRecord* find(const MigrationState& s, const std::string& name) {
    for (const auto& c : s.classes) {
      if (c.name == name) return &c;
    }
    return nullptr;
  }

  fs::path dir_;
};

constexpr const char* kV1 = R"(
[[migrations]]
tag = "v1"
new_classes = ["Counter"]
new_sqlite_classes = ["Room"]
)";

constexpr const char* kV2 = R"(
[[migrations]]
tag = "v2"
renamed_classes = [{ from = "Counter", to = "Tally" }]
)";

constexpr const char* kV3 = R"(
[[migrations]]
tag = "v3"
deleted_classes = ["Room"]
new_classes = ["Lobby"]
)";

TEST_F(MigrationsTest, CreatesDirAndDatabase) {
  MetaStore store(dir_);
  EXPECT_TRUE(fs::exists(dir_ / "meta.sqlite"));
  const MigrationState s = store.apply(parse(""));
  EXPECT_TRUE(s.classes.empty());
  EXPECT_TRUE(s.namespacesToPurge.empty());
}

TEST_F(MigrationsTest, ApplyIsIdempotentAcrossRestarts) {
  const Config config = parse(kV1);
  MigrationState first;
  {
    MetaStore store(dir_);
    first = store.apply(config);
    const MigrationState again = store.apply(config);
    ASSERT_EQ(again.classes.size(), 2u);
    EXPECT_EQ(again.classes[0].key, first.classes[0].key);
  }
  ASSERT_EQ(first.classes.size(), 2u);
  EXPECT_EQ(first.classes[0].name, "Counter");
  EXPECT_EQ(first.classes[0].nsId, 1);
  EXPECT_EQ(first.classes[1].name, "Room");
  EXPECT_EQ(first.classes[1].nsId, 2);
  EXPECT_NE(first.classes[0].key, first.classes[1].key);

  MetaStore reopened(dir_);
  const MigrationState second = reopened.apply(config);
  ASSERT_EQ(second.classes.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(second.classes[i].name, first.classes[i].name);
    EXPECT_EQ(second.classes[i].nsId, first.classes[i].nsId);
    EXPECT_EQ(second.classes[i].key, first.classes[i].key);
  }
}

TEST_F(MigrationsTest, LaterMigrationAppliesOnlyItself) {
  MigrationState before;
  {
    MetaStore store(dir_);
    before = store.apply(parse(kV1));
  }
  MetaStore store(dir_);
  const MigrationState after = store.apply(parse(std::string(kV1) + kV3));
  ASSERT_EQ(after.classes.size(), 2u);
  EXPECT_EQ(after.classes[0].name, "Counter");
  EXPECT_EQ(after.classes[0].key, before.classes[0].key);  // v1 was not re-run
  EXPECT_EQ(after.classes[1].name, "Lobby");
  EXPECT_EQ(after.classes[1].nsId, 3);
  EXPECT_EQ(after.namespacesToPurge, std::vector<std::int64_t>{2});
}

TEST_F(MigrationsTest, RenameKeepsNsIdAndKey) {
  MetaStore store(dir_);
  const MigrationState before = store.apply(parse(kV1));
  const MigrationState after = store.apply(parse(std::string(kV1) + kV2));
  EXPECT_EQ(find(after, "Counter"), nullptr);
  const ClassRecord* tally = find(after, "Tally");
  ASSERT_NE(tally, nullptr);
  EXPECT_EQ(tally->nsId, find(before, "Counter")->nsId);
  EXPECT_EQ(tally->key, find(before, "Counter")->key);
  EXPECT_TRUE(after.namespacesToPurge.empty());
}

TEST_F(MigrationsTest, DeleteQueuesAPurgeUntilMarked) {
  std::int64_t roomNs = 0;
  {
    MetaStore store(dir_);
    const MigrationState s = store.apply(parse(std::string(kV1) + kV2 + kV3));
    EXPECT_EQ(find(s, "Room"), nullptr);
    ASSERT_EQ(s.namespacesToPurge.size(), 1u);
    roomNs = s.namespacesToPurge[0];
    EXPECT_EQ(roomNs, 2);
  }
  MetaStore store(dir_);
  EXPECT_EQ(store.apply(parse(std::string(kV1) + kV2 + kV3)).namespacesToPurge, std::vector<std::int64_t>{roomNs});
  store.markPurged(roomNs);
  EXPECT_TRUE(store.apply(parse(std::string(kV1) + kV2 + kV3)).namespacesToPurge.empty());
}

TEST_F(MigrationsTest, NsIdsAreNeverReused) {
  MetaStore store(dir_);
  store.apply(parse(std::string(kV1) + kV3));
  store.markPurged(2);
  const MigrationState s = store.apply(parse(std::string(kV1) + kV3 + R"(
[[migrations]]
tag = "v4"
new_classes = ["Room"]
)"));
  EXPECT_EQ(find(s, "Room")->nsId, 4);
}

TEST_F(MigrationsTest, FailedMigrationChangesNothing) {
  MetaStore store(dir_);
  const MigrationState before = store.apply(parse(kV1));
  // The first step of v2 would succeed on its own; the whole migration must roll back.
  const Config bad = parse(std::string(kV1) + R"(
[[migrations]]
tag = "v2"
new_classes = ["Extra"]
renamed_classes = [{ from = "Missing", to = "Other" }]
)");
  expectConfigError([&] { store.apply(bad); }, "wrangler.toml:7: migration v2: ", "cannot rename class Missing");
  expectConfigError([&] { store.apply(bad); }, "wrangler.toml:7: migration v2: ", "no such class");

  const MigrationState after = store.apply(parse(kV1));
  ASSERT_EQ(after.classes.size(), before.classes.size());
  EXPECT_EQ(find(after, "Extra"), nullptr);
  // v2 was not recorded: a corrected v2 still applies, and its nsId was not consumed.
  const MigrationState fixed = store.apply(parse(std::string(kV1) + R"(
[[migrations]]
tag = "v2"
new_classes = ["Extra"]
)"));
  EXPECT_EQ(find(fixed, "Extra")->nsId, 3);
}

TEST_F(MigrationsTest, StepErrorsNameLineAndTag) {
  MetaStore store(dir_);
  store.apply(parse(kV1));
  expectConfigError([&] { store.apply(parse(std::string(kV1) + "[[migrations]]\ntag = \"v2\"\nnew_classes = [\"Room\"]\n")); },
                    "wrangler.toml:6: migration v2: ", "cannot create class Room: it already exists");
  expectConfigError(
      [&] {
        store.apply(parse(std::string(kV1) +
                          "[[migrations]]\ntag = \"v2\"\nrenamed_classes = [{ from = \"Counter\", to = \"Room\" }]\n"));
      },
      "wrangler.toml:6: migration v2: ", "Room already exists");
  // A key-value backed class cannot become SQLite-backed.
  expectConfigError(
      [&] { store.apply(parse(std::string(kV1) + "[[migrations]]\ntag = \"v2\"\nnew_sqlite_classes = [\"Counter\"]\n")); },
      "wrangler.toml:6: migration v2: ", "cannot change its storage backend");
  expectConfigError([&] { store.apply(parse(std::string(kV1) + "[[migrations]]\ntag = \"v2\"\ndeleted_classes = [\"Nope\"]\n")); },
                    "wrangler.toml:6: migration v2: ", "cannot delete class Nope: no such class");
  expectConfigError([&] { store.apply(parse("[[migrations]]\ntag = \"v0\"\nnew_classes = [\"A\", \"A\"]\n")); },
                    "wrangler.toml:1: migration v0: ", "expected migration v1");  // checked before anything runs
}

TEST_F(MigrationsTest, ChangedHistoryIsRejected) {
  MetaStore store(dir_);
  store.apply(parse(std::string(kV1) + kV2));
  // v1 removed: the config's first migration is v2 where v1 was applied.
  expectConfigError([&] { store.apply(parse(kV2)); }, "wrangler.toml:2: migration v2: ", "expected migration v1");
  // v2 missing from the end.
  expectConfigError([&] { store.apply(parse(kV1)); }, "wrangler.toml: migration v2 was applied but is missing",
                    "has applied: v1, v2");
  // Nothing was changed by the refused attempts.
  const MigrationState s = store.apply(parse(std::string(kV1) + kV2));
  EXPECT_NE(find(s, "Tally"), nullptr);
}

TEST_F(MigrationsTest, PartitionsPersist) {
  {
    MetaStore store(dir_);
    EXPECT_EQ(store.partitions(), std::nullopt);
    store.setPartitions(8);
    EXPECT_EQ(store.partitions(), 8);
  }
  MetaStore store(dir_);
  EXPECT_EQ(store.partitions(), 8);
  store.setPartitions(4);
  EXPECT_EQ(store.partitions(), 4);
}

TEST_F(MigrationsTest, DatabaseIsWal) {
  { MetaStore store(dir_); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "meta.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(MigrationsTest, ValidateBindings) {
  const Config config = parse(std::string(kV1) + kV2 + R"(
[[durable_objects.bindings]]
name = "TALLY"
class_name = "Tally"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[durable_objects.bindings]]
name = "ROOM"
class_name = "Room"
)");
  MetaStore store(dir_);
  const MigrationState s = store.apply(config);
  // Counter was renamed away, so its binding is the first failure.
  expectConfigError([&] { validateBindings(config, s, {"Tally", "Room", "Counter"}); },
                    "wrangler.toml:15: binding COUNTER: class Counter is not declared by any migration", "");

  Config ok = config;
  ok.bindings.erase(ok.bindings.begin() + 1);
  EXPECT_NO_THROW(validateBindings(ok, s, {"Tally", "Room"}));
  expectConfigError([&] { validateBindings(ok, s, {"Tally", "Zeta", "Alpha"}); },
                    "wrangler.toml:19: binding ROOM: class Room is not exported by this server (exported: Alpha, Tally, Zeta)",
                    "");
}

}  // namespace
}  // namespace durable::config
