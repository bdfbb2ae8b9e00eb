/* Fuzzes the command codec: whatever decodes is a valid command that encodes back to
 * exactly the same bytes. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "bal_types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bal_command command;
    if (!bal_command_decode(data, size, &command)) return 0;
    assert(bal_command_valid(&command));
    uint8_t again[BAL_COMMAND_ENCODED_MAX];
    size_t length = bal_command_encode(&command, again);
    assert(length == size && memcmp(again, data, size) == 0);
    return 0;
}
