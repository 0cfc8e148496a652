file(READ ${INPUT} content)
set(delim "memhp_embed")
file(WRITE ${OUTPUT} "#pragma once\n#include <string_view>\nnamespace memhp::embedded {\ninline constexpr std::string_view ${IDENT} = R\"${delim}(${content})${delim}\";\n}\n")
