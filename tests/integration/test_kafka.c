/*
 * test_kafka.c -- what the Kafka log adapter relies on, checked through librdkafka against a
 * real broker (scripts/services.sh up starts one).
 *
 *  1. An idempotent producer (enable.idempotence, acks=all) writes MESSAGE_COUNT keyed
 *     messages to a PARTITION_COUNT-partition topic that the admin API creates for this run.
 *     Every delivery report is kept: the partition and offset the broker gave each message.
 *  2. A consumer with a manual assignment (rd_kafka_assign: no consumer group, no
 *     rebalancing, exactly how a shard leader reads its own partition) reads the topic from
 *     the beginning. Every message must come back exactly once, at the partition and offset
 *     of its delivery report, in production order within its partition, with gap-free
 *     offsets: the idempotent producer neither duplicates nor reorders on retries.
 *  3. Replay: the consumer seeks each partition to a stored offset (as recovery does with
 *     the position kept in MySQL) and must read exactly the messages from there on, with the
 *     same contents; a fresh consumer assigned at the stored offsets must read the same.
 *  4. Zombie fencing: a transactional producer commits a transaction; a second producer with
 *     the same transactional.id initialises, and the first one's next transaction fails with
 *     a fatal fencing error. A read_committed consumer sees both producers' committed
 *     messages and nothing of the fenced attempt.
 * The topics are deleted at the end.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "bal_itest.h"

#define MESSAGE_COUNT 4000
#define PARTITION_COUNT 4
#define KEY_COUNT 64
#define TRANSACTION_MESSAGE_COUNT 10
#define SECOND_PRODUCER_MESSAGE_COUNT 5
#define TIMEOUT_MS 60000
#define TEXT_MAX 128

typedef struct delivery {
    int32_t partition;
    int64_t offset;
    bool delivered;
} delivery;

static delivery deliveries[MESSAGE_COUNT];
static size_t delivery_error_count;
static const char *bootstrap;
static char topic[TEXT_MAX];
static char transaction_topic[TEXT_MAX];
static rd_kafka_t *admin_client;

/* The message with index i carries key "account-<i % KEY_COUNT>" and a value that names both,
 * so a consumer can tell which message it got without trusting the offsets. */
static void message_text(size_t index, char *key, char *value) {
    snprintf(key, TEXT_MAX, "account-%zu", index % KEY_COUNT);
    snprintf(value, TEXT_MAX, "message %zu of %d for account-%zu", index, MESSAGE_COUNT,
             index % KEY_COUNT);
}

static rd_kafka_conf_t *new_conf(void) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) ==
                RD_KAFKA_CONF_OK,
            "%s", errstr);
    return conf;
}

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char errstr[512];
    REQUIRE(rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) == RD_KAFKA_CONF_OK,
            "%s=%s: %s", name, value, errstr);
}

static rd_kafka_t *new_client(rd_kafka_type_t type, rd_kafka_conf_t *conf) {
    char errstr[512];
    rd_kafka_t *client = rd_kafka_new(type, conf, errstr, sizeof errstr);
    REQUIRE(client != NULL, "rd_kafka_new: %s", errstr);
    return client;
}

/* Fails with a message that names the broker when nothing answers there. */
static void require_broker(rd_kafka_t *client) {
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(client, 0, NULL, &metadata, 15000);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR,
            "Kafka: no broker answers at %s (%s); start it with scripts/services.sh up",
            bootstrap, rd_kafka_err2str(err));
    printf("kafka: broker %s answers (%d broker(s))\n", bootstrap, metadata->broker_cnt);
    rd_kafka_metadata_destroy(metadata);
}

static void create_topics(void) {
    char errstr[512];
    rd_kafka_NewTopic_t *new_topics[2];
    new_topics[0] = rd_kafka_NewTopic_new(topic, PARTITION_COUNT, 1, errstr, sizeof errstr);
    REQUIRE(new_topics[0] != NULL, "%s", errstr);
    new_topics[1] = rd_kafka_NewTopic_new(transaction_topic, 1, 1, errstr, sizeof errstr);
    REQUIRE(new_topics[1] != NULL, "%s", errstr);
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(admin_client, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    REQUIRE(rd_kafka_AdminOptions_set_operation_timeout(options, TIMEOUT_MS, errstr,
                                                        sizeof errstr) == 0,
            "%s", errstr);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(admin_client);
    rd_kafka_CreateTopics(admin_client, new_topics, 2, options, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, TIMEOUT_MS + 10000);
    REQUIRE(event != NULL, "Kafka: CreateTopics got no answer from %s", bootstrap);
    REQUIRE(rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics: %s",
            rd_kafka_event_error_string(event));
    const rd_kafka_CreateTopics_result_t *result = rd_kafka_event_CreateTopics_result(event);
    REQUIRE(result != NULL, "unexpected event %s", rd_kafka_event_name(event));
    size_t result_count = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(result, &result_count);
    REQUIRE(result_count == 2, "CreateTopics returned %zu results", result_count);
    for (size_t i = 0; i < result_count; i++) {
        REQUIRE(rd_kafka_topic_result_error(results[i]) == RD_KAFKA_RESP_ERR_NO_ERROR,
                "creating %s: %s", rd_kafka_topic_result_name(results[i]),
                rd_kafka_topic_result_error_string(results[i]));
    }
    rd_kafka_event_destroy(event);
    rd_kafka_queue_destroy(queue);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_NewTopic_destroy_array(new_topics, 2);
}

static void delete_topics(void) {
    rd_kafka_DeleteTopic_t *doomed[2] = {rd_kafka_DeleteTopic_new(topic),
                                         rd_kafka_DeleteTopic_new(transaction_topic)};
    rd_kafka_queue_t *queue = rd_kafka_queue_new(admin_client);
    rd_kafka_DeleteTopics(admin_client, doomed, 2, NULL, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, TIMEOUT_MS);
    CHECK(event != NULL && rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR_NO_ERROR);
    if (event != NULL) {
        rd_kafka_event_destroy(event);
    }
    rd_kafka_queue_destroy(queue);
    rd_kafka_DeleteTopic_destroy_array(doomed, 2);
}

/* A topic is usable when the metadata shows a leader for every partition. */
static void wait_for_leaders(const char *name, int partition_count) {
    rd_kafka_topic_t *handle = rd_kafka_topic_new(admin_client, name, NULL);
    REQUIRE(handle != NULL, "rd_kafka_topic_new(%s)", name);
    uint64_t deadline_ns = bal_itest_now_ns() + (uint64_t)TIMEOUT_MS * 1000000u;
    bool ready = false;
    while (!ready && bal_itest_now_ns() < deadline_ns) {
        const struct rd_kafka_metadata *metadata = NULL;
        if (rd_kafka_metadata(admin_client, 0, handle, &metadata, 5000) == 0) {
            const struct rd_kafka_metadata_topic *t = &metadata->topics[0];
            ready = t->err == 0 && t->partition_cnt == partition_count;
            for (int p = 0; ready && p < t->partition_cnt; p++) {
                ready = t->partitions[p].err == 0 && t->partitions[p].leader >= 0;
            }
            rd_kafka_metadata_destroy(metadata);
        }
    }
    rd_kafka_topic_destroy(handle);
    REQUIRE(ready, "topic %s has no leader for every partition after %d ms", name, TIMEOUT_MS);
}

static void on_delivery(rd_kafka_t *client, const rd_kafka_message_t *message, void *opaque) {
    size_t index = (size_t)(uintptr_t)message->_private;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR || index >= MESSAGE_COUNT) {
        fprintf(stderr, "delivery of message %zu failed: %s\n", index,
                rd_kafka_err2str(message->err));
        delivery_error_count++;
        return;
    }
    /* A message is reported once; a second report would mean a duplicate. */
    CHECK(!deliveries[index].delivered);
    deliveries[index] =
        (delivery){.partition = message->partition, .offset = message->offset, .delivered = true};
}

static void produce_keyed_messages(void) {
    rd_kafka_conf_t *conf = new_conf();
    conf_set(conf, "enable.idempotence", "true");
    conf_set(conf, "acks", "all");
    conf_set(conf, "linger.ms", "5");
    /* murmur2 is the Java client's default: every tool then routes a key to one partition. */
    conf_set(conf, "partitioner", "murmur2_random");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *producer = new_client(RD_KAFKA_PRODUCER, conf);
    uint64_t started_ns = bal_itest_now_ns();
    for (size_t i = 0; i < MESSAGE_COUNT; i++) {
        char key[TEXT_MAX], value[TEXT_MAX];
        message_text(i, key, value);
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)i), RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s", rd_kafka_err2str(err));
                break;
            }
            rd_kafka_poll(producer, 100);
        }
        rd_kafka_poll(producer, 0);
    }
    rd_kafka_resp_err_t err = rd_kafka_flush(producer, TIMEOUT_MS);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR, "flush: %s", rd_kafka_err2str(err));
    double elapsed_ms = (double)(bal_itest_now_ns() - started_ns) / 1e6;
    rd_kafka_destroy(producer);
    REQUIRE(delivery_error_count == 0, "%zu deliveries failed", delivery_error_count);
    printf("kafka: %d keyed messages produced (idempotent, acks=all) in %.0f ms\n",
           MESSAGE_COUNT, elapsed_ms);
}

/* After the producer: every message delivered, the same key always in the same partition,
 * and within a partition the offsets follow production order without a gap. */
static void check_deliveries(int64_t first_offset[PARTITION_COUNT],
                             int64_t end_offset[PARTITION_COUNT]) {
    int32_t key_partition[KEY_COUNT];
    for (size_t k = 0; k < KEY_COUNT; k++) {
        key_partition[k] = -1;
    }
    for (int p = 0; p < PARTITION_COUNT; p++) {
        first_offset[p] = -1;
        end_offset[p] = 0;
    }
    size_t used_partitions = 0;
    for (size_t i = 0; i < MESSAGE_COUNT; i++) {
        const delivery *d = &deliveries[i];
        REQUIRE(d->delivered, "message %zu has no delivery report", i);
        REQUIRE(d->partition >= 0 && d->partition < PARTITION_COUNT, "partition %d",
                (int)d->partition);
        /* A new topic starts at offset 0, so every offset indexes the tables below. */
        REQUIRE(d->offset >= 0 && d->offset < MESSAGE_COUNT, "offset %" PRId64, d->offset);
        int32_t *expected = &key_partition[i % KEY_COUNT];
        CHECK(*expected < 0 || *expected == d->partition);
        *expected = d->partition;
        int p = d->partition;
        if (first_offset[p] < 0) {
            first_offset[p] = d->offset;
            used_partitions++;
        } else {
            CHECK(d->offset == end_offset[p]);
        }
        end_offset[p] = d->offset + 1;
    }
    /* 64 keys over 4 partitions: all of them get some, or the keys were not spread. */
    CHECK(used_partitions == PARTITION_COUNT);
    for (int p = 0; p < PARTITION_COUNT; p++) {
        CHECK(first_offset[p] == 0);
    }
}

static rd_kafka_t *new_consumer(const char *isolation_level) {
    rd_kafka_conf_t *conf = new_conf();
    /* librdkafka 2.0 refuses rd_kafka_assign without a group.id ("Unknown group"), but the
     * consumer never subscribes, so it never joins the group: no rebalancing, no commits. */
    conf_set(conf, "group.id", topic);
    conf_set(conf, "enable.auto.commit", "false");
    conf_set(conf, "enable.auto.offset.store", "false");
    conf_set(conf, "enable.partition.eof", "true");
    conf_set(conf, "auto.offset.reset", "error");
    conf_set(conf, "isolation.level", isolation_level);
    return new_client(RD_KAFKA_CONSUMER, conf);
}

static void assign_at(rd_kafka_t *consumer, const char *name, int partition_count,
                      const int64_t *offsets) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partition_count);
    for (int p = 0; p < partition_count; p++) {
        rd_kafka_topic_partition_list_add(list, name, p)->offset = offsets[p];
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(consumer, list);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR, "assign: %s", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
}

/* Reads the main topic until every partition p has given the offsets [from[p], end[p]) and
 * reached its end; checks that each message is the one its delivery report placed there,
 * that none comes twice and that each partition comes in order. Returns the count read. */
static size_t consume_range(rd_kafka_t *consumer, const int64_t from[PARTITION_COUNT],
                            const int64_t end[PARTITION_COUNT]) {
    static bool seen[MESSAGE_COUNT];
    memset(seen, 0, sizeof seen);
    int64_t next_offset[PARTITION_COUNT];
    size_t expected = 0, received = 0;
    for (int p = 0; p < PARTITION_COUNT; p++) {
        next_offset[p] = from[p];
        expected += (size_t)(end[p] - from[p]);
    }
    /* (partition, offset) -> message index, from the delivery reports. */
    static size_t index_at[PARTITION_COUNT][MESSAGE_COUNT];
    for (size_t i = 0; i < MESSAGE_COUNT; i++) {
        index_at[deliveries[i].partition][deliveries[i].offset] = i;
    }
    uint64_t deadline_ns = bal_itest_now_ns() + (uint64_t)TIMEOUT_MS * 1000000u;
    bool done = false;
    while (!done) {
        REQUIRE(bal_itest_now_ns() < deadline_ns, "only %zu of %zu messages within %d ms",
                received, expected, TIMEOUT_MS);
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 500);
        if (message == NULL) {
            continue;
        }
        if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int p = message->partition;
            REQUIRE(p >= 0 && p < PARTITION_COUNT, "partition %d", p);
            REQUIRE(message->offset == next_offset[p],
                    "partition %d: offset %" PRId64 " where %" PRId64 " was next", p,
                    message->offset, next_offset[p]);
            REQUIRE(message->offset < end[p], "partition %d: offset %" PRId64 " past the end", p,
                    message->offset);
            size_t index = index_at[p][message->offset];
            REQUIRE(!seen[index], "message %zu read twice", index);
            seen[index] = true;
            char key[TEXT_MAX], value[TEXT_MAX];
            message_text(index, key, value);
            CHECK(message->key_len == strlen(key) && memcmp(message->key, key, strlen(key)) == 0);
            CHECK(message->len == strlen(value) &&
                  memcmp(message->payload, value, strlen(value)) == 0);
            next_offset[p]++;
            received++;
        } else {
            REQUIRE(message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF, "consume: %s",
                    rd_kafka_message_errstr(message));
        }
        rd_kafka_message_destroy(message);
        done = received == expected;
        for (int p = 0; done && p < PARTITION_COUNT; p++) {
            done = next_offset[p] == end[p];
        }
    }
    /* Nothing more may come: a duplicate after the last expected message is a failure too. */
    uint64_t quiet_until_ns = bal_itest_now_ns() + 1000000000u;
    while (bal_itest_now_ns() < quiet_until_ns) {
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 200);
        if (message != NULL) {
            CHECK(message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF);
            rd_kafka_message_destroy(message);
        }
    }
    return received;
}

static void consume_and_replay(const int64_t first[PARTITION_COUNT],
                               const int64_t end[PARTITION_COUNT]) {
    rd_kafka_t *consumer = new_consumer("read_uncommitted");
    int64_t beginning[PARTITION_COUNT];
    for (int p = 0; p < PARTITION_COUNT; p++) {
        beginning[p] = RD_KAFKA_OFFSET_BEGINNING;
    }
    assign_at(consumer, topic, PARTITION_COUNT, beginning);
    uint64_t started_ns = bal_itest_now_ns();
    size_t read = consume_range(consumer, first, end);
    CHECK(read == MESSAGE_COUNT);
    printf("kafka: read all %zu messages back exactly once, in order per partition (%.0f ms)\n",
           read, (double)(bal_itest_now_ns() - started_ns) / 1e6);

    /* The positions a recovering leader would have stored: the middle of each partition. */
    int64_t stored[PARTITION_COUNT];
    size_t expected_replay = 0;
    for (int p = 0; p < PARTITION_COUNT; p++) {
        stored[p] = first[p] + (end[p] - first[p]) / 2;
        expected_replay += (size_t)(end[p] - stored[p]);
    }
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(PARTITION_COUNT);
    for (int p = 0; p < PARTITION_COUNT; p++) {
        rd_kafka_topic_partition_list_add(seek, topic, p)->offset = stored[p];
    }
    rd_kafka_error_t *error = rd_kafka_seek_partitions(consumer, seek, TIMEOUT_MS);
    REQUIRE(error == NULL, "seek: %s", rd_kafka_error_string(error));
    for (int p = 0; p < seek->cnt; p++) {
        REQUIRE(seek->elems[p].err == RD_KAFKA_RESP_ERR_NO_ERROR, "seek partition %d: %s", p,
                rd_kafka_err2str(seek->elems[p].err));
    }
    rd_kafka_topic_partition_list_destroy(seek);
    size_t replayed = consume_range(consumer, stored, end);
    CHECK(replayed == expected_replay);
    printf("kafka: seek to stored offsets replayed exactly the %zu messages after them\n",
           replayed);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);

    /* Recovery in a new process starts with an assignment at the stored offsets. */
    consumer = new_consumer("read_uncommitted");
    assign_at(consumer, topic, PARTITION_COUNT, stored);
    replayed = consume_range(consumer, stored, end);
    CHECK(replayed == expected_replay);
    printf("kafka: a fresh consumer assigned at the stored offsets read the same %zu\n",
           replayed);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
}

static rd_kafka_t *new_transactional_producer(const char *transactional_id) {
    rd_kafka_conf_t *conf = new_conf();
    conf_set(conf, "transactional.id", transactional_id);
    conf_set(conf, "acks", "all");
    rd_kafka_t *producer = new_client(RD_KAFKA_PRODUCER, conf);
    rd_kafka_error_t *error = rd_kafka_init_transactions(producer, TIMEOUT_MS);
    REQUIRE(error == NULL, "init_transactions(%s): %s", transactional_id,
            rd_kafka_error_string(error));
    return producer;
}

static rd_kafka_error_t *produce_transaction(rd_kafka_t *producer, const char *tag, int count) {
    rd_kafka_error_t *error = rd_kafka_begin_transaction(producer);
    if (error != NULL) {
        return error;
    }
    for (int i = 0; i < count; i++) {
        char value[TEXT_MAX];
        snprintf(value, sizeof value, "%s-%d", tag, i);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(transaction_topic), RD_KAFKA_V_PARTITION(0),
            RD_KAFKA_V_VALUE(value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            return rd_kafka_error_new(err, "produce: %s", rd_kafka_err2str(err));
        }
    }
    return rd_kafka_commit_transaction(producer, TIMEOUT_MS);
}

static bool is_fencing_error(rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

static void check_fencing(void) {
    char transactional_id[TEXT_MAX];
    snprintf(transactional_id, sizeof transactional_id, "%s-shard-0", topic);

    rd_kafka_t *first = new_transactional_producer(transactional_id);
    rd_kafka_error_t *error = produce_transaction(first, "first", TRANSACTION_MESSAGE_COUNT);
    REQUIRE(error == NULL, "first transaction: %s", rd_kafka_error_string(error));
    printf("kafka: transactional producer committed a transaction of %d messages\n",
           TRANSACTION_MESSAGE_COUNT);

    /* A new leader for the same shard: same transactional.id, so its initialisation bumps
     * the producer epoch and the old producer becomes a zombie. */
    rd_kafka_t *second = new_transactional_producer(transactional_id);
    error = produce_transaction(first, "zombie", 1);
    REQUIRE(error != NULL, "the fenced producer committed a transaction");
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    printf("kafka: the first producer's next transaction failed: %s (%s, fatal=%d)\n",
           rd_kafka_error_string(error), rd_kafka_err2name(code), rd_kafka_error_is_fatal(error));
    char fatal_text[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(first, fatal_text, sizeof fatal_text);
    CHECK(is_fencing_error(code) || is_fencing_error(fatal));
    CHECK(rd_kafka_error_is_fatal(error) || fatal != RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_error_destroy(error);
    rd_kafka_destroy(first);

    error = produce_transaction(second, "second", SECOND_PRODUCER_MESSAGE_COUNT);
    REQUIRE(error == NULL, "second producer: %s", rd_kafka_error_string(error));
    rd_kafka_destroy(second);

    /* read_committed shows exactly the committed transactions, in commit order. */
    rd_kafka_t *consumer = new_consumer("read_committed");
    int64_t beginning = RD_KAFKA_OFFSET_BEGINNING;
    assign_at(consumer, transaction_topic, 1, &beginning);
    int committed_count = TRANSACTION_MESSAGE_COUNT + SECOND_PRODUCER_MESSAGE_COUNT;
    int received = 0;
    bool at_end = false;
    uint64_t deadline_ns = bal_itest_now_ns() + (uint64_t)TIMEOUT_MS * 1000000u;
    while (!(at_end && received >= committed_count)) {
        REQUIRE(bal_itest_now_ns() < deadline_ns, "read_committed: %d of %d messages", received,
                committed_count);
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 500);
        if (message == NULL) {
            continue;
        }
        if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            at_end = true;
        } else {
            REQUIRE(message->err == RD_KAFKA_RESP_ERR_NO_ERROR, "read_committed: %s",
                    rd_kafka_message_errstr(message));
            char expected[TEXT_MAX];
            if (received < TRANSACTION_MESSAGE_COUNT) {
                snprintf(expected, sizeof expected, "first-%d", received);
            } else {
                snprintf(expected, sizeof expected, "second-%d",
                         received - TRANSACTION_MESSAGE_COUNT);
            }
            REQUIRE(received < committed_count, "an extra message after the committed ones");
            CHECK(message->len == strlen(expected) &&
                  memcmp(message->payload, expected, message->len) == 0);
            received++;
            at_end = false;
        }
        rd_kafka_message_destroy(message);
    }
    CHECK(received == committed_count);
    printf("kafka: read_committed saw both producers' %d committed messages and nothing of "
           "the fenced one\n",
           received);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
}

static void cleanup(void) {
    if (admin_client != NULL) {
        delete_topics();
    }
}

int main(void) {
    bootstrap = bal_itest_env("BALANCED_KAFKA_BOOTSTRAP", "127.0.0.1:9092");
    char suffix[64];
    bal_itest_run_suffix(suffix, sizeof suffix);
    snprintf(topic, sizeof topic, "balanced-it-%s", suffix);
    snprintf(transaction_topic, sizeof transaction_topic, "balanced-it-%s-tx", suffix);
    printf("kafka: librdkafka %s, broker %s, topic %s\n", rd_kafka_version_str(), bootstrap,
           topic);

    admin_client = new_client(RD_KAFKA_PRODUCER, new_conf());
    require_broker(admin_client);
    create_topics();
    bal_itest_set_cleanup(cleanup);
    wait_for_leaders(topic, PARTITION_COUNT);
    wait_for_leaders(transaction_topic, 1);

    produce_keyed_messages();
    int64_t first[PARTITION_COUNT], end[PARTITION_COUNT];
    check_deliveries(first, end);
    consume_and_replay(first, end);
    check_fencing();

    bal_itest_set_cleanup(NULL);
    delete_topics();
    rd_kafka_destroy(admin_client);
    admin_client = NULL;
    CHECK(rd_kafka_wait_destroyed(10000) == 0);
    return bal_test_finish("integration/kafka");
}
