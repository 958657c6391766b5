#include <durable/error.h>
#include <durable/http.h>

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace durable {
namespace {

TEST(HttpHeadersTest, NamesAreCaseInsensitiveAndStoredLowerCase) {
  Headers h;
  h.set("Content-Type", "text/html");
  EXPECT_TRUE(h.has("content-type"));
  EXPECT_TRUE(h.has("CONTENT-TYPE"));
  EXPECT_EQ(h.get("cOnTeNt-TyPe"), "text/html");
  ASSERT_EQ(h.entries().size(), 1u);
  EXPECT_EQ(h.entries()[0].first, "content-type");
}

TEST(HttpHeadersTest, GetJoinsSeveralValues) {
  Headers h;
  h.append("Accept", "text/html");
  h.append("accept", "application/json");
  EXPECT_EQ(h.get("ACCEPT"), "text/html, application/json");
  EXPECT_EQ(h.entries().size(), 2u);
}

TEST(HttpHeadersTest, SetReplacesEveryValue) {
  Headers h{{"X-A", "1"}, {"x-b", "2"}, {"x-a", "3"}};
  h.set("X-a", "4");
  EXPECT_EQ(h.get("x-a"), "4");
  ASSERT_EQ(h.entries().size(), 2u);
  EXPECT_EQ(h.entries()[0].first, "x-a");
  EXPECT_EQ(h.entries()[1].first, "x-b");
}

TEST(HttpHeadersTest, RemoveAndMissing) {
  Headers h{{"X-A", "1"}};
  h.remove("x-A");
  EXPECT_FALSE(h.has("x-a"));
  EXPECT_EQ(h.get("x-a"), std::nullopt);
  EXPECT_TRUE(h.empty());
}

TEST(HttpUrlTest, Parts) {
  URL u("http://example.com:8080/a/b%20c?x=1&y=2#frag");
  EXPECT_EQ(u.protocol(), "http:");
  EXPECT_EQ(u.host(), "example.com:8080");
  EXPECT_EQ(u.hostname(), "example.com");
  EXPECT_EQ(u.port(), "8080");
  EXPECT_EQ(u.pathname(), "/a/b%20c");
  EXPECT_EQ(u.search(), "?x=1&y=2");
  EXPECT_EQ(u.href(), "http://example.com:8080/a/b%20c?x=1&y=2#frag");
}

TEST(HttpUrlTest, EmptyPathIsSlashAndNoQueryIsEmptySearch) {
  URL u("https://example.com");
  EXPECT_EQ(u.protocol(), "https:");
  EXPECT_EQ(u.host(), "example.com");
  EXPECT_EQ(u.port(), "");
  EXPECT_EQ(u.pathname(), "/");
  EXPECT_EQ(u.search(), "");
}

TEST(HttpUrlTest, InvalidUrlThrowsInvalidArgument) {
  for (const char* bad : {"/relative/path", "not a url", "", "http://exa mple.com/"}) {
    try {
      URL u(bad);
      ADD_FAILURE() << "no throw for " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("invalid URL"), std::string::npos);
    }
  }
}

TEST(HttpSearchParamsTest, DecodesPlusAndPercent) {
  URL u("http://h/p?a=hello+world&b=x%20y&c=%2Fslash&d=50%25");
  auto q = u.searchParams();
  EXPECT_EQ(q.get("a"), "hello world");
  EXPECT_EQ(q.get("b"), "x y");
  EXPECT_EQ(q.get("c"), "/slash");
  EXPECT_EQ(q.get("d"), "50%");
}

TEST(HttpSearchParamsTest, RepeatedKeysGetReturnsFirst) {
  SearchParams q("k=1&other=x&k=2&k=3");
  EXPECT_EQ(q.get("k"), "1");
  EXPECT_EQ(q.getAll("k"), (std::vector<std::string>{"1", "2", "3"}));
}

TEST(HttpSearchParamsTest, MissingEmptyAndKeyOnly) {
  SearchParams q("flag&empty=&&a+b=c");
  EXPECT_TRUE(q.has("flag"));
  EXPECT_EQ(q.get("flag"), "");
  EXPECT_EQ(q.get("empty"), "");
  EXPECT_EQ(q.get("a b"), "c");
  EXPECT_FALSE(q.has("missing"));
  EXPECT_TRUE(q.getAll("missing").empty());
}

TEST(HttpSearchParamsTest, InvalidEscapesStayLiteral) {
  SearchParams q("a=%zz&b=%4");
  EXPECT_EQ(q.get("a"), "%zz");
  EXPECT_EQ(q.get("b"), "%4");
}

TEST(HttpJsonTest, StringifyAndParse) {
  Json v = boost::json::object{{"a", 1}, {"b", boost::json::array{true, nullptr, "x"}}};
  EXPECT_EQ(stringify(v), R"({"a":1,"b":[true,null,"x"]})");
  EXPECT_EQ(parseJson(stringify(v)), v);
}

TEST(HttpJsonTest, ParseErrorIsInvalidArgument) {
  try {
    parseJson("{not json");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(std::string(e.what()).rfind("invalid JSON: ", 0), 0u);
  }
}

TEST(HttpRequestTest, StringBodyDefaultsToTextPlain) {
  Request r("http://h/x", {.method = "POST", .body = "hi"});
  EXPECT_TRUE(r.hasBody());
  EXPECT_EQ(r.text(), "hi");
  EXPECT_EQ(r.headers().get("content-type"), "text/plain;charset=UTF-8");
}

TEST(HttpRequestTest, ExplicitContentTypeIsKept) {
  Request r("http://h/x", {.method = "POST", .headers = {{"Content-Type", "application/json"}}, .body = R"({"n":2})"});
  EXPECT_EQ(r.headers().get("content-type"), "application/json");
  EXPECT_EQ(r.json().at("n").as_int64(), 2);
}

TEST(HttpRequestTest, NoBodyNoContentType) {
  Request r("http://h/x");
  EXPECT_EQ(r.method(), "GET");
  EXPECT_FALSE(r.hasBody());
  EXPECT_FALSE(r.headers().has("content-type"));
  EXPECT_EQ(r.url().pathname(), "/x");
  EXPECT_EQ(r.urlString(), "http://h/x");
}

TEST(HttpRequestTest, StandardMethodsAreUpperCased) {
  EXPECT_EQ(Request("http://h/", {.method = "post"}).method(), "POST");
  EXPECT_EQ(Request("http://h/", {.method = "delete"}).method(), "DELETE");
  EXPECT_EQ(Request("http://h/", {.method = "Patch"}).method(), "PATCH");
  EXPECT_EQ(Request("http://h/", {.method = "head"}).method(), "HEAD");
  // Extension methods are case-sensitive in Fetch and left alone.
  EXPECT_EQ(Request("http://h/", {.method = "purge"}).method(), "purge");
}

TEST(HttpResponseTest, StringBodyDefaultsToTextPlain) {
  Response r("hello");
  EXPECT_EQ(r.status(), 200);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.hasBody());
  EXPECT_EQ(r.text(), "hello");
  EXPECT_EQ(r.headers().get("content-type"), "text/plain;charset=UTF-8");
}

TEST(HttpResponseTest, StringBodyKeepsGivenContentType) {
  Response r(std::string("<p>"), {.status = 201, .statusText = "Created", .headers = {{"Content-Type", "text/html"}}});
  EXPECT_EQ(r.status(), 201);
  EXPECT_EQ(r.statusText(), "Created");
  EXPECT_EQ(r.headers().get("content-type"), "text/html");
}

TEST(HttpResponseTest, JsonSetsApplicationJson) {
  Response r = Response::json(boost::json::object{{"ok", true}}, {.status = 418});
  EXPECT_EQ(r.status(), 418);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.headers().get("content-type"), "application/json");
  EXPECT_EQ(r.text(), R"({"ok":true})");
  EXPECT_EQ(r.json().at("ok").as_bool(), true);
}

TEST(HttpResponseTest, NullBodyHasNoContentType) {
  Response r(nullptr, {.status = 204});
  EXPECT_EQ(r.status(), 204);
  EXPECT_FALSE(r.hasBody());
  EXPECT_EQ(r.text(), "");
  EXPECT_FALSE(r.headers().has("content-type"));
  Response d;
  EXPECT_EQ(d.status(), 200);
  EXPECT_FALSE(d.hasBody());
}

}  // namespace
}  // namespace durable

namespace durable {
namespace {

// The one-pass parser for plain URLs and Boost.URL's full parser must agree on the parts.
TEST(HttpUrlTest, PlainAndUnusualUrlsSplitTheSame) {
  URL plain("http://127.0.0.1:8787/a%20b/c?x=1&y=%2F");
  EXPECT_EQ(plain.protocol(), "http:");
  EXPECT_EQ(plain.host(), "127.0.0.1:8787");
  EXPECT_EQ(plain.hostname(), "127.0.0.1");
  EXPECT_EQ(plain.port(), "8787");
  EXPECT_EQ(plain.pathname(), "/a%20b/c");
  EXPECT_EQ(plain.search(), "?x=1&y=%2F");
  EXPECT_EQ(plain.searchParams().get("y"), "/");

  URL noPath("http://do");
  EXPECT_EQ(noPath.pathname(), "/");
  EXPECT_EQ(noPath.search(), "");
  EXPECT_EQ(noPath.port(), "");

  // Userinfo, a fragment, IPv6 and dot segments take the full parser.
  URL unusual("http://user@example.com:81/p/q?z=2#frag");
  EXPECT_EQ(unusual.hostname(), "example.com");
  EXPECT_EQ(unusual.port(), "81");
  EXPECT_EQ(unusual.pathname(), "/p/q");
  EXPECT_EQ(unusual.search(), "?z=2");
  URL v6("http://[::1]:8080/x");
  EXPECT_EQ(v6.host(), "[::1]:8080");
  EXPECT_EQ(v6.pathname(), "/x");
  // Dot segments are resolved, as `new URL()` does.
  URL dots("http://h/a/../b");
  EXPECT_EQ(dots.hostname(), "h");
  EXPECT_EQ(dots.pathname(), "/b");
  EXPECT_EQ(dots.href(), "http://h/b");
  EXPECT_EQ(URL("http://h:8/a/./b/../c?q=/../x").pathname(), "/a/c");
  EXPECT_EQ(URL("http://h:8/a/./b/../c?q=/../x").search(), "?q=/../x");
  EXPECT_EQ(URL("http://h/a/%2e%2E/b/%2e").pathname(), "/b/");
  EXPECT_EQ(URL("http://h/../..").pathname(), "/");
  EXPECT_EQ(URL("http://h/a/.hidden/..x").pathname(), "/a/.hidden/..x");

  EXPECT_THROW(URL("no scheme here"), Error);
  EXPECT_THROW(URL("http://h/a b"), Error);
}

TEST(UrlTest, SchemeAndHostAreLowerCaseAsInTheUrlStandardAndNothingElseIs) {
  URL simple("HTTP://Example.COM:8080/Path?Q=V");
  EXPECT_EQ(simple.protocol(), "http:");
  EXPECT_EQ(simple.host(), "example.com:8080");
  EXPECT_EQ(simple.hostname(), "example.com");
  EXPECT_EQ(simple.pathname(), "/Path");
  EXPECT_EQ(simple.search(), "?Q=V");
  EXPECT_EQ(simple.href(), "http://example.com:8080/Path?Q=V");
  // A host the fast parser leaves to Boost.URL (an underscore), and dot segments (parsed twice).
  URL general("HTTPS://Under_Score.TEST/A/../B");
  EXPECT_EQ(general.protocol(), "https:");
  EXPECT_EQ(general.hostname(), "under_score.test");
  EXPECT_EQ(general.pathname(), "/B");
}

}  // namespace
}  // namespace durable
