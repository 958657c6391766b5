// Not in the seed: a SQLite-backed class (new_sqlite_classes) for trying the SQL API over HTTP.
// Each object is one notebook: its notes in a table, searched with SQLite's FTS5, and its
// history restorable to any point of the last 30 days (point-in-time recovery).
//
//   POST   /notes           {"text": "…"}  → 201 {"id", "text", "createdAt"}
//   GET    /notes?q=words                  → matching notes, newest first (all without q)
//   DELETE /notes/:noteId                  → 204, or 404
//   GET    /bookmark[?at=ms]               → {"bookmark": "…"} now, or for that time
//   POST   /restore {"bookmark": "…"}      → 202 {"bookmark", "undo"}; the notebook restarts
//                                            and serves the state the bookmark names
#pragma once

#include <durable/durable.h>

#include <string>
#include <string_view>

namespace seed {

class Notes : public durable::DurableObject {
 public:
  Notes(durable::State& state, durable::Env& env) : DurableObject(state, env) {
    // The text lives once, in `notes`; the FTS5 index points at it (an external content
    // table) and the triggers keep the two in step.
    state.storage().sql().exec(R"sql(
      CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, text TEXT NOT NULL, created_at INTEGER NOT NULL);
      CREATE VIRTUAL TABLE IF NOT EXISTS notes_fts USING fts5(text, content='notes', content_rowid='id');
      CREATE TRIGGER IF NOT EXISTS notes_added AFTER INSERT ON notes BEGIN
        INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text);
      END;
      CREATE TRIGGER IF NOT EXISTS notes_deleted AFTER DELETE ON notes BEGIN
        INSERT INTO notes_fts(notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
      END;
    )sql");
  }

  durable::Task<durable::Response> fetch(durable::Request request) override {
    const auto url = request.url();
    const std::string path = url.pathname();
    auto& sql = state().storage().sql();

    if (path == "/notes" && request.method() == "POST") {
      const auto text = stringField(request, "text");
      if (!text) co_return error(400, "the body must be JSON: {\"text\": \"...\"}");
      if (text->empty()) co_return error(400, "\"text\" must be a non-empty string");
      const auto now = durable::now();
      const auto id = sql.exec("INSERT INTO notes(text, created_at) VALUES (?, ?) RETURNING id", *text, now)
                          .one()
                          .get<std::int64_t>("id");
      co_return durable::Response::json(boost::json::object{{"id", id}, {"text", *text}, {"createdAt", now}},
                                        {.status = 201});
    }

    if (path == "/notes" && request.method() == "GET") {
      const auto q = url.searchParams().get("q");
      boost::json::array out;
      auto add = [&out](const durable::SqlRow& row) {
        out.push_back(boost::json::object{{"id", row.get<std::int64_t>("id")},
                                          {"text", row.get<std::string>("text")},
                                          {"createdAt", row.get<std::int64_t>("created_at")}});
      };
      if (!q) {
        for (const auto& row : sql.exec("SELECT id, text, created_at FROM notes ORDER BY created_at DESC, id DESC")) {
          add(row);
        }
      } else if (const auto match = ftsQuery(*q); !match.empty()) {
        for (const auto& row : sql.exec("SELECT id, text, created_at FROM notes WHERE id IN "
                                        "(SELECT rowid FROM notes_fts WHERE notes_fts MATCH ?) "
                                        "ORDER BY created_at DESC, id DESC",
                                        match)) {
          add(row);
        }
      }
      co_return durable::Response::json(out);
    }

    if (path.starts_with("/notes/") && request.method() == "DELETE") {
      const auto noteId = parseId(std::string_view(path).substr(7));
      if (!noteId || sql.exec("DELETE FROM notes WHERE id = ?", *noteId).rowsWritten() == 0) {
        co_return error(404, "no such note");
      }
      co_return durable::Response(nullptr, {.status = 204});
    }

    if (path == "/bookmark" && request.method() == "GET") {
      const auto at = url.searchParams().get("at");
      std::optional<std::int64_t> time;
      if (at) {
        time = parseId(*at);
        if (!time) co_return error(400, "?at= must be a time in epoch milliseconds");
      }
      std::string bookmark;
      std::string failure;
      try {
        if (time) {
          bookmark = co_await state().storage().getBookmarkForTime(*time);
        } else {
          bookmark = co_await state().storage().getCurrentBookmark();
        }
      } catch (const durable::Error& e) {
        if (e.code() != durable::ErrorCode::kInvalidArgument && e.code() != durable::ErrorCode::kNotFound) throw;
        failure = e.what();
      }
      if (!failure.empty()) co_return error(400, failure);
      co_return durable::Response::json(boost::json::object{{"bookmark", bookmark}});
    }

    if (path == "/restore" && request.method() == "POST") {
      const auto field = stringField(request, "bookmark");
      if (!field) co_return error(400, "the body must be JSON: {\"bookmark\": \"...\"}");
      const std::string bookmark = *field;
      if (bookmark.empty()) co_return error(400, "\"bookmark\" must be a non-empty string");
      std::string undo;
      std::string failure;
      try {
        undo = co_await state().storage().onNextSessionRestoreBookmark(bookmark);
      } catch (const durable::Error& e) {
        if (e.code() != durable::ErrorCode::kInvalidArgument && e.code() != durable::ErrorCode::kNotFound) throw;
        failure = e.what();
      }
      if (!failure.empty()) co_return error(400, failure);
      // The restore happens when the notebook starts again: once this reply has left, it ends
      // itself (ctx.abort() on Cloudflare) and the next request starts it from the bookmark.
      state().waitUntil(restartSoon(state()));
      co_return durable::Response::json(boost::json::object{{"bookmark", bookmark}, {"undo", undo}}, {.status = 202});
    }

    co_return error(404, "not found");
  }

 private:
  // A JSON object body's string field: "" when the field is missing or not a string, nullopt
  // when the body is not JSON.
  static std::optional<std::string> stringField(const durable::Request& request, const char* name) {
    try {
      const auto body = request.json();
      const auto* object = body.if_object();
      const auto* field = object ? object->if_contains(name) : nullptr;
      return field && field->is_string() ? std::string(field->get_string()) : std::string();
    } catch (const durable::Error&) {
      return std::nullopt;
    }
  }

  static durable::Task<void> restartSoon(durable::State& state) {
    co_await durable::sleep(1);
    state.abort("restoring a bookmark");
  }

  static durable::Response error(int status, std::string message) {
    return durable::Response::json(boost::json::object{{"error", std::move(message)}}, {.status = status});
  }

  static std::optional<std::int64_t> parseId(std::string_view s) {
    if (s.empty() || s.size() > 18) return std::nullopt;
    std::int64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    return v;
  }

  // The words of `q` as an FTS5 query that matches notes holding all of them: each word a
  // quoted string, so that nothing the user types is read as FTS5 syntax (AND, NEAR, "*", a
  // column filter, an unbalanced quote). Empty when `q` has no word.
  static std::string ftsQuery(std::string_view q) {
    std::string out;
    std::string word;
    auto flush = [&] {
      if (word.empty()) return;
      if (!out.empty()) out += ' ';
      out += '"' + word + '"';
      word.clear();
    };
    for (char c : q) {
      const auto u = static_cast<unsigned char>(c);
      if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || u >= 0x80) {
        word += c;
      } else {
        flush();
      }
    }
    flush();
    return out;
  }
};

}  // namespace seed
