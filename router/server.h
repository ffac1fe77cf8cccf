/*  server.h — the reactor: three sockets, one loop, one batch per turn.

    Each turn reads every message waiting (up to a bound), validates it,
    queues the store calls it needs, adds the dispatch plan, sends the whole
    batch to Redis in one round trip and answers from the replies. Periodic
    work (liveness, timers, presence, reconnecting) is one bounded cron.
*/
#ifndef TIER_SERVER_H
#define TIER_SERVER_H

#include "config.h"

typedef struct _server_t server_t;

//  Bind the endpoints and prepare the store; NULL (logged) on failure.
//  The server borrows config, which must outlive it.
server_t *server_new(config_t *config);
void server_destroy(server_t **self_p);

//  Run until SIGTERM or SIGINT; SIGHUP reloads. Returns 0 on a clean stop.
int server_run(server_t *self);

#endif
