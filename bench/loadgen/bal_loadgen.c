/*
 * bal_loadgen.c -- the load generator's command line: options, workload, report.
 *
 *   bal_loadgen [options] http://HOST:PORT[/PATH]
 *
 * By default it POSTs DEPOSIT transactions with fresh ids and random accounts to
 * /v1/transactions over 64 keep-alive connections for 10 s, closed loop, and prints
 * throughput (requests/s and operations/s), latency percentiles and status counts.
 * `--format line` prints one line for scripts:
 *   ops/s=<N> p50_ms=<X> p95_ms=<X> p99_ms=<X> p999_ms=<X> max_ms=<X>
 * See usage() for every option and bal_loadgen_engine.h for what is measured and how.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_auth.h"
#include "bal_loadgen_engine.h"
#include "bal_loadgen_sign.h"

/* Fixed header lines given with -H, in total. */
#define LG_HEADERS_BYTES_MAX 8192
/* A template read from a file. */
#define LG_TEMPLATE_FILE_BYTES_MAX (1024 * 1024)
/* Pre-signed requests carry the time they were signed, and the server refuses a timestamp
   older than its replay window: warm-up plus duration must end well inside it (a minute
   to spare for rendering and clock differences). */
#define LG_PRESIGNED_SECONDS_MAX (BAL_AUTH_REPLAY_WINDOW_MS / 1000.0 - 60.0)
_Static_assert(BAL_AUTH_REPLAY_WINDOW_MS > 2 * 60 * 1000, "a pre-signed run has at least a minute");

typedef struct lg_cli {
    bal_loadgen_options options;
    const char *url;
    char path[2048];
    const char *method;
    const char *operations; /* "deposit", "mixed", "deposit:3,transfer:1", "none" */
    char *template_text;    /* -T, owned */
    uint32_t batch;
    uint64_t accounts;
    const char *currency;
    const char *amount;
    char headers[LG_HEADERS_BYTES_MAX];
    size_t headers_length;
    const char *run_id;
    const char *sign;
    bool line_format;
    bool duration_given;
} lg_cli;

static void usage(FILE *out) {
    fprintf(out,
            "usage: bal_loadgen [options] http://HOST:PORT[/PATH]\n"
            "  -c, --connections N   keep-alive connections (64)\n"
            "  -t, --threads N       generator threads (1)\n"
            "  -p, --pipeline N      requests in flight per connection (1)\n"
            "  -d, --duration S      measured seconds (10); with -n, the time limit\n"
            "  -w, --warmup S        seconds before measuring (0)\n"
            "  -n, --requests N      stop after N requests instead of a duration\n"
            "      --pregenerate     with -n: render (and sign) all N requests before the\n"
            "                        clock starts, so the run only sends them\n"
            "  -R, --rate N          open loop: N requests/s in total, latency from the\n"
            "                        scheduled send time (default: closed loop)\n"
            "  -m, --method M        POST (default) or GET, ...; GET sends no body\n"
            "  -o, --op LIST         deposit | withdraw | transfer | mixed | none, or weights\n"
            "                        like deposit:2,withdraw:1,transfer:1 (deposit)\n"
            "  -T, --template T|@F   operation template text (or @file) instead of --op;\n"
            "                        placeholders {tx} {account} {account2} {seq} {amount} {currency}\n"
            "  -b, --batch N         N operations per body {\"transactions\":[...]}; the path\n"
            "                        defaults to /v1/transactions/batch\n"
            "  -a, --accounts N      account ids drawn from 1..N (1000000)\n"
            "      --currency C      (USDT)      --amount A   (1)\n"
            "  -H, --header LINE     extra header \"Name: value\" (repeatable)\n"
            "      --sign KEY:SECRET sign every request with HMAC-SHA256 (SPEC Security)\n"
            "      --seed N          random seed (1)   --run-id ID   transaction id prefix\n"
            "      --format F        human (default) or line\n"
            "PATH may hold placeholders too, e.g. /v1/accounts/{account}/balances.\n");
}

static bool lg_parse_url(lg_cli *cli, char *errstr, size_t errstr_size) {
    const char *url = cli->url;
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(errstr, errstr_size, "only http:// URLs are supported");
        return false;
    }
    const char *host = url + 7;
    const char *path = strchr(host, '/');
    size_t authority_length = path != NULL ? (size_t)(path - host) : strlen(host);
    const char *colon = memchr(host, ':', authority_length);
    size_t host_length = colon != NULL ? (size_t)(colon - host) : authority_length;
    if (host_length == 0 || host_length >= sizeof cli->options.host) {
        snprintf(errstr, errstr_size, "bad host in %s", url);
        return false;
    }
    memcpy(cli->options.host, host, host_length);
    cli->options.host[host_length] = '\0';
    cli->options.port = 80;
    if (colon != NULL) {
        long port = strtol(colon + 1, NULL, 10);
        if (port <= 0 || port > 65535) {
            snprintf(errstr, errstr_size, "bad port in %s", url);
            return false;
        }
        cli->options.port = (uint16_t)port;
    }
    snprintf(cli->path, sizeof cli->path, "%s", path != NULL ? path : "");
    return true;
}

static char *lg_read_text(const char *argument) {
    if (argument[0] != '@') return strdup(argument);
    FILE *file = fopen(argument + 1, "rb");
    if (file == NULL) return NULL;
    char *text = malloc(LG_TEMPLATE_FILE_BYTES_MAX + 1);
    size_t length = text != NULL ? fread(text, 1, LG_TEMPLATE_FILE_BYTES_MAX, file) : 0;
    fclose(file);
    if (text == NULL) return NULL;
    while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r')) length--;
    text[length] = '\0';
    return text;
}

static bool lg_add_header(lg_cli *cli, const char *line) {
    size_t length = strlen(line);
    if (strchr(line, ':') == NULL || strpbrk(line, "\r\n") != NULL) return false;
    if (cli->headers_length + length + 3 > sizeof cli->headers) return false;
    memcpy(cli->headers + cli->headers_length, line, length);
    memcpy(cli->headers + cli->headers_length + length, "\r\n", 3);
    cli->headers_length += length + 2;
    return true;
}

static bool lg_number(const char *text, double low, double high, double *out) {
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || value < low || value > high) return false;
    *out = value;
    return true;
}

enum {
    LG_OPTION_CURRENCY = 256,
    LG_OPTION_AMOUNT,
    LG_OPTION_SEED,
    LG_OPTION_RUN_ID,
    LG_OPTION_FORMAT,
    LG_OPTION_SIGN,
    LG_OPTION_PREGENERATE,
};

static const struct option lg_long_options[] = {
    {"connections", required_argument, NULL, 'c'}, {"threads", required_argument, NULL, 't'},
    {"pipeline", required_argument, NULL, 'p'},    {"duration", required_argument, NULL, 'd'},
    {"warmup", required_argument, NULL, 'w'},      {"requests", required_argument, NULL, 'n'},
    {"rate", required_argument, NULL, 'R'},        {"method", required_argument, NULL, 'm'},
    {"op", required_argument, NULL, 'o'},          {"template", required_argument, NULL, 'T'},
    {"batch", required_argument, NULL, 'b'},       {"accounts", required_argument, NULL, 'a'},
    {"header", required_argument, NULL, 'H'},      {"help", no_argument, NULL, 'h'},
    {"currency", required_argument, NULL, LG_OPTION_CURRENCY},
    {"amount", required_argument, NULL, LG_OPTION_AMOUNT},
    {"seed", required_argument, NULL, LG_OPTION_SEED},
    {"run-id", required_argument, NULL, LG_OPTION_RUN_ID},
    {"format", required_argument, NULL, LG_OPTION_FORMAT},
    {"sign", required_argument, NULL, LG_OPTION_SIGN},
    {"pregenerate", no_argument, NULL, LG_OPTION_PREGENERATE},
    {NULL, 0, NULL, 0},
};

static bool lg_count32(const char *text, double high, uint32_t *out) {
    double value = 0;
    if (!lg_number(text, 1, high, &value)) return false;
    *out = (uint32_t)value;
    return true;
}

static bool lg_count64(const char *text, double low, double high, uint64_t *out) {
    double value = 0;
    if (!lg_number(text, low, high, &value)) return false;
    *out = (uint64_t)value;
    return true;
}

/* Numeric options; false if the value is out of range. */
static bool lg_apply_number(lg_cli *cli, int option, const char *argument) {
    bal_loadgen_options *options = &cli->options;
    switch (option) {
    case 'c': return lg_count32(argument, BAL_LOADGEN_CONNECTIONS_MAX, &options->connections);
    case 't': return lg_count32(argument, BAL_LOADGEN_THREADS_MAX, &options->threads);
    case 'p': return lg_count32(argument, BAL_LOADGEN_PIPELINE_MAX, &options->pipeline);
    case 'd': cli->duration_given = true; return lg_number(argument, 0.001, 1e7, &options->duration_s);
    case 'w': return lg_number(argument, 0, 1e7, &options->warmup_s);
    case 'n': return lg_count64(argument, 1, 1e15, &options->requests);
    case 'R': return lg_number(argument, 0.001, 1e9, &options->rate);
    case 'b': return lg_count32(argument, BAL_WORKLOAD_BATCH_MAX, &cli->batch);
    case 'a': return lg_count64(argument, 1, 1e15, &cli->accounts);
    case LG_OPTION_SEED: return lg_count64(argument, 0, 1e18, &options->seed);
    default: return false;
    }
}

static bool lg_apply(lg_cli *cli, int option, const char *argument) {
    switch (option) {
    case 'm': cli->method = argument; return true;
    case 'o': cli->operations = argument; return true;
    case 'T':
        free(cli->template_text);
        cli->template_text = lg_read_text(argument);
        return cli->template_text != NULL;
    case 'H': return lg_add_header(cli, argument);
    case LG_OPTION_CURRENCY: cli->currency = argument; return true;
    case LG_OPTION_AMOUNT: cli->amount = argument; return true;
    case LG_OPTION_RUN_ID: cli->run_id = argument; return strlen(argument) < BAL_WORKLOAD_RUN_ID_MAX;
    case LG_OPTION_SIGN: cli->sign = argument; return true;
    case LG_OPTION_PREGENERATE: cli->options.pregenerate = true; return true;
    case LG_OPTION_FORMAT:
        cli->line_format = strcmp(argument, "line") == 0;
        return cli->line_format || strcmp(argument, "human") == 0;
    default: return lg_apply_number(cli, option, argument);
    }
}

/* --pregenerate needs -n; pre-signed requests must all be sent while their timestamps are
 * fresh, so a signed pre-generated run is bounded by LG_PRESIGNED_SECONDS_MAX. 0 or 2. */
static int lg_check_pregenerate(lg_cli *cli) {
    bal_loadgen_options *options = &cli->options;
    if (!options->pregenerate) return 0;
    if (options->requests == 0) {
        fprintf(stderr, "bal_loadgen: --pregenerate needs -n (a request count)\n");
        return 2;
    }
    if (cli->sign == NULL) return 0;
    if (!cli->duration_given) options->duration_s = LG_PRESIGNED_SECONDS_MAX - options->warmup_s;
    if (!(options->duration_s > 0) || options->warmup_s + options->duration_s > LG_PRESIGNED_SECONDS_MAX) {
        fprintf(stderr, "bal_loadgen: pre-signed requests: warm-up plus duration must be at most %.0f s\n",
                LG_PRESIGNED_SECONDS_MAX);
        return 2;
    }
    return 0;
}

/* 0: parsed; 1: help printed; 2: bad usage (message printed). */
static int lg_parse(lg_cli *cli, int argc, char **argv) {
    int option = 0;
    while ((option = getopt_long(argc, argv, "c:t:p:d:w:n:R:m:o:T:b:a:H:h", lg_long_options, NULL)) != -1) {
        if (option == 'h') {
            usage(stdout);
            return 1;
        }
        if (option == '?' || !lg_apply(cli, option, optarg)) {
            if (option != '?') fprintf(stderr, "bal_loadgen: bad option value: %s\n", optarg);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    cli->url = argv[optind];
    /* A request count without a duration runs until done (bounded by an hour). */
    if (cli->options.requests > 0 && !cli->duration_given) cli->options.duration_s = 3600;
    return lg_check_pregenerate(cli);
}

/* Adds one "name[:weight]" operation to the workload. */
static bool lg_add_operation(lg_cli *cli, bal_workload *workload, const char *item, size_t length,
                             char *errstr, size_t errstr_size) {
    char name[32];
    const char *colon = memchr(item, ':', length);
    size_t name_length = colon != NULL ? (size_t)(colon - item) : length;
    long weight = colon != NULL ? strtol(colon + 1, NULL, 10) : 1;
    if (name_length == 0 || name_length >= sizeof name || weight <= 0 || weight > 1000000) {
        snprintf(errstr, errstr_size, "bad --op item '%.*s'", (int)length, item);
        return false;
    }
    memcpy(name, item, name_length);
    name[name_length] = '\0';
    const char *text = bal_workload_builtin(name);
    if (text == NULL) {
        snprintf(errstr, errstr_size, "unknown operation '%s'", name);
        return false;
    }
    if (workload->operation_count == BAL_WORKLOAD_OPERATIONS_MAX) {
        snprintf(errstr, errstr_size, "at most %d operations", BAL_WORKLOAD_OPERATIONS_MAX);
        return false;
    }
    uint32_t index = workload->operation_count++;
    workload->weights[index] = (uint32_t)weight;
    return bal_template_compile(&workload->operations[index], text, cli->amount, cli->currency, errstr,
                                errstr_size);
}

static bool lg_add_operations(lg_cli *cli, bal_workload *workload, char *errstr, size_t errstr_size) {
    if (cli->template_text != NULL) {
        workload->operation_count = 1;
        workload->weights[0] = 1;
        return bal_template_compile(&workload->operations[0], cli->template_text, cli->amount, cli->currency,
                                    errstr, errstr_size);
    }
    const char *list = cli->operations;
    if (strcmp(list, "none") == 0) return true;
    if (strcmp(list, "mixed") == 0) list = "deposit:2,withdraw:1,transfer:1";
    while (*list != '\0') {
        const char *comma = strchr(list, ',');
        size_t length = comma != NULL ? (size_t)(comma - list) : strlen(list);
        if (!lg_add_operation(cli, workload, list, length, errstr, errstr_size)) return false;
        list += length + (comma != NULL ? 1 : 0);
    }
    return true;
}

static bool lg_build_workload(lg_cli *cli, bal_workload *workload, bal_loadgen_signer *signer, char *errstr,
                              size_t errstr_size) {
    memset(workload, 0, sizeof *workload);
    bool get = strcmp(cli->method, "GET") == 0 || strcmp(cli->method, "HEAD") == 0;
    if (get && cli->template_text == NULL) cli->operations = "none";
    workload->method = cli->method;
    workload->batch = cli->batch;
    workload->accounts = cli->accounts;
    snprintf(workload->host_header, sizeof workload->host_header, "%s:%u", cli->options.host, cli->options.port);
    if (cli->run_id != NULL) {
        snprintf(workload->run_id, sizeof workload->run_id, "%s", cli->run_id);
    } else {
        /* The clock makes ids fresh across runs against the same ledger. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(workload->run_id, sizeof workload->run_id, "lg%llx",
                 (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000);
    }
    const char *path = cli->batch > 0 ? "/v1/transactions/batch" : "/v1/transactions";
    if (cli->path[0] != '\0') path = cli->path;
    if (!bal_template_compile(&workload->path, path, cli->amount, cli->currency, errstr, errstr_size)) {
        return false;
    }
    if (!lg_add_operations(cli, workload, errstr, errstr_size)) return false;
    if (cli->headers_length > 0) workload->extra_headers = strdup(cli->headers);
    if (cli->sign != NULL) {
        if (!bal_loadgen_signer_init(signer, cli->sign, workload->run_id)) {
            snprintf(errstr, errstr_size, "--sign wants KEY:SECRET");
            return false;
        }
        workload->hook = bal_loadgen_sign;
        workload->hook_context = signer;
    }
    if (!bal_workload_prepare(workload)) {
        snprintf(errstr, errstr_size, "cannot render the request");
        return false;
    }
    return true;
}

static double lg_ms(uint64_t microseconds) {
    return (double)microseconds / 1000.0;
}

static void lg_print_line(const bal_loadgen_report *report) {
    double seconds = report->seconds > 0 ? report->seconds : 1;
    const bal_histogram *latency = &report->latency;
    printf("ops/s=%.0f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
           (double)report->operations / seconds, lg_ms(bal_histogram_percentile(latency, 50)),
           lg_ms(bal_histogram_percentile(latency, 95)), lg_ms(bal_histogram_percentile(latency, 99)),
           lg_ms(bal_histogram_percentile(latency, 99.9)), lg_ms(latency->max_us));
}

static void lg_print_human(const lg_cli *cli, const bal_workload *workload, const bal_loadgen_report *report) {
    const bal_loadgen_options *options = &cli->options;
    double seconds = report->seconds > 0 ? report->seconds : 1;
    const bal_histogram *latency = &report->latency;
    printf("bal_loadgen %s: %s %u connections, %u thread%s, pipeline %u, ", cli->url, workload->method,
           options->connections, options->threads, options->threads == 1 ? "" : "s", options->pipeline);
    if (options->rate > 0) printf("open loop at %.0f requests/s", options->rate);
    else printf("closed loop");
    printf(", %.2f s measured (+%.2f s warm-up)\n", report->seconds, options->warmup_s);
    printf("  requests    %12llu  %12.1f/s\n", (unsigned long long)report->requests,
           (double)report->requests / seconds);
    printf("  operations  %12llu  %12.1f/s  (%u per request)\n", (unsigned long long)report->operations,
           (double)report->operations / seconds, workload->batch == 0 ? 1 : workload->batch);
    printf("  latency ms  p50 %.3f  p95 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
           lg_ms(bal_histogram_percentile(latency, 50)), lg_ms(bal_histogram_percentile(latency, 95)),
           lg_ms(bal_histogram_percentile(latency, 99)), lg_ms(bal_histogram_percentile(latency, 99.9)),
           lg_ms(latency->max_us), bal_histogram_mean(latency) / 1000.0);
    printf("  status     ");
    for (int status = 0; status < BAL_LOADGEN_STATUS_MAX; status++) {
        unsigned long long count = report->status_counts[status];
        if (count > 0) printf(" %d: %llu", status, count);
    }
    printf("\n  errors      connect %llu, io %llu, protocol %llu, lost in flight %llu, unsent %llu, "
           "reconnects %llu\n",
           (unsigned long long)report->errors_connect, (unsigned long long)report->errors_io,
           (unsigned long long)report->errors_protocol, (unsigned long long)report->requests_lost,
           (unsigned long long)report->requests_unsent, (unsigned long long)report->reconnects);
}

int main(int argc, char **argv) {
    static lg_cli cli;
    bal_loadgen_options_init(&cli.options);
    cli.method = "POST";
    cli.operations = "deposit";
    cli.accounts = 1000000;
    cli.currency = "USDT";
    cli.amount = "1";
    int parsed = lg_parse(&cli, argc, argv);
    if (parsed != 0) return parsed == 1 ? 0 : 2;
    char errstr[256] = {0};
    static bal_workload workload;
    static bal_loadgen_signer signer;
    if (!lg_parse_url(&cli, errstr, sizeof errstr) ||
        !lg_build_workload(&cli, &workload, &signer, errstr, sizeof errstr)) {
        fprintf(stderr, "bal_loadgen: %s\n", errstr);
        return 2;
    }
    cli.options.workload = &workload;
    static bal_loadgen_report report;
    bool ran = bal_loadgen_run(&cli.options, &report, errstr, sizeof errstr);
    if (ran && cli.line_format) lg_print_line(&report);
    else if (ran) lg_print_human(&cli, &workload, &report);
    else fprintf(stderr, "bal_loadgen: %s\n", errstr);
    bal_workload_free(&workload);
    free(cli.template_text);
    return ran ? 0 : 1;
}
