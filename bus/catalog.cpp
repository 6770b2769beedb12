#include "bus/catalog.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "bus/json.h"
#include "core/validation.h"
#include "schemas/shop.capnp.h"

namespace shop::bus {
namespace {

// {"products": [{"product": ...}]}: 3 levels; more is not a catalog.
constexpr int kCatalogDepth = 8;

std::string entryName(size_t index, const std::string& product) {
  std::string out = "product #" + std::to_string(index + 1);
  if (!product.empty()) out += " ('" + displayId(product) + "')";
  return out;
}

// The catalog's shape, checked on the raw JSON before it is decoded: capnp's
// decoder skips fields it does not know, so a typo would silently become a
// product with no price.
void checkShape(capnp::json::Value::Reader root) {
  if (!root.isObject()) throw std::runtime_error("expected an object with a \"products\" list");
  bool hasProducts = false;
  for (auto field : root.getObject()) {
    std::string name = field.getName();
    if (name != "products") {
      throw std::runtime_error("unknown field '" + name + "' (expected \"products\")");
    }
    hasProducts = true;
    auto value = field.getValue();
    if (!value.isArray()) throw std::runtime_error("\"products\" must be a list");
    size_t index = 0;
    for (auto entry : value.getArray()) {
      if (!entry.isObject()) {
        throw std::runtime_error(entryName(index, "") + " must be an object");
      }
      std::map<std::string, bool> seen;
      std::string product;
      for (auto f : entry.getObject()) {
        std::string key = f.getName();
        if (key != "product" && key != "price" && key != "stock") {
          throw std::runtime_error(entryName(index, product) + ": unknown field '" + key +
                                   "' (expected product, price, stock)");
        }
        if (key == "product" && f.getValue().isString()) product = f.getValue().getString();
        seen[key] = true;
      }
      for (const char* required : {"product", "price"}) {
        if (!seen.count(required)) {
          throw std::runtime_error(entryName(index, product) + ": missing field '" + required +
                                   "'");
        }
      }
      ++index;
    }
  }
  if (!hasProducts) throw std::runtime_error("missing field \"products\"");
}

}  // namespace

std::vector<AddProduct> parseCatalog(const std::string& json) {
  capnp::JsonCodec codec;
  // Parsed by parseJson (bus/json.h), which reads \u escapes right.
  capnp::MallocMessageBuilder raw;
  auto value = raw.initRoot<capnp::json::Value>();
  try {
    parseJson(json, value, kCatalogDepth);
  } catch (const JsonError& e) {
    throw std::runtime_error(std::string("not valid JSON: ") + e.what());
  }
  checkShape(value.asReader());
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Catalog>();
  try {
    codec.decode(value.asReader(), root);
  } catch (const kj::Exception& e) {
    throw std::runtime_error(e.getDescription().cStr());
  }
  // Every value is checked now, as the engine would check it, so that a bad
  // entry stops the start instead of leaving the shop without it.
  std::vector<AddProduct> products;
  std::map<std::string, size_t> names;
  for (auto p : root.asReader().getProducts()) {
    AddProduct product{p.getProduct(), p.getPrice(), p.getStock()};
    size_t index = products.size();
    if (auto invalid = validate(Command{CommandId{}, product})) {
      throw std::runtime_error(entryName(index, product.product) + ": " + invalid->detail);
    }
    if (auto [at, fresh] = names.emplace(product.product, index); !fresh) {
      throw std::runtime_error(entryName(index, product.product) + ": the same product as #" +
                               std::to_string(at->second + 1));
    }
    products.push_back(std::move(product));
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
    throw std::runtime_error("catalog " + path + ": " + e.what());
  }
}

}  // namespace shop::bus
