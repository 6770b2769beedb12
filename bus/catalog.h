// The starter catalog: a JSON file read through capnp-json (schema Catalog
// in schemas/shop.capnp) and turned into AddProduct commands.
#pragma once

#include <string>
#include <vector>

#include "core/domain.h"

namespace shop::bus {

// Reads and parses `path`. Throws std::runtime_error naming the file, the
// entry and the field for anything wrong: not JSON, an unknown or missing
// field, a value the engine would reject, or a product listed twice. A
// catalog is all or nothing: shopd does not start on a bad one.
std::vector<AddProduct> loadCatalog(const std::string& path);
std::vector<AddProduct> parseCatalog(const std::string& json);

}  // namespace shop::bus
