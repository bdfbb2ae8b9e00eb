/*
 * bal_render.h -- JSON bodies of the API's responses, from core values.
 *
 * Pure functions writing into a bal_text. Shapes follow SPEC's HTTP API; account ids are
 * JSON numbers, amounts canonical decimal strings, currencies their text.
 */
#ifndef BAL_RENDER_H
#define BAL_RENDER_H

#include "bal_decode.h"
#include "bal_ledger.h"
#include "bal_text.h"

/* The HTTP status of a business result: 200 ok, 422 insufficient_* and overflow,
 * 409 conflict, 507 capacity_exceeded (the shard's balance table is full). */
int bal_render_http_status(bal_result result);

/* {"transaction_id","result","duplicate","sequence","balances":[...]} */
void bal_render_outcome(bal_text *text, const bal_command *command, const bal_outcome *outcome,
                        const bal_change *changes);

/* {"transaction_id": id or null, "error", "message"}: a malformed item of a batch. */
void bal_render_item_error(bal_text *text, const bal_decode_diagnostic *diagnostic);

/* {"error", "message"} */
void bal_render_error(bal_text *text, const char *code, const char *message);

/* {"account_id","balances":[{"currency","available","frozen"},...]} */
void bal_render_account_balances(bal_text *text, uint64_t account_id, const bal_balance *balances,
                                 size_t count);

/* {"account_id","currency","available","frozen"} */
void bal_render_balance(bal_text *text, uint64_t account_id, bal_currency currency,
                        bal_amount available, bal_amount frozen);

/* A currency as a JSON string. */
void bal_render_currency(bal_text *text, bal_currency currency);

#endif
