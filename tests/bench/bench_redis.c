/*  bench_redis.c — see bench_redis.h. */
#include "bench_redis.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 30000 //  a state check of 1,000,000 tickets is slow
#define PIPELINE_CHUNK     1000  //  GETs written before their replies are read
#define GET_OVERHEAD       64    //  bytes of a GET command besides its key, and more
#define TK_STATE           11    //  StoredTicket.state (proto/store.proto)

struct _bench_redis_t {
    redisContext *redis; //  synchronous connection
    char *prefix;        //  tierd's key prefix
};

bench_redis_t *bench_redis_new(int port, const char *prefix)
{
    struct timeval timeout = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
    redisContext *redis = redisConnectWithTimeout("127.0.0.1", port, timeout);
    if (!redis || redis->err) {
        fprintf(stderr, "tier_bench: cannot connect to redis on port %d: %s\n", port,
                redis ? redis->errstr : "out of memory");
        if (redis)
            redisFree(redis);
        return NULL;
    }
    struct timeval command = {COMMAND_TIMEOUT_MS / 1000, 0};
    redisSetTimeout(redis, command);
    bench_redis_t *self = calloc(1, sizeof(bench_redis_t));
    self->redis = redis;
    self->prefix = strdup(prefix);
    return self;
}

void bench_redis_destroy(bench_redis_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bench_redis_t *self = *self_p;
    redisFree(self->redis);
    free(self->prefix);
    free(self);
    *self_p = NULL;
}

//  The number after "name:" in an INFO text, 0 if absent.
static uint64_t s_info_field(const char *text, const char *name)
{
    size_t len = strlen(name);
    for (const char *line = text; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, name, len) == 0 && line[len] == ':')
            return strtoull(line + len + 1, NULL, 10);
    }
    return 0;
}

//  Sums calls= over every cmdstat_ line except INFO's own.
static void s_commandstats(const char *text, bench_info_t *info)
{
    for (const char *line = strstr(text, "cmdstat_"); line; line = strstr(line + 1, "cmdstat_")) {
        const char *calls = strstr(line, ":calls=");
        if (!calls)
            continue;
        uint64_t count = strtoull(calls + strlen(":calls="), NULL, 10);
        if (strncmp(line, "cmdstat_info:", 13) == 0)
            continue;
        info->calls += count;
        if (strncmp(line, "cmdstat_fcall:", 14) == 0 || strncmp(line, "cmdstat_fcall_ro:", 17) == 0)
            info->fcalls += count;
    }
}

static char *s_info(bench_redis_t *self, const char *section)
{
    redisReply *reply = redisCommand(self->redis, "INFO %s", section);
    if (!reply || reply->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "tier_bench: INFO %s failed: %s\n", section,
                reply ? reply->str : self->redis->errstr);
        if (reply)
            freeReplyObject(reply);
        return NULL;
    }
    char *text = strdup(reply->str);
    freeReplyObject(reply);
    return text;
}

int bench_redis_info(bench_redis_t *self, bench_info_t *info)
{
    memset(info, 0, sizeof(*info));
    char *commands = s_info(self, "commandstats");
    char *stats = s_info(self, "stats");
    char *memory = s_info(self, "memory");
    int rc = commands && stats && memory ? 0 : -1;
    if (rc == 0) {
        s_commandstats(commands, info);
        info->reads = s_info_field(stats, "total_reads_processed");
        info->net_input = s_info_field(stats, "total_net_input_bytes");
        info->used_memory = s_info_field(memory, "used_memory");
        info->aof_buffer = s_info_field(memory, "mem_aof_buffer");
    }
    free(commands);
    free(stats);
    free(memory);
    return rc;
}

//  Appends "GET <prefix>tk:<id>" to out in the protocol's own form:
//  formatting it with redisAppendCommand costs more than Redis answering it.
static char *s_put_get(char *out, const char *prefix, const char *id)
{
    size_t prefix_len = strlen(prefix), id_len = strlen(id);
    out += sprintf(out, "*2\r\n$3\r\nGET\r\n$%zu\r\n", prefix_len + 3 + id_len);
    memcpy(out, prefix, prefix_len);
    out += prefix_len;
    memcpy(out, "tk:", 3);
    memcpy(out + 3, id, id_len);
    out += 3 + id_len;
    memcpy(out, "\r\n", 2);
    return out + 2;
}

static int s_varint(const unsigned char **p, const unsigned char *end, unsigned long long *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        unsigned char byte = *(*p)++;
        *v |= (unsigned long long) (byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return 0;
    }
    return -1;
}

//  A stored ticket is a concatenation of protobuf steps: its state is the
//  last value of field 11. -1 if malformed.
static int s_stored_state(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *) data, *end = p + len;
    int state = -1;
    while (p < end) {
        unsigned long long tag, v;
        if (s_varint(&p, end, &tag))
            return -1;
        int type = (int) (tag & 7);
        if (type == 0) {
            if (s_varint(&p, end, &v))
                return -1;
            if ((tag >> 3) == TK_STATE)
                state = (int) v;
        } else if (type == 2) {
            if (s_varint(&p, end, &v) || v > (unsigned long long) (end - p))
                return -1;
            p += v;
        } else if (type == 1 && end - p >= 8)
            p += 8;
        else if (type == 5 && end - p >= 4)
            p += 4;
        else
            return -1;
    }
    return state;
}

static long s_count_chunk(bench_redis_t *self, char *const *ids, size_t count, int state)
{
    size_t size = 0;
    for (size_t i = 0; i < count; i++)
        size += GET_OVERHEAD + strlen(self->prefix) + (ids[i] ? strlen(ids[i]) : 0);
    char *commands = malloc(size), *end = commands;
    for (size_t i = 0; i < count; i++)
        end = s_put_get(end, self->prefix, ids[i] ? ids[i] : "");
    int rc = redisAppendFormattedCommand(self->redis, commands, (size_t) (end - commands));
    free(commands);
    if (rc != REDIS_OK) {
        fprintf(stderr, "tier_bench: reading ticket states: %s\n", self->redis->errstr);
        return -1;
    }
    long matching = 0;
    for (size_t i = 0; i < count; i++) {
        redisReply *reply = NULL;
        if (redisGetReply(self->redis, (void **) &reply) != REDIS_OK || !reply) {
            fprintf(stderr, "tier_bench: reading ticket states: %s\n", self->redis->errstr);
            return -1;
        }
        if (reply->type == REDIS_REPLY_STRING && s_stored_state(reply->str, reply->len) == state)
            matching++;
        freeReplyObject(reply);
    }
    return matching;
}

long bench_redis_count_state(bench_redis_t *self, char *const *ids, size_t count, int state)
{
    long matching = 0;
    for (size_t done = 0; done < count; done += PIPELINE_CHUNK) {
        size_t chunk = count - done < PIPELINE_CHUNK ? count - done : PIPELINE_CHUNK;
        long part = s_count_chunk(self, ids + done, chunk, state);
        if (part < 0)
            return -1;
        matching += part;
    }
    return matching;
}
