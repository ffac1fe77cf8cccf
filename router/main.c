/*  main.c — tierd: read the settings, start the server, run until told to stop.

    tierd [--config FILE] [--check] [--redis URL] [--clients EP] [--workers EP]
          [--events EP] [--log-level LEVEL]
*/
#include "config.h"
#include "journal.h"
#include "log.h"
#include "rules.h"
#include "server.h"

#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define TIERD_VERSION "0.1.0"

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: tierd [options]\n"
            "  --config FILE      INI settings (see deploy/tierd.conf); flags override it\n"
            "  --check            validate the settings, print them and exit\n"
            "  --redis URL        redis://HOST:PORT[/DB] or unix:///PATH[?db=DB]\n"
            "                     (default redis://127.0.0.1:6379)\n"
            "  --clients EP       integrators' ROUTER endpoint (default tcp://127.0.0.1:5560)\n"
            "  --workers EP       workers' ROUTER endpoint     (default tcp://127.0.0.1:5561)\n"
            "  --events EP        events PUB endpoint          (default tcp://127.0.0.1:5562)\n"
            "  --log-level LEVEL  error, warning, notice, info or debug\n"
            "  --metrics ADDR     HOST:PORT of GET /metrics (default 127.0.0.1:9464), or off\n"
            "  --version, --help\n");
}

//  Flags map onto config keys so both paths share one validation.
static const struct {
    const char *flag, *section, *key;
} s_flag_keys[] = {
    {"redis", "redis", "url"},        {"clients", "router", "clients"},
    {"workers", "router", "workers"}, {"events", "router", "events"},
    {"log-level", "log", "level"},    {"metrics", "metrics", "listen"},
};

static int s_apply_flags(config_t *config, int argc, char **argv)
{
    static const struct option options[] = {{"config", required_argument, 0, 'c'},
                                            {"check", no_argument, 0, 'k'},
                                            {"redis", required_argument, 0, 'r'},
                                            {"clients", required_argument, 0, 'C'},
                                            {"workers", required_argument, 0, 'w'},
                                            {"events", required_argument, 0, 'e'},
                                            {"log-level", required_argument, 0, 'l'},
                                            {"metrics", required_argument, 0, 'm'},
                                            {"version", no_argument, 0, 'V'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int opt, index;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        if (opt == '?')
            return -1;
        const char *name = options[index].name;
        for (size_t i = 0; i < sizeof(s_flag_keys) / sizeof(s_flag_keys[0]); i++) {
            if (strcmp(name, s_flag_keys[i].flag) != 0)
                continue;
            char err[256];
            if (config_set(config, s_flag_keys[i].section, s_flag_keys[i].key, optarg, err,
                           sizeof(err))) {
                fprintf(stderr, "tierd: --%s: %s\n", name, err);
                return -1;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tierd: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    return 0;
}

//  First pass: only what decides how to read the rest.
static int s_first_pass(int argc, char **argv, const char **config_path, int *check)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("tierd %s\n", TIERD_VERSION);
            return 1;
        }
        if (strcmp(argv[i], "--check") == 0)
            *check = 1;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            *config_path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            *config_path = argv[i] + 9;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int check = 0;
    int first = s_first_pass(argc, argv, &config_path, &check);
    if (first)
        return 0;
    config_t *config = config_new();
    if ((config_path && config_load(config, config_path)) || s_apply_flags(config, argc, argv)) {
        if (!check)
            s_usage(stderr);
        config_destroy(&config);
        return 2;
    }
    if (check) {
        char host[256];
        int port, db;
        if (journal_parse_url(config->redis_url, host, sizeof(host), &port, &db)) {
            fprintf(stderr, "tierd: [redis] url = \"%s\" is not %s\n", config->redis_url,
                    JOURNAL_URL_FORMS);
            config_destroy(&config);
            return 2;
        }
        if (*config->rules_path) {
            char err[512];
            rules_t *rules = rules_load(config->rules_path, config, config->sla, err, sizeof(err));
            if (!rules) {
                fprintf(stderr, "tierd: %s\n", err);
                config_destroy(&config);
                return 2;
            }
            printf("# %s: %zu rules\n", config->rules_path, rules_count(rules));
            rules_destroy(&rules);
        }
        config_print(config);
        printf("# tierd: settings are valid\n");
        config_destroy(&config);
        return 0;
    }
    log_set_level(config->log_level);
    zsys_handler_set(NULL); //  our own signal handling (server_run)
    zsys_set_linger(0);
    server_t *server = server_new(config);
    int rc = server ? server_run(server) : 1;
    server_destroy(&server);
    config_destroy(&config);
    return rc;
}
