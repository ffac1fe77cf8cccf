/*  store.c — pipelined calls of the tierd Redis functions.

    hiredis is used synchronously on purpose: the router gathers every call a
    batch of messages needs, writes them in one go and reads the replies in
    one go (a pipeline). That keeps one round trip per batch, which is what
    bounds throughput, without the callback maze of the async API, and keeps
    the order of state changes equal to the order of calls.
*/
#include "store.h"
#include "log.h"
#include "tier.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REPLY_FIELDS   5 //  status reason seq events payload

extern const char store_lua_source[];
extern const size_t store_lua_size;

typedef struct {
    store_done_fn *done; //  callback, may be NULL
    void *arg;           //  its argument
} pending_t;

struct _store_t {
    char *host;             //  from the URL
    int port;               //  from the URL
    int db;                 //  from the URL, SELECTed on connect
    char *prefix;           //  key prefix
    int connect_timeout_ms; //  per connection attempt
    int command_timeout_ms; //  per round trip
    redisContext *redis;    //  NULL while down
    char error[256];        //  why it is down
    int64_t next_try_ms;    //  backoff: no attempt before this
    int backoff_ms;         //  current backoff
    char *bytes;            //  argument bytes of the call being built
    size_t bytes_used, bytes_size;
    size_t *arg_off, *arg_len; //  offsets and lengths into bytes
    size_t args, args_size;    //  arguments of the call being built
    const char **argv;         //  resolved pointers for hiredis
    pending_t *pending;        //  calls queued, in order
    size_t pending_count, pending_size;
};

static void *s_grow(void *ptr, size_t *size, size_t need, size_t elem)
{
    if (need <= *size)
        return ptr;
    size_t size_new = *size ? *size : 16;
    while (size_new < need)
        size_new *= 2;
    void *grown = realloc(ptr, size_new * elem);
    if (!grown) {
        log_error("out of memory growing a buffer to %zu items", size_new);
        abort();
    }
    *size = size_new;
    return grown;
}

static int s_parse_url(store_t *self, const char *url)
{
    char host[256] = "127.0.0.1";
    int port = 6379, db = 0;
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    const char *rest = url + 8;
    const char *at = strchr(rest, '@'); //  credentials are not supported
    if (at)
        return -1;
    if (sscanf(rest, "%255[^:/]:%d/%d", host, &port, &db) < 1 &&
        sscanf(rest, "%255[^:/]", host) != 1)
        return -1;
    if (port <= 0 || port > 65535 || db < 0)
        return -1;
    self->host = strdup(host);
    self->port = port;
    self->db = db;
    return 0;
}

store_t *store_new(const store_config_t *config)
{
    store_t *self = calloc(1, sizeof(store_t));
    if (!self)
        return NULL;
    if (s_parse_url(self, config->url)) {
        log_error("redis url \"%s\" is not redis://HOST[:PORT][/DB]", config->url);
        free(self);
        return NULL;
    }
    self->prefix = strdup(config->prefix);
    self->connect_timeout_ms = config->connect_timeout_ms;
    self->command_timeout_ms = config->command_timeout_ms;
    self->backoff_ms = BACKOFF_MIN_MS;
    snprintf(self->error, sizeof(self->error), "not connected yet");
    return self;
}

void store_destroy(store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    if (self->redis)
        redisFree(self->redis);
    free(self->host);
    free(self->prefix);
    free(self->bytes);
    free(self->arg_off);
    free(self->arg_len);
    free(self->argv);
    free(self->pending);
    free(self);
    *self_p = NULL;
}

static struct timeval s_timeval(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void s_down(store_t *self, const char *why)
{
    //  `why` may point into the context: copy it before freeing the context.
    if (why != self->error)
        snprintf(self->error, sizeof(self->error), "%s", why);
    if (self->redis) {
        log_error("redis %s:%d lost: %s; refusing new work until it is back", self->host,
                  self->port, self->error);
        redisFree(self->redis);
        self->redis = NULL;
    }
}

//  A command outside the pipeline, for connection set-up only.
static int s_command(store_t *self, const char *what, int argc, const char **argv,
                     const size_t *lens)
{
    redisReply *reply = redisCommandArgv(self->redis, argc, argv, lens);
    if (!reply) {
        s_down(self, self->redis->errstr);
        return -1;
    }
    int rc = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis %s failed: %s (tierd needs Redis 7.0 or later)", what, reply->str);
        snprintf(self->error, sizeof(self->error), "%s failed: %.200s", what, reply->str);
        rc = -1;
    }
    freeReplyObject(reply);
    return rc;
}

static int s_connect(store_t *self)
{
    self->redis =
        redisConnectWithTimeout(self->host, self->port, s_timeval(self->connect_timeout_ms));
    if (!self->redis || self->redis->err) {
        snprintf(self->error, sizeof(self->error), "cannot connect to %s:%d: %s", self->host,
                 self->port, self->redis ? self->redis->errstr : "out of memory");
        if (self->redis)
            redisFree(self->redis);
        self->redis = NULL;
        return -1;
    }
    redisSetTimeout(self->redis, s_timeval(self->command_timeout_ms));
    if (self->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", self->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        if (s_command(self, "SELECT", 2, argv, lens))
            goto failed;
    }
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", store_lua_source};
    size_t lens[] = {8, 4, 7, store_lua_size};
    if (s_command(self, "FUNCTION LOAD", 4, argv, lens))
        goto failed;
    return 0;
failed:
    if (self->redis)
        redisFree(self->redis);
    self->redis = NULL;
    return -1;
}

int store_reconnect(store_t *self, int64_t now_ms)
{
    if (self->redis)
        return 0;
    if (now_ms < self->next_try_ms)
        return -1;
    if (s_connect(self) == 0) {
        log_notice("redis %s:%d connected, functions loaded", self->host, self->port);
        self->backoff_ms = BACKOFF_MIN_MS;
        self->error[0] = 0;
        return 0;
    }
    log_warning("redis: %s; retrying in %d ms", self->error, self->backoff_ms);
    self->next_try_ms = now_ms + self->backoff_ms;
    self->backoff_ms =
        self->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : self->backoff_ms * 2;
    return -1;
}

bool store_up(store_t *self)
{
    return self->redis != NULL;
}

const char *store_error(store_t *self)
{
    return self->redis ? "" : self->error;
}

//  The three argument arrays share one capacity, args_size.
static void s_reserve_args(store_t *self, size_t need)
{
    if (need <= self->args_size)
        return;
    size_t size = self->args_size;
    self->arg_off = s_grow(self->arg_off, &size, need, sizeof(size_t));
    size = self->args_size;
    self->arg_len = s_grow(self->arg_len, &size, need, sizeof(size_t));
    size = self->args_size;
    self->argv = s_grow(self->argv, &size, need, sizeof(char *));
    self->args_size = size;
}

void store_arg_bin(store_t *self, const void *data, size_t size)
{
    self->bytes = s_grow(self->bytes, &self->bytes_size, self->bytes_used + size + 1, 1);
    s_reserve_args(self, self->args + 1);
    if (size)
        memcpy(self->bytes + self->bytes_used, data, size);
    self->arg_off[self->args] = self->bytes_used;
    self->arg_len[self->args] = size;
    self->bytes_used += size;
    self->args++;
}

void store_arg_str(store_t *self, const char *s)
{
    store_arg_bin(self, s ? s : "", s ? strlen(s) : 0);
}

void store_arg_u64(store_t *self, uint64_t value)
{
    char text[24];
    int len = snprintf(text, sizeof(text), "%llu", (unsigned long long) value);
    store_arg_bin(self, text, (size_t) len);
}

void store_call_begin(store_t *self, const char *fn, int64_t now_ms)
{
    self->args = 0;
    self->bytes_used = 0;
    store_arg_str(self, "FCALL");
    store_arg_str(self, fn);
    store_arg_str(self, "0");
    store_arg_str(self, self->prefix);
    store_arg_u64(self, (uint64_t) now_ms);
}

static void s_complete(pending_t *call, int code, const char *reason)
{
    store_result_t result = {.code = code, .reason = reason};
    if (call->done)
        call->done(call->arg, &result);
}

void store_call_end(store_t *self, store_done_fn *done, void *arg)
{
    pending_t call = {done, arg};
    if (!self->redis) {
        s_complete(&call, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, self->error);
        return;
    }
    for (size_t i = 0; i < self->args; i++)
        self->argv[i] = self->bytes + self->arg_off[i];
    if (redisAppendCommandArgv(self->redis, (int) self->args, self->argv, self->arg_len) !=
        REDIS_OK) {
        s_complete(&call, TIER__V1__ERROR_CODE__ERROR_INTERNAL, "cannot format redis command");
        return;
    }
    self->pending =
        s_grow(self->pending, &self->pending_size, self->pending_count + 1, sizeof(pending_t));
    self->pending[self->pending_count++] = call;
}

size_t store_pending(store_t *self)
{
    return self->pending_count;
}

static int s_error_code(const char *status)
{
    char name[64];
    snprintf(name, sizeof(name), "ERROR_%s", status);
    const ProtobufCEnumValue *value =
        protobuf_c_enum_descriptor_get_value_by_name(&tier__v1__error_code__descriptor, name);
    return value ? value->value : TIER__V1__ERROR_CODE__ERROR_INTERNAL;
}

static void s_deliver(pending_t *call, redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis function failed: %s", reply->str);
        s_complete(call, TIER__V1__ERROR_CODE__ERROR_INTERNAL, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != REPLY_FIELDS) {
        log_error("redis function returned an unexpected reply (type %d)", reply->type);
        s_complete(call, TIER__V1__ERROR_CODE__ERROR_INTERNAL, "unexpected reply from redis");
        return;
    }
    const char *status = store_str(reply->element[0]);
    store_result_t result = {
        .code = strcmp(status, "OK") == 0 ? 0 : s_error_code(status),
        .reason = store_str(reply->element[1]),
        .seq_last = store_u64(reply->element[2]),
        .events = reply->element[3],
        .payload = reply->element[4],
    };
    if (call->done)
        call->done(call->arg, &result);
}

int store_flush(store_t *self)
{
    size_t count = self->pending_count, done = 0;
    int rc = 0;
    while (done < count) {
        void *raw = NULL;
        if (!self->redis || redisGetReply(self->redis, &raw) != REDIS_OK || !raw) {
            s_down(self, self->redis ? self->redis->errstr : self->error);
            rc = -1;
            break;
        }
        //  The callback may queue further calls: they go into the next flush.
        pending_t call = self->pending[done++];
        s_deliver(&call, raw);
        freeReplyObject(raw);
    }
    //  Redis went away mid-batch: whatever was not answered may or may not
    //  have been applied. Callers answer UNAVAILABLE; every operation is safe
    //  to retry (submits are idempotent on external_id, results on attempt).
    for (; done < count; done++)
        s_complete(&self->pending[done], TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE,
                   store_error(self));
    //  Calls queued by callbacks sit after `count`: keep them for next time.
    memmove(self->pending, self->pending + count,
            (self->pending_count - count) * sizeof(pending_t));
    self->pending_count -= count;
    return rc;
}

const char *store_str(const redisReply *r)
{
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        return r->str;
    return "";
}

uint64_t store_u64(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t) r->integer : 0;
    if (r->type == REDIS_REPLY_STRING)
        return strtoull(r->str, NULL, 10);
    return 0;
}

redisReply *store_elem(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    return r->element[i];
}
