// An author's test of their own class, through durable/testing.h: real storage, real runtime.
#include "guestbook.h"

#include <durable/testing.h>

#include <gtest/gtest.h>

TEST(Guestbook, SignsAndListsInOrder) {
  durable::testing::Env env;
  const auto& books = env.exportClass<Guestbook>("GUESTBOOK");
  const auto stub = books.getByName("lobby");

  EXPECT_EQ(env.fetch(stub, "http://do/sign?name=ada", {.method = "POST"}).json(),
            boost::json::parse(R"({"signed":"ada","number":1})"));
  env.fetch(stub, "http://do/sign?name=grace", {.method = "POST"});
  EXPECT_EQ(env.fetch(stub, "http://do/entries").json(), boost::json::parse(R"(["ada","grace"])"));
}

TEST(Guestbook, EntriesSurviveARestart) {
  durable::testing::Env env;
  const auto& books = env.exportClass<Guestbook>("GUESTBOOK");
  env.fetch(books.getByName("lobby"), "http://do/sign?name=ada", {.method = "POST"});
  env.restart();
  env.runInDurableObject<Guestbook>(books.getByName("lobby"), [](Guestbook&, durable::State& state) -> durable::Task<void> {
    EXPECT_EQ(co_await state.storage().get<std::int64_t>("count"), 1);
  });
}

TEST(Guestbook, BooksAreSeparate) {
  durable::testing::Env env;
  const auto& books = env.exportClass<Guestbook>("GUESTBOOK");
  env.fetch(books.getByName("a"), "http://do/sign?name=ada", {.method = "POST"});
  EXPECT_EQ(env.fetch(books.getByName("b"), "http://do/entries").json(), boost::json::array());
}
