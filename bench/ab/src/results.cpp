// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/results.hpp"

#include <algorithm>
#include <regex>

#include <cmath>
#include <limits>

#include "memhp/files.hpp"

namespace memhp::ab {

using nlohmann::json;

bool valid_arm_name(std::string_view name) {
    if (name.empty() || name.size() > 32) return false;
    auto alnum = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!alnum(name[0])) return false;
    for (char c : name)
        if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
    return true;
}

namespace {

constexpr std::uint64_t kMaxCount = 1u << 20;                // cycles, dimms, indexes
constexpr std::uint64_t kMaxBytes = std::uint64_t{1} << 50;  // 1 PiB: sizes memhp can hot-plug
constexpr std::size_t kMaxText = 1u << 20;                   // one string field (errors carry console lines)

// A view of one JSON value with its path, for messages.
class Field {
public:
    Field(const json& v, std::string path, const std::string& origin)
        : v_(v), path_(std::move(path)), origin_(origin) {}

    [[noreturn]] void fail(const std::string& what) const { throw BadResults(origin_ + ": " + path_ + ": " + what); }
    [[nodiscard]] const json& raw() const { return v_; }
    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] bool is_null() const { return v_.is_null(); }

    const Field& object() const {  // throws unless an object; returns *this for chaining
        if (!v_.is_object()) fail("expected an object, found " + kind());
        return *this;
    }
    [[nodiscard]] bool has(const char* key) const { return object().v_.contains(key); }
    // A member that must be present.
    [[nodiscard]] Field at(const char* key) const {
        if (!has(key)) fail(std::string("missing \"") + key + "\"");
        return {v_.at(key), path_ + "." + key, origin_};
    }
    [[nodiscard]] std::optional<Field> opt(const char* key) const {
        if (!has(key)) return std::nullopt;
        return Field(v_.at(key), path_ + "." + key, origin_);
    }
    // Elements of an array (or members of an object, path key-named).
    template <class F>
    void each(F&& f) const {
        if (!v_.is_array()) fail("expected an array, found " + kind());
        std::size_t i = 0;
        for (const auto& e : v_) f(Field(e, path_ + "[" + std::to_string(i++) + "]", origin_));
    }
    template <class F>
    void members(F&& f) const {
        object();
        for (const auto& [k, e] : v_.items()) f(k, Field(e, path_ + "." + k, origin_));
    }

    [[nodiscard]] std::string str(std::size_t max = kMaxText) const {
        if (!v_.is_string()) fail("expected a string, found " + kind());
        const auto& s = v_.get_ref<const std::string&>();
        if (s.size() > max)
            fail("string of " + std::to_string(s.size()) + " bytes, at most " + std::to_string(max) + " allowed");
        return s;
    }
    [[nodiscard]] bool boolean() const {
        if (!v_.is_boolean()) fail("expected true or false, found " + kind());
        return v_.get<bool>();
    }
    [[nodiscard]] double number(double lo = -std::numeric_limits<double>::max(),
                                double hi = std::numeric_limits<double>::max()) const {
        if (!v_.is_number()) fail("expected a number, found " + kind());
        const double d = v_.get<double>();
        if (!std::isfinite(d)) fail("not a finite number");
        if (d < lo || d > hi) fail("value " + v_.dump() + " is out of range [" + fmt(lo) + ", " + fmt(hi) + "]");
        return d;
    }
    [[nodiscard]] std::uint64_t uint(std::uint64_t lo = 0, std::uint64_t hi = kMaxBytes) const {
        std::uint64_t u = 0;
        if (v_.is_number_unsigned())
            u = v_.get<std::uint64_t>();
        else if (v_.is_number_integer() && v_.get<std::int64_t>() >= 0)
            u = static_cast<std::uint64_t>(v_.get<std::int64_t>());
        else if (v_.is_number_integer())
            fail("negative value " + v_.dump() + ", expected a non-negative integer");
        else
            fail("expected a non-negative integer, found " + kind());
        if (u < lo || u > hi)
            fail("value " + v_.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return u;
    }
    [[nodiscard]] std::int64_t integer(std::int64_t lo, std::int64_t hi) const {
        if (!v_.is_number_integer()) fail("expected an integer, found " + kind());
        if (v_.is_number_unsigned() && v_.get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
            fail("value " + v_.dump() + " is out of range");
        const auto i = v_.get<std::int64_t>();
        if (i < lo || i > hi)
            fail("value " + v_.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return i;
    }
    [[nodiscard]] std::string one_of(std::initializer_list<const char*> words) const {
        const auto s = str();
        std::string list;
        for (const char* w : words) {
            if (s == w) return s;
            list += std::string(list.empty() ? "" : ", ") + "\"" + w + "\"";
        }
        fail("\"" + s.substr(0, 64) + "\" is not one of " + list);
    }

private:
    [[nodiscard]] std::string kind() const {
        if (v_.is_number()) return "the number " + v_.dump();
        return v_.type_name();
    }
    static std::string fmt(double d) {
        char b[32];
        std::snprintf(b, sizeof b, "%g", d);
        return b;
    }

    const json& v_;
    std::string path_;
    const std::string& origin_;
};

OptionsRecord options_of(const Field& o) {
    OptionsRecord r;
    r.mode = o.at("mode").one_of({"cycles", "scale"});
    r.cycles = o.at("cycles").uint(1, kMaxCount);
    r.dimm_bytes = o.at("dimm_bytes").uint(1, kMaxBytes);
    r.dimms = o.at("dimms").uint(1, 1024);
    r.node = o.at("node").uint(0, 1024);
    r.zone = o.at("zone").one_of({"movable", "normal", "auto"});
    if (auto f = o.opt("scale_bytes")) r.scale_bytes = f->uint(0, kMaxBytes);
    if (auto f = o.opt("scale_device")) r.scale_device = f->one_of({"dimm", "virtio-mem"});
    r.scale_step_bytes = r.dimm_bytes;
    if (auto f = o.opt("scale_step_bytes"); f && r.mode == "scale") r.scale_step_bytes = f->uint(1, kMaxBytes);
    if (auto f = o.opt("scenario")) r.scenario = f->one_of({"none", "pressure", "fragmented"});
    if (auto f = o.opt("margins_bytes")) f->each([](const Field& m) { (void)m.uint(1, kMaxBytes); });
    for (const char* k : {"order", "fallback_kernel", "peer"})
        if (auto f = o.opt(k)) (void)f->str();
    if (auto f = o.opt("fallback_bytes")) (void)f->uint(0, kMaxBytes);
    return r;
}

void check_peer(const Field& p) {
    (void)p.at("tool").str();
    (void)p.at("attach_s").number(0);
    if (auto ph = p.opt("phases"))
        ph->members([](const std::string&, const Field& x) {
            (void)x.at("function").str();
            (void)x.at("cycles").uint(0, kMaxCount);
            (void)x.at("unmatched").uint(0, kMaxCount);
            for (const char* k : {"memhp_median_s", "bpftrace_median_s", "ratio", "median_rel_diff", "max_rel_diff"})
                if (auto f = x.opt(k)) (void)f->number();
        });
}

GuestRecord guest_of(const Field& g) {
    GuestRecord r;
    g.object();
    if (auto f = g.opt("release")) r.release = f->str();
    if (auto f = g.opt("memmap_on_memory")) r.memmap_on_memory = f->str();
    if (auto f = g.opt("probes")) r.probes = f->str();
    if (auto f = g.opt("auto_online_blocks")) r.auto_online_blocks = f->str(64);
    if (auto f = g.opt("boot_s")) r.boot_s = f->number(0);
    if (auto f = g.opt("attach_s")) r.attach_s = f->number(0);
    for (const char* k : {"package", "version", "qemu_cmdline"})
        if (auto f = g.opt(k)) (void)f->str();
    for (const char* k : {"block_size_bytes", "trace_dropped_events", "trace_decode_errors", "trace_orphan_page_events",
                          "trace_stale_ops", "trace_untraced_ops", "qemu_pid"})
        if (auto f = g.opt(k)) (void)f->uint(0, std::numeric_limits<std::uint64_t>::max());
    if (auto f = g.opt("trace_summary_missing")) (void)f->boolean();
    if (auto f = g.opt("peer")) check_peer(*f);
    r.trace_losses = trace_losses_text(g.raw());
    return r;
}

// The per-cycle scenario record (scenario.cpp reads it).
void check_cycle_scenario(const Field& s) {
    s.object();
    if (auto f = s.opt("margin_bytes")) (void)f->uint(0, kMaxBytes);
    if (auto f = s.opt("node0_free_before_bytes")) (void)f->number(0);
    if (auto f = s.opt("harness_ok")) (void)f->boolean();
    if (auto f = s.opt("adds"))
        f->each([](const Field& a) {
            a.object();
            for (const char* k : {"ok", "base_pages"})
                if (auto x = a.opt(k)) (void)x->boolean();
            if (auto x = a.opt("errno")) (void)x->integer(-4095, 4095);
            if (auto x = a.opt("oom_kills")) (void)x->uint(0, kMaxCount);
            if (auto x = a.opt("free_consumed_bytes")) (void)x->number(0);
        });
}

CycleRecord cycle_of(const Field& c) {
    CycleRecord r;
    c.object();
    if (auto f = c.opt("index")) r.index = f->uint(0, kMaxCount);
    if (auto f = c.opt("round")) (void)f->uint(0, kMaxCount);
    if (auto f = c.opt("ok")) r.ok = f->boolean();
    if (auto f = c.opt("error")) (void)f->str();
    if (auto f = c.opt("metrics"))
        f->members([&](const std::string& k, const Field& v) {
            if (k.size() > 128) v.fail("metric name longer than 128 bytes");
            // null (a NaN once written) or, in memhp ab's own document, a
            // NaN not yet written: not measured in this cycle.
            if (v.is_null() || (v.raw().is_number_float() && !std::isfinite(v.raw().get<double>()))) return;
            r.metrics[k] = v.number();
        });
    if (auto f = c.opt("phases"))
        f->each([&](const Field& p) {
            PhaseRecord ph;
            ph.phase = p.at("phase").str(64);
            if (auto x = p.opt("ok")) ph.ok = x->boolean();
            if (auto x = p.opt("error")) ph.error = x->str();
            r.phases.push_back(std::move(ph));
        });
    if (auto f = c.opt("scenario")) check_cycle_scenario(*f);
    for (const char* k : {"ops", "peer_ops"})
        if (auto f = c.opt(k)) f->each([](const Field& op) { op.object(); });
    return r;
}

ScaleStep scale_of(const Field& s) {
    ScaleStep r;
    s.object();
    if (auto f = s.opt("ok")) r.ok = f->boolean();
    if (!r.ok) return r;
    r.present_before_bytes = s.at("present_before_bytes").number(0);
    // probes=off has no probe times; auto-online has no wall_online_s.
    const auto optional = [&](const char* key) { return s.opt(key) ? s.at(key).number(0) : 0.0; };
    r.probe_add_s = optional("probe_add_s");
    r.probe_online_s = optional("probe_online_s");
    r.wall_add_s = s.at("wall_add_s").number(0);
    r.wall_online_s = optional("wall_online_s");
    r.e2e_s = optional("e2e_s");
    if (auto f = s.opt("blocks")) r.blocks = static_cast<double>(f->uint(1, 1u << 20));
    if (auto f = s.opt("sub_phases_s"))
        if (auto on = f->opt("online"))
            on->members([&](const std::string& name, const Field& v) {
                static const std::regex ok("[a-z0-9_]{1,48}");
                if (!std::regex_match(name, ok)) v.fail("not a kernel function name");
                if (r.online_sub_s.size() < 64) r.online_sub_s[name] = v.number(0);
            });
    return r;
}

ArmRecord arm_of(const Field& a) {
    ArmRecord r;
    const auto name = a.at("name");
    r.name = name.str(64);
    if (!valid_arm_name(r.name))
        name.fail("arm name \"" + printable_prefix(r.name) +
                  "\" breaks the --arm rule (1-32 letters, digits, '.', '_' or '-', starting with a letter or digit)");
    if (auto f = a.opt("kernel_spec")) r.kernel_spec = f->str(256);
    if (auto f = a.opt("online_requested")) r.online_requested = f->str(16);
    if (auto f = a.opt("device")) {
        r.device = f->str(16);
        if (r.device != "dimm" && r.device != "virtio-mem" && r.device != "dax")
            f->fail("device \"" + printable_prefix(r.device) + "\" is none of dimm, virtio-mem, dax");
    }
    if (auto f = a.opt("error")) (void)f->str();
    if (auto f = a.opt("guest"); f && !f->is_null()) r.guest = guest_of(*f);
    a.at("cycles").each([&](const Field& c) { r.cycles.push_back(cycle_of(c)); });
    if (auto f = a.opt("scale")) f->each([&](const Field& s) { r.scale.push_back(scale_of(s)); });
    if (auto f = a.opt("scenario_steps"))
        f->each([](const Field& st) {
            st.object();
            if (auto x = st.opt("hog_error")) (void)x->str();
            if (auto x = st.opt("restart")) (void)x->boolean();
            if (auto x = st.opt("margin_bytes")) (void)x->uint(0, kMaxBytes);
        });
    return r;
}

FallbackRecord fallback_of(const Field& f) {
    FallbackRecord r;
    f.object();
    if (auto x = f.opt("guest")) r.guest = x->str(64);
    if (auto x = f.opt("release")) r.release = x->str(256);
    if (auto x = f.opt("dimm_bytes")) r.dimm_bytes = x->number(0);
    if (auto x = f.opt("error")) r.error = x->str();
    if (auto x = f.opt("altmap_bytes")) r.altmap_bytes = x->number(0);
    if (auto x = f.opt("page_allocator_bytes")) r.page_allocator_bytes = x->number(0);
    if (auto x = f.opt("unused")) r.unused = x->boolean();
    if (auto x = f.opt("reason")) r.reason = x->str();
    return r;
}

}  // namespace

std::string trace_losses_text(const json& guest) {
    if (!guest.is_object()) return {};
    const auto count = [&](const char* key) -> std::uint64_t {
        const auto it = guest.find(key);
        if (it == guest.end() || !it->is_number_integer()) return 0;
        if (it->is_number_unsigned()) return it->get<std::uint64_t>();
        return static_cast<std::uint64_t>(std::max<long long>(it->get<long long>(), 0));  // built in memory
    };
    std::string parts;
    const auto part = [&](const char* key, const char* what) {
        if (const auto n = count(key)) parts += (parts.empty() ? "" : ", ") + std::to_string(n) + " " + what;
    };
    part("trace_dropped_events", "events dropped (ring buffer full)");
    part("trace_decode_errors", "records that did not decode");
    part("trace_orphan_page_events", "orphan page events (their op never completed)");
    part("trace_stale_ops", "stale ops aged out (their exit never came)");
    part("trace_untraced_ops", "ops not traced (op map full or nested too deep)");
    const auto missing = guest.find("trace_summary_missing");
    if (missing != guest.end() && missing->is_boolean() && missing->get<bool>())
        parts +=
            std::string(parts.empty() ? "" : ", ") + "a boot whose tracer ended without its summary (losses unknown)";
    return parts.empty() ? std::string() : "memhp's tracer lost events: " + parts;
}

std::string printable_prefix(const std::string& s) {
    // for messages: the first 40 bytes, non-printable ASCII and bytes >= 0x80 as \xNN
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < 40; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    if (s.size() > 40) out += "...";
    return out;
}

Results results_from_json(const json& doc, const std::string& origin) {
    Field root(doc, "$", origin);
    if (!doc.is_object()) root.fail("not a memhp ab results file (expected a JSON object)");
    if (!doc.contains("schema")) root.fail("not a memhp ab results file (no \"schema\" field)");
    const auto schema = root.at("schema");
    if (!schema.raw().is_string() || schema.raw().get_ref<const std::string&>() != kResultsSchema)
        schema.fail("schema " + schema.raw().dump().substr(0, 64) + " is not supported; this memhp reads " +
                    kResultsSchema);
    Results r;
    if (auto f = root.opt("title")) r.title = f->str(256);
    if (auto f = root.opt("status")) r.status = f->one_of({"running", "complete", "failed", "interrupted"});
    for (const char* k : {"memhp_version", "started", "finished"})
        if (auto f = root.opt(k)) (void)f->str(256);
    if (auto f = root.opt("wall_s")) (void)f->number(0);
    const auto arms = root.at("arms");
    arms.each([&](const Field& a) { r.arms.push_back(arm_of(a)); });
    if (r.arms.empty()) arms.fail("no arms in the results");
    for (std::size_t i = 0; i < r.arms.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (r.arms[i].name == r.arms[j].name) arms.fail("two arms are named \"" + r.arms[i].name + "\"");
    r.options = options_of(root.at("options").object());
    if (auto f = root.opt("fallback_check"))
        f->each([&](const Field& x) { r.fallback_check.push_back(fallback_of(x)); });
    if (auto f = root.opt("errors")) f->each([&](const Field& x) { r.errors.push_back(x.str()); });
    if (auto f = root.opt("plots")) f->members([](const std::string&, const Field& x) { (void)x.str(4096); });
    if (auto f = root.opt("scenario")) {
        // Rewritten from the arms by scenario_summary(); only its shape matters here.
        f->object();
        (void)f->at("name").str(64);
    }
    r.doc = doc;
    return r;
}

namespace {
struct TooDeep {};
}  // namespace

Results parse_results(std::string_view text, const std::string& origin) {
    if (text.size() > kMaxResultsBytes)
        throw BadResults(origin + ": " + std::to_string(text.size()) + " bytes, more than the " +
                         std::to_string(kMaxResultsBytes >> 20) + " MiB a results file may have");
    json doc;
    try {
        // The callback bounds the nesting while parsing (nlohmann's parser is
        // iterative, but a million-deep document still costs memory and dump()).
        doc = json::parse(
            text,
            [](int depth, json::parse_event_t, json&) {
                if (depth > kMaxResultsDepth) throw TooDeep{};
                return true;
            },
            true);
    } catch (const TooDeep&) {
        throw BadResults(origin + ": nested deeper than " + std::to_string(kMaxResultsDepth) +
                         " levels; not a memhp ab results file");
    } catch (const json::parse_error& e) {
        throw BadResults(origin + ": not valid JSON (" + std::string(e.what()).substr(0, 200) +
                         "; truncated? a results file is written by `memhp ab --out DIR` as DIR/results.json)");
    } catch (const json::exception& e) {  // out_of_range on numbers nlohmann cannot hold
        throw BadResults(origin + ": not valid JSON (" + std::string(e.what()).substr(0, 200) + ")");
    }
    return results_from_json(doc, origin);
}

Results load_results(const std::filesystem::path& path) {
    std::string text;
    try {
        text = read_file_bounded(path, kMaxResultsBytes);
    } catch (const FileTooLarge& e) {
        throw BadResults(std::string(e.what()) + " (a results file is at most " +
                         std::to_string(kMaxResultsBytes >> 20) + " MiB)");
    } catch (const Interrupted&) {
        throw;
    } catch (const Error& e) {
        throw BadResults(std::string(e.what()) +
                         " (does it exist? a results file is written by `memhp ab --out DIR` as DIR/results.json)");
    }
    return parse_results(text, path.string());
}

ArmRecord arm_from_json(const json& arm, const std::string& path) {
    static const std::string origin = "arm";
    return arm_of(Field(arm, path, origin));
}

const ArmRecord* find_arm(const Results& results, const std::string& name) {
    for (const auto& a : results.arms)
        if (a.name == name) return &a;
    return nullptr;
}

}  // namespace memhp::ab
