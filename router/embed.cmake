# Turn a text file into a C array: cmake -DIN=file -DOUT=file.c -P embed.cmake
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from store.lua; do not edit */\n#include <stddef.h>\n"
  "const char store_lua_source[] = {${bytes} 0};\n"
  "const size_t store_lua_size = sizeof(store_lua_source) - 1;\n")
