/*
 * bal_auth_keys.h -- the key set: the keys file parser and the immutable set it produces
 * (internal to src/auth; the format is documented in docs/auth.md).
 *
 * A key set never changes after parsing, so any number of threads read it without locks;
 * bal_auth.c swaps whole sets on reload and counts references to them. What must outlive a
 * reload -- each key's token buckets -- lives in a separate, reference-counted
 * bal_auth_key_state that a new set takes over from the old one by key id.
 *
 * Messages never quote the file: a secret pasted into the wrong column must not end up in
 * a log. They name the source, the line and what is wrong.
 */
#ifndef BAL_AUTH_KEYS_H
#define BAL_AUTH_KEYS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_auth.h"
#include "bal_auth_bucket.h"

/* The mutable part of a key, shared by every key set that contains the key id. */
typedef struct bal_auth_key_state {
    pthread_mutex_t lock; /* guards the two buckets; held for a few arithmetic steps */
    bal_auth_bucket requests;
    bal_auth_bucket operations;
    atomic_uint references; /* key sets that point here */
} bal_auth_key_state;

typedef struct bal_auth_key {
    char id[BAL_AUTH_KEY_ID_LENGTH_MAX + 1]; /* NUL-terminated */
    uint8_t id_length;
    uint8_t permissions; /* bal_permission bits; ADMIN already includes READ and WRITE */
    uint16_t secret_length;
    unsigned char secret[BAL_AUTH_SECRET_LENGTH_MAX];
    uint32_t requests_per_second;
    uint32_t requests_burst;
    uint32_t operations_per_second;
    uint32_t operations_burst;
    uint32_t line; /* where it was defined, for duplicate messages */
    bal_auth_key_state *state; /* attached by bal_auth_keyset_attach_states */
} bal_auth_key;

typedef struct bal_auth_keyset {
    atomic_uint references; /* readers plus the owner (bal_auth) */
    uint32_t count;
    uint32_t capacity;   /* keys allocated; a failed parse may have filled one beyond count */
    uint32_t table_mask; /* table size - 1, a power of two at least twice count */
    uint32_t *table;     /* key index + 1; 0 = empty slot (linear probing) */
    bal_auth_key *keys;
} bal_auth_keyset;

/* True for 1 to BAL_AUTH_KEY_ID_LENGTH_MAX characters of A-Z a-z 0-9 . _ - */
bool bal_auth_key_id_valid(const char *id, size_t id_length);

/* An empty set (no keys): what a bal_auth holds before its first load. */
bal_auth_keyset *bal_auth_keyset_empty(void);

/* Parses a keys file held in memory. The set comes back with one reference and without
   states. On error *out is untouched and errstr says "<source_name>: line N: ...". */
bal_auth_status bal_auth_keyset_parse(const char *text, size_t length, const char *source_name,
                                      bal_auth_keyset **out, char *errstr, size_t errstr_size);

/* The key with this id, or NULL. */
const bal_auth_key *bal_auth_keyset_find(const bal_auth_keyset *set, const char *id, size_t id_length);

/* Gives every key of `set` the state of the same key id in `previous` (may be NULL), or a
   fresh one. False when out of memory (the set is then still safe to free). */
bool bal_auth_keyset_attach_states(bal_auth_keyset *set, const bal_auth_keyset *previous);

/* Drops the set's state references, wipes the secrets and frees it. Only for the last
   reference. */
void bal_auth_keyset_free(bal_auth_keyset *set);

/* Writes a message into a caller's errstr buffer (NULL or size 0: nothing), cut to fit. */
__attribute__((format(printf, 3, 4)))
void bal_auth_keys_message(char *errstr, size_t errstr_size, const char *format, ...);

#endif
