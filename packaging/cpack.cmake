# Install rules and the Debian package (`make package` = `cd build && cpack -G DEB`).
# Included from the top-level CMakeLists.txt. Program paths are relative to
# CPACK_PACKAGING_INSTALL_PREFIX (/usr); /etc and /lib/systemd are absolute.
#
# The package installs drd and drctl, the systemd units, tmpfiles/sysusers
# snippets, the production config /etc/drd/drd.yaml (a conffile, from
# packaging/drd.yaml.packaged), gzipped man pages, bash completion and docs.
# Maintainer scripts (packaging/deb/) create the drd user and groups; they do
# not enable or start the service.

set(DRD_PKG_DIR ${PROJECT_SOURCE_DIR}/packaging)

# ---- programs ---------------------------------------------------------------
install(TARGETS drd DESTINATION sbin)
install(TARGETS drctl DESTINATION bin)

# ---- systemd ----------------------------------------------------------------
install(FILES ${PROJECT_SOURCE_DIR}/systemd/drd.service ${PROJECT_SOURCE_DIR}/systemd/drd.socket
        DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/drd.tmpfiles DESTINATION lib/tmpfiles.d RENAME drd.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/drd.sysusers DESTINATION lib/sysusers.d RENAME drd.conf)

# ---- configuration (conffile; postinst makes it 0640 root:drd) --------------
install(FILES ${DRD_PKG_DIR}/drd.yaml.packaged DESTINATION /etc/drd RENAME drd.yaml
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)

# ---- man pages, gzipped at build time ----------------------------------------
set(DRD_MAN_PAGES drd.8 drctl.8 drd.yaml.5)
set(DRD_MAN_OUTPUTS)
foreach(page ${DRD_MAN_PAGES})
  set(src ${DRD_PKG_DIR}/man/${page})
  set(out ${CMAKE_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND gzip -9 -n -c ${src} > ${out}
    DEPENDS ${src}
    COMMENT "gzip man page ${page}"
    VERBATIM)
  list(APPEND DRD_MAN_OUTPUTS ${out})
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  install(FILES ${out} DESTINATION share/man/man${section})
endforeach()
add_custom_target(drd_man ALL DEPENDS ${DRD_MAN_OUTPUTS})

# ---- completion, docs ---------------------------------------------------------
if(EXISTS ${DRD_PKG_DIR}/completion/drctl)
  install(FILES ${DRD_PKG_DIR}/completion/drctl DESTINATION share/bash-completion/completions)
endif()
file(GLOB DRD_DOCS ${PROJECT_SOURCE_DIR}/docs/*.md)
if(EXISTS ${PROJECT_SOURCE_DIR}/README.md)
  list(APPEND DRD_DOCS ${PROJECT_SOURCE_DIR}/README.md)
endif()
install(FILES ${DRD_DOCS} DESTINATION share/doc/drd)
file(GLOB DRD_EXAMPLE_CONFIGS ${PROJECT_SOURCE_DIR}/etc/examples/*.yaml)
if(DRD_EXAMPLE_CONFIGS)
  install(FILES ${DRD_EXAMPLE_CONFIGS} DESTINATION share/doc/drd/examples)
endif()

# ---- CPack -----------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME drd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "drd project")
set(CPACK_PACKAGE_CONTACT "drd maintainers <drd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "disaster-recovery daemon for SQLite and PostgreSQL")
set(CPACK_PACKAGE_DESCRIPTION
    "drd keeps one primary database and its standbys (SQLite files or PostgreSQL\n\
clusters) under watch: it probes them, fails over automatically, takes\n\
compressed and encrypted backups and restores them. drctl is its command-line\n\
client. The package installs systemd units but does not start the service.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies come from dpkg-shlibdeps; the maintainer scripts need adduser.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, bash-completion")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql-client, zstd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${DRD_PKG_DIR}/deb/conffiles ${DRD_PKG_DIR}/deb/postinst ${DRD_PKG_DIR}/deb/prerm ${DRD_PKG_DIR}/deb/postrm)
# Scripts 0755, conffiles 0644, whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
