// SPDX-License-Identifier: Apache-2.0
// memhp doctor against fixture trees: what each check reports for a 6.1-like
// host, a 6.6+-like one, and hosts missing what memhp needs, and the binary's
// exit status and JSON.
#include <bpf/btf.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "doctor.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace {

namespace fs = std::filesystem;
using memhp::cli::Check;
using memhp::cli::CheckStatus;

// A BTF blob with `struct memory_block { <field> }`, as the kernel's would have.
std::string memory_block_btf(const char* field) {
    std::unique_ptr<btf, void (*)(btf*)> b(btf__new_empty(), btf__free);
    const int u64 = btf__add_int(b.get(), "unsigned long", 8, 0);
    const int st = btf__add_struct(b.get(), "memory_block", 8);
    EXPECT_GT(st, 0);
    EXPECT_EQ(btf__add_field(b.get(), field, u64, 0, 0), 0);
    __u32 size = 0;
    const void* raw = btf__raw_data(b.get(), &size);
    return std::string(static_cast<const char*>(raw), size);
}

void put(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    memhp::write_file(p, text);
}

// A host like the lab's 6.1 guest: root, BTF, 4 blocks of 128 MiB, one ACPI
// memory device, memmap_on_memory=N, a movable zone on node 1.
void make_host(const fs::path& r, const char* btf_field = "nr_vmemmap_pages", const char* mmo = "N") {
    put(r / "proc/sys/kernel/osrelease", "6.1.0-57-amd64\n");
    put(r / "proc/self/status", "Name:\tmemhp\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n");
    put(r / "sys/kernel/btf/vmlinux", memory_block_btf(btf_field));
    put(r / "sys/devices/system/memory/block_size_bytes", "8000000\n");
    put(r / "sys/devices/system/memory/auto_online_blocks", "offline\n");
    for (int i = 0; i < 4; ++i) fs::create_directories(r / ("sys/devices/system/memory/memory" + std::to_string(i)));
    put(r / "sys/module/memory_hotplug/parameters/memmap_on_memory", std::string(mmo) + "\n");
    put(r / "sys/module/memory_hotplug/parameters/online_policy", "contig-zones\n");
    put(r / "proc/zoneinfo",
        "Node 0, zone      DMA\n  pages free 3000\n        present  3998\n"
        "Node 1, zone  Movable\n  pages free 1\n        present  32768\n");
    put(r / "proc/vmstat", "nr_free_pages 1000\nnr_zone_movable 5\n");
    put(r / "sys/bus/acpi/devices/PNP0C80:00/status", "15\n");
    put(r / "sys/bus/acpi/devices/PNP0C80:01/status", "0\n");
    fs::create_directories(r / "sys/bus/acpi/devices/PNP0A03:00");
    put(r / "proc/mounts", "bpf /sys/fs/bpf bpf rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n");
    put(r / "sys/kernel/tracing/available_filter_functions", "add_memory_resource\n");
    // Per-CPU symbols come first at 0 whether or not addresses are shown.
    put(r / "proc/kallsyms", "0000000000000000 A fixed_percpu_data\nffffffff81000000 T _stext\n");
    put(r / "boot/config-6.1.0-57-amd64",
        "CONFIG_MEMORY_HOTPLUG=y\nCONFIG_MEMORY_HOTREMOVE=y\nCONFIG_MHP_MEMMAP_ON_MEMORY=y\n");
}

const Check& find(const std::vector<Check>& checks, const std::string& id) {
    for (const auto& c : checks)
        if (c.id == id) return c;
    throw std::runtime_error("no check " + id);
}

std::vector<Check> doctor(const fs::path& root) { return memhp::cli::run_doctor({.root = root, .live = false}); }

TEST(Doctor, HostLikeTheLabs61Guest) {
    memhp::TempDir t;
    make_host(t.path());
    const auto c = doctor(t.path());
    EXPECT_TRUE(memhp::cli::doctor_passed(c)) << memhp::cli::doctor_table(c);
    EXPECT_EQ(find(c, "kernel").value, "6.1.0-57-amd64");
    EXPECT_EQ(find(c, "privileges").status, CheckStatus::Ok);
    EXPECT_EQ(find(c, "btf").status, CheckStatus::Ok);
    EXPECT_EQ(find(c, "memory_hotplug").status, CheckStatus::Ok);
    EXPECT_NE(find(c, "memory_hotplug").value.find("CONFIG_MEMORY_HOTPLUG=y"), std::string::npos);
    EXPECT_EQ(find(c, "block_size").data["bytes"], 128u << 20);
    EXPECT_EQ(find(c, "memory_blocks").data["count"], 4);
    EXPECT_EQ(find(c, "memmap_on_memory").data["value"], "N");
    EXPECT_EQ(find(c, "memmap_on_memory").data["enabled"], false);
    EXPECT_NE(find(c, "memmap_on_memory").remedy.find("memory_hotplug.memmap_on_memory=1"), std::string::npos);
    EXPECT_EQ(find(c, "memmap_on_memory_split").data["splits"], false);
    EXPECT_EQ(find(c, "auto_online_blocks").value, "offline");
    EXPECT_EQ(find(c, "online_policy").value, "contig-zones");
    EXPECT_EQ(find(c, "movable_zones").data["nodes"], nlohmann::json::array({"1"}));
    EXPECT_EQ(find(c, "nr_memmap_pages").data["present"], false);
    EXPECT_EQ(find(c, "devices").data["acpi_memory"], 2);
    EXPECT_EQ(find(c, "devices").data["acpi_memory_present"], 1);
    EXPECT_EQ(find(c, "devices").data["virtio_mem"], 0);
    EXPECT_EQ(find(c, "bpffs").status, CheckStatus::Ok);
    EXPECT_EQ(find(c, "tracefs").status, CheckStatus::Ok);
    EXPECT_EQ(find(c, "kallsyms").status, CheckStatus::Ok);
    EXPECT_EQ(find(c, "probes").status, CheckStatus::Skipped) << "no live kernel under --root";
}

TEST(Doctor, Kernel66AndLaterSplitsMultiBlockAdds) {
    memhp::TempDir t;
    make_host(t.path(), "altmap", "force");
    put(t.path() / "proc/vmstat", "nr_memmap_pages 512\nnr_memmap_boot_pages 16384\n");
    fs::create_directories(t.path() / "sys/bus/dax/devices/dax0.0");
    put(t.path() / "sys/bus/dax/devices/dax0.0/memmap_on_memory", "0\n");
    fs::create_directories(t.path() / "sys/bus/virtio/drivers/virtio_mem/virtio3");
    const auto c = doctor(t.path());
    EXPECT_EQ(find(c, "memmap_on_memory_split").data["splits"], true);
    EXPECT_EQ(find(c, "memmap_on_memory").data["enabled"], true);
    EXPECT_EQ(find(c, "memmap_on_memory").remedy, "");
    EXPECT_EQ(find(c, "nr_memmap_pages").data["pages"], 512);
    EXPECT_EQ(find(c, "devices").data["dax"], 1);
    EXPECT_EQ(find(c, "devices").data["virtio_mem"], 1);
    EXPECT_EQ(find(c, "dax_memmap_on_memory").data["devices_with_attribute"], 1);
}

TEST(Doctor, MissingBtfAndHotplugFailWithRemedies) {
    memhp::TempDir t;
    make_host(t.path());
    fs::remove(t.path() / "sys/kernel/btf/vmlinux");
    fs::remove_all(t.path() / "sys/devices/system/memory");
    const auto c = doctor(t.path());
    EXPECT_FALSE(memhp::cli::doctor_passed(c));
    EXPECT_EQ(find(c, "btf").status, CheckStatus::Missing);
    EXPECT_NE(find(c, "btf").remedy.find("CONFIG_DEBUG_INFO_BTF=y"), std::string::npos);
    EXPECT_EQ(find(c, "memory_hotplug").status, CheckStatus::Missing);
    EXPECT_NE(find(c, "memory_hotplug").remedy.find("CONFIG_MEMORY_HOTPLUG=y"), std::string::npos);
    EXPECT_EQ(find(c, "memmap_on_memory_split").status, CheckStatus::Skipped) << "no BTF, no way to tell";
    const std::string table = memhp::cli::doctor_table(c);
    EXPECT_NE(table.find("cannot trace this kernel"), std::string::npos) << table;
}

TEST(Doctor, UnprivilegedUserIsToldWhichCapabilities) {
    memhp::TempDir t;
    make_host(t.path());
    put(t.path() / "proc/self/status", "Name:\tmemhp\nCapEff:\t0000000000000000\n");
    put(t.path() / "proc/kallsyms", "0000000000000000 A fixed_percpu_data\n0000000000000000 T _stext\n");
    put(t.path() / "proc/mounts", "proc /proc proc rw 0 0\n");
    fs::remove_all(t.path() / "sys/kernel/tracing");
    const auto c = doctor(t.path());
    EXPECT_FALSE(memhp::cli::doctor_passed(c));
    EXPECT_EQ(find(c, "privileges").status, CheckStatus::Missing);
    EXPECT_NE(find(c, "privileges").remedy.find("CAP_BPF CAP_PERFMON CAP_SYSLOG"), std::string::npos);
    EXPECT_EQ(find(c, "kallsyms").status, CheckStatus::Missing);
    EXPECT_NE(find(c, "kallsyms").remedy.find("CAP_SYSLOG"), std::string::npos);
    // Not essential: reported, but they alone would not fail the run.
    EXPECT_EQ(find(c, "bpffs").status, CheckStatus::Warn);
    EXPECT_EQ(find(c, "tracefs").status, CheckStatus::Warn);
}

TEST(Doctor, CapEffParsesOnlyThatLine) {
    EXPECT_EQ(memhp::cli::parse_cap_eff("CapPrm:\tffff\nCapEff:\t000000c000200000\n"), 0xc000200000ULL);
    EXPECT_EQ(memhp::cli::parse_cap_eff("CapEff:\tnothex\n"), 0u);
    EXPECT_EQ(memhp::cli::parse_cap_eff(""), 0u);
}

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

TEST(Doctor, BinaryPrintsJsonAndExitsOneWhenEssentialsAreMissing) {
    memhp::TempDir t;
    make_host(t.path());
    auto ok = memhp::run({memhp_bin(), "doctor", "--json", "--root", t.path().string()},
                         {.timeout = std::chrono::seconds(20)});
    ASSERT_EQ(ok.exit_code, 0) << ok.out << ok.err;
    const auto j = nlohmann::json::parse(ok.out);
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["ok"], true);
    EXPECT_GE(j["checks"].size(), 15u);
    for (const auto& c : j["checks"]) {
        EXPECT_TRUE(c.contains("id") && c.contains("status") && c.contains("remedy")) << c.dump();
    }
    fs::remove(t.path() / "sys/kernel/btf/vmlinux");
    auto bad = memhp::run({memhp_bin(), "doctor", "--root", t.path().string()}, {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
    EXPECT_NE(bad.out.find("CONFIG_DEBUG_INFO_BTF"), std::string::npos) << bad.out;
    auto usage =
        memhp::run({memhp_bin(), "doctor", "--root", "/nonexistent/dir"}, {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(usage.exit_code, 2) << usage.err;
}

}  // namespace
