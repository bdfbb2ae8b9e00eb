/*
 * bal_text.c -- the growable buffer of bal_text.h.
 */
#include "bal_text.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void bal_text_init(bal_text *text, size_t limit) {
    assert(text != NULL && limit > 0);
    memset(text, 0, sizeof(*text));
    text->limit = limit;
}

void bal_text_init_with(bal_text *text, char *buffer, size_t capacity, size_t limit) {
    bal_text_init(text, limit);
    text->data = buffer;
    text->capacity = capacity < limit ? capacity : limit;
    text->borrowed = true;
}

void bal_text_free(bal_text *text) {
    if (!text->borrowed) free(text->data);
    memset(text, 0, sizeof(*text));
}

void bal_text_reset(bal_text *text) {
    text->length = 0;
    text->failed = false;
}

bool bal_text_failed(const bal_text *text) { return text->failed; }

static bool reserve(bal_text *text, size_t more) {
    if (text->failed) return false;
    if (more > text->limit - text->length) {
        text->failed = true;
        return false;
    }
    if (text->length + more <= text->capacity) return true;
    size_t capacity = text->capacity ? text->capacity : 4096;
    while (capacity < text->length + more) capacity *= 2;
    if (capacity > text->limit) capacity = text->limit;
    char *data = text->borrowed ? malloc(capacity) : realloc(text->data, capacity);
    if (data == NULL) {
        text->failed = true;
        return false;
    }
    if (text->borrowed) memcpy(data, text->data, text->length);
    text->borrowed = false;
    text->data = data;
    text->capacity = capacity;
    return true;
}

void bal_text_append(bal_text *text, const char *bytes, size_t length) {
    assert(text != NULL && (bytes != NULL || length == 0));
    if (!reserve(text, length)) return;
    memcpy(text->data + text->length, bytes, length);
    text->length += length;
}

void bal_text_cstr(bal_text *text, const char *string) { bal_text_append(text, string, strlen(string)); }

void bal_text_u64(bal_text *text, uint64_t value) {
    char digits[20];
    size_t n = 0;
    do {
        digits[19 - n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    bal_text_append(text, digits + 20 - n, n);
}

void bal_text_i64(bal_text *text, int64_t value) {
    if (value < 0) {
        bal_text_append(text, "-", 1);
        bal_text_u64(text, (uint64_t)0 - (uint64_t)value);
        return;
    }
    bal_text_u64(text, (uint64_t)value);
}

void bal_text_amount(bal_text *text, bal_amount amount) {
    char buffer[BAL_MONEY_TEXT_MAX + 3];
    buffer[0] = '"';
    size_t length = bal_money_format(amount, buffer + 1);
    buffer[length + 1] = '"';
    bal_text_append(text, buffer, length + 2);
}

void bal_text_json_string(bal_text *text, const char *bytes, size_t length) {
    static const char hex[] = "0123456789abcdef";
    bal_text_append(text, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        bal_text_append(text, bytes + run, i - run);
        run = i + 1;
        char escape[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            escape[1] = (char)c;
            bal_text_append(text, escape, 2);
        } else if (c == '\n') {
            bal_text_append(text, "\\n", 2);
        } else {
            bal_text_append(text, escape, 6);
        }
    }
    bal_text_append(text, bytes + run, length - run);
    bal_text_append(text, "\"", 1);
}
