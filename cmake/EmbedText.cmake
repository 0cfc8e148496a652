# memhp_embed_text(<target> <input file> <C++ identifier>)
# Generates a header <identifier>.hpp in the build tree holding the file's
# contents as `inline constexpr std::string_view <identifier>`, so binaries
# carry their guest scripts and do not depend on the source tree at run time.
function(memhp_embed_text target input ident)
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/embedded)
  set(out ${out_dir}/${ident}.hpp)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DINPUT=${input} -DOUTPUT=${out} -DIDENT=${ident}
            -P ${CMAKE_SOURCE_DIR}/cmake/EmbedTextScript.cmake
    DEPENDS ${input} ${CMAKE_SOURCE_DIR}/cmake/EmbedTextScript.cmake
    COMMENT "Embedding ${input}")
  target_sources(${target} PRIVATE ${out})
  target_include_directories(${target} PRIVATE ${out_dir})
endfunction()
