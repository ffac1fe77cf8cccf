/*  config.h — tierd's settings: defaults, the INI file, command-line flags.

    Every setting has one entry in the table in config.c (section, key,
    default, meaning); `tierd --check --config FILE` validates a file with the
    same code that loads it.
*/
#ifndef TIER_CONFIG_H
#define TIER_CONFIG_H

#include "grades.h"
#include "sla.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_DEPARTMENTS_MAX 64
#define CONFIG_LEVELS          3

typedef enum { STRATEGY_LONGEST_IDLE = 0, STRATEGY_LEAST_LOADED = 1 } strategy_t;

typedef struct {
    char *clients;                             //  [router] clients: ROUTER endpoint for integrators
    char *workers;                             //  [router] workers: ROUTER endpoint for workers
    char *events;                              //  [router] events: PUB endpoint
    int max_message_bytes;                     //  [router] max_message_bytes: larger frames refused
    char *departments[CONFIG_DEPARTMENTS_MAX]; //  [router] departments, comma-separated
    int department_count;                      //  how many of them
    char *redis_url;                           //  [redis] url
    char *redis_prefix;                        //  [redis] prefix: of every key
    int connect_timeout_ms;                    //  [redis] connect_timeout_ms
    int command_timeout_ms;                    //  [redis] command_timeout_ms
    int lock_lease_ms;                         //  [redis] lock_lease_ms: one router per prefix
    int idempotency_filter_mb;                 //  [redis] idempotency_filter_mb: 0 = off
    int heartbeat_ms;                          //  [workers] heartbeat_ms: interval asked of workers
    int liveness;                              //  [workers] liveness: missed heartbeats = lost
    int offer_timeout_ms;                      //  [workers] offer_timeout_ms: accept within this
    int max_attempts;                          //  [workers] max_attempts: then dead letter
    int max_offer_misses;                   //  [workers] max_offer_misses: then the agent is away
    int log_level;                          //  [log] level, as a syslog priority
    char *rules_path;                       //  [router] rules: intake rules file, "" = none
    strategy_t strategy[CONFIG_LEVELS + 1]; //  [workers] strategy_L1..3
    int64_t followup_ms[CONFIG_LEVELS + 1]; //  [workers] followup_L1..3, 0 = off
    int64_t promise_grace_ms;               //  [workers] promise_grace: then a promise is missed
    sla_t *sla;                             //  [sla], [sla NAME], [sla NAME PRIORITY]
    char *metrics_listen;                   //  [metrics] listen: HOST:PORT of /metrics, or "off"
    grades_t grades;                        //  [grades]: limits of the service grades
} config_t;

//  A config with every default set.
config_t *config_new(void);
void config_destroy(config_t **self_p);

//  Read an INI file over the current values. On error prints
//  "FILE:LINE: what is wrong" and returns -1.
int config_load(config_t *self, const char *path);

//  Set one value; "what" names the source for the error message.
//  Returns -1 and fills err when the key or value is bad.
int config_set(config_t *self, const char *section, const char *key, const char *value, char *err,
               size_t err_size);

//  The index of a department, or -1.
int config_department(const config_t *self, const char *name);

//  Print the settings in INI form (for --check).
void config_print(const config_t *self);

#endif
