/*
 * bal_ctl_sign.c -- API key loading and the signature headers of SPEC's Security section.
 *
 * The signature itself comes from bal_sign (the code the server verifies with), so the
 * client cannot disagree with the server about what is signed.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal_ctl.h"
#include "bal_sign.h"

/* A key file holds one line; anything much larger is not a key file. */
#define KEY_FILE_BYTES_MAX 4096

void bal_ctl_key_clear(bal_ctl_key *key) {
    explicit_bzero(key->secret, sizeof(key->secret));
    key->secret_length = 0;
}

/* Key ids and secrets become header bytes and HMAC input: printable ASCII without spaces
 * keeps them safe in a header line and unambiguous in a one-line file. */
static bool token_valid(const char *text, size_t length) {
    if (length == 0) return false;
    for (size_t i = 0; i < length; i++) {
        if (text[i] <= ' ' || text[i] > '~') return false;
    }
    return true;
}

static bool key_set(bal_ctl_key *key, const char *id, size_t id_length, const char *secret, size_t secret_length,
                    const char *source, bal_ctl_error *error) {
    if (!token_valid(id, id_length) || id_length > BAL_CTL_KEY_ID_MAX) {
        bal_ctl_error_set(error, "usage", "%s: the key id must be 1 to %d printable characters without spaces",
                          source, BAL_CTL_KEY_ID_MAX);
        return false;
    }
    if (!token_valid(secret, secret_length) || secret_length > BAL_CTL_SECRET_MAX) {
        bal_ctl_error_set(error, "usage", "%s: the secret must be 1 to %d printable characters without spaces",
                          source, BAL_CTL_SECRET_MAX);
        return false;
    }
    memcpy(key->id, id, id_length);
    key->id[id_length] = '\0';
    memcpy(key->secret, secret, secret_length);
    key->secret[secret_length] = '\0';
    key->secret_length = secret_length;
    key->present = true;
    return true;
}

/* Reads the whole (small) file; refuses one that others could read, as ssh does with
 * private keys: a leaked secret lets anyone move money. */
static bool key_file_read(const char *path, char *buffer, size_t size, size_t *length_out, bal_ctl_error *error) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        bal_ctl_error_set(error, "usage", "key file %s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0;
    if (!ok || !S_ISREG(st.st_mode)) {
        bal_ctl_error_set(error, "usage", "key file %s: not a regular file", path);
    } else if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        bal_ctl_error_set(error, "usage", "key file %s is accessible by group or others (mode %03o); "
                          "run chmod 600 on it", path, (unsigned)(st.st_mode & 0777));
        ok = false;
    } else {
        size_t length = 0;
        ssize_t n = 1;
        while (length < size && n != 0) {
            n = read(fd, buffer + length, size - length);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) break;
            length += (size_t)n;
        }
        ok = n >= 0 && length < size;
        if (n < 0) bal_ctl_error_set(error, "usage", "key file %s: %s", path, strerror(errno));
        else if (!ok) bal_ctl_error_set(error, "usage", "key file %s: larger than %zu bytes", path, size - 1);
        *length_out = length;
    }
    close(fd);
    return ok;
}

/* The first line that is neither blank nor a # comment must be "KEY_ID SECRET". */
static bool key_file_parse(bal_ctl_key *key, const char *path, char *text, size_t length, bal_ctl_error *error) {
    text[length] = '\0';
    for (char *line = text, *end; *line != '\0'; line = end) {
        end = line + strcspn(line, "\n");
        if (*end == '\n') *end++ = '\0';
        char *fields[3] = {NULL, NULL, NULL};
        size_t count = 0;
        for (char *save = NULL, *field = strtok_r(line, " \t\r", &save); field != NULL && count < 3;
             field = strtok_r(NULL, " \t\r", &save)) {
            fields[count++] = field;
        }
        if (count == 0 || fields[0][0] == '#') continue;
        if (count != 2) {
            bal_ctl_error_set(error, "usage", "key file %s: expected one line \"KEY_ID SECRET\"", path);
            return false;
        }
        return key_set(key, fields[0], strlen(fields[0]), fields[1], strlen(fields[1]), path, error);
    }
    bal_ctl_error_set(error, "usage", "key file %s: no \"KEY_ID SECRET\" line", path);
    return false;
}

bool bal_ctl_key_load(bal_ctl_key *key, const char *key_file, bal_ctl_error *error) {
    memset(key, 0, sizeof(*key));
    if (key_file != NULL) {
        char text[KEY_FILE_BYTES_MAX + 1];
        size_t length = 0;
        bool ok = key_file_read(key_file, text, sizeof(text), &length, error) &&
                  key_file_parse(key, key_file, text, length, error);
        explicit_bzero(text, sizeof(text));
        return ok;
    }
    const char *id = getenv("BALANCED_API_KEY");
    const char *secret = getenv("BALANCED_API_SECRET");
    if ((id == NULL || id[0] == '\0') && (secret == NULL || secret[0] == '\0')) return true;
    if (id == NULL || id[0] == '\0' || secret == NULL || secret[0] == '\0') {
        bal_ctl_error_set(error, "usage", "set both BALANCED_API_KEY and BALANCED_API_SECRET, or neither");
        return false;
    }
    return key_set(key, id, strlen(id), secret, strlen(secret), "environment", error);
}

bool bal_ctl_sign_headers(const bal_ctl_key *key, const char *method, const char *target, const char *body,
                          size_t body_length, bal_text *headers, bal_ctl_error *error) {
    assert(key->present && key->secret_length > 0 && key->secret_length <= BAL_CTL_SECRET_MAX);
    assert(body != NULL || body_length == 0);
    uint8_t random[16];
    if (!bal_ctl_random(random, sizeof(random), error)) return false;
    static const char hex[] = "0123456789abcdef";
    char nonce[2 * sizeof(random) + 1];
    for (size_t i = 0; i < sizeof(random); i++) {
        nonce[2 * i] = hex[random[i] >> 4];
        nonce[2 * i + 1] = hex[random[i] & 15];
    }
    nonce[2 * sizeof(random)] = '\0';
    char timestamp[24];
    snprintf(timestamp, sizeof(timestamp), "%lld", (long long)bal_ctl_now_ms());
    char signature[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_request(key->secret, key->secret_length, method, strlen(method), target, strlen(target), timestamp,
                     strlen(timestamp), nonce, strlen(nonce), body, body_length, signature);
    bal_text_cstr(headers, "X-Api-Key: ");
    bal_text_cstr(headers, key->id);
    bal_text_cstr(headers, "\r\nX-Timestamp: ");
    bal_text_cstr(headers, timestamp);
    bal_text_cstr(headers, "\r\nX-Nonce: ");
    bal_text_cstr(headers, nonce);
    bal_text_cstr(headers, "\r\nX-Signature: ");
    bal_text_cstr(headers, signature);
    bal_text_cstr(headers, "\r\n");
    return true;
}
