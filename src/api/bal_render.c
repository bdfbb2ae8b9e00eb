/*
 * bal_render.c -- the response bodies of bal_render.h.
 */
#include "bal_render.h"

#include <assert.h>
#include <string.h>

int bal_render_http_status(bal_result result) {
    switch (result) {
    case BAL_RESULT_OK: return 200;
    case BAL_RESULT_INSUFFICIENT_AVAILABLE:
    case BAL_RESULT_INSUFFICIENT_FROZEN:
    case BAL_RESULT_OVERFLOW: return 422;
    case BAL_RESULT_CONFLICT: return 409;
    case BAL_RESULT_CAPACITY_EXCEEDED: return 507;
    }
    return 500;
}

void bal_render_currency(bal_text *text, bal_currency currency) {
    char buffer[BAL_CURRENCY_LENGTH_MAX + 1];
    size_t length = bal_currency_format(currency, buffer);
    bal_text_append(text, "\"", 1);
    bal_text_append(text, buffer, length);
    bal_text_append(text, "\"", 1);
}

void bal_render_outcome(bal_text *text, const bal_command *command, const bal_outcome *outcome,
                        const bal_change *changes) {
    assert(text != NULL && command != NULL && outcome != NULL);
    assert(changes != NULL || outcome->change_count == 0);
    bal_text_cstr(text, "{\"transaction_id\":");
    bal_text_json_string(text, command->transaction_id, command->transaction_id_length);
    bal_text_cstr(text, ",\"result\":\"");
    bal_text_cstr(text, bal_result_name((bal_result)outcome->result));
    bal_text_cstr(text, outcome->duplicate ? "\",\"duplicate\":true,\"sequence\":" : "\",\"duplicate\":false,\"sequence\":");
    bal_text_u64(text, outcome->sequence);
    bal_text_cstr(text, ",\"balances\":[");
    for (unsigned i = 0; i < outcome->change_count; i++) {
        const bal_change *c = &changes[i];
        if (i > 0) bal_text_append(text, ",", 1);
        bal_render_balance(text, c->account_id, c->currency, c->available_after, c->frozen_after);
    }
    bal_text_cstr(text, "]}");
}

void bal_render_item_error(bal_text *text, const bal_decode_diagnostic *diagnostic) {
    bal_text_cstr(text, "{\"transaction_id\":");
    if (diagnostic->transaction_id[0] != '\0') {
        bal_text_json_string(text, diagnostic->transaction_id, strlen(diagnostic->transaction_id));
    } else {
        bal_text_cstr(text, "null");
    }
    bal_text_cstr(text, ",\"error\":\"");
    bal_text_cstr(text, bal_decode_error_code(diagnostic->error));
    bal_text_cstr(text, "\",\"message\":");
    bal_text_json_string(text, diagnostic->message, strlen(diagnostic->message));
    bal_text_cstr(text, "}");
}

void bal_render_error(bal_text *text, const char *code, const char *message) {
    bal_text_cstr(text, "{\"error\":");
    bal_text_json_string(text, code, strlen(code));
    bal_text_cstr(text, ",\"message\":");
    bal_text_json_string(text, message, strlen(message));
    bal_text_cstr(text, "}");
}

static void balance_fields(bal_text *text, bal_currency currency, bal_amount available, bal_amount frozen) {
    bal_text_cstr(text, "\"currency\":");
    bal_render_currency(text, currency);
    bal_text_cstr(text, ",\"available\":");
    bal_text_amount(text, available);
    bal_text_cstr(text, ",\"frozen\":");
    bal_text_amount(text, frozen);
}

void bal_render_account_balances(bal_text *text, uint64_t account_id, const bal_balance *balances,
                                 size_t count) {
    bal_text_cstr(text, "{\"account_id\":");
    bal_text_u64(text, account_id);
    bal_text_cstr(text, ",\"balances\":[");
    for (size_t i = 0; i < count; i++) {
        bal_text_cstr(text, i ? ",{" : "{");
        balance_fields(text, balances[i].currency, balances[i].available, balances[i].frozen);
        bal_text_cstr(text, "}");
    }
    bal_text_cstr(text, "]}");
}

void bal_render_balance(bal_text *text, uint64_t account_id, bal_currency currency,
                        bal_amount available, bal_amount frozen) {
    bal_text_cstr(text, "{\"account_id\":");
    bal_text_u64(text, account_id);
    bal_text_cstr(text, ",");
    balance_fields(text, currency, available, frozen);
    bal_text_cstr(text, "}");
}
