/*
 * bal_json.c -- the tokenizer behind bal_json.h.
 *
 * An explicit stack (no recursion) tracks open containers; each token records the index
 * of the token after its subtree so that callers can skip values they do not inspect.
 */
#include "bal_json.h"

#include <assert.h>
#include <string.h>

typedef struct parser {
    const char *text;
    size_t length;
    size_t position;
    bal_json_token *tokens;
    uint32_t token_max;
    uint32_t count;
} parser;

static void skip_space(parser *p) {
    while (p->position < p->length) {
        char c = p->text[p->position];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        p->position++;
    }
}

static bal_json_status new_token(parser *p, bal_json_type type, size_t start, uint32_t *index_out) {
    if (p->count == p->token_max) return BAL_JSON_TOO_MANY_TOKENS;
    bal_json_token *t = &p->tokens[p->count];
    memset(t, 0, sizeof(*t));
    t->type = (uint8_t)type;
    t->start = (uint32_t)start;
    *index_out = p->count++;
    return BAL_JSON_OK;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Length of a well-formed UTF-8 sequence starting at s (at most `available` bytes), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t available) {
    unsigned char c = s[0];
    size_t need;
    uint32_t min;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { need = 2; min = 0x80; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 3; min = 0x800; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 4; min = 0x10000; cp = c & 0x07; }
    else return 0;
    if (available < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return need;
}

static bal_json_status parse_string(parser *p) {
    assert(p->text[p->position] == '"');
    uint32_t index;
    bal_json_status status = new_token(p, BAL_JSON_STRING, p->position + 1, &index);
    if (status != BAL_JSON_OK) return status;
    size_t i = p->position + 1;
    uint8_t escaped = 0;
    while (i < p->length) {
        unsigned char c = (unsigned char)p->text[i];
        if (c == '"') {
            p->tokens[index].length = (uint32_t)(i - p->position - 1);
            p->tokens[index].escaped = escaped;
            p->tokens[index].next = index + 1;
            p->position = i + 1;
            return BAL_JSON_OK;
        }
        if (c < 0x20) return BAL_JSON_SYNTAX;
        if (c == '\\') {
            escaped = 1;
            if (i + 1 >= p->length) return BAL_JSON_SYNTAX;
            char e = p->text[i + 1];
            if (e == 'u') {
                if (i + 5 >= p->length) return BAL_JSON_SYNTAX;
                for (int k = 2; k < 6; k++) if (hex_value(p->text[i + (size_t)k]) < 0) return BAL_JSON_SYNTAX;
                i += 6;
            } else if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
                i += 2;
            } else {
                return BAL_JSON_SYNTAX;
            }
            continue;
        }
        size_t n = utf8_sequence((const unsigned char *)p->text + i, p->length - i);
        if (n == 0) return BAL_JSON_SYNTAX;
        i += n;
    }
    p->position = i;
    return BAL_JSON_SYNTAX;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bal_json_status parse_number(parser *p) {
    size_t start = p->position, i = start;
    if (i < p->length && p->text[i] == '-') i++;
    if (i >= p->length || !is_digit(p->text[i])) return BAL_JSON_SYNTAX;
    if (p->text[i] == '0') i++;
    else while (i < p->length && is_digit(p->text[i])) i++;
    if (i < p->length && p->text[i] == '.') {
        i++;
        if (i >= p->length || !is_digit(p->text[i])) return BAL_JSON_SYNTAX;
        while (i < p->length && is_digit(p->text[i])) i++;
    }
    if (i < p->length && (p->text[i] == 'e' || p->text[i] == 'E')) {
        i++;
        if (i < p->length && (p->text[i] == '+' || p->text[i] == '-')) i++;
        if (i >= p->length || !is_digit(p->text[i])) return BAL_JSON_SYNTAX;
        while (i < p->length && is_digit(p->text[i])) i++;
    }
    uint32_t index;
    bal_json_status status = new_token(p, BAL_JSON_NUMBER, start, &index);
    if (status != BAL_JSON_OK) return status;
    p->tokens[index].length = (uint32_t)(i - start);
    p->tokens[index].next = index + 1;
    p->position = i;
    return BAL_JSON_OK;
}

static bal_json_status parse_literal(parser *p) {
    static const struct { const char *word; bal_json_type type; } literals[] = {
        {"true", BAL_JSON_TRUE}, {"false", BAL_JSON_FALSE}, {"null", BAL_JSON_NULL},
    };
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(literals[k].word);
        if (p->length - p->position >= n && memcmp(p->text + p->position, literals[k].word, n) == 0) {
            uint32_t index;
            bal_json_status status = new_token(p, literals[k].type, p->position, &index);
            if (status != BAL_JSON_OK) return status;
            p->tokens[index].length = (uint32_t)n;
            p->tokens[index].next = index + 1;
            p->position += n;
            return BAL_JSON_OK;
        }
    }
    return BAL_JSON_SYNTAX;
}

/* A scalar value at the current position. */
static bal_json_status parse_scalar(parser *p) {
    char c = p->text[p->position];
    if (c == '"') return parse_string(p);
    if (c == '-' || is_digit(c)) return parse_number(p);
    return parse_literal(p);
}

typedef struct frame {
    uint32_t token;
    bool expect_key;   /* objects: the next item is a key */
} frame;

/* After a value: a comma (more to come) or closing brackets, until a container expects
 * more or the root is complete. */
static bal_json_status after_value(parser *p, frame *stack, uint32_t *depth, bool *done) {
    for (;;) {
        skip_space(p);
        if (*depth == 0) {
            *done = true;
            return BAL_JSON_OK;
        }
        if (p->position >= p->length) return BAL_JSON_SYNTAX;
        frame *top = &stack[*depth - 1];
        bal_json_token *container = &p->tokens[top->token];
        char c = p->text[p->position];
        if (c == ',') {
            p->position++;
            top->expect_key = container->type == BAL_JSON_OBJECT;
            return BAL_JSON_OK;
        }
        if (c != (container->type == BAL_JSON_OBJECT ? '}' : ']')) return BAL_JSON_SYNTAX;
        p->position++;
        container->length = (uint32_t)(p->position - container->start);
        container->next = p->count;
        (*depth)--;
    }
}

static bal_json_status open_container(parser *p, frame *stack, uint32_t *depth, char c) {
    if (*depth == BAL_JSON_DEPTH_MAX) return BAL_JSON_TOO_DEEP;
    uint32_t index;
    bal_json_status status = new_token(p, c == '{' ? BAL_JSON_OBJECT : BAL_JSON_ARRAY, p->position, &index);
    if (status != BAL_JSON_OK) return status;
    stack[*depth] = (frame){index, c == '{'};
    (*depth)++;
    p->position++;
    return BAL_JSON_OK;
}

static bal_json_status parse_key(parser *p, frame *top) {
    if (p->text[p->position] != '"') return BAL_JSON_SYNTAX;
    bal_json_status status = parse_string(p);
    if (status != BAL_JSON_OK) return status;
    skip_space(p);
    if (p->position >= p->length || p->text[p->position] != ':') return BAL_JSON_SYNTAX;
    p->position++;
    top->expect_key = false;
    return BAL_JSON_OK;
}

/* One step: a key, a value, or an empty container's close. Members and elements are
 * counted as they start. */
static bal_json_status parse_step(parser *p, frame *stack, uint32_t *depth, bool *done) {
    skip_space(p);
    if (p->position >= p->length) return BAL_JSON_SYNTAX;
    char c = p->text[p->position];
    if (*depth > 0) {
        frame *top = &stack[*depth - 1];
        bal_json_token *container = &p->tokens[top->token];
        bool empty = p->count == top->token + 1;
        if (empty && (c == '}' || c == ']')) return after_value(p, stack, depth, done);
        if (top->expect_key) {
            container->size++;
            return parse_key(p, top);
        }
        if (container->type == BAL_JSON_ARRAY) container->size++;
    }
    if (c == '{' || c == '[') return open_container(p, stack, depth, c);
    bal_json_status status = parse_scalar(p);
    if (status != BAL_JSON_OK) return status;
    return after_value(p, stack, depth, done);
}

bal_json_status bal_json_parse(const char *text, size_t length, bal_json_token *tokens,
                               uint32_t token_max, uint32_t *count_out, size_t *error_offset_out) {
    assert(tokens != NULL && count_out != NULL && error_offset_out != NULL);
    assert(token_max > 0);
    *error_offset_out = 0;
    if (length >= UINT32_MAX) return BAL_JSON_TOO_LARGE;
    parser p = {text, length, 0, tokens, token_max, 0};
    frame stack[BAL_JSON_DEPTH_MAX];
    uint32_t depth = 0;
    bool done = false;
    bal_json_status status = BAL_JSON_OK;
    while (!done && status == BAL_JSON_OK) status = parse_step(&p, stack, &depth, &done);
    if (status == BAL_JSON_OK && p.position != length) status = BAL_JSON_SYNTAX;
    *error_offset_out = p.position;
    *count_out = p.count;
    return status;
}

static void put_utf8(uint32_t cp, char *out, size_t *n) {
    if (cp < 0x80) { out[(*n)++] = (char)cp; return; }
    if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (cp >> 18));
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    }
    out[(*n)++] = (char)(0x80 | (cp & 0x3F));
}

static uint32_t read_hex4(const char *s) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) v = (v << 4) | (uint32_t)hex_value(s[k]);
    return v;
}

/* Decodes the escape at s[i] (after the backslash); writes at most 4 bytes into out. */
static size_t unescape_one(const char *s, size_t i, size_t end, char *out, size_t *n) {
    char e = s[i];
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = strchr(from, e);
    if (e != 'u') { out[(*n)++] = to[hit - from]; return i + 1; }
    uint32_t cp = read_hex4(s + i + 1);
    i += 5;
    if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= end && s[i] == '\\' && s[i + 1] == 'u') {
        uint32_t low = read_hex4(s + i + 2);
        if (low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            i += 6;
        }
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* a lone surrogate */
    put_utf8(cp, out, n);
    return i;
}

bool bal_json_string_copy(const char *text, const bal_json_token *token, char *buffer,
                          size_t buffer_size, size_t *length_out) {
    assert(token->type == BAL_JSON_STRING && length_out != NULL);
    const char *s = text + token->start;
    size_t end = token->length, n = 0;
    for (size_t i = 0; i < end;) {
        if (buffer_size - n < 4) return false;
        if (s[i] != '\\') { buffer[n++] = s[i++]; continue; }
        i = unescape_one(s, i + 1, end, buffer, &n);
    }
    *length_out = n;
    return true;
}

bool bal_json_string_equals(const char *text, const bal_json_token *token, const char *key) {
    assert(token != NULL && key != NULL);
    size_t n = strlen(key);
    return token->type == BAL_JSON_STRING && !token->escaped && token->length == n &&
           memcmp(text + token->start, key, n) == 0;
}

const char *bal_json_status_name(bal_json_status status) {
    switch (status) {
    case BAL_JSON_OK: return "ok";
    case BAL_JSON_SYNTAX: return "syntax";
    case BAL_JSON_TOO_DEEP: return "too_deep";
    case BAL_JSON_TOO_MANY_TOKENS: return "too_many_tokens";
    case BAL_JSON_TOO_LARGE: return "too_large";
    }
    return "unknown";
}
