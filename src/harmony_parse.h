/* harmony_parse.h - internal entry points of the harmony parser (harmony_parse.c).
 *
 * The public parser takes a tokenizer; tests and fuzzers can instead give a
 * callback that returns the bytes of a (non-special) token id, so they need no
 * tokenizer.json. Special ids (>= GPTOSS_TOK_STARTOFTEXT) are recognised by id. */
#ifndef GPTOSS_HARMONY_PARSE_H
#define GPTOSS_HARMONY_PARSE_H

#include "gptoss.h"

/* Bytes of token id, or NULL when the id is unknown. */
typedef const char *(*harmony_token_bytes_fn)(void *user, int32_t id, size_t *len);

/* Events one push or finish can produce; a max_events of at least this never drops one. */
#define HARMONY_MAX_EVENTS_PER_CALL 4
/* Header bytes kept before the header is given up as malformed. */
#define HARMONY_MAX_HEADER 512

gptoss_status harmony_parser_create_cb(harmony_token_bytes_fn fn, void *user, int expect_start_after_role,
                                       gptoss_harmony_parser **out);

#endif
