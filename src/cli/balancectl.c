/*
 * balancectl.c -- the command-line client of balanced: parses the command line, checks
 * it, and runs one command (one HTTP request). See docs/cli.md.
 *
 * Options may come before or after the command's arguments; "--" ends the options.
 * Values come from flags first, then from the environment (BALANCED_URL,
 * BALANCED_API_KEY, BALANCED_API_SECRET), then from defaults.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bal_ctl.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define DEFAULT_TIMEOUT_MS 10000u

typedef enum command_kind { RUN_TYPED, RUN_TRANSFER, RUN_EVENT, RUN_BATCH, RUN_BALANCE, RUN_TX, RUN_HISTORY, RUN_SERVICE } command_kind;

typedef struct command {
    const char *name;
    command_kind kind;
    const char *operand;      /* the operation type (typed commands) or the path (service commands) */
    unsigned min_args, max_args;
    unsigned options;         /* beyond the global ones */
    const char *synopsis;
    const char *summary;
    const char *details;
} command;

#define WRITE_OPTIONS (BAL_CTL_OPT_ID | BAL_CTL_OPT_MEMO)
#define TYPED_DETAILS                                                                                   \
    "ACCOUNT is an account id (1 .. 18446744073709551615), CURRENCY 1 to 10 of A-Z 0-9, AMOUNT a\n"     \
    "positive plain decimal with at most 18 integer and 18 fractional digits (\"100\", \"0.5\").\n"

static const command commands[] = {
    {"deposit", RUN_TYPED, "DEPOSIT", 3, 3, WRITE_OPTIONS, "ACCOUNT CURRENCY AMOUNT [--id TX] [--memo M]",
     "available += AMOUNT", TYPED_DETAILS},
    {"withdraw", RUN_TYPED, "WITHDRAW", 3, 3, WRITE_OPTIONS, "ACCOUNT CURRENCY AMOUNT [--id TX] [--memo M]",
     "available -= AMOUNT", TYPED_DETAILS "Rejected with insufficient_available (exit 1) if available < AMOUNT.\n"},
    {"freeze", RUN_TYPED, "FREEZE", 3, 3, WRITE_OPTIONS, "ACCOUNT CURRENCY AMOUNT [--id TX] [--memo M]",
     "available -= AMOUNT, frozen += AMOUNT", TYPED_DETAILS "Rejected with insufficient_available if available < AMOUNT.\n"},
    {"unfreeze", RUN_TYPED, "UNFREEZE", 3, 3, WRITE_OPTIONS, "ACCOUNT CURRENCY AMOUNT [--id TX] [--memo M]",
     "frozen -= AMOUNT, available += AMOUNT", TYPED_DETAILS "Rejected with insufficient_frozen if frozen < AMOUNT.\n"},
    {"deduct-frozen", RUN_TYPED, "DEDUCT_FROZEN", 3, 3, WRITE_OPTIONS, "ACCOUNT CURRENCY AMOUNT [--id TX] [--memo M]",
     "frozen -= AMOUNT (a filled order's funds leave)", TYPED_DETAILS "Rejected with insufficient_frozen if frozen < AMOUNT.\n"},
    {"transfer", RUN_TRANSFER, "TRANSFER", 4, 4, WRITE_OPTIONS, "FROM TO CURRENCY AMOUNT [--id TX] [--memo M]",
     "FROM.available -= AMOUNT, TO.available += AMOUNT",
     "FROM and TO are different accounts; the currency is the same on both sides.\n"
     "Rejected with insufficient_available if FROM's available < AMOUNT.\n"},
    {"event", RUN_EVENT, "EVENT", 0, 0, WRITE_OPTIONS | BAL_CTL_OPT_LEG,
     "--leg ACCOUNT:CURRENCY:AVAILABLE_DELTA:FROZEN_DELTA ... [--id TX] [--memo M]",
     "1 to 16 signed balance changes, applied all or none",
     "Each --leg gives one (account, currency) and two signed deltas (\"-1.5\", \"0\", \"2\"); at most\n"
     "one leg per (account, currency). Example, settling a trade (buyer 7 pays 100 USDT frozen for\n"
     "1 BTC, seller 8 delivers 1 BTC frozen):\n"
     "  balancectl event --leg 7:USDT:0:-100 --leg 7:BTC:1:0 --leg 8:BTC:0:-1 --leg 8:USDT:100:0\n"},
    {"batch", RUN_BATCH, NULL, 1, 1, BAL_CTL_OPT_FORMAT, "FILE [--format json|csv]",
     "many transactions in one request (up to 8192)",
     "FILE ending in .json holds {\"transactions\": [...]} or a bare array of transaction objects as\n"
     "POST /v1/transactions takes them; each item is checked by the server (a malformed item is\n"
     "reported in its place, the others apply). FILE ending in .csv has the header row\n"
     "  transaction_id,type,account_id,currency,amount,to_account_id,memo\n"
     "(to_account_id and memo may be left out; fields may be quoted as in RFC 4180); every row is\n"
     "checked before anything is sent. --format overrides the extension.\n"
     "Exit status: 0 if every item is ok, 1 if some were rejected, 3 if some were malformed.\n"},
    {"balance", RUN_BALANCE, NULL, 1, 2, 0, "ACCOUNT [CURRENCY]", "an account's balances, or one balance",
     "A balance never credited reads as 0.\n"},
    {"tx", RUN_TX, NULL, 1, 1, 0, "TRANSACTION_ID", "a stored transaction: request, result, balances after",
     "Unknown ids give not_found (exit 3).\n"},
    {"history", RUN_HISTORY, NULL, 1, 1, BAL_CTL_OPT_CURRENCY | BAL_CTL_OPT_LIMIT | BAL_CTL_OPT_BEFORE,
     "ACCOUNT [--currency C] [--limit N] [--before CURSOR]", "an account's journal, newest first",
     "--limit is 1 to 1000 (default 100). When more entries exist, the last line gives the\n"
     "--before CURSOR that fetches the next page.\n"},
    {"health", RUN_SERVICE, "/health", 0, 0, 0, "", "is the process alive", ""},
    {"ready", RUN_SERVICE, "/ready", 0, 0, 0, "", "does the node serve all its shards",
     "Exit status 4 while the node is starting or stopping (HTTP 503).\n"},
    {"metrics", RUN_SERVICE, "/metrics", 0, 0, 0, "", "Prometheus metrics, printed as received", ""},
};
#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

typedef struct option_spec {
    const char *name;
    unsigned bit;
    bool has_value;
} option_spec;

static const option_spec option_specs[] = {
    {"url", BAL_CTL_OPT_URL, true},         {"key-file", BAL_CTL_OPT_KEY_FILE, true},
    {"timeout", BAL_CTL_OPT_TIMEOUT, true}, {"json", BAL_CTL_OPT_JSON, false},
    {"help", BAL_CTL_OPT_HELP, false},      {"id", BAL_CTL_OPT_ID, true},
    {"memo", BAL_CTL_OPT_MEMO, true},       {"leg", BAL_CTL_OPT_LEG, true},
    {"currency", BAL_CTL_OPT_CURRENCY, true}, {"limit", BAL_CTL_OPT_LIMIT, true},
    {"before", BAL_CTL_OPT_BEFORE, true},   {"format", BAL_CTL_OPT_FORMAT, true},
};
#define OPTION_COUNT (sizeof(option_specs) / sizeof(option_specs[0]))

/* ---- help --------------------------------------------------------------------------------- */

static void print_global_options(FILE *out) {
    fputs("Options (every command):\n"
          "  --url URL          the server, http://HOST:PORT (default $BALANCED_URL, else " DEFAULT_URL ")\n"
          "  --key-file FILE    sign requests with the key in FILE: one line \"KEY_ID SECRET\", mode 600;\n"
          "                     else with $BALANCED_API_KEY and $BALANCED_API_SECRET; else unsigned\n"
          "  --timeout SECONDS  limit for connecting, and again for the whole response (default 10)\n"
          "  --json             print the server's JSON response as received\n"
          "  -h, --help         this help; COMMAND --help for a command's\n", out);
}

static void print_help(FILE *out) {
    fputs("usage: balancectl [OPTIONS] COMMAND [ARGUMENTS]\n\n"
          "The command-line client of balanced: one HTTP request per invocation.\n\nCommands:\n", out);
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    }
    fputc('\n', out);
    print_global_options(out);
    fputs("\nWrites without --id get a generated transaction id, shown on stderr: pass it as --id to\n"
          "retry safely (a retry of the same request answers \"duplicate\" and changes nothing).\n\n"
          "Exit status:\n"
          "  0  ok (also a duplicate)          1  rejected: insufficient_*, overflow, conflict\n"
          "  2  usage error (nothing sent)     3  refused by the server (HTTP 4xx, e.g. not_found)\n"
          "  4  server error (5xx), connection failure, timeout, unreadable response\n\n"
          "See docs/cli.md for examples.\n", out);
}

static void print_command_help(FILE *out, const command *c) {
    fprintf(out, "usage: balancectl %s%s%s\n\n%s\n", c->name, c->synopsis[0] != '\0' ? " " : "", c->synopsis,
            c->summary);
    if (c->details[0] != '\0') fprintf(out, "\n%s", c->details);
    if ((c->options & BAL_CTL_OPT_ID) != 0) {
        fputs("\n  --id TX    the transaction id (1 to 64 of A-Z a-z 0-9 . _ : -); default: generated and\n"
              "             shown on stderr. Reusing an id repeats the original answer (duplicate).\n"
              "  --memo M   a note kept in the journal (at most 256 bytes of UTF-8)\n", out);
    }
    fputc('\n', out);
    print_global_options(out);
}

static const command *find_command(const char *name) {
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    }
    return NULL;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static bool usage_error(bal_ctl_error *error, const char *message, const char *detail) {
    bal_ctl_error_set(error, "usage", "%s%s%.80s%s", message, detail != NULL ? " \"" : "", detail != NULL ? detail : "",
                      detail != NULL ? "\"" : "");
    return false;
}

static const char **option_slot(bal_ctl_cli *cli, unsigned bit) {
    switch (bit) {
    case BAL_CTL_OPT_URL: return &cli->url;
    case BAL_CTL_OPT_KEY_FILE: return &cli->key_file;
    case BAL_CTL_OPT_TIMEOUT: return &cli->timeout;
    case BAL_CTL_OPT_ID: return &cli->id;
    case BAL_CTL_OPT_MEMO: return &cli->memo;
    case BAL_CTL_OPT_CURRENCY: return &cli->currency;
    case BAL_CTL_OPT_LIMIT: return &cli->limit;
    case BAL_CTL_OPT_BEFORE: return &cli->before;
    case BAL_CTL_OPT_FORMAT: return &cli->format;
    default: return NULL;
    }
}

/* One option at argv[*i] ("--name", "--name value" or "--name=value"). */
static bool parse_option(bal_ctl_cli *cli, int argc, char **argv, int *i, bal_ctl_error *error) {
    const char *arg = strcmp(argv[*i], "-h") == 0 ? "--help" : argv[*i];
    const char *equals = strchr(arg, '=');
    size_t name_length = equals != NULL ? (size_t)(equals - arg - 2) : strlen(arg) - 2;
    const option_spec *spec = NULL;
    for (size_t k = 0; k < OPTION_COUNT && arg[1] == '-'; k++) {
        if (strlen(option_specs[k].name) == name_length && strncmp(arg + 2, option_specs[k].name, name_length) == 0) {
            spec = &option_specs[k];
        }
    }
    if (spec == NULL) return usage_error(error, "unknown option", arg);
    if ((cli->given & spec->bit) != 0 && spec->bit != BAL_CTL_OPT_LEG) return usage_error(error, "option given twice:", arg);
    cli->given |= spec->bit;
    if (!spec->has_value) return equals == NULL || usage_error(error, "option takes no value:", arg);
    const char *value = equals != NULL ? equals + 1 : NULL;
    if (value == NULL && *i + 1 >= argc) return usage_error(error, "option needs a value:", arg);
    if (value == NULL) value = argv[++*i];
    if (spec->bit == BAL_CTL_OPT_LEG) {
        if (cli->leg_count == BAL_EVENT_LEGS_MAX) return usage_error(error, "an event has at most 16 legs", NULL);
        cli->legs[cli->leg_count++] = value;
    } else {
        *option_slot(cli, spec->bit) = value;
    }
    return true;
}

/* "-1" is a (signed, hence refused) amount rather than an option: say so in its terms. */
static bool looks_negative(const char *arg) {
    return arg[0] == '-' && ((arg[1] >= '0' && arg[1] <= '9') || arg[1] == '.');
}

static bool parse_command_line(bal_ctl_cli *cli, int argc, char **argv, bal_ctl_error *error) {
    memset(cli, 0, sizeof(*cli));
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (!options_done && arg[0] == '-' && arg[1] != '\0' && !looks_negative(arg)) {
            if (!parse_option(cli, argc, argv, &i, error)) return false;
        } else if (cli->arg_count == BAL_CTL_ARGS_MAX) {
            return usage_error(error, "too many arguments, from", arg);
        } else {
            cli->args[cli->arg_count++] = arg;
        }
    }
    return true;
}

/* Checks the command's argument count and that every option given belongs to it. */
static bool check_command(const command *c, const bal_ctl_cli *cli, bal_ctl_error *error) {
    unsigned args = cli->arg_count - 1;
    if (args < c->min_args || args > c->max_args) {
        bal_ctl_error_set(error, "usage", "%s takes %s: balancectl %s %s", c->name,
                          c->max_args == 0 ? "no arguments" : "these arguments", c->name, c->synopsis);
        return false;
    }
    unsigned stray = cli->given & ~(BAL_CTL_OPT_GLOBAL | c->options);
    for (size_t k = 0; k < OPTION_COUNT; k++) {
        if ((stray & option_specs[k].bit) != 0) {
            bal_ctl_error_set(error, "usage", "--%s does not apply to %s", option_specs[k].name, c->name);
            return false;
        }
    }
    return true;
}

static bool parse_timeout(const char *text, unsigned *timeout_ms, bal_ctl_error *error) {
    char *end = NULL;
    double seconds = text != NULL ? strtod(text, &end) : 0;
    if (text == NULL) return true;
    if (end == text || *end != '\0' || !isfinite(seconds) || seconds < 0.001 || seconds > 3600) {
        return usage_error(error, "--timeout takes seconds from 0.001 to 3600, not", text);
    }
    *timeout_ms = (unsigned)lround(seconds * 1000);
    return true;
}

/* ---- running ------------------------------------------------------------------------------ */

static bool setup_context(const bal_ctl_cli *cli, bal_ctl_context *context, bal_ctl_error *error) {
    memset(context, 0, sizeof(*context));
    context->json = (cli->given & BAL_CTL_OPT_JSON) != 0;
    context->timeout_ms = DEFAULT_TIMEOUT_MS;
    const char *url = cli->url;
    if (url == NULL) url = getenv("BALANCED_URL");
    if (url == NULL || url[0] == '\0') url = DEFAULT_URL;
    return parse_timeout(cli->timeout, &context->timeout_ms, error) &&
           bal_ctl_url_parse(url, &context->endpoint, error) && bal_ctl_key_load(&context->key, cli->key_file, error);
}

static int run(const command *c, const bal_ctl_cli *cli, bal_ctl_context *context) {
    switch (c->kind) {
    case RUN_TYPED: return bal_ctl_run_typed(c->operand, cli, context);
    case RUN_TRANSFER: return bal_ctl_run_transfer(cli, context);
    case RUN_EVENT: return bal_ctl_run_event(cli, context);
    case RUN_BATCH: return bal_ctl_run_batch(cli, context);
    case RUN_BALANCE: return bal_ctl_run_balance(cli, context);
    case RUN_TX: return bal_ctl_run_tx(cli, context);
    case RUN_HISTORY: return bal_ctl_run_history(cli, context);
    case RUN_SERVICE: return bal_ctl_run_service(c->operand, cli, context);
    }
    return BAL_CTL_EXIT_USAGE;
}

/* "balancectl help [COMMAND]", "balancectl --help", "balancectl COMMAND --help". */
static int help(const bal_ctl_cli *cli) {
    const char *name = cli->arg_count == 0 ? NULL
                       : strcmp(cli->args[0], "help") == 0 ? (cli->arg_count > 1 ? cli->args[1] : NULL)
                                                           : cli->args[0];
    if (name == NULL) {
        print_help(stdout);
        return BAL_CTL_EXIT_OK;
    }
    const command *c = find_command(name);
    if (c == NULL) {
        fprintf(stderr, "balancectl: usage: unknown command \"%.80s\" (see balancectl --help)\n", name);
        return BAL_CTL_EXIT_USAGE;
    }
    print_command_help(stdout, c);
    return BAL_CTL_EXIT_OK;
}

int main(int argc, char **argv) {
    bal_ctl_cli cli;
    bal_ctl_error error;
    if (!parse_command_line(&cli, argc, argv, &error)) {
        bal_ctl_error_print(&error);
        fputs("balancectl: see balancectl --help\n", stderr);
        return BAL_CTL_EXIT_USAGE;
    }
    if ((cli.given & BAL_CTL_OPT_HELP) != 0 || (cli.arg_count > 0 && strcmp(cli.args[0], "help") == 0)) {
        return help(&cli);
    }
    if (cli.arg_count == 0) {
        print_help(stderr);
        return BAL_CTL_EXIT_USAGE;
    }
    const command *c = find_command(cli.args[0]);
    if (c == NULL) {
        fprintf(stderr, "balancectl: usage: unknown command \"%.80s\" (see balancectl --help)\n", cli.args[0]);
        return BAL_CTL_EXIT_USAGE;
    }
    bal_ctl_context context;
    if (!check_command(c, &cli, &error) || !setup_context(&cli, &context, &error)) {
        bal_ctl_error_print(&error);
        return BAL_CTL_EXIT_USAGE;
    }
    int status = run(c, &cli, &context);
    bal_ctl_key_clear(&context.key);
    return status;
}
