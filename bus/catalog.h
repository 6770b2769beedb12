// The starter catalog: a JSON file read through capnp-json (schema Catalog
// in schemas/shop.capnp) and turned into AddProduct commands.
#pragma once

#include <string>
#include <vector>

#include "core/domain.h"

namespace shop::bus {

// Reads and parses `path`. Throws std::runtime_error naming the file and
// what is wrong with it. Field values are checked later, by the engine, like
// any other command.
std::vector<AddProduct> loadCatalog(const std::string& path);
std::vector<AddProduct> parseCatalog(const std::string& json);

}  // namespace shop::bus
