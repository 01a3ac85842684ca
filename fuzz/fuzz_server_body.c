/*
 * fuzz_server_body.c - libFuzzer target for fn_body_images (the JSON
 * bodies of POST /v1/detect, /v1/embed and /v1/verify) and for the API key
 * check on the Authorization header's value.
 *
 * Contract checked besides crashes and leaks: a failure is one of the
 * documented static codes with nothing allocated; a success gives
 * non-empty blobs no longer than the base64 could hold.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/body.h"
#include "server/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int known_code(const char *code)
{
    static const char *const codes[] = {"invalid_json", "missing_field", "invalid_base64",
                                        "out_of_memory"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (code == codes[i] || strcmp(code, codes[i]) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"image1", "image2"};
    fn_blob blobs[2];
    const char *code;
    fn_api_key key;
    fn_keyring ring = {&key, 1};

    for (size_t n = 1; n <= 2; n++) {
        code = fn_body_images((const char *)data, size, names, n, blobs);
        if (code) {
            if (!known_code(code))
                abort();
            for (size_t i = 0; i < n; i++)
                if (blobs[i].data || blobs[i].len)
                    abort();
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (!blobs[i].data || blobs[i].len == 0 || blobs[i].len > size)
                abort();
        fn_blobs_free(blobs, n);
    }

    /* The same bytes as a presented key: never accepted by a ring whose
     * one key has an all-zero hash no input hashes to in practice. */
    memset(&key, 0, sizeof key);
    memcpy(key.id, "0123456789ab", FN_KEY_ID_LEN + 1);
    key.rate = key.burst = 1;
    key.scopes = FN_SCOPE_DETECT;
    if (fn_keyring_check(&ring, (const char *)data, size))
        abort();
    return 0;
}
