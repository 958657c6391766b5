# workerd's configuration for the seed app (src/index.ts, bundled to dist/index.js by
# bench/compare/build-workerd.sh). Every Durable Object namespace keeps its storage on disk:
# durableObjectStorage = (localDisk = "do-storage") names the disk service below, whose path
# bench/compare/run.sh overrides per run with `--directory-path do-storage=<fresh dir>`, and the
# listening address with `--socket-addr http=127.0.0.1:<port>`.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .seedWorker),
    (name = "do-storage", disk = (path = "/tmp/durable-bench-workerd-state", writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8788", http = (), service = "main"),
  ],
);

const seedWorker :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "dist/index.js"),
  ],
  compatibilityDate = "2025-10-01",
  durableObjectNamespaces = [
    (className = "Counter", uniqueKey = "durable-seed-Counter"),
    (className = "RateLimiter", uniqueKey = "durable-seed-RateLimiter"),
    (className = "ScheduledTask", uniqueKey = "durable-seed-ScheduledTask"),
    (className = "ChatRoom", uniqueKey = "durable-seed-ChatRoom"),
    (className = "HibernatingRoom", uniqueKey = "durable-seed-HibernatingRoom"),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "COUNTER", durableObjectNamespace = "Counter"),
    (name = "RATE_LIMITER", durableObjectNamespace = "RateLimiter"),
    (name = "TASK", durableObjectNamespace = "ScheduledTask"),
    (name = "ROOM", durableObjectNamespace = "ChatRoom"),
    (name = "HIBERNATING_ROOM", durableObjectNamespace = "HibernatingRoom"),
  ],
);
