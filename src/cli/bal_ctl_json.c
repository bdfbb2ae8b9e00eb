/*
 * bal_ctl_json.c -- reading server responses with the project's JSON tokenizer.
 *
 * Responses are parsed only to print them for people; --json prints the bytes as
 * received and never goes through here, so nothing the server says is lost or reshaped.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bal_ctl.h"

/* Enough for the largest response (8192 batch results of 16 balances each is about 1.3M). */
#define TOKENS_MAX (1u << 22)

bool bal_ctl_json_load(bal_ctl_json *doc, const char *text, size_t length) {
    memset(doc, 0, sizeof(*doc));
    /* Every token but the first needs at least two bytes (a value and a separator). */
    size_t want = length / 2 + 2;
    uint32_t token_max = want > TOKENS_MAX ? TOKENS_MAX : (uint32_t)want;
    doc->tokens = malloc((size_t)token_max * sizeof(*doc->tokens));
    if (doc->tokens == NULL) return false;
    size_t offset = 0;
    if (bal_json_parse(text, length, doc->tokens, token_max, &doc->count, &offset) != BAL_JSON_OK) {
        bal_ctl_json_free(doc);
        return false;
    }
    doc->text = text;
    doc->length = length;
    return true;
}

void bal_ctl_json_free(bal_ctl_json *doc) {
    free(doc->tokens);
    memset(doc, 0, sizeof(*doc));
}

bool bal_ctl_json_is(const bal_ctl_json *doc, uint32_t index, bal_json_type type) {
    return index < doc->count && doc->tokens[index].type == type;
}

uint32_t bal_ctl_json_member(const bal_ctl_json *doc, uint32_t object, const char *key) {
    assert(doc != NULL && key != NULL);
    if (!bal_ctl_json_is(doc, object, BAL_JSON_OBJECT)) return BAL_CTL_JSON_NONE;
    uint32_t at = object + 1;
    for (uint32_t m = 0; m < doc->tokens[object].size; m++) {
        if (bal_json_string_equals(doc->text, &doc->tokens[at], key)) return at + 1;
        at = doc->tokens[at + 1].next;
    }
    return BAL_CTL_JSON_NONE;
}

void bal_ctl_json_text(const bal_ctl_json *doc, uint32_t index, const char *fallback, char *out, size_t size) {
    if (size == 0) return;
    out[0] = '\0';
    if (index >= doc->count) {
        size_t length = strnlen(fallback, size - 1);
        memcpy(out, fallback, length);
        out[length] = '\0';
        return;
    }
    const bal_json_token *t = &doc->tokens[index];
    size_t length = 0;
    if (t->type == BAL_JSON_STRING) {
        if (bal_json_string_copy(doc->text, t, out, size - 1, &length)) {
            out[length] = '\0';
            return;
        }
        length = t->length; /* does not fit: show the raw prefix */
    } else {
        length = t->length;
    }
    if (length < size) {
        memcpy(out, doc->text + t->start, length);
        out[length] = '\0';
        return;
    }
    memcpy(out, doc->text + t->start, size - 1);
    if (size > 4) memcpy(out + size - 4, "...", 3);
    out[size - 1] = '\0';
}

void bal_ctl_json_field(const bal_ctl_json *doc, uint32_t object, const char *key, const char *fallback,
                        char *out, size_t size) {
    bal_ctl_json_text(doc, bal_ctl_json_member(doc, object, key), fallback, out, size);
}
