/*  ini_lines.h — an inih stream reader that counts lines.

    Debian's inih hands its handlers no line numbers; the config and rules
    loaders read through this reader and take the line being handled from
    it, to say FILE:LINE in every message.
*/
#ifndef TIER_INI_LINES_H
#define TIER_INI_LINES_H

#include <stdio.h>

typedef struct {
    FILE *file; //  being read
    int line;   //  lines read so far = the line being handled
} ini_lines_t;

//  An ini_reader for ini_parse_stream; `stream` is an ini_lines_t.
char *ini_lines_read(char *buffer, int size, void *stream);

#endif
