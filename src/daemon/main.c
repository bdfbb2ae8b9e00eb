/*
 * main.c -- the balanced binary: reads flags (each also BALANCED_<NAME> in the
 * environment; a flag wins over the environment), checks them, and runs the node.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bal_log.h"
#include "bal_node.h"

typedef enum option_kind { OPTION_U64, OPTION_I64, OPTION_U32, OPTION_TEXT, OPTION_LISTEN, OPTION_LEVEL } option_kind;

typedef struct option {
    const char *name;       /* flag without dashes; env is BALANCED_ + upper case, '-' -> '_' */
    option_kind kind;
    size_t offset;          /* into bal_node_config; unused for LISTEN/LEVEL */
    size_t size;            /* TEXT buffer size */
    const char *help;
} option;

#define FIELD(f) offsetof(bal_node_config, f)
static const option options[] = {
    {"listen", OPTION_LISTEN, 0, 0, "HOST:PORT to serve HTTP on (port 0: any free port, logged)"},
    {"data-dir", OPTION_TEXT, FIELD(data_dir), sizeof(((bal_node_config *)0)->data_dir), "data directory (logs, snapshots, journal)"},
    {"shards", OPTION_U32, FIELD(shard_count), 0, "shards (single-writer threads); fixed once a data directory exists"},
    {"http-threads", OPTION_U32, FIELD(http_threads), 0, "HTTP I/O threads"},
    {"connections", OPTION_U32, FIELD(connections_max), 0, "open connections at most"},
    {"balance-capacity", OPTION_U64, FIELD(balance_capacity), 0, "balances per shard (memory: 64 bytes each)"},
    {"idempotency-count", OPTION_U32, FIELD(idempotency_count), 0, "recent transaction ids kept in memory per shard"},
    {"idempotency-bytes", OPTION_U64, FIELD(idempotency_bytes), 0, "memory for those ids per shard"},
    {"idempotency-retention-ms", OPTION_I64, FIELD(idempotency_retention_ms), 0, "how long ids stay in memory (older: journal)"},
    {"batch-max", OPTION_U32, FIELD(batch_max), 0, "commands per shard batch (one log sync)"},
    {"queue-depth", OPTION_U32, FIELD(queue_depth), 0, "entries waiting per shard"},
    {"snapshot-every", OPTION_U64, FIELD(snapshot_every), 0, "log records per shard between snapshots (0: never)"},
    {"wal-segment-bytes", OPTION_U64, FIELD(wal_segment_bytes), 0, "log segment size"},
    {"read-wait-ms", OPTION_U32, FIELD(read_wait_ms), 0, "how long a journal read waits for the journal to catch up"},
    {"id-filter-bytes", OPTION_U64, FIELD(id_filter_bytes), 0,
     "memory for the filter of every transaction id used (power of two; 16 bits per id)"},
    {"journal-lag-max", OPTION_U32, FIELD(journal_lag_max), 0, "transaction ids logged but not yet in the journal, at most"},
    {"keys-file", OPTION_TEXT, FIELD(keys_file), sizeof(((bal_node_config *)0)->keys_file),
     "API keys file (docs/auth.md); without it: no authentication, loopback only"},
    {"nonce-memory", OPTION_U32, FIELD(nonce_memory), 0,
     "signed requests' nonces remembered at once (32 bytes each; a nonce stays 5 to 10 minutes)"},
    {"log-level", OPTION_LEVEL, 0, 0, "debug, info, warn or error"},
};
#define OPTION_COUNT (sizeof(options) / sizeof(options[0]))

static void usage(const bal_node_config *d) {
    printf("usage: balanced [--flag value]...   (or BALANCED_<FLAG> in the environment)\n\n");
    printf("  --listen                    %s (default %s:%u)\n", options[0].help, d->listen_host, d->listen_port);
    for (size_t i = 1; i < OPTION_COUNT; i++) {
        const option *o = &options[i];
        const char *base = (const char *)d + o->offset;
        char value[64] = "";
        if (o->kind == OPTION_LEVEL) snprintf(value, sizeof(value), "info");
        if (o->kind == OPTION_U64) snprintf(value, sizeof(value), "%llu", (unsigned long long)*(const uint64_t *)base);
        if (o->kind == OPTION_I64) snprintf(value, sizeof(value), "%lld", (long long)*(const int64_t *)base);
        if (o->kind == OPTION_U32) snprintf(value, sizeof(value), "%u", *(const uint32_t *)base);
        if (o->kind == OPTION_TEXT) snprintf(value, sizeof(value), "%s", base);
        printf("  --%-25s %s (default %s)\n", o->name, o->help, value);
    }
    printf("  --help                      this text\n");
}

static bool parse_number(const char *text, unsigned long long max, unsigned long long *out) {
    if (text[0] < '0' || text[0] > '9') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value > max) return false;
    *out = value;
    return true;
}

static bool parse_listen(const char *text, bal_node_config *config) {
    const char *colon = strrchr(text, ':');
    unsigned long long port = 0;
    if (colon == NULL || colon == text || (size_t)(colon - text) >= sizeof(config->listen_host)) return false;
    if (!parse_number(colon + 1, 65535, &port)) return false;
    size_t host_length = (size_t)(colon - text);
    if (text[0] == '[' && text[host_length - 1] == ']') { text++; host_length -= 2; }
    memcpy(config->listen_host, text, host_length);
    config->listen_host[host_length] = '\0';
    config->listen_port = (uint16_t)port;
    return true;
}

static bool apply_option(const option *o, const char *value, bal_node_config *config) {
    char *base = (char *)config + o->offset;
    unsigned long long number = 0;
    bal_log_level level;
    switch (o->kind) {
    case OPTION_LISTEN: return parse_listen(value, config);
    case OPTION_LEVEL:
        if (!bal_log_level_parse(value, &level)) return false;
        bal_log_set_level(level);
        return true;
    case OPTION_TEXT:
        if (strlen(value) >= o->size) return false;
        strcpy(base, value);
        return true;
    case OPTION_U64:
        if (!parse_number(value, UINT64_MAX, &number)) return false;
        *(uint64_t *)base = number;
        return true;
    case OPTION_I64:
        if (!parse_number(value, INT64_MAX, &number)) return false;
        *(int64_t *)base = (int64_t)number;
        return true;
    case OPTION_U32:
        if (!parse_number(value, UINT32_MAX, &number)) return false;
        *(uint32_t *)base = (uint32_t)number;
        return true;
    }
    return false;
}

static bool from_environment(bal_node_config *config) {
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char name[64] = "BALANCED_";
        size_t n = strlen(name);
        for (const char *p = options[i].name; *p && n < sizeof(name) - 1; p++) {
            name[n++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        }
        name[n] = '\0';
        const char *value = getenv(name);
        if (value != NULL && !apply_option(&options[i], value, config)) {
            fprintf(stderr, "balanced: invalid %s=%s\n", name, value);
            return false;
        }
    }
    return true;
}

static int from_arguments(int argc, char **argv, bal_node_config *config, const bal_node_config *defaults) {
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            usage(defaults);
            return 0;
        }
        const char *flag = argv[a];
        const char *value = NULL;
        if (strncmp(flag, "--", 2) != 0) { fprintf(stderr, "balanced: unexpected argument %s (see --help)\n", flag); return 2; }
        const char *equals = strchr(flag, '=');
        size_t length = equals ? (size_t)(equals - flag - 2) : strlen(flag + 2);
        if (equals) value = equals + 1; else if (a + 1 < argc) value = argv[++a];
        size_t i = 0;
        while (i < OPTION_COUNT && !(strlen(options[i].name) == length && strncmp(options[i].name, flag + 2, length) == 0)) i++;
        if (i == OPTION_COUNT) { fprintf(stderr, "balanced: unknown flag %s (see --help)\n", flag); return 2; }
        if (value == NULL || !apply_option(&options[i], value, config)) {
            fprintf(stderr, "balanced: invalid value for --%s: %s\n", options[i].name, value ? value : "(missing)");
            return 2;
        }
    }
    return -1;
}

int main(int argc, char **argv) {
    bal_node_block_signals();
    bal_node_config defaults, config;
    bal_node_config_default(&defaults);
    config = defaults;
    if (!from_environment(&config)) return 2;
    int done = from_arguments(argc, argv, &config, &defaults);
    if (done >= 0) return done;
    char error[256];
    if (!bal_node_config_check(&config, error, sizeof(error))) {
        fprintf(stderr, "balanced: invalid configuration: %s\n", error);
        return 2;
    }
    return bal_node_run(&config);
}
