/*  store.c — batched calls of the tierd Redis functions.

    The router gathers every call a turn of its loop needs and sends them as
    ONE command, `FCALL tier_batch`, which runs them in order inside Redis and
    returns every result. One round trip and one function call per turn,
    however many tickets it carries, and the order of state changes stays the
    order of calls.

    One batch is in flight at a time. While Redis runs it, the loop goes on
    reading messages and queueing the next batch's calls; when the reply is
    readable (store_fd in the loop's poll), store_receive reads it, sends the
    next batch at once, so Redis works on it, and only then runs the first
    batch's callbacks. hiredis is used synchronously, on a socket polled by
    the loop: no callback maze of the async API.
*/
#include "store.h"
#include "log.h"
#include "tier.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define REPLY_FIELDS    5   //  status reason seq events payload
#define BATCH_CALLS_MAX 500 //  calls per tier_batch command (bounds its run time)
#define BATCH_HEADER    5   //  FCALL tier_batch 0 prefix count

extern const char store_lua_source[];
extern const size_t store_lua_size;

typedef struct {
    store_done_fn *done; //  callback, may be NULL
    void *arg;           //  its argument
    int64_t now_ms;      //  the call's time
    size_t first_arg;    //  index of its function name in the batch's arguments
    size_t argc;         //  arguments from there (name, now, the function's own)
} pending_t;

//  Calls gathered for one flush: their arguments, back to back, and their
//  callbacks. The store has two: one filling, one being sent.
typedef struct {
    char *bytes; //  every argument's bytes
    size_t bytes_used, bytes_size;
    size_t *arg_off, *arg_len; //  offset and length of each argument
    size_t args, args_size;
    pending_t *pending; //  the calls, in order
    size_t pending_count, pending_size;
} batch_t;

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
    batch_t filling;        //  calls being queued
    batch_t sending;        //  calls sent, their replies not read yet
    batch_t delivering;     //  calls whose replies are being delivered
    size_t commands;        //  tier_batch commands of `sending` in flight (0: none)
    int64_t sent_ms;        //  when they went out
    redisReply **replies;   //  their replies, read before delivery
    size_t replies_size;
    size_t call_start;   //  first argument of the call being built
    int64_t call_now_ms; //  and its time
    const char **argv;   //  scratch for hiredis
    size_t *argvlen;
    size_t argv_size;
    char (*counts)[24]; //  scratch: argument counts as text
    size_t counts_size;
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

static void s_batch_free(batch_t *batch)
{
    free(batch->bytes);
    free(batch->arg_off);
    free(batch->arg_len);
    free(batch->pending);
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
    s_batch_free(&self->filling);
    s_batch_free(&self->sending);
    s_batch_free(&self->delivering);
    free(self->replies);
    free(self->argv);
    free(self->argvlen);
    free(self->counts);
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

//  The two argument arrays share one capacity, args_size.
static void s_reserve_args(batch_t *batch, size_t need)
{
    if (need <= batch->args_size)
        return;
    size_t size = batch->args_size;
    batch->arg_off = s_grow(batch->arg_off, &size, need, sizeof(size_t));
    size = batch->args_size;
    batch->arg_len = s_grow(batch->arg_len, &size, need, sizeof(size_t));
    batch->args_size = size;
}

void store_arg_bin(store_t *self, const void *data, size_t size)
{
    batch_t *batch = &self->filling;
    batch->bytes = s_grow(batch->bytes, &batch->bytes_size, batch->bytes_used + size + 1, 1);
    s_reserve_args(batch, batch->args + 1);
    if (size)
        memcpy(batch->bytes + batch->bytes_used, data, size);
    batch->arg_off[batch->args] = batch->bytes_used;
    batch->arg_len[batch->args] = size;
    batch->bytes_used += size;
    batch->args++;
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
    self->call_start = self->filling.args;
    self->call_now_ms = now_ms;
    store_arg_str(self, fn);
    store_arg_u64(self, (uint64_t) now_ms);
}

static void s_complete(pending_t *call, int code, const char *reason)
{
    store_result_t result = {.code = code, .reason = reason, .now_ms = call->now_ms};
    if (call->done)
        call->done(call->arg, &result);
}

void store_call_end(store_t *self, store_done_fn *done, void *arg)
{
    batch_t *batch = &self->filling;
    pending_t call = {done, arg, self->call_now_ms, self->call_start,
                      batch->args - self->call_start};
    if (!self->redis) {
        batch->args = self->call_start; //  forget its arguments
        s_complete(&call, TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, self->error);
        return;
    }
    batch->pending =
        s_grow(batch->pending, &batch->pending_size, batch->pending_count + 1, sizeof(pending_t));
    batch->pending[batch->pending_count++] = call;
}

size_t store_pending(store_t *self)
{
    return self->filling.pending_count;
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
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != REPLY_FIELDS) {
        log_error("redis function returned an unexpected reply (type %d)", reply->type);
        s_complete(call, TIER__V1__ERROR_CODE__ERROR_INTERNAL, "unexpected reply from redis");
        return;
    }
    const char *status = store_str(reply->element[0]);
    store_result_t result = {
        .code = strcmp(status, "OK") == 0 ? 0 : s_error_code(status),
        .now_ms = call->now_ms,
        .reason = store_str(reply->element[1]),
        .seq_last = store_u64(reply->element[2]),
        .events = reply->element[3],
        .payload = reply->element[4],
    };
    if (call->done)
        call->done(call->arg, &result);
}

//  Append one `FCALL tier_batch 0 prefix count (fn now argc args...)...`
//  command for calls [first, first + count) of the batch being sent.
static int s_append_batch(store_t *self, size_t first, size_t count)
{
    batch_t *batch = &self->sending;
    size_t need = BATCH_HEADER;
    for (size_t i = first; i < first + count; i++)
        need += batch->pending[i].argc + 1;
    size_t size = self->argv_size; //  argv and argvlen share one capacity
    self->argv = s_grow(self->argv, &size, need, sizeof(char *));
    self->argvlen = s_grow(self->argvlen, &self->argv_size, need, sizeof(size_t));
    self->counts = s_grow(self->counts, &self->counts_size, count + 1, sizeof(*self->counts));
    size_t n = 0;
#define ARG(p, len) (self->argv[n] = (p), self->argvlen[n] = (len), n++)
    ARG("FCALL", 5);
    ARG("tier_batch", 10);
    ARG("0", 1);
    ARG(self->prefix, strlen(self->prefix));
    snprintf(self->counts[count], sizeof(self->counts[0]), "%zu", count);
    ARG(self->counts[count], strlen(self->counts[count]));
    for (size_t i = 0; i < count; i++) {
        const pending_t *call = &batch->pending[first + i];
        size_t a = call->first_arg;
        ARG(batch->bytes + batch->arg_off[a], batch->arg_len[a]);         //  function
        ARG(batch->bytes + batch->arg_off[a + 1], batch->arg_len[a + 1]); //  now
        snprintf(self->counts[i], sizeof(self->counts[0]), "%zu", call->argc - 2);
        ARG(self->counts[i], strlen(self->counts[i]));
        for (size_t k = a + 2; k < a + call->argc; k++)
            ARG(batch->bytes + batch->arg_off[k], batch->arg_len[k]);
    }
#undef ARG
    return redisAppendCommandArgv(self->redis, (int) n, self->argv, self->argvlen) == REDIS_OK ? 0
                                                                                               : -1;
}

//  Run the callbacks of calls [first, first + count) of `batch` with one
//  tier_batch reply.
static void s_deliver_batch(batch_t *batch, size_t first, size_t count, redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != count) {
        const char *why = reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply";
        log_error("redis tier_batch failed: %s", why);
        for (size_t i = 0; i < count; i++)
            s_complete(&batch->pending[first + i], TIER__V1__ERROR_CODE__ERROR_INTERNAL, why);
    } else
        for (size_t i = 0; i < count; i++)
            s_deliver(&batch->pending[first + i], reply->element[i]);
}

static void s_batch_reset(batch_t *batch)
{
    batch->args = batch->bytes_used = batch->pending_count = 0;
}

//  Calls [from, end) of `batch` were not answered: Redis went away, and
//  whether they were applied is unknown. Callers answer UNAVAILABLE; every
//  operation is safe to retry (submits are idempotent on external_id,
//  results on attempt).
static void s_fail_from(store_t *self, batch_t *batch, size_t from)
{
    for (size_t i = from; i < batch->pending_count; i++)
        s_complete(&batch->pending[i], TIER__V1__ERROR_CODE__ERROR_UNAVAILABLE, store_error(self));
    s_batch_reset(batch);
}

int store_send(store_t *self, int64_t now_ms)
{
    if (self->commands || !self->filling.pending_count)
        return 0;
    //  Callbacks of the failures below may queue calls: they go to the
    //  other batch, which the next send sends.
    batch_t sent = self->filling;
    self->filling = self->sending;
    self->sending = sent;
    s_batch_reset(&self->filling);
    batch_t *batch = &self->sending;
    size_t total = batch->pending_count, commands = 0;
    for (size_t written = 0; self->redis && written < total; written += BATCH_CALLS_MAX) {
        size_t count = total - written < BATCH_CALLS_MAX ? total - written : BATCH_CALLS_MAX;
        if (s_append_batch(self, written, count)) {
            s_down(self, "cannot format a redis command");
            break;
        }
        commands++;
    }
    int done = 0;
    while (self->redis && !done)
        if (redisBufferWrite(self->redis, &done) != REDIS_OK)
            s_down(self, self->redis->errstr);
    if (!self->redis) {
        s_fail_from(self, batch, 0);
        return -1;
    }
    self->commands = commands;
    self->sent_ms = now_ms;
    return 0;
}

int store_receive(store_t *self, int64_t now_ms)
{
    size_t commands = self->commands, got = 0;
    if (!commands)
        return 0;
    size_t size = self->replies_size;
    self->replies = s_grow(self->replies, &size, commands, sizeof(redisReply *));
    self->replies_size = size;
    for (; self->redis && got < commands; got++) {
        void *raw = NULL;
        if (redisGetReply(self->redis, &raw) != REDIS_OK || !raw) {
            s_down(self, self->redis->errstr);
            break;
        }
        self->replies[got] = raw;
    }
    //  Deliver from `delivering`, so that the next batch goes out first and
    //  Redis works on it while the callbacks run here.
    batch_t read = self->sending;
    self->sending = self->delivering;
    self->delivering = read;
    self->commands = 0;
    s_batch_reset(&self->sending);
    store_send(self, now_ms);
    batch_t *batch = &self->delivering;
    size_t delivered = 0;
    for (size_t i = 0; i < got; i++) {
        size_t first = i * BATCH_CALLS_MAX;
        size_t count = batch->pending_count - first < BATCH_CALLS_MAX ? batch->pending_count - first
                                                                      : BATCH_CALLS_MAX;
        s_deliver_batch(batch, first, count, self->replies[i]);
        freeReplyObject(self->replies[i]);
        delivered = first + count;
    }
    s_fail_from(self, batch, delivered);
    return got == commands ? 0 : -1;
}

void store_check(store_t *self, int64_t now_ms)
{
    if (!self->commands || now_ms - self->sent_ms < self->command_timeout_ms)
        return;
    char why[96];
    snprintf(why, sizeof(why), "no reply within command_timeout_ms (%d ms)",
             self->command_timeout_ms);
    s_down(self, why);
    self->commands = 0;
    s_fail_from(self, &self->sending, 0);
}

int store_fd(store_t *self)
{
    return self->redis && self->commands ? self->redis->fd : -1;
}

bool store_busy(store_t *self)
{
    return self->commands > 0;
}

int store_flush(store_t *self, int64_t now_ms)
{
    int rc = 0;
    //  Each round answers one batch; callbacks may queue a few more calls.
    for (int round = 0; round < 16 && (self->commands || self->filling.pending_count); round++)
        if (self->commands)
            rc |= store_receive(self, now_ms);
        else
            rc |= store_send(self, now_ms);
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
