# Turn Lua files into one C array, in the order given:
#   cmake -DIN="a.lua;b.lua" -DOUT=file.c -P embed.cmake
set(bytes "")
foreach(file ${IN})
  file(READ ${file} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," part "${hex}")
  string(APPEND bytes "${part} 0x0a,")
endforeach()
file(WRITE ${OUT} "/* generated from the Redis function library; do not edit */\n"
  "#include <stddef.h>\n"
  "const char store_lua_source[] = {${bytes} 0};\n"
  "const size_t store_lua_size = sizeof(store_lua_source) - 1;\n")
