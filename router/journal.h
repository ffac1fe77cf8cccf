/*  journal.h — the only door to Redis: batches of writes and reads.

    tierd holds the authoritative state in memory (book.h) and records every
    change in Redis before anyone hears about it. The changes of one loop
    turn are one batch:

        MULTI  <writes...>  SET P lock OWNER PX LEASE  EXEC  <reads...>  WATCH P lock

    sent with one write() and answered in one round trip. The writes apply
    all or nothing (MULTI/EXEC); the reads see them. The lock is watched
    from the moment the router takes it, and again right after each EXEC
    (which forgets watches): if anyone else changes it meanwhile (a router
    that took over while this one stalled past the lease), the next EXEC
    applies nothing and this router stands down.

    One batch is in flight at a time. While Redis runs it the loop builds
    the next; when the reply is read the next is sent at once, before the
    first one's outcome is delivered, so Redis and tierd work side by side.
    The outcome of each batch goes to the handler given at journal_new, in
    the order the batches were sent:
      JOURNAL_COMMITTED  the writes are in Redis; the reads' replies can be
                         fetched with journal_reply during the callback
      JOURNAL_FAILED     Redis went away or refused the writes: whether they
                         were applied is unknown, and so is every later batch
                         (they are dropped). The router reloads its state.
      JOURNAL_FENCED     another router owns the prefix now.
    Losing Redis is a state, not a crash: journal_reconnect retries with
    backoff.
*/
#ifndef TIER_JOURNAL_H
#define TIER_JOURNAL_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct journal journal_t;

typedef enum { JOURNAL_COMMITTED = 0, JOURNAL_FAILED = 1, JOURNAL_FENCED = 2 } journal_status_t;

//  Called once per batch sent, oldest first.
typedef void(journal_done_fn)(void *arg, journal_status_t status);
//  Called when a batch is sent: the caller's filling batch becomes the one
//  in flight.
typedef void(journal_sent_fn)(void *arg);

typedef struct {
    const char *url;        //  redis://host:port[/db]
    const char *prefix;     //  key prefix, e.g. "tier:"
    int connect_timeout_ms; //  per connection attempt
    int command_timeout_ms; //  per round trip
    int lock_lease_ms;      //  the lock expires this long after the last batch
    const char *library;    //  Redis function library to load (FUNCTION LOAD REPLACE)
    size_t library_size;
    journal_done_fn *done; //  outcome of each batch
    journal_sent_fn *sent; //  a batch left
    void *arg;             //  for both
} journal_config_t;

//  Redis's address: redis://HOST[:PORT][/DB] (TCP), or unix:///PATH[?db=DB]
//  (a Unix socket: a round trip ~15 us shorter on one machine). host
//  receives the host or the path (at least 256 bytes), port is 0 for a
//  socket. Returns 0, or -1 if url is neither form.
#define JOURNAL_URL_FORMS "redis://HOST[:PORT][/DB] or unix:///PATH[?db=DB]"
int journal_parse_url(const char *url, char *host, size_t host_size, int *port, int *db);

journal_t *journal_new(const journal_config_t *config);
void journal_destroy(journal_t **self_p);

//  Connect, load the function library and take the lock if down and the
//  backoff allows. Returns 0 when connected and owning the prefix; 1 when
//  connected but another router owns it (standby: try again later); -1 when
//  down. who_p (may be NULL) gets the lock's owner when 1.
int journal_reconnect(journal_t *self, int64_t now_ms, const char **who_p);
bool journal_up(journal_t *self);
//  Why the journal is down, for logs and status; "" when up.
const char *journal_error(journal_t *self);
//  Let go of the lock (clean shutdown), so a standby takes over at once.
void journal_release(journal_t *self);
const char *journal_prefix(journal_t *self);

//  Building the filling batch. A command is journal_cmd (argc), then
//  exactly argc arguments.
void journal_write(journal_t *self, int argc); //  inside MULTI ... EXEC
//  A key and value (the next two arguments) for the batch's one MSET, the
//  first write of its transaction: cheaper in Redis than a SET each. Only
//  for keys nothing else in the batch writes.
void journal_set(journal_t *self);
//  After EXEC; returns the read's index in this batch (for journal_reply).
uint32_t journal_read(journal_t *self, int argc);
void journal_arg(journal_t *self, const void *data, size_t len);
void journal_arg_str(journal_t *self, const char *s);
void journal_arg_u64(journal_t *self, uint64_t value);
void journal_arg_i64(journal_t *self, int64_t value);
//  A key: the prefix, then the parts concatenated (a, then b).
void journal_arg_key(journal_t *self, const char *a, const char *b);
void journal_arg_key_u64(journal_t *self, const char *a, uint64_t id);
//  A read: MGET of the key a + each string element of names (an array
//  reply; anything else, or none: a read of one key that is not there).
uint32_t journal_read_mget(journal_t *self, const char *a, const redisReply *names);
//  The same for numeric names: MGET of a + each of ids[0..n) (n = 0: a read
//  of one key that is not there, the reply an array of one nil).
uint32_t journal_read_mget_ids(journal_t *self, const char *a, const uint64_t *ids, size_t n);
//  Argument bytes given piece by piece: open with its total length, then
//  pieces adding up to it.
void journal_arg_open(journal_t *self, size_t len);
void journal_arg_piece(journal_t *self, const void *data, size_t len);

//  Writes queued in the filling batch.
size_t journal_writes(const journal_t *self);
//  Commands (writes and reads) queued in the filling batch.
size_t journal_pending(const journal_t *self);

//  Send the filling batch, unless one is in flight or it is empty. Returns
//  1 if sent, 0 if not, -1 if Redis went away (the done handler got
//  JOURNAL_FAILED).
int journal_send(journal_t *self, int64_t now_ms);
//  The socket to poll for the reply of the batch in flight; -1 if none.
int journal_fd(journal_t *self);
bool journal_busy(journal_t *self);
//  Read the reply of the batch in flight (blocking until complete), send
//  the next batch if that one committed, then deliver the outcome. Returns
//  0, or -1 if Redis went away.
int journal_receive(journal_t *self, int64_t now_ms);
//  A batch in flight longer than command_timeout_ms: Redis is taken as lost.
void journal_check(journal_t *self, int64_t now_ms);
//  When the last batch with writes was sent (the lock needs renewing).
int64_t journal_last_write_ms(const journal_t *self);

//  Batches are numbered from 1 in the order they are sent: the number the
//  filling batch will have, and how many have committed (all of them up to
//  that number: they commit in order). What was written in batch n is in
//  Redis once n <= journal_committed_batches.
uint64_t journal_filling_batch(const journal_t *self);
uint64_t journal_committed_batches(const journal_t *self);

//  During the done handler of a committed batch: the reply of read i.
//  NULL if there is no such read. Borrowed: valid during the handler.
const redisReply *journal_reply(journal_t *self, uint32_t i);

//  Helpers to read replies; NULL-safe, never assert on Redis data.
const char *journal_str(const redisReply *r);                  //  "" if not a string
size_t journal_len(const redisReply *r);                       //  0 if not a string
uint64_t journal_u64(const redisReply *r);                     //  0 if not a number
const redisReply *journal_elem(const redisReply *r, size_t i); //  NULL if out of range

#endif
