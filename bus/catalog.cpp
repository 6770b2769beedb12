#include "bus/catalog.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "schemas/shop.capnp.h"

namespace shop::bus {

std::vector<AddProduct> parseCatalog(const std::string& json) {
  capnp::JsonCodec codec;
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Catalog>();
  try {
    codec.decode(kj::StringPtr(json.c_str(), json.size()), root);
  } catch (const kj::Exception& e) {
    throw std::runtime_error(e.getDescription().cStr());
  }
  std::vector<AddProduct> products;
  for (auto p : root.asReader().getProducts()) {
    products.push_back(AddProduct{p.getProduct(), p.getPrice(), p.getStock()});
  }
  return products;
}

std::vector<AddProduct> loadCatalog(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open catalog " + path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parseCatalog(text.str());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("catalog " + path + " is not valid: " + e.what());
  }
}

}  // namespace shop::bus
