/* fuzz_render.c - random bytes (mostly JSON-ish) into gptoss_render_chat.
 * Checks: no crash/leak; success yields a prompt that starts with the system
 * message and ends with the generation prompt; failure yields no text. */
#include "gptoss.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gptoss_render_options o = {"2026-01-15", NULL, 1};
    if (size > 0 && data[0] == '#') { /* "#" prefix: training format, no generation prompt */
        o.add_generation_prompt = 0;
        data++;
        size--;
    }
    char *text = NULL;
    gptoss_status st = gptoss_render_chat((const char *)data, size, &o, &text);
    if (st == GPTOSS_OK) {
        if (!text || strncmp(text, "<|start|>system<|message|>", 26)) abort();
        size_t n = strlen(text);
        if (o.add_generation_prompt && (n < 18 || strcmp(text + n - 18, "<|start|>assistant"))) abort();
        gptoss_free(text);
    } else if (text || !gptoss_last_error()[0]) {
        abort();
    }
    return 0;
}
