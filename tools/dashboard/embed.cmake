# cmake -DIN=page.html -DOUT=page.cpp -P embed.cmake: the page as a C string
# in shop::dashboard::kPageHtml, byte for byte.
file(READ "${IN}" content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${content}")
file(WRITE "${OUT}" "// Generated from ${IN} by embed.cmake; do not edit.\n"
  "namespace shop::dashboard {\n"
  "namespace {\nconst char kBytes[] = {${bytes} '\\0'};\n}\n"
  "extern const char* const kPageHtml;\n"
  "const char* const kPageHtml = kBytes;\n"
  "}  // namespace shop::dashboard\n")
