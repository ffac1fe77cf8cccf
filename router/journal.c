/*  journal.c — see journal.h.

    Commands are written as RESP straight into the batch's buffers (one for
    the writes, one for the reads) and handed to hiredis in one piece when
    the batch is sent; hiredis is used synchronously, on a socket the loop
    polls, only to write that piece and parse the replies.
*/
#include "journal.h"
#include "poison.h"
#include "log.h"
#include "wire.h"

#include <errno.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define U64_TEXT_MAX   24

//  Replies are built in an arena, not with malloc per reply as hiredis's
//  own functions do (a batch has several replies per ticket): chunks kept
//  from batch to batch, emptied once a batch's outcome is delivered.
typedef struct rchunk {
    struct rchunk *next;
    size_t used, size;
    max_align_t data[];
} rchunk_t;

#define RCHUNK_BYTES 65536

//  With AddressSanitizer, replies are poisoned once their batch is
//  delivered: a pointer kept past it is reported at once (poison.h).

//  The commands of one batch.
typedef struct {
    bytes_t writes;  //  RESP of the writes (inside MULTI ... EXEC)
    size_t nwrites;  //  their count (the MSET counts as one)
    bool renews;     //  its transaction renews the lock (SET P lock ... PX)
    bytes_t sets;    //  key and value arguments of the batch's one MSET
    size_t nsets;    //  pairs in it
    bytes_t reads;   //  RESP of the reads (after EXEC)
    size_t nreads;   //  their count
    int64_t sent_ms; //  when it was sent
} batch_t;

struct journal {
    journal_config_t config; //  strings below are owned copies
    char *host;              //  from the URL: a host, or a socket's path
    int port;                //  0: host is a Unix socket's path
    char where[272];         //  host:port or the path, for logs
    int db;
    redisContext *redis; //  NULL while down
    char error[512];     //  why it is down
    int64_t next_try_ms; //  backoff: no attempt before this
    int backoff_ms;
    char who[256];        //  the lock's other owner (standby)
    batch_t filling;      //  being built
    batch_t flight;       //  sent, not answered
    bool in_flight;       //  flight holds a batch
    bytes_t *target;      //  where journal_arg writes: filling.writes or .reads
    bytes_t out;          //  scratch: the whole batch as sent
    redisReply **replies; //  of the reads of the batch being delivered
    size_t replies_count; //  valid during delivery
    size_t replies_size;
    int64_t last_write_ms;    //  last batch with writes sent
    int64_t renewed_ms;       //  last batch that renewed the lock
    uint64_t sent_count;      //  batches sent so far
    uint64_t committed_count; //  of those, committed (they commit in order)
    char lease_text[U64_TEXT_MAX];
    char lock_key[512]; //  P lock
    char place[256];    //  host:boot:pidns, where this router runs
    char owner[384];    //  host:pid:start:boot:pidns, the lock value
    rchunk_t *chunks;   //  the reply arena; the current chunk first
    rchunk_t *spare;    //  emptied chunks
};

//  ---------------------------------------------------------------------------
//  The reply arena

static void *s_ralloc(journal_t *self, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    rchunk_t *c = self->chunks;
    if (!c || c->used + size > c->size) {
        size_t want = size > RCHUNK_BYTES ? size : RCHUNK_BYTES;
        if (self->spare && self->spare->size >= want) {
            c = self->spare;
            self->spare = c->next;
        } else {
            c = malloc(sizeof(rchunk_t) + want);
            if (!c) {
                log_error("out of memory reading redis replies");
                abort();
            }
            c->size = want;
        }
        c->used = 0;
        c->next = self->chunks;
        self->chunks = c;
    }
    void *p = (char *) c->data + c->used;
    c->used += size;
    UNPOISON(p, size);
    return p;
}

//  Every reply read so far is forgotten.
static void s_rarena_reset(journal_t *self)
{
    while (self->chunks) {
        rchunk_t *next = self->chunks->next;
        POISON(self->chunks->data, self->chunks->size);
        self->chunks->next = self->spare;
        self->spare = self->chunks;
        self->chunks = next;
    }
}

static void s_rarena_free(rchunk_t *c)
{
    while (c) {
        rchunk_t *next = c->next;
        UNPOISON(c->data, c->size);
        free(c);
        c = next;
    }
}

static redisReply *s_rnew(const redisReadTask *task, int type)
{
    journal_t *self = task->privdata;
    redisReply *r = s_ralloc(self, sizeof(redisReply));
    memset(r, 0, sizeof(*r));
    r->type = type;
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static void *s_rstring(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = s_rnew(task, task->type);
    r->str = s_ralloc(task->privdata, len + 1);
    memcpy(r->str, str, len);
    r->str[len] = 0;
    r->len = len;
    return r;
}

static void *s_rarray(const redisReadTask *task, int elements)
{
    redisReply *r = s_rnew(task, REDIS_REPLY_ARRAY);
    r->elements = elements > 0 ? (size_t) elements : 0;
    if (r->elements) {
        r->element = s_ralloc(task->privdata, r->elements * sizeof(redisReply *));
        memset(r->element, 0, r->elements * sizeof(redisReply *));
    }
    return r;
}

static void *s_rinteger(const redisReadTask *task, long long value)
{
    redisReply *r = s_rnew(task, REDIS_REPLY_INTEGER);
    r->integer = value;
    return r;
}

static void *s_rnil(const redisReadTask *task)
{
    return s_rnew(task, REDIS_REPLY_NIL);
}

static void s_rfree(void *reply)
{
    (void) reply; //  the arena frees
}

static redisReplyObjectFunctions s_reply_functions = {s_rstring, s_rarray, s_rinteger, s_rnil,
                                                      s_rfree};

//  ---------------------------------------------------------------------------
//  Set-up

int journal_parse_url(const char *url, char *host, size_t host_size, int *port, int *db)
{
    *port = 6379;
    *db = 0;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        size_t len = strcspn(path, "?");
        if (path[0] != '/' || len >= host_size)
            return -1;
        if (path[len] && (sscanf(path + len, "?db=%d", db) != 1 || *db < 0))
            return -1;
        memcpy(host, path, len);
        host[len] = 0;
        *port = 0;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0 || host_size < 256)
        return -1;
    const char *rest = url + 8;
    if (strchr(rest, '@')) //  credentials are not supported
        return -1;
    snprintf(host, host_size, "127.0.0.1");
    if (sscanf(rest, "%255[^:/]:%d/%d", host, port, db) < 1 && sscanf(rest, "%255[^:/]", host) != 1)
        return -1;
    if (*port <= 0 || *port > 65535 || *db < 0)
        return -1;
    return 0;
}

static int s_parse_url(journal_t *self, const char *url)
{
    char host[256];
    if (journal_parse_url(url, host, sizeof(host), &self->port, &self->db))
        return -1;
    self->host = strdup(host);
    if (self->port)
        snprintf(self->where, sizeof(self->where), "%s:%d", host, self->port);
    else
        snprintf(self->where, sizeof(self->where), "%s", host);
    return 0;
}

//  "host:boot:pidns" of this process.
static void s_place(char *out, size_t size)
{
    char host[128] = "localhost", boot[64] = "-", ns[64] = "-";
    gethostname(host, sizeof(host) - 1);
    for (char *c = host; *c; c++)
        if (*c == ':')
            *c = '_';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (fgets(boot, sizeof(boot), f))
            boot[strcspn(boot, "\n:")] = 0;
        fclose(f);
    }
    char link[64];
    ssize_t n = readlink("/proc/self/ns/pid", link, sizeof(link) - 1);
    if (n > 0) {
        link[n] = 0;
        const char *digits = strpbrk(link, "0123456789");
        if (digits)
            snprintf(ns, sizeof(ns), "%.*s", (int) strspn(digits, "0123456789"), digits);
    }
    snprintf(out, size, "%s:%s:%s", host, boot, ns);
}

journal_t *journal_new(const journal_config_t *config)
{
    journal_t *self = calloc(1, sizeof(journal_t));
    if (!self)
        return NULL;
    if (s_parse_url(self, config->url)) {
        log_error("redis url \"%s\" is not %s", config->url, JOURNAL_URL_FORMS);
        free(self);
        return NULL;
    }
    self->config = *config;
    self->config.url = strdup(config->url);
    self->config.prefix = strdup(config->prefix);
    s_place(self->place, sizeof(self->place));
    char host[128], rest[128];
    if (sscanf(self->place, "%127[^:]:%127s", host, rest) != 2)
        snprintf(rest, sizeof(rest), "-:-");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(self->owner, sizeof(self->owner), "%s:%d:%lld:%s", host, (int) getpid(),
             (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000, rest);
    snprintf(self->lease_text, sizeof(self->lease_text), "%d", config->lock_lease_ms);
    snprintf(self->lock_key, sizeof(self->lock_key), "%slock", config->prefix);
    self->backoff_ms = BACKOFF_MIN_MS;
    self->target = &self->filling.writes;
    snprintf(self->error, sizeof(self->error), "not connected yet");
    return self;
}

static void s_batch_fini(batch_t *batch)
{
    bytes_fini(&batch->sets);
    bytes_fini(&batch->writes);
    bytes_fini(&batch->reads);
}

static void s_batch_clear(batch_t *batch)
{
    bytes_clear(&batch->writes);
    bytes_clear(&batch->reads);
    bytes_clear(&batch->sets);
    batch->nwrites = batch->nreads = batch->nsets = 0;
    batch->renews = false;
}

static void s_free_replies(journal_t *self)
{
    self->replies_count = 0;
    s_rarena_reset(self);
}

void journal_destroy(journal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    journal_t *self = *self_p;
    if (self->redis)
        redisFree(self->redis);
    s_free_replies(self);
    free(self->replies);
    s_rarena_free(self->chunks);
    s_rarena_free(self->spare);
    s_batch_fini(&self->filling);
    s_batch_fini(&self->flight);
    bytes_fini(&self->out);
    free((char *) self->config.url);
    free((char *) self->config.prefix);
    free(self->host);
    free(self);
    *self_p = NULL;
}

const char *journal_prefix(journal_t *self)
{
    return self->config.prefix;
}

//  ---------------------------------------------------------------------------
//  Connection

static struct timeval s_timeval(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void s_down(journal_t *self, const char *why)
{
    //  `why` may point into the context: copy it before freeing the context.
    if (why != self->error)
        snprintf(self->error, sizeof(self->error), "%s", why);
    if (self->redis) {
        log_error("redis %s lost: %s; refusing new work until it is back", self->where,
                  self->error);
        redisFree(self->redis);
        self->redis = NULL;
    }
}

//  A command outside the batches, for connection set-up only. Returns the
//  reply (caller frees) or NULL (then the journal is down).
static redisReply *s_command(journal_t *self, const char *what, int argc, const char **argv,
                             const size_t *lens)
{
    redisReply *reply = redisCommandArgv(self->redis, argc, argv, lens);
    if (!reply) {
        s_down(self, self->redis->errstr);
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis %s failed: %s (tierd needs Redis 7.0 or later)", what, reply->str);
        snprintf(self->error, sizeof(self->error), "%s failed: %.200s", what, reply->str);
        s_rarena_reset(self);
        redisFree(self->redis);
        self->redis = NULL;
        return NULL;
    }
    return reply;
}

static int s_connect(journal_t *self)
{
    struct timeval timeout = s_timeval(self->config.connect_timeout_ms);
    self->redis = self->port ? redisConnectWithTimeout(self->host, self->port, timeout)
                             : redisConnectUnixWithTimeout(self->host, timeout);
    if (!self->redis || self->redis->err) {
        snprintf(self->error, sizeof(self->error), "cannot connect to %s: %s", self->where,
                 self->redis ? self->redis->errstr : "out of memory");
        if (self->redis)
            redisFree(self->redis);
        self->redis = NULL;
        return -1;
    }
    redisSetTimeout(self->redis, s_timeval(self->config.command_timeout_ms));
    self->redis->reader->fn = &s_reply_functions;
    self->redis->reader->privdata = self;
    redisReply *reply;
    if (self->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", self->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        if (!(reply = s_command(self, "SELECT", 2, argv, lens)))
            return -1;
        s_rarena_reset(self);
    }
    if (self->config.library) {
        const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", self->config.library};
        size_t lens[] = {8, 4, 7, self->config.library_size};
        if (!(reply = s_command(self, "FUNCTION LOAD", 4, argv, lens)))
            return -1;
        s_rarena_reset(self);
    }
    return 0;
}

//  Whether a lock value "host:pid:start" names a router of this host that
//  is not running any more (killed: it could not let go of the lock).
//  The pid is only meaningful where this router runs too: the same host
//  name, boot and pid namespace (two containers of one host, or two hosts
//  named alike, differ in one of them).
static bool s_owner_dead(journal_t *self, const char *owner)
{
    char host[128], boot[48], ns[24];
    int pid = 0;
    long long start;
    if (sscanf(owner, "%127[^:]:%d:%lld:%47[^:]:%23s", host, &pid, &start, boot, ns) != 5 ||
        pid <= 0)
        return false;
    char place[sizeof(host) + sizeof(boot) + sizeof(ns) + 2];
    snprintf(place, sizeof(place), "%s:%s:%s", host, boot, ns);
    if (strcmp(place, self->place) != 0)
        return false;
    return kill(pid, 0) == -1 && errno == ESRCH;
}

//  Replace the lock if it still holds `was`. 0 = taken, 1 = not, -1 = down.
static int s_take_over(journal_t *self, const char *key, const char *was)
{
    static const char script[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return false";
    const char *argv[] = {"EVAL", script, "1", key, was, self->owner, self->lease_text};
    size_t lens[] = {4,
                     sizeof(script) - 1,
                     1,
                     strlen(key),
                     strlen(was),
                     strlen(self->owner),
                     strlen(self->lease_text)};
    redisReply *reply = s_command(self, "take over the lock", 7, argv, lens);
    if (!reply)
        return -1;
    bool taken = reply->type == REDIS_REPLY_STATUS;
    s_rarena_reset(self);
    return taken ? 0 : 1;
}

//  SET P lock OWNER NX PX LEASE; else is it ours already (a reconnect
//  within the lease), or of a router of this host that was killed? 0 =
//  ours, 1 = another's (self->who), -1 = down.
static int s_take_lock(journal_t *self)
{
    char key[512];
    snprintf(key, sizeof(key), "%slock", self->config.prefix);
    const char *argv[] = {"SET", key, self->owner, "NX", "PX", self->lease_text};
    size_t lens[] = {3, strlen(key), strlen(self->owner), 2, 2, strlen(self->lease_text)};
    redisReply *reply = s_command(self, "SET lock", 6, argv, lens);
    if (!reply)
        return -1;
    bool taken = reply->type == REDIS_REPLY_STATUS;
    s_rarena_reset(self);
    if (taken)
        return 0;
    const char *get[] = {"GET", key};
    size_t get_lens[] = {3, strlen(key)};
    if (!(reply = s_command(self, "GET lock", 2, get, get_lens)))
        return -1;
    snprintf(self->who, sizeof(self->who), "%s", journal_str(reply));
    s_rarena_reset(self);
    if (strcmp(self->who, self->owner) == 0)
        return 0;
    if (s_owner_dead(self, self->who)) {
        int rc = s_take_over(self, key, self->who);
        if (rc == 0)
            log_notice("redis: took over the lock of %s (no longer running)", self->who);
        return rc;
    }
    return 1;
}

int journal_reconnect(journal_t *self, int64_t now_ms, const char **who_p)
{
    if (!self->redis) {
        if (now_ms < self->next_try_ms)
            return -1;
        if (s_connect(self)) {
            log_warning("redis: %s; retrying in %d ms", self->error, self->backoff_ms);
            self->next_try_ms = now_ms + self->backoff_ms;
            self->backoff_ms =
                self->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : self->backoff_ms * 2;
            return -1;
        }
        log_notice("redis %s connected", self->where);
        self->backoff_ms = BACKOFF_MIN_MS;
        self->error[0] = 0;
    }
    int rc = s_take_lock(self);
    if (rc == 1 && who_p)
        *who_p = self->who;
    if (rc == 0) {
        //  From now on any change of the lock by someone else fences the
        //  next batch (see s_frame).
        const char *argv[] = {"WATCH", self->lock_key};
        size_t lens[] = {5, strlen(self->lock_key)};
        redisReply *reply = s_command(self, "WATCH lock", 2, argv, lens);
        if (!reply)
            return -1;
        s_rarena_reset(self);
    }
    return rc;
}

bool journal_up(journal_t *self)
{
    return self->redis != NULL;
}

const char *journal_error(journal_t *self)
{
    return self->redis ? "" : self->error;
}

void journal_release(journal_t *self)
{
    if (!self->redis || self->in_flight)
        return;
    //  Delete the lock only if it is still ours.
    static const char script[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0";
    char key[512];
    snprintf(key, sizeof(key), "%slock", self->config.prefix);
    const char *argv[] = {"EVAL", script, "1", key, self->owner};
    size_t lens[] = {4, sizeof(script) - 1, 1, strlen(key), strlen(self->owner)};
    redisReply *reply = s_command(self, "release the lock", 5, argv, lens);
    if (reply)
        s_rarena_reset(self);
}

//  ---------------------------------------------------------------------------
//  Building a batch

//  Decimal digits of v into out (at least 21 bytes); returns how many.
//  snprintf is a large share of a batch's cost otherwise.
static inline size_t s_digits(uint64_t v, char *out)
{
    return wire_decimal(v, out);
}

static void s_resp_header(bytes_t *b, char kind, uint64_t n)
{
    bytes_reserve(b, U64_TEXT_MAX + 4);
    char *p = (char *) b->data + b->len;
    *p++ = kind;
    p += s_digits(n, p);
    *p++ = '\r';
    *p++ = '\n';
    b->len = (size_t) ((uint8_t *) p - b->data);
}

void journal_write(journal_t *self, int argc)
{
    self->target = &self->filling.writes;
    self->filling.nwrites++;
    s_resp_header(self->target, '*', (uint64_t) argc);
}

void journal_set(journal_t *self)
{
    self->target = &self->filling.sets;
    if (!self->filling.nsets++)
        self->filling.nwrites++;
}

uint32_t journal_read(journal_t *self, int argc)
{
    self->target = &self->filling.reads;
    s_resp_header(self->target, '*', (uint64_t) argc);
    return (uint32_t) self->filling.nreads++;
}

uint32_t journal_read_mget(journal_t *self, const char *a, const redisReply *names)
{
    size_t n = names && names->type == REDIS_REPLY_ARRAY ? names->elements : 0;
    uint32_t read = journal_read(self, 1 + (int) (n ? n : 1));
    journal_arg_str(self, "MGET");
    if (!n)
        journal_arg_key(self, a, "");
    for (size_t i = 0; i < n; i++)
        journal_arg_key(self, a, journal_str(names->element[i]));
    return read;
}

uint32_t journal_read_mget_ids(journal_t *self, const char *a, const uint64_t *ids, size_t n)
{
    uint32_t read = journal_read(self, 1 + (int) (n ? n : 1));
    journal_arg_str(self, "MGET");
    if (!n)
        journal_arg_key(self, a, "");
    for (size_t i = 0; i < n; i++)
        journal_arg_key_u64(self, a, ids[i]);
    return read;
}

void journal_arg(journal_t *self, const void *data, size_t len)
{
    s_resp_header(self->target, '$', len);
    bytes_put(self->target, data, len);
    bytes_put(self->target, "\r\n", 2);
}

void journal_arg_open(journal_t *self, size_t len)
{
    s_resp_header(self->target, '$', len);
}

void journal_arg_piece(journal_t *self, const void *data, size_t len)
{
    bytes_put(self->target, data, len);
}

void journal_arg_str(journal_t *self, const char *s)
{
    journal_arg(self, s ? s : "", s ? strlen(s) : 0);
}

void journal_arg_u64(journal_t *self, uint64_t value)
{
    char text[U64_TEXT_MAX];
    journal_arg(self, text, s_digits(value, text));
}

void journal_arg_i64(journal_t *self, int64_t value)
{
    char text[U64_TEXT_MAX + 1];
    if (value >= 0) {
        journal_arg(self, text, s_digits((uint64_t) value, text));
        return;
    }
    text[0] = '-';
    journal_arg(self, text, 1 + s_digits(0 - (uint64_t) value, text + 1));
}

void journal_arg_key(journal_t *self, const char *a, const char *b)
{
    size_t prefix = strlen(self->config.prefix), la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
    journal_arg_open(self, prefix + la + lb);
    journal_arg_piece(self, self->config.prefix, prefix);
    journal_arg_piece(self, a, la);
    journal_arg_piece(self, b, lb);
    bytes_put(self->target, "\r\n", 2);
}

void journal_arg_key_u64(journal_t *self, const char *a, uint64_t id)
{
    char text[U64_TEXT_MAX];
    size_t n = s_digits(id, text);
    size_t prefix = strlen(self->config.prefix), la = strlen(a);
    journal_arg_open(self, prefix + la + n);
    journal_arg_piece(self, self->config.prefix, prefix);
    journal_arg_piece(self, a, la);
    journal_arg_piece(self, text, n);
    bytes_put(self->target, "\r\n", 2);
}

size_t journal_writes(const journal_t *self)
{
    return self->filling.nwrites;
}

size_t journal_pending(const journal_t *self)
{
    return self->filling.nwrites + self->filling.nreads;
}

int64_t journal_last_write_ms(const journal_t *self)
{
    return self->last_write_ms;
}

//  ---------------------------------------------------------------------------
//  Sending and receiving

static void s_fixed_command(bytes_t *b, int argc, const char **argv)
{
    s_resp_header(b, '*', (uint64_t) argc);
    for (int i = 0; i < argc; i++) {
        size_t len = strlen(argv[i]);
        s_resp_header(b, '$', len);
        bytes_put(b, argv[i], len);
        bytes_put(b, "\r\n", 2);
    }
}

//  The whole batch, as sent: the writes fenced in a transaction, then the
//  reads. The lock is renewed every quarter of its lease, not in every
//  batch: the watch fences the batches in between.
static void s_frame(journal_t *self, batch_t *batch, int64_t now_ms)
{
    bytes_t *out = &self->out;
    bytes_clear(out);
    const char *key = self->lock_key;
    batch->renews = batch->nwrites && now_ms - self->renewed_ms >= self->config.lock_lease_ms / 4;
    if (batch->renews)
        self->renewed_ms = now_ms;
    if (batch->nwrites) {
        s_fixed_command(out, 1, (const char *[]){"MULTI"});
        if (batch->nsets) {
            s_resp_header(out, '*', 1 + 2 * batch->nsets);
            bytes_put(out, "$4\r\nMSET\r\n", 10);
            bytes_put(out, batch->sets.data, batch->sets.len);
        }
        bytes_put(out, batch->writes.data, batch->writes.len);
        if (batch->renews)
            s_fixed_command(out, 5,
                            (const char *[]){"SET", key, self->owner, "PX", self->lease_text});
        s_fixed_command(out, 1, (const char *[]){"EXEC"});
    }
    bytes_put(out, batch->reads.data, batch->reads.len);
    //  EXEC forgot the watch: arm it again at once, so that whatever changes
    //  the lock before the next EXEC (a router that took over while this one
    //  stalled) makes that EXEC apply nothing.
    if (batch->nwrites)
        s_fixed_command(out, 2, (const char *[]){"WATCH", key});
}

//  The filling batch failed with the one in flight: forget its commands.
static void s_drop_filling(journal_t *self)
{
    s_batch_clear(&self->filling);
    self->target = &self->filling.writes;
}

static void s_fail(journal_t *self, journal_status_t status)
{
    self->in_flight = false;
    s_batch_clear(&self->flight);
    s_drop_filling(self);
    if (self->config.done)
        self->config.done(self->config.arg, status);
}

int journal_send(journal_t *self, int64_t now_ms)
{
    if (self->in_flight || !journal_pending(self))
        return 0;
    if (!self->redis) {
        s_drop_filling(self);
        if (self->config.done)
            self->config.done(self->config.arg, JOURNAL_FAILED);
        return -1;
    }
    s_frame(self, &self->filling, now_ms);
    if (redisAppendFormattedCommand(self->redis, (const char *) self->out.data, self->out.len) !=
        REDIS_OK) {
        s_down(self, "cannot queue a batch");
        s_drop_filling(self);
        if (self->config.done)
            self->config.done(self->config.arg, JOURNAL_FAILED);
        return -1;
    }
    int done = 0;
    while (self->redis && !done)
        if (redisBufferWrite(self->redis, &done) != REDIS_OK)
            s_down(self, self->redis->errstr);
    if (!self->redis) {
        s_drop_filling(self);
        if (self->config.done)
            self->config.done(self->config.arg, JOURNAL_FAILED);
        return -1;
    }
    if (self->filling.nwrites)
        self->last_write_ms = now_ms;
    batch_t sent = self->flight;
    self->flight = self->filling;
    self->filling = sent;
    s_batch_clear(&self->filling);
    self->target = &self->filling.writes;
    self->flight.sent_ms = now_ms;
    self->in_flight = true;
    self->sent_count++;
    if (self->config.sent)
        self->config.sent(self->config.arg);
    return 1;
}

static bool s_get(journal_t *self, redisReply **reply)
{
    void *raw = NULL;
    if (redisGetReply(self->redis, &raw) != REDIS_OK || !raw) {
        s_down(self, self->redis->errstr);
        return false;
    }
    *reply = raw;
    return true;
}

//  Read the transaction's replies: MULTI, QUEUED..., (SET lock), EXEC.
static journal_status_t s_read_transaction(journal_t *self, size_t nwrites)
{
    journal_status_t status = JOURNAL_COMMITTED;
    size_t replies = nwrites + (self->flight.renews ? 3 : 2);
    for (size_t i = 0; i < replies; i++) {
        redisReply *reply;
        if (!s_get(self, &reply))
            return JOURNAL_FAILED;
        bool exec = i == replies - 1;
        if (exec && reply->type == REDIS_REPLY_NIL) {
            log_error("redis: the lock %slock was taken by another router; standing down",
                      self->config.prefix);
            status = JOURNAL_FENCED;
        } else if (exec && reply->type != REDIS_REPLY_ARRAY) {
            log_error("redis refused a batch: %s",
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
            status = JOURNAL_FAILED;
        } else if (exec) {
            for (size_t k = 0; k < reply->elements; k++)
                if (reply->element[k]->type == REDIS_REPLY_ERROR) {
                    log_error("redis: a write of a batch failed: %s", reply->element[k]->str);
                    status = JOURNAL_FAILED;
                    break;
                }
        } else if (reply->type == REDIS_REPLY_ERROR && status == JOURNAL_COMMITTED) {
            log_error("redis refused a command of a batch: %s", reply->str);
            status = JOURNAL_FAILED;
        }
        s_rarena_reset(self);
    }
    return status;
}

int journal_receive(journal_t *self, int64_t now_ms)
{
    if (!self->in_flight)
        return 0;
    journal_status_t status = JOURNAL_COMMITTED;
    if (self->flight.nwrites)
        status = s_read_transaction(self, self->flight.nwrites);
    if (!self->redis) {
        s_fail(self, JOURNAL_FAILED);
        return -1;
    }
    if (self->replies_size < self->flight.nreads) {
        redisReply **grown = realloc(self->replies, self->flight.nreads * sizeof(redisReply *));
        if (!grown) {
            log_error("out of memory reading a batch's replies");
            abort();
        }
        self->replies = grown;
        self->replies_size = self->flight.nreads;
    }
    for (size_t i = 0; i < self->flight.nreads; i++)
        if (!s_get(self, &self->replies[self->replies_count++])) {
            self->replies_count--;
            s_free_replies(self);
            s_fail(self, JOURNAL_FAILED);
            return -1;
        }
    redisReply *watch;
    if (self->flight.nwrites && !s_get(self, &watch)) {
        s_free_replies(self);
        s_fail(self, JOURNAL_FAILED);
        return -1;
    }
    if (status != JOURNAL_COMMITTED) {
        s_free_replies(self);
        s_fail(self, status);
        return 0;
    }
    //  Send the next batch before delivering this one, so that Redis works
    //  on it while the callbacks run here.
    self->in_flight = false;
    s_batch_clear(&self->flight);
    journal_send(self, now_ms);
    self->committed_count++;
    if (self->config.done)
        self->config.done(self->config.arg, JOURNAL_COMMITTED);
    s_free_replies(self);
    return 0;
}

void journal_check(journal_t *self, int64_t now_ms)
{
    if (!self->in_flight || now_ms - self->flight.sent_ms < self->config.command_timeout_ms)
        return;
    char why[96];
    snprintf(why, sizeof(why), "no reply within command_timeout_ms (%d ms)",
             self->config.command_timeout_ms);
    s_down(self, why);
    s_fail(self, JOURNAL_FAILED);
}

int journal_fd(journal_t *self)
{
    return self->redis && self->in_flight ? self->redis->fd : -1;
}

bool journal_busy(journal_t *self)
{
    return self->in_flight;
}

uint64_t journal_filling_batch(const journal_t *self)
{
    return self->sent_count + 1;
}

uint64_t journal_committed_batches(const journal_t *self)
{
    return self->committed_count;
}

const redisReply *journal_reply(journal_t *self, uint32_t i)
{
    return i < self->replies_count ? self->replies[i] : NULL;
}

const char *journal_str(const redisReply *r)
{
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        return r->str;
    return "";
}

size_t journal_len(const redisReply *r)
{
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
        return r->len;
    return 0;
}

uint64_t journal_u64(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t) r->integer : 0;
    if (r->type == REDIS_REPLY_STRING)
        return strtoull(r->str, NULL, 10);
    return 0;
}

const redisReply *journal_elem(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    return r->element[i];
}
