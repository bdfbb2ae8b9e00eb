/*
 * bal_loadgen_sign.h -- HMAC-SHA256 request signing for the load generator.
 *
 * A header hook (bal_loadgen_header_hook) that signs each request the way SPEC.md's
 * Security section says: X-Api-Key, X-Timestamp (Unix milliseconds), X-Nonce (unique per
 * request: run id, thread, sequence) and X-Signature = lowercase hex of
 * HMAC-SHA256(secret, METHOD "\n" PATH_WITH_QUERY "\n" TIMESTAMP "\n" NONCE "\n"
 * hex(SHA256(body))). Signing costs two hashes per request, which the load generator pays
 * on its own threads like a real client would.
 */
#ifndef BAL_LOADGEN_SIGN_H
#define BAL_LOADGEN_SIGN_H

#include <stdbool.h>

#include "bal_loadgen_workload.h"

#define BAL_LOADGEN_KEY_MAX 128
#define BAL_LOADGEN_SECRET_MAX 256

typedef struct bal_loadgen_signer {
    char key[BAL_LOADGEN_KEY_MAX];
    char secret[BAL_LOADGEN_SECRET_MAX];
    char run_id[BAL_WORKLOAD_RUN_ID_MAX];
} bal_loadgen_signer;

/* Parses "KEY:SECRET"; false if malformed or too long. */
bool bal_loadgen_signer_init(bal_loadgen_signer *signer, const char *key_and_secret, const char *run_id);
/* The hook: context is a const bal_loadgen_signer. */
bool bal_loadgen_sign(void *context, const bal_loadgen_request_view *request, bal_http_buffer *headers);

#endif
