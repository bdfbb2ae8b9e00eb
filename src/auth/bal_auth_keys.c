/*
 * bal_auth_keys.c -- the keys file parser and the immutable key set (see bal_auth_keys.h).
 *
 * One key per line, seven fields separated by spaces or tabs:
 *
 *   key_id secret permissions requests_per_second requests_burst operations_per_second operations_burst
 *
 * Blank lines and lines whose first non-blank character is '#' are ignored. There are no
 * comments after a key: a secret may contain '#'. A CR before the LF is ignored.
 */
#include "bal_auth_keys.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bal_hash.h"

#define BAL_AUTH_KEY_FIELDS 7
/* Decimal digits of a rate or burst: enough for BAL_AUTH_RATE_MAX and BAL_AUTH_BURST_MAX,
   few enough that the value cannot overflow 64 bits while it is read. */
#define BAL_AUTH_NUMBER_DIGITS_MAX 10
#define BAL_AUTH_KEYS_HASH_SEED 0x6b6579736574ull /* any constant: the file is trusted */

_Static_assert(BAL_AUTH_RATE_MAX <= 9999999999ull && BAL_AUTH_BURST_MAX <= 9999999999ull,
               "rates and bursts fit the digits read");
_Static_assert(BAL_AUTH_KEYS_MAX <= (1u << 30), "the table size fits 32 bits");
_Static_assert(BAL_AUTH_KEY_ID_LENGTH_MAX < 256 && BAL_AUTH_SECRET_LENGTH_MAX < 65536,
               "lengths fit their fields");

typedef struct bal_auth_field {
    const char *text;
    size_t length;
} bal_auth_field;

typedef struct bal_auth_parser {
    const char *source_name;
    char *errstr;
    size_t errstr_size;
    uint32_t line;
} bal_auth_parser;

/* Through vsnprintf: messages are cut to the caller's buffer, which is expected. */
void bal_auth_keys_message(char *errstr, size_t errstr_size, const char *format, ...) {
    if (errstr == NULL || errstr_size == 0) return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(errstr, errstr_size, format, arguments);
    va_end(arguments);
}

__attribute__((format(printf, 2, 3))) static bal_auth_status bal_auth_parse_error(const bal_auth_parser *parser,
                                                                                  const char *format, ...) {
    char detail[256];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(detail, sizeof detail, format, arguments);
    va_end(arguments);
    bal_auth_keys_message(parser->errstr, parser->errstr_size, "%s: line %u: %s", parser->source_name,
                          (unsigned)parser->line, detail);
    return BAL_AUTH_INVALID_FILE;
}

static bool bal_auth_key_id_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

bool bal_auth_key_id_valid(const char *id, size_t id_length) {
    if (id == NULL || id_length == 0 || id_length > BAL_AUTH_KEY_ID_LENGTH_MAX) return false;
    for (size_t i = 0; i < id_length; i++) {
        if (!bal_auth_key_id_char(id[i])) return false;
    }
    return true;
}

static uint64_t bal_auth_keys_hash(const char *id, size_t id_length) {
    return bal_hash_bytes(id, id_length, BAL_AUTH_KEYS_HASH_SEED);
}

const bal_auth_key *bal_auth_keyset_find(const bal_auth_keyset *set, const char *id, size_t id_length) {
    assert(set != NULL);
    if (set->count == 0 || id == NULL || id_length == 0 || id_length > BAL_AUTH_KEY_ID_LENGTH_MAX) return NULL;
    /* The table is at most half full, so the probe ends at an empty slot. */
    for (uint32_t slot = (uint32_t)bal_auth_keys_hash(id, id_length) & set->table_mask;;
         slot = (slot + 1) & set->table_mask) {
        uint32_t entry = set->table[slot];
        if (entry == 0) return NULL;
        const bal_auth_key *key = &set->keys[entry - 1];
        if (key->id_length == id_length && memcmp(key->id, id, id_length) == 0) return key;
    }
}

static void bal_auth_keyset_insert(bal_auth_keyset *set, uint32_t index) {
    const bal_auth_key *key = &set->keys[index];
    uint32_t slot = (uint32_t)bal_auth_keys_hash(key->id, key->id_length) & set->table_mask;
    while (set->table[slot] != 0) slot = (slot + 1) & set->table_mask;
    set->table[slot] = index + 1;
}

/* Splits a line at runs of blanks into at most `max` fields; returns how many there are
   (max + 1 when there are more). */
static size_t bal_auth_split(const char *line, size_t length, bal_auth_field *fields, size_t max) {
    size_t count = 0, i = 0;
    while (i < length) {
        while (i < length && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == length) break;
        size_t start = i;
        while (i < length && line[i] != ' ' && line[i] != '\t') i++;
        if (count == max) return max + 1;
        fields[count].text = line + start;
        fields[count].length = i - start;
        count++;
    }
    return count;
}

static bool bal_auth_parse_number(bal_auth_field field, uint32_t max, uint32_t *out) {
    if (field.length == 0 || field.length > BAL_AUTH_NUMBER_DIGITS_MAX) return false;
    uint64_t value = 0;
    for (size_t i = 0; i < field.length; i++) {
        if (field.text[i] < '0' || field.text[i] > '9') return false;
        value = value * 10 + (uint64_t)(field.text[i] - '0');
    }
    if (value < 1 || value > max) return false;
    *out = (uint32_t)value;
    return true;
}

/* "read", "write", "admin" separated by commas, each at most once. */
static bool bal_auth_parse_permissions(bal_auth_field field, uint8_t *out) {
    static const struct { const char *name; uint8_t bit; } names[] = {
        {"read", BAL_PERMISSION_READ}, {"write", BAL_PERMISSION_WRITE}, {"admin", BAL_PERMISSION_ADMIN}};
    uint8_t permissions = 0;
    size_t i = 0;
    while (i <= field.length) {
        size_t start = i;
        while (i < field.length && field.text[i] != ',') i++;
        size_t word_length = i - start;
        uint8_t bit = 0;
        for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
            if (strlen(names[n].name) == word_length && memcmp(names[n].name, field.text + start, word_length) == 0) {
                bit = names[n].bit;
            }
        }
        if (bit == 0 || (permissions & bit) != 0) return false;
        permissions |= bit;
        i++; /* past the comma, or past the end */
    }
    /* Admin implies read and write: expanded once here, so checks test a single bit. */
    if (permissions & BAL_PERMISSION_ADMIN) permissions |= BAL_PERMISSION_READ | BAL_PERMISSION_WRITE;
    *out = permissions;
    return true;
}

static bal_auth_status bal_auth_parse_id_and_secret(const bal_auth_parser *parser, const bal_auth_field *fields,
                                                    bal_auth_key *key) {
    if (fields[0].length > BAL_AUTH_KEY_ID_LENGTH_MAX) {
        return bal_auth_parse_error(parser, "the key id is longer than %d characters", BAL_AUTH_KEY_ID_LENGTH_MAX);
    }
    if (!bal_auth_key_id_valid(fields[0].text, fields[0].length)) {
        return bal_auth_parse_error(parser, "the key id may only contain A-Z a-z 0-9 . _ -");
    }
    if (fields[1].length < BAL_AUTH_SECRET_LENGTH_MIN || fields[1].length > BAL_AUTH_SECRET_LENGTH_MAX) {
        return bal_auth_parse_error(parser, "the secret is %zu characters long; it must have %d to %d",
                                    fields[1].length, BAL_AUTH_SECRET_LENGTH_MIN, BAL_AUTH_SECRET_LENGTH_MAX);
    }
    for (size_t i = 0; i < fields[1].length; i++) {
        unsigned char c = (unsigned char)fields[1].text[i];
        if (c < 0x21 || c > 0x7e) {
            return bal_auth_parse_error(parser, "the secret may only contain printable ASCII characters");
        }
    }
    memcpy(key->id, fields[0].text, fields[0].length);
    key->id[fields[0].length] = '\0';
    key->id_length = (uint8_t)fields[0].length;
    memcpy(key->secret, fields[1].text, fields[1].length);
    key->secret_length = (uint16_t)fields[1].length;
    return BAL_AUTH_OK;
}

static bal_auth_status bal_auth_parse_key(const bal_auth_parser *parser, const bal_auth_field *fields,
                                          bal_auth_key *key) {
    bal_auth_status status = bal_auth_parse_id_and_secret(parser, fields, key);
    if (status != BAL_AUTH_OK) return status;
    if (!bal_auth_parse_permissions(fields[2], &key->permissions)) {
        return bal_auth_parse_error(parser, "permissions must be read, write or admin, separated by commas, "
                                            "each at most once");
    }
    static const char *const names[4] = {"requests_per_second", "requests_burst", "operations_per_second",
                                         "operations_burst"};
    uint32_t *values[4] = {&key->requests_per_second, &key->requests_burst, &key->operations_per_second,
                           &key->operations_burst};
    for (size_t i = 0; i < 4; i++) {
        uint32_t max = (i % 2 == 0) ? BAL_AUTH_RATE_MAX : BAL_AUTH_BURST_MAX;
        if (!bal_auth_parse_number(fields[3 + i], max, values[i])) {
            return bal_auth_parse_error(parser, "%s must be a whole number from 1 to %u", names[i], (unsigned)max);
        }
    }
    key->line = parser->line;
    return BAL_AUTH_OK;
}

/* The next line of text[*offset..length): its start and length without the line end. */
static bool bal_auth_next_line(const char *text, size_t length, size_t *offset, bal_auth_field *line) {
    if (*offset >= length) return false;
    const char *start = text + *offset;
    const char *newline = memchr(start, '\n', length - *offset);
    size_t line_length = newline != NULL ? (size_t)(newline - start) : length - *offset;
    *offset += line_length + (newline != NULL ? 1 : 0);
    if (line_length > 0 && start[line_length - 1] == '\r') line_length--;
    line->text = start;
    line->length = line_length;
    return true;
}

static bool bal_auth_line_is_key(bal_auth_field line) {
    size_t i = 0;
    while (i < line.length && (line.text[i] == ' ' || line.text[i] == '\t')) i++;
    return i < line.length && line.text[i] != '#';
}

static bal_auth_keyset *bal_auth_keyset_allocate(uint32_t capacity) {
    uint32_t table_size = 2;
    while (table_size < 2 * capacity) table_size *= 2;
    bal_auth_keyset *set = calloc(1, sizeof *set);
    if (set == NULL) return NULL;
    set->table = calloc(table_size, sizeof *set->table);
    set->keys = capacity > 0 ? calloc(capacity, sizeof *set->keys) : NULL;
    if (set->table == NULL || (capacity > 0 && set->keys == NULL)) {
        free(set->table);
        free(set->keys);
        free(set);
        return NULL;
    }
    set->table_mask = table_size - 1;
    set->capacity = capacity;
    atomic_init(&set->references, 1);
    return set;
}

bal_auth_keyset *bal_auth_keyset_empty(void) {
    return bal_auth_keyset_allocate(0);
}

/* Counts the key lines, refusing NUL bytes and over-long lines before anything is parsed. */
static bal_auth_status bal_auth_scan(bal_auth_parser *parser, const char *text, size_t length, uint32_t *count) {
    size_t offset = 0;
    bal_auth_field line;
    *count = 0;
    parser->line = 0;
    while (bal_auth_next_line(text, length, &offset, &line)) {
        parser->line++;
        if (memchr(line.text, '\0', line.length) != NULL) return bal_auth_parse_error(parser, "contains a NUL byte");
        if (line.length > BAL_AUTH_LINE_LENGTH_MAX) {
            return bal_auth_parse_error(parser, "longer than %d characters", BAL_AUTH_LINE_LENGTH_MAX);
        }
        if (!bal_auth_line_is_key(line)) continue;
        if (*count == BAL_AUTH_KEYS_MAX) return bal_auth_parse_error(parser, "more than %d keys", BAL_AUTH_KEYS_MAX);
        (*count)++;
    }
    return BAL_AUTH_OK;
}

static bal_auth_status bal_auth_parse_lines(bal_auth_parser *parser, const char *text, size_t length,
                                            bal_auth_keyset *set) {
    size_t offset = 0;
    bal_auth_field line;
    parser->line = 0;
    while (bal_auth_next_line(text, length, &offset, &line)) {
        parser->line++;
        if (!bal_auth_line_is_key(line)) continue;
        bal_auth_field fields[BAL_AUTH_KEY_FIELDS];
        size_t field_count = bal_auth_split(line.text, line.length, fields, BAL_AUTH_KEY_FIELDS);
        if (field_count != BAL_AUTH_KEY_FIELDS) {
            return bal_auth_parse_error(parser,
                                        "expected %d fields (key_id secret permissions requests_per_second "
                                        "requests_burst operations_per_second operations_burst), found %s%zu",
                                        BAL_AUTH_KEY_FIELDS, field_count > BAL_AUTH_KEY_FIELDS ? "more than " : "",
                                        field_count > BAL_AUTH_KEY_FIELDS ? (size_t)BAL_AUTH_KEY_FIELDS : field_count);
        }
        bal_auth_key *key = &set->keys[set->count];
        bal_auth_status status = bal_auth_parse_key(parser, fields, key);
        if (status != BAL_AUTH_OK) return status;
        const bal_auth_key *first = bal_auth_keyset_find(set, key->id, key->id_length);
        if (first != NULL) {
            return bal_auth_parse_error(parser, "duplicate key id (first defined on line %u)", (unsigned)first->line);
        }
        bal_auth_keyset_insert(set, set->count);
        set->count++;
    }
    return BAL_AUTH_OK;
}

bal_auth_status bal_auth_keyset_parse(const char *text, size_t length, const char *source_name,
                                      bal_auth_keyset **out, char *errstr, size_t errstr_size) {
    assert((text != NULL || length == 0) && source_name != NULL && out != NULL);
    bal_auth_parser parser = {.source_name = source_name, .errstr = errstr, .errstr_size = errstr_size};
    if (length > BAL_AUTH_FILE_BYTES_MAX) {
        bal_auth_keys_message(errstr, errstr_size, "%s: larger than %u bytes", source_name,
                              (unsigned)BAL_AUTH_FILE_BYTES_MAX);
        return BAL_AUTH_INVALID_FILE;
    }
    uint32_t capacity = 0;
    bal_auth_status status = bal_auth_scan(&parser, text, length, &capacity);
    if (status != BAL_AUTH_OK) return status;
    if (capacity == 0) {
        /* An empty set would lock every client out; running without keys is a separate,
           explicit deployment choice (no keys file), never the result of a truncated file. */
        bal_auth_keys_message(errstr, errstr_size, "%s: no keys", source_name);
        return BAL_AUTH_INVALID_FILE;
    }
    bal_auth_keyset *set = bal_auth_keyset_allocate(capacity);
    if (set == NULL) {
        bal_auth_keys_message(errstr, errstr_size, "%s: out of memory", source_name);
        return BAL_AUTH_OUT_OF_MEMORY;
    }
    status = bal_auth_parse_lines(&parser, text, length, set);
    if (status != BAL_AUTH_OK) {
        bal_auth_keyset_free(set);
        return status;
    }
    assert(set->count == capacity);
    *out = set;
    return BAL_AUTH_OK;
}

static bal_auth_key_state *bal_auth_key_state_create(void) {
    bal_auth_key_state *state = calloc(1, sizeof *state);
    if (state == NULL) return NULL;
    if (pthread_mutex_init(&state->lock, NULL) != 0) {
        free(state);
        return NULL;
    }
    atomic_init(&state->references, 1);
    return state;
}

static void bal_auth_key_state_release(bal_auth_key_state *state) {
    if (state == NULL) return;
    unsigned before = atomic_fetch_sub_explicit(&state->references, 1, memory_order_acq_rel);
    assert(before >= 1);
    if (before == 1) {
        pthread_mutex_destroy(&state->lock);
        free(state);
    }
}

bool bal_auth_keyset_attach_states(bal_auth_keyset *set, const bal_auth_keyset *previous) {
    assert(set != NULL);
    for (uint32_t i = 0; i < set->count; i++) {
        bal_auth_key *key = &set->keys[i];
        assert(key->state == NULL);
        const bal_auth_key *old = previous != NULL ? bal_auth_keyset_find(previous, key->id, key->id_length) : NULL;
        if (old != NULL) {
            /* The previous set holds a reference for as long as this call runs (the caller
               serialises loads), so the state cannot go away under the increment. */
            assert(old->state != NULL);
            atomic_fetch_add_explicit(&old->state->references, 1, memory_order_relaxed);
            key->state = old->state;
        } else {
            key->state = bal_auth_key_state_create();
            if (key->state == NULL) return false;
        }
    }
    return true;
}

void bal_auth_keyset_free(bal_auth_keyset *set) {
    if (set == NULL) return;
    for (uint32_t i = 0; i < set->count; i++) bal_auth_key_state_release(set->keys[i].state);
    if (set->keys != NULL) {
        /* Secrets should not linger in freed heap memory, where a later bug or a core dump
           could reveal them. The whole capacity: a failed parse leaves a secret in the
           slot after the last counted key. */
        explicit_bzero(set->keys, (size_t)set->capacity * sizeof *set->keys);
    }
    free(set->keys);
    free(set->table);
    free(set);
}
