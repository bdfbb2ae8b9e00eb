/*
 * bal_shard.c -- one shard: its queue, ledger, log and snapshots, on one thread.
 *
 * The loop takes what its queue holds (up to batch_max entries) and runs the commands as
 * one batch: ids the ledger's memory does not hold are claimed node-wide (bal_ids.h) and,
 * unless the node's id filter rules them out, looked up in the journal in one query; each
 * command is appended to the log; one fdatasync makes the whole batch
 * durable (group commit: the more requests wait, the larger the next batch); the ledger
 * applies the batch; only then do the callers get their results; the batch goes to the
 * persister. A PARK entry (a command spanning shards) or a read ends a batch, so that
 * everything keeps the order in which it was queued.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bal_hash.h"
#include "bal_log.h"
#include "bal_node_internal.h"
#include "bal_render.h"
#include "bal_snapfile.h"

_Noreturn static void shard_fatal(bal_shard *shard, const char *what, const char *detail) {
    /* A log that cannot be written stops the node: the log is the truth, and a restart
     * recovers every acknowledged command from it. */
    bal_log(BAL_LOG_ERROR, "shard_fatal", "\"shard\":%u,\"what\":\"%s\",\"detail\":\"%.300s\"",
            shard->index, what, detail);
    _exit(70);
}

/* Collects the journal rows of one id (they come grouped by id, in order). */
typedef struct lookup_state {
    bal_shard *shard;
    size_t count;                     /* commands in the batch */
    bal_journal_row *rows;
    size_t row_count;
    bool overflow;
    uint64_t *foreign;                /* per command: sequence+1 of a foreign use, 0 if none */
    bool replay;                      /* recovery: a logged command was not foreign then */
    /* The batch's commands by id: chains of command indexes + 1 from heads[hash & mask]. A
     * replay after a clean stop finds every id of its batches in the journal; comparing each
     * found id with every command of the batch made that quadratic (36 s to restart with a
     * million log records after the snapshot). */
    uint32_t *heads;
    uint32_t *next;
    uint64_t *hashes;
    uint64_t mask;
} lookup_state;

#define LOOKUP_HASH_SEED 0x6c6f6f6b7570ull

/* Indexes the batch's commands with an id by the id's hash. false: out of memory. */
static bool index_commands(lookup_state *state) {
    uint64_t slots = 1;
    while (slots < 2 * (uint64_t)state->count) slots <<= 1;
    state->mask = slots - 1;
    state->heads = calloc(slots, sizeof(uint32_t));
    state->next = malloc(state->count * sizeof(uint32_t));
    state->hashes = malloc(state->count * sizeof(uint64_t));
    if (state->heads == NULL || state->next == NULL || state->hashes == NULL) return false;
    for (size_t i = state->count; i-- > 0;) { /* backwards: each chain lists its commands in order */
        const bal_command *c = &state->shard->commands[i];
        state->next[i] = 0;
        if (c->transaction_id_length == 0) continue;
        uint64_t hash = bal_hash_bytes(c->transaction_id, c->transaction_id_length, LOOKUP_HASH_SEED);
        state->hashes[i] = hash;
        state->next[i] = state->heads[hash & state->mask];
        state->heads[hash & state->mask] = (uint32_t)i + 1;
    }
    return true;
}

static void free_index(lookup_state *state) {
    free(state->heads);
    free(state->next);
    free(state->hashes);
}

static void recall_rows(lookup_state *state) {
    if (state->row_count == 0) return;
    bal_shard *shard = state->shard;
    const char *id = state->rows[0].transaction_id;
    size_t id_length = strlen(id);
    uint64_t hash = bal_hash_bytes(id, id_length, LOOKUP_HASH_SEED);
    for (uint32_t link = state->heads[hash & state->mask]; link != 0; link = state->next[link - 1]) {
        size_t i = link - 1;
        const bal_command *c = &shard->commands[i];
        if (state->hashes[i] != hash || c->transaction_id_length != id_length ||
            memcmp(c->transaction_id, id, id_length) != 0) continue;
        if (shard->recalls[i].original != NULL || state->foreign[i] != 0) continue;
        uint64_t foreign_sequence = 0;
        int found = bal_bridge_recall(shard->index, state->rows, state->row_count, &shard->recalled_commands[i],
                                      &shard->recalled_outcomes[i], &shard->recalled_changes[i * BAL_COMMAND_BALANCES_MAX],
                                      &foreign_sequence);
        if (found == 1) {
            shard->recalls[i] = (bal_ledger_recall){&shard->recalled_commands[i], &shard->recalled_outcomes[i],
                                                    &shard->recalled_changes[i * BAL_COMMAND_BALANCES_MAX]};
        } else if (found == 0 && !state->replay) {
            state->foreign[i] = foreign_sequence + 1;
        } else {
            bal_log(BAL_LOG_ERROR, "journal_rows_inconsistent", "\"shard\":%u,\"transaction_id\":\"%s\"", shard->index, id);
        }
    }
    state->row_count = 0;
}

static bool on_row(void *context, const bal_journal_row *row) {
    lookup_state *state = context;
    if (state->row_count > 0 && strcmp(state->rows[0].transaction_id, row->transaction_id) != 0) recall_rows(state);
    if (state->row_count == BAL_COMMAND_BALANCES_MAX) {
        state->overflow = true;
        return true;
    }
    state->rows[state->row_count++] = *row;
    return true;
}

/* Asks the journal about ids the ledger may have forgotten. Marks foreign uses. */
static void look_up_ids(bal_shard *shard, size_t count, size_t wanted, uint64_t *foreign, bool replay) {
    memset(shard->recalls, 0, count * sizeof(bal_ledger_recall));
    if (wanted == 0) return;
    const char **ids = malloc(wanted * sizeof(char *));
    char (*texts)[BAL_TRANSACTION_ID_LENGTH_MAX + 1] = malloc(wanted * sizeof(*texts));
    static _Thread_local bal_journal_row rows[BAL_COMMAND_BALANCES_MAX];
    if (ids == NULL || texts == NULL) shard_fatal(shard, "out_of_memory", "id look-up");
    for (size_t k = 0; k < wanted; k++) {
        const bal_command *c = &shard->commands[shard->lookup_indexes[k]];
        memcpy(texts[k], c->transaction_id, c->transaction_id_length);
        texts[k][c->transaction_id_length] = '\0';
        ids[k] = texts[k];
    }
    lookup_state state = {shard, count, rows, 0, false, foreign, replay, NULL, NULL, NULL, 0};
    if (!index_commands(&state)) shard_fatal(shard, "out_of_memory", "id look-up");
    char error[512];
    bal_journal_status status = bal_journal_find_transactions(shard->reader, ids, wanted, on_row, &state, error, sizeof(error));
    if (status != BAL_JOURNAL_OK) shard_fatal(shard, "journal_lookup", error);
    recall_rows(&state);
    free_index(&state);
    atomic_fetch_add(&shard->node->metrics.id_lookups, wanted);
    free(ids);
    free(texts);
}

/* Waits until a claim that blocks ours is stored in the journal or given up. The owner's
 * progress never depends on this thread: its rows are already with the persister. */
static void wait_for_owner(bal_shard *shard, bal_ids_owner owner) {
    atomic_fetch_add(&shard->node->metrics.id_claim_waits, 1);
    while (!bal_ids_wait_stored(shard->node->ids, owner, 10000)) {
        bal_log(BAL_LOG_WARN, "id_claim_wait", "\"shard\":%u,\"owner_shard\":%u,\"claim\":%llu", shard->index,
                owner.shard, (unsigned long long)owner.number);
    }
}

/* Gives up the claims one bal_ids_claim call made (outcome CLAIMED). */
static void release_round(bal_shard *shard, size_t wanted) {
    for (size_t k = 0; k < wanted; k++) {
        if (shard->claim_outcomes[k] != BAL_IDS_CLAIMED) continue;
        bal_ids_release(shard->node->ids, &shard->claim_hashes[k], &shard->claim_owners[k], 1);
    }
}

/* Claims the ids of the wanted commands (those listed in lookup_indexes) for this shard.
 * An id held in flight by another shard, or logged by this shard in an earlier batch and
 * already gone from its memory, is contested: the shard gives up every claim of this
 * round, waits until the owner's rows are stored (or the claim given up), and claims the
 * whole list again. Giving up first means that a shard never waits while holding claims
 * of its batch, so no two shards can wait for each other; the claims it keeps meanwhile
 * are those of batches already with the persister, which stores them without any shard's
 * help. contested_out[k] says whether the id was ever contested (then the journal must
 * be asked about it). */
static void claim_ids(bal_shard *shard, size_t wanted, bool *contested_out) {
    bal_ids *ids = shard->node->ids;
    uint64_t first = bal_ids_next_number(ids, shard->index);
    for (size_t k = 0; k < wanted; k++) {
        shard->claim_hashes[k] = shard->id_hashes[shard->lookup_indexes[k]];
        contested_out[k] = false;
    }
    for (;;) {
        bal_ids_claim(ids, shard->index, first, shard->claim_hashes, wanted, shard->claim_outcomes, shard->claim_owners);
        size_t contested = wanted;
        for (size_t k = 0; k < wanted; k++) {
            if (shard->claim_outcomes[k] != BAL_IDS_CONTESTED) continue;
            contested_out[k] = true;
            if (contested == wanted) contested = k;
        }
        if (contested == wanted) break;
        bal_ids_owner owner = shard->claim_owners[contested];
        release_round(shard, wanted);
        wait_for_owner(shard, owner);
    }
    for (size_t k = 0; k < wanted; k++) {
        if (shard->claim_outcomes[k] != BAL_IDS_CLAIMED) continue;
        uint32_t i = shard->lookup_indexes[k];
        shard->fresh[i] = true;
        shard->claims[i] = shard->claim_owners[k];
    }
}

/* Of the wanted commands (ids not in the ledger's memory), keeps in lookup_indexes those the
 * journal must be asked about: contested ids, and ids the filter may know. Returns how
 * many. Without claim (recovery, or a command's second shard), only the filter decides.
 * fresh[i] (the id goes into the filter once logged) is set by the claim, or for every
 * wanted id when remember_unclaimed (recovery: every replayed id that memory lacks). */
static size_t select_lookups(bal_shard *shard, size_t wanted, bool claim, bool remember_unclaimed) {
    assert(!(claim && remember_unclaimed));
    bal_ids *ids = shard->node->ids;
    for (size_t k = 0; k < wanted; k++) {
        uint32_t i = shard->lookup_indexes[k];
        const bal_command *c = &shard->commands[i];
        shard->id_hashes[i] = bal_journal_transaction_hash(c->transaction_id, c->transaction_id_length);
        shard->claims[i] = (bal_ids_owner){0};
        shard->fresh[i] = remember_unclaimed;
    }
    if (claim) claim_ids(shard, wanted, shard->claim_contested);
    size_t asked = 0;
    for (size_t k = 0; k < wanted; k++) {
        uint32_t i = shard->lookup_indexes[k];
        bool ask = (claim && shard->claim_contested[k]) || bal_ids_may_know(ids, shard->id_hashes[i]);
        if (ask) shard->lookup_indexes[asked++] = i;
    }
    atomic_fetch_add_explicit(&shard->node->metrics.id_filter_skips, wanted - asked, memory_order_relaxed);
    return asked;
}

/* Gives up the claim this batch made for command i, if it made one. */
static void release_claim(bal_shard *shard, size_t i) {
    if (!shard->fresh[i] || shard->claims[i].position == 0) return;
    bal_ids_release(shard->node->ids, &shard->id_hashes[i], &shard->claims[i], 1);
    shard->fresh[i] = false;
}

void bal_shard_release_claims(bal_shard *shard, size_t count) {
    for (size_t i = 0; i < count; i++) release_claim(shard, i);
}

void bal_shard_remember_ids(bal_shard *shard, size_t count) {
    bal_ids_remember(shard->node->ids, shard->id_hashes, shard->fresh, count);
}

static void encode_and_append(bal_shard *shard, size_t count) {
    shard->offsets[0] = 0;
    for (size_t i = 0; i < count; i++) {
        size_t length = bal_command_encode(&shard->commands[i], shard->encoded + shard->offsets[i]);
        shard->offsets[i + 1] = shard->offsets[i] + (uint32_t)length;
        bal_wal_status status = bal_wal_append(shard->wal, shard->encoded + shard->offsets[i], length, &shard->lsns[i]);
        if (status != BAL_WAL_OK) shard_fatal(shard, "wal_append", bal_wal_errstr(shard->wal));
    }
}

void bal_shard_sync(bal_shard *shard) {
    int64_t start = bal_node_now_ns();
    bal_wal_status status = bal_wal_sync(shard->wal);
    if (status != BAL_WAL_OK) shard_fatal(shard, "wal_sync", bal_wal_errstr(shard->wal));
    bal_metrics_observe_ns(&shard->node->metrics.wal_fsync, (uint64_t)(bal_node_now_ns() - start));
}

void bal_shard_log_one(bal_shard *shard) { encode_and_append(shard, 1); }

static void append_to_log(bal_shard *shard, size_t count) {
    encode_and_append(shard, count);
    bal_shard_sync(shard);
}

/* Drops commands whose id another shard already used: answered conflict, never logged
 * (their claims, if any, are given up). */
static size_t drop_foreign(bal_shard *shard, size_t count, const uint64_t *foreign, bool replay) {
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (foreign[i] == 0) {
            if (kept != i) {
                shard->commands[kept] = shard->commands[i];
                shard->replies[kept] = shard->replies[i];
                shard->recalls[kept] = shard->recalls[i];
                shard->id_hashes[kept] = shard->id_hashes[i];
                shard->fresh[kept] = shard->fresh[i];
                shard->claims[kept] = shard->claims[i];
            }
            kept++;
            continue;
        }
        release_claim(shard, i);
        bal_outcome conflict = {.sequence = foreign[i] - 1, .result = BAL_RESULT_CONFLICT};
        atomic_fetch_add(&shard->node->metrics.results[BAL_RESULT_CONFLICT], 1);
        if (!replay) bal_node_reply(shard->node, &shard->replies[i], &shard->commands[i], &conflict, NULL);
    }
    return kept;
}

static void count_results(bal_shard *shard, size_t count) {
    bal_metrics *m = &shard->node->metrics;
    for (size_t i = 0; i < count; i++) {
        if (shard->outcomes[i].duplicate) atomic_fetch_add_explicit(&m->duplicates, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->results[shard->outcomes[i].result], 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&m->commands_applied, count, memory_order_relaxed);
}

bool bal_shard_recall_one(bal_shard *shard, bool claim, bal_ledger_recall *recall_out, uint64_t *foreign_out) {
    uint64_t foreign = 0;
    shard->fresh[0] = false;
    size_t wanted = bal_ledger_prepare(shard->ledger, shard->commands, 1, shard->lookup_indexes);
    size_t asked = select_lookups(shard, wanted, claim, false); /* a second shard remembers nothing */
    look_up_ids(shard, 1, asked, &foreign, false);
    *recall_out = shard->recalls[0];
    *foreign_out = foreign;
    return wanted > 0;
}

void bal_shard_flush(bal_shard *shard, size_t count, bool replay) {
    if (count == 0) return;
    uint64_t foreign_static[1];
    uint64_t *foreign = count <= 1 ? foreign_static : calloc(count, sizeof(uint64_t));
    if (foreign == NULL) shard_fatal(shard, "out_of_memory", "batch");
    foreign[0] = 0;
    memset(shard->fresh, 0, count * sizeof(bool));
    size_t wanted = bal_ledger_prepare(shard->ledger, shard->commands, count, shard->lookup_indexes);
    size_t asked = select_lookups(shard, wanted, !replay, replay);
    look_up_ids(shard, count, asked, foreign, replay);
    count = drop_foreign(shard, count, foreign, replay);
    if (foreign != foreign_static) free(foreign);
    if (count == 0) return;
    bal_shard_remember_ids(shard, count);
    if (!replay) append_to_log(shard, count);
    int64_t start = bal_node_now_ns();
    bal_ledger_apply(shard->ledger, shard->commands, count, shard->recalls, shard->outcomes, shard->changes);
    bal_metrics_observe_ns(&shard->node->metrics.apply_duration, (uint64_t)(bal_node_now_ns() - start));
    bal_metrics_observe_count(&shard->node->metrics.batch_size, count);
    atomic_store(&shard->balance_count, bal_ledger_balance_count(shard->ledger));
    if (replay) return; /* recovery hands its batches to the persister itself */
    uint64_t last_lsn = shard->lsns[count - 1];
    atomic_store(&shard->acked_lsn, last_lsn);
    count_results(shard, count);
    for (size_t i = 0; i < count; i++) {
        const bal_outcome *o = &shard->outcomes[i];
        bal_node_reply(shard->node, &shard->replies[i], &shard->commands[i], o, &shard->changes[o->first_change]);
    }
    bal_persister_submit(shard->node, shard, count, shard->outcomes, shard->changes, last_lsn);
    shard->records_since_snapshot += count;
}

static void answer_read(bal_shard *shard, const bal_entry *entry) {
    bal_text body;
    bal_text_init(&body, BAL_NODE_RESPONSE_BYTES_MAX);
    if (entry->kind == BAL_ENTRY_READ_BALANCE) {
        bal_amount available, frozen;
        bal_ledger_balance(shard->ledger, entry->account_id, entry->currency, &available, &frozen);
        bal_render_balance(&body, entry->account_id, entry->currency, available, frozen);
    } else {
        bal_balance balances[256];
        size_t total = 0;
        size_t n = bal_ledger_account_balances(shard->ledger, entry->account_id, balances, 256, &total);
        bal_render_account_balances(&body, entry->account_id, balances, n);
    }
    bal_node_reply_text(shard->node, &entry->reply, 200, &body);
    bal_text_free(&body);
}

static void park(bal_shard *shard, const bal_cross *cross) {
    uint64_t ticket = cross->ticket; /* the coordinator frees cross after releasing us */
    pthread_mutex_lock(&shard->park_mutex);
    shard->parked_ticket = ticket;
    pthread_cond_broadcast(&shard->park_cond);
    while (shard->released_ticket != ticket) pthread_cond_wait(&shard->park_cond, &shard->park_mutex);
    pthread_mutex_unlock(&shard->park_mutex);
}

/* Runs the queued entries in order: runs of commands as batches, the rest one by one. */
static void process(bal_shard *shard, size_t n) {
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) {
        bal_entry *entry = &shard->entries[i];
        if (entry->kind == BAL_ENTRY_COMMAND) {
            memcpy(&shard->commands[pending], entry->command, sizeof(bal_command));
            shard->replies[pending] = entry->reply;
            free(entry->command);
            pending++;
            continue;
        }
        bal_shard_flush(shard, pending, false);
        pending = 0;
        if (entry->kind == BAL_ENTRY_PARK) {
            park(shard, entry->cross);
        } else {
            answer_read(shard, entry);
        }
    }
    bal_shard_flush(shard, pending, false);
}

void *bal_shard_main(void *argument) {
    bal_shard *shard = argument;
    bal_thread_name("bal-shard", shard->index);
    size_t batch_max = shard->node->config.batch_max;
    if (batch_max > bal_ledger_batch_max(shard->ledger)) batch_max = bal_ledger_batch_max(shard->ledger);
    for (;;) {
        size_t n = bal_queue_pop(&shard->queue, shard->entries, batch_max, -1);
        if (n == 0) break; /* closed and drained */
        process(shard, n);
        uint64_t every = shard->node->config.snapshot_every;
        if (every > 0 && shard->records_since_snapshot >= every) bal_shard_snapshot(shard);
    }
    return NULL;
}

/* A snapshot covers everything up to the last log record. The journal must hold that far
 * (and be checkpointed) first: log segments before a snapshot are removed, and the
 * journal rows of those records could not be made again. */
bool bal_shard_snapshot(bal_shard *shard) {
    bal_node *node = shard->node;
    uint64_t lsn = bal_wal_next_lsn(shard->wal) - 1;
    shard->records_since_snapshot = 0;
    if (lsn == 0 || lsn == shard->snapshot_lsn) return true;
    if (!bal_node_wait_persisted(node, shard->index, 60000) || !bal_persister_checkpoint(node)) {
        bal_log(BAL_LOG_WARN, "snapshot_skipped", "\"shard\":%u,\"reason\":\"journal behind\"", shard->index);
        return false;
    }
    uint64_t size = bal_ledger_snapshot_size(shard->ledger), length = 0;
    uint8_t *buffer = malloc(size);
    if (buffer == NULL) return false;
    bal_ledger_snapshot_encode(shard->ledger, buffer, size, &length);
    char error[512];
    int64_t start = bal_node_now_ns();
    bal_snapfile_status status = bal_snapfile_write(shard->snapshot_directory, lsn, buffer, length, 2, error, sizeof(error));
    free(buffer);
    if (status != BAL_SNAPFILE_OK) {
        bal_log(BAL_LOG_ERROR, "snapshot_failed", "\"shard\":%u,\"detail\":\"%.300s\"", shard->index, error);
        return false;
    }
    shard->previous_snapshot_lsn = shard->snapshot_lsn;
    shard->snapshot_lsn = lsn;
    /* Keep the log from the older of the two kept snapshots on: either can be loaded. */
    uint32_t removed = 0;
    if (shard->previous_snapshot_lsn > 0) bal_wal_remove_before(shard->wal, shard->previous_snapshot_lsn + 1, &removed);
    atomic_fetch_add(&node->metrics.snapshots_written, 1);
    atomic_store(&node->metrics.last_snapshot_unix, (int64_t)time(NULL));
    bal_log(BAL_LOG_INFO, "snapshot_written", "\"shard\":%u,\"lsn\":%llu,\"bytes\":%llu,\"ms\":%.1f,\"segments_removed\":%u",
            shard->index, (unsigned long long)lsn, (unsigned long long)length,
            (double)(bal_node_now_ns() - start) / 1e6, removed);
    return true;
}
