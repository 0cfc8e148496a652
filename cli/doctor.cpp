// SPDX-License-Identifier: Apache-2.0
#include "doctor.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/host_config.hpp"
#include "memhp/collector/probe_backend.hpp"
#include "memhp/files.hpp"
#include "memhp/size.hpp"

namespace memhp::cli {
namespace {

namespace fs = std::filesystem;

std::optional<std::string> read_word(const fs::path& p) {
    auto t = try_read_file(p);
    if (!t) return std::nullopt;
    return trim(*t);
}

// Whether /proc/kallsyms shows addresses: the first text symbol's is not 0
// (per-CPU symbols at its start are 0 either way). Reads at most 4096 lines
// of the 10 MB list. nullopt when unreadable or no text symbol came.
std::optional<bool> kallsyms_addresses(const fs::path& p) {
    std::ifstream in(p);
    std::string addr, type, name;
    for (int i = 0; i < 4096 && in >> addr >> type && std::getline(in, name); ++i)
        if (type == "T" || type == "t") return addr.find_first_not_of('0') != std::string::npos;
    return std::nullopt;
}

std::size_t count_entries(const fs::path& dir, const std::string& prefix = "") {
    std::error_code ec;
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (prefix.empty() || e.path().filename().string().starts_with(prefix)) ++n;
    return n;
}

// "CONFIG_X=y" lines of root/boot/config-<release>, when Debian's copy is there.
std::map<std::string, std::string> kernel_config(const fs::path& root, const std::string& release) {
    std::map<std::string, std::string> out;
    if (release.empty()) return out;
    auto text = try_read_file(root / "boot" / ("config-" + release));
    if (!text) return out;
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.starts_with("CONFIG_")) continue;
        const auto eq = line.find('=');
        if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return out;
}

bool has_cap(std::uint64_t mask, int cap) { return (mask >> cap) & 1U; }

struct Report {
    std::vector<Check> checks;
    Check& add(std::string id, std::string title, CheckStatus st, std::string value, std::string remedy = {},
               bool essential = false) {
        checks.push_back({std::move(id), std::move(title), st, std::move(value), std::move(remedy), essential, {}});
        return checks.back();
    }
};

void check_kernel(Report& r, const fs::path& root, std::string& release) {
    release = read_word(root / "proc/sys/kernel/osrelease").value_or("");
    r.add("kernel", "kernel release", CheckStatus::Info,
          release.empty() ? "unknown (no proc/sys/kernel/osrelease)" : release)
        .data = {{"release", release}};
}

void check_privileges(Report& r, const fs::path& root) {
    const auto status = try_read_file(root / "proc/self/status");
    if (!status) {
        r.add("privileges", "CAP_BPF, CAP_PERFMON, CAP_SYSLOG", CheckStatus::Missing, "cannot read proc/self/status",
              "mount /proc", true);
        return;
    }
    const std::uint64_t eff = parse_cap_eff(*status);
    const bool admin = has_cap(eff, CAP_SYS_ADMIN);
    const bool bpf = has_cap(eff, 39 /* CAP_BPF */) || admin;
    const bool perfmon = has_cap(eff, 38 /* CAP_PERFMON */) || admin;
    const bool syslog = has_cap(eff, CAP_SYSLOG);
    char hex[32];
    std::snprintf(hex, sizeof hex, "CapEff=%016llx", static_cast<unsigned long long>(eff));
    std::string value = std::string(hex) + ": CAP_BPF " + (bpf ? "yes" : "no") + ", CAP_PERFMON " +
                        (perfmon ? "yes" : "no") + ", CAP_SYSLOG " + (syslog ? "yes" : "no");
    auto& c =
        r.add("privileges", "CAP_BPF, CAP_PERFMON, CAP_SYSLOG",
              bpf && perfmon && syslog ? CheckStatus::Ok : CheckStatus::Missing, value,
              bpf && perfmon && syslog ? ""
                                       : "run as root (sudo memhp doctor), or grant CAP_BPF CAP_PERFMON CAP_SYSLOG "
                                         "(the memhp-exporter unit does)",
              true);
    c.data = {{"cap_eff", hex + 7}, {"cap_bpf", bpf}, {"cap_perfmon", perfmon}, {"cap_syslog", syslog}};
}

void check_btf(Report& r, const fs::path& root, bool& splits_known, bool& splits) {
    const fs::path btf_path = root / "sys/kernel/btf/vmlinux";
    std::error_code ec;
    const auto size = fs::file_size(btf_path, ec);
    if (ec) {
        r.add("btf", "kernel BTF", CheckStatus::Missing, btf_path.string() + " is missing",
              "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's 6.1 and later have it)", true);
        return;
    }
    r.add("btf", "kernel BTF", CheckStatus::Ok, "/sys/kernel/btf/vmlinux, " + format_size_human(size), "", true)
        .data = {{"bytes", size}};
    // 6.6 ("mm/memory_hotplug: embed vmem_altmap details in memory block")
    // gave each memory block its own altmap, which is what lets a
    // multi-block add use memmap_on_memory; the BPF side tells the two
    // layouts apart the same way (bpf/hotplug.bpf.c).
    std::unique_ptr<btf, void (*)(btf*)> b(btf__parse(btf_path.c_str(), nullptr), btf__free);
    if (!b) return;
    const int id = btf__find_by_name_kind(b.get(), "memory_block", BTF_KIND_STRUCT);
    if (id < 0) return;
    const btf_type* t = btf__type_by_id(b.get(), static_cast<__u32>(id));
    const btf_member* m = btf_members(t);
    splits_known = true;
    for (unsigned i = 0; i < btf_vlen(t); ++i, ++m) {
        const char* name = btf__name_by_offset(b.get(), m->name_off);
        if (name && std::string(name) == "altmap") splits = true;
    }
}

void check_hotplug(Report& r, const fs::path& root, const std::map<std::string, std::string>& config) {
    const fs::path mem = root / "sys/devices/system/memory";
    const bool present = fs::exists(mem);
    std::string value = present ? "/sys/devices/system/memory present" : "/sys/devices/system/memory missing";
    if (auto it = config.find("CONFIG_MEMORY_HOTPLUG"); it != config.end())
        value += "; CONFIG_MEMORY_HOTPLUG=" + it->second;
    if (auto it = config.find("CONFIG_MEMORY_HOTREMOVE"); it != config.end())
        value += ", CONFIG_MEMORY_HOTREMOVE=" + it->second;
    r.add("memory_hotplug", "CONFIG_MEMORY_HOTPLUG", present ? CheckStatus::Ok : CheckStatus::Missing, value,
          present ? "" : "boot a kernel built with CONFIG_MEMORY_HOTPLUG=y", true)
        .data = {{"present", present}};
    if (!present) return;

    // Memory block size.
    if (auto hex = read_word(mem / "block_size_bytes")) {
        std::uint64_t bytes = 0;
        try {
            bytes = std::stoull(*hex, nullptr, 16);
        } catch (const std::exception&) {}
        r.add("block_size", "memory block size", bytes ? CheckStatus::Info : CheckStatus::Warn,
              bytes ? format_size_human(bytes) : "unreadable: '" + *hex + "'")
            .data = {{"bytes", bytes}};
    }
    const std::size_t blocks = count_entries(mem, "memory");
    r.add("memory_blocks", "memory blocks", CheckStatus::Info, std::to_string(blocks)).data = {{"count", blocks}};

    // memmap_on_memory.
    const auto mmo = collector::read_memmap_on_memory(root);
    std::string cfg_mmo;
    if (auto it = config.find("CONFIG_MHP_MEMMAP_ON_MEMORY"); it != config.end()) cfg_mmo = it->second;
    {
        std::string v = mmo ? *mmo : "not offered by this kernel (no memory_hotplug.memmap_on_memory parameter)";
        if (!cfg_mmo.empty()) v += "; CONFIG_MHP_MEMMAP_ON_MEMORY=" + cfg_mmo;
        const bool on = mmo && collector::memmap_on_memory_enabled(*mmo);
        auto& c =
            r.add("memmap_on_memory", "memmap_on_memory", !mmo ? CheckStatus::Warn : CheckStatus::Info, v,
                  !mmo  ? "memmap_on_memory needs CONFIG_MHP_MEMMAP_ON_MEMORY=y (Linux 5.12+); memhp still traces "
                          "the page-allocator memmap"
                  : !on ? "off: boot with memory_hotplug.memmap_on_memory=1 to carve memmaps from the added memory"
                        : "");
        c.data = {{"supported", mmo.has_value()}, {"value", mmo.value_or("")}, {"enabled", on}};
    }
    // Onlining policy.
    const auto auto_online = read_word(mem / "auto_online_blocks");
    r.add("auto_online_blocks", "auto_online_blocks", CheckStatus::Info, auto_online.value_or("absent"),
          auto_online && *auto_online == "offline" ? "hot-added blocks stay offline until someone onlines them (udev "
                                                     "rule, or memhp lab's agent); memhp still traces add/remove"
                                                   : "")
        .data = {{"value", auto_online.value_or("")}};
    const auto policy = read_word(root / "sys/module/memory_hotplug/parameters/online_policy");
    r.add("online_policy", "online_policy", CheckStatus::Info, policy.value_or("absent (before 5.16)")).data = {
        {"value", policy.value_or("")}};

    // Movable zones: any node whose Movable zone has present pages.
    if (auto zoneinfo = try_read_file(root / "proc/zoneinfo")) {
        std::istringstream in(*zoneinfo);
        std::string line, node;
        std::vector<std::string> movable;
        bool in_movable = false;
        while (std::getline(in, line)) {
            if (line.starts_with("Node ")) {
                in_movable =
                    line.find("zone  Movable") != std::string::npos || line.find("zone Movable") != std::string::npos;
                node = line.substr(5, line.find(',') - 5);
            } else if (in_movable && trim(line).starts_with("present ")) {
                if (trim(line).substr(8) != "0") movable.push_back(node);
                in_movable = false;
            }
        }
        std::string v = movable.empty() ? "none populated" : "populated on node";
        for (const auto& n : movable) v += " " + n;
        r.add("movable_zones", "ZONE_MOVABLE", CheckStatus::Info, v).data = {{"nodes", movable}};
    }
    // nr_memmap_pages (6.11+).
    if (auto vmstat = try_read_file(root / "proc/vmstat")) {
        std::istringstream in(*vmstat);
        std::string key;
        std::uint64_t val = 0;
        std::optional<std::uint64_t> memmap, boot;
        while (in >> key >> val) {
            if (key == "nr_memmap_pages") memmap = val;
            if (key == "nr_memmap_boot_pages") boot = val;
        }
        auto& c = r.add("nr_memmap_pages", "nr_memmap_pages in /proc/vmstat", CheckStatus::Info,
                        memmap ? std::to_string(*memmap) + " pages after boot" +
                                     (boot ? ", " + std::to_string(*boot) + " at boot" : "")
                               : "absent (before 6.11): memhp's own memmap counts are the only ones");
        c.data = {{"present", memmap.has_value()}, {"pages", memmap.value_or(0)}};
    }
}

void check_split(Report& r, bool splits_known, bool splits) {
    {
        auto& c = r.add("memmap_on_memory_split", "memmap_on_memory on multi-block adds",
                        splits_known ? CheckStatus::Info : CheckStatus::Skipped,
                        !splits_known ? "cannot tell (no readable BTF for struct memory_block)"
                        : splits      ? "yes: each memory block of an add gets its own altmap"
                                      : "no: only adds of exactly one memory block use it; larger ones fall back to "
                                        "the page allocator (memhp flags them as 'memmap_on_memory unused')");
        if (splits_known) c.data = {{"splits", splits}};
    }
}

void check_devices(Report& r, const fs::path& root) {
    const std::size_t virtio_mem = count_entries(root / "sys/bus/virtio/drivers/virtio_mem", "virtio");
    const std::size_t dax = count_entries(root / "sys/bus/dax/devices");
    // ACPI memory devices: QEMU (and firmware) list every slot; _STA's
    // present bit (the status attribute) says which hold a DIMM.
    const std::size_t acpi = count_entries(root / "sys/bus/acpi/devices", "PNP0C80:");
    std::size_t acpi_present = 0;
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(root / "sys/bus/acpi/devices", ec)) {
        if (!d.path().filename().string().starts_with("PNP0C80:")) continue;
        const auto st = read_word(d.path() / "status");
        try {
            if (st && (std::stoul(*st) & 1U)) ++acpi_present;
        } catch (const std::exception&) {}
    }
    std::size_t dax_mmo = 0;
    for (const auto& d : fs::directory_iterator(root / "sys/bus/dax/devices", ec))
        dax_mmo += fs::exists(d.path() / "memmap_on_memory");
    r.add("devices", "hot-plug devices", CheckStatus::Info,
          "ACPI memory devices " + std::to_string(acpi_present) + " plugged of " + std::to_string(acpi) +
              ", virtio-mem " + std::to_string(virtio_mem) + ", dax " + std::to_string(dax))
        .data = {
        {"acpi_memory", acpi}, {"acpi_memory_present", acpi_present}, {"virtio_mem", virtio_mem}, {"dax", dax}};
    auto& c = r.add("dax_memmap_on_memory", "dax memmap_on_memory attribute", CheckStatus::Info,
                    dax == 0 ? "no dax devices"
                             : std::to_string(dax_mmo) + " of " + std::to_string(dax) + " dax devices have it" +
                                   (dax_mmo ? "" : " (before 6.8)"));
    c.data = {{"devices_with_attribute", dax_mmo}};
}

void check_filesystems(Report& r, const fs::path& root) {
    const auto mounts = try_read_file(root / "proc/mounts").value_or("");
    auto mounted = [&](const std::string& type) {
        std::istringstream in(mounts);
        std::string dev, dir, fstype, rest;
        while (in >> dev >> dir >> fstype && std::getline(in, rest))
            if (fstype == type) return dir;
        return std::string();
    };
    const auto bpffs = mounted("bpf");
    r.add("bpffs", "bpffs", bpffs.empty() ? CheckStatus::Warn : CheckStatus::Ok,
          bpffs.empty() ? "not mounted" : "mounted at " + bpffs,
          bpffs.empty() ? "memhp pins nothing, so it runs without; tools like bpftool want it: mount -t bpf bpf "
                          "/sys/fs/bpf"
                        : "")
        .data = {{"mounted", !bpffs.empty()}, {"at", bpffs}};
    std::string tracefs = mounted("tracefs");
    const bool list = fs::exists(root / "sys/kernel/tracing/available_filter_functions") ||
                      fs::exists(root / "sys/kernel/debug/tracing/available_filter_functions");
    r.add("tracefs", "tracefs", list ? CheckStatus::Ok : CheckStatus::Warn,
          tracefs.empty() && !list ? "not mounted"
                                   : (tracefs.empty() ? "present" : "mounted at " + tracefs) +
                                         (list ? ", function list readable" : ", no function list"),
          list ? ""
               : "memhp falls back to /proc/kallsyms to choose kprobes; mount -t tracefs tracefs /sys/kernel/tracing")
        .data = {{"mounted", !tracefs.empty()}, {"function_list", list}};
}

void check_kallsyms(Report& r, const fs::path& root) {
    const auto shown = kallsyms_addresses(root / "proc/kallsyms");
    if (!shown) {
        r.add("kallsyms", "/proc/kallsyms addresses", CheckStatus::Missing, "unreadable, or no text symbol in it",
              "mount /proc", true);
        return;
    }
    const bool zero = !*shown;
    r.add("kallsyms", "/proc/kallsyms addresses", zero ? CheckStatus::Missing : CheckStatus::Ok,
          zero ? "addresses read as 0" : "visible",
          zero ? "memhp needs vmemmap_base: run as root or with CAP_SYSLOG (kernel.kptr_restrict must be < 2)" : "",
          true)
        .data = {{"addresses", !zero}};
}

void check_live(Report& r) {
    // Ring buffer map type (5.8+); needs CAP_BPF to ask.
    const int ring = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
    r.add("ring_buffer", "BPF ring buffer", ring == 1 ? CheckStatus::Ok : CheckStatus::Missing,
          ring == 1   ? "supported"
          : ring == 0 ? "not supported by this kernel"
                      : std::string("cannot ask: ") + std::strerror(-ring),
          ring == 1   ? ""
          : ring == 0 ? "memhp needs Linux 5.8 or later"
                      : "run as root or with CAP_BPF",
          true)
        .data = {{"supported", ring == 1}};
    // The probes, attached for real and detached again: what would attach
    // is what does.
    collector::install_libbpf_logging(false);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        const auto backend = collector::make_probe_backend([](std::span<const std::uint8_t>) {}, {});
        const auto& probes = *backend;
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const auto& f = probes.kernel_features();
        const bool tp = probes.path() == "memory_hotplug tracepoints";
        r.add("fentry", "BPF trampolines (fentry/fexit)",
              f.fentry_works && !f.fentry_refused ? CheckStatus::Ok : CheckStatus::Warn,
              tp                                    ? "not needed: the kernel has memhp's memory_hotplug trace events"
              : f.fentry_works && !f.fentry_refused ? "work"
                                                    : "refused by this kernel: kprobes stand in (slower)",
              f.fentry_works || tp
                  ? ""
                  : "kprobes work; for fentry boot a kernel with CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS")
            .data = {{"works", f.fentry_works && !f.fentry_refused}, {"path", probes.path()}};
        nlohmann::json list = nlohmann::json::array();
        std::size_t attached = 0;
        for (const auto& st : probes.attach_report()) {
            attached += st.attached;
            list.push_back({{"target", st.target},
                            {"kind", st.kind},
                            {"mode", st.mode},
                            {"attached", st.attached},
                            {"required", st.required},
                            {"reason", st.reason}});
        }
        r.add("probes", "probes attach", CheckStatus::Ok,
              std::to_string(attached) + " of " + std::to_string(probes.attach_report().size()) + " attached in " +
                  std::to_string(static_cast<long>(ms)) + " ms (" + probes.path() + ")",
              "", true)
            .data = {{"attached", attached}, {"total", probes.attach_report().size()}, {"list", list}};
        for (const auto& st : probes.attach_report()) {
            if (st.attached) continue;
            r.add("probe:" + st.kind + ":" + st.target, "  " + st.kind + " " + st.target, CheckStatus::Info,
                  "not attachable: " + st.reason,
                  st.target == "vmemmap_populate" ? "vmemmap population is inferred from __add_pages instead" : "");
        }
        r.add("populate", "vmemmap populate timing", CheckStatus::Info, probes.populate_timing()).data = {
            {"direct", probes.populate_direct()}};
    } catch (const std::exception& e) {
        r.add("probes", "probes attach", CheckStatus::Missing, std::string("failed: ") + e.what(),
              "the message says what is missing; the checks above (privileges, BTF, hot-plug, kallsyms) come first",
              true);
    }
}

}  // namespace

const char* check_status_name(CheckStatus s) {
    switch (s) {
        case CheckStatus::Ok: return "ok";
        case CheckStatus::Missing: return "missing";
        case CheckStatus::Warn: return "warn";
        case CheckStatus::Info: return "info";
        case CheckStatus::Skipped: return "skipped";
    }
    return "?";
}

std::uint64_t parse_cap_eff(const std::string& status) {
    const auto at = status.find("CapEff:");
    if (at == std::string::npos) return 0;
    try {
        return std::stoull(status.substr(at + 7, 40), nullptr, 16);
    } catch (const std::exception&) {
        return 0;
    }
}

std::vector<Check> run_doctor(const DoctorOptions& opts) {
    Report r;
    std::string release;
    bool splits_known = false, splits = false;
    check_kernel(r, opts.root, release);
    check_privileges(r, opts.root);
    check_btf(r, opts.root, splits_known, splits);
    check_hotplug(r, opts.root, kernel_config(opts.root, release));
    check_split(r, splits_known, splits);
    check_devices(r, opts.root);
    check_filesystems(r, opts.root);
    check_kallsyms(r, opts.root);
    if (opts.live && opts.root == "/") {
        check_live(r);
    } else {
        r.add("ring_buffer", "BPF ring buffer", CheckStatus::Skipped, "not asked (--root: no live kernel)");
        r.add("probes", "probes attach", CheckStatus::Skipped, "not attached (--root: no live kernel)");
    }
    return r.checks;
}

bool doctor_passed(const std::vector<Check>& checks) {
    for (const auto& c : checks)
        if (c.essential && c.status == CheckStatus::Missing) return false;
    return true;
}

std::string doctor_table(const std::vector<Check>& checks) {
    std::size_t w = 5;
    for (const auto& c : checks) w = std::max(w, c.title.size());
    std::string out;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-*s  %-7s  %s\n", static_cast<int>(w), "CHECK", "STATUS", "FOUND");
    out += buf;
    for (const auto& c : checks) {
        std::snprintf(buf, sizeof buf, "%-*s  %-7s  ", static_cast<int>(w), c.title.c_str(),
                      check_status_name(c.status));
        out += buf + c.value + "\n";
        if (!c.remedy.empty() && c.status != CheckStatus::Ok) out += std::string(w + 11, ' ') + "-> " + c.remedy + "\n";
    }
    out += doctor_passed(checks) ? "memhp can trace this kernel.\n"
                                 : "memhp cannot trace this kernel: fix the essential items marked missing.\n";
    return out;
}

nlohmann::json doctor_json(const std::vector<Check>& checks) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& c : checks)
        list.push_back({{"id", c.id},
                        {"title", c.title},
                        {"status", check_status_name(c.status)},
                        {"value", c.value},
                        {"remedy", c.remedy},
                        {"essential", c.essential},
                        {"data", c.data}});
    return {{"schema", 1}, {"ok", doctor_passed(checks)}, {"checks", list}};
}

}  // namespace memhp::cli
