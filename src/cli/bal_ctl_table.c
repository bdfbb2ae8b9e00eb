/*
 * bal_ctl_table.c -- aligned text tables for balances and history, and terminal-safe text.
 *
 * Amount columns align on the decimal point, so that magnitudes can be compared at a
 * glance. Text that came from the server (memos above all) may hold control characters;
 * they are shown escaped so that they can neither break the layout nor drive the terminal.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bal_ctl.h"

/* The escaped form of one byte into out (at least 5 bytes); returns its length. */
static size_t escape_byte(unsigned char c, char *out) {
    static const char hex[] = "0123456789abcdef";
    if (c >= 0x20 && c != 0x7f) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '\\';
    if (c == '\n') { out[1] = 'n'; return 2; }
    if (c == '\t') { out[1] = 't'; return 2; }
    if (c == '\r') { out[1] = 'r'; return 2; }
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 15];
    return 4;
}

void bal_ctl_print_safe(FILE *out, const char *text) {
    char escaped[5];
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        fwrite(escaped, 1, escape_byte(*p, escaped), out);
    }
}

static char *safe_dup(const char *text) {
    size_t length = strlen(text);
    char *copy = malloc(4 * length + 1);
    if (copy == NULL) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < length; i++) n += escape_byte((unsigned char)text[i], copy + n);
    copy[n] = '\0';
    return copy;
}

/* Display width: one column per UTF-8 code point (continuation bytes take none). */
static size_t width(const char *text, size_t length) {
    size_t w = 0;
    for (size_t i = 0; i < length; i++) w += ((unsigned char)text[i] & 0xC0) != 0x80;
    return w;
}

void bal_ctl_table_init(bal_ctl_table *table, unsigned columns, const bal_ctl_align *align) {
    memset(table, 0, sizeof(*table));
    if (columns > BAL_CTL_TABLE_COLUMNS_MAX) columns = BAL_CTL_TABLE_COLUMNS_MAX;
    assert(columns > 0 && align != NULL);
    table->columns = columns;
    table->has_header = true;
    memcpy(table->align, align, columns * sizeof(*align));
}

void bal_ctl_table_add(bal_ctl_table *table, const char *const *cells) {
    assert(cells != NULL && table->columns > 0);
    if (table->failed) return;
    if (table->rows == table->capacity) {
        size_t capacity = table->capacity == 0 ? 16 : table->capacity * 2;
        char **grown = realloc(table->cells, capacity * table->columns * sizeof(char *));
        if (grown == NULL) {
            table->failed = true;
            return;
        }
        table->cells = grown;
        table->capacity = capacity;
    }
    char **row = table->cells + table->rows * table->columns;
    for (unsigned c = 0; c < table->columns; c++) {
        row[c] = safe_dup(cells[c] != NULL ? cells[c] : "");
        if (row[c] == NULL) table->failed = true;
    }
    table->rows++;
}

/* Column layout: for decimal columns, the widest integer part and fraction (with its dot). */
typedef struct column {
    size_t total;
    size_t integer;
    size_t fraction;
} column;

static void measure(const bal_ctl_table *table, column *layout) {
    for (unsigned c = 0; c < table->columns; c++) {
        column *col = &layout[c];
        memset(col, 0, sizeof(*col));
        for (size_t r = 0; r < table->rows; r++) {
            const char *cell = table->cells[r * table->columns + c];
            size_t length = strlen(cell);
            size_t w = width(cell, length);
            if ((r > 0 || !table->has_header) && table->align[c] == BAL_CTL_DECIMAL) {
                size_t dot = strcspn(cell, ".");
                if (dot > col->integer) col->integer = dot;
                if (length - dot > col->fraction) col->fraction = length - dot;
            }
            if (w > col->total) col->total = w;
        }
        if (col->integer + col->fraction > col->total) col->total = col->integer + col->fraction;
    }
}

/* Writes a line's cells; spaces are held back until text follows, so that lines never end
 * in padding (an empty last column would otherwise leave some). */
typedef struct line {
    FILE *out;
    size_t spaces;
} line;

static void pad(line *l, size_t count) { l->spaces += count; }

static void put(line *l, const char *text) {
    if (text[0] == '\0') return;
    for (; l->spaces > 0; l->spaces--) fputc(' ', l->out);
    fputs(text, l->out);
}

static void print_cell(line *l, const char *cell, const column *col, bal_ctl_align align, bool header) {
    size_t length = strlen(cell), w = width(cell, length);
    if (align == BAL_CTL_DECIMAL && !header) {
        size_t dot = strcspn(cell, ".");
        pad(l, col->total - col->integer - col->fraction + col->integer - dot);
        put(l, cell);
        pad(l, col->fraction - (length - dot));
        return;
    }
    if (align != BAL_CTL_LEFT) pad(l, col->total - w);
    put(l, cell);
    if (align == BAL_CTL_LEFT) pad(l, col->total - w);
}

void bal_ctl_table_print(FILE *out, const bal_ctl_table *table) {
    if (table->failed) {
        fputs("balancectl: out of memory while formatting a table\n", stderr);
        return;
    }
    column layout[BAL_CTL_TABLE_COLUMNS_MAX];
    measure(table, layout);
    for (size_t r = 0; r < table->rows; r++) {
        line l = {.out = out, .spaces = 0};
        for (unsigned c = 0; c < table->columns; c++) {
            if (c > 0) pad(&l, 2);
            print_cell(&l, table->cells[r * table->columns + c], &layout[c], table->align[c],
                       r == 0 && table->has_header);
        }
        fputc('\n', out);
    }
}

void bal_ctl_table_free(bal_ctl_table *table) {
    for (size_t i = 0; i < table->rows * table->columns; i++) free(table->cells[i]);
    free(table->cells);
    memset(table, 0, sizeof(*table));
}
