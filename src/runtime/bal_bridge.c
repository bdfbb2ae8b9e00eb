/*
 * bal_bridge.c -- between the core's commands and outcomes and the journal's rows.
 *
 * A processed command becomes one row per balance this shard touched (its legs in
 * leg_mask), each carrying the request's fields. Going back, all rows of one transaction
 * id (from every shard) rebuild the request, and this shard's rows its outcome: that is
 * how the look-up hook answers ids that left the core's memory.
 */
#include <assert.h>
#include <string.h>

#include "bal_node_internal.h"

static bal_journal_type journal_type(bal_op op) {
    switch (op) {
    case BAL_OP_DEPOSIT: return BAL_JOURNAL_TYPE_DEPOSIT;
    case BAL_OP_WITHDRAW: return BAL_JOURNAL_TYPE_WITHDRAW;
    case BAL_OP_FREEZE: return BAL_JOURNAL_TYPE_FREEZE;
    case BAL_OP_UNFREEZE: return BAL_JOURNAL_TYPE_UNFREEZE;
    case BAL_OP_DEDUCT_FROZEN: return BAL_JOURNAL_TYPE_DEDUCT_FROZEN;
    case BAL_OP_TRANSFER: return BAL_JOURNAL_TYPE_TRANSFER;
    case BAL_OP_EVENT: return BAL_JOURNAL_TYPE_EVENT;
    }
    assert(0 && "unknown operation");
    return BAL_JOURNAL_TYPE_DEPOSIT;
}

static bool op_of(bal_journal_type type, bal_op *op_out) {
    const char *name = bal_journal_type_name(type);
    return name != NULL && bal_op_from_name(name, strlen(name), op_out);
}

static bool result_of(const char *text, bal_result *result_out) {
    for (int r = 0; r < BAL_RESULT_COUNT; r++) {
        if (strcmp(text, bal_result_name((bal_result)r)) == 0) {
            *result_out = (bal_result)r;
            return true;
        }
    }
    return false;
}

size_t bal_bridge_rows(uint32_t shard, const bal_command *command, const bal_outcome *outcome,
                       const bal_change *changes, bal_journal_row *rows) {
    assert(command != NULL && outcome != NULL && rows != NULL);
    assert(!outcome->duplicate && outcome->result != BAL_RESULT_CONFLICT);
    unsigned total = bal_command_leg_total(command), k = 0;
    for (unsigned leg = 0; leg < total; leg++) {
        if (!bal_command_has_leg(command, leg)) continue;
        assert(k < outcome->change_count);
        const bal_change *c = &changes[k];
        bal_journal_row *row = &rows[k];
        memset(row, 0, offsetof(bal_journal_row, memo));
        row->shard = shard;
        row->leg = leg;
        row->sequence = outcome->sequence;
        row->time_ms = command->time_ms;
        row->type = journal_type((bal_op)command->type);
        row->account_id = c->account_id;
        row->to_account_id = command->type == BAL_OP_TRANSFER ? command->to_account_id : 0;
        row->amount = command->type == BAL_OP_EVENT ? 0 : command->amount;
        if (command->type == BAL_OP_EVENT) {
            row->leg_available_delta = command->legs[leg].available_delta;
            row->leg_frozen_delta = command->legs[leg].frozen_delta;
        }
        row->available_before = c->available_before;
        row->available_after = c->available_after;
        row->frozen_before = c->frozen_before;
        row->frozen_after = c->frozen_after;
        row->available_delta = c->available_after - c->available_before;
        row->frozen_delta = c->frozen_after - c->frozen_before;
        row->has_memo = command->has_memo != 0;
        row->memo_length = command->memo_length;
        memcpy(row->memo, command->memo, command->memo_length);
        row->memo[command->memo_length] = '\0';
        memcpy(row->transaction_id, command->transaction_id, command->transaction_id_length);
        row->transaction_id[command->transaction_id_length] = '\0';
        bal_currency_format(c->currency, row->currency);
        strcpy(row->result, bal_result_name((bal_result)outcome->result));
        k++;
    }
    assert(k == outcome->change_count);
    return k;
}

/* The request, from the rows of every shard (legs come from whichever shard holds them). */
static bool rebuild_command(const bal_journal_row *rows, size_t count, bal_command *c) {
    const bal_journal_row *first = &rows[0];
    bal_op op;
    if (!op_of(first->type, &op)) return false;
    memset(c, 0, offsetof(bal_command, memo));
    c->type = (uint8_t)op;
    c->time_ms = first->time_ms;
    c->transaction_id_length = (uint8_t)strlen(first->transaction_id);
    memcpy(c->transaction_id, first->transaction_id, c->transaction_id_length);
    c->has_memo = first->has_memo;
    c->memo_length = first->memo_length;
    memcpy(c->memo, first->memo, first->memo_length);
    for (size_t i = 0; i < count; i++) {
        const bal_journal_row *row = &rows[i];
        bal_currency currency;
        if (!bal_currency_parse(row->currency, strlen(row->currency), &currency)) return false;
        if (op == BAL_OP_EVENT) {
            if (row->leg >= BAL_EVENT_LEGS_MAX) return false;
            c->legs[row->leg] = (bal_leg){row->account_id, currency, row->leg_available_delta, row->leg_frozen_delta};
            if (row->leg + 1u > c->leg_count) c->leg_count = (uint8_t)(row->leg + 1);
        } else if (row->leg == 0) {
            c->account_id = row->account_id;
            c->currency = currency;
            c->amount = row->amount;
            c->to_account_id = row->to_account_id;
        } else {
            c->currency = currency;
            c->amount = row->amount;
            c->to_account_id = row->to_account_id;
        }
    }
    if (op == BAL_OP_TRANSFER && c->account_id == 0) {
        /* Only the destination's row was found: the source is not known here. */
        return false;
    }
    if (op == BAL_OP_EVENT) {
        c->account_id = c->legs[0].account_id;
        c->currency = c->legs[0].currency;
    }
    return bal_command_valid(c);
}

int bal_bridge_recall(uint32_t shard, const bal_journal_row *rows, size_t row_count,
                      bal_command *command, bal_outcome *outcome, bal_change *changes,
                      uint64_t *foreign_sequence_out) {
    assert(row_count > 0);
    size_t own = 0;
    for (size_t i = 0; i < row_count; i++) own += rows[i].shard == shard;
    if (own == 0) {
        *foreign_sequence_out = rows[0].sequence;
        return 0;
    }
    if (!rebuild_command(rows, row_count, command)) return -1;
    memset(outcome, 0, sizeof(*outcome));
    bal_result result;
    uint16_t mask = 0;
    for (size_t i = 0; i < row_count; i++) {
        const bal_journal_row *row = &rows[i];
        if (row->shard != shard) continue;
        if (!result_of(row->result, &result) || outcome->change_count >= BAL_COMMAND_BALANCES_MAX) return -1;
        bal_change *c = &changes[outcome->change_count++];
        c->account_id = row->account_id;
        bal_currency_parse(row->currency, strlen(row->currency), &c->currency);
        c->available_before = row->available_before;
        c->available_after = row->available_after;
        c->frozen_before = row->frozen_before;
        c->frozen_after = row->frozen_after;
        outcome->sequence = row->sequence;
        outcome->result = (uint8_t)result;
        mask |= (uint16_t)(1u << row->leg);
    }
    /* The rows of a command spanning shards carry this shard's legs only. */
    if (own != bal_command_leg_total(command)) command->leg_mask = mask;
    return 1;
}
