/*  ini_lines.c — see ini_lines.h. */
#include "ini_lines.h"

char *ini_lines_read(char *buffer, int size, void *stream)
{
    ini_lines_t *in = stream;
    char *line = fgets(buffer, size, in->file);
    if (line)
        in->line++;
    return line;
}
