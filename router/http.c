/*  http.c — see http.h. */
#include "http.h"
#include "log.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define CONNECTION_LIMIT     16 //  scrapers are few; more is a misconfiguration
#define CONNECTION_TIMEOUT_S 10 //  idle keep-alive connections are closed after this
#define HOST_MAX             256
#define PORT_MAX             16
#define LOG_LINE_MAX         512
#define METRICS_PATH         "/metrics"
#define METRICS_TYPE         "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE            "text/plain; charset=utf-8"

struct _http_t {
    struct MHD_Daemon *daemon; //  serves from its own thread
    metrics_t *metrics;        //  what it serves (borrowed)
};

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum MHD_Result s_send(struct MHD_Connection *connection, unsigned status, char *body,
                              const char *type, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *response = MHD_create_response_from_buffer(strlen(body), body, mode);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return rc;
}

static enum MHD_Result s_answer(void *arg, struct MHD_Connection *connection, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **request_state)
{
    http_t *self = arg;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return s_send(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET " METRICS_PATH "\n",
                      TEXT_TYPE, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, METRICS_PATH) != 0)
        return s_send(connection, MHD_HTTP_NOT_FOUND, "tierd serves " METRICS_PATH " here\n",
                      TEXT_TYPE, MHD_RESPMEM_PERSISTENT);
    char *text = metrics_render(self->metrics, s_now_ms());
    if (!text)
        return s_send(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", TEXT_TYPE,
                      MHD_RESPMEM_PERSISTENT);
    return s_send(connection, MHD_HTTP_OK, text, METRICS_TYPE, MHD_RESPMEM_MUST_FREE);
}

static void s_log(void *arg, const char *format, va_list args)
{
    char line[LOG_LINE_MAX];
    vsnprintf(line, sizeof(line), format, args);
    line[strcspn(line, "\n")] = '\0';
    log_warning("metrics endpoint: %s", line);
}

//  "HOST:PORT" or "[V6HOST]:PORT" into host and port; -1 if malformed.
static int s_split(const char *listen, char *host, char *port)
{
    const char *colon = strrchr(listen, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= PORT_MAX)
        return -1;
    const char *start = listen, *end = colon;
    if (*start == '[' && end > start && end[-1] == ']') {
        start++;
        end--;
    }
    if (end <= start || (size_t) (end - start) >= HOST_MAX)
        return -1;
    memcpy(host, start, (size_t) (end - start));
    host[end - start] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static struct addrinfo *s_resolve(const char *listen)
{
    char host[HOST_MAX], port[PORT_MAX];
    if (s_split(listen, host, port)) {
        log_error("metrics listen address \"%s\" is not HOST:PORT (e.g. 127.0.0.1:9464, "
                  "[::1]:9464), or \"off\"",
                  listen);
        return NULL;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(host, port, &hints, &found);
    if (rc) {
        log_error("metrics listen address \"%s\": %s (use an address of this host and a port "
                  "number)",
                  listen, gai_strerror(rc));
        return NULL;
    }
    return found;
}

//  The serving thread must not take the router's signals (SIGTERM, SIGHUP):
//  they are for the main loop. Threads inherit the mask of their creator.
static struct MHD_Daemon *s_start(http_t *self, const struct addrinfo *address)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (address->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_Daemon *daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, s_answer, self, MHD_OPTION_EXTERNAL_LOGGER, s_log,
                         NULL, MHD_OPTION_SOCK_ADDR, address->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned) CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned) CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return daemon;
}

http_t *http_new(const char *listen, metrics_t *metrics)
{
    struct addrinfo *address = s_resolve(listen);
    if (!address)
        return NULL;
    http_t *self = calloc(1, sizeof(http_t));
    if (self) {
        self->metrics = metrics;
        self->daemon = s_start(self, address);
    }
    freeaddrinfo(address);
    if (!self || !self->daemon) {
        log_error("cannot serve /metrics on %s (is the port taken?); going on without it: set "
                  "[metrics] listen or --metrics to a free HOST:PORT, or to \"off\"",
                  listen);
        free(self);
        return NULL;
    }
    log_info("metrics on http://%s%s", listen, METRICS_PATH);
    return self;
}

void http_destroy(http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    http_t *self = *self_p;
    MHD_stop_daemon(self->daemon);
    free(self);
    *self_p = NULL;
}
