// durable/durable.h: everything an object author or a Worker needs.
#pragma once

#include <durable/clock.h>
#include <durable/console.h>
#include <durable/error.h>
#include <durable/fetch.h>
#include <durable/http.h>
#include <durable/id.h>
#include <durable/namespace.h>
#include <durable/object.h>
#include <durable/rpc.h>
#include <durable/server.h>
#include <durable/storage.h>
#include <durable/task.h>
#include <durable/timer.h>
#include <durable/value.h>
#include <durable/worker.h>
