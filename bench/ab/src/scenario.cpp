// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/scenario.hpp"

#include <signal.h>

#include <algorithm>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "memhp/ab/report.hpp"
#include "memhp/ab/stats.hpp"
#include "memhp/files.hpp"
#include "memhp/procfs.hpp"
#include "memhp/size.hpp"
#include "memhp/stop.hpp"

namespace memhp::ab {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;
constexpr std::uint64_t kPage = 4096;

Scenario parse_scenario(const std::string& text) {
    if (text.empty() || text == "none") return Scenario::None;
    if (text == "pressure") return Scenario::Pressure;
    if (text == "fragmented") return Scenario::Fragmented;
    throw UsageError("--scenario " + text + ": use pressure or fragmented");
}

const char* scenario_name(Scenario s) {
    switch (s) {
        case Scenario::None: return "none";
        case Scenario::Pressure: return "pressure";
        case Scenario::Fragmented: return "fragmented";
    }
    return "none";
}

std::vector<std::uint64_t> parse_margins(const std::string& text) {
    std::vector<std::uint64_t> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto v = parse_size(trim(item));
        if (v == 0) throw UsageError("--margins: a margin of 0 leaves the kernel nothing; use sizes like 32M");
        out.push_back(v);
    }
    if (out.empty()) throw UsageError("--margins: give at least one size, e.g. 32M,16M,8M");
    std::sort(out.rbegin(), out.rend());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

// ---- the hog ---------------------------------------------------------------

GuestHog::GuestHog(lab::Machine& guest, Scenario s, std::uint64_t margin, int node, Ms timeout) : guest_(guest) {
    auto& agent = guest_.agent();
    const std::string hog = (lab::default_agent_path().parent_path() / "memhp-hog").string();
    out_ = "/tmp/memhp-hog." + std::to_string(::getpid()) + ".out";
    std::vector<std::string> argv{hog, s == Scenario::Pressure ? "pressure" : "fragment", "--node",
                                  std::to_string(node)};
    if (s == Scenario::Pressure) {
        argv.push_back("--margin");
        argv.push_back(std::to_string(margin));
    }
    pid_ = agent.spawn(argv, out_);
    const auto t0 = Clock::now();
    while (true) {
        const auto text = agent.try_read(out_).value_or("");
        if (auto at = text.find("memhp-hog: ready ");
            at != std::string::npos && text.find('\n', at) != std::string::npos) {
            ready_ = json::parse(text.substr(at + 17, text.find('\n', at) - at - 17), nullptr, false);
            if (ready_.is_discarded()) throw Error("memhp-hog printed an unreadable ready line:\n" + text);
            return;
        }
        if (auto code = agent.wait(pid_, Ms(200))) {
            exit_ = *code;
            pid_ = -1;
            throw Error("memhp-hog exited (" + std::to_string(*code) +
                        (*code == 137 ? ", SIGKILL: the OOM killer?" : "") + ") before it was ready:\n" +
                        agent.try_read(out_).value_or(""));
        }
        if (Clock::now() - t0 > timeout)
            throw Error("memhp-hog was not ready within " + std::to_string(timeout.count() / 1000) + " s:\n" + text);
        check_stop();
    }
}

GuestHog::~GuestHog() {
    if (pid_ < 0) return;
    try {
        guest_.agent().signal(pid_, SIGKILL);
        (void)guest_.agent().wait(pid_, Ms(10000));
    } catch (...) {  // the guest may be gone
    }
}

bool GuestHog::alive() {
    if (pid_ < 0) return false;
    if (auto code = guest_.agent().wait(pid_, Ms(0))) {
        exit_ = *code;
        pid_ = -1;
        return false;
    }
    return true;
}

void GuestHog::stop(Ms timeout) {
    if (pid_ < 0) return;
    guest_.agent().signal(pid_, SIGTERM);
    auto code = guest_.agent().wait(pid_, timeout);
    if (!code) {
        guest_.agent().signal(pid_, SIGKILL);
        code = guest_.agent().wait(pid_, timeout);
    }
    exit_ = code;
    pid_ = -1;
}

// ---- one add -----------------------------------------------------------------

AddMemmap split_add_memmap(const json& add) {
    AddMemmap m;
    const auto mm = add.value("memmap", json::object());
    m.expected = add.value("nr_pages", std::uint64_t{0}) * 64 / kPage;
    m.altmap = mm.value("altmap_pages", std::uint64_t{0});
    const auto buddy = mm.value("buddy_pages", std::uint64_t{0});
    if (mm.value("base_pages", std::uint64_t{0}) > 0) {
        m.base_pages = mm["base_pages"].get<std::uint64_t>();
        m.pmd = buddy > m.base_pages ? buddy - m.base_pages : 0;
        return m;
    }
    m.pmd = buddy;
    const auto covered = m.altmap + m.pmd;
    if (m.expected > covered)
        m.base_pages = std::min(m.expected - covered, mm.value("pagetable_pages", std::uint64_t{0}));
    return m;
}

std::uint64_t guest_oom_kills(lab::Machine& guest) {
    const auto text = guest.agent().read("/proc/vmstat");
    std::istringstream in(text);
    std::string key;
    std::uint64_t v = 0;
    while (in >> key >> v)
        if (key == "oom_kill") return v;
    return 0;
}

namespace {

std::uint64_t node_free_bytes(const lab::MemorySnapshot& s, int node) { return s.node(node).free_kb * 1024; }

// The "Killed process" lines of the guest's kernel log after the first `seen`.
std::vector<std::string> oom_victims(lab::Machine& guest, std::size_t& seen) {
    std::vector<std::string> out;
    const auto r = guest.agent().exec({"dmesg"}, Ms(20000));
    std::istringstream in(r.out);
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
        const auto at = line.find("Killed process");
        if (at == std::string::npos) continue;
        if (++n > seen) out.push_back(line.substr(at));
    }
    seen = n;
    return out;
}

std::optional<json> add_record_for(const std::vector<json>& ops, std::uint64_t start_pfn) {
    for (const auto& o : ops)
        if (o.value("phase", "") == "add" && o.value("start_pfn", std::uint64_t{0}) == start_pfn) return o;
    return std::nullopt;
}

bool blocks_present(lab::MemoryLab& mem, const lab::Dimm& d) {
    const auto ids = mem.block_ids();
    return std::all_of(d.blocks.begin(), d.blocks.end(),
                       [&](int b) { return std::binary_search(ids.begin(), ids.end(), b); });
}

// Hot-adds one DIMM and waits for the guest's verdict.
json add_one(lab::Machine& guest, lab::MemoryLab& mem, lab::GuestTrace& trace, const lab::CycleOptions& opts,
             std::vector<json>& ops, std::vector<lab::Dimm>& plugged, std::size_t& victims_seen) {
    json a = json::object();
    if (auto bi = guest.agent().try_read("/proc/buddyinfo"))
        a["high_order_free_blocks_before"] = memhp::high_order_free_blocks(memhp::parse_buddyinfo(*bi), 0, 9);
    const auto oom0 = guest_oom_kills(guest);
    const auto t0 = Clock::now();
    const auto d = mem.plug_dimm(opts.dimm_size, opts.node);
    plugged.push_back(d);
    a["dimm"] = d.id;
    const std::uint64_t pfn = d.addr / kPage;
    std::optional<json> rec;
    bool present = false;
    const auto deadline = Clock::now() + opts.timeout;
    while (true) {
        auto fresh = trace.take([](const std::vector<json>& o) { return lab::count_phase(o, "add") > 0; }, Ms(200));
        ops.insert(ops.end(), fresh.begin(), fresh.end());
        if (!rec) rec = add_record_for(ops, pfn);
        if (!present) present = blocks_present(mem, d);
        if (rec && (present || rec->value("ret", 0) < 0)) break;
        if (present && !rec && Clock::now() - t0 > opts.timeout / 4) break;  // blocks there, probes silent
        if (Clock::now() > deadline) break;
        guest.check_alive();
    }
    a["wall_s"] = std::chrono::duration<double>(Clock::now() - t0).count();
    const int ret = rec ? rec->value("ret", 0) : 0;
    a["ok"] = present && ret == 0;
    if (rec) {
        a["ret"] = ret;
        const auto m = split_add_memmap(*rec);
        a["memmap"] = {{"expected_pages", m.expected},
                       {"altmap_pages", m.altmap},
                       {"pmd_pages", m.pmd},
                       {"base_pages", m.base_pages}};
        a["base_pages"] = m.base_pages > 0;
        a["free_consumed_bytes"] = rec->value("free_bytes_consumed", std::uint64_t{0});
        a["duration_s"] = rec->value("duration_ns", 0.0) / 1e9;
    }
    if (ret < 0) {
        a["errno"] = -ret;
        a["error"] = "add_memory() failed in the guest: " + errno_text("", -ret).substr(2);
    } else if (!present) {
        a["error"] = "the guest did not show the DIMM's memory blocks within " +
                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(opts.timeout).count()) + " s" +
                     (rec ? "" : " and the probes saw no add");
    } else if (!rec) {
        a["error"] = "memhp's probes reported no add for this DIMM";
    }
    const auto oom = guest_oom_kills(guest) - oom0;
    a["oom_kills"] = oom;
    if (oom) a["oom_victims"] = oom_victims(guest, victims_seen);
    return a;
}

}  // namespace

ScenarioCycle run_scenario_cycle(lab::Machine& guest, lab::MemoryLab& mem, lab::GuestTrace& trace,
                                 const lab::CycleOptions& opts, int index) {
    ScenarioCycle sc;
    auto& c = sc.cycle;
    c.index = index;
    json adds = json::array();
    std::vector<lab::Dimm> plugged;
    std::size_t victims_seen = 0;
    std::uint64_t oom_total = 0;
    bool harness_ok = true;
    try {
        c.before = mem.snapshot();
        victims_seen = [&] {
            std::size_t n = 0;
            (void)oom_victims(guest, n);
            return n;
        }();
        const auto oom0 = guest_oom_kills(guest);
        sc.scenario["node0_free_before_bytes"] = node_free_bytes(c.before, 0);
        if (auto bi = guest.agent().try_read("/proc/buddyinfo")) {
            const auto zones = memhp::parse_buddyinfo(*bi);
            sc.scenario["high_order_free_blocks_before"] = memhp::high_order_free_blocks(zones, 0, 9);
            sc.scenario["buddyinfo_before"] = *bi;
        }
        // add: one DIMM at a time, each judged on its own
        lab::PhaseRecord add;
        add.phase = "add";
        auto t0 = Clock::now();
        std::vector<lab::Dimm> good;
        for (int i = 0; i < opts.dimms; ++i) {
            auto a = add_one(guest, mem, trace, opts, sc.ops, plugged, victims_seen);
            if (a["ok"].get<bool>()) {
                good.push_back(plugged.back());
            } else if (add.ok) {
                add.ok = false;
                add.error = a.value("error", std::string("add failed"));
                add.guest_errno = a.value("errno", 0);
            }
            oom_total += a["oom_kills"].get<std::uint64_t>();
            adds.push_back(a);
        }
        c.dimms = plugged;
        add.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
        add.after = mem.snapshot();
        c.phases.push_back(add);
        sc.scenario["node0_free_after_add_bytes"] = node_free_bytes(add.after, 0);
        if (auto bi = guest.agent().try_read("/proc/buddyinfo")) sc.scenario["buddyinfo_after_add"] = *bi;
        // online, offline: the DIMMs the guest added; remove: every DIMM plugged
        for (const std::string name : {"online", "offline", "remove"}) {
            lab::PhaseRecord p;
            p.phase = name;
            t0 = Clock::now();
            try {
                if (name == "online") {
                    for (const auto& d : good)
                        opts.kernel_onlines ? mem.wait_online(d, opts.timeout) : mem.online(d, opts.zone);
                    if (!good.empty()) c.zone = mem.zone_of(good.front());
                } else if (name == "offline") {
                    for (const auto& d : good) mem.offline(d);
                } else {
                    c.device_deleted = true;
                    for (const auto& d : plugged) c.device_deleted = mem.remove(d, opts.timeout) && c.device_deleted;
                    plugged.clear();
                }
                p.after = mem.snapshot();
            } catch (const Interrupted&) {
                throw;
            } catch (const lab::AgentError& e) {
                p.ok = false;
                p.error = e.what();
                p.guest_errno = e.guest_errno();
            } catch (const lab::GuestError&) {
                throw;
            } catch (const std::exception& e) {
                p.ok = false;
                p.error = e.what();
            }
            p.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            c.phases.push_back(p);
            if (!p.ok) {
                harness_ok = false;
                c.cleanup = "stopped after the failed " + name + "; " + std::to_string(plugged.size()) +
                            " DIMM(s) left in the guest";
                break;
            }
        }
        // The remove records, so the next cycle's ops are its own.
        const auto removes = good.size();
        if (harness_ok && removes) {
            auto rest =
                trace.take([&](const std::vector<json>& o) { return lab::count_phase(o, "remove") >= removes; });
            sc.ops.insert(sc.ops.end(), rest.begin(), rest.end());
        }
        oom_total = std::max(oom_total, guest_oom_kills(guest) - oom0);
    } catch (const Interrupted&) {
        throw;
    } catch (const std::exception& e) {
        harness_ok = false;
        c.guest_lost = !guest.alive();
        c.dimms = plugged;
        c.phases.push_back({c.phases.empty() ? "add" : "remove", 0, false, e.what(), 0, {}});
        c.cleanup = c.guest_lost ? "guest lost" : std::string("stopped: ") + e.what();
    }
    sc.scenario["adds"] = adds;
    sc.scenario["oom_kills"] = oom_total;
    sc.scenario["harness_ok"] = harness_ok;
    return sc;
}

// ---- the summary -------------------------------------------------------------

namespace {

struct Tally {
    int adds = 0, ok = 0, failed = 0, base = 0, oom = 0;
    std::map<int, int> errnos;
    std::vector<double> free_consumed, node0_free;
    [[nodiscard]] bool failing() const { return failed > 0 || oom > 0; }
};

json tally_json(const Tally& t) {
    json j{{"adds", t.adds}, {"succeeded", t.ok}, {"failed", t.failed}, {"base_pages", t.base}, {"oom_kill", t.oom}};
    json e = json::object();
    for (const auto& [k, v] : t.errnos) e[std::to_string(k)] = v;
    j["failed_by_errno"] = e;
    if (!t.free_consumed.empty()) j["free_consumed_bytes_median"] = summarize(t.free_consumed).median;
    if (!t.node0_free.empty()) j["node0_free_before_bytes_median"] = summarize(t.node0_free).median;
    return j;
}

std::string errno_name(int e) {
    switch (e) {
        case 12: return "ENOMEM";
        case 16: return "EBUSY";
        case 17: return "EEXIST";
        case 22: return "EINVAL";
        default: return "errno " + std::to_string(e);
    }
}

std::string mib(double bytes) { return format_value(bytes, "bytes"); }

}  // namespace

json scenario_summary(const json& results) {
    const auto& o = results["options"];
    const std::string name = o.value("scenario", std::string("none"));
    json out{{"name", name}, {"arms", json::array()}};
    if (name == "none") return out;
    std::vector<std::string> clauses;
    for (const auto& a : results["arms"]) {
        // margin (0 = the single fragmented step) -> tally; margins largest first
        std::map<std::uint64_t, Tally, std::greater<>> by;
        Tally all;
        for (const auto& c : a["cycles"]) {
            if (!c.contains("scenario")) continue;
            const auto& s = c["scenario"];
            auto& t = by[s.value("margin_bytes", std::uint64_t{0})];
            if (s.contains("node0_free_before_bytes"))
                t.node0_free.push_back(s["node0_free_before_bytes"].get<double>());
            for (const auto& add : s.value("adds", json::array())) {
                for (Tally* x : {&t, &all}) {
                    ++x->adds;
                    if (add.value("ok", false))
                        ++x->ok;
                    else {
                        ++x->failed;
                        if (add.contains("errno")) ++x->errnos[add["errno"].get<int>()];
                    }
                    if (add.value("base_pages", false)) ++x->base;
                    if (add.value("oom_kills", 0) > 0) ++x->oom;
                }
                if (add.contains("free_consumed_bytes"))
                    t.free_consumed.push_back(add["free_consumed_bytes"].get<double>());
            }
        }
        const json guest = a.value("guest", json::object());
        const std::string mmo = guest.is_object() ? guest.value("memmap_on_memory", std::string("?")) : "?";
        json arm{
            {"name", a["name"]}, {"memmap_on_memory", mmo}, {"total", tally_json(all)}, {"by_margin", json::array()}};
        std::optional<std::uint64_t> first_fail, first_base;
        for (const auto& [margin, t] : by) {
            auto j = tally_json(t);
            if (name == "pressure") j["margin_bytes"] = margin;
            arm["by_margin"].push_back(j);
            if (t.failing() && !first_fail) first_fail = margin;
            if (t.base && !first_base) first_base = margin;
        }
        std::vector<std::uint64_t> unreachable;  // margins the hog never got ready at
        for (const auto& st : a.value("scenario_steps", json::array()))
            if (st.contains("hog_error") && !st.value("restart", false) && st.contains("margin_bytes") &&
                !by.count(st["margin_bytes"].get<std::uint64_t>()))
                unreachable.push_back(st["margin_bytes"]);
        if (name == "pressure") {
            arm["unreachable_margins_bytes"] = unreachable;
            arm["first_failing_margin_bytes"] = first_fail ? json(*first_fail) : json(nullptr);
            arm["first_base_pages_margin_bytes"] = first_base ? json(*first_base) : json(nullptr);
        }
        // One clause per arm for the sentence.
        std::ostringstream cl;
        cl << a["name"].get<std::string>() << " (memmap_on_memory=" << mmo << ") ";
        if (all.adds == 0) {
            cl << "made no adds";
        } else {
            cl << all.ok << " of " << all.adds << " adds succeeded";
            if (all.failed) {
                cl << ", " << all.failed << " failed";
                if (!all.errnos.empty()) cl << " (" << errno_name(all.errnos.begin()->first) << ")";
            }
            if (all.base) cl << ", " << all.base << " mapped the memmap with 4 KiB base pages";
            if (all.oom) cl << ", " << all.oom << " triggered the OOM killer";
            if (name == "pressure") {
                if (first_fail)
                    cl << "; it first failed at a margin of " << mib(static_cast<double>(*first_fail));
                else if (!by.empty())
                    cl << "; it never failed down to " << mib(static_cast<double>(by.rbegin()->first));
            }
        }
        if (!unreachable.empty()) {
            cl << " (memhp-hog could not hold node 0 at";
            for (auto m : unreachable) cl << " " << mib(static_cast<double>(m));
            cl << ": it was killed on the way)";
        }
        clauses.push_back(cl.str());
        out["arms"].push_back(arm);
    }
    std::string sentence = name == "pressure" ? "With node 0's free memory locked down to each margin, "
                                              : "With node 0 fragmented (no free block of order 9 or more), ";
    for (std::size_t i = 0; i < clauses.size(); ++i)
        sentence += (i ? (i + 1 == clauses.size() ? ", while " : ", ") : "") + clauses[i];
    out["verdict"] = sentence + ".";
    return out;
}

std::string scenario_markdown(const json& results) {
    const auto s = scenario_summary(results);
    if (s["name"] == "none") return {};
    const bool pressure = s["name"] == "pressure";
    std::ostringstream md;
    md << "\n### Scenario: " << s["name"].get<std::string>()
       << (pressure ? " (node 0's free memory locked down to a margin by memhp-hog)"
                    : " (node 0 left with no free block of order >= 9 by memhp-hog, compaction off)")
       << "\n\n**" << s["verdict"].get<std::string>() << "**\n\n";
    md << "| arm | memmap_on_memory |" << (pressure ? " margin |" : "")
       << " adds | succeeded | failed | base-page memmap | OOM kill | free memory consumed per add | node 0 MemFree "
          "before |\n"
       << "|---|---|" << (pressure ? "---:|" : "") << "---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& a : s["arms"])
        for (const auto& t : a["by_margin"]) {
            md << "| " << a["name"].get<std::string>() << " | " << a["memmap_on_memory"].get<std::string>() << " | ";
            if (pressure) md << mib(t.value("margin_bytes", 0.0)) << " | ";
            md << t["adds"] << " | " << t["succeeded"] << " | " << t["failed"];
            for (const auto& [e, n] : t["failed_by_errno"].items())
                md << " (" << n << "× " << errno_name(std::stoi(e)) << ")";
            md << " | " << t["base_pages"] << " | " << t["oom_kill"] << " | "
               << (t.contains("free_consumed_bytes_median") ? mib(t["free_consumed_bytes_median"].get<double>()) : "–")
               << " | "
               << (t.contains("node0_free_before_bytes_median") ? mib(t["node0_free_before_bytes_median"].get<double>())
                                                                : "–")
               << " |\n";
        }
    md << "\nper add: succeeded = the guest added the memory; base-page memmap = the memmap came as order-0 pages "
          "(vmemmap_populate_basepages) instead of a PMD-sized block; OOM kill = /proc/vmstat oom_kill rose during the "
          "add; free memory consumed = the probes' page-allocator pages taken (median).\n";
    return md.str();
}

}  // namespace memhp::ab
