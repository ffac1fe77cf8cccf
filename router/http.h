/*  http.h — the HTTP side of tierd: GET /metrics for Prometheus.

    libmicrohttpd serves it from its own thread, so a slow scraper never
    delays the router's loop; the page is rendered under the metrics mutex
    (metrics.h). Only GET and HEAD of /metrics are answered; anything else
    gets 404 or 405 with a line saying what is there.
*/
#ifndef TIER_HTTP_H
#define TIER_HTTP_H

#include "metrics.h"

typedef struct _http_t http_t;

//  Listen on "HOST:PORT" ("127.0.0.1:9464", "[::1]:9464", "localhost:9464")
//  and serve metrics (borrowed: it must outlive the http_t). Returns NULL,
//  after an error line saying why, when the address is bad or taken: the
//  caller goes on without /metrics (routing tickets matters more than
//  showing figures, and Prometheus shows the target down).
http_t *http_new(const char *listen, metrics_t *metrics);

//  Stop serving; waits for a request being answered.
void http_destroy(http_t **self_p);

#endif
