// SPDX-License-Identifier: Apache-2.0
// memhp ab's fallback check: a multi-block add with memmap_on_memory=1. 6.1
// silently falls back to the page allocator, later kernels use the altmap
// for every block.
#include "memhp/error.hpp"
#include "memhp/size.hpp"
#include "modes.hpp"
#include "results_doc.hpp"

namespace memhp::ab::detail {

using nlohmann::json;

namespace {

// One fallback-size DIMM added and removed in r's guest; what its add's
// memmap came from, into `out`.
void check_one(Fleet& f, Runner& r, json& out) {
    const auto& cfg = f.cfg();
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg.timeout);
    auto d = r.mem->add_dimm(cfg.fallback_size, cfg.node, timeout);
    auto ops = r.trace->take([&](const std::vector<json>& o) { return lab::count_phase(o, "add") >= 1; });
    r.mem->remove(d, timeout);
    (void)r.trace->take([&](const std::vector<json>& o) { return lab::count_phase(o, "remove") >= 1; });
    std::uint64_t alt = 0, buddy = 0;
    bool unused = false;
    std::string reason;
    for (const auto& o : ops)
        if (o.value("phase", "") == "add") {
            alt += o["memmap"].value("altmap_pages", std::uint64_t{0});
            buddy += o["memmap"].value("buddy_pages", std::uint64_t{0});
            unused = unused || o.value("memmap_on_memory_unused", false);
            if (o.contains("unused_reason")) reason = o["unused_reason"];
        }
    out["altmap_bytes"] = alt * kPage;
    out["page_allocator_bytes"] = buddy * kPage;
    out["unused"] = unused;
    if (!reason.empty()) out["reason"] = reason;
    out["ops"] = ops;
    f.say("[" + r.name + "]   altmap " + format_size_human(alt * kPage) + ", page allocator " +
          format_size_human(buddy * kPage) + (unused ? ", flagged: " + reason : ""));
}

}  // namespace

void fallback_checks(Fleet& f) {
    const auto& cfg = f.cfg();
    if (cfg.fallback_size == 0) return;
    for (auto& r : f.runners()) {
        if (!r.error.empty() || !r.guest || !r.trace || r.device->kind() != DeviceKind::Dimm) continue;
        std::string param;
        try {
            param = r.mem->memmap_on_memory_param();
        } catch (const std::exception&) {
            continue;
        }
        if (param != "Y" && param != "force") continue;
        f.say("[" + r.name + "] fallback check: one " + format_size_human(cfg.fallback_size) +
              " DIMM with memmap_on_memory=" + param);
        json out{{"guest", r.name}, {"release", r.guest->release()}, {"dimm_bytes", cfg.fallback_size}};
        try {
            check_one(f, r, out);
        } catch (const Interrupted&) {
            throw;
        } catch (const std::exception& e) {
            out["error"] = e.what();
            f.say("[" + r.name + "]   fallback check failed: " + e.what());
        }
        f.doc().root()["fallback_check"].push_back(out);
    }
    f.doc().save();
}

}  // namespace memhp::ab::detail
