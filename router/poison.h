/*  poison.h — marking arena memory off-limits under AddressSanitizer.

    The router's arenas (outbox.c, journal.c) hand out memory that is valid
    until its batch is done, then reused. A pointer kept past that would
    read another batch's data without any crash: under AddressSanitizer the
    memory is poisoned when it is given back, so such a bug is reported at
    once. Without it the macros do nothing.
*/
#ifndef TIER_POISON_H
#define TIER_POISON_H

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void) (p), (void) (n))
#define UNPOISON(p, n) ((void) (p), (void) (n))
#endif

#endif
