# The CMake package: find_package(shop CONFIG) gives shop::client (Client,
# CatchUpSubscriber, codec, domain values), shop::testkit (EmbeddedServer,
# EventProbe, EngineHarness) and, as the component `relay`, shop::relay (the
# delivery relay), and the layers below them.
include(CMakePackageConfigHelpers)

install(TARGETS shop_schemas shop_core shop_bus shop_client shop_testkit
        EXPORT shopTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${SHOP_INSTALL_INCLUDEDIR})
set(SHOP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/shop)
install(EXPORT shopTargets NAMESPACE shop:: DESTINATION ${SHOP_CMAKE_DIR})
# shop::relay in a set of its own: it links cpp-httplib, which a consumer of
# shop::client alone need not have (find_package(shop COMPONENTS relay)).
install(TARGETS shop_relay
        EXPORT shopRelayTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${SHOP_INSTALL_INCLUDEDIR})
install(EXPORT shopRelayTargets NAMESPACE shop:: DESTINATION ${SHOP_CMAKE_DIR})
configure_package_config_file(cmake/shopConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/shopConfig.cmake
                              INSTALL_DESTINATION ${SHOP_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/shopConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/shopConfig.cmake ${PROJECT_BINARY_DIR}/shopConfigVersion.cmake
        DESTINATION ${SHOP_CMAKE_DIR})

install(TARGETS shopd shopctl shop-dashboard shop-bench shop-echo shop-demo shop-relay
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
