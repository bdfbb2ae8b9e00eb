/*
 * bal_coordinator.c -- commands that span shards: all or none, exactly once.
 *
 * API threads put a PARK entry into the queue of every shard a command touches, then the
 * command into the coordinator's queue, all under one mutex, so every queue sees such
 * commands in the same order (no two commands can wait for each other). A shard that
 * reaches a PARK entry finishes the batch before it and waits. When every involved shard
 * waits at this command, the coordinator alone touches their ledgers and logs:
 *   1. if any involved shard remembers the id (or the journal does), answer from there;
 *   2. else check each shard's legs (bal_ledger_check) and decide: the first failing leg
 *      in leg order, else capacity, else ok;
 *   3. append the decided command to each shard's log (leg_mask = that shard's legs,
 *      decided = the result) and sync each log;
 *   4. apply it to each ledger, release the shards, answer.
 * Each shard's log is then self-contained: replaying a decided command needs no other
 * shard. A crash between the syncs of step 3 leaves the command at the tail of some logs
 * only; start-up completes it in the others (bal_node.c) before replay, since no involved
 * shard has written anything after it.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bal_log.h"
#include "bal_node_internal.h"

static void wait_parked(bal_shard *shard, bal_cross *cross) {
    pthread_mutex_lock(&shard->park_mutex);
    while (shard->parked_ticket != cross->ticket) pthread_cond_wait(&shard->park_cond, &shard->park_mutex);
    pthread_mutex_unlock(&shard->park_mutex);
}

static void release(bal_shard *shard, bal_cross *cross) {
    pthread_mutex_lock(&shard->park_mutex);
    shard->released_ticket = cross->ticket;
    pthread_cond_broadcast(&shard->park_cond);
    pthread_mutex_unlock(&shard->park_mutex);
}

/* Step 1: has any involved shard (or the journal) seen this id? Fills the answer. */
static bool answer_known(bal_node *node, bal_cross *cross, bal_outcome *outcome, bal_change *changes) {
    bool known = false, conflict = false;
    uint64_t sequence = 0;
    uint8_t result = BAL_RESULT_OK;
    unsigned total = bal_command_leg_total(cross->command);
    for (uint32_t k = 0; k < cross->shard_count; k++) {
        bal_shard *shard = &node->shards[cross->shards[k]];
        memcpy(&shard->commands[0], cross->command, sizeof(bal_command));
        bal_ledger_recall recall = {0};
        uint64_t foreign = 0;
        if (bal_shard_recall_one(shard, k == 0, &recall, &foreign) && foreign != 0) {
            *outcome = (bal_outcome){.sequence = foreign - 1, .result = BAL_RESULT_CONFLICT};
            return true;
        }
        bal_outcome mine;
        bal_change own[BAL_COMMAND_BALANCES_MAX];
        if (!bal_ledger_peek(shard->ledger, cross->command, &recall, &mine, own)) continue;
        if (!known || k == 0) sequence = mine.sequence;
        known = true;
        if (mine.result == BAL_RESULT_CONFLICT || !mine.duplicate) {
            conflict = true;
            sequence = mine.sequence;
            continue;
        }
        result = mine.result;
        /* Place this shard's remembered balances at their legs. */
        unsigned j = 0;
        for (unsigned leg = 0; leg < total && j < mine.change_count; leg++) {
            if ((cross->masks[k] >> leg) & 1u) changes[leg] = own[j++];
        }
    }
    if (!known) return false;
    *outcome = conflict ? (bal_outcome){.sequence = sequence, .result = BAL_RESULT_CONFLICT}
                        : (bal_outcome){.sequence = sequence, .result = result, .duplicate = true, .change_count = (uint8_t)total};
    return true;
}

/* Step 2: the first failing leg in leg order, then capacity. */
static bal_result decide(bal_node *node, const bal_cross *cross) {
    uint8_t leg_results[BAL_EVENT_LEGS_MAX];
    memset(leg_results, 0, sizeof(leg_results));
    bool fits = true;
    for (uint32_t k = 0; k < cross->shard_count; k++) {
        bal_shard *shard = &node->shards[cross->shards[k]];
        uint8_t results[BAL_EVENT_LEGS_MAX];
        uint32_t creates = 0;
        fits &= bal_ledger_check(shard->ledger, cross->command, cross->masks[k], results, &creates);
        for (unsigned leg = 0; leg < BAL_EVENT_LEGS_MAX; leg++) {
            if ((cross->masks[k] >> leg) & 1u) leg_results[leg] = results[leg];
        }
    }
    unsigned total = bal_command_leg_total(cross->command);
    for (unsigned leg = 0; leg < total; leg++) {
        if (leg_results[leg] != BAL_RESULT_OK) return (bal_result)leg_results[leg];
    }
    return fits ? BAL_RESULT_OK : BAL_RESULT_CAPACITY_EXCEEDED;
}

static void *sync_main(void *argument) {
    bal_thread_name("bal-cross-sync", -1);
    bal_shard_sync(argument);
    return NULL;
}

/* The involved logs are on the same disk but are separate files: their fdatasyncs overlap
 * when issued together, so one command spanning shards costs about one sync, not one per
 * shard. Helper threads only for the extra shards; the coordinator syncs the first. */
static void sync_all(bal_node *node, const bal_cross *cross) {
    pthread_t helpers[BAL_EVENT_LEGS_MAX];
    bool started[BAL_EVENT_LEGS_MAX] = {false};
    for (uint32_t k = 1; k < cross->shard_count; k++) {
        started[k] = pthread_create(&helpers[k], NULL, sync_main, &node->shards[cross->shards[k]]) == 0;
        if (!started[k]) bal_shard_sync(&node->shards[cross->shards[k]]);
    }
    bal_shard_sync(&node->shards[cross->shards[0]]);
    for (uint32_t k = 1; k < cross->shard_count; k++) {
        if (started[k]) pthread_join(helpers[k], NULL);
    }
}

/* Steps 3 and 4. */
static void execute(bal_node *node, bal_cross *cross, bal_result result, bal_outcome *outcome, bal_change *changes) {
    unsigned total = bal_command_leg_total(cross->command);
    for (uint32_t k = 0; k < cross->shard_count; k++) {
        bal_shard *shard = &node->shards[cross->shards[k]];
        memcpy(&shard->commands[0], cross->command, sizeof(bal_command));
        shard->commands[0].leg_mask = cross->masks[k];
        shard->commands[0].decided = (uint8_t)(1 + result);
        bal_shard_log_one(shard);
    }
    sync_all(node, cross);
    for (uint32_t k = 0; k < cross->shard_count; k++) {
        bal_shard *shard = &node->shards[cross->shards[k]];
        bal_ledger_apply(shard->ledger, shard->commands, 1, NULL, shard->outcomes, shard->changes);
        const bal_outcome *o = &shard->outcomes[0];
        unsigned j = 0;
        for (unsigned leg = 0; leg < total && j < o->change_count; leg++) {
            if ((cross->masks[k] >> leg) & 1u) changes[leg] = shard->changes[j++];
        }
        if (k == 0) {
            *outcome = *o; /* shard 0 of the list owns leg 0: its sequence answers */
            bal_shard_remember_ids(shard, 1); /* it holds the command's id claim */
        }
        atomic_store(&shard->acked_lsn, shard->lsns[0]);
        atomic_store(&shard->balance_count, bal_ledger_balance_count(shard->ledger));
        bal_persister_submit(node, shard, 1, shard->outcomes, shard->changes, shard->lsns[0]);
        shard->records_since_snapshot++;
    }
    outcome->first_change = 0;
    outcome->change_count = (uint8_t)total;
}

static void run(bal_node *node, bal_cross *cross) {
    for (uint32_t k = 0; k < cross->shard_count; k++) wait_parked(&node->shards[cross->shards[k]], cross);
    bal_outcome outcome;
    bal_change changes[BAL_COMMAND_BALANCES_MAX];
    if (answer_known(node, cross, &outcome, changes)) {
        bal_shard_release_claims(&node->shards[cross->shards[0]], 1); /* nothing new was logged */
    } else {
        bal_result result = decide(node, cross);
        execute(node, cross, result, &outcome, changes);
    }
    atomic_fetch_add(&node->metrics.cross_shard_commands, 1);
    atomic_fetch_add(&node->metrics.results[outcome.result], 1);
    if (outcome.duplicate) atomic_fetch_add(&node->metrics.duplicates, 1);
    for (uint32_t k = 0; k < cross->shard_count; k++) release(&node->shards[cross->shards[k]], cross);
    bal_node_reply(node, &cross->reply, cross->command, &outcome, changes);
}

void *bal_coordinator_main(void *argument) {
    bal_node *node = argument;
    bal_thread_name("bal-coord", -1);
    for (;;) {
        bal_cross *cross = NULL;
        if (bal_queue_pop(&node->coordinator_queue, &cross, 1, -1) == 0) break;
        run(node, cross);
        free(cross->command);
        free(cross);
    }
    return NULL;
}
