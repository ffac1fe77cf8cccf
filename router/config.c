/*  config.c — see config.h. */
#include "config.h"
#include "ini_lines.h"
#include "log.h"

#include <ini.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    KIND_STR,      //  char *, not empty
    KIND_PATH,     //  char *, may be empty
    KIND_INT,      //  int within min..max
    KIND_DURATION, //  int64_t ms, "250ms" / "5m" / "none"
    KIND_STRATEGY, //  strategy_t
    KIND_DEPTS,    //  departments list
    KIND_LOGLEVEL  //  syslog priority
} kind_t;

typedef struct {
    const char *section;  //  INI section
    const char *key;      //  INI key
    kind_t kind;          //  how to parse
    size_t offset;        //  where in config_t
    int min, max;         //  bounds for integers
    const char *fallback; //  default, as text
} setting_t;

#define STR(s, k, field, def)                                                                      \
    {                                                                                              \
        s, k, KIND_STR, offsetof(config_t, field), 0, 0, def                                       \
    }
#define INT(s, k, field, lo, hi, def)                                                              \
    {                                                                                              \
        s, k, KIND_INT, offsetof(config_t, field), lo, hi, def                                     \
    }

static const setting_t s_settings[] = {
    STR("router", "clients", clients, "tcp://127.0.0.1:5560"),
    STR("router", "workers", workers, "tcp://127.0.0.1:5561"),
    STR("router", "events", events, "tcp://127.0.0.1:5562"),
    INT("router", "max_message_bytes", max_message_bytes, 1024, 64 << 20, "262144"),
    {"router", "departments", KIND_DEPTS, 0, 0, 0, "billing, technical, logistics, sales"},
    {"router", "rules", KIND_PATH, offsetof(config_t, rules_path), 0, 0, ""},
    STR("redis", "url", redis_url, "redis://127.0.0.1:6379"),
    STR("redis", "prefix", redis_prefix, "tier:"),
    INT("redis", "connect_timeout_ms", connect_timeout_ms, 10, 60000, "1000"),
    INT("redis", "command_timeout_ms", command_timeout_ms, 10, 60000, "2000"),
    INT("redis", "lock_lease_ms", lock_lease_ms, 1000, 600000, "10000"),
    INT("redis", "idempotency_filter_mb", idempotency_filter_mb, 0, 1024, "8"),
    INT("workers", "heartbeat_ms", heartbeat_ms, 10, 600000, "1000"),
    INT("workers", "liveness", liveness, 2, 100, "3"),
    INT("workers", "offer_timeout_ms", offer_timeout_ms, 10, 3600000, "30000"),
    INT("workers", "max_attempts", max_attempts, 1, 1000, "5"),
    INT("workers", "max_offer_misses", max_offer_misses, 0, 1000, "3"),
    {"workers", "strategy_L1", KIND_STRATEGY, offsetof(config_t, strategy[1]), 0, 0,
     "longest_idle"},
    {"workers", "strategy_L2", KIND_STRATEGY, offsetof(config_t, strategy[2]), 0, 0,
     "longest_idle"},
    {"workers", "strategy_L3", KIND_STRATEGY, offsetof(config_t, strategy[3]), 0, 0,
     "longest_idle"},
    {"workers", "followup_L1", KIND_DURATION, offsetof(config_t, followup_ms[1]), 0, 0, "none"},
    {"workers", "followup_L2", KIND_DURATION, offsetof(config_t, followup_ms[2]), 0, 0, "none"},
    {"workers", "followup_L3", KIND_DURATION, offsetof(config_t, followup_ms[3]), 0, 0, "none"},
    {"workers", "promise_grace", KIND_DURATION, offsetof(config_t, promise_grace_ms), 0, 0, "5m"},
    STR("metrics", "listen", metrics_listen, "127.0.0.1:9464"),
    {"log", "level", KIND_LOGLEVEL, offsetof(config_t, log_level), 0, 0, "info"},
};
#define SETTINGS (sizeof(s_settings) / sizeof(s_settings[0]))

static size_t s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (lb >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = diag + (a[i - 1] != b[j - 1]);
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = cost < best ? cost : best;
            diag = up;
        }
    }
    return row[lb];
}

static int s_set_departments(config_t *self, const char *value, char *err, size_t err_size)
{
    for (int i = 0; i < self->department_count; i++)
        free(self->departments[i]);
    self->department_count = 0;
    char *copy = strdup(value), *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        if (self->department_count == CONFIG_DEPARTMENTS_MAX) {
            snprintf(err, err_size, "more than %d departments", CONFIG_DEPARTMENTS_MAX);
            free(copy);
            return -1;
        }
        if (config_department(self, tok) >= 0)
            continue;
        self->departments[self->department_count++] = strdup(tok);
    }
    free(copy);
    return 0;
}

static int s_apply_duration(const setting_t *s, const char *value, int64_t *ms, char *err,
                            size_t err_size)
{
    *ms = 0;
    if (strcmp(value, "none") == 0 || strcmp(value, "off") == 0 ||
        sla_parse_duration(value, ms) == 0)
        return 0;
    snprintf(err, err_size, "%s = \"%s\" is not a duration like 90s, 5m, 4h or none", s->key,
             value);
    return -1;
}

static int s_apply_strategy(const setting_t *s, const char *value, strategy_t *strategy, char *err,
                            size_t err_size)
{
    if (strcmp(value, "longest_idle") == 0)
        *strategy = STRATEGY_LONGEST_IDLE;
    else if (strcmp(value, "least_loaded") == 0)
        *strategy = STRATEGY_LEAST_LOADED;
    else {
        snprintf(err, err_size, "%s = \"%s\" is not longest_idle or least_loaded", s->key, value);
        return -1;
    }
    return 0;
}

static int s_apply(config_t *self, const setting_t *s, const char *value, char *err,
                   size_t err_size)
{
    char *field = (char *) self + s->offset;
    if (s->kind == KIND_STR) {
        if (!*value) {
            snprintf(err, err_size, "%s must not be empty", s->key);
            return -1;
        }
        free(*(char **) field);
        *(char **) field = strdup(value);
        return 0;
    }
    if (s->kind == KIND_DEPTS)
        return s_set_departments(self, value, err, err_size);
    if (s->kind == KIND_PATH) {
        free(*(char **) field);
        *(char **) field = strdup(value);
        return 0;
    }
    if (s->kind == KIND_DURATION)
        return s_apply_duration(s, value, (int64_t *) field, err, err_size);
    if (s->kind == KIND_STRATEGY)
        return s_apply_strategy(s, value, (strategy_t *) field, err, err_size);
    if (s->kind == KIND_LOGLEVEL) {
        int level = log_level_parse(value);
        if (level < 0) {
            snprintf(err, err_size,
                     "log level \"%s\" is not one of error, warning, notice, "
                     "info, debug",
                     value);
            return -1;
        }
        *(int *) field = level;
        return 0;
    }
    char *end = NULL;
    long number = strtol(value, &end, 10);
    if (!*value || *end || number < s->min || number > s->max) {
        snprintf(err, err_size, "%s = \"%s\" is not a whole number from %d to %d", s->key, value,
                 s->min, s->max);
        return -1;
    }
    *(int *) field = (int) number;
    return 0;
}

int config_set(config_t *self, const char *section, const char *key, const char *value, char *err,
               size_t err_size)
{
    if (strcmp(section, "grades") == 0)
        return grades_set(&self->grades, key, value, err, err_size);
    if (strncmp(section, "sla", 3) == 0 && (section[3] == 0 || section[3] == ' '))
        return sla_set(self->sla, section, key, value, err, err_size);
    const setting_t *closest = NULL;
    size_t closest_distance = SIZE_MAX;
    for (size_t i = 0; i < SETTINGS; i++) {
        const setting_t *s = &s_settings[i];
        if (strcmp(s->key, key) == 0 && strcmp(s->section, section) == 0)
            return s_apply(self, s, value, err, err_size);
        size_t d = s_distance(key, s->key);
        if (d < closest_distance) {
            closest_distance = d;
            closest = s;
        }
    }
    if (closest && closest_distance <= 3)
        snprintf(err, err_size, "unknown key \"%s\" in [%s] (did you mean \"%s\" in [%s]?)", key,
                 section, closest->key, closest->section);
    else
        snprintf(err, err_size, "unknown key \"%s\" in [%s]", key, section);
    return -1;
}

config_t *config_new(void)
{
    config_t *self = calloc(1, sizeof(config_t));
    self->sla = sla_new();
    grades_init(&self->grades);
    char err[256];
    for (size_t i = 0; i < SETTINGS; i++) {
        int rc = s_apply(self, &s_settings[i], s_settings[i].fallback, err, sizeof(err));
        (void) rc; //  defaults are valid by construction
    }
    return self;
}

void config_destroy(config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    config_t *self = *self_p;
    for (size_t i = 0; i < SETTINGS; i++)
        if (s_settings[i].kind == KIND_STR || s_settings[i].kind == KIND_PATH)
            free(*(char **) ((char *) self + s_settings[i].offset));
    for (int i = 0; i < self->department_count; i++)
        free(self->departments[i]);
    sla_destroy(&self->sla);
    free(self);
    *self_p = NULL;
}

typedef struct {
    config_t *config; //  being loaded
    const char *path; //  for messages
    ini_lines_t in;   //  the file, and the line being handled
    int errors;       //  lines refused
} load_t;

static int s_on_ini(void *arg, const char *section, const char *key, const char *value)
{
    load_t *load = arg;
    char err[256];
    if (config_set(load->config, section, key, value, err, sizeof(err))) {
        fprintf(stderr, "tierd: %s:%d: %s\n", load->path, load->in.line, err);
        load->errors++;
    }
    return 1; //  keep going: report every bad line at once
}

int config_load(config_t *self, const char *path)
{
    load_t load = {self, path, {fopen(path, "r"), 0}, 0};
    if (!load.in.file) {
        fprintf(stderr, "tierd: %s: cannot open the config file: %m\n", path);
        return -1;
    }
    int rc = ini_parse_stream(ini_lines_read, &load.in, s_on_ini, &load);
    fclose(load.in.file);
    if (rc > 0 && load.errors == 0) {
        fprintf(stderr, "tierd: %s:%d: not an INI line (expected [section] or key = value)\n", path,
                rc);
        return -1;
    }
    return load.errors ? -1 : 0;
}

int config_department(const config_t *self, const char *name)
{
    for (int i = 0; i < self->department_count; i++)
        if (strcmp(self->departments[i], name) == 0)
            return i;
    return -1;
}

void config_print(const config_t *self)
{
    const char *section = "";
    for (size_t i = 0; i < SETTINGS; i++) {
        const setting_t *s = &s_settings[i];
        if (strcmp(section, s->section) != 0)
            printf("%s[%s]\n", i ? "\n" : "", section = s->section);
        const char *field = (const char *) self + s->offset;
        if (s->kind == KIND_STR || s->kind == KIND_PATH)
            printf("%s = %s\n", s->key, *(char *const *) field);
        else if (s->kind == KIND_DURATION)
            printf("%s = %lldms\n", s->key, (long long) *(const int64_t *) field);
        else if (s->kind == KIND_STRATEGY)
            printf("%s = %s\n", s->key,
                   *(const strategy_t *) field ? "least_loaded" : "longest_idle");
        else if (s->kind == KIND_INT)
            printf("%s = %d\n", s->key, *(const int *) field);
        else if (s->kind == KIND_LOGLEVEL) {
            static const char *names[] = {"",        "",       "",     "error",
                                          "warning", "notice", "info", "debug"};
            printf("%s = %s\n", s->key, names[*(const int *) field]);
        } else {
            printf("%s = ", s->key);
            for (int d = 0; d < self->department_count; d++)
                printf("%s%s", d ? ", " : "", self->departments[d]);
            printf("\n");
        }
    }
    grades_print(&self->grades, stdout);
}
