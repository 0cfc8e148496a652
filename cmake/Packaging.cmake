# Install layout and the Debian package (CPack DEB).
#
# Why CPack and not a debian/ directory: the build already knows every
# artefact and its install path, CPack needs nothing beyond CMake, and
# dpkg-shlibdeps (CPACK_DEBIAN_PACKAGE_SHLIBDEPS) still derives Depends from
# the binaries, so the package names Debian's runtime libraries instead of
# bundling them. scripts/package.sh builds it and runs lintian.
include(GNUInstallDirs)

set(MEMHP_DATADIR ${CMAKE_INSTALL_DATADIR}/memhp)
set(MEMHP_UNITDIR "lib/systemd/system" CACHE STRING "Where the systemd unit is installed (relative to the prefix)")

# ---- binaries ----
install(TARGETS memhp-exporter RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(MEMHP_BUILD_CLI)
  # memhp-agent and memhp-hog run inside lab guests, which see the host's
  # root: memhp finds them beside itself.
  install(TARGETS memhp memhp-agent memhp-hog RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# ---- the unit, dashboards and rules, docs ----
install(FILES ${CMAKE_BINARY_DIR}/memhp-exporter.service DESTINATION ${MEMHP_UNITDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/dashboards/ DESTINATION ${MEMHP_DATADIR}/dashboards
  PATTERN tests EXCLUDE)
install(FILES ${CMAKE_SOURCE_DIR}/docs/metrics.md ${CMAKE_SOURCE_DIR}/docs/trace-json.md
  ${CMAKE_SOURCE_DIR}/docs/ab-json.md ${CMAKE_SOURCE_DIR}/docs/ab-results.schema.json
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Debian policy 12.5 and 12.7: a copyright file and a compressed changelog.
install(FILES ${CMAKE_SOURCE_DIR}/packaging/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- man pages from --help (help2man), so they cannot drift from it ----
find_program(HELP2MAN help2man)
find_program(GZIP gzip REQUIRED)
set(MEMHP_MAN_DIR ${CMAKE_BINARY_DIR}/man)
set(MEMHP_MAN_PAGES)
# memhp_man_page(NAME TARGET [SUBCOMMAND] DESCRIPTION)
function(memhp_man_page name target sub description)
  set(wrapper ${MEMHP_MAN_DIR}/bin/${name})
  if(sub)
    file(GENERATE OUTPUT ${wrapper} CONTENT "#!/bin/sh\nexec \"$<TARGET_FILE:${target}>\" ${sub} \"$@\"\n"
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  else()
    file(GENERATE OUTPUT ${wrapper} CONTENT "#!/bin/sh\nexec \"$<TARGET_FILE:${target}>\" \"$@\"\n"
      FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endif()
  set(page ${MEMHP_MAN_DIR}/${name}.1)
  add_custom_command(OUTPUT ${page}.gz
    COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=1 --source=memhp
      --version-string=${PROJECT_VERSION} --name=${description}
      --include=${CMAKE_SOURCE_DIR}/packaging/man-common.h2m --output=${page} ${wrapper}
    COMMAND ${GZIP} -9nf ${page}
    DEPENDS ${target} ${CMAKE_SOURCE_DIR}/packaging/man-common.h2m
    COMMENT "Man page ${name}(1) from --help"
    VERBATIM)
  set(MEMHP_MAN_PAGES ${MEMHP_MAN_PAGES} ${page}.gz PARENT_SCOPE)
endfunction()

if(HELP2MAN)
  memhp_man_page(memhp-exporter memhp-exporter "" "Prometheus metrics for Linux memory hot(un)plug from BPF probes")
  if(MEMHP_BUILD_CLI)
    memhp_man_page(memhp memhp "" "eBPF observability and A/B benchmarking for Linux memory hot(un)plug")
    foreach(sub trace doctor lab ab compare report count-adds)
      memhp_man_page(memhp-${sub} memhp ${sub} "memhp ${sub} subcommand")
    endforeach()
    memhp_man_page(memhp-agent memhp-agent "" "memhp lab guest agent")
    memhp_man_page(memhp-hog memhp-hog "" "memory pressure and fragmentation for memhp ab scenarios")
  endif()
  add_custom_target(manpages ALL DEPENDS ${MEMHP_MAN_PAGES})
  install(FILES ${MEMHP_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found: no man pages (scripts/install-deps.sh installs it)")
endif()

# The changelog of a native package (no Debian revision), compressed as
# policy wants (gzip -n: reproducible).
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/packaging
  COMMAND sh -c "${GZIP} -9nc \"$0\" > \"$1\"" ${CMAKE_SOURCE_DIR}/packaging/changelog
    ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  DEPENDS ${CMAKE_SOURCE_DIR}/packaging/changelog
  VERBATIM)
add_custom_target(debian-changelog ALL DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog.gz)
install(FILES ${CMAKE_BINARY_DIR}/packaging/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- CPack: memhp_<version>_<arch>.deb ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME memhp)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "memhp developers <dev@memhp.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "eBPF observability for Linux memory hot(un)plug")
# CPack writes the summary as the synopsis and indents these lines itself.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "memhp traces memory hot-add, online, offline and remove with BPF probes:
how long each phase takes, where each hot-added memmap comes from (the
altmap of memmap_on_memory or the page allocator) and on which NUMA node it
sits. It contains memhp (trace, doctor, and an A/B benchmark harness for
QEMU lab guests), memhp-exporter (Prometheus metrics, with a hardened
systemd unit) and Grafana dashboards and Prometheus rules.")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/memhp/memhp")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_OUTPUT_FILE_PREFIX ${CMAKE_BINARY_DIR}/packages)
include(CPack)
