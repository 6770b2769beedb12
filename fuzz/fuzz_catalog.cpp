// libFuzzer target: untrusted catalog text through bus::parseCatalog, as
// `shopd --catalog FILE` reads it.
//
// parseCatalog documents one failure: std::runtime_error, naming what is
// wrong. Only that is caught; any other exception (kj::Exception from the
// JSON decoder, std::logic_error, ...) or a crash is a finding.
//
// Invariants (FUZZ_EXPECT) on a catalog that parses:
//  - every product passes the engine's validation, and no name repeats;
//  - the products, written back as JSON by capnp-json, parse to themselves.
#include <capnp/compat/json.h>
#include <capnp/message.h>

#include <cinttypes>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "bus/catalog.h"
#include "core/event_codec.h"
#include "core/validation.h"
#include "fuzz/harness.h"
#include "schemas/shop.capnp.h"

namespace shop::fuzz {
namespace {

std::string asJson(const std::vector<AddProduct>& products) {
  capnp::MallocMessageBuilder message;
  auto list =
      message.initRoot<wire::Catalog>().initProducts(static_cast<unsigned>(products.size()));
  for (unsigned i = 0; i < products.size(); ++i) {
    list[i].setProduct(textOf(products[i].product));
    list[i].setPrice(products[i].price);
    list[i].setStock(products[i].stock);
  }
  capnp::JsonCodec codec;
  return codec.encode(message.getRoot<wire::Catalog>().asReader()).cStr();
}

bool same(const std::vector<AddProduct>& a, const std::vector<AddProduct>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].product != b[i].product || a[i].price != b[i].price || a[i].stock != b[i].stock) {
      return false;
    }
  }
  return true;
}

void checkCatalog(const std::string& json) {
  std::vector<AddProduct> products;
  try {
    products = bus::parseCatalog(json);
  } catch (const std::runtime_error&) {
    return;  // a bad catalog, reported as documented
  }
  std::set<std::string> names;
  for (const auto& p : products) {
    auto invalid = validate(Command{CommandId{}, p});
    FUZZ_EXPECT(!invalid, "accepted product fails validation: %s", invalid->detail.c_str());
    FUZZ_EXPECT(names.insert(p.product).second, "product listed twice");
  }
  std::string again = asJson(products);
  std::vector<AddProduct> reparsed;
  try {
    reparsed = bus::parseCatalog(again);
  } catch (const std::runtime_error& e) {
    FUZZ_EXPECT(false, "a catalog written back does not parse: %s\n%s", e.what(), again.c_str());
  }
  FUZZ_EXPECT(same(products, reparsed), "a catalog written back parses differently:\n%s",
              again.c_str());
}

}  // namespace
}  // namespace shop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shop::fuzz::checkCatalog(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
